"""proc_events' key schema (module.write against a real redis-server) and its view translation (plugins/proc_events/
viz.py): live path == query path, pid reuse, fading, pulses, details, histogram."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from test_proc_helpers import T0, ProcIngester, ProcLiveFeed, exec_, exit_, fork, keyspace_events
from viz_store import run
from wiredraw.core.graph import Graph
from wiredraw.core.module import load_module_spec
from wiredraw.plugins.proc_events.module import ProcEventsModule
from wiredraw.plugins.proc_events.schema import PROBES_KEY, index_key, index_ranges
from wiredraw.plugins.proc_events.view import ProcEventsView, parse_options

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def ingest(redis_client):
    return ProcIngester(redis_client)


@pytest.fixture
def viz(store):
    return ProcEventsView(store, {"fade": 30})


def shell_run(t: float = T0) -> list[tuple[str, dict]]:
    """bash (100) runs `sh -c 'sleep 1 & /bin/echo hi; wait'`: sh 200, its children sleep 201 and echo 202."""
    return [
        fork(100, 1, t - 50), exec_(100, t - 50, ["bash"]),
        fork(200, 100, t), exec_(200, t, ["sh", "-c", "sleep 1 & /bin/echo hi; wait"], exe="/usr/bin/dash"),
        fork(201, 200, t + 0.01), exec_(201, t + 0.01, ["sleep", "1"]),
        fork(202, 200, t + 0.02), exec_(202, t + 0.02, ["/bin/echo", "hi"], exe="/usr/bin/echo"),
        exit_(202, t + 0.02, t + 0.03, 0),
        exit_(201, t + 0.01, t + 1.01, 0),
        exit_(200, t, t + 1.02, 3),
    ]


# --- keys -------------------------------------------------------------------------------------------------------


def test_every_key_written_is_declared_with_its_type_and_ttl(ingest, redis_client):
    ingest.events(shell_run())
    ingest("snapshot", [{"t": T0 + 2, "procs": [{"pid": 100, "ppid": 1, "start": T0 - 50, "t": T0 - 50,
                                                 "exe": "/usr/bin/bash", "argv": ["bash"], "uid": 1000}]}])
    spec = load_module_spec(ROOT / "plugins" / "proc_events" / "proc_events.toml")
    keys = [k.decode() for k in redis_client.keys("*")]
    assert keys
    for key in keys:
        template = spec.key_matches(key)
        assert template is not None, key
        assert redis_client.type(key).decode() == template.type, key
        ttl = redis_client.ttl(key)
        assert (ttl == -1) if template.ttl is None else (0 < ttl <= template.ttl), (key, ttl)


def test_records_hold_fork_exec_exit(ingest, redis_client):
    counts = ingest("fork", [fork(200, 100, T0)[1]])
    assert (counts.records, counts.written, counts.repeats) == (1, 1, 0)
    ingest.events(shell_run()[3:4] + [exit_(200, T0, T0 + 1.02, 3)])
    h = redis_client.hgetall(f"wd:proc_events:proc:h1:200:{T0:.2f}")
    assert h[b"ppid"] == b"100" and h[b"pid"] == b"200" and h[b"end"] == f"{T0 + 1.02:.3f}".encode()
    assert h[b"code"] == b"3" and b'"argv":["sh","-c","sleep 1 & /bin/echo hi; wait"]' in h[f"x:{T0:.3f}".encode()]
    assert redis_client.zrange("wd:proc_events:alive:h1", 0, -1) == []  # the exit removed it
    assert redis_client.zrange(index_key(T0, T0 + 1.02), 0, -1) == [f"h1:200:{T0:.2f}".encode()]
    assert redis_client.zscore(PROBES_KEY, "h1") == pytest.approx(T0 + 1.02, abs=1e-3)


def test_a_repeat_from_the_same_probe_changes_nothing_and_notifies_nothing(ingest, redis_client):
    ingest.events(shell_run())
    dump = {k: redis_client.dump(k) for k in redis_client.keys("*")}
    events = keyspace_events(redis_client, lambda: ingest.events(shell_run()))
    assert {e for _, e in events} == {"expire"}, events  # TTL renewals only (class g), which no viewer follows
    assert {k: redis_client.dump(k) for k in redis_client.keys("*")} == dump
    counts = ingest("exit", [exit_(202, T0 + 0.02, T0 + 0.03, 0)[1]])
    assert (counts.written, counts.repeats) == (0, 1)


def test_a_bad_snapshot_entry_is_rejected_alone(ingest):
    counts = ingest("snapshot", [{"t": T0, "procs": [{"pid": 5, "ppid": 1, "start": T0, "argv": ["x"]},
                                                     {"pid": "five"}]}])
    assert counts.written == 1 and sum(counts.rejected.values()) == 1


def test_index_ranges_find_every_ended_process():
    rng = random.Random(7)
    for _ in range(2000):
        start = T0 + rng.uniform(-1e5, 1e5)
        end = start + rng.choice([0.001, 5, 59, 61, 3000, 1e5, 1e7])
        t0 = T0 + rng.uniform(-2e5, 2e5)
        t1 = t0 + rng.choice([0, 1, 100, 1e4])
        active = start <= t1 and end >= t0
        key = index_key(start, end)
        found = any(k == key and lo <= start <= hi for k, lo, hi in index_ranges(t0, t1))
        assert found or not active, (start, end, t0, t1)


# --- viz: what the graph holds -----------------------------------------------------------------------------------


def test_the_tree_with_argv_parents_and_exits(ingest, viz):
    ingest.events(shell_run())
    g = run(viz.graph(*run(viz.time_range())))
    ids = {n.attrs["pid"]: n.id for n in g.nodes.values()}
    assert set(ids) == {100, 200, 201, 202}
    sh, sleep, echo = (g.nodes[ids[p]] for p in (200, 201, 202))
    assert sh.label == "dash" and sh.attrs["argv"] == ["sh", "-c", "sleep 1 & /bin/echo hi; wait"]
    assert (sh.attrs["code"], sh.last, sh.size, sh.attrs["children"]) == (3, T0 + 1.02, 3.0, 2)
    assert sleep.attrs["argv"] == ["sleep", "1"] and echo.attrs["argv"] == ["/bin/echo", "hi"]
    assert {(e.src, e.dst) for e in g.edges.values()} == {(ids[100], ids[200]), (ids[200], ids[201]),
                                                          (ids[200], ids[202])}
    for e in g.edges.values():
        assert e.id == f"{e.src}>{e.dst}" and e.kind == "fork"
    assert {n.group for n in g.nodes.values()} == {"h1"} and sh.category == "alice"
    assert echo.id == f"h1:202:{T0 + 0.02:.2f}"


def test_pid_reuse_gives_two_distinct_nodes_each_with_its_own_children(ingest, viz):
    """pid 300 runs `make`, exits; later pid 300 is reused for `cc`; each has a child: never merged, never crossed."""
    ingest.events([
        fork(300, 1, T0), exec_(300, T0, ["make"]),
        fork(301, 300, T0 + 1), exec_(301, T0 + 1, ["sh"]), exit_(301, T0 + 1, T0 + 2), exit_(300, T0, T0 + 3),
        fork(300, 1, T0 + 10), exec_(300, T0 + 10, ["cc"]),
        fork(302, 300, T0 + 11), exec_(302, T0 + 11, ["as"]),
    ])
    g = run(viz.graph(T0, T0 + 20))
    first, second = f"h1:300:{T0:.2f}", f"h1:300:{T0 + 10:.2f}"
    assert first in g.nodes and second in g.nodes and first != second
    assert g.nodes[first].attrs["argv"] == ["make"] and g.nodes[second].attrs["argv"] == ["cc"]
    assert {(e.src, e.dst) for e in g.edges.values()} == {(first, f"h1:301:{T0 + 1:.2f}"),
                                                          (second, f"h1:302:{T0 + 11:.2f}")}
    at = run(viz.graph(T0 + 100, T0 + 100))  # the first one faded long ago (fade 30)
    assert first not in at.nodes and second in at.nodes


def test_two_hosts_sit_side_by_side_and_never_share_a_process(ingest, viz):
    ingest.events(shell_run(), probe="h1")
    ingest.events(shell_run(), probe="h2")
    g = run(viz.graph(T0, T0 + 2))
    assert {n.group for n in g.nodes.values()} == {"h1", "h2"} and len(g.nodes) == 8
    assert all(e.src.split(":")[0] == e.dst.split(":")[0] for e in g.edges.values())


def test_exited_processes_fade_after_the_configured_time(ingest, store):
    ingest.events(shell_run())
    for fade, shown in ((0.5, {100}), (30, {100, 200, 201, 202})):
        viz = ProcEventsView(store, {"fade": fade})
        g = run(viz.graph(T0 + 1.6, T0 + 1.6))
        assert {n.attrs["pid"] for n in g.nodes.values()} == shown


def test_options_are_checked():
    assert parse_options({}).fade == 60 and parse_options({"category": "exe"}).category == "exe"
    for bad, name in (({"fade": -1}, "fade"), ({"fade": "x"}, "fade"), ({"category": "cpu"}, "category"),
                      ({"colour": 1}, "colour")):
        with pytest.raises(ValueError, match=name):
            parse_options(bad)
    sample = ROOT / "plugins" / "proc_events" / "viz.sample.toml"
    import tomllib

    assert parse_options(tomllib.loads(sample.read_text())["proc_events"]) == parse_options({"fade": 60,
                                                                                          "category": "user"})


def test_make_viz_and_what_it_declares(store):
    viz = ProcEventsModule().make_view(store, {"category": "exe"})
    assert isinstance(viz, ProcEventsView) and viz.node_kinds == ("process",) and viz.edge_kinds == ("fork",)
    assert set(ProcEventsModule().spec.notify_classes) == {"h", "z"}  # hset on proc:*, zadd on probes


# --- live == query -------------------------------------------------------------------------------------------


def assert_same(live: Graph, query: Graph) -> None:
    assert live.nodes.keys() == query.nodes.keys()
    for nid, n in query.nodes.items():
        assert live.nodes[nid] == n, nid
    assert live.edges == query.edges
    assert live == query


def random_history(seed: int, n: int = 300) -> list[list[tuple[str, dict]]]:
    """Batches of events of a busy host: forks of children of live processes, execs, exits, pid reuse."""
    rng = random.Random(seed)
    t = T0
    alive: dict[int, float] = {1: T0 - 1000}
    batches: list[list[tuple[str, dict]]] = [[fork(1, 0, T0 - 1000), exec_(1, T0 - 1000, ["init"])]]
    for _ in range(n):
        batch: list[tuple[str, dict]] = []
        for _ in range(rng.randint(1, 6)):
            t += rng.uniform(0, 3)
            r = rng.random()
            if r < 0.45 or len(alive) < 3:
                pid = rng.randint(2, 60)  # a small pid space: reuse is frequent
                if pid in alive:
                    continue
                ppid = rng.choice(list(alive))
                start = round(t, 2)
                alive[pid] = start
                batch += [fork(pid, ppid, start), exec_(pid, start, [f"p{pid}", str(rng.randint(0, 9))])]
            elif r < 0.6:
                pid = rng.choice(list(alive))
                batch.append(exec_(pid, alive[pid], [f"q{pid}"], t=round(t, 3)))
            else:
                pid = rng.choice([p for p in alive if p != 1])
                batch.append(exit_(pid, alive.pop(pid), round(t, 3), rng.choice([0, 0, 1, -9, None])))
        if rng.random() < 0.1:
            batch.append(("snapshot", {"t": round(t, 3), "procs": []}))  # a probe's clock tick
        batches.append(batch)
    return batches


def test_live_graph_built_from_diffs_equals_the_query_graph_at_the_latest_time(ingest, viz, redis_client):
    live = ProcLiveFeed(viz, redis_client)
    assert live.graph == Graph()
    for batch in random_history(1):
        live.write(ingest, batch)
        t = run(viz.time_range())[1]
        assert_same(live.graph, run(viz.graph(t, t)))
    assert len(live.graph.nodes) > 10 and len(live.graph.edges) > 5
    fresh = ProcEventsView(viz.store, {"fade": 30})
    assert_same(live.graph, run(fresh.live_graph(None)))
    meanings = {p.meaning for p in live.pulses()}
    assert meanings == {"new", "ok", "error"}


def test_pulses_on_start_and_exit_and_fading_on_a_clock_tick(ingest, viz, redis_client):
    live = ProcLiveFeed(viz, redis_client)
    change = live.write(ingest, shell_run()[:6])
    assert {(p.target.split(":")[1], p.meaning) for p in change.pulses} == {("100", "new"), ("200", "new"),
                                                                           ("201", "new")}
    change = live.write(ingest, shell_run()[6:])
    # echo started and ended within the batch: its exit pulse only; sh exited with 3: error
    assert {(p.target.split(":")[1], p.meaning) for p in change.pulses} == {("202", "ok"), ("201", "ok"),
                                                                           ("200", "error")}
    assert len(live.graph.nodes) == 4
    # nothing happens on the host but a snapshot 31 s later: the exited ones fade out
    change = live.write(ingest, [("snapshot", {"t": T0 + 1.02 + 31, "procs": []})])
    assert sorted(n.split(":")[1] for n in change.removed_nodes) == ["200", "201", "202"]
    assert [n.attrs["pid"] for n in live.graph.nodes.values()] == [100]
    t = run(viz.time_range())[1]
    assert_same(live.graph, run(viz.graph(t, t)))


def test_lost_events_stop_folding_until_the_recompute(ingest, viz, redis_client):
    live = ProcLiveFeed(viz, redis_client)
    viz.lost_events()
    assert not live.write(ingest, shell_run())
    assert len(run(viz.live_graph(None)).nodes) == 4


# --- details, range, histogram ---------------------------------------------------------------------------------


def test_details_of_a_process_and_of_a_fork_edge(ingest, viz):
    ingest.events(shell_run())
    ingest("exec", [exec_(200, T0, ["sh", "-c", "again"], t=T0 + 0.5, exe="/usr/bin/dash")[1]])
    sh = f"h1:200:{T0:.2f}"
    d = run(viz.details(sh, T0, T0 + 2))
    rows = dict((r[0], r[1]) for r in d.sections[0].rows)
    assert rows["argv"] == ["sh", "-c", "again"] and rows["exit code"] == 3 and rows["end"] == T0 + 1.02
    assert rows["exe"] == "/usr/bin/dash" and rows["cwd"] == "/home/alice" and rows["user"] == "alice"
    assert len(d.sections[1].rows) == 3  # header + two programs
    assert [r[0] for r in d.sections[2].rows[1:]] == [f"h1:201:{T0 + 0.01:.2f}", f"h1:202:{T0 + 0.02:.2f}"]
    edge = run(viz.details(f"h1:100:{T0 - 50:.2f}>{sh}", T0, T0 + 2))
    assert edge.on == "edge" and [s.title for s in edge.sections] == ["parent", "child"]
    assert run(viz.details("h1:999:1.00", T0, T0 + 2)) is None and run(viz.details("nonsense", 0, 1)) is None


def test_time_range_and_histogram(ingest, viz):
    assert run(viz.time_range()) is None
    ingest.events(shell_run())
    first, last = run(viz.time_range())
    assert (first, last) == (T0 - 50, pytest.approx(T0 + 1.02, abs=1e-3))
    bins = run(viz.histogram(T0 - 60, T0 + 60, 4))
    assert [b["forks"] for b in bins] == [1, 0, 3, 0] and [b["exits"] for b in bins] == [0, 0, 3, 0]
    assert sum(b["execs"] for b in bins) == 4
    assert run(viz.histogram(0, math.inf, 3)) == []
