"""http_traefik's key schema (http_traefik.toml) and its server-side write path.

Every key is under ``wd:http_traefik:`` and kept ``retention`` seconds after its last write:

- ``wd:http_traefik:req:{chunk}`` (hash): the requests whose time falls in ``chunk = floor(t / CHUNK)``; field
  ``{t:.6f}|{probe}|{rid}`` -> the JSON of the message less ``t`` and ``rid``, written with HSETNX, so a message
  repeated by the same probe changes nothing and notifies nothing.
- ``wd:http_traefik:last`` (zset): probe -> the time of its latest request (ZADD GT: only ever moves forward).
- ``wd:http_traefik:first`` (zset): probe -> the time of its earliest request (ZADD LT: only ever moves back).

Counting: the reply of each request's HSETNX tells whether it was new (written) or a repeat.
"""

from __future__ import annotations

import json
import math

from wiredraw.core.module import Body, IngestContext, KeySchema, WriteBatch, count_new

PREFIX = "wd:http_traefik:"
REQ_PREFIX = PREFIX + "req:"
LAST_KEY = PREFIX + "last"
FIRST_KEY = PREFIX + "first"
CHUNK = 600  # seconds of request time per req:{chunk} hash
DEFAULT_RETENTION = 7 * 86400  # the TTL the declaration gives its keys
RECORD_FIELDS = ("client", "method", "path", "status", "duration", "entrypoint", "router", "service",
                 "service_addr", "host", "protocol", "size")


def chunk_of(t: float) -> int:
    return int(t // CHUNK)


def req_key(chunk: int) -> str:
    return f"{REQ_PREFIX}{chunk}"


def chunk_of_key(key: str) -> int | None:
    """The chunk of a ``req:`` key; None for any other key."""
    if not key.startswith(REQ_PREFIX):
        return None
    try:
        return int(key[len(REQ_PREFIX):])
    except ValueError:
        return None


def request_field(t: float, probe: str, rid: str) -> str:
    return f"{t:.6f}|{probe}|{rid}"


def parse_request_field(name: str) -> tuple[float, str, str] | None:
    """(t, probe, rid) of a request's hash field; None if it is not one (a probe id may not hold '|')."""
    parts = name.split("|", 2)
    if len(parts) != 3:
        return None
    try:
        t = float(parts[0])
    except ValueError:
        return None
    return (t, parts[1], parts[2]) if math.isfinite(t) else None


class HttpTraefikSchema(KeySchema):
    """The write path: each request an HSETNX, the probe's time span in two sorted sets."""

    def __init__(self, retention: int = DEFAULT_RETENTION) -> None:
        self.retention: int = retention

    def write(self, ctx: IngestContext, body: Body, batch: WriteBatch) -> None:
        """The body's messages as the core has checked them against the declaration (types, required fields)."""
        first = math.inf
        last = -math.inf
        expire: set[str] = set()
        if ctx.message_type != "request":
            return
        for msg in body.messages():
            t = float(msg["t"])  # finite: the core refuses non-finite numbers before this
            record = {f: msg[f] for f in RECORD_FIELDS if msg.get(f) is not None}
            key = req_key(chunk_of(t))
            batch.add("HSETNX", key, request_field(t, ctx.probe_id, str(msg["rid"])),
                      json.dumps(record, separators=(",", ":"), sort_keys=True), on_reply=count_new)
            expire.add(key)
            first, last = min(first, t), max(last, t)
        if expire:
            batch.add("ZADD", LAST_KEY, "GT", last, ctx.probe_id)
            batch.add("ZADD", FIRST_KEY, "LT", first, ctx.probe_id)
            expire.update((LAST_KEY, FIRST_KEY))
        for key in sorted(expire):
            batch.add("EXPIRE", key, self.retention)
        # written and repeats come from the HSETNX replies
