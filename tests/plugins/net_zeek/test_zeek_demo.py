"""net_zeek's demo traffic: a small office's Zeek logs that our own parser reads cleanly and that tell the
story the demo promises (DNS before HTTP/TLS, failing requests, a long SSH session, a scan)."""

from __future__ import annotations

from wiredraw.plugins.net_zeek.demo import ADMIN, BASTION, SCANNER, OfficeTraffic
from wiredraw.plugins.net_zeek.module import NetZeekModule
from wiredraw.plugins.net_zeek.parser import read_log

T0 = 1_700_000_000.0


def test_office_logs_parse_cleanly_and_tell_the_story(tmp_path):
    traffic = OfficeTraffic(tmp_path / "current", seed=3)
    for i in range(90):
        traffic.step(T0 + i)
    logs = {f.name.split(".")[0]: read_log(f) for f in (tmp_path / "current").glob("*.log")}
    assert {"conn", "dns", "http", "ssl", "ssh", "notice"} <= set(logs)
    for name, lf in logs.items():
        assert lf.bad_count == 0, (name, lf.bad[:3])
        assert lf.records, name
    conns = [r.fields for r in logs["conn"].records]
    # every DNS answer is looked up before the connection to it starts
    first_lookup = {}
    for r in logs["dns"].records:
        for a in r.fields["answers"]:
            first_lookup[a] = min(first_lookup.get(a, r.ts), r.ts)
    web = [c for c in conns if c.get("service") in ("http", "ssl")]
    assert web and all(first_lookup[c["id.resp_h"]] <= c["ts"] for c in web)
    statuses = {r.fields["status_code"] for r in logs["http"].records}
    assert 200 in statuses and statuses & {403, 404, 500, 503}
    ssh = [c for c in conns if c.get("service") == "ssh"]
    assert [(c["id.orig_h"], c["id.resp_h"], c["duration"]) for c in ssh] == [(ADMIN, BASTION, 3600.0)]
    scans = [c for c in conns if c["id.orig_h"] == SCANNER]
    assert len(scans) >= 40 and {c["conn_state"] for c in scans} <= {"REJ", "S0"}
    assert any(r.fields["note"] == "Scan::Port_Scan" for r in logs["notice"].records)


def test_the_demo_source_is_the_real_live_directory_probe(tmp_path):
    demo = NetZeekModule().make_demo(tmp_path)
    assert demo is not None
    demo.step(T0 + 30)
    messages = demo.source.poll(100_000)
    assert messages and {m for m, _ in messages} == {"log"}
    assert {body["path"] for _, body in messages} >= {"conn", "dns"}
