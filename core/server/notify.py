"""Keyspace notifications, Twisted-native: one dedicated, reconnecting Redis connection in PSUBSCRIBE mode.

A connection in subscribe mode can run nothing else, so this is not the server's command client. Each
``(key, event)`` goes to ``on_event``; ``on_ready`` fires each time the subscription is (re)established: events
published while it was down are lost for good (Redis keeps none), so the owner recomputes what it shows then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from wiredraw.core.server.redis_client import endpoint_for_url


class _SubscriberProtocol(Protocol):
    transport: Any
    owner: KeyspaceSubscriber

    def connectionMade(self) -> None:
        self._reader = hiredis.Reader()
        self._confirmed = 0
        owner = self.owner
        commands: list[tuple[Any, ...]] = []
        s = owner.settings
        if s.get("password"):
            commands.append(("AUTH", s["username"], s["password"]) if s.get("username") else ("AUTH", s["password"]))
        self._preamble = len(commands)
        commands.append(("PSUBSCRIBE", *owner.channel_patterns))
        self.transport.write(b"".join(hiredis.pack_command(c) for c in commands))

    def dataReceived(self, data: bytes) -> None:
        self._reader.feed(data)
        owner = self.owner
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError:
                self.transport.abortConnection()
                return
            if reply is False:
                return
            if isinstance(reply, hiredis.ReplyError):
                owner.log.error("keyspace subscription refused by Redis: {why}", why=str(reply))
                self.transport.loseConnection()
                return
            if self._preamble:
                self._preamble -= 1
                continue
            kind = reply[0]
            if kind == b"pmessage":
                owner.on_event(reply[2][owner.channel_prefix_len :].decode("utf-8", "replace"), reply[3].decode())
            elif kind == b"psubscribe":
                self._confirmed += 1
                if self._confirmed == len(owner.channel_patterns):
                    owner.subscribed(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.owner.lost(self)


class KeyspaceSubscriber:
    """Subscribe to keyspace events of keys matching ``patterns`` (globs) in the URL's database."""

    log = Logger()

    def __init__(self, reactor: Any, url: str, patterns: Sequence[str], *,
                 on_event: Callable[[str, str], None], on_ready: Callable[[], None]) -> None:
        endpoint, self.settings = endpoint_for_url(reactor, url)
        db = int(self.settings.get("db") or 0)
        prefix = f"__keyspace@{db}__:"
        self.channel_prefix_len = len(prefix)
        self.channel_patterns = [prefix + p for p in patterns]
        self.on_event, self.on_ready = on_event, on_ready
        self.protocol: _SubscriberProtocol | None = None
        self.subscriptions = 0  # how many times the subscription was established
        factory = Factory.forProtocol(_SubscriberProtocol)
        orig = factory.buildProtocol

        def build(addr: Any) -> Any:
            p = orig(addr)
            assert p is not None
            p.owner = self
            return p

        factory.buildProtocol = build  # type: ignore[method-assign]
        self.service = ClientService(endpoint, factory, clock=reactor,
                                     retryPolicy=backoffPolicy(initialDelay=0.05, maxDelay=5.0, factor=2.0))

    def subscribed(self, protocol: _SubscriberProtocol) -> None:
        self.protocol = protocol
        self.subscriptions += 1
        if self.subscriptions > 1:
            self.log.info("keyspace subscription restored (events while it was down are recovered by a full graph)")
        self.on_ready()

    def lost(self, protocol: _SubscriberProtocol) -> None:
        if self.protocol is protocol:
            self.protocol = None
            self.log.warn("keyspace subscription lost; reconnecting")
