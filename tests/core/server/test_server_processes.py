"""The server and the probe as real processes, on real sockets on 127.0.0.1.

Every test starts `wiredraw server` / `wiredraw probe devtest` with WIREDRAW_DEV_MODULES=1, waits on
conditions with deadlines (never on fixed sleeps), and kills everything it started in teardown. The
embedded redis-server is found by its working directory (``DATA_DIR/redis``) in /proc.

Exactly-once is checked on Redis's own append-only file: each write of tick n puts one ``PEXPIREAT
wd:devtest:tick:n`` there (an SADD of a member already present is not logged, an expiry always is),
so "every tick in the AOF exactly once" means no tick was ever written twice, which the sets alone
could not show.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis
from helpers import process_gone
from wiredraw.core import wire
from wiredraw.core.server.embedded_redis import EmbeddedRedis, find_redis_server

DEVTEST_ID = 999
from processes import (  # noqa: E402
    READY_RE,
    World,
    add_key,
    dev_env,
    redis_pids,
    setup_dirs,
    wait_until,
    wiredraw_cmd,
)


def aof_writes_per_tick(redis_dir: Path) -> Counter[int]:
    """How many times each wd:devtest:tick:{n} was written, read from the append-only file(s)."""
    files = sorted(redis_dir.rglob("*.aof"))
    assert files, f"no append-only file under {redis_dir}"
    counts: Counter[int] = Counter()
    for path in files:
        data = path.read_bytes()
        if data.startswith(b"REDIS"):  # an RDB preamble (Redis 7 base file): no per-command history
            continue
        reader = hiredis.Reader()
        reader.feed(data)
        while True:
            cmd = reader.gets()
            if cmd is False:
                break
            if isinstance(cmd, list) and len(cmd) >= 2 and cmd[0].upper() in (
                    b"EXPIRE", b"PEXPIRE", b"EXPIREAT", b"PEXPIREAT") \
                    and cmd[1].startswith(b"wd:devtest:tick:"):
                counts[int(cmd[1].rsplit(b":", 1)[1])] += 1
    return counts



def zcard(client: redis.Redis) -> int:
    n: Any = client.zcard("wd:devtest:ticks:s1")
    return int(n)


def assert_all_ticks_once(client: redis.Redis, count: int, redis_dir: Path | None = None) -> None:
    """Ticks 1..count stored, each set holding only s1; with an AOF, each written exactly once."""
    assert zcard(client) == count, f"ZCARD wd:devtest:ticks:s1 is {zcard(client)}, expected {count}"
    members: Any = client.zrange("wd:devtest:ticks:s1", 0, -1)
    stored = {int(m) for m in members}
    assert stored == set(range(1, count + 1)), f"missing ticks: {sorted(set(range(1, count + 1)) - stored)[:20]}"
    pipe = client.pipeline(transaction=False)
    for n in range(1, count + 1):
        pipe.smembers(f"wd:devtest:tick:{n}")
    sets = pipe.execute()
    wrong = {n: m for n, m in zip(range(1, count + 1), sets, strict=True) if m != {b"s1"}}
    assert not wrong, f"tick sets that are not exactly {{s1}}: {dict(list(wrong.items())[:10])}"
    if redis_dir is not None:
        writes = aof_writes_per_tick(redis_dir)
        twice = {n: c for n, c in writes.items() if c != 1}
        assert not twice, f"ticks written more than once (per the AOF): {dict(list(twice.items())[:20])}"
        assert set(writes) == set(range(1, count + 1)), "the AOF does not hold exactly ticks 1..count"


def spool_records(state_dir: Path) -> int:
    total = 0
    for path in (state_dir / "spool").glob("*.batch"):
        try:
            total += int(path.name.split(".")[1])
        except (IndexError, ValueError):
            pass
    return total


# --- lifecycle -----------------------------------------------------------------------------------------


def test_server_prints_ready_line_once_and_sigterm_leaves_no_redis(world: World) -> None:
    data_dir = world.root / "data"
    server = world.server("server", data_dir).wait_ready()
    assert server.redis_url == f"unix://{data_dir / 'redis' / 'redis.sock'}"
    code, health = server.http("/health")
    assert code == 200 and health["status"] == "ok" and health["redis"] == "connected", health
    assert "devtest" in health["modules"]
    pids = wait_until(lambda: redis_pids(server.redis_dir), 5, "the embedded redis-server in /proc")
    assert len(pids) == 1, f"more than one redis-server serving {server.redis_dir}: {pids}"
    (redis_pid,) = pids
    assert world.redis(server.redis_url).ping()

    server.popen.send_signal(signal.SIGTERM)
    rc = server.wait(10)
    assert rc == 0, f"server exited {rc} on SIGTERM: {server.describe()}"
    wait_until(lambda: process_gone(redis_pid), 5, f"redis-server {redis_pid} to exit after the server")
    assert not redis_pids(server.redis_dir)
    ready_lines = [line for line in server.all_stdout().splitlines() if line.startswith("wiredraw server ready")]
    assert len(ready_lines) == 1, f"ready line printed {len(ready_lines)} times: {ready_lines}"
    assert READY_RE.match(ready_lines[0])


def test_server_sigkill_leaves_no_redis(world: World) -> None:
    server = world.server("server", world.root / "data").wait_ready()
    (redis_pid,) = wait_until(lambda: redis_pids(server.redis_dir), 5, "the embedded redis-server")
    server.popen.kill()
    server.wait(5)
    wait_until(lambda: process_gone(redis_pid), 5,
               f"redis-server {redis_pid} to die with its parent (PR_SET_PDEATHSIG)")


def test_server_refuses_bad_config(tmp_path: Path) -> None:
    for args, names in ((("--bind", "nonsense"), "--bind"), (("--redis", "http://x"), "--redis"),
                        (("--viewer-backlog-kb", "-1"), "--viewer-backlog-kb"),
                        (("--viewer-backlog-kb", "40000"), "--viewer-backlog-kb")):
        out = subprocess.run(wiredraw_cmd("server", "--data-dir", str(tmp_path / "data"), "--probe-port", "0",
                                          "--viz-port", "0", "--http-port", "0", *args),
                             env=dev_env(), capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, f"{args}: exit {out.returncode}, stderr {out.stderr!r}"
        assert names in out.stderr, f"{args}: stderr does not name {names}: {out.stderr!r}"
        assert "ready" not in out.stdout, out.stdout
    assert not (tmp_path / "data" / "redis").exists(), "a refused config must start nothing"


# --- exactly once across outages ----------------------------------------------------------------------


def test_tcp_outage_every_record_exactly_once(world: World) -> None:
    data_dir, key_file, state_dir = setup_dirs(world)
    a = world.server("server-a", data_dir).wait_ready()
    port, url = a.probe_port, a.redis_url
    client_a = world.redis(url)
    probe = world.probe("probe", a.probe_addr, key_file, state_dir, 3000, "--rate", "500")
    wait_until(lambda: zcard(client_a) >= 1000 or not probe.running(), 20,
               lambda: f"1000 ticks stored (have {zcard(client_a)}); {probe.describe()}")
    assert probe.running(), f"probe ended early: {probe.describe()}"
    client_a.close()

    a.popen.send_signal(signal.SIGTERM)
    assert a.wait(10) == 0, a.describe()
    outage_started = time.monotonic()
    # The probe keeps reading its source into the spool while no server listens.
    wait_until(lambda: spool_records(state_dir) >= 500 and time.monotonic() - outage_started >= 2, 10,
               lambda: f"the probe's spool to fill (has {spool_records(state_dir)} records)")
    assert probe.running(), f"the probe gave up during the outage: {probe.describe()}"
    print(f"spooled during the outage: {spool_records(state_dir)} records")

    b = world.server("server-b", data_dir, probe_port=port).wait_ready()
    assert b.probe_port == port and b.redis_url == url
    assert probe.wait(40) == 0, probe.describe()
    assert spool_records(state_dir) == 0, "the spool still holds records after the probe finished"
    stats = b.stats()
    print(f"after restart: frames_duplicate={stats['frames_duplicate']} records_written={stats['records_written']}"
          f" frames_accepted={stats['frames_accepted']}")
    assert stats["records_written"] <= 3000
    assert stats["frames_rejected"] == 0, stats["rejected"]
    client = world.redis(url)
    assert_all_ticks_once(client, 3000, b.redis_dir)


def test_embedded_redis_sigkill_restarts_and_nothing_acked_is_lost(world: World) -> None:
    data_dir, key_file, state_dir = setup_dirs(world)
    server = world.server("server", data_dir).wait_ready()
    (old_pid,) = wait_until(lambda: redis_pids(server.redis_dir), 5, "the embedded redis-server")
    client = world.redis(server.redis_url)
    probe = world.probe("probe", server.probe_addr, key_file, state_dir, 4000, "--rate", "800")
    wait_until(lambda: zcard(client) >= 1500 or not probe.running(), 20,
               lambda: f"1500 ticks stored (have {zcard(client)}); {probe.describe()}")
    assert probe.running(), f"probe ended early: {probe.describe()}"

    os.kill(old_pid, signal.SIGKILL)
    new_pids = wait_until(lambda: [p for p in redis_pids(server.redis_dir) if p != old_pid], 15,
                          lambda: f"a new redis-server; server: {server.describe()}")
    assert process_gone(old_pid) and len(new_pids) == 1, new_pids
    wait_until(lambda: server.stats()["redis_restarts"] >= 1 and server.stats()["redis_reconnects"] >= 1, 15,
               lambda: f"redis_restarts and redis_reconnects >= 1: {server.stats()}")
    assert probe.wait(40) == 0, probe.describe()
    stats = server.stats()
    print(f"after the redis kill: restarts={stats['redis_restarts']} reconnects={stats['redis_reconnects']} "
          f"write_failures={stats['write_failures']} frames_duplicate={stats['frames_duplicate']} "
          f"records_written={stats['records_written']}")
    assert stats["records_written"] <= 4000
    assert server.running(), server.describe()
    code, health = server.http("/health")
    assert code == 200 and health["status"] == "ok", health
    assert_all_ticks_once(world.redis(server.redis_url), 4000, server.redis_dir)


# --- hostile input ------------------------------------------------------------------------------------


def _tick_body(n: int) -> bytes:
    return wire.encode_body([{"n": n, "ts": time.time()}])


def test_bad_frames_counted_by_reason_while_valid_probe_keeps_working(world: World) -> None:
    data_dir, key_file, state_dir = setup_dirs(world)
    bad_key = add_key(data_dir, "intruder", world.root / "intruder.key")
    keys = {"s1": bytes.fromhex(key_file.read_text().strip()), "intruder": bad_key}
    server = world.server("server", data_dir).wait_ready()
    probe = world.probe("probe", server.probe_addr, key_file, state_dir, 1000, "--rate", "400")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", server.probe_port)
    expected: Counter[str] = Counter()

    def rejected_total() -> int:
        return sum(server.stats()["rejected"].values())

    def send(datagrams: list[bytes], reasons: list[str]) -> None:
        """Send and wait until the server has counted them (loopback UDP does not lose a few)."""
        for data in datagrams:
            udp.sendto(data, target)
        expected.update(reasons)
        total = sum(expected.values())
        wait_until(lambda: rejected_total() >= total, 10,
                   lambda: f"{total} rejections counted: {server.stats()['rejected']} (expected {dict(expected)})")

    try:
        def frame(seq: int, ts: float | None = None, n: int = 1_000_000 + 1) -> bytes:
            return wire.encode_frame(keys["intruder"], DEVTEST_ID, "tick", "intruder", seq,
                                     time.time() if ts is None else ts, _tick_body(n + seq))

        good = frame(10)
        unsigned = b"\x97" + wire.signed_bytes(DEVTEST_ID, "tick", "intruder", 11, time.time(),
                                               _tick_body(5))[1:]
        flipped = bytearray(frame(12))
        flipped[-1] ^= 0x01  # the last byte is the tag's
        send([unsigned], ["unsigned"])
        send([bytes(flipped)], ["bad_signature"])
        send([good, good], ["replay"])  # the first is stored, the second refused
        send([frame(13, ts=time.time() - 3600)], ["stale"])
        send([frame(14)[:-10]], ["truncated"])
        send([b"\xc1"], ["malformed"])  # 0xc1: never used by msgpack

        # Oversized: only a stream can declare more than max_frame_bytes (a datagram is <= 64 KiB).
        with socket.create_connection(target, timeout=5) as tcp:
            tcp.sendall(struct.pack(">I", wire.DEFAULT_LIMITS.max_frame_bytes + 1) + b"\x00" * 64)
            received = b""
            while True:
                chunk = tcp.recv(4096)  # the server must close: a timeout here fails the test
                if not chunk:
                    break
                received += chunk
        (payload,) = wire.StreamDecoder().feed(received)
        kind, fields = wire.decode_control(payload)
        assert (kind, fields[0]) == ("error", "oversized"), (kind, fields)
        expected["oversized"] += 1

        # Random bytes, seeded: what each one becomes is what the same decoder says locally.
        rng = random.Random(20240611)
        junk = [rng.randbytes(rng.randint(1, 300)) for _ in range(200)]
        junk_reasons = []
        for data in junk:
            with pytest.raises(wire.WireError) as excinfo:
                wire.decode_frame(data, keys.get)
            junk_reasons.append(excinfo.value.reason)
        print(f"random bytes became: {dict(Counter(junk_reasons))}")
        assert set(junk_reasons) <= set(wire.REASONS)
        for i in range(0, len(junk), 25):
            send(junk[i:i + 25], junk_reasons[i:i + 25])

        assert probe.wait(30) == 0, probe.describe()
        stats = server.stats()
        print(f"rejected: {stats['rejected']}")
        assert stats["rejected"] == dict(expected), f"got {stats['rejected']}, expected {dict(expected)}"
        assert set(stats["rejected"]) <= set(wire.REASONS)
        for reason in ("unsigned", "bad_signature", "replay", "stale", "oversized", "truncated", "malformed"):
            assert stats["rejected"].get(reason, 0) >= 1, reason
        assert stats["frames_rejected"] == sum(expected.values())
        client = world.redis(server.redis_url)
        assert client.smembers(f"wd:devtest:tick:{1_000_011}") == {b"intruder"}  # the one good frame
        assert_all_ticks_once(client, 1000)
        assert server.running() and server.http("/health")[0] == 200
    finally:
        udp.close()


# --- UDP ----------------------------------------------------------------------------------------------


def test_udp_probe_delivers(world: World) -> None:
    data_dir, key_file, state_dir = setup_dirs(world)
    server = world.server("server", data_dir, "--ephemeral").wait_ready()
    probe = world.probe("probe", server.probe_addr, key_file, state_dir, 2000, "--transport", "udp",
                        "--batch", "50", "--rate", "4000")
    assert probe.wait(30) == 0, probe.describe()
    summary_match = re.search(r"done: (\{.*\})", probe.stderr())
    assert summary_match, probe.describe()
    summary = json.loads(summary_match[1])
    assert summary["records_sent"] == 2000 and summary["frames_sent"] >= 40, summary
    frames_sent = summary["frames_sent"]
    client = world.redis(server.redis_url)
    # Datagrams in flight when the probe exits still arrive: wait until the count stops changing.
    last = [-1, time.monotonic()]

    def settled() -> bool:
        n = zcard(client)
        if n != last[0]:
            last[:] = [n, time.monotonic()]
        return n == 2000 or time.monotonic() - last[1] > 1.0

    wait_until(settled, 15, "the stored count to settle")
    stored = zcard(client)
    stats = server.stats()
    print(f"UDP: {stored}/2000 records stored ({stored / 20:.1f} %), frames {stats['frames_accepted']}/"
          f"{frames_sent}, udp_seq_gaps={stats['udp_seq_gaps']}")
    assert stored >= 1900, f"only {stored} of 2000 records arrived over loopback UDP"
    assert stats["records_written"] == stored
    assert stats["frames_rejected"] == 0, stats["rejected"]
    # A gap is counted between accepted frames only, so lost frames are at least the gaps seen.
    assert stats["frames_accepted"] + stats["udp_seq_gaps"] <= frames_sent, stats
    if stats["frames_accepted"] == frames_sent:
        assert stats["udp_seq_gaps"] == 0
    if stored == 2000:
        assert_all_ticks_once(client, 2000)


# --- external Redis -----------------------------------------------------------------------------------


def test_external_redis_url(world: World) -> None:
    # A path too long for AF_UNIX makes EmbeddedRedis listen on a password-protected loopback port:
    # a URL with a password, which the ready line must not show.
    external = EmbeddedRedis(world.root / ("r" * 100), ephemeral=True)
    assert not external.use_unix_socket
    external.start()
    try:
        admin = world.redis(external.url)
        admin.config_set("notify-keyspace-events", "")
        data_dir, key_file, state_dir = setup_dirs(world)
        server = world.server("server", data_dir, "--redis", external.url).wait_ready()
        assert server.redis_url == f"redis://***@127.0.0.1:{external.port}/0"
        assert external.password and external.password not in "".join(server.lines) + server.stderr()
        assert not (data_dir / "redis").exists(), "with --redis no embedded Redis may start"
        flags = str(admin.config_get("notify-keyspace-events")["notify-keyspace-events"])
        assert {"K", "s"} <= set(flags), f"notify-keyspace-events is {flags!r}"
        probe = world.probe("probe", server.probe_addr, key_file, state_dir, 500)
        assert probe.wait(30) == 0, probe.describe()
        assert_all_ticks_once(admin, 500)
        server.popen.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0, server.describe()
        assert admin.ping(), "the server must leave an external Redis running"
    finally:
        external.stop()


def test_external_redis_refusing_config_set(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from wiredraw.core.cli import get_modules

    monkeypatch.setenv("WIREDRAW_DEV_MODULES", "1")
    classes = get_modules().notify_classes()
    assert "s" in classes
    wanted_line = f"notify-keyspace-events K{classes}"

    rdir = world.root / "managed"
    rdir.mkdir()
    sock = rdir / "r.sock"
    config = (f'port 0\nunixsocket "{sock}"\nunixsocketperm 700\nsave ""\nappendonly no\n'
              f'daemonize no\nlogfile ""\nrename-command CONFIG ""\n')
    proc = subprocess.Popen([find_redis_server(), "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=rdir)
    try:
        assert proc.stdin is not None
        proc.stdin.write(config.encode())
        proc.stdin.close()
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=5)
        world.clients.append(client)

        def pings() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                assert proc.poll() is None, f"redis-server exited {proc.returncode}"
                return False

        wait_until(pings, 10, "the managed-like redis-server")
        with pytest.raises(redis.ResponseError):
            client.execute_command("CONFIG", "GET", "notify-keyspace-events")

        data_dir = world.root / "data"
        server = world.server("server", data_dir, "--redis", f"unix://{sock}")
        rc = server.wait(30)
        stderr = server.stderr()
        assert rc != 0, f"server exited 0 though Redis refused CONFIG: {stderr}"
        assert wanted_line in [line.strip() for line in stderr.splitlines()], \
            f"stderr lacks the line {wanted_line!r}:\n{stderr}"
        assert not any(line.startswith("wiredraw server ready") for line in server.all_stdout().splitlines())
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
