"""Viz protocol v1: the vectors, the viewer session state machine, live fan-out, filters, slow viewers, play mode.

In memory: StringTransport + task.Clock, and a module view backed by a Graph held in the test (no Redis here;
tests/core/server/test_viz_e2e.py runs the real chain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport
from wiredraw.core import viewer_protocol
from wiredraw.core.graph import Change, Edge, Graph, ModuleView, Node, Pulse
from wiredraw.core.server import viewers as viz_server
from wiredraw.core.server.credentials import Tokens
from wiredraw.core.server.live import RECOMPUTE_EVERY, ClientView, ModuleFeed
from wiredraw.core.server.viewers import HELLO_TIMEOUT, PLAY_TICK, State, ViewerFactory, matcher
from wiredraw.core.timeparse import parse_time
from wiredraw.core.viewer_client import GraphMirror

VECTORS = json.loads((Path(__file__).parents[3] / "spec" / "vectors" / "viewer-v1.json").read_text())


# -- vectors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VECTORS["valid_client"]) + sorted(VECTORS["valid_server"]))
def test_valid_vectors_decode_to_their_message(name):
    v = VECTORS["valid_client"].get(name) or VECTORS["valid_server"][name]
    (msg,) = list(viewer_protocol.FrameDecoder(viewer_protocol.MAX_SERVER_FRAME).feed(bytes.fromhex(v["hex"])))
    assert msg == v["message"]
    # (the JSON file sorts map keys, so re-packing may order them differently: compare decoded)
    assert list(viewer_protocol.FrameDecoder(viewer_protocol.MAX_SERVER_FRAME).feed(viewer_protocol.pack(msg))) == [msg]


@pytest.mark.parametrize("name", sorted(VECTORS["valid_client"]))
def test_valid_client_vectors_pass_the_server_checks(name):
    msg = VECTORS["valid_client"][name]["message"]
    kind = msg["type"]
    if kind == "hello":
        assert viewer_protocol.check_hello(msg) == msg["token"]
    elif kind == "subscribe":
        assert viewer_protocol.check_subscribe(msg)["module"] == msg["module"]
    else:
        assert viewer_protocol.check_request(msg) == (msg["id"], msg["what"])


def test_vectors_file_is_what_the_generator_writes():
    import subprocess
    import sys

    gen = Path(__file__).parents[3] / "spec" / "vectors" / "make_viewer_vectors.py"
    r = subprocess.run([sys.executable, str(gen), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# -- a module view backed by a test graph --------------------------------------------------------------------


def node(nid, first=0.0, last=10.0, **attrs):
    return Node(nid, "host", nid, float(attrs.get("bytes", 1)), attrs.pop("category", "local"), "", first, last,
                attrs)


def edge(src, dst, first=0.0, last=10.0, **attrs):
    return Edge(f"{src}>{dst}", src, dst, True, float(attrs.get("bytes", 1)), attrs.get("service", "other"), "",
                "conn", first, last, attrs)


class FakeView(ModuleView):
    watch_keys = ("wd:fake:feed",)
    node_kinds = ("host",)
    edge_kinds = ("conn",)

    def __init__(self) -> None:
        super().__init__(None, {})
        self.store = Graph()  # everything "stored"
        self.queued: list[Change] = []  # what the next on_events returns, one per call
        self.lost = 0

    def add(self, *elements: Node | Edge, pulses=()) -> Change:
        """Store elements; the next event batch reports them."""
        ch = Change(nodes=[e for e in elements if isinstance(e, Node)],
                    edges=[e for e in elements if isinstance(e, Edge)],
                    pulses=list(pulses), t=max((e.last or 0) for e in elements))
        self.store.apply(ch)
        self.queued.append(ch)
        return ch

    async def live_graph(self, t0):
        self.queued.clear()  # a recompute includes everything stored
        return await super().live_graph(t0)

    async def on_events(self, events, graph):
        return self.queued.pop(0) if self.queued else Change()

    async def graph(self, t0, t1):
        g = Graph()
        g.nodes = {k: n for k, n in self.store.nodes.items() if n.first <= t1 and n.last >= t0}
        g.edges = {k: e for k, e in self.store.edges.items()
                   if e.first <= t1 and e.last >= t0 and e.src in g.nodes and e.dst in g.nodes}
        return g

    async def time_range(self):
        times = [n.first for n in self.store.nodes.values()] + [n.last for n in self.store.nodes.values()]
        return (min(times), max(times)) if times else None

    async def histogram(self, t0, t1, bins):
        return [{"t0": t0, "t1": t1, "conns": len(self.store.edges)}]

    async def details(self, element_id, t0, t1):
        from wiredraw.core.graph import Details, Section

        if element_id not in self.store.nodes:
            return None
        return Details(element_id, f"host {element_id}", "node", [Section("host", rows=[["t0", t0], ["t1", t1]])])

    def lost_events(self):
        self.lost += 1


class Viewer:
    """One in-memory viewer connection."""

    def __init__(self, factory: ViewerFactory) -> None:
        self.session = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.session.makeConnection(self.transport)
        self.decoder = viewer_protocol.FrameDecoder(viewer_protocol.MAX_SERVER_FRAME)
        self.mirror = GraphMirror()

    def send(self, msg: dict[str, Any]) -> None:
        self.session.dataReceived(viewer_protocol.pack(msg))

    def received(self) -> list[dict[str, Any]]:
        data = self.transport.value()
        self.transport.clear()
        msgs = list(self.decoder.feed(data))
        for m in msgs:
            self.mirror.apply(m)
        return msgs

    def hello(self, token: str) -> dict[str, Any]:
        self.send({"type": "hello", "version": 1, "token": token})
        (msg,) = self.received()
        return msg


@pytest.fixture
def env(tmp_path):
    clock = task.Clock()
    viz = FakeView()
    feed = ModuleFeed("fake", viz, clock, window=0, full_every=30.0)
    tokens = Tokens(tmp_path)
    token = tokens.add("alice", "viewer")
    collector = tokens.add("bob", "collector")
    factory = ViewerFactory({"fake": feed}, {998: "fake"}, tokens, clock, server_name="wiredraw test", full_every=30.0,
                         modules_info=[{"id": 998, "slug": "fake"}])

    class Env:
        pass

    e = Env()
    e.clock, e.viz, e.feed, e.factory, e.token, e.collector_token = clock, viz, feed, factory, token, collector
    feed.start()
    feed.subscription_ready(first=True)
    return e


def events(env, n=1):
    """What the keyspace subscriber does for n events, then the batch delay."""
    for _ in range(n):
        env.feed.on_event("wd:fake:feed", "xadd")
    env.clock.advance(0.01)


def subscribed(env, **view) -> Viewer:
    v = Viewer(env.factory)
    assert v.hello(env.token)["type"] == "welcome"
    v.send({"type": "subscribe", "module": "fake", **view})
    return v


# -- session states ---------------------------------------------------------------------------------------


def test_hello_with_a_viewer_token_gets_welcome_with_the_modules(env):
    v = Viewer(env.factory)
    msg = v.hello(env.token)
    assert msg == {"type": "welcome", "version": 1, "server": "wiredraw test", "full_every": 30.0,
                   "modules": [{"id": 998, "slug": "fake"}]}
    assert v.session.state is State.READY


@pytest.mark.parametrize("which", ["wrong", "collector"])
def test_wrong_token_is_refused_then_closed(env, which):
    v = Viewer(env.factory)
    token = "wdv_not-a-token" if which == "wrong" else env.collector_token
    msg = v.hello(token)
    assert msg["type"] == "refused" and msg["code"] == "bad_token"
    assert "wiredraw tokens add" in msg["reason"]
    assert v.transport.disconnecting
    assert env.factory.refusals == 1


@pytest.mark.parametrize("case", VECTORS["invalid_client"], ids=lambda c: c["name"])
def test_invalid_vectors_get_their_error_and_close(env, case):
    v = Viewer(env.factory)
    if not case.get("first"):
        v.hello(env.token)
    v.session.dataReceived(bytes.fromhex(case["hex"]))
    if case["name"] == "truncated_body":  # a whole frame whose body is cut inside: not msgpack
        pass
    msgs = v.received()
    assert msgs and msgs[-1]["type"] == "error", msgs
    assert msgs[-1]["code"] == case["error"] and msgs[-1]["fatal"] is True
    assert v.transport.disconnecting


def test_no_hello_in_time_closes(env):
    v = Viewer(env.factory)
    env.clock.advance(HELLO_TIMEOUT + 1)
    (msg,) = v.received()
    assert msg["code"] == "timeout" and v.transport.disconnecting


def test_unknown_module_is_an_error_naming_what_exists(env):
    v = Viewer(env.factory)
    v.hello(env.token)
    v.send({"type": "subscribe", "module": "nope"})
    (msg,) = v.received()
    assert msg["code"] == "unknown_module" and "fake" in msg["reason"]


def test_bad_filter_in_subscribe_names_the_column(env):
    v = Viewer(env.factory)
    v.hello(env.token)
    v.send({"type": "subscribe", "module": "fake", "filter": "bytes >"})
    (msg,) = v.received()
    assert msg["code"] == "bad_message" and "column" in msg["reason"]


# -- live ---------------------------------------------------------------------------------------------------


def test_live_full_graph_then_ordered_diffs_rebuild_the_store(env):
    env.viz.add(node("a"), node("b"), edge("a", "b"))
    env.feed.refresh("periodic")
    v1, v2 = subscribed(env), subscribed(env)
    for v in (v1, v2):
        (g,) = v.received()
        assert g["type"] == "graph" and g["seq"] == 1 and g["reason"] == "subscribe"
        assert {n["id"] for n in g["nodes"]} == {"a", "b"} and [e["id"] for e in g["edges"]] == ["a>b"]
    env.viz.add(node("c", last=20.0), edge("a", "c", last=20.0, service="dns"), pulses=[Pulse("a>c", "edge", "new")])
    events(env)
    env.viz.add(edge("a", "c", last=30.0, bytes=99, service="dns"), node("a", last=30.0, bytes=5))
    events(env)
    for v in (v1, v2):
        d1, d2 = v.received()
        assert (d1["type"], d1["seq"], d2["seq"]) == ("diff", 2, 3)
        assert d1["pulses"] == [{"target": "a>c", "on": "edge", "meaning": "new", "t": None}]
        assert v.mirror.graph == env.viz.store  # full + diffs == what is stored


def test_filter_shows_matching_edges_with_their_endpoints_and_updates_visibility(env):
    env.viz.add(node("a"), node("b"), node("c"), edge("a", "b", service="dns", bytes=10),
                edge("a", "c", service="http", bytes=50_000))
    env.feed.refresh("periodic")
    v = subscribed(env, filter='service != "dns" and bytes > 10k')
    (g,) = v.received()
    assert [e["id"] for e in g["edges"]] == ["a>c"]
    assert {n["id"] for n in g["nodes"]} == {"a", "c"}  # b: only behind a hidden edge
    # a>b grows past the threshold but stays dns: still hidden, nothing to send
    env.viz.add(edge("a", "b", service="dns", bytes=50_000))
    events(env)
    assert v.received() == []
    # a>c drops below: hidden, and c with it
    env.viz.add(edge("a", "c", service="http", bytes=5))
    events(env)
    (d,) = v.received()
    assert d["removed_edges"] == ["a>c"] and sorted(d["removed_nodes"]) == ["a", "c"]
    assert v.mirror.graph.nodes == {} and v.mirror.graph.edges == {}
    # reconfigure: everything, as a full graph
    v.send({"type": "request", "id": 9, "what": "configure", "filter": ""})
    msgs = v.received()
    assert [m["type"] for m in msgs] == ["graph", "reply"] or [m["type"] for m in msgs] == ["reply", "graph"]
    assert v.mirror.graph == env.viz.store


def test_pulses_only_reach_viewers_that_show_the_target(env):
    env.viz.add(node("a"), node("b"), edge("a", "b", service="dns"))
    env.feed.refresh("periodic")
    all_, http = subscribed(env), subscribed(env, filter='service == "http"')
    all_.received(), http.received()
    env.viz.add(edge("a", "b", service="dns", last=11.0), pulses=[Pulse("a>b", "edge", "error")])
    events(env)
    assert all_.received()[0]["pulses"][0]["meaning"] == "error"
    assert http.received() == []


def test_periodic_full_graph_repairs_a_viewer_and_counts_in_seq(env):
    env.viz.add(node("a"))
    env.feed.refresh("periodic")
    v = subscribed(env)
    v.received()
    # stored without an event (a lost notification): a periodic full graph resends the live graph, and every
    # RECOMPUTE_EVERY-th one is recomputed from storage, which brings it
    env.viz.store.apply(Change(nodes=[node("z")]))
    for i in range(1, RECOMPUTE_EVERY + 1):
        env.clock.advance(30.0)
        (g,) = v.received()
        assert g["type"] == "graph" and g["reason"] == "periodic" and g["seq"] == 1 + i
        assert ("z" in v.mirror.graph.nodes) == (i == RECOMPUTE_EVERY)


def test_a_module_that_follows_the_window_is_advanced_each_period_and_never_recomputed(env):
    calls: list[float | None] = []
    recomputes = []
    live_graph = env.viz.live_graph

    async def counting_live_graph(t0):
        recomputes.append(t0)
        return await live_graph(t0)

    async def advance(t0, graph):
        calls.append(t0)
        gone = [e.id for e in graph.edges.values() if e.last < t0]
        return Change(removed_edges=gone, removed_nodes=[n for n in graph.nodes if graph.nodes[n].last < t0])

    env.viz.follows_window = True
    env.viz.live_graph, env.viz.advance = counting_live_graph, advance
    env.feed.window = 100.0
    env.viz.add(node("old", 0, 10), node("mid", 0, 10), edge("old", "mid", 0, 10))
    env.feed.refresh("periodic")
    v = subscribed(env)
    v.received()
    env.viz.add(node("new", 400, 500), node("mid", 0, 500), edge("new", "mid", 400, 500))
    events(env)
    v.received()
    for i in range(RECOMPUTE_EVERY + 1):
        env.clock.advance(30.0)
        got = v.received()
        if i == 0:  # the advance's change goes out as a diff, then the full graph
            assert [m["type"] for m in got] == ["diff", "graph"] and got[0]["removed_edges"] == ["old>mid"]
        else:
            assert [m["type"] for m in got] == ["graph"]
    assert calls == [400.0] * (RECOMPUTE_EVERY + 1) and len(recomputes) == 1  # the start only
    assert set(v.mirror.graph.nodes) == {"new", "mid"} and env.feed.counters["advances"] == RECOMPUTE_EVERY + 1


def test_a_module_that_follows_the_window_still_gets_frozen_garbage_collected(env):
    """Each step freezes what the live graph gained (gc.freeze); without periodic recomputes the core still
    collects every RECOMPUTE_EVERY periods, so cycles that became garbage meanwhile do not stay for good."""
    import gc
    import weakref

    class Cycle:
        pass

    env.viz.follows_window = True
    env.feed.refresh("periodic")
    v = subscribed(env)
    v.received()
    c = Cycle()
    c.me = c
    alive = weakref.ref(c)
    env.viz.add(node("a"))
    events(env)  # a step: freezes c too
    del c
    assert gc.is_tracked(alive()) and alive() is not None
    for _ in range(RECOMPUTE_EVERY - 1):
        env.clock.advance(30.0)
    gc.collect()
    assert alive() is not None  # frozen: an ordinary collection does not see it
    env.clock.advance(30.0)
    assert alive() is None


def test_a_failing_advance_is_counted_and_recomputed(env):
    async def broken(t0, graph):
        raise RuntimeError("boom")

    env.viz.follows_window, env.viz.advance = True, broken
    env.viz.add(node("a"))
    env.feed.refresh("periodic")
    v = subscribed(env)
    v.received()
    env.viz.store.apply(Change(nodes=[node("b")]))
    env.clock.advance(30.0)
    env.clock.advance(0)
    assert env.feed.counters["translate_errors"] == 1
    assert any(m["reason"] == "resync" and "b" in m_nodes(m) for m in v.received() if m["type"] == "graph")


def m_nodes(m):
    return {n["id"] for n in m["nodes"]}


def test_periodic_full_graph_prunes_what_left_the_live_window(env):
    env.feed.window = 100.0
    env.viz.add(node("old", 0, 10), node("mid", 0, 10), edge("old", "mid", 0, 10))
    env.feed.refresh("periodic")
    v = subscribed(env)
    v.received()
    env.viz.add(node("new", 400, 500), node("mid", 0, 500), edge("new", "mid", 400, 500))  # time moves on
    events(env)
    v.received()
    assert set(v.mirror.graph.nodes) == {"old", "new", "mid"}
    env.clock.advance(30.0)
    (g,) = v.received()
    assert g["reason"] == "periodic"
    assert set(v.mirror.graph.nodes) == {"new", "mid"} and list(v.mirror.graph.edges) == ["new>mid"]


def test_lost_subscription_recomputes_and_tells_the_module(env):
    env.viz.add(node("a"))
    env.feed.refresh("periodic")
    v = subscribed(env)
    v.received()
    env.viz.store.apply(Change(nodes=[node("z")]))
    env.feed.subscription_ready(first=False)
    (g,) = v.received()
    assert g["reason"] == "resync" and "z" in v.mirror.graph.nodes and env.viz.lost == 1


def test_a_paused_viewer_gets_one_full_graph_on_resume_and_nothing_past_its_budget(env):
    env.factory.backlog = 4096  # --viewer-backlog-kb 4
    env.viz.add(node("a"))
    env.feed.refresh("periodic")
    slow, fast = subscribed(env), subscribed(env)
    slow.received(), fast.received()
    slow.session.pauseProducing()  # what Twisted does when the viewer's send buffer is full
    for i in range(200):
        env.viz.add(node(f"n{i}", last=11.0 + i))
        events(env)
    queued = slow.transport.value()
    assert 4096 <= len(queued) < 4096 + 512  # queued up to the budget (and one small diff past it), then bounded
    assert len(fast.received()) == 200  # the other viewer is not held back
    kept = slow.received()
    assert [m["type"] for m in kept] == ["diff"] * len(kept) and 0 < len(kept) < 200
    assert slow.session.sent["dropped_diffs"] == 200 - len(kept)
    slow.session.resumeProducing()
    (g,) = slow.received()
    assert g["type"] == "graph" and g["reason"] == "resync" and g["seq"] == kept[-1]["seq"] + 1
    assert slow.mirror.graph == env.viz.store == fast.mirror.graph
    env.viz.add(node("after", last=500.0))
    events(env)
    (d,) = slow.received()
    assert d["type"] == "diff" and d["seq"] == g["seq"] + 1


def test_a_briefly_paused_viewer_gets_every_diff_and_no_full_graph(env):
    env.viz.add(node("a"))
    env.feed.refresh("periodic")
    v = subscribed(env)
    v.received()
    assert env.factory.backlog == viz_server.BACKLOG_MIN  # the default: 1 MiB
    v.session.pauseProducing()  # a busy machine: the viewer is a little behind
    for i in range(50):
        env.viz.add(node(f"n{i}", last=11.0 + i))
        events(env)
    v.session.resumeProducing()
    got = v.received()
    assert [m["type"] for m in got] == ["diff"] * 50 and v.session.sent["dropped_diffs"] == 0
    assert v.mirror.graph == env.viz.store


def test_the_backlog_budget_grows_with_the_full_graph(env):
    """Queueing diffs pays until they add up to a full graph: a big graph allows a bigger backlog."""
    env.factory.backlog = 1024
    env.viz.add(*(node(f"big{i}", 0, 10) for i in range(300)))
    env.feed.refresh("periodic")
    v = subscribed(env)
    v.received()
    full = v.session.full_bytes
    assert full > 8 * 1024
    v.session.pauseProducing()
    for i in range(400):
        env.viz.add(node(f"n{i}", last=11.0 + i))
        events(env)
        if v.session.stale:
            break
    assert v.session.stale and full <= v.session.backlog < full + 1024


def test_an_element_updated_in_place_is_sent_with_its_new_values(env):
    """Elements are packed once per object and reused by later full graphs; a module that updates an object it
    returned before (http_traefik does) names it in its change, and both the diff and the next full graph carry
    the new values."""
    a = node("a", bytes=1)
    env.viz.add(a)
    env.feed.refresh("periodic")
    v, f = subscribed(env), subscribed(env, filter="size > 0")
    v.received(), f.received()
    env.clock.advance(30.0)  # a periodic full graph: "a" is now packed
    v.received(), f.received()
    a.size, a.attrs["bytes"], a.last = 5.0, 5, 20.0
    env.viz.add(a)
    events(env)
    (d,) = v.received()
    assert d["nodes"][0]["size"] == 5.0 and d["nodes"][0]["attrs"]["bytes"] == 5
    env.clock.advance(30.0)
    (g,) = v.received()
    (fg,) = f.received()[-1:]
    assert g["nodes"] == fg["nodes"] == [a.to_wire()]
    assert v.mirror.graph == f.mirror.graph == env.viz.store


def test_the_shared_full_graph_is_the_message_a_filtered_viewer_would_get(env):
    env.viz.add(node("a", 0, 10), node("b", 5, 50), edge("a", "b", 5, 50, service="ssl"))
    env.feed.refresh("periodic")
    v, f = subscribed(env), subscribed(env, filter='category != "nothing"')
    (g,), (fg,) = v.received(), f.received()
    env.clock.advance(30.0)
    (g2,), (fg2,) = v.received(), f.received()
    for shared, own in ((g, fg), (g2, fg2)):
        assert {k: x for k, x in shared.items() if k != "seq"} == {k: x for k, x in own.items() if k != "seq"}
    assert g2["reason"] == "periodic" and g2["t0"] is None and g2["t1"] == 50.0 and g2["mode"] == "live"


def test_a_failing_translation_is_counted_and_recomputed(env):
    env.viz.add(node("a"))
    env.feed.refresh("periodic")
    v = subscribed(env)
    v.received()

    async def broken(events, graph):
        raise RuntimeError("boom")

    env.viz.on_events = broken
    env.viz.store.apply(Change(nodes=[node("b")]))
    events(env)
    env.clock.advance(0)
    (g,) = v.received()
    assert g["reason"] == "resync" and "b" in v.mirror.graph.nodes
    assert env.feed.counters["translate_errors"] == 1


# -- at, play, requests --------------------------------------------------------------------------------------


def test_at_mode_is_the_graph_at_that_instant(env):
    env.viz.add(node("early", 0, 5), node("late", 20, 30), node("both", 0, 30), edge("early", "both", 0, 5))
    v = subscribed(env, mode="at", t=3)
    (g,) = v.received()
    assert {n["id"] for n in g["nodes"]} == {"early", "both"} and g["t"] == 3
    events(env)
    assert v.received() == []  # no diffs in at mode


def test_play_mode_steps_event_time_and_pulses_new_edges(env):
    env.viz.add(node("a", 0, 100), node("b", 0, 100), node("c", 0, 100), edge("a", "b", 0, 1), edge("a", "c", 40, 41))
    v = subscribed(env, mode="play", t=0, speed=20, window=10)
    (g,) = v.received()
    assert [e["id"] for e in g["edges"]] == ["a>b"]
    seen = []
    for _ in range(8):  # 8 ticks * 0.5 s * 20 = 80 s of event time
        env.clock.advance(PLAY_TICK)
        seen += v.received()
    new = [p["target"] for d in seen for p in d.get("pulses", []) if p["meaning"] == "new"]
    assert new == ["a>c"]
    assert any("a>b" in d.get("removed_edges", []) for d in seen)
    assert v.session.t == 80.0 and list(v.mirror.graph.edges) == []


def test_requests_range_histogram_details_graph_and_errors(env):
    env.viz.add(node("a", 5, 50), node("b", 5, 50), edge("a", "b", 5, 50))
    v = Viewer(env.factory)
    v.hello(env.token)
    v.send({"type": "request", "id": 1, "what": "range", "module": "fake"})
    v.send({"type": "request", "id": 2, "what": "histogram", "module": 998, "bins": 3})
    v.send({"type": "request", "id": 3, "what": "details", "module": "fake", "element": "a", "at": 7})
    v.send({"type": "request", "id": 4, "what": "graph", "module": "fake", "from": 0, "to": 6, "filter": "weight > 0"})
    v.send({"type": "request", "id": 5, "what": "graph", "module": "fake", "at": 1000})
    v.send({"type": "request", "id": 6, "what": "details", "module": "fake", "element": "nope"})
    v.send({"type": "request", "id": 7, "what": "graph", "module": "fake", "filter": "(("})
    v.send({"type": "request", "id": 8, "what": "range"})  # no module, no subscription
    v.send({"type": "request", "id": 9, "what": "histogram", "module": "fake", "bins": 0})
    replies = {m["id"]: m for m in v.received()}
    assert replies[1]["result"] == {"first": 5, "last": 50}
    assert replies[2]["result"] == [{"t0": 5, "t1": 50, "conns": 1}]
    assert replies[3]["result"]["sections"][0]["rows"] == [["t0", 7], ["t1", 7]]
    assert len(replies[4]["result"]["edges"]) == 1 and replies[4]["result"]["t0"] == 0
    assert replies[5]["result"]["nodes"] == []
    assert replies[6] == {"type": "reply", "id": 6, "ok": True, "result": None}
    for rid in (7, 8, 9):
        assert replies[rid]["ok"] is False and replies[rid]["error"]
    assert not v.transport.disconnecting  # bad requests keep the connection


# -- ClientView on its own -----------------------------------------------------------------------------------


def test_client_view_node_matching_filter_without_edges_shows():
    g = Graph([node("a", category="local"), node("b", category="remote")], [edge("a", "b")])
    view = ClientView(matcher('category == "local"'))
    full = view.full(g)
    assert [n["id"] for n in full["nodes"]] == ["a"] and full["edges"] == []


def test_parse_time_accepts_epoch_and_iso():
    assert parse_time("1541240000") == 1541240000.0
    assert parse_time("2018-11-03T10:13:20") == 1541240000.0
    assert parse_time("2018-11-03T11:13:20+01:00") == 1541240000.0
    assert parse_time("2018-11-03T10:13:20Z") == 1541240000.0
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time("yesterday")


# -- JSON for watch and query --------------------------------------------------------------------------------
def test_to_json_writes_what_json_cannot_hold_as_json():
    from wiredraw.core.viewer_client import to_json, to_json_bytes

    obj = {"inf": float("inf"), "nan": float("nan"), "raw": b"ok\xff", "set": {3}, "big": 2**70, "name": "café",
           "nested": [{"w": -float("inf")}], 7: "int key"}
    out = json.loads(to_json(obj))
    assert out == {"inf": None, "nan": None, "raw": "ok\\xff", "set": [3], "big": 2**70, "name": "café",
                   "nested": [{"w": None}], "7": "int key"}
    assert to_json_bytes({"name": "café"}) == '{"name":"café"}'.encode()
    assert "\n" not in to_json({"s": "two\nlines"})  # one message, one line
