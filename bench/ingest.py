#!/usr/bin/env python3
"""Benchmark: Zeek conn records/s end to end, probe replay → server → net_zeek's key schema in Redis.

    python3 bench/ingest.py [--records N] [--batch B] [--quick] [--depth D]
                            [--profile-server FILE.prof] [--profile-probe FILE.prof] [--keep]

Data: the 24 real hourly conn logs of ../shared/data/zeek/tsv/rita_missing_host/2024-04-19 (31,367 records
a day), copied into a temporary directory as `conn.<n>.log` (plain TSV, one header, the day's rows in file
order) with ts + n*86400 and uid + "-<n>", n = 1, 2, ..., until N records: every copy is a new day of new
connections, so every record is written (`records_written` counts each conn once). Nothing is written into the
project tree.

Three measurements, same run, same records:

1. source: `ReplaySource(files, fast=True)` alone in this process, polled the way the probe's runner polls it
   (batch*POLL_BATCHES records per poll, `state()` after each poll): the probe's parse rate. Beside it, the probe's
   `Batcher` packing those messages into bodies (msgpack, bytes as str, `--batch` records per body): the
   bodies are kept for (3).
2. end to end: `wiredraw server --ephemeral` (embedded redis-server) and `wiredraw probe net_zeek --replay
   FILES --fast --batch B` over TCP (spooled, acknowledged), as separate processes. The server's /stats are
   polled; the window opens at the probe's start line and closes when `records_written` reaches N (or stops
   moving: then the shortfall is reported).
3. ceiling: the same bodies applied by EVALSHA of `ingest.lua` from a tight redis-py pipelined loop (D frames
   per round trip), each frame wrapped as the server wraps it (MULTI, EVALSHA, HSET replay window, HSET probe
   time, EXEC), against a fresh EmbeddedRedis (ephemeral) with the server's notify-keyspace-events setting:
   the same writes without the probe, the network protocol and the server's Python — Redis's own limit for
   them. ratio = end-to-end records/s ÷ ceiling records/s.

CPU seconds per second of each window are read from /proc for the probe, the server, its redis-server (and for
the ceiling: this process and its redis-server): 1.00 = one core busy. This is a benchmark, not a test: it
asserts nothing, and the numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    stop_all,
    top_functions,
    wiredraw_argv,
)
from wiredraw.core import wire
from wiredraw.core.batching import Batcher
from wiredraw.plugins.net_zeek.parser import open_log
from wiredraw.plugins.net_zeek.schema import DEFAULT_RETENTION, INGEST_LUA
from wiredraw.plugins.net_zeek.source import ReplaySource
from wiredraw.probes.runner import POLL_BATCHES

DATA_DAY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "zeek" / "tsv" / "rita_missing_host" \
    / "2024-04-19"
DAY = 86400
STATS_POLL = 0.05  # seconds between /stats requests (each costs the server a little CPU)
QUIET = 3.0  # records_written unchanged this long after the probe exited: it will not move any more


# ---------------------------------------------------------------------------------------------------------
# data


def day_rows(day: Path) -> tuple[list[str], list[list[str]], int, int]:
    """(header lines, data rows split on tab, ts column, uid column) of the day's hourly conn logs."""
    hourly = sorted(p for p in day.glob("conn.*.log*") if p.name.split(".")[1][:2].isdigit())
    if not hourly:
        raise BenchError(f"no hourly conn logs in {day} (the shared data checkout is absent?)")
    header: list[str] = []
    fields: str | None = None
    rows: list[list[str]] = []
    for path in hourly:
        with open_log(path) as f:
            for raw in f:
                line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
                if line.startswith("#"):
                    if line.startswith("#fields"):
                        if fields is not None and line != fields:
                            raise BenchError(f"{path}: its #fields differ from the first file's")
                        fields = line
                    if path == hourly[0] and not line.startswith("#close"):
                        header.append(line)
                    continue
                rows.append(line.split("\t"))
    if fields is None:
        raise BenchError(f"{hourly[0]}: no #fields line")
    names = fields.split("\t")[1:]
    return header, rows, names.index("ts"), names.index("uid")


def write_copies(work: Path, n: int) -> tuple[list[Path], int]:
    """Shifted copies of the day, ``conn.<k>.log`` in ``work``, until ``n`` records (the last one cut short)."""
    header, rows, ts_col, uid_col = day_rows(DATA_DAY)
    head = "\n".join(header) + "\n"
    paths: list[Path] = []
    left = n
    k = 0
    while left > 0:
        k += 1
        shift = k * DAY
        suffix = f"-{k}"
        out = []
        for row in rows[:left]:
            whole, dot, frac = row[ts_col].partition(".")
            copy = list(row)
            copy[ts_col] = f"{int(whole) + shift}{dot}{frac}"
            copy[uid_col] += suffix
            out.append("\t".join(copy))
        path = work / f"conn.{k}.log"
        path.write_text(head + "\n".join(out) + "\n", encoding="utf-8", errors="surrogateescape")
        paths.append(path)
        left -= len(out)
    return paths, n


# ---------------------------------------------------------------------------------------------------------
# 1. the probe's source alone


def source_pass(paths: list[Path], batch: int) -> tuple[dict[str, Any], list[bytes]]:
    """ReplaySource polled like ProbeRunner.tick (batch*POLL_BATCHES per poll, then state()); then the bodies."""
    batcher = Batcher(batch, wire.DEFAULT_LIMITS.max_frame_bytes - wire.MAX_ENVELOPE_BYTES, bin_as_str=True)
    src = ReplaySource(paths, fast=True)
    bodies: list[bytes] = []
    records = conns = 0
    t_source = t_pack = 0.0
    wanted = batch * POLL_BATCHES
    clock = time.perf_counter
    while True:
        t0 = clock()
        messages = src.poll(wanted)
        src.state()
        t1 = clock()
        t_source += t1 - t0
        if not messages:
            if src.finished():
                break
            continue
        records += len(messages)
        conns += sum(1 for _t, m in messages if m["path"] == "conn")
        t2 = clock()
        for kind, body, _n in batcher.batches(messages):
            if kind != "log":
                raise BenchError(f"unexpected message type {kind!r}")
            bodies.append(body)
        t_pack += clock() - t2
    summary = src.summary()
    src.close()
    if summary["bad_lines"] or batcher.too_big:
        raise BenchError(f"source: {summary['bad_lines']} bad lines, {batcher.too_big} records too big")
    return {"records": records, "conns": conns, "late": summary["late"], "files": len(paths),
            "seconds": round(t_source, 3), "records_per_s": round(records / t_source, 1),
            "pack_seconds": round(t_pack, 3), "pack_records_per_s": round(records / t_pack, 1),
            "bodies": len(bodies), "body_bytes": round(sum(map(len, bodies)) / max(len(bodies), 1))}, bodies


# ---------------------------------------------------------------------------------------------------------
# 2. end to end


def end_to_end(paths: list[Path], n: int, batch: int, work: Path, procs: list[Proc],
               profile_server: str | None, profile_probe: str | None) -> dict[str, Any]:
    import redis

    data_dir = work / "data"
    addrs, _server = start_server(data_dir, work, procs, profile_server)
    server_pid = procs[-1].popen.pid
    redis_pid = child_pid(server_pid, "redis")
    r = redis.Redis.from_url(addrs["redis"])
    notify = r.config_get("notify-keyspace-events").get("notify-keyspace-events", "")
    probe_id = f"bench-ingest-{os.getpid()}"
    key_file = add_key(data_dir, probe_id, work)
    http = addrs["http"]
    before = get_stats(http)
    args = ["probe", "net_zeek", "--server", addrs["probes"], "--probe-id", probe_id, "--key-file", str(key_file),
            "--state-dir", str(work / "probe-state"), "--batch", str(batch), "--quiet", "--replay",
            *map(str, paths), "--fast"]
    argv = wiredraw_argv(*args)
    if profile_probe:
        argv = [sys.executable, "-m", "cProfile", "-o", profile_probe, "-m", "wiredraw.core.cli", *args]
    probe = Proc(argv, env=child_env(), name="probe (net_zeek --replay)")
    procs.append(probe)
    cpu_pids = {"probe": probe.popen.pid, "server": server_pid, "redis": redis_pid}
    cpu_before = {name: cpu_seconds(pid) for name, pid in cpu_pids.items()}
    cpu_last = dict(cpu_before)
    base = before["records_written"]
    written = 0
    t_spawn = probe.spawned
    t_written = t_spawn  # when records_written last moved (sample time, after the reply)
    t_exit: float | None = None
    started = False
    timeout = max(120.0, n / 2000)
    stats = before
    while True:
        time.sleep(STATS_POLL)
        stats = get_stats(http)
        now = time.perf_counter()
        now_written = stats["records_written"] - base
        if now_written != written:
            written, t_written = now_written, now
        for name, pid in cpu_pids.items():
            cpu = cpu_seconds(pid)
            if cpu is not None:
                cpu_last[name] = cpu  # the probe's last sample stands once it has exited
        if not started and probe.first_line(" over "):
            started = True  # its imports are done: count its CPU from here
            cpu_before["probe"] = cpu_last["probe"]
        if t_exit is None and probe.popen.poll() is not None:
            t_exit = now
            if probe.popen.returncode != 0:
                raise BenchError(f"the probe exited with {probe.popen.returncode}:\n{probe.tail()}")
        if written >= n:
            break
        if t_exit is not None and now - max(t_exit, t_written) >= QUIET:
            break  # stopped moving short of n: reported
        if now - t_spawn > timeout:
            raise BenchError(f"only {written:,} of {n:,} records written after {timeout:.0f} s\n{probe.tail()}")
    t_end = t_written
    probe.popen.wait(60)
    probe.stop()
    summary: dict[str, Any] = {}
    for _t, line in probe.lines:
        if ": done: " in line:
            summary = json.loads(line.split(": done: ", 1)[1])
    t_start = probe.first_line(" over ") or t_spawn
    secs = max(t_end - t_start, 1e-9)
    delta = {k: stats[k] - before[k] for k in ("frames_accepted", "frames_rejected", "records_written",
                                                "records_rejected", "write_failures")}
    dbsize = r.dbsize()
    r.close()
    return {"records_sent": summary.get("records_sent"), **delta, "seconds": round(secs, 3),
            "seconds_from_spawn": round(t_end - t_spawn, 3), "records_per_s": round(written / secs, 1),
            "probe_seconds": summary.get("seconds"), "dbsize": dbsize, "notify": notify,
            "cpu": {name: (round((cpu_last[name] - cpu_before[name]) / secs, 2)
                           if cpu_before[name] is not None and cpu_last[name] is not None else None)
                    for name in cpu_pids}}


# ---------------------------------------------------------------------------------------------------------
# 3. the ceiling: the same writes straight into a fresh redis-server


def chunks(items: list[bytes], size: int) -> Iterator[list[bytes]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def ceiling(bodies: list[bytes], work: Path, depth: int, notify: str) -> dict[str, Any]:
    import redis
    from wiredraw.core.server.embedded_redis import EmbeddedRedis

    emb = EmbeddedRedis(work / "ceiling", ephemeral=True)
    (work / "ceiling").mkdir(parents=True, exist_ok=True)
    emb.start()
    try:
        r = redis.Redis.from_url(emb.url)
        if notify:
            r.config_set("notify-keyspace-events", notify)
        sha = r.script_load(INGEST_LUA)
        probe_id = "bench-ceiling"
        retention = DEFAULT_RETENTION
        replay_key, probes_key = "wd:core:replay", "wd:core:probes"
        window = os.urandom(64)  # stands for the packed replay window the server writes with each frame
        pipe = r.pipeline(transaction=False)
        written = rejected = 0
        me, rpid = os.getpid(), emb.pid
        cpu0 = {"bench": cpu_seconds(me), "redis": cpu_seconds(rpid)}
        t0 = time.perf_counter()
        for group in chunks(bodies, depth):
            for body in group:
                pipe.execute_command("MULTI")
                pipe.execute_command("EVALSHA", sha, 0, probe_id, body, retention)
                pipe.execute_command("HSET", replay_key, probe_id, window)
                pipe.execute_command("HSET", probes_key, probe_id, repr(time.time()))
                pipe.execute_command("EXEC")
            replies = pipe.execute()
            for i in range(4, len(replies), 5):
                counts = replies[i][0]
                written += int(counts[1])
                rejected += int(counts[3])
        secs = time.perf_counter() - t0
        cpu1 = {"bench": cpu_seconds(me), "redis": cpu_seconds(rpid)}
        dbsize = r.dbsize()
        r.close()
    finally:
        emb.stop()
    return {"records_written": written, "records_rejected": rejected, "frames": len(bodies), "depth": depth,
            "seconds": round(secs, 3), "records_per_s": round(written / secs, 1), "dbsize": dbsize,
            "cpu": {k: (round((cpu1[k] - cpu0[k]) / secs, 2) if cpu0[k] is not None and cpu1[k] is not None
                        else None) for k in cpu0}}


# ---------------------------------------------------------------------------------------------------------
# report


def report(n: int, batch: int, src: dict[str, Any], e2e: dict[str, Any], ceil: dict[str, Any]) -> None:
    ratio = e2e["records_per_s"] / ceil["records_per_s"] if ceil["records_per_s"] else math.nan
    print(f"wiredraw bench ingest: {n:,} conn records ({src['files']} shifted copies of a real day), batch "
          f"{batch}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs")

    def cpu(d: dict[str, Any], keys: tuple[str, ...]) -> str:
        return "/".join("-" if d[k] is None else f"{d[k]:.2f}" for k in keys)

    rows = [
        ("probe source alone (ReplaySource, fast)", f"{src['records']:,}", f"{src['seconds']:.2f}",
         si(src["records_per_s"]), "-", "1 proc"),
        ("probe packing alone (Batcher)", f"{src['records']:,}", f"{src['pack_seconds']:.2f}",
         si(src["pack_records_per_s"]), "-", "1 proc"),
        ("END TO END probe -> server -> Redis", f"{e2e['records_written']:,}", f"{e2e['seconds']:.2f}",
         si(e2e["records_per_s"]), f"{ratio:.2f}", "probe/server/redis " + cpu(e2e["cpu"], ("probe", "server",
                                                                                         "redis"))),
        ("CEILING EVALSHA ingest.lua, pipelined", f"{ceil['records_written']:,}", f"{ceil['seconds']:.2f}",
         si(ceil["records_per_s"]), "1.00", "client/redis " + cpu(ceil["cpu"], ("bench", "redis"))),
    ]
    head = ("stage", "records", "seconds", "records/s", "÷ceiling", "cpu")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"end to end: from the probe's start line to the last record written ({e2e['seconds_from_spawn']:.2f} s "
          f"from spawning it); the probe ran {e2e['probe_seconds']} s by its own summary.")
    print(f"ceiling: {ceil['frames']:,} frames of ~{src['body_bytes']:,} B, {ceil['depth']} per round trip, "
          f"notify-keyspace-events {e2e['notify']!r} as on the server; keys in Redis after each run: "
          f"{e2e['dbsize']:,} (server) / {ceil['dbsize']:,} (ceiling).")
    print("cpu: CPU seconds per second of that stage's window (1.00 = one core busy), from /proc.")
    if e2e["records_written"] < n:
        print(f"warning: only {e2e['records_written']:,} of {n:,} records written end to end", file=sys.stderr)
    if e2e["frames_rejected"] or e2e["write_failures"] or e2e["records_rejected"] or ceil["records_rejected"]:
        print(f"warning: {e2e['frames_rejected']} frames rejected, {e2e['write_failures']} write failures, "
              f"{e2e['records_rejected']} + {ceil['records_rejected']} records rejected", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000, help="conn records (default 1,000,000)")
    ap.add_argument("--batch", type=int, default=500, help="records per frame (probe --batch; default 500)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 100,000 records (under a minute)")
    ap.add_argument("--depth", type=int, default=8, help="ceiling: frames per pipelined round trip (default 8)")
    ap.add_argument("--profile-server", metavar="FILE", default=None,
                    help="run the server under cProfile, write its stats to FILE and print the top functions")
    ap.add_argument("--profile-probe", metavar="FILE", default=None,
                    help="run the probe under cProfile, write its stats to FILE and print the top functions")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (copies, logs, data)")
    args = ap.parse_args(argv)
    n = 100_000 if args.quick else args.records
    if n < 1 or args.batch < 1 or args.depth < 1:
        ap.error("--records, --batch and --depth must be positive")
    prof_server = str(Path(args.profile_server).resolve()) if args.profile_server else None
    prof_probe = str(Path(args.profile_probe).resolve()) if args.profile_probe else None

    work = Path(tempfile.mkdtemp(prefix="wiredraw-bench-ingest-"))
    procs: list[Proc] = []

    def body() -> None:
        nonlocal n  # the copies written may round it
        t0 = time.perf_counter()
        paths, n = write_copies(work, n)
        print(f"bench: {n:,} records in {len(paths)} files under {work} ({time.perf_counter() - t0:.1f} s)",
              file=sys.stderr)
        src, bodies = source_pass(paths, args.batch)
        if src["conns"] != n:
            raise BenchError(f"the source returned {src['conns']:,} conn records, expected {n:,}")
        gc.collect()
        e2e = end_to_end(paths, n, args.batch, work, procs, prof_server, prof_probe)
        stop_all(procs)  # the server's redis-server goes before the ceiling's starts
        ceil = ceiling(bodies, work, args.depth, e2e["notify"])
        report(n, args.batch, src, e2e, ceil)
        for label, path in (("server", prof_server), ("probe", prof_probe)):
            if path:
                print(f"{label} profile {path} (python3 -m pstats {path}):\n{top_functions(path)}")
        ratio = e2e["records_per_s"] / ceil["records_per_s"] if ceil["records_per_s"] else None
        print(json.dumps({"bench": "ingest", "records": n, "batch": args.batch, "cpus": os.cpu_count(),
                          "source": src, "end_to_end": e2e, "ceiling": ceil,
                          "ratio": round(ratio, 4) if ratio else None}, separators=(",", ":")))

    return run_guarded(body, procs, work, args.keep)


if __name__ == "__main__":
    sys.exit(main())
