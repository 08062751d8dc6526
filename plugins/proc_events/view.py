"""proc_events' view translation: the process tree of each probe host (DESIGN.md §5).

Vocabulary
----------
- Node (kind ``process``), id ``{probe}:{pid}:{start}``: label its command name (comm), else its executable's
  basename, else its pid; size = 1 + its children in view; category its user (``category = "user"``, the
  default: user name, else ``uid N``, else ``?``) or its executable's basename (``category = "exe"``); group = the
  probe (host), so hosts sit side by side; first = start, last = end (None while it runs); attrs ``pid``,
  ``ppid``, ``probe``, ``exe``, ``argv``, ``cwd``, ``uid``, ``user``, ``start``, ``end``, ``code`` (exit code
  where known), ``children`` (in view), ``alive``.
- Edge (kind ``fork``), id ``{parent id}>{child id}``: parent -> child, when both are in view. The parent is the
  process of the same probe with pid = the child's ppid that was running when the child started (so pid reuse
  never links a child to the wrong process); first/last = the child's.
- Pulses: a process that appears pulses ``new``; one that exits pulses ``ok`` (exit code 0 or unknown) or
  ``error`` (another code, or killed by a signal).

Time and fading
---------------
A process is active over [start, end + fade] (``fade``: the ``[proc_events]`` option, seconds, default 60): the
graph of [t0, t1] holds every process started by t1 that had not ended more than ``fade`` before t0. The live
graph is the graph at the latest event time stored T (the probes' clocks: each snapshot moves T, so an idle host
still fades): running processes and those ended less than ``fade`` before T. When the server's live window is
shorter than ``fade`` the core prunes exited processes sooner.

Two paths, one function
-----------------------
Both build the graph with :func:`build_graph` from process records (:class:`Proc`, read from ``proc:*`` hashes):

- query: :meth:`ProcEventsView.graph` reads the candidates (the ``alive:{probe}`` sets and the interval index
  ``ix:*`` of ended processes), then their hashes, in pipelined batches.
- live: :meth:`ProcEventsView.live_graph` keeps the records of the graph at T; :meth:`ProcEventsView.on_events`
  re-reads each process whose hash changed (hset events) and T (zadd on ``probes``), drops records that faded,
  rebuilds, and returns the difference. Re-reading whole records makes a repeated or raced event harmless.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wiredraw.core.graph import (
    Change,
    Details,
    Edge,
    Graph,
    ModuleView,
    Node,
    Pulse,
    Section,
    fade_option,
    hash_fields,
    view_options,
)
from wiredraw.plugins.proc_events.schema import (
    CHUNK,
    FIRST_KEY,
    INDEX,
    PREFIX,
    PROBES_KEY,
    alive_key,
    index_ranges,
)

__all__ = ["ProcEventsView", "Proc", "build_graph", "parse_options", "parse_proc", "ViewOptions"]

OPTION_NAMES = ("fade", "category")
DEFAULT_FADE = 60.0
CATEGORIES = ("user", "exe")
FETCH_BATCH = 2000
START_SLACK = 0.011  # start times are rounded to 0.01 s: a child may seem to start a tick before its parent
DETAILS_CHILDREN = 100
MAX_BUCKETS = 2000  # index buckets of level 0 read for an interval; a wider one SCANs the index keys instead


@dataclass(frozen=True)
class ViewOptions:
    fade: float = DEFAULT_FADE
    category: str = "user"


def parse_options(options: Mapping[str, Any] | None) -> ViewOptions:
    """Check the ``[proc_events]`` table of the server's viz config; a ValueError names the option at fault."""
    options = view_options("proc_events", options, OPTION_NAMES)
    fade = fade_option(options, DEFAULT_FADE)
    category = options.get("category", "user")
    if category not in CATEGORIES:
        raise ValueError(f"category: expected one of {', '.join(CATEGORIES)}, got {category!r}")
    return ViewOptions(float(fade), str(category))


# ------------------------------------------------------------------------------------------------------------
# Records


@dataclass
class Proc:
    """One process as stored: its identity, parent pid, current program (the exec seen last) and end."""

    id: str
    probe: str
    pid: int
    start: float
    ppid: int | None = None
    exec: dict[str, Any] = field(default_factory=dict)
    exec_t: float | None = None
    execs: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # every program seen, by time
    end: float | None = None
    code: int | None = None

    def label(self) -> str:
        comm, exe = self.exec.get("comm"), self.exec.get("exe")
        if comm:
            return str(comm)
        if exe:
            return posixpath.basename(str(exe))
        return str(self.pid)

    def active(self, t0: float, t1: float, fade: float) -> bool:
        return self.start <= t1 and (self.end is None or self.end + fade >= t0)

    def latest(self) -> float:
        return max(t for t in (self.start, self.end, self.exec_t) if t is not None)


def split_id(pid_id: str) -> tuple[str, int, float] | None:
    """(probe, pid, start) of a node id; None if it is not one."""
    parts = pid_id.rsplit(":", 2)
    if len(parts) != 3 or ">" in pid_id:
        return None
    try:
        return parts[0], int(parts[1]), float(parts[2])
    except ValueError:
        return None


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_proc(pid_id: str, reply: Any) -> Proc | None:
    """A record from an HGETALL reply (a flat list, or a dict); None when the hash is gone or the id malformed."""
    who = split_id(pid_id)
    if who is None or not reply:
        return None
    fields = hash_fields(reply)
    probe, pid, start = who
    p = Proc(pid_id, probe, pid, start)
    try:
        if "ppid" in fields:
            p.ppid = int(fields["ppid"])
        if "end" in fields:
            p.end = float(fields["end"])
        if "code" in fields:
            p.code = int(fields["code"])
    except ValueError:
        pass
    for name, value in fields.items():
        if name.startswith("x:"):
            try:
                rec = json.loads(value)
                p.execs.append((float(name[2:]), rec if isinstance(rec, dict) else {}))
            except ValueError:
                continue
    if p.execs:
        p.execs.sort(key=lambda e: e[0])
        p.exec_t, p.exec = p.execs[-1]
    return p


# ------------------------------------------------------------------------------------------------------------
# The one graph function


def _category(p: Proc, how: str) -> str:
    if how == "exe":
        exe = p.exec.get("exe")
        return posixpath.basename(str(exe)) if exe else (p.exec.get("comm") or "?")
    user = p.exec.get("user")
    if user:
        return str(user)
    uid = p.exec.get("uid")
    return f"uid {uid}" if uid is not None else "?"


def parent_of(p: Proc, by_pid: Mapping[tuple[str, int], list[Proc]]) -> Proc | None:
    """The process of ``p``'s probe with pid ``p.ppid`` running when ``p`` started (the latest started such)."""
    if p.ppid is None:
        return None
    best: Proc | None = None
    for q in by_pid.get((p.probe, p.ppid), ()):
        if q is p or q.start > p.start + START_SLACK:
            continue
        if q.end is not None and q.end < p.start - START_SLACK:
            continue
        if best is None or q.start > best.start:
            best = q
    return best


def build_graph(procs: Iterable[Proc], t0: float, t1: float, options: ViewOptions) -> Graph:
    """Every process active in [t0, t1] (see the module docstring) and the parent -> child edges among them."""
    shown = [p for p in procs if p.active(t0, t1, options.fade)]
    by_pid: dict[tuple[str, int], list[Proc]] = {}
    for p in shown:
        by_pid.setdefault((p.probe, p.pid), []).append(p)
    edges: list[Edge] = []
    children: dict[str, int] = {}
    for p in shown:
        parent = parent_of(p, by_pid)
        if parent is not None:
            edges.append(Edge(f"{parent.id}>{p.id}", parent.id, p.id, True, 1.0, "", "", "fork", p.start, p.end))
            children[parent.id] = children.get(parent.id, 0) + 1
    nodes = []
    for p in shown:
        n = children.get(p.id, 0)
        x = p.exec
        attrs = {
            "pid": p.pid, "ppid": p.ppid, "probe": p.probe, "exe": x.get("exe"), "argv": list(x.get("argv") or []),
            "cwd": x.get("cwd"), "uid": x.get("uid"), "user": x.get("user"), "start": p.start, "end": p.end,
            "code": p.code, "children": n, "alive": p.end is None,
        }
        nodes.append(Node(p.id, "process", p.label(), float(1 + n), _category(p, options.category), p.probe,
                          p.start, p.end, attrs))
    nodes.sort(key=lambda n: n.id)
    edges.sort(key=lambda e: e.id)
    return Graph(nodes, edges)


def exit_meaning(p: Proc) -> str:
    return "ok" if p.code is None or p.code == 0 else "error"


# ------------------------------------------------------------------------------------------------------------
# The translation


class ProcEventsView(ModuleView):
    watch_keys = (f"{PREFIX}proc:*", PROBES_KEY)
    node_kinds = ("process",)
    edge_kinds = ("fork",)

    def __init__(self, store: Any, options: Mapping[str, Any]) -> None:
        super().__init__(store, options)
        self.opts = parse_options(options)
        self._live: dict[str, Proc] | None = None
        self._t = -math.inf  # the live graph's time: the latest event time stored

    # -- reading -------------------------------------------------------------------------------------------------
    async def _pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(commands), FETCH_BATCH):
            replies = await self.store.pipeline(list(commands[i : i + FETCH_BATCH]))
            for r in replies:
                if isinstance(r, Exception):
                    raise r
            out.extend(replies)
        return out

    async def _probes(self) -> list[str]:
        return [_s(p) for p in await self.store.execute("ZRANGE", PROBES_KEY, 0, -1)]

    async def _latest(self) -> float | None:
        top = await self.store.execute("ZREVRANGE", PROBES_KEY, 0, 0, "WITHSCORES")
        return float(top[1]) if top else None

    async def _read(self, ids: Sequence[str]) -> list[Proc]:
        replies = await self._pipeline([("HGETALL", f"{PREFIX}proc:{i}") for i in ids])
        return [p for i, r in zip(ids, replies, strict=True) if (p := parse_proc(i, r)) is not None]

    async def _candidates(self, t0: float, t1: float) -> list[str]:
        """Ids of every process that may be active in [t0, t1]: alive ones started by t1, and ended ones from the
        interval index (end >= t0 - fade). A wide interval reads every index bucket instead (SCAN)."""
        latest = await self._latest()
        if latest is None:
            return []
        probes = await self._probes()
        lo, hi = t0 - self.opts.fade, min(t1, latest)  # nothing started after the latest event time
        cmds: list[tuple[Any, ...]] = [("ZRANGEBYSCORE", alive_key(p), "-inf", hi) for p in probes]
        if math.isfinite(lo) and (hi - lo) / INDEX.base <= MAX_BUCKETS:
            cmds += [("ZRANGEBYSCORE", key, a, hi) for key, a, _b in index_ranges(lo, hi)]
        else:
            cmds += [("ZRANGEBYSCORE", key, "-inf", hi) for key in await self._index_keys()]
        replies = await self._pipeline(cmds)
        ids: dict[str, None] = {}
        for i, reply in enumerate(replies):
            if i < len(probes):
                ids.update((f"{probes[i]}:{_s(m)}", None) for m in reply)
            else:
                ids.update((_s(m), None) for m in reply)
        return list(ids)

    async def _index_keys(self) -> list[str]:
        """Every index bucket (for an interval open to -inf: a whole-history query)."""
        keys: list[str] = []
        cursor: Any = 0
        while True:
            cursor, batch = await self.store.execute("SCAN", cursor, "MATCH", f"{PREFIX}ix:*", "COUNT", 1000)
            keys.extend(_s(k) for k in batch)
            if int(cursor) == 0:
                return sorted(set(keys))

    async def _procs(self, t0: float, t1: float) -> list[Proc]:
        return [p for p in await self._read(await self._candidates(t0, t1)) if p.active(t0, t1, self.opts.fade)]

    # -- views ---------------------------------------------------------------------------------------------------
    async def graph(self, t0: float, t1: float) -> Graph:
        return build_graph(await self._procs(t0, t1), t0, t1, self.opts)

    async def live_graph(self, t0: float | None) -> Graph:
        """The graph at the latest event time stored (``t0``, the live window's start, is not needed: what faded
        is gone from it anyway)."""
        latest = await self._latest()
        if latest is None:
            self._live, self._t = {}, -math.inf
            return Graph()
        procs = await self._procs(latest, latest)
        self._live = {p.id: p for p in procs}
        self._t = latest
        return build_graph(procs, latest, latest, self.opts)

    async def on_events(self, events: Sequence[tuple[str, str]], graph: Graph) -> Change:
        if self._live is None:
            return Change()
        prefix = f"{PREFIX}proc:"
        ids = list(dict.fromkeys(key[len(prefix):] for key, _ in events if key.startswith(prefix)))
        latest = await self._latest()
        if latest is not None and latest > self._t:
            self._t = latest
        t, fade, live = self._t, self.opts.fade, self._live
        pulses: list[Pulse] = []
        for p in await self._read(ids) if ids else ():
            before = live.get(p.id)
            if not p.active(t, t, fade):
                live.pop(p.id, None)
                continue
            live[p.id] = p
            if p.end is not None and (before is None or before.end is None):
                pulses.append(Pulse(p.id, "node", exit_meaning(p), p.end))
            elif before is None:
                pulses.append(Pulse(p.id, "node", "new", p.start))
        for pid_id in [i for i, p in live.items() if not p.active(t, t, fade)]:
            del live[pid_id]
        new = build_graph(live.values(), t, t, self.opts)
        change = graph.diff(new)
        change.pulses = [p for p in pulses if p.target in new.nodes]
        change.t = t if t > -math.inf else None
        return change

    def lost_events(self) -> None:
        self._live = None  # nothing is folded until the recompute

    # -- details -------------------------------------------------------------------------------------------------
    async def details(self, element_id: str, t0: float, t1: float) -> Details | None:
        if ">" in element_id:
            src, dst = element_id.split(">", 1)
            procs = await self._read([src, dst])
            if len(procs) != 2 or procs[1].ppid != procs[0].pid:
                return None
            parent, child = procs
            return Details(element_id, f"{parent.label()} ({parent.pid}) → {child.label()} ({child.pid})", "edge",
                           [_proc_section("parent", parent), _proc_section("child", child)])
        found = await self._read([element_id])
        if not found:
            return None
        p = found[0]
        sections = [_proc_section("process", p)]
        sections.append(Section("programs (execs seen)", rows=[
            ["t", "exe", "argv", "uid", "cwd"],
            *[[t, x.get("exe"), " ".join(x.get("argv") or []), x.get("uid"), x.get("cwd")] for t, x in p.execs],
        ]))
        view = build_graph(await self._procs(t0, t1), t0, t1, self.opts)
        kids = sorted((n for e in view.edges.values() if e.src == p.id for n in [view.nodes[e.dst]]),
                      key=lambda n: (n.first or 0.0, n.id))
        title = "children in view" + (f" (first {DETAILS_CHILDREN} of {len(kids)})" if len(kids) > DETAILS_CHILDREN
                                      else "")
        sections.append(Section(title, rows=[["id", "label", "start", "end", "exit code"], *[
            [n.id, n.label, n.first, n.last, n.attrs.get("code")] for n in kids[:DETAILS_CHILDREN]]]))
        return Details(p.id, f"{p.label()} (pid {p.pid} on {p.probe})", "node", sections)

    # -- timeline ------------------------------------------------------------------------------------------------
    async def time_range(self) -> tuple[float, float] | None:
        first, last = await self._pipeline([("ZRANGE", FIRST_KEY, 0, 0, "WITHSCORES"),
                                            ("ZREVRANGE", PROBES_KEY, 0, 0, "WITHSCORES")])
        if not first or not last:
            return None
        return float(first[1]), float(last[1])

    async def histogram(self, t0: float, t1: float, bins: int) -> list[dict[str, float]]:
        """forks, execs and exits per bin, counted from the history keys at their event times."""
        if bins <= 0 or not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
            return []
        width = (t1 - t0) / bins
        out: list[dict[str, float]] = [{"t0": t0 + i * width, "t1": t0 + (i + 1) * width, "forks": 0, "execs": 0,
                                        "exits": 0} for i in range(bins)]
        out[-1]["t1"] = t1
        span = await self.time_range()
        if span is None or span[0] > t1 or span[1] < t0:
            return out
        cmds: list[tuple[Any, ...]] = []
        where: list[tuple[int, str]] = []
        for i, b in enumerate(out):
            lo, hi = max(b["t0"], span[0]), min(b["t1"], span[1])
            if lo > hi:
                continue
            last = i == bins - 1
            for chunk in range(int(lo // CHUNK), int(hi // CHUNK) + 1):
                for kind, name in (("fork", "forks"), ("exec", "execs"), ("exit", "exits")):
                    cmds.append(("ZCOUNT", f"{PREFIX}events:{kind}:{chunk}", b["t0"], b["t1"] if last else
                                 f"({b['t1']}"))
                    where.append((i, name))
        for (i, name), n in zip(where, await self._pipeline(cmds), strict=True):
            out[i][name] += int(n)
        return out


def _proc_section(title: str, p: Proc) -> Section:
    x = p.exec
    return Section(title, rows=[
        ["id", p.id], ["probe", p.probe], ["pid", p.pid], ["ppid", p.ppid], ["exe", x.get("exe")],
        ["argv", list(x.get("argv") or [])], ["cwd", x.get("cwd")], ["uid", x.get("uid")], ["user", x.get("user")],
        ["start", p.start], ["end", p.end], ["exit code", p.code],
    ], t=p.start)
