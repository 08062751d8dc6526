"""The probe runner: polls a module's source, batches, signs and sends frames over UDP or TCP.

TCP: every batch goes to the on-disk spool first and leaves it only when the server acknowledges it
(spec/wire.md), so a server or network outage, or a restart of the probe, loses nothing and — the
source's resume token being stored with the batches — sends nothing twice.
UDP: one frame per datagram, batched to fit; loss is counted by the server from sequence gaps.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, task
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from wiredraw.core import wire
from wiredraw.core.batching import Batcher
from wiredraw.core.module import Module, Source
from wiredraw.probes.spool import Spool, SpoolEntry
from zope.interface import implementer

# Records read per tick: batch_records * POLL_BATCHES. Short ticks let acks and sends interleave with parsing.
POLL_BATCHES = 2


@dataclass
class ProbeOptions:
    host: str
    port: int
    probe_id: str
    key: bytes
    transport: str = "tcp"
    state_dir: Path = Path(".")
    batch_records: int = 500
    max_datagram: int | None = None  # None: 1200 bytes on a real network, 60000 on loopback
    poll_interval: float = 0.05
    spool_max_bytes: int = 256 << 20
    max_in_flight: int = 256
    progress_interval: float = 2.0
    fsync: bool = True


def is_loopback(host: str) -> bool:
    try:
        return all(str(ai[4][0]).startswith("127.") or str(ai[4][0]) == "::1"
                   for ai in socket.getaddrinfo(host, None))
    except OSError:
        return False


class ClientState(Enum):
    CONNECTING = "connecting"
    AWAIT_CHALLENGE = "await_challenge"
    AWAIT_WELCOME = "await_welcome"
    STREAMING = "streaming"
    CLOSED = "closed"


@implementer(IPushProducer)
class ProbeClientProtocol(Protocol):
    """Probe side of the TCP session (spec/wire.md): hello → challenge → auth → welcome → frames/acks."""

    log = Logger()
    transport: Any  # set by the reactor

    def __init__(self, runner: ProbeRunner):
        self.runner = runner
        self.state = ClientState.CONNECTING
        self.decoder = wire.StreamDecoder(1 << 20)
        self.client_nonce = os.urandom(32)
        self.sent_upto = 0
        self.in_flight = 0
        self.paused = False

    def connectionMade(self) -> None:
        # The runner is this connection's producer: while the socket's send buffer is full it neither
        # sends more batches nor reads its source, so parsing and sending overlap instead of the parser
        # running far ahead of a starved socket (bench/ingest.py showed that).
        self.paused = False
        self.transport.registerProducer(self, True)
        self.state = ClientState.AWAIT_CHALLENGE
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
        self.state = ClientState.CLOSED
        if self.runner.connection is self:
            self.runner.connection = None

    def dataReceived(self, data: bytes) -> None:
        try:
            for payload in self.decoder.feed(data):
                self._control(*wire.decode_control(payload))
        except wire.WireError as exc:
            self.runner.note(f"protocol error from server: {exc}")
            self.transport.loseConnection()

    def _control(self, kind: str, fields: list[Any]) -> None:
        r = self.runner
        if kind == "error":
            reason, text = fields
            r.note(f"server closed the session: {reason}: {text}")
            self.transport.loseConnection()
        elif self.state is ClientState.AWAIT_CHALLENGE and kind == "challenge":
            server_nonce, proof = fields
            expected = wire.server_proof(r.opts.key, self.client_nonce, server_nonce, r.opts.probe_id)
            if not wire.proof_matches(expected, proof):
                r.note("the server could not prove it holds this probe's key (wrong key file, unknown probe "
                       "id, or not the server you think): disconnecting, keeping the spool")
                self._send(wire.encode_control("error", "server_auth_failed", "server proof did not match"))
                self.transport.loseConnection()
                return
            self.state = ClientState.AWAIT_WELCOME
            self._send(wire.encode_control("auth", wire.probe_proof(r.opts.key, self.client_nonce, server_nonce,
                                                                     r.opts.probe_id)))
        elif self.state is ClientState.AWAIT_WELCOME and kind == "welcome":
            self.state = ClientState.STREAMING
            r.connection = self
            r.connected_once = True
            self.pump()
        elif self.state is ClientState.STREAMING and kind == "ack":
            (seq,) = fields
            r.acked(seq)
            self.in_flight = r.spool.count_upto(self.sent_upto)
            self.pump()
        elif self.state is ClientState.STREAMING and kind == "reject":
            seq, reason = fields
            r.rejected(seq, reason)
            self.in_flight = r.spool.count_upto(self.sent_upto)
            self.pump()
        else:
            r.note(f"unexpected {kind!r} from server in state {self.state.value}")
            self.transport.loseConnection()

    def pump(self) -> None:
        """Send spooled batches not yet sent on this connection, re-signed now, within the window."""
        r = self.runner
        if self.state is not ClientState.STREAMING:
            return
        for seq in r.spool.seqs_after(self.sent_upto, r.opts.max_in_flight - self.in_flight):
            entry = r.spool.read(seq)
            self._send(r.sign(entry.seq, entry.module_id, entry.msg_type, entry.body))
            self.sent_upto = seq
            self.in_flight += 1
            r.counts["frames_sent"] += 1
            if self.paused:
                break


class UDPSender(DatagramProtocol):
    transport: Any  # set by the reactor

    def __init__(self, address: tuple[str, int]):
        self.address = address
        self.refused = 0

    def startProtocol(self) -> None:
        self.transport.connect(*self.address)

    def connectionRefused(self) -> None:
        self.refused += 1


class ProbeRunner:
    """Runs one module's source for one probe until stopped (or until a finite source is done)."""

    log = Logger()

    def __init__(self, reactor: Any, module: Module, source: Source, opts: ProbeOptions,
                 out: Any = None, clock: Callable[[], float] = time.time):
        self.reactor, self.module, self.source, self.opts = reactor, module, source, opts
        self.out = out if out is not None else sys.stderr
        self.clock = clock
        loop = is_loopback(opts.host)
        max_frame = opts.max_datagram or (60000 if loop else 1200)
        if opts.transport == "tcp":
            max_frame = wire.DEFAULT_LIMITS.max_frame_bytes
        self.batcher = Batcher(opts.batch_records, max_frame - wire.MAX_ENVELOPE_BYTES, module.spec.bin_as_str)
        opts.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state_file = opts.state_dir / "probe-state.json"
        self.spool = Spool(opts.state_dir / "spool", opts.spool_max_bytes, fsync=opts.fsync)
        self.connection: ProbeClientProtocol | None = None
        self.connected_once = False
        self.done: defer.Deferred[int] = defer.Deferred()
        self.counts = {"records_read": 0, "records_sent": 0, "records_acked": 0, "records_rejected": 0,
                       "frames_sent": 0, "frames_rejected": 0}
        self._last_note = ""
        self._again: Any = None
        self.loop = task.LoopingCall(self.tick)
        self.loop.clock = reactor
        self.progress = task.LoopingCall(self.report)
        self.progress.clock = reactor
        self._started = clock()
        self._restore()

    # -- state ----------------------------------------------------------------------------------
    def _restore(self) -> None:
        saved: dict[str, Any] = {}
        try:
            saved = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            pass
        source_state = saved.get("source_state")
        # Batches of one poll are all spooled before any is sent, and only the last carries the
        # source's resume token: trailing entries without one come from a poll cut short by a crash,
        # were never sent, and will be read again from the source.
        for seq in reversed(self.spool.seqs()):
            entry = self.spool.read(seq)
            if entry.source_state is not None:
                source_state = entry.source_state
                break
            self.spool.remove(seq)
        last = self.spool.seqs()[-1] if len(self.spool) else 0
        # The sequence number survives restarts; starting no lower than the clock in µs keeps it
        # increasing even when the state file is lost (spec/wire.md).
        self.next_seq = max(int(saved.get("next_seq", 1)), last + 1, int(self.clock() * 1_000_000))
        if source_state is not None:
            self.source.restore(source_state)

    def _save_state(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"next_seq": self.next_seq, "source_state": self.source.state()}))
        os.replace(tmp, self.state_file)

    # -- frames ---------------------------------------------------------------------------------
    def sign(self, seq: int, module_id: int, msg_type: str, body: bytes) -> bytes:
        return wire.encode_frame(self.opts.key, module_id, msg_type, self.opts.probe_id, seq, self.clock(), body)

    def acked(self, seq: int) -> None:
        self.counts["records_acked"] += self.spool.remove_upto(seq)

    def rejected(self, seq: int, reason: str) -> None:
        self.counts["frames_rejected"] += 1
        try:
            self.counts["records_rejected"] += self.spool.read(seq).records
        except Exception:
            pass
        self.spool.remove(seq)
        self.note(f"server rejected batch {seq}: {reason} (dropped)")

    def note(self, text: str) -> None:
        if text != self._last_note:
            self._last_note = text
            print(f"wiredraw probe {self.opts.probe_id}: {text}", file=self.out, flush=True)

    # -- running --------------------------------------------------------------------------------
    def start(self) -> defer.Deferred[int]:
        o = self.opts
        if o.transport == "tcp":
            endpoint = HostnameEndpoint(self.reactor, o.host, o.port, timeout=10)
            factory = Factory.forProtocol(lambda: ProbeClientProtocol(self))
            self.service = ClientService(endpoint, factory, clock=self.reactor,
                                         retryPolicy=backoffPolicy(initialDelay=0.1, maxDelay=5.0))
            self.service.startService()
        else:
            addr = socket.getaddrinfo(o.host, o.port, type=socket.SOCK_DGRAM)[0][4]
            self.udp = UDPSender((str(addr[0]), int(addr[1])))
            self.udp_port = self.reactor.listenUDP(0, self.udp)
        self.loop.start(o.poll_interval)
        if o.progress_interval > 0:
            self.progress.start(o.progress_interval, now=False)
        return self.done

    def tick(self) -> None:
        o = self.opts
        if o.transport == "tcp" and self.spool.full():
            self.note(f"spool full ({self.spool.bytes >> 20} MiB unacknowledged): waiting for the server")
            return
        if o.transport == "tcp" and self.connection is not None and self.connection.paused:
            return  # the socket is full: resumeProducing kicks us again
        wanted = o.batch_records * POLL_BATCHES
        messages = self.source.poll(wanted)
        if len(messages) >= wanted:
            # The source has more ready now: poll again at once instead of at the next interval, so
            # a fast source (a replay) is not paced by the poll interval. Reactor turns in between
            # keep acks and the network flowing.
            self.kick()
        if messages:
            self.counts["records_read"] += len(messages)
            batches = self.batcher.batches(messages)
            state = self.source.state()
            mid = self.module.spec.id
            for i, (mtype, body, n) in enumerate(batches):
                seq = self.next_seq
                self.next_seq += 1
                self.counts["records_sent"] += n
                if o.transport == "tcp":
                    self.spool.append(SpoolEntry(seq, mid, mtype, body, state if i == len(batches) - 1 else None, n))
                else:
                    self.udp.transport.write(self.sign(seq, mid, mtype, body))
                    self.counts["frames_sent"] += 1
            self._save_state()
            if o.transport == "tcp" and self.connection is not None:
                self.connection.pump()
        if self.source.finished() and (o.transport == "udp" or len(self.spool) == 0):
            self.stop()

    def kick(self) -> None:
        """Poll again on the next reactor turn (the source has more, or the send buffer drained)."""
        if self._again is None and self.loop.running:
            self._again = self.reactor.callLater(0, self._tick_again)

    def _tick_again(self) -> None:
        self._again = None
        if self.loop.running:
            self.tick()

    def report(self) -> None:
        c = self.counts
        progress = getattr(self.source, "progress", None)
        if callable(progress):  # a finite source (a replay): a bar, with how far and how fast
            done, total = progress()
            elapsed = max(self.clock() - self._started, 1e-9)
            frac = done / total if total else 1.0
            bar = "#" * int(frac * 30) + "-" * (30 - int(frac * 30))
            eta = f", ~{(elapsed / frac - elapsed):.0f} s left" if 0 < frac < 1 else ""
            stored = f", {c['records_acked']:,} stored" if self.opts.transport == "tcp" else ""
            line = (f"[{bar}] {frac:6.1%} {c['records_read']:,} records ({c['records_read'] / elapsed:,.0f}/s)"
                    f"{stored}{eta}")
            print(f"wiredraw probe {self.opts.probe_id}: {line}", file=self.out, flush=True)
            return
        if self.opts.transport == "tcp":
            link = "connected" if self.connection is not None else "reconnecting"
            line = (f"{c['records_read']:,} records read, {c['records_acked']:,} stored, "
                    f"{self.spool.records:,} waiting in spool ({len(self.spool)} batches), {link}")
        else:
            line = f"{c['records_read']:,} records read, {c['records_sent']:,} sent over UDP"
        print(f"wiredraw probe {self.opts.probe_id}: {line}", file=self.out, flush=True)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counts)
        source_summary = getattr(self.source, "summary", None)
        if callable(source_summary):  # e.g. bad lines, files: the source's own account
            out.update({f"source_{k}": v for k, v in source_summary().items()})
        out["records_too_big"] = self.batcher.too_big
        out["seconds"] = round(self.clock() - self._started, 3)
        out["spooled"] = self.spool.records
        return out

    @defer.inlineCallbacks
    def drain(self, timeout: float = 10.0) -> Any:
        """Stop reading the source, wait (up to ``timeout``) until the spool is acknowledged, then stop."""
        if self.loop.running:
            self.loop.stop()
        deadline = self.clock() + timeout
        while self.opts.transport == "tcp" and len(self.spool) and self.clock() < deadline:
            yield task.deferLater(self.reactor, 0.05, lambda: None)
        return (yield self.stop())

    def stop(self) -> defer.Deferred[int]:
        if self.done.called:
            return self.done
        if self.loop.running:
            self.loop.stop()
        if self._again is not None and self._again.active():
            self._again.cancel()
        if self.progress.running:
            self.progress.stop()
        self._save_state()
        self.source.close()
        stopping = []
        if self.opts.transport == "tcp":
            stopping.append(self.service.stopService())
        else:
            stopping.append(defer.maybeDeferred(self.udp_port.stopListening))
        d = defer.gatherResults(stopping)
        d.addBoth(lambda _: self.done.callback(0))
        return self.done
