"""proc_events' probe source: polling a fake /proc (every case, deterministic), the real /proc of this machine
(unprivileged polling path), the kernel's process-event connector where it works here, and the recovery from lost
connector events (ENOBUFS): a scripted socket at the recv boundary, a fake reader for the rescans, the real kernel."""

from __future__ import annotations

import errno
import io
import os
import socket
import struct
import subprocess
import time
from collections import deque
from pathlib import Path

import pytest
from wiredraw.plugins.proc_events import procfs
from wiredraw.plugins.proc_events.connector import (
    CN_MSG,
    NLMSGHDR,
    PROC_EVENT,
    RCVBUF_BYTES,
    SO_RCVBUFFORCE,
    ConnectorError,
    ProcConnector,
    ProcEvent,
    control_message,
    parse,
)
from wiredraw.plugins.proc_events.source import NOTE_EVERY, SETTLE_SECONDS, SNAPSHOT_BYTES, ProcSource

BTIME = 1_700_000_000


class FakeProc:
    """A /proc tree written in a temporary directory: stat (btime), <pid>/{stat,cmdline,exe,cwd}."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "stat").write_text(f"cpu  1 2 3\nbtime {BTIME}\nprocesses 5\n")

    def add(self, pid: int, ppid: int, ticks: int, comm: str, argv: list[str], state: str = "S",
            exit_status: int = 0, kthread: bool = False) -> None:
        d = self.root / str(pid)
        d.mkdir(exist_ok=True)
        flags = 0x00200000 if kthread else 0x400000
        rest = [state, str(ppid)] + ["0"] * 4 + [str(flags)] + ["0"] * 12 + [str(ticks)] + ["0"] * 29 + [
            str(exit_status)]
        (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest) + "\n")
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
        for link, target in (("exe", f"/usr/bin/{comm}"), ("cwd", "/tmp")):
            if (d / link).is_symlink():
                (d / link).unlink()
            if argv:
                (d / link).symlink_to(target)

    def remove(self, pid: int) -> None:
        d = self.root / str(pid)
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


class Clock:
    def __init__(self, t: float = BTIME + 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def fake(tmp_path):
    f = FakeProc(tmp_path)
    f.add(1, 0, 10, "init", ["/sbin/init"])
    f.add(2, 0, 10, "kthreadd", [], kthread=True)
    f.add(50, 1, 500, "bash", ["bash"])
    return f


def source(fake: FakeProc, clock: Clock) -> ProcSource:
    return ProcSource(interval=0.5, snapshot_every=60, method="poll", clock=clock, proc=str(fake.root),
                      out=io.StringIO())


def step(src: ProcSource, clock: Clock, dt: float = 0.5) -> list[tuple[str, dict]]:
    clock.t += dt
    return src.poll(10_000)


def test_start_sends_the_tree_as_snapshots_only(fake):
    clock = Clock()
    src = source(fake, clock)
    out = src.poll(10_000)
    assert {t for t, _ in out} == {"snapshot"}
    procs = [p for _, m in out for p in m["procs"]]
    assert [p["pid"] for p in procs] == [1, 2, 50]
    bash = procs[2]
    assert bash == {"pid": 50, "ppid": 1, "start": BTIME + 5.0, "t": BTIME + 5.0, "exe": "/usr/bin/bash",
                    "argv": ["bash"], "uid": os.getuid(), "user": procfs.user_name(os.getuid()), "cwd": "/tmp",
                    "comm": "bash"}
    assert step(src, clock) == []  # nothing changed


def test_fork_exec_exit_exec_change_and_zombie_exit_code(fake):
    clock = Clock()
    src = source(fake, clock)
    src.poll(10_000)
    fake.add(60, 50, 900, "bash", ["bash"])  # forked, not exec'd yet
    out = step(src, clock)
    assert out == [("fork", {"pid": 60, "ppid": 50, "start": BTIME + 9.0}),
                   ("exec", {"pid": 60, "start": BTIME + 9.0, "t": BTIME + 9.0, "exe": "/usr/bin/bash",
                             "argv": ["bash"], "uid": os.getuid(), "user": procfs.user_name(os.getuid()),
                             "cwd": "/tmp", "comm": "bash"})]
    fake.add(60, 50, 900, "sleep", ["sleep", "5"])  # it exec'd
    (mtype, msg), = step(src, clock)
    assert mtype == "exec" and msg["argv"] == ["sleep", "5"] and msg["t"] == clock.t and msg["start"] == BTIME + 9.0
    fake.add(60, 50, 900, "sleep", [], state="Z", exit_status=2 << 8)  # a zombie with exit code 2
    assert step(src, clock) == [("exit", {"pid": 60, "start": BTIME + 9.0, "end": clock.t, "code": 2})]
    fake.remove(60)
    assert step(src, clock) == []  # reaped: already reported
    fake.add(61, 50, 950, "true", ["true"])
    step(src, clock)
    fake.remove(61)
    assert step(src, clock) == [("exit", {"pid": 61, "start": BTIME + 9.5, "end": clock.t})]  # code unknown


def test_pid_reuse_between_polls_is_an_exit_and_a_new_process(fake):
    clock = Clock()
    src = source(fake, clock)
    src.poll(10_000)
    fake.add(70, 50, 1000, "make", ["make"])
    step(src, clock)
    fake.add(70, 50, 1040, "cc", ["cc"])  # pid 70 again, a later start: another process
    out = step(src, clock)
    assert [(t, m["pid"], m["start"]) for t, m in out] == [
        ("exit", 70, BTIME + 10.0), ("fork", 70, BTIME + 10.4), ("exec", 70, BTIME + 10.4)]


def test_kernel_threads_renaming_themselves_are_not_execs(fake):
    clock = Clock()
    src = source(fake, clock)
    src.poll(10_000)
    fake.add(2, 0, 10, "kthreadd-renamed", [], kthread=True)
    assert step(src, clock) == []


def test_snapshots_are_periodic_and_cut_to_fit_a_datagram(fake):
    clock = Clock()
    for pid in range(100, 160):
        fake.add(pid, 50, 600 + pid, "worker", ["worker", "--id", str(pid), "x" * 40])
    src = source(fake, clock)
    first = src.poll(10_000)
    import msgpack

    assert len(first) > 3 and all(len(msgpack.packb(m)) <= SNAPSHOT_BYTES + 300 for _, m in first)
    assert sum(len(m["procs"]) for _, m in first) == 63
    assert [t for t, _ in step(src, clock, 30)] == []
    again = step(src, clock, 31)
    assert {t for t, _ in again} == {"snapshot"} and sum(len(m["procs"]) for _, m in again) == 63


def test_resume_token_reports_what_ended_meanwhile_and_keeps_identities(fake):
    clock = Clock()
    src = source(fake, clock)
    src.poll(10_000)
    fake.add(80, 50, 700, "vim", ["vim"])
    step(src, clock)
    token = src.state()
    src.close()
    fake.remove(80)  # ended while the probe was down
    fake.add(50, 1, 500, "zsh", ["zsh"])  # bash exec'd zsh meanwhile
    again = source(fake, clock)
    again.restore(token)
    out = step(again, clock)
    assert [(t, m["pid"]) for t, m in out if t != "snapshot"] == [("exec", 50), ("exit", 80)]
    snap = [p for t, m in out if t == "snapshot" for p in m["procs"]]
    assert [p["pid"] for p in snap] == [1, 2, 50] and snap[2]["argv"] == ["zsh"]


def test_bad_options_are_refused(fake):
    for kw, name in (({"interval": 0}, "--interval"), ({"snapshot_every": -1}, "--snapshot-every"),
                     ({"method": "magic"}, "--method")):
        with pytest.raises(ValueError, match=name):
            ProcSource(proc=str(fake.root), out=io.StringIO(), **kw)


def test_parse_stat_handles_odd_command_names():
    st = procfs.parse_stat(7, b"7 (a) b (c)) R 1 " + b"0 " * 17 + b"123 " + b"0 " * 30)
    assert st is not None and st.comm == "a) b (c)" and st.ppid == 1 and st.ticks == 123


# --- this machine's /proc -----------------------------------------------------------------------------------------

SHELL = "sleep 1 & /bin/echo hi; wait"  # /bin/echo: a real child, not the shell's builtin; wait keeps sh alive


def run_and_collect(src: ProcSource, seconds: float, argv: list[str]) -> tuple[int, list[tuple[str, dict]]]:
    src.poll(100_000)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    out: list[tuple[str, dict]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out += src.poll(100_000)
        time.sleep(0.02)
    proc.wait()
    return proc.pid, out


def tree_of(pid: int, out: list[tuple[str, dict]]) -> dict[int, dict]:
    """pid -> {ppid, argv, exit} for ``pid`` and its descendants, from the messages."""
    procs: dict[int, dict] = {}
    for mtype, m in out:
        if mtype == "fork":
            procs.setdefault(m["pid"], {})["ppid"] = m["ppid"]
        elif mtype == "exec":
            procs.setdefault(m["pid"], {})["argv"] = m["argv"]
        elif mtype == "exit":
            procs.setdefault(m["pid"], {})["exit"] = m.get("code", "unknown")
    mine = {pid}
    for p in sorted(procs):
        if procs[p].get("ppid") in mine:
            mine.add(p)
    return {p: procs[p] for p in mine if p in procs}


def test_polling_this_machine_sees_the_shell_and_its_sleep_under_it():
    src = ProcSource(interval=0.1, method="poll", out=io.StringIO())
    try:
        sh, out = run_and_collect(src, 2.0, ["sh", "-c", SHELL])
    finally:
        src.close()
    tree = tree_of(sh, out)
    assert tree[sh]["argv"] == ["sh", "-c", SHELL] and "exit" in tree[sh]
    (sleep,) = [p for p, v in tree.items() if v.get("argv") == ["sleep", "1"]]
    assert tree[sleep]["ppid"] == sh and "exit" in tree[sleep]
    # /bin/echo lives about a millisecond: polling sees it only by luck (README, "what polling cannot see")
    for v in tree.values():
        if v.get("argv") == ["/bin/echo", "hi"]:
            assert v["ppid"] == sh


def connector_or_skip() -> None:
    try:
        ProcConnector.open_checked(timeout=1.0).close()
    except ConnectorError as exc:
        pytest.skip(f"the process-event connector does not work here: {exc}")


def test_the_connector_sees_every_child_with_exit_codes():
    connector_or_skip()
    src = ProcSource(interval=0.1, method="connector", out=io.StringIO())
    try:
        sh, out = run_and_collect(src, 2.0, ["sh", "-c", SHELL + "; exit 3"])
    finally:
        src.close()
    assert src.method == "connector"
    tree = tree_of(sh, out)
    assert tree[sh]["argv"] == ["sh", "-c", SHELL + "; exit 3"] and tree[sh]["exit"] == 3
    kids = {p: v for p, v in tree.items() if v.get("ppid") == sh}
    assert len(kids) == 2 and all(v["exit"] == 0 for v in kids.values())
    argvs = sorted(v.get("argv") or [] for v in kids.values())
    # echo's program is read only if /proc was read before it ended (it lives about a millisecond)
    assert argvs in ([["/bin/echo", "hi"], ["sleep", "1"]], [[], ["sleep", "1"]]), argvs


def datagram(what: int, payload: bytes, t: float = 2.0) -> bytes:
    """One netlink datagram with one process event (``t``: seconds since boot)."""
    ev = PROC_EVENT.pack(what, 0, int(t * 1e9)) + payload
    cn = CN_MSG.pack(1, 1, 0, 0, len(ev), 0) + ev
    return NLMSGHDR.pack(NLMSGHDR.size + len(cn), 3, 0, 0, 0) + cn


def test_connector_messages_parse_and_threads_are_skipped():
    data = (datagram(1, struct.pack("=IIII", 10, 10, 11, 11)) + datagram(1, struct.pack("=IIII", 10, 10, 12, 11))
            + datagram(2, struct.pack("=II", 11, 11)) + datagram(0x80000000, struct.pack("=IIII", 11, 11, 9, 9))
            + datagram(0x80000000, struct.pack("=IIII", 12, 11, 0, 0)))
    events = list(parse(data))
    assert [(e.kind, e.pid, e.ppid, e.t, e.code) for e in events] == [
        ("fork", 11, 10, 2.0, None), ("exec", 11, 0, 2.0, None), ("exit", 11, 0, 2.0, -9)]
    assert len(control_message(1)) == 40


# --- lost connector events (ENOBUFS) ----------------------------------------------------------------------------------


class ScriptedSocket:
    """A subscribed connector socket for tests: ``recv`` returns (or raises) the scripted items in order, then
    BlockingIOError; ``select`` sees it readable while items remain (one byte per item in a socket pair).
    ``refuse``: socket options whose setsockopt fails as unprivileged (EPERM)."""

    def __init__(self, items: list[bytes | OSError], refuse: tuple[int, ...] = ()) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self.items: deque[bytes | OSError] = deque()
        self.refuse = refuse
        self.options: dict[int, int] = {}
        for item in items:
            self.items.append(item)
            self._w.send(b"x")

    def fileno(self) -> int:
        return self._r.fileno()

    def recv(self, size: int) -> bytes:
        self._r.recv(1)  # BlockingIOError when the script is done, as a drained netlink socket
        item = self.items.popleft()
        if isinstance(item, OSError):
            raise item
        return item

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if option in self.refuse:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        self.options[option] = value

    def getsockopt(self, level: int, option: int) -> int:
        return 2 * list(self.options.values())[-1]  # the kernel doubles what was granted

    def send(self, data: bytes) -> int:
        return len(data)

    def close(self) -> None:
        self._r.close()
        self._w.close()


def enobufs() -> OSError:
    return OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))


def test_the_connector_counts_enobufs_at_recv_and_reads_on():
    sock = ScriptedSocket([datagram(1, struct.pack("=IIII", 10, 10, 11, 11)), enobufs(), enobufs(),
                           datagram(0x80000000, struct.pack("=IIII", 11, 11, 3 << 8, 0))])
    conn = ProcConnector(sock=sock)
    try:
        assert sock.options == {SO_RCVBUFFORCE: RCVBUF_BYTES} and conn.rcvbuf == 2 * RCVBUF_BYTES
        assert [(e.kind, e.pid, e.code) for e in conn.read()] == [("fork", 11, None), ("exit", 11, 3)]
        assert conn.overflows == 2  # each ENOBUFS counted; what came before and after it is still read
    finally:
        conn.close()


def test_without_cap_net_admin_the_buffer_is_raised_as_far_as_rmem_max_allows():
    sock = ScriptedSocket([], refuse=(SO_RCVBUFFORCE,))
    conn = ProcConnector(sock=sock)
    conn.close()
    assert sock.options == {socket.SO_RCVBUF: RCVBUF_BYTES}


def test_the_reader_thread_survives_enobufs_and_says_how_far_it_read(fake):
    sock = ScriptedSocket([enobufs(), datagram(1, struct.pack("=IIII", 1, 1, 50, 50), t=5.0)])
    conn = ProcConnector(sock=sock)
    conn.start_reader(str(fake.root))
    try:
        deadline = time.monotonic() + 10
        while conn.read_up_to <= 5.0 and time.monotonic() < deadline:  # > 5: it found the socket empty after
            time.sleep(0.01)
        assert conn.read_up_to > 5.0 and conn.overflows == 1
        (ev,) = conn.events()
        assert (ev.kind, ev.pid, ev.stat.comm, ev.info["argv"]) == ("fork", 50, "bash", ["bash"])  # /proc read
    finally:
        conn.close()


class FakeConnector:
    """The reader side of :class:`ProcConnector` as the source sees it, driven by the test: events handed over,
    overflows counted, how far the reader has read (seconds since boot, the clock of event times)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.queue: list[ProcEvent] = []
        self.overflows = 0
        self.overflow_at = 0.0
        self.read_up_to = 0.0
        self.rcvbuf = 16 << 20

    def now(self) -> float:
        return self.clock.t - BTIME

    def overflow(self, times: int = 1) -> None:
        """The reader met ENOBUFS (``times`` times), now."""
        self.overflow_at = self.now()
        self.overflows += times

    def start_reader(self, proc: str) -> None:
        self.read_up_to = self.now()

    def events(self) -> list[ProcEvent]:
        out, self.queue = self.queue, []
        return out

    def close(self) -> None:
        pass


def read_event(fake: FakeProc, kind: str, pid: int, t: float, ppid: int = 0, code: int | None = None) -> ProcEvent:
    """An event as the reader thread queues it: fork and exec with /proc read at once."""
    ev = ProcEvent(kind, pid, ppid, t - BTIME, code)
    if kind != "exit":
        ev.stat = procfs.read_stat(pid, str(fake.root))
        if ev.stat is not None:
            ev.info = procfs.read_exec(pid, ev.stat.comm, str(fake.root))
    return ev


def connector_source(fake: FakeProc, clock: Clock, out: io.StringIO | None = None) -> tuple[ProcSource, FakeConnector]:
    conn = FakeConnector(clock)
    src = ProcSource(interval=0.5, snapshot_every=60, method="connector", clock=clock, proc=str(fake.root),
                     out=out if out is not None else io.StringIO(), connector=conn)
    return src, conn


def test_after_lost_events_a_rescan_reports_what_appeared_and_what_ended(fake):
    clock = Clock()  # BTIME + 1000: the processes below start at 1000.x s since boot
    out = io.StringIO()
    src, conn = connector_source(fake, clock, out)
    assert "receive buffer 16384 KiB" in out.getvalue()
    src.poll(10_000)
    fake.add(60, 50, 100_010, "make", ["make"])
    fake.add(80, 50, 100_020, "cc", ["cc"])
    conn.queue += [read_event(fake, "fork", 60, BTIME + 1000.1, ppid=50),
                   read_event(fake, "fork", 80, BTIME + 1000.2, ppid=50)]
    assert [(t, m["pid"]) for t, m in step(src, clock)] == [("fork", 60), ("exec", 60), ("fork", 80), ("exec", 80)]

    # the kernel drops events: bash (50) and make (60) end, cc (80) is a zombie (exit code 2), vim (70) starts
    fake.remove(50)
    fake.remove(60)
    fake.add(80, 1, 100_020, "cc", [], state="Z", exit_status=2 << 8)
    fake.add(70, 1, 100_040, "vim", ["vim", "notes"])
    conn.overflow()
    out.truncate(0)
    msgs = step(src, clock)
    rescan_t = clock.t
    assert src.counts["overflows"] == 1 and src.counts["rescans"] == 1
    assert "dropped process events 1 time(s)" in out.getvalue() and "rescanned /proc 1 time(s)" in out.getvalue()
    assert "1 process(es) appeared, 3 ended" in out.getvalue()
    start70 = BTIME + 1000.4
    assert msgs == [("fork", {"pid": 70, "ppid": 1, "start": start70}),
                    ("exec", {"pid": 70, "start": start70, "t": start70, "exe": "/usr/bin/vim",
                              "argv": ["vim", "notes"], "uid": os.getuid(), "user": procfs.user_name(os.getuid()),
                              "cwd": "/tmp", "comm": "vim"})]
    src.snapshot(clock.t)  # a snapshot meanwhile leaves out what the rescan found ended
    assert [p["pid"] for _, m in step(src, clock, 0) for p in m["procs"]] == [1, 2, 70]
    # the exits wait for the reader to pass the rescan: make's exit event was only late, and wins (exact end, code)
    conn.queue.append(read_event(fake, "exit", 60, BTIME + 1000.9, code=7))
    assert step(src, clock) == [("exit", {"pid": 60, "start": BTIME + 1000.1, "end": BTIME + 1000.9, "code": 7})]
    # the reader reaches the events that waited in the socket before the overflow: an old fork (ld, 95, read when
    # it was gone), whose exit was dropped. The rescan's exits go out, and a second rescan finds ld gone.
    conn.queue.append(read_event(fake, "fork", 95, BTIME + 1000.355, ppid=1))
    conn.read_up_to = rescan_t - BTIME + 0.1
    msgs = step(src, clock)
    catch_up_t = clock.t
    assert src.counts["rescans"] == 2
    assert msgs[:2] == [("fork", {"pid": 95, "ppid": 1, "start": BTIME + 1000.35}),
                        ("exec", {"pid": 95, "start": BTIME + 1000.35, "t": BTIME + 1000.35, "exe": None, "argv": [],
                                  "uid": None, "user": None, "cwd": None, "comm": "init"})]  # program unknown
    assert msgs[2:] == [
        ("exit", {"pid": 80, "start": BTIME + 1000.2, "end": rescan_t, "code": 2}),  # as the zombie told
        ("exit", {"pid": 50, "start": BTIME + 5.0, "end": rescan_t})]  # dropped: the rescan's time, code unknown
    conn.read_up_to = clock.t - BTIME + 0.1
    (msg,) = step(src, clock)
    assert msg[0] == "exit" and msg[1]["pid"] == 95 and msg[1]["end"] == catch_up_t
    assert src.counts["exits"] == 4 and not src.pending
    # the tree converged to /proc: the next snapshot holds exactly what runs (the zombie is no longer alive)
    snap = step(src, clock, 60)
    assert {t for t, _ in snap} == {"snapshot"}
    assert [p["pid"] for _, m in snap for p in m["procs"]] == [1, 2, 70]
    assert src.summary()["overflows"] == 1 and src.summary()["rescans"] == 2


def test_events_from_before_a_rescan_neither_duplicate_nor_end_what_it_found(fake):
    clock = Clock()
    src, conn = connector_source(fake, clock)
    src.poll(10_000)
    fake.add(70, 1, 100_040, "vim", ["vim"])
    fake.add(90, 1, 100_030, "cc", ["cc"])
    conn.overflow()
    assert [(t, m["pid"]) for t, m in step(src, clock)] == [("fork", 90), ("exec", 90), ("fork", 70), ("exec", 70)]
    fake.remove(90)
    conn.queue += [read_event(fake, "exit", 70, BTIME + 1000.35, code=0),  # an earlier pid 70, its fork dropped
                   read_event(fake, "fork", 90, BTIME + 1000.312, ppid=1),  # cc's own, read when it was gone: its
                   read_event(fake, "exit", 90, BTIME + 1000.8, code=1)]  # start from the event's clock, a tick on
    conn.read_up_to = clock.t - BTIME
    assert step(src, clock) == [("exit", {"pid": 90, "start": BTIME + 1000.3, "end": BTIME + 1000.8, "code": 1})]
    assert [k.pid for k in src.known.values() if not k.exited] == [1, 2, 50, 70]


def test_a_rescan_reports_its_exits_anyway_when_the_reader_stays_behind(fake):
    clock = Clock()
    src, conn = connector_source(fake, clock)
    src.poll(10_000)
    fake.remove(50)
    conn.overflow()
    assert step(src, clock) == [] and src.pending  # held: its exit event may be behind in the socket
    assert step(src, clock, SETTLE_SECONDS / 2) == []
    rescan_t = clock.t - SETTLE_SECONDS / 2
    assert step(src, clock, SETTLE_SECONDS / 2) == [("exit", {"pid": 50, "start": BTIME + 5.0, "end": rescan_t})]


def test_lost_events_are_told_at_most_once_a_minute_and_counted_all_along(fake):
    clock = Clock()
    out = io.StringIO()
    src, conn = connector_source(fake, clock, out)
    src.poll(10_000)
    for _ in range(5):
        conn.overflow(2)
        step(src, clock, 1.0)
    assert src.counts["overflows"] == 10 and src.counts["rescans"] == 5
    lines = [line for line in out.getvalue().splitlines() if "dropped" in line]
    assert len(lines) == 1 and "dropped process events 2 time(s)" in lines[0]
    step(src, clock, NOTE_EVERY)  # no new overflow: what was not told yet is told now
    lines = [line for line in out.getvalue().splitlines() if "dropped" in line]
    assert len(lines) == 2 and "dropped process events 8 time(s)" in lines[1] and "10 overflow(s)" in lines[1]
    step(src, clock, NOTE_EVERY)
    assert len([line for line in out.getvalue().splitlines() if "dropped" in line]) == 2


def test_a_real_overflow_is_counted_and_the_tree_converges():
    """The kernel's own ENOBUFS: a receive buffer shrunk to its minimum and a burst of forks the reader thread
    cannot keep up with. Whichever events were dropped, the rescans leave no burst child alive and find the
    sleep that outlives the burst."""
    connector_or_skip()
    conn = ProcConnector.open_checked(timeout=1.0)
    out = io.StringIO()
    src = ProcSource(interval=0.05, method="connector", connector=conn, out=out)
    sleeper = None
    try:
        src.poll(100_000)
        before = conn.overflows  # the source counts from its first scan on
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)  # the kernel's minimum: a few events
        sleeper = subprocess.Popen(["sleep", "5"])
        kids = []
        for _ in range(300):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            kids.append(pid)
        for pid in kids:
            os.waitpid(pid, 0)
        after = conn.now()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            read_up_to = conn.read_up_to  # then the poll applies every event up to it
            src.poll(100_000)
            if read_up_to > after and src.counts["overflows"] == conn.overflows - before and src.settled:
                break
            time.sleep(0.02)
    finally:
        src.close()
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
    assert src.counts["overflows"] >= 1 and src.counts["rescans"] >= 1, (src.summary(), conn.overflows)
    assert src.settled, f"the recovery did not finish in 20 s: {src.summary()}"
    assert "dropped process events" in out.getvalue()
    alive = {k.pid for k in src.known.values() if not k.exited}
    assert not alive & set(kids), "burst children left alive"
    assert sleeper.pid in alive
