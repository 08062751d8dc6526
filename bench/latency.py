#!/usr/bin/env python3
"""Benchmark: how long a Zeek conn record takes from a probe to a `wiredraw watch` client, and `graph --at` time.

    python3 bench/latency.py [--rates 1000,10000] [--seconds S] [--connections N] [--quick] [--tick MS]
                             [--hosts N] [--full-every S] [--no-live] [--profile-server FILE.prof] [--keep]

Part 1, live latency. A real `wiredraw server --ephemeral --live-window 0` (embedded redis-server) and two real
`wiredraw watch --module net_zeek` processes; a thread per watch client stamps each stdout line with
time.monotonic() as it arrives. This process is the probe: the TCP handshake, signing and framing of
spec/wire.md come from `wiredraw.core.wire`, the messages from net_zeek's `record_message`, the bodies from the
probe runner's `Batcher` (it does not spool or fsync: a real probe's spool and 50 ms poll are not counted). The
records are a real conn.log row (rita_proxy_rolling, an ssl connection) with a new uid, ts = when it is due,
and addresses that put each on an edge of its own, so the edge id `orig>resp` names exactly one record: record i
goes from local client i mod `--hosts` (default 2,000) to server i div `--hosts` (`--hosts 0`: a new client per
record, a new node each time — the worst case for the graph). Real traffic repeats edges; this measures new ones.
After a warm-up (500/s for 1 s, not counted), each rate runs for `--seconds`: every `--tick` ms (default 5) the
records due so far go out in one frame, stamped when written to the socket. This process does not collect garbage
while a rate runs, so a pause of its own never delays a stamp.

- latency of a record, per client = the arrival of the first line the client prints whose `edges` hold its
  edge (a diff, or a full graph if a diff was dropped) − its frame's send time. p50/p95/p99/max per rate and
  client; a record a client never shows is a bug and is reported loudly (MISSED).
- baseline, same run, same frames: the server's cumulative `ack` of each frame − its send time, i.e.
  probe → server → EVALSHA ingest.lua in Redis → ack. **ratio = p99 watch ÷ p99 ack**: what the keyspace
  notification, the feed read, the translation, the per-viewer diff and the watch process add on top of the
  write itself.
- CPU seconds per second of the phase for the server, its redis-server, each watch client and this process
  (from /proc; 1.00 = one core busy). The server's periodic full graph (`--full-every`, default the server's 30 s)
  is left on: when one lands inside a phase its cost shows in that phase's tail (the full graph lines are counted).

Part 2, `graph --at`. A second, fresh server (`--full-every 3600`, so a periodic recompute of the live graph does
not land on a timing) is filled through the same probe path with `--connections` conn records spread over the
last 24 h — 85 % last under 10 s, 12 % 1–30 min, 3 % 1–6 h; 2,000 local hosts to 20,000 remote ones, both
Zipf-like — sent in end-time order as Zeek writes them. Then, on one in-process `ViewerClient` (no process start
cost), for 12 instants across the day, each asked 3 times: `graph` with `at` T, each beside a `range` request
(one HMGET in Redis: the round trip of the viz protocol itself). p50/max of each; **ratio = graph p50 ÷ range
p50**.

The last line is the same data as one JSON object. This is a benchmark: it asserts nothing; run it a few times.

Why one file of ~700 lines: a benchmark is run as one script from a clean checkout (`python3 bench/latency.py`),
its two parts share the probe, the servers and the report, and what it measures is best read in one place.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    BenchError,
    Proc,
    child_env,
    child_pid,
    cpu_seconds,
    get_stats,
    run_guarded,
    si,
    start_server,
    stop_all,
    top_functions,
    wiredraw_argv,
)
from wiredraw.core import wire
from wiredraw.core.address import parse_server
from wiredraw.core.batching import Batcher
from wiredraw.core.server.credentials import ProbeSecrets, Tokens
from wiredraw.core.viewer_client import ViewerClient
from wiredraw.plugins.net_zeek.parser import ZeekRecord, read_log
from wiredraw.plugins.net_zeek.schema import record_message

TEMPLATE_LOG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "zeek" / "tsv" \
    / "rita_proxy_rolling" / "conn.16:00:00-17:00:00.log.gz"
DAY = 86400.0
MODULE = "net_zeek"
QUIET = 2.0  # no new line from any client for this long after the last ack: the phase is over
DRAIN_MAX = 120.0  # seconds to wait for the clients after the last record is sent
GRAPH_POINTS = 12  # instants across the day for graph --at
GRAPH_REPEATS = 3


# ---------------------------------------------------------------------------------------------------------
# processes


class Watcher:
    """A `wiredraw watch` process; a thread stamps each stdout line with time.monotonic() on arrival."""

    def __init__(self, name: str, viz: str, token: str, procs: list[Proc]) -> None:
        self.name = name
        argv = wiredraw_argv("watch", "--server", viz, "--token", token, "--module", MODULE)
        self.proc = Proc(argv, env=child_env(), stdout=subprocess.PIPE, name=name)
        procs.append(self.proc)
        self.lines: list[tuple[float, bytes]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        out = self.proc.popen.stdout
        assert out is not None
        clock, append = time.monotonic, self.lines.append
        for raw in out:  # parsing waits for the end of the phase: this thread only stamps
            append((clock(), raw))

    def wait_first(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.lines:
            if self.proc.popen.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{self.name} printed nothing (exit {self.proc.popen.poll()}):\n{self.proc.tail()}")
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------------------------
# the probe, in this process


class BenchProbe:
    """One TCP probe session (spec/wire.md §11) built from wiredraw.core.wire; a thread stamps each ack.

    Frames are kept in parallel lists (index = frame number): seq, send time, ack time (None until acked)."""

    def __init__(self, addr: str, probe_id: str, key: bytes) -> None:
        host, port = parse_server(addr)
        spec = net_zeek_spec()
        self.probe_id, self.key, self.module_id = probe_id, key, spec.id
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = wire.StreamDecoder(1 << 20)
        self._payloads: list[bytes] = []
        nonce = wire.new_nonce()
        self._send(wire.encode_control("hello", wire.PROTOCOL_VERSION, probe_id, nonce))
        kind, fields = self._control()
        if kind != "challenge":
            raise BenchError(f"probe handshake: expected challenge, got {kind} {fields}")
        server_nonce, proof = fields
        if not wire.proof_matches(wire.server_proof(key, nonce, server_nonce, probe_id), proof):
            raise BenchError("probe handshake: the server's proof does not match")
        self._send(wire.encode_control("auth", wire.probe_proof(key, nonce, server_nonce, probe_id)))
        kind, fields = self._control()
        if kind != "welcome":
            raise BenchError(f"probe handshake: expected welcome, got {kind} {fields}")
        self.next_seq = max(int(fields[0]) + 1, int(time.time() * 1_000_000))
        self.sock.settimeout(None)
        # Bodies as the probe runner cuts them (net_zeek is applied by Lua: its bytes travel as str).
        self.batcher = Batcher(10_000, wire.DEFAULT_LIMITS.max_frame_bytes - wire.MAX_ENVELOPE_BYTES,
                               spec.bin_as_str)
        self.seqs: list[int] = []
        self.sent_at: list[float] = []
        self.acked_at: list[float | None] = []
        self.records: list[int] = []  # records per frame
        self.failure: str | None = None
        self.rejected = 0
        self._next_ack = 0
        self.acked = threading.Condition()
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _send(self, payload: bytes) -> None:
        self.sock.sendall(wire.frame_stream(payload))

    def _control(self) -> tuple[str, list[Any]]:
        while not self._payloads:
            data = self.sock.recv(65536)
            if not data:
                raise BenchError("the server closed the probe connection during the handshake")
            self._payloads.extend(self.decoder.feed(data))
        return wire.decode_control(self._payloads.pop(0))

    def _read_acks(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                now = time.monotonic()
                if not data:
                    self.failure = self.failure or "the server closed the probe connection"
                    break
                for payload in self.decoder.feed(data):
                    kind, fields = wire.decode_control(payload)
                    if kind == "ack":
                        with self.acked:
                            i, seqs, acked_at = self._next_ack, self.seqs, self.acked_at
                            while i < len(seqs) and seqs[i] <= fields[0]:
                                acked_at[i] = now
                                i += 1
                            self._next_ack = i
                            self.acked.notify_all()
                    elif kind == "reject":
                        self.rejected += 1
                    elif kind == "error":
                        self.failure = f"server error {fields[0]}: {fields[1]}"
                        break
        except (OSError, wire.WireError) as exc:
            self.failure = self.failure or f"probe connection: {exc}"
        with self.acked:
            self.acked.notify_all()

    def send(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Sign and send ``messages`` (usually one frame), stamping each frame as it is written."""
        for mtype, body, n in self.batcher.batches(messages):
            seq = self.next_seq
            self.next_seq += 1
            frame = wire.frame_stream(wire.encode_frame(self.key, self.module_id, mtype, self.probe_id, seq,
                                                        time.time(), body))
            self.seqs.append(seq)
            self.acked_at.append(None)
            self.records.append(n)
            self.sent_at.append(time.monotonic())
            self.sock.sendall(frame)

    def wait_acked(self, upto: int, timeout: float) -> bool:
        """Wait until frames [0, upto) are acked; False on timeout or failure."""
        deadline = time.monotonic() + timeout
        with self.acked:
            while self._next_ack < upto:
                left = deadline - time.monotonic()
                if left <= 0 or self.failure:
                    return False
                self.acked.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------------------
# records


def template_fields() -> dict[str, Any]:
    """The fields of a real conn.log row: the first IPv4 ssl connection of the log, state SF."""
    if not TEMPLATE_LOG.is_file():
        raise BenchError(f"no template log at {TEMPLATE_LOG} (the shared data checkout is absent?)")
    for rec in read_log(TEMPLATE_LOG).records:
        f = rec.fields
        if f.get("service") == "ssl" and ":" not in f["id.orig_h"] and f.get("conn_state") == "SF":
            return dict(f)
    raise BenchError(f"{TEMPLATE_LOG}: no IPv4 ssl connection to use as a template")


def local_addr(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def remote_addr(i: int) -> str:
    return f"{(i >> 16) % 200 + 11}.{(i >> 8) & 255}.{i & 255}.{(i * 37) % 250 + 1}"


def conn_message(tpl: dict[str, Any], i: int, uid: str, ts: float, orig: str, resp: str, port: int, proto: str,
                 service: str | None, duration: float, nbytes: tuple[int, int]) -> dict[str, Any]:
    """Record ``i``: the template row with these values."""
    f = dict(tpl)
    f.update({"ts": ts, "uid": uid, "id.orig_h": orig, "id.orig_p": 1024 + i * 7919 % 60000, "id.resp_h": resp,
              "id.resp_p": port, "proto": proto, "service": service, "duration": duration,
              "orig_bytes": nbytes[0], "resp_bytes": nbytes[1]})
    return record_message(ZeekRecord("conn", ts, uid, f))


@dataclass
class Phase:
    """One rate's records: edge id -> record number, and each record's frame number once sent."""

    rate: int
    messages: list[tuple[str, dict[str, Any]]]
    edges: dict[str, int]
    frame_of: list[int]


def live_phase(tpl: dict[str, Any], rate: int, seconds: float, first: int, t0: float, hosts: int) -> Phase:
    """rate*seconds records numbered from ``first``, each on an edge of its own: record i goes from local client
    i % hosts to server i // hosts (so a new server every ``hosts`` records); with hosts 0 from a new client to
    one of 200 servers (a new node per record, the worst case for the graph)."""
    n = max(1, int(rate * seconds))
    messages, edges = [], {}
    for k in range(n):
        i = first + k
        if hosts:
            orig, resp = local_addr(1 + i % hosts), remote_addr(i // hosts)
        else:
            orig, resp = local_addr(i), remote_addr(i % 200)
        messages.append(("log", conn_message(tpl, i, f"Clat{i:09d}", t0 + k / rate, orig, resp, 443, "tcp", "ssl",
                                             0.17, (1171 + k % 500, 4480))))
        edges[f"{orig}>{resp}"] = k
    return Phase(rate, messages, edges, [])


def day_of_connections(tpl: dict[str, Any], n: int, now: float, seed: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """n connections over the 24 h before ``now`` (see the module docstring), in end-time order."""
    rnd = random.Random(seed)
    services = [(443, "tcp", "ssl"), (80, "tcp", "http"), (53, "udp", "dns"), (22, "tcp", "ssh"),
                (123, "udp", None), (8443, "tcp", None)]
    service_weights = [60, 12, 20, 2, 3, 3]
    rows = []
    for i in range(n):
        u = rnd.random()
        if u < 0.85:
            duration = min(rnd.expovariate(1 / 0.8), 10.0)
        elif u < 0.97:
            duration = rnd.uniform(60, 1800)
        else:
            duration = rnd.uniform(3600, 6 * 3600)
        start = rnd.uniform(now - DAY, now - duration - 1)
        orig = local_addr(int(rnd.paretovariate(1.1)) % 2000 + 1)
        if rnd.random() < 0.1:
            resp = local_addr(int(rnd.paretovariate(1.1)) % 2000 + 1)
        else:
            resp = remote_addr(int(rnd.paretovariate(0.8)) % 20000)
        port, proto, service = rnd.choices(services, service_weights)[0]
        nbytes = (int(rnd.lognormvariate(7, 1.5)), int(rnd.lognormvariate(8, 2)))
        rows.append((start + duration, conn_message(tpl, i, f"Cday{i:09d}", start, orig, resp, port, proto, service,
                                                    round(duration, 6), nbytes)))
    rows.sort(key=lambda r: r[0])
    return [("log", msg) for _end, msg in rows]


# ---------------------------------------------------------------------------------------------------------
# part 1: live latency


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def summary(values: list[float]) -> dict[str, Any]:
    v = sorted(values)
    return {"n": len(v), "p50": pct(v, 0.50), "p95": pct(v, 0.95), "p99": pct(v, 0.99), "max": v[-1] if v else None}


def send_paced(probe: BenchProbe, phase: Phase, tick: float) -> tuple[float, float]:
    """Send the phase's records at its rate, the records due every ``tick`` s in one frame; (first, last) send."""
    msgs, rate, n = phase.messages, phase.rate, len(phase.messages)
    sent = 0
    t0 = time.monotonic()
    last = t0
    while sent < n:
        now = time.monotonic()
        due = min(n, int((now - t0) * rate) + 1)
        if due > sent:
            before = len(probe.seqs)
            probe.send(msgs[sent:due])
            for f in range(before, len(probe.seqs)):  # each frame holds the next run of records
                phase.frame_of.extend([f] * probe.records[f])
            sent = due
            last = probe.sent_at[-1]
            if probe.failure:
                raise BenchError(f"probe: {probe.failure}")
        wake = max(t0 + sent / rate, last + tick)
        time.sleep(max(0.0, wake - time.monotonic()))
    return t0, last


def wait_drained(probe: BenchProbe, watchers: list[Watcher], phase: Phase, server_pid: int | None) -> float:
    """Wait for every ack, then until no client printed a line and the server and the clients were idle (each
    under 5 % of a core) for QUIET s — 0.5 s once every client showed the last record (or DRAIN_MAX passes);
    returns the seconds waited after the last send."""
    start = time.monotonic()
    if not probe.wait_acked(len(probe.seqs), DRAIN_MAX):
        print(f"bench: not every frame was acked ({probe.failure or 'timeout'})", file=sys.stderr)
    last_edge = next(reversed(phase.edges)).encode()
    seen_last = [False] * len(watchers)
    scanned = [0] * len(watchers)
    counts = [len(w.lines) for w in watchers]
    quiet_since = time.monotonic()
    pids = [server_pid] + [w.proc.popen.pid for w in watchers]
    cpu = [cpu_seconds(pid) for pid in pids]
    while time.monotonic() - start < DRAIN_MAX:
        time.sleep(0.1)
        for j, w in enumerate(watchers):
            lines = w.lines
            while scanned[j] < len(lines):
                if last_edge in lines[scanned[j]][1]:
                    seen_last[j] = True
                scanned[j] += 1
        now_counts = [len(w.lines) for w in watchers]
        now_cpu = [cpu_seconds(pid) for pid in pids]
        busy = any(a is not None and b is not None and b - a > 0.005 for a, b in zip(cpu, now_cpu, strict=True))
        cpu = now_cpu
        if now_counts != counts or busy:
            counts, quiet_since = now_counts, time.monotonic()
        elif time.monotonic() - quiet_since >= (0.5 if all(seen_last) else QUIET):
            break
    return time.monotonic() - start


def match(phase: Phase, probe: BenchProbe, w: Watcher, first_line: int) -> dict[str, Any]:
    """Each record's latency for one client, from its lines since ``first_line``."""
    seen: list[float | None] = [None] * len(phase.messages)
    kinds: dict[str, int] = {}
    via_graph = 0
    seq_gaps = 0
    prev_seq = None
    edges = phase.edges
    for t, raw in w.lines[first_line:]:
        msg = json.loads(raw)
        kind = msg.get("type", "?")
        if kind == "graph":
            kinds[f"graph:{msg.get('reason')}"] = kinds.get(f"graph:{msg.get('reason')}", 0) + 1
        else:
            kinds[kind] = kinds.get(kind, 0) + 1
        if "seq" in msg:
            if kind == "diff" and prev_seq is not None and msg["seq"] != prev_seq + 1:
                seq_gaps += 1
            prev_seq = msg["seq"]
        for e in msg.get("edges", ()):
            k = edges.get(e.get("id"))
            if k is not None and seen[k] is None:
                seen[k] = t
                if kind == "graph":
                    via_graph += 1
    lat = [(s - probe.sent_at[phase.frame_of[k]]) * 1000 for k, s in enumerate(seen) if s is not None]
    # p50 of the records sent in each second of the phase: a latency that grows second by second is a backlog
    # (the path is slower than the rate), a flat one with a long tail is jitter.
    by_second: dict[int, list[float]] = {}
    t_first = probe.sent_at[phase.frame_of[0]]
    for k, s in enumerate(seen):
        if s is not None:
            sent = probe.sent_at[phase.frame_of[k]]
            by_second.setdefault(int(sent - t_first), []).append((s - sent) * 1000)
    p50_by_second = [round(pct(sorted(v), 0.5) or 0, 1) for _sec, v in sorted(by_second.items())]
    missed_runs: list[list[int]] = []  # [first, last] record numbers of each run of missed records
    for k, s in enumerate(seen):
        if s is None:
            if missed_runs and missed_runs[-1][1] == k - 1:
                missed_runs[-1][1] = k
            else:
                missed_runs.append([k, k])
    return {"sent": len(seen), "seen": len(lat), "missed": len(seen) - len(lat), "missed_runs": missed_runs[:20],
            "via_full_graph": via_graph, "messages": kinds, "seq_gaps": seq_gaps, "ms": summary(lat),
            "p50_by_second": p50_by_second}


def live_latency(args: argparse.Namespace, work: Path, procs: list[Proc], tpl: dict[str, Any]) -> dict[str, Any]:
    data_dir = work / "live-data"
    probe_id = f"bench-latency-{os.getpid()}"
    key = bytes.fromhex(ProbeSecrets(data_dir).add(probe_id))
    token = Tokens(data_dir).add("bench-latency", "viewer")
    extra = ["--live-window", "0"] + (["--full-every", str(args.full_every)] if args.full_every else [])
    addrs, server = start_server(data_dir, work, procs, args.profile_server, extra=extra, name="live server")
    ready = time.monotonic()
    server_pid = server.popen.pid
    redis_pid = child_pid(server_pid, "redis")
    probe = BenchProbe(addrs["probes"], probe_id, key)
    watchers = [Watcher(f"watch {j + 1}", addrs["viz"], token, procs) for j in range(2)]
    for w in watchers:
        w.wait_first()
    pids = {"server": server_pid, "redis": redis_pid, "watch1": watchers[0].proc.popen.pid,
            "watch2": watchers[1].proc.popen.pid, "bench": os.getpid()}
    # Warm-up (not measured): the first records run every code path once (imports, caches).
    first = 1
    warm = live_phase(tpl, 500, 1.0, first, time.time(), args.hosts)
    first += len(warm.messages)
    send_paced(probe, warm, args.tick / 1000)
    wait_drained(probe, watchers, warm, server_pid)
    phases = []
    for rate in args.rates:
        phase = live_phase(tpl, rate, args.seconds, first, time.time(), args.hosts)
        first += len(phase.messages)
        line0 = [len(w.lines) for w in watchers]
        frame0 = len(probe.seqs)
        gc.collect()
        gc.disable()  # a full collection here would hold the GIL and delay the stamping threads
        try:
            cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
            t0, t1 = send_paced(probe, phase, args.tick / 1000)
            cpu1 = {k: cpu_seconds(v) for k, v in pids.items()}
            drained = wait_drained(probe, watchers, phase, server_pid)
        finally:
            gc.enable()
        secs = max(t1 - t0, 1e-9)
        acks = [(probe.acked_at[f] - probe.sent_at[f]) * 1000 for f in range(frame0, len(probe.seqs))
                for _ in range(probe.records[f]) if probe.acked_at[f] is not None]
        clients = [match(phase, probe, w, line0[j]) for j, w in enumerate(watchers)]
        res = {"rate": rate, "records": len(phase.messages), "frames": len(probe.seqs) - frame0,
               "started_after_ready": round(t0 - ready, 2),
               "send_seconds": round(secs, 3), "achieved_rate": round((len(phase.messages) - 1) / secs, 1),
               "drain_seconds": round(drained, 2), "ack_ms": summary(acks), "clients": clients,
               "cpu": {k: (round((cpu1[k] - cpu0[k]) / secs, 2) if cpu0[k] is not None and cpu1[k] is not None
                           else None) for k in pids}}
        p99_ack = res["ack_ms"]["p99"]
        worst = max((c["ms"]["p99"] for c in clients if c["ms"]["p99"] is not None), default=None)
        res["ratio_p99_watch_ack"] = round(worst / p99_ack, 2) if worst is not None and p99_ack else None
        phases.append(res)
        time.sleep(1.0)
    stats = get_stats(addrs["http"])
    probe.close()
    return {"phases": phases, "viz_counters": stats.get("viz"), "rejected_frames": probe.rejected,
            "probe_failure": probe.failure, "server_log": [line for _t, line in server.lines][-20:]}


# ---------------------------------------------------------------------------------------------------------
# part 2: graph --at over a day


def net_zeek_spec() -> Any:
    from wiredraw.core.plugins import load_modules

    loaded = load_modules().get(MODULE)
    if loaded is None:
        raise BenchError("the net_zeek module did not load (see `wiredraw plugins`)")
    return loaded.spec


def wait_idle(pid: int | None, quiet: float = 0.5, limit: float = 60.0) -> float:
    """Wait until ``pid`` uses under 5 % of a core over ``quiet`` s; returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        c0 = cpu_seconds(pid)
        time.sleep(quiet)
        c1 = cpu_seconds(pid)
        if c0 is None or c1 is None or (c1 - c0) / quiet < 0.05:
            break
    return time.monotonic() - start


def graph_at(args: argparse.Namespace, work: Path, procs: list[Proc], tpl: dict[str, Any]) -> dict[str, Any]:
    data_dir = work / "day-data"
    probe_id = f"bench-day-{os.getpid()}"
    key = bytes.fromhex(ProbeSecrets(data_dir).add(probe_id))
    token = Tokens(data_dir).add("bench-day", "viewer")
    now = time.time()
    t_build = time.perf_counter()
    messages = day_of_connections(tpl, args.connections, now)
    build = time.perf_counter() - t_build
    addrs, server = start_server(data_dir, work, procs, extra=["--full-every", "3600"], name="day server")
    redis_pid = child_pid(server.popen.pid, "redis")
    probe = BenchProbe(addrs["probes"], probe_id, key)
    t0 = time.monotonic()
    for i in range(0, len(messages), 500):
        probe.send(messages[i:i + 500])
        if not probe.wait_acked(len(probe.seqs) - 16, 120):  # at most 16 frames in flight
            raise BenchError(f"filling: {probe.failure or 'no ack in 120 s'}")
    if not probe.wait_acked(len(probe.seqs), 120):
        raise BenchError(f"filling: {probe.failure or 'no ack in 120 s'}")
    fill = time.monotonic() - t0
    probe.close()
    settle = wait_idle(server.popen.pid)
    wait_idle(redis_pid)
    stats = get_stats(addrs["http"])
    host, port = parse_server(addrs["viz"])
    graph_ms: list[float] = []
    range_ms: list[float] = []
    sizes: list[tuple[int, int]] = []
    with ViewerClient(host, port, token, timeout=120) as client:
        client.connect()
        span = client.request("range", module=MODULE)
        points = [now - DAY + (k + 0.5) * DAY / GRAPH_POINTS for k in range(GRAPH_POINTS)]
        client.request("graph", module=MODULE, at=points[0])  # warm-up, not counted
        for _ in range(GRAPH_REPEATS):
            for t in points:
                a = time.perf_counter()
                client.request("range", module=MODULE)
                b = time.perf_counter()
                g = client.request("graph", module=MODULE, at=t)
                c = time.perf_counter()
                range_ms.append((b - a) * 1000)
                graph_ms.append((c - b) * 1000)
                sizes.append((len(g["nodes"]), len(g["edges"])))
    g50, r50 = pct(sorted(graph_ms), 0.5), pct(sorted(range_ms), 0.5)
    return {"connections": len(messages), "build_seconds": round(build, 2), "fill_seconds": round(fill, 2),
            "fill_rate": round(len(messages) / fill, 1), "settle_seconds": round(settle, 2),
            "records_written": stats.get("records_written"), "span": span, "points": GRAPH_POINTS,
            "repeats": GRAPH_REPEATS, "graph_ms": summary(graph_ms), "range_ms": summary(range_ms),
            "nodes_mean": round(sum(n for n, _ in sizes) / len(sizes), 1),
            "edges_mean": round(sum(e for _, e in sizes) / len(sizes), 1),
            "edges_max": max(e for _, e in sizes),
            "ratio_graph_range_p50": round(g50 / r50, 1) if g50 is not None and r50 else None}


# ---------------------------------------------------------------------------------------------------------
# report


def ms(x: float | None) -> str:
    return "-" if x is None else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def report(live: dict[str, Any] | None, day: dict[str, Any] | None, args: argparse.Namespace) -> None:
    print(f"wiredraw bench latency: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, tick {args.tick:g} ms, "
          f"hosts {args.hosts:,}")
    if live is not None:
        head = ("rate/s", "sent at/s", "path", "seen/sent", "p50 ms", "p95 ms", "p99 ms", "max ms", "note")
        rows = []
        for ph in live["phases"]:
            a = ph["ack_ms"]
            rows.append((f"{ph['rate']:,}", si(ph["achieved_rate"]), "ack (baseline)", f"{a['n']:,}/{ph['records']:,}",
                         ms(a["p50"]), ms(a["p95"]), ms(a["p99"]), ms(a["max"]), f"{ph['frames']:,} frames"))
            for j, c in enumerate(ph["clients"]):
                m = c["ms"]
                graphs = {k: v for k, v in c["messages"].items() if k.startswith("graph")}
                note = f"{c['messages'].get('diff', 0):,} diffs" + (f", {graphs}" if graphs else "")
                if c["via_full_graph"]:
                    note += f", {c['via_full_graph']:,} first seen in a full graph"
                if c["seq_gaps"]:
                    note += f", {c['seq_gaps']} SEQ GAPS"
                rows.append(("", "", f"watch {j + 1}", f"{c['seen']:,}/{c['sent']:,}", ms(m["p50"]), ms(m["p95"]),
                             ms(m["p99"]), ms(m["max"]), note))
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        for ph in live["phases"]:
            cpu = " ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in ph["cpu"].items())
            print(f"{ph['rate']:>6,}/s: ratio p99 watch / p99 ack = {ph['ratio_p99_watch_ack']}; "
                  f"cpu (cores) {cpu}; drained {ph['drain_seconds']} s after the last send")
        for ph in live["phases"]:
            c = ph["clients"][0]
            print(f"{ph['rate']:>6,}/s: watch 1 p50 ms of the records sent in each second: "
                  + ", ".join(ms(x) for x in c["p50_by_second"]))
        print("latency: first line a watch client printed holding the record's edge - its frame's send time; "
              "ack: the server's ack of that frame - the same send time.")
        for ph in live["phases"]:
            for j, c in enumerate(ph["clients"]):
                if c["missed"]:
                    print(f"MISSED: watch {j + 1} never showed {c['missed']:,} of the {c['sent']:,} records sent at "
                          f"{ph['rate']:,}/s (record numbers {c['missed_runs']})", file=sys.stderr)
                if c["seq_gaps"]:
                    print(f"SEQ GAPS: watch {j + 1} got {c['seq_gaps']} diffs out of order at {ph['rate']:,}/s",
                          file=sys.stderr)
        if live["server_log"]:
            print("the live server logged (last lines):\n  " + "\n  ".join(live["server_log"]), file=sys.stderr)
        if live["rejected_frames"] or live["probe_failure"]:
            print(f"warning: {live['rejected_frames']} frames rejected; probe: {live['probe_failure']}",
                  file=sys.stderr)
    if day is not None:
        g, r = day["graph_ms"], day["range_ms"]
        print(f"graph --at over 24 h: {day['connections']:,} connections filled through the probe path in "
              f"{day['fill_seconds']} s ({si(day['fill_rate'])}/s), server settled {day['settle_seconds']} s later; "
              f"{day['points']} instants x {day['repeats']}")
        print(f"  graph at T: p50 {ms(g['p50'])} ms, max {ms(g['max'])} ms "
              f"({day['nodes_mean']:.0f} nodes, {day['edges_mean']:.0f} edges on average, at most {day['edges_max']})")
        print(f"  range (baseline): p50 {ms(r['p50'])} ms, max {ms(r['max'])} ms; "
              f"ratio graph p50 / range p50 = {day['ratio_graph_range_p50']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="1000,10000", help="records/s, comma-separated (default 1000,10000)")
    ap.add_argument("--seconds", type=float, default=None, help="seconds of sending per rate (default 10)")
    ap.add_argument("--connections", type=int, default=None,
                    help="connections over 24 h for graph --at (default 100,000; 0 skips that part)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 3 s per rate, 20,000 connections (unless given), about a minute")
    ap.add_argument("--tick", type=float, default=5.0, help="ms between frames the probe sends (default 5)")
    ap.add_argument("--hosts", type=int, default=2000,
                    help="local clients the live records cycle through (default 2,000; 0: a new one per record)")
    ap.add_argument("--full-every", type=float, default=None,
                    help="the live server's --full-every (default: the server's own, 30 s)")
    ap.add_argument("--no-live", action="store_true", help="skip the live latency part")
    ap.add_argument("--profile-server", metavar="FILE", default=None,
                    help="run the live server under cProfile, write its stats to FILE and print the top functions")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs, data)")
    args = ap.parse_args(argv)
    try:
        args.rates = [int(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        ap.error("--rates: integers, comma-separated")
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 10.0
    if args.connections is None:
        args.connections = 20_000 if args.quick else 100_000
    if not args.rates or min(args.rates) < 1 or args.seconds <= 0 or args.tick <= 0 or min(args.connections,
                                                                                             args.hosts) < 0:
        ap.error("--rates, --seconds and --tick must be positive, --connections and --hosts not negative")
    if args.profile_server:
        args.profile_server = str(Path(args.profile_server).resolve())

    sys.setswitchinterval(0.001)  # the stamping threads get the GIL promptly
    work = Path(tempfile.mkdtemp(prefix="wiredraw-bench-latency-"))
    procs: list[Proc] = []

    def body() -> None:
        tpl = template_fields()
        live = day = None
        if not args.no_live:
            live = live_latency(args, work, procs, tpl)
            stop_all(procs)  # watchers first, the server (and its redis-server) last
        if args.connections:
            day = graph_at(args, work, procs, tpl)
        report(live, day, args)
        if args.profile_server and live is not None:
            print(f"live server profile {args.profile_server}:\n{top_functions(args.profile_server)}")
        print(json.dumps({"bench": "latency", "cpus": os.cpu_count(), "tick_ms": args.tick, "hosts": args.hosts,
                          "seconds": args.seconds, "live": live, "graph_at": day}, separators=(",", ":")))

    return run_guarded(body, procs, work, args.keep)

if __name__ == "__main__":
    sys.exit(main())
