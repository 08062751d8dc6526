"""Probes never hang silently, shown with real processes: `wiredraw server` (its embedded redis-server) and
`wiredraw probe net_zeek --replay` over real Zeek logs from ../shared/data.

- Two different captures replayed one after the other with the same probe id: both are sent completely, both
  probes exit 0 (the second says the saved state is for other files and starts fresh).
- A replay killed with SIGKILL midway and run again over the same files (by another path) resumes: every record
  is written once (the server counts a record sent twice by one probe in records_repeated; these logs have no
  record that would be one anyway).
- No server: the probe says what it waits for within seconds (even with --quiet), and with --give-up 3 exits with
  status 3 and an error naming the wait and what is left unsent; the spool it keeps is sent by the next run.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import pytest
from processes import Proc, Server, World, add_key, wait_until
from wiredraw.plugins.net_zeek.parser import read_log

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "zeek" / "tsv"
CAPTURE_A = DATA / "rita_proxy_rolling" / "conn.16:00:00-17:00:00.log.gz"  # 7,260 records, one hour, gzipped
CAPTURE_B = DATA / "zeek_btest_v3.2.4" / "scripts.policy.protocols.conn.mac-logging" / "conn3.log"  # 1,333, a day
pytestmark = pytest.mark.skipif(not (CAPTURE_A.is_file() and CAPTURE_B.is_file()),
                                reason=f"real Zeek data not found at {DATA} (../shared/data)")


def records_in(path: Path) -> int:
    return len(read_log(path).records)


def as_conn_log(world: World, folder: str, capture: Path) -> Path:
    """``<folder>/conn.log``, the name a user gives, for a capture read in place (a link, not a copy)."""
    d = world.root / folder
    d.mkdir()
    os.symlink(capture, d / "conn.log")
    return d / "conn.log"


def summary(probe: Proc) -> dict[str, int]:
    m = re.search(r"done: (\{.*\})", probe.stderr())
    assert m, f"no summary line: {probe.describe()}"
    return json.loads(m.group(1))


def start(world: World) -> tuple[Server, Path]:
    data_dir, key_file = world.root / "data", world.root / "p.key"
    add_key(data_dir, "p", key_file)
    return world.server("server", data_dir, "--ephemeral").wait_ready(), key_file


def replay(world: World, name: str, server: str, key_file: Path, *files: Path, extra: tuple[str, ...] = ("--fast",)):
    return world.probe(name, server, key_file, world.root / "probe-state", None, "--replay", *map(str, files),
                       *extra, probe_id="p", module="net_zeek")


def assert_stored_once(server: Server, total: int) -> None:
    stats = server.stats()
    assert stats["records_received"] == total, stats
    assert stats["records_written"] == total, f"not every record written once: {stats}"
    assert stats["records_repeated"] == 0, f"a record was sent twice: {stats}"
    assert stats["records_rejected"] == 0, stats


def test_two_captures_replayed_one_after_the_other_with_one_probe_id_are_both_sent(world: World) -> None:
    server, key_file = start(world)
    a, b = as_conn_log(world, "a", CAPTURE_A), as_conn_log(world, "b", CAPTURE_B)
    n_a, n_b = records_in(CAPTURE_A), records_in(CAPTURE_B)
    first = replay(world, "probe-a", server.probe_addr, key_file, a)
    assert first.wait(60) == 0, first.describe()
    assert summary(first)["records_acked"] == n_a
    second = replay(world, "probe-b", server.probe_addr, key_file, b)
    assert second.wait(60) == 0, second.describe()
    assert "resume state is for another set of files: starting fresh" in second.stderr()
    assert summary(second)["records_acked"] == n_b
    assert_stored_once(server, n_a + n_b)
    # the same set once more: it resumes, has nothing left to send, and says so
    third = replay(world, "probe-b-again", server.probe_addr, key_file, b)
    assert third.wait(60) == 0, third.describe()
    assert "nothing was left to send" in third.stderr() and summary(third)["records_read"] == 0
    assert_stored_once(server, n_a + n_b)


def test_a_replay_killed_midway_resumes_and_sends_each_record_once(world: World) -> None:
    server, key_file = start(world)
    total = records_in(CAPTURE_A)
    # the hour at 360x event time: ten seconds, time to kill it in the middle
    first = replay(world, "probe-1", server.probe_addr, key_file, CAPTURE_A, extra=("--speed", "360"))
    wait_until(lambda: server.stats()["records_received"] >= total // 4 or not first.running(), 60,
               lambda: f"a quarter stored; stats {server.stats()}; {first.describe()}")
    assert first.running(), f"the replay ended before it could be killed: {first.describe()}"
    first.popen.kill()
    first.wait(10)
    stored = server.stats()["records_received"]
    assert 0 < stored < total, stored
    moved = as_conn_log(world, "moved", CAPTURE_A)  # the same file, by another path: still the same set
    second = replay(world, "probe-2", server.probe_addr, key_file, moved)
    assert second.wait(60) == 0, second.describe()
    assert "resuming where the last run stopped" in second.stderr(), second.describe()
    assert "starting fresh" not in second.stderr()
    assert_stored_once(server, total)
    assert summary(second)["records_read"] < total  # it went on from where the first stopped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_without_a_server_the_probe_says_so_and_gives_up_keeping_its_spool(world: World) -> None:
    data_dir, key_file = world.root / "data", world.root / "p.key"
    add_key(data_dir, "p", key_file)
    port = free_port()
    addr = f"127.0.0.1:{port}"
    started = time.monotonic()
    probe = replay(world, "probe-alone", addr, key_file, CAPTURE_A, extra=("--fast", "--give-up", "3"))
    wait_until(lambda: "waiting for the server" in probe.stderr() or not probe.running(), 20,
               lambda: f"a waiting line; {probe.describe()}")
    assert f"waiting for the server at {addr} (connection refused), " in probe.stderr(), probe.describe()
    assert probe.wait(30) == 3, probe.describe()
    print(f"gave up {time.monotonic() - started:.1f} s after start; stderr:\n{probe.stderr()}")
    total = records_in(CAPTURE_A)
    spool = world.root / "probe-state" / "spool"
    assert re.search(rf"gave up after 3 s waiting for the server at {re.escape(addr)} \(connection refused\): "
                     rf"\d+ batches \({total:,} records\) left unsent, kept in the spool \({re.escape(str(spool))}\) "
                     r"for the next run", probe.stderr()), probe.describe()
    assert summary(probe)["spooled"] == total
    # the next run, with a server there at last, sends what was kept, once
    server = world.server("server", data_dir, "--ephemeral", probe_port=port).wait_ready()
    again = replay(world, "probe-again", addr, key_file, CAPTURE_A)
    assert again.wait(60) == 0, again.describe()
    assert_stored_once(server, total)


def test_a_live_probe_without_a_server_waits_for_ever_saying_so(world: World) -> None:
    data_dir, key_file = world.root / "data", world.root / "p.key"
    add_key(data_dir, "p", key_file)
    logdir = world.root / "current"
    logdir.mkdir()
    addr = f"127.0.0.1:{free_port()}"
    probe = world.probe("probe-live", addr, key_file, world.root / "probe-state", None, "--logdir", str(logdir),
                        probe_id="p", module="net_zeek")
    waiting = f"waiting for the server at {addr} (connection refused), nothing spooled"
    wait_until(lambda: probe.stderr().count(waiting) >= 2 or not probe.running(), 30,
               lambda: f"two waiting lines; {probe.describe()}")
    assert probe.running(), f"a live probe gave up: {probe.describe()}"
    assert "giving up" not in probe.stderr()
