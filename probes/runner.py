"""The probe runner: polls a module's source, batches, signs and sends frames over UDP or TCP.

TCP: every batch goes to the on-disk spool first and leaves it only when the server acknowledges it
(spec/wire.md), so a server or network outage, or a restart of the probe, loses nothing and — the
source's resume token being stored with the batches — sends nothing twice.
UDP: one frame per datagram, batched to fit; loss is counted by the server from sequence gaps.
How each is done lives in ``wiredraw.probes.transport``; the runner holds one and does not ask which.

The runner reports through ``twisted.logger`` (events with named fields, ``probe_id`` in each);
``ProbeLineObserver`` prints them as the lines a person reads, ``wiredraw probe <id>: ...``.

A probe never hangs silently. It stops by itself (:attr:`ProbeRunner.done` fires with 0) once a finite source
is ``finished()`` and nothing is left in flight, even when there was nothing to send at all. While it waits —
for the server to accept the connection, for acknowledgements of its spool (the transport's ``waiting()``),
for the files it follows to appear (the source's optional ``waiting()``) — it says what it waits for every
``wait_report`` seconds (a warning, so ``--quiet``, which drops progress lines, keeps them); after ``give_up``
seconds of one wait it stops with :data:`EXIT_GAVE_UP` and an error naming what it waited for and what is
left unsent (the spool is kept for the next run). A tick that raises stops it with 1 and the error.

A source's ``restore`` raising ValueError means the saved token is not for this source (a replay of another
set of files): the runner says so with the error's words, ``...: starting fresh``, and starts from the
beginning.
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
from twisted.python.failure import Failure
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

__all__ = ["EXIT_GAVE_UP", "POLL_BATCHES", "ClientState", "ProbeClientProtocol",
           "ProbeLineObserver", "ProbeOptions", "ProbeRunner", "is_finite", "is_loopback"]

# Records read per tick: batch_records * POLL_BATCHES. Short ticks let acks and sends interleave with parsing.
POLL_BATCHES = 2
WAIT_CHECK = 0.5  # seconds between looks at whether the probe waits (and for how long)
WAIT_FIRST = 2.0  # a wait this long is said (shorter ones are the ordinary pauses of a connection)
EXIT_GAVE_UP = 3  # the exit status of a probe that gave up waiting


def is_finite(source: Source) -> bool:
    """Whether ``source`` ends by itself (a replay): it reports ``progress()``, as the progress bar expects."""
    return callable(getattr(source, "progress", None))


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
    wait_report: float = 5.0  # seconds between the lines saying what the probe waits for
    give_up: float = 0.0  # stop (EXIT_GAVE_UP) after waiting this long for one thing; 0: wait for ever


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
        self._stopping = False
        self.counts = {"records_read": 0, "records_sent": 0, "records_acked": 0, "records_rejected": 0,
                       "frames_sent": 0, "frames_rejected": 0}
        self._last_note = ""
        self._again: Any = None
        self.loop = task.LoopingCall(self.tick)
        self.loop.clock = reactor
        self.progress = task.LoopingCall(self.report)
        self.progress.clock = reactor
        self.watcher = task.LoopingCall(self.watch)
        self.watcher.clock = reactor
        self._wait_since: float | None = None  # when the current wait began
        self._wait_said: float | None = None  # when it was last said (None: not yet)
        self.resumed = False  # a saved resume token was restored
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
            try:
                self.source.restore(source_state)
                self.resumed = True
                self._emit(LogLevel.info, "resuming where the last run stopped (state in {state_dir})",
                           state_dir=str(self.opts.state_dir))
            except ValueError as exc:  # a token for another source (Source.restore's contract, module doc)
                self._emit(LogLevel.warn, "{reason}: starting fresh", reason=str(exc))

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
        self.loop.start(o.poll_interval).addErrback(self._crashed)
        if self.done.called:  # the first tick found nothing to send and stopped: start nothing more
            return self.done
        if o.progress_interval > 0:
            self.progress.start(o.progress_interval, now=False).addErrback(self._crashed)
        self.watcher.start(WAIT_CHECK, now=True).addErrback(self._crashed)  # a wait counts from the start
        return self.done

    def _crashed(self, failure: Failure) -> None:
        """A tick (or report) raised: say so and stop, rather than sit in the reactor doing nothing."""
        kind = failure.type.__name__ if isinstance(failure.type, type) else str(failure.type)
        self._emit(LogLevel.error, "stopped by an error: {error}", error=f"{kind}: {failure.getErrorMessage()}",
                   log_failure=failure)
        self.stop(1)

    # -- waiting --------------------------------------------------------------------------------
    def waiting_for(self) -> tuple[str, bool] | None:
        """What the probe waits for now, in words, and whether it is the server (the transport's account comes
        first, then the source's); None when it waits for nothing."""
        what = self.transport.waiting()
        if what is not None:
            return what, True
        source_waiting = getattr(self.source, "waiting", None)  # optional: e.g. files not there yet
        what = source_waiting() if callable(source_waiting) else None
        return (what, False) if what is not None else None

    def watch(self) -> None:
        """Every WAIT_CHECK: say what the probe waits for (every ``wait_report`` s), give up after ``give_up``."""
        o = self.opts
        waiting = self.waiting_for()
        now = self.clock()
        if waiting is None:
            if self._wait_said is not None and self._wait_since is not None:
                self._emit(LogLevel.warn, "no longer waiting (after {seconds:.0f} s)", seconds=now - self._wait_since)
            self._wait_since = self._wait_said = None
            return
        what, on_server = waiting
        if self._wait_since is None:
            self._wait_since = now
        waited = now - self._wait_since
        if o.give_up > 0 and waited >= o.give_up:
            self._emit(LogLevel.error, "gave up after {seconds:.0f} s waiting for {what}: {unsent}",
                       seconds=waited, what=what, unsent=self.transport.unsent())
            self.stop(EXIT_GAVE_UP)
            return
        due = self._wait_said is None or now - self._wait_said >= o.wait_report
        if waited >= min(WAIT_FIRST, o.wait_report) and due:
            self._wait_said = now
            fmt = "waiting for {what}"
            # what is held for the server, when the wait is the server's or something is held
            left = self.transport.left() if on_server or self.transport.in_flight() else ""
            if left:
                fmt += ", {left}"
            fmt += ": {seconds:.0f} s so far"
            if o.give_up > 0:
                fmt += ", giving up in {give_up_in:.0f} s"
            self._emit(LogLevel.warn, fmt, what=what, seconds=waited, left=left, give_up_in=o.give_up - waited)

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
            if self.resumed and not self.counts["records_read"] and not self.counts["frames_sent"]:
                self._emit(LogLevel.info, "nothing was left to send: the last run read this source to its end "
                                          "(remove {state_dir} to send it all again)",
                           state_dir=str(self.opts.state_dir))
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
        if self._wait_said is not None:
            return  # the waiting lines say what there is to say
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

    def stop(self, code: int = 0) -> defer.Deferred[int]:
        """Stop reading and sending (what is spooled stays for the next run); ``done`` fires with ``code``."""
        if self.done.called or self._stopping:
            return self.done
        self._stopping = True
        for loop in (self.loop, self.progress, self.watcher):
            if loop.running:
                loop.stop()
        if self._again is not None and self._again.active():
            self._again.cancel()
        try:
            self._save_state()
            self.source.close()
        except Exception as exc:  # stop all the same: done must fire
            self._emit(LogLevel.error, "could not save the resume state: {error}", error=exc)
            code = code or 1
        d = self.transport.stop()
        d.addBoth(lambda _: self.done.callback(code))
        return self.done
