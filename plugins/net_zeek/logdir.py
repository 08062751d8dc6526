"""net_zeek's live source: follows a Zeek log directory as zeekctl writes, rotates and archives it.

Records are read with :class:`~wiredraw.plugins.net_zeek.lines._LineReader`; files are named by
:func:`~wiredraw.plugins.net_zeek.lines.identity_of` (see :mod:`~wiredraw.plugins.net_zeek.lines`).

Which rotated files are read (:class:`LogDirSource`)
----------------------------------------------------
While following ``conn.log`` the source holds it open: when zeekctl renames it away, the rest is read from the
open descriptor (Zeek writes ``#close`` before it rotates), then the new ``conn.log`` is opened. Files that were
created AND rotated while the probe was down or lagging are found among the rotated files (``<logdir>/conn.*.log``
not yet archived, and ``<logdir>/../YYYY-MM-DD/conn.*.log[.gz]``) whose inode change time is after the follower's
*watermark* (the moment it last caught up with the live file, less :data:`CTIME_SLACK`), skipping identities it
has already finished (the last :data:`DONE_KEPT` per log). They are read in name order (date directory and the
``HH:MM:SS`` start in the file name) before the live file.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wiredraw.plugins.net_zeek.lines import (
    CHUNK,
    EMPTY_ID,
    POLL_BYTES,
    Message,
    _identify,
    _Incomplete,
    _LineReader,
    _matches,
    log_message,
)
from wiredraw.plugins.net_zeek.parser import LogStream, path_from_filename

CTIME_SLACK = 2.0  # file timestamps come from a coarser clock than time.time(); be generous
DONE_KEPT = 64  # finished file identities remembered per log type
NOT_LOGS = frozenset({"stderr", "stdout"})  # zeekctl's own files beside the logs
DATE_DIR_RE = re.compile(r"^\d{4}-\d\d-\d\d$")
_ARCHIVE_TIME_RE = re.compile(r"^[^.]+\.(\d\d:\d\d:\d\d)-\d\d:\d\d:\d\d\b")
_SPOOL_TIME_RE = re.compile(r"^[^.]+\.(\d{4}-\d\d-\d\d)-(\d\d)-(\d\d)-(\d\d)\b")


@dataclass
class _Rotated:
    """A rotated file of one log type: not yet archived (in the log directory) or in a date directory."""

    path: Path
    key: str  # sorts in rotation order: "YYYY-MM-DD HH:MM:SS ..."
    ctime: float
    stamp: tuple[int, int, int]  # device, inode, ctime in ns: inode numbers are reused, with a new ctime


def _rotation_key(path: Path, in_date_dir: bool, mtime: float) -> str:
    if in_date_dir:
        m = _ARCHIVE_TIME_RE.match(path.name)
        if m:
            return f"{path.parent.name} {m.group(1)} {path.name}"
    else:
        m = _SPOOL_TIME_RE.match(path.name)
        if m:
            return f"{m.group(1)} {m.group(2)}:{m.group(3)}:{m.group(4)} {path.name}"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime)) + " ~" + path.name


def _log_name(file_name: str, live: bool) -> str | None:
    """The log type of a file beside the live logs or in a date directory, or None if it is not a log."""
    if live:
        if not file_name.endswith(".log") or file_name.count(".") != 1:
            return None
    elif not (file_name.endswith(".log") or file_name.endswith(".log.gz")) or file_name.count(".") < 2:
        return None
    name = path_from_filename(file_name)
    if not name or name in NOT_LOGS or name.endswith("-summary") or name.startswith("."):
        return None
    return name


class _Follower:
    """One log type (``conn``) of a live directory: the file being read, then rotated files, then the live one."""

    def __init__(self, src: LogDirSource, name: str, watermark: float):
        self.src, self.name = src, name
        self.live_path = src.logdir / f"{name}.log"
        self.watermark = watermark
        self.done: deque[str] = deque(maxlen=DONE_KEPT)
        self.backfill: str | None = None  # while backfilling: key of the last archive started
        self.reader: _LineReader | None = None
        self.stream: LogStream | None = None
        self.live = False  # the reader follows the live file (not a rotated one)
        self.filter = False  # drop records before src.since (files that existed at first start)
        self.rotated = False  # the live file was renamed away: read to its end, then move on
        self.wanted: dict[str, Any] | None = None  # a restored position not yet found
        self.wait_since: float | None = None  # when the current wait (missing or unreadable file) began
        self.retry_at = 0.0

    # -- reading -----------------------------------------------------------------------------------------
    def step(self, out: list[Message], limit: int, budget: list[int]) -> None:
        """Append up to ``limit`` messages to ``out``, reading at most ``budget[0]`` bytes (decremented)."""
        goal = len(out) + limit
        src = self.src
        while len(out) < goal and budget[0] > 0:
            reader = self.reader
            if reader is None:
                if not self._advance():
                    return
                continue
            assert self.stream is not None
            line = reader.next_line()
            if line is None:
                try:
                    n = reader.fill(min(CHUNK, budget[0]))
                except _Incomplete:
                    self._incomplete()
                    return
                budget[0] -= n
                if n:
                    continue
                if not self.live or self.rotated:
                    self._finish(out)
                    continue
                if self._check_live():
                    continue
                return
            rec = self.stream.feed(line, reader.lineno)
            if rec is None or (self.filter and rec.ts is not None and src.since is not None and rec.ts < src.since):
                continue
            out.append(log_message(rec))
            src.records += 1

    def _check_live(self) -> bool:
        """At the end of the live file: True when it was rotated away or truncated (so reading goes on)."""
        reader = self.reader
        assert reader is not None
        try:
            st = os.stat(self.live_path)
            fst = os.fstat(reader.raw.fileno())
        except FileNotFoundError:
            self.rotated = True
            return True
        except OSError:
            return False
        if (st.st_dev, st.st_ino) != (fst.st_dev, fst.st_ino):
            self.rotated = True  # one more read to its end (nothing more is written after a rename), then next
            return True
        if fst.st_size < reader.read_pos:
            self.src.truncated += 1  # copy-truncate rotation: what was cut is gone; start over on the new content
            self._close_reader()
            return True
        return False

    def _incomplete(self) -> None:
        """A .gz that ends early: retry later from the same offset (it may still be being written)."""
        reader = self.reader
        assert reader is not None
        now = self.src.clock()
        if self.wait_since is None:
            self.wait_since = now
        if now - self.wait_since > self.src.grace:
            self.src.unreadable_files += 1
            self.wait_since = None
            self._finish([])
            return
        offset, lineno, ident, header = reader.offset, reader.lineno, reader.identity, self._header()
        reader.close()
        self.reader = None
        self.wanted = {"path": str(reader.path), "off": offset, "line": lineno, "id": list(ident) if ident else None,
                       "hdr": header, "filter": self.filter, "live": False}
        self.retry_at = now + self.src.retry_interval

    def _header(self) -> list[str]:
        return [h.decode("latin-1") for h in self.stream.header_state()] if self.stream is not None else []

    def _finish(self, out: list[Message]) -> None:
        """The current file is read to its end (a rotated or archived file): last line, identity, close."""
        reader, stream = self.reader, self.stream
        assert reader is not None and stream is not None
        last = reader.rest()
        if last is not None:
            rec = stream.feed(last, reader.lineno)
            if rec is None:
                stream.mark_truncated(reader.lineno)
            elif not (self.filter and rec.ts is not None and self.src.since is not None and rec.ts < self.src.since):
                out.append(log_message(rec))  # a last line without newline that parses is a record all the same
                self.src.records += 1
        ident = reader.final_identity()
        if ident is not None:
            self.done.append(ident[0])
        self._close_reader()
        self.wait_since = None

    def _close_reader(self) -> None:
        if self.reader is not None:
            self.src.bad_lines += self.reader.dropped_lines
            self.reader.close()
        if self.stream is not None:
            self.src.bad_lines += self.stream.bad_count
        self.reader, self.stream, self.live, self.rotated, self.filter = None, None, False, False, False

    def _open(self, path: Path, *, live: bool, filter_: bool, offset: int = 0, lineno: int = 0,
              ident: tuple[str, int] | None = None, header: Iterable[bytes] = ()) -> bool:
        try:
            self.reader = _LineReader(path, offset, lineno, ident)
        except OSError:
            return False
        self.stream = LogStream.resume(str(path), list(header), self.name) if header else LogStream(str(path),
                                                                                                     self.name)
        self.live, self.filter, self.rotated = live, filter_, False
        self.src.files += 1
        return True

    # -- what to read next -------------------------------------------------------------------------------
    def _advance(self) -> bool:
        """Open the next file to read; False when there is none now."""
        src = self.src
        now = src.clock()
        if now < self.retry_at:
            return False
        if self.wanted is not None:
            if self._resume():
                return True
            if self.wanted is not None:
                self.retry_at = now + src.retry_interval
                return False
        if self.backfill is not None:
            for cand in src.backfill_list(self.name):
                if cand.key <= self.backfill:
                    continue
                self.backfill = cand.key
                ident = src.identity(cand)
                if ident is not None and ident[0] in self.done:
                    continue
                if self._open(cand.path, live=False, filter_=True, ident=ident):
                    return True
            self.backfill = None
        pending, unknown = self._pending_rotated()
        if unknown and (self.wait_since is None or now - self.wait_since <= src.grace):
            if self.wait_since is None:
                self.wait_since = now
            self.retry_at = now + src.retry_interval
            return False
        if unknown:
            src.unreadable_files += len(unknown)
            src.ignore.update(c.stamp for c in unknown)
        self.wait_since = None
        for cand in pending:
            if self._open(cand.path, live=False, filter_=False, ident=src.identity(cand)):
                return True
        if not self.live_path.exists():
            self.retry_at = now + src.retry_interval
            return False
        ident = _identify(self.live_path, final_at_eof=False)
        if ident is not None and ident[0] in self.done:
            self.retry_at = now + src.retry_interval
            return False
        # caught up: anything rotated from now on is newer than the watermark
        self.watermark = time.time() - CTIME_SLACK
        return self._open(self.live_path, live=True, filter_=src.first_start and src.since is not None)

    def _pending_rotated(self) -> tuple[list[_Rotated], list[_Rotated]]:
        """Rotated files newer than the watermark not yet read (in rotation order), and those not identifiable."""
        pending, unknown = [], []
        live_ident = _identify(self.live_path, final_at_eof=False) if self.live_path.exists() else None
        for cand in self.src.rotated(self.name):
            if cand.ctime < self.watermark or cand.stamp in self.src.ignore:
                continue
            ident = self.src.identity(cand)
            if ident is None:
                unknown.append(cand)
            elif ident[0] != EMPTY_ID and ident[0] not in self.done and (live_ident is None
                                                                         or ident[0] != live_ident[0]):
                pending.append(cand)
        # the same file can show twice for a moment (not yet archived, and being compressed): read it once
        seen: set[str] = set()
        unique = []
        for cand in pending:
            ident = self.src.identity(cand)
            assert ident is not None
            if ident[0] not in seen:
                seen.add(ident[0])
                unique.append(cand)
        return unique, unknown

    def _resume(self) -> bool:
        """Find the file of a restored position (live, rotated, or being backfilled) and open it there."""
        w = self.wanted
        assert w is not None
        src = self.src
        header = [h.encode("latin-1") for h in w.get("hdr") or []]
        ident = tuple(w["id"]) if w.get("id") else None
        if ident is None:
            self.wanted = None  # nothing was returned from that file: start it over
            return False
        ident_t = (str(ident[0]), int(ident[1]))
        places: list[tuple[Path, bool]] = []
        if w.get("path"):
            places.append((Path(w["path"]), False))
        places.append((self.live_path, True))
        places += [(c.path, False) for c in src.rotated(self.name)]
        if self.backfill is not None:
            places += [(c.path, False) for c in src.backfill_list(self.name) if c.key >= self.backfill]
        for path, live in places:
            if path.exists() and _matches(path, ident_t):
                if self._open(path, live=live, filter_=bool(w.get("filter")), offset=int(w["off"]),
                              lineno=int(w.get("line", 0)), ident=ident_t, header=header):
                    self.wanted = None
                    self.wait_since = None
                    return True
        now = src.clock()
        if self.wait_since is None:
            self.wait_since = now
        elif now - self.wait_since > src.grace:
            src.lost_files += 1  # deleted while the probe was down: read what comes after it
            self.done.append(ident_t[0])
            self.wanted = None
            self.wait_since = None
        return False

    # -- state -------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        current: dict[str, Any] | None = None
        reader = self.reader
        if reader is not None and reader.identity is not None:
            current = {"id": list(reader.identity), "off": reader.offset, "line": reader.lineno,
                       "hdr": self._header(), "filter": self.filter}
        elif self.wanted is not None:
            current = {k: v for k, v in self.wanted.items() if k != "path"}
        return {"wm": self.watermark, "backfill": self.backfill, "done": list(self.done), "file": current}

    def restore(self, state: dict[str, Any]) -> None:
        self.watermark = float(state.get("wm", self.watermark))
        self.backfill = state.get("backfill")
        self.done.extend(str(d) for d in state.get("done") or [])
        self.wanted = state.get("file")

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


class LogDirSource:
    """Follows a live Zeek log directory as zeekctl writes it (see the module doc for how files are tracked).

    ``logs``: only these log types (``{"conn", "dns"}``); all when None. ``since`` (epoch seconds): on a first
    start (no resume token), first read the rotated archives in the sibling date directories, oldest first,
    keeping records with ``ts >= since`` (also in the live files found at that start); without it, a first start
    reads the live files from their beginning and no archive. ``archive_dir``: where the date directories are
    (default: the log directory's parent, as given, symlinks not resolved: ``logs/current`` -> ``logs``).
    ``clock`` paces retries; ``grace`` is how long a resumed file that cannot be found, or a rotated archive
    that cannot be read yet, is waited for before it is counted lost and skipped.
    """

    def __init__(self, logdir: Path, logs: set[str] | None = None, since: float | None = None,
                 clock: Callable[[], float] = time.time, *, archive_dir: Path | None = None,
                 scan_interval: float = 1.0, retry_interval: float = 1.0, grace: float = 60.0):
        self.logdir = Path(logdir).absolute()
        self.archive_dir = Path(archive_dir).absolute() if archive_dir is not None else self.logdir.parent
        self.logs = set(logs) if logs else None
        self.since = since
        self.clock = clock
        self.scan_interval, self.retry_interval, self.grace = scan_interval, retry_interval, grace
        self.first_start = True
        self.watermark = time.time() - CTIME_SLACK  # for log types not seen yet
        self.followers: dict[str, _Follower] = {}
        self.records = self.bad_lines = self.files = 0
        self.lost_files = self.unreadable_files = self.truncated = 0
        self.ignore: set[tuple[int, int, int]] = set()  # rotated files never to read (bounded: see _baseline)
        self._ids: dict[tuple[int, int, int], tuple[str, int]] = {}
        self._rotated_cache: dict[str, list[_Rotated]] | None = None
        self._backfill_cache: dict[str, list[_Rotated]] | None = None
        self._next_scan = 0.0
        self._started = False
        self._baseline = self._rotated_before_start() if since is None else {}
        self._rr = 0

    # -- Source protocol ---------------------------------------------------------------------------------
    def poll(self, max_messages: int) -> list[Message]:
        self._rotated_cache = self._backfill_cache = None
        if not self._started:
            self._start()
        now = self.clock()
        if now >= self._next_scan:
            self._scan()
            self._next_scan = now + self.scan_interval
        out: list[Message] = []
        budget = [POLL_BYTES]
        followers = list(self.followers.values())
        if followers:
            self._rr = (self._rr + 1) % len(followers)
            followers = followers[self._rr:] + followers[: self._rr]
        # a fair share each first, then whatever is left to whoever has more
        for i, f in enumerate(followers):
            share = -(-(max_messages - len(out)) // (len(followers) - i))
            f.step(out, share, budget)
        for f in followers:
            if len(out) >= max_messages or budget[0] <= 0:
                break
            f.step(out, max_messages - len(out), budget)
        return out

    def finished(self) -> bool:
        return False

    def waiting(self) -> str | None:
        """What the probe waits for on this source's account (the runner says it, see wiredraw.probes.runner):
        while no log file is open, the logs to appear (or a resumed file to be found again); None while one is
        being followed, even if nothing is written to it (that is following, not waiting)."""
        followers = self.followers.values()
        if any(f.reader is not None for f in followers):
            return None
        if not self.logdir.is_dir():
            return f"the log directory {self.logdir} (not there now)"
        lost = sorted(f.name for f in followers if f.wanted is not None)
        if lost:
            return (f"the {', '.join(lost)} file being read when the probe stopped, to be found again (up to "
                    f"{self.grace:.0f} s, then it counts as lost)")
        names = ", ".join(f"{n}.log" for n in sorted(self.logs)) if self.logs else "Zeek logs (*.log)"
        return f"{names} to appear in {self.logdir}"

    def state(self) -> Any:
        return {"v": 1, "wm": self.watermark, "since": self.since,
                "logs": {name: f.state() for name, f in sorted(self.followers.items())}}

    def restore(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("v") != 1:
            return
        self.first_start = False
        self._baseline = {}
        self.ignore.clear()
        self.watermark = float(state.get("wm", self.watermark))
        self.since = state.get("since", self.since)
        for name, fstate in (state.get("logs") or {}).items():
            if self._wanted(name) and isinstance(fstate, dict):
                f = self.followers.get(name) or _Follower(self, name, self.watermark)
                f.restore(fstate)
                self.followers[name] = f

    def close(self) -> None:
        for f in self.followers.values():
            f.close()

    def summary(self) -> dict[str, Any]:
        bad = self.bad_lines + sum((f.stream.bad_count if f.stream else 0) + (f.reader.dropped_lines if f.reader
                                                                              else 0)
                                   for f in self.followers.values())
        return {"records": self.records, "bad_lines": bad, "files": self.files, "lost_files": self.lost_files,
                "unreadable_files": self.unreadable_files}

    # -- discovery ---------------------------------------------------------------------------------------
    def _wanted(self, name: str) -> bool:
        return self.logs is None or name in self.logs

    def _start(self) -> None:
        self._started = True
        if not self.first_start:
            # log types created and rotated away while the probe was down
            for name in self._rotated_index():
                if self._wanted(name) and name not in self.followers:
                    self.followers[name] = _Follower(self, name, self.watermark)
            return
        if self.since is not None:
            for name in self._backfill_index():
                if self._wanted(name):
                    self.followers.setdefault(name, _Follower(self, name, self.watermark)).backfill = ""
        else:
            for name, idents in self._baseline.items():
                f = self.followers.setdefault(name, _Follower(self, name, self.watermark))
                f.done.extend(idents)
        self._baseline = {}

    def _rotated_before_start(self) -> dict[str, list[str]]:
        """Files rotated in the moments before this source was made: without ``since``, not ours to read (they
        are newer than the watermark, so would be taken for files rotated while running)."""
        baseline: dict[str, list[str]] = {}
        for name, cands in self._rotated_index().items():
            for cand in cands:
                if cand.ctime >= self.watermark:
                    ident = self.identity(cand)
                    if ident is not None:
                        baseline.setdefault(name, []).append(ident[0])
                    else:
                        self.ignore.add(cand.stamp)
        self._rotated_cache = None
        return baseline

    def _scan(self) -> None:
        """New log types in the live directory get a follower (existing ones notice rotation themselves)."""
        try:
            names = os.listdir(self.logdir)
        except OSError:
            return
        for file_name in names:
            name = _log_name(file_name, live=True)
            if name is not None and self._wanted(name) and name not in self.followers:
                self.followers[name] = _Follower(self, name, self.watermark)
        self.watermark = time.time() - CTIME_SLACK

    def identity(self, cand: _Rotated) -> tuple[str, int] | None:
        ident = self._ids.get(cand.stamp)
        if ident is None:
            ident = _identify(cand.path)
            if ident is not None:
                if len(self._ids) > 4096:
                    self._ids.clear()
                self._ids[cand.stamp] = ident
        return ident

    def rotated(self, name: str) -> list[_Rotated]:
        return self._rotated_index().get(name, [])

    def backfill_list(self, name: str) -> list[_Rotated]:
        return self._backfill_index().get(name, [])

    def _rotated_index(self) -> dict[str, list[_Rotated]]:
        """Rotated files (not yet archived, and in date directories changed since the oldest watermark)."""
        if self._rotated_cache is None:
            low = min([self.watermark] + [f.watermark for f in self.followers.values()])
            index: dict[str, list[_Rotated]] = {}
            self._list_dir(self.logdir, False, None, index)
            for d in self._date_dirs():
                try:
                    if d.stat().st_mtime < low:
                        continue
                except OSError:
                    continue
                self._list_dir(d, True, low, index)
            for cands in index.values():
                cands.sort(key=lambda c: c.key)
            self._rotated_cache = index
        return self._rotated_cache

    def _backfill_index(self) -> dict[str, list[_Rotated]]:
        """Everything rotated on or after the day before ``since`` (time zones), to be filtered by ts."""
        if self._backfill_cache is None:
            index: dict[str, list[_Rotated]] = {}
            if self.since is not None:
                first_day = time.strftime("%Y-%m-%d", time.localtime(self.since - 86400))
                for d in self._date_dirs():
                    if d.name >= first_day:
                        self._list_dir(d, True, None, index)
                self._list_dir(self.logdir, False, None, index)
                for cands in index.values():
                    cands.sort(key=lambda c: c.key)
            self._backfill_cache = index
        return self._backfill_cache

    def _date_dirs(self) -> list[Path]:
        try:
            return sorted(p for p in self.archive_dir.iterdir() if DATE_DIR_RE.match(p.name) and p.is_dir())
        except OSError:
            return []

    def _list_dir(self, d: Path, in_date_dir: bool, low: float | None, index: dict[str, list[_Rotated]]) -> None:
        try:
            entries = list(os.scandir(d))
        except OSError:
            return
        for e in entries:
            name = _log_name(e.name, live=False)
            if name is None or not self._wanted(name):
                continue
            try:
                st = e.stat()
            except OSError:
                continue
            if low is not None and st.st_ctime < low:
                continue
            index.setdefault(name, []).append(
                _Rotated(Path(e.path), _rotation_key(Path(e.path), in_date_dir, st.st_mtime), st.st_ctime,
                         (st.st_dev, st.st_ino, st.st_ctime_ns)))
