"""proc_events' probe source: polling a fake /proc (every case, deterministic), the real /proc of this machine
(unprivileged polling path), and the kernel's process-event connector where it works here."""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest
from wiredraw.plugins.proc_events import procfs
from wiredraw.plugins.proc_events.connector import ConnectorError, ProcConnector, control_message, parse
from wiredraw.plugins.proc_events.source import SNAPSHOT_BYTES, ProcSource

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


def test_connector_messages_parse_and_threads_are_skipped():
    import struct

    from wiredraw.plugins.proc_events.connector import CN_MSG, NLMSGHDR, PROC_EVENT

    def msg(what: int, payload: bytes) -> bytes:
        ev = PROC_EVENT.pack(what, 0, 2_000_000_000) + payload
        cn = CN_MSG.pack(1, 1, 0, 0, len(ev), 0) + ev
        return NLMSGHDR.pack(NLMSGHDR.size + len(cn), 3, 0, 0, 0) + cn

    data = (msg(1, struct.pack("=IIII", 10, 10, 11, 11)) + msg(1, struct.pack("=IIII", 10, 10, 12, 11))
            + msg(2, struct.pack("=II", 11, 11)) + msg(0x80000000, struct.pack("=IIII", 11, 11, 9, 9))
            + msg(0x80000000, struct.pack("=IIII", 12, 11, 0, 0)))
    events = list(parse(data))
    assert [(e.kind, e.pid, e.ppid, e.t, e.code) for e in events] == [
        ("fork", 11, 10, 2.0, None), ("exec", 11, 0, 2.0, None), ("exit", 11, 0, 2.0, -9)]
    assert len(control_message(1)) == 40
