"""net_zeek's details panels (spec/viewer.md "details"): a host's (its measures, DNS names, busiest peers) and a
connection edge's (its measures, then the latest connections' records with the records linked to them: http, dns,
ssl and its x509 certificates...). Read with the view's pipelined look-ups, folded with a :class:`GraphState` of the
interval the viewer is looking at."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wiredraw.core.graph import Details, Section
from wiredraw.plugins.net_zeek.fold import GraphState, main_service
from wiredraw.plugins.net_zeek.query import (
    PREFIX,
    conn_command,
    conn_probes_command,
    host_probes_command,
    name_command,
    name_pairs,
    probes_from_reply,
    unpack_record,
)

if TYPE_CHECKING:
    from wiredraw.plugins.net_zeek.view import NetZeekView

__all__ = ["element_details"]

DETAILS_CONNS = 50  # connections shown in an edge's details
DETAILS_NAMES = 50  # DNS names shown in a host's details
DETAILS_PEERS = 20  # peers shown in a host's details


def as_text(v: Any) -> str:
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)


def is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s.split("%", 1)[0])
    except ValueError:
        return False
    return True


async def element_details(view: NetZeekView, element_id: str, t0: float, t1: float) -> Details | None:
    """Details of a host (an address) or a connection edge (``orig>resp``); None for anything else."""
    if ">" in element_id:
        src, dst = element_id.split(">", 1)
        if is_ip(src) and is_ip(dst):
            return await _edge_details(view, element_id, src, dst, t0, t1)
        return None
    if is_ip(element_id):
        return await _host_details(view, element_id, t0, t1)
    return None


async def _host_details(view: NetZeekView, ip: str, t0: float, t1: float) -> Details | None:
    seen, names, probes = await view._pipeline(
        [("ZSCORE", f"{PREFIX}hosts", ip), name_command(ip, DETAILS_NAMES), host_probes_command(ip)]
    )
    state = GraphState(view.classifier)
    for facts in await view._fetch(await view._active(t0, t1), ip):
        state.put(facts)
    if seen is None and ip not in state.nodes:
        return None
    pairs = name_pairs(names)
    state.labels[ip] = pairs[0] if pairs else None
    category, group = view.classifier.classify(ip)
    node = state.node(ip) if ip in state.nodes else None
    rows: list[list[Any]] = [["address", ip], ["name", state.label(ip)], ["category", category], ["group", group]]
    if node is not None:
        measures = (("bytes", "bytes"), ("connections out", "conns_out"), ("connections in", "conns_in"),
                    ("ports served", "ports"))
        rows += [[title, node.attrs[key]] for title, key in measures]
        rows += [["first seen (in view)", node.first], ["last seen (in view)", node.last]]
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
            main_service(e.services),
        ]
        for e in peers[:DETAILS_PEERS]
    ]
    title = f"peers (busiest {DETAILS_PEERS} of {len(peers)})" if len(peers) > DETAILS_PEERS else "peers"
    sections.append(Section(title, rows=[["peer", "direction", "conns", "bytes", "service"], *shown]))
    label = state.label(ip)
    return Details(ip, f"{label} ({ip})" if label != ip else ip, "node", sections)


async def _edge_details(view: NetZeekView, eid: str, src: str, dst: str, t0: float, t1: float) -> Details | None:
    conns = [c for c in await view._fetch(await view._active(t0, t1), src, dst) if c.orig == src and c.resp == dst]
    if not conns:
        return None
    conns.sort(key=lambda c: (-c.start, c.uid))
    shown = conns[:DETAILS_CONNS]
    state = GraphState(view.classifier)
    for c in conns:
        state.put(c)
    edge = state.edge(eid)
    replies = await view._pipeline(
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
    cert_replies = await view._pipeline([("HGETALL", f"{PREFIX}cert:{cert}") for cert in certs])
    cert_records = dict(zip(certs, map(_records, cert_replies), strict=True))
    out = [
        Section(
            "connections",
            rows=[
                ["connections in view", len(conns)],
                ["shown", f"the latest {len(shown)}"],
                *([key, edge.attrs[key]] for key in ("bytes", "services", "ports", "proto")),
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


def _ts(rec: Mapping[str, Any]) -> float | None:
    t = rec.get("ts")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None


def _records(reply: Any) -> list[tuple[str, dict[str, Any]]]:
    """(path, record) of a ``uid:{uid}`` / ``cert:{id}`` HGETALL reply (probe membership fields left out)."""
    if not isinstance(reply, list):
        return []
    out = []
    for i in range(0, len(reply) - 1, 2):
        field = as_text(reply[i])
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
