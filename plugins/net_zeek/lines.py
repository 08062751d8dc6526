"""net_zeek's line reader: complete lines of a Zeek log (plain or .gz) from a byte offset, and file identity.

Both sources (:mod:`~wiredraw.plugins.net_zeek.logdir`, :mod:`~wiredraw.plugins.net_zeek.replay`) read through
:class:`_LineReader`; the live one also names files by :func:`identity_of`.

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
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from pathlib import Path
from typing import IO, Any

from wiredraw.plugins.net_zeek.parser import ZeekRecord
from wiredraw.plugins.net_zeek.schema import record_message

Message = tuple[str, dict[str, Any]]

ID_MAX = 64 * 1024  # most bytes hashed for a file's identity
MAX_LINE = 16 * 1024 * 1024  # a longer line is dropped (counted bad) instead of buffered
CHUNK = 256 * 1024  # bytes read per read call
POLL_BYTES = 8 * 1024 * 1024  # most bytes read (or skipped in a .gz) per poll, for all files together
_PREFIX_RE = re.compile(rb"(\S{1,32}?)separator[ \t]")


def log_message(rec: ZeekRecord) -> Message:
    """The wire message of one record (net_zeek.toml, message ``log``): ``rec`` packed once."""
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
