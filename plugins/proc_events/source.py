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
probe's exit line), rescans /proc (``rescans``) and says so on its output (at most once a :data:`NOTE_EVERY`
seconds). A rescan is the polling diff (:meth:`ProcSource.scan`) against the known tree: processes that appeared
go out as fork + exec, as polling reports them, and known processes gone (or zombies) as exits, so the stored
tree converges to /proc. It runs at the next poll, for what runs now, and once more when the events that waited
in the socket before the overflow are applied, for what they said (a fork whose exit was dropped). A rescan's
exits wait until the reader thread has read past it (or :data:`SETTLE_SECONDS`): the process's own exit event,
if it was not dropped but only behind in the socket, then wins with its exact end and code. Events older than a
process a rescan found, about an earlier process with its pid, are skipped (:meth:`ProcSource._drain`). A process
that began and ended unseen, its events dropped, is not recovered (nothing of it is left to read).

Both read start times the same way (:mod:`procfs`), so a process keeps one identity whichever path saw it.

At start, and every ``snapshot_every`` seconds, the whole tree goes out as ``snapshot`` messages (cut to about
:data:`SNAPSHOT_BYTES` packed bytes each), so a server that lost its state learns the tree again.

Resume token: btime (so start times, hence identities, stay the same across probe restarts) and each known
process's (pid, ticks) with its command name; processes that ended while the probe was down are reported as
exits at the first poll (end = that poll; with the connector a moment later, once its reader has caught up).
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
# A fork event comes a little after the start /proc gives (whole clock ticks, rounded down): a process known with
# the event's pid that started less than this before the event is the event's own process.
FORK_SLACK = 2.0 / procfs.CLK_TCK


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
        self._catch_up: tuple[float, float] | None = None  # a rescan due once the reader passed this; deadline
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
        read_up_to = 0.0
        if self.connector is not None and self.counts["scans"]:
            read_up_to = self.connector.read_up_to  # before draining: every event up to it is in the queue
            self._drain(now)
            self._settle(now, read_up_to)
        if now >= self.next_scan:
            if self.connector is None:
                self.scan(now)
                scanned = True
            elif not self.counts["scans"]:
                self.connector.start_reader(self.proc)  # events from here on; the scan names what runs already
                self._overflows_seen = self.connector.overflows  # the scan covers any before it
                self.scan(now)
                scanned = True
            elif self._rescan_due(now, read_up_to):  # events were dropped: /proc says what they would have
                new, gone = self.scan(now)
                self._recovered(now, new, gone)
                scanned = True
            if scanned:
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

    @property
    def settled(self) -> bool:
        """No recovery from lost events under way: no rescan due, no exit held for the reader to catch up."""
        return self._catch_up is None and not self.pending

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
                ended += key not in self.pending
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
                ended += key not in self.pending
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
        self.pending.pop(key, None)
        if self.by_pid.get(key[0]) == key:
            del self.by_pid[key[0]]

    # -- snapshots -------------------------------------------------------------------------------------------
    def snapshot(self, now: float) -> None:
        """The tree as known, cut into messages of about :data:`SNAPSHOT_BYTES` packed bytes (processes a scan found
        ended are left out, even while their exit waits in :attr:`pending`)."""
        self.counts["snapshots"] += 1
        packer = msgpack.Packer()
        procs: list[dict[str, Any]] = []
        size = 0
        for key, k in sorted(self.known.items(), key=lambda item: (item[1].start, item[1].pid)):
            if k.exited or k.exec is None or key in self.pending:
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
    def _rescan_due(self, now: float, read_up_to: float) -> bool:
        """Whether to rescan /proc for lost events (counting the overflows): at once when the reader met a new
        overflow, for what runs now before it ends too; and once more when every event that waited in the socket
        before that overflow is applied (``read_up_to``: see :meth:`poll`), for what those older events said:
        a process whose fork came through but whose exit was dropped is known only then, and /proc says it ended.
        The second waits at most :data:`SETTLE_SECONDS` for a reader far behind."""
        assert self.connector is not None
        n = self.connector.overflows  # the reader thread's counter: read once, before its time
        if n != self._overflows_seen:
            self.counts["overflows"] += n - self._overflows_seen
            self._since_note["overflows"] += n - self._overflows_seen
            self._overflows_seen = n
            overflow_at = self.connector.overflow_at
            self._catch_up = None if read_up_to >= overflow_at else (overflow_at, now + SETTLE_SECONDS)
            return True
        if self._catch_up is not None and (read_up_to >= self._catch_up[0] or now >= self._catch_up[1]):
            self._catch_up = None
            return True
        return False

    def _recovered(self, now: float, new: int, gone: int) -> None:
        """Count a rescan after lost events, and say so (the first at once, then at most once a
        :data:`NOTE_EVERY` s: see :meth:`_note_lost`)."""
        self.counts["rescans"] += 1
        since = self._since_note
        since["rescans"] += 1
        since["new"] += new
        since["gone"] += gone
        if now >= self._next_note:
            self._note_lost(now)

    def _note_lost(self, now: float) -> None:
        since = self._since_note
        self._say(f"the kernel dropped process events {since['overflows']} time(s) (connector receive buffer full, "
                  f"ENOBUFS); rescanned /proc {since['rescans']} time(s): {since['new']} process(es) appeared, "
                  f"{since['gone']} ended meanwhile; {self.counts['overflows']} overflow(s), "
                  f"{self.counts['rescans']} rescan(s) since start")
        self._since_note = {name: 0 for name in since}
        self._next_note = now + NOTE_EVERY

    def _settle(self, now: float, read_up_to: float) -> None:
        """Report the exits a scan found (:meth:`_ended`) whose own exit event did not come: the events up to
        ``read_up_to`` (connector time) are applied and it is past the scan (the event was dropped), or
        :data:`SETTLE_SECONDS` went by (the reader is far behind)."""
        if not self.pending:
            return
        for key, (end, code, mark, deadline) in list(self.pending.items()):
            if read_up_to >= mark or now >= deadline:
                if not self.known[key].exited:
                    self._exit(key, end, code)
                self._forget(key)

    def _drain(self, now: float) -> None:
        """Apply the connector's events (fork, exec, exit of thread-group leaders) in order; the reader thread read
        /proc for each as it came.

        A scan (a rescan after lost events, or the snapshot's) reads /proc while events from before it may still
        wait in the socket: an event is about the process known with its pid only if that one had started by the
        event's time; an event from before that start belongs to an earlier process with the same pid, whose other
        events were dropped, and is skipped (else it would end, or duplicate, the live one)."""
        assert self.connector is not None
        for ev in self.connector.events():
            self.counts["events"] += 1
            t = round(self.btime + ev.t, 6)  # the same derivation as start times: btime + time since boot
            st: procfs.Stat | None = ev.stat
            known = self.known.get(self.by_pid.get(ev.pid, (-1, -1)))
            if ev.kind == "fork":
                if known is not None and known.start >= t - FORK_SLACK:
                    continue  # a scan found it first (or a later process with its pid)
                if st is None:  # already gone: its start from the event's own clock (as the kernel's starttime)
                    ticks = int(ev.t * procfs.CLK_TCK)
                    parent = self.known.get(self.by_pid.get(ev.ppid, (-1, -1)))
                    st = procfs.Stat(ev.pid, parent.comm if parent else "?", "R", ev.ppid, ticks, None)
                st.ppid = ev.ppid  # the parent at fork, even if it is gone now
                if (st.pid, st.ticks) not in self.known:
                    self._new(st, now, info=ev.info)
            elif ev.kind == "exec":
                if known is not None and known.start > t:
                    continue  # an earlier process with this pid (see above)
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
                if key is None or known is None or known.start > t:
                    continue
                if not known.exited:
                    self._exit(key, t, ev.code)
                self._forget(key)
