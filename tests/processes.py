"""Running wiredraw's server and probes as real processes in tests: start, wait with deadlines, stop all.

Used by the process-level tests; the ``world`` fixture (conftest.py) gives each test a World whose
processes are all stopped in teardown, whatever the test did.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from helpers import process_gone

READY_RE = re.compile(
    r"^wiredraw server ready: probes=127\.0\.0\.1:(?P<probe>\d+) viz=127\.0\.0\.1:(?P<viz>\d+) "
    r"http=127\.0\.0\.1:(?P<http>\d+) redis=(?P<redis>\S+)$"
)
START_TIMEOUT = 30.0  # a cold interpreter importing Twisted on a loaded 2-core machine


# --- helpers -------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str],
               interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something true (we wait on other processes)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {detail}")
        time.sleep(interval)




def redis_pids(redis_dir: Path) -> list[int]:
    """Live redis-server processes whose working directory is ``redis_dir`` (how EmbeddedRedis runs it)."""
    want = str(redis_dir.resolve())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/cwd") != want:
                continue
            if b"redis-server" not in Path(f"/proc/{entry}/cmdline").read_bytes():
                continue
        except OSError:  # gone meanwhile, or a zombie (no cwd)
            continue
        if not process_gone(int(entry)):
            found.append(int(entry))
    return found


def short_dir() -> Path:
    """A directory whose unix socket path fits AF_UNIX, so the embedded Redis URL is unix://...
    (pytest's tmp_path can be long enough to make it a password-protected TCP port)."""
    base = "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="wdp-", dir=base))


def dev_env() -> dict[str, str]:
    env = dict(os.environ)
    env["WIREDRAW_DEV_MODULES"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("WIREDRAW_DATA_DIR", None)
    return env


def wiredraw_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "wiredraw.core.cli", *args]


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no output)"


def add_key(data_dir: Path, probe_id: str, key_file: Path) -> bytes:
    out = subprocess.run(wiredraw_cmd("keys", "add", probe_id, "--data-dir", str(data_dir)), env=dev_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"`wiredraw keys add {probe_id}` failed: {out.stderr}"
    key_hex = out.stdout.strip()
    key_file.write_text(key_hex + "\n")
    return bytes.fromhex(key_hex)


class Proc:
    """A child process with its output in files (stdout also read line by line for the ready line)."""

    def __init__(self, name: str, argv: list[str], logdir: Path, watch_stdout: bool = False):
        self.name, self.argv = name, argv
        self.stdout_path = logdir / f"{name}.stdout"
        self.stderr_path = logdir / f"{name}.stderr"
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in reap)
        self._reader: threading.Thread | None = None
        self.popen: subprocess.Popen[Any]
        if watch_stdout:
            self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._stderr, env=dev_env(),
                                          stdin=subprocess.DEVNULL, text=True)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        else:
            self._stdout = open(self.stdout_path, "wb")  # noqa: SIM115
            self.popen = subprocess.Popen(argv, stdout=self._stdout, stderr=self._stderr, env=dev_env(),
                                          stdin=subprocess.DEVNULL)

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with open(self.stdout_path, "w") as copy:
            for line in self.popen.stdout:
                self.lines.append(line)
                copy.write(line)
                copy.flush()
                if line.startswith("wiredraw server ready:"):
                    self.ready.set()
        self.ready.set()  # EOF: wake a waiter, who sees no ready line

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def stderr(self) -> str:
        return tail(self.stderr_path)

    def describe(self) -> str:
        return f"{self.name} (pid {self.pid}, rc {self.popen.poll()}); stderr:\n{self.stderr()}"

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout} s: {self.describe()}") from None

    def all_stdout(self, timeout: float = 5.0) -> str:
        """Everything it printed; call after it exited."""
        if self._reader is not None:
            self._reader.join(timeout)
            return "".join(self.lines)
        return tail(self.stdout_path, 1 << 20)

    def reap(self) -> None:
        """SIGTERM, then SIGKILL: nothing we started outlives the test."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._stderr.close()
        if self._reader is None:
            self._stdout.close()


class Server(Proc):
    def __init__(self, name: str, data_dir: Path, logdir: Path, *extra: str, probe_port: int = 0):
        self.data_dir = data_dir
        super().__init__(name, wiredraw_cmd("server", "--data-dir", str(data_dir), "--probe-port",
                                            str(probe_port), "--viz-port", "0", "--http-port", "0", *extra),
                         logdir, watch_stdout=True)
        self.match: re.Match[str] | None = None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Server:
        if not self.ready.wait(timeout):
            raise AssertionError(f"{self.name} printed no ready line within {timeout} s: {self.describe()}")
        for line in self.lines:
            self.match = READY_RE.match(line.rstrip("\n"))
            if self.match:
                return self
        raise AssertionError(f"{self.name}: no ready line of the documented shape; stdout "
                             f"{self.lines!r}; {self.describe()}")

    @property
    def probe_port(self) -> int:
        assert self.match is not None
        return int(self.match["probe"])

    @property
    def probe_addr(self) -> str:
        return f"127.0.0.1:{self.probe_port}"

    @property
    def redis_url(self) -> str:
        assert self.match is not None
        return self.match["redis"]

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    def http(self, path: str) -> tuple[int, dict[str, Any]]:
        assert self.match is not None
        url = f"http://127.0.0.1:{self.match['http']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stats(self) -> dict[str, Any]:
        code, body = self.http("/stats")
        assert code == 200, f"/stats answered {code}: {body}"
        return body


class World:
    """What one test starts; everything is stopped in teardown, whatever the test did."""

    def __init__(self, root: Path):
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        self.procs: list[Proc] = []
        self.redis_dirs: list[Path] = []
        self.clients: list[redis.Redis] = []

    def server(self, name: str, data_dir: Path, *extra: str, probe_port: int = 0) -> Server:
        s = Server(name, data_dir, self.logs, *extra, probe_port=probe_port)
        self.procs.append(s)
        self.redis_dirs.append(data_dir / "redis")
        return s

    def probe(self, name: str, server: str, key_file: Path, state_dir: Path, count: int | None,
              *extra: str, probe_id: str = "s1", module: str = "devtest") -> Proc:
        counting = ["--count", str(count)] if count is not None else []
        p = Proc(name, wiredraw_cmd("probe", module, "--server", server, "--probe-id", probe_id,
                                    "--key-file", str(key_file), "--state-dir", str(state_dir),
                                    *counting, "--quiet", *extra), self.logs)
        self.procs.append(p)
        return p

    def redis(self, url: str) -> redis.Redis:
        client = redis.Redis.from_url(url, socket_timeout=10)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for proc in reversed(self.procs):
            proc.reap()
        # An embedded redis-server left behind is a bug the tests report; never leave it running.
        for redis_dir in self.redis_dirs:
            for pid in redis_pids(redis_dir) if redis_dir.exists() else []:
                os.kill(pid, signal.SIGKILL)


def setup_dirs(world: World) -> tuple[Path, Path, Path]:
    data_dir = world.root / "data"
    key_file = world.root / "s1.key"
    add_key(data_dir, "s1", key_file)
    return data_dir, key_file, world.root / "probe-state"




ZEEK_TSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "zeek" / "tsv"
ROLLING = ZEEK_TSV / "rita_proxy_rolling"
HOUR = "16:00:00-17:00:00"


class ServedZeek:
    """A real server (embedded Redis) with one real hour of rita_proxy_rolling's conn, http and dns logs replayed
    into it by a real probe, and a viewer token; ``request`` asks it over the viewer protocol. For the tests of the
    viewer and of ``watch`` (they skip where ../shared/data is absent)."""

    def __init__(self, world: World) -> None:
        from wiredraw.core.server.credentials import Tokens

        data_dir, key_file = world.root / "data", world.root / "s1.key"
        add_key(data_dir, "s1", key_file)
        self.token = Tokens(data_dir).add("viewer", "viewer")
        self.server = world.server("server", data_dir, "--ephemeral").wait_ready()
        assert self.server.match is not None
        self.viz = f"127.0.0.1:{self.server.match['viz']}"
        probe = world.probe("probe", self.server.probe_addr, key_file, world.root / "probe-state", None, "--replay",
                            *(str(ROLLING / f"{log}.{HOUR}.log.gz") for log in ("conn", "http", "dns")), "--fast",
                            module="net_zeek")
        assert probe.wait(120) == 0, probe.describe()

    def request(self, what: str, **args: Any) -> Any:
        from wiredraw.core.viewer_client import ViewerClient

        host, port = self.viz.split(":")
        with ViewerClient(host, int(port), self.token) as c:
            c.connect()
            return c.request(what, module="net_zeek", **args)
