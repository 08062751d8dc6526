"""`wiredraw open`: one's own Zeek logs on screen in one command, on real logs from ../shared/data (real server,
real probe, real viewer rendering offscreen), recorded and live; the key and token made once and reused."""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import dev_env
from wiredraw.core.cli.open import claim, store_of
from wiredraw.core.module import OpenRequest
from wiredraw.core.plugins import load_modules
from wiredraw.core.viewer_client import ViewerClient, ViewerClientError

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "zeek"
ROLLING = DATA / "tsv" / "rita_proxy_rolling"
ZUI_JSON = DATA / "json" / "zui_sample"
needs_data = pytest.mark.skipif(not ROLLING.is_dir(), reason=f"real Zeek data not found at {DATA} (../shared/data)")


def wiredraw(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wiredraw.core.cli", *args], capture_output=True, text=True,
                          env=dev_env(), timeout=timeout)


def nodes_drawn(stdout: str) -> int:
    m = re.search(r"wiredraw viz: screenshot .* \((\d+) nodes", stdout)
    assert m, stdout
    return int(m.group(1))


@needs_data
def test_open_a_folder_of_real_logs_draws_it_and_a_second_run_reuses_key_and_token(tmp_path):
    data_dir = tmp_path / "data"
    png = tmp_path / "first.png"
    r = wiredraw("open", str(ROLLING), "--data-dir", str(data_dir), "--offscreen", "--screenshot", str(png),
                 "--duration", "15", "--size", "640x360")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replaying 15 Zeek log files" in r.stdout
    assert "everything is stored: 16,169 records sent" in r.stdout
    assert png.is_file() and nodes_drawn(r.stdout) > 100
    keys, token = (data_dir / "probe-keys.json").read_bytes(), (data_dir / "open-viewer.token").read_text()
    assert "Traceback" not in r.stdout + r.stderr

    # another set of logs (JSON this time), the same data directory: the same key and token, a store of its own
    r2 = wiredraw("open", str(ZUI_JSON), "--data-dir", str(data_dir), "--offscreen", "--screenshot",
                  str(tmp_path / "second.png"), "--duration", "12", "--size", "640x360")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "everything is stored: 30 records sent" in r2.stdout
    assert nodes_drawn(r2.stdout) > 10
    assert (data_dir / "probe-keys.json").read_bytes() == keys
    assert (data_dir / "open-viewer.token").read_text() == token
    stores = sorted(p.name for p in (data_dir / "open").iterdir())
    assert len(stores) == 2 and stores[0].startswith("rita_proxy_rolling-") and stores[1].startswith("zui_sample-")

    # the first set again: its store is there, nothing is sent twice
    r3 = wiredraw("open", str(ROLLING), "--data-dir", str(data_dir), "--no-viewer", "--duration", "4")
    assert r3.returncode == 0, r3.stdout + r3.stderr
    assert "nothing new to send" in r3.stdout
    assert not [p for p in _processes() if str(data_dir) in p], "a process was left behind"


@needs_data
def test_open_follows_a_live_directory_and_new_connections_reach_a_viewer(tmp_path):
    """A zeekctl-like logs/current that the test appends real conn lines to, as Zeek would; `open --no-viewer`
    says how to watch, and a viewer client sees the new connections arrive."""
    current = tmp_path / "logs" / "current"
    current.mkdir(parents=True)
    with gzip.open(ROLLING / "conn.16:00:00-17:00:00.log.gz", "rt") as f:
        lines = f.read().splitlines(keepends=True)
    header = [ln for ln in lines if ln.startswith("#") and not ln.startswith("#close")]
    rows = [ln for ln in lines if not ln.startswith("#")]
    conn = current / "conn.log"
    conn.write_text("".join(header) + "".join(rows[:5]))
    proc = subprocess.Popen([sys.executable, "-m", "wiredraw.core.cli", "open", str(current), "--data-dir",
                             str(tmp_path / "data"), "--no-viewer", "--duration", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dev_env(),
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        watch = None
        deadline = time.monotonic() + 30
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "watch it: wiredraw watch" in line:
                watch = line
                break
            assert time.monotonic() < deadline, "".join(seen)
        assert watch is not None and "following the live Zeek log directory" in "".join(seen), "".join(seen)
        server = watch.split("--server ")[1].split()[0]
        token = Path(watch.split("--token-file ")[1].split()[0]).read_text().strip()
        host, port = server.rsplit(":", 1)
        client = ViewerClient(host, int(port), token, timeout=2)
        client.connect()
        client.subscribe("net_zeek")
        first = _edges_until(client, lambda edges: len(edges) >= 1, 30)
        with conn.open("a") as f:  # Zeek appends a connection
            f.writelines(rows[5:40])
        fields = next(ln for ln in header if ln.startswith("#fields")).rstrip("\n").split("\t")[1:]
        orig, resp = fields.index("id.orig_h"), fields.index("id.resp_h")
        wanted = {f"{cols[orig]}>{cols[resp]}" for cols in (r.rstrip("\n").split("\t") for r in rows[5:40])}
        later = _edges_until(client, lambda edges: wanted <= edges, 30)
        assert wanted <= later and len(later) > len(first)
        client.close()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while [p for p in _processes() if str(tmp_path) in p] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in _processes() if str(tmp_path) in p]


def _edges_until(client: ViewerClient, done, seconds: float) -> set[str]:
    """Edge ids of the live view, following its full graphs and diffs, until ``done(edges)`` or the time is up."""
    edges: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = client.next_message()
        except (TimeoutError, ViewerClientError):  # a quiet moment (the read timed out): look again
            continue
        if msg.get("type") == "graph":
            edges = {e["id"] for e in msg.get("edges") or ()}
        elif msg.get("type") == "diff":
            edges |= {e["id"] for e in msg.get("edges") or ()}
            edges -= set(msg.get("removed_edges") or ())
        if done(edges):
            break
    return edges


def _processes() -> list[str]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return out


def test_paths_no_module_reads_are_refused_with_what_would_be_read(tmp_path):
    (tmp_path / "notes.txt").write_text("not a log\n")
    with pytest.raises(ValueError, match="nothing in .* is input any module reads.*net_zeek reads Zeek logs"):
        claim(load_modules(), OpenRequest((tmp_path,)), None)
    with pytest.raises(ValueError, match="no such file or directory"):
        claim(load_modules(), OpenRequest((tmp_path / "absent",)), None)


@needs_data
def test_the_store_is_chosen_by_the_set_of_paths(tmp_path):
    a = store_of(tmp_path, [ROLLING, ZUI_JSON])
    assert a == store_of(tmp_path, [ZUI_JSON, ROLLING])  # the same set, in any order
    assert a != store_of(tmp_path, [ROLLING]) and a.parent == tmp_path / "open"
    loaded, opened = claim(load_modules(), OpenRequest((ROLLING, ZUI_JSON)), None)
    assert loaded.spec.slug == "net_zeek" and not opened.live
    assert opened.describe.startswith("replaying 16 Zeek log files")


@needs_data
def test_open_sends_to_a_server_elsewhere_with_the_key_and_token_given(world, tmp_path):
    """`--server`: no server of its own; the probe key and viewer token are read from the files given, and what it
    sends is stored by that server."""
    from processes import add_key
    from wiredraw.core.server.credentials import Tokens

    server_dir = tmp_path / "server"
    server = world.server("server", server_dir, "--ephemeral").wait_ready()
    key_file = tmp_path / "open.key"
    add_key(server_dir, "laptop", key_file)
    token_file = tmp_path / "viewer.token"
    token_file.write_text(Tokens(server_dir).add("analyst", "viewer") + "\n")
    assert server.match is not None
    r = wiredraw("open", str(ROLLING), "--data-dir", str(tmp_path / "mine"), "--server", server.probe_addr,
                 "--viz", f"127.0.0.1:{server.match['viz']}", "--probe-id", "laptop", "--key-file", str(key_file),
                 "--token-file", str(token_file), "--no-viewer", "--duration", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "wiredraw server ready" not in r.stdout  # it started none
    assert f"--token-file {token_file}" in r.stdout
    stats = server.stats()
    assert stats["records_received"] == 16_169 and stats["records_rejected"] == 0, stats
    assert stats["records_written"] + stats["records_repeated"] == 16_169  # (the data repeats one record)
    # no key given and no terminal to ask at: a clear error, nothing started
    r2 = wiredraw("open", str(ROLLING), "--data-dir", str(tmp_path / "mine"), "--server", server.probe_addr,
                  "--no-viewer", "--duration", "3")
    assert r2.returncode == 2 and "give --key-file" in r2.stderr, r2.stdout + r2.stderr


def test_a_token_file_made_again_is_private_even_over_a_readable_one(tmp_path):
    """`open` writes its viewer token with the credentials' own private write: an older token file left readable
    by others (or a stray temp file) does not keep its mode."""
    from wiredraw.core.cli.local import local_credentials

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    stale = data_dir / "open-viewer.token"
    stale.write_text("wdv_not-a-token\n")
    stale.chmod(0o644)
    _key, token_file = local_credentials(data_dir, "open", "open-viewer", reuse=True)
    assert token_file == stale and stale.read_text() != "wdv_not-a-token\n"  # made again: the old one was not valid
    assert stale.stat().st_mode & 0o777 == 0o600
