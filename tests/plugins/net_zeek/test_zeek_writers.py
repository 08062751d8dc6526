"""One record whichever writer wrote it (issue 13): Zeek's TSV and JSON writers, the parser's one rule.

The rule (parser.py's module doc, "One record whichever writer"): unset fields are left out on both sides, float
values are at microsecond resolution (``round(x, 6)``) on both sides, an empty container is ``[]`` on both sides
(JSON's ``[""]`` too, which the TSV writer spells like ``{}``). Unit cases first, then every TSV/JSON pair of
one run in ../shared/data (read in place).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wiredraw.plugins.net_zeek.parser import LogStream, ZeekRecord, read_log

ZEEK = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "zeek"

# TSV/JSON folders of the same run, as ../shared/data/README.md describes them. zui_sample has a folder on each side
# but is NOT one run: other uids, other stats counters (test_zeek_parser.test_zui_multi_block_tsv compares counts).
SAME_RUN = ["zed_sample_data_wrccdc2018"]
NOT_SAME_RUN = {"zui_sample": "another capture run: other uids and stats counters"}
# The btest edge-case folders pair only where the same test wrote both: ascii-double writes one list of doubles
# through the TSV writer (test.log) and the JSON writer (json.log).
EDGE_PAIRS = {"ascii-double": ("test.log", "json.log")}

HEADER = (
    b"#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
    b"#fields\tts\tuid\tid.orig_p\tduration\tn\tb\ts\tss\tvi\tvs\n"
    b"#types\ttime\tstring\tport\tinterval\tcount\tbool\tstring\tset[string]\tvector[interval]\tvector[string]\n"
)


@pytest.fixture(scope="module")
def zeek() -> Path:
    if not ZEEK.is_dir():
        pytest.skip(f"real Zeek data not found at {ZEEK} (the shared data checkout is absent)")
    return ZEEK


def _feed(*lines: bytes) -> list[ZeekRecord]:
    """Each line through the generated fast path and through the general path: both must give the same."""
    fast, slow = LogStream("x.log"), LogStream("x.log")
    a = [r for n, ln in enumerate(lines, 1) if (r := fast.feed(ln, n)) is not None]
    b = [r for n, ln in enumerate(lines, 1) if (r := LogStream.feed(slow, ln, n)) is not None]
    assert [repr(r) for r in a] == [repr(r) for r in b]
    assert fast.bad == slow.bad == []
    return a


def _tsv(row: bytes) -> ZeekRecord:
    (r,) = _feed(*HEADER.split(b"\n")[:-1], row)
    return r


def _json(line: bytes) -> ZeekRecord:
    (r,) = _feed(line)
    return r


def _typed(v: Any) -> Any:
    """A value with its types spelt out: == alone takes 1 for 1.0 and True for 1."""
    if isinstance(v, list):
        return ("list", [_typed(e) for e in v])
    return (type(v).__name__, v)


def _same(t: ZeekRecord, j: ZeekRecord) -> bool:
    return (t.path, t.ts, t.uid) == (j.path, j.ts, j.uid) and {k: _typed(v) for k, v in t.fields.items()} == {
        k: _typed(v) for k, v in j.fields.items()
    }


# ---------------------------------------------------------------------------------------------------------------
# Unit cases (no data needed)
# ---------------------------------------------------------------------------------------------------------------


def test_unset_is_left_out_of_every_type_on_both_sides() -> None:
    t = _tsv(b"1.5\tC1\t-\t-\t-\t-\t-\t-\t-\t-")
    assert t.fields == {"ts": 1.5, "uid": "C1"}
    j = _json(b'{"_path":"conn","ts":1.5,"uid":"C1","id":{"orig_p":null},"duration":null,"b":null,"ss":null}')
    assert _same(t, j)
    # An unset ts or uid: None in the record, absent from its fields.
    (r,) = _feed(*HEADER.split(b"\n")[:-1], b"-\t-\t80\t-\t-\t-\t-\t-\t-\t-")
    assert (r.ts, r.uid, r.fields) == (None, None, {"id.orig_p": 80})


def test_same_values_through_both_writers() -> None:
    # One record as Zeek's two writers spell it: TSV at 6 decimals, JSON at full precision with ISO times,
    # T/F vs true/false, (empty) vs [], an escaped tab vs a JSON \t, an unset vector element vs null.
    t = _tsv(b"1521911720.600843\tC1\t80\t9.220849\t0\tT\ta\\x09b\t(empty)\t0.00087,-\t(empty),x")
    j = _json(
        b'{"_path":"conn","_write_ts":"2018-03-24T17:20:00.000000Z","ts":"2018-03-24T17:15:20.600843Z","uid":"C1",'
        b'"id":{"orig_p":80},"duration":9.22084903717041,"n":0,"b":true,"s":"a\\tb","ss":[],'
        b'"vi":[0.0008699893951416016,null],"vs":["","x"]}'
    )
    assert _same(t, j), (t, j)
    assert t.fields["duration"] == 9.220849 and t.fields["vi"] == [0.00087, None] and t.fields["vs"] == ["", "x"]


def test_tsv_floats_are_rounded_to_microseconds() -> None:
    # Zeek writes huge and pre-1970 values with an exponent and 17 digits (ntp.log's xmt_time): those are rounded.
    rows = [b"-2.1504318496896954e+09", b"1.2345678e-3", b"1E-7", b"4.294967296e+09", b"inf", b"-0.0", b"9.22"]
    got = [_tsv(b"%s\tC\t-\t%s\t-\t-\t-\t-\t%s,1.0000004e0\t-" % (v, v, v)).fields for v in rows]
    want = [-2150431849.689695, 0.001235, 0.0, 4294967296.0, math.inf, -0.0, 9.22]
    assert [f["ts"] for f in got] == [f["duration"] for f in got] == want
    assert [f["vi"] for f in got] == [[w, 1.0] for w in want]
    # Plain text with more than 6 decimals is no Zeek writer's spelling: taken as written (parser.py, _FLOAT_US).
    assert _tsv(b"1.5\tC\t-\t0.1234567\t-\t-\t-\t-\t-\t-").fields["duration"] == 0.1234567


def test_json_rules() -> None:
    r = _json(b'{"d":1.123456789,"z":2.23e-308,"n":null,"e":[""],"v":[0,null,2],"t":"1969-12-31T23:59:59.6000005Z"}')
    # 9 fraction digits are rounded half-even to 6 (...600000|5 -> ...600000), then exactly: -0.4.
    assert r.fields == {"d": 1.123457, "z": 0.0, "e": [], "v": [0, None, 2], "t": -0.4}
    assert _json(b'{"t":"1969-12-31T23:59:59.6000015Z"}').fields["t"] == -0.399998
    assert _json(b'{"ts":12}') == ZeekRecord("x", 12.0, None, {"ts": 12.0})


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=-(10**16), max_value=10**16), st.integers(min_value=0, max_value=6))
def test_six_decimal_text_is_already_at_microseconds(n: int, places: int) -> None:
    # The TSV fast path skips round() for plain text with at most 6 decimals: float() of it must equal round().
    text = f"{n / 10**places:.{places}f}" if places else str(n)
    (r,) = _feed(b"#fields\tx", b"#types\tdouble", text.encode())
    assert r.fields["x"] == round(float(text), 6)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-4e9, max_value=4e9, allow_nan=False))
def test_any_double_reads_the_same_from_both_writers(x: float) -> None:
    # What Zeek's TSV writer would write (%.6f) and what its JSON writer writes (repr): one value.
    (t,) = _feed(b"#fields\tx", b"#types\tinterval", f"{x:.6f}".encode())
    assert t.fields["x"] == _json(b'{"x":%s}' % repr(x).encode()).fields["x"]


# ---------------------------------------------------------------------------------------------------------------
# Real data: every TSV/JSON pair of one run
# ---------------------------------------------------------------------------------------------------------------


def _by_path(folder: Path) -> dict[str, list[ZeekRecord]]:
    out: dict[str, list[ZeekRecord]] = defaultdict(list)
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        lf = read_log(p)
        assert lf.bad_count == 0, (p, lf.bad[:3])
        for r in lf.records:
            out[r.path].append(r)
    return out


def _match(path: str, tsv: list[ZeekRecord], js: list[ZeekRecord]) -> int:
    """Pair every TSV record with an equal JSON one (by uid and ts, or ts and the fields); returns the count."""
    assert len(tsv) == len(js), f"{path}: {len(tsv)} TSV records, {len(js)} JSON"
    buckets: dict[tuple[Any, ...], list[ZeekRecord]] = defaultdict(list)
    for j in js:
        buckets[(j.uid, j.ts)].append(j)
    for t in tsv:
        candidates = buckets.get((t.uid, t.ts), [])
        for i, j in enumerate(candidates):
            if _same(t, j):
                del candidates[i]
                break
        else:
            near = candidates[0] if candidates else None
            diff = near and {
                k: (t.fields.get(k, "<absent>"), near.fields.get(k, "<absent>"))
                for k in t.fields.keys() | near.fields.keys()
                if _typed(t.fields.get(k)) != _typed(near.fields.get(k))
            }
            raise AssertionError(f"{path}: no JSON record equals {t}; nearest differs in {diff}")
    return len(tsv)


def test_the_pairs_found_are_the_pairs_listed(zeek: Path) -> None:
    both = {p.name for p in (zeek / "tsv").iterdir()} & {p.name for p in (zeek / "json").iterdir()}
    edge = "zeek_btest_v3.2.4_logging_edgecases"
    assert both == {*SAME_RUN, *NOT_SAME_RUN, edge}
    edge_both = {p.name for p in (zeek / "tsv" / edge).iterdir()} & {p.name for p in (zeek / "json" / edge).iterdir()}
    assert edge_both == set(EDGE_PAIRS)


@pytest.mark.parametrize("name", SAME_RUN)
def test_tsv_and_json_of_one_run_give_equal_records(zeek: Path, name: str) -> None:
    tsv, js = _by_path(zeek / "tsv" / name), _by_path(zeek / "json" / name)
    assert set(tsv) == set(js) and len(tsv) == 30
    matched = {path: _match(path, tsv[path], js[path]) for path in sorted(tsv)}
    print(f"{name}: {sum(matched.values())} records equal in {len(matched)} log types")
    assert sum(matched.values()) == 141466


@pytest.mark.parametrize("folder", sorted(EDGE_PAIRS))
def test_btest_written_by_both_writers(zeek: Path, folder: str) -> None:
    tsv_name, json_name = EDGE_PAIRS[folder]
    tsv = read_log(zeek / "tsv/zeek_btest_v3.2.4_logging_edgecases" / folder / tsv_name).records
    js = read_log(zeek / "json/zeek_btest_v3.2.4_logging_edgecases" / folder / json_name).records
    assert len(tsv) == len(js) == 22
    for t, j in zip(tsv, js, strict=True):
        d = t.fields["d"]
        if math.isfinite(d):  # 1.123456789 (JSON) is 1.123457 (TSV), 2.23e-308 is 0.0
            assert j.fields == {"d": d}, (t, j)
        else:  # the JSON writer has no inf or nan: it writes null, which reads as unset
            assert j.fields == {}, (t, j)
