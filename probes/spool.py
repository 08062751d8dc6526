"""The probe's bounded on-disk spool: every batch a TCP probe produces is written here before it is
sent, and removed only when the server acknowledges it, so neither a server nor a network outage
(nor a probe restart) loses anything.

One file per batch, named by sequence number, written atomically (temp file, fsync, rename). With a
batch of hundreds of records the fsync is cheap per record. When the spool is full the runner stops
reading its source (back-pressure) rather than dropping anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack


class SpoolError(Exception):
    pass


@dataclass(frozen=True)
class SpoolEntry:
    seq: int
    module_id: int
    msg_type: str
    body: bytes
    source_state: Any
    records: int


class Spool:
    def __init__(self, directory: Path, max_bytes: int = 256 << 20, fsync: bool = True):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.max_bytes, self.fsync = max_bytes, fsync
        self._sizes: dict[int, int] = {}
        self._records: dict[int, int] = {}
        for path in self.dir.glob("*.batch"):
            try:
                seq, records = (int(x) for x in path.stem.split("."))
                self._sizes[seq], self._records[seq] = path.stat().st_size, records
            except (ValueError, OSError):
                continue
        for tmp in self.dir.glob("*.tmp"):  # a crash mid-write: the batch was never handed out
            tmp.unlink(missing_ok=True)

    def _path(self, seq: int) -> Path:
        # the record count is in the name, so an ack never has to read the file back
        return self.dir / f"{seq:020d}.{self._records.get(seq, 0)}.batch"

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    def __len__(self) -> int:
        return len(self._sizes)

    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def seqs(self) -> list[int]:
        return sorted(self._sizes)

    def append(self, entry: SpoolEntry) -> None:
        data = msgpack.packb([entry.seq, entry.module_id, entry.msg_type, entry.body, entry.source_state,
                              entry.records], use_bin_type=True)
        self._records[entry.seq] = entry.records
        path = self._path(entry.seq)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._sizes[entry.seq] = len(data)

    def read(self, seq: int) -> SpoolEntry:
        try:
            raw = msgpack.unpackb(self._path(seq).read_bytes(), raw=False)
            return SpoolEntry(*raw)
        except (OSError, ValueError, TypeError) as exc:
            raise SpoolError(f"spool entry {seq} is unreadable: {exc}") from exc

    def entries(self, after: int = 0) -> Iterator[SpoolEntry]:
        for seq in self.seqs():
            if seq > after:
                yield self.read(seq)

    def last(self) -> SpoolEntry | None:
        seqs = self.seqs()
        return self.read(seqs[-1]) if seqs else None

    def remove(self, seq: int) -> None:
        if seq in self._sizes:
            self._path(seq).unlink(missing_ok=True)
            del self._sizes[seq], self._records[seq]

    def remove_upto(self, seq: int) -> int:
        """Drop every entry with a sequence number ≤ seq (a cumulative ack). Returns records dropped."""
        gone = [s for s in self._sizes if s <= seq]
        records = sum(self._records[s] for s in gone)
        for s in gone:
            self.remove(s)
        return records

    @property
    def records(self) -> int:
        return sum(self._records.values())
