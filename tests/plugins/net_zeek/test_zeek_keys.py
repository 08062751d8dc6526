"""net_zeek's key schema, applied by ingest.lua inside a real redis-server."""

from __future__ import annotations

import time
from pathlib import Path

import helpers
import msgpack
import pytest
from wiredraw.core.module import Body, IngestContext, WriteBatch
from wiredraw.plugins.net_zeek.module import NetZeekModule
from wiredraw.plugins.net_zeek.query import active, conn_probes, host_probes
from wiredraw.plugins.net_zeek.schema import INGEST_LUA, parse_ingest_reply

PACK = msgpack.Packer(use_bin_type=False)  # what a probe of a bin_as_str module sends
T0 = 1_541_240_000.0


def msg(path, rec):
    m = {"path": path, "ts": rec.get("ts"), "rec": msgpack.packb(rec)}
    if rec.get("uid") is not None:
        m["uid"] = rec["uid"]
    return m


def conn(uid, ts, duration=1.0, orig="10.0.0.1", resp="192.0.2.7", ob=100, rb=900, service="http"):
    return {"ts": ts, "uid": uid, "id.orig_h": orig, "id.orig_p": 50000, "id.resp_h": resp, "id.resp_p": 80,
            "proto": "tcp", "service": service, "duration": duration, "orig_bytes": ob, "resp_bytes": rb,
            "conn_state": "SF", "missed_bytes": None}


@pytest.fixture
def ingest(redis_client):
    sha = redis_client.script_load(INGEST_LUA)
    module = NetZeekModule()
    assert [sha] == [script.sha for script in module.scripts]

    def run(messages, probe="s1", body=None):
        batch = WriteBatch(module.spec)
        packed = Body(body or PACK.pack(messages), module.spec.messages["log"])
        module.write(IngestContext(probe, "log", time.time()), packed, batch)
        (command,) = batch.commands
        reply = redis_client.execute_command(*command)
        return batch.reply_handlers[0][1](reply)

    return run


def keyspace_events(redis_client, action):
    """Every keyspace notification on net_zeek keys while ``action`` runs."""
    return helpers.keyspace_events(redis_client, action, "wd:net_zeek:*")


def test_conn_and_details_are_stored_with_indexes(ingest, redis_client):
    c = conn("C1", T0, duration=30.0)
    dns = {"ts": T0 - 1, "uid": "C0", "query": "www.example.com", "answers": ["192.0.2.7", "alias.example.com"]}
    http = {"ts": T0 + 1, "uid": "C1", "method": "GET", "status_code": 200, "host": "www.example.com"}
    counts = ingest([msg("conn", c), msg("dns", dns), msg("http", http)])
    assert (counts.records, counts.written, counts.repeats, counts.rejected) == (3, 3, 0, {})
    assert msgpack.unpackb(redis_client.get("wd:net_zeek:conn:C1")) == c  # the probe's packed record, as sent
    details = redis_client.hgetall("wd:net_zeek:uid:C1")
    (field,) = [f for f in details if b"@" not in f]
    assert field.startswith(b"http:") and msgpack.unpackb(details[field]) == http
    assert details[field + b"@s1"] == b"1"
    assert conn_probes(redis_client, "C1", T0) == {"s1"}
    assert host_probes(redis_client, "10.0.0.1") == {"s1"}
    assert redis_client.zscore("wd:net_zeek:hosts", "192.0.2.7") == T0
    assert redis_client.zrange("wd:net_zeek:names:192.0.2.7", 0, -1) == [b"www.example.com"]
    assert redis_client.hgetall(f"wd:net_zeek:hist:{int(T0 // 60)}") == {b"conns": b"1", b"bytes": b"1000"}
    span = redis_client.hgetall("wd:net_zeek:span")
    assert float(span[b"first"]) == T0 - 1 and float(span[b"last"]) == T0 + 30
    for key in ("conn:C1", "uid:C1", f"hist:{int(T0 // 60)}", "names:192.0.2.7"):
        assert 0 < redis_client.ttl(f"wd:net_zeek:{key}") <= 7 * 86400  # history has the retention TTL
    assert redis_client.ttl("wd:net_zeek:hostprobes") == -1  # current state has none
    assert 0 < redis_client.ttl(f"wd:net_zeek:connprobes:{int(T0 // 3600)}") <= 7 * 86400


def test_same_record_same_probe_twice_changes_and_notifies_nothing(ingest, redis_client):
    batch = [msg("conn", conn("C1", T0)), msg("dns", {"ts": T0, "uid": "C1", "query": "a", "answers": ["192.0.2.7"]}),
             msg("weird", {"ts": T0, "name": "bad_TCP_checksum"})]
    ingest(batch)
    before = {k: redis_client.dump(k) for k in redis_client.keys("*")}
    events = keyspace_events(redis_client, lambda: ingest(batch))
    assert events == []
    assert {k: redis_client.dump(k) for k in redis_client.keys("*")} == before
    counts = ingest(batch)
    assert (counts.written, counts.repeats) == (0, 3)


def test_two_probes_are_both_recorded(ingest, redis_client):
    batch = [msg("conn", conn("C1", T0)), msg("http", {"ts": T0, "uid": "C1", "status_code": 404})]
    ingest(batch, probe="s1")
    events = keyspace_events(redis_client, lambda: ingest(batch, probe="s2"))
    assert conn_probes(redis_client, "C1", T0) == {"s1", "s2"}
    fields = redis_client.hkeys("wd:net_zeek:uid:C1")
    assert sum(f.endswith(b"@s1") for f in fields) == 1 and sum(f.endswith(b"@s2") for f in fields) == 1
    assert host_probes(redis_client, "192.0.2.7") == {"s1", "s2"}
    # the record itself is not rewritten and the histogram not counted twice
    assert ("wd:net_zeek:conn:C1", "set") not in events
    assert redis_client.hget(f"wd:net_zeek:hist:{int(T0 // 60)}", "conns") == b"1"


def test_detail_before_its_conn_is_kept_and_found_through_it(ingest, redis_client):
    ingest([msg("ssl", {"ts": T0, "uid": "C9", "server_name": "example.org"})])
    assert redis_client.get("wd:net_zeek:conn:C9") is None
    assert redis_client.hlen("wd:net_zeek:uid:C9") == 2
    ingest([msg("conn", conn("C9", T0 - 5, duration=10))])
    details = redis_client.hgetall("wd:net_zeek:uid:C9")
    (record,) = [v for f, v in details.items() if f.startswith(b"ssl:") and b"@" not in f]
    assert msgpack.unpackb(record)["server_name"] == "example.org"


def test_x509_and_files_link_without_uid(ingest, redis_client):
    ingest([msg("x509", {"ts": T0, "id": "FabC", "certificate.subject": "CN=example"}),
            msg("x509", {"ts": T0, "fingerprint": "ab12", "certificate.subject": "CN=other"}),
            msg("files", {"ts": T0, "fuid": "F1", "conn_uids": ["C1", "C2"], "mime_type": "text/html"}),
            msg("software", {"ts": T0, "host": "10.0.0.1", "name": "curl"})])
    assert redis_client.hlen("wd:net_zeek:cert:FabC") == 2 and redis_client.hlen("wd:net_zeek:cert:ab12") == 2
    assert redis_client.hlen("wd:net_zeek:uid:C1") == 2 and redis_client.hlen("wd:net_zeek:uid:C2") == 2
    assert redis_client.hlen(f"wd:net_zeek:log:software:{int(T0 // 600)}") == 2


def test_long_connection_active_at_every_point_at_bounded_cost(ingest, redis_client):
    hours = 24
    long = conn("LONG", T0, duration=hours * 3600.0)
    # busy background: many short connections spread over the same day
    short = [msg("conn", conn(f"S{i}", T0 + i * 60.0, duration=2.0)) for i in range(hours * 60)]
    ingest([msg("conn", long)] + short)
    costs = []
    for h in range(hours + 1):
        t = T0 + h * 3600.0
        found, examined = active(redis_client, t)
        assert "LONG" in {c.uid for c in found}, f"the 24 h connection is missing at +{h} h"
        costs.append(examined)
    assert max(costs) <= 10, costs  # a point query reads 2 buckets per level, not the day's connections
    found, _ = active(redis_client, T0 + hours * 3600.0 + 1)
    assert "LONG" not in {c.uid for c in found}
    found, _ = active(redis_client, T0 + 600, T0 + 720)
    assert {c.uid for c in found} == {"LONG", "S10", "S11", "S12"}


def test_bad_messages_are_counted_and_the_rest_stored(ingest, redis_client):
    good = msg("conn", conn("C1", T0))
    counts = ingest([{"path": 5}, {"path": "conn", "ts": T0, "rec": msgpack.packb(conn("C2", T0)), "uid": 7},
                     {"path": "conn", "ts": "yesterday", "rec": b"x"},
                     {"path": "conn", "rec": b"\xc1", "uid": "C3", "ts": T0},
                     {"path": "dns", "rec": msgpack.packb({"query": "a"})}, "not a map", good])
    assert counts.records == 7 and counts.written == 1
    assert sum(counts.rejected.values()) == 6, counts.rejected
    assert redis_client.exists("wd:net_zeek:conn:C1")
    garbage = ingest([], body=b"\xc1\xc1 not msgpack")
    assert garbage.rejected == {"body is not a msgpack array": 1} and garbage.written == 0


def test_reply_parser():
    counts = parse_ingest_reply([5, 3, 1, 1, b"why", 1])
    assert (counts.records, counts.written, counts.repeats, counts.rejected) == (5, 3, 1, {"why": 1})


def test_a_growing_connection_is_updated_and_reindexed(ingest, redis_client):
    ingest([msg("open_conn", conn("LONG", T0, duration=3600.0, ob=10, rb=10))])
    events = keyspace_events(redis_client, lambda: ingest([msg("open_conn", conn("LONG", T0, duration=3600.0,
                                                                                  ob=10, rb=10))]))
    assert events == []  # the same report again is no change
    ingest([msg("open_conn", conn("LONG", T0, duration=7200.0, ob=50, rb=50))])
    ingest([msg("conn", conn("LONG", T0, duration=9000.0, ob=100, rb=100))])
    ingest([msg("open_conn", conn("LONG", T0, duration=3600.0, ob=10, rb=10))])  # a late, shorter report
    assert msgpack.unpackb(redis_client.get("wd:net_zeek:conn:LONG"))["duration"] == 9000.0
    found, _ = active(redis_client, T0 + 8999)
    assert [c.uid for c in found] == ["LONG"] and found[0].end == T0 + 9000
    # each longer report added an entry; a point query returns the connection once, with its latest end
    found, _ = active(redis_client, T0 + 100)
    assert [(c.uid, c.end) for c in found] == [("LONG", T0 + 9000)]
    found, _ = active(redis_client, T0 + 9001)
    assert found == []
    assert redis_client.hgetall(f"wd:net_zeek:hist:{int(T0 // 60)}") == {b"conns": b"1", b"bytes": b"200"}


DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "zeek"


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real Zeek data not found at {DATA} (../shared/data)")
def test_real_day_long_ssh_session_is_active_at_every_point(ingest, redis_client):
    """rita_missing_host: an SSH session open all day appears only in the hourly open_conn logs."""
    from wiredraw.plugins.net_zeek.parser import read_log
    from wiredraw.plugins.net_zeek.schema import record_message

    day = DATA / "tsv" / "rita_missing_host" / "2024-04-19"
    files = sorted(day.glob("open_conn.*.log.gz")) + sorted(day.glob("conn.*.log.gz"))
    longest: dict[str, tuple[float, float]] = {}
    for path in files:
        records = read_log(path).records
        for i in range(0, len(records), 500):
            ingest([record_message(r) for r in records[i:i + 500]])
        for r in records:
            d = r.fields.get("duration") or 0.0
            if r.uid and d > longest.get(r.uid, (0.0, 0.0))[1]:
                longest[r.uid] = (r.ts, d)
    uid, (start, duration) = max(longest.items(), key=lambda kv: kv[1][1])
    assert duration > 20 * 3600, f"expected a connection of many hours, longest is {duration} s"
    costs = []
    t = start
    while t <= start + duration:
        found, examined = active(redis_client, t)
        assert uid in {c.uid for c in found}, f"{uid} not active at {t}"
        costs.append(examined)
        t += 1800
    # what a point query examines is bounded by what starts near t, never by the session's length
    found, examined_all = active(redis_client, start, start + duration)
    busiest = max(costs)
    print(f"point queries examined at most {busiest} index entries; the whole interval {examined_all}")
    assert busiest < examined_all / 4, (busiest, examined_all)
