"""http_traefik's view translation: callers, routers and services of each Traefik proxy, and the requests between
them (wiredraw's graph vocabulary, DESIGN.md §5).

Vocabulary
----------
Every element is built from the requests in view; ``{probe}`` is the probe (one per proxy) that logged them, and
``{ep}`` the request's entry point (``*`` where the log names none: CLF without the probe's ``--entrypoint``).

- Node ``client:{ip}`` (kind ``client``): a caller whose address is inside ``client_networks`` (default RFC 1918,
  loopback, IPv6 ULA and link-local), shown on its own. Group: its probe when one probe saw it, else none (a
  caller of several proxies sits between them).
- Node ``external:{probe}:{ep}`` (kind ``external``, label ``external@{ep}``): every other caller of that entry
  point, folded into one node.
- Node ``router:{probe}:{router}`` (kind ``router``, label the RouterName); a request no router took (RouterName
  absent, e.g. a 404) goes to ``entrypoint:{probe}:{ep}`` (kind ``entrypoint``) instead.
- Node ``service:{probe}:{service}`` (kind ``service``): the ServiceName, else (CLF) the server URL; attrs
  ``addrs``: the ServiceAddr / server URLs seen. A request with neither has no service.
- Routers, entry points, services and external nodes carry ``group`` = the probe, so several proxies sit side by
  side; their ``category`` is the probe too (colour).
- Edge ``{client}>{router}`` (kind ``request``) and ``{router}>{service}`` (kind ``forward``): weight = requests in
  view; category = the status class of the latest one (``2xx`` ...); attrs ``requests``, ``errors`` (status
  >= 400) and a count per class.
- Node size: 1 + log2 of its requests in view; attrs ``requests``, ``errors``.
- Pulses: each new request pulses its ``request`` and ``forward`` edges ``ok`` (1xx-3xx) or ``error`` (4xx-5xx);
  a node that appears pulses ``new``.
- Details: a summary, then the latest ``details_requests`` (default 20) requests through the element: method,
  path, status, duration (ms), client, router, service, probe.

Time: a request at t is active over [t, t + fade] (``fade``, default 60 s), so the graph of [t0, t1] holds the
requests of [t0 - fade, t1]. Both paths build the graph with :func:`build_graph` from :class:`Request` records read
from the ``req:{chunk}`` hashes; the live path re-reads the chunks whose hash changed (``hset`` events, class ``h``)
and pulses the requests it had not seen.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wiredraw.core.graph import (
    Change,
    Details,
    Edge,
    Graph,
    ModuleView,
    Node,
    Pulse,
    Section,
    fade_option,
    hash_fields,
    view_options,
)
from wiredraw.plugins.http_traefik.schema import (
    CHUNK,
    FIRST_KEY,
    LAST_KEY,
    REQ_PREFIX,
    chunk_of,
    chunk_of_key,
    parse_request_field,
    req_key,
)

OPTION_NAMES = ("fade", "client_networks", "details_requests")
DEFAULT_FADE = 60.0
DEFAULT_CLIENT_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7",
                           "fe80::/10")
DEFAULT_DETAILS_REQUESTS = 20
MAX_CHUNKS = 10_000  # chunks read by one query at most (about 69 days)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Options:
    fade: float = DEFAULT_FADE
    networks: tuple[Network, ...] = ()
    details_requests: int = DEFAULT_DETAILS_REQUESTS


def parse_options(options: Mapping[str, Any] | None) -> Options:
    """Check the ``[http_traefik]`` table of the server's viz config. A ValueError names the option."""
    options = view_options("http_traefik", options, OPTION_NAMES)
    fade = fade_option(options, DEFAULT_FADE)
    nets = options.get("client_networks", list(DEFAULT_CLIENT_NETWORKS))
    if not isinstance(nets, list | tuple) or not all(isinstance(n, str) for n in nets):
        raise ValueError(f"client_networks: expected a list of CIDR strings, got {nets!r}")
    try:
        networks = tuple(ipaddress.ip_network(n, strict=False) for n in nets)
    except ValueError as exc:
        raise ValueError(f"client_networks: {exc}") from None
    n = options.get("details_requests", DEFAULT_DETAILS_REQUESTS)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"details_requests: expected an integer >= 1, got {n!r}")
    return Options(float(fade), networks, n)


@dataclass(frozen=True)
class Request:
    t: float
    probe: str
    rid: str
    client: str
    method: str
    path: str
    status: int
    duration: float | None = None
    entrypoint: str | None = None
    router: str | None = None
    service: str | None = None
    service_addr: str | None = None
    host: str | None = None

    @property
    def key(self) -> tuple[float, str, str]:
        return (self.t, self.probe, self.rid)

    @property
    def error(self) -> bool:
        return self.status >= 400

    @property
    def status_class(self) -> str:
        return f"{self.status // 100}xx"

    def record(self) -> dict[str, Any]:
        return {"t": self.t, "method": self.method, "path": self.path, "status": self.status,
                "duration_ms": self.duration, "client": self.client, "entrypoint": self.entrypoint,
                "router": self.router, "service": self.service, "service_addr": self.service_addr,
                "host": self.host, "probe": self.probe}


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_chunk(reply: Any) -> dict[tuple[float, str, str], Request]:
    """The requests of an HGETALL reply of a ``req:`` hash (a flat list, or a dict); unreadable fields skipped."""
    out: dict[tuple[float, str, str], Request] = {}
    for k, v in hash_fields(reply).items():
        where = parse_request_field(k)
        if where is None:
            continue
        try:
            rec = json.loads(v)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        client, method, path, status = rec.get("client"), rec.get("method"), rec.get("path"), rec.get("status")
        if not (isinstance(client, str) and isinstance(method, str) and isinstance(path, str)
                and isinstance(status, int) and not isinstance(status, bool)):
            continue
        duration = rec.get("duration")
        req = Request(where[0], where[1], where[2], client, method, path, status,
                      float(duration) if isinstance(duration, int | float) and not isinstance(duration, bool) else None,
                      _opt_str(rec.get("entrypoint")), _opt_str(rec.get("router")), _opt_str(rec.get("service")),
                      _opt_str(rec.get("service_addr")), _opt_str(rec.get("host")))
        out[req.key] = req
    return out


@dataclass
class Ids:
    """The elements one request touches."""

    client: str
    client_kind: str
    client_label: str
    router: str
    router_kind: str
    router_label: str
    service: str | None
    service_label: str | None
    request_edge: str
    forward_edge: str | None


def _internal(ip: str, networks: Sequence[Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    return any(addr in net for net in networks)


def ids_of(req: Request, networks: Sequence[Network]) -> Ids:
    ep = req.entrypoint or "*"
    if _internal(req.client, networks):
        client, client_kind, client_label = f"client:{req.client}", "client", req.client
    else:
        client, client_kind, client_label = f"external:{req.probe}:{ep}", "external", f"external@{ep}"
    if req.router is not None:
        router, router_kind, router_label = f"router:{req.probe}:{req.router}", "router", req.router
    else:
        router, router_kind, router_label = f"entrypoint:{req.probe}:{ep}", "entrypoint", f"{ep} (no router)"
    name = req.service or req.service_addr
    service = f"service:{req.probe}:{name}" if name is not None else None
    return Ids(client, client_kind, client_label, router, router_kind, router_label, service, name,
               f"{client}>{router}", f"{router}>{service}" if service is not None else None)


def in_view(requests: Iterable[Request], t0: float, t1: float, fade: float) -> list[Request]:
    return sorted((r for r in requests if t0 - fade <= r.t <= t1), key=lambda r: (r.t, r.probe, r.rid))


def _touch_node(nodes: dict[str, Node], probes: dict[str, set[str]], nid: str, kind: str, label: str,
                req: Request) -> None:
    node = nodes.get(nid)
    if node is None:
        node = nodes[nid] = Node(nid, kind=kind, label=label, category=req.probe, group=req.probe, first=req.t,
                                 attrs={"requests": 0, "errors": 0, "probe": req.probe})
    node.last = req.t
    node.attrs["requests"] += 1
    node.attrs["errors"] += int(req.error)
    probes.setdefault(nid, set()).add(req.probe)


def _touch_edge(edges: dict[str, Edge], eid: str, src: str, dst: str, kind: str, req: Request) -> None:
    edge = edges.get(eid)
    if edge is None:
        edge = edges[eid] = Edge(eid, src, dst, kind=kind, weight=0.0, first=req.t,
                                 attrs={"requests": 0, "errors": 0, "probe": req.probe})
    edge.weight += 1
    edge.last = req.t
    edge.category = req.status_class
    edge.attrs["requests"] += 1
    edge.attrs["errors"] += int(req.error)
    edge.attrs[req.status_class] = edge.attrs.get(req.status_class, 0) + 1


def build_graph(requests: Iterable[Request], t0: float, t1: float, opts: Options) -> Graph:
    """The graph of [t0, t1]: the one function both the query and the live path use."""
    nodes: dict[str, Node] = {}
    edges: dict[str, Edge] = {}
    probes: dict[str, set[str]] = {}
    addrs: dict[str, set[str]] = {}
    for req in in_view(requests, t0, t1, opts.fade):
        ids = ids_of(req, opts.networks)
        _touch_node(nodes, probes, ids.client, ids.client_kind, ids.client_label, req)
        _touch_node(nodes, probes, ids.router, ids.router_kind, ids.router_label, req)
        _touch_edge(edges, ids.request_edge, ids.client, ids.router, "request", req)
        if ids.service is not None and ids.forward_edge is not None:
            _touch_node(nodes, probes, ids.service, "service", ids.service_label or "", req)
            _touch_edge(edges, ids.forward_edge, ids.router, ids.service, "forward", req)
            if req.service_addr is not None:
                addrs.setdefault(ids.service, set()).add(req.service_addr)
    for nid, node in nodes.items():
        node.size = 1.0 + math.log2(node.attrs["requests"])
        if node.kind == "client":
            seen = probes[nid]
            node.group = node.category = next(iter(seen)) if len(seen) == 1 else ""
            node.attrs["probe"] = node.group or None
            node.attrs["probes"] = sorted(seen)
        elif node.kind == "service":
            node.attrs["addrs"] = sorted(addrs.get(nid, ()))
    return Graph(nodes.values(), edges.values())


class HttpTraefikView(ModuleView):
    """See the module docstring. ``options``: the ``[http_traefik]`` table of the server's viz config."""

    watch_keys = (REQ_PREFIX + "*",)
    node_kinds = ("client", "external", "router", "entrypoint", "service")
    edge_kinds = ("request", "forward")

    def __init__(self, store: Any, options: Mapping[str, Any]) -> None:
        super().__init__(store, options)
        self.opts = parse_options(options)
        # Live state (live_graph and on_events only; the query methods never touch it).
        self.live_t0 = -math.inf
        self.live: dict[int, dict[tuple[float, str, str], Request]] = {}

    # -- reading -----------------------------------------------------------------------------------------------
    async def _bounds(self) -> tuple[float, float] | None:
        first = await self.store.execute("ZRANGE", FIRST_KEY, 0, 0, "WITHSCORES")
        last = await self.store.execute("ZRANGE", LAST_KEY, -1, -1, "WITHSCORES")
        if not first or not last:
            return None
        return float(first[1]), float(last[1])

    async def _chunks_for(self, t0: float, t1: float) -> list[int]:
        """The chunks that can hold a request of [t0 - fade, t1] (bounded by the stored requests' times)."""
        bounds = await self._bounds()
        if bounds is None:
            return []
        lo, hi = max(t0 - self.opts.fade, bounds[0]), min(t1, bounds[1])
        if lo > hi:
            return []
        first, last = chunk_of(lo), chunk_of(hi)
        return list(range(max(first, last - MAX_CHUNKS + 1), last + 1))

    async def _read(self, chunks: Sequence[int]) -> dict[int, dict[tuple[float, str, str], Request]]:
        out: dict[int, dict[tuple[float, str, str], Request]] = {}
        for i in range(0, len(chunks), 100):
            part = chunks[i:i + 100]
            replies = await self.store.pipeline([("HGETALL", req_key(c)) for c in part])
            for c, reply in zip(part, replies, strict=True):
                out[c] = parse_chunk(reply)
        return out

    async def _requests(self, t0: float, t1: float) -> list[Request]:
        read = await self._read(await self._chunks_for(t0, t1))
        return in_view((r for reqs in read.values() for r in reqs.values()), t0, t1, self.opts.fade)

    # -- live --------------------------------------------------------------------------------------------------
    def _live_requests(self) -> Iterable[Request]:
        return (r for reqs in self.live.values() for r in reqs.values())

    async def live_graph(self, t0: float | None) -> Graph:
        self.live_t0 = -math.inf if t0 is None else t0
        self.live = await self._read(await self._chunks_for(self.live_t0, math.inf))
        return build_graph(self._live_requests(), self.live_t0, math.inf, self.opts)

    async def on_events(self, events: Sequence[tuple[str, str]], graph: Graph) -> Change:
        chunks = list(dict.fromkeys(c for key, ev in events if ev == "hset" and (c := chunk_of_key(key)) is not None))
        chunks = [c for c in chunks if (c + 1) * CHUNK >= self.live_t0 - self.opts.fade]
        if not chunks:
            return Change()
        fresh: list[Request] = []
        for c, reqs in (await self._read(chunks)).items():
            before = self.live.get(c, {})
            fresh.extend(r for k, r in reqs.items() if k not in before)
            if reqs:
                self.live[c] = reqs
            else:
                self.live.pop(c, None)  # gone (expired) meanwhile
        new = build_graph(self._live_requests(), self.live_t0, math.inf, self.opts)
        change = graph.diff(new)
        fresh = in_view(fresh, self.live_t0, math.inf, self.opts.fade)
        for nid in new.nodes:
            if nid not in graph.nodes:
                change.pulses.append(Pulse(nid, "node", "new", new.nodes[nid].last))
        for req in fresh:
            ids = ids_of(req, self.opts.networks)
            meaning = "error" if req.error else "ok"
            for eid in (ids.request_edge, ids.forward_edge):
                if eid is not None and eid in new.edges:
                    change.pulses.append(Pulse(eid, "edge", meaning, req.t))
        change.t = max((r.t for r in fresh), default=None)
        return change

    # -- queries -----------------------------------------------------------------------------------------------
    async def graph(self, t0: float, t1: float) -> Graph:
        return build_graph(await self._requests(t0, t1), t0, t1, self.opts)

    async def time_range(self) -> tuple[float, float] | None:
        return await self._bounds()

    async def details(self, element_id: str, t0: float, t1: float) -> Details | None:
        requests = await self._requests(t0, t1)
        graph = build_graph(requests, t0, t1, self.opts)
        node, edge = graph.nodes.get(element_id), graph.edges.get(element_id)
        if node is None and edge is None:
            return None
        mine = []
        for req in requests:
            ids = ids_of(req, self.opts.networks)
            if element_id in (ids.client, ids.router, ids.service, ids.request_edge, ids.forward_edge):
                mine.append(req)
        element = node if node is not None else edge
        assert element is not None
        rows: list[list[Any]] = [["kind", element.kind], ["requests in view", len(mine)],
                                 ["errors (4xx-5xx)", sum(r.error for r in mine)],
                                 ["first", mine[0].t if mine else None], ["last", mine[-1].t if mine else None]]
        classes: dict[str, int] = {}
        for r in mine:
            classes[r.status_class] = classes.get(r.status_class, 0) + 1
        rows += [[cls, n] for cls, n in sorted(classes.items())]
        durations = [r.duration for r in mine if r.duration is not None]
        if durations:
            rows.append(["mean duration (ms)", sum(durations) / len(durations)])
        if node is not None and node.attrs.get("addrs"):
            rows.append(["addresses", ", ".join(node.attrs["addrs"])])
        sections = [Section("Summary", rows=rows)]
        recent = list(reversed(mine[-self.opts.details_requests:]))
        sections.append(Section(f"Recent requests ({len(recent)})", rows=[
            [f"{r.method} {r.path}", f"{r.status} in {r.duration:g} ms" if r.duration is not None else str(r.status)]
            for r in recent]))
        for r in recent:
            sections.append(Section(f"{r.method} {r.path} -> {r.status}", kind="record", t=r.t, record=r.record()))
        title = node.label if node is not None else f"{graph.nodes[edge.src].label} -> {graph.nodes[edge.dst].label}" \
            if edge is not None else element_id
        return Details(element_id, title, "node" if node is not None else "edge", sections)

    async def histogram(self, t0: float, t1: float, bins: int) -> list[dict[str, float]]:
        if bins < 1 or not (math.isfinite(t0) and math.isfinite(t1)) or t1 <= t0:
            return []
        width = (t1 - t0) / bins
        out: list[dict[str, float]] = [{"t0": t0 + i * width, "t1": t0 + (i + 1) * width, "requests": 0,
                                        "errors": 0} for i in range(bins)]
        read = await self._read(await self._chunks_for(t0 + self.opts.fade, t1))
        for reqs in read.values():
            for r in reqs.values():
                if t0 <= r.t <= t1:
                    i = min(int((r.t - t0) / width), bins - 1)
                    out[i]["requests"] += 1
                    out[i]["errors"] += int(r.error)
        return out
