"""Unit tests of wiredraw.core.wire beyond the spec vectors (tests/core/test_wire_vectors.py)."""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

import msgpack
import pytest
from wiredraw.core.wire import (
    DEFAULT_LIMITS,
    MAX_ENVELOPE_BYTES,
    MAX_SEQ,
    REASONS,
    Frame,
    Limits,
    ReplayWindow,
    StreamDecoder,
    WireError,
    check_skew,
    decode_body,
    decode_control,
    decode_frame,
    encode_body,
    encode_control,
    encode_frame,
    frame_stream,
    is_frame,
    new_nonce,
    probe_proof,
    proof_matches,
    server_proof,
)

KEY = hashlib.sha256(b"unit key").digest()
OTHER_KEY = hashlib.sha256(b"other key").digest()
NOW = 1_700_000_000.0


def key_for(probe_id: str) -> bytes | None:
    return {"probe-a": KEY}.get(probe_id)


def make(seq: int = 1, messages: list[dict[str, Any]] | None = None, **kw: Any) -> bytes:
    args: dict[str, Any] = {"module_id": 1, "msg_type": "conn", "probe_id": "probe-a", "seq": seq, "ts": NOW}
    args.update(kw)
    body = encode_body(messages or [{"port": 443}])
    return encode_frame(KEY, args["module_id"], args["msg_type"], args["probe_id"], args["seq"], args["ts"], body)


def reason(exc_info: pytest.ExceptionInfo[WireError]) -> str:
    return exc_info.value.reason


# --- frames ------------------------------------------------------------------------------------------------


def test_round_trip() -> None:
    messages: list[dict[str, Any]] = [{"a": 1}, {"b": [1, 2.5, None, b"\x00"]}]
    frame = decode_frame(make(seq=99, messages=messages), key_for)
    assert frame == Frame(1, 1, "conn", "probe-a", 99, NOW, encode_body(messages))
    assert decode_body(frame.body) == messages


def test_frame_layout() -> None:
    data = make()
    assert data[0] == 0x98 and data[1] == 0x01
    assert data[-34:-32] == b"\xc4\x20"
    # The tag covers every byte before it, the 0x98 header included.
    assert data[-32:] == hmac.new(KEY, data[:-34], hashlib.sha256).digest()


def test_encoding_is_deterministic_and_float64() -> None:
    assert make() == make()
    data = encode_frame(KEY, 1, "conn", "probe-a", 1, 1, encode_body([{"x": 1}]))
    assert decode_frame(data, key_for).ts == 1.0
    assert b"\xcb" + struct.pack(">d", 1.0) in data


def test_envelope_overhead_bound() -> None:
    body = encode_body([{"pad": "x" * 70_000}])
    data = encode_frame(KEY, 65535, "m" * 64, "p" * 64, MAX_SEQ, NOW, body)
    assert len(data) == len(body) + MAX_ENVELOPE_BYTES


@pytest.mark.parametrize(
    "kwargs",
    [
        {"module_id": -1},
        {"module_id": 65536},
        {"module_id": True},
        {"msg_type": "Conn"},
        {"msg_type": ""},
        {"msg_type": "a" * 65},
        {"probe_id": "a b"},
        {"probe_id": "é"},
        {"seq": 0},
        {"seq": 2**64},
        {"ts": float("nan")},
        {"ts": "now"},
    ],
)
def test_encoder_refuses_bad_envelope(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make(**kwargs)


def test_encoder_refuses_bad_bodies_and_keys() -> None:
    for bad in ([], [1], [{1: 2}], {"a": 1}):
        with pytest.raises(ValueError):
            encode_body(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_frame(b"", 1, "conn", "probe-a", 1, NOW, b"\x91\x80")


def test_oversized_checked_before_parsing() -> None:
    limits = Limits(max_frame_bytes=16)
    with pytest.raises(WireError) as info:
        decode_frame(b"\xc1" * 17, key_for, limits)
    assert reason(info) == "oversized"
    with pytest.raises(WireError) as info:
        decode_frame(b"\xc1" * 16, key_for, limits)
    assert reason(info) == "malformed"


def test_unknown_probe_and_signature() -> None:
    data = make()
    with pytest.raises(WireError) as info:
        decode_frame(data, lambda probe_id: None)
    assert reason(info) == "unknown_probe"
    with pytest.raises(WireError) as info:
        decode_frame(data, lambda probe_id: b"")
    assert reason(info) == "unknown_probe"
    with pytest.raises(WireError) as info:
        decode_frame(data, lambda probe_id: OTHER_KEY)
    assert reason(info) == "bad_signature"


def test_decoder_accepts_non_canonical_widths() -> None:
    # Encoders must be canonical; decoders take any width, since the tag covers the bytes as sent.
    body = encode_body([{"x": 1}])
    signed = (
        b"\x98\x01"
        + b"\xcd\x00\x01"
        + b"\xd9\x04conn"
        + b"\xda\x00\x07probe-a"
        + b"\xcf"
        + (5).to_bytes(8, "big")
        + b"\xcb"
        + struct.pack(">d", NOW)
        + b"\xc6"
        + len(body).to_bytes(4, "big")
        + body
    )
    data = signed + b"\xc5\x00\x20" + hmac.new(KEY, signed, hashlib.sha256).digest()
    frame = decode_frame(data, key_for)
    assert frame == Frame(1, 1, "conn", "probe-a", 5, NOW, body)


def test_accepts_bytearray_and_memoryview() -> None:
    data = make()
    assert decode_frame(bytearray(data), key_for) == decode_frame(memoryview(data), key_for)


def test_wire_error() -> None:
    err = WireError("stale", "too old")
    assert err.reason == "stale" and "too old" in str(err)
    with pytest.raises(ValueError):
        WireError("nope")
    assert len(REASONS) == 12 and len(set(REASONS)) == 12


def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        Limits(max_messages=0)
    with pytest.raises(ValueError):
        Limits(max_skew_seconds=-1)
    assert DEFAULT_LIMITS.max_frame_bytes == 1 << 20 and DEFAULT_LIMITS.replay_window == 1024


# --- body --------------------------------------------------------------------------------------------------


def test_body_limits() -> None:
    limits = Limits(max_messages=3, max_str_len=4, max_bin_len=4, max_map_len=2, max_array_len=2)
    assert decode_body(encode_body([{"a": "abcd", "b": b"1234"}] * 3), limits)
    bad = [
        [{}] * 4,
        [{"a": "abcde"}],
        [{"a": b"12345"}],
        [{"a": 1, "b": 2, "c": 3}],
        [{"a": [1, 2, 3]}],
    ]
    for messages in bad:
        with pytest.raises(WireError) as info:
            decode_body(encode_body(messages), limits)
        assert reason(info) == "bad_body"


def test_body_huge_declared_count_is_cheap() -> None:
    with pytest.raises(WireError) as info:
        decode_body(b"\xdd\xff\xff\xff\xff")
    assert reason(info) == "bad_body"


def test_body_deep_nesting() -> None:
    deep = b"\x91\x81\xa1a" + b"\x91" * 5000 + b"\xc0"
    with pytest.raises(WireError) as info:
        decode_body(deep)
    assert reason(info) == "bad_body"


def test_body_nested_bin_keys_allowed_top_level_not() -> None:
    assert decode_body(msgpack.packb([{"a": {b"k": 1}}], use_bin_type=True)) == [{"a": {b"k": 1}}]
    with pytest.raises(WireError):
        decode_body(msgpack.packb([{b"k": 1}], use_bin_type=True))


# --- clock skew --------------------------------------------------------------------------------------------


def test_skew_both_ways() -> None:
    check_skew(NOW, NOW, 300)
    check_skew(NOW - 300, NOW, 300)
    check_skew(NOW + 300, NOW, 300)
    with pytest.raises(WireError, match="past") as info:
        check_skew(NOW - 300.001, NOW, 300)
    assert reason(info) == "stale"
    with pytest.raises(WireError, match="future") as info:
        check_skew(NOW + 300.001, NOW, 300)
    assert reason(info) == "stale"
    for ts in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(WireError):
            check_skew(ts, NOW, 300)


# --- replay window -----------------------------------------------------------------------------------------


def replay(window: ReplayWindow, seq: int) -> bool:
    try:
        window.check(seq)
    except WireError as exc:
        assert exc.reason == "replay"
        return True
    return False


def test_window_in_order() -> None:
    window = ReplayWindow(64)
    assert window.top == 0
    for seq in range(1, 200):
        window.accept(seq)
        assert window.top == seq
        assert replay(window, seq) and seq in window
    assert not replay(window, 200)


def test_window_out_of_order_within_window() -> None:
    window = ReplayWindow(8)
    for seq in (10, 5, 7, 3, 9):
        window.accept(seq)
    assert window.top == 10
    for seq in (3, 5, 7, 9, 10):
        assert replay(window, seq)
    for seq in (4, 6, 8, 11):
        assert not replay(window, seq)
    assert replay(window, 2)  # 10 - 2 = 8: just outside a window of 8


def test_window_too_old_and_duplicate() -> None:
    window = ReplayWindow(16)
    window.accept(1000)
    assert not replay(window, 1000 - 15)
    assert replay(window, 1000 - 16)
    assert replay(window, 1)
    assert replay(window, 0)
    with pytest.raises(WireError):
        window.accept(1000)
    with pytest.raises(WireError):
        window.accept(984)


def test_window_slides_keep_bits() -> None:
    window = ReplayWindow(16)
    window.accept(5)
    window.accept(10)  # slide by 5: 5 must still be marked
    assert replay(window, 5) and not replay(window, 6)
    window.accept(20)  # 5 falls out (20 - 5 = 15 < 16 keeps it; 21 would not)
    assert replay(window, 5) and replay(window, 10) and not replay(window, 6)
    window.accept(21)
    assert replay(window, 5) and not replay(window, 6)  # 21 - 6 = 15 still inside


def test_window_forget_then_reaccept() -> None:
    window = ReplayWindow(32)
    for seq in (1, 2, 3):
        window.accept(seq)
    window.forget(2)
    assert not replay(window, 2) and 2 not in window
    window.accept(2)
    assert replay(window, 2)
    window.forget(3)  # forgetting the top keeps it as the high-water mark
    assert window.top == 3 and not replay(window, 3)
    window.accept(3)
    window.forget(10_000)  # never seen: no effect
    window.forget(0)
    assert window.top == 3
    window.accept(100)
    window.forget(3)  # fell out of the window: forgetting cannot bring it back
    assert replay(window, 3)


def test_window_huge_jumps() -> None:
    window = ReplayWindow(1024)
    window.accept(1)
    window.accept(MAX_SEQ)
    assert window.top == MAX_SEQ
    assert replay(window, 1) and replay(window, MAX_SEQ)
    assert not replay(window, MAX_SEQ - 1) and not replay(window, MAX_SEQ - 1023)
    assert replay(window, MAX_SEQ - 1024)
    window.accept(MAX_SEQ - 1023)
    assert window._bits.bit_length() <= 1024  # no int bigger than the window was ever built


def test_window_state_round_trip() -> None:
    window = ReplayWindow(64)
    for seq in (3, 10, 40, 41, 60):
        window.accept(seq)
    state = window.to_state()
    assert len(state) < 64 // 8 + 16
    again = ReplayWindow.from_state(state, 64)
    assert again.top == 60
    for seq in range(1, 80):
        assert replay(again, seq) == replay(window, seq), seq
    assert ReplayWindow.from_state(ReplayWindow(64).to_state(), 64).top == 0


def test_window_state_size_change_stays_safe() -> None:
    window = ReplayWindow(16)
    window.accept(100)
    window.accept(90)
    bigger = ReplayWindow.from_state(window.to_state(), 64)
    assert replay(bigger, 90) and replay(bigger, 100)
    assert not replay(bigger, 95)
    assert replay(bigger, 60)  # refused by the old window: a bigger window must not let it in
    smaller = ReplayWindow.from_state(window.to_state(), 8)
    assert replay(smaller, 90) and not replay(smaller, 99)


@pytest.mark.parametrize(
    "state",
    [b"", b"\xc1", msgpack.packb([1]), msgpack.packb(["x", b""]), msgpack.packb([-1, b""]), msgpack.packb([1, "x"])],
)
def test_window_bad_state(state: bytes) -> None:
    with pytest.raises(ValueError):
        ReplayWindow.from_state(state, 64)


# --- stream framing ----------------------------------------------------------------------------------------


def test_stream_byte_by_byte() -> None:
    payloads = [b"a" * 300, b"", b"xyz", make()]
    stream = b"".join(frame_stream(p) for p in payloads)
    decoder = StreamDecoder(4096)
    got: list[bytes] = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert got == payloads and decoder.buffered == 0


def test_stream_several_in_one_feed() -> None:
    payloads = [bytes([i]) * i for i in range(50)]
    decoder = StreamDecoder(100)
    stream = b"".join(frame_stream(p) for p in payloads)
    assert decoder.feed(stream[:-1]) == payloads[:-1]
    assert decoder.feed(stream[-1:]) == payloads[-1:]


def test_stream_oversized() -> None:
    decoder = StreamDecoder(10)
    assert decoder.feed(frame_stream(b"0123456789")) == [b"0123456789"]
    with pytest.raises(WireError) as info:
        decoder.feed(struct.pack(">I", 11))
    assert reason(info) == "oversized"
    with pytest.raises(WireError):  # the stream stays dead
        decoder.feed(frame_stream(b"ok"))


def test_stream_oversized_on_prefix_alone() -> None:
    decoder = StreamDecoder()
    decoder.feed(b"\xff\xff")
    with pytest.raises(WireError):
        decoder.feed(b"\xff\xff")


# --- handshake and control ---------------------------------------------------------------------------------


def test_proofs() -> None:
    cn, sn = new_nonce(), new_nonce()
    assert cn != sn and len(cn) == 32
    sp = server_proof(KEY, cn, sn, "probe-a")
    pp = probe_proof(KEY, cn, sn, "probe-a")
    assert sp != pp and len(sp) == len(pp) == 32
    assert proof_matches(sp, server_proof(KEY, cn, sn, "probe-a"))
    assert not proof_matches(sp, server_proof(OTHER_KEY, cn, sn, "probe-a"))
    assert not proof_matches(pp, probe_proof(OTHER_KEY, cn, sn, "probe-a"))
    assert not proof_matches(pp, probe_proof(KEY, sn, cn, "probe-a"))  # nonces are not interchangeable
    assert not proof_matches(pp, probe_proof(KEY, cn, sn, "probe-b"))
    with pytest.raises(ValueError):
        probe_proof(KEY, cn[:31], sn, "probe-a")


def test_control_round_trip() -> None:
    cn = new_nonce()
    for kind, fields in [
        ("hello", [1, "probe-a", cn]),
        ("challenge", [cn, cn]),
        ("auth", [cn]),
        ("welcome", [0]),
        ("ack", [MAX_SEQ]),
        ("reject", [5, "bad_body"]),
        ("error", ["shutdown", "bye"]),
    ]:
        data = encode_control(kind, *fields)
        assert decode_control(data) == (kind, fields)
        assert not is_frame(data)


@pytest.mark.parametrize(
    "kind,fields",
    [
        ("ping", []),
        ("hello", [1, "probe-a"]),
        ("hello", [1, "a b", b"x" * 32]),
        ("hello", [1, "a", b"x"]),
        ("hello", [2, "a", b"x" * 32]),
        ("ack", [0]),
        ("ack", [True]),
        ("welcome", [-1]),
        ("reject", [1, "Bad"]),
        ("error", ["x", "t" * 1001]),
        ("auth", ["x" * 32]),
    ],
)
def test_encode_control_refuses(kind: str, fields: list) -> None:
    with pytest.raises(ValueError):
        encode_control(kind, *fields)


def test_decode_control_hello_version() -> None:
    data = msgpack.packb(["hello", 2, "probe-a", b"x" * 32], use_bin_type=True)
    with pytest.raises(WireError) as info:
        decode_control(data)
    assert reason(info) == "bad_version"


def test_is_frame() -> None:
    assert is_frame(make())
    assert is_frame(b"\x93\x02")  # a later version is still routed to decode_frame (-> bad_version)
    assert not is_frame(encode_control("ack", 1))
    assert not is_frame(b"") and not is_frame(b"\x98") and not is_frame(b"\x98\xcc")
