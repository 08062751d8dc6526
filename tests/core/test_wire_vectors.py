"""Hold wiredraw.core.wire to the byte-exact vectors in spec/vectors/wire-v1.json (spec/wire.md)."""

from __future__ import annotations

import json
import re
import runpy
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from wiredraw.core.wire import (
    CONNECTION_ERRORS,
    CONTROL_KINDS,
    MAX_CONTROL_BYTES,
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
    probe_proof,
    server_proof,
)

GENERATOR = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "make_wire_vectors.py"


@cache
def vectors() -> dict[str, Any]:
    text = (files("wiredraw.spec") / "vectors" / "wire-v1.json").read_text(encoding="utf-8")
    return json.loads(text)


def limits() -> Limits:
    return Limits(**vectors()["limits"])


def key_for(probe_id: str) -> bytes | None:
    key = vectors()["keys"].get(probe_id)
    return bytes.fromhex(key) if key else None


def receive(data: bytes, window: ReplayWindow) -> list[dict[str, Any]]:
    """The server's check order for one frame (spec/wire.md, "Check order"), module checks aside."""
    lim = limits()
    frame = decode_frame(data, key_for, lim)
    check_skew(frame.ts, vectors()["now"], lim.max_skew_seconds)
    window.accept(frame.seq)
    return decode_body(frame.body, lim)


def by_name(section: str) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in vectors()[section]]


def from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"bin"}:
        return bytes.fromhex(value["bin"])
    return value


def test_vector_file_is_what_the_generator_makes() -> None:
    if not GENERATOR.exists():
        pytest.skip("generator not shipped with an installed package")
    namespace = runpy.run_path(str(GENERATOR))
    assert json.loads(namespace["render"]()) == vectors()


def test_vector_file_shape() -> None:
    v = vectors()
    assert v["protocol"] == 1
    assert v["control_max_bytes"] == MAX_CONTROL_BYTES
    for section in ("valid", "invalid", "sequences", "control", "control_invalid", "stream"):
        names = [x["name"] for x in v[section]]
        assert len(names) == len(set(names)), f"vector names are unique within {section}"
    assert {x["reason"] for x in v["invalid"]} <= set(REASONS)
    # Every reason the codec itself gives is exercised by at least one vector.
    codec_reasons = set(REASONS) - {"unknown_module", "unknown_message", "replay"}
    assert codec_reasons <= {x["reason"] for x in v["invalid"]}
    assert {m["expect"][0] for m in v["control"]} == set(CONTROL_KINDS)


@pytest.mark.parametrize("vector", by_name("valid"))
def test_valid_frame(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    expect = vector["expect"]
    key = key_for(expect["probe_id"])
    assert key is not None
    encoded = encode_frame(
        key,
        expect["module_id"],
        expect["msg_type"],
        expect["probe_id"],
        expect["seq"],
        expect["ts"],
        encode_body(expect["messages"]),
    )
    assert encoded.hex() == vector["hex"]
    assert is_frame(data)
    frame = decode_frame(data, key_for, limits())
    assert frame == Frame(
        1,
        expect["module_id"],
        expect["msg_type"],
        expect["probe_id"],
        expect["seq"],
        expect["ts"],
        encode_body(expect["messages"]),
    )
    assert receive(data, ReplayWindow(limits().replay_window)) == expect["messages"]


@pytest.mark.parametrize("vector", by_name("invalid"))
def test_invalid_frame(vector: dict[str, Any]) -> None:
    with pytest.raises(WireError) as info:
        receive(bytes.fromhex(vector["hex"]), ReplayWindow(limits().replay_window))
    assert info.value.reason == vector["reason"], str(info.value)


@pytest.mark.parametrize("vector", by_name("sequences"))
def test_sequence(vector: dict[str, Any]) -> None:
    window = ReplayWindow(limits().replay_window)
    for i, step in enumerate(vector["steps"]):
        if step["op"] == "forget":
            window.forget(step["seq"])
            continue
        assert step["op"] == "receive"
        try:
            receive(bytes.fromhex(step["hex"]), window)
            result = "ok"
        except WireError as exc:
            result = exc.reason
        assert result == step["result"], f"step {i}: seq {step['seq']}"


@pytest.mark.parametrize("vector", by_name("handshake"))
def test_handshake_proofs(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key"])
    client, server = bytes.fromhex(vector["client_nonce"]), bytes.fromhex(vector["server_nonce"])
    assert key == key_for(vector["probe_id"])
    assert server_proof(key, client, server, vector["probe_id"]).hex() == vector["server_proof"]
    assert probe_proof(key, client, server, vector["probe_id"]).hex() == vector["probe_proof"]


@pytest.mark.parametrize("vector", by_name("control"))
def test_valid_control(vector: dict[str, Any]) -> None:
    kind, *fields = [from_json(v) for v in vector["expect"]]
    data = bytes.fromhex(vector["hex"])
    assert encode_control(kind, *fields).hex() == vector["hex"]
    assert decode_control(data) == (kind, fields)
    assert not is_frame(data)


@pytest.mark.parametrize("vector", by_name("control_invalid"))
def test_invalid_control(vector: dict[str, Any]) -> None:
    with pytest.raises(WireError) as info:
        decode_control(bytes.fromhex(vector["hex"]))
    assert info.value.reason == vector["reason"], str(info.value)


@pytest.mark.parametrize("vector", by_name("stream"))
def test_stream(vector: dict[str, Any]) -> None:
    decoder = StreamDecoder(vector["max_payload"])
    got: list[bytes] = []
    reason = None
    try:
        for chunk in vector["chunks"]:
            got += decoder.feed(bytes.fromhex(chunk))
    except WireError as exc:
        reason = exc.reason
    assert [p.hex() for p in got] == vector["payloads"]
    assert reason == vector.get("reason")
    if reason is None:
        # Re-framing the payloads gives the stream back.
        stream = b"".join(frame_stream(p) for p in got)
        assert stream.hex() == "".join(vector["chunks"])


def test_spec_document_agrees() -> None:
    """spec/wire.md's worked example and reason tables match the vectors and the code."""
    text = (files("wiredraw.spec") / "wire.md").read_text(encoding="utf-8")
    minimal = next(v for v in vectors()["valid"] if v["name"] == "minimal")
    blocks = re.findall(r"```\n([0-9a-f\n]+)```", text)
    assert minimal["hex"] in ["".join(block.split()) for block in blocks]
    for reason in (*REASONS, *CONNECTION_ERRORS):
        assert f"`{reason}`" in text, reason
    for kind in CONTROL_KINDS:
        assert f'["{kind}"' in text, kind
