"""HTTP collector ingest: POST /logs/<type> with a collector token, against a real server and Redis."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from processes import World, dev_env
from wiredraw.plugins.net_zeek.query import conn_probes

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "zeek"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real Zeek data not found at {DATA} (../shared/data)")
CONN = DATA / "tsv" / "rita_proxy_rolling" / "conn.16:00:00-17:00:00.log.gz"
DNS = DATA / "tsv" / "rita_proxy_rolling" / "dns.16:00:00-17:00:00.log.gz"
JSON_DNS = DATA / "json" / "zed_sample_data_wrccdc2018" / "dns.log.gz"


def token(data_dir: Path, name: str, role: str) -> str:
    return subprocess.run([sys.executable, "-m", "wiredraw.core.cli", "tokens", "add", name, "--role", role,
                           "--data-dir", str(data_dir)], capture_output=True, text=True, check=True,
                          env=dev_env()).stdout.strip()


def post(server, path: str, body: bytes, bearer: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    req = urllib.request.Request(f"http://127.0.0.1:{server.match['http']}{path}", data=body, headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def collector(world: World):
    data_dir = world.root / "data"
    collector_token = token(data_dir, "zeek1", "collector")
    viewer_token = token(data_dir, "alice", "viewer")
    server = world.server("server", data_dir, "--ephemeral", "--max-upload-mb", "4").wait_ready()
    return server, collector_token, viewer_token, world.redis(server.redis_url)


@needs_data
def test_upload_of_a_real_conn_log_is_stored_once(collector):
    server, tok, _viewer, client = collector
    body = gzip.decompress(CONN.read_bytes())
    from wiredraw.plugins.net_zeek.parser import read_log

    expected = read_log(CONN)
    code, answer = post(server, "/logs/conn", body, tok)
    assert code == 200, answer
    assert answer["accepted"] == len(expected.records) and answer["bad_lines"] == expected.bad_count
    uids = {r.uid for r in expected.records}
    assert answer["stored"] == len(uids)  # one key per connection
    stored = sum(1 for _ in client.scan_iter("wd:net_zeek:conn:*", count=1000) if not _.endswith(b":probes"))
    assert stored == len(uids)
    some = next(iter(uids))
    some_ts = next(r.ts for r in expected.records if r.uid == some)
    assert conn_probes(client, some, some_ts) == {"collector:zeek1"}
    # the same upload again: everything is a repeat, nothing is written
    code, again = post(server, "/logs/conn", body, tok)
    assert code == 200 and again["stored"] == 0 and again["repeats"] == answer["accepted"]
    stats = server.stats()
    assert stats["collector_uploads"] == 2 and stats["records_written"] == answer["stored"]


@needs_data
def test_upload_of_json_lines(collector):
    server, tok, _viewer, client = collector
    lines = gzip.decompress(JSON_DNS.read_bytes()).splitlines(keepends=True)[:3000]
    code, answer = post(server, "/logs/dns", b"".join(lines), tok)
    assert code == 200, answer
    assert answer["accepted"] == 3000 and answer["bad_lines"] == 0
    assert any(True for _ in client.scan_iter("wd:net_zeek:uid:*", count=1000))


def test_bad_lines_are_counted_with_line_numbers(collector):
    server, tok, _viewer, client = collector
    body = (b"#separator \\x09\n#path\tconn\n"
            b"#fields\tts\tuid\tid.orig_h\tduration\n#types\ttime\tstring\taddr\tinterval\n"
            b"1541240000.0\tC1\t10.0.0.1\t1.5\n"
            b"not\ta row\n"
            b"1541240001.0\tC2\t10.0.0.2\tabc\n"
            b"1541240002.0\tC3\t10.0.0.3\t-\n")
    code, answer = post(server, "/logs/conn", body, tok)
    assert code == 200, answer
    assert answer["stored"] == 2 and answer["bad_lines"] == 2
    assert [e["line"] for e in answer["errors"]] == [6, 7]
    assert client.exists("wd:net_zeek:conn:C1") and client.exists("wd:net_zeek:conn:C3")


def test_token_required(collector):
    server, tok, viewer, _client = collector
    body = b'{"_path": "conn", "ts": 1.0, "uid": "C1"}\n'
    assert post(server, "/logs/conn", body, None)[0] == 401
    assert post(server, "/logs/conn", body, "wdc_not-a-token")[0] == 401
    code, answer = post(server, "/logs/conn", body, viewer)  # a viewer token is not a collector token
    assert code == 401 and "collector" in answer["error"]
    assert server.stats()["rejected"]["collector_unauthorized"] == 3


def test_too_large_is_413_and_the_server_goes_on(collector):
    server, tok, _viewer, client = collector
    code, answer = post(server, "/logs/conn", b"x" * (5 << 20), tok)
    assert code == 413 and "larger than" in answer["error"]
    code, answer = post(server, "/logs/conn", b'{"_path": "conn", "ts": 1.0, "uid": "C1", "duration": 1.0}\n', tok)
    assert code == 200 and answer["stored"] == 1


def test_retention_sets_the_history_ttl(world: World):
    data_dir = world.root / "data"
    tok = token(data_dir, "zeek1", "collector")
    server = world.server("server", data_dir, "--ephemeral", "--retention-days", "0.5").wait_ready()
    code, _answer = post(server, "/logs/conn", b'{"_path": "conn", "ts": 1.0, "uid": "C1", "duration": 1.0}\n', tok)
    assert code == 200
    ttl = world.redis(server.redis_url).ttl("wd:net_zeek:conn:C1")
    assert 43000 < ttl <= 43200
