"""Cutting messages into bodies (msgpack arrays of messages), shared by the probe runner and the
server's HTTP collector so both hand a module the same bodies."""

from __future__ import annotations

from typing import Any

import msgpack


class Batcher:
    """Cuts (type, message) pairs into bodies: one message type per frame, at most ``max_records``
    messages and ``max_bytes`` packed bytes each. Each message is packed once, never re-encoded."""

    def __init__(self, max_records: int, max_bytes: int, bin_as_str: bool = False):
        self.max_records, self.max_bytes = max_records, max_bytes
        # A module whose bodies are applied by Redis Lua packs bytes as str (cmsgpack has no bin type).
        self.packer = msgpack.Packer(use_bin_type=not bin_as_str)
        self.too_big = 0

    def batches(self, messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, bytes, int]]:
        out: list[tuple[str, bytes, int]] = []
        kind: str | None = None
        parts: list[bytes] = []
        size = 0

        def close() -> None:
            if parts and kind is not None:
                out.append((kind, self.packer.pack_array_header(len(parts)) + b"".join(parts), len(parts)))

        for mtype, msg in messages:
            packed = self.packer.pack(msg)
            if len(packed) + 5 > self.max_bytes:
                self.too_big += 1  # cannot fit in any frame: counted, reported in the summary
                continue
            if mtype != kind or len(parts) >= self.max_records or size + len(packed) + 5 > self.max_bytes:
                close()
                kind, parts, size = mtype, [], 0
            parts.append(packed)
            size += len(packed)
        close()
        return out
