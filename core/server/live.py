"""The live graph of each module, and what each viewer sees of it.

:class:`ModuleFeed` keeps one module's live graph: keyspace events are batched (a few ms) and handed to the
module's translation one batch at a time; the resulting :class:`Change` is applied to the graph and fanned out
to every live subscriber. Every ``full_every`` seconds every subscriber gets the graph whole (elements that fell
out of the live window pruned first); at start, after the keyspace subscription was cut, after a failed
translation, and every ``RECOMPUTE_EVERY``-th period it is recomputed from Redis first: that is how lost
notifications are recovered (a recompute of a busy window costs seconds, so not every period). A module whose
translation follows the window itself (``ModuleView.follows_window``) is asked to ``advance`` it every period
instead of the periodic recompute. Every operation on a feed runs under one lock, in order.

:class:`ClientView` is one viewer's filter over a graph: the elements it shows, so that a change becomes the
right upserts and removals for that viewer (an edge shows when it passes the filter; a node when it passes or
is an endpoint of a shown edge).
"""

from __future__ import annotations

import gc
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import msgpack
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from wiredraw.core.graph import Change, Edge, Graph, ModuleView, Node, element_attrs
from wiredraw.core.server.redis_client import NotConnected
from wiredraw.core.viewer_protocol import HEADER

Matcher = Callable[[Mapping[str, Any]], bool]

EVENT_BATCH_DELAY = 0.005  # seconds: events arriving within this are translated together
EVENT_BATCH_MAX = 500
RECOMPUTE_EVERY = 10  # every 10th periodic full graph is recomputed from Redis; the others resend the live one


def settle_gc() -> None:
    """After a recompute: collect once, then freeze what is left (the live graph, the server's own structures) out
    of the collector's sight. Full collections otherwise walk the whole live graph again and again while records
    stream in, stalling acks and diffs for up to half a second each (bench/latency.py measured it); frozen objects
    are still freed by reference counting when a later recompute replaces them. Unfreezing first lets this
    collection find cycles frozen last time (a closed session and its transport), so nothing leaks for good.

    Each translation step freezes again (``gc.freeze()`` costs the same however much it moves): what the graph
    gained since is long-lived, and left in the young generations it made every gen-1 collection walk the last
    few seconds of growth (80 ms at 10,000 records/s). Cycles that became garbage meanwhile wait for the next
    recompute, or for a feed whose module follows its window, the collection every RECOMPUTE_EVERY-th period;
    the server makes few (tens per minute under load)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ClientView:
    """What one viewer shows of a graph, through its filter (None: everything)."""

    def __init__(self, match: Matcher | None) -> None:
        self.match = match
        self.nodes: set[str] = set()
        self.edges: dict[str, tuple[str, str]] = {}
        self._deg: Counter[str] = Counter()

    def _edge_ok(self, e: Edge) -> bool:
        return self.match is None or self.match(element_attrs(e))

    def _node_ok(self, n: Node) -> bool:
        return self.match is None or self._deg[n.id] > 0 or self.match(element_attrs(n))

    def _show_edge(self, e: Edge) -> None:
        self.edges[e.id] = (e.src, e.dst)
        self._deg[e.src] += 1
        self._deg[e.dst] += 1

    def _hide_edge(self, eid: str) -> tuple[str, str]:
        src, dst = self.edges.pop(eid)
        for nid in (src, dst):
            self._deg[nid] -= 1
            if self._deg[nid] <= 0:
                del self._deg[nid]
        return src, dst

    def full(self, graph: Graph) -> dict[str, Any]:
        """The whole filtered graph (wire form); resets what this view shows."""
        self.nodes.clear()
        self.edges.clear()
        self._deg.clear()
        edges = [e for e in graph.edges.values() if self._edge_ok(e)]
        for e in edges:
            self._show_edge(e)
        nodes = [n for n in graph.nodes.values() if self._node_ok(n)]
        self.nodes = {n.id for n in nodes}
        return {"nodes": [n.to_wire() for n in nodes], "edges": [e.to_wire() for e in edges]}

    def change(self, graph: Graph, change: Change, removed: list[Edge]) -> dict[str, Any] | None:
        """This viewer's diff (wire form) for ``change``, already applied to ``graph`` (``removed``: the edges the
        apply removed); None when the viewer sees nothing of it."""
        up_nodes: dict[str, Node] = {}
        up_edges: dict[str, Edge] = {}
        rm_nodes: list[str] = []
        rm_edges: list[str] = []
        changed_nodes = {n.id for n in change.nodes}
        touched = set(changed_nodes)
        touched.update(change.removed_nodes)
        for e in removed:
            if e.id in self.edges:
                touched.update(self._hide_edge(e.id))
                rm_edges.append(e.id)
        for e in change.edges:
            cur = graph.edges.get(e.id)
            if cur is None:
                continue
            shown = cur.id in self.edges
            if self._edge_ok(cur):
                if not shown:
                    self._show_edge(cur)
                    touched.update((cur.src, cur.dst))
                up_edges[cur.id] = cur
            elif shown:
                touched.update(self._hide_edge(cur.id))
                rm_edges.append(cur.id)
        for nid in touched:
            n = graph.nodes.get(nid)
            if n is not None and self._node_ok(n):
                if nid not in self.nodes or nid in changed_nodes:
                    self.nodes.add(nid)
                    up_nodes[nid] = n
            elif nid in self.nodes:
                self.nodes.discard(nid)
                rm_nodes.append(nid)
        pulses = [p.to_wire() for p in change.pulses
                  if (p.target in self.edges if p.on == "edge" else p.target in self.nodes)]
        if not (up_nodes or up_edges or rm_nodes or rm_edges or pulses):
            return None
        return {"nodes": [n.to_wire() for n in up_nodes.values()], "edges": [e.to_wire() for e in up_edges.values()],
                "removed_nodes": rm_nodes, "removed_edges": rm_edges, "pulses": pulses}


class PackCache:
    """Each live-graph element's msgpack bytes, packed once per element object: a diff packs what changed, and
    the periodic full graph is then a join of bytes already packed (100,000 edges: tens of ms instead of most of
    a second per viewer). An entry is valid while its element is the very object the graph holds; elements a
    change names are packed afresh (a module may have updated an object in place)."""

    def __init__(self) -> None:
        self._nodes: dict[str, tuple[Node, bytes]] = {}  # id -> (the element object packed, its bytes)
        self._edges: dict[str, tuple[Edge, bytes]] = {}
        self._packer = msgpack.Packer(use_bin_type=True)

    def node(self, n: Node) -> bytes:
        return self._packed(self._nodes, n)

    def edge(self, e: Edge) -> bytes:
        return self._packed(self._edges, e)

    def _packed(self, table: dict[str, Any], element: Node | Edge) -> bytes:
        hit = table.get(element.id)
        if hit is not None and hit[0] is element:
            return hit[1]
        b: bytes = self._packer.pack(element.to_wire())
        table[element.id] = (element, b)
        return b

    def forget(self, change: Change, removed: list[Edge]) -> None:
        for n in change.nodes:
            self._nodes.pop(n.id, None)
        for nid in change.removed_nodes:
            self._nodes.pop(nid, None)
        for e in change.edges:
            self._edges.pop(e.id, None)
        for e in removed:
            self._edges.pop(e.id, None)

    def clear(self) -> None:
        self._nodes.clear()
        self._edges.clear()


def _array(packer: msgpack.Packer, items: list[bytes]) -> bytes:
    """A msgpack array of already packed items (an array is its header followed by its items)."""
    return packer.pack_array_header(len(items)) + b"".join(items)


class SharedDiff:
    """One change as every unfiltered viewer sees it: built and packed once per change, not once per viewer (only
    ``seq`` differs, spliced in front of the shared part; spec/viewer.md "diff")."""

    def __init__(self, graph: Graph, change: Change, removed: list[Edge], cache: PackCache | None = None) -> None:
        self.graph, self.change, self.removed = graph, change, removed
        self.cache = cache if cache is not None else PackCache()
        self._pairs: bytes | None = None
        self._count = 0

    def frame(self, seq: int, t: float | None) -> bytes:
        """The whole frame for one viewer: a map header for the entries, ``type`` and ``seq``, then the shared
        key/value pairs packed once (a msgpack map is its header followed by its pairs)."""
        packer = msgpack.Packer(use_bin_type=True)
        if self._pairs is None:
            g, ch, cache = self.graph, self.change, self.cache
            pk = packer.pack
            self._count = 6
            self._pairs = b"".join((
                pk("t"), pk(t),
                pk("nodes"), _array(packer, [cache.node(n) for n in ch.nodes if g.nodes.get(n.id) is n]),
                pk("edges"), _array(packer, [cache.edge(e) for e in ch.edges if g.edges.get(e.id) is e]),
                pk("removed_nodes"), pk([nid for nid in ch.removed_nodes if nid not in g.nodes]),
                pk("removed_edges"), pk([e.id for e in self.removed]),
                pk("pulses"), pk([p.to_wire() for p in ch.pulses
                                  if (p.target in g.edges if p.on == "edge" else p.target in g.nodes)]),
            ))
        body = (packer.pack_map_header(self._count + 2) + packer.pack("type") + packer.pack("diff")
                + packer.pack("seq") + packer.pack(seq) + self._pairs)
        return HEADER.pack(len(body)) + body


class LiveSubscriber:
    """What a feed needs of a live viewer session."""

    def live_full(self, feed: ModuleFeed, reason: str) -> None: ...

    def live_change(self, feed: ModuleFeed, change: Change, removed: list[Edge], shared: SharedDiff) -> None: ...


class ModuleFeed:
    """One module's live graph on this server (see the module docstring)."""

    log = Logger()

    def __init__(self, slug: str, view: ModuleView, clock: Any, *, window: float, full_every: float) -> None:
        self.slug, self.view, self.clock = slug, view, clock
        self.window, self.full_every = window, full_every
        self.graph = Graph()
        self.ready = False  # the first full recompute is done
        self.latest: float | None = None  # the latest event time known (from the module's time range)
        self.subscribers: set[LiveSubscriber] = set()
        self.lock = defer.DeferredLock()
        self._pending: list[tuple[str, str]] = []
        self._flush_call: Any = None
        self._loop: LoopingCall | None = None
        # the counters /stats shows are there from the start (0), so a reader never meets a missing one
        self.counters: Counter[str] = Counter(dict.fromkeys(("events", "changes", "advances", "refreshes"), 0))
        self._periods = 0
        self.packs = PackCache()
        self._full_pairs: bytes | None = None  # the live graph's nodes and edges, packed (None: changed since)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        loop = LoopingCall(self.periodic)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.full_every, now=False).addErrback(lambda f: self.log.failure("periodic graph", f))

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()

    def subscription_ready(self, first: bool) -> None:
        """The keyspace subscription is (re)established: recompute (events may have been missed)."""
        if not first:
            self.view.lost_events()
        self.refresh("start" if first else "resync")

    # -- events ----------------------------------------------------------------------------------------------
    def on_event(self, key: str, event: str) -> None:
        self._pending.append((key, event))
        self.counters["events"] += 1
        if len(self._pending) >= EVENT_BATCH_MAX:
            self._flush()
        elif self._flush_call is None or not self._flush_call.active():
            self._flush_call = self.clock.callLater(EVENT_BATCH_DELAY, self._flush)

    def _flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        events, self._pending = self._pending, []
        if events:
            self.lock.run(self._translate, events)

    @defer.inlineCallbacks
    def _translate(self, events: list[tuple[str, str]]) -> Any:
        if not self.ready:
            return  # the coming full recompute includes them
        try:
            change = yield defer.Deferred.fromCoroutine(self.view.on_events(events, self.graph))
        except NotConnected as exc:  # Redis is away: the resync after it is back recovers the events
            self.counters["translate_errors"] += 1
            self.log.warn("module {slug}: {n} events not translated ({why}); recomputing the graph",
                          slug=self.slug, n=len(events), why=str(exc))
            self.clock.callLater(0, self.refresh, "resync")
            return
        except Exception:
            self.counters["translate_errors"] += 1
            self.log.failure("module {slug}: translating {n} events failed; recomputing the graph",
                             slug=self.slug, n=len(events))
            self.clock.callLater(0, self.refresh, "resync")
            return
        self._publish(change)

    def _publish(self, change: Change) -> None:
        """Apply a translation's change to the live graph and send it to every live subscriber."""
        if change.t is not None and (self.latest is None or change.t > self.latest):
            self.latest = change.t
        if not change:
            return
        removed = self.graph.apply(change)
        self.packs.forget(change, removed)
        self._full_pairs = None
        self.counters["changes"] += 1
        shared = SharedDiff(self.graph, change, removed, self.packs)
        for sub in list(self.subscribers):
            sub.live_change(self, change, removed, shared)
        gc.freeze()  # what this step added to the live graph is long-lived too (see settle_gc)

    # -- full graph ------------------------------------------------------------------------------------------
    def periodic(self) -> defer.Deferred[Any]:
        self._periods += 1
        if not self.ready or (self._periods % RECOMPUTE_EVERY == 0 and not self.view.follows_window):
            return self.refresh("periodic")
        d = self.lock.run(self._resend)
        if self._periods % RECOMPUTE_EVERY == 0:
            # no recompute collects what the steps froze (settle_gc), so do it here: cycles that became garbage
            # are freed every RECOMPUTE_EVERY periods, not never (one full collection: ~0.1 s at 100k edges)
            d.addCallback(lambda _: settle_gc())
        return d

    @defer.inlineCallbacks
    def _resend(self) -> Any:
        """The live graph to every subscriber, after dropping what left the live window (a module that follows
        the window says what first, sent as a diff)."""
        if self.view.follows_window and self.ready:
            iv = self.interval()
            t0 = iv[0] if iv is not None and self.window > 0 else None
            try:
                change = yield defer.Deferred.fromCoroutine(self.view.advance(t0, self.graph))
            except Exception:
                self.counters["translate_errors"] += 1
                self.log.failure("module {slug}: moving the live window failed; recomputing the graph",
                                 slug=self.slug)
                self.clock.callLater(0, self.refresh, "resync")
                return
            self._publish(change)
            self.counters["advances"] += 1
        iv = self.interval()
        if iv is not None and self.window > 0:
            t0 = iv[0]
            gone_edges = [e.id for e in self.graph.edges.values() if e.last is not None and e.last < t0]
            self.packs.forget(Change(), self.graph.apply(Change(removed_edges=gone_edges)))
            linked = {n for e in self.graph.edges.values() for n in (e.src, e.dst)}
            gone_nodes = [n.id for n in self.graph.nodes.values()
                          if n.id not in linked and n.last is not None and n.last < t0]
            self.graph.apply(Change(removed_nodes=gone_nodes))
            self.packs.forget(Change(removed_nodes=gone_nodes), [])
            if gone_edges or gone_nodes:
                self._full_pairs = None
            self.counters["pruned"] += len(gone_edges) + len(gone_nodes)
        for sub in list(self.subscribers):
            sub.live_full(self, "periodic")

    def refresh(self, reason: str) -> defer.Deferred[Any]:
        return self.lock.run(self._refresh, reason)

    @defer.inlineCallbacks
    def _refresh(self, reason: str) -> Any:
        started = time.perf_counter()
        try:
            span = yield defer.Deferred.fromCoroutine(self.view.time_range())
            t0 = None
            if span is not None:
                self.latest = span[1]
                if self.window > 0:
                    t0 = span[1] - self.window
            graph = yield defer.Deferred.fromCoroutine(self.view.live_graph(t0))
        except NotConnected as exc:
            self.counters["refresh_errors"] += 1
            self.log.warn("module {slug}: no live graph now ({why}; next try in {s} s)", slug=self.slug,
                          why=str(exc), s=self.full_every)
            return
        except Exception:
            self.counters["refresh_errors"] += 1
            self.log.failure("module {slug}: computing the live graph failed (next try in {s} s)",
                             slug=self.slug, s=self.full_every)
            return
        self.graph = graph
        self.packs.clear()
        self._full_pairs = None
        self.ready = True
        settle_gc()
        self.counters["refreshes"] += 1
        self.counters["refresh_ms_last"] = int((time.perf_counter() - started) * 1000)
        for sub in list(self.subscribers):
            sub.live_full(self, reason)

    def full_frame(self, seq: int, reason: str) -> list[bytes]:
        """The live graph whole, as every unfiltered live viewer gets it (spec/viewer.md "graph"), as the parts of
        one frame: its nodes and edges are packed once per version of the graph, from elements already packed,
        and shared, not copied (tens of MB for a big graph); only the header is per viewer."""
        packer = msgpack.Packer(use_bin_type=True)
        if self._full_pairs is None:
            packs, pk = self.packs, packer.pack
            self._full_pairs = b"".join((
                pk("nodes"), _array(packer, [packs.node(n) for n in self.graph.nodes.values()]),
                pk("edges"), _array(packer, [packs.edge(e) for e in self.graph.edges.values()]),
            ))
        iv = self.interval()
        t0 = iv[0] if iv is not None and not math.isinf(iv[0]) else None
        head = {"type": "graph", "seq": seq, "module": self.slug, "mode": "live", "reason": reason,
                "t": self.latest, "t0": t0, "t1": self.latest}
        start = packer.pack_map_header(len(head) + 2) + b"".join(packer.pack(k) + packer.pack(v)
                                                                 for k, v in head.items())
        return [HEADER.pack(len(start) + len(self._full_pairs)) + start, self._full_pairs]

    def interval(self) -> tuple[float, float] | None:
        """The live window as an interval, when anything is stored."""
        if self.latest is None:
            return None
        return (self.latest - self.window if self.window > 0 else float("-inf")), self.latest
