"""A thin Twisted-native Redis client: hiredis packs and parses, commands are pipelined on one
connection, replies come back in order (notes/perf.md: 15-18 k records/s, against 3-4 k for
txredisapi). It reconnects with backoff through ``ClientService`` and tells its owner about every
connect and every loss, so nothing is lost silently (DESIGN.md §3).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis.connection import parse_url
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

Command = Sequence[Any]


class RedisError(Exception):
    """An error reply from Redis."""


class NotConnected(Exception):
    """No connection to Redis right now; the client is reconnecting."""


class RedisProtocol(Protocol):
    transport: Any  # set by the reactor

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        # each entry: [replies still expected, replies so far, deferred, single]
        self._pending: deque[list[Any]] = deque()
        self.on_lost: Callable[[RedisProtocol, Failure], None] | None = None

    def dataReceived(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.transport.abortConnection()
                self._fail_all(Failure(RedisError(f"protocol error from Redis: {exc}")))
                return
            if reply is False:
                return
            entry = self._pending[0]
            if isinstance(reply, hiredis.ReplyError):
                reply = RedisError(str(reply))
            elif isinstance(reply, list):
                reply = [RedisError(str(r)) if isinstance(r, hiredis.ReplyError) else r for r in reply]
            entry[1].append(reply)
            entry[0] -= 1
            if entry[0] == 0:
                self._pending.popleft()
                d: defer.Deferred[Any] = entry[2]
                if entry[3]:
                    if isinstance(reply, RedisError):
                        d.errback(reply)
                    else:
                        d.callback(reply)
                else:
                    d.callback(entry[1])

    def _send(self, commands: Sequence[Command], single: bool) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        if not commands:
            d.callback([])
            return d
        self._pending.append([len(commands), [], d, single])
        self.transport.write(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
        return d

    def execute(self, *command: Any) -> defer.Deferred[Any]:
        """One command; fires with its reply or fails with RedisError."""
        return self._send([command], True)

    def pipeline(self, commands: Sequence[Command]) -> defer.Deferred[list[Any]]:
        """Several commands in one write; fires with the list of replies (errors as RedisError values)."""
        return self._send(commands, False)

    def transaction(self, commands: Sequence[Command]) -> defer.Deferred[list[Any]]:
        """MULTI/EXEC around ``commands``: all or nothing. Fires with EXEC's replies."""
        d = self._send([("MULTI",), *commands, ("EXEC",)], False)

        def unwrap(replies: list[Any]) -> list[Any]:
            result = replies[-1]
            if isinstance(result, RedisError):
                raise result
            errors = [r for r in replies[1:-1] if isinstance(r, RedisError) and "QUEUED" not in str(r)]
            if errors:
                raise errors[0]
            if result is None:
                raise RedisError("transaction aborted")
            return result

        return d.addCallback(unwrap)

    def _fail_all(self, reason: Failure) -> None:
        pending, self._pending = self._pending, deque()
        for entry in pending:
            entry[2].errback(reason)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        self._fail_all(Failure(NotConnected(f"connection to Redis lost: {reason.getErrorMessage()}")))
        if self.on_lost is not None:
            self.on_lost(self, reason)


def endpoint_for_url(reactor: Any, url: str) -> tuple[IStreamClientEndpoint, dict[str, Any]]:
    """A Twisted endpoint and the AUTH/SELECT settings for a redis://, rediss:// or unix:// URL."""
    try:
        kw = parse_url(url)
    except ValueError as exc:
        raise ValueError(f"bad Redis URL {url!r}: {exc}") from exc
    settings = {k: kw.get(k) for k in ("username", "password", "db")}
    if "path" in kw:
        return UNIXClientEndpoint(reactor, kw["path"], timeout=10), settings
    host, port = kw.get("host", "localhost"), int(kw.get("port", 6379))
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port, timeout=10)
    if url.startswith("rediss://"):
        from twisted.internet.ssl import optionsForClientTLS

        endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
    return endpoint, settings


class RedisClient:
    """A reconnecting Redis connection for the server.

    ``on_connect(protocol)`` runs on every new connection before it is handed out (it may return a
    Deferred; failing it drops the connection and retries, unless it raises ``FatalRedisError``).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        url: str,
        *,
        on_connect: Callable[[RedisProtocol], Any] | None = None,
        on_lost: Callable[[], None] | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.url = url
        endpoint, self._settings = endpoint_for_url(reactor, url)
        self._on_connect, self._on_lost, self._on_fatal = on_connect, on_lost, on_fatal
        self.protocol: RedisProtocol | None = None
        self.connects = 0
        self.service = ClientService(
            endpoint,
            Factory.forProtocol(RedisProtocol),
            retryPolicy=backoffPolicy(initialDelay=0.05, maxDelay=5.0, factor=2.0),
            clock=reactor,
            prepareConnection=self._prepare,
        )

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    @property
    def connected(self) -> bool:
        return self.protocol is not None

    @defer.inlineCallbacks
    def _prepare(self, protocol: Any) -> Any:
        s = self._settings
        if s.get("password"):
            args = ("AUTH", s["username"], s["password"]) if s.get("username") else ("AUTH", s["password"])
            yield protocol.execute(*args)
        if s.get("db"):
            yield protocol.execute("SELECT", int(s["db"]))
        if self._on_connect is not None:
            try:
                yield self._on_connect(protocol)
            except FatalRedisError as exc:
                if self._on_fatal is not None:
                    self._on_fatal(exc)
                raise
        # ClientService hands prepareConnection a proxy around our protocol: an attribute set on the
        # proxy never reaches the protocol, whose connectionLost would then tell nobody. Hook (and
        # keep) the protocol itself.
        inner: RedisProtocol = getattr(protocol, "_protocol", protocol)
        inner.on_lost = self._lost
        self.protocol = inner
        self.connects += 1
        self.log.info("connected to Redis at {url} (connection {n})", url=_redacted(self.url), n=self.connects)

    def _lost(self, protocol: RedisProtocol, reason: Failure) -> None:
        if self.protocol is protocol:
            self.protocol = None
            self.log.warn("lost Redis connection: {why}; reconnecting", why=reason.getErrorMessage())
            if self._on_lost is not None:
                self._on_lost()

    def _conn(self) -> RedisProtocol:
        if self.protocol is None:
            raise NotConnected("not connected to Redis (reconnecting)")
        return self.protocol

    def execute(self, *command: Any) -> defer.Deferred[Any]:
        return defer.maybeDeferred(lambda: self._conn().execute(*command))

    def pipeline(self, commands: Sequence[Command]) -> defer.Deferred[list[Any]]:
        return defer.maybeDeferred(lambda: self._conn().pipeline(commands))

    def transaction(self, commands: Sequence[Command]) -> defer.Deferred[list[Any]]:
        return defer.maybeDeferred(lambda: self._conn().transaction(commands))


class FatalRedisError(Exception):
    """Redis is reachable but unusable as configured (e.g. CONFIG SET refused): stop, say what to do."""


def _redacted(url: str) -> str:
    """A URL fit for a log line: never a password (DESIGN.md §8)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
