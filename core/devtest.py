"""devtest: the development module (ID 999) that ships with wiredraw's test kit.

It is a real module in every respect (declaration, key schema, ingest, probe source) and proves the
probe runner and the wire path end to end. Loaded when ``WIREDRAW_DEV_MODULES=1`` or passed in.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wiredraw.core.hookspecs import hookimpl
from wiredraw.core.module import Body, IngestContext, KeySchema, Module, ModuleSpec, WriteBatch

TICK_TTL = 86400


class CounterSource:
    """Produces ticks 1..count (or forever with count=0) at ``rate`` per second (0 = as fast as polled)."""

    def __init__(self, count: int = 0, rate: float = 0.0, text: str = "", clock: Callable[[], float] = time.time):
        self.count, self.rate, self.text, self._clock = count, rate, text, clock
        self.next_n = 1
        self._started = clock()
        self._base = 1

    def poll(self, max_messages: int) -> list[tuple[str, dict[str, Any]]]:
        limit = max_messages
        if self.rate > 0:
            due = self._base + int((self._clock() - self._started) * self.rate)
            limit = min(limit, due - self.next_n)
        if self.count:
            limit = min(limit, self.count + 1 - self.next_n)
        out = []
        now = self._clock()
        for _ in range(max(0, limit)):
            msg: dict[str, Any] = {"n": self.next_n, "ts": now}
            if self.text:
                msg["text"] = self.text
            out.append(("tick", msg))
            self.next_n += 1
        return out

    def finished(self) -> bool:
        return bool(self.count) and self.next_n > self.count

    def state(self) -> Any:
        return {"next": self.next_n}

    def restore(self, state: Any) -> None:
        if isinstance(state, dict) and isinstance(state.get("next"), int):
            self.next_n = self._base = state["next"]
            self._started = self._clock()

    def close(self) -> None:
        pass


class DevTestSchema(KeySchema):
    """The write path: a set per tick (the probes that sent it) and a sorted set of each probe's ticks."""

    def write(self, ctx: IngestContext, body: Body, batch: WriteBatch) -> None:
        taken = 0
        probe_key = f"wd:devtest:ticks:{ctx.probe_id}"
        zargs: list[Any] = []
        for msg in body.messages():
            key = f"wd:devtest:tick:{msg['n']}"
            batch.add("SADD", key, ctx.probe_id)
            batch.add("EXPIRE", key, TICK_TTL)
            zargs += [msg["ts"], msg["n"]]
            taken += 1
        if zargs:
            batch.add("ZADD", probe_key, *zargs)
            batch.add("EXPIRE", probe_key, TICK_TTL)
        batch.counts.written += taken


class DevTestModule(Module):
    spec_path = Path(__file__).with_name("devtest.toml")

    def __init__(self, spec: ModuleSpec | None = None) -> None:
        super().__init__(spec)
        self.schema: DevTestSchema = DevTestSchema()

    def add_probe_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--count", type=int, default=0, help="ticks to send, then stop (0: forever)")
        parser.add_argument("--rate", type=float, default=0.0, help="ticks per second (0: as fast as possible)")
        parser.add_argument("--text", default="", help="free text carried in every tick")

    def make_source(self, options: argparse.Namespace) -> CounterSource:
        return CounterSource(count=options.count, rate=options.rate, text=options.text)


@hookimpl
def register_modules(register: Callable[[Module], None]) -> None:
    register(DevTestModule())
