"""A module's message vectors: the JSON file of valid and invalid messages per message type.

Format (``vectors/<slug>-messages.json`` in the module's package, where ``wiredraw new-module`` puts it)::

    {
      "format": "wiredraw-module-vectors/1",
      "module": "<slug>",
      "doc": "...",
      "messages": {
        "<message type>": {
          "valid":   [{"doc": "...", "message": {...}}, ...],
          "invalid": [{"doc": "...", "message": ..., "reason": "missing field 'pid'"}, ...]
        }
      }
    }

A valid message must pass the declaration's check (``validate_message``), survive the wire body encoding
unchanged, and be taken by the module's server-side write path. An invalid one must be refused: ``reason`` is
a part of what ``validate_message`` says about it, and the server's write path must reject it without writing
anything. Values are JSON, with two tagged forms for what JSON cannot hold: ``{"$msgpack": value}`` is the bytes
of ``value`` packed by msgpack (bin for bytes, as a probe packs a record once, e.g. net_zeek's ``rec``) and
``{"$bin": "<hex>"}`` plain bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

FORMAT = "wiredraw-module-vectors/1"


class VectorFileError(ValueError):
    """A vectors file that cannot be read: names the file and what is wrong where."""


@dataclass(frozen=True)
class Vector:
    message_type: str
    message: Any  # usually a dict; an invalid one may be anything
    doc: str = ""
    reason: str | None = None  # invalid vectors: a part of validate_message's answer
    where: str = ""  # "<file>: messages.<type>.valid[<i>]", for failure messages

    def __str__(self) -> str:
        return f"{self.where} ({self.doc})" if self.doc else self.where


@dataclass(frozen=True)
class ModuleVectors:
    path: Path
    module: str
    valid: dict[str, list[Vector]] = field(default_factory=dict)  # message type -> vectors, file order
    invalid: dict[str, list[Vector]] = field(default_factory=dict)

    @property
    def types(self) -> list[str]:
        """Every message type the file has vectors for, in file order."""
        return list(dict.fromkeys([*self.valid, *self.invalid]))

    def all_valid(self) -> list[Vector]:
        return [v for vs in self.valid.values() for v in vs]

    def all_invalid(self) -> list[Vector]:
        return [v for vs in self.invalid.values() for v in vs]


def decode_value(value: Any, where: str = "") -> Any:
    """JSON value -> message value: ``{"$msgpack": v}`` and ``{"$bin": hex}`` become bytes, recursively."""
    if isinstance(value, dict):
        if len(value) == 1 and "$msgpack" in value:
            return msgpack.packb(decode_value(value["$msgpack"], where), use_bin_type=True)
        if len(value) == 1 and "$bin" in value:
            try:
                return bytes.fromhex(value["$bin"])
            except (TypeError, ValueError) as exc:
                raise VectorFileError(f"{where}: $bin expected hex digits, got {value['$bin']!r}") from exc
        return {k: decode_value(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v, where) for v in value]
    return value


def load_vectors(path: Path | str) -> ModuleVectors:
    """Read and check the shape of a vectors file (not its content: that is the conformance suite's job)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VectorFileError(f"{path}: cannot read message vectors: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        got = raw.get("format") if isinstance(raw, dict) else raw
        raise VectorFileError(f"{path}: format expected {FORMAT!r}, got {got!r}")
    messages = raw.get("messages")
    if not isinstance(messages, dict):
        raise VectorFileError(f"{path}: messages expected a map of message type -> vectors, got {messages!r}")
    out = ModuleVectors(path, str(raw.get("module", "")))
    for mtype, entry in messages.items():
        if not isinstance(entry, dict) or set(entry) - {"valid", "invalid", "doc"}:
            raise VectorFileError(f"{path}: messages.{mtype}: expected a map with 'valid' and 'invalid', got {entry!r}")
        for kind, into in (("valid", out.valid), ("invalid", out.invalid)):
            items = entry.get(kind, [])
            if not isinstance(items, list):
                raise VectorFileError(f"{path}: messages.{mtype}.{kind}: expected a list, got {items!r}")
            vectors = into.setdefault(mtype, [])
            for i, item in enumerate(items):
                where = f"{path.name}: messages.{mtype}.{kind}[{i}]"
                if not isinstance(item, dict) or "message" not in item:
                    raise VectorFileError(f"{where}: expected a map with 'message', got {item!r}")
                reason = item.get("reason")
                if kind == "invalid" and not (isinstance(reason, str) and reason):
                    raise VectorFileError(f"{where}: an invalid vector needs the 'reason' it is refused for")
                vectors.append(Vector(mtype, decode_value(item["message"], where), str(item.get("doc", "")),
                                      reason if kind == "invalid" else None, where))
    return out
