"""net_zeek's key schema on the server side: batches are applied inside Redis by ``ingest.lua``.

The key templates are declared in ``spec/modules/net_zeek.toml`` (``wiredraw plugins`` prints them);
this module hands each frame's packed body to the script unchanged, so the server does no per-record
Python work for Zeek records (notes/perf.md: the Python client, not Redis, is the bottleneck).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any, BinaryIO, ClassVar

import msgpack
from wiredraw.core.module import Collected, IngestContext, IngestCounts, WriteBatch
from wiredraw.plugins.net_zeek.parser import LogStream

DEFAULT_RETENTION = 7 * 86400  # seconds of history kept (keys' TTL)
INGEST_LUA = (files("wiredraw.plugins.net_zeek") / "ingest.lua").read_text(encoding="utf-8")

# Interval index geometry (must match ingest.lua): level k holds connections of duration <= 60 * 4^k.
INDEX_BASE = 60
INDEX_FACTOR = 4
INDEX_LEVELS = 13


def parse_ingest_reply(reply: Any) -> IngestCounts:
    """ingest.lua returns {records, new, repeats, rejected, reason, count, ...}."""
    records, new, repeats, _rejected = (int(x) for x in reply[:4])
    reasons: dict[str, int] = {}
    for i in range(4, len(reply) - 1, 2):
        why = reply[i].decode() if isinstance(reply[i], bytes) else str(reply[i])
        reasons[why] = int(reply[i + 1])
    return IngestCounts(records=records, written=new, repeats=repeats, rejected=reasons)


class ZeekSchema:
    """Mixin for the module object: the server-side write path."""

    scripts: ClassVar[dict[str, str]] = {"ingest": INGEST_LUA}
    retention: int = DEFAULT_RETENTION

    def ingest_body(self, ctx: IngestContext, body: bytes, batch: WriteBatch) -> bool:
        batch.script(self.script_sha("ingest"), ctx.probe_id, body, self.retention,  # type: ignore[attr-defined]
                     on_reply=parse_ingest_reply)
        return True


def index_buckets(t0: float, t1: float) -> list[tuple[int, int]]:
    """The (level, bucket) pairs that can hold a connection active somewhere in [t0, t1].

    A connection in level k lasts at most size_k = 60 * 4^k and sits in the bucket of its start, so it
    started in [t0 - size_k, t1]: for a point query (t0 == t1) that is at most 2 buckets per level,
    whatever the connections' lengths.
    """
    out: list[tuple[int, int]] = []
    size = INDEX_BASE
    for k in range(INDEX_LEVELS):
        first, last = int((t0 - size) // size), int(t1 // size)
        out.extend((k, b) for b in range(first, last + 1))
        size *= INDEX_FACTOR
    return out


def record_message(record: Any) -> dict[str, Any]:
    """The wire message for one parsed Zeek record (spec/modules/net_zeek.toml, message ``log``)."""
    msg: dict[str, Any] = {"path": record.path, "ts": record.ts, "rec": _PACKER.pack(record.fields)}
    if record.uid is not None:
        msg["uid"] = record.uid
    return msg


_PACKER = msgpack.Packer(use_bin_type=True)


class ZeekCollector:
    """Mixin for the module object: ``POST /logs/<type>`` (JSON lines, or TSV lines after their header)."""

    http_prefix: ClassVar[str | None] = "logs"

    def collect(self, name: str, body: BinaryIO) -> Collected:
        stream = LogStream(f"POST /logs/{name}", path_hint=name)
        out = Collected()
        lineno = 0
        for lineno, line in enumerate(body, start=1):
            record = stream.feed(line.rstrip(b"\r\n"), lineno)
            if record is not None:
                out.messages.append(("log", record_message(record)))
        out.bad_count = stream.bad_count
        out.bad = [(b.line, b.reason) for b in stream.bad]
        return out
