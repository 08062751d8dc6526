"""proc_events' probe source: events/s it reports and the CPU share it takes, on an idle and on a busy machine (a
fork loop), beside `ps -e` run at the same rate as a baseline.

    python3 bench/proc.py                    # 10 s per scenario, --interval 0.5
    python3 bench/proc.py --seconds 5 --interval 0.1 --loops 2

Per scenario (idle; busy = `--loops` shells running `while :; do /bin/true; done`) and per method (poll; the
connector where it works here):

- the source in this process, polled as the probe's runner polls it (every 0.05 s), ``--interval`` between /proc
  scans: messages/s by kind (fork, exec, exit; snapshots apart), the machine's fork rate from /proc/stat's
  ``processes`` counter (what there was to see), and CPU seconds per second of this process (the source only:
  nothing else runs in it);
- the baseline: `ps -e` run every ``--interval`` seconds, its CPU (user + system, from wait4) per second.

The last line is the same data as one JSON object. Numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
from typing import Any

from wiredraw.plugins.proc_events.connector import ConnectorError, ProcConnector
from wiredraw.plugins.proc_events.source import ProcSource

RUNNER_POLL = 0.05  # the probe runner's poll interval (probes/runner.py ProbeOptions.poll_interval)


def forks_so_far() -> int:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("processes "):
                return int(line.split()[1])
    return 0


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure_source(method: str, interval: float, seconds: float) -> dict[str, Any]:
    src = ProcSource(interval=interval, snapshot_every=3600, method=method, out=io.StringIO())
    try:
        src.poll(1_000_000)  # the start: first scan and snapshot, not counted
        counts = {"fork": 0, "exec": 0, "exit": 0, "snapshot": 0}
        forks0, cpu0, t0 = forks_so_far(), cpu(), time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for mtype, _ in src.poll(1000):
                counts[mtype] += 1
            time.sleep(RUNNER_POLL)
        wall = time.perf_counter() - t0
        used, forks = cpu() - cpu0, forks_so_far() - forks0
    finally:
        src.close()
    events = counts["fork"] + counts["exec"] + counts["exit"]
    return {"method": src.method, "seconds": round(wall, 2), "events_per_s": round(events / wall, 1),
            "forks_per_s": round(counts["fork"] / wall, 1), "execs_per_s": round(counts["exec"] / wall, 1),
            "exits_per_s": round(counts["exit"] / wall, 1), "machine_forks_per_s": round(forks / wall, 1),
            "seen_share": round(counts["fork"] / forks, 3) if forks else None,
            "cpu_share": round(used / wall, 4), "scans": src.counts["scans"]}


def measure_ps(interval: float, seconds: float) -> dict[str, Any]:
    used = 0.0
    runs = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        started = time.perf_counter()
        p = subprocess.Popen(["ps", "-e"], stdout=subprocess.DEVNULL)
        _, _, ru = os.wait4(p.pid, 0)
        used += ru.ru_utime + ru.ru_stime
        runs += 1
        time.sleep(max(0.0, interval - (time.perf_counter() - started)))
    wall = time.perf_counter() - t0
    return {"runs": runs, "cpu_share": round(used / wall, 4), "seconds": round(wall, 2)}


def connector_works() -> str | None:
    try:
        ProcConnector.open_checked(timeout=1.0).close()
        return None
    except ConnectorError as exc:
        return str(exc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per measurement (default 10)")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between /proc scans and ps runs (0.5)")
    ap.add_argument("--loops", type=int, default=1, help="fork-loop shells in the busy scenario (default 1)")
    args = ap.parse_args(argv)
    why_not = connector_works()
    methods = ["poll"] + (["connector"] if why_not is None else [])
    if why_not is not None:
        print(f"connector not measured: {why_not}", file=sys.stderr)
    result: dict[str, Any] = {"interval": args.interval, "seconds": args.seconds, "loops": args.loops,
                              "processes": len([p for p in os.listdir("/proc") if p.isdigit()])}
    for scenario in ("idle", "busy"):
        loops: list[subprocess.Popen[bytes]] = []
        if scenario == "busy":
            loops = [subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"], start_new_session=True)
                     for _ in range(args.loops)]
            time.sleep(0.5)
        try:
            out: dict[str, Any] = {m: measure_source(m, args.interval, args.seconds) for m in methods}
            out["ps -e"] = measure_ps(args.interval, args.seconds)
        finally:
            for p in loops:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        result[scenario] = out
        print(f"{scenario}:", file=sys.stderr)
        for name, r in out.items():
            if name == "ps -e":
                print(f"  ps -e every {args.interval:g} s: CPU {r['cpu_share']:.2%} ({r['runs']} runs)",
                      file=sys.stderr)
            else:
                print(f"  {name:9s}: {r['events_per_s']:8.1f} events/s (fork {r['forks_per_s']}, exec "
                      f"{r['execs_per_s']}, exit {r['exits_per_s']}), machine forks {r['machine_forks_per_s']}/s, "
                      f"seen {r['seen_share']}, CPU {r['cpu_share']:.2%}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
