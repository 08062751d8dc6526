"""net_zeek's view translation: hosts and the connections between them (DESIGN.md §5, §6).

Vocabulary
----------
- Node (kind ``host``) = an IP address: label its most recent DNS name (``names:{ip}``, highest score, ties to
  the greater name, as ZREVRANGE orders them) or the address; size = bytes; category ``local``/``remote`` by
  ``local_networks``; group by the most specific subnet of ``groups``/``tags_file``; attrs ``bytes``,
  ``conns_out``, ``conns_in``, ``ports`` (responder ports it served, the :data:`PORTS_SHOWN` busiest, sorted;
  not for ICMP, whose "ports" are type and code).
- Edge (kind ``conn``) = orig -> resp, id ``<orig>><resp>``: weight = bytes; category = its service (the most
  frequent among its connections, ties by name, ``other`` when none has one); attrs ``bytes``, ``conns``,
  ``service``, ``services`` (counts), ``ports``, ``proto`` (its protocols, sorted, ``/``-joined).
- first/last: the earliest start and the latest end (ts + duration) of the element's connections.
- Pulses: a new connection pulses its edge ``new``; an HTTP response pulses its connection's edge ``ok``
  (1xx-3xx) or ``error`` (4xx-5xx); a notice or weird pulses its hosts ``error``.

Two paths, one fold
-------------------
Both fold :class:`ConnFacts` into a :class:`GraphState` (per-uid facts, per-node and per-edge accumulators), so
they give equal graphs for the same data:

- query: :meth:`NetZeekView.graph` reads the interval index for the connections active in [t0, t1], fetches their
  records in pipelined batches and folds them.
- live: :meth:`NetZeekView.live_graph` notes the change feed's latest id, then folds [t0, +inf) the same way and
  keeps the state; :meth:`NetZeekView.on_events` reads the feed from that id on (ingest.lua writes one entry per
  batch) and folds each change. A connection the state already holds is not counted again; a longer report of it
  replaces its contribution. An HTTP response that comes before its connection (Zeek writes conn.log when a
  connection ends) waits, bounded, for it.

Beside this file: options.py (the options and the host classifier), fold.py (:class:`GraphState`), details.py (the
details panels).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from twisted.logger import Logger
from wiredraw.core.graph import Change, Details, Graph, ModuleView, Pulse
from wiredraw.plugins.net_zeek.details import as_text as _decode
from wiredraw.plugins.net_zeek.details import element_details
from wiredraw.plugins.net_zeek.fold import GraphState, edge_id
from wiredraw.plugins.net_zeek.options import HostClassifier, ViewOptions, parse_options
from wiredraw.plugins.net_zeek.query import (
    FEED_KEY,
    PREFIX,
    ActiveConn,
    ConnFacts,
    DnsName,
    FeedError,
    HostAlert,
    HttpReply,
    LongerConn,
    active_commands,
    active_from_replies,
    conn_command,
    conn_facts,
    decode_feed,
    feed_last_command,
    feed_read_command,
    name_command,
    name_pairs,
    span_command,
    span_from_reply,
    unpack_record,
)

__all__ = ["FeedGap", "GraphState", "HostClassifier", "NetZeekView", "ViewOptions", "edge_id", "parse_options"]

FETCH_BATCH = 2000  # commands per pipelined round trip
FEED_READ_COUNT = 40  # feed entries per XRANGE (up to ~20,000 changes): between reads the reactor serves ingest
PENDING_MAX = 10_000  # HTTP responses waiting for their connection


class FeedGap(Exception):
    """Feed entries were trimmed before this translation read them: the live graph must be recomputed."""


# ------------------------------------------------------------------------------------------------------------
# The translation


def _http_meaning(status: int) -> str | None:
    if 100 <= status < 400:
        return "ok"
    if 400 <= status < 600:
        return "error"
    return None


def _raise_errors(replies: Sequence[Any]) -> list[Any]:
    for r in replies:
        if isinstance(r, Exception):
            raise r
    return list(replies)


_Pulses = dict[tuple[str, Literal["node", "edge"], str], float | None]  # (target, on, meaning) -> event time


def _pulse(pulses: _Pulses, target: str, on: Literal["node", "edge"], meaning: str, t: float | None) -> None:
    key = (target, on, meaning)
    seen = pulses.get(key, t)
    pulses[key] = t if seen is None or (t is not None and t > seen) else seen


def _touched(ids: set[str], have: Mapping[str, Any], build: Callable[[str], Any],
             shown: Mapping[str, Any]) -> tuple[list[Any], list[str]]:
    """What the touched elements ``ids`` change in a graph that shows ``shown``: the ones the state still ``has``
    and that differ, built whole (upserts), and the ones it lost that the graph shows (removals); in id order."""
    upserts: list[Any] = []
    removals: list[str] = []
    for key in sorted(ids):
        if key in have:
            element = build(key)
            if shown.get(key) != element:
                upserts.append(element)
        elif key in shown:
            removals.append(key)
    return upserts, removals




class NetZeekView(ModuleView):
    """net_zeek's :class:`ModuleView` (see the module docstring for the vocabulary and the two paths)."""

    log = Logger()
    watch_keys = (FEED_KEY,)
    node_kinds = ("host",)
    edge_kinds = ("conn",)

    def __init__(self, store: Any, options: Mapping[str, Any]) -> None:
        super().__init__(store, options)
        self.config = parse_options(options)
        self.classifier = HostClassifier(self.config)
        self.counters: Counter[str] = Counter()
        self._live: GraphState | None = None  # the live graph's state, from live_graph on
        self._gap = False  # feed entries were lost: nothing is folded until the next live_graph
        self._live_t0 = -math.inf
        self._cursor: str | None = None  # the last feed entry folded into the live state
        self._pending: dict[str, list[tuple[str, float | None]]] = {}  # uid -> HTTP pulses waiting for the conn

    # -- reading -------------------------------------------------------------------------------------------------
    async def _pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(commands), FETCH_BATCH):
            out.extend(_raise_errors(await self.store.pipeline(list(commands[i : i + FETCH_BATCH]))))
        return out

    async def time_range(self) -> tuple[float, float] | None:
        return span_from_reply(await self.store.execute(*span_command()))

    async def _active(self, t0: float, t1: float) -> list[ActiveConn]:
        """Connections active in [t0, t1] (the index buckets read are those of the stored span only)."""
        span = await self.time_range()
        if span is None or t0 > t1:
            return []
        lo, hi = max(t0, span[0]), min(t1, span[1] + 0.001)  # span is stored to the microsecond
        if lo > hi:
            return []
        found, examined = active_from_replies(await self._pipeline(active_commands(lo, hi)), t0, t1)
        self.counters["index_entries_examined"] += examined
        return found

    async def _fetch(self, active: Sequence[ActiveConn], *hosts: str,
                     each: Callable[[ConnFacts], Any] | None = None) -> list[ConnFacts]:
        """The facts of these connections (records gone with the retention are skipped); with ``hosts``, only
        the connections between them (a byte test on the packed record first, then the fields). With ``each``,
        each one is handed to it as its batch arrives instead (folding a big window then yields to the reactor
        between batches rather than holding it for the whole window), and the list returned is empty."""
        needles = [h.encode() for h in hosts]
        out: list[ConnFacts] = []
        keep = out.append if each is None else each
        for i in range(0, len(active), FETCH_BATCH):
            chunk = active[i : i + FETCH_BATCH]
            replies = _raise_errors(await self.store.pipeline([conn_command(c.uid) for c in chunk]))
            for c, raw in zip(chunk, replies, strict=True):
                if not isinstance(raw, bytes) or not all(n in raw for n in needles):
                    continue
                try:
                    rec = unpack_record(raw)
                except ValueError:
                    self.counters["bad_conn_records"] += 1
                    continue
                facts = conn_facts(c.uid, rec, c.start) if isinstance(rec, dict) else None
                if facts is not None and all(h in (facts.orig, facts.resp) for h in hosts):
                    keep(facts)
        return out

    async def _read_labels(self, state: GraphState, ips: Sequence[str]) -> None:
        replies = await self._pipeline([name_command(ip) for ip in ips])
        for ip, reply in zip(ips, replies, strict=True):
            pairs = name_pairs(reply)
            state.labels[ip] = pairs[0] if pairs else None

    async def _fold(self, t0: float, t1: float, *, live: bool = False) -> GraphState:
        state = GraphState(self.classifier, track_ends=live)
        await self._fetch(await self._active(t0, t1), each=state.put)
        await self._read_labels(state, list(state.nodes))
        state.clear_touched()
        return state

    # -- interval and live graphs --------------------------------------------------------------------------------
    async def graph(self, t0: float, t1: float) -> Graph:
        return (await self._fold(t0, t1)).graph()

    async def live_graph(self, t0: float | None) -> Graph:
        last = await self.store.execute(*feed_last_command())
        cursor = _decode(last) if last is not None else None
        lo = -math.inf if t0 is None else t0
        state = await self._fold(lo, math.inf, live=True)
        self._live, self._live_t0, self._cursor, self._gap = state, lo, cursor, False
        for uid in [uid for uid in self._pending if uid in state.conns]:
            del self._pending[uid]  # their connection is in the graph already
        return state.graph()

    def lost_events(self) -> None:
        self.counters["lost_events"] += 1  # the core recomputes with live_graph next: nothing to undo here

    # The live state follows the window (see advance): no periodic recompute of a whole window is needed.
    follows_window = True

    async def on_events(self, events: Sequence[tuple[str, str]], graph: Graph) -> Change:
        """Fold the feed entries the events announce (no events: all written so far). Pulses are one per element and
        meaning per call, at the latest event time: a burst flashes an edge once."""
        if events and not any(event == "xadd" for _, event in events):
            return Change()  # only trims (XADD MINID emits xtrim): nothing new, no round trip
        return await self._step(events, graph, None)

    async def advance(self, t0: float | None, graph: Graph) -> Change:
        """Every full-graph period: fold every feed entry written so far (an entry whose event was missed waits for
        this), then take out the connections that ended before the window's new start ``t0``: the live graph
        stays the interval graph from ``t0`` on, and the live state holds only the window's connections."""
        return await self._step((), graph, t0)

    async def _step(self, events: Sequence[tuple[str, str]], graph: Graph, expire_before: float | None) -> Change:
        state = self._live
        if state is None or self._gap:  # no live graph to build on (yet, or since entries were lost)
            return Change()
        state.clear_touched()
        pulses: _Pulses = {}
        latest: float | None = None
        # As many entries after the cursor as xadd events given (each announces one; no events: all there are), in
        # one round trip for most steps. Entries that arrive meanwhile come with events of their own and make diffs
        # of their own, so a fast writer is followed step by step rather than in one diff when it pauses; an entry
        # read ahead of its event leaves that event's step less to read. The cursor folds each entry exactly once.
        left = sum(1 for _, event in events if event == "xadd") if events else math.inf
        while left > 0:
            count = int(min(FEED_READ_COUNT, left))
            entries = await self.store.execute(*feed_read_command(self._cursor, count))
            for entry_id, fields in entries or ():
                t = self._fold_entry(state, _decode(entry_id), fields, pulses)
                if t is not None and (latest is None or t > latest):
                    latest = t
            left -= len(entries or ())
            if not entries or len(entries) < count:
                break
        if expire_before is not None and expire_before > self._live_t0:
            self._live_t0 = expire_before
            self.counters["expired_conns"] += state.expire(expire_before)
        await self._read_labels(state, sorted(ip for ip in state.created_nodes if ip in state.nodes))
        change = Change(t=latest)
        change.pulses = [Pulse(target, on, meaning, t) for (target, on, meaning), t in pulses.items()]
        change.nodes, change.removed_nodes = _touched(state.touched_nodes, state.nodes, state.node, graph.nodes)
        change.edges, change.removed_edges = _touched(state.touched_edges, state.edges, state.edge, graph.edges)
        return change

    def _fold_entry(self, state: GraphState, entry_id: str, fields: Sequence[bytes], pulses: _Pulses) -> float | None:
        """Fold one feed entry into the live state; returns its latest event time."""
        payload = dict(zip(fields[::2], fields[1::2], strict=True)).get(b"c", b"")
        try:
            entry = decode_feed(payload)
        except FeedError as exc:
            self.counters["feed_entries_unreadable"] += 1
            self.log.warn("net_zeek feed entry {id} skipped: {why}", id=entry_id, why=str(exc))
            self._cursor = entry_id
            return None
        if entry.prev != self._cursor:
            self.counters["feed_gaps"] += 1
            self._gap = True  # the core recomputes the live graph on this error; until then nothing is folded
            raise FeedGap(
                f"net_zeek change feed: the entries between {self._cursor} and {entry_id} were trimmed "
                f"before they were read (the viewer lagged more than the feed keeps)"
            )
        self._cursor = entry_id
        self.counters["feed_entries"] += 1
        latest = -math.inf
        t0, put, pending = self._live_t0, state.put, self._pending
        for change in entry.changes:
            if type(change) is ConnFacts:  # the hot path: a new connection
                t = change.start + change.duration if change.duration > 0 else change.start
                waiting = pending.pop(change.uid, None) if pending else None
                if t < t0 + 0.001 and change.index_end < t0:
                    continue  # a late report of a connection that ended before the live window
                put(change)
                eid = change.orig + ">" + change.resp
                _pulse(pulses, eid, "edge", "new", change.start)
                for meaning, when in waiting or ():
                    _pulse(pulses, eid, "edge", meaning, when)
            else:
                t = self._fold_other(state, change, pulses)
            if t is not None and t > latest:
                latest = t
        return latest if latest > -math.inf else None

    def _fold_other(self, state: GraphState, change: Any, pulses: _Pulses) -> float | None:
        """Fold a feed change other than a new connection; returns its event time."""
        if isinstance(change, LongerConn):
            c = change.facts
            waiting = self._pending.pop(c.uid, ())
            if c.index_end < self._live_t0:
                return c.end
            state.put(c)  # replaces the shorter report's contribution, or counts it if the state lacked it
            for waited, when in waiting:
                _pulse(pulses, edge_id(c.orig, c.resp), "edge", waited, when)
            return c.end
        if isinstance(change, HttpReply):
            meaning = _http_meaning(change.status)
            if meaning is not None:
                known = state.conns.get(change.uid)
                if known is not None:
                    _pulse(pulses, edge_id(known.orig, known.resp), "edge", meaning, change.t)
                else:  # Zeek writes a connection when it ends: the response may come first
                    if change.uid not in self._pending and len(self._pending) >= PENDING_MAX:
                        del self._pending[next(iter(self._pending))]
                        self.counters["http_pulses_dropped"] += 1
                    self._pending.setdefault(change.uid, []).append((meaning, change.t))
            return change.t
        if isinstance(change, DnsName):
            if change.ip in state.labels:  # a node whose names were read: keep its top exact
                top = state.labels[change.ip]
                if top is None or (change.t, change.name) > top:
                    state.labels[change.ip] = (change.t, change.name)
                    state.touched_nodes.add(change.ip)
            return change.t
        if isinstance(change, HostAlert):
            for ip in change.hosts:
                if ip in state.nodes:
                    _pulse(pulses, ip, "node", "error", change.t)
            return change.t
        return None

    async def details(self, element_id: str, t0: float, t1: float) -> Details | None:
        return await element_details(self, element_id, t0, t1)

    # -- timeline ------------------------------------------------------------------------------------------------
    async def histogram(self, t0: float, t1: float, bins: int) -> list[dict[str, float]]:
        """Connections and bytes per bin, from the per-minute counters; a minute goes to the bin holding its start
        (one that starts before t0 to the first bin), counted at its connections' start."""
        if bins <= 0 or not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
            return []
        width = (t1 - t0) / bins
        out: list[dict[str, float]] = [
            {"t0": t0 + i * width, "t1": t0 + (i + 1) * width, "conns": 0, "bytes": 0} for i in range(bins)
        ]
        out[-1]["t1"] = t1
        span = await self.time_range()
        if span is None:
            return out
        lo, hi = max(t0, span[0]), min(t1, span[1])
        if lo > hi:
            return out
        minutes = range(int(lo // 60), int(hi // 60) + 1)
        replies = await self._pipeline([("HMGET", f"{PREFIX}hist:{m}", "conns", "bytes") for m in minutes])
        for m, (conns, nbytes) in zip(minutes, replies, strict=True):
            if conns is None and nbytes is None:
                continue
            i = 0 if width <= 0 else min(bins - 1, max(0, int((m * 60 - t0) // width)))
            out[i]["conns"] += int(conns or 0)
            out[i]["bytes"] += int(nbytes or 0)
        return out

