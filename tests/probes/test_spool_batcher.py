"""The probe's on-disk spool and its batcher."""

from __future__ import annotations

import stat

import msgpack
from wiredraw.core import wire
from wiredraw.core.address import parse_server
from wiredraw.core.batching import Batcher
from wiredraw.probes.spool import Spool, SpoolEntry


def entry(seq, records=3, state=None):
    return SpoolEntry(seq, 999, "tick", wire.encode_body([{"n": i} for i in range(records)]), state, records)


def test_spool_survives_reopen_and_acks_cumulatively(tmp_path):
    spool = Spool(tmp_path / "s", max_bytes=1 << 20)
    for seq in (5, 6, 7, 9):
        spool.append(entry(seq, state={"at": seq}))
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    again = Spool(tmp_path / "s")
    assert again.seqs() == [5, 6, 7, 9] and again.records == 12
    assert again.read(9).source_state == {"at": 9}
    assert again.remove_upto(7) == 9
    assert again.seqs() == [9]
    assert Spool(tmp_path / "s").seqs() == [9]


def test_spool_is_bounded(tmp_path):
    spool = Spool(tmp_path / "s", max_bytes=200)
    n = 0
    while not spool.full():
        n += 1
        spool.append(entry(n, records=10))
    assert spool.bytes >= 200 and n < 50


def test_spool_ignores_a_half_written_batch(tmp_path):
    spool = Spool(tmp_path / "s")
    spool.append(entry(1))
    (tmp_path / "s" / "00000000000000000002.tmp").write_bytes(b"\x93")
    again = Spool(tmp_path / "s")
    assert again.seqs() == [1]
    assert not list((tmp_path / "s").glob("*.tmp"))


def test_batcher_splits_by_type_count_and_size():
    b = Batcher(max_records=3, max_bytes=60)
    msgs = [("a", {"n": i}) for i in range(7)] + [("b", {"n": 1})] + [("a", {"x": "y" * 40})] * 2
    batches = b.batches(msgs)
    assert [(t, n) for t, _, n in batches] == [("a", 3), ("a", 3), ("a", 1), ("b", 1), ("a", 1), ("a", 1)]
    for _t, body, n in batches:
        assert len(body) <= 60
        assert len(wire.decode_body(body)) == n  # bodies are valid batches as the server decodes them
    assert msgpack.unpackb(batches[0][1]) == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_batcher_counts_messages_too_big_for_any_frame():
    b = Batcher(max_records=10, max_bytes=50)
    batches = b.batches([("a", {"x": "y" * 100}), ("a", {"n": 1})])
    assert [n for _t, _b, n in batches] == [1] and b.too_big == 1


def test_parse_server():
    assert parse_server("10.0.0.1:5000") == ("10.0.0.1", 5000)
    assert parse_server("[::1]:4430") == ("::1", 4430)
    assert parse_server("sensor.example") == ("sensor.example", 4430)


def test_spool_totals_and_order_stay_right(tmp_path):
    spool = Spool(tmp_path / "s", fsync=False)
    for seq in range(1, 101):
        spool.append(entry(seq, records=seq % 7 + 1))
    spool.remove(50)  # a rejected batch
    assert spool.remove_upto(10) == sum(s % 7 + 1 for s in range(1, 11))
    assert spool.seqs_after(10, 3) == [11, 12, 13] and spool.seqs_after(48, 3) == [49, 51, 52]
    assert spool.count_upto(51) == 40 and len(spool) == 89
    expected = sum(s % 7 + 1 for s in range(11, 101) if s != 50)
    reopened = Spool(tmp_path / "s")
    assert spool.records == reopened.records == expected
    assert spool.bytes == reopened.bytes == sum(p.stat().st_size for p in (tmp_path / "s").glob("*.batch"))
    assert reopened.seqs() == spool.seqs()
