"""net_zeek's view translation: hosts and the connections between them (DESIGN.md §5, §6).

Vocabulary
----------
- Node (kind ``host``) = an IP address: label its most recent DNS name (``names:{ip}``, highest score, ties to
  the greater name, as ZREVRANGE orders them) or the address; size = bytes; category ``local``/``remote`` by
  ``local_networks``; group by the most specific subnet of ``groups``/``tags_file``; attrs ``bytes``,
  ``conns_out``, ``conns_in``, ``ports`` (responder ports it served, the :data:`PORTS_SHOWN` busiest, sorted;
  not for ICMP, whose "ports" are type and code).
- Edge (kind ``conn``) = orig -> resp, id ``<orig>><resp>``: weight = bytes; category = its service (the most
  frequent among its connections, ties by name, ``other`` when none has one); attrs ``bytes``, ``conns``,
  ``service``, ``services`` (counts), ``ports``, ``proto`` (its protocols, sorted, ``/``-joined).
- first/last: the earliest start and the latest end (ts + duration) of the element's connections.
- Pulses: a new connection pulses its edge ``new``; an HTTP response pulses its connection's edge ``ok``
  (1xx-3xx) or ``error`` (4xx-5xx); a notice or weird pulses its hosts ``error``.

Two paths, one fold
-------------------
Both fold :class:`ConnFacts` into a :class:`GraphState` (per-uid facts, per-node and per-edge accumulators), so
they give equal graphs for the same data:

- query: :meth:`NetZeekView.graph` reads the interval index for the connections active in [t0, t1], fetches their
  records in pipelined batches and folds them.
- live: :meth:`NetZeekView.live_graph` notes the change feed's latest id, then folds [t0, +inf) the same way and
  keeps the state; :meth:`NetZeekView.on_events` reads the feed from that id on (ingest.lua writes one entry per
  batch) and folds each change. A connection the state already holds is not counted again; a longer report of it
  replaces its contribution. An HTTP response that comes before its connection (Zeek writes conn.log when a
  connection ends) waits, bounded, for it.
"""

from __future__ import annotations

import heapq
import ipaddress
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from twisted.logger import Logger
from wiredraw.core.graph import Change, Details, Edge, Graph, ModuleView, Node, Pulse, Section, view_options
from wiredraw.plugins.net_zeek.query import (
    FEED_KEY,
    PREFIX,
    ActiveConn,
    ConnFacts,
    DnsName,
    FeedError,
    HostAlert,
    HttpReply,
    LongerConn,
    active_commands,
    active_from_replies,
    conn_command,
    conn_facts,
    conn_probes_command,
    decode_feed,
    feed_last_command,
    feed_read_command,
    host_probes_command,
    name_command,
    name_pairs,
    probes_from_reply,
    span_command,
    span_from_reply,
    unpack_record,
)

__all__ = ["GraphState", "HostClassifier", "NetZeekView", "ViewOptions", "edge_id", "parse_options"]

DEFAULT_LOCAL_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")  # RFC 1918, RFC 4193
OPTION_NAMES = ("local_networks", "groups", "tags_file")
PORTS_SHOWN = 10  # ports listed on a node or an edge
DETAILS_CONNS = 50  # connections shown in an edge's details
DETAILS_NAMES = 50  # DNS names shown in a host's details
DETAILS_PEERS = 20  # peers shown in a host's details
FETCH_BATCH = 2000  # commands per pipelined round trip
FEED_READ_COUNT = 40  # feed entries per XRANGE (up to ~20,000 changes): between reads the reactor serves ingest
PENDING_MAX = 10_000  # HTTP responses waiting for their connection
CLASSIFY_CACHE_MAX = 200_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FeedGap(Exception):
    """Feed entries were trimmed before this translation read them: the live graph must be recomputed."""


# ------------------------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class ViewOptions:
    local_networks: tuple[Network, ...]
    groups: tuple[tuple[Network, str], ...]


def _network(value: Any, where: str) -> Network:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a CIDR string such as '10.0.0.0/8', got {value!r}")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"{where}: {value!r} is not a CIDR ({exc})") from exc


def _group_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: expected a non-empty group name, got {value!r}")
    return value.strip()


def read_tags_file(path: Path) -> list[tuple[Network, str]]:
    """``CIDR name`` lines (``#`` starts a comment, blank lines are skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"tags_file {str(path)!r}: cannot read it ({exc})") from exc
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        where = f"tags_file {str(path)!r} line {lineno}"
        if len(parts) != 2:
            raise ValueError(f"{where}: expected 'CIDR name', got {line!r}")
        out.append((_network(parts[0], where), _group_name(parts[1], where)))
    return out


def parse_options(options: Mapping[str, Any] | None) -> ViewOptions:
    """Check the ``[net_zeek]`` table of the server's viz config; a ValueError names the option at fault.

    ``groups`` entries win over ``tags_file`` lines for the same subnet."""
    options = view_options("net_zeek", options, OPTION_NAMES)
    local = options.get("local_networks", list(DEFAULT_LOCAL_NETWORKS))
    if not isinstance(local, list):
        raise ValueError(f"local_networks: expected a list of CIDRs, got {local!r}")
    networks = tuple(_network(v, f"local_networks[{i}]") for i, v in enumerate(local))
    by_net: dict[Network, str] = {}
    tags_file = options.get("tags_file")
    if tags_file is not None:
        if not isinstance(tags_file, str) or not tags_file:
            raise ValueError(f"tags_file: expected a path, got {tags_file!r}")
        by_net.update(read_tags_file(Path(tags_file).expanduser()))
    groups = options.get("groups", {})
    if not isinstance(groups, Mapping):
        raise ValueError(f"groups: expected a table of CIDR = name, got {groups!r}")
    for cidr, name in groups.items():
        by_net[_network(cidr, f"groups.{cidr}")] = _group_name(name, f"groups.{cidr!r}")
    return ViewOptions(networks, tuple(by_net.items()))


class HostClassifier:
    """Category (local/remote) and group of an address: the most specific subnet wins, one dict look-up (on the
    address's integer, shifted) per distinct prefix length, results cached per address."""

    def __init__(self, options: ViewOptions) -> None:
        self._local = self._table((net, "local") for net in options.local_networks)
        self._groups = self._table(options.groups)
        self._cache: dict[str, tuple[str, str]] = {}

    @staticmethod
    def _table(pairs: Iterable[tuple[Network, str]]) -> list[tuple[int, int, dict[int, str]]]:
        """[(version, host bits, {network address >> host bits: name})], longest prefix first."""
        by_len: dict[tuple[int, int], dict[int, str]] = {}
        for net, name in pairs:
            host_bits = net.max_prefixlen - net.prefixlen
            by_len.setdefault((net.version, host_bits), {})[int(net.network_address) >> host_bits] = name
        return [(v, bits, nets) for (v, bits), nets in sorted(by_len.items(), key=lambda kv: kv[0][1])]

    @staticmethod
    def _lookup(table: list[tuple[int, int, dict[int, str]]], version: int, value: int) -> str | None:
        for v, host_bits, nets in table:
            if v == version:
                name = nets.get(value >> host_bits)
                if name is not None:
                    return name
        return None

    def classify(self, ip: str) -> tuple[str, str]:
        hit = self._cache.get(ip)
        if hit is None:
            if len(self._cache) >= CLASSIFY_CACHE_MAX:
                self._cache.clear()
            try:
                addr = ipaddress.ip_address(ip.split("%", 1)[0])
            except ValueError:
                hit = ("remote", "")
            else:
                value = int(addr)
                local = self._lookup(self._local, addr.version, value) is not None
                hit = ("local" if local else "remote", self._lookup(self._groups, addr.version, value) or "")
            self._cache[ip] = hit
        return hit


# ------------------------------------------------------------------------------------------------------------
# The fold


def edge_id(orig: str, resp: str) -> str:
    return f"{orig}>{resp}"


class _NodeAcc:
    __slots__ = ("bytes", "conns_out", "conns_in", "ports", "first", "last")

    def __init__(self, first: float, last: float) -> None:
        self.bytes: int | float = 0
        self.conns_out = 0
        self.conns_in = 0
        self.ports: dict[int, int] = {}  # responder port -> connections (plain dicts: this is the hot path)
        self.first, self.last = first, last


class _EdgeAcc:
    __slots__ = ("src", "dst", "bytes", "conns", "services", "ports", "protos", "first", "last")

    def __init__(self, src: str, dst: str, first: float, last: float) -> None:
        self.src, self.dst = src, dst
        self.bytes: int | float = 0
        self.conns = 0
        self.services: dict[str, int] = {}
        self.ports: dict[int, int] = {}
        self.protos: dict[str, int] = {}
        self.first, self.last = first, last


def _less(counts: dict[Any, int], key: Any) -> None:
    if key is not None:
        left = counts.get(key, 0) - 1
        if left > 0:
            counts[key] = left
        else:
            counts.pop(key, None)


def _top_ports(ports: dict[int, int]) -> list[int]:
    if len(ports) <= PORTS_SHOWN:
        return sorted(ports)
    return sorted(p for _, p in heapq.nsmallest(PORTS_SHOWN, ((-n, p) for p, n in ports.items())))


def _main_service(services: dict[str, int]) -> str:
    if len(services) <= 1:
        return next(iter(services), "other")
    most = max(services.values())
    return min(name for name, n in services.items() if n == most)


def _sorted_counts(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items())) if len(counts) > 1 else dict(counts)


class GraphState:
    """Connections folded into per-node and per-edge accumulators, with the facts of each uid counted (so a
    repeat is not counted twice and a longer report replaces its contribution) and each node's label.

    first/last only grow: a longer report of a connection (same start, later end) moves them as it should."""

    def __init__(self, classifier: HostClassifier, *, track_ends: bool = False) -> None:
        self.classifier = classifier
        # (index_end, uid) of every connection put, when tracked (the live state): what expire() takes out first.
        # A longer report pushes its new end; the old entry is skipped when it comes up.
        self.ends: list[tuple[float, str]] | None = [] if track_ends else None
        self.conns: dict[str, ConnFacts] = {}
        self.nodes: dict[str, _NodeAcc] = {}
        self.edges: dict[str, _EdgeAcc] = {}
        self.labels: dict[str, tuple[float, str] | None] = {}  # (score, name) of names:{ip}'s top; read ones only
        self.touched_nodes: set[str] = set()  # since the last clear_touched()
        self.touched_edges: set[str] = set()
        self.created_nodes: set[str] = set()

    def clear_touched(self) -> None:
        self.touched_nodes.clear()
        self.touched_edges.clear()
        self.created_nodes.clear()

    def put(self, c: ConnFacts) -> bool:
        """Count ``c`` unless the same uid is counted with at least its duration. True if anything changed."""
        prev = self.conns.get(c.uid)
        if prev is not None:
            if c.duration <= prev.duration:
                return False
            self._remove(prev)
        self.conns[c.uid] = c
        self._add(c)
        if self.ends is not None:
            heapq.heappush(self.ends, (c.index_end, c.uid))
        return True

    def expire(self, t0: float) -> int:
        """Take out every connection that ended before ``t0`` (as the interval index sees it: what an interval
        graph from ``t0`` leaves out); returns how many. Needs ``track_ends``."""
        ends, conns, nodes, edges, n = self.ends, self.conns, self.nodes, self.edges, 0
        assert ends is not None, "expire() needs a GraphState made with track_ends=True"
        stale_edges: set[str] = set()  # elements that may have lost the connection that started first
        stale_nodes: set[str] = set()
        while ends and ends[0][0] < t0:
            end, uid = heapq.heappop(ends)
            c = conns.get(uid)
            if c is not None and c.index_end == end:
                del conns[uid]
                self._remove(c)
                n += 1
                e = edges.get(c.orig + ">" + c.resp)
                if e is not None and c.start <= e.first:
                    stale_edges.add(c.orig + ">" + c.resp)
                for ip in (c.orig, c.resp):
                    node = nodes.get(ip)
                    if node is not None and c.start <= node.first:
                        stale_nodes.add(ip)
        if stale_edges or stale_nodes:
            # first = the earliest start of the connections left (last needs nothing: those left ended later than
            # any taken out); one pass over the window's connections, no Redis
            first_e = dict.fromkeys((eid for eid in stale_edges if eid in edges), math.inf)  # (some went since)
            first_n = dict.fromkeys((ip for ip in stale_nodes if ip in nodes), math.inf)
            for c in conns.values():
                start = c.start
                if first_e:
                    eid = c.orig + ">" + c.resp
                    if eid in first_e and start < first_e[eid]:
                        first_e[eid] = start
                for ip in (c.orig, c.resp):
                    if ip in first_n and start < first_n[ip]:
                        first_n[ip] = start
            for eid, first in first_e.items():
                edges[eid].first = first
            for ip, first in first_n.items():
                nodes[ip].first = first
        return n

    def _add(self, c: ConnFacts) -> None:
        orig, resp, start, nbytes = c.orig, c.resp, c.start, c.bytes
        port = c.port if c.proto != "icmp" else None  # Zeek's ICMP "ports" are type and code
        end = c.end
        eid = orig + ">" + resp
        e = self.edges.get(eid)
        if e is None:
            e = self.edges[eid] = _EdgeAcc(orig, resp, start, end)
        else:
            if start < e.first:
                e.first = start
            if end > e.last:
                e.last = end
        e.bytes += nbytes
        e.conns += 1
        if c.service is not None:
            e.services[c.service] = e.services.get(c.service, 0) + 1
        if port is not None:
            e.ports[port] = e.ports.get(port, 0) + 1
        if c.proto is not None:
            e.protos[c.proto] = e.protos.get(c.proto, 0) + 1
        self.touched_edges.add(eid)
        for ip in (orig, resp) if orig != resp else (orig,):
            n = self.nodes.get(ip)
            if n is None:
                n = self.nodes[ip] = _NodeAcc(start, end)
                self.created_nodes.add(ip)
            else:
                if start < n.first:
                    n.first = start
                if end > n.last:
                    n.last = end
            n.bytes += nbytes
            if ip == orig:
                n.conns_out += 1
            if ip == resp:
                n.conns_in += 1
                if port is not None:
                    n.ports[port] = n.ports.get(port, 0) + 1
            self.touched_nodes.add(ip)

    def _remove(self, c: ConnFacts) -> None:
        """Take back what :meth:`_add` counted for ``c`` (an element left with no connection goes)."""
        eid = edge_id(c.orig, c.resp)
        e = self.edges[eid]
        port = c.port if c.proto != "icmp" else None
        e.bytes -= c.bytes
        e.conns -= 1
        _less(e.services, c.service)
        _less(e.ports, port)
        _less(e.protos, c.proto)
        if e.conns <= 0:
            del self.edges[eid]
        self.touched_edges.add(eid)
        for ip in (c.orig, c.resp) if c.orig != c.resp else (c.orig,):
            n = self.nodes[ip]
            n.bytes -= c.bytes
            if ip == c.orig:
                n.conns_out -= 1
            if ip == c.resp:
                n.conns_in -= 1
                _less(n.ports, port)
            if n.conns_out <= 0 and n.conns_in <= 0:
                del self.nodes[ip]
                self.labels.pop(ip, None)  # read again if the host comes back
            self.touched_nodes.add(ip)

    def label(self, ip: str) -> str:
        top = self.labels.get(ip)
        return top[1] if top is not None else ip

    def node(self, ip: str) -> Node:
        n = self.nodes[ip]
        category, group = self.classifier.classify(ip)
        return Node(
            ip,
            "host",
            self.label(ip),
            float(n.bytes),
            category,
            group,
            n.first,
            n.last,
            {"bytes": n.bytes, "conns_out": n.conns_out, "conns_in": n.conns_in, "ports": _top_ports(n.ports)},
        )

    def edge(self, eid: str) -> Edge:
        e = self.edges[eid]
        service = _main_service(e.services)
        protos = e.protos
        attrs = {
            "bytes": e.bytes,
            "conns": e.conns,
            "service": service,
            "services": _sorted_counts(e.services),
            "ports": _top_ports(e.ports),
            "proto": "/".join(sorted(protos)) if len(protos) > 1 else next(iter(protos), ""),
        }
        return Edge(eid, e.src, e.dst, True, float(e.bytes), service, "", "conn", e.first, e.last, attrs)

    def graph(self) -> Graph:
        return Graph((self.node(ip) for ip in self.nodes), (self.edge(eid) for eid in self.edges))


# ------------------------------------------------------------------------------------------------------------
# The translation


def _decode(v: Any) -> str:
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)


def _http_meaning(status: int) -> str | None:
    if 100 <= status < 400:
        return "ok"
    if 400 <= status < 600:
        return "error"
    return None


def _raise_errors(replies: Sequence[Any]) -> list[Any]:
    for r in replies:
        if isinstance(r, Exception):
            raise r
    return list(replies)


_Pulses = dict[tuple[str, Literal["node", "edge"], str], float | None]  # (target, on, meaning) -> event time


def _pulse(pulses: _Pulses, target: str, on: Literal["node", "edge"], meaning: str, t: float | None) -> None:
    key = (target, on, meaning)
    seen = pulses.get(key, t)
    pulses[key] = t if seen is None or (t is not None and t > seen) else seen


def _touched(ids: set[str], have: Mapping[str, Any], build: Callable[[str], Any],
             shown: Mapping[str, Any]) -> tuple[list[Any], list[str]]:
    """What the touched elements ``ids`` change in a graph that shows ``shown``: the ones the state still ``has``
    and that differ, built whole (upserts), and the ones it lost that the graph shows (removals); in id order."""
    upserts: list[Any] = []
    removals: list[str] = []
    for key in sorted(ids):
        if key in have:
            element = build(key)
            if shown.get(key) != element:
                upserts.append(element)
        elif key in shown:
            removals.append(key)
    return upserts, removals


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s.split("%", 1)[0])
    except ValueError:
        return False
    return True


class NetZeekView(ModuleView):
    """net_zeek's :class:`ModuleView` (see the module docstring for the vocabulary and the two paths)."""

    log = Logger()
    watch_keys = (FEED_KEY,)
    node_kinds = ("host",)
    edge_kinds = ("conn",)

    def __init__(self, store: Any, options: Mapping[str, Any]) -> None:
        super().__init__(store, options)
        self.config = parse_options(options)
        self.classifier = HostClassifier(self.config)
        self.counters: Counter[str] = Counter()
        self._live: GraphState | None = None  # the live graph's state, from live_graph on
        self._gap = False  # feed entries were lost: nothing is folded until the next live_graph
        self._live_t0 = -math.inf
        self._cursor: str | None = None  # the last feed entry folded into the live state
        self._pending: dict[str, list[tuple[str, float | None]]] = {}  # uid -> HTTP pulses waiting for the conn

    # -- reading -------------------------------------------------------------------------------------------------
    async def _pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(commands), FETCH_BATCH):
            out.extend(_raise_errors(await self.store.pipeline(list(commands[i : i + FETCH_BATCH]))))
        return out

    async def time_range(self) -> tuple[float, float] | None:
        return span_from_reply(await self.store.execute(*span_command()))

    async def _active(self, t0: float, t1: float) -> list[ActiveConn]:
        """Connections active in [t0, t1] (the index buckets read are those of the stored span only)."""
        span = await self.time_range()
        if span is None or t0 > t1:
            return []
        lo, hi = max(t0, span[0]), min(t1, span[1] + 0.001)  # span is stored to the microsecond
        if lo > hi:
            return []
        found, examined = active_from_replies(await self._pipeline(active_commands(lo, hi)), t0, t1)
        self.counters["index_entries_examined"] += examined
        return found

    async def _fetch(self, active: Sequence[ActiveConn], *hosts: str,
                     each: Callable[[ConnFacts], Any] | None = None) -> list[ConnFacts]:
        """The facts of these connections (records gone with the retention are skipped); with ``hosts``, only
        the connections between them (a byte test on the packed record first, then the fields). With ``each``,
        each one is handed to it as its batch arrives instead (folding a big window then yields to the reactor
        between batches rather than holding it for the whole window), and the list returned is empty."""
        needles = [h.encode() for h in hosts]
        out: list[ConnFacts] = []
        keep = out.append if each is None else each
        for i in range(0, len(active), FETCH_BATCH):
            chunk = active[i : i + FETCH_BATCH]
            replies = _raise_errors(await self.store.pipeline([conn_command(c.uid) for c in chunk]))
            for c, raw in zip(chunk, replies, strict=True):
                if not isinstance(raw, bytes) or not all(n in raw for n in needles):
                    continue
                try:
                    rec = unpack_record(raw)
                except ValueError:
                    self.counters["bad_conn_records"] += 1
                    continue
                facts = conn_facts(c.uid, rec, c.start) if isinstance(rec, dict) else None
                if facts is not None and all(h in (facts.orig, facts.resp) for h in hosts):
                    keep(facts)
        return out

    async def _read_labels(self, state: GraphState, ips: Sequence[str]) -> None:
        replies = await self._pipeline([name_command(ip) for ip in ips])
        for ip, reply in zip(ips, replies, strict=True):
            pairs = name_pairs(reply)
            state.labels[ip] = pairs[0] if pairs else None

    async def _fold(self, t0: float, t1: float, *, live: bool = False) -> GraphState:
        state = GraphState(self.classifier, track_ends=live)
        await self._fetch(await self._active(t0, t1), each=state.put)
        await self._read_labels(state, list(state.nodes))
        state.clear_touched()
        return state

    # -- interval and live graphs --------------------------------------------------------------------------------
    async def graph(self, t0: float, t1: float) -> Graph:
        return (await self._fold(t0, t1)).graph()

    async def live_graph(self, t0: float | None) -> Graph:
        last = await self.store.execute(*feed_last_command())
        cursor = _decode(last) if last is not None else None
        lo = -math.inf if t0 is None else t0
        state = await self._fold(lo, math.inf, live=True)
        self._live, self._live_t0, self._cursor, self._gap = state, lo, cursor, False
        for uid in [uid for uid in self._pending if uid in state.conns]:
            del self._pending[uid]  # their connection is in the graph already
        return state.graph()

    def lost_events(self) -> None:
        self.counters["lost_events"] += 1  # the core recomputes with live_graph next: nothing to undo here

    # The live state follows the window (see advance): no periodic recompute of a whole window is needed.
    follows_window = True

    async def on_events(self, events: Sequence[tuple[str, str]], graph: Graph) -> Change:
        """Fold the feed entries the events announce (no events: all written so far). Pulses are one per element and
        meaning per call, at the latest event time: a burst flashes an edge once."""
        if events and not any(event == "xadd" for _, event in events):
            return Change()  # only trims (XADD MINID emits xtrim): nothing new, no round trip
        return await self._step(events, graph, None)

    async def advance(self, t0: float | None, graph: Graph) -> Change:
        """Every full-graph period: fold every feed entry written so far (an entry whose event was missed waits for
        this), then take out the connections that ended before the window's new start ``t0``: the live graph
        stays the interval graph from ``t0`` on, and the live state holds only the window's connections."""
        return await self._step((), graph, t0)

    async def _step(self, events: Sequence[tuple[str, str]], graph: Graph, expire_before: float | None) -> Change:
        state = self._live
        if state is None or self._gap:  # no live graph to build on (yet, or since entries were lost)
            return Change()
        state.clear_touched()
        pulses: _Pulses = {}
        latest: float | None = None
        # As many entries after the cursor as xadd events given (each announces one; no events: all there are), in
        # one round trip for most steps. Entries that arrive meanwhile come with events of their own and make diffs
        # of their own, so a fast writer is followed step by step rather than in one diff when it pauses; an entry
        # read ahead of its event leaves that event's step less to read. The cursor folds each entry exactly once.
        left = sum(1 for _, event in events if event == "xadd") if events else math.inf
        while left > 0:
            count = int(min(FEED_READ_COUNT, left))
            entries = await self.store.execute(*feed_read_command(self._cursor, count))
            for entry_id, fields in entries or ():
                t = self._fold_entry(state, _decode(entry_id), fields, pulses)
                if t is not None and (latest is None or t > latest):
                    latest = t
            left -= len(entries or ())
            if not entries or len(entries) < count:
                break
        if expire_before is not None and expire_before > self._live_t0:
            self._live_t0 = expire_before
            self.counters["expired_conns"] += state.expire(expire_before)
        await self._read_labels(state, sorted(ip for ip in state.created_nodes if ip in state.nodes))
        change = Change(t=latest)
        change.pulses = [Pulse(target, on, meaning, t) for (target, on, meaning), t in pulses.items()]
        change.nodes, change.removed_nodes = _touched(state.touched_nodes, state.nodes, state.node, graph.nodes)
        change.edges, change.removed_edges = _touched(state.touched_edges, state.edges, state.edge, graph.edges)
        return change

    def _fold_entry(self, state: GraphState, entry_id: str, fields: Sequence[bytes], pulses: _Pulses) -> float | None:
        """Fold one feed entry into the live state; returns its latest event time."""
        payload = dict(zip(fields[::2], fields[1::2], strict=True)).get(b"c", b"")
        try:
            entry = decode_feed(payload)
        except FeedError as exc:
            self.counters["feed_entries_unreadable"] += 1
            self.log.warn("net_zeek feed entry {id} skipped: {why}", id=entry_id, why=str(exc))
            self._cursor = entry_id
            return None
        if entry.prev != self._cursor:
            self.counters["feed_gaps"] += 1
            self._gap = True  # the core recomputes the live graph on this error; until then nothing is folded
            raise FeedGap(
                f"net_zeek change feed: the entries between {self._cursor} and {entry_id} were trimmed "
                f"before they were read (the viewer lagged more than the feed keeps)"
            )
        self._cursor = entry_id
        self.counters["feed_entries"] += 1
        latest = -math.inf
        t0, put, pending = self._live_t0, state.put, self._pending
        for change in entry.changes:
            if type(change) is ConnFacts:  # the hot path: a new connection
                t = change.start + change.duration if change.duration > 0 else change.start
                waiting = pending.pop(change.uid, None) if pending else None
                if t < t0 + 0.001 and change.index_end < t0:
                    continue  # a late report of a connection that ended before the live window
                put(change)
                eid = change.orig + ">" + change.resp
                _pulse(pulses, eid, "edge", "new", change.start)
                for meaning, when in waiting or ():
                    _pulse(pulses, eid, "edge", meaning, when)
            else:
                t = self._fold_other(state, change, pulses)
            if t is not None and t > latest:
                latest = t
        return latest if latest > -math.inf else None

    def _fold_other(self, state: GraphState, change: Any, pulses: _Pulses) -> float | None:
        """Fold a feed change other than a new connection; returns its event time."""
        if isinstance(change, LongerConn):
            c = change.facts
            waiting = self._pending.pop(c.uid, ())
            if c.index_end < self._live_t0:
                return c.end
            state.put(c)  # replaces the shorter report's contribution, or counts it if the state lacked it
            for waited, when in waiting:
                _pulse(pulses, edge_id(c.orig, c.resp), "edge", waited, when)
            return c.end
        if isinstance(change, HttpReply):
            meaning = _http_meaning(change.status)
            if meaning is not None:
                known = state.conns.get(change.uid)
                if known is not None:
                    _pulse(pulses, edge_id(known.orig, known.resp), "edge", meaning, change.t)
                else:  # Zeek writes a connection when it ends: the response may come first
                    if change.uid not in self._pending and len(self._pending) >= PENDING_MAX:
                        del self._pending[next(iter(self._pending))]
                        self.counters["http_pulses_dropped"] += 1
                    self._pending.setdefault(change.uid, []).append((meaning, change.t))
            return change.t
        if isinstance(change, DnsName):
            if change.ip in state.labels:  # a node whose names were read: keep its top exact
                top = state.labels[change.ip]
                if top is None or (change.t, change.name) > top:
                    state.labels[change.ip] = (change.t, change.name)
                    state.touched_nodes.add(change.ip)
            return change.t
        if isinstance(change, HostAlert):
            for ip in change.hosts:
                if ip in state.nodes:
                    _pulse(pulses, ip, "node", "error", change.t)
            return change.t
        return None

    # -- details -------------------------------------------------------------------------------------------------
    async def details(self, element_id: str, t0: float, t1: float) -> Details | None:
        if ">" in element_id:
            src, dst = element_id.split(">", 1)
            if _is_ip(src) and _is_ip(dst):
                return await self._edge_details(element_id, src, dst, t0, t1)
            return None
        if _is_ip(element_id):
            return await self._host_details(element_id, t0, t1)
        return None

    async def _host_details(self, ip: str, t0: float, t1: float) -> Details | None:
        seen, names, probes = await self._pipeline(
            [("ZSCORE", f"{PREFIX}hosts", ip), name_command(ip, DETAILS_NAMES), host_probes_command(ip)]
        )
        state = GraphState(self.classifier)
        for facts in await self._fetch(await self._active(t0, t1), ip):
            state.put(facts)
        if seen is None and ip not in state.nodes:
            return None
        pairs = name_pairs(names)
        state.labels[ip] = pairs[0] if pairs else None
        category, group = self.classifier.classify(ip)
        node = state.node(ip) if ip in state.nodes else None
        rows: list[list[Any]] = [["address", ip], ["name", state.label(ip)], ["category", category], ["group", group]]
        if node is not None:
            rows += [
                ["bytes", node.attrs["bytes"]],
                ["connections out", node.attrs["conns_out"]],
                ["connections in", node.attrs["conns_in"]],
                ["ports served", node.attrs["ports"]],
                ["first seen (in view)", node.first],
                ["last seen (in view)", node.last],
            ]
        else:
            rows += [["connections", "none in view"]]
        rows += [
            ["last seen (stored)", float(seen) if seen is not None else None],
            ["probes", ", ".join(probes_from_reply(probes))],
        ]
        sections = [Section("host", rows=rows)]
        sections.append(
            Section(
                f"DNS names (latest {DETAILS_NAMES})" if len(pairs) >= DETAILS_NAMES else "DNS names",
                rows=[[name, t] for t, name in pairs],
            )
        )
        peers = sorted(state.edges.values(), key=lambda e: (-e.bytes, e.src, e.dst))
        shown = [
            [
                e.dst if e.src == ip else e.src,
                "out" if e.src == ip else "in",
                e.conns,
                e.bytes,
                _main_service(e.services),
            ]
            for e in peers[:DETAILS_PEERS]
        ]
        title = f"peers (busiest {DETAILS_PEERS} of {len(peers)})" if len(peers) > DETAILS_PEERS else "peers"
        sections.append(Section(title, rows=[["peer", "direction", "conns", "bytes", "service"], *shown]))
        label = state.label(ip)
        return Details(ip, f"{label} ({ip})" if label != ip else ip, "node", sections)

    async def _edge_details(self, eid: str, src: str, dst: str, t0: float, t1: float) -> Details | None:
        conns = [c for c in await self._fetch(await self._active(t0, t1), src, dst) if c.orig == src and c.resp == dst]
        if not conns:
            return None
        conns.sort(key=lambda c: (-c.start, c.uid))
        shown = conns[:DETAILS_CONNS]
        state = GraphState(self.classifier)
        for c in conns:
            state.put(c)
        edge = state.edge(eid)
        replies = await self._pipeline(
            [
                cmd
                for c in shown
                for cmd in (
                    conn_command(c.uid),
                    conn_probes_command(c.uid, c.start),
                    ("HGETALL", f"{PREFIX}uid:{c.uid}"),
                )
            ]
        )
        linked = [_records(replies[3 * k + 2]) for k in range(len(shown))]
        certs = sorted(
            {cert for records in linked for path, rec in records if path == "ssl" for cert in _cert_ids(rec)}
        )
        cert_replies = await self._pipeline([("HGETALL", f"{PREFIX}cert:{cert}") for cert in certs])
        cert_records = dict(zip(certs, map(_records, cert_replies), strict=True))
        out = [
            Section(
                "connections",
                rows=[
                    ["connections in view", len(conns)],
                    ["shown", f"the latest {len(shown)}"],
                    ["bytes", edge.attrs["bytes"]],
                    ["services", edge.attrs["services"]],
                    ["ports", edge.attrs["ports"]],
                    ["proto", edge.attrs["proto"]],
                    ["first", edge.first],
                    ["last", edge.last],
                ],
            )
        ]
        for k, c in enumerate(shown):
            raw, probes = replies[3 * k], replies[3 * k + 1]
            record = unpack_record(raw) if isinstance(raw, bytes) else {}
            out.append(
                Section(
                    f"conn {c.uid} (probes {', '.join(probes_from_reply(probes)) or '-'})",
                    "record",
                    record=record,
                    t=c.start,
                )
            )
            rest = []
            for path, rec in linked[k]:
                rest.append(Section(f"{path} {c.uid}", "record", record=rec, t=_ts(rec)))
                if path == "ssl":
                    rest += [
                        Section(f"{cert_path} {c.uid} {cert}", "record", record=cert_rec, t=_ts(cert_rec))
                        for cert in _cert_ids(rec)
                        for cert_path, cert_rec in cert_records.get(cert, ())
                    ]
            rest.sort(key=lambda s: math.inf if s.t is None else s.t)  # stable: an x509 stays after its ssl on ties
            out += rest
        more = f" (latest {DETAILS_CONNS} shown)" if len(conns) > DETAILS_CONNS else ""
        return Details(eid, f"{src} → {dst}: {len(conns)} connections{more}", "edge", out)

    # -- timeline ------------------------------------------------------------------------------------------------
    async def histogram(self, t0: float, t1: float, bins: int) -> list[dict[str, float]]:
        """Connections and bytes per bin, from the per-minute counters; a minute goes to the bin holding its start
        (one that starts before t0 to the first bin), counted at its connections' start."""
        if bins <= 0 or not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
            return []
        width = (t1 - t0) / bins
        out: list[dict[str, float]] = [
            {"t0": t0 + i * width, "t1": t0 + (i + 1) * width, "conns": 0, "bytes": 0} for i in range(bins)
        ]
        out[-1]["t1"] = t1
        span = await self.time_range()
        if span is None:
            return out
        lo, hi = max(t0, span[0]), min(t1, span[1])
        if lo > hi:
            return out
        minutes = range(int(lo // 60), int(hi // 60) + 1)
        replies = await self._pipeline([("HMGET", f"{PREFIX}hist:{m}", "conns", "bytes") for m in minutes])
        for m, (conns, nbytes) in zip(minutes, replies, strict=True):
            if conns is None and nbytes is None:
                continue
            i = 0 if width <= 0 else min(bins - 1, max(0, int((m * 60 - t0) // width)))
            out[i]["conns"] += int(conns or 0)
            out[i]["bytes"] += int(nbytes or 0)
        return out


def _ts(rec: Mapping[str, Any]) -> float | None:
    t = rec.get("ts")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None


def _records(reply: Any) -> list[tuple[str, dict[str, Any]]]:
    """(path, record) of a ``uid:{uid}`` / ``cert:{id}`` HGETALL reply (probe membership fields left out)."""
    if not isinstance(reply, list):
        return []
    out = []
    for i in range(0, len(reply) - 1, 2):
        field = _decode(reply[i])
        if "@" in field:
            continue
        try:
            rec = unpack_record(reply[i + 1])
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append((field.split(":", 1)[0], rec))
    out.sort(key=lambda pr: (_ts(pr[1]) or 0.0, pr[0]))
    return out


def _cert_ids(ssl: Mapping[str, Any]) -> list[str]:
    """The x509 records an ssl record links to: ``cert_chain_fps`` (Zeek 5+) or ``cert_chain_fuids``."""
    for field in ("cert_chain_fps", "cert_chain_fuids"):
        ids = ssl.get(field)
        if isinstance(ids, list) and ids:
            return [i for i in ids if isinstance(i, str) and i]
    return []
