"""Probe keys and viewer/collector tokens, kept in the data directory with mode 0600.

Probe keys are shared secrets (HMAC-SHA256), so the server must keep them; tokens are only ever
compared, so only their SHA-256 is stored and the token itself is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROBE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TOKEN_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
ROLES = ("viewer", "collector")
KEYS_FILE = "probe-keys.json"
TOKENS_FILE = "tokens.json"


class CredentialError(ValueError):
    pass


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CredentialError(f"{path}: unreadable ({exc}); fix or remove it") from exc
    if not isinstance(data, dict):
        raise CredentialError(f"{path}: expected a JSON object")
    return data


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically, readable by this user alone from the start (never world-readable, not even
    briefly, and not left so by an older file or temp file of another mode)."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode is only for a file it creates
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_private(path: Path, data: dict[str, Any]) -> None:
    write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_key_file(path: Path | str) -> bytes:
    """A probe's key file holds the hex key that ``wiredraw keys add`` printed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except OSError as exc:
        raise CredentialError(f"cannot read key file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CredentialError(f"key file {path} does not hold a hex key (as `wiredraw keys add` prints)") from exc
    if len(key) < 16:
        raise CredentialError(f"key file {path}: key too short ({len(key)} bytes, need at least 16)")
    return key


class ProbeSecrets:
    """The probe key store. ``key_for`` re-reads the file when it changed, so a key added with
    ``wiredraw keys add`` works without restarting the server."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / KEYS_FILE
        self._keys: dict[str, bytes] = {}
        self._mtime: float | None = None
        self._checked = 0.0

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._keys, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        raw = _read(self.path)
        self._keys = {pid: bytes.fromhex(v["key"]) for pid, v in raw.items()}
        self._mtime = mtime

    def key_for(self, probe_id: str) -> bytes | None:
        key = self._keys.get(probe_id)
        if key is None:
            now = time.monotonic()
            if now - self._checked > 1.0:  # unknown probes may flood: re-stat at most once a second
                self._checked = now
                try:
                    self._load()
                except CredentialError:
                    return None
                key = self._keys.get(probe_id)
        return key

    def add(self, probe_id: str, *, replace: bool = False) -> str:
        if not PROBE_ID_RE.match(probe_id):
            raise CredentialError(f"probe id {probe_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
        raw = _read(self.path)
        if probe_id in raw and not replace:
            raise CredentialError(f"probe {probe_id!r} already has a key; use --replace to make a new one")
        key = secrets.token_hex(32)
        raw[probe_id] = {"key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _write_private(self.path, raw)
        return key

    def remove(self, probe_id: str) -> None:
        raw = _read(self.path)
        if probe_id not in raw:
            raise CredentialError(f"no key for probe {probe_id!r}")
        del raw[probe_id]
        _write_private(self.path, raw)

    def list(self) -> list[dict[str, str]]:
        return [{"probe_id": k, "created": v.get("created", "")} for k, v in sorted(_read(self.path).items())]


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: str


class Tokens:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / TOKENS_FILE

    def add(self, name: str, role: str, *, replace: bool = False) -> str:
        if not TOKEN_NAME_RE.match(name):
            raise CredentialError(f"token name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
        if role not in ROLES:
            raise CredentialError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        raw = _read(self.path)
        if name in raw and not replace:
            raise CredentialError(f"token {name!r} exists; use --replace to make a new one")
        token = f"wd{role[0]}_" + secrets.token_urlsafe(32)
        raw[name] = {"role": role, "sha256": hashlib.sha256(token.encode()).hexdigest(),
                     "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _write_private(self.path, raw)
        return token

    def remove(self, name: str) -> None:
        raw = _read(self.path)
        if name not in raw:
            raise CredentialError(f"no token named {name!r}")
        del raw[name]
        _write_private(self.path, raw)

    def list(self) -> list[dict[str, str]]:
        return [{"name": k, "role": v.get("role", ""), "created": v.get("created", "")}
                for k, v in sorted(_read(self.path).items())]

    def check(self, token: str, role: str) -> TokenInfo | None:
        """The token's owner if it is valid for ``role``, else None (constant-time comparison)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        found = None
        for name, v in _read(self.path).items():
            if hmac.compare_digest(digest, v.get("sha256", "")) and v.get("role") == role:
                found = TokenInfo(name, role)
        return found
