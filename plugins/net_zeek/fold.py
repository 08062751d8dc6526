"""net_zeek's fold: connections (:class:`ConnFacts`) folded into per-node and per-edge accumulators, the
:class:`GraphState` that both the query path and the live path of the view translation (view.py) build their graphs
from, so that they give equal graphs for the same data."""

from __future__ import annotations

import heapq
import math
from typing import Any

from wiredraw.core.graph import Edge, Graph, Node
from wiredraw.plugins.net_zeek.options import HostClassifier
from wiredraw.plugins.net_zeek.query import ConnFacts

__all__ = ["GraphState", "edge_id"]

PORTS_SHOWN = 10  # ports listed on a node or an edge


def edge_id(orig: str, resp: str) -> str:
    return f"{orig}>{resp}"


class _Acc:
    """What an edge and a node both count: bytes, responder ports, and the span of their connections."""

    __slots__ = ("bytes", "ports", "first", "last")

    def __init__(self, first: float, last: float) -> None:
        self.bytes: int | float = 0
        self.ports: dict[int, int] = {}  # responder port -> connections (plain dicts: this is the hot path)
        self.first, self.last = first, last


class _NodeAcc(_Acc):
    __slots__ = ("conns_out", "conns_in")

    def __init__(self, first: float, last: float) -> None:
        super().__init__(first, last)
        self.conns_out = 0
        self.conns_in = 0


class _EdgeAcc(_Acc):
    __slots__ = ("src", "dst", "conns", "services", "protos")

    def __init__(self, src: str, dst: str, first: float, last: float) -> None:
        super().__init__(first, last)
        self.src, self.dst = src, dst
        self.conns = 0
        self.services: dict[str, int] = {}
        self.protos: dict[str, int] = {}


def _less(counts: dict[Any, int], key: Any) -> None:
    if key is not None:
        left = counts.get(key, 0) - 1
        if left > 0:
            counts[key] = left
        else:
            counts.pop(key, None)


def _top_ports(ports: dict[int, int]) -> list[int]:
    if len(ports) <= PORTS_SHOWN:
        return sorted(ports)
    return sorted(p for _, p in heapq.nsmallest(PORTS_SHOWN, ((-n, p) for p, n in ports.items())))


def main_service(services: dict[str, int]) -> str:
    if len(services) <= 1:
        return next(iter(services), "other")
    most = max(services.values())
    return min(name for name, n in services.items() if n == most)


def _sorted_counts(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items())) if len(counts) > 1 else dict(counts)


class GraphState:
    """Connections folded into per-node and per-edge accumulators, with the facts of each uid counted (so a
    repeat is not counted twice and a longer report replaces its contribution) and each node's label.

    first/last only grow: a longer report of a connection (same start, later end) moves them as it should."""

    def __init__(self, classifier: HostClassifier, *, track_ends: bool = False) -> None:
        self.classifier = classifier
        # (index_end, uid) of every connection put, when tracked (the live state): what expire() takes out first.
        # A longer report pushes its new end; the old entry is skipped when it comes up.
        self.ends: list[tuple[float, str]] | None = [] if track_ends else None
        self.conns: dict[str, ConnFacts] = {}
        self.nodes: dict[str, _NodeAcc] = {}
        self.edges: dict[str, _EdgeAcc] = {}
        self.labels: dict[str, tuple[float, str] | None] = {}  # (score, name) of names:{ip}'s top; read ones only
        self.touched_nodes: set[str] = set()  # since the last clear_touched()
        self.touched_edges: set[str] = set()
        self.created_nodes: set[str] = set()

    def clear_touched(self) -> None:
        self.touched_nodes.clear()
        self.touched_edges.clear()
        self.created_nodes.clear()

    def put(self, c: ConnFacts) -> bool:
        """Count ``c`` unless the same uid is counted with at least its duration. True if anything changed."""
        prev = self.conns.get(c.uid)
        if prev is not None:
            if c.duration <= prev.duration:
                return False
            self._remove(prev)
        self.conns[c.uid] = c
        self._add(c)
        if self.ends is not None:
            heapq.heappush(self.ends, (c.index_end, c.uid))
        return True

    def expire(self, t0: float) -> int:
        """Take out every connection that ended before ``t0`` (as the interval index sees it: what an interval
        graph from ``t0`` leaves out); returns how many. Needs ``track_ends``."""
        ends, conns, nodes, edges, n = self.ends, self.conns, self.nodes, self.edges, 0
        assert ends is not None, "expire() needs a GraphState made with track_ends=True"
        stale_edges: set[str] = set()  # elements that may have lost the connection that started first
        stale_nodes: set[str] = set()
        while ends and ends[0][0] < t0:
            end, uid = heapq.heappop(ends)
            c = conns.get(uid)
            if c is not None and c.index_end == end:
                del conns[uid]
                self._remove(c)
                n += 1
                e = edges.get(c.orig + ">" + c.resp)
                if e is not None and c.start <= e.first:
                    stale_edges.add(c.orig + ">" + c.resp)
                for ip in (c.orig, c.resp):
                    node = nodes.get(ip)
                    if node is not None and c.start <= node.first:
                        stale_nodes.add(ip)
        if stale_edges or stale_nodes:
            # first = the earliest start of the connections left (last needs nothing: those left ended later than
            # any taken out); one pass over the window's connections, no Redis
            first_e = dict.fromkeys((eid for eid in stale_edges if eid in edges), math.inf)  # (some went since)
            first_n = dict.fromkeys((ip for ip in stale_nodes if ip in nodes), math.inf)
            for c in conns.values():
                start = c.start
                if first_e:
                    eid = c.orig + ">" + c.resp
                    if eid in first_e and start < first_e[eid]:
                        first_e[eid] = start
                for ip in (c.orig, c.resp):
                    if ip in first_n and start < first_n[ip]:
                        first_n[ip] = start
            for eid, first in first_e.items():
                edges[eid].first = first
            for ip, first in first_n.items():
                nodes[ip].first = first
        return n

    def _add(self, c: ConnFacts) -> None:
        orig, resp, start, nbytes = c.orig, c.resp, c.start, c.bytes
        port = c.port if c.proto != "icmp" else None  # Zeek's ICMP "ports" are type and code
        end = c.end
        eid = orig + ">" + resp
        e = self.edges.get(eid)
        if e is None:
            e = self.edges[eid] = _EdgeAcc(orig, resp, start, end)
        e.conns += 1
        if c.service is not None:
            e.services[c.service] = e.services.get(c.service, 0) + 1
        if port is not None:
            e.ports[port] = e.ports.get(port, 0) + 1
        if c.proto is not None:
            e.protos[c.proto] = e.protos.get(c.proto, 0) + 1
        self.touched_edges.add(eid)
        nodes = self.nodes
        o = nodes.get(orig)
        if o is None:
            o = nodes[orig] = _NodeAcc(start, end)
            self.created_nodes.add(orig)
        r = nodes.get(resp)
        if r is None:  # (orig == resp: r is o)
            r = nodes[resp] = _NodeAcc(start, end)
            self.created_nodes.add(resp)
        o.conns_out += 1
        r.conns_in += 1
        if port is not None:
            r.ports[port] = r.ports.get(port, 0) + 1
        self.touched_nodes.add(orig)
        self.touched_nodes.add(resp)
        for acc in (e, o, r) if r is not o else (e, o):  # the connection's bytes, and its span, to each element
            if start < acc.first:
                acc.first = start
            if end > acc.last:
                acc.last = end
            acc.bytes += nbytes

    def _remove(self, c: ConnFacts) -> None:
        """Take back what :meth:`_add` counted for ``c`` (an element left with no connection goes)."""
        eid = edge_id(c.orig, c.resp)
        e = self.edges[eid]
        port = c.port if c.proto != "icmp" else None
        e.bytes -= c.bytes
        e.conns -= 1
        _less(e.services, c.service)
        _less(e.ports, port)
        _less(e.protos, c.proto)
        if e.conns <= 0:
            del self.edges[eid]
        self.touched_edges.add(eid)
        for ip in (c.orig, c.resp) if c.orig != c.resp else (c.orig,):
            n = self.nodes[ip]
            n.bytes -= c.bytes
            if ip == c.orig:
                n.conns_out -= 1
            if ip == c.resp:
                n.conns_in -= 1
                _less(n.ports, port)
            if n.conns_out <= 0 and n.conns_in <= 0:
                del self.nodes[ip]
                self.labels.pop(ip, None)  # read again if the host comes back
            self.touched_nodes.add(ip)

    def label(self, ip: str) -> str:
        top = self.labels.get(ip)
        return top[1] if top is not None else ip

    def node(self, ip: str) -> Node:
        n = self.nodes[ip]
        category, group = self.classifier.classify(ip)
        return Node(
            ip,
            "host",
            self.label(ip),
            float(n.bytes),
            category,
            group,
            n.first,
            n.last,
            {"bytes": n.bytes, "conns_out": n.conns_out, "conns_in": n.conns_in, "ports": _top_ports(n.ports)},
        )

    def edge(self, eid: str) -> Edge:
        e = self.edges[eid]
        service = main_service(e.services)
        protos = e.protos
        attrs = {
            "bytes": e.bytes,
            "conns": e.conns,
            "service": service,
            "services": _sorted_counts(e.services),
            "ports": _top_ports(e.ports),
            "proto": "/".join(sorted(protos)) if len(protos) > 1 else next(iter(protos), ""),
        }
        return Edge(eid, e.src, e.dst, True, float(e.bytes), service, "", "conn", e.first, e.last, attrs)

    def graph(self) -> Graph:
        return Graph((self.node(ip) for ip in self.nodes), (self.edge(eid) for eid in self.edges))
