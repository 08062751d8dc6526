"""Wire protocol v1: the signed msgpack frames that probes send to the server.

The prose specification is ``spec/wire.md``; the byte-exact vectors are ``spec/vectors/wire-v1.json``.
This module is pure Python (no Twisted, no clock): it encodes and decodes frames, batches (bodies), TCP
length prefixes and the TCP handshake/control messages, and keeps the per-probe replay window.

Every decoder here raises only :class:`WireError` for any input bytes, so a caller can count a rejection
by ``err.reason`` and drop the input without a catch-all of its own.

Why one file of ~700 lines: it is the code of one specification, in spec/wire.md's order (envelope, bodies, TCP
framing, handshake and control, replay window), and a reader checking the code against the spec or writing a
probe in another language wants it side by side; split, each part would import most of the others.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

PROTOCOL_VERSION = 1

# Rejection reasons, in the order the checks run (spec/wire.md, "Check order"). The server counts
# rejections by these strings, so they are part of the protocol: never rename one.
REASONS: tuple[str, ...] = (
    "truncated",
    "oversized",
    "malformed",
    "unsigned",
    "bad_version",
    "unknown_probe",
    "bad_signature",
    "stale",
    "replay",
    "unknown_module",
    "unknown_message",
    "bad_body",
)

MAX_SEQ = 2**64 - 1
MAX_MODULE_ID = 65535
NAME_MAX_LEN = 64
TAG_LEN = 32
NONCE_LEN = 32
# A frame ends with bin8 header (c4 20) + the 32-byte tag when encoded canonically.
TAG_SUFFIX_LEN = 2 + TAG_LEN
# The most bytes a frame can add around its body: fixarray(1) + version(1) + uint16(3) + str8 64(66)
# + str8 64(66) + uint64(9) + float64(9) + bin32 header(5) + tag(34). A probe batches to fit with it.
MAX_ENVELOPE_BYTES = 194

MSG_TYPE_RE = re.compile(r"[a-z0-9_.]{1,64}")
PROBE_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
CONTROL_REASON_RE = re.compile(r"[a-z0-9_]{1,64}")

SERVER_AUTH_LABEL = b"wiredraw-v1 server-auth"
PROBE_AUTH_LABEL = b"wiredraw-v1 probe-auth"

LENGTH_PREFIX = struct.Struct(">I")
MAX_STREAM_PAYLOAD = 2**32 - 1

# Control messages are tiny; anything bigger is hostile or broken.
MAX_CONTROL_BYTES = 4096
MAX_ERROR_TEXT = 1000
HANDSHAKE_TIMEOUT = 10.0

CONTROL_KINDS: tuple[str, ...] = ("hello", "challenge", "auth", "welcome", "ack", "reject", "error")

# Reasons a TCP connection adds for ["error", reason, text] (spec/wire.md, "Errors"); a frame's
# rejection reason (REASONS) may appear there too. Receivers accept reasons they do not know.
CONNECTION_ERRORS: tuple[str, ...] = (
    "auth_failed",
    "server_auth_failed",
    "handshake_timeout",
    "probe_mismatch",
    "unexpected",
    "unavailable",
    "shutdown",
)


class WireError(Exception):
    """Input rejected; ``reason`` is one of :data:`REASONS`, the message is for humans (and logs)."""

    def __init__(self, reason: str, message: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown WireError reason {reason!r}")
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Bounds on what a decoder accepts; the defaults suit a server on a real network."""

    max_frame_bytes: int = 1024 * 1024
    max_messages: int = 10_000
    max_str_len: int = 1024 * 1024
    max_bin_len: int = 1024 * 1024
    max_map_len: int = 1024
    max_array_len: int = 4096
    max_skew_seconds: float = 300.0
    replay_window: int = 1024

    def __post_init__(self) -> None:
        for name in (
            "max_frame_bytes",
            "max_messages",
            "max_str_len",
            "max_bin_len",
            "max_map_len",
            "max_array_len",
            "replay_window",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, got {value!r}")
        if not (isinstance(self.max_skew_seconds, (int, float)) and self.max_skew_seconds >= 0):
            raise ValueError(f"Limits.max_skew_seconds must be >= 0, got {self.max_skew_seconds!r}")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Frame:
    """A decoded, authenticated frame; ``body`` is still the packed batch (see :func:`decode_body`)."""

    version: int
    module_id: int
    msg_type: str
    probe_id: str
    seq: int
    ts: float
    body: bytes


# ---------------------------------------------------------------------------------------------------------
# msgpack type bytes. The envelope's types are checked on the first byte of each element before it is
# unpacked, so a hostile frame never makes us build a nested container or an ext object.

_INT, _STR, _BIN, _F64, _F32, _NIL, _OTHER = "int", "str", "bin", "float64", "float32", "nil", "other"


def _kind_table() -> tuple[str, ...]:
    table = [_OTHER] * 256
    for b in range(0x00, 0x80):
        table[b] = _INT
    for b in range(0xE0, 0x100):
        table[b] = _INT
    for b in range(0xCC, 0xD4):
        table[b] = _INT
    for b in range(0xA0, 0xC0):
        table[b] = _STR
    for b in (0xD9, 0xDA, 0xDB):
        table[b] = _STR
    for b in (0xC4, 0xC5, 0xC6):
        table[b] = _BIN
    table[0xCB] = _F64
    table[0xCA] = _F32
    table[0xC0] = _NIL
    return tuple(table)


_KIND = _kind_table()


def _is_int(value: object) -> bool:
    # msgpack decodes true/false to bool, a subclass of int: never a valid integer field.
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _envelope_problem(
    module_id: object, msg_type: object, probe_id: object, seq: object, ts: object, body: object
) -> str | None:
    """What is wrong with these envelope values, or None. Shared by the encoder and the decoder."""
    if not _int_in(module_id, 0, MAX_MODULE_ID):
        return f"module_id must be an int 0..{MAX_MODULE_ID}"
    if not isinstance(msg_type, str) or not MSG_TYPE_RE.fullmatch(msg_type):
        return "msg_type must be 1..64 chars of [a-z0-9_.]"
    if not isinstance(probe_id, str) or not PROBE_ID_RE.fullmatch(probe_id):
        return "probe_id must be 1..64 chars of [A-Za-z0-9_.-]"
    if not _int_in(seq, 1, MAX_SEQ):
        return "seq must be an int 1..2**64-1"
    if not isinstance(ts, float) or not math.isfinite(ts):
        return "ts must be a finite float"
    if not isinstance(body, bytes):
        return "body must be bin"
    return None


# ---------------------------------------------------------------------------------------------------------
# Encoding


def _packb(obj: Any) -> bytes:
    # One setting everywhere: str as str, bytes as bin, floats as float64 (the spec's canonical form).
    return msgpack.packb(obj, use_bin_type=True, use_single_float=False)


def encode_body(messages: list[dict[str, Any]]) -> bytes:
    """Pack a batch of messages (a list of str-keyed maps) into a frame body."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("a body is a non-empty list of messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not all(isinstance(k, str) for k in message):
            raise ValueError(f"message {i} must be a dict with str keys")
    return _packb(messages)


def signed_bytes(module_id: int, msg_type: str, probe_id: str, seq: int, ts: float, body: bytes) -> bytes:
    """The bytes the tag covers: the 8-array header and elements 0..6."""
    packed = _packb([PROTOCOL_VERSION, module_id, msg_type, probe_id, seq, ts, body])
    # Same bytes as the 7-array, with the header saying 8 (0x97 -> 0x98): the tag comes last.
    return b"\x98" + packed[1:]


def frame_tag(key: bytes, signed: bytes) -> bytes:
    return hmac.new(key, signed, hashlib.sha256).digest()


def encode_frame(key: bytes, module_id: int, msg_type: str, probe_id: str, seq: int, ts: float, body: bytes) -> bytes:
    """Sign and encode one frame. Deterministic: the same inputs give the same bytes."""
    if not isinstance(key, bytes) or not key:
        raise ValueError("key must be non-empty bytes")
    if _is_int(ts):
        ts = float(ts)
    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    problem = _envelope_problem(module_id, msg_type, probe_id, seq, ts, body)
    if problem:
        raise ValueError(problem)
    signed = signed_bytes(module_id, msg_type, probe_id, seq, ts, body)
    return signed + _packb(frame_tag(key, signed))


# ---------------------------------------------------------------------------------------------------------
# Decoding


class _Reject(Exception):
    """Internal: lets a nested helper name a reason; turned into WireError at the boundary."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _refuse_ext(code: int, data: bytes) -> Any:
    raise _Reject("malformed", f"ext type {code} not allowed")


def _unpacker(*, max_buffer: int, max_str: int, max_bin: int, max_array: int, max_map: int) -> msgpack.Unpacker:
    return msgpack.Unpacker(
        None,
        raw=False,
        use_list=True,
        strict_map_key=True,
        max_buffer_size=max(max_buffer, 1),
        max_str_len=max_str,
        max_bin_len=max_bin,
        max_array_len=max_array,
        max_map_len=max_map,
        max_ext_len=0,  # with ext_hook below: no ext type (timestamps included) is ever accepted
        ext_hook=_refuse_ext,
    )


# The msgpack family each of elements 1..6 must have, checked on its first byte before unpacking.
_ENVELOPE_KINDS: tuple[tuple[str, str], ...] = (
    ("module_id", _INT),
    ("msg_type", _STR),
    ("probe_id", _STR),
    ("seq", _INT),
    ("ts", _F64),
    ("body", _BIN),
)


def _parse_frame(data: bytes, limits: Limits) -> tuple[list[Any], int, bytes]:
    """Parse the envelope; returns (elements 1..6, length of the signed part, tag)."""
    if not data:
        raise _Reject("truncated", "empty input")
    head = data[0]
    if not 0x90 <= head <= 0x9F:
        raise _Reject("malformed", "a frame is a msgpack fixarray")
    count = head & 0x0F
    if count == 0:
        raise _Reject("malformed", "empty array")
    if len(data) < 2:
        raise _Reject("truncated", "cut off after the array header")
    version = data[1]
    if version >= 0x80:
        raise _Reject("malformed", "version must be a positive fixint")
    # Checked before the length, so a future version may change everything after its first element.
    if version != PROTOCOL_VERSION:
        raise _Reject("bad_version", f"version {version}, this server speaks {PROTOCOL_VERSION}")
    if count not in (7, 8):
        raise _Reject("malformed", f"a frame has 8 elements, got {count}")

    unpacker = _unpacker(
        max_buffer=len(data), max_str=4 * NAME_MAX_LEN, max_bin=limits.max_frame_bytes, max_array=0, max_map=0
    )
    unpacker.feed(data)
    unpacker.read_array_header()
    unpacker.unpack()  # the version, already checked
    fields: list[Any] = []
    for name, expected in _ENVELOPE_KINDS:
        pos = unpacker.tell()
        if pos >= len(data):
            raise _Reject("truncated", f"cut off before {name}")
        kind = _KIND[data[pos]]
        if kind != expected:
            raise _Reject("malformed", f"{name} is {kind}, expected {expected}")
        fields.append(unpacker.unpack())
    problem = _envelope_problem(*fields)
    if problem:
        raise _Reject("malformed", problem)
    signed_len = unpacker.tell()
    if count == 7:
        if signed_len != len(data):
            raise _Reject("malformed", "trailing bytes")
        raise _Reject("unsigned", "7 elements: no tag")
    if signed_len >= len(data):
        raise _Reject("truncated", "cut off before the tag")
    kind = _KIND[data[signed_len]]
    if kind not in (_BIN, _NIL):
        raise _Reject("malformed", f"tag is {kind}, expected bin")
    tag = unpacker.unpack()
    if unpacker.tell() != len(data):
        raise _Reject("malformed", "trailing bytes")
    if not tag:  # nil or an empty bin: someone sent a frame without signing it
        raise _Reject("unsigned", "empty tag")
    if len(tag) != TAG_LEN:
        raise _Reject("malformed", f"tag is {len(tag)} bytes, expected {TAG_LEN}")
    return fields, signed_len, tag


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes, got {type(data).__name__}")


def decode_frame(data: bytes, key_for: Callable[[str], bytes | None], limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Parse and authenticate one frame. Raises only WireError (whatever ``data`` holds).

    ``key_for(probe_id)`` returns that probe's key, or None for a probe the server does not know.
    The body is not decoded: see :func:`decode_body`. Skew and replay are the caller's next checks.
    """
    data = _as_bytes(data)
    if len(data) > limits.max_frame_bytes:
        # Before any parsing: a huge input costs nothing but its length check.
        raise WireError("oversized", f"{len(data)} bytes > {limits.max_frame_bytes}")
    try:
        fields, signed_len, tag = _parse_frame(data, limits)
    except _Reject as exc:
        raise WireError(exc.reason, exc.message) from None
    except msgpack.OutOfData:
        raise WireError("truncated", "cut off inside an element") from None
    except Exception as exc:  # msgpack raises a zoo of types; all of them mean "not a frame"
        raise WireError("malformed", f"{type(exc).__name__}: {exc}"[:200]) from None
    module_id, msg_type, probe_id, seq, ts, body = fields
    key = key_for(probe_id)
    if not key:
        raise WireError("unknown_probe", f"probe {probe_id!r}")
    if not hmac.compare_digest(frame_tag(key, data[:signed_len]), tag):
        raise WireError("bad_signature", f"probe {probe_id!r} seq {seq}")
    return Frame(PROTOCOL_VERSION, module_id, msg_type, probe_id, seq, ts, body)


def decode_body(body: bytes, limits: Limits = DEFAULT_LIMITS) -> list[dict[str, Any]]:
    """Unpack a frame body into its messages. Raises only WireError("bad_body")."""
    body = _as_bytes(body)
    try:
        return _parse_body(body, limits)
    except _Reject as exc:
        raise WireError("bad_body", exc.message) from None
    except msgpack.OutOfData:
        raise WireError("bad_body", "cut off") from None
    except Exception as exc:
        raise WireError("bad_body", f"{type(exc).__name__}: {exc}"[:200]) from None


def _parse_body(body: bytes, limits: Limits) -> list[dict[str, Any]]:
    if not body:
        raise _Reject("bad_body", "empty body")
    if not (0x90 <= body[0] <= 0x9F or body[0] in (0xDC, 0xDD)):
        raise _Reject("bad_body", "a body is a msgpack array of messages")
    unpacker = _unpacker(
        max_buffer=len(body),
        max_str=limits.max_str_len,
        max_bin=limits.max_bin_len,
        max_array=limits.max_array_len,
        max_map=limits.max_map_len,
    )
    unpacker.feed(body)
    count = unpacker.read_array_header()  # msgpack does not bound this one: we do
    if count == 0:
        raise _Reject("bad_body", "empty batch")
    if count > limits.max_messages:
        raise _Reject("bad_body", f"{count} messages > {limits.max_messages}")
    messages: list[dict[str, Any]] = []
    for i in range(count):
        pos = unpacker.tell()
        if pos >= len(body):
            raise _Reject("bad_body", "cut off")
        head = body[pos]
        if not (0x80 <= head <= 0x8F or head in (0xDE, 0xDF)):
            raise _Reject("bad_body", f"message {i} is not a map")
        message = unpacker.unpack()
        if not all(type(k) is str for k in message):
            raise _Reject("bad_body", f"message {i} has a non-str key")
        messages.append(message)
    if unpacker.tell() != len(body):
        raise _Reject("bad_body", "trailing bytes")
    return messages


# ---------------------------------------------------------------------------------------------------------
# Clock skew and replay


def check_skew(ts: float, now: float, bound: float = DEFAULT_LIMITS.max_skew_seconds) -> None:
    """Raise WireError("stale") unless ``ts`` is within ``bound`` seconds of ``now`` (inclusive)."""
    if not math.isfinite(ts):
        raise WireError("stale", "ts is not finite")
    delta = ts - now
    if delta > bound:
        raise WireError("stale", f"ts {delta:.3f} s in the future (bound {bound} s)")
    if -delta > bound:
        raise WireError("stale", f"ts {-delta:.3f} s in the past (bound {bound} s)")


class ReplayWindow:
    """Per-probe sliding window of accepted sequence numbers (RFC 4303 §3.4.3 style).

    Bit ``i`` of the bitmap is set when seq ``top - i`` was accepted. A seq above ``top`` is new; one
    more than ``size - 1`` below ``top`` is too old to tell and is refused. Pure logic: no clock, no I/O.
    """

    __slots__ = ("size", "_top", "_bits")

    def __init__(self, size: int = DEFAULT_LIMITS.replay_window) -> None:
        if not _is_int(size) or size < 1:
            raise ValueError(f"window size must be a positive int, got {size!r}")
        self.size = size
        self._top = 0
        self._bits = 0

    @property
    def top(self) -> int:
        """The highest seq ever accepted (0 if none). A high-water mark: :meth:`forget` keeps it."""
        return self._top

    def __contains__(self, seq: int) -> bool:
        """Whether ``seq`` is marked as accepted (seqs below the window count as accepted)."""
        if seq > self._top:
            return False
        offset = self._top - seq
        return offset >= self.size or bool(self._bits >> offset & 1)

    def check(self, seq: int) -> None:
        """Raise WireError("replay") if ``seq`` was accepted already or is older than the window."""
        if seq < 1:
            raise WireError("replay", f"seq {seq} is never valid")
        if seq > self._top:
            return
        offset = self._top - seq
        if offset >= self.size:
            raise WireError("replay", f"seq {seq} is older than the window (top {self._top})")
        if self._bits >> offset & 1:
            raise WireError("replay", f"seq {seq} already accepted")

    def accept(self, seq: int) -> None:
        """Check ``seq`` and mark it accepted, sliding the window when it is a new top."""
        self.check(seq)
        if seq > self._top:
            shift = seq - self._top
            # A huge jump must not build a huge int: past the window everything is forgotten anyway.
            self._bits = 1 if shift >= self.size else ((self._bits << shift) | 1) & self._mask
            self._top = seq
        else:
            self._bits |= 1 << (self._top - seq)

    def forget(self, seq: int) -> None:
        """Un-mark ``seq`` (its frame could not be stored), so that a resend is accepted again."""
        if 1 <= seq <= self._top and self._top - seq < self.size:
            self._bits &= ~(1 << (self._top - seq))

    @property
    def _mask(self) -> int:
        return (1 << self.size) - 1

    def to_state(self) -> bytes:
        """Compact state for storage: msgpack ``[top, bitmap]``, bitmap little-endian, bit 0 = top."""
        return _packb([self._top, self._bits.to_bytes((self.size + 7) // 8, "little")])

    @classmethod
    def from_state(cls, state: bytes, size: int = DEFAULT_LIMITS.replay_window) -> ReplayWindow:
        """Rebuild a window from :meth:`to_state`; ``size`` may differ from the stored one.

        Raises ValueError for a state that is not ours (it comes from our own storage, not the wire).
        """
        try:
            top, bitmap = msgpack.unpackb(
                state, raw=False, max_bin_len=1 << 20, max_str_len=0, max_array_len=2, max_map_len=0, max_ext_len=0
            )
        except Exception as exc:
            raise ValueError(f"not a replay window state: {exc}") from None
        if not _is_int(top) or not 0 <= top <= MAX_SEQ or not isinstance(bitmap, bytes):
            raise ValueError("not a replay window state")
        window = cls(size)
        bits = int.from_bytes(bitmap, "little")
        stored_bits = len(bitmap) * 8
        if size > stored_bits:
            # Seqs the old, smaller window had already given up on must stay refused.
            bits |= window._mask ^ ((1 << stored_bits) - 1)
        window._top = top
        window._bits = bits & window._mask if top else 0
        return window

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self.size}, top={self._top}, bits={self._bits:#x})"


# ---------------------------------------------------------------------------------------------------------
# TCP stream framing


def frame_stream(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length (4 bytes, big-endian) for a TCP stream."""
    if len(payload) > MAX_STREAM_PAYLOAD:
        raise ValueError("payload too long for a 4-byte length prefix")
    return LENGTH_PREFIX.pack(len(payload)) + bytes(payload)


class StreamDecoder:
    """Split a TCP byte stream into payloads.

    After an ``oversized`` error the stream is dead (every later feed raises it again), and payloads
    completed by the same feed are dropped with it: the connection closes, and the probe resends
    whatever was not acked.
    """

    def __init__(self, max_payload: int = DEFAULT_LIMITS.max_frame_bytes) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._failed: WireError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a payload."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes; return every payload they complete, in order."""
        if self._failed is not None:
            raise self._failed
        self._buffer += data
        payloads: list[bytes] = []
        pos = 0
        buf = self._buffer
        while len(buf) - pos >= LENGTH_PREFIX.size:
            (length,) = LENGTH_PREFIX.unpack_from(buf, pos)
            if length > self.max_payload:
                # Checked on the prefix alone: we never buffer toward a payload we will refuse.
                self._failed = WireError("oversized", f"declared {length} bytes > {self.max_payload}")
                self._buffer = bytearray()
                raise self._failed
            end = pos + LENGTH_PREFIX.size + length
            if end > len(buf):
                break
            payloads.append(bytes(buf[pos + LENGTH_PREFIX.size : end]))
            pos = end
        if pos:
            del buf[:pos]
        return payloads


# ---------------------------------------------------------------------------------------------------------
# TCP handshake and control messages


def is_frame(payload: bytes) -> bool:
    """True when a stream payload is a frame (fixarray, then a positive fixint version); False for a
    control message (its first element is a str). A cheap peek: nothing is decoded."""
    return len(payload) >= 2 and 0x90 <= payload[0] <= 0x9F and payload[1] < 0x80


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_LEN)


def _handshake_mac(key: bytes, label: bytes, first: bytes, second: bytes, probe_id: str) -> bytes:
    # The nonces are fixed-length, so label + first + second + probe_id parses one way only.
    if len(first) != NONCE_LEN or len(second) != NONCE_LEN:
        raise ValueError(f"nonces must be {NONCE_LEN} bytes")
    return hmac.new(key, label + first + second + probe_id.encode(), hashlib.sha256).digest()


def server_proof(key: bytes, client_nonce: bytes, server_nonce: bytes, probe_id: str) -> bytes:
    """What the server sends in ``challenge``: proves to the probe that the server holds its key."""
    return _handshake_mac(key, SERVER_AUTH_LABEL, client_nonce, server_nonce, probe_id)


def probe_proof(key: bytes, client_nonce: bytes, server_nonce: bytes, probe_id: str) -> bytes:
    """What the probe sends in ``auth``: proves to the server that the probe holds its key."""
    return _handshake_mac(key, PROBE_AUTH_LABEL, server_nonce, client_nonce, probe_id)


def proof_matches(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison of a handshake proof."""
    return hmac.compare_digest(expected, received)


def _field_version(value: object) -> str | None:
    return None if _is_int(value) else "version must be an int"


def _field_probe_id(value: object) -> str | None:
    ok = isinstance(value, str) and PROBE_ID_RE.fullmatch(value)
    return None if ok else "probe_id must be 1..64 chars of [A-Za-z0-9_.-]"


def _field_32(value: object) -> str | None:
    return None if isinstance(value, bytes) and len(value) == 32 else "expected 32 bytes of bin"


def _field_last_seq(value: object) -> str | None:
    return None if _int_in(value, 0, MAX_SEQ) else "expected an int 0..2**64-1"


def _field_seq(value: object) -> str | None:
    return None if _int_in(value, 1, MAX_SEQ) else "expected an int 1..2**64-1"


def _field_reason(value: object) -> str | None:
    ok = isinstance(value, str) and CONTROL_REASON_RE.fullmatch(value)
    return None if ok else "reason must be 1..64 chars of [a-z0-9_]"


def _field_text(value: object) -> str | None:
    ok = isinstance(value, str) and len(value) <= MAX_ERROR_TEXT
    return None if ok else f"text must be a str of at most {MAX_ERROR_TEXT} chars"


# One table serves the encoder and the decoder: the shape of each control message, by kind.
_CONTROL_FIELDS: dict[str, tuple[Callable[[object], str | None], ...]] = {
    "hello": (_field_version, _field_probe_id, _field_32),
    "challenge": (_field_32, _field_32),
    "auth": (_field_32,),
    "welcome": (_field_last_seq,),
    "ack": (_field_seq,),
    "reject": (_field_seq, _field_reason),
    "error": (_field_reason, _field_text),
}
assert tuple(_CONTROL_FIELDS) == CONTROL_KINDS


def _control_problem(kind: object, fields: list[Any]) -> tuple[str, str] | None:
    """(reason, message) for a control message that does not fit its kind's shape, else None."""
    if not isinstance(kind, str) or kind not in _CONTROL_FIELDS:
        return "malformed", "unknown control kind"
    checks = _CONTROL_FIELDS[kind]
    if len(fields) != len(checks):
        return "malformed", f"{kind} has {len(checks)} fields, got {len(fields)}"
    for i, check in enumerate(checks):
        problem = check(fields[i])
        if problem:
            return "malformed", f"{kind} field {i + 1}: {problem}"
    if kind == "hello" and fields[0] != PROTOCOL_VERSION:
        return "bad_version", f"hello for version {fields[0]}, this side speaks {PROTOCOL_VERSION}"
    return None


def encode_control(kind: str, *fields: Any) -> bytes:
    """Encode a control message, e.g. ``encode_control("ack", 42)``; ValueError if it is ill-formed."""
    fields_list = [bytes(f) if isinstance(f, (bytearray, memoryview)) else f for f in fields]
    problem = _control_problem(kind, fields_list)
    if problem:
        raise ValueError(problem[1])
    return _packb([kind, *fields_list])


def decode_control(payload: bytes) -> tuple[str, list[Any]]:
    """Decode and validate a control message into ``(kind, fields)``. Raises only WireError."""
    payload = _as_bytes(payload)
    if len(payload) > MAX_CONTROL_BYTES:
        raise WireError("oversized", f"control message of {len(payload)} bytes > {MAX_CONTROL_BYTES}")
    if not payload:
        raise WireError("truncated", "empty input")
    try:
        unpacker = _unpacker(
            max_buffer=len(payload), max_str=MAX_CONTROL_BYTES, max_bin=NONCE_LEN, max_array=8, max_map=0
        )
        unpacker.feed(payload)
        message = unpacker.unpack()
        if unpacker.tell() != len(payload):
            raise _Reject("malformed", "trailing bytes")
    except _Reject as exc:
        raise WireError(exc.reason, exc.message) from None
    except msgpack.OutOfData:
        raise WireError("truncated", "cut off") from None
    except Exception as exc:
        raise WireError("malformed", f"{type(exc).__name__}: {exc}"[:200]) from None
    if not isinstance(message, list) or not message:
        raise WireError("malformed", "a control message is a non-empty array")
    kind, fields = message[0], message[1:]
    problem = _control_problem(kind, fields)
    if problem:
        raise WireError(*problem)
    return kind, fields
