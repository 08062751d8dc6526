"""The `wiredraw` command: help, plugins, keys and tokens, and what the install puts where."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from wiredraw.core.server.credentials import ProbeSecrets, Tokens, read_key_file

ROOT = Path(__file__).resolve().parents[3]


def wiredraw(*args, env=None, check=True):
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "wiredraw.core.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"wiredraw {args} exited {proc.returncode}: {proc.stderr}")
    return proc


def test_help_lists_commands():
    out = wiredraw("--help").stdout
    for command in ("demo", "server", "probe", "plugins", "keys", "tokens"):
        assert command in out
    server_help = wiredraw("server", "--help").stdout
    for flag in ("--data-dir", "--redis", "--bind", "--probe-port", "--viz-port", "--http-port", "--ephemeral"):
        assert flag in server_help


def test_plugins_json_lists_builtins():
    doc = json.loads(wiredraw("plugins", "--json").stdout)
    by_slug = {m["slug"]: m for m in doc["modules"]}
    assert by_slug["net_zeek"]["id"] == 1 and by_slug["proc_events"]["id"] == 2
    assert "log" in by_slug["net_zeek"]["messages"]
    assert {"fork", "exec", "exit", "snapshot"} <= set(by_slug["proc_events"]["messages"])
    for m in doc["modules"]:
        assert m["version"]
        assert m["keys"] and all(k["template"].startswith(f"wd:{m['slug']}:") for k in m["keys"])
    assert doc["broken"] == []
    text = wiredraw("plugins").stdout
    assert "net_zeek" in text and "key wd:net_zeek:" in text


def test_probe_help_has_module_options():
    out = wiredraw("probe", "devtest", "--help", env={"WIREDRAW_DEV_MODULES": "1"}).stdout
    for flag in ("--server", "--probe-id", "--key-file", "--transport", "--count", "--rate"):
        assert flag in out


def test_keys_add_prints_key_alone_and_stores_it_0600(tmp_path):
    data = tmp_path / "data"
    out = wiredraw("keys", "add", "sensor-1", "--data-dir", str(data)).stdout
    key = out.strip()
    assert out == key + "\n" and len(bytes.fromhex(key)) == 32
    keyfile = data / "probe-keys.json"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert ProbeSecrets(data).key_for("sensor-1") == bytes.fromhex(key)
    # a second add refuses to overwrite; --replace makes a new one
    again = wiredraw("keys", "add", "sensor-1", "--data-dir", str(data), check=False)
    assert again.returncode == 2 and "--replace" in again.stderr
    new = wiredraw("keys", "add", "sensor-1", "--replace", "--data-dir", str(data)).stdout.strip()
    assert new != key and ProbeSecrets(data).key_for("sensor-1") == bytes.fromhex(new)
    listed = wiredraw("keys", "list", "--data-dir", str(data)).stdout
    assert "sensor-1" in listed and new not in listed
    bad = wiredraw("keys", "add", "bad id!", "--data-dir", str(data), check=False)
    assert bad.returncode == 2 and "probe id" in bad.stderr


def test_tokens_add_and_check(tmp_path):
    data = tmp_path / "data"
    token = wiredraw("tokens", "add", "alice", "--role", "viewer", "--data-dir", str(data)).stdout.strip()
    collector = wiredraw("tokens", "add", "zeek1", "--role", "collector", "--data-dir", str(data)).stdout.strip()
    tokens = Tokens(data)
    assert tokens.check(token, "viewer").name == "alice"
    assert tokens.check(token, "collector") is None
    assert tokens.check(collector, "collector").name == "zeek1"
    assert tokens.check(token + "x", "viewer") is None
    stored = (data / "tokens.json").read_text()
    assert token not in stored and collector not in stored  # only hashes are kept
    assert stat.S_IMODE((data / "tokens.json").stat().st_mode) == 0o600
    wiredraw("tokens", "remove", "alice", "--data-dir", str(data))
    assert Tokens(data).check(token, "viewer") is None


def test_key_file_errors_are_clear(tmp_path):
    from wiredraw.core.server.credentials import CredentialError

    bad = tmp_path / "k"
    bad.write_text("not hex")
    with pytest.raises(CredentialError, match="does not hold a hex key"):
        read_key_file(bad)
    with pytest.raises(CredentialError, match="cannot read key file"):
        read_key_file(tmp_path / "missing")


def test_wheel_installs_only_under_wiredraw(tmp_path):
    """Nothing called core, plugins, probes or viz may land at the top of site-packages."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, timeout=300, capture_output=True)
    (wheel,) = tmp_path.glob("wiredraw-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"wiredraw", next(t for t in tops if t.endswith(".dist-info"))}
    for pkg in ("core", "plugins/net_zeek", "plugins/proc_events", "probes", "viz", "spec"):
        assert f"wiredraw/{pkg}/__init__.py" in names
    assert "wiredraw/spec/registry.toml" in names
    assert "wiredraw/plugins/net_zeek/net_zeek.toml" in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "net_zeek = wiredraw.plugins.net_zeek.module" in entry


def test_demo_runs_and_leaves_nothing_behind():
    proc = wiredraw("demo", "--duration", "4", "--no-viewer")
    lines = proc.stdout.splitlines()
    assert any(line.startswith("wiredraw server ready: probes=127.0.0.1:") for line in lines), proc.stdout
    progress = [line for line in lines if "server stored" in line]
    assert progress, proc.stdout
    final = progress[-1]
    # the last line comes after the probe drained its spool: what it read is what was stored
    read = int(final.split("probe read ")[1].split(" ")[0].replace(",", ""))
    stored = int(final.split("server stored ")[1].split(" ")[0].replace(",", ""))
    assert read > 30 and stored == read and "0 waiting" in final
    data_dir = lines[0].split("data directory ")[1].split(" ")[0]
    assert not Path(data_dir).exists()  # its temporary directory is removed
