"""proc_events' key schema (proc_events.toml) and its server-side write path.

Plain Redis commands and one small script: every write is HSETNX, ZADD (a member already there with its score
changes nothing), ZADD GT/LT, ZREM, or alive.lua (one call per batch: add to the alive set the processes whose
record has no end), so a message repeated by the same probe changes nothing and notifies nothing (glouglou's set
trick). The view translation follows ``hset`` events on ``proc:*`` and ``zadd`` events on
``probes``; see view.py.

Counting: the reply of each record's defining HSETNX (fork: start, exec: x:{t}, exit: end; a snapshot counts
one record per process, by its x:{t}) tells whether it was new (written) or a repeat; a bad snapshot entry is
rejected alone.
"""

from __future__ import annotations

import json
import math
from typing import Any

from wiredraw.core.interval import DEFAULT_INDEX
from wiredraw.core.module import Body, IngestContext, KeySchema, Script, WriteBatch, count_new

PREFIX = "wd:proc_events:"
PROBES_KEY = PREFIX + "probes"
FIRST_KEY = PREFIX + "first"
DEFAULT_RETENTION = 7 * 86400
CHUNK = 600  # seconds of event time per history key
INDEX = DEFAULT_INDEX  # the interval index ix:{level}:{bucket} of ended processes (core/interval.py)
EXEC_FIELDS = ("exe", "argv", "uid", "user", "cwd", "comm")
ALIVE = Script.from_package("wiredraw.plugins.proc_events", "alive.lua")


def fmt_start(start: float) -> str:
    return f"{start:.2f}"


def fmt_t(t: float) -> str:
    return f"{t:.3f}"


def proc_id(probe: str, pid: int, start: float) -> str:
    """A process's identity: node id and the tail of its key."""
    return f"{probe}:{pid}:{fmt_start(start)}"


def proc_key(pid_id: str) -> str:
    return f"{PREFIX}proc:{pid_id}"


def alive_key(probe: str) -> str:
    return f"{PREFIX}alive:{probe}"


def events_key(kind: str, t: float) -> str:
    return f"{PREFIX}events:{kind}:{int(t // CHUNK)}"


def index_key(start: float, end: float) -> str:
    k, b = INDEX.place(start, end - start)
    return f"{PREFIX}ix:{k}:{b}"


def index_ranges(t0: float, t1: float) -> list[tuple[str, float, float]]:
    """(key, min start, max start) of every index bucket that can hold a process ended in [t0, +inf) and started
    by t1: level k holds durations <= size_k, so such a process started in [t0 - size_k, t1]."""
    return [(f"{PREFIX}ix:{k}:{b}", t0 - INDEX.size(k), t1) for k, b in INDEX.buckets(t0, t1)]


def exec_record(msg: dict[str, Any]) -> str:
    return json.dumps({f: msg.get(f) for f in EXEC_FIELDS}, separators=(",", ":"), ensure_ascii=False)


class ProcSchema(KeySchema):
    """The write path: each frame's validated messages as plain commands and one call of alive.lua."""

    scripts = (ALIVE,)

    def __init__(self, retention: int = DEFAULT_RETENTION) -> None:
        self.retention: int = retention

    def write(self, ctx: IngestContext, body: Body, batch: WriteBatch) -> None:
        w = _Writer(ctx.probe_id, batch, self.retention)
        kind = ctx.message_type
        for msg in body.messages():
            if kind == "fork":
                w.fork(msg["pid"], msg["ppid"], msg["start"], count=True)
            elif kind == "exec":
                w.exec(msg["pid"], msg["start"], msg["t"], msg, count=True)
            elif kind == "exit":
                w.exit(msg["pid"], msg["start"], msg["end"], msg.get("code"))
            elif kind == "snapshot":
                w.snapshot(msg)
        w.finish()  # written and repeats come from the replies (see the module docstring)


class _Writer:
    """The commands of one batch; per-batch bookkeeping (TTLs once per key, the probe's time span once)."""

    def __init__(self, probe: str, batch: WriteBatch, retention: int) -> None:
        self.probe, self.batch, self.retention = probe, batch, retention
        self.alive: dict[str, tuple[str, float]] = {}  # member -> (proc key, start): added unless ended
        self.expire: set[str] = set()
        self.lo, self.hi = math.inf, -math.inf
        self.rejected: dict[str, int] = {}

    def _seen(self, *times: float) -> None:
        for t in times:
            if t < self.lo:
                self.lo = t
            if t > self.hi:
                self.hi = t

    def fork(self, pid: int, ppid: int, start: float, count: bool) -> str:
        pid_id = proc_id(self.probe, pid, start)
        key = proc_key(pid_id)
        add = self.batch.add
        add("HSETNX", key, "start", fmt_start(start), on_reply=count_new if count else None)
        add("HSETNX", key, "pid", pid)
        add("HSETNX", key, "ppid", ppid)
        self.alive[f"{pid}:{fmt_start(start)}"] = (key, start)
        ev = events_key("fork", start)
        add("ZADD", ev, start, pid_id)
        self.expire.update((key, ev))
        self._seen(start)
        return pid_id

    def exec(self, pid: int, start: float, t: float, msg: dict[str, Any], count: bool) -> None:
        pid_id = proc_id(self.probe, pid, start)
        key = proc_key(pid_id)
        self.batch.add("HSETNX", key, f"x:{fmt_t(t)}", exec_record(msg), on_reply=count_new if count else None)
        self.alive[f"{pid}:{fmt_start(start)}"] = (key, start)
        ev = events_key("exec", t)
        self.batch.add("ZADD", ev, t, f"{pid_id}|{fmt_t(t)}")
        self.expire.update((key, ev))
        self._seen(t)

    def exit(self, pid: int, start: float, end: float, code: int | None) -> None:
        pid_id = proc_id(self.probe, pid, start)
        key = proc_key(pid_id)
        add = self.batch.add
        add("HSETNX", key, "end", fmt_t(end), on_reply=count_new)
        if code is not None:
            add("HSETNX", key, "code", code)
        add("HSETNX", key, "start", fmt_start(start))
        add("HSETNX", key, "pid", pid)
        add("ZREM", alive_key(self.probe), f"{pid}:{fmt_start(start)}")
        ix = index_key(start, end)
        add("ZADD", ix, start, pid_id)
        ev = events_key("exit", end)
        add("ZADD", ev, end, pid_id)
        self.expire.update((key, ix, ev))
        self._seen(start, end)

    def snapshot(self, msg: dict[str, Any]) -> None:
        why = "snapshot process without int pid, ppid, number start, list argv"
        for p in msg["procs"]:
            try:
                pid, ppid, start = int(p["pid"]), int(p["ppid"]), float(p["start"])
                t = float(p.get("t", start))
                if not isinstance(p.get("argv", []), list):
                    raise TypeError("argv")
            except (KeyError, TypeError, ValueError):
                self.rejected[why] = self.rejected.get(why, 0) + 1
                continue
            self.fork(pid, ppid, start, count=False)
            self.exec(pid, start, t, p, count=True)  # a process whose current program is known: a repeat
        self._seen(float(msg["t"]))

    def finish(self) -> None:
        add = self.batch.add
        if self.alive:
            args: list[Any] = [alive_key(self.probe)]
            for member, (key, start) in self.alive.items():
                args += [key, start, member]
            self.batch.script(ALIVE, *args)
        for key in sorted(self.expire):
            add("EXPIRE", key, self.retention)
        if self.hi > -math.inf:
            add("ZADD", PROBES_KEY, "GT", self.hi, self.probe)
            add("ZADD", FIRST_KEY, "LT", self.lo, self.probe)
        if self.rejected:
            self.batch.counts.rejected.update(self.rejected)
