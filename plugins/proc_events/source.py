"""proc_events probe source: the processes of this host as fork / exec / exit messages, and snapshots of the tree.

Two ways to learn of processes, chosen with ``--method`` (``auto``: the connector where it works, else polling;
the choice and why is printed at start):

- **polling** /proc every ``interval`` seconds, diffing (pid, start time) against the previous poll. A process
  seen for the first time gives fork + exec; one gone gives exit (end = the poll that found it gone, or the first
  poll that saw it a zombie; its exit code only from a zombie of ours to read); a changed command name (comm)
  gives an exec. Polling sees only processes alive at some poll: one born and dead between two polls is never
  seen at all, and an exec of the same program name is not noticed.
- **connector**: the kernel's process-event connector (netlink, ``connector.py``) reports every fork, exec and
  exit as it happens, with exit codes. It needs CAP_NET_ADMIN in the initial namespaces; the source checks that
  events really arrive (a container may accept the subscription and send nothing). /proc is still read: for
  each new process's start time, program and arguments, at start, with each snapshot, and after lost events.

Lost events (connector): when the socket's receive buffer overflows the kernel drops events and says only that
it did (ENOBUFS). The source counts each overflow (``overflows`` in :meth:`ProcSource.summary`, hence in the
probe's exit line), rescans /proc at the next poll (``rescans``) and says so on its output (at most once a
:data:`NOTE_EVERY` seconds). The rescan is the polling diff (:meth:`ProcSource.scan`) against the known tree:
processes that appeared go out as fork + exec, as polling reports them, and known processes gone (or zombies) as
exits, so the stored tree converges to /proc. Those exits wait until the reader thread has read past the rescan
(or :data:`SETTLE_SECONDS`): the process's own exit event, if it was not dropped but only behind in the socket,
then wins with its exact end and code. A process that began and ended between two rescans with its events
dropped is not recovered (nothing of it is left to read).

Both read start times the same way (:mod:`procfs`), so a process keeps one identity whichever path saw it.

At start, and every ``snapshot_every`` seconds, the whole tree goes out as ``snapshot`` messages (cut to about
:data:`SNAPSHOT_BYTES` packed bytes each), so a server that lost its state learns the tree again.

Resume token: btime (so start times, hence identities, stay the same across probe restarts) and each known
process's (pid, ticks) with its command name; processes that ended while the probe was down are reported as
exits at the first poll (end = that poll).
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import msgpack
from wiredraw.plugins.proc_events import procfs

Message = tuple[str, dict[str, Any]]
Key = tuple[int, int]  # (pid, starttime in ticks since boot)

SNAPSHOT_BYTES = 900  # a snapshot message fits a UDP datagram with its envelope
METHODS = ("auto", "poll", "connector")
NOTE_EVERY = 60.0  # seconds: at most one line about lost events per this; the counters keep the rest
SETTLE_SECONDS = 5.0  # a rescan's exits wait at most this long for the reader thread to catch up (see above)


@dataclass(slots=True)
class Known:
    pid: int
    ppid: int
    start: float
    comm: str
    exec: dict[str, Any] | None  # exe, argv, uid, user, cwd, comm (None: restored, not read yet)
    exec_t: float
    exited: bool = False  # its exit was reported (a zombie): report nothing more when it disappears


class ProcSource:
    """See the module docstring. ``clock`` gives epoch seconds; ``proc`` is the /proc mount to read."""

    def __init__(self, interval: float = 0.5, snapshot_every: float = 60.0, method: str = "auto",
                 clock: Callable[[], float] = time.time, proc: str = "/proc", out: IO[str] | None = None,
                 connector: Any = None) -> None:
        if interval <= 0:
            raise ValueError(f"--interval {interval}: expected seconds > 0")
        if snapshot_every <= 0:
            raise ValueError(f"--snapshot-every {snapshot_every}: expected seconds > 0")
        if method not in METHODS:
            raise ValueError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
        self.interval, self.snapshot_every, self.clock, self.proc = interval, snapshot_every, clock, proc
        self.out = out if out is not None else sys.stderr
        self.btime = float(procfs.read_btime(proc))
        self.known: dict[Key, Known] = {}
        self.by_pid: dict[int, Key] = {}
        self.queue: deque[Message] = deque()
        self.next_scan = 0.0
        self.next_snapshot = 0.0
        self.euid = os.geteuid()
        self.counts = {"scans": 0, "forks": 0, "execs": 0, "exits": 0, "snapshots": 0, "events": 0, "overflows": 0,
                       "rescans": 0}
        # connector: exits a scan found, waiting for the reader to pass the scan: key -> (end, code, the scan's
        # connector time, the source time after which to report them anyway)
        self.pending: dict[Key, tuple[float, int | None, float, float]] = {}
        self._overflows_seen = 0  # the connector's overflow count the last rescan answered
        self._since_note = {"overflows": 0, "rescans": 0, "new": 0, "gone": 0}  # not told yet
        self._next_note = 0.0
        self.connector = connector
        self.method = "poll"
        if method != "poll" and connector is None:
            from wiredraw.plugins.proc_events.connector import ConnectorError, ProcConnector

            try:
                self.connector = ProcConnector.open_checked()
            except ConnectorError as exc:
                if method == "connector":
                    raise ValueError(f"--method connector: {exc}") from exc
                self._say(f"polling /proc every {interval:g} s (the process-event connector is not available: {exc})")
        if self.connector is not None:
            self.method = "connector"
            kib = getattr(self.connector, "rcvbuf", 0) // 1024
            self._say("following the kernel's process-event connector (netlink), reading /proc for details"
                      + (f"; receive buffer {kib} KiB" if kib else ""))
        elif method == "poll":
            self._say(f"polling /proc every {interval:g} s (--method poll)")

    def _say(self, text: str) -> None:
        print(f"proc_events: {text}", file=self.out, flush=True)

    # -- Source protocol -------------------------------------------------------------------------------------
    def poll(self, max_messages: int) -> list[Message]:
        now = self.clock()
        scanned = False
        if self.connector is not None and self.counts["scans"]:
            self._drain(now)
            self._settle(now)
        if now >= self.next_scan and (self.connector is None or not self.counts["scans"] or self._overflowed()):
            if self.connector is not None and not self.counts["scans"]:
                self.connector.start_reader(self.proc)  # events from here on; the scan names what runs already
                self._overflows_seen = self.connector.overflows  # the scan covers any before it
                self.scan(now)
            elif self.connector is not None:  # events were dropped: /proc says what they would have
                new, gone = self.scan(now)
                self._recovered(now, new, gone)
            else:
                self.scan(now)
            scanned = True
            self.next_scan = now + self.interval
        if now >= self.next_snapshot:
            if self.connector is not None and not scanned:
                self.scan(now)  # a safety net: what the connector may have missed
            self.snapshot(now)
            self.next_snapshot = now + self.snapshot_every
        if self.connector is not None and self._since_note["rescans"] and now >= self._next_note:
            self._note_lost(now)
        out: list[Message] = []
        while self.queue and len(out) < max_messages:
            out.append(self.queue.popleft())
        return out

    def finished(self) -> bool:
        return False

    def state(self) -> Any:
        return {"v": 1, "btime": self.btime,
                "known": {f"{p}:{t}": [k.comm, k.exited] for (p, t), k in self.known.items()}}

    def restore(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("v") != 1:
            return
        btime = state.get("btime")
        if isinstance(btime, (int, float)) and abs(btime - self.btime) < 5:
            self.btime = float(btime)  # the same boot: keep the start times (identities) it gave
        else:
            return  # another boot: nothing of the old state is alive
        for name, (comm, exited) in (state.get("known") or {}).items():
            pid, ticks = (int(x) for x in name.split(":"))
            start = procfs.start_time(self.btime, ticks)
            self.known[(pid, ticks)] = Known(pid, 0, start, comm, None, start, bool(exited))
            self.by_pid[pid] = (pid, ticks)

    def close(self) -> None:
        if self.connector is not None:
            self.connector.close()

    def summary(self) -> dict[str, Any]:
        """Counters for the probe's exit line; with the connector, ``overflows`` (times the kernel dropped events)
        and ``rescans`` (the /proc rescans that recovered from them)."""
        return {"method": self.method, "processes": len(self.known), **self.counts}

    # -- polling ---------------------------------------------------------------------------------------------
    def scan(self, now: float) -> tuple[int, int]:
        """One diff of /proc against what is known: the polling method, and with the connector its recovery from
        lost events. The first scan of a run reports no fork or exec: the snapshot that follows it carries the tree
        (exits of processes restored from the token are reported). Returns (processes that appeared, known
        processes found ended)."""
        quiet = self.counts["scans"] == 0
        self.counts["scans"] += 1
        mark = self.connector.now() if self.connector is not None else 0.0  # before /proc is read
        seen: set[Key] = set()
        new: list[procfs.Stat] = []
        ended = 0
        for pid in procfs.list_pids(self.proc):
            st = procfs.read_stat(pid, self.proc)
            if st is None:
                continue
            key = (pid, st.ticks)
            seen.add(key)
            k = self.known.get(key)
            if k is None:
                if st.state == "Z" and self.connector is not None and not quiet:
                    continue  # dead: its exit event came (and it was forgotten), or was dropped with its fork
                new.append(st)
            elif k.exited:
                continue
            elif st.state == "Z" and not quiet:
                ended += 1
                self._ended(key, now, self._zombie_code(st), mark, gone=False)
            elif k.exec is None:  # restored: read its program, report it only if it changed meanwhile
                k.ppid = st.ppid
                changed = st.comm != k.comm
                self._read_exec(k, st.comm, now if changed else k.start, report=changed)
            elif st.comm != k.comm and not st.kthread:
                self._read_exec(k, st.comm, now, report=True)
        for key in [key for key in self.known if key not in seen]:
            if self.known[key].exited:
                self._forget(key)
            else:
                ended += 1
                self._ended(key, now, None, mark, gone=True)
        new.sort(key=lambda st: (st.ticks, st.pid))  # parents before their children
        for st in new:
            self._new(st, now, report=not quiet)
        return (0 if quiet else len(new)), ended

    def _ended(self, key: Key, end: float, code: int | None, mark: float, gone: bool) -> None:
        """A scan found a known process ended: ``gone``, or a zombie (``code`` as it tells). Polling reports it now
        (and forgets it once gone; a zombie stays known, exited, until reaped). With the connector its exit event
        may still be on its way, behind the scan in the socket: the exit is held until the reader passed ``mark``
        (the scan's connector time), so that event wins with its exact end and code; see :meth:`_settle`."""
        if self.connector is not None:
            self.pending.setdefault(key, (end, code, mark, end + SETTLE_SECONDS))
            return
        self._exit(key, end, code)
        if gone:
            self._forget(key)

    def _zombie_code(self, st: procfs.Stat) -> int | None:
        """A zombie's exit status (field 52) is readable by root or its owner; others read 0, i.e. unknown."""
        if st.exit_status is None:
            return None
        if self.euid != 0:
            try:
                if os.stat(f"{self.proc}/{st.pid}").st_uid != self.euid:
                    return None
            except OSError:
                return None
        return procfs.decode_wait_status(st.exit_status)

    def _new(self, st: procfs.Stat, now: float, exec_t: float | None = None, report: bool = True,
             info: dict[str, Any] | None = None) -> Known:
        key = (st.pid, st.ticks)
        start = procfs.start_time(self.btime, st.ticks)
        k = Known(st.pid, st.ppid, start, st.comm, None, start)
        self.known[key] = k
        old = self.by_pid.get(st.pid)
        if old is not None and old != key and old in self.known:  # pid reused before we saw the old one go
            self._exit(old, now, None)
            self._forget(old)
        self.by_pid[st.pid] = key
        if report:
            self.counts["forks"] += 1
            self.queue.append(("fork", {"pid": st.pid, "ppid": st.ppid, "start": start}))
        t = start if exec_t is None else exec_t
        if info is not None:
            self._set_exec(k, info, t, report)
        else:
            self._read_exec(k, st.comm, t, report=report)
        if st.state == "Z" and report and self.connector is None:  # the connector's exit event says it better
            self._exit(key, now, self._zombie_code(st))
        return k

    def _read_exec(self, k: Known, comm: str, t: float, report: bool) -> None:
        info = procfs.read_exec(k.pid, comm, self.proc)
        if info is None:  # gone meanwhile: what we know
            info = dict(k.exec) if k.exec else {"exe": None, "argv": [], "uid": None, "user": None, "cwd": None}
            info["comm"] = comm
        self._set_exec(k, info, t, report)

    def _set_exec(self, k: Known, info: dict[str, Any], t: float, report: bool) -> None:
        k.comm, k.exec, k.exec_t = info.get("comm") or k.comm, info, t
        if report:
            self.counts["execs"] += 1
            self.queue.append(("exec", {"pid": k.pid, "start": k.start, "t": t, **info}))

    def _exit(self, key: Key, end: float, code: int | None) -> None:
        k = self.known[key]
        k.exited = True
        self.counts["exits"] += 1
        msg: dict[str, Any] = {"pid": k.pid, "start": k.start, "end": max(end, k.start)}
        if code is not None:
            msg["code"] = code
        self.queue.append(("exit", msg))

    def _forget(self, key: Key) -> None:
        self.known.pop(key, None)
        if self.by_pid.get(key[0]) == key:
            del self.by_pid[key[0]]

    # -- snapshots -------------------------------------------------------------------------------------------
    def snapshot(self, now: float) -> None:
        """The tree as known, cut into messages of about :data:`SNAPSHOT_BYTES` packed bytes."""
        self.counts["snapshots"] += 1
        packer = msgpack.Packer()
        procs: list[dict[str, Any]] = []
        size = 0
        for k in sorted(self.known.values(), key=lambda k: (k.start, k.pid)):
            if k.exited or k.exec is None:
                continue
            p = {"pid": k.pid, "ppid": k.ppid, "start": k.start, "t": k.exec_t, **k.exec}
            n = len(packer.pack(p))
            if procs and size + n > SNAPSHOT_BYTES:
                self.queue.append(("snapshot", {"t": now, "procs": procs}))
                procs, size = [], 0
            procs.append(p)
            size += n
        self.queue.append(("snapshot", {"t": now, "procs": procs}))

    # -- the connector ---------------------------------------------------------------------------------------
    def _lost(self) -> bool:
        assert self.connector is not None
        if self.connector.lost:
            self.connector.lost = False
            self.counts["lost"] += 1
            return True
        return False

    def _drain(self, now: float) -> None:
        """Apply the connector's events (fork, exec, exit of thread-group leaders) in order; the reader thread read
        /proc for each as it came."""
        assert self.connector is not None
        for ev in self.connector.events():
            self.counts["events"] += 1
            t = round(self.btime + ev.t, 6)  # the same derivation as start times: btime + time since boot
            st: procfs.Stat | None = ev.stat
            if ev.kind == "fork":
                if st is None:  # already gone: its start from the event's own clock (as the kernel's starttime)
                    ticks = int(ev.t * procfs.CLK_TCK)
                    parent = self.known.get(self.by_pid.get(ev.ppid, (-1, -1)))
                    st = procfs.Stat(ev.pid, parent.comm if parent else "?", "R", ev.ppid, ticks, None)
                st.ppid = ev.ppid  # the parent at fork, even if it is gone now
                if (st.pid, st.ticks) not in self.known:
                    self._new(st, now, info=ev.info)
            elif ev.kind == "exec":
                key = self.by_pid.get(ev.pid)
                if st is not None and (key is None or key[1] != st.ticks):
                    self._new(st, now, exec_t=t, info=ev.info)  # its fork was missed
                elif key is not None:
                    k = self.known[key]
                    info = ev.info
                    if info is None:  # gone already: it runs another program, which we cannot know
                        info = {"exe": None, "argv": [], "uid": k.exec.get("uid") if k.exec else None,
                                "user": k.exec.get("user") if k.exec else None, "cwd": None,
                                "comm": st.comm if st is not None else None}
                    if info != k.exec:
                        self._set_exec(k, info, t, report=True)
            elif ev.kind == "exit":
                key = self.by_pid.get(ev.pid)
                if key is not None and not self.known[key].exited:
                    self._exit(key, t, ev.code)
                if key is not None:
                    self._forget(key)
