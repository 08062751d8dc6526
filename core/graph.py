"""The generic graph vocabulary (DESIGN.md §5) and the module-side view interface.

Every module's view translation speaks this vocabulary; the core never knows what a node *is*. On the wire
(spec/viewer.md) each element is a plain msgpack/JSON map: :meth:`Node.to_wire` / :meth:`Edge.to_wire` and back.

- :class:`Node`: id, kind, label, size, category (drives color), group (drives clustering), first/last
  (event times of its activity), attrs (small: numbers, strings, short lists).
- :class:`Edge`: id, src, dst, directed, weight (drives thickness), category, label, kind, first/last, attrs.
- :class:`Pulse`: a transient highlight of a node or an edge with a meaning: ``ok``, ``error`` or ``new``.
- :class:`Details`: a title and sections, each a key/value table or a raw record.
- :class:`Graph`: nodes and edges by id, with :meth:`Graph.diff` and :meth:`Graph.apply`.
- :class:`Change`: what a translation step produced: elements upserted (whole), ids removed, pulses; on the wire,
  a viewer's ``diff`` (:meth:`Change.from_wire`).
- :func:`apply_diff`: what a diff does to a graph (spec/viewer.md "diff"), the one rule for every copy of a graph:
  the server's live :class:`Graph`, the reference client's mirror and the viewer's model (a :class:`DiffTarget`).
- :class:`ModuleView`: what a module implements so the server can answer live, at-t and interval views.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar

__all__ = ["Change", "Details", "DiffTarget", "Edge", "Graph", "ModuleView", "Node", "Pulse", "Section",
           "apply_diff", "element_attrs", "fade_option", "hash_fields", "view_options"]

PULSE_MEANINGS: tuple[str, ...] = ("ok", "error", "new")


@dataclass
class Node:
    id: str
    kind: str = "node"
    label: str = ""
    size: float = 1.0
    category: str = ""
    group: str = ""
    first: float | None = None
    last: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "label": self.label, "size": self.size, "category": self.category,
            "group": self.group, "first": self.first, "last": self.last, "attrs": self.attrs,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Node:
        return cls(str(d["id"]), str(d.get("kind", "node")), str(d.get("label", "")), float(d.get("size", 1.0)),
                   str(d.get("category", "")), str(d.get("group", "")), d.get("first"), d.get("last"),
                   dict(d.get("attrs") or {}))


@dataclass
class Edge:
    id: str
    src: str
    dst: str
    directed: bool = True
    weight: float = 1.0
    category: str = ""
    label: str = ""
    kind: str = "edge"
    first: float | None = None
    last: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "src": self.src, "dst": self.dst, "directed": self.directed, "weight": self.weight,
            "category": self.category, "label": self.label, "kind": self.kind, "first": self.first,
            "last": self.last, "attrs": self.attrs,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Edge:
        return cls(str(d["id"]), str(d["src"]), str(d["dst"]), bool(d.get("directed", True)),
                   float(d.get("weight", 1.0)), str(d.get("category", "")), str(d.get("label", "")),
                   str(d.get("kind", "edge")), d.get("first"), d.get("last"), dict(d.get("attrs") or {}))


@dataclass(frozen=True)
class Pulse:
    target: str  # a node or edge id
    on: Literal["node", "edge"]
    meaning: str  # one of PULSE_MEANINGS
    t: float | None = None  # event time, when known

    def to_wire(self) -> dict[str, Any]:
        return {"target": self.target, "on": self.on, "meaning": self.meaning, "t": self.t}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Pulse:
        return cls(str(d["target"]), "edge" if d.get("on") == "edge" else "node", str(d.get("meaning", "new")),
                   d.get("t"))


@dataclass
class Section:
    """One part of a details panel: ``kind`` "table" (``rows``: [key, value] pairs) or "record" (``record``:
    a whole record, e.g. one Zeek log line, field -> value)."""

    title: str
    kind: Literal["table", "record"] = "table"
    rows: list[list[Any]] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    t: float | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"title": self.title, "kind": self.kind, "t": self.t}
        if self.kind == "table":
            out["rows"] = self.rows
        else:
            out["record"] = self.record
        return out


@dataclass
class Details:
    id: str
    title: str
    on: Literal["node", "edge"]
    sections: list[Section] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "on": self.on, "sections": [s.to_wire() for s in self.sections]}


def element_attrs(element: Node | Edge) -> dict[str, Any]:
    """What a filter expression sees: the element's own fields, then its ``attrs`` (which never shadow them).
    ``type`` is "node" or "edge"."""
    wire = element.to_wire()
    attrs = wire.pop("attrs")
    out = {k: v for k, v in attrs.items() if k not in wire}
    out.update(wire)
    out["type"] = "node" if isinstance(element, Node) else "edge"
    return out


@dataclass
class Change:
    """One translation step: whole elements to upsert (by id), ids to remove, pulses to show."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    removed_nodes: list[str] = field(default_factory=list)
    removed_edges: list[str] = field(default_factory=list)
    pulses: list[Pulse] = field(default_factory=list)
    t: float | None = None  # the latest event time this step saw

    def __bool__(self) -> bool:
        return bool(self.nodes or self.edges or self.removed_nodes or self.removed_edges or self.pulses)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Change:
        """A ``diff`` message (spec/viewer.md) as a change; absent lists are empty."""
        return cls(list(map(Node.from_wire, d.get("nodes") or ())), list(map(Edge.from_wire, d.get("edges") or ())),
                   [str(i) for i in d.get("removed_nodes") or ()], [str(i) for i in d.get("removed_edges") or ()],
                   list(map(Pulse.from_wire, d.get("pulses") or ())), d.get("t"))


N = TypeVar("N", contravariant=True)  # (only taken in)
E = TypeVar("E")


class DiffTarget(Protocol[N, E]):
    """A copy of a graph that :func:`apply_diff` edits, holding nodes of type ``N`` and edges of type ``E`` (a
    :class:`Graph`'s :class:`Node` and :class:`Edge`; the viewer's model keeps wire dicts) with its own indexes."""

    def put_nodes(self, nodes: Iterable[N]) -> None:
        """Insert each node, or replace the one with its id."""

    def put_edges(self, edges: Iterable[E]) -> None:
        """Insert each edge, or replace the one with its id."""

    def pop_edges(self, edge_ids: Iterable[str]) -> list[E]:
        """Remove the edges with these ids (ids it does not hold are skipped); the ones removed, in that order."""
        ...

    def edges_at(self, node_ids: Iterable[str]) -> list[str]:
        """Ids of the edges whose src or dst is one of these nodes."""
        ...

    def pop_nodes(self, node_ids: Iterable[str]) -> None:
        """Remove the nodes with these ids (ids it does not hold are skipped); none has an edge left."""


def apply_diff(target: DiffTarget[N, E], nodes: Iterable[N], edges: Iterable[E], removed_edges: Iterable[str],
               removed_nodes: Sequence[str]) -> list[E]:
    """What a diff does (spec/viewer.md "diff"), in its order: upsert nodes, upsert edges (each element is whole and
    replaces the one with its id), remove edges, remove nodes, a removed node's edges with it. Ids the graph does
    not hold are skipped. Returns the edges removed: those named, then those that went with a node."""
    target.put_nodes(nodes)
    target.put_edges(edges)
    removed = target.pop_edges(removed_edges)
    if removed_nodes:
        removed += target.pop_edges(target.edges_at(removed_nodes))
        target.pop_nodes(removed_nodes)
    return removed


class Graph:
    """Nodes and edges by id. An edge's endpoints are always nodes of the graph (:meth:`check`)."""

    def __init__(self, nodes: Iterable[Node] = (), edges: Iterable[Edge] = ()) -> None:
        self.nodes: dict[str, Node] = {n.id: n for n in nodes}
        self.edges: dict[str, Edge] = {e.id: e for e in edges}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self.nodes == other.nodes and self.edges == other.edges

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes, {len(self.edges)} edges)"

    def copy(self) -> Graph:
        return Graph(self.nodes.values(), self.edges.values())

    def check(self) -> None:
        for e in self.edges.values():
            if e.src not in self.nodes or e.dst not in self.nodes:
                raise ValueError(f"edge {e.id!r} has an endpoint that is not a node")

    def apply(self, change: Change) -> list[Edge]:
        """The change, by :func:`apply_diff`: upserts first, then removals; removing a node removes its edges too.
        Returns the edges removed."""
        return apply_diff(self, change.nodes, change.edges, change.removed_edges, change.removed_nodes)

    # -- DiffTarget --------------------------------------------------------------------------------------------
    def put_nodes(self, nodes: Iterable[Node]) -> None:
        for n in nodes:
            self.nodes[n.id] = n

    def put_edges(self, edges: Iterable[Edge]) -> None:
        for e in edges:
            self.edges[e.id] = e

    def pop_edges(self, edge_ids: Iterable[str]) -> list[Edge]:
        edges = self.edges
        return [edges.pop(eid) for eid in edge_ids if eid in edges]

    def edges_at(self, node_ids: Iterable[str]) -> list[str]:
        gone = {nid for nid in node_ids if nid in self.nodes}
        if not gone:
            return []
        return [eid for eid, e in self.edges.items() if e.src in gone or e.dst in gone]

    def pop_nodes(self, node_ids: Iterable[str]) -> None:
        for nid in node_ids:
            self.nodes.pop(nid, None)

    def diff(self, new: Graph) -> Change:
        """The change that turns this graph into ``new`` (elements that differ in any field are upserted)."""
        return Change(
            nodes=[n for nid, n in new.nodes.items() if self.nodes.get(nid) != n],
            edges=[e for eid, e in new.edges.items() if self.edges.get(eid) != e],
            removed_nodes=[nid for nid in self.nodes if nid not in new.nodes],
            removed_edges=[eid for eid in self.edges if eid not in new.edges],
        )

    def to_wire(self) -> dict[str, Any]:
        return {"nodes": [n.to_wire() for n in self.nodes.values()],
                "edges": [e.to_wire() for e in self.edges.values()]}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Graph:
        return cls(map(Node.from_wire, d.get("nodes") or ()), map(Edge.from_wire, d.get("edges") or ()))


def hash_fields(reply: Any) -> dict[str, str]:
    """An HGETALL reply from the store (RESP2's flat list, or a map) as text field -> text value; {} for none."""
    if not reply or isinstance(reply, Exception):
        return {}
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    return {_text(k): _text(v) for k, v in pairs}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def view_options(slug: str, options: Mapping[str, Any] | None, names: Sequence[str]) -> dict[str, Any]:
    """A module's table of the server's ``--viz-config`` as a dict, refusing names it does not take (the
    ValueError says which, and what it takes: the server prints it and does not start)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"unknown option {', '.join(unknown)} ({slug} takes {', '.join(names)})")
    return options


def fade_option(options: Mapping[str, Any], default: float) -> float:
    """The ``fade`` option (seconds an ended element stays, fading): a number >= 0."""
    fade = options.get("fade", default)
    if isinstance(fade, bool) or not isinstance(fade, int | float) or not 0 <= fade < math.inf:
        raise ValueError(f"fade: expected seconds >= 0, got {fade!r}")
    return float(fade)


class ModuleView:
    """A module's view translation, one instance per server, created by :meth:`Module.make_view`.

    ``store`` is the server's Redis client: ``await store.execute(*cmd)`` and ``await store.pipeline(cmds)``
    (Deferreds; replies are bytes). All methods are coroutines. :meth:`on_events`, :meth:`live_graph` and
    :meth:`lost_events` are called one at a time per module (under the live feed's lock) and may keep live state;
    the query methods (:meth:`graph`, :meth:`details`, :meth:`time_range`, :meth:`histogram`) answer viewers'
    requests and may run at any time, concurrently with those: they must not touch that live state. All may read
    Redis; none may write to it.

    Times are event times (epoch seconds, from the data). An interval graph holds every node and edge
    active anywhere in [t0, t1]; the live graph (kept by the core) is the graph of the live window, grown by
    :meth:`on_events` between periodic full recomputes.
    """

    #: Glob patterns of keys (under the module's prefix) whose keyspace events :meth:`on_events` wants.
    watch_keys: ClassVar[Sequence[str]] = ()
    #: True when :meth:`advance` keeps the live graph exact as the live window moves on: the core then calls it
    #: every full-graph period instead of recomputing the live graph from Redis every RECOMPUTE_EVERY-th period
    #: (core/server/live.py), which re-reads the whole window and holds every diff meanwhile (seconds to minutes on a
    #: busy sensor). A recompute still follows a lost subscription or a failed translation.
    follows_window: ClassVar[bool] = False
    #: Node and edge kinds this module produces (declared for `wiredraw plugins` and the conformance suite).
    node_kinds: ClassVar[Sequence[str]] = ()
    edge_kinds: ClassVar[Sequence[str]] = ()

    def __init__(self, store: Any, options: Mapping[str, Any]) -> None:
        self.store = store
        self.options = options

    async def live_graph(self, t0: float | None) -> Graph:
        """The live graph: every node and edge active from ``t0`` on (None: everything stored). The core calls it
        at start, every full-graph period and after lost events; what :meth:`on_events` returns next must build
        on exactly this graph (a translation that keeps its own bookkeeping resets it here, so nothing read here
        is counted again by a later event)."""
        return await self.graph(-math.inf if t0 is None else t0, math.inf)

    async def on_events(self, events: Sequence[tuple[str, str]], graph: Graph) -> Change:
        """Keyspace events ``(key, event)`` in arrival order, at most a few hundred at once. Return the change
        to the live ``graph`` (read it, do not mutate it: the core applies the change)."""
        return Change()

    async def advance(self, t0: float | None, graph: Graph) -> Change:
        """Only with :attr:`follows_window`: the live window now starts at ``t0`` (None: it holds everything).
        Return the change that takes out what no longer counts (everything that ended before ``t0``) and brings in
        anything stored whose events were missed, so that the live graph equals :meth:`live_graph` ``(t0)``.
        Called once per full-graph period, under the same lock as :meth:`on_events`."""
        return Change()

    async def graph(self, t0: float, t1: float) -> Graph:
        """Every node and edge active in [t0, t1] (t0 == t1: at that instant)."""
        raise NotImplementedError

    async def details(self, element_id: str, t0: float, t1: float) -> Details | None:
        """Details of a node or edge id; ``t0``..``t1`` is the interval the viewer is looking at."""
        return None

    async def time_range(self) -> tuple[float, float] | None:
        """Earliest and latest event time stored, or None when nothing is."""
        return None

    async def histogram(self, t0: float, t1: float, bins: int) -> list[dict[str, float]]:
        """``bins`` equal bins over [t0, t1]: each a map with ``t0``, ``t1`` and the module's counters."""
        return []

    def lost_events(self) -> None:
        """The keyspace-event subscription was cut: events may have been missed (a full recompute follows)."""
