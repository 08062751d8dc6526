"""The probe runner: polls a module's source, batches, signs and sends frames over UDP or TCP.

TCP: every batch goes to the on-disk spool first and leaves it only when the server acknowledges it
(spec/wire.md), so a server or network outage, or a restart of the probe, loses nothing and — the
source's resume token being stored with the batches — sends nothing twice.
UDP: one frame per datagram, batched to fit; loss is counted by the server from sequence gaps.
How each is done lives in ``wiredraw.probes.transport``; the runner holds one and does not ask which.

The runner reports through ``twisted.logger`` (events with named fields, ``probe_id`` in each);
``ProbeLineObserver`` prints them as the lines a person reads, ``wiredraw probe <id>: ...``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from twisted.internet import defer, task
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from wiredraw.core import wire
from wiredraw.core.batching import Batcher
from wiredraw.core.module import Module, Source
from wiredraw.probes.spool import Spool, SpoolEntry
from wiredraw.probes.transport import (
    ClientState,
    ProbeClientProtocol,
    ProbeTransport,
    is_loopback,
    make_transport,
)
from zope.interface import implementer

__all__ = ["POLL_BATCHES", "ClientState", "ProbeClientProtocol", "ProbeLineObserver", "ProbeOptions", "ProbeRunner",
           "is_loopback"]

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


@implementer(ILogObserver)
class ProbeLineObserver:
    """Prints each of a runner's events as one line, ``wiredraw probe <id>: <message>``, flushed at once."""

    def __init__(self, out: IO[str]):
        self.out = out

    def __call__(self, event: dict[str, Any]) -> None:
        print(f"wiredraw probe {event.get('probe_id')}: {formatEvent(event)}", file=self.out, flush=True)


class ProbeRunner:
    """Runs one module's source for one probe until stopped (or until a finite source is done).

    ``out`` (default stderr) is where its report lines are printed; ``observer``, when given, receives
    its log events instead.
    """

    def __init__(self, reactor: Any, module: Module, source: Source, opts: ProbeOptions,
                 out: Any = None, clock: Callable[[], float] = time.time, observer: ILogObserver | None = None):
        self.reactor, self.module, self.source, self.opts = reactor, module, source, opts
        self.out = out if out is not None else sys.stderr
        self.log = Logger(namespace=__name__, source=self,
                          observer=observer if observer is not None else ProbeLineObserver(self.out))
        self.clock = clock
        self.transport: ProbeTransport = make_transport(self)
        self.batcher = Batcher(opts.batch_records, self.transport.max_frame - wire.MAX_ENVELOPE_BYTES,
                               module.spec.bin_as_str)
        opts.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state_file = opts.state_dir / "probe-state.json"
        self.spool = Spool(opts.state_dir / "spool", opts.spool_max_bytes, fsync=opts.fsync)
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
        self.note("server rejected batch {seq}: {reason} (dropped)", seq=seq, reason=reason)

    # -- reporting ------------------------------------------------------------------------------
    def _emit(self, level: LogLevel, fmt: str, **fields: Any) -> None:
        self.log.emit(level, fmt, probe_id=self.opts.probe_id, **fields)

    def note(self, fmt: str, **fields: Any) -> None:
        """Warn of something a person should know, once until something else is to be said."""
        text = formatEvent({"log_format": fmt, **fields})
        if text != self._last_note:
            self._last_note = text
            self._emit(LogLevel.warn, fmt, **fields)

    # -- running --------------------------------------------------------------------------------
    def start(self) -> defer.Deferred[int]:
        o = self.opts
        self.transport.start()
        self.loop.start(o.poll_interval)
        if o.progress_interval > 0:
            self.progress.start(o.progress_interval, now=False)
        return self.done

    def tick(self) -> None:
        o = self.opts
        if not self.transport.ready():
            return
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
                self.transport.send(SpoolEntry(seq, mid, mtype, body, state if i == len(batches) - 1 else None, n))
            self._save_state()
            self.transport.flush()
        if self.source.finished() and self.transport.in_flight() == 0:
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
            fmt = "[{bar}] {fraction:6.1%} {records_read:,} records ({records_per_second:,.0f}/s)"
            fmt += self.transport.stored_format
            fields: dict[str, Any] = {}
            if 0 < frac < 1:
                fmt += ", ~{seconds_left:.0f} s left"
                fields["seconds_left"] = elapsed / frac - elapsed
            self._emit(LogLevel.info, fmt, bar="#" * int(frac * 30) + "-" * (30 - int(frac * 30)), fraction=frac,
                       records_per_second=c["records_read"] / elapsed, **c, **fields)
            return
        fmt, fields = self.transport.status()
        self._emit(LogLevel.info, fmt, **c, **fields)

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
        while self.transport.in_flight() and self.clock() < deadline:
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
        d = self.transport.stop()
        d.addBoth(lambda _: self.done.callback(0))
        return self.done
