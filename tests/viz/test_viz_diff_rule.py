"""One rule for what a diff does (wiredraw.core.graph.apply_diff): the server's live Graph, the reference client's
GraphMirror and the viewer's GraphModel end with the same graph after the same messages."""

from __future__ import annotations

from typing import Any

import pytest
from wiredraw.core.graph import Change, Edge, Graph, Node, Pulse
from wiredraw.core.viewer_client import GraphMirror, SequenceGap
from wiredraw.viz.model import GraphModel
from wiredraw.viz.model import SequenceGap as ModelSequenceGap


def test_the_live_graph_the_mirror_and_the_model_apply_a_diff_alike():
    start = Graph([Node("a"), Node("b"), Node("c")], [Edge("a>b", "a", "b"), Edge("b>c", "b", "c"),
                                                       Edge("c>c", "c", "c")])
    change = Change(nodes=[Node("d", label="D"), Node("a", size=3.0)], edges=[Edge("a>d", "a", "d", weight=2.0)],
                    removed_nodes=["b", "c", "nowhere"], removed_edges=["a>b", "nowhere"],
                    pulses=[Pulse("a>d", "edge", "new", 5.0)], t=5.0)
    diff: dict[str, Any] = {"type": "diff", "seq": 2, "t": 5.0, "nodes": [n.to_wire() for n in change.nodes],
                            "edges": [e.to_wire() for e in change.edges], "removed_nodes": change.removed_nodes,
                            "removed_edges": change.removed_edges, "pulses": [p.to_wire() for p in change.pulses]}
    assert Change.from_wire(diff) == change

    live = start.copy()
    removed = live.apply(change)
    assert [e.id for e in removed] == ["a>b", "b>c", "c>c"]  # the named one, then those that went with a node
    assert set(live.nodes) == {"a", "d"} and set(live.edges) == {"a>d"} and live.nodes["a"].size == 3.0

    mirror, model = GraphMirror(), GraphModel()
    for copy in (mirror, model):
        copy.apply({"type": "graph", "seq": 1, "t": 1.0, **start.to_wire()})
        copy.apply(diff)
    assert mirror.graph == live
    assert model.node_ids() == set(live.nodes) and model.edge_ids() == set(live.edges)
    assert Graph(map(Node.from_wire, map(model.node, model.node_ids())),
                 map(Edge.from_wire, map(model.edge, model.edge_ids()))) == live
    assert ModelSequenceGap is SequenceGap
    for copy in (mirror, model):
        with pytest.raises(SequenceGap):
            copy.apply({**diff, "seq": 9})
