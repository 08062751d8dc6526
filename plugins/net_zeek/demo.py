"""Realistic Zeek logs of a small office, written live into a log directory, for `wiredraw demo`.

What a Zeek sensor at an office's uplink would write, as zeekctl's logs/current holds it (TSV with the usual
headers, appended as things happen): workstations look names up before their HTTP and TLS connections, some
HTTP requests fail (404, 500, 503), one admin keeps a long SSH session open, and now and then a scanner sweeps
the office's addresses (conn REJ/S0 entries and a Scan::Port_Scan notice). Event times are the present: a
connection is logged when it ends, as Zeek does. Deterministic for a given seed.
"""

from __future__ import annotations

import random
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wiredraw.core.module import Demo

UNSET, EMPTY = "-", "(empty)"

HEADERS: dict[str, list[tuple[str, str]]] = {
    "conn": [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
             ("id.resp_h", "addr"), ("id.resp_p", "port"), ("proto", "enum"), ("service", "string"),
             ("duration", "interval"), ("orig_bytes", "count"), ("resp_bytes", "count"), ("conn_state", "string"),
             ("local_orig", "bool"), ("local_resp", "bool"), ("missed_bytes", "count"), ("history", "string"),
             ("orig_pkts", "count"), ("orig_ip_bytes", "count"), ("resp_pkts", "count"), ("resp_ip_bytes", "count"),
             ("tunnel_parents", "set[string]")],
    "dns": [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"), ("id.resp_h", "addr"),
            ("id.resp_p", "port"), ("proto", "enum"), ("trans_id", "count"), ("rtt", "interval"), ("query", "string"),
            ("qclass", "count"), ("qclass_name", "string"), ("qtype", "count"), ("qtype_name", "string"),
            ("rcode", "count"), ("rcode_name", "string"), ("AA", "bool"), ("TC", "bool"), ("RD", "bool"),
            ("RA", "bool"), ("Z", "count"), ("answers", "vector[string]"), ("TTLs", "vector[interval]"),
            ("rejected", "bool")],
    "http": [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"), ("id.resp_h", "addr"),
             ("id.resp_p", "port"), ("trans_depth", "count"), ("method", "string"), ("host", "string"),
             ("uri", "string"), ("referrer", "string"), ("version", "string"), ("user_agent", "string"),
             ("request_body_len", "count"), ("response_body_len", "count"), ("status_code", "count"),
             ("status_msg", "string"), ("resp_mime_types", "vector[string]")],
    "ssl": [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"), ("id.resp_h", "addr"),
            ("id.resp_p", "port"), ("version", "string"), ("cipher", "string"), ("curve", "string"),
            ("server_name", "string"), ("resumed", "bool"), ("established", "bool"), ("ssl_history", "string")],
    "ssh": [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"), ("id.resp_h", "addr"),
            ("id.resp_p", "port"), ("version", "count"), ("auth_success", "bool"), ("auth_attempts", "count"),
            ("direction", "enum"), ("client", "string"), ("server", "string")],
    "notice": [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
               ("id.resp_h", "addr"), ("id.resp_p", "port"), ("note", "enum"), ("msg", "string"), ("sub", "string"),
               ("src", "addr"), ("dst", "addr"), ("p", "port"), ("actions", "set[enum]"), ("suppress_for", "interval")],
}

WEB = {  # name -> (address, services it offers)
    "www.example.com": ("93.184.216.34", ("http", "ssl")),
    "intranet.example.org": ("10.1.0.5", ("http",)),
    "cdn.example.net": ("198.51.100.10", ("ssl",)),
    "api.example.net": ("198.51.100.20", ("ssl", "http")),
    "mail.example.org": ("203.0.113.25", ("ssl",)),
    "updates.example.com": ("192.0.2.80", ("http", "ssl")),
    "git.example.org": ("203.0.113.40", ("ssl",)),
}
RESOLVER = "10.1.0.2"
WORKSTATIONS = [f"10.1.0.{i}" for i in range(10, 26)]
ADMIN, BASTION = "10.1.0.12", "198.51.100.22"
SCANNER = "203.0.113.66"
PATHS = ["/", "/index.html", "/api/v1/items", "/static/app.js", "/login", "/img/logo.png", "/search?q=zeek"]
FAILURES = [(404, "Not Found"), (500, "Internal Server Error"), (503, "Service Unavailable"), (403, "Forbidden")]


def _uid(rng: random.Random) -> str:
    return "C" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(17))


def _value(v: Any, zeek_type: str) -> str:
    if v is None:
        return UNSET
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, list):
        return ",".join(_value(x, zeek_type) for x in v) if v else EMPTY
    if zeek_type in ("time", "interval") or isinstance(v, float):
        return f"{v:.6f}"
    return str(v)


@dataclass
class _Pending:
    """Something that ends (and is logged) at ``at``."""

    at: float
    logs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class OfficeTraffic:
    """Writes the office's logs into ``logdir`` (created), as time passes: call :meth:`step` with the present."""

    def __init__(self, logdir: Path, *, seed: int = 7, rate: float = 6.0) -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self.rate = rate  # browsing sessions per second
        self.pending: list[_Pending] = []
        self.written: dict[str, int] = {}
        self._last: float | None = None
        self._next_scan: float | None = None
        self._ssh_started = False

    # -- files --------------------------------------------------------------------------------------------------
    def _write(self, path: str, records: list[dict[str, Any]]) -> None:
        fields = HEADERS[path]
        f = self.logdir / f"{path}.log"
        lines = []
        if not f.exists():
            lines += ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-",
                      f"#path\t{path}", f"#open\t{time.strftime('%Y-%m-%d-%H-%M-%S')}",
                      "#fields\t" + "\t".join(n for n, _ in fields), "#types\t" + "\t".join(t for _, t in fields)]
        for r in records:
            lines.append("\t".join(_value(r.get(n), t) for n, t in fields))
        with open(f, "a") as out:
            out.write("\n".join(lines) + "\n")
        self.written[path] = self.written.get(path, 0) + len(records)

    # -- traffic ------------------------------------------------------------------------------------------------
    def _conn(self, ts: float, orig: str, resp: str, port: int, proto: str, service: str | None, duration: float,
              ob: int, rb: int, state: str = "SF", uid: str | None = None) -> dict[str, Any]:
        rng = self.rng
        return {"ts": ts, "uid": uid or _uid(rng), "id.orig_h": orig, "id.orig_p": rng.randint(40000, 65000),
                "id.resp_h": resp, "id.resp_p": port, "proto": proto, "service": service, "duration": duration,
                "orig_bytes": ob, "resp_bytes": rb, "conn_state": state, "local_orig": orig.startswith("10."),
                "local_resp": resp.startswith("10."), "missed_bytes": 0, "history": "ShADadFf" if state == "SF"
                else "S" if state == "S0" else "Sr", "orig_pkts": max(1, ob // 500), "orig_ip_bytes": ob + 40,
                "resp_pkts": max(0, rb // 1400), "resp_ip_bytes": rb + 40 if rb else 0, "tunnel_parents": []}

    def _browse(self, now: float) -> None:
        """A DNS lookup, then an HTTP or TLS connection to the answer."""
        rng = self.rng
        ws = rng.choice(WORKSTATIONS)
        name = rng.choice(list(WEB))
        addr, services = WEB[name]
        dns_uid = _uid(rng)
        rtt = rng.uniform(0.002, 0.04)
        dns_conn = self._conn(now, ws, RESOLVER, 53, "udp", "dns", rtt, 40, 120, uid=dns_uid)
        dns = {"ts": now, "uid": dns_uid, "id.orig_h": ws, "id.orig_p": dns_conn["id.orig_p"], "id.resp_h": RESOLVER,
               "id.resp_p": 53, "proto": "udp", "trans_id": rng.randint(1, 65535), "rtt": rtt, "query": name,
               "qclass": 1, "qclass_name": "C_INTERNET", "qtype": 1, "qtype_name": "A", "rcode": 0,
               "rcode_name": "NOERROR", "AA": False, "TC": False, "RD": True, "RA": True, "Z": 0, "answers": [addr],
               "TTLs": [300.0], "rejected": False}
        self.pending.append(_Pending(now + rtt, [("conn", dns_conn), ("dns", dns)]))
        start = now + rtt + rng.uniform(0.001, 0.01)
        service = rng.choice(services)
        uid = _uid(rng)
        duration = rng.uniform(0.05, 4.0)
        if service == "http":
            status, msg = (200, "OK") if rng.random() > 0.18 else rng.choice(FAILURES)
            body = rng.randint(300, 300_000) if status == 200 else rng.randint(100, 2000)
            conn = self._conn(start, ws, addr, 80, "tcp", "http", duration, rng.randint(200, 900), body + 300, uid=uid)
            http = {"ts": start, "uid": uid, "id.orig_h": ws, "id.orig_p": conn["id.orig_p"], "id.resp_h": addr,
                    "id.resp_p": 80, "trans_depth": 1, "method": rng.choice(["GET", "GET", "GET", "POST"]),
                    "host": name, "uri": rng.choice(PATHS), "referrer": None, "version": "1.1",
                    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "request_body_len": 0,
                    "response_body_len": body, "status_code": status, "status_msg": msg,
                    "resp_mime_types": ["text/html"]}
            # http.log is written when the response is done, conn.log when the connection ends
            self.pending.append(_Pending(start + duration * 0.6, [("http", http)]))
            self.pending.append(_Pending(start + duration, [("conn", conn)]))
        else:
            conn = self._conn(start, ws, addr, 443, "tcp", "ssl", duration, rng.randint(800, 5000),
                              rng.randint(3000, 2_000_000), uid=uid)
            ssl = {"ts": start, "uid": uid, "id.orig_h": ws, "id.orig_p": conn["id.orig_p"], "id.resp_h": addr,
                   "id.resp_p": 443, "version": "TLSv13", "cipher": "TLS_AES_128_GCM_SHA256", "curve": "x25519",
                   "server_name": name, "resumed": rng.random() < 0.3, "established": True, "ssl_history": "CsiI"}
            self.pending.append(_Pending(start + 0.05, [("ssl", ssl)]))
            self.pending.append(_Pending(start + duration, [("conn", conn)]))

    def _scan(self, now: float) -> None:
        rng = self.rng
        targets = rng.sample(WORKSTATIONS, 8)
        for i, ws in enumerate(targets):
            for port in (22, 23, 80, 443, 445, 3389):
                state = rng.choice(["REJ", "S0"])
                c = self._conn(now + i * 0.05, SCANNER, ws, port, "tcp", None, 0.0 if state == "S0" else 0.0003, 0, 0,
                               state=state)
                self.pending.append(_Pending(now + i * 0.05 + 0.5, [("conn", c)]))
        notice = {"ts": now + 0.5, "uid": None, "note": "Scan::Port_Scan",
                  "msg": f"{SCANNER} scanned at least 15 unique ports of {len(targets)} hosts", "sub": "local",
                  "src": SCANNER, "dst": None, "p": None, "actions": ["Notice::ACTION_LOG"], "suppress_for": 3600.0}
        self.pending.append(_Pending(now + 0.6, [("notice", notice)]))

    def _ssh(self, now: float) -> None:
        """The admin's session: open since an hour ago; it is logged when the demo starts and it 'ends'."""
        uid = _uid(self.rng)
        c = self._conn(now - 3600, ADMIN, BASTION, 22, "tcp", "ssh", 3600.0, 48_000, 2_400_000, uid=uid)
        ssh = {"ts": now - 3600, "uid": uid, "id.orig_h": ADMIN, "id.orig_p": c["id.orig_p"], "id.resp_h": BASTION,
               "id.resp_p": 22, "version": 2, "auth_success": True, "auth_attempts": 1, "direction": "OUTBOUND",
               "client": "SSH-2.0-OpenSSH_9.2", "server": "SSH-2.0-OpenSSH_9.6"}
        self.pending.append(_Pending(now, [("ssh", ssh), ("conn", c)]))

    def step(self, now: float) -> int:
        """Generate what happened up to ``now`` and append what is due; returns records written."""
        if self._last is None:
            self._last = now - 1.0
            self._next_scan = now + 5.0
        if not self._ssh_started:
            self._ssh_started = True
            self._ssh(now)
        elapsed = max(0.0, now - self._last)
        n = int(self.rate * elapsed + self.rng.random())
        for _ in range(n):
            self._browse(self._last + self.rng.uniform(0, elapsed))
        assert self._next_scan is not None
        if now >= self._next_scan:
            self._scan(now)
            self._next_scan = now + self.rng.uniform(20, 40)
        self._last = now
        due = sorted((p for p in self.pending if p.at <= now), key=lambda p: p.at)
        self.pending = [p for p in self.pending if p.at > now]
        by_path: dict[str, list[dict[str, Any]]] = {}
        for p in due:
            for path, rec in p.logs:
                by_path.setdefault(path, []).append(rec)
        for path, recs in by_path.items():
            self._write(path, recs)
        return sum(len(r) for r in by_path.values())


def make_demo(module: Any, workdir: Path) -> Demo:
    """The office traffic in ``workdir/logs/current`` and the module's real live-directory source over it."""
    import argparse

    logdir = Path(workdir) / "logs" / "current"
    traffic = OfficeTraffic(logdir)
    traffic.step(time.time())  # the files exist before the source starts
    source = module.make_source(argparse.Namespace(logdir=logdir, logs=None, since=None, replay=None, speed=None,
                                                   fast=False))
    return Demo(step=lambda now: traffic.step(now), source=source, interval=0.5,
                describe=f"a small office's Zeek logs, written live into {logdir}")
