"""The probe's bounded on-disk spool: every batch a TCP probe produces is written here before it is
sent, and removed only when the server acknowledges it, so neither a server nor a network outage
(nor a probe restart) loses anything.

One file per batch, named by sequence number, written atomically (temp file, fsync, rename). With a
batch of hundreds of records the fsync is cheap per record. When the spool is full the runner stops
reading its source (back-pressure) rather than dropping anything.
"""

from __future__ import annotations

import bisect
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
        # Sequence numbers in order, and running totals: after a long outage the spool holds tens of
        # thousands of batches, and every ack must stay cheap (no sort, no scan).
        self._order = sorted(self._sizes)
        self._bytes = sum(self._sizes.values())
        self._total_records = sum(self._records.values())

    def _path(self, seq: int) -> Path:
        # the record count is in the name, so an ack never has to read the file back
        return self.dir / f"{seq:020d}.{self._records.get(seq, 0)}.batch"

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._order)

    def full(self) -> bool:
        return self._bytes >= self.max_bytes

    def seqs(self) -> list[int]:
        return list(self._order)

    def seqs_after(self, seq: int, limit: int) -> list[int]:
        """Up to ``limit`` spooled sequence numbers above ``seq``, in order."""
        start = bisect.bisect_right(self._order, seq)
        return self._order[start:start + max(0, limit)]

    def count_upto(self, seq: int) -> int:
        """How many spooled batches have a sequence number ≤ ``seq``."""
        return bisect.bisect_right(self._order, seq)

    def append(self, entry: SpoolEntry) -> None:
        data = msgpack.packb([entry.seq, entry.module_id, entry.msg_type, entry.body, entry.source_state,
                              entry.records], use_bin_type=True)
        if entry.seq in self._sizes:  # never happens in the runner; keep the totals right anyway
            self.remove(entry.seq)
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
        bisect.insort(self._order, entry.seq)
        self._sizes[entry.seq] = len(data)
        self._bytes += len(data)
        self._total_records += entry.records

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
            self._bytes -= self._sizes.pop(seq)
            self._total_records -= self._records.pop(seq)
            del self._order[bisect.bisect_left(self._order, seq)]

    def remove_upto(self, seq: int) -> int:
        """Drop every entry with a sequence number ≤ seq (a cumulative ack). Returns records dropped."""
        cut = bisect.bisect_right(self._order, seq)
        gone, self._order = self._order[:cut], self._order[cut:]
        records = 0
        for s in gone:
            self._path(s).unlink(missing_ok=True)
            self._bytes -= self._sizes.pop(s)
            n = self._records.pop(s)
            records += n
        self._total_records -= records
        return records

    @property
    def records(self) -> int:
        return self._total_records
