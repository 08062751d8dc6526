"""One conn facts rule, two implementations: ingest.lua (inside Redis, for the change feed) and query.py (Python, for
stored records) must agree record by record; and ingest.lua's interval index follows core/interval.py's geometry.

Every record goes through the real write path (NetZeekModule.write, EVALSHA of ingest.lua in the tests' redis-server);
then what Lua stored (the feed's nine values, the index entry, the histogram) is compared with what the Python rule
computes from the stored record: real conn records from ../shared/data/zeek and edge cases built here."""

from __future__ import annotations

import math
from collections import Counter
from importlib.resources import files
from pathlib import Path
from typing import Any

import msgpack
import pytest
from viz_store import DATA, PACK, Ingester
from wiredraw.core.interval import DEFAULT_INDEX, IntervalIndex
from wiredraw.plugins.net_zeek.parser import read_log
from wiredraw.plugins.net_zeek.query import (
    FEED_KEY,
    PREFIX,
    ConnFacts,
    LongerConn,
    active,
    conn_fact_values,
    conn_facts,
    decode_feed,
    lua_tonumber,
    unpack_record,
)
from wiredraw.plugins.net_zeek.schema import INDEX, INGEST, INGEST_LUA, record_message

T0 = 1_541_240_000.0
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real Zeek data not found at {DATA} (../shared/data)")


@pytest.fixture
def ingest(redis_client):
    return Ingester(redis_client)


def conn_msg(uid: str, rec: dict[str, Any], ts: float = T0) -> dict[str, Any]:
    """The wire message of a conn record built here (strings may carry non-UTF-8 bytes, as the parser keeps them)."""
    return {"path": "conn", "ts": ts, "uid": uid, "rec": msgpack.packb(rec, unicode_errors="surrogateescape")}


def base(**fields: Any) -> dict[str, Any]:
    rec = {"ts": T0, "uid": "-", "id.orig_h": "10.0.0.1", "id.orig_p": 50000, "id.resp_h": "192.0.2.7",
           "id.resp_p": 443, "proto": "tcp", "service": "ssl", "duration": 12.5, "orig_bytes": 1200,
           "resp_bytes": 48000, "conn_state": "SF"}
    rec.update(fields)
    return {k: v for k, v in rec.items() if v is not ABSENT}


ABSENT = object()  # a field left out of the record (the parser gives None for Zeek's unset '-')

# Fields of the rule, each unset ('-': None) and absent in turn, then values of the wrong kind, zero and absent
# durations, IPv6, huge and odd numbers (a uint64 past 2^63, 2^53, 1e300, numeric strings), non-UTF-8 strings.
EDGE_CASES: dict[str, dict[str, Any]] = {
    **{f"unset {f}": {f: None} for f in ("ts", "duration", "id.orig_h", "id.resp_h", "id.resp_p", "proto", "service",
                                         "orig_bytes", "resp_bytes")},
    **{f"absent {f}": {f: ABSENT} for f in ("ts", "duration", "id.resp_p", "proto", "service", "orig_bytes",
                                            "resp_bytes")},
    "no bytes at all": {"orig_bytes": None, "resp_bytes": ABSENT},
    "zero duration": {"duration": 0.0},
    "negative duration": {"duration": -3.0},
    "integral duration": {"duration": 7},
    "sub-microsecond duration": {"duration": 1e-7},
    "long duration": {"duration": 40 * 86400.0},
    "duration past the last level": {"duration": 1e15},
    "huge duration": {"duration": 1e300},
    "duration past 2^53": {"duration": 2.0**70},
    "duration a numeric string": {"duration": "2.5"},
    "duration a hex string": {"duration": "0x10"},
    "duration with blanks": {"duration": " 3 "},
    "duration inf string": {"duration": "inf"},
    "duration nan string": {"duration": "nan"},
    "duration not a number": {"duration": "abc"},
    "duration a bool": {"duration": True},
    "duration a list": {"duration": [1, 2]},
    "ipv6": {"id.orig_h": "2001:db8::1", "id.resp_h": "fe80::208:2ff:fe36:a0bf", "proto": "udp", "service": "dns"},
    "icmp": {"proto": "icmp", "id.orig_p": 8, "id.resp_p": 0, "service": None},
    "same host both ends": {"id.resp_h": "10.0.0.1"},
    "empty addresses": {"id.orig_h": ""},
    "address not a string": {"id.resp_h": 3232235777},
    "empty proto and service": {"proto": "", "service": ""},
    "non-UTF-8 service": {"service": "ssl\udcff\udcfe"},
    "port a float": {"id.resp_p": 80.0},
    "port a fraction": {"id.resp_p": 80.5},
    "port a string": {"id.resp_p": "80"},
    "port past 2^63": {"id.resp_p": 2**64 - 1},
    "ts an integer": {"ts": 1_541_240_007},
    "ts a string": {"ts": "1541240000"},
    "ts past 2^53": {"ts": 1e19},
    "bytes 2^53 - 1": {"orig_bytes": 2**53 - 1, "resp_bytes": 1},
    "bytes past 2^53": {"orig_bytes": 2**53 + 1, "resp_bytes": 0},
    "bytes past 2^63": {"orig_bytes": 2**63 + 5, "resp_bytes": 2**64 - 1},
    "bytes a fraction": {"orig_bytes": 1.5, "resp_bytes": 1},
    "bytes numeric strings": {"orig_bytes": "12", "resp_bytes": "1e3"},
    "bytes negative": {"orig_bytes": -5, "resp_bytes": 10},
    "bytes 1e300": {"orig_bytes": 1e300, "resp_bytes": 1e300},
}


def lua_equal(lua: Any, py: Any) -> bool:
    """A value as Lua wrote it to the feed (false: unset) against the Python rule's (None: unset); numbers by value
    (Lua writes an integral double as an int), NaN equal to NaN."""
    if lua is False:
        lua = None
    if isinstance(lua, float) and isinstance(py, float) and math.isnan(lua) and math.isnan(py):
        return True
    return lua == py and (lua is None) == (py is None) and isinstance(lua, str) == isinstance(py, str)


def feed_conns(redis_client) -> dict[str, tuple[str, list[Any], Any]]:
    """uid -> (tag, the nine values after it as Lua wrote them, the decoded change or None), over the whole feed."""
    out: dict[str, tuple[str, list[Any], Any]] = {}
    for _, fields in redis_client.xrange(FEED_KEY):
        flat = unpack_record(fields[b"c"])
        decoded = [c for c in decode_feed(fields[b"c"]).changes if isinstance(c, (ConnFacts, LongerConn))]
        by_uid = {(c.facts if isinstance(c, LongerConn) else c).uid: c for c in decoded}
        i = 3
        while i < len(flat):
            tag = flat[i]
            arity = {"c": 9, "u": 10, "h": 3, "n": 3, "w": 4}[tag]
            if tag in ("c", "u"):
                uid = flat[i + 1]
                out[uid] = (tag, flat[i + 2 : i + 1 + arity], by_uid.get(uid))
            i += 1 + arity
    return out


def held(ts: float, duration: float) -> tuple[str, str]:
    """An index entry's interval as ingest.lua writes it (to the microsecond; a negative duration counts 0)."""
    return f"{ts:.6f}", f"{ts + max(duration, 0.0):.6f}"


def place_held(index: IntervalIndex, ts: float, duration: float) -> tuple[int, int]:
    """(level, bucket) of the interval an index entry holds: where ingest.lua puts it."""
    start, end = (float(x) for x in held(ts, duration))
    return index.place(start, end - start)


def check_agreement(redis_client, messages: list[dict[str, Any]]) -> int:
    """For every conn message (each with its own uid) written by ingest.lua: the feed's values equal the Python rule's
    from the stored record, the decoded change equals conn_facts of it, the index entry sits where core/interval puts
    it, and the histogram counts the rule's bytes. Returns how many records had facts."""
    feed = feed_conns(redis_client)
    hist: dict[int, float] = {}  # summed as Lua sums them: doubles, in message order
    conns: Counter[int] = Counter()
    with_facts = 0
    for m in messages:
        uid, ts = m["uid"], m["ts"]
        rec = unpack_record(redis_client.get(f"{PREFIX}conn:{uid}"))
        tag, lua_values, decoded = feed[uid]
        assert tag == "c"
        py_values = conn_fact_values(rec, ts)
        assert len(lua_values) == len(py_values) == 8
        assert all(lua_equal(a, b) for a, b in zip(lua_values, py_values, strict=True)), (uid, lua_values, py_values)
        facts = conn_facts(uid, rec, ts)
        assert decoded == facts, (uid, decoded, facts)
        with_facts += facts is not None
        # the interval index: the interval as the rule gives it, in the bucket core/interval names
        start, end = held(ts, py_values[1])
        k, b = place_held(INDEX, ts, py_values[1])
        entries = redis_client.get(f"{PREFIX}ix:{k}:{b}") or b""
        assert f"{start}|{end}|{uid}\n".encode() in entries, (uid, k, b)
        chunk = math.floor(ts / 60)
        conns[chunk] += 1
        if py_values[7] == math.floor(py_values[7]):  # the histogram takes whole byte counts only
            hist[chunk] = hist.get(chunk, 0.0) + py_values[7]
    for chunk, n in conns.items():
        stored = redis_client.hgetall(f"{PREFIX}hist:{chunk}")
        assert int(stored[b"conns"]) == n
        assert int(stored.get(b"bytes", b"0")) == int(hist.get(chunk, 0.0)), chunk
    return with_facts


# --- the rule on edge cases ----------------------------------------------------------------------------------


def test_lua_and_python_agree_on_edge_case_records(ingest, redis_client):
    messages = [conn_msg(f"E{i}", base(**fields)) for i, fields in enumerate(EDGE_CASES.values())]
    messages.append(conn_msg("E-late-ts", base(ts=T0 + 5), ts=T0 + 5))
    counts = ingest(messages)
    assert (counts.written, counts.rejected) == (len(messages), {})  # no bogus number fails the batch
    with_facts = check_agreement(redis_client, messages)
    assert with_facts == len(messages) - 4  # an unset, empty or non-string address: no facts, by both


def test_the_facts_of_edge_cases_are_what_the_rule_says():
    """A few cases spelled out (the agreement test shows Lua does the same)."""

    def facts(**fields: Any) -> ConnFacts | None:
        return conn_facts("C", base(**fields), T0 + 1)

    plain = facts()
    assert plain == ConnFacts("C", T0, 12.5, "10.0.0.1", "192.0.2.7", 443, "tcp", "ssl", 49200)
    assert facts(ts=None).start == facts(ts="x").start == facts(ts=1e19).start == T0 + 1  # the message's ts
    assert facts(duration=None).duration == facts(duration="nan").duration == facts(duration=2.0**70).duration == 0
    assert facts(duration="0x10").duration == 16.0 and facts(duration=" 3 ").duration == 3.0
    assert facts(orig_bytes=None).bytes == 48000 and facts(orig_bytes=None, resp_bytes=ABSENT).bytes == 0
    assert facts(orig_bytes=2**64 - 1, resp_bytes=0).bytes == -1  # Redis reads a uint64 past 2^63 as negative
    assert facts(**{"id.resp_p": 80.0}).port == 80 and facts(**{"id.resp_p": "80"}).port is None
    assert facts(proto="", service=None)[6:8] == (None, None)
    assert facts(**{"id.orig_h": None}) is None and facts(**{"id.resp_h": ""}) is None


def test_lua_tonumber_reads_strings_as_lua_does():
    for text, value in [("1.5", 1.5), (" 2 ", 2.0), ("0x10", 16.0), ("-0x1p4", -16.0), ("1e3", 1000.0), (".5", 0.5),
                        ("5.", 5.0), ("INF", math.inf), ("-infinity", -math.inf), ("7\x00junk", 7.0)]:
        assert lua_tonumber(text) == value, text
    assert math.isnan(lua_tonumber("nan") or 0.0)
    for text in ("", " ", "abc", "1e", "1_000", "0x", "1 2", "--1"):
        assert lua_tonumber(text) is None, text
    assert lua_tonumber(True) is None and lua_tonumber(None) is None and lua_tonumber([1]) is None


def test_a_longer_report_gives_the_facts_of_the_new_record_and_the_bytes_of_the_old(ingest, redis_client):
    first = base(duration=60.0, orig_bytes=10, resp_bytes=None)
    longer = base(duration=3600.0, orig_bytes="500", resp_bytes=2**53 + 1)
    ingest([conn_msg("L1", first)])
    ingest([{**conn_msg("L1", longer), "path": "open_conn"}])
    ((_, entry),) = [(eid, decode_feed(f[b"c"])) for eid, f in redis_client.xrange(FEED_KEY)][1:]
    (change,) = entry.changes
    assert change == LongerConn(conn_facts("L1", longer, T0), conn_facts("L1", first, T0).bytes)


# --- the rule on real records ----------------------------------------------------------------------------------


def real_conn_files() -> list[Path]:
    tsv, json = DATA / "tsv", DATA / "json"
    return [
        *sorted((tsv / "zeek_btest_v3.2.4").glob("*/conn*.log")),  # tunnels, IPv6, ICMP, a 24 h FDDI conn log
        tsv / "rita_proxy_rolling" / "conn.15:00:00-16:00:00.log.gz",  # IPv6, a _node_name column
        tsv / "rita_open_conns" / "open" / "conn.log",
        tsv / "rita_open_conns" / "open" / "open_conn.log",  # long connections still open
        tsv / "rita_edgecases" / "truncated_conn.log",  # cut mid-row
        json / "rita_json_with_all_fields" / "conn.log",
        json / "rita_json_with_all_fields" / "open_conn.log",
        tsv / "zui_sample" / "sample.zeektsv",  # several #path blocks in one file
    ]


@needs_data
def test_lua_and_python_agree_on_real_conn_records(ingest, redis_client):
    messages = []
    for n, path in enumerate(real_conn_files()):
        for record in read_log(path).records:
            if record.path in ("conn", "open_conn") and record.uid is not None and record.ts is not None:
                m = record_message(record)
                m["uid"] = f"{record.uid}-{n}-{len(messages)}"  # uids recur (btest dirs, open_conn): each a new one
                messages.append(m)
    assert len(messages) > 2000
    for i in range(0, len(messages), 500):
        counts = ingest(messages[i : i + 500])
        assert counts.rejected == {}
    assert check_agreement(redis_client, messages) > 2000
    assert any(":" in m for _, values, _ in feed_conns(redis_client).values() for m in values[2:4] if m)  # IPv6


# --- the interval index: one geometry, in Python and in the Lua ---------------------------------------------------


def test_the_script_redis_runs_carries_core_intervals_constants():
    assert INDEX == DEFAULT_INDEX == IntervalIndex(60, 4, 13)
    assert "@INDEX_" not in INGEST_LUA and INGEST.source == INGEST_LUA
    assert "local INDEX_BASE, INDEX_FACTOR, INDEX_LEVELS = 60, 4, 13\n" in INGEST_LUA
    raw = (files("wiredraw.plugins.net_zeek") / "ingest.lua").read_text(encoding="utf-8")
    assert INDEX.fill_lua(raw) == INGEST_LUA
    assert "60 *" not in raw.split("local INDEX_BASE", 1)[1]  # no second copy of the numbers after the header


def boundary_durations(index: IntervalIndex) -> list[float]:
    """Durations at and just around every level's limit, and past the last one."""
    out = [0.0, 1e-6]
    for k in range(index.levels):
        size = float(index.size(k))
        out += [math.nextafter(size, 0.0), size, math.nextafter(size, math.inf), size + 0.5]
    return out + [float(index.size(index.levels - 1)) * 3]


def boundary_starts(index: IntervalIndex, k: int) -> list[float]:
    """Starts at and just around a bucket edge of level ``k`` (near T0)."""
    size = index.size(k)
    edge = (T0 // size + 1) * size
    return [math.nextafter(edge, 0.0), edge, math.nextafter(edge, math.inf)]


def index_entries(redis_client, prefix: str) -> dict[str, str]:
    """uid -> the index key holding it."""
    out = {}
    for key in redis_client.keys(f"{prefix}ix:*"):
        for line in redis_client.get(key).decode().splitlines():
            out[line.split("|", 2)[2]] = key.decode()
    return out


def boundary_messages(index: IntervalIndex) -> list[tuple[dict[str, Any], tuple[int, int]]]:
    """Records of every boundary duration at every boundary start, with the (level, bucket) Python gives each."""
    out = []
    for i, duration in enumerate(boundary_durations(index)):
        k = index.level_of(duration)
        for j, start in enumerate(boundary_starts(index, k) + [T0]):
            m = conn_msg(f"B{i}-{j}", base(ts=start, duration=duration), ts=start)
            out.append((m, place_held(index, start, duration)))
    return out


def test_lua_puts_each_connection_in_the_bucket_core_interval_names(ingest, redis_client):
    cases = boundary_messages(INDEX)
    levels = {k for _, (k, _) in cases}
    assert levels == set(range(INDEX.levels))  # every level, at its edges
    ingest([m for m, _ in cases])
    stored = index_entries(redis_client, PREFIX)
    for m, (k, b) in cases:
        assert stored[m["uid"]] == f"{PREFIX}ix:{k}:{b}", (m["uid"], m["ts"])
    # and the readers (query.py, through the same geometry) find each one at its start and at its end, as the index
    # holds them (to the microsecond); a connection longer than the last level's limit is past what a query reads
    for m, _ in cases:
        duration = msgpack.unpackb(m["rec"])["duration"]
        if duration <= INDEX.size(INDEX.levels - 1):
            for t in (m["ts"], m["ts"] + duration):
                assert m["uid"] in {c.uid for c in active(redis_client, float(f"{t:.6f}"))[0]}, (m["uid"], t)


def test_the_lua_takes_its_geometry_from_python_not_from_a_copy(redis_client):
    """ingest.lua filled in with another geometry indexes by that one: its numbers come from core/interval."""
    other = IntervalIndex(base=10, factor=2, levels=5)
    raw = (files("wiredraw.plugins.net_zeek") / "ingest.lua").read_text(encoding="utf-8")
    script = other.fill_lua(raw)
    cases = boundary_messages(other)
    assert {k for _, (k, _) in cases} == set(range(other.levels))
    redis_client.eval(script, 0, "s1", PACK.pack([m for m, _ in cases]), 3600)
    stored = index_entries(redis_client, PREFIX)
    for m, (k, b) in cases:
        assert stored[m["uid"]] == f"{PREFIX}ix:{k}:{b}", (m["uid"], m["ts"])
