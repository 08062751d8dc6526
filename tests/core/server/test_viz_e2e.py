"""The viz chain end to end with real processes: probe replaying real Zeek logs -> server -> Redis -> keyspace
notifications -> server -> `wiredraw watch` clients, checked against `wiredraw query`.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from processes import Proc, Server, World, add_key, wait_until, wiredraw_cmd
from wiredraw.core import viewer_protocol
from wiredraw.core.graph import Graph
from wiredraw.core.server.credentials import Tokens
from wiredraw.core.server.live import RECOMPUTE_EVERY
from wiredraw.core.viewer_client import GraphMirror
from wiredraw.plugins.net_zeek.parser import read_log

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "zeek" / "tsv"
ROLLING = DATA / "rita_proxy_rolling"
HOUR = "16:00:00-17:00:00"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real Zeek data not found at {DATA} (../shared/data)")


def start(world: World, *server_args: str) -> tuple[Server, str, Path]:
    data_dir = world.root / "data"
    key_file = world.root / "s1.key"
    add_key(data_dir, "s1", key_file)
    token = Tokens(data_dir).add("viewer1", "viewer")
    server = world.server("server", data_dir, "--ephemeral", *server_args).wait_ready()
    return server, token, key_file


def viz_addr(server: Server) -> str:
    assert server.match is not None
    return f"127.0.0.1:{server.match['viz']}"


def watch(world: World, server: Server, token: str, name: str, *extra: str) -> Proc:
    p = Proc(name, wiredraw_cmd("watch", "--server", viz_addr(server), "--token", token, "--module", "net_zeek",
                                *extra), world.logs, watch_stdout=True)
    world.procs.append(p)
    return p


def messages(p: Proc) -> list[dict[str, Any]]:
    return [json.loads(line) for line in list(p.lines)]


def query(server: Server, token: str, *args: str) -> Any:
    import subprocess

    from processes import dev_env

    r = subprocess.run(wiredraw_cmd("query", "--server", viz_addr(server), "--token", token, "--module", "net_zeek",
                                    *args), capture_output=True, text=True, env=dev_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def replay(world: World, server: Server, key_file: Path, *files: Path, batch: int = 500) -> Proc:
    return world.probe("probe", server.probe_addr, key_file, world.root / "probe-state", None,
                       "--replay", *map(str, files), "--fast", "--batch", str(batch), module="net_zeek")


def settled(procs: list[Proc], quiet: float = 1.5, timeout: float = 60.0) -> None:
    """Wait until none of ``procs`` printed anything for ``quiet`` seconds."""
    last = [len(p.lines) for p in procs]
    since = time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = [len(p.lines) for p in procs]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError("watchers never went quiet")


def rebuild(msgs: list[dict[str, Any]]) -> GraphMirror:
    mirror = GraphMirror()
    for m in msgs:
        mirror.apply(m)  # raises on a diff out of order
    return mirror


def test_two_watchers_get_every_diff_in_order_and_rebuild_what_query_graph_says(world: World):
    server, token, key_file = start(world, "--live-window", "0", "--full-every", "3600")
    watchers = [watch(world, server, token, f"watch-{i}") for i in (1, 2)]
    for w in watchers:
        wait_until(lambda w=w: w.lines, 30, lambda w=w: f"a first graph; {w.describe()}")
    assert [messages(w)[0]["type"] for w in watchers] == ["graph", "graph"]

    conn = ROLLING / f"conn.{HOUR}.log.gz"
    probe = replay(world, server, key_file, conn, ROLLING / f"dns.{HOUR}.log.gz", ROLLING / f"http.{HOUR}.log.gz")
    assert probe.wait(120) == 0, probe.describe()
    settled(watchers)

    first, second = (messages(w) for w in watchers)
    assert [m["seq"] for m in first] == list(range(1, len(first) + 1))
    assert len(first) > 10 and all(m["type"] == "diff" for m in first[1:])
    assert first == second  # both got every diff, the same, in the same order
    pulses = {p["meaning"] for m in first[1:] for p in m["pulses"]}
    assert {"new", "ok"} <= pulses

    span = query(server, token, "range")
    expected = query(server, token, "graph", "--from", str(span["first"]), "--to", str(span["last"]))
    assert rebuild(first).graph == Graph.from_wire(expected)

    # the whole conn.log: nodes = its distinct addresses, edges = its distinct orig->resp pairs
    records = read_log(conn).records
    addrs = {r.fields[k] for r in records for k in ("id.orig_h", "id.resp_h")}
    pairs = {f"{r.fields['id.orig_h']}>{r.fields['id.resp_h']}" for r in records}
    assert {n["id"] for n in expected["nodes"]} == addrs
    assert {e["id"] for e in expected["edges"]} == pairs
    for e in expected["edges"]:
        assert (e["src"], e["dst"]) == tuple(e["id"].split(">"))


def test_wrong_token_is_refused_in_words(world: World):
    server, _token, _key = start(world)
    import subprocess

    from processes import dev_env

    r = subprocess.run(wiredraw_cmd("query", "--server", viz_addr(server), "--token", "nope", "range"),
                       capture_output=True, text=True, env=dev_env(), timeout=60)
    assert r.returncode == 1 and "token refused" in r.stderr and "Traceback" not in r.stderr


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_viewer_that_stops_reading_gets_one_full_graph_when_it_resumes(world: World):
    # a small backlog budget (the default 1 MiB would hold this whole replay's diffs)
    server, token, key_file = start(world, "--live-window", "0", "--full-every", "3600", "--viewer-backlog-kb", "32")
    host, port = viz_addr(server).split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up fast
    sock.connect((host, int(port)))
    sock.sendall(viewer_protocol.pack({"type": "hello", "version": 1, "token": token}))
    sock.sendall(viewer_protocol.pack({"type": "subscribe", "module": "net_zeek"}))
    time.sleep(0.5)
    rss_before = rss_kib(server.pid)
    # a steady reader beside it, so we know when everything went out
    steady = watch(world, server, token, "watch-steady")
    wait_until(lambda: steady.lines, 30, "the steady watcher's first graph")
    files = sorted((DATA / "rita_missing_host" / "2024-04-19").glob("conn.*.log.gz"))  # 31k records, a day
    probe = replay(world, server, key_file, *files, batch=50)
    assert probe.wait(180) == 0, probe.describe()
    settled([steady])
    stats = server.stats()
    rss_during = rss_kib(server.pid)
    assert stats["viz"]["net_zeek"]["changes"] > 20
    # resume: read everything there is; while it was stalled the server dropped its diffs, and each time it could
    # write again it sent one full graph (reason "resync") instead of the backlog
    sock.settimeout(2)
    decoder = viewer_protocol.FrameDecoder(viewer_protocol.MAX_SERVER_FRAME)
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            break  # quiet: everything has arrived
        if not data:
            break
        got.extend(decoder.feed(data))
    sock.close()
    assert got[0]["type"] == "welcome"
    got = got[1:]
    kinds = [m["type"] for m in got]
    assert kinds[0] == "graph"
    assert any(m["type"] == "graph" and m["reason"] == "resync" for m in got), kinds[-5:]
    assert kinds.count("diff") < len(messages(steady)) - 1  # diffs were dropped, not queued
    assert [m["seq"] for m in got] == list(range(1, len(got) + 1))
    assert rebuild(got).graph == rebuild(messages(steady)).graph  # it ends where the steady viewer ends
    assert rss_during - rss_before < 150 * 1024, (rss_before, rss_during)


def test_lost_notifications_are_recovered_by_the_full_graph(world: World):
    server, token, key_file = start(world, "--live-window", "0", "--full-every", "2")
    w = watch(world, server, token, "watch-1")
    wait_until(lambda: w.lines, 30, "a first graph")
    client = redis.Redis.from_url(server.redis_url)
    world.clients.append(client)
    probe = replay(world, server, key_file, ROLLING / f"conn.{HOUR}.log.gz")
    kills = 0
    while probe.running():  # cut the keyspace subscription again and again while records arrive
        kills += client.client_kill_filter(_type="pubsub")
        time.sleep(0.05)
    assert probe.wait(60) == 0 and kills > 0
    span = query(server, token, "range")
    expected = Graph.from_wire(query(server, token, "graph", "--from", str(span["first"]), "--to", str(span["last"])))
    wait_until(lambda: rebuild(messages(w)).graph == expected, 30, "the watcher's graph to match query graph")
    assert any(m["type"] == "graph" and m["reason"] in ("resync", "periodic") for m in messages(w))


def test_the_live_window_moves_on_without_recomputes_and_stays_the_interval_graph(world: World):
    """net_zeek follows the live window (ModuleView.advance): every period, what ended before the window's start
    goes out as a diff, and the graph viewers rebuild equals `query graph` over the window; the live graph is
    recomputed only once, at start."""
    server, token, key_file = start(world, "--live-window", "600", "--full-every", "1")
    w = watch(world, server, token, "watch-1")
    wait_until(lambda: w.lines, 30, "a first graph")
    probe = replay(world, server, key_file, *(ROLLING / f"conn.{h}.log.gz" for h in ("15:00:00-16:00:00", HOUR)))
    assert probe.wait(180) == 0, probe.describe()
    # more than RECOMPUTE_EVERY periods (1 s each): none of them recomputed
    wait_until(lambda: server.stats()["viz"]["net_zeek"]["advances"] > RECOMPUTE_EVERY, 60, "periods to pass")
    counters = server.stats()["viz"]["net_zeek"]
    assert counters["refreshes"] == 1, counters

    msgs = messages(w)
    last = max(i for i, m in enumerate(msgs) if m["type"] == "graph")
    full = msgs[last]
    assert full["reason"] == "periodic" and full["t1"] - full["t0"] == pytest.approx(600)
    # the diffs before it, the window's moves included, built exactly the graph the full one carries
    assert rebuild(msgs[:last]).graph == Graph.from_wire(full)
    expected = query(server, token, "graph", "--from", repr(full["t0"]), "--to", repr(full["t1"]))
    assert Graph.from_wire(full) == Graph.from_wire(expected)
    span = query(server, token, "range")
    everything = query(server, token, "graph", "--from", str(span["first"]), "--to", str(span["last"]))
    assert 0 < len(expected["edges"]) < len(everything["edges"])  # the window left older connections out
    removed = sum(len(m.get("removed_edges", ())) for m in msgs if m["type"] == "diff")
    assert removed > 0  # and they left as diffs
