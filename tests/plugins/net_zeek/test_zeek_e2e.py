"""net_zeek end to end with real processes: a probe following a live Zeek log directory, killed with
SIGKILL mid-file and restarted after a rotation happened while it was down, sends every record exactly
once (the server counts a record sent twice by the same probe as a repeat)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from processes import World, add_key, wait_until
from wiredraw.plugins.net_zeek.parser import read_log

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "zeek"
HOURS = ["16:00:00-17:00:00", "15:00:00-16:00:00"]  # 7,260 then 290 records: a new file after rotation
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real Zeek data not found at {DATA} (../shared/data)")


def lines_of(hour: str) -> tuple[list[bytes], list[bytes]]:
    raw = gzip.decompress((DATA / "tsv" / "rita_proxy_rolling" / f"conn.{hour}.log.gz").read_bytes())
    lines = raw.splitlines(keepends=True)
    header = [line for line in lines if line.startswith(b"#") and not line.startswith(b"#close")]
    body = [line for line in lines if not line.startswith(b"#")]
    return header, body


def append(path: Path, lines: list[bytes]) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(lines))
        f.flush()
        os.fsync(f.fileno())


def expected_repeats(files: list[Path]) -> tuple[int, int]:
    """(distinct connections, records that would be repeats even if each was sent once)."""
    seen: dict[str, float] = {}
    repeats = 0
    for f in files:
        for r in read_log(f).records:
            d = r.fields.get("duration") or 0.0
            if r.uid in seen and d <= seen[r.uid]:
                repeats += 1
            seen[r.uid] = max(d, seen.get(r.uid, 0.0))
    return len(seen), repeats


def test_probe_killed_mid_file_and_a_rotation_while_down_sends_everything_once(world: World):
    data_dir, live = world.root / "data", world.root / "logs" / "current"
    archive = world.root / "logs" / "2018-11-03"
    live.mkdir(parents=True)
    archive.mkdir()
    key_file = world.root / "s1.key"
    add_key(data_dir, "s1", key_file)
    server = world.server("server", data_dir, "--ephemeral").wait_ready()
    header_a, body_a = lines_of(HOURS[0])
    header_b, body_b = lines_of(HOURS[1])
    conn = live / "conn.log"
    cut1, cut2 = len(body_a) * 4 // 10, len(body_a) * 7 // 10
    append(conn, header_a + body_a[:cut1])

    def probe(name: str):
        return world.probe(name, server.probe_addr, key_file, world.root / "probe-state", None,
                           "--logdir", str(live), "--logs", "conn", module="net_zeek")

    first = probe("probe-1")
    wait_until(lambda: server.stats()["records_received"] >= cut1 // 2, 60,
               lambda: f"first records; stats {server.stats()}; {first.describe()}")
    append(conn, body_a[cut1:cut2])  # more arrives while the probe runs ...
    first.popen.kill()  # ... and it is killed mid-file, with SIGKILL
    first.wait(10)
    # While it is down: the rest of the hour, then zeekctl's rotation (moved, compressed) and a new file.
    append(conn, body_a[cut2:] + [b"#close\t2018-11-03-17-00-00\n"])
    rotated = archive / f"conn.{HOURS[0]}.log.gz"  # what zeekctl does: move, compress, recreate
    rotated.write_bytes(gzip.compress(conn.read_bytes()))
    conn.unlink()
    append(conn, header_b + body_b[:100])
    second = probe("probe-2")
    append(conn, body_b[100:])
    files = [rotated, conn]
    connections, data_repeats = expected_repeats(files)
    total = sum(len(read_log(f).records) for f in files)
    wait_until(lambda: server.stats()["records_received"] >= total, 90,
               lambda: f"all {total} records; stats {server.stats()}; {second.describe()}")
    stats = server.stats()
    assert stats["records_received"] == total, stats
    assert stats["records_repeated"] == data_repeats, f"a record was sent twice: {stats}"
    assert stats["records_rejected"] == 0, stats
    client = world.redis(server.redis_url)
    stored = sum(1 for k in client.scan_iter("wd:net_zeek:conn:*", count=5000) if not k.endswith(b":probes"))
    assert stored == connections
    assert second.running()  # a live follower keeps following
