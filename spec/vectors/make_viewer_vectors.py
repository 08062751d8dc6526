"""Generate spec/vectors/viewer-v1.json, the byte-exact vectors of viz protocol v1 (spec/viewer.md).

    python3 spec/vectors/make_viewer_vectors.py [--check]

Built with msgpack and struct directly, never importing wiredraw: the vectors say what the spec says.
tests/core/server/test_viz_protocol.py holds the implementation to them. Deterministic.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path
from typing import Any

import msgpack

OUT = Path(__file__).with_name("viewer-v1.json")
MAX_CLIENT_FRAME = 65536


def frame(obj: Any) -> str:
    body = msgpack.packb(obj, use_bin_type=True)
    return (struct.pack(">I", len(body)) + body).hex()


def raw(body: bytes) -> str:
    return (struct.pack(">I", len(body)) + body).hex()


NODE = {"id": "10.0.0.1", "kind": "host", "label": "ws1.example", "size": 1200.0, "category": "local",
        "group": "office", "first": 1541240000.0, "last": 1541240010.5, "attrs": {"bytes": 1200, "conns_out": 2}}
NODE2 = {"id": "192.0.2.7", "kind": "host", "label": "192.0.2.7", "size": 1200.0, "category": "remote",
         "group": "", "first": 1541240000.0, "last": 1541240010.5, "attrs": {"bytes": 1200, "conns_in": 2}}
EDGE = {"id": "10.0.0.1>192.0.2.7", "src": "10.0.0.1", "dst": "192.0.2.7", "directed": True, "weight": 1200.0,
        "category": "http", "label": "", "kind": "conn", "first": 1541240000.0, "last": 1541240010.5,
        "attrs": {"bytes": 1200, "conns": 2, "service": "http"}}


def build() -> dict[str, Any]:
    valid_client = {
        "hello": {"type": "hello", "version": 1, "token": "wdv_example-token"},
        "subscribe_live": {"type": "subscribe", "module": "net_zeek"},
        "subscribe_live_filtered": {"type": "subscribe", "module": 1, "mode": "live",
                                    "filter": 'service != "dns" and bytes > 10000'},
        "subscribe_at": {"type": "subscribe", "module": "net_zeek", "mode": "at", "t": 1541240000},
        "subscribe_play": {"type": "subscribe", "module": "net_zeek", "mode": "play", "t": 1541240000.5,
                           "speed": 60, "window": 120},
        "request_range": {"type": "request", "id": 1, "what": "range"},
        "request_histogram": {"type": "request", "id": 2, "what": "histogram", "from": 1541240000, "to": 1541243600,
                              "bins": 200},
        "request_details": {"type": "request", "id": 3, "what": "details", "element": "10.0.0.1>192.0.2.7"},
        "request_graph_at": {"type": "request", "id": 4, "what": "graph", "module": "net_zeek", "at": 1541240000},
        "request_graph_interval": {"type": "request", "id": 5, "what": "graph", "module": "net_zeek",
                                   "from": 1541240000, "to": 1541243600},
        "request_configure": {"type": "request", "id": 6, "what": "configure", "filter": "bytes > 10k"},
        "request_modules": {"type": "request", "id": 7, "what": "modules"},
    }
    valid_server = {
        "welcome": {"type": "welcome", "version": 1, "server": "wiredraw 0.4.0", "full_every": 30.0,
                    "modules": [{"id": 1, "slug": "net_zeek", "version": "0.4.0", "doc": "Zeek network logs",
                                 "node_kinds": ["host"], "edge_kinds": ["conn"]}]},
        "refused": {"type": "refused", "code": "bad_token", "reason": "viewer token refused"},
        "graph": {"type": "graph", "seq": 1, "module": "net_zeek", "mode": "live", "reason": "subscribe",
                  "t": 1541240010.5, "t0": 1541236410.5, "t1": 1541240010.5, "nodes": [NODE, NODE2], "edges": [EDGE]},
        "diff": {"type": "diff", "seq": 2, "t": 1541240011.0, "nodes": [], "edges": [dict(EDGE, weight=2400.0)],
                 "removed_nodes": [], "removed_edges": [],
                 "pulses": [{"target": EDGE["id"], "on": "edge", "meaning": "error", "t": 1541240011.0}]},
        "reply_ok": {"type": "reply", "id": 1, "ok": True, "result": {"first": 1541240000.0, "last": 1541240010.5}},
        "reply_error": {"type": "reply", "id": 3, "ok": False, "error": "no module 'nope' with a view"},
        "error": {"type": "error", "code": "bad_frame", "reason": "frame body is not msgpack", "fatal": True},
    }
    # Invalid frames a viewer might send, as the first message after a valid hello unless "first" is true.
    invalid = [
        {"name": "oversized_length", "hex": struct.pack(">I", MAX_CLIENT_FRAME + 1).hex(), "error": "too_large"},
        {"name": "not_msgpack", "hex": raw(b"\xc1"), "error": "bad_frame"},
        {"name": "array_body", "hex": frame(["hello", 1]), "error": "bad_frame"},
        {"name": "map_without_type", "hex": frame({"version": 1}), "error": "bad_frame"},
        {"name": "type_not_string", "hex": frame({"type": 7}), "error": "bad_frame"},
        {"name": "truncated_body", "hex": raw(b"\x82\xa4type"), "error": "bad_frame"},
        {"name": "hello_wrong_version", "first": True, "hex": frame({"type": "hello", "version": 2, "token": "x"}),
         "error": "version"},
        {"name": "hello_no_token", "first": True, "hex": frame({"type": "hello", "version": 1}),
         "error": "bad_message"},
        {"name": "request_before_hello", "first": True, "hex": frame({"type": "request", "id": 1, "what": "range"}),
         "error": "expected_hello"},
        {"name": "subscribe_bad_mode", "hex": frame({"type": "subscribe", "module": "net_zeek", "mode": "rewind"}),
         "error": "bad_message"},
        {"name": "subscribe_at_without_t", "hex": frame({"type": "subscribe", "module": "net_zeek", "mode": "at"}),
         "error": "bad_message"},
        {"name": "subscribe_no_module", "hex": frame({"type": "subscribe"}), "error": "bad_message"},
        {"name": "subscribe_negative_speed",
         "hex": frame({"type": "subscribe", "module": "net_zeek", "mode": "play", "t": 1, "speed": -1}),
         "error": "bad_message"},
        {"name": "request_without_id", "hex": frame({"type": "request", "what": "range"}), "error": "bad_message"},
        {"name": "request_unknown_what", "hex": frame({"type": "request", "id": 1, "what": "drop_tables"}),
         "error": "bad_message"},
        {"name": "unknown_type", "hex": frame({"type": "shutdown"}), "error": "bad_message"},
    ]
    return {
        "protocol": "wiredraw viz v1",
        "spec": "spec/viewer.md",
        "max_client_frame": MAX_CLIENT_FRAME,
        "valid_client": {k: {"hex": frame(v), "message": v} for k, v in valid_client.items()},
        "valid_server": {k: {"hex": frame(v), "message": v} for k, v in valid_server.items()},
        "invalid_client": invalid,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare with the file on disk")
    args = ap.parse_args()
    text = json.dumps(build(), indent=1, sort_keys=True) + "\n"
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("up to date" if same else f"{OUT} differs: run without --check")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
