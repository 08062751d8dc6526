"""Test helpers for a module's view translation: the server's Redis client interface over redis-py, a driver for the
translation's coroutines without a reactor, and net_zeek's write path (ingest.lua) and replayed real logs.

:class:`Store` answers as the server's Twisted client does (core/server/redis_client.py): ``execute(*cmd)`` and
``pipeline(cmds)`` return Deferreds (already fired), replies raw as hiredis gives them (bytes, ints, nested lists),
errors inside a pipeline as exception values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack
import redis
from twisted.internet import defer
from wiredraw.core.graph import Change, Graph
from wiredraw.core.module import Body, IngestContext, IngestCounts, WriteBatch
from wiredraw.plugins.net_zeek.module import NetZeekModule
from wiredraw.plugins.net_zeek.query import FEED_KEY, FEED_LAST_KEY
from wiredraw.plugins.net_zeek.schema import INGEST_LUA
from wiredraw.plugins.net_zeek.source import ReplaySource
from wiredraw.testing.redis import SyncStore, run

__all__ = ["DATA", "PACK", "Ingester", "LiveFeed", "Store", "msg", "replay", "run"]

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "zeek"
PACK = msgpack.Packer(use_bin_type=False)  # what a probe of a bin_as_str module sends


class Store(SyncStore):
    """The kit's :class:`~wiredraw.testing.redis.SyncStore` (the server's client interface over redis-py), plus
    ``before(command)``, when set, run before each command is sent (to interleave writes with a translation's reads)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.before: Callable[[tuple[Any, ...]], None] | None = None
        self.commands = 0

    def _see(self, command: tuple[Any, ...]) -> None:
        self.commands += 1
        if self.before is not None:
            self.before(command)

    def execute(self, *command: Any) -> defer.Deferred[Any]:
        self._see(command)
        return super().execute(*command)

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> defer.Deferred[list[Any]]:
        for command in commands:
            self._see(tuple(command))
        return super().pipeline(commands)


class Ingester:
    """net_zeek's server-side write: one EVALSHA of ingest.lua per batch, as the server sends it."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.module = NetZeekModule()
        client.script_load(INGEST_LUA)

    def __call__(self, messages: Sequence[dict[str, Any]], probe: str = "s1") -> IngestCounts:
        batch = WriteBatch(self.module.spec)
        body = Body(PACK.pack(list(messages)), self.module.spec.messages["log"])
        self.module.write(IngestContext(probe, "log", time.time()), body, batch)
        (command,) = batch.commands
        return batch.reply_handlers[0][1](self.client.execute_command(*command))

    def feed_length(self) -> int:
        return int(self.client.xlen(FEED_KEY))


def replay(files: Sequence[Path], batch: int = 500) -> Iterator[list[dict[str, Any]]]:
    """Messages of recorded logs as a replaying probe sends them: event-time order across files, in batches."""
    source = ReplaySource(list(files), fast=True)
    try:
        while not source.finished():
            messages = [m for _, m in source.poll(batch)]
            if messages:
                yield messages
    finally:
        source.close()


def msg(path: str, rec: dict[str, Any]) -> dict[str, Any]:
    """A wire message for a record built in a test."""
    m = {"path": path, "ts": rec.get("ts"), "rec": msgpack.packb(rec)}
    if rec.get("uid") is not None:
        m["uid"] = rec["uid"]
    return m


class LiveFeed:
    """What the core does for one module: the live graph from ``live_graph``, then ``on_events`` with the keyspace
    events that came since (one ``xadd`` per feed entry written), each change applied; the changes are kept."""

    def __init__(self, viz: Any, t0: float | None = None) -> None:
        self.viz = viz
        self.redis: redis.Redis = viz.store.client
        self.notified = self._last()  # events of entries after this one reach the core after it subscribed
        self.graph: Graph = run(viz.live_graph(t0))
        self.changes: list[Change] = []

    def _last(self) -> bytes:
        last = self.redis.execute_command("GET", FEED_LAST_KEY)
        return last if last is not None else b"0-0"

    def events(self) -> list[tuple[str, str]]:
        """The keyspace events of the feed entries written since the last call."""
        entries = self.redis.execute_command("XRANGE", FEED_KEY, b"(" + self.notified, "+")
        if entries:
            self.notified = entries[-1][0]
        return [(FEED_KEY, "xadd")] * len(entries)

    def step(self) -> Change:
        change: Change = run(self.viz.on_events(self.events(), self.graph))
        self.graph.apply(change)
        self.graph.check()
        self.changes.append(change)
        return change

    def resync(self, t0: float | None) -> None:
        self.notified = self._last()
        self.graph = run(self.viz.live_graph(t0))

    def pulses(self) -> list[Any]:
        return [p for c in self.changes for p in c.pulses]
