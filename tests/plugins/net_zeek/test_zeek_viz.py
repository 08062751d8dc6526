"""net_zeek's view translation (plugins/net_zeek/view.py) against a real redis-server, with records written by
ingest.lua as the server writes them, and real Zeek logs from ../shared/data/zeek where they are present."""

from __future__ import annotations

import math
import random
import time
import tomllib
from collections import Counter
from functools import cache
from pathlib import Path

import msgpack
import pytest
from test_zeek_keys import conn, keyspace_events
from viz_store import DATA, Ingester, LiveFeed, msg, replay, run
from wiredraw.core.graph import Graph
from wiredraw.core.module import load_module_spec
from wiredraw.plugins.net_zeek.module import NetZeekModule
from wiredraw.plugins.net_zeek.parser import read_log
from wiredraw.plugins.net_zeek.query import (
    FEED_KEY,
    FEED_LAST_KEY,
    ConnFacts,
    DnsName,
    HostAlert,
    HttpReply,
    LongerConn,
    conn_facts,
    decode_feed,
)
from wiredraw.plugins.net_zeek.view import FeedGap, NetZeekView, parse_options

T0 = 1_541_240_000.0
ROOT = Path(__file__).resolve().parents[3]
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real Zeek data not found at {DATA} (../shared/data)")
ROLLING = DATA / "tsv" / "rita_proxy_rolling"
DAY = DATA / "tsv" / "rita_missing_host" / "2024-04-19"


@pytest.fixture
def ingest(redis_client):
    return Ingester(redis_client)


@pytest.fixture
def viz(store):
    return NetZeekView(store, {})


@cache
def batches(files: tuple[Path, ...], size: int = 500) -> list[list[dict]]:
    return list(replay(list(files), size))


def rolling_files() -> tuple[Path, ...]:
    return tuple(sorted(ROLLING.glob("*.log.gz")))


def feed_entries(redis_client) -> list[tuple[bytes, object]]:
    return [(eid, decode_feed(fields[b"c"])) for eid, fields in redis_client.xrange(FEED_KEY)]


def assert_same_graph(live: Graph, query: Graph) -> None:
    assert live.nodes.keys() == query.nodes.keys()
    assert live.edges.keys() == query.edges.keys()
    for nid, node in query.nodes.items():
        assert live.nodes[nid] == node, nid
    for eid, edge in query.edges.items():
        assert live.edges[eid] == edge, eid
    assert live == query


# --- declarations ------------------------------------------------------------------------------------------


def test_make_viz_and_what_the_spec_declares(store):
    module = NetZeekModule()
    viz = module.make_view(store, {})
    assert isinstance(viz, NetZeekView)
    assert viz.watch_keys == (FEED_KEY,) and viz.node_kinds == ("host",) and viz.edge_kinds == ("conn",)
    spec = load_module_spec(ROOT / "plugins" / "net_zeek" / "net_zeek.toml")
    assert spec.notify_classes == "t"  # an XADD is class t: the only event the translation follows
    assert spec.key_matches(FEED_KEY).type == "stream" and spec.key_matches(FEED_LAST_KEY).type == "string"
    with pytest.raises(ValueError, match="local_networks"):
        module.make_view(store, {"local_networks": ["not a network"]})


# --- the change feed ---------------------------------------------------------------------------------------


def test_one_feed_entry_per_batch_carries_what_the_translation_needs(ingest, redis_client):
    c = conn("C1", T0, duration=30.0, service=None)
    ingest(
        [
            msg("conn", c),
            msg("http", {"ts": T0 + 1, "uid": "C1", "status_code": 404}),
            msg("dns", {"ts": T0 - 1, "uid": "C0", "query": "www.example.com", "answers": ["192.0.2.7", "a.example"]}),
            msg("weird", {"ts": T0 + 2, "uid": "C1", "name": "bad", "id.orig_h": "10.0.0.1", "id.resp_h": "192.0.2.7"}),
            msg("notice", {"ts": T0 + 3, "note": "Scan", "src": "10.0.0.9"}),
            msg("notice", {"ts": T0 + 4, "note": "CaptureLoss::Too_Much_Loss"}),  # names no host: no change
            msg("ssl", {"ts": T0 + 1, "uid": "C1", "server_name": "x"}),  # shows nothing by itself: no change
        ]
    )
    ((first_id, entry),) = feed_entries(redis_client)
    assert entry.prev is None and entry.probe == "s1"
    stored = conn_facts("C1", msgpack.unpackb(redis_client.get("wd:net_zeek:conn:C1")), T0)
    assert entry.changes == [
        ConnFacts("C1", T0, 30.0, "10.0.0.1", "192.0.2.7", 80, "tcp", None, 1000),
        HttpReply("C1", T0 + 1, 404),
        HostAlert("weird", T0 + 2, ("10.0.0.1", "192.0.2.7")),
        HostAlert("notice", T0 + 3, ("10.0.0.9",)),
        DnsName("192.0.2.7", "www.example.com", T0 - 1),
    ]
    assert entry.changes[0] == stored  # the feed and the stored record give the same facts
    ingest([msg("ssl", {"ts": T0 + 5, "uid": "C1", "server_name": "y"})])
    assert len(feed_entries(redis_client)) == 1
    ingest([msg("open_conn", conn("C1", T0, duration=60.0, ob=500, rb=1500))])
    entries = feed_entries(redis_client)
    assert [e.prev for _, e in entries] == [None, first_id.decode()]  # a chain: a reader sees what it lost
    assert redis_client.get(FEED_LAST_KEY) == entries[-1][0]
    (longer,) = entries[-1][1].changes
    assert longer == LongerConn(ConnFacts("C1", T0, 60.0, "10.0.0.1", "192.0.2.7", 80, "tcp", "http", 2000), 1000)


def test_a_repeat_batch_adds_no_feed_entry_and_notifies_nothing(ingest, redis_client):
    batch = [
        msg("conn", conn("C1", T0)),
        msg("http", {"ts": T0, "uid": "C1", "status_code": 200}),
        msg("dns", {"ts": T0, "uid": "C2", "query": "a.example", "answers": ["192.0.2.7"]}),
        msg("weird", {"ts": T0, "name": "w", "id.orig_h": "10.0.0.1"}),
    ]
    ingest(batch)
    assert len(feed_entries(redis_client)) == 1
    assert keyspace_events(redis_client, lambda: ingest(batch)) == []
    events = keyspace_events(redis_client, lambda: ingest(batch, probe="s2"))  # only s2's membership is new
    assert not any(key in (FEED_KEY, FEED_LAST_KEY) for key, _ in events), events
    assert len(feed_entries(redis_client)) == 1


def test_the_feed_keeps_only_recent_entries(ingest, redis_client):
    setting = redis_client.config_get("stream-node-max-entries")["stream-node-max-entries"]
    redis_client.config_set("stream-node-max-entries", 1)  # MINID ~ drops whole nodes: one entry each here
    try:
        now_ms = int(time.time() * 1000)
        redis_client.xadd(FEED_KEY, {"c": b"200 s old"}, id=f"{now_ms - 200_000}-0")
        redis_client.xadd(FEED_KEY, {"c": b"60 s old"}, id=f"{now_ms - 60_000}-0")
        ingest([msg("conn", conn("C1", T0))])
        assert [f[b"c"] for _, f in redis_client.xrange(FEED_KEY)][:1] == [b"60 s old"]
        assert redis_client.xlen(FEED_KEY) == 2
    finally:
        redis_client.config_set("stream-node-max-entries", setting)


def test_each_call_folds_the_entries_its_events_announce(ingest, viz):
    """A fast writer is followed step by step: one diff per batch of keyspace events, not one when it pauses."""
    live = LiveFeed(viz)
    for resp in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        ingest([msg("conn", conn(f"C{resp}", T0, resp=resp))])
    change = run(viz.on_events([(FEED_KEY, "xadd")], live.graph))
    assert [e.id for e in change.edges] == ["10.0.0.1>192.0.2.1"]
    live.graph.apply(change)
    change = run(viz.on_events([(FEED_KEY, "xtrim"), (FEED_KEY, "xadd"), (FEED_KEY, "xadd")], live.graph))
    assert [e.id for e in change.edges] == ["10.0.0.1>192.0.2.2", "10.0.0.1>192.0.2.3"]
    live.graph.apply(change)
    ingest([msg("conn", conn("C4", T0, resp="192.0.2.4"))])
    assert [e.id for e in run(viz.on_events([], live.graph)).edges] == ["10.0.0.1>192.0.2.4"]  # no events: all


# --- live == query -----------------------------------------------------------------------------------------


@needs_data
def test_live_graph_rebuilt_from_full_and_diffs_equals_the_query_graph_on_real_logs(ingest, viz):
    live = LiveFeed(viz)
    assert live.graph == Graph()
    for batch in batches(rolling_files()):
        ingest(batch)
        live.step()
    first, last = run(viz.time_range())
    assert_same_graph(live.graph, run(viz.graph(first, last)))
    assert_same_graph(live.graph, run(viz.graph(-math.inf, math.inf)))
    assert_same_graph(live.graph, run(viz.live_graph(None)))
    assert len(live.graph.nodes) > 500 and len(live.graph.edges) > 500
    labelled = [n for n in live.graph.nodes.values() if n.label != n.id]
    assert len(labelled) > 100, "hosts named by dns.log answers keep their DNS name as label"
    assert {n.category for n in live.graph.nodes.values()} == {"local", "remote"}


@needs_data
def test_live_window_resync_mid_stream_and_a_write_racing_the_recompute(ingest, viz, store):
    """live_graph(t0) while a batch lands between its reading the feed's latest id and folding the graph: that
    batch's conns are in the graph AND after the cursor; nothing is counted twice."""
    todo = list(batches(rolling_files()))
    half = len(todo) // 2
    for batch in todo[:half]:
        ingest(batch)
    racing = todo[half]

    seen: list[tuple] = []

    def interleave(command):  # runs before each command is sent
        if seen and seen[-1][:2] == ("GET", FEED_LAST_KEY):  # the latest id is read: the fold comes next
            store.before = None
            ingest(racing)
        seen.append(command)

    store.before = interleave
    t0 = run(viz.time_range())[1] - 900
    live = LiveFeed(viz, t0)
    assert store.before is None, "the racing batch was written"
    assert viz._cursor != ingest.client.get(FEED_LAST_KEY).decode()  # its entry is after the cursor...
    assert {m["uid"] for m in racing if m["path"] == "conn"} <= set(viz._live.conns)  # ...and in the graph
    for batch in todo[half + 1 :]:
        ingest(batch)
        live.step()
    assert_same_graph(live.graph, run(viz.graph(t0, math.inf)))
    assert live.graph != run(viz.graph(-math.inf, math.inf))  # the window left older connections out


@needs_data
def test_advancing_the_window_keeps_the_live_graph_the_interval_graph(ingest, viz):
    """The live state follows the window without a recompute: after advance(t0) the live graph is exactly the
    graph of [t0, inf) (weights count only the window's connections), and the state holds only those."""
    assert NetZeekView.follows_window
    live = LiveFeed(viz)
    for batch in batches(rolling_files()):
        ingest(batch)
        live.step()
    first, last = run(viz.time_range())
    before = len(live.graph.edges)
    shrank = False
    for frac in (0.2, 0.5, 0.8, 0.95, 0.95, 1.0):
        t0 = first + frac * (last - first)
        change = run(viz.advance(t0, live.graph))
        live.graph.apply(change)
        live.graph.check()
        assert_same_graph(live.graph, run(viz.graph(t0, math.inf)))
        active = run(viz._active(t0, math.inf))
        assert set(viz._live.conns) == {c.uid for c in active}
        shrank = shrank or bool(change.removed_edges)
    assert shrank and len(live.graph.edges) < before
    # new records still fold on top of the advanced window, and a recompute agrees
    assert_same_graph(live.graph, run(viz.live_graph(t0)))


@needs_data
def test_advance_folds_entries_whose_events_were_missed(ingest, viz):
    live = LiveFeed(viz)
    todo = batches(rolling_files())
    ingest(todo[0])
    live.step()
    ingest(todo[1])
    ingest(todo[2])
    live.events()  # their keyspace events never reach the core
    first, last = run(viz.time_range())
    assert live.graph != run(viz.graph(first, last))
    live.graph.apply(run(viz.advance(None, live.graph)))  # the next period's advance reads them
    assert_same_graph(live.graph, run(viz.graph(first, last)))
    ingest(todo[3])
    live.step()  # and events after it fold as before
    assert_same_graph(live.graph, run(viz.graph(*run(viz.time_range()))))


@needs_data
def test_longer_reports_of_real_open_connections_replace_their_contribution(ingest, viz, redis_client):
    files = tuple(sorted(DAY.glob("open_conn.0[0-3]*.log.gz")))
    live = LiveFeed(viz)
    for batch in batches(files):
        ingest(batch)
        live.step()
    assert any(isinstance(c, LongerConn) for _, e in feed_entries(redis_client) for c in e.changes)
    assert_same_graph(live.graph, run(viz.graph(-math.inf, math.inf)))
    longest: dict[str, dict] = {}
    for path in files:
        for r in read_log(path).records:
            if r.fields["duration"] > longest.get(r.uid, {"duration": -1})["duration"]:
                longest[r.uid] = r.fields
    edge_bytes: Counter[str] = Counter()
    for f in longest.values():
        edge_bytes[f"{f['id.orig_h']}>{f['id.resp_h']}"] += f.get("orig_bytes", 0) + f.get("resp_bytes", 0)
    assert {eid: e.attrs["bytes"] for eid, e in live.graph.edges.items()} == dict(edge_bytes)


def test_a_longer_report_replaces_and_a_stale_one_is_ignored(ingest, viz):
    live = LiveFeed(viz)
    ingest([msg("open_conn", conn("LONG", T0, duration=3600.0, ob=10, rb=10))])
    live.step()
    ingest([msg("conn", conn("LONG", T0, duration=9000.0, ob=100, rb=100, service="ssh"))])
    live.step()
    ingest([msg("open_conn", conn("LONG", T0, duration=7200.0, ob=50, rb=50))])  # late and shorter: no change
    assert not live.step()
    (edge,) = live.graph.edges.values()
    assert (edge.attrs["bytes"], edge.attrs["conns"], edge.category, edge.last) == (200, 1, "ssh", T0 + 9000)
    assert_same_graph(live.graph, run(viz.graph(T0, T0)))


# --- the graph's shape -------------------------------------------------------------------------------------


@needs_data
def test_graph_over_a_whole_conn_log_has_its_addresses_and_pairs(ingest, viz):
    path = ROLLING / "conn.16:00:00-17:00:00.log.gz"
    for batch in batches((path,)):
        ingest(batch)
    records = read_log(path).records
    g = run(viz.graph(*run(viz.time_range())))
    assert set(g.nodes) == {r.fields[k] for r in records for k in ("id.orig_h", "id.resp_h")}
    pairs = Counter(f"{r.fields['id.orig_h']}>{r.fields['id.resp_h']}" for r in records)
    assert {eid: e.attrs["conns"] for eid, e in g.edges.items()} == dict(pairs)
    nbytes: Counter[str] = Counter()
    for r in records:
        f = r.fields
        nbytes[f"{f['id.orig_h']}>{f['id.resp_h']}"] += f.get("orig_bytes", 0) + f.get("resp_bytes", 0)
    assert {eid: e.weight for eid, e in g.edges.items()} == {eid: float(b) for eid, b in nbytes.items()}
    g.check()
    proxy = g.edges["10.0.0.111>10.0.0.238"]
    assert proxy.category in proxy.attrs["services"] and proxy.attrs["ports"] == [3128]
    assert proxy.attrs["services"][proxy.category] == max(proxy.attrs["services"].values())
    assert g.nodes["10.0.0.238"].attrs["ports"] == [3128] and g.nodes["10.0.0.238"].category == "local"


@needs_data
def test_a_connection_of_many_hours_is_in_the_graph_at_every_point(ingest, viz):
    path = ROLLING / "conn.15:00:00-16:00:00.log.gz"
    for batch in batches((path,)):
        ingest(batch)
    r = max(read_log(path).records, key=lambda r: r.fields.get("duration", 0))
    start, duration = r.ts, r.fields["duration"]
    assert duration > 5 * 3600
    eid = f"{r.fields['id.orig_h']}>{r.fields['id.resp_h']}"
    for k in range(11):
        t = start + duration * k / 10
        g = run(viz.graph(t, t))
        assert eid in g.edges, f"the {duration / 3600:.1f} h connection is missing at +{t - start:.0f} s"
        assert g.edges[eid].first <= t <= g.edges[eid].last
    after = run(viz.graph(start + duration + 1, start + duration + 1))
    assert (
        eid not in after.edges
        or after.edges[eid].attrs["conns"] < run(viz.graph(start, start)).edges[eid].attrs["conns"]
    )


def test_point_graph_over_a_busy_day(ingest, viz):
    """100,000 connections over 24 h (durations from 1 s to 12 h): graph(t, t) holds exactly the active ones; the
    time is printed (pytest -s), not asserted."""
    rng = random.Random(7)
    conns = []
    for i in range(100_000):
        duration = math.exp(rng.uniform(0, math.log(12 * 3600))) if rng.random() < 0.05 else rng.uniform(0, 30)
        conns.append(
            conn(
                f"B{i}",
                T0 + rng.uniform(0, 86400),
                duration=duration,
                orig=f"10.0.{rng.randrange(40)}.{rng.randrange(250)}",
                resp=f"192.0.2.{rng.randrange(250)}",
                service=rng.choice(["dns", "http", "ssl", None]),
            )
        )
    for i in range(0, len(conns), 1000):
        ingest([msg("conn", c) for c in conns[i : i + 1000]])
    times = []
    for t in (T0 + 3600, T0 + 43200, T0 + 80000):
        started = time.perf_counter()
        g = run(viz.graph(t, t))
        times.append(time.perf_counter() - started)
        active = [c for c in conns if c["ts"] <= t <= c["ts"] + c["duration"]]
        assert sum(e.attrs["conns"] for e in g.edges.values()) == len(active) > 0
    print(f"\ngraph(t, t) over 24 h of 100,000 connections: {', '.join(f'{s * 1000:.1f} ms' for s in times)}")


# --- pulses ------------------------------------------------------------------------------------------------


@needs_data
def test_http_status_codes_pulse_their_connection_edge(ingest, viz):
    live = LiveFeed(viz)
    for batch in batches(rolling_files()):
        ingest(batch)
        live.step()
    pair: dict[str, str] = {}
    expected: set[tuple[str, str]] = set()
    for path in rolling_files():
        for r in read_log(path).records:
            if r.path == "conn":
                pair[r.uid] = f"{r.fields['id.orig_h']}>{r.fields['id.resp_h']}"
    for path in sorted(ROLLING.glob("http.*.log.gz")):
        for r in read_log(path).records:
            status = r.fields.get("status_code")
            if status is not None and r.uid in pair:
                expected.add((pair[r.uid], "ok" if status < 400 else "error"))
    seen = {(p.target, p.meaning) for p in live.pulses() if p.on == "edge" and p.meaning in ("ok", "error")}
    assert seen == expected
    assert {m for _, m in expected} == {"ok", "error"}  # the data has 2xx/3xx and 4xx/5xx responses
    assert {p.target for p in live.pulses() if p.meaning == "new"} == set(live.graph.edges)


def test_an_http_response_before_its_connection_pulses_once_the_connection_comes(ingest, viz):
    live = LiveFeed(viz)
    ingest([msg("http", {"ts": T0 + 1, "uid": "C1", "status_code": 503})])
    assert live.step().pulses == []
    ingest([msg("conn", conn("C1", T0, duration=5.0))])
    change = live.step()
    assert {(p.target, p.meaning, p.t) for p in change.pulses} == {
        ("10.0.0.1>192.0.2.7", "new", T0),
        ("10.0.0.1>192.0.2.7", "error", T0 + 1),
    }
    ingest(
        [
            msg("http", {"ts": T0 + 2, "uid": "C1", "status_code": 204}),
            msg("http", {"ts": T0 + 3, "uid": "C1", "status_code": None}),
        ]
    )
    assert [(p.meaning, p.t) for p in live.step().pulses] == [("ok", T0 + 2)]


@needs_data
def test_weird_and_notice_records_pulse_their_hosts(ingest, viz):
    files = tuple(sorted(DAY.glob("conn.00:*.log.gz")) + sorted(DAY.glob("weird.00:*.log.gz")))
    live = LiveFeed(viz)
    for batch in batches(files):
        ingest(batch)
        live.step()
    hosts = {r.fields[k] for r in read_log(files[1]).records for k in ("id.orig_h", "id.resp_h") if r.fields.get(k)}
    assert hosts
    assert {p.target for p in live.pulses() if p.on == "node" and p.meaning == "error"} == hosts
    ingest(
        [
            msg("notice", {"ts": T0, "note": "Scan", "src": "10.0.0.9", "dst": "192.0.2.99"}),
            msg("notice", {"ts": T0, "note": "CaptureLoss::Too_Much_Loss"}),
        ]
    )
    assert live.step().pulses == []  # hosts not in the graph: nothing to flash
    ingest([msg("conn", conn("C9", T0, orig="10.0.0.9", resp="192.0.2.99"))])
    live.step()
    ingest([msg("notice", {"ts": T0 + 1, "note": "Scan", "src": "10.0.0.9", "dst": "192.0.2.99"})])
    assert {(p.target, p.on, p.meaning) for p in live.step().pulses} == {
        ("10.0.0.9", "node", "error"),
        ("192.0.2.99", "node", "error"),
    }


# --- labels ------------------------------------------------------------------------------------------------


def test_label_is_the_latest_dns_name_with_ties_broken_the_same_way_live_and_queried(ingest, viz):
    live = LiveFeed(viz)
    ingest(
        [
            msg("conn", conn("C1", T0)),
            msg("dns", {"ts": T0, "uid": "D1", "query": "b.example", "answers": ["192.0.2.7"]}),
            msg("dns", {"ts": T0, "uid": "D2", "query": "a.example", "answers": ["192.0.2.7"]}),
        ]
    )
    live.step()
    assert live.graph.nodes["192.0.2.7"].label == "b.example"  # same time: the greater name, as ZREVRANGE
    assert_same_graph(live.graph, run(viz.graph(T0, T0)))
    ingest([msg("dns", {"ts": T0 + 5, "uid": "D3", "query": "a.example", "answers": ["192.0.2.7"]})])
    change = live.step()
    assert [n.label for n in change.nodes] == ["a.example"]
    ingest([msg("dns", {"ts": T0 + 1, "uid": "D4", "query": "z.example", "answers": ["192.0.2.7"]})])
    assert not live.step().nodes  # an older name changes nothing
    assert live.graph.nodes["192.0.2.7"].label == "a.example" and live.graph.nodes["10.0.0.1"].label == "10.0.0.1"
    assert_same_graph(live.graph, run(viz.graph(T0, T0)))


# --- details -----------------------------------------------------------------------------------------------


@needs_data
def test_details_of_a_host_and_of_edges_with_their_linked_records(ingest, viz):
    for batch in batches(rolling_files()):
        ingest(batch)
    first, last = run(viz.time_range())
    g = run(viz.graph(first, last))

    host = run(viz.details("10.0.0.238", first, last))
    rows = dict(map(tuple, host.sections[0].rows))
    node = g.nodes["10.0.0.238"]
    assert (rows["bytes"], rows["connections out"], rows["connections in"]) == (
        node.attrs["bytes"],
        node.attrs["conns_out"],
        node.attrs["conns_in"],
    )
    assert rows["ports served"] == [3128] and rows["probes"] == "s1"
    assert rows["first seen (in view)"] == node.first and rows["last seen (in view)"] == node.last
    named = next(n for n in g.nodes.values() if n.label != n.id)
    names = run(viz.details(named.id, first, last)).sections[1]
    assert names.rows[0][0] == named.label and all(isinstance(t, float) for _, t in names.rows)

    proxy = run(viz.details("10.0.0.111>10.0.0.238", first, last))
    assert proxy.title == "10.0.0.111 → 10.0.0.238: 1650 connections (latest 50 shown)"
    blocks: list[list] = []
    for s in proxy.sections[1:]:
        if s.title.startswith("conn "):
            blocks.append([])
        blocks[-1].append(s)
    assert len(blocks) == 50
    starts = [b[0].t for b in blocks]
    assert starts == sorted(starts, reverse=True)  # latest first
    for block in blocks:
        uid = block[0].record["uid"]
        assert all(s.title.split()[1] == uid for s in block) and all(s.record.get("uid") == uid for s in block)
        assert [s.t for s in block[1:]] == sorted(s.t for s in block[1:])  # each connection's records in time order
    assert any({"http", "ssl"} <= {s.title.split()[0] for s in b} for b in blocks)

    dns = run(viz.details("10.0.0.238>75.75.75.75", first, last))
    assert any(s.title.startswith("dns ") and s.record["query"] for s in dns.sections)
    tls_uid = next(
        r.uid
        for p in sorted(ROLLING.glob("ssl.*"))
        for r in read_log(p).records
        if r.fields.get("cert_chain_fps") and r.uid.startswith("CXiEAy2KnBSRj7NpSa")
    )
    tls = next(e for e in g.edges.values() if e.src.startswith("2601:19e:8200:91e0::1ec7") and e.dst.startswith("2a05"))
    sections = run(viz.details(tls.id, first, last)).sections
    x509 = [s for s in sections if s.title.startswith("x509 ")]
    assert x509 and all(tls_uid in s.title for s in x509) and all("certificate.subject" in s.record for s in x509)

    assert run(viz.details("10.9.9.9", first, last)) is None
    assert run(viz.details("10.0.0.111>10.9.9.9", first, last)) is None
    assert run(viz.details("not-an-address", first, last)) is None
    assert run(viz.details("10.0.0.238", first - 86400, first - 3600)).sections[0].rows[4] == [
        "connections",
        "none in view",
    ]


# --- timeline ----------------------------------------------------------------------------------------------


def test_time_range_and_histogram(ingest, viz):
    m = T0 // 60 * 60  # a minute's start
    assert run(viz.time_range()) is None
    assert run(viz.histogram(m, m + 600, 10)) == [
        {"t0": m + 60 * i, "t1": m + 60 * (i + 1), "conns": 0, "bytes": 0} for i in range(10)
    ]
    ingest(
        [
            msg("conn", conn("A", m + 10, ob=1, rb=2)),
            msg("conn", conn("B", m + 70, ob=10, rb=20)),
            msg("conn", conn("C", m + 130, duration=600.0, ob=100, rb=200)),
        ]
    )
    assert run(viz.time_range()) == (m + 10, m + 730)
    bins = run(viz.histogram(m, m + 180, 2))  # bins of 90 s: the minute from m + 60 starts in the first
    assert [(b["conns"], b["bytes"]) for b in bins] == [(2, 33), (1, 300)]
    bins = run(viz.histogram(m + 30, m + 150, 4))  # the minute that straddles t0 counts in the first bin
    assert [(b["conns"], b["bytes"]) for b in bins] == [(1, 3), (1, 30), (0, 0), (1, 300)]
    assert run(viz.histogram(m, m + 180, 0)) == []


@needs_data
def test_histogram_of_real_logs_counts_every_connection(ingest, viz):
    for batch in batches(rolling_files()):
        ingest(batch)
    first, last = run(viz.time_range())
    bins = run(viz.histogram(first, last, 60))
    conns = [r for p in sorted(ROLLING.glob("conn.*")) for r in read_log(p).records]
    assert sum(b["conns"] for b in bins) == len({r.uid for r in conns})
    assert bins[0]["t0"] == first and bins[-1]["t1"] == last


# --- options -----------------------------------------------------------------------------------------------


def test_options_categories_and_groups(tmp_path, store):
    tags = tmp_path / "tags.txt"
    tags.write_text("# site map\n10.0.0.0/8 corp\n10.1.0.0/16  lab   # the lab\n\n2001:db8::/32 v6site\n")
    viz = NetZeekView(
        store,
        {
            "local_networks": ["10.0.0.0/8", "2001:db8::/32"],
            "tags_file": str(tags),
            "groups": {"10.1.2.0/24": "prod", "10.0.0.0/8": "office"},
        },
    )
    c = viz.classifier
    assert c.classify("10.1.2.3") == ("local", "prod")  # the most specific subnet wins
    assert c.classify("10.1.9.9") == ("local", "lab")
    assert c.classify("10.9.9.9") == ("local", "office")  # groups win over the tags file for the same subnet
    assert c.classify("2001:db8::1") == ("local", "v6site")
    assert c.classify("192.168.1.1") == ("remote", "")  # not local here: local_networks replaces the default
    default = NetZeekView(store, {}).classifier
    assert [
        default.classify(ip)[0]
        for ip in ("10.1.1.1", "172.20.0.1", "192.168.0.1", "fd00::1", "8.8.8.8", "2001:4860::8888", "fe80::1%eth0")
    ] == ["local", "local", "local", "local", "remote", "remote", "remote"]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"local_network": []}, "unknown option local_network"),
        ({"local_networks": "10.0.0.0/8"}, "local_networks: expected a list"),
        ({"local_networks": ["10.0.0.0/33"]}, r"local_networks\[0\]: '10.0.0.0/33' is not a CIDR"),
        ({"groups": ["10.0.0.0/8"]}, "groups: expected a table"),
        ({"groups": {"10.0.0.0/8": ""}}, "groups.'10.0.0.0/8': expected a non-empty group name"),
        ({"groups": {"lab": "10.0.0.0/8"}}, "groups.lab: 'lab' is not a CIDR"),
        ({"tags_file": "/nonexistent/tags"}, "tags_file '/nonexistent/tags': cannot read it"),
    ],
)
def test_bad_options_are_refused_with_the_option_named(store, options, error):
    with pytest.raises(ValueError, match=error):
        NetZeekView(store, options)


def test_bad_tags_file_line_is_refused_with_its_line_number(tmp_path):
    tags = tmp_path / "tags"
    tags.write_text("10.0.0.0/8 corp\n10.1.0.0/16\n")
    with pytest.raises(ValueError, match=r"tags_file '.*tags' line 2: expected 'CIDR name'"):
        parse_options({"tags_file": str(tags)})


def test_the_sample_config_is_valid():
    sample = tomllib.loads((ROOT / "plugins" / "net_zeek" / "viz.sample.toml").read_text())
    options = parse_options(sample["net_zeek"])
    assert options.local_networks and options.groups


# --- lost feed entries -------------------------------------------------------------------------------------


def test_trimmed_feed_entries_are_detected_and_force_a_recompute(ingest, viz, redis_client):
    live = LiveFeed(viz)
    ingest([msg("conn", conn("C1", T0))])
    live.step()
    ingest([msg("conn", conn("C2", T0, resp="192.0.2.8"))])
    ingest([msg("conn", conn("C3", T0, resp="192.0.2.9"))])
    redis_client.xtrim(FEED_KEY, maxlen=1, approximate=False)  # C2's entry is gone before the viewer read it
    with pytest.raises(FeedGap, match="trimmed before they were read"):
        live.step()
    assert viz.counters["feed_gaps"] == 1
    ingest([msg("conn", conn("C4", T0, resp="192.0.2.10"))])
    assert not run(viz.on_events([(FEED_KEY, "xadd")], live.graph))  # nothing folds until the recompute
    live.resync(None)
    assert set(live.graph.edges) == {f"10.0.0.1>192.0.2.{i}" for i in (7, 8, 9, 10)}
    ingest([msg("conn", conn("C5", T0, resp="192.0.2.11"))])
    live.step()
    assert_same_graph(live.graph, run(viz.graph(T0, T0)))


def test_store_errors_reach_the_caller(viz, redis_client):
    redis_client.set("wd:net_zeek:span", "not a hash")
    with pytest.raises(Exception, match="WRONGTYPE"):
        run(viz.graph(T0, T0))


def test_no_data_gives_empty_answers(viz):
    assert run(viz.graph(T0, T0 + 60)) == Graph()
    assert run(viz.live_graph(None)) == Graph()
    assert not run(viz.on_events([(FEED_KEY, "xadd")], Graph()))
    assert run(viz.details("10.0.0.1", T0, T0)) is None
