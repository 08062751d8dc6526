"""http_traefik's probe source: follows a Traefik access log, one ``request`` message per complete line.

Both of Traefik's documented formats are read, line by line (a line starting with ``{`` is JSON), so a log whose
format was switched midway reads whole:

- JSON (``accessLog.format: json``): ``StartUTC``, ``ClientHost`` (else ``ClientAddr``), ``RequestMethod``,
  ``RequestPath``, ``RequestProtocol``, ``RequestHost``, ``DownstreamStatus`` (else ``OriginStatus``),
  ``Duration`` (ns), ``entryPointName``, ``RouterName``, ``ServiceName``, ``ServiceAddr`` (else ``ServiceURL``),
  ``DownstreamContentSize``, ``RequestCount``.
- Common log format (the default, ``format: common``)::

    <client> - <userid> [<datetime>] "<method> <path> <proto>" <status> <size> "<referrer>" "<user_agent>"
    <request_count> "<router>" "<server_URL>" <duration>ms

  It names no entry point and no service: ``entrypoint`` is the probe's ``--entrypoint`` (if given) and the
  service is known by its server URL.

A line that is neither (or lacks the client, method, path, status or time) is counted as bad and skipped; a line
still being written (no newline yet) waits for the next poll. The file is followed by
:class:`wiredraw.core.follow.FollowedFile`: resume token the file's inode and the offset after the last line polled,
so a restarted probe sends nothing twice; a file replaced (another inode) or truncated (shorter than the offset) is
read again from its beginning. A source never blocks.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from wiredraw.core.follow import FollowedFile

Message = tuple[str, dict[str, Any]]

MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                      "Dec"), start=1)}
_Q = r'"((?:[^"\\]|\\.)*)"'  # a quoted field, backslash escapes allowed
CLF = re.compile(
    r'^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<dt>[^\]]+)\] '
    r'"(?P<method>[A-Za-z]+) (?P<path>\S+)(?: (?P<proto>[^"]*))?" '
    r'(?P<status>\d{3}) (?P<size>\d+|-) ' + _Q + " " + _Q +
    r'(?: (?P<count>\d+) "(?P<router>[^"]*)" "(?P<server>[^"]*)" (?P<duration>\d+)ms)?\s*$')
CLF_TIME = re.compile(r"^(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$")
ISO_FRACTION = re.compile(r"^(.*T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$")


def clf_time(text: str) -> float | None:
    """Epoch seconds of CLF's ``22/Nov/2026:10:00:01 +0000``; None if it is not one."""
    m = CLF_TIME.match(text)
    if m is None or m.group(2) not in MONTHS:
        return None
    day, _, year, hh, mm, ss, sign, oh, om = m.groups()
    offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
    try:
        return datetime(int(year), MONTHS[m.group(2)], int(day), int(hh), int(mm), int(ss),
                        tzinfo=timezone(offset)).timestamp()
    except ValueError:
        return None


def iso_time(text: Any) -> float | None:
    """Epoch seconds of an RFC 3339 time with up to nanoseconds (Traefik's StartUTC); None if it is not one."""
    if not isinstance(text, str):
        return None
    m = ISO_FRACTION.match(text.strip())
    if m is None:
        return None
    base, frac, zone = m.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    try:
        t = datetime.fromisoformat(base + zone).timestamp()
    except ValueError:
        return None
    return t + (int(frac) / 10 ** len(frac) if frac else 0.0)


def _str(value: Any) -> str | None:
    """A non-empty string, with Traefik's "-" meaning none."""
    return value if isinstance(value, str) and value and value != "-" else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _host_of(addr: Any) -> str | None:
    """The host of ``ip:port`` / ``[v6]:port``."""
    addr = _str(addr)
    if addr is None:
        return None
    if addr.startswith("["):
        return addr[1:].split("]", 1)[0] or None
    return addr.rsplit(":", 1)[0] if addr.count(":") == 1 else addr


def _clean(msg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if v is not None}


def parse_json_line(rec: Any) -> dict[str, Any] | None:
    """The ``request`` message of one JSON access-log record (without ``rid`` when it has no RequestCount)."""
    if not isinstance(rec, dict):
        return None
    t = iso_time(rec.get("StartUTC"))
    if t is None:
        t = iso_time(rec.get("StartLocal"))
    client = _str(rec.get("ClientHost")) or _host_of(rec.get("ClientAddr"))
    method, path = _str(rec.get("RequestMethod")), _str(rec.get("RequestPath"))
    status = _int(rec.get("DownstreamStatus"))
    if status is None:
        status = _int(rec.get("OriginStatus"))
    if t is None or client is None or method is None or path is None or status is None:
        return None
    duration = rec.get("Duration")
    count = _int(rec.get("RequestCount"))
    return _clean({
        "t": t, "rid": None if count is None else str(count), "client": client, "method": method, "path": path,
        "status": status,
        "duration": duration / 1e6 if isinstance(duration, int | float) and not isinstance(duration, bool)
        and math.isfinite(duration) else None,
        "entrypoint": _str(rec.get("entryPointName")), "router": _str(rec.get("RouterName")),
        "service": _str(rec.get("ServiceName")),
        "service_addr": _str(rec.get("ServiceAddr")) or _str(rec.get("ServiceURL")),
        "host": _str(rec.get("RequestHost")), "protocol": _str(rec.get("RequestProtocol")),
        "size": _int(rec.get("DownstreamContentSize")),
    })


def parse_clf_line(text: str) -> dict[str, Any] | None:
    """The ``request`` message of one common-log-format line (without ``rid`` when it has no request count)."""
    m = CLF.match(text)
    if m is None:
        return None
    t = clf_time(m.group("dt"))
    if t is None:
        return None
    return _clean({
        "t": t, "rid": m.group("count"), "client": m.group("client"), "method": m.group("method"),
        "path": m.group("path"), "status": int(m.group("status")),
        "duration": float(m.group("duration")) if m.group("duration") else None,
        "router": _str(m.group("router")), "service_addr": _str(m.group("server")),
        "protocol": _str(m.group("proto")), "size": _int(m.group("size")),
    })


def parse_line(line: bytes | str, entrypoint: str | None = None) -> dict[str, Any] | None:
    """One access-log line in either format -> its ``request`` message (``rid`` maybe missing); None: bad line."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            msg = parse_json_line(json.loads(text))
        except ValueError:
            return None
    else:
        msg = parse_clf_line(text)
    if msg is not None and entrypoint and "entrypoint" not in msg:
        msg["entrypoint"] = entrypoint
    return msg


class HttpTraefikSource:
    """See the module docstring. ``entrypoint``: the entry point of lines that name none (CLF)."""

    def __init__(self, path: Path | str, from_end: bool = False, entrypoint: str | None = None) -> None:
        self.file = FollowedFile(path, from_end)
        self.entrypoint = entrypoint or None
        self.counts = {"messages": 0, "bad": 0, "json": 0, "common": 0}

    # -- Source protocol ---------------------------------------------------------------------------------------
    def poll(self, max_messages: int) -> list[Message]:
        return self.file.poll(max_messages, self._message)

    def finished(self) -> bool:
        return False  # a followed file never ends

    def state(self) -> Any:
        return self.file.state()

    def restore(self, state: Any) -> None:
        self.file.restore(state)

    def close(self) -> None:
        pass

    def summary(self) -> dict[str, Any]:
        f = self.file
        c = self.counts
        return {"file": str(f.path), "offset": f.offset, "lines": f.lines, "messages": c["messages"],
                "bad": c["bad"], "json": c["json"], "common": c["common"], "reopened": f.reopened}

    # -- one line ----------------------------------------------------------------------------------------------
    def _message(self, line: bytes, at: int) -> Message | None:
        """The ``request`` message of one line (``rid`` defaults to its byte offset ``at``); None: a bad line."""
        msg = parse_line(line, self.entrypoint)
        if msg is None:
            self.counts["bad"] += 1
            return None
        msg.setdefault("rid", f"o{at}")
        self.counts["json" if line.lstrip().startswith(b"{") else "common"] += 1
        self.counts["messages"] += 1
        return ("request", msg)
