"""The processing server: a tree of Twisted services built by one function from a checked config.

embedded redis-server (unless --redis URL) → Redis client (reconnecting) → probe listeners (UDP and
TCP on one port), HTTP (/stats, /health), viz listener with one live feed per module that has a view, fed by a
keyspace-notification subscriber. Prints one ready line once all listen.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import os
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site
from wiredraw.core import wire
from wiredraw.core.address import DEFAULT_HTTP_PORT, DEFAULT_PROBE_PORT, DEFAULT_VIZ_PORT
from wiredraw.core.graph import ModuleView
from wiredraw.core.module import key_prefix
from wiredraw.core.plugins import ModuleSet
from wiredraw.core.server.collector import DEFAULT_MAX_UPLOAD, CollectorResource, make_site_request_factory
from wiredraw.core.server.credentials import ProbeSecrets, Tokens, ensure_private_dir
from wiredraw.core.server.ingest import Ingest, Stats
from wiredraw.core.server.live import ModuleFeed
from wiredraw.core.server.notify import KeyspaceSubscriber
from wiredraw.core.server.probe_listener import ProbeDatagramProtocol, ProbeStreamFactory
from wiredraw.core.server.redis_client import FatalRedisError, RedisClient, RedisError, _redacted
from wiredraw.core.server.viewers import BACKLOG_MAX, BACKLOG_MIN, ViewerFactory
from wiredraw.core.viewer_protocol import DEFAULT_FULL_EVERY


class ConfigError(ValueError):
    """The configuration does not hold; the message lists every problem and what to do."""


@dataclass
class ServerConfig:
    data_dir: Path
    redis_url: str | None = None
    bind: str = "127.0.0.1"
    probe_port: int = DEFAULT_PROBE_PORT
    viz_port: int = DEFAULT_VIZ_PORT
    http_port: int = DEFAULT_HTTP_PORT
    ephemeral: bool = False
    store_dir: Path | None = None  # the embedded redis-server's directory (None: DATA_DIR/redis)
    max_upload: int = DEFAULT_MAX_UPLOAD  # bytes, for HTTP collector uploads
    retention: int | None = None  # seconds of history modules keep (None: each module's default)
    limits: wire.Limits = field(default_factory=lambda: wire.DEFAULT_LIMITS)
    viz_config: Path | None = None  # TOML: one table of options per module ([net_zeek] ...)
    live_window: float = 3600.0  # seconds of event time the live graph holds (0: everything stored)
    full_every: float = DEFAULT_FULL_EVERY  # seconds between full graphs to live viewers
    viewer_backlog: int = BACKLOG_MIN  # bytes of diffs a slow viewer may have queued at least (viz_server.py)
    view_options: dict[str, Any] = field(default_factory=dict)  # loaded from viz_config by check()

    def check(self) -> ServerConfig:
        """Check everything before anything starts (buildbot's check-then-apply)."""
        problems = []
        try:
            ipaddress.ip_address(self.bind)
        except ValueError:
            problems.append(f"--bind {self.bind!r} is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)")
        for name in ("probe_port", "viz_port", "http_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                problems.append(f"--{name.replace('_', '-')} {port!r} is not a port number (0 picks a free one)")
        if self.retention is not None and self.retention < 60:
            problems.append(f"--retention-days must be at least a minute, got {self.retention} s")
        if not isinstance(self.max_upload, int) or self.max_upload <= 0:
            problems.append(f"--max-upload-mb must be positive, got {self.max_upload!r}")
        fixed = [p for p in (self.probe_port, self.viz_port, self.http_port) if p]
        if len(fixed) != len(set(fixed)):
            problems.append("--probe-port, --viz-port and --http-port must differ")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append(f"--redis {_redacted(self.redis_url)!r}: expected a redis://, rediss:// or unix:// URL")
        try:
            ensure_private_dir(self.data_dir)
            if not os.access(self.data_dir, os.W_OK):
                problems.append(f"--data-dir {self.data_dir}: not writable")
        except OSError as exc:
            problems.append(f"--data-dir {self.data_dir}: cannot create it ({exc.strerror})")
        if not self.live_window >= 0:
            problems.append(f"--live-window must be >= 0 seconds (0: everything stored), got {self.live_window!r}")
        if not self.full_every >= 1:
            problems.append(f"--full-every must be at least 1 second, got {self.full_every!r}")
        if not isinstance(self.viewer_backlog, int) or not 0 <= self.viewer_backlog <= BACKLOG_MAX:
            problems.append(f"--viewer-backlog-kb must be 0 to {BACKLOG_MAX >> 10} (KiB), "
                            f"got {self.viewer_backlog / 1024:g}")
        if self.viz_config is not None:
            try:
                self.view_options = tomllib.loads(Path(self.viz_config).read_text())
            except OSError as exc:
                problems.append(f"--viz-config {self.viz_config}: cannot read it ({exc.strerror})")
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                problems.append(f"--viz-config {self.viz_config}: not valid TOML ({exc})")
            else:
                bad = [k for k, v in self.view_options.items() if not isinstance(v, dict)]
                if bad:
                    problems.append(f"--viz-config {self.viz_config}: {', '.join(bad)} must be tables "
                                    f"([module_slug] with its options)")
        if problems:
            raise ConfigError("cannot start the server:\n  - " + "\n  - ".join(problems))
        return self


def notify_config_line(classes: str) -> str:
    return f"notify-keyspace-events K{classes}"


class JSONResource(Resource):
    isLeaf = True

    def __init__(self, produce: Callable[[], tuple[int, dict[str, Any]]]):
        super().__init__()
        self.produce = produce

    def render_GET(self, request: Any) -> bytes:
        code, body = self.produce()
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"


class _LateStore:
    """The Redis client as a module's view sees it, before the client exists (views are built, and their options
    checked, before the server starts)."""

    def __init__(self, server: WiredrawServer) -> None:
        self._server = server

    def execute(self, *command: Any) -> defer.Deferred[Any]:
        assert self._server.view_redis is not None
        return self._server.view_redis.execute(*command)

    def pipeline(self, commands: Sequence[Any]) -> defer.Deferred[list[Any]]:
        assert self._server.view_redis is not None
        return self._server.view_redis.pipeline(commands)


class ListenersService(Service):
    """Binds every listener when started; knows the real ports (0 picks a free one)."""

    log = Logger()

    def __init__(self, reactor: Any, config: ServerConfig, ingest: Ingest, stats_view: Callable[[], Any],
                 health_view: Callable[[], Any], viewer_factory: ViewerFactory):
        self.reactor, self.config, self.ingest, self.viewer_factory = reactor, config, ingest, viewer_factory
        self.stream_factory = ProbeStreamFactory(ingest, reactor)
        root = Resource()
        root.putChild(b"stats", JSONResource(stats_view))
        root.putChild(b"health", JSONResource(health_view))
        tokens = Tokens(config.data_dir)
        for loaded in ingest.modules:
            collector = loaded.module.collector
            if collector is not None and collector.prefix:  # e.g. net_zeek's POST /logs/<type>
                root.putChild(collector.prefix.encode(), CollectorResource(loaded, collector, ingest, tokens,
                                                                           config.max_upload))
        self.site = Site(root, requestFactory=make_site_request_factory(config.max_upload))
        self.site.noisy = False
        self.ports: dict[str, Any] = {}

    def startService(self) -> None:
        super().startService()
        c, r = self.config, self.reactor
        self.ports["probe_tcp"], self.ports["probe_udp"] = self._probe_ports(c.probe_port)
        self.ports["viz"] = r.listenTCP(c.viz_port, self.viewer_factory, interface=c.bind)
        self.ports["http"] = r.listenTCP(c.http_port, self.site, interface=c.bind)

    def _probe_ports(self, wanted: int) -> tuple[Any, Any]:
        """TCP and UDP on one port number; with 0, find a number free for both."""
        r, c = self.reactor, self.config
        for _attempt in range(20):
            tcp = r.listenTCP(wanted, self.stream_factory, interface=c.bind)
            try:
                udp = r.listenUDP(tcp.getHost().port, ProbeDatagramProtocol(self.ingest), interface=c.bind,
                                  maxPacketSize=65535)
                return tcp, udp
            except Exception:
                tcp.stopListening()
                if wanted:
                    raise
        raise OSError("no port number free for both TCP and UDP")

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        self.stream_factory.drop_all("shutdown", "server is stopping")
        for session in list(self.viewer_factory.sessions):  # before Redis goes: no request is left half answered
            if session.transport is not None:
                session.transport.loseConnection()
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports.values()])

    def address(self, name: str) -> str:
        host = self.ports[name].getHost()
        return f"{host.host}:{host.port}" if ":" not in host.host else f"[{host.host}]:{host.port}"


class WiredrawServer(MultiService):
    """The top service. ``ready`` fires once every listener listens and Redis is connected."""

    log = Logger()

    def __init__(self, reactor: Any, config: ServerConfig, modules: ModuleSet,
                 on_ready: Callable[[WiredrawServer], None] | None = None,
                 on_fatal: Callable[[BaseException], None] | None = None):
        super().__init__()
        self.reactor, self.config, self.modules = reactor, config, modules
        self.on_ready, self.on_fatal = on_ready, on_fatal
        self.ready: defer.Deferred[WiredrawServer] = defer.Deferred()
        self.stats = Stats()
        self.keys = ProbeSecrets(config.data_dir)
        if config.retention is not None:
            for loaded in modules:
                schema = loaded.module.schema
                if schema is not None and schema.retention is not None:  # a schema that keeps history with a TTL
                    schema.retention = config.retention
        self.embedded: Any = None
        if config.redis_url is None:
            from wiredraw.core.server.embedded_redis import EmbeddedRedis, EmbeddedRedisService

            self.embedded = EmbeddedRedis(config.store_dir or config.data_dir / "redis", ephemeral=config.ephemeral)
            embedded_service = EmbeddedRedisService(self.embedded, reactor)
            embedded_service.setServiceParent(self)
            self.stats.gauges["redis_restarts"] = lambda: embedded_service.restarts
        self.redis: RedisClient | None = None
        # The views read on a connection of their own: on the ingest connection each read would wait behind every
        # ingest pipeline queued before it (tens of ms at 10k records/s), and Redis serves its clients in turn.
        self.view_redis: RedisClient | None = None
        self.ingest: Ingest | None = None
        self.listeners: ListenersService | None = None
        self.feeds: dict[str, ModuleFeed] = {}
        self.subscriber: KeyspaceSubscriber | None = None
        self.views = self._make_views()

    def _make_views(self) -> dict[str, ModuleView]:
        """Each module's view translation, built now so that a bad option stops the server before it starts."""
        views: dict[str, ModuleView] = {}
        unknown = set(self.config.view_options) - {m.spec.slug for m in self.modules}
        if unknown:
            raise ConfigError(f"--viz-config: no loaded module named {', '.join(sorted(unknown))} "
                              f"(loaded: {', '.join(m.spec.slug for m in self.modules)})")
        for loaded in self.modules:
            slug = loaded.spec.slug
            try:
                view = loaded.module.make_view(_LateStore(self), self.config.view_options.get(slug, {}))
            except (ValueError, TypeError, OSError) as exc:
                raise ConfigError(f"--viz-config [{slug}]: {exc}") from exc
            if view is not None:
                outside = [p for p in view.watch_keys if not p.startswith(key_prefix(slug))]
                if outside:
                    raise ConfigError(f"plugin {loaded.plugin!r}: module {slug}'s view watches {', '.join(outside)}, "
                                      f"outside its prefix {key_prefix(slug)}")
                views[slug] = view
        return views

    @property
    def redis_url(self) -> str:
        return self.config.redis_url or self.embedded.url

    def startService(self) -> None:
        # A server holds large, long-lived, acyclic structures (live graphs) and makes many short-lived objects:
        # collect the young often, the old rarely (core/server/live.py settle_gc freezes what a recompute leaves).
        gc.set_threshold(20_000, 20, 100)
        # The embedded redis-server starts first (a child service): its URL is known only then.
        super().startService()
        self.redis = RedisClient(self.reactor, self.redis_url, on_connect=self._redis_connected,
                                 on_lost=self._redis_lost, on_fatal=self._fatal)
        self.ingest = Ingest(self.modules, self.keys.key_for, self.redis, self.reactor, self.config.limits,
                             self.stats)
        self.stats.gauges["redis_connected"] = lambda: self.redis.connected if self.redis else False
        self.stats.gauges["redis_reconnects"] = lambda: self.redis.reconnects if self.redis else 0
        self.stats.gauges["probes_connected"] = lambda: len(self.listeners.stream_factory.connections) \
            if self.listeners else 0
        c = self.config
        for slug, view in self.views.items():
            self.feeds[slug] = ModuleFeed(slug, view, self.reactor, window=c.live_window, full_every=c.full_every)
        ids = {m.spec.id: m.spec.slug for m in self.modules}
        info = [{"id": m.spec.id, "slug": m.spec.slug, "version": m.spec.version, "doc": m.spec.doc,
                 "node_kinds": list(self.views[m.spec.slug].node_kinds),
                 "edge_kinds": list(self.views[m.spec.slug].edge_kinds)}
                for m in self.modules if m.spec.slug in self.views]
        self.viewer_factory = ViewerFactory(self.feeds, ids, Tokens(c.data_dir), self.reactor,
                                            server_name=_server_name(), full_every=c.full_every, modules_info=info,
                                            backlog=c.viewer_backlog)
        self.stats.gauges["viewers"] = lambda: len(self.viewer_factory.sessions)
        self.stats.gauges["viewers_refused"] = lambda: self.viewer_factory.refusals
        self.stats.gauges["viz"] = lambda: {slug: dict(f.counters) for slug, f in self.feeds.items()}
        self.listeners = ListenersService(self.reactor, self.config, self.ingest, self._stats_view,
                                          self._health_view, self.viewer_factory)
        self.listeners.setServiceParent(self)
        self.redis.service.setServiceParent(self)
        connected = [self.redis.service.whenConnected()]
        if self.views:
            self.view_redis = RedisClient(self.reactor, self.redis_url, on_fatal=self._fatal)
            self.view_redis.service.setServiceParent(self)
            connected.append(self.view_redis.service.whenConnected())
            self.stats.gauges["viz_redis_reconnects"] = lambda: self.view_redis.reconnects if self.view_redis else 0
        defer.gatherResults(connected, consumeErrors=True).addCallbacks(
            self._first_connect, lambda f: self._fatal(getattr(f.value, "subFailure", f)))

    @defer.inlineCallbacks
    def _redis_connected(self, protocol: Any) -> Any:
        classes = self.modules.notify_classes()
        if classes:
            yield self._ensure_notifications(protocol, classes)
        # Module scripts go on every connection: a restarted Redis has forgotten them.
        for loaded in self.modules:
            for script in loaded.module.scripts:
                yield protocol.execute("SCRIPT", "LOAD", script.source)
        assert self.ingest is not None
        yield self.ingest.load_windows(protocol)

    @defer.inlineCallbacks
    def _ensure_notifications(self, protocol: Any, classes: str) -> Any:
        """Switch keyspace notifications on with the smallest class set the modules need."""
        wanted = set("K" + classes)
        try:
            current = yield protocol.execute("CONFIG", "GET", "notify-keyspace-events")
            have = set(current[1].decode()) if len(current) == 2 else set()
            if "A" in have:
                have |= set("g$lshzxetd")
            if wanted <= have:
                return
            yield protocol.execute("CONFIG", "SET", "notify-keyspace-events", "".join(sorted(have | wanted)))
        except RedisError as exc:
            raise FatalRedisError(
                f"Redis refused to switch on keyspace notifications ({exc}). Add this line to redis.conf "
                f"(or your provider's parameter group) and restart Redis:\n    {notify_config_line(classes)}"
            ) from exc

    def _redis_lost(self) -> None:
        assert self.ingest is not None and self.listeners is not None
        self.ingest.redis_lost()
        self.listeners.stream_factory.drop_all("unavailable", "storage connection lost; retry later")

    def _first_connect(self, _: Any) -> None:
        if self.ready.called:
            return
        self._start_feeds()
        self.ready.callback(self)
        if self.on_ready is not None:
            self.on_ready(self)

    def _start_feeds(self) -> None:
        """After the first connect (keyspace notifications are switched on by then): subscribe, then recompute
        each live graph once the subscription holds, and periodically."""
        if not self.feeds:
            return
        patterns = [p for view in self.views.values() for p in view.watch_keys]
        prefixes = [(key_prefix(slug), feed) for slug, feed in self.feeds.items()]

        def on_event(key: str, event: str) -> None:
            for prefix, feed in prefixes:
                if key.startswith(prefix):
                    feed.on_event(key, event)
                    return

        def on_ready() -> None:
            assert self.subscriber is not None
            for feed in self.feeds.values():
                feed.subscription_ready(first=self.subscriber.subscriptions == 1)

        if patterns:
            self.subscriber = KeyspaceSubscriber(self.reactor, self.redis_url, patterns, on_event=on_event,
                                                 on_ready=on_ready)
            self.subscriber.service.setServiceParent(self)
        else:
            for feed in self.feeds.values():
                feed.refresh("start")
        for feed in self.feeds.values():
            feed.start()

    def stopService(self) -> Any:
        for feed in self.feeds.values():
            feed.stop()
        return super().stopService()

    def _fatal(self, exc: Any) -> None:
        exc = getattr(exc, "value", exc)
        if self.on_fatal is not None:
            self.on_fatal(exc)

    def ready_line(self) -> str:
        assert self.listeners is not None
        a = self.listeners.address
        return (f"wiredraw server ready: probes={a('probe_tcp')} viz={a('viz')} http={a('http')} "
                f"redis={_redacted(self.redis_url)}")

    def _stats_view(self) -> tuple[int, dict[str, Any]]:
        return 200, self.stats.as_dict()

    def _health_view(self) -> tuple[int, dict[str, Any]]:
        ok = bool(self.ingest and self.ingest.ready)
        return (200 if ok else 503), {"status": "ok" if ok else "degraded",
                                      "redis": "connected" if ok else "reconnecting",
                                      "modules": [m.spec.slug for m in self.modules]}


def _server_name() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"wiredraw {version('wiredraw')}"
    except PackageNotFoundError:
        return "wiredraw"


def run_server(reactor: Any, config: ServerConfig, modules: ModuleSet, *, out: Any = None) -> defer.Deferred[Any]:
    """Run until SIGINT/SIGTERM: start the tree, print the ready line once, stop in order."""
    out = out or sys.stdout
    done: defer.Deferred[Any] = defer.Deferred()
    failure: list[BaseException] = []

    def ready(server: WiredrawServer) -> None:
        print(server.ready_line(), file=out, flush=True)

    def fatal(exc: BaseException) -> None:
        if not failure:
            failure.append(exc)
            print(f"wiredraw server: {exc}", file=sys.stderr, flush=True)
            reactor.callLater(0, reactor.stop)

    server = WiredrawServer(reactor, config, modules, on_ready=ready, on_fatal=fatal)
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    def finished() -> None:
        if not done.called:
            done.callback(None)

    reactor.addSystemEventTrigger("after", "shutdown", finished)
    try:
        server.startService()
    except Exception as exc:
        fatal(exc)
    return done.addCallback(lambda _: _exit_code(failure))


def _exit_code(failure: list[BaseException]) -> int:
    return 1 if failure else 0
