"""The viewer backend's graph: a networkx ``MultiDiGraph`` of the viz vocabulary's elements, with stable integer
slots for the layout and the render side.

- Nodes are keyed by node id, edges by ``(src, dst, edge id)``; each holds its wire dict (spec/viewer.md, "Elements")
  under the attribute ``el`` (nodes also hold their ``slot``).
- :meth:`GraphModel.apply_graph` replaces the view *by difference*: nodes that stay keep their slots, so the
  periodic full graph (every 30 s) or a scrub to a nearby time moves nothing that did not change.
- :meth:`GraphModel.apply_diff` applies a diff by the kernel's one rule, :func:`wiredraw.core.graph.apply_diff`
  (upsert nodes, upsert edges, remove edges, remove nodes with their edges: the model is a ``DiffTarget`` that only
  keeps its indexes), after checking its ``seq`` as :class:`wiredraw.core.viewer_client.GraphMirror` does: a diff
  must follow the previous message's seq by exactly one, else :class:`SequenceGap` is raised and nothing is applied
  (the caller resubscribes: a full graph follows). An edge whose endpoint is not a node gets a bare node for it.
- Slots: a freed slot goes on a free list and the lowest free one is reused first, so slot numbers stay dense and
  no other node's slot ever changes. The render side learns the mapping from each ``scene`` message's ``ids``
  (the node id of every slot, None for a free one).
- What changed since the last :meth:`GraphModel.take_changes` (slots added and removed, whether edges or
  attributes changed) is what the backend feeds to the layout and uses to decide whether to send a new scene.

This module must not import panda3d: it runs in the viewer's backend process.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
from wiredraw.core.graph import apply_diff
from wiredraw.core.viewer_client import SequenceGap, check_follows

__all__ = ["GraphModel", "ModelChanges", "SequenceGap"]


@dataclass
class ModelChanges:
    """What changed since the last :meth:`GraphModel.take_changes`."""

    added: set[int] = field(default_factory=set)  # slots that got a (new) node
    removed: set[int] = field(default_factory=set)  # slots whose node went (a slot can be in both: reused)
    edges: bool = False  # the edge set (or an edge's endpoints/weight) changed
    attrs: bool = False  # a node's or edge's attributes changed (size, label, category, group...)
    edge_slots: set[int] = field(default_factory=set)  # endpoints of edges added, moved, reweighted or removed

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.edges or self.attrs)


def _node_wire(d: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(d)
    out["id"] = str(d["id"])
    return out


class GraphModel:
    def __init__(self) -> None:
        self.graph = nx.MultiDiGraph()
        self.seq: int | None = None
        self.t: float | None = None
        self.mode: str | None = None
        self.slots: list[str | None] = []  # node id by slot
        self._free: list[int] = []  # a heap of free slots below len(slots)
        self._edge_ends: dict[str, tuple[str, str]] = {}  # edge id -> (src, dst)
        self._group_numbers: dict[str, int] = {}  # group name -> layout group number (never renumbered)
        self._changes = ModelChanges()
        self.version = 0  # bumped on every structural or attribute change

    # -- reading -----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def slot(self, node_id: str) -> int:
        return int(self.graph.nodes[node_id]["slot"])

    def node(self, node_id: str) -> dict[str, Any]:
        el: dict[str, Any] = self.graph.nodes[node_id]["el"]
        return el

    def edge(self, edge_id: str) -> dict[str, Any]:
        src, dst = self._edge_ends[edge_id]
        el: dict[str, Any] = self.graph.edges[src, dst, edge_id]["el"]
        return el

    def node_ids(self) -> set[str]:
        return set(self.graph.nodes)

    def edge_ids(self) -> set[str]:
        return set(self._edge_ends)

    def categories(self) -> list[str]:
        """Categories present (nodes and edges), sorted: what the render's filter toggles offer."""
        cats = {el["el"].get("category", "") for _, el in self.graph.nodes(data=True)}
        cats |= {d["el"].get("category", "") for *_, d in self.graph.edges(keys=True, data=True)}
        return sorted(cats)

    def groups(self) -> list[str]:
        """Groups present (of nodes), sorted; "" (no group) left out."""
        return sorted({d["el"].get("group", "") for _, d in self.graph.nodes(data=True)} - {""})

    # -- applying messages -----------------------------------------------------------------------------------
    def apply_graph(self, msg: Mapping[str, Any]) -> None:
        """A full ``graph`` message: becomes the whole view; what stays keeps its slot."""
        nodes = {str(n["id"]): n for n in msg.get("nodes") or ()}
        edges = {str(e["id"]): e for e in msg.get("edges") or ()}
        gone_edges = [eid for eid in self._edge_ends if eid not in edges]
        gone_nodes = [nid for nid in self.graph.nodes if nid not in nodes]
        apply_diff(self, nodes.values(), edges.values(), gone_edges, gone_nodes)
        self.seq = msg.get("seq")
        self.t = msg.get("t")
        self.mode = msg.get("mode", self.mode)

    def apply_diff(self, msg: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A ``diff`` message; returns its pulses. Raises :class:`SequenceGap` (applying nothing) when its seq
        does not follow the previous message's."""
        seq = msg.get("seq")
        check_follows(self.seq, seq)
        apply_diff(self, msg.get("nodes") or (), msg.get("edges") or (), msg.get("removed_edges") or (),
                   [str(nid) for nid in msg.get("removed_nodes") or ()])
        self.seq = seq
        self.t = msg.get("t", self.t)
        return list(msg.get("pulses") or ())

    def apply(self, msg: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A ``graph`` or ``diff`` (anything else is ignored); returns the pulses."""
        if msg.get("type") == "graph":
            self.apply_graph(msg)
            return []
        if msg.get("type") == "diff":
            return self.apply_diff(msg)
        return []

    def clear(self) -> None:
        self.apply_graph({"nodes": [], "edges": []})
        self.seq = None

    def _changed(self) -> None:
        self.version += 1

    # -- DiffTarget (wiredraw.core.graph.apply_diff): the elements are wire dicts ---------------------------------
    def put_nodes(self, nodes: Iterable[Mapping[str, Any]]) -> None:
        g = self.graph
        for raw in nodes:
            el = _node_wire(raw)
            nid = el["id"]
            if nid in g:
                data = g.nodes[nid]
                if data["el"] != el:
                    data["el"] = el
                    self._changes.attrs = True
                    self._changed()
                continue
            slot = self._take_slot(nid)
            g.add_node(nid, el=el, slot=slot)
            self._changes.added.add(slot)
            self._changed()

    def _take_slot(self, nid: str) -> int:
        if self._free:
            slot = heapq.heappop(self._free)
            self.slots[slot] = nid
        else:
            slot = len(self.slots)
            self.slots.append(nid)
        return slot

    def put_edges(self, edges: Iterable[Mapping[str, Any]]) -> None:
        g = self.graph
        for raw in edges:
            el = dict(raw)
            eid, src, dst = str(el["id"]), str(el["src"]), str(el["dst"])
            for end in (src, dst):  # the spec says endpoints are nodes of the view; be lenient if one is not
                if end not in g:
                    self.put_nodes([{"id": end}])
            old = self._edge_ends.get(eid)
            if old == (src, dst):
                data = g.edges[src, dst, eid]
                if data["el"] != el:
                    if data["el"].get("weight") != el.get("weight"):
                        self._changes.edges = True
                        self._touch(src, dst)
                    data["el"] = el
                    self._changes.attrs = True
                    self._changed()
                continue
            if old is not None:  # same id, new endpoints
                g.remove_edge(*old, key=eid)
                self._touch(*old)
            g.add_edge(src, dst, key=eid, el=el)
            self._touch(src, dst)
            self._edge_ends[eid] = (src, dst)
            self._changes.edges = True
            self._changed()

    def _touch(self, *node_ids: str) -> None:
        nodes = self.graph.nodes
        self._changes.edge_slots.update(nodes[n]["slot"] for n in node_ids if n in nodes)

    def pop_edges(self, edge_ids: Iterable[str]) -> list[dict[str, Any]]:
        removed: list[dict[str, Any]] = []
        for raw in edge_ids:
            eid = str(raw)
            ends = self._edge_ends.pop(eid, None)
            if ends is not None:
                removed.append(self.graph.edges[(*ends, eid)]["el"])
                self.graph.remove_edge(*ends, key=eid)
                self._touch(*ends)
                self._changes.edges = True
                self._changed()
        return removed

    def edges_at(self, node_ids: Iterable[str]) -> list[str]:
        g = self.graph
        return [eid for nid in node_ids if nid in g
                for edges in (g.in_edges(nid, keys=True), g.out_edges(nid, keys=True)) for *_, eid in edges]

    def pop_nodes(self, node_ids: Iterable[str]) -> None:
        g = self.graph
        for nid in node_ids:
            if nid not in g:
                continue
            slot = g.nodes[nid]["slot"]
            g.remove_node(nid)
            self.slots[slot] = None
            self._changes.removed.add(slot)
            self._changes.added.discard(slot)  # added and gone before anyone saw it
            self._changes.edge_slots.discard(slot)
            heapq.heappush(self._free, slot)
            self._changed()
        # keep the slot list no longer than its last used slot
        while self.slots and self.slots[-1] is None:
            self.slots.pop()
        n = len(self.slots)
        if any(s >= n for s in self._free):
            self._free = [s for s in self._free if s < n]
            heapq.heapify(self._free)

    def take_changes(self) -> ModelChanges:
        """What changed since the last call (and forget it)."""
        out, self._changes = self._changes, ModelChanges()
        return out

    # -- arrays for the layout and the render side -------------------------------------------------------------
    def group_number(self, name: str) -> int:
        """A stable number for a group name (-1 for no group)."""
        if not name:
            return -1
        return self._group_numbers.setdefault(name, len(self._group_numbers))

    def group_array(self) -> np.ndarray:
        """Group number per slot (-1: none or a free slot)."""
        out = np.full(len(self.slots), -1, np.int64)
        for _, d in self.graph.nodes(data=True):
            out[d["slot"]] = self.group_number(str(d["el"].get("group", "") or ""))
        return out

    def edge_arrays(self) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
        """Edges as slot pairs ``int32 (M, 2)``, their ids, ``float32`` weights and categories, in one order."""
        nodes = self.graph.nodes
        ids = list(self._edge_ends)
        index = np.empty((len(ids), 2), np.int32)
        weights = np.empty(len(ids), np.float32)
        cats: list[str] = []
        for i, eid in enumerate(ids):
            src, dst = self._edge_ends[eid]
            el = self.graph.edges[src, dst, eid]["el"]
            index[i, 0] = nodes[src]["slot"]
            index[i, 1] = nodes[dst]["slot"]
            weights[i] = float(el.get("weight", 1.0) or 0.0)
            cats.append(str(el.get("category", "")))
        return index, ids, weights, cats

    def scene(self) -> dict[str, Any]:
        """The ``scene`` message (viz/messages.py) for the current state."""
        n = len(self.slots)
        sizes = np.zeros(n, np.float32)
        categories: list[str | None] = [None] * n
        labels: list[str | None] = [None] * n
        groups: list[str | None] = [None] * n
        for nid, d in self.graph.nodes(data=True):
            s, el = d["slot"], d["el"]
            sizes[s] = float(el.get("size", 1.0) or 0.0)
            categories[s] = str(el.get("category", ""))
            labels[s] = str(el.get("label", "") or nid)
            groups[s] = str(el.get("group", ""))
        edge_index, edge_ids, weights, edge_categories = self.edge_arrays()
        return {
            "kind": "scene", "version": self.version, "ids": list(self.slots), "sizes": sizes,
            "categories": categories, "labels": labels, "groups": groups, "edge_index": edge_index,
            "edge_ids": edge_ids, "weights": weights, "edge_categories": edge_categories, "t": self.t,
            "mode": self.mode, "all_categories": self.categories(), "all_groups": self.groups(),
        }
