#!/usr/bin/env python3
"""Benchmark: seconds from `wiredraw open DIR` to the first graph a viewer gets, for a real day of logs.

    python3 bench/open.py [--logs DIR] [--keep]

Data: ../shared/data/zeek/tsv/rita_missing_host (a real day of an internet-facing sensor: 353 `.log.gz`, 61k
records, 20 log types), read where it is.

Two measurements, same run, same files:

1. first graph: `wiredraw open DIR --no-viewer` in a fresh data directory (its embedded server, key and token made
   on that first use), then, as soon as it prints how to watch, a viewer-protocol client (the one `wiredraw watch`
   and the 3D viewer's backend use) logs in and subscribes to the live view. The time is from the command's start
   to the first `graph` or `diff` message holding at least one node: what a person sees first. (The 3D viewer
   draws what its backend receives; its own start, ~2 s for Panda3D, comes on top and overlaps the load.)
   Also: when the replay says everything is stored.
2. baseline: `wiredraw server --ephemeral` and `wiredraw probe net_zeek --replay FILES --fast` alone: the
   seconds from the probe's start to its exit, i.e. the whole day sent and acknowledged.

ratio = first graph ÷ replay alone. Target (issue 13): first graph within 5 s whatever the folder's size, so the
ratio falls as the folder grows. This is a benchmark: it asserts nothing, and the machine's load moves it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Proc, add_key, child_env, run_guarded, start_server, stop_all, wiredraw_argv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LOGS = ROOT.parent / "shared" / "data" / "zeek" / "tsv" / "rita_missing_host"


def first_graph(logs: Path, work: Path, procs: list[Proc]) -> dict[str, float]:
    from wiredraw.core.viewer_client import ViewerClient, ViewerClientError

    out_path = work / "open.out"
    with open(out_path, "wb") as out:
        opened = Proc(wiredraw_argv("open", str(logs), "--data-dir", str(work / "open-data"), "--no-viewer"),
                      env=child_env(), stdout=out, name="wiredraw open")
    procs.append(opened)
    t0 = opened.spawned
    watch = None
    deadline = time.monotonic() + 60
    while watch is None:
        for line in out_path.read_text(errors="replace").splitlines():
            if "watch it: wiredraw watch" in line:
                watch = line
        if opened.popen.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench: wiredraw open did not say how to watch:\n{out_path.read_text()}")
        time.sleep(0.01)
    t_ready = time.perf_counter()
    host, port = watch.split("--server ")[1].split()[0].rsplit(":", 1)
    token = Path(watch.split("--token-file ")[1].split()[0]).read_text().strip()
    client = ViewerClient(host, int(port), token, timeout=1)
    client.connect()
    client.subscribe("net_zeek")
    t_graph = None
    while t_graph is None and time.monotonic() < deadline:
        try:
            msg = client.next_message()
        except ViewerClientError:
            continue
        if msg.get("type") in ("graph", "diff") and msg.get("nodes"):
            t_graph = time.perf_counter()
    client.close()
    t_stored = None
    while t_stored is None and time.monotonic() < deadline + 120:
        if "everything is stored" in out_path.read_text(errors="replace"):
            t_stored = time.perf_counter()
        time.sleep(0.05)
    return {"watchable_s": t_ready - t0, "first_graph_s": (t_graph or float("nan")) - t0,
            "all_stored_s": (t_stored or float("nan")) - t0}


def replay_alone(logs: Path, work: Path, procs: list[Proc]) -> float:
    data_dir = work / "base-data"
    fields, _server = start_server(data_dir, work, procs)
    key_file = add_key(data_dir, "bench", work)
    from wiredraw.plugins.net_zeek.opener import zeek_files

    files = [str(f) for f in zeek_files([logs])[0]]  # exactly the files `open` replays
    probe = Proc(wiredraw_argv("probe", "net_zeek", "--server", fields["probes"], "--probe-id", "bench",
                               "--key-file", str(key_file), "--data-dir", str(data_dir), "--quiet", "--replay",
                               *files, "--fast"), env=child_env(), name="wiredraw probe")
    procs.append(probe)
    probe.popen.wait(600)
    return time.perf_counter() - probe.spawned


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logs", type=Path, default=DEFAULT_LOGS, help="a folder of Zeek logs (default: rita_missing_host)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    if not args.logs.is_dir():
        print(f"bench: {args.logs} not found (../shared/data)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="wd-bench-open-"))
    procs: list[Proc] = []
    result: dict[str, float] = {}

    def body() -> None:
        result.update(first_graph(args.logs, work, procs))
        stop_all(procs)
        result["replay_alone_s"] = replay_alone(args.logs, work, procs)
        stop_all(procs)
        result["ratio"] = result["first_graph_s"] / result["replay_alone_s"]
        print(f"wiredraw open {args.logs.name}: watchable after {result['watchable_s']:.2f} s, first graph at a "
              f"viewer after {result['first_graph_s']:.2f} s (target ≤ 5 s), everything stored after "
              f"{result['all_stored_s']:.2f} s")
        print(f"baseline: probe --replay --fast alone, the same files: {result['replay_alone_s']:.2f} s")
        print(f"ratio first graph / replay alone: {result['ratio']:.2f}")
        print(json.dumps({k: round(v, 3) for k, v in result.items()}))

    return run_guarded(body, procs, work, args.keep)


if __name__ == "__main__":
    sys.exit(main())
