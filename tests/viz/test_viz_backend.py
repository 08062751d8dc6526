"""The viewer's backend: the graph model (viz/model.py), the pipe messages, and the backend process
(viz/backend.py) end to end against a real server fed by a probe replaying real Zeek logs."""

from __future__ import annotations

import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from processes import World, add_key, wait_until
from wiredraw.core.server.credentials import Tokens
from wiredraw.core.viewer_client import ViewerClient
from wiredraw.viz import messages
from wiredraw.viz.backend import start_backend
from wiredraw.viz.model import GraphModel, SequenceGap

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "zeek" / "tsv"
CONN_LOG = DATA / "rita_proxy_rolling" / "conn.15:00:00-16:00:00.log.gz"


def node(nid: str, **kw: Any) -> dict[str, Any]:
    return {"id": nid, "kind": "host", "label": nid, "size": 1.0, "category": "", "group": "", "first": None,
            "last": None, "attrs": {}, **kw}


def edge(src: str, dst: str, **kw: Any) -> dict[str, Any]:
    return {"id": f"{src}>{dst}", "src": src, "dst": dst, "directed": True, "weight": 1.0, "category": "",
            "label": "", "kind": "conn", "first": None, "last": None, "attrs": {}, **kw}


def graph(seq: int, nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "graph", "seq": seq, "module": "m", "mode": "live", "reason": "subscribe", "t": 1.0,
            "t0": 0.0, "t1": 1.0, "nodes": nodes, "edges": edges}


def diff(seq: int, **kw: Any) -> dict[str, Any]:
    return {"type": "diff", "seq": seq, "t": 2.0, "nodes": [], "edges": [], "removed_nodes": [],
            "removed_edges": [], "pulses": [], **kw}


# -- the model -----------------------------------------------------------------------------------------------
def test_the_model_applies_a_graph_then_diffs_in_order_and_refuses_a_gap():
    m = GraphModel()
    m.apply(graph(1, [node("a"), node("b", category="dns", group="lan")], [edge("a", "b")]))
    assert m.node_ids() == {"a", "b"} and m.edge_ids() == {"a>b"}
    pulses = m.apply(diff(2, nodes=[node("c", group="wan")], edges=[edge("b", "c", category="http")],
                          pulses=[{"target": "b>c", "on": "edge", "meaning": "new", "t": 2.0}]))
    assert pulses == [{"target": "b>c", "on": "edge", "meaning": "new", "t": 2.0}]
    assert m.categories() == ["", "dns", "http"] and m.groups() == ["lan", "wan"]
    m.apply(diff(3, removed_nodes=["a"]))  # a node's edges go with it
    assert m.node_ids() == {"b", "c"} and m.edge_ids() == {"b>c"}
    before = (m.node_ids(), m.edge_ids(), m.seq)
    with pytest.raises(SequenceGap):
        m.apply(diff(5, nodes=[node("z")]))
    assert (m.node_ids(), m.edge_ids(), m.seq) == before  # nothing applied
    m.apply(graph(9, [node("z")], []))  # a full graph resets the count
    m.apply(diff(10, nodes=[node("y")]))
    assert m.node_ids() == {"z", "y"} and m.seq == 10


def test_slots_stay_put_across_removals_full_graphs_and_reuse_the_lowest_free_one():
    m = GraphModel()
    m.apply(graph(1, [node(x) for x in "abcdef"], [edge("a", "b"), edge("e", "f")]))
    slots = {x: m.slot(x) for x in "abcdef"}
    assert sorted(slots.values()) == list(range(6))
    ch = m.take_changes()
    assert ch.added == set(range(6)) and ch.edges
    m.apply(diff(2, removed_nodes=["b", "d"]))
    assert {x: m.slot(x) for x in "acef"} == {x: slots[x] for x in "acef"}
    ch = m.take_changes()
    assert ch.removed == {slots["b"], slots["d"]} and ch.edges and slots["a"] in ch.edge_slots
    m.apply(diff(3, nodes=[node("g")]))
    assert m.slot("g") == min(slots["b"], slots["d"])
    # a periodic full graph with the same content moves nothing; with one node more it adds just that
    m.take_changes()
    m.apply(graph(4, [m.node(x) for x in "acefg"] + [node("h")], [m.edge("e>f")]))
    assert {x: m.slot(x) for x in "acef"} == {x: slots[x] for x in "acef"}
    ch = m.take_changes()
    assert ch.added == {m.slot("h")} and not ch.removed and not ch.edges and not ch.attrs
    # removing the highest slots shrinks the slot list; the free list never hands out a slot past its end
    top = max(m.slots.index(x) for x in m.slots if x)
    m.apply(diff(5, removed_nodes=[m.slots[top]]))
    assert len(m.slots) == top
    m.apply(diff(6, nodes=[node("i")]))
    assert m.slot("i") < len(m.slots) and m.slots[m.slot("i")] == "i"


def test_the_scene_arrays_agree_with_the_graph():
    m = GraphModel()
    m.apply(graph(1, [node("a", size=5.0, group="g1"), node("b"), node("c", category="dns")],
                  [edge("a", "b", weight=10.0), edge("b", "c", category="dns")]))
    m.apply(diff(2, removed_nodes=["a"], edges=[edge("c", "x")]))  # x: an endpoint never announced as a node
    s = m.scene()
    assert s["kind"] == "scene" and set(s) >= {"version", "ids", "sizes", "categories", "labels", "groups",
                                               "edge_index", "edge_ids", "weights", "edge_categories", "t", "mode"}
    ids = s["ids"]
    assert {i for i in ids if i is not None} == {"b", "c", "x"}
    assert s["edge_index"].dtype == np.int32 and s["edge_index"].shape == (2, 2)
    for (src, dst), eid in zip(s["edge_index"], s["edge_ids"], strict=True):
        assert f"{ids[src]}>{ids[dst]}" == eid
    assert s["categories"][ids.index("c")] == "dns" and s["labels"][ids.index("b")] == "b"
    assert s["sizes"].dtype == np.float32 and len(s["sizes"]) == len(ids)


def test_the_message_helpers_check_what_they_build():
    assert messages.view("at", t=5.0)["mode"] == "at"
    with pytest.raises(ValueError, match="needs a time"):
        messages.view("play")
    with pytest.raises(ValueError, match="live, at, play"):
        messages.view("later")
    assert {messages.login("h:1", "t")["kind"], messages.quit_()["kind"], messages.range_()["kind"]} \
        <= messages.RENDER_KINDS


def test_the_backend_modules_do_not_import_panda3d():
    code = ("import sys, wiredraw.viz.backend, wiredraw.viz.model, wiredraw.viz.layout, wiredraw.viz.messages; "
            "assert 'panda3d' not in sys.modules, sorted(m for m in sys.modules if 'panda' in m)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# -- the backend process ---------------------------------------------------------------------------------------
class Render:
    """The render side of the pipe, as a test sees it: everything received, by kind."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.got: list[dict[str, Any]] = []

    def pump(self) -> None:
        while self.conn.poll(0):
            self.got.append(self.conn.recv())

    def wait_for(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            self.pump()
            return next((m for m in reversed(self.got) if predicate(m)), None)

        return wait_until(found, timeout, lambda: f"{what}; got {[m.get('kind') for m in self.got][-20:]} "
                                                  f"{[m for m in self.got if m.get('kind') == 'status']}")

    def latest(self, kind: str) -> dict[str, Any] | None:
        self.pump()
        return next((m for m in reversed(self.got) if m["kind"] == kind), None)


def stop(proc: Any, conn: Connection) -> None:
    if proc.is_alive():
        try:
            conn.send(messages.quit_())
        except OSError:
            pass
        proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join(5)
    conn.close()


@pytest.fixture
def backend():
    started: list[tuple[Any, Connection]] = []

    def start() -> tuple[Any, Render]:
        proc, conn = start_backend(seed=1)
        started.append((proc, conn))
        return proc, Render(conn)

    yield start
    for proc, conn in started:
        stop(proc, conn)


@pytest.mark.skipif(not CONN_LOG.is_file(), reason=f"real Zeek data not found at {CONN_LOG} (../shared/data)")
def test_the_backend_shows_what_query_graph_says_answers_requests_and_quits_cleanly(world: World, backend):
    data_dir = world.root / "data"
    key_file = world.root / "s1.key"
    add_key(data_dir, "s1", key_file)
    token = Tokens(data_dir).add("viewer1", "viewer")
    server = world.server("server", data_dir, "--ephemeral", "--live-window", "0", "--full-every", "3600")
    server.wait_ready()
    probe = world.probe("probe", server.probe_addr, key_file, world.root / "probe-state", None,
                        "--replay", str(CONN_LOG), "--fast", module="net_zeek")
    assert probe.wait(120) == 0, probe.describe()
    assert server.match is not None
    viz = f"127.0.0.1:{server.match['viz']}"

    # what `wiredraw query graph` answers over the whole range, once it has everything the probe sent
    with ViewerClient("127.0.0.1", int(server.match["viz"]), token) as client:
        client.connect()

        def expected_graph() -> dict[str, Any] | None:
            span = client.request("range", module="net_zeek")
            if not span or span.get("first") is None:
                return None
            return client.request("graph", module="net_zeek", **{"from": span["first"], "to": span["last"]})

        expected = wait_until(lambda: (g := expected_graph()) and g["nodes"] and g, 30, "a non-empty graph")
    want_nodes = {n["id"] for n in expected["nodes"]}
    want_edges = {e["id"] for e in expected["edges"]}

    proc, render = backend()
    render.conn.send(messages.view("live"))
    render.conn.send(messages.login(viz, token, "net_zeek"))
    welcome = render.wait_for(lambda m: m["kind"] == "welcome", 30, "a welcome")
    assert welcome["module"] == "net_zeek" and "net_zeek" in [m["slug"] for m in welcome["modules"]]

    def scene_matches(m: dict[str, Any]) -> bool:
        return m["kind"] == "scene" and {i for i in m["ids"] if i is not None} == want_nodes
    scene = render.wait_for(scene_matches, 30, "a scene with query graph's nodes")
    assert set(scene["edge_ids"]) == want_edges
    assert scene["edge_index"].shape == (len(want_edges), 2)
    ids = scene["ids"]
    for (src, dst), eid in zip(scene["edge_index"], scene["edge_ids"], strict=True):
        assert (ids[src], ids[dst]) == tuple(eid.split(">"))
    positions = render.wait_for(lambda m: m["kind"] == "positions" and m["version"] == scene["version"], 10,
                                "positions for that scene")
    p = positions["positions"]
    assert p.dtype == np.float32 and p.shape == (len(ids), 3) and np.isfinite(p).all()
    assert len({tuple(row) for row in p[[i for i, x in enumerate(ids) if x is not None]]}) > 1

    # requests are answered through the same connection, in words when they fail
    some_node = sorted(want_nodes)[0]
    render.conn.send(messages.details(some_node))
    render.conn.send(messages.range_())
    render.conn.send(messages.histogram(bins=10))
    details = render.wait_for(lambda m: m["kind"] == "details", 20, "details")
    assert details["error"] is None and details["result"]["id"] == some_node
    span = render.wait_for(lambda m: m["kind"] == "range", 20, "range")
    assert span["result"]["first"] is not None
    hist = render.wait_for(lambda m: m["kind"] == "histogram", 20, "histogram")
    assert len(hist["result"]) == 10

    # the layout controls warm the layout: positions move and stay finite
    render.pump()
    before = {id(m) for m in render.got}  # only positions sent after the command count
    render.conn.send(messages.layout(weight_pull=1.0, grouping=1.0))
    moved = render.wait_for(lambda m: m["kind"] == "positions" and id(m) not in before, 10, "new positions")
    assert np.isfinite(moved["positions"]).all()
    assert moved["positions"].shape == p.shape and not np.array_equal(moved["positions"], p)

    # a bad token is refused in words, by a second backend
    proc2, render2 = backend()
    render2.conn.send(messages.login(viz, "not-a-token", "net_zeek"))
    refused = render2.wait_for(lambda m: m["kind"] == "status" and m["error"], 30, "a refusal")
    assert "token refused" in refused["text"] and "Traceback" not in refused["text"]
    # no module named: the only one offered is subscribed, or the render side is asked to choose
    render2.conn.send(messages.login(viz, token))
    offered = render2.wait_for(lambda m: m["kind"] == "welcome", 30, "a welcome")
    slugs = [m["slug"] for m in offered["modules"]]
    assert offered["module"] == (slugs[0] if len(slugs) == 1 else None)

    # quit: both processes end by themselves, with status 0
    for pr, r in ((proc, render), (proc2, render2)):
        r.conn.send(messages.quit_())
        pr.join(10)
        assert not pr.is_alive() and pr.exitcode == 0


def test_closing_the_pipe_ends_the_backend_and_no_server_is_said_in_words(backend):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc, render = backend()
    render.conn.send(messages.login(f"127.0.0.1:{port}", "whatever"))
    failed = render.wait_for(lambda m: m["kind"] == "status" and m["error"], 30, "a failure status")
    assert "cannot connect" in failed["text"] and str(port) in failed["text"]
    render.conn.send(messages.details("x"))
    answer = render.wait_for(lambda m: m["kind"] == "details", 10, "an answer")
    assert answer["result"] is None and "not connected" in answer["error"]
    render.conn.close()  # the render process went away without a word
    proc.join(10)
    assert not proc.is_alive() and proc.exitcode == 0
