"""Viewer protocol v1 (spec/viewer.md): length-prefixed msgpack maps over TCP, server -> viewers.

A frame is a 4-byte big-endian length, then that many bytes of one msgpack map with a ``type`` field. This module
holds the framing, the message shapes (checked on what a viewer sends) and the time parsing the CLI shares; the
server's session is :mod:`wiredraw.core.server.viewers`, the blocking client :mod:`wiredraw.core.viewer_client`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import msgpack

VERSION = 1
HEADER = struct.Struct(">I")
MAX_CLIENT_FRAME = 64 * 1024  # what a viewer may send: requests are small
MAX_SERVER_FRAME = 256 * 1024 * 1024  # what a viewer accepts: a full graph can be large
MAX_BINS = 10_000
MODES = ("live", "at", "play")
REQUESTS = ("range", "histogram", "details", "configure", "graph", "modules")
DEFAULT_FULL_EVERY = 30.0
DEFAULT_PLAY_WINDOW = 60.0


class ViewerProtocolError(ValueError):
    """A frame or message that breaks the protocol; ``code`` is the error's short name (spec/viewer.md)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code


def pack(message: Mapping[str, Any]) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Feed bytes, get messages (maps). Raises ViewerProtocolError on an oversized frame or a body that is not a
    msgpack map with a string ``type``; the stream is unusable after that."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        self._buf += data
        buf, pos = self._buf, 0
        try:
            while len(buf) - pos >= HEADER.size:
                (n,) = HEADER.unpack_from(buf, pos)
                if n > self.max_frame:
                    raise ViewerProtocolError("too_large", f"frame of {n} bytes; the limit is {self.max_frame}")
                if len(buf) - pos < HEADER.size + n:
                    return
                body = bytes(buf[pos + HEADER.size : pos + HEADER.size + n])
                pos += HEADER.size + n
                yield decode_body(body)
        finally:
            del buf[:pos]  # once per feed, not once per frame


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types for bad input
        raise ViewerProtocolError("bad_frame", f"frame body is not msgpack: {type(exc).__name__}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ViewerProtocolError("bad_frame", "a message is a msgpack map with a string 'type'")
    return msg


# -- checking what a viewer sends ---------------------------------------------------------------------------


def _number(msg: Mapping[str, Any], key: str, *, required: bool = False, positive: bool = False) -> float | None:
    v = msg.get(key)
    if v is None:
        if required:
            raise ViewerProtocolError("bad_message", f"'{key}' is required")
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ViewerProtocolError("bad_message", f"'{key}' must be a finite number, got {v!r:.40}")
    if positive and v <= 0:
        raise ViewerProtocolError("bad_message", f"'{key}' must be > 0")
    return float(v)


def _string(msg: Mapping[str, Any], key: str, *, required: bool = False, limit: int = 4096) -> str | None:
    v = msg.get(key)
    if v is None:
        if required:
            raise ViewerProtocolError("bad_message", f"'{key}' is required")
        return None
    if not isinstance(v, str) or len(v) > limit:
        raise ViewerProtocolError("bad_message", f"'{key}' must be a string of at most {limit} characters")
    return v


def check_hello(msg: Mapping[str, Any]) -> str:
    """The token of a valid hello."""
    if msg.get("type") != "hello":
        raise ViewerProtocolError("expected_hello", f"the first message must be 'hello', got {msg.get('type')!r:.40}")
    if msg.get("version") != VERSION:
        raise ViewerProtocolError("version", f"this server speaks viewer protocol version {VERSION}, "
                                          f"the viewer asked for {msg.get('version')!r:.20}")
    token = _string(msg, "token", required=True, limit=512)
    assert token is not None
    return token


def check_view(msg: Mapping[str, Any]) -> dict[str, Any]:
    """The view part of a subscribe or configure: mode, t, speed, window, filter (each optional in configure)."""
    out: dict[str, Any] = {}
    mode = msg.get("mode")
    if mode is not None:
        if mode not in MODES:
            raise ViewerProtocolError("bad_message", f"mode must be one of {', '.join(MODES)}, got {mode!r:.40}")
        out["mode"] = mode
    for key in ("t", "speed", "window"):
        v = _number(msg, key, positive=key in ("speed",))
        if v is not None:
            if key == "window" and v < 0:
                raise ViewerProtocolError("bad_message", "'window' must be >= 0")
            out[key] = v
    flt = _string(msg, "filter")
    if flt is not None:
        out["filter"] = flt
    if out.get("mode") in ("at", "play") and "t" not in out:
        raise ViewerProtocolError("bad_message", f"mode {out['mode']!r} needs 't'")
    return out


def check_subscribe(msg: Mapping[str, Any]) -> dict[str, Any]:
    module = msg.get("module")
    if not isinstance(module, str | int) or isinstance(module, bool):
        raise ViewerProtocolError("bad_message", "'module' (slug or id) is required")
    view = check_view(msg)
    view.setdefault("mode", "live")
    view["module"] = module
    return view


def check_request(msg: Mapping[str, Any]) -> tuple[int, str]:
    rid = msg.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid < 2**63:
        raise ViewerProtocolError("bad_message", "a request needs an integer 'id' >= 0")
    what = msg.get("what")
    if what not in REQUESTS:
        raise ViewerProtocolError("bad_message", f"'what' must be one of {', '.join(REQUESTS)}, got {what!r:.40}")
    return rid, what


def interval_of(msg: Mapping[str, Any]) -> tuple[float, float] | None:
    """``at`` (an instant) or ``from``/``to`` of a graph/details/histogram request; None when neither is given."""
    at = _number(msg, "at")
    t0, t1 = _number(msg, "from"), _number(msg, "to")
    if at is not None:
        if t0 is not None or t1 is not None:
            raise ViewerProtocolError("bad_message", "give 'at' or 'from'/'to', not both")
        return at, at
    if t0 is None and t1 is None:
        return None
    if t0 is None or t1 is None:
        raise ViewerProtocolError("bad_message", "'from' and 'to' go together")
    if t1 < t0:
        raise ViewerProtocolError("bad_message", "'to' is before 'from'")
    return t0, t1


# -- times --------------------------------------------------------------------------------------------------


