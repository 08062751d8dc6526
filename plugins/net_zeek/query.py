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
    """One ZRANGEBYSCORE per bucket that can hold a connection active in [t0, t1] (end >= t0)."""
    return [("ZRANGEBYSCORE", f"{PREFIX}ix:{k}:{b}", repr(t0), "+inf", "WITHSCORES") for k, b in index_buckets(t0, t1)]


def active_from_replies(replies: list[Any], t0: float, t1: float) -> tuple[list[ActiveConn], int]:
    """Connections with start <= t1 and end >= t0, and how many index entries were examined."""
    found: dict[str, ActiveConn] = {}
    examined = 0
    for reply in replies:
        # WITHSCORES comes flat [m, s, m, s] from a raw client, as [(m, s), ...] from redis-py
        pairs = reply if reply and isinstance(reply[0], (list, tuple)) else zip(reply[::2], reply[1::2], strict=True)
        for raw_member, score in pairs:
            examined += 1
            member = raw_member.decode() if isinstance(raw_member, bytes) else raw_member
            start_text, uid = member.split("|", 1)
            start = float(start_text)
            if start <= t1:
                found[uid] = ActiveConn(uid, start, float(score))
    return sorted(found.values(), key=lambda c: (c.start, c.uid)), examined


def active(client: Any, t0: float, t1: float | None = None) -> tuple[list[ActiveConn], int]:
    """Connections active at t0 (or anywhere in [t0, t1]) using a redis-py client, one round trip."""
    t1 = t0 if t1 is None else t1
    pipe = client.pipeline(transaction=False)
    for command in active_commands(t0, t1):
        pipe.execute_command(*command)
    return active_from_replies(pipe.execute(), t0, t1)
