"""net_zeek probe sources: follow a live Zeek log directory, or replay recorded logs in event-time order.

Both produce ``("log", {"path", "ts", "uid", "rec"})`` messages (``uid`` left out when the record has none), one
per Zeek record, parsed by :class:`~wiredraw.plugins.net_zeek.parser.LogStream` from complete lines only.

File identity (:func:`identity_of`)
-----------------------------------
A resume token must find "the file I was reading" again after zeekctl has moved it, compressed it into a date
directory and created a new one under the old name, so neither the name nor the inode will do. A file is named
by the SHA-1 of its first bytes, up to the end of its *identifying line*: the TSV ``#open`` meta line (Zeek
writes the whole header, ``#open`` included, when it opens the file, and ``#open`` carries the open time), or
for a file with no such line (JSON logs, headerless TSV) its first data line (its ``ts`` and ``uid`` make it
unique). The hashed prefix is at most :data:`ID_MAX` bytes. The hash is over decompressed bytes, so a log and
its ``.gz`` archive have the same identity, and the prefix length is kept with the hash, so matching a
candidate reads only that many bytes.

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

import base64
import gzip
import hashlib
import heapq
import os
import re
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from wiredraw.core.timeparse import parse_time as _parse_time
from wiredraw.plugins.net_zeek.parser import LogStream, ZeekRecord, path_from_filename
from wiredraw.plugins.net_zeek.schema import record_message

Message = tuple[str, dict[str, Any]]

ID_MAX = 64 * 1024  # most bytes hashed for a file's identity
MAX_LINE = 16 * 1024 * 1024  # a longer line is dropped (counted bad) instead of buffered
CHUNK = 256 * 1024  # bytes read per read call
POLL_BYTES = 8 * 1024 * 1024  # most bytes read (or skipped in a .gz) per poll, for all files together
CTIME_SLACK = 2.0  # file timestamps come from a coarser clock than time.time(); be generous
DONE_KEPT = 64  # finished file identities remembered per log type
NOT_LOGS = frozenset({"stderr", "stdout"})  # zeekctl's own files beside the logs
DATE_DIR_RE = re.compile(r"^\d{4}-\d\d-\d\d$")
_ARCHIVE_TIME_RE = re.compile(r"^[^.]+\.(\d\d:\d\d:\d\d)-\d\d:\d\d:\d\d\b")
_SPOOL_TIME_RE = re.compile(r"^[^.]+\.(\d{4}-\d\d-\d\d)-(\d\d)-(\d\d)-(\d\d)\b")
_PREFIX_RE = re.compile(rb"(\S{1,32}?)separator[ \t]")


def parse_time(text: str) -> float:
    """``--since``: epoch seconds or ISO-8601, UTC unless it names a zone (see :mod:`wiredraw.core.timeparse`)."""
    return _parse_time(text, "--since")


def log_message(rec: ZeekRecord) -> Message:
    """The wire message of one record (spec/modules/net_zeek.toml, message ``log``): ``rec`` packed once."""
    return ("log", record_message(rec))


EMPTY_ID = "empty"  # identity of a finished file with no line at all: nothing to read, nothing to match


def identity_of(data: bytes, final: bool) -> tuple[str, int] | None:
    """``(sha1 hex, prefix length)`` naming the file whose first bytes are ``data`` (see the module doc).

    None while ``data`` does not yet reach the end of the identifying line (a file still being written);
    ``final`` says that ``data`` is the whole file.
    """
    m = _PREFIX_RE.match(data)
    prefix = m.group(1) if m else b"#"
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos, ID_MAX)
        end = nl + 1 if nl >= 0 else (len(data) if final or len(data) >= ID_MAX else -1)
        if end < 0:
            return None
        line = data[pos:end]
        pos = min(end, ID_MAX)
        if not line.startswith(prefix) or line.startswith(prefix + b"open") or pos >= ID_MAX:
            return hashlib.sha1(data[:pos]).hexdigest(), pos
    if final:
        return (hashlib.sha1(data).hexdigest(), len(data)) if data else (EMPTY_ID, 0)
    return None


class _Incomplete(Exception):
    """A .gz archive that ends early: still being written, or damaged."""


def _open_binary(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(decompressed stream, raw file): gunzips by magic bytes; the raw file's position measures progress."""
    raw = open(path, "rb", buffering=0)  # noqa: SIM115 - owned by the reader
    try:
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            return gzip.GzipFile(fileobj=raw, mode="rb"), raw  # type: ignore[return-value]
        return raw, raw
    except Exception:
        raw.close()
        raise


class _LineReader:
    """Complete lines of one file, from a byte offset of its (decompressed) content, a bounded chunk at a time.

    ``offset`` is always just after the last line handed out (the resume point); bytes read past it wait in
    ``buf`` until their newline arrives. A ``.gz`` cannot seek: a start offset is reached by reading and
    discarding, a bounded amount per :meth:`fill`.
    """

    def __init__(self, path: Path, offset: int = 0, lineno: int = 0, identity: tuple[str, int] | None = None,
                 identify: bool = True):
        self.path = path
        self.stream, self.raw = _open_binary(path)
        self.gz = self.stream is not self.raw
        self.offset, self.lineno, self.identity = offset, lineno, identity
        self.buf = bytearray()
        self.read_pos = 0  # decompressed position of the next read
        self._scanned = 0  # bytes of buf already searched for a newline
        self.discarding = False  # inside an over-long line
        self.dropped_lines = 0
        # the first bytes, kept until they name the file (when it is read from its start)
        self.head = bytearray() if identify and offset == 0 and identity is None else None
        self.eof = False  # last fill found no more data
        if offset and not self.gz:
            self.stream.seek(offset)
            self.read_pos = offset

    @property
    def skipping(self) -> bool:
        return self.read_pos < self.offset

    def fill(self, limit: int = CHUNK) -> int:
        """Read (or, while reaching the start offset, skip) up to ``limit`` bytes; returns how many."""
        want = min(limit, self.offset - self.read_pos) if self.skipping else limit
        try:
            data = self.stream.read(want)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise _Incomplete(f"{self.path}: {exc}") from None
        n = len(data) if data else 0
        self.eof = n == 0
        if not n:
            return 0
        skipped = min(n, max(0, self.offset - self.read_pos))
        self.read_pos += n
        if skipped < n:
            self.buf += data[skipped:] if skipped else data
        if self.head is not None and self.identity is None:
            self.head += data[: ID_MAX - len(self.head)]
            self.identity = identity_of(bytes(self.head), final=False)
            if self.identity is not None:
                self.head = None
        return n

    def next_line(self) -> bytes | None:
        """The next complete line (without its newline), or None until more is read."""
        while True:
            nl = self.buf.find(b"\n", self._scanned)
            if nl < 0:
                self._scanned = len(self.buf)
                if len(self.buf) > MAX_LINE:
                    if not self.discarding:
                        self.dropped_lines += 1
                        self.discarding = True
                    self.offset += len(self.buf)
                    del self.buf[:]
                    self._scanned = 0
                return None
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 1]
            self._scanned = 0
            self.offset += nl + 1
            self.lineno += 1
            if self.discarding:
                self.discarding = False
                continue
            return line

    def rest(self) -> bytes | None:
        """At the end of a finished file: its last line when that has no newline (a cut-off file)."""
        if not self.buf or self.discarding:
            return None
        line = bytes(self.buf)
        self.offset += len(line)
        self.lineno += 1
        del self.buf[:]
        return line

    def final_identity(self) -> tuple[str, int] | None:
        if self.identity is None and self.head is not None:
            self.identity = identity_of(bytes(self.head), final=True)
        return self.identity

    def raw_pos(self) -> int:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            if self.raw is not self.stream:
                self.raw.close()


def _identify(path: Path, final_at_eof: bool = True) -> tuple[str, int] | None:
    """The identity of a file on disk; None while it is too short to tell (a live file whose header is being
    written, an archive being compressed). ``final_at_eof``: the file is complete (a rotated file)."""
    try:
        stream, raw = _open_binary(path)
    except OSError:
        return None
    try:
        data = b""
        try:
            while len(data) < ID_MAX:
                chunk = stream.read(ID_MAX - len(data))
                if not chunk:
                    return identity_of(data, final=final_at_eof)
                data += chunk
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
            return identity_of(data, final=False)
        return identity_of(data, final=False)
    finally:
        stream.close()
        raw.close()


def _matches(path: Path, ident: tuple[str, int]) -> bool:
    """Whether ``path``'s first bytes hash to ``ident``."""
    digest, n = ident
    try:
        stream, raw = _open_binary(path)
    except OSError:
        return False
    try:
        data = b""
        while len(data) < n:
            chunk = stream.read(n - len(data))
            if not chunk:
                break
            data += chunk
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
        return False
    finally:
        stream.close()
        raw.close()
    return len(data) == n and hashlib.sha1(data).hexdigest() == digest


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


# ---------------------------------------------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------------------------------------------

# Per-file reorder buffer. Zeek writes a connection when it ends (or when it has been idle for the TCP/UDP
# inactivity timeout, 5 minutes for TCP), so ts can run minutes behind the file's order: in the real hourly logs
# of shared/data, 24 % of conn.log records are more than 60 s late, 0.5 % more than 300 s, 0.04 % more than 900 s.
REORDER_SECONDS = 360.0  # event-time window: covers the 5-minute inactivity timeout and then some
REORDER_MAX = 10000  # most records held per file (bounded memory on a busy sensor; then the window shrinks)
_NEG_INF = float("-inf")


@dataclass(slots=True)
class _Held:
    """A record read but not yet returned, and where its line starts (the resume point while it is held)."""

    start: int  # byte offset of its line
    lineno: int  # its 1-based line number
    header: list[bytes]  # the header in force at its line
    message: Message
    released: bool = False


@dataclass
class _ReplayFile:
    path: Path
    size: int
    reader: _LineReader | None = None
    stream: LogStream | None = None
    heap: list[tuple[float, int, _Held]] = field(default_factory=list)  # held, by ts
    order: deque[_Held] = field(default_factory=deque)  # held (and returned after the first held), by line
    header: list[bytes] = field(default_factory=list)  # the header in force after the last line read
    max_ts: float = float("-inf")
    skip: set[int] = field(default_factory=set)  # lines whose records were returned before a restart
    eof: bool = False
    done_bytes: int = 0
    bad: int = 0

    def resume_point(self) -> tuple[int, int, list[bytes]]:
        """(byte offset, lines before it, header in force): where a restart reads again from."""
        if self.order:
            first = self.order[0]
            return first.start, first.lineno - 1, first.header
        if self.reader is not None:
            return self.reader.offset, self.reader.lineno, self.header
        return 0, 0, []


class ReplaySource:
    """Replays recorded Zeek logs (TSV or JSON, plain or .gz) in event-time order across files.

    Files are merged on ``ts`` (a k-way merge over the files' next records). Within one file Zeek logs are only
    nearly sorted (conn.log is written when a connection ends, its ``ts`` is when it began), so each file has a
    reorder buffer: a record is held until the file has shown a record ``reorder_seconds`` (default
    :data:`REORDER_SECONDS`) later, or the buffer holds ``reorder_max`` records, or the file ends. The output is
    in non-decreasing ``ts`` order except for records that come more than ``reorder_seconds`` late in their own
    file (long connections): those go out as soon as they are read, and are counted in ``summary()["late"]``.
    A record without ``ts`` takes its file's latest ``ts`` for ordering.

    Pacing: with ``speed`` a record with ``ts`` t is released once ``(t - t_first) / speed`` seconds of ``clock``
    have passed since the first record; ``fast`` (or ``speed=None``) returns records as fast as they are polled.

    Resume token, per file: the byte offset and line number of the first record still held (or of the read
    position when none is), the header in force there, and a bitmap of the lines after it whose records were
    already returned (they are skipped when read again).
    """

    def __init__(self, files: list[Path], speed: float | None = 1.0, fast: bool = False,
                 clock: Callable[[], float] = time.time, *, reorder_seconds: float = REORDER_SECONDS,
                 reorder_max: int = REORDER_MAX):
        if speed is not None and speed <= 0:
            raise ValueError(f"--speed {speed}: expected a number > 0")
        self.speed = None if fast else speed
        self.clock = clock
        self.window, self.hold_max = reorder_seconds, reorder_max
        self.files = [_ReplayFile(Path(p), Path(p).stat().st_size) for p in files]
        self.records = 0
        self.late = 0
        self._seq = 0
        self.t_first: float | None = None  # ts of the first record (pacing origin)
        self.t_last: float | None = None  # largest ts returned
        self._origin: float | None = None  # clock time at which t_first was (or counts as) released
        self._started_at: float | None = None
        self._finished_at: float | None = None
        # The k-way merge: (key of its first held record, file index) for each file whose first held record may
        # go; files that must be read first are in _pending (file order). Only the file a record was just taken
        # from changes, so a record costs O(log files), not a look at every file.
        self._merge: list[tuple[float, int]] = []
        self._pending: list[int] = list(range(len(self.files)))

    # -- Source protocol ---------------------------------------------------------------------------------
    def poll(self, max_messages: int) -> list[Message]:
        now = self.clock()
        if self._started_at is None:
            self._started_at = now
        out: list[Message] = []
        budget = [POLL_BYTES]
        files, merge, pending = self.files, self._merge, self._pending
        heappush, heappop, heapreplace = heapq.heappush, heapq.heappop, heapq.heapreplace
        speed, hold_max, window, stuck_at = self.speed, self.hold_max, self.window, 4 * self.hold_max
        append = out.append
        while len(out) < max_messages:
            while pending:
                i = pending[0]
                f = files[i]
                if not self._ready(f, budget):
                    return out  # this poll has read all it may; the next one goes on
                del pending[0]
                if f.heap:
                    heappush(merge, (f.heap[0][0], i))
            if not merge:
                if self._finished_at is None:
                    self._finished_at = now
                break
            key, i = merge[0]
            if key != _NEG_INF:
                if self.t_first is None:
                    self.t_first, self._origin = key, now
                if speed is not None and self._origin is not None:
                    if key - self.t_first > (now - self._origin) * speed:
                        break  # not due yet
            f = files[i]
            heap = f.heap
            held = heappop(heap)[2]
            if self.t_last is not None and key < self.t_last:
                self.late += 1
            elif key != _NEG_INF:
                self.t_last = key
            held.released = True
            order = f.order  # forget returned records at its front (the resume point moves past them)
            while order and order[0].released:
                order.popleft()
            if len(order) > stuck_at:
                self._unstick(f)
            append(held.message)
            self.records += 1
            # the file's next record: may it go (_releasable), or must the file be read first?
            if heap and (f.eof or len(heap) > hold_max or heap[0][0] <= f.max_ts - window):
                heapreplace(merge, (heap[0][0], i))
            else:
                heappop(merge)
                if not f.eof:
                    pending.append(i)
        return out

    def finished(self) -> bool:
        return all(f.eof and not f.heap for f in self.files)

    def state(self) -> Any:
        files = []
        for f in self.files:
            offset, before, header = f.resume_point()
            returned = [h.lineno - before - 1 for h in f.order if h.released]
            if f.skip:
                f.skip = {n for n in f.skip if n > before}
                returned += [n - before - 1 for n in f.skip]
            bits = bytearray((max(returned) >> 3) + 1 if returned else 0)
            for r in returned:
                bits[r >> 3] |= 1 << (r & 7)
            files.append({"path": str(f.path), "off": offset, "line": before,
                          "hdr": [h.decode("latin-1") for h in header],
                          "skip": base64.b64encode(bytes(bits)).decode(), "done": f.eof and not f.heap})
        return {"v": 1, "files": files, "t_first": self.t_first, "t_last": self.t_last}

    def restore(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("v") != 1:
            return
        saved = state.get("files") or []
        if [s.get("path") for s in saved] != [str(f.path) for f in self.files]:
            raise ValueError("the saved replay position is for other files: give the same --replay files, or "
                             "remove the probe's state directory to start over")
        for f, s in zip(self.files, saved, strict=True):
            self._close_file(f)
            f.heap.clear()
            f.order.clear()
            f.max_ts = float("-inf")
            f.eof = bool(s.get("done"))
            header = [h.encode("latin-1") for h in s.get("hdr") or []]
            offset, before = int(s.get("off", 0)), int(s.get("line", 0))
            bits = base64.b64decode(s.get("skip") or "")
            f.skip = {before + 1 + i * 8 + b for i, byte in enumerate(bits) for b in range(8) if byte >> b & 1}
            f.done_bytes = f.size if f.eof else 0
            if not f.eof:
                f.reader = _LineReader(f.path, offset, before, identify=False)
                f.stream = LogStream.resume(str(f.path), header, path_from_filename(f.path.name))
                f.header = header
        self._merge.clear()
        self._pending[:] = range(len(self.files))
        self.t_first, self.t_last = state.get("t_first"), state.get("t_last")
        if self.t_first is not None and self.t_last is not None:
            # go on at the event time reached, neither bursting nor pausing
            self._origin = self.clock() - (self.t_last - self.t_first) / (self.speed or 1.0)

    def close(self) -> None:
        for f in self.files:
            self._close_file(f)

    def summary(self) -> dict[str, Any]:
        end = self._finished_at if self._finished_at is not None else self.clock()
        seconds = end - self._started_at if self._started_at is not None else 0.0
        bad = sum(f.bad + (f.stream.bad_count if f.stream else 0) + (f.reader.dropped_lines if f.reader else 0)
                  for f in self.files)
        return {"records": self.records, "bad_lines": bad, "seconds": round(seconds, 3), "files": len(self.files),
                "late": self.late}

    def progress(self) -> tuple[int, int]:
        """(bytes read, bytes in all) of the files as stored (compressed for .gz): for a progress bar."""
        done = sum(f.size if f.eof else (f.reader.raw_pos() if f.reader else f.done_bytes) for f in self.files)
        return done, sum(f.size for f in self.files)

    # -- internals ---------------------------------------------------------------------------------------
    def _releasable(self, f: _ReplayFile) -> bool:
        return bool(f.heap) and (f.eof or len(f.heap) > self.hold_max or f.heap[0][0] <= f.max_ts - self.window)

    def _ready(self, f: _ReplayFile, budget: list[int]) -> bool:
        """Read ``f`` until its first held record may go or it ends; False when the poll's budget ran out."""
        while not f.eof and not self._releasable(f):
            if budget[0] <= 0:
                return False
            self._read_some(f, budget)
        return True

    def _read_some(self, f: _ReplayFile, budget: list[int]) -> None:
        if f.reader is None:
            f.reader = _LineReader(f.path, identify=False)
            f.stream = LogStream(str(f.path), path_from_filename(f.path.name))
        reader, stream = f.reader, f.stream
        assert stream is not None
        heap, hold_max, window = f.heap, self.hold_max, self.window
        next_line, take = reader.next_line, self._take
        # not self._releasable(f): f.eof is False until the end of the file is reached here
        while not (heap and (len(heap) > hold_max or heap[0][0] <= f.max_ts - window)):
            line = next_line()
            if line is not None:
                take(f, line, reader.offset - len(line) - 1, reader.lineno)
                continue
            try:
                n = reader.fill(min(CHUNK, max(budget[0], 1)))
            except _Incomplete:
                n = 0  # a damaged .gz: what it held is read, the rest counts as one bad line
                f.bad += 1
            budget[0] -= n
            if n:
                if budget[0] <= 0:
                    return
                continue
            last = reader.rest()
            if last is not None:
                records = stream.records
                take(f, last, reader.offset - len(last), reader.lineno)
                if stream.records == records:
                    stream.mark_truncated(reader.lineno)
            f.eof = True
            f.bad += stream.bad_count + reader.dropped_lines
            self._close_file(f)
            f.stream = None
            return

    def _take(self, f: _ReplayFile, line: bytes, start: int, lineno: int) -> None:
        stream = f.stream
        assert stream is not None
        rec = stream.feed(line, lineno)
        if rec is None:
            f.header = stream.header_state()  # a header line may have changed it
            return
        if lineno in f.skip:
            return  # returned before the restart (kept in the token until the resume point passes it)
        ts = rec.ts
        if ts is not None and ts > f.max_ts:
            f.max_ts = ts
        held = _Held(start, lineno, f.header, ("log", record_message(rec)))  # log_message(rec)
        f.order.append(held)
        self._seq += 1
        heapq.heappush(f.heap, (ts if ts is not None else f.max_ts, self._seq, held))

    def _unstick(self, f: _ReplayFile) -> None:
        """The first held record has waited for far too long (a ts far in the future): let it go next, out of
        order, so that the resume token's bitmap stays bounded."""
        stuck = f.order[0]
        for i, (_, seq, held) in enumerate(f.heap):
            if held is stuck:
                f.heap[i] = (_NEG_INF, seq, held)
                heapq.heapify(f.heap)
                break

    def _close_file(self, f: _ReplayFile) -> None:
        if f.reader is not None:
            f.done_bytes = f.reader.raw_pos()
            f.reader.close()
            f.reader = None
