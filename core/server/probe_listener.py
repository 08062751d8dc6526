"""Probe listeners: UDP datagrams and TCP streams on the same port number (spec/wire.md)."""

from __future__ import annotations

import os
import socket
from collections import deque
from enum import Enum
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from wiredraw.core import wire
from wiredraw.core.server.ingest import UNAVAILABLE, Ingest, Outcome

HANDSHAKE_TIMEOUT = wire.HANDSHAKE_TIMEOUT
# Frames whose seq is used up: the probe is told to drop them (spec/wire.md §11.5).
REJECTED_FOR_GOOD = frozenset({"unknown_module", "unknown_message", "bad_body", "write_error"})
MAX_IN_FLIGHT = 64  # frames awaiting their write before we stop reading from the probe


class ProbeDatagramProtocol(DatagramProtocol):
    transport: Any  # set by the reactor

    def __init__(self, ingest: Ingest, rcvbuf: int = 4 << 20):
        self.ingest, self.rcvbuf = ingest, rcvbuf

    def startProtocol(self) -> None:
        # The default receive buffer drops 30-70 % of a burst (notes/perf.md): ask for up to rmem_max.
        sock = self.transport.getHandle()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        except OSError:
            pass

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        outcome = self.ingest.receive(data, transport="udp")
        if outcome.stored is not None:
            outcome.stored.addErrback(lambda _f: None)  # counted in Ingest; UDP has nobody to tell


class State(Enum):
    AWAIT_HELLO = "await_hello"
    AWAIT_AUTH = "await_auth"
    AWAIT_SETTLED = "await_settled"  # authenticated; an older session's writes are still settling
    STREAMING = "streaming"
    CLOSED = "closed"


class ProbeStreamProtocol(Protocol):
    """Server side of one probe's TCP connection: an explicit state machine (spec/wire.md)."""

    log = Logger()
    transport: Any  # set by the reactor

    def __init__(self, ingest: Ingest, clock: Any, registry: set[ProbeStreamProtocol],
                 sessions: dict[str, ProbeStreamProtocol]):
        self.ingest, self.clock, self.registry, self.sessions = ingest, clock, registry, sessions
        self.state = State.AWAIT_HELLO
        self.decoder = wire.StreamDecoder(ingest.limits.max_frame_bytes)
        self.probe_id: str | None = None
        self.key: bytes | None = None
        self.client_nonce = b""
        self.server_nonce = b""
        self.pending: deque[list[Any]] = deque()  # [seq, done?, stored deferred]
        self.paused = False
        self._timeout: Any = None

    def connectionMade(self) -> None:
        self.registry.add(self)
        self._timeout = self.clock.callLater(HANDSHAKE_TIMEOUT, self._handshake_timeout)

    def connectionLost(self, reason: Any = None) -> None:
        self.state = State.CLOSED
        self.registry.discard(self)
        if self.probe_id is not None and self.sessions.get(self.probe_id) is self:
            del self.sessions[self.probe_id]
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()

    def _handshake_timeout(self) -> None:
        if self.state in (State.AWAIT_HELLO, State.AWAIT_AUTH):
            self.ingest.stats.rejected["handshake_timeout"] += 1
            self.fail("handshake_timeout", "handshake not completed in time")

    def send_control(self, kind: str, *fields: Any) -> None:
        if self.state is not State.CLOSED:
            self.transport.write(wire.frame_stream(wire.encode_control(kind, *fields)))

    def fail(self, reason: str, text: str) -> None:
        self.send_control("error", reason, text)
        self.state = State.CLOSED
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return
        try:
            payloads = self.decoder.feed(data)
        except wire.WireError as exc:
            self.ingest.stats.counts["frames_received"] += 1
            self.ingest.stats.counts["frames_rejected"] += 1
            self.ingest.stats.rejected[exc.reason] += 1
            self.fail(exc.reason, str(exc))
            return
        for payload in payloads:
            if self.state is State.CLOSED:
                return
            try:
                self._payload(payload)
            except wire.WireError as exc:
                self.ingest.stats.rejected[f"handshake_{exc.reason}"] += 1
                self.fail(exc.reason, str(exc))

    def _payload(self, payload: bytes) -> None:
        if self.state is State.STREAMING and wire.is_frame(payload):
            self._frame(payload)
            return
        kind, fields = wire.decode_control(payload)
        if self.state is State.AWAIT_HELLO and kind == "hello":
            _version, probe_id, client_nonce = fields
            if not self.ingest.ready:
                self.fail(UNAVAILABLE, "storage is unavailable; retry later")
                return
            self.probe_id, self.client_nonce = probe_id, client_nonce
            self.key = self.ingest.key_for(probe_id)
            self.server_nonce = os.urandom(32)
            # For an unknown probe the proof is random: a stranger learns nothing from the challenge.
            proof = (wire.server_proof(self.key, client_nonce, self.server_nonce, probe_id)
                     if self.key is not None else os.urandom(32))
            self.state = State.AWAIT_AUTH
            self.send_control("challenge", self.server_nonce, proof)
        elif self.state is State.AWAIT_AUTH and kind == "auth":
            (proof,) = fields
            assert self.probe_id is not None
            expected = (wire.probe_proof(self.key, self.client_nonce, self.server_nonce, self.probe_id)
                        if self.key is not None else None)
            if expected is None or not wire.proof_matches(expected, proof):
                self.ingest.stats.rejected["auth_failed"] += 1
                self.ingest.stats.warn_limited(self.log, "auth_failed", self.clock.seconds(),
                                               "probe {probe} failed authentication from {peer}",
                                               probe=self.probe_id, peer=str(self.transport.getPeer()))
                self.fail("auth_failed", "authentication failed")
                return
            if self._timeout is not None and self._timeout.active():
                self._timeout.cancel()
            self.state = State.AWAIT_SETTLED
            # One session per probe: close an older one, and welcome this one only once the older
            # one's writes have settled, so a duplicate is never acked while its original could fail.
            older = self.sessions.get(self.probe_id)
            self.sessions[self.probe_id] = self
            writes = []
            if older is not None and older is not self:
                writes = [e[2] for e in older.pending]
                older.fail("shutdown", "a newer session of this probe replaced this one")
            settled = defer.DeferredList(writes, consumeErrors=True) if writes else defer.succeed(None)
            settled.addCallback(lambda _: self._welcome())
        elif kind == "error" and self.state is State.STREAMING:
            self.state = State.CLOSED
            self.transport.loseConnection()
        else:
            self.fail("unexpected", f"unexpected {kind!r} message in state {self.state.value}")

    def _welcome(self) -> None:
        if self.state is not State.AWAIT_SETTLED:
            return
        self.state = State.STREAMING
        window = self.ingest.windows.get(self.probe_id or "")
        self.send_control("welcome", window.top if window else 0)

    def _frame(self, payload: bytes) -> None:
        outcome: Outcome = self.ingest.receive(payload, transport="tcp", probe_id=self.probe_id)
        if outcome.reason == UNAVAILABLE:
            self.fail(UNAVAILABLE, "storage is unavailable; retry later")
            return
        if outcome.reason is not None:
            if outcome.reason in REJECTED_FOR_GOOD:
                # The seq is used up: tell the probe so it does not resend the frame forever. It
                # settles in order with the frames before it.
                self.pending.append([outcome.seq, True, defer.succeed(None)])
                self.send_control("reject", outcome.seq, outcome.reason)
                self._flush_acks()
                return
            # stale, undecodable, foreign: close; the probe keeps its spool (spec/wire.md §11.5)
            self.fail(outcome.reason, f"frame {outcome.seq} refused: {outcome.reason}")
            return
        assert outcome.stored is not None
        entry = [outcome.seq, False, outcome.stored]
        self.pending.append(entry)

        def done(_: Any) -> None:
            entry[1] = True
            self._flush_acks()

        def failed(failure: Any) -> Any:
            # The write failed: no ack. Closing makes the probe resend from its spool once we are back.
            if self.state is not State.CLOSED:
                self.fail(UNAVAILABLE, f"could not store frame {outcome.seq}: {failure.getErrorMessage()}")
            return None  # settled (a newer session of this probe waits for that)

        outcome.stored.addCallbacks(done, failed)
        if len(self.pending) >= MAX_IN_FLIGHT and not self.paused:
            self.paused = True
            self.transport.pauseProducing()

    def _flush_acks(self) -> None:
        acked = None
        while self.pending and self.pending[0][1]:
            acked = self.pending.popleft()[0]
        if acked is not None:
            self.send_control("ack", acked)
            self.ingest.stats.counts["acks_sent"] += 1
        if self.paused and len(self.pending) < MAX_IN_FLIGHT // 2:
            self.paused = False
            self.transport.resumeProducing()


class ProbeStreamFactory(Factory):
    def __init__(self, ingest: Ingest, clock: Any):
        self.ingest, self.clock = ingest, clock
        self.connections: set[ProbeStreamProtocol] = set()
        self.sessions: dict[str, ProbeStreamProtocol] = {}  # probe id -> its authenticated session

    def buildProtocol(self, addr: Any) -> ProbeStreamProtocol:
        p = ProbeStreamProtocol(self.ingest, self.clock, self.connections, self.sessions)
        p.factory = self
        return p

    def drop_all(self, reason: str, text: str) -> None:
        for conn in list(self.connections):
            conn.fail(reason, text)
