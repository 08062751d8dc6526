"""net_zeek's replay source: recorded Zeek logs (TSV or JSON, plain or .gz) in event-time order across files.

Records are read with :class:`~wiredraw.plugins.net_zeek.lines._LineReader`.

A resume token belongs to its set of files, each named by its content (:func:`replay_identity`), not by the
path given: the same files resume, wherever they are now and in whatever order they are given (a ``.gz`` copy
of a plain log too, the hash being over decompressed bytes); another set does not (``restore`` raises
:class:`OtherFiles`, and the probe starts fresh).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import heapq
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wiredraw.plugins.net_zeek.lines import CHUNK, ID_MAX, POLL_BYTES, Message, _Incomplete, _LineReader, _open_binary
from wiredraw.plugins.net_zeek.parser import LogStream, path_from_filename
from wiredraw.plugins.net_zeek.schema import record_message

# Per-file reorder buffer. Zeek writes a connection when it ends (or when it has been idle for the TCP/UDP
# inactivity timeout, 5 minutes for TCP), so ts can run minutes behind the file's order: in the real hourly logs
# of shared/data, 24 % of conn.log records are more than 60 s late, 0.5 % more than 300 s, 0.04 % more than 900 s.
REORDER_SECONDS = 360.0  # event-time window: covers the 5-minute inactivity timeout and then some
REORDER_MAX = 10000  # most records held per file (bounded memory on a busy sensor; then the window shrinks)
_NEG_INF = float("-inf")


class OtherFiles(ValueError):
    """A resume token written by a replay of other files."""


def replay_identity(path: Path) -> str:
    """What names a recorded file in a replay's resume token: the SHA-1 of its first :data:`ID_MAX` bytes
    (decompressed; the whole file when shorter) and how many those were, ``"<hex>:<n>"``.

    Like the live source's :func:`~wiredraw.plugins.net_zeek.lines.identity_of` it is over content, so a moved or
    compressed copy is the same file; unlike it, it does not stop at the header's ``#open`` line, so two recorded
    files that share a header (cut from one log, or Zeek test baselines) still differ by their first records.
    """
    digest = hashlib.sha1()
    n = 0
    try:
        stream, raw = _open_binary(path)
    except OSError as exc:
        raise OtherFiles(f"cannot read {path}: {exc}") from exc
    try:
        while n < ID_MAX:
            chunk = stream.read(ID_MAX - n)
            if not chunk:
                break
            digest.update(chunk)
            n += len(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
        pass  # a damaged .gz: named by what it holds
    finally:
        stream.close()
        if raw is not stream:
            raw.close()
    return f"{digest.hexdigest()}:{n}"


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
    identity: str | None = None  # replay_identity(path), once asked for
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

    Resume token, per file: its identity (:func:`replay_identity`), the byte offset and line number of the
    first record still held (or of the read position when none is), the header in force there, and a bitmap of
    the lines after it whose records were already returned (they are skipped when read again). A token for
    another set of files is refused (:class:`OtherFiles`, a ValueError) before anything changes.
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
            files.append({"id": self._identity(f), "path": str(f.path), "off": offset, "line": before,
                          "hdr": [h.decode("latin-1") for h in header],
                          "skip": base64.b64encode(bytes(bits)).decode(), "done": f.eof and not f.heap})
        return {"v": 2, "files": files, "t_first": self.t_first, "t_last": self.t_last}

    def restore(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("v") not in (1, 2):
            return
        positions = [self._position(s) for s in self._saved_for(state)]  # all checked before anything changes
        for f, (done, header, offset, before, skip) in zip(self.files, positions, strict=True):
            self._close_file(f)
            f.heap.clear()
            f.order.clear()
            f.max_ts = float("-inf")
            f.eof = done
            f.skip = skip
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
    def _identity(self, f: _ReplayFile) -> str:
        if f.identity is None:
            f.identity = replay_identity(f.path)
        return f.identity

    def _saved_for(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """The token's entry for each of this replay's files, in its order; OtherFiles unless they are the same set
        (version 1 tokens, from before files had identities, by the paths given)."""
        saved = state.get("files")
        if not isinstance(saved, list) or not all(isinstance(s, dict) for s in saved):
            raise OtherFiles("resume state is unreadable")
        if state.get("v") == 1:
            if [s.get("path") for s in saved] != [str(f.path) for f in self.files]:
                raise OtherFiles("resume state is for another set of files")
            return saved
        by_id: dict[Any, list[dict[str, Any]]] = {}
        for s in saved:
            by_id.setdefault(s.get("id"), []).append(s)
        mine = []
        for f in self.files:
            same = by_id.get(self._identity(f))
            if not same:
                raise OtherFiles("resume state is for another set of files")
            mine.append(same.pop(0))
        if any(by_id.values()):
            raise OtherFiles("resume state is for another set of files")
        return mine

    @staticmethod
    def _position(s: dict[str, Any]) -> tuple[bool, list[bytes], int, int, set[int]]:
        """(done, header, byte offset, lines before it, lines to skip) of one file's entry in a token."""
        try:
            header = [h.encode("latin-1") for h in s.get("hdr") or []]
            offset, before = int(s.get("off", 0)), int(s.get("line", 0))
            bits = base64.b64decode(s.get("skip") or "")
        except (TypeError, ValueError, AttributeError) as exc:
            raise OtherFiles(f"resume state is unreadable ({exc})") from exc
        skip = {before + 1 + i * 8 + b for i, byte in enumerate(bits) for b in range(8) if byte >> b & 1}
        return bool(s.get("done")), header, offset, before, skip

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
