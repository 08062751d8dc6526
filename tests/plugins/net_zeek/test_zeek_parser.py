"""Zeek log parser: unit cases plus checks over the real logs in ../shared/data/zeek (read in place)."""

from __future__ import annotations

import gzip
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wiredraw.plugins.net_zeek.parser import (
    LogStream,
    ZeekRecord,
    iter_log,
    open_log,
    path_from_filename,
    read_log,
    sniff_log,
)

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
ZEEK = DATA / "zeek"
EDGE = ZEEK / "tsv" / "zeek_btest_v3.2.4_logging_edgecases"


@pytest.fixture(scope="module")
def zeek() -> Path:
    if not ZEEK.is_dir():
        pytest.skip(f"real Zeek data not found at {ZEEK} (the shared data checkout is absent)")
    return ZEEK


def _lines(path: Path) -> list[bytes]:
    with open_log(path) as f:
        return f.read().split(b"\n")


def _data_line_count(path: Path, fmt: str) -> int:
    """Independent count: lines that are not blank and (TSV) do not start with the file's meta prefix."""
    lines = [ln.rstrip(b"\r") for ln in _lines(path)]
    lines = [ln for ln in lines if ln]
    if fmt == "json":
        return len(lines)
    prefix = b"#"
    first = lines[0] if lines else b""
    if b"separator " in first[:40]:
        prefix = first[: first.index(b"separator ")]
    return sum(1 for ln in lines if not ln.startswith(prefix))


def _stream(name: str, text: bytes) -> tuple[LogStream, list[ZeekRecord]]:
    s = LogStream(name)
    recs = [r for n, ln in enumerate(text.split(b"\n"), 1) if (r := s.feed(ln, n)) is not None]
    return s, recs


HEADER = (
    b"#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
    b"#fields\tts\tuid\tid.orig_h\tid.orig_p\tduration\torig_bytes\tlocal_orig\tservice\ttunnel_parents\tv\n"
    b"#types\ttime\tstring\taddr\tport\tinterval\tcount\tbool\tstring\tset[string]\tvector[count]\n"
)


# ---------------------------------------------------------------------------------------------------------------
# Unit cases (no data needed)
# ---------------------------------------------------------------------------------------------------------------


def test_types_unset_and_empty() -> None:
    s, recs = _stream("x.log", HEADER + b"1.5\tCabc\t10.0.0.1\t80\t-\t0\tT\t(empty)\t(empty)\t1,-,3\n")
    (r,) = recs
    assert r.path == "conn" and r.ts == 1.5 and r.uid == "Cabc"
    f = r.fields
    assert f["id.orig_p"] == 80 and "duration" not in f and f["orig_bytes"] == 0
    assert f["local_orig"] is True and f["service"] == "" and f["tunnel_parents"] == []
    assert f["v"] == [1, None, 3]
    assert s.records == 1 and s.bad_count == 0


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (b"1.5\tC\t1.1.1.1\t80\t-\t0\tT\t-\t-", "short row"),
        (b"1.5\tC\t1.1.1.1\t80\t-\t0\tT\t-\t-\t-\textra", "long row"),
        (b"1.5\tC\t1.1.1.1\t80\t-\tabc\tT\t-\t-\t-", "orig_bytes"),
        (b"1.5\tC\t1.1.1.1\t80\t-\t0\tX\t-\t-\t-", "local_orig"),
        (b"1.5\tC\t1.1.1.1\t80\t-\t0\tT\tfoo\\xZ1\t-\t-", "broken escape"),
    ],
)
def test_bad_lines_are_counted_and_skipped(row: bytes, reason: str) -> None:
    good = b"2.5\tC\t1.1.1.1\t80\t-\t0\tT\t-\t-\t-"
    s, recs = _stream("x.log", HEADER + row + b"\n" + good + b"\n")
    assert [r.ts for r in recs] == [2.5]
    assert s.bad_count == 1 and s.bad[0].line == 8 and reason in s.bad[0].reason
    assert s.data_lines == 2


def test_unknown_type_stays_str() -> None:
    text = b"#separator \\x09\n#fields\ta\tb\n#types\tint64\ttable[string]\nbingbong\t-\n"
    _, (r,) = _stream("t.log", text)
    assert r.fields == {"a": "bingbong"} and r.path == "t"


def test_separator_line_with_trailing_tab_and_crlf() -> None:
    text = b"#separator \\x09\t\r\n#fields\ta\tb\r\n#types\tcount\tstring\r\n7\tx\r\n"
    _, (r,) = _stream("t.log", text)
    assert r.fields == {"a": 7, "b": "x"}


def test_json_nested_id_iso_ts_and_writer_meta() -> None:
    s = LogStream("conn.log")
    line = b'{"_path":"dns","_write_ts":"2020-01-01T00:00:00.000000Z","ts":"1969-12-31T23:59:59.600000Z",'
    line += b'"uid":"C1","id":{"orig_h":"::1","orig_p":53},"answers":null,"ttls":[1.0]}'
    r = s.feed(line, 1)
    assert r is not None and r.path == "dns" and r.uid == "C1"
    assert r.ts is not None and math.isclose(r.ts, -0.4, abs_tol=1e-9)
    assert r.fields["id.orig_h"] == "::1" and r.fields["id.orig_p"] == 53 and "answers" not in r.fields
    assert "_path" not in r.fields and "_write_ts" not in r.fields
    assert s.feed(b"[1,2]", 2) is None and s.feed(b'{"a":', 3) is None and s.bad_count == 2
    assert s.feed(b'{"ts": 12}', 4) == ZeekRecord("conn", 12.0, None, {"ts": 12.0})


def test_path_from_filename() -> None:
    assert path_from_filename("conn.16:00:00-17:00:00.log.gz") == "conn"
    assert path_from_filename("/a/b/conn.log") == "conn"
    assert path_from_filename("ssl-all.log") == "ssl-all"


def test_resume_from_header_state() -> None:
    rows = [f"{i}.5\tC{i}\t10.0.0.1\t{i}\t-\t{i}\tF\thttp\ta,b\t{i}".encode() for i in range(10)]
    text = HEADER + b"\n".join(rows) + b"\n"
    whole, recs = _stream("x.log", text)
    lines = text.split(b"\n")
    first = LogStream("x.log")
    for n, ln in enumerate(lines[:12], 1):
        first.feed(ln, n)
    again = LogStream.resume("x.log", first.header_state())
    rest = [r for n, ln in enumerate(lines[12:], 13) if (r := again.feed(ln, n)) is not None]
    assert rest == recs[5:] and again.records == 5 and again.bad_count == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=12), st.booleans())
def test_feed_never_raises(lines: list[bytes], with_header: bool) -> None:
    s = LogStream("fuzz.log")
    if with_header:
        for n, ln in enumerate(HEADER.split(b"\n"), 1):
            s.feed(ln, n)
    for n, ln in enumerate(lines, 100):
        r = s.feed(ln, n)
        assert r is None or isinstance(r, ZeekRecord)
    assert s.records + s.bad_count == s.data_lines


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"-", b"(empty)", b"\\x2c", b"a,b", b"\\xff", b"\\\\", b"1", b"T", b"x"]),
        min_size=10,
        max_size=10,
    )
)
def test_values_are_msgpack_safe_str(cols: list[bytes]) -> None:
    s = LogStream("fuzz.log")
    for n, ln in enumerate(HEADER.split(b"\n"), 1):
        s.feed(ln, n)
    r = s.feed(b"\t".join(cols), 50)
    if r is not None:
        for v in r.fields.values():
            for e in v if isinstance(v, list) else [v]:
                if isinstance(e, str):
                    e.encode("utf-8")  # no lone surrogates


# ---------------------------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------------------------


def test_every_real_log_loads_and_counts_add_up(zeek: Path) -> None:
    per_folder: dict[str, list[int]] = {}
    skipped: list[str] = []
    for p in sorted(q for q in zeek.rglob("*") if q.is_file()):
        fmt = sniff_log(p)
        if fmt is None:
            skipped.append(p.name)
            continue
        lf = read_log(p)
        assert len(lf.records) + lf.bad_count == lf.data_lines == _data_line_count(p, fmt), p
        c = per_folder.setdefault("/".join(p.relative_to(zeek).parts[:2]), [0, 0, 0])
        c[0] += 1
        c[1] += len(lf.records)
        c[2] += lf.bad_count
    for folder, (files, recs, bad) in sorted(per_folder.items()):
        print(f"{folder}: {files} files, {recs} records, {bad} bad lines")
    # Only zeekctl's text reports (and a README) are not Zeek logs.
    assert skipped and all(n.startswith("conn-summary.") or n.startswith("README") for n in skipped)
    assert sum(n.startswith("conn-summary.") for n in skipped) == 24
    assert per_folder["tsv/zed_sample_data_wrccdc2018"][1:] == [141466, 0]
    assert per_folder["json/zed_sample_data_wrccdc2018"][1:] == [141466, 0]
    # The btest canonifier masked the timestamps of this baseline as XXXXXXXXXX.XXXXXX: bad time values.
    smb = read_log(zeek / "tsv/zeek_btest_v3.2.4/scripts.base.protocols.smb.smb3-multichannel/smb_files.log")
    assert smb.bad_count == 72 and not smb.records and "ts (time)" in smb.bad[0].reason


def test_rita_edgecases_bad_line_counts(zeek: Path) -> None:
    d = zeek / "tsv" / "rita_edgecases"
    cut = read_log(d / "truncated_conn.log")
    assert (len(cut.records), cut.bad_count) == (58, 1)
    assert cut.bad[0].line == 67 and "cut-off last line" in cut.bad[0].reason
    nohead = read_log(d / "truncated_conn_top_noheader.log")
    assert (len(nohead.records), nohead.bad_count) == (0, 59)
    assert all("no header" in b.reason for b in nohead.bad)
    # i_dont_exist is typed int64 (not a Zeek type): kept as str, so "bingbong" is fine. Row 1 lacks that
    # column (29 of 30): bad. The last row has no final newline but parses, so it is a record.
    http = read_log(d / "has_unknown_field_http.log")
    assert (len(http.records), http.bad_count) == (4, 1)
    assert http.bad[0].line == 9 and "short row" in http.bad[0].reason
    assert {r.fields["i_dont_exist"] for r in http.records} == {"bingbong"}


def test_json_iso_times_are_epoch_floats(zeek: Path) -> None:
    # TSV and JSON of one run give equal records: test_zeek_writers.py.
    x509 = read_log(zeek / "json/zed_sample_data_wrccdc2018/x509.log").records[0]
    assert isinstance(x509.fields["certificate.not_valid_before"], float)


def test_zui_multi_block_tsv(zeek: Path) -> None:
    t = read_log(zeek / "tsv/zui_sample/sample.zeektsv")
    j = read_log(zeek / "json/zui_sample/sample.ndjson")
    # 14 header blocks: each record takes the #path of its block. The JSON is NOT the same run (other uids),
    # but it holds the same number of records per log type.
    assert Counter(r.path for r in t.records) == Counter(r.path for r in j.records)
    assert len({r.path for r in t.records}) == 8 and t.bad_count == j.bad_count == 0
    assert all(r.path == "conn" for r in t.records if "conn_state" in r.fields)


def test_uids_link_to_conn_in_proxy_rolling(zeek: Path) -> None:
    d = zeek / "tsv/rita_proxy_rolling"
    by_path: dict[str, list[ZeekRecord]] = {}
    for p in d.iterdir():
        for r in read_log(p).records:
            by_path.setdefault(r.path, []).append(r)
    conn_uids = {r.uid for r in by_path["conn"]}
    for path in ("dns", "http", "ssl"):
        uids = [r.uid for r in by_path[path] if r.uid]
        frac = sum(u in conn_uids for u in uids) / len(uids)
        print(f"rita_proxy_rolling {path}: {len(uids)} uids, {frac:.1%} found in conn")
        assert frac > 0.9, path
    assert "_node_name" in by_path["conn"][0].fields


def test_unset_is_left_out_and_empty_is_empty_list(zeek: Path) -> None:
    recs = read_log(zeek / "tsv/rita_edgecases/truncated_conn.log").records
    unset = [r for r in recs if r.uid == "CKIyhj3TkQsp9GsLyc"][0].fields
    assert not {"duration", "orig_bytes", "resp_bytes"} & set(unset) and unset["missed_bytes"] == 0
    assert all(r.fields["tunnel_parents"] == [] for r in recs)
    (empty,) = read_log(EDGE / "ascii-empty/ssh-filtered.log").records[-1:]
    assert empty.fields["country"] == "" and empty.fields["b"] is True  # custom EMPTY / NOT-SET markers
    first, second = read_log(EDGE / "ascii-empty/ssh-filtered.log").records[:2]
    assert first.fields["status"] == "success" and "status" not in second.fields  # NOT-SET


def test_escapes_and_meta_prefix(zeek: Path) -> None:
    def values(rel: str, name: str = "s") -> list[Any]:
        lf = read_log(EDGE / rel)
        assert lf.bad_count == 0, lf.bad
        return [r.fields[name] for r in lf.records]

    # A data row starting with \x23 is data: '#Kaputt'.
    assert values("ascii-line-like-comment/test.log", "data") == ["Test1", "#Kaputt", "Test2"]
    # Control bytes other than \b\f\n\r\t and non-UTF-8 bytes read as \xNN text, as Zeek's JSON writer spells them
    # (so a literal backslash-x and an escaped byte read the same: rows 2 and 3).
    binary = values("ascii-escape-binary/test.log")
    assert binary[:3] == ["AB\\x00CD\\x00", "AB\\xffCD\\x00", "AB\\xffCD\\x00"]
    assert binary[-3:] == ["foo \u00ae bar \\xc2\\xae baz", "foo\\x00bar\\0baz", "foo \\x0e bar ^N baz"]
    assert values("ascii-utf8-enabled-control-characters/test.log") == ["foo \n\t\\x00 bar"]
    assert values("ascii-escape-set-separator/test.log", "ss") == [[",", "AA", "CC", ",,"]]
    assert values("ascii-escape-empty-str/test.log", "ss") == [["EMPTY"]]
    assert values("ascii-utf8-enabled-set-separator-escape/test.log", "ss") == [["\u00ae"]]
    (notset,) = read_log(EDGE / "ascii-escape-notset-str/test.log").records
    assert notset.fields == {"x": "-", "z": ""}
    assert values("ascii-escape/ssh.log", "status")[2:4] == ["fa||ure", "su||ess"]  # "||" separator
    assert values("ascii-binary/ssh.log", "data") == ["abc\n\\xffdef", "abc|\\xffdef", "abc\\xff|def"]
    ssh = read_log(EDGE / "ascii-empty/ssh-filtered.log").records  # PREFIX<> meta prefix, "|" separator
    assert len(ssh) == 5 and ssh[0].path == "ssh" and ssh[0].fields["id.orig_p"] == 1234
    odd = read_log(EDGE / "ascii-escape-odd-url/http.log").records[0].fields["uri"]
    assert "arheoloogia_uurimisr\\xfchma_seminar" in odd


def test_json_edgecases(zeek: Path) -> None:
    jd = zeek / "json/zeek_btest_v3.2.4_logging_edgecases"
    iso = [r.fields["t"] for r in read_log(jd / "ascii-json-iso-timestamps/ssh.log").records]
    assert iso[0] == pytest.approx(1215620010.005432, abs=1e-6)
    assert iso[2:4] == [pytest.approx(-0.4, abs=1e-9), pytest.approx(-0.5, abs=1e-9)]
    (allt,) = read_log(jd / "ascii-json/ssh.log").records
    assert allt.fields["vn"] == [0, None, 2] and allt.fields["se"] == [] and allt.fields["ss"] == ["BB", "AA", "CC"]
    utf8 = [r.fields["s"] for r in read_log(jd / "ascii-json-utf8/ssh.log").records]
    assert "\\xc3(" in utf8 and "\u00f1" in utf8


def test_gzip_is_read_directly(zeek: Path, tmp_path: Path) -> None:
    gz = zeek / "tsv/rita_proxy_rolling/conn.16:00:00-17:00:00.log.gz"
    lf = read_log(gz)
    assert lf.records and lf.records[0].path == "conn" and lf.bad_count == 0
    # By magic bytes, not by the suffix.
    renamed = tmp_path / "conn_no_suffix"
    renamed.write_bytes(gz.read_bytes())
    assert read_log(renamed).records == lf.records
    with gzip.open(gz) as f:
        assert open_log(gz).read() == f.read()


@pytest.mark.parametrize(
    "rel",
    [
        "tsv/zui_sample/sample.zeektsv",
        "tsv/rita_edgecases/truncated_conn.log",
        "tsv/zeek_btest_v3.2.4_logging_edgecases/ascii-escape-binary/test.log",
        "json/zed_sample_data_wrccdc2018/x509.log",
        "tsv/rita_proxy_rolling/dns.16:00:00-17:00:00.log.gz",
    ],
)
def test_stream_matches_read_log_and_resumes(zeek: Path, rel: str) -> None:
    path = zeek / rel
    whole = read_log(path)
    lines = _lines(path)
    if lines[-1] == b"":
        lines.pop()
    s = LogStream(str(path))
    got = [r for n, ln in enumerate(lines, 1) if (r := s.feed(ln, n)) is not None]
    assert got == whole.records and s.bad_count == whole.bad_count
    # Cut mid-file, resume from the header state, finish: same records.
    cut = len(lines) * 2 // 3
    a = LogStream(str(path))
    first = [r for n, ln in enumerate(lines[:cut], 1) if (r := a.feed(ln, n)) is not None]
    b = LogStream.resume(str(path), a.header_state())
    rest = [r for n, ln in enumerate(lines[cut:], cut + 1) if (r := b.feed(ln, n)) is not None]
    assert first + rest == whole.records
    # iter_log streams the same records and carries the counts afterwards.
    it = iter_log(path)
    assert list(it) == whole.records and it.bad_count == whole.bad_count and it.data_lines == whole.data_lines


# ---------------------------------------------------------------------------------------------------------------
# Fast path (the generated per-header `feed`) against the general path
# ---------------------------------------------------------------------------------------------------------------


def _general(name: str, lines: list[bytes]) -> tuple[LogStream, list[ZeekRecord]]:
    """The class's own feed, called unbound: never the generated fast path."""
    s = LogStream(name)
    return s, [r for n, ln in enumerate(lines, 1) if (r := LogStream.feed(s, ln, n)) is not None]


def _same(a: list[ZeekRecord], b: list[ZeekRecord]) -> None:
    # repr: exact value types (True vs 1, 1.0 vs 1) and key order, not just ==.
    assert [repr(r) for r in a] == [repr(r) for r in b]
    assert all(type(r.fields) is dict for r in a)


def test_fast_path_edge_lines_match_general_path() -> None:
    rows = [
        b"1.5\tCa\t10.0.0.1\t80\t-\t0\tT\t(empty)\t(empty)\t1,-,3",
        b"2.5\tCb\t10.0.0.1\t80\t0.25\t70000\tF\thttp\ta,b\t-\r",  # CRLF: general path strips the \r
        b"3.5\tCc\t10.0.0.1\t80\t-\t0\tT\tx\\x09y\t-\t-",  # escaped: general path unescapes
        b"4.5\tCd\t10.0.0.1\t80\t-\t0\tT\t\xff\xfe\t-\t-",  # not UTF-8
        b"5.5\tCe\t10.0.0.1\t80\t-\tabc\tT\t-\t-\t-",  # bad count
        b"6.5\tCf\t10.0.0.1\t80\t-\t0\tT\t-\t-",  # short
        b"",
        b"7.5\tCg\t10.0.0.1\t-\t-\t-\t-\t-\t-\t-",
        b"8.5\tCh\t10.0.0.1\t99999\t1e3\t123456789012\tF\t-\t-\t(empty)",
    ]
    lines = [*HEADER.split(b"\n")[:-1], *rows]
    s, fast = _stream("x.log", b"\n".join(lines))
    g, slow = _general("x.log", lines)
    _same(fast, slow)
    assert [r.ts for r in fast] == [1.5, 2.5, 3.5, 4.5, 7.5, 8.5]
    assert fast[1].fields["orig_bytes"] == 70000 and fast[1].fields["duration"] == 0.25
    assert fast[2].fields["service"] == "x\ty" and "id.orig_p" not in fast[4].fields
    assert fast[5].fields["orig_bytes"] == 123456789012 and fast[5].fields["v"] == []
    assert (s.records, s.bad_count, s.data_lines, s.bad) == (g.records, g.bad_count, g.data_lines, g.bad)
    assert s.bad_count == 2 and s.data_lines == 8


def test_fast_path_follows_a_new_header_even_through_an_old_feed() -> None:
    second = b"#fields\ta\tts\n#types\tcount\ttime\n#path\tother\n5\t9.5\n"
    text = HEADER + b"1.5\tC\t1.1.1.1\t80\t-\t0\tT\t-\t-\t-\n" + second + b"x\t1\n"
    s = LogStream("x.log")
    lines = text.split(b"\n")
    for n, ln in enumerate(lines[:7], 1):
        s.feed(ln, n)
    assert s.feed(lines[7], 8) is not None  # compiles: s.feed is now the fast path of the first header
    old_feed = s.feed
    recs = [r for n, ln in enumerate(lines[8:], 9) if (r := old_feed(ln, n)) is not None]
    assert recs == [ZeekRecord("other", 9.5, None, {"a": 5, "ts": 9.5})]
    assert s.bad_count == 1 and "a (count)" in s.bad[0].reason and s.records == 2


@pytest.mark.parametrize(
    "names", [[*(f"c{i}" for i in range(37)), "t0", "ts", "uid"], ["__class__", "__dict__", "ts", "ts", "uid"]]
)
def test_wide_and_odd_field_names(names: list[str]) -> None:
    # Over 30 columns, or names that are attributes of every object, take the plain dict display.
    types = ["count"] * (len(names) - 3) + ["time", "time", "string"]
    values = [str(i) for i in range(len(names) - 3)] + ["1.0", "2.0", "Cx"]
    text = "#separator \\x09\n#fields\t{}\n#types\t{}\n{}\n".format(*("\t".join(x) for x in (names, types, values)))
    _, (r,) = _stream("odd.log", text.encode())
    want: dict[str, Any] = {}
    for name, t, v in zip(names, types, values, strict=True):
        want[name] = float(v) if t == "time" else int(v) if t == "count" else v
    assert r.fields == want and list(r.fields) == list(want) and r.ts == 2.0 and r.uid == "Cx"


def test_fields_are_plain_mutable_dicts() -> None:
    import msgpack

    _, (r,) = _stream("x.log", HEADER + b"1.5\tCa\t10.0.0.1\t80\t-\t0\tT\t-\t-\t-\n")
    f = r.fields
    assert msgpack.unpackb(msgpack.packb(f)) == f
    f["extra"] = 1
    del f["uid"]
    assert list(f)[-1] == "extra" and "uid" not in f and len(f) == 6  # 10 columns, 4 unset
    assert r == ZeekRecord("conn", 1.5, "Ca", dict(f)) and r.path == r[0]


def test_fast_path_matches_general_path_on_real_tsv(zeek: Path) -> None:
    checked = 0
    for p in sorted(q for q in (zeek / "tsv").rglob("*") if q.is_file()):
        if sniff_log(p) != "tsv":
            continue
        lines = _lines(p)
        s = LogStream(str(p))
        fast = [r for n, ln in enumerate(lines, 1) if (r := s.feed(ln, n)) is not None]
        g, slow = _general(str(p), lines)
        _same(fast, slow)
        assert (s.records, s.bad_count, s.bad) == (g.records, g.bad_count, g.bad), p
        it = iter_log(p)
        _same(list(it), fast)
        checked += 1
    assert checked > 50
