"""Helpers for the proc_events tests (no tests here): the server's write path (module.write, one MULTI per batch,
as the core sends it), recorded events built in tests, and the core's live loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import helpers
import redis
from wiredraw.core.graph import Change, Graph
from wiredraw.core.module import IngestCounts
from wiredraw.plugins.proc_events.module import ProcEventsModule
from wiredraw.plugins.proc_events.schema import PROBES_KEY
from wiredraw.testing import write_messages

T0 = 1_700_000_000.0


class ProcIngester:
    """``ingest(message_type, messages, probe)`` as the server does it: validated, then module.write's commands in
    one transaction, counted from the replies."""

    def __init__(self, client: redis.Redis, retention: int | None = None) -> None:
        self.client = client
        self.module = ProcEventsModule()
        for script in self.module.scripts:  # as the server does on every connection
            client.script_load(script.source)
        if retention is not None:
            self.module.schema.retention = retention

    def __call__(self, message_type: str, messages: Sequence[dict[str, Any]], probe: str = "h1") -> IngestCounts:
        return write_messages(self.client, self.module, message_type, messages, probe)

    def events(self, events: Sequence[tuple[str, dict[str, Any]]], probe: str = "h1") -> None:
        """Recorded (type, message) pairs, one batch per run of one type (as the probe's batcher cuts them)."""
        run: list[dict[str, Any]] = []
        kind = None
        for mtype, msg in events:
            if mtype != kind and run:
                self(kind, run, probe)  # type: ignore[arg-type]
                run = []
            kind = mtype
            run.append(msg)
        if run:
            self(kind, run, probe)  # type: ignore[arg-type]


def fork(pid: int, ppid: int, start: float) -> tuple[str, dict[str, Any]]:
    return "fork", {"pid": pid, "ppid": ppid, "start": start}


def exec_(pid: int, start: float, argv: list[str], t: float | None = None, exe: str | None = None,
          uid: int | None = 1000, user: str | None = "alice", cwd: str | None = "/home/alice") -> tuple[str, dict]:
    exe = exe if exe is not None else f"/usr/bin/{argv[0]}"
    return "exec", {"pid": pid, "start": start, "t": start if t is None else t, "exe": exe, "argv": argv, "uid": uid,
                    "user": user, "cwd": cwd, "comm": exe.rsplit("/", 1)[-1][:15]}


def exit_(pid: int, start: float, end: float, code: int | None = 0) -> tuple[str, dict[str, Any]]:
    m: dict[str, Any] = {"pid": pid, "start": start, "end": end}
    if code is not None:
        m["code"] = code
    return "exit", m


def keyspace_events(client: redis.Redis, action: Any, pattern: str = "wd:proc_events:*") -> list[tuple[str, str]]:
    """Every keyspace notification on matching keys while ``action`` runs."""
    return helpers.keyspace_events(client, action, pattern)


class ProcLiveFeed:
    """What the core does for the module: live_graph, then on_events with the keyspace events each write made,
    each change applied to the graph."""

    def __init__(self, viz: Any, client: redis.Redis) -> None:
        from viz_store import run

        self.viz, self.client, self.run = viz, client, run
        self.graph: Graph = run(viz.live_graph(None))
        self.changes: list[Change] = []

    def write(self, ingest: ProcIngester, events: Sequence[tuple[str, dict[str, Any]]], probe: str = "h1") -> Change:
        """Ingest ``events`` and hand the keyspace events they made to on_events (only watched keys)."""
        seen = keyspace_events(self.client, lambda: ingest.events(events, probe))
        watched = [(k, e) for k, e in seen if (k.startswith("wd:proc_events:proc:") and e == "hset")
                   or (k == PROBES_KEY and e == "zadd")]
        change: Change = self.run(self.viz.on_events(watched, self.graph))
        self.graph.apply(change)
        self.graph.check()
        self.changes.append(change)
        return change

    def pulses(self) -> list[Any]:
        return [p for c in self.changes for p in c.pulses]
