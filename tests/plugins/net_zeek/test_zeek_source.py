"""net_zeek probe sources: following a live log directory (appends, rotation, restarts, --since backfill) and
replaying recorded logs (merge order, pacing, resume). Real logs are read in place from ../shared/data/zeek;
the live directory is simulated in tmp_path the way zeekctl writes it."""

from __future__ import annotations

import argparse
import gzip
import heapq
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import msgpack
import pytest
import wiredraw.plugins.net_zeek.replay as source_mod
from wiredraw.plugins.net_zeek.module import NetZeekModule
from wiredraw.plugins.net_zeek.parser import read_log
from wiredraw.plugins.net_zeek.source import (
    LogDirSource,
    ReplaySource,
    identity_of,
    log_message,
    parse_time,
)

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
ROLLING = DATA / "zeek" / "tsv" / "rita_proxy_rolling"
CONN16 = ROLLING / "conn.16:00:00-17:00:00.log.gz"
DNS16 = ROLLING / "dns.16:00:00-17:00:00.log.gz"

Message = tuple[str, dict[str, Any]]


def need_data() -> None:
    if not CONN16.exists():
        pytest.skip(f"real Zeek data not found at {ROLLING} (the shared data checkout is absent)")


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- a zeekctl-like log directory ----------------------------------------------------------------------------


def header(path: str, opened: str) -> bytes:
    return (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
        f"#path\t{path}\n#open\t{opened}\n#fields\tts\tuid\tid.orig_h\tn\n#types\ttime\tstring\taddr\tcount\n"
    ).encode()


def row(i: int) -> bytes:
    return f"{1714420800 + i}.000000\tC{i:06d}\t10.0.0.{i % 250}\t{i}\n".encode()


def uids(messages: list[Message]) -> list[str]:
    return [m["uid"] for _, m in messages]


def expected(rng: range) -> list[str]:
    return [f"C{i:06d}" for i in rng]


class ZeekDir:
    """``base/current/conn.log`` written in pieces; rotation moves it to ``base/2024-04-29/conn.<t>-<t>.log.gz``."""

    def __init__(self, base: Path, path: str = "conn") -> None:
        self.base, self.path = base, path
        self.logdir = base / "current"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.live = self.logdir / f"{path}.log"
        self.hour = 0
        self.spooled: list[Path] = []

    def open_new(self) -> None:
        self.live.write_bytes(header(self.path, f"2024-04-29-{self.hour:02d}-00-00"))

    def append(self, data: bytes) -> None:
        with open(self.live, "ab") as f:
            f.write(data)

    def rotate(self, compress: bool = True) -> None:
        """Zeek's rotation: #close, renamed beside the live logs; then (zeekctl) gzipped into the date dir."""
        self.append(b"#close\t2024-04-29-%02d-59-59\n" % self.hour)
        spooled = self.logdir / f"{self.path}.2024-04-29-{self.hour:02d}-00-00.log"
        os.rename(self.live, spooled)
        self.spooled.append(spooled)
        if compress:
            self.compress_all()
        self.hour += 1
        self.open_new()

    def compress_all(self) -> None:
        day = self.base / "2024-04-29"
        day.mkdir(exist_ok=True)
        for spooled in self.spooled:
            hh = spooled.name.split(".")[1][11:13]
            dest = day / f"{self.path}.{hh}:00:00-{int(hh) + 1:02d}:00:00.log.gz"
            with open(spooled, "rb") as src, gzip.open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            spooled.unlink()
        self.spooled = []


def live_source(logdir: Path, **kw: Any) -> LogDirSource:
    return LogDirSource(logdir, clock=kw.pop("clock", FakeClock()), scan_interval=0, retry_interval=0, **kw)


def drain(src: Any, max_messages: int = 1000) -> list[Message]:
    """Poll until a poll returns nothing."""
    out: list[Message] = []
    for _ in range(100_000):
        got = src.poll(max_messages)
        assert len(got) <= max_messages
        if not got:
            return out
        out += got
    raise AssertionError("source never ran dry")


def restarted(src: LogDirSource, logdir: Path, **kw: Any) -> LogDirSource:
    """What a probe killed now and started again would run: a new source from the JSON-saved token."""
    token = json.loads(json.dumps(src.state()))
    src.close()
    new = live_source(logdir, **kw)
    new.restore(token)
    return new


# --- LogDirSource: live following ----------------------------------------------------------------------------


def test_appends_and_a_line_split_across_writes(tmp_path: Path) -> None:
    z = ZeekDir(tmp_path)
    src = live_source(z.logdir)
    assert src.poll(100) == []
    z.open_new()
    z.append(row(0) + row(1))
    got = drain(src)
    assert uids(got) == expected(range(2))
    z.append(row(2) + row(3)[:7])  # a partial line is held, not parsed
    got += drain(src)
    assert uids(got) == expected(range(3))
    z.append(row(3)[7:15])
    assert src.poll(100) == []
    z.append(row(3)[15:] + row(4))
    got += drain(src)
    assert uids(got) == expected(range(5))
    msg = got[0][1]
    assert msg["path"] == "conn" and msg["ts"] == 1714420800.0 and msgpack.unpackb(msg["rec"])["n"] == 0
    assert src.summary() == {"records": 5, "bad_lines": 0, "files": 1, "lost_files": 0, "unreadable_files": 0}
    assert not src.finished()
    src.close()


def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    z = ZeekDir(tmp_path)
    z.open_new()
    z.append(row(0))
    src = live_source(z.logdir)
    got = drain(src)
    z.append(row(1) + row(2))  # written just before the rotation, not yet read
    z.rotate()
    z.append(row(3) + row(4))
    got += drain(src)
    z.append(row(5))
    got += drain(src)
    assert uids(got) == expected(range(6))
    src.close()


def test_file_created_and_rotated_between_polls_is_not_missed(tmp_path: Path) -> None:
    z = ZeekDir(tmp_path)
    z.open_new()
    z.append(row(0))
    src = live_source(z.logdir)
    got = drain(src)
    z.append(row(1))
    z.rotate()
    z.append(row(2))
    z.rotate(compress=False)  # still beside the live log, not yet archived
    z.append(row(3))
    z.rotate()
    z.append(row(4))
    got += drain(src)
    assert uids(got) == expected(range(5))


def test_first_start_reads_live_files_and_what_rotates_after_not_before(tmp_path: Path) -> None:
    z = ZeekDir(tmp_path)
    z.open_new()
    z.append(row(0))
    z.rotate()  # before the source exists: history, not read without --since
    z.append(row(1))
    src = live_source(z.logdir)
    z.append(row(2))
    z.rotate()  # after the source was made, before its first poll: read
    z.append(row(3))
    assert uids(drain(src)) == expected(range(1, 4))


def test_only_the_asked_logs_and_not_zeekctl_files(tmp_path: Path) -> None:
    z = ZeekDir(tmp_path)
    z.open_new()
    z.append(row(0))
    (z.logdir / "dns.log").write_bytes(header("dns", "2024-04-29-00-00-00") + row(1))
    (z.logdir / "stderr.log").write_bytes(b"oops\n")
    both = drain(live_source(z.logdir))
    assert sorted(uids(both)) == expected(range(2))
    only = drain(live_source(z.logdir, logs={"dns"}))
    assert uids(only) == ["C000001"] and only[0][1]["path"] == "dns"


def test_the_live_source_says_what_it_waits_for(tmp_path: Path) -> None:
    """For the probe's waiting lines: no file open is a wait (for the logs, or the directory); a file followed that
    nothing is written to is not."""
    logdir = tmp_path / "current"
    logdir.mkdir()
    src = live_source(logdir)
    assert drain(src) == [] and src.waiting() == f"Zeek logs (*.log) to appear in {logdir}"
    only = live_source(logdir, logs={"conn", "dns"})
    assert drain(only) == [] and only.waiting() == f"conn.log, dns.log to appear in {logdir}"
    z = ZeekDir(tmp_path)
    z.open_new()
    z.append(row(0))
    assert uids(drain(only)) == expected(range(1)) and only.waiting() is None
    assert drain(only) == [] and only.waiting() is None  # followed, idle: not a wait
    token = json.loads(json.dumps(only.state()))
    only.close()
    shutil.rmtree(logdir)
    gone = live_source(logdir, logs={"conn"})
    gone.restore(token)
    assert drain(gone) == [] and gone.waiting() == f"the log directory {logdir} (not there now)"
    logdir.mkdir()
    assert drain(gone) == [] and gone.waiting() is not None and "conn file being read when the probe stopped" in \
        str(gone.waiting())


def test_identity_is_the_header_through_open_or_the_first_record() -> None:
    h = header("conn", "2024-04-29-16-00-01")
    ident = identity_of(h + row(1), final=False)
    assert ident is not None and ident[1] == h.index(b"#fields")
    assert identity_of(h[: ident[1] - 3], final=False) is None  # #open not complete yet
    assert identity_of(h + row(1), final=False) != identity_of(header("conn", "2024-04-29-17-00-01"), final=False)
    js = b'{"ts":1.5,"uid":"C1"}\n{"ts":2.5,"uid":"C2"}\n'
    assert identity_of(js, final=False) == identity_of(js[:22], final=False)
    assert identity_of(js[:10], final=False) is None
    assert identity_of(gzip.decompress(gzip.compress(js)), final=True) == identity_of(js, final=True)


# --- LogDirSource: restarts --------------------------------------------------------------------------------


def test_restart_resumes_exactly_after_the_last_record_returned(tmp_path: Path) -> None:
    z = ZeekDir(tmp_path)
    z.open_new()
    z.append(b"".join(row(i) for i in range(10)) + row(10)[:5])
    src = live_source(z.logdir)
    got = src.poll(4)
    src = restarted(src, z.logdir)
    got += src.poll(3)
    src = restarted(src, z.logdir)
    z.append(row(10)[5:] + row(11))
    got += drain(src)
    assert uids(got) == expected(range(12))


@pytest.mark.parametrize("compress", [True, False])
def test_restart_after_rotations_while_down(tmp_path: Path, compress: bool) -> None:
    z = ZeekDir(tmp_path)
    z.open_new()
    z.append(b"".join(row(i) for i in range(6)))
    src = live_source(z.logdir)
    got = src.poll(3)
    token = json.loads(json.dumps(src.state()))
    src.close()
    # while the probe is down: the rest of the file, two rotations (the last one maybe not yet archived)
    z.append(row(6))
    z.rotate()
    z.append(row(7) + row(8))
    z.rotate(compress=compress)
    z.append(row(9))
    src = live_source(z.logdir)
    src.restore(token)
    got += drain(src)
    assert uids(got) == expected(range(10))
    assert src.summary()["lost_files"] == 0


def test_kill_anywhere_with_rotations_is_exactly_once(tmp_path: Path) -> None:
    """Random appends (cut anywhere), rotations (archived at once or later), and restarts at random points."""
    for seed in range(12):
        rnd = random.Random(seed)
        z = ZeekDir(tmp_path / str(seed))
        z.open_new()
        data = b""
        n = 0
        src = live_source(z.logdir)
        got: list[Message] = []
        for _ in range(200):
            action = rnd.random()
            if action < 0.5:
                k = rnd.randint(1, 4)
                data += b"".join(row(n + i) for i in range(k))
                n += k
                cut = rnd.randint(0, len(data))
                z.append(data[:cut])
                data = data[cut:]
            elif action < 0.58 and z.hour < 40:
                z.append(data)
                data = b""
                z.rotate(compress=rnd.random() < 0.5)
            elif action < 0.62:
                z.compress_all()
            elif action < 0.75:
                src = restarted(src, z.logdir)
            else:
                got += src.poll(rnd.randint(1, 5))
        z.append(data)
        got += drain(src)
        assert uids(got) == expected(range(n)), f"seed {seed}"


# --- LogDirSource: --since backfill --------------------------------------------------------------------------


def test_since_backfills_archives_in_date_dirs_then_follows_live(tmp_path: Path) -> None:
    need_data()
    day = tmp_path / "2024-04-29"
    day.mkdir()
    names = ["conn.15:00:00-16:00:00.log.gz", "conn.16:00:00-17:00:00.log.gz", "dns.15:00:00-16:00:00.log.gz",
             "dns.16:00:00-17:00:00.log.gz", "conn-summary.15:00:00-16:00:00.log.gz"]
    for name in names[:4]:
        shutil.copy(ROLLING / name, day / name)
    (day / names[4]).write_bytes(gzip.compress(b"not a zeek log\n"))
    (tmp_path / "2024-04-01").mkdir()  # an older day: not read
    shutil.copy(ROLLING / names[0], tmp_path / "2024-04-01" / names[0])
    z = ZeekDir(tmp_path)
    z.open_new()
    z.append(row(10**7))  # ts far after since
    records = {p: [r for n in names[:4] if n.startswith(p + ".") for r in read_log(ROLLING / n).records]
               for p in ("conn", "dns")}
    since = sorted(r.ts for r in records["conn"] if r.ts is not None)[len(records["conn"]) // 3]
    want = {p: [log_message(r) for r in rs if r.ts is None or r.ts >= since] for p, rs in records.items()}
    want["conn"].append(log_message(read_log_bytes(header("conn", "2024-04-29-00-00-00") + row(10**7))[0]))

    src = live_source(z.logdir, since=since)
    got: list[Message] = []
    for i in range(40):  # restarts in the middle of the backfill
        got += src.poll(97)
        if i % 3 == 0:
            src = restarted(src, z.logdir)
    got += drain(src)
    by_path = {p: [m for m in got if m[1]["path"] == p] for p in ("conn", "dns")}
    assert by_path == want
    assert len(got) == sum(len(v) for v in want.values())


def read_log_bytes(data: bytes) -> list[Any]:
    from wiredraw.plugins.net_zeek.parser import LogStream

    stream = LogStream("x.log", "conn")
    recs = [stream.feed(line, i) for i, line in enumerate(data.split(b"\n"), 1)]
    return [r for r in recs if r is not None]


# --- LogDirSource: real data end to end ----------------------------------------------------------------------


def test_real_conn_log_appended_in_arbitrary_chunks(tmp_path: Path) -> None:
    need_data()
    data = gzip.decompress(CONN16.read_bytes())
    want = [log_message(r) for r in read_log(CONN16).records]
    logdir = tmp_path / "current"
    logdir.mkdir()
    live = logdir / "conn.log"
    live.write_bytes(b"")
    src = live_source(logdir)
    rnd = random.Random(7)
    got: list[Message] = []
    pos = 0
    with open(live, "ab") as f:
        while pos < len(data):
            step = rnd.choice([1, 2, 3, 50, 333, 4096, 70000])
            f.write(data[pos : pos + step])
            f.flush()
            pos += step
            got += src.poll(rnd.choice([1, 10, 500]))
    got += drain(src)
    assert got == want
    assert src.summary()["records"] == len(want) and src.summary()["bad_lines"] == 0


# --- ReplaySource ----------------------------------------------------------------------------------------------


def replay_records(*files: Path) -> list[Message]:
    return [log_message(r) for f in files for r in read_log(f).records]


def canon(messages: list[Message]) -> list[str]:
    return sorted(json.dumps(m, sort_keys=True, default=str) for m in messages)


def test_replay_merges_files_in_ts_order(tmp_path: Path) -> None:
    need_data()
    src = ReplaySource([CONN16, DNS16], fast=True)
    got = drain(src, 500)
    assert src.finished()
    assert canon(got) == canon(replay_records(CONN16, DNS16))
    ts = [m["ts"] for _, m in got]
    # non-decreasing except for the records more than the window late in their own file, which are counted
    high, late = float("-inf"), 0
    for t in ts:
        late += t < high
        high = max(high, t)
    s = src.summary()
    assert late == s["late"] and late < len(ts) // 100
    assert s["records"] == len(ts) and s["files"] == 2 and s["bad_lines"] == 0
    assert src.progress()[0] == src.progress()[1] == CONN16.stat().st_size + DNS16.stat().st_size
    # a window wider than the disorder: fully sorted
    wide = ReplaySource([CONN16, DNS16], fast=True, reorder_seconds=1e9)
    ts = [m["ts"] for _, m in drain(wide, 500)]
    assert ts == sorted(ts) and wide.summary()["late"] == 0


def test_replay_restarts_exactly_once() -> None:
    need_data()
    files = [CONN16, DNS16]
    src = ReplaySource(files, fast=True)
    got: list[Message] = []
    rnd = random.Random(3)
    while not src.finished():
        got += src.poll(rnd.choice([1, 7, 300, 2000]))
        token = json.loads(json.dumps(src.state()))
        src.close()
        src = ReplaySource(files, fast=True)
        src.restore(token)
        assert src.progress()[1] > 0
    assert canon(got) == canon(replay_records(*files))
    with pytest.raises(ValueError, match="resume state is for another set of files"):
        ReplaySource([DNS16], fast=True).restore(token)


def half_replayed(files: list[Path], n: int = 3000) -> tuple[list[Message], Any]:
    """The first ``n`` records of a replay of ``files`` and its resume token, as saved (JSON)."""
    src = ReplaySource(files, fast=True)
    got = src.poll(n)
    token = json.loads(json.dumps(src.state()))
    src.close()
    return got, token


def test_replay_state_belongs_to_its_files_wherever_they_are_and_in_any_order(tmp_path: Path) -> None:
    need_data()
    got, token = half_replayed([CONN16, DNS16])
    # the same files moved, renamed, decompressed, and given in the other order: they resume, exactly once
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "dns.log").write_bytes(gzip.decompress(DNS16.read_bytes()))
    os.symlink(CONN16, moved / "c.log.gz")
    src = ReplaySource([moved / "dns.log", moved / "c.log.gz"], fast=True)
    src.restore(token)
    got += drain(src, 700)
    assert canon(got) == canon(replay_records(CONN16, DNS16))
    # another set (one file fewer, one more, or other files) is refused before anything changes
    for files in ([CONN16], [CONN16, DNS16, DNS16], [ROLLING / "conn.15:00:00-16:00:00.log.gz", DNS16]):
        other = ReplaySource(files, fast=True)
        with pytest.raises(source_mod.OtherFiles, match="^resume state is for another set of files$"):
            other.restore(token)
        assert canon(drain(other, 700)) == canon(replay_records(*files))  # from the start, untouched


def test_replay_state_of_the_same_path_with_other_content_is_refused(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug as met: `--replay conn.log` in a/, then in b/: the same path, other files."""
    for d, i in (("a", 0), ("b", 100)):
        (tmp_path / d).mkdir()
        # one header for both (Zeek test baselines, or files cut from one log): only the records differ
        (tmp_path / d / "conn.log").write_bytes(header("conn", "2024-04-29-20-00-00") + b"".join(row(i + k)
                                                                                              for k in range(5)))
    monkeypatch.chdir(tmp_path / "a")
    first = ReplaySource([Path("conn.log")], fast=True)
    assert uids(drain(first)) == expected(range(5)) and first.finished()
    token = json.loads(json.dumps(first.state()))
    monkeypatch.chdir(tmp_path / "b")
    second = ReplaySource([Path("conn.log")], fast=True)
    with pytest.raises(ValueError, match="another set of files"):
        second.restore(token)
    assert uids(drain(second)) == expected(range(100, 105))
    # a token of the old shape (paths only) still resumes by its paths
    old = {**token, "v": 1, "files": [{k: v for k, v in f.items() if k != "id"} for f in token["files"]]}
    again = ReplaySource([Path("conn.log")], fast=True)
    again.restore(old)
    assert again.finished() and drain(again) == []


def test_replay_identity_is_over_content() -> None:
    need_data()
    plain = source_mod.replay_identity(CONN16)
    assert plain == source_mod.replay_identity(CONN16)
    assert plain != source_mod.replay_identity(DNS16)
    assert plain.endswith(f":{source_mod.ID_MAX}")


def test_replay_pacing_follows_event_time_at_speed() -> None:
    need_data()
    clock = FakeClock()
    speed = 60.0
    src = ReplaySource([DNS16, CONN16], speed=speed, clock=clock)
    first = src.poll(10**6)
    assert first  # the first records go at once
    t0 = first[0][1]["ts"]
    assert all(m["ts"] == t0 or m["ts"] < t0 for _, m in first)
    got = list(first)
    polls = 0
    while not src.finished():
        clock.now += 1.0
        polls += 1
        batch = src.poll(10**6)
        elapsed = clock.now - 1000.0
        assert all((m["ts"] - t0) / speed <= elapsed for _, m in batch)
        got += batch
        assert polls < 10_000
    span = max(m["ts"] for _, m in got) - t0
    assert abs(polls - span / speed) <= 2  # paced: the hour takes span/speed seconds of the clock
    assert canon(got) == canon(replay_records(DNS16, CONN16))


def test_replay_json_and_plain_files(tmp_path: Path) -> None:
    js = tmp_path / "conn.log"
    js.write_bytes(b'{"ts":"2024-04-29T20:00:02.000000Z","uid":"Cb"}\n{"ts":1714406400.5,"uid":"Ca"}\n')
    tsv = tmp_path / "dns.log.gz"
    tsv.write_bytes(gzip.compress(header("dns", "x") + row(1)))
    got = drain(ReplaySource([js, tsv], fast=True))
    assert [(m["path"], m["uid"]) for _, m in got] == [("conn", "Ca"), ("dns", "C000001"), ("conn", "Cb")]


# --- module options --------------------------------------------------------------------------------------------


def probe_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    NetZeekModule().add_probe_options(parser)
    return parser.parse_args(list(argv))


def test_probe_options_make_the_right_source(tmp_path: Path) -> None:
    module = NetZeekModule()
    src = module.make_source(probe_args("--logdir", str(tmp_path), "--logs", "conn, dns", "--since", "1714406400"))
    assert isinstance(src, LogDirSource) and src.logs == {"conn", "dns"} and src.since == 1714406400.0
    f = tmp_path / "conn.log"
    f.write_bytes(b"")
    rep = module.make_source(probe_args("--replay", str(f), str(f), "--speed", "10"))
    assert isinstance(rep, ReplaySource) and rep.speed == 10.0 and len(rep.files) == 2
    fast = module.make_source(probe_args("--replay", str(f), "--fast"))
    assert isinstance(fast, ReplaySource) and fast.speed is None and fast.finished() is False
    for argv, flags in ([(), "--logdir"], [("--logdir", str(tmp_path), "--replay", str(f)), "--replay"],
                        [("--logdir", str(tmp_path), "--fast"), "--fast"],
                        [("--replay", str(f), "--since", "0"), "--since"],
                        [("--replay", str(tmp_path / "missing.log")), "missing.log"],
                        [("--logdir", str(tmp_path / "nope")), "nope"],
                        [("--replay", str(f), "--speed", "0"), "--speed"]):
        with pytest.raises(ValueError, match=flags):
            module.make_source(probe_args(*argv))


def test_parse_time() -> None:
    assert parse_time("1714406400") == 1714406400.0
    assert parse_time("1714406400.25") == 1714406400.25
    assert parse_time("2024-04-29T16:00:00Z") == 1714406400.0
    assert parse_time("2024-04-29T18:00:00+02:00") == 1714406400.0
    with pytest.raises(ValueError, match="--since"):
        parse_time("yesterday")


class LinearReplay(ReplaySource):
    """The merge as first written (every file looked at for every record): the reference for the heap merge."""

    def poll(self, max_messages: int) -> list[Message]:
        now = self.clock()
        if self._started_at is None:
            self._started_at = now
        out: list[Message] = []
        budget = [source_mod.POLL_BYTES]
        while len(out) < max_messages:
            best = None
            for f in self.files:
                if not self._ready(f, budget):
                    return out
                if f.heap and (best is None or f.heap[0][0] < best.heap[0][0]):
                    best = f
            if best is None:
                break
            key, _, held = best.heap[0]
            if key != float("-inf"):
                if self.t_first is None:
                    self.t_first, self._origin = key, now
                if self.speed is not None and self._origin is not None:
                    if key - self.t_first > (now - self._origin) * self.speed:
                        break
            heapq.heappop(best.heap)
            if self.t_last is not None and key < self.t_last:
                self.late += 1
            elif key != float("-inf"):
                self.t_last = key
            held.released = True
            order = best.order
            while order and order[0].released:
                order.popleft()
            if len(order) > 4 * self.hold_max:
                self._unstick(best)
            out.append(held.message)
            self.records += 1
        return out


def test_replay_heap_merge_matches_the_linear_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same records in the same order as looking at every file each time: ties (equal ts across files go in file
    order), records without ts, a far-future ts stuck in a small reorder buffer, a per-poll byte budget smaller
    than a file, pacing, and restarts from the resume token in between."""
    rnd = random.Random(11)
    files = []
    for k in range(9):
        lines = [header("conn" if k % 2 else "dns", f"2024-04-29-{k:02d}")]
        for i in range(400):
            t = 1714420800 + i + rnd.choice([0, 0, 0, -30, -400, 5]) + (k % 3)
            uid = f"C{k}x{i}"
            if i == 50 and k == 4:
                lines.append(f"{t + 10**6}.000000\t{uid}\t10.0.0.1\t{i}\n".encode())  # far future: gets stuck
            elif i % 97 == 0:
                lines.append(f"-\t{uid}\t10.0.0.2\t{i}\n".encode())  # no ts
            else:
                lines.append(f"{t}.{rnd.choice(['000000', '500000'])}\t{uid}\t10.0.0.{i % 250}\t{i}\n".encode())
        path = tmp_path / f"{'conn' if k % 2 else 'dns'}.{k}.log"
        data = b"".join(lines)
        if k == 2:
            path = path.with_name(path.name + ".gz")
            data = gzip.compress(data)
        path.write_bytes(data)
        files.append(path)
    monkeypatch.setattr(source_mod, "POLL_BYTES", 3000)  # a poll reads only part of a file
    opts: dict[str, Any] = {"fast": True, "reorder_seconds": 60.0, "reorder_max": 20}

    def run(cls: type[ReplaySource], restart: bool) -> tuple[list[Message], dict[str, Any]]:
        src = cls(files, **opts)
        got: list[Message] = []
        sizes = random.Random(5)
        polls = 0
        while not src.finished():
            got += src.poll(sizes.choice([1, 3, 50, 700]))
            polls += 1
            assert polls < 20_000, (cls.__name__, restart, len(got))
            if restart and polls % 50 == 0:  # (a restart throws away what the buffers held: give them time)
                token = json.loads(json.dumps(src.state()))
                src.close()
                src = cls(files, **opts)
                src.restore(token)
        return got, src.summary()

    for restart in (False, True):
        want, want_summary = run(LinearReplay, restart)
        got, summary = run(ReplaySource, restart)
        assert got == want and summary["records"] == want_summary["records"]
        assert summary["late"] == want_summary["late"] > 0
        assert canon(got) == canon(replay_records(*files))  # exactly once across the restarts
    # paced: the same records go in each poll
    clock_a, clock_b = FakeClock(), FakeClock()
    paced_a = LinearReplay(files, speed=30.0, clock=clock_a, reorder_seconds=60.0, reorder_max=20)
    paced_b = ReplaySource(files, speed=30.0, clock=clock_b, reorder_seconds=60.0, reorder_max=20)
    for _ in range(200):
        clock_a.now += 0.5
        clock_b.now += 0.5
        assert paced_b.poll(10**6) == paced_a.poll(10**6)
    clock_a.now += 10**6  # what is left: records that take the far-future ts of their file for want of one
    clock_b.now += 10**6
    assert paced_b.poll(10**6) == paced_a.poll(10**6)
    assert paced_a.finished() and paced_b.finished()
