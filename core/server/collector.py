"""HTTP collector ingest: ``POST /<prefix>/<name>`` with a collector token (the wiredraw seed's design).

A module with a ``collector`` part gets the route ``/<collector.prefix>/<name>`` (net_zeek: ``/logs/<type>``). The
core checks the token (401), the size (413, counted while the body arrives, never buffered past the limit), hands
the body to the collector's ``collect``, and writes the messages through the same path as probes' frames.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from wiredraw.core import wire
from wiredraw.core.batching import Batcher
from wiredraw.core.module import Collector, IngestCounts
from wiredraw.core.plugins import LoadedModule
from wiredraw.core.server.credentials import Tokens
from wiredraw.core.server.ingest import Ingest, Refused

DEFAULT_MAX_UPLOAD = 64 << 20
BODY_RECORDS = 500  # records per Redis batch: a Lua batch blocks Redis while it runs (notes/perf.md)
MAX_ERRORS_SHOWN = 20


class LimitedRequest(Request):
    """A request that stops keeping its body past ``max_body`` bytes (the resource answers 413)."""

    max_body = DEFAULT_MAX_UPLOAD

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        self.body_size = 0
        self.too_large = length is not None and length > self.max_body

    def handleContentChunk(self, data: bytes) -> None:
        self.body_size = getattr(self, "body_size", 0) + len(data)
        if self.body_size > self.max_body:
            self.too_large = True
        if not getattr(self, "too_large", False):
            super().handleContentChunk(data)


def _json(request: Any, code: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, sort_keys=True).encode() + b"\n"


class CollectorResource(Resource):
    """``/<prefix>``: its children are the names (``/logs/conn``)."""

    def __init__(self, loaded: LoadedModule, collector: Collector, ingest: Ingest, tokens: Tokens, max_body: int):
        super().__init__()
        self.loaded, self.collector, self.ingest, self.tokens = loaded, collector, ingest, tokens
        self.max_body = max_body

    def getChild(self, path: bytes, request: Any) -> Resource:
        return CollectorUpload(self, path.decode("utf-8", "replace"))

    def render_GET(self, request: Any) -> bytes:
        return _json(request, 405, {"error": f"POST a body to /{self.collector.prefix}/<name>"})


class CollectorUpload(Resource):
    isLeaf = True
    log = Logger()

    def __init__(self, parent: CollectorResource, name: str):
        super().__init__()
        self.parent, self.name = parent, name

    def render_GET(self, request: Any) -> bytes:
        return _json(request, 405, {"error": "use POST"})

    def render_POST(self, request: Any) -> Any:
        p = self.parent
        stats = p.ingest.stats
        auth = (request.getHeader(b"authorization") or b"").decode("latin-1")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        who = p.tokens.check(token, "collector") if token else None
        if who is None:
            stats.rejected["collector_unauthorized"] += 1
            request.setHeader(b"www-authenticate", b'Bearer realm="wiredraw collector"')
            return _json(request, 401, {"error": "a valid collector token is required: "
                                                 "Authorization: Bearer <token from `wiredraw tokens add NAME "
                                                 "--role collector`>"})
        if getattr(request, "too_large", False):
            stats.rejected["collector_too_large"] += 1
            return _json(request, 413, {"error": f"body larger than {p.max_body} bytes; split it"})
        if not self.name or "/" in self.name:
            return _json(request, 404, {"error": f"POST to /{p.collector.prefix}/<name>"})
        if not p.ingest.ready:
            return _json(request, 503, {"error": "storage is unavailable; retry later"})
        request.content.seek(0)
        try:
            collected = p.collector.collect(self.name, request.content)
        except Exception as exc:  # a module bug answers 500 and is logged; the server goes on
            self.log.failure("module {slug} failed on an upload", slug=p.loaded.spec.slug)
            return _json(request, 500, {"error": f"the module could not read the body: {type(exc).__name__}"})
        stats.counts["collector_uploads"] += 1
        self._store(request, who.name, collected)
        return NOT_DONE_YET

    @defer.inlineCallbacks
    def _store(self, request: Any, who: str, collected: Any) -> Any:
        p = self.parent
        # The same bodies a probe would send (Batcher), through the same write path as probes' frames.
        batcher = Batcher(BODY_RECORDS, p.ingest.limits.max_frame_bytes - wire.MAX_ENVELOPE_BYTES,
                          p.loaded.spec.bin_as_str)
        batches = batcher.batches(collected.messages)
        total = IngestCounts(rejected={"record larger than a frame": batcher.too_big} if batcher.too_big else {})
        try:
            for mtype, body, n in batches:
                try:
                    batch = p.ingest.prepare(p.loaded, f"collector:{who}", mtype, body)
                except Refused as exc:
                    total.add(IngestCounts(rejected={exc.reason: n}))
                    continue
                total.add((yield p.ingest.commit(batch)))
        except Exception as exc:
            if not request.finished and not request._disconnected:
                request.write(_json(request, 503, {"error": f"could not store: {exc}", "stored": total.written}))
                request.finish()
            return
        rejected = sum(total.rejected.values())
        answer = {
            "accepted": total.written + total.repeats,
            "stored": total.written,
            "repeats": total.repeats,
            "rejected": rejected + collected.bad_count,
            "bad_lines": collected.bad_count,
            "rejected_by_reason": total.rejected,
            "errors": [{"line": n, "reason": why} for n, why in collected.bad[:MAX_ERRORS_SHOWN]],
        }
        if not request._disconnected:
            request.write(_json(request, 200, answer))
            request.finish()


def make_site_request_factory(max_body: int) -> type[LimitedRequest]:
    return type("WiredrawRequest", (LimitedRequest,), {"max_body": max_body})


__all__ = ["CollectorResource", "LimitedRequest", "make_site_request_factory"]
