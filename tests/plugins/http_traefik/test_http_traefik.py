"""http_traefik (module 3): Traefik access logs in both documented formats (JSON and common log format) give the
expected nodes, edges and green/red pulses; the source follows a file, counts bad lines and resumes; several
proxies (probes) sit side by side. No real Traefik logs are in ../shared/data: the lines below are written from
Traefik's documentation of both formats."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import keyspace_events
from viz_store import run
from wiredraw.core.graph import Change, Graph
from wiredraw.core.module import IngestCounts, Source, load_module_spec, validate_message
from wiredraw.plugins.http_traefik.module import HttpTraefikModule
from wiredraw.plugins.http_traefik.source import HttpTraefikSource, parse_line
from wiredraw.plugins.http_traefik.view import HttpTraefikView, parse_options
from wiredraw.testing import ModuleConformance, write_messages

ROOT = Path(__file__).resolve().parents[3]
T = 1795341601.0  # 2026-11-22T10:00:01Z

JSON_OK = json.dumps({
    "StartUTC": "2026-11-22T10:00:01.123456789Z", "ClientAddr": "10.0.0.5:51234", "ClientHost": "10.0.0.5",
    "ClientPort": "51234", "RequestMethod": "GET", "RequestPath": "/api/items", "RequestProtocol": "HTTP/1.1",
    "RequestHost": "shop.example.com", "DownstreamStatus": 200, "OriginStatus": 200, "Duration": 3_250_000,
    "RouterName": "api@docker", "ServiceName": "api@docker", "ServiceAddr": "172.18.0.3:8080",
    "entryPointName": "web", "RequestCount": 41, "OriginContentSize": 512, "DownstreamContentSize": 512})
JSON_5XX = json.dumps({
    "StartUTC": "2026-11-22T10:00:02.5Z", "ClientHost": "10.0.0.5", "RequestMethod": "POST",
    "RequestPath": "/api/orders", "DownstreamStatus": 502, "Duration": 12_000_000, "RouterName": "api@docker",
    "ServiceName": "api@docker", "ServiceAddr": "172.18.0.3:8080", "entryPointName": "web", "RequestCount": 42})
JSON_EXTERNAL_404 = json.dumps({  # an outside caller, no router matched
    "StartUTC": "2026-11-22T10:00:03Z", "ClientHost": "203.0.113.9", "RequestMethod": "GET",
    "RequestPath": "/wp-login.php", "DownstreamStatus": 404, "Duration": 40_000, "entryPointName": "web",
    "RequestCount": 43})
CLF_OK = ('10.0.0.7 - - [22/Nov/2026:10:00:04 +0000] "GET /static/app.js HTTP/1.1" 304 0 "-" '
          '"Mozilla/5.0 (X11; Linux x86_64)" 44 "web@docker" "http://172.18.0.4:80" 1ms')
CLF_4XX = ('198.51.100.20 - - [22/Nov/2026:10:00:05 +0000] "DELETE /api/items/3 HTTP/2.0" 403 19 '
           '"https://shop.example.com/" "curl/8.5.0" 45 "api@docker" "http://172.18.0.3:8080" 2ms')
BAD = "this is not an access log line"

ALL = (JSON_OK, JSON_5XX, JSON_EXTERNAL_404, CLF_OK, CLF_4XX)


def messages(lines: Sequence[str], entrypoint: str | None = None) -> list[dict[str, Any]]:
    out = []
    for i, line in enumerate(lines):
        msg = parse_line(line, entrypoint)
        assert msg is not None, line
        msg.setdefault("rid", f"o{i}")
        out.append(msg)
    return out


class TestHttpTraefikConformanceWithSamples(ModuleConformance):
    """The shared suite again, with every sample log line above ingested too
    (tests/core/testing/test_conformance.py runs it on the vectors alone)."""

    module = HttpTraefikModule()
    vectors = ROOT / "plugins" / "http_traefik" / "vectors" / "http_traefik-messages.json"
    samples = tuple(("request", m) for m in messages(ALL, "web"))
    entry_point = "http_traefik"


# --- the server's write path, as the core runs it --------------------------------------------------------------


class Ingester:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.module = HttpTraefikModule()

    def __call__(self, msgs: Sequence[dict[str, Any]], probe: str = "edge1") -> IngestCounts:
        return write_messages(self.client, self.module, "request", msgs, probe)


@pytest.fixture
def ingest(redis_client: redis.Redis) -> Ingester:
    return Ingester(redis_client)


@pytest.fixture
def viz(store: Any) -> HttpTraefikView:
    return HttpTraefikView(store, {"fade": 30})


# --- parsing both formats ----------------------------------------------------------------------------------------


def test_json_lines_parse():
    ok = parse_line(JSON_OK)
    assert ok == {"t": pytest.approx(T + 0.123456789), "rid": "41", "client": "10.0.0.5", "method": "GET",
                  "path": "/api/items", "status": 200, "duration": 3.25, "entrypoint": "web",
                  "router": "api@docker", "service": "api@docker", "service_addr": "172.18.0.3:8080",
                  "host": "shop.example.com", "protocol": "HTTP/1.1", "size": 512}
    ext = parse_line(JSON_EXTERNAL_404)
    assert ext is not None and "router" not in ext and ext["status"] == 404 and ext["t"] == T + 2


def test_common_log_lines_parse():
    ok = parse_line(CLF_OK, entrypoint="websecure")
    assert ok == {"t": T + 3, "rid": "44", "client": "10.0.0.7", "method": "GET", "path": "/static/app.js",
                  "status": 304, "duration": 1.0, "router": "web@docker", "service_addr": "http://172.18.0.4:80",
                  "protocol": "HTTP/1.1", "size": 0, "entrypoint": "websecure"}
    bad = parse_line(CLF_4XX)
    assert bad is not None and bad["status"] == 403 and bad["method"] == "DELETE" and "entrypoint" not in bad
    # a timezone offset, a plain CLF line without Traefik's tail, and lines that are not access-log lines
    east = parse_line('10.0.0.7 - bob [22/Nov/2026:11:00:04 +0100] "GET / HTTP/1.1" 200 - "-" "-"')
    assert east is not None and east["t"] == T + 3 and "rid" not in east and "size" not in east
    for line in (BAD, "{not json", '{"RequestMethod": "GET"}', "", '10.0.0.7 - - [99/Foo/2026:10:00:04 +0000] '
                 '"GET / HTTP/1.1" 200 0 "-" "-" 1 "-" "-" 0ms'):
        assert parse_line(line) is None, line


def test_parsed_messages_validate():
    spec = HttpTraefikModule().spec
    for m in messages(ALL):
        assert validate_message(spec.messages["request"], m) is None


# --- keys ------------------------------------------------------------------------------------------------------


def test_keys_declared_and_idempotent(ingest, redis_client):
    msgs = messages(ALL, "web")
    first = ingest(msgs)
    assert (first.written, first.repeats) == (5, 0)
    again = ingest(msgs)
    assert (again.written, again.repeats) == (0, 5)
    spec = load_module_spec(ROOT / "plugins" / "http_traefik" / "http_traefik.toml")
    keys = [k.decode() for k in redis_client.keys("*")]
    assert sorted(keys) == ["wd:http_traefik:first", "wd:http_traefik:last", f"wd:http_traefik:req:{int(T // 600)}"]
    for key in keys:
        template = spec.key_matches(key)
        assert template is not None and redis_client.type(key).decode() == template.type, key
        assert 0 < redis_client.ttl(key) <= (template.ttl or 0), key


# --- the graph ---------------------------------------------------------------------------------------------------


def test_both_formats_give_nodes_and_edges(ingest, viz):
    ingest(messages(ALL, "web"))
    g: Graph = run(viz.graph(T - 10, T + 10))
    g.check()
    kinds = {nid: n.kind for nid, n in g.nodes.items()}
    assert kinds == {
        "client:10.0.0.5": "client", "client:10.0.0.7": "client", "external:edge1:web": "external",
        "router:edge1:api@docker": "router", "router:edge1:web@docker": "router",
        "entrypoint:edge1:web": "entrypoint",
        "service:edge1:api@docker": "service", "service:edge1:http://172.18.0.4:80": "service",
        "service:edge1:http://172.18.0.3:8080": "service",
    }
    edges = {eid: (e.kind, e.weight, e.category) for eid, e in g.edges.items()}
    assert edges == {
        "client:10.0.0.5>router:edge1:api@docker": ("request", 2, "5xx"),
        "router:edge1:api@docker>service:edge1:api@docker": ("forward", 2, "5xx"),
        "external:edge1:web>entrypoint:edge1:web": ("request", 1, "4xx"),
        "client:10.0.0.7>router:edge1:web@docker": ("request", 1, "3xx"),
        "router:edge1:web@docker>service:edge1:http://172.18.0.4:80": ("forward", 1, "3xx"),
        "external:edge1:web>router:edge1:api@docker": ("request", 1, "4xx"),  # the CLF 403, outside caller
        "router:edge1:api@docker>service:edge1:http://172.18.0.3:8080": ("forward", 1, "4xx"),
    }
    assert g.edges["client:10.0.0.5>router:edge1:api@docker"].attrs == {"requests": 2, "errors": 1, "2xx": 1,
                                                                         "5xx": 1, "probe": "edge1"}
    assert g.nodes["external:edge1:web"].label == "external@web"
    assert g.nodes["service:edge1:api@docker"].attrs["addrs"] == ["172.18.0.3:8080"]
    assert {n.group for n in g.nodes.values()} == {"edge1"}
    assert run(viz.time_range()) == (pytest.approx(T + 0.123456789), T + 4)
    assert run(viz.graph(T + 100, T + 200)).nodes == {}  # faded out (fade 30)


def test_client_networks_option(ingest, store):
    ingest(messages(ALL, "web"))
    g = run(HttpTraefikView(store, {"client_networks": ["203.0.113.0/24"]}).graph(T - 10, T + 10))
    assert "client:203.0.113.9" in g.nodes and "client:10.0.0.5" not in g.nodes
    assert "external:edge1:web" in g.nodes
    for bad in ({"client_networks": ["nope"]}, {"fade": -1}, {"details_requests": 0}, {"colour": 1}):
        with pytest.raises(ValueError, match=next(iter(bad)) if "colour" not in bad else "unknown option"):
            parse_options(bad)


def test_two_proxies_side_by_side(ingest, viz):
    ingest(messages([JSON_OK, CLF_OK], "web"), probe="edge1")
    ingest(messages([JSON_OK, JSON_EXTERNAL_404], "web"), probe="edge2")
    g = run(viz.graph(T - 10, T + 10))
    g.check()
    groups = {nid: n.group for nid, n in g.nodes.items()}
    assert groups["router:edge1:api@docker"] == "edge1" and groups["router:edge2:api@docker"] == "edge2"
    assert groups["service:edge1:api@docker"] == "edge1" and groups["service:edge2:api@docker"] == "edge2"
    assert groups["external:edge2:web"] == "edge2"
    assert groups["client:10.0.0.7"] == "edge1"
    assert groups["client:10.0.0.5"] == ""  # calls both proxies: between them
    assert g.nodes["client:10.0.0.5"].attrs["probes"] == ["edge1", "edge2"]
    assert "client:10.0.0.5>router:edge1:api@docker" in g.edges
    assert "client:10.0.0.5>router:edge2:api@docker" in g.edges


# --- live: pulses ----------------------------------------------------------------------------------------------


def live_write(viz: HttpTraefikView, client: redis.Redis, ingest: Ingester, graph: Graph, msgs: list[dict[str, Any]],
               probe: str = "edge1") -> Change:
    seen = keyspace_events(client, lambda: ingest(msgs, probe), "wd:http_traefik:*")
    watched = [(k, e) for k, e in seen if k.startswith("wd:http_traefik:req:") and e == "hset"]
    change: Change = run(viz.on_events(watched, graph))
    graph.apply(change)
    graph.check()
    return change


def test_live_pulses_green_and_red(ingest, viz, redis_client):
    graph: Graph = run(viz.live_graph(None))
    assert graph.nodes == {}
    msgs = messages(ALL, "web")
    ok = live_write(viz, redis_client, ingest, graph, msgs[:1])  # JSON 200
    assert ("client:10.0.0.5>router:edge1:api@docker", "edge", "ok") in {(p.target, p.on, p.meaning)
                                                                          for p in ok.pulses}
    assert {p.target for p in ok.pulses if p.meaning == "new"} == {
        "client:10.0.0.5", "router:edge1:api@docker", "service:edge1:api@docker"}
    err = live_write(viz, redis_client, ingest, graph, msgs[1:2])  # JSON 502
    assert [(p.target, p.meaning) for p in err.pulses] == [
        ("client:10.0.0.5>router:edge1:api@docker", "error"),
        ("router:edge1:api@docker>service:edge1:api@docker", "error")]
    assert err.t == T + 1.5
    rest = live_write(viz, redis_client, ingest, graph, msgs[2:])  # JSON 404, CLF 304, CLF 403
    edge_pulses = {(p.target, p.meaning) for p in rest.pulses if p.on == "edge"}
    assert edge_pulses == {
        ("external:edge1:web>entrypoint:edge1:web", "error"),
        ("client:10.0.0.7>router:edge1:web@docker", "ok"),
        ("router:edge1:web@docker>service:edge1:http://172.18.0.4:80", "ok"),
        ("external:edge1:web>router:edge1:api@docker", "error"),
        ("router:edge1:api@docker>service:edge1:http://172.18.0.3:8080", "error"),
    }
    # a repeat notifies nothing and pulses nothing; the live graph equals the query graph
    assert live_write(viz, redis_client, ingest, graph, msgs).pulses == []
    assert graph == run(viz.graph(-math.inf, math.inf))


def test_details_list_recent_requests(ingest, viz):
    ingest(messages(ALL, "web"))
    d = run(viz.details("client:10.0.0.5>router:edge1:api@docker", T - 10, T + 10))
    assert d is not None and d.on == "edge"
    records = [s.record for s in d.sections if s.kind == "record"]
    assert [(r["method"], r["path"], r["status"], r["duration_ms"]) for r in records] == [
        ("POST", "/api/orders", 502, 12.0), ("GET", "/api/items", 200, 3.25)]
    assert run(viz.details("router:edge1:api@docker", T - 10, T + 10)).sections[1].rows[0] == [
        "DELETE /api/items/3", "403 in 2 ms"]
    assert run(viz.details("nope", T - 10, T + 10)) is None
    hist = run(viz.histogram(T - 1, T + 9, 2))
    assert [(h["requests"], h["errors"]) for h in hist] == [(4, 2), (1, 1)]  # the CLF 403 at T + 4 opens the second bin


# --- the source ------------------------------------------------------------------------------------------------


def test_source_follows_both_formats_counts_bad_and_resumes(tmp_path):
    path = tmp_path / "access.log"
    path.write_text("\n".join([JSON_OK, BAD, CLF_OK, ""]) + JSON_5XX[:20])  # the last line still being written
    source = HttpTraefikSource(path, entrypoint="web")
    assert isinstance(source, Source)
    got = source.poll(10)
    assert [(t, m["rid"], m["status"], m.get("entrypoint")) for t, m in got] == [
        ("request", "41", 200, "web"), ("request", "44", 304, "web")]
    spec = HttpTraefikModule().spec
    for mtype, m in got:
        assert validate_message(spec.messages[mtype], m) is None
    summary = source.summary()
    assert (summary["bad"], summary["json"], summary["common"]) == (1, 1, 1)
    token = json.loads(json.dumps(source.state()))

    with path.open("a") as f:
        f.write(JSON_5XX[20:] + "\n" + '10.0.0.7 - - [22/Nov/2026:10:00:06 +0000] "GET / HTTP/1.1" 200 3 "-" "-"\n')
    again = HttpTraefikSource(path)
    again.restore(token)
    more = again.poll(10)
    assert [(m["rid"], m["status"]) for _, m in more] == [("42", 502), (f"o{token['offset'] + len(JSON_5XX) + 1}",
                                                                         200)]
    assert again.poll(10) == []
    path.write_text(CLF_4XX + "\n")  # truncated (rotated in place): read again from the start
    assert [m["rid"] for _, m in again.poll(10)] == ["45"]
