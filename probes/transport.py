"""How batches leave the probe: one class per transport behind one small interface (spec/wire.md).

The runner holds one ``ProbeTransport`` and never asks which: it ``start``s it, asks whether it is
``ready`` for more, hands it each batch (``send``) and then ``flush``es, waits until nothing is
``in_flight``, and ``stop``s it. Progress lines take their transport-specific words from it, and so do
the lines saying what the probe waits for (``waiting``, ``left``, ``unsent``).

TCP: every batch goes to the on-disk spool first and leaves it only when the server acknowledges it, so
an outage or a restart loses nothing. UDP: one signed frame per datagram, sent at once; nothing is
acknowledged (the server counts loss from sequence gaps).
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, error
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from wiredraw.core import wire
from wiredraw.probes.spool import SpoolEntry
from zope.interface import implementer

if TYPE_CHECKING:
    from wiredraw.probes.runner import ProbeRunner

# Connected, with batches sent: this long without an acknowledgement and the probe counts as waiting for one.
ACK_PATIENCE = 1.0


def is_loopback(host: str) -> bool:
    try:
        return all(str(ai[4][0]).startswith("127.") or str(ai[4][0]) == "::1"
                   for ai in socket.getaddrinfo(host, None))
    except OSError:
        return False


class ProbeTransport(ABC):
    """One way of getting the runner's batches to the server."""

    name: ClassVar[str]
    #: appended to a replay's progress bar: what the server has acknowledged (fields: the runner's counts)
    stored_format: ClassVar[str] = ""

    def __init__(self, runner: ProbeRunner):
        self.runner = runner

    @property
    @abstractmethod
    def max_frame(self) -> int:
        """The largest frame this transport carries, in bytes."""

    @abstractmethod
    def start(self) -> None:
        """Connect (or open the socket); called once, when the runner starts."""

    def ready(self) -> bool:
        """Whether the runner may read more from its source now."""
        return True

    @abstractmethod
    def send(self, entry: SpoolEntry) -> None:
        """Take one batch, its sequence number assigned."""

    def flush(self) -> None:
        """Called after each poll's batches were handed over and the runner's state saved."""
        return None  # a transport that sends in ``send`` has nothing left to do

    @abstractmethod
    def in_flight(self) -> int:
        """Batches handed over but not yet acknowledged (the runner ends, and drains, only at 0)."""

    @abstractmethod
    def status(self) -> tuple[str, dict[str, Any]]:
        """The progress line of an endless source: a log format and its fields (besides the counts)."""

    def waiting(self) -> str | None:
        """What the probe waits for on this transport's account, in words (``the server at H:P (connection
        refused)``), or None when it waits for nothing."""
        return None

    def left(self) -> str:
        """What a waiting line adds: what is held for the server (``12 batches (5,830 records) spooled``)."""
        return ""

    def unsent(self) -> str:
        """What giving up leaves behind, in words, for the error line."""
        return "nothing was left unsent"

    @abstractmethod
    def stop(self) -> defer.Deferred[Any]:
        """Disconnect; fires when done."""


class ClientState(Enum):
    CONNECTING = "connecting"
    AWAIT_CHALLENGE = "await_challenge"
    AWAIT_WELCOME = "await_welcome"
    STREAMING = "streaming"
    CLOSED = "closed"


@implementer(IPushProducer)
class ProbeClientProtocol(Protocol):
    """Probe side of the TCP session (spec/wire.md): hello → challenge → auth → welcome → frames/acks."""

    transport: Any  # set by the reactor

    def __init__(self, runner: ProbeRunner):
        link = runner.transport
        if not isinstance(link, TcpTransport):
            raise TypeError(f"a TCP session needs a runner on TCP, not {link.name}")
        self.runner = runner
        self.link = link
        self.state = ClientState.CONNECTING
        self.decoder = wire.StreamDecoder(1 << 20)
        self.client_nonce = os.urandom(32)
        self.sent_upto = 0
        self.in_flight = 0
        self.paused = False
        self.ended: str | None = None  # why this session ends, when it is this side's or the server's word

    def connectionMade(self) -> None:
        # The runner is this connection's producer: while the socket's send buffer is full it neither
        # sends more batches nor reads its source, so parsing and sending overlap instead of the parser
        # running far ahead of a starved socket (bench/ingest.py showed that).
        self.paused = False
        self.transport.registerProducer(self, True)
        self.state = ClientState.AWAIT_CHALLENGE
        self.link.why = "connected, no answer to the handshake yet"
        self._send(wire.encode_control("hello", wire.PROTOCOL_VERSION, self.runner.opts.probe_id,
                                       self.client_nonce))

    def _send(self, payload: bytes) -> None:
        self.transport.write(wire.frame_stream(payload))

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.pump()
        self.runner.kick()

    def stopProducing(self) -> None:
        self.paused = True

    def connectionLost(self, reason: Any = None) -> None:
        streaming = self.state is ClientState.STREAMING
        self.state = ClientState.CLOSED
        if self.link.connection is self or self.link.connection is None:
            self.link.why = self.ended or ("connection lost" if streaming
                                           else "the server closed the connection during the handshake")
        if self.link.connection is self:
            self.link.connection = None

    def dataReceived(self, data: bytes) -> None:
        try:
            for payload in self.decoder.feed(data):
                self._control(*wire.decode_control(payload))
        except wire.WireError as exc:
            self.runner.note("protocol error from server: {error}", error=exc)
            self.ended = f"protocol error from the server: {exc}"
            self.transport.loseConnection()

    def _control(self, kind: str, fields: list[Any]) -> None:
        r = self.runner
        if kind == "error":
            reason, text = fields
            r.note("server closed the session: {reason}: {text}", reason=reason, text=text)
            self.ended = f"the server closed the session: {reason}: {text}"
            self.transport.loseConnection()
        elif self.state is ClientState.AWAIT_CHALLENGE and kind == "challenge":
            server_nonce, proof = fields
            expected = wire.server_proof(r.opts.key, self.client_nonce, server_nonce, r.opts.probe_id)
            if not wire.proof_matches(expected, proof):
                r.note("the server could not prove it holds this probe's key (wrong key file, unknown probe "
                       "id, or not the server you think): disconnecting, keeping the spool")
                self._send(wire.encode_control("error", "server_auth_failed", "server proof did not match"))
                self.ended = "the server could not prove it holds this probe's key"
                self.transport.loseConnection()
                return
            self.state = ClientState.AWAIT_WELCOME
            self.link.why = "connected, the server has not accepted this probe's key yet"
            self._send(wire.encode_control("auth", wire.probe_proof(r.opts.key, self.client_nonce, server_nonce,
                                                                     r.opts.probe_id)))
        elif self.state is ClientState.AWAIT_WELCOME and kind == "welcome":
            self.state = ClientState.STREAMING
            self.link.connection = self
            self.link.connected_once = True
            self.link.last_heard = r.clock()
            self.pump()
        elif self.state is ClientState.STREAMING and kind == "ack":
            (seq,) = fields
            self.link.last_heard = r.clock()
            r.acked(seq)
            self.in_flight = r.spool.count_upto(self.sent_upto)
            self.pump()
        elif self.state is ClientState.STREAMING and kind == "reject":
            seq, reason = fields
            self.link.last_heard = r.clock()
            r.rejected(seq, reason)
            self.in_flight = r.spool.count_upto(self.sent_upto)
            self.pump()
        else:
            r.note("unexpected {kind!r} from server in state {state}", kind=kind, state=self.state.value)
            self.ended = f"unexpected {kind!r} from the server"
            self.transport.loseConnection()

    def pump(self) -> None:
        """Send spooled batches not yet sent on this connection, re-signed now, within the window."""
        r = self.runner
        if self.state is not ClientState.STREAMING:
            return
        if self.in_flight == 0:  # nothing was outstanding: the wait for an acknowledgement starts now
            self.link.last_heard = r.clock()
        for seq in r.spool.seqs_after(self.sent_upto, r.opts.max_in_flight - self.in_flight):
            entry = r.spool.read(seq)
            self._send(r.sign(entry.seq, entry.module_id, entry.msg_type, entry.body))
            self.sent_upto = seq
            self.in_flight += 1
            r.counts["frames_sent"] += 1
            if self.paused:
                break


class TcpTransport(ProbeTransport):
    """Batches go to the spool; the session (reconnected with backoff) sends them until acknowledged."""

    name = "tcp"
    stored_format = ", {records_acked:,} stored"

    def __init__(self, runner: ProbeRunner):
        super().__init__(runner)
        self.connection: ProbeClientProtocol | None = None  # the session, once welcomed
        self.connected_once = False
        self.service: ClientService | None = None
        self.why = "connecting"  # while not connected: what the last attempt came to, in words
        self.last_heard = 0.0  # when the server last acknowledged (or a wait for an acknowledgement began)

    @property
    def max_frame(self) -> int:
        return wire.DEFAULT_LIMITS.max_frame_bytes

    def start(self) -> None:
        r = self.runner
        endpoint = _AttemptsEndpoint(HostnameEndpoint(r.reactor, r.opts.host, r.opts.port, timeout=10), self)
        factory = Factory.forProtocol(lambda: ProbeClientProtocol(r))
        self.service = ClientService(endpoint, factory, clock=r.reactor,
                                     retryPolicy=backoffPolicy(initialDelay=0.1, maxDelay=5.0))
        self.service.startService()

    def ready(self) -> bool:
        spool = self.runner.spool
        if spool.full():
            self.runner.note("spool full ({spool_mib} MiB unacknowledged): waiting for the server",
                             spool_mib=spool.bytes >> 20)
            return False
        # the socket is full: resumeProducing kicks the runner again
        return not (self.connection is not None and self.connection.paused)

    def send(self, entry: SpoolEntry) -> None:
        self.runner.spool.append(entry)

    def flush(self) -> None:
        if self.connection is not None:
            self.connection.pump()

    def in_flight(self) -> int:
        return len(self.runner.spool)

    def status(self) -> tuple[str, dict[str, Any]]:
        spool = self.runner.spool
        return ("{records_read:,} records read, {records_acked:,} stored, {spooled:,} waiting in spool "
                "({spooled_batches} batches), {link}",
                {"spooled": spool.records, "spooled_batches": len(spool),
                 "link": "connected" if self.connection is not None else "reconnecting"})

    def waiting(self) -> str | None:
        where = f"the server at {_address(self.runner.opts.host, self.runner.opts.port)}"
        if self.connection is None:
            return f"{where} ({self.why})"
        if len(self.runner.spool) and self.runner.clock() - self.last_heard >= ACK_PATIENCE:
            return f"{where} to acknowledge what it was sent"
        return None

    def left(self) -> str:
        spool = self.runner.spool
        return f"{_batches(len(spool), spool.records)} spooled" if len(spool) else "nothing spooled"

    def unsent(self) -> str:
        spool = self.runner.spool
        if not len(spool):
            return "nothing was left unsent"
        return f"{_batches(len(spool), spool.records)} left unsent, kept in the spool ({spool.dir}) for the next run"

    def stop(self) -> defer.Deferred[Any]:
        if self.service is None:
            return defer.succeed(None)
        return defer.maybeDeferred(self.service.stopService)


def _batches(batches: int, records: int) -> str:
    return f"{batches:,} batch{'es' if batches != 1 else ''} ({records:,} record{'s' if records != 1 else ''})"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe_connect_error(exc: BaseException) -> str:
    """A failed connection attempt in the words of a waiting line."""
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, error.TimeoutError | error.TCPTimedOutError):
        return "connection timed out"
    if isinstance(exc, error.DNSLookupError):
        return "host name not found"
    if isinstance(exc, error.NoRouteError):
        return "no route to host"
    return str(exc) or type(exc).__name__


@implementer(IStreamClientEndpoint)
class _AttemptsEndpoint:
    """An endpoint that tells the transport why each connection attempt failed (ClientService retries quietly)."""

    def __init__(self, inner: Any, link: TcpTransport):
        self.inner, self.link = inner, link

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        def failed(failure: Any) -> Any:
            self.link.why = describe_connect_error(failure.value)
            return failure

        d: defer.Deferred[Any] = self.inner.connect(factory)
        return d.addErrback(failed)


class UDPSender(DatagramProtocol):
    transport: Any  # set by the reactor

    def __init__(self, address: tuple[str, int]):
        self.address = address
        self.refused = 0

    def startProtocol(self) -> None:
        self.transport.connect(*self.address)

    def connectionRefused(self) -> None:
        self.refused += 1


class UdpTransport(ProbeTransport):
    """Each batch is signed and sent at once, one frame per datagram; nothing is spooled."""

    name = "udp"

    def __init__(self, runner: ProbeRunner):
        super().__init__(runner)
        self.sender: UDPSender | None = None
        self.port: Any = None

    @property
    def max_frame(self) -> int:
        # 1200 bytes fit any real network's MTU; loopback takes far more
        opts = self.runner.opts
        return opts.max_datagram or (60000 if is_loopback(opts.host) else 1200)

    def start(self) -> None:
        r = self.runner
        addr = socket.getaddrinfo(r.opts.host, r.opts.port, type=socket.SOCK_DGRAM)[0][4]
        self.sender = UDPSender((str(addr[0]), int(addr[1])))
        self.port = r.reactor.listenUDP(0, self.sender)

    def send(self, entry: SpoolEntry) -> None:
        assert self.sender is not None, "send before start"
        r = self.runner
        self.sender.transport.write(r.sign(entry.seq, entry.module_id, entry.msg_type, entry.body))
        r.counts["frames_sent"] += 1

    def in_flight(self) -> int:
        return 0

    def status(self) -> tuple[str, dict[str, Any]]:
        return "{records_read:,} records read, {records_sent:,} sent over UDP", {}

    def stop(self) -> defer.Deferred[Any]:
        if self.port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(self.port.stopListening)


TRANSPORTS: dict[str, type[ProbeTransport]] = {t.name: t for t in (TcpTransport, UdpTransport)}


def make_transport(runner: ProbeRunner) -> ProbeTransport:
    try:
        return TRANSPORTS[runner.opts.transport](runner)
    except KeyError:
        raise ValueError(f"unknown transport {runner.opts.transport!r} (one of {', '.join(TRANSPORTS)})") from None
