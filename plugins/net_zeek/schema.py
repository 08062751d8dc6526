"""net_zeek's key schema on the server side: batches are applied inside Redis by ``ingest.lua``.

The key templates are declared in ``net_zeek.toml`` beside this file (``wiredraw plugins`` prints them);
this module hands each frame's packed body to the script unchanged, so the server does no per-record
Python work for Zeek records (notes/perf.md: the Python client, not Redis, is the bottleneck).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, BinaryIO

import msgpack
from wiredraw.core.interval import DEFAULT_INDEX
from wiredraw.core.module import Body, Collected, Collector, IngestContext, IngestCounts, KeySchema, Script, WriteBatch
from wiredraw.plugins.net_zeek.parser import LogStream

DEFAULT_RETENTION = 7 * 86400  # seconds of history kept (keys' TTL)
# The interval index ``ix:{level}:{bucket}`` (core/interval.py: level k holds connections lasting at most
# 60 * 4^k s, each in the bucket of its start): ingest.lua writes it with these constants, query.py reads it.
INDEX = DEFAULT_INDEX
_INGEST_FILE = Script.from_package("wiredraw.plugins.net_zeek", "ingest.lua")
# The script as Redis runs it, the index constants filled in: its SHA-1 (Script.sha) is that of this text.
INGEST = replace(_INGEST_FILE, source=INDEX.fill_lua(_INGEST_FILE.source))
INGEST_LUA = INGEST.source


def parse_ingest_reply(reply: Any) -> IngestCounts:
    """ingest.lua returns {records, new, repeats, rejected, reason, count, ...}."""
    records, new, repeats, _rejected = (int(x) for x in reply[:4])
    reasons: dict[str, int] = {}
    for i in range(4, len(reply) - 1, 2):
        why = reply[i].decode() if isinstance(reply[i], bytes) else str(reply[i])
        reasons[why] = int(reply[i + 1])
    return IngestCounts(records=records, written=new, repeats=repeats, rejected=reasons)


class ZeekSchema(KeySchema):
    """The server-side write path: each frame's packed body handed whole to ingest.lua, counted from its reply."""

    scripts = (INGEST,)

    def __init__(self, retention: int = DEFAULT_RETENTION) -> None:
        self.retention: int = retention

    def write(self, ctx: IngestContext, body: Body, batch: WriteBatch) -> None:
        batch.script(INGEST, ctx.probe_id, body.packed, self.retention, on_reply=parse_ingest_reply)


def record_message(record: Any) -> dict[str, Any]:
    """The wire message for one parsed Zeek record (net_zeek.toml, message ``log``)."""
    msg: dict[str, Any] = {"path": record.path, "ts": record.ts, "rec": _PACKER.pack(record.fields)}
    if record.uid is not None:
        msg["uid"] = record.uid
    return msg


_PACKER = msgpack.Packer(use_bin_type=True)


class ZeekCollector(Collector):
    """Uploads: ``POST /logs/<type>`` (JSON lines, or TSV lines after their header)."""

    prefix = "logs"

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
