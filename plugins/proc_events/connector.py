"""The Linux process-event connector (netlink NETLINK_CONNECTOR, CN_IDX_PROC), with the socket module only.

Struct layouts from linux/netlink.h, linux/connector.h and linux/cn_proc.h (native byte order):

- ``nlmsghdr``: len u32, type u16, flags u16, seq u32, pid u32 (16 bytes)
- ``cn_msg``: id.idx u32, id.val u32, seq u32, ack u32, len u16, flags u16 (20 bytes), then ``len`` bytes of data
- ``proc_event``: what u32, cpu u32, timestamp_ns u64 (CLOCK_MONOTONIC), then the event:
  fork: parent_pid, parent_tgid, child_pid, child_tgid (u32 each); exec: process_pid, process_tgid;
  exit: process_pid, process_tgid, exit_code (waitpid status), exit_signal.

Listening needs CAP_NET_ADMIN, and the kernel sends nothing to a listener outside the initial user and pid
namespaces (it accepts the subscription silently): :meth:`ProcConnector.open_checked` therefore forks a child and
waits for its events before saying the connector works. Thread events (pid != tgid) are skipped: a process is a
thread-group leader, as in /proc.

Overflow: events wait in the socket's receive buffer until the reader thread takes them; when it is full the kernel
drops them and the next recv fails once with ENOBUFS. Nothing says which were dropped, so the reader counts each
overflow (:attr:`ProcConnector.overflows`) and the source rescans /proc. To make overflows rare the buffer is raised
to :data:`RCVBUF_BYTES` with SO_RCVBUFFORCE (allowed with CAP_NET_ADMIN, which listening needs anyway, and not capped
by net.core.rmem_max), else with SO_RCVBUF (capped by rmem_max, often 208 KiB: a few hundred events).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000

NLMSGHDR = struct.Struct("=IHHII")
CN_MSG = struct.Struct("=IIIIHH")
PROC_EVENT = struct.Struct("=IIQ")
FORK = struct.Struct("=IIII")
EXEC = struct.Struct("=II")
EXIT = struct.Struct("=IIII")
CHECK_TIMEOUT = 2.0  # seconds to wait for the test child's events
# 8 MiB (the kernel doubles it): room for some 15,000 waiting events, seconds of a fork storm while the reader is
# busy. The memory is only taken while events wait, so a large limit costs nothing on a quiet host.
RCVBUF_BYTES = 8 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # 33: asm-generic/socket.h; Python does not name it


class ConnectorError(Exception):
    """The connector cannot be used here; the message says why."""


@dataclass(slots=True)
class ProcEvent:
    kind: str  # fork, exec, exit
    pid: int  # the process (fork: the child)
    ppid: int  # fork: the parent's tgid; else 0
    t: float  # seconds since boot (CLOCK_MONOTONIC: the kernel's own time of the event)
    code: int | None = None  # exit: 0..255, or -N for signal N
    stat: Any = None  # fork, exec: /proc/<pid>/stat read as the event came (None: already gone)
    info: dict[str, Any] | None = None  # fork, exec: its program, read as the event came (None: already gone)


def control_message(op: int) -> bytes:
    payload = struct.pack("=I", op)
    cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return NLMSGHDR.pack(NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


def parse(data: bytes, suspended: float = 0.0) -> Iterator[ProcEvent]:
    """The process events in one netlink datagram (threads left out); times in seconds since boot, the clock of
    /proc's start times (so the source turns both into epoch seconds the same way, with btime). ``suspended``:
    CLOCK_BOOTTIME - CLOCK_MONOTONIC (time spent suspended), added to the events' monotonic stamps."""
    from wiredraw.plugins.proc_events.procfs import decode_wait_status

    pos = 0
    while pos + NLMSGHDR.size <= len(data):
        length = NLMSGHDR.unpack_from(data, pos)[0]
        if length < NLMSGHDR.size:
            return
        body = pos + NLMSGHDR.size
        pos += (length + 3) & ~3
        if body + CN_MSG.size + PROC_EVENT.size > len(data):
            return
        idx, val = CN_MSG.unpack_from(data, body)[:2]
        if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC):
            continue
        ev = body + CN_MSG.size
        what, _cpu, ts = PROC_EVENT.unpack_from(data, ev)
        ev += PROC_EVENT.size
        t = ts / 1e9 + suspended
        if what == PROC_EVENT_FORK and ev + FORK.size <= len(data):
            _ppid, ptgid, cpid, ctgid = FORK.unpack_from(data, ev)
            if cpid == ctgid:
                yield ProcEvent("fork", ctgid, ptgid, t)
        elif what == PROC_EVENT_EXEC and ev + EXEC.size <= len(data):
            _pid, tgid = EXEC.unpack_from(data, ev)
            yield ProcEvent("exec", tgid, 0, t)
        elif what == PROC_EVENT_EXIT and ev + EXIT.size <= len(data):
            pid, tgid, status, _sig = EXIT.unpack_from(data, ev)
            if pid == tgid:
                yield ProcEvent("exit", tgid, 0, t, decode_wait_status(status))


def boottime() -> float:
    """Seconds since boot, suspend included: the clock of :attr:`ProcEvent.t`."""
    if hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.monotonic()


class ProcConnector:
    """A subscribed, non-blocking connector socket.

    ``overflows`` counts the times the kernel dropped events (ENOBUFS: the receive buffer was full), the latest at
    ``overflow_at``; the source compares the count with the one it last handled and rescans /proc when it grew.
    ``read_up_to`` says how far the reader thread has queued every event that was not dropped: a rescan of /proc
    taken at time T may still have events from before T on their way until ``read_up_to >= T``. The kernel reports
    ENOBUFS ahead of the events still waiting in the buffer, so those are older than ``overflow_at``. Times are
    seconds since boot, the clock of event times (:meth:`now`).
    ``sock``: an already subscribed socket (tests pass a fake one); by default a new one is opened.
    """

    def __init__(self, sock: Any = None) -> None:
        self.overflows = 0  # written by the reader thread only
        self.overflow_at = 0.0
        self.read_up_to = 0.0
        self._empty = False  # the last read stopped because the socket had nothing more
        if sock is None:
            sock = self._subscribe()
        self.sock = sock
        self.rcvbuf = self._grow_buffer()

    @staticmethod
    def now() -> float:
        """The clock of event times and :attr:`read_up_to` (seconds since boot)."""
        return boottime()

    @staticmethod
    def _subscribe() -> Any:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except (OSError, AttributeError) as exc:
            raise ConnectorError(f"no netlink connector socket ({exc})") from exc
        try:
            sock.bind((0, CN_IDX_PROC))
            sock.send(control_message(PROC_CN_MCAST_LISTEN))
        except OSError as exc:
            sock.close()
            raise ConnectorError(f"cannot subscribe to process events ({exc.strerror or exc}; needs CAP_NET_ADMIN)"
                                 ) from exc
        sock.setblocking(False)
        return sock

    def _grow_buffer(self) -> int:
        """Raise the receive buffer to :data:`RCVBUF_BYTES` (module docstring); the size the kernel granted, in
        bytes (0 where it cannot say)."""
        for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, option, RCVBUF_BYTES)
                break
            except OSError:
                continue  # FORCE needs CAP_NET_ADMIN; plain SO_RCVBUF is capped by rmem_max, never refused
        try:
            return int(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        except (OSError, TypeError, ValueError):
            return 0

    @classmethod
    def open_checked(cls, timeout: float = CHECK_TIMEOUT) -> ProcConnector:
        """Subscribe, then fork a child that exits at once and wait for its fork and exit events. An overflow
        (ENOBUFS) meanwhile also says that events come (a fork storm may have dropped the child's)."""
        conn = cls()
        try:
            child = os.fork()
            if child == 0:
                os._exit(0)
            os.waitpid(child, 0)
            deadline = time.monotonic() + timeout
            seen = set()
            while time.monotonic() < deadline:
                for ev in conn.read(wait=0.1):
                    if ev.pid == child:
                        seen.add(ev.kind)
                if {"fork", "exit"} <= seen or conn.overflows:
                    return conn
            raise ConnectorError("subscribed, but no event came for a test child (outside the initial namespaces?)")
        except BaseException:
            conn.close()
            raise

    def start_reader(self, proc: str = "/proc") -> None:
        """Read events in a thread from now on, and /proc for each at once: a process living a millisecond still
        has its start time and program read (a poll 50 ms later would find it gone). :meth:`events` takes them."""
        self._queue: deque[ProcEvent] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(proc,), name="proc_events connector", daemon=True)
        self._thread.start()

    def _run(self, proc: str) -> None:
        from wiredraw.plugins.proc_events import procfs

        while not self._stop.is_set():
            before = boottime()
            try:
                events = self.read(wait=0.2, max_datagrams=1)  # one at a time: /proc read at once after it
            except OSError:
                if self._stop.is_set():
                    return
                raise
            for ev in events:
                if ev.kind != "exit":
                    ev.stat = procfs.read_stat(ev.pid, proc)
                    if ev.stat is not None:
                        ev.info = procfs.read_exec(ev.pid, ev.stat.comm, proc)
                self._queue.append(ev)
            # only once queued: the source may act on read_up_to as soon as it moves
            if self._empty:  # the socket was empty after ``before``: every earlier event is queued
                self.read_up_to = max(self.read_up_to, before)
            elif events:
                self.read_up_to = max(self.read_up_to, events[-1].t)

    def events(self) -> list[ProcEvent]:
        """What the reader thread queued so far, in order."""
        out = []
        q = self._queue
        while q:
            out.append(q.popleft())
        return out

    def read(self, wait: float = 0.0, max_datagrams: int = 100_000) -> list[ProcEvent]:
        """Every event queued now (waiting up to ``wait`` seconds for the first). An overflow (ENOBUFS) is counted
        in :attr:`overflows` and reading goes on: what was queued before and after it is still good."""
        out: list[ProcEvent] = []
        suspended = boottime() - time.monotonic()
        self._empty = False
        if wait > 0:
            if not select.select([self.sock], [], [], wait)[0]:
                self._empty = True
                return out
        for _ in range(max_datagrams):
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                self._empty = True
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overflow_at = boottime()
                    self.overflows += 1  # after overflow_at: whoever sees the count sees its time
                    continue
                raise
            out.extend(parse(data, suspended if suspended > 0.001 else 0.0))
        return out

    def close(self) -> None:
        thread = getattr(self, "_thread", None)
        if thread is not None:
            self._stop.set()
            thread.join(1.0)
        try:
            self.sock.send(control_message(PROC_CN_MCAST_IGNORE))
        except OSError:
            pass
        self.sock.close()
