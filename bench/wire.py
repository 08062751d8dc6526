#!/usr/bin/env python3
"""Benchmark: how fast the server accepts frames from a local probe, over UDP and over TCP.

    python3 bench/wire.py [--records N] [--batch B] [--quick] [--transports tcp,udp]
                          [--profile-server FILE.prof] [--keep]

Everything is real and runs as separate processes: `wiredraw server` (with its embedded, ephemeral
redis-server) and, per transport, `wiredraw probe devtest ... --count N`. The server's /stats counters
(frames_accepted, records_written) are polled over HTTP; the rates are their deltas over the probe's
sending window, which opens when the probe prints its start line (`module devtest → H:P over T`) and
closes when records_written reaches N (TCP) or stops increasing (UDP). The seconds from spawning the
probe process (Python start-up and imports included, ~0.7 s) are shown too.

Each rate is printed beside a same-run baseline: `wire.decode_frame` + `wire.decode_body` alone, in
this process, in a tight loop over frames of the same kind (devtest ticks {"n", "ts"}, same batch
size, same signing), best of 3. ratio = server records/s / baseline records/s: the share of the bare
decode+verify speed that the whole path (socket, Twisted, checks, module, Redis write) keeps.

The probe polls its source again at once whenever a poll came back full, so it is not paced by its poll
interval: the rates are the whole path's.

This is a benchmark, not a test: it asserts nothing, and the numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
from _common import (
    BenchError,
    Proc,
    add_key,
    child_env,
    child_pid,
    cpu_seconds,
    get_stats,
    run_guarded,
    si,
    start_server,
    wiredraw_argv,
)
from wiredraw.core import wire

DEVTEST_MODULE_ID = 999
UDP_LOOPBACK_DATAGRAM = 60000  # ProbeRunner's default --max-datagram to a loopback server
STATS_POLL = 0.02  # seconds between /stats requests (each costs the server a little CPU)
UDP_QUIET = 0.5  # UDP: records_written unchanged this long after the probe exited = done


# ---------------------------------------------------------------------------------------------------------
# one transport


def run_transport(transport: str, n: int, batch: int, addrs: dict[str, str], data_dir: Path, work: Path,
                  procs: list[Proc], server_pid: int, redis_pid: int | None) -> dict[str, Any]:
    probe_id = f"bench-{transport}-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    key_file = add_key(data_dir, probe_id, work)
    http = addrs["http"]
    before = get_stats(http)
    argv = wiredraw_argv("probe", "devtest", "--server", addrs["probes"], "--probe-id", probe_id,
                         "--key-file", str(key_file), "--state-dir", str(work / f"state-{probe_id}"),
                         "--count", str(n), "--transport", transport, "--batch", str(batch), "--quiet")
    probe = Proc(argv, env=child_env(), name=f"probe ({transport})")
    procs.append(probe)
    t_spawn = probe.spawned
    cpu_pids = {"server": server_pid, "redis": redis_pid, "probe": probe.popen.pid}
    cpu_before = {name: cpu_seconds(pid) for name, pid in cpu_pids.items()}
    cpu_last = dict(cpu_before)
    timeout = max(60.0, n / 500)
    base_w, base_f = before["records_written"], before["frames_received"]
    last_written = last_frames = 0
    t_last_change = t_spawn
    t_written = t_spawn  # when records_written last moved (sample time, after the reply)
    t_probe_exit: float | None = None
    probe_started = False
    stats = before
    while True:
        time.sleep(STATS_POLL)
        stats = get_stats(http)
        now = time.perf_counter()  # after the reply: /stats waits while the reactor is busy
        written = stats["records_written"] - base_w
        frames = stats["frames_received"] - base_f
        if written != last_written:
            t_written = now
        if written != last_written or frames != last_frames:
            t_last_change = now
        last_written, last_frames = written, frames
        for name, pid in cpu_pids.items():
            cpu = cpu_seconds(pid)
            if cpu is not None:
                cpu_last[name] = cpu  # the probe's last sample stands once it has exited
        if not probe_started and probe.first_line(" over "):
            probe_started = True  # its imports are done: count its CPU from here
            cpu_before["probe"] = cpu_last["probe"]
        if t_probe_exit is None and probe.popen.poll() is not None:
            t_probe_exit = now
            if probe.popen.returncode != 0:
                raise BenchError(f"the {transport} probe exited with {probe.popen.returncode}:\n"
                                 f"{probe.tail()}")
        if transport == "tcp" and written >= n:
            t_end = now
            break
        if transport == "udp" and t_probe_exit is not None:
            # Every accepted frame's write has completed, and nothing has arrived for UDP_QUIET.
            accepted = stats["frames_accepted"] - before["frames_accepted"]
            settled = (stats["write_batches"] + stats["write_failures"]
                       - before["write_batches"] - before["write_failures"]) == accepted
            if settled and now - max(t_probe_exit, t_last_change) >= UDP_QUIET:
                t_end = t_written
                break
        if now - t_spawn > timeout:
            raise BenchError(f"{transport}: only {written:,} of {n:,} records written after {timeout:.0f} s\n"
                             f"{probe.tail()}")
    probe.popen.wait(30)
    probe.stop()
    t_start = probe.first_line(" over ") or t_spawn  # the runner's start line: sending begins
    summary: dict[str, Any] = {}
    for _t, line in probe.lines:
        if ": done: " in line:
            summary = json.loads(line.split(": done: ", 1)[1])
    delta = {k: stats[k] - before[k] for k in ("frames_received", "frames_accepted", "frames_rejected",
                                                "records_written", "udp_seq_gaps", "write_failures")}
    sent = summary.get("records_sent", n)
    secs = max(t_end - t_start, 1e-9)
    rec_s = delta["records_written"] / secs
    return {
        "transport": transport,
        "records_sent": sent,
        "records_written": delta["records_written"],
        "frames_accepted": delta["frames_accepted"],
        "frames_rejected": delta["frames_rejected"],
        "udp_seq_gaps": delta["udp_seq_gaps"] if transport == "udp" else None,
        "write_failures": delta["write_failures"],
        "probe_frames_sent": summary.get("frames_sent"),
        "seconds": round(secs, 4),
        "seconds_from_spawn": round(t_end - t_spawn, 4),
        "frames_per_s": round(delta["frames_accepted"] / secs, 1),
        "records_per_s": round(rec_s, 1),
        "loss": round(1 - delta["records_written"] / sent, 5) if transport == "udp" and sent else None,
        # CPU seconds per second of the sending window (1.0 = one core busy); probe: until its last sample
        "cpu": {name: (round((cpu_last[name] - cpu_before[name]) / secs, 2)
                       if cpu_before[name] is not None and cpu_last[name] is not None else None)
                for name in cpu_pids},
    }


# ---------------------------------------------------------------------------------------------------------
# baseline


def max_body_bytes(transport: str) -> int:
    """What the probe's Batcher allows per body (ProbeRunner: 60000-byte datagrams to a loopback server)."""
    frame = wire.DEFAULT_LIMITS.max_frame_bytes if transport == "tcp" else UDP_LOOPBACK_DATAGRAM
    return frame - wire.MAX_ENVELOPE_BYTES


def build_frames(n: int, batch: int, max_bytes: int) -> tuple[list[bytes], bytes, str]:
    """Frames as the probe builds them: devtest ticks {"n", "ts"}, at most ``batch`` per body and the
    body within ``max_bytes`` (the probe's Batcher rule), signed with a 32-byte key."""
    key = os.urandom(32)
    probe_id = "bench-baseline"
    now = time.time()
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for i in range(1, n + 1):
        msg = {"n": i, "ts": now}
        packed = len(msgpack.packb(msg))
        if len(chunks[-1]) >= batch or size + packed + 5 > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(msg)
        size += packed
    seq = int(now * 1_000_000)
    frames = []
    for chunk in chunks:
        seq += 1
        frames.append(wire.encode_frame(key, DEVTEST_MODULE_ID, "tick", probe_id, seq, time.time(),
                                        wire.encode_body(chunk)))
    return frames, key, probe_id


def baseline(n: int, batch: int, transport: str, repeats: int = 3) -> dict[str, Any]:
    frames, key, probe_id = build_frames(n, batch, max_body_bytes(transport))
    keys = {probe_id: key}
    key_for = keys.get
    limits = wire.DEFAULT_LIMITS
    decode_frame, decode_body = wire.decode_frame, wire.decode_body
    best = float("inf")
    records = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        records = 0
        for data in frames:
            frame = decode_frame(data, key_for, limits)
            records += len(decode_body(frame.body, limits))
        best = min(best, time.perf_counter() - t0)
    if records != n:
        raise BenchError(f"baseline decoded {records} records, expected {n}")
    return {"frames": len(frames), "records": n, "seconds": round(best, 5),
            "frames_per_s": round(len(frames) / best, 1), "records_per_s": round(n / best, 1),
            "frame_bytes": round(sum(map(len, frames)) / len(frames))}


# ---------------------------------------------------------------------------------------------------------
# report


def print_table(results: list[dict[str, Any]], base: dict[str, dict[str, Any]]) -> None:
    head = ("transport", "records", "seconds", "frames/s", "records/s", "loss", "baseline rec/s", "ratio",
            "cpu srv/redis/probe")
    rows = []
    for r in results:
        b = base[r["transport"]]
        ratio = r["records_per_s"] / b["records_per_s"]
        loss = "-" if r["loss"] is None else f"{r['loss'] * 100:.2f}%"
        records = f"{r['records_written']:,}/{r['records_sent']:,}"
        flag = ""
        cpu = "/".join("-" if r["cpu"][k] is None else f"{r['cpu'][k]:.2f}"
                       for k in ("server", "redis", "probe"))
        rows.append((r["transport"], records, f"{r['seconds']:.3f} ({r['seconds_from_spawn']:.2f})",
                     si(r["frames_per_s"]), si(r["records_per_s"]) + flag, loss, si(b["records_per_s"]),
                     f"{ratio:.3f}", cpu))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print("seconds: probe start line -> last record written (in brackets: from spawning the probe).")
    print("cpu: CPU seconds per second of that window (1.00 = one core busy), from /proc; the probe's from "
          "its start line to its last sample.")
    for t, b in base.items():
        print(f"baseline {t}: decode_frame+decode_body alone, {b['frames']:,} frames of "
              f"~{b['frame_bytes']:,} B "
              f"(~{b['records'] // b['frames']:,} records), best of 3: {si(b['frames_per_s'])} frames/s, "
              f"{si(b['records_per_s'])} records/s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000, help="records per transport (default 50,000)")
    ap.add_argument("--batch", type=int, default=500, help="records per frame (probe --batch; default 500)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20,000 records (under 20 s)")
    ap.add_argument("--transports", default="tcp,udp", help="comma-separated, from tcp,udp (default both)")
    ap.add_argument("--profile-server", metavar="FILE", default=None,
                    help="run the server under cProfile and write its stats to FILE (read with pstats)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    args = ap.parse_args(argv)
    n = 20_000 if args.quick else args.records
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if n < 1 or args.batch < 1 or not transports or set(transports) - {"tcp", "udp"}:
        ap.error("--records and --batch must be positive; --transports takes tcp and/or udp")
    profile = str(Path(args.profile_server).resolve()) if args.profile_server else None

    work = Path(tempfile.mkdtemp(prefix="wiredraw-bench-wire-"))
    data_dir = work / "data"
    procs: list[Proc] = []
    results: list[dict[str, Any]] = []

    def body() -> None:
        base = {t: baseline(n, args.batch, t) for t in transports}
        addrs, _server = start_server(data_dir, work, procs, profile)
        for transport in transports:
            server_pid = procs[0].popen.pid
            redis_pid = child_pid(server_pid, "redis")
            results.append(run_transport(transport, n, args.batch, addrs, data_dir, work, procs, server_pid,
                                         redis_pid))
        for t in transports:  # the machine may be shared: keep the better of before and after
            again = baseline(n, args.batch, t)
            if again["records_per_s"] > base[t]["records_per_s"]:
                base[t] = again
        print(f"wiredraw bench wire: {n:,} records per transport, batch {args.batch}, "
              f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        print_table(results, base)
        for r in results:
            if r["frames_rejected"] or r["write_failures"]:
                print(f"warning: {r['transport']}: {r['frames_rejected']} frames rejected, "
                      f"{r['write_failures']} write failures", file=sys.stderr)
        summary = {"bench": "wire", "records": n, "batch": args.batch, "cpus": os.cpu_count(),
                   "results": [dict(r, baseline=base[r["transport"]],
                                    ratio=round(r["records_per_s"]
                                                / base[r["transport"]]["records_per_s"], 4))
                               for r in results]}
        print(json.dumps(summary, separators=(",", ":")))

    code = run_guarded(body, procs, work, args.keep)
    if profile:
        print(f"server profile: {profile}  (python3 -m pstats {profile})", file=sys.stderr)
    return code

if __name__ == "__main__":
    sys.exit(main())
