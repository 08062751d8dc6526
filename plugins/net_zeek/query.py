"""Reading net_zeek's keys back: connections active at t or in [t0, t1], through the interval index.

Synchronous (redis-py) for tools and tests; the viz translation (a later issue) issues the same
commands from the server's Twisted client. The cost of a point query is 2 buckets per index level,
whatever the length of the connections (spec/modules/net_zeek.toml, key ``ix``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wiredraw.plugins.net_zeek.keys import index_buckets

PREFIX = "wd:net_zeek:"


@dataclass(frozen=True)
class ActiveConn:
    uid: str
    start: float
    end: float


def active_commands(t0: float, t1: float) -> list[tuple[Any, ...]]:
    """One GET per index bucket that can hold a connection active in [t0, t1]."""
    return [("GET", f"{PREFIX}ix:{k}:{b}") for k, b in index_buckets(t0, t1)]


def active_from_replies(replies: list[Any], t0: float, t1: float) -> tuple[list[ActiveConn], int]:
    """Connections with start <= t1 and end >= t0, and how many index entries were examined.

    A bucket is a string of ``start|end|uid`` lines. A connection reported again with a longer
    duration has one entry per report; its latest end is the largest one read (a longer interval sits
    in the same or a higher level, whose buckets a query reads whenever it reads the shorter one's).
    """
    latest: dict[str, tuple[float, float]] = {}
    examined = 0
    for reply in replies:
        if not reply:
            continue
        for line in reply.splitlines():
            examined += 1
            start_text, end_text, uid_bytes = line.split(b"|", 2)
            uid = uid_bytes.decode()
            start, end = float(start_text), float(end_text)
            seen = latest.get(uid)
            if seen is None or end > seen[1]:
                latest[uid] = (start, end)
    found = [ActiveConn(uid, start, end) for uid, (start, end) in latest.items() if start <= t1 and end >= t0]
    return sorted(found, key=lambda c: (c.start, c.uid)), examined


def conn_probes(client: Any, uid: str, ts: float) -> set[str]:
    """The probes that reported connection ``uid`` (``ts``: its start, which names the hour's set)."""
    members = client.zrangebylex(f"{PREFIX}connprobes:{int(ts // 3600)}", f"[{uid}|", f"[{uid}|\xff")
    return {m.decode().split("|", 1)[1] for m in members}


def host_probes(client: Any, ip: str) -> set[str]:
    """The probes that saw host ``ip``."""
    members = client.zrangebylex(f"{PREFIX}hostprobes", f"[{ip}|", f"[{ip}|\xff")
    return {m.decode().split("|", 1)[1] for m in members}


def active(client: Any, t0: float, t1: float | None = None) -> tuple[list[ActiveConn], int]:
    """Connections active at t0 (or anywhere in [t0, t1]) using a redis-py client, one round trip."""
    t1 = t0 if t1 is None else t1
    pipe = client.pipeline(transaction=False)
    for command in active_commands(t0, t1):
        pipe.execute_command(*command)
    return active_from_replies(pipe.execute(), t0, t1)
