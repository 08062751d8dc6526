"""Property tests: every decoder in wiredraw.core.wire raises only WireError, whatever the bytes."""

from __future__ import annotations

import hashlib
import os

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wiredraw.core.wire import (
    REASONS,
    Limits,
    StreamDecoder,
    WireError,
    decode_body,
    decode_control,
    decode_frame,
    encode_body,
    encode_frame,
    frame_stream,
)

KEY = hashlib.sha256(b"fuzz key").digest()
LIMITS = Limits(
    max_frame_bytes=4096, max_messages=16, max_str_len=256, max_bin_len=256, max_map_len=16, max_array_len=16
)
# Quick by default; WIREDRAW_FUZZ_EXAMPLES=50000 for a long run before touching the decoders.
EXAMPLES = int(os.environ.get("WIREDRAW_FUZZ_EXAMPLES", "500"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MESSAGES = [{"port": 443, "host": "10.0.0.1", "tags": ["a", "b"], "ok": True}, {"n": -1, "x": 0.5}]
GOOD = encode_frame(KEY, 1, "conn", "probe-a", 42, 1_700_000_000.5, encode_body(MESSAGES))


def key_for(probe_id: str) -> bytes | None:
    return KEY if probe_id == "probe-a" else None


def only_wire_errors(decode, data: bytes) -> object:  # type: ignore[no-untyped-def]
    try:
        return decode(data)
    except WireError as exc:
        assert exc.reason in REASONS
        return None


# Raw bytes, and bytes that start like the things we decode, so the fuzzer gets past the first byte.
any_bytes = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"\x98\x01" + b),
    st.binary(max_size=300).map(lambda b: b"\x97\x01" + b),
    st.binary(max_size=300).map(lambda b: b"\x91" + b),
    st.binary(max_size=300).map(lambda b: b"\x93\xa3ack" + b),
)

# Structured msgpack values, so that valid-but-wrong shapes are tried too (nesting, ext types, big ints).
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=40),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**63), st.binary(max_size=4)), inner, max_size=6
        ),
    ),
    max_leaves=30,
)
packed_values = values.map(lambda v: msgpack.packb(v, use_bin_type=True))


@FAST
@given(st.one_of(any_bytes, packed_values))
def test_decode_frame_only_wire_error(data: bytes) -> None:
    only_wire_errors(lambda d: decode_frame(d, key_for, LIMITS), data)


@FAST
@given(st.one_of(any_bytes, packed_values))
def test_decode_body_only_wire_error(data: bytes) -> None:
    messages = only_wire_errors(lambda d: decode_body(d, LIMITS), data)
    if messages is not None:
        assert isinstance(messages, list) and 1 <= len(messages) <= LIMITS.max_messages
        assert all(isinstance(m, dict) and all(isinstance(k, str) for k in m) for m in messages)


@FAST
@given(st.one_of(any_bytes, packed_values))
def test_decode_control_only_wire_error(data: bytes) -> None:
    only_wire_errors(decode_control, data)


@FAST
@given(st.lists(st.binary(max_size=40), max_size=12), st.integers(min_value=0, max_value=64))
def test_stream_decoder_only_wire_error(chunks: list[bytes], max_payload: int) -> None:
    decoder = StreamDecoder(max_payload)
    for chunk in chunks:
        try:
            payloads = decoder.feed(chunk)
        except WireError as exc:
            assert exc.reason == "oversized"
            return
        assert all(len(p) <= max_payload for p in payloads)


@FAST
@given(st.lists(st.binary(max_size=50), max_size=8), st.data())
def test_stream_decoder_any_split(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frame_stream(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = StreamDecoder(64)
    got: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += decoder.feed(stream[start:end])
    assert got == payloads


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(GOOD) - 1), st.integers(0, 7)),
    st.tuples(st.just("insert"), st.integers(0, len(GOOD)), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, len(GOOD) - 1), st.integers(1, 8)),
    st.tuples(st.just("set"), st.integers(0, len(GOOD) - 1), st.integers(0, 255)),
)


def mutate(data: bytes, steps: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, pos, arg in steps:
        pos = min(pos, len(out))
        if op == "flip" and pos < len(out):
            out[pos] ^= 1 << arg
        elif op == "insert":
            out[pos:pos] = bytes([arg])
        elif op == "delete":
            del out[pos : pos + arg]
        elif op == "set" and pos < len(out):
            out[pos] = arg
    return bytes(out)


@FAST
@given(st.lists(mutations, min_size=1, max_size=4))
def test_mutated_frame_never_passes(steps: list[tuple[str, int, int]]) -> None:
    data = mutate(GOOD, steps)
    frame = only_wire_errors(lambda d: decode_frame(d, key_for, LIMITS), data)
    # Any change to a signed frame is caught (HMAC), unless the mutations cancelled out.
    assert frame is None or data == GOOD
