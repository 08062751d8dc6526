"""Reading processes from Linux's /proc, shared by the polling and the connector paths (one derivation of start
times for both, so one process always gets one identity).

A process is named by ``(pid, start)``; ``start`` = btime (/proc/stat, read once per probe run and kept in the
resume token) + starttime (/proc/<pid>/stat field 22, clock ticks since boot) / CLK_TCK, rounded to 0.01 s.
Only thread-group leaders are listed in /proc, so threads never appear as processes.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PF_KTHREAD = 0x00200000
ARGV_MAX_ITEMS = 64
ARGV_MAX_CHARS = 2048


def read_btime(proc: str = "/proc") -> int:
    with open(f"{proc}/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime "):
                return int(line.split()[1])
    raise OSError("no btime line in /proc/stat")


def start_time(btime: float, ticks: int) -> float:
    """Epoch seconds of a start given in clock ticks since boot, at 0.01 s resolution (the identity's)."""
    return round(btime + ticks / CLK_TCK, 2)


def ident(pid: int, start: float) -> str:
    """``{pid}:{start}`` as keys and node ids write it (start with exactly two decimals)."""
    return f"{pid}:{start:.2f}"


@dataclass(slots=True)
class Stat:
    """What one read of /proc/<pid>/stat tells."""

    pid: int
    comm: str
    state: str
    ppid: int
    ticks: int  # starttime, clock ticks since boot
    exit_status: int | None  # field 52 (waitpid status), for zombies; None when the kernel does not give it
    kthread: bool = False  # a kernel thread (PF_KTHREAD): it renames itself (kworker/...) without exec


def read_stat(pid: int, proc: str = "/proc") -> Stat | None:
    """None when the process is gone (or the line is unreadable)."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return parse_stat(pid, data)


def parse_stat(pid: int, data: bytes) -> Stat | None:
    # comm is in parentheses and may hold spaces and parentheses itself: the last ')' ends it
    lp, rp = data.find(b"("), data.rfind(b")")
    if lp < 0 or rp < lp:
        return None
    rest = data[rp + 2 :].split()
    if len(rest) < 20:
        return None
    try:
        ppid, ticks, flags = int(rest[1]), int(rest[19]), int(rest[6])  # fields 4, 22 and 9
        status = int(rest[49]) if len(rest) >= 50 else None  # field 52, Linux >= 3.5
    except ValueError:
        return None
    comm = data[lp + 1 : rp].decode("utf-8", "replace")
    return Stat(pid, comm, rest[0].decode("ascii", "replace"), ppid, ticks, status, bool(flags & PF_KTHREAD))


def list_pids(proc: str = "/proc") -> list[int]:
    return [int(name) for name in os.listdir(proc) if name.isdigit()]


def decode_wait_status(status: int) -> int:
    """A waitpid status as this module reports exit codes: 0..255, or -N when killed by signal N."""
    sig = status & 0x7F
    return -sig if sig else (status >> 8) & 0xFF


def clip_argv(argv: list[str]) -> list[str]:
    """At most :data:`ARGV_MAX_ITEMS` entries and :data:`ARGV_MAX_CHARS` characters, then ``...``."""
    out: list[str] = []
    size = 0
    for i, arg in enumerate(argv):
        if i >= ARGV_MAX_ITEMS or size + len(arg) > ARGV_MAX_CHARS:
            out.append("...")
            break
        out.append(arg)
        size += len(arg)
    return out


_users: dict[int, str | None] = {}


def user_name(uid: int | None) -> str | None:
    if uid is None:
        return None
    if uid not in _users:
        try:
            _users[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _users[uid] = None
    return _users[uid]


def read_exec(pid: int, comm: str, proc: str = "/proc") -> dict[str, Any] | None:
    """The exec fields of a live process: exe, argv, uid, user, cwd, comm (None: it is gone). exe and cwd are
    None where they cannot be read (another user's process without privilege, a kernel thread)."""
    base = f"{proc}/{pid}"
    try:
        with open(f"{base}/cmdline", "rb") as f:
            raw = f.read()
        uid = os.stat(base).st_uid
    except OSError:
        return None
    argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0")]
    if argv and argv[-1] == "":
        argv.pop()
    exe: str | None
    cwd: str | None
    try:
        exe = os.readlink(f"{base}/exe")
        if exe.endswith(" (deleted)"):
            exe = exe[: -len(" (deleted)")]
    except OSError:
        exe = None
    try:
        cwd = os.readlink(f"{base}/cwd")
    except OSError:
        cwd = None
    return {"exe": exe, "argv": clip_argv(argv), "uid": uid, "user": user_name(uid), "cwd": cwd, "comm": comm}
