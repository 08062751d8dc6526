"""Helpers shared by the benchmarks that run a real `wiredraw server` and probes as child processes
(bench/wire.py, bench/ingest.py): child processes with timestamped stderr, the server's ready line, probe keys,
/stats, CPU seconds from /proc, and number formatting."""

from __future__ import annotations

import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class BenchError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------------------
# processes


class Proc:
    """A child process whose stderr is read by a thread, each line timestamped."""

    def __init__(self, argv: list[str], *, env: dict[str, str], stdout: Any = subprocess.DEVNULL,
                 name: str = "") -> None:
        self.name = name or argv[0]
        self.lines: list[tuple[float, str]] = []
        self.spawned = time.perf_counter()
        # Its own session: a Ctrl-C at the terminal reaches only us, and we stop children in order.
        self.popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                                      stderr=subprocess.PIPE, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            self.lines.append((time.perf_counter(), raw.decode(errors="replace").rstrip("\n")))

    def first_line(self, needle: str) -> float | None:
        for t, line in list(self.lines):
            if needle in line:
                return t
        return None

    def tail(self, n: int = 15) -> str:
        return "\n".join(line for _t, line in self.lines[-n:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server then stops its redis-server), SIGKILL if it lingers; always reaped."""
        p = self.popen
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"bench: {self.name} (pid {p.pid}) ignored SIGTERM; killing it", file=sys.stderr)
                p.kill()
                p.wait()
        self._reader.join(2)


def wiredraw_argv(*args: str) -> list[str]:
    # The installed console script's code, run by this interpreter (works without PATH tweaks).
    return [sys.executable, "-m", "wiredraw.core.cli", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["WIREDRAW_DEV_MODULES"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_server(data_dir: Path, work: Path, procs: list[Proc], profile: str | None = None, *,
                 extra: Sequence[str] = (), name: str = "wiredraw server") -> tuple[dict[str, str], Proc]:
    """`wiredraw server --ephemeral` on free ports (plus ``extra`` options), optionally under cProfile: the fields of
    its ready line (probes=H:P viz=H:P http=H:P redis=URL) and its process."""
    out_path = work / f"{name.replace(' ', '-')}.out"
    args = ["server", "--data-dir", str(data_dir), "--ephemeral", "--probe-port", "0", "--viz-port", "0",
            "--http-port", "0", *extra]
    argv = wiredraw_argv(*args)
    if profile:
        argv = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "wiredraw.core.cli", *args]
    with open(out_path, "wb") as out:
        server = Proc(argv, env=child_env(), stdout=out, name=name)
    procs.append(server)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in out_path.read_text(errors="replace").splitlines():
            if line.startswith("wiredraw server ready:"):
                return dict(part.split("=", 1) for part in line.split(":", 1)[1].split()), server
        if server.popen.poll() is not None:
            raise BenchError(f"{name} exited ({server.popen.returncode}) before its ready line:\n{server.tail()}")
        time.sleep(0.05)
    raise BenchError(f"no ready line from {name} in 30 s:\n{server.tail()}")


def stop_all(procs: list[Proc]) -> None:
    """Stop these processes in reverse order of start (probes and clients first, the server and its redis-server
    last) and forget them."""
    for proc in reversed(procs):
        proc.stop()
    procs.clear()


def run_guarded(body: Callable[[], None], procs: list[Proc], work: Path, keep: bool) -> int:
    """Run a benchmark's ``body``; returns the exit code. Ctrl-C or a SIGTERM (130) and a BenchError (1) end it
    with a message, and whatever happens its processes are stopped and ``work`` removed (see tear_down)."""
    signal.signal(signal.SIGTERM, interrupt)  # a SIGTERM to the bench cleans up like Ctrl-C does
    try:
        body()
        return 0
    except KeyboardInterrupt:
        print("bench: interrupted; stopping everything", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        tear_down(procs, work, keep)


def tear_down(procs: list[Proc], work: Path, keep: bool) -> None:
    """A benchmark's end, however it ends: processes stopped in reverse (probes and clients first, the server and
    its redis-server last), then its work directory removed unless ``keep``."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stop_all(procs)
    if keep:
        print(f"kept {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)


def add_key(data_dir: Path, probe_id: str, work: Path) -> Path:
    res = subprocess.run(wiredraw_argv("keys", "add", probe_id, "--data-dir", str(data_dir)),
                         env=child_env(), capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise BenchError(f"wiredraw keys add {probe_id} failed: {res.stderr.strip()}")
    key_file = work / f"{probe_id}.key"
    key_file.write_text(res.stdout.strip() + "\n")
    key_file.chmod(0o600)
    return key_file


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a live process, from /proc (Linux); None where unavailable."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def child_pid(parent: int, name: str) -> int | None:
    """The pid of ``parent``'s child whose command name contains ``name`` (the embedded redis-server)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            comm, rest = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        if int(rest.split()[1]) == parent and name in comm:
            return int(entry)
    return None


def get_stats(http: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{http}/stats", timeout=5) as resp:
        return json.loads(resp.read())


def si(x: float | None) -> str:
    if x is None:
        return "-"
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.1f}{suffix}"
    return f"{x:.0f}"


def interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def top_functions(path: str, n: int = 12) -> str:
    """The ``n`` functions with the most own time in a cProfile stats file, one line each."""
    try:
        st = pstats.Stats(path)
    except (OSError, TypeError, EOFError) as exc:
        return f"  (no profile at {path}: {exc})"
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]  # type: ignore[attr-defined]
    total = st.total_tt  # type: ignore[attr-defined]
    out = [f"  {total:.1f} s profiled; top {n} by own time:"]
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in rows:
        where = f"{Path(file).name}:{line}({func})" if line else func
        out.append(f"  {tottime:7.2f} s own {cumtime:7.2f} s cum {ncalls:>9,}  {where}")
    return "\n".join(out)
