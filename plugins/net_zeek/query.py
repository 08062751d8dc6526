"""Reading net_zeek's keys back: connections active at t or in [t0, t1], through the interval index, and the
change feed that ingest.lua appends to.

Command builders and reply parsers are shared: the synchronous helpers here (redis-py, for tools and tests) and
the view translation (:mod:`wiredraw.plugins.net_zeek.view`, the server's Twisted client) issue the same commands.
The cost of a point query is 2 buckets per index level, whatever the length of the connections
(plugins/net_zeek/net_zeek.toml, key ``ix``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack
from wiredraw.plugins.net_zeek.schema import INDEX

PREFIX = "wd:net_zeek:"
FEED_KEY = PREFIX + "feed"
FEED_LAST_KEY = PREFIX + "feedlast"
FEED_VERSION = 1


@dataclass(frozen=True)
class ActiveConn:
    uid: str
    start: float
    end: float


def active_commands(t0: float, t1: float) -> list[tuple[Any, ...]]:
    """One GET per index bucket that can hold a connection active in [t0, t1]."""
    return [("GET", f"{PREFIX}ix:{k}:{b}") for k, b in INDEX.buckets(t0, t1)]


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
    return set(probes_from_reply(client.execute_command(*conn_probes_command(uid, ts))))


def host_probes(client: Any, ip: str) -> set[str]:
    """The probes that saw host ``ip``."""
    return set(probes_from_reply(client.execute_command(*host_probes_command(ip))))


def active(client: Any, t0: float, t1: float | None = None) -> tuple[list[ActiveConn], int]:
    """Connections active at t0 (or anywhere in [t0, t1]) using a redis-py client, one round trip."""
    t1 = t0 if t1 is None else t1
    pipe = client.pipeline(transaction=False)
    for command in active_commands(t0, t1):
        pipe.execute_command(*command)
    return active_from_replies(pipe.execute(), t0, t1)


# ------------------------------------------------------------------------------------------------------------
# Connection facts: what a graph needs of one connection, the same from a stored record and from the feed.
#
# THE CONN FACTS RULE, stated once here. ingest.lua implements it too (it runs inside Redis: feed_conn, fact_number,
# conn_bytes) to write the feed's 'c'/'u' changes; conn_fact_values below applies it to a stored record. Both paths
# end in make_conn_facts (decode_feed for the feed, conn_facts for a record), and
# tests/plugins/net_zeek/test_zeek_facts.py checks record by record that Lua and Python agree.
#
#   fact       the conn record's field                        when unset, or not of that kind
#   start      ts, an exact number                            the message's ts (where the interval index puts it)
#   duration   duration, an exact number (*)                  0
#   orig, resp id.orig_h, id.resp_h, non-empty strings        no facts: the connection is left out
#   port       id.resp_p, an exact integral number            None
#   proto      proto, a non-empty string                      None
#   service    service, a non-empty string                    None
#   bytes      orig_bytes + resp_bytes, each an exact number (*)  that side counts 0
#
# Exact: under 2^53 in magnitude (so not NaN or inf), where a double is still exact and Redis's cmsgpack writes it
# faithfully (an integral one as an int). (*) Lua's tonumber: a numeric string counts too (decimal, hex, inf/nan,
# blanks around). Numbers are Lua's, doubles: the bytes sum is a sum of doubles, and a msgpack uint64 past 2^63 is
# read as Redis reads it (lua_int).


class ConnFacts(NamedTuple):
    uid: str
    start: float
    duration: float  # as reported (a longer report of the same uid replaces a shorter one)
    orig: str
    resp: str
    port: int | None  # the responder's port
    proto: str | None
    service: str | None
    bytes: int | float  # orig_bytes + resp_bytes (unset counts 0)

    @property
    def end(self) -> float:
        return self.start + max(self.duration, 0.0)

    @property
    def index_end(self) -> float:
        """The end as the interval index holds it (ingest.lua writes '%.6f'): what selects the connection."""
        return float(f"{self.end:.6f}")


_C_SPACE = " \t\n\v\f\r"  # C's isspace, which strtod and Lua skip
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?")
_SPECIAL = re.compile(r"([+-]?)(?:(inf(?:inity)?)|nan(?:\([0-9A-Za-z_]*\))?)", re.IGNORECASE)


def lua_int(v: int) -> float:
    """A msgpack integer as Redis's cmsgpack hands it to Lua: a double, a uint64 past 2^63 wrapped to negative."""
    return float(v - 2**64 if v >= 2**63 else v)


def lua_tonumber(v: Any) -> float | None:
    """Lua 5.1's ``tonumber(v)`` as Redis runs it on a decoded record field (a number is a double; a string is read
    by C's strtod: decimal, hex, inf/nan, blanks around; anything else is nil, None here)."""
    kind = type(v)
    if kind is float:
        return v
    if kind is int:
        return lua_int(v)
    if kind is not str:
        return None
    text = v.split("\0", 1)[0].strip(_C_SPACE)  # Lua reads the string as C does: up to a NUL
    if _DECIMAL.fullmatch(text):
        return float(text)
    if _HEX.fullmatch(text):
        try:
            return float.fromhex(text)
        except OverflowError:
            return -math.inf if text.startswith("-") else math.inf
    special = _SPECIAL.fullmatch(text)
    if special:
        return float(special.group(1) + ("inf" if special.group(2) else "nan"))
    return None


_EXACT = 2.0**53


def fact_number(v: Any) -> float:
    """A number fact (duration, each side's bytes): Lua's tonumber when exact, else 0 (ingest.lua's fact_number)."""
    n = lua_tonumber(v)
    return n if n is not None and -_EXACT < n < _EXACT else 0.0


def _integral(v: int | float) -> int | float:
    return int(v) if type(v) is float and v.is_integer() else v


_new_facts = tuple.__new__


def make_conn_facts(
    uid: str, start: Any, duration: Any, orig: Any, resp: Any, port: Any, proto: Any, service: Any, nbytes: Any
) -> ConnFacts | None:
    """The facts from the nine values of the rule, in the feed's order (as ingest.lua writes them to a 'c' change, or
    :func:`conn_fact_values` reads them from a record; unset: false or None); None when the connection has no two
    addresses or no start. Both paths, the feed and a stored record, end here."""
    if type(orig) is not str or type(resp) is not str or not orig or not resp or type(uid) is not str:
        return None
    kind = type(start)
    if kind is not float and kind is not int:
        return None
    if type(port) is not int:
        port = int(port) if type(port) is float and port.is_integer() else None
    if type(nbytes) is float and nbytes.is_integer():
        nbytes = int(nbytes)
    fields = (uid, float(start), float(duration or 0), orig, resp, port, proto or None, service or None, nbytes or 0)
    return _new_facts(ConnFacts, fields)


def conn_fact_values(rec: dict[str, Any], ts: float) -> tuple[Any, ...]:
    """The rule applied to a conn record (``ts``: its message's ts): the nine values ingest.lua writes to the feed
    after the uid (start, duration, orig, resp, port, proto, service, bytes; unset: None where Lua writes false)."""
    start, port = rec.get("ts"), rec.get("id.resp_p")
    if type(start) is int:
        start = lua_int(start)
    if type(start) is not float or not -_EXACT < start < _EXACT:
        start = ts
    if type(port) is int:
        port = lua_int(port)
    if type(port) is float and not -_EXACT < port < _EXACT:
        port = None
    orig, resp, proto, service = (rec.get(f) for f in ("id.orig_h", "id.resp_h", "proto", "service"))
    return (
        start,
        fact_number(rec.get("duration")),
        orig if type(orig) is str else None,
        resp if type(resp) is str else None,
        port if type(port) is float else None,
        proto if type(proto) is str else None,
        service if type(service) is str else None,
        fact_number(rec.get("orig_bytes")) + fact_number(rec.get("resp_bytes")),
    )


def conn_facts(uid: str, rec: dict[str, Any], index_start: float) -> ConnFacts | None:
    """Facts of a stored conn record (``conn:{uid}``; ``index_start``: its start as the interval index holds it, the
    message's ts), by the rule above: what ingest.lua wrote to the feed for it."""
    return make_conn_facts(uid, *conn_fact_values(rec, index_start))


def unpack_record(raw: bytes) -> Any:
    """A stored record (msgpack, strings possibly not UTF-8 as Zeek saw them)."""
    return msgpack.unpackb(raw, raw=False, unicode_errors="surrogateescape", strict_map_key=False)


# ------------------------------------------------------------------------------------------------------------
# The change feed (ingest.lua, "Change feed"): one stream entry per batch that changed what a graph shows


class LongerConn(NamedTuple):
    facts: ConnFacts
    replaced_bytes: int | float


class HttpReply(NamedTuple):
    uid: str
    t: float | None
    status: int


class DnsName(NamedTuple):
    ip: str
    name: str
    t: float


class HostAlert(NamedTuple):
    path: str  # notice or weird
    t: float | None
    hosts: tuple[str, ...]


FeedChange = ConnFacts | LongerConn | HttpReply | DnsName | HostAlert  # a ConnFacts: a new connection

_ARITY = {"c": 9, "u": 10, "h": 3, "n": 3, "w": 4}


class FeedError(ValueError):
    """A feed entry this reader cannot read (another version, or damaged)."""


def _opt_float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


class FeedEntry(NamedTuple):
    prev: str | None  # the id of the entry before this one (None: the first ever)
    probe: str
    changes: list[FeedChange]


def decode_feed(payload: bytes) -> FeedEntry:
    """One feed entry's ``c`` field. Changes that lack what they need (a conn without two addresses) are left
    out; an entry this reader does not understand raises :class:`FeedError`."""
    try:
        flat = unpack_record(payload)
    except (ValueError, msgpack.UnpackException) as exc:
        raise FeedError(f"feed entry is not msgpack: {exc}") from exc
    if not isinstance(flat, list) or len(flat) < 3 or flat[0] != FEED_VERSION:
        raise FeedError(f"feed entry of another version: {flat[0] if isinstance(flat, list) and flat else flat!r}")
    prev = flat[1] if isinstance(flat[1], str) else None
    probe = str(flat[2])
    out: list[FeedChange] = []
    i, n = 3, len(flat)
    while i < n:
        tag = flat[i]
        arity = _ARITY.get(tag) if isinstance(tag, str) else None
        if arity is None:
            raise FeedError(f"feed entry: unknown change tag {tag!r} at {i}")
        f = flat[i + 1 : i + 1 + arity]
        if len(f) < arity:
            raise FeedError(f"feed entry: short change {tag!r} at {i}")
        i += 1 + arity
        if tag == "c" or tag == "u":
            # the hot path (one per connection): uid and the nine values of the conn facts rule, as ingest.lua
            # applied it to the record
            facts = make_conn_facts(*f[:9])
            if facts is not None:
                out.append(facts if tag == "c" else LongerConn(facts, _integral(fact_number(f[9]))))
        elif tag == "h":
            if isinstance(f[0], str) and isinstance(f[2], int):
                out.append(HttpReply(f[0], _opt_float(f[1]), f[2]))
        elif tag == "n":
            if isinstance(f[0], str) and isinstance(f[1], str):
                out.append(DnsName(f[0], f[1], _opt_float(f[2]) or 0.0))
        else:
            hosts = tuple(h for h in f[2:4] if isinstance(h, str) and h)
            if hosts:
                out.append(HostAlert(str(f[0]), _opt_float(f[1]), hosts))
    return FeedEntry(prev, probe, out)


def feed_read_command(cursor: str | None, count: int, end: str = "+") -> tuple[Any, ...]:
    """Entries after ``cursor`` (exclusive; None: from the first) up to ``end`` (inclusive), at most ``count``."""
    return ("XRANGE", FEED_KEY, "-" if cursor is None else f"({cursor}", end, "COUNT", count)


def feed_last_command() -> tuple[Any, ...]:
    """The id of the feed's latest entry (nil: none yet), without reading the entry."""
    return ("GET", FEED_LAST_KEY)


def conn_command(uid: str) -> tuple[Any, ...]:
    return ("GET", f"{PREFIX}conn:{uid}")


def name_command(ip: str, count: int = 1) -> tuple[Any, ...]:
    """The host's DNS names, most recent first (ties: the greater name first, as ZREVRANGE orders them)."""
    return ("ZREVRANGE", f"{PREFIX}names:{ip}", 0, count - 1, "WITHSCORES")


def name_pairs(reply: Any) -> list[tuple[float, str]]:
    """(score, name) pairs of a ZREVRANGE ... WITHSCORES reply (flat list, as hiredis gives it)."""
    if not isinstance(reply, list):
        return []
    out = []
    for i in range(0, len(reply) - 1, 2):
        name, score = reply[i], reply[i + 1]
        out.append((float(score), name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else str(name)))
    return out


def span_command() -> tuple[Any, ...]:
    return ("HMGET", f"{PREFIX}span", "first", "last")


def span_from_reply(reply: Any) -> tuple[float, float] | None:
    if not isinstance(reply, list) or len(reply) != 2 or reply[0] is None or reply[1] is None:
        return None
    return float(reply[0]), float(reply[1])


def host_probes_command(ip: str) -> tuple[Any, ...]:
    """The probes that saw host ``ip`` (members ``<ip>|<probe>`` of ``hostprobes``)."""
    return ("ZRANGEBYLEX", f"{PREFIX}hostprobes", f"[{ip}|", f"[{ip}|".encode() + b"\xff")


def conn_probes_command(uid: str, ts: float) -> tuple[Any, ...]:
    """The probes that reported connection ``uid`` (``ts``: its start, which names the hour's set)."""
    return ("ZRANGEBYLEX", f"{PREFIX}connprobes:{int(ts // 3600)}", f"[{uid}|", f"[{uid}|".encode() + b"\xff")


def probes_from_reply(reply: Any) -> list[str]:
    """Sorted probe ids of a ``<ip or uid>|<probe>`` ZRANGEBYLEX reply."""
    if not isinstance(reply, list):
        return []
    return sorted({(m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m)).split("|", 1)[1] for m in reply})
