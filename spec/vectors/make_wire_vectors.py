"""Generate spec/vectors/wire-v1.json, the byte-exact vectors of wire protocol v1 (spec/wire.md).

Run from anywhere: ``python3 spec/vectors/make_wire_vectors.py`` (writes the file next to this script;
``--check`` only compares). Deterministic: fixed keys, nonces, timestamps, and no randomness.

It builds every byte with msgpack and hmac directly and never imports wiredraw, so the vectors say what
the spec says, not what the implementation happens to do; tests/core/test_wire_vectors.py holds the
implementation to them.

Why one file of ~600 lines: it is an independent second statement of spec/wire.md, section by section, and must
stand alone (it imports nothing of wiredraw), so it cannot share the implementation's helpers.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

OUT = Path(__file__).with_name("wire-v1.json")

NOW = 1700000000.0
LIMITS: dict[str, Any] = {
    # Small on purpose, so the limit vectors stay short; the defaults are in spec/wire.md.
    "max_frame_bytes": 2048,
    "max_messages": 8,
    "max_str_len": 1024,
    "max_bin_len": 1024,
    "max_map_len": 32,
    "max_array_len": 64,
    "max_skew_seconds": 300.0,
    "replay_window": 64,
}
CONTROL_MAX_BYTES = 4096
LONG_PROBE = "p" * 32 + "-" * 16 + "." * 8 + "_" * 4 + "Z9z0"  # 64 chars, every kind of allowed char


def _key(name: str) -> bytes:
    return hashlib.sha256(b"wiredraw-v1 test key " + name.encode()).digest()


KEYS = {name: _key(name) for name in ("probe-a", "probe-b", "sensor_01.lan", LONG_PROBE)}
STRANGER_KEY = _key("stranger")


@dataclass(frozen=True)
class Raw:
    """Bytes put into a frame as they are: for element encodings msgpack would never produce."""

    data: bytes


def pack(obj: Any) -> bytes:
    if isinstance(obj, Raw):
        return obj.data
    return msgpack.packb(obj, use_bin_type=True, use_single_float=False)


def mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def frame(
    elements: list[Any], key: bytes | None = None, header: int | None = None, tag: Any = None, signed_header: int = 0x98
) -> bytes:
    """An 8-array frame: header, the 7 given elements, then HMAC-SHA256 over everything before the tag.

    ``tag`` replaces the computed tag; ``signed_header`` lets a vector sign a header other than the one
    it sends (the classic mistake: signing the 7-array).
    """
    head = len(elements) + 1 if header is None else header
    middle = b"".join(pack(e) for e in elements)
    if tag is None:
        tag = mac(key or KEYS["probe-a"], bytes([signed_header]) + middle)
    return bytes([0x90 + head if head < 16 else head]) + middle + pack(tag)


def body(messages: Any) -> bytes:
    return pack(messages)


def envelope(
    seq: Any = 1,
    ts: Any = NOW,
    messages: Any = None,
    *,
    module_id: Any = 1,
    msg_type: Any = "conn",
    probe_id: Any = "probe-a",
    body_bytes: Any = None,
) -> list[Any]:
    if body_bytes is None:
        body_bytes = body([{"port": 443}] if messages is None else messages)
    return [1, module_id, msg_type, probe_id, seq, ts, body_bytes]


def signed(elements: list[Any], probe_id: str = "probe-a") -> bytes:
    return frame(elements, KEYS[probe_id])


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def pseudo_random(label: str, n: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


def json_value(value: Any) -> Any:
    """Control fields for JSON: bin becomes {"bin": hex}."""
    if isinstance(value, bytes):
        return {"bin": value.hex()}
    return value


# ---------------------------------------------------------------------------------------------------------


def valid_vectors() -> list[dict[str, Any]]:
    out = []

    def add(
        name: str,
        note: str,
        probe_id: str,
        module_id: int,
        msg_type: str,
        seq: int,
        ts: float,
        messages: list[dict[str, Any]],
    ) -> None:
        data = frame([1, module_id, msg_type, probe_id, seq, ts, body(messages)], KEYS[probe_id])
        out.append(
            {
                "name": name,
                "note": note,
                "hex": data.hex(),
                "expect": {
                    "module_id": module_id,
                    "msg_type": msg_type,
                    "probe_id": probe_id,
                    "seq": seq,
                    "ts": ts,
                    "messages": messages,
                },
            }
        )

    add(
        "minimal",
        "The worked example of spec/wire.md: one message, seq 1.",
        "probe-a",
        1,
        "conn",
        1,
        NOW + 0.25,
        [{"port": 443}],
    )
    add(
        "batch",
        "Three messages; nil, bools, negative ints, floats, nesting, non-ASCII text; seq from the "
        "clock in microseconds, as a probe without saved state starts.",
        "sensor_01.lan",
        2,
        "proc.exec",
        1_700_000_000_123_456,
        NOW - 1.5,
        [
            {"pid": 4242, "ppid": 1, "argv": ["/usr/bin/ssh", "-v", "host"], "uid": 0, "exe": None},
            {"pid": -1, "ok": False, "live": True, "load": 0.75, "env": {"LANG": "C.UTF-8"}},
            {"comm": "café ☕", "path": "/tmp/\u00e9t\u00e9", "big": 2**63, "small": -(2**63)},
        ],
    )
    add(
        "largest seq",
        "seq 2**64-1, encoded uint64 (cf ff ff ff ff ff ff ff ff).",
        "probe-a",
        1,
        "conn",
        2**64 - 1,
        NOW,
        [{"port": 80}],
    )
    add("module 0", "The core's own module ID.", "probe-b", 0, "heartbeat", 7, NOW, [{"spool": 0}])
    add("module 65535", "The largest module ID (uint16).", "probe-b", 65535, "x", 8, NOW, [{}])
    add(
        "longest names",
        "msg_type and probe_id of 64 chars each (str8).",
        LONG_PROBE,
        1000,
        "a" * 30 + "." * 10 + "_" * 10 + "0123456789" + "z.z_",
        1,
        NOW,
        [{"n": 1}],
    )
    add(
        "skew at the past bound",
        "ts exactly max_skew_seconds before now: accepted (inclusive bound).",
        "probe-a",
        1,
        "conn",
        2,
        NOW - LIMITS["max_skew_seconds"],
        [{"port": 22}],
    )
    add(
        "skew at the future bound",
        "ts exactly max_skew_seconds after now: accepted.",
        "probe-a",
        1,
        "conn",
        3,
        NOW + LIMITS["max_skew_seconds"],
        [{"port": 25}],
    )
    add(
        "max_messages",
        "A batch of exactly max_messages messages.",
        "probe-a",
        1,
        "conn",
        4,
        NOW,
        [{"i": i} for i in range(LIMITS["max_messages"])],
    )
    return out


def invalid_vectors() -> list[dict[str, Any]]:
    out = []

    def add(name: str, data: bytes, reason: str, note: str) -> None:
        out.append({"name": name, "hex": data.hex(), "reason": reason, "note": note})

    good = signed(envelope())
    f32 = Raw(b"\xca" + struct.pack(">f", 1.5e9))

    # Framing of the input as a whole.
    add("empty", b"", "truncated", "No bytes at all.")
    add("cut before the tag ends", good[:-1], "truncated", "A valid frame minus its last byte.")
    add("cut inside the envelope", good[:12], "truncated", "Cut inside the probe_id.")
    add("array header only", b"\x98", "truncated", "Nothing after the 8-array header.")
    add("cut before the tag", good[:-34], "truncated", "The signed part alone, with an 8-array header.")
    add("random bytes", b"\xc1" + pseudo_random("random", 47), "malformed", "0xc1 is never used by msgpack.")
    add(
        "random bytes 2",
        pseudo_random("random bytes 2", 64),
        "malformed",
        f"Starts with 0x{pseudo_random('random bytes 2', 1)[0]:02x}: not a fixarray.",
    )
    add("trailing byte", good + b"\x00", "malformed", "A valid frame and one more byte.")
    pad = 0
    while True:
        big = signed(envelope(messages=[{"pad": "x" * pad}]))
        if len(big) > LIMITS["max_frame_bytes"]:
            break
        pad += 1
    add(
        "oversized",
        big,
        "oversized",
        f"{len(big)} bytes, one more than max_frame_bytes; rejected on its length before parsing.",
    )
    add("not an array (map)", pack({"version": 1}), "malformed", "A map.")
    add("not an array (int)", pack(1), "malformed", "A bare integer.")
    add(
        "array16 header",
        b"\xdc\x00\x08" + good[1:],
        "malformed",
        "Valid msgpack, but a frame starts with the fixarray byte 0x98.",
    )
    add("empty array", b"\x90", "malformed", "An empty array.")

    # The number of elements and the tag.
    add("7 elements", b"\x97" + good[1:-34], "unsigned", "The 7 signed elements, no tag.")
    add("nil tag", good[:-34] + b"\xc0", "unsigned", "Tag is nil.")
    add("empty tag", good[:-34] + b"\xc4\x00", "unsigned", "Tag is an empty bin.")
    add("short tag", good[:-34] + pack(good[-31:]), "malformed", "Tag of 31 bytes.")
    add("tag as str", good[:-34] + pack("x" * 32), "malformed", "Tag is a str.")
    add("9 elements", b"\x99" + good[1:] + b"\x00", "malformed", "An extra element after the tag.")
    add(
        "6 elements",
        b"\x96" + b"".join(pack(e) for e in envelope()[:6]),
        "malformed",
        "Too few elements: no body, no tag.",
    )

    # Version.
    add("version 2", frame([2, *envelope()[1:]]), "bad_version", "A frame of a later protocol.")
    add("version 0", frame([0, *envelope()[1:]]), "bad_version", "Version 0.")
    add(
        "version 2, other shape",
        b"\x93\x02\xa1x\x00",
        "bad_version",
        "Version is read first: a later version may change everything after it.",
    )
    add(
        "version as uint8",
        frame([Raw(b"\xcc\x01"), *envelope()[1:]]),
        "malformed",
        "Version must be the one byte 0x01.",
    )
    add("version true", frame([True, *envelope()[1:]]), "malformed", "A bool is not an int.")

    # Keys and signatures.
    add(
        "unknown probe",
        frame(envelope(probe_id="stranger"), STRANGER_KEY),
        "unknown_probe",
        "probe_id not in keys, though well signed with its own key.",
    )
    add("flipped tag bit", flip(good, len(good) - 1), "bad_signature", "Lowest bit of the last tag byte.")
    add(
        "flipped body bit",
        flip(good, len(good) - 35),
        "bad_signature",
        "Lowest bit of the body's last byte (the body still parses).",
    )
    add(
        "another probe's key",
        signed(envelope(), "probe-b"),
        "bad_signature",
        "probe-a's frame signed with probe-b's key.",
    )
    add(
        "signed as a 7-array",
        frame(envelope(), signed_header=0x97),
        "bad_signature",
        "The tag covers the 0x98 header as sent, not 0x97.",
    )

    # Element types and ranges (each correctly signed, so only the type is wrong).
    wrong: list[tuple[str, dict[str, Any]]] = [
        ("module_id as str", dict(module_id="1")),
        ("module_id -1", dict(module_id=-1)),
        ("module_id 65536", dict(module_id=65536)),
        ("module_id float", dict(module_id=1.0)),
        ("module_id ext", dict(module_id=Raw(b"\xd4\x01\x01"))),
        ("module_id nil", dict(module_id=None)),
        ("msg_type as int", dict(msg_type=1)),
        ("msg_type upper case", dict(msg_type="Conn")),
        ("msg_type empty", dict(msg_type="")),
        ("msg_type 65 chars", dict(msg_type="a" * 65)),
        ("msg_type as bin", dict(msg_type=b"conn")),
        ("msg_type bad utf-8", dict(msg_type=Raw(b"\xa2\xc3\x28"))),
        ("probe_id as bin", dict(probe_id=b"probe-a")),
        ("probe_id with a space", dict(probe_id="probe a")),
        ("probe_id empty", dict(probe_id="")),
        ("probe_id 65 chars", dict(probe_id="p" * 65)),
        ("probe_id as array", dict(probe_id=["probe-a"])),
    ]
    for name, kwargs in wrong:
        add(name, signed(envelope(**kwargs)), "malformed", "Wrong type or range in the envelope.")
    wrong_seq_ts: list[tuple[str, list[Any]]] = [
        ("seq 0", envelope(seq=0)),
        ("seq -1", envelope(seq=-1)),
        ("seq as str", envelope(seq="1")),
        ("seq as float", envelope(seq=1.0)),
        ("ts as int", envelope(ts=int(NOW))),
        ("ts as float32", envelope(ts=f32)),
        ("ts NaN", envelope(ts=math.nan)),
        ("ts infinite", envelope(ts=math.inf)),
        ("ts nil", envelope(ts=None)),
        ("body as str", envelope(body_bytes='[{"port": 443}]')),
        ("body as array", envelope(body_bytes=[{"port": 443}])),
        ("body ext", envelope(body_bytes=Raw(b"\xd5\x05ab"))),
    ]
    for name, elements in wrong_seq_ts:
        add(name, signed(elements), "malformed", "Wrong type or range in the envelope.")

    # Clock skew, against the file's "now".
    skew = LIMITS["max_skew_seconds"]
    add("stale (past)", signed(envelope(ts=NOW - skew - 1)), "stale", "ts 301 s before now.")
    add("stale (future)", signed(envelope(ts=NOW + skew + 1)), "stale", "ts 301 s after now.")

    # The body: the frame is fine, its batch is not.
    bodies = [
        ("body not an array", pack({"port": 443}), "A map, not an array of maps."),
        ("body item not a map", pack([{"port": 443}, 7]), "The second message is an int."),
        ("body int key", pack([{1: "x"}]), "Message keys are str."),
        ("body bin key", pack([{b"port": 443}]), "Message keys are str, not bin."),
        ("body too many messages", pack([{}] * (LIMITS["max_messages"] + 1)), "max_messages + 1."),
        ("body empty batch", pack([]), "A batch holds at least one message."),
        ("body trailing bytes", pack([{"port": 443}]) + b"\x00", "Bytes after the array."),
        ("body ext value", pack([{"v": msgpack.ExtType(5, b"ab")}]), "Ext types are never allowed."),
        ("body timestamp ext", pack([{"t": msgpack.Timestamp(1, 0)}]), "Not even the timestamp ext (-1)."),
        ("body not msgpack", b"\x91\xc1", "0xc1 is never used by msgpack."),
        ("body cut off", pack([{"port": 443}])[:-1], "The batch is cut short."),
        ("body empty", b"", "An empty bin."),
        ("body str too long", pack([{"s": "x" * (LIMITS["max_str_len"] + 1)}]), "max_str_len + 1."),
        ("body map too big", pack([{f"k{i}": i for i in range(LIMITS["max_map_len"] + 1)}]), "max_map_len + 1."),
        (
            "body nested array too long",
            pack([{"a": list(range(LIMITS["max_array_len"] + 1))}]),
            "max_array_len + 1 (applies inside messages).",
        ),
        ("body bad utf-8", b"\x91\x81\xa1x\xa1\xff", "A str value that is not UTF-8."),
    ]
    for name, body_bytes, note in bodies:
        add(name, signed(envelope(body_bytes=body_bytes)), "bad_body", note)
    return out


def sequences() -> list[dict[str, Any]]:
    """Replay: steps run against one fresh window of size replay_window, in order."""

    def rx(seq: int, result: str = "ok", ts: float = NOW, body_bytes: Any = None) -> dict[str, Any]:
        data = signed(envelope(seq=seq, ts=ts, body_bytes=body_bytes))
        return {"op": "receive", "seq": seq, "hex": data.hex(), "result": result}

    window = LIMITS["replay_window"]
    return [
        {
            "name": "duplicate",
            "note": "The same seq again, re-signed with a later ts: still a replay.",
            "steps": [rx(5), rx(5, "replay", ts=NOW + 1)],
        },
        {
            "name": "out of order inside the window",
            "note": "Late seqs are fine once; twice is a replay.",
            "steps": [rx(10), rx(8), rx(9), rx(8, "replay"), rx(11), rx(10, "replay")],
        },
        {
            "name": "too old",
            "note": f"With top 100 and a window of {window}, 100-{window - 1} is the oldest "
            "seq accepted; one below is refused though never seen.",
            "steps": [rx(100), rx(100 - window + 1), rx(100 - window, "replay")],
        },
        {
            "name": "forget and resend",
            "note": "The server could not store seq 7 and forgot it: the resend is accepted once.",
            "steps": [rx(7), {"op": "forget", "seq": 7}, rx(7), rx(7, "replay")],
        },
        {
            "name": "huge jump",
            "note": "From 1 to 2**64-1: the window slides all the way.",
            "steps": [rx(1), rx(2**64 - 1), rx(1, "replay"), rx(2**64 - 2)],
        },
        {
            "name": "a bad body consumes its seq",
            "note": "Replay is checked (and the seq marked) before "
            "the body is decoded: a frame dropped for bad_body must not be resent.",
            "steps": [rx(3, "bad_body", body_bytes=pack({"port": 443})), rx(3, "replay")],
        },
        {
            "name": "stale does not consume its seq",
            "note": "Skew is checked before replay: the probe "
            "re-signs with a fresh ts and the same seq, and that is accepted.",
            "steps": [rx(4, "stale", ts=NOW - 1000), rx(4)],
        },
    ]


def handshake() -> list[dict[str, Any]]:
    probe_id = "probe-a"
    key = KEYS[probe_id]
    client_nonce = bytes(range(32))
    server_nonce = bytes(range(32, 64))
    tail = probe_id.encode()
    return [
        {
            "name": "probe-a",
            "probe_id": probe_id,
            "key": key.hex(),
            "client_nonce": client_nonce.hex(),
            "server_nonce": server_nonce.hex(),
            "server_proof": mac(key, b"wiredraw-v1 server-auth" + client_nonce + server_nonce + tail).hex(),
            "probe_proof": mac(key, b"wiredraw-v1 probe-auth" + server_nonce + client_nonce + tail).hex(),
        }
    ]


def control_vectors() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    hs = handshake()[0]
    cn, sn = bytes.fromhex(hs["client_nonce"]), bytes.fromhex(hs["server_nonce"])
    sp, pp = bytes.fromhex(hs["server_proof"]), bytes.fromhex(hs["probe_proof"])
    valid_msgs: list[tuple[str, list[Any]]] = [
        ("hello", ["hello", 1, "probe-a", cn]),
        ("challenge", ["challenge", sn, sp]),
        ("auth", ["auth", pp]),
        ("welcome, nothing stored", ["welcome", 0]),
        ("welcome", ["welcome", 1_700_000_000_123_456]),
        ("ack", ["ack", 42]),
        ("ack, largest seq", ["ack", 2**64 - 1]),
        ("reject", ["reject", 43, "bad_body"]),
        ("error", ["error", "auth_failed", "authentication failed"]),
        ("error, empty text", ["error", "handshake_timeout", ""]),
    ]
    valid = [{"name": name, "hex": pack(msg).hex(), "expect": [json_value(v) for v in msg]} for name, msg in valid_msgs]
    bad = [
        ("empty", b"", "truncated"),
        ("cut off", pack(["ack", 42])[:-1], "truncated"),
        ("unknown kind", pack(["ping", 1]), "malformed"),
        ("kind as bin", pack([b"ack", 1]), "malformed"),
        ("hello version 2", pack(["hello", 2, "probe-a", cn]), "bad_version"),
        ("hello short nonce", pack(["hello", 1, "probe-a", cn[:31]]), "malformed"),
        ("hello bad probe_id", pack(["hello", 1, "probe a", cn]), "malformed"),
        ("hello nonce as str", pack(["hello", 1, "probe-a", "x" * 32]), "malformed"),
        ("auth extra field", pack(["auth", pp, 1]), "malformed"),
        ("challenge missing proof", pack(["challenge", sn]), "malformed"),
        ("welcome -1", pack(["welcome", -1]), "malformed"),
        ("ack 0", pack(["ack", 0]), "malformed"),
        ("ack true", pack(["ack", True]), "malformed"),
        ("reject bad reason", pack(["reject", 1, "Bad Body"]), "malformed"),
        ("error text too long", pack(["error", "unexpected", "x" * 1001]), "malformed"),
        ("not an array", pack("hello"), "malformed"),
        ("empty array", pack([]), "malformed"),
        ("map", pack({"ack": 1}), "malformed"),
        ("trailing bytes", pack(["ack", 42]) + b"\x00", "malformed"),
        ("a frame", signed(envelope()), "malformed"),
        ("ext", pack(["ack", msgpack.ExtType(1, b"x")]), "malformed"),
        ("oversized", pack(["error", "unexpected", "x" * CONTROL_MAX_BYTES]), "oversized"),
    ]
    invalid = [{"name": name, "hex": data.hex(), "reason": reason} for name, data, reason in bad]
    return valid, invalid


def stream_vectors() -> list[dict[str, Any]]:
    def prefixed(payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + payload

    one = signed(envelope())
    two = pack(["ack", 42])
    both = prefixed(one) + prefixed(two)
    max_payload = LIMITS["max_frame_bytes"]

    def vec(name: str, chunks: list[bytes], payloads: list[bytes], reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": name,
            "max_payload": max_payload,
            "chunks": [c.hex() for c in chunks],
            "payloads": [p.hex() for p in payloads],
        }
        if reason:
            out["reason"] = reason
        return out

    return [
        vec("two payloads in one chunk", [both], [one, two]),
        vec("byte by byte", [both[i : i + 1] for i in range(len(both))], [one, two]),
        vec("prefix split", [both[:2], both[2:7], both[7:]], [one, two]),
        vec("empty payload", [b"\x00\x00\x00\x00" + prefixed(two)], [b"", two]),
        vec("largest payload", [prefixed(b"\x00" * max_payload)], [b"\x00" * max_payload]),
        vec("oversized declared length", [prefixed(two), struct.pack(">I", max_payload + 1)], [two], "oversized"),
        vec("oversized, body never sent", [b"\xff\xff\xff\xff"], [], "oversized"),
    ]


def build() -> dict[str, Any]:
    control, control_invalid = control_vectors()
    return {
        "protocol": 1,
        "doc": "Vectors for wire protocol v1; the format of this file is described in spec/wire.md, "
        "section 'Test vectors'. Generated by make_wire_vectors.py: do not edit by hand.",
        "keys": {name: key.hex() for name, key in KEYS.items()},
        "now": NOW,
        "limits": LIMITS,
        "control_max_bytes": CONTROL_MAX_BYTES,
        "valid": valid_vectors(),
        "invalid": invalid_vectors(),
        "sequences": sequences(),
        "handshake": handshake(),
        "control": control,
        "control_invalid": control_invalid,
        "stream": stream_vectors(),
    }


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the file on disk")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print(f"{OUT}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
