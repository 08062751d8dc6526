"""The server's ingest path, independent of transport: verify, check, decode, hand to the module,
write in one round trip together with the probe's replay window (so Redis always holds exactly the
windows of what it stores, and a reload after a reconnect can never accept a stored frame twice).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from wiredraw.core import wire
from wiredraw.core.module import Body, IngestContext, IngestCounts, WriteBatch
from wiredraw.core.plugins import ModuleSet

REPLAY_KEY = "wd:core:replay"  # hash: probe id -> packed replay window
PROBES_KEY = "wd:core:probes"  # hash: probe id -> last time a frame of it was stored

# Reasons the server adds to the wire protocol's own (REASONS in wire.py).
UNAVAILABLE = "unavailable"  # Redis is down: nothing accepted until it is back
WRONG_PROBE = "probe_mismatch"  # a frame on a TCP connection authenticated as another probe
WRITE_ERROR = "write_error"  # Redis refused the module's commands


@dataclass(frozen=True)
class Outcome:
    """What became of one frame. ``stored`` fires once it is in Redis (or, for a duplicate of a
    stored frame, once every earlier write has completed); it fails if the write failed."""

    seq: int
    reason: str | None = None  # None: accepted or duplicate
    duplicate: bool = False
    stored: defer.Deferred[Any] | None = None


class Stats:
    """Counters, not a log line per record (STYLE.md). Served as JSON on /stats."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.records_rejected: Counter[str] = Counter()
        self.gauges: dict[str, Callable[[], Any]] = {}
        self._log_state: dict[str, tuple[float, int]] = {}

    def warn_limited(self, log: Logger, key: str, now: float, fmt: str, every: float = 10.0, **fields: Any) -> None:
        """One log line per ``key`` per ``every`` seconds, with how many were held back: bad input from a
        stranger can fill the counters, never the log."""
        last, held = self._log_state.get(key, (float("-inf"), 0))
        if now - last >= every:
            log.warn(fmt + (" ({held} more like it not logged)" if held else ""), held=held, **fields)
            self._log_state[key] = (now, 0)
        else:
            self._log_state[key] = (last, held + 1)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: self.counts.get(k, 0) for k in (
            "frames_received", "frames_accepted", "frames_duplicate", "frames_rejected", "bytes_received",
            "records_received", "records_written", "records_repeated", "records_rejected", "write_batches",
            "write_failures", "udp_seq_gaps", "acks_sent", "collector_uploads")}
        out.update({k: v for k, v in self.counts.items() if k not in out})
        out["rejected"] = dict(sorted(self.rejected.items()))
        out["records_rejected_by_reason"] = dict(sorted(self.records_rejected.items()))
        for name, gauge in self.gauges.items():
            out[name] = gauge()
        return out


class Ingest:
    log = Logger()

    def __init__(self, modules: ModuleSet, key_for: Callable[[str], bytes | None], redis: Any,
                 clock: Any, limits: wire.Limits = wire.DEFAULT_LIMITS, stats: Stats | None = None):
        self.modules, self.key_for, self.redis, self.clock, self.limits = modules, key_for, redis, clock, limits
        self.stats = stats or Stats()
        self.windows: dict[str, wire.ReplayWindow] = {}
        self.ready = False  # True while Redis is connected and the windows are loaded

    # -- Redis connection lifecycle -------------------------------------------------------------
    @defer.inlineCallbacks
    def load_windows(self, protocol: Any) -> Any:
        """On every (re)connect: the windows are what Redis says was stored, nothing else."""
        raw = yield protocol.execute("HGETALL", REPLAY_KEY)
        windows = {}
        for i in range(0, len(raw), 2):
            probe = raw[i].decode()
            try:
                windows[probe] = wire.ReplayWindow.from_state(raw[i + 1], self.limits.replay_window)
            except wire.WireError:
                self.log.error("replay window of probe {probe} in Redis is unreadable; starting afresh",
                               probe=probe)
        self.windows = windows
        self.ready = True

    def redis_lost(self) -> None:
        self.ready = False

    # -- frames ---------------------------------------------------------------------------------
    def _reject(self, seq: int, reason: str) -> Outcome:
        self.stats.counts["frames_rejected"] += 1
        self.stats.rejected[reason] += 1
        return Outcome(seq, reason)

    def receive(self, data: bytes, *, transport: str, probe_id: str | None = None) -> Outcome:
        """Take one frame. Never raises for bad input: the outcome names the reason."""
        st = self.stats.counts
        st["frames_received"] += 1
        st["bytes_received"] += len(data)
        try:
            frame = wire.decode_frame(data, self.key_for, self.limits)
        except wire.WireError as exc:
            return self._reject(0, exc.reason)
        if probe_id is not None and frame.probe_id != probe_id:
            return self._reject(frame.seq, WRONG_PROBE)
        if not self.ready:
            return self._reject(frame.seq, UNAVAILABLE)
        # The order of spec/wire.md §9: skew, replay (marks the seq), module, message type, body.
        try:
            wire.check_skew(frame.ts, self.clock.seconds(), self.limits.max_skew_seconds)
        except wire.WireError as exc:
            return self._reject(frame.seq, exc.reason)
        window = self.windows.get(frame.probe_id)
        if window is None:
            window = self.windows[frame.probe_id] = wire.ReplayWindow(self.limits.replay_window)
        previous_top = window.top
        try:
            window.accept(frame.seq)
        except wire.WireError as exc:
            if transport == "tcp":
                # A resend of a frame that was stored before an outage: acknowledge it once every
                # earlier write has completed (replies come in order), so the probe clears its spool.
                st["frames_duplicate"] += 1
                return Outcome(frame.seq, None, True, self.redis.execute("PING"))
            return self._reject(frame.seq, exc.reason)
        # From here on a rejected frame has used up its seq (the probe is told to drop it).
        loaded = self.modules.get(frame.module_id)
        if loaded is None:
            return self._reject(frame.seq, "unknown_module")
        mspec = loaded.spec.messages.get(frame.msg_type)
        if mspec is None:
            return self._reject(frame.seq, "unknown_message")
        if transport == "udp" and previous_top and frame.seq > previous_top + 1:
            st["udp_seq_gaps"] += frame.seq - previous_top - 1
        try:
            batch = self.prepare(loaded, frame.probe_id, frame.msg_type, frame.body)
        except Refused as exc:
            return self._reject(frame.seq, exc.reason)
        # The replay window is written with the records, in one transaction (module docstring).
        batch.add("HSET", REPLAY_KEY, frame.probe_id, window.to_state())
        batch.add("HSET", PROBES_KEY, frame.probe_id, repr(self.clock.seconds()))
        st["frames_accepted"] += 1

        def failed(failure: Any) -> Any:
            # Not stored: let a resend through. (After a lost connection the windows are reloaded
            # from Redis anyway, which is the truth about what was stored.)
            window.forget(frame.seq)
            return failure

        return Outcome(frame.seq, None, False, self.commit(batch).addErrback(failed))

    # -- the write path shared by probes and the HTTP collector ----------------------------------
    def prepare(self, loaded: Any, probe_id: str, msg_type: str, packed: bytes) -> WriteBatch:
        """A module's commands for one packed body (its write path, :meth:`Module.write`). Raises Refused (bad_body
        when the body does not decode, write_error)."""
        slug = loaded.spec.slug
        ctx = IngestContext(probe_id, msg_type, self.clock.seconds())
        batch = WriteBatch(loaded.spec, msg_type)
        # The module reads body.packed (e.g. hands it to Lua; counts come back in the reply) or body.messages()
        # (decoded and validated here, the records and rejects counted on body.counts).
        body = Body(packed, loaded.spec.messages[msg_type], self.limits)
        try:
            loaded.module.write(ctx, body, batch)
            batch.counts.add(body.counts)
        except wire.WireError as exc:
            raise Refused(exc.reason) from exc
        except Exception as exc:  # a module bug must not take the server down: count, log, drop
            self.log.failure("module {slug} failed on a {kind} batch", slug=slug, kind=msg_type)
            self.stats.records_rejected[f"{slug}.{msg_type}: ingest error {type(exc).__name__}"] += 1
            raise Refused(WRITE_ERROR) from exc
        return batch

    def commit(self, batch: WriteBatch) -> defer.Deferred[IngestCounts]:
        """Send the batch in one transaction; fires with the module's counts (also added to /stats)."""
        st = self.stats.counts
        where = f"{batch.spec.slug}.{batch.message_type}"

        def written(replies: list[Any]) -> IngestCounts:
            total = IngestCounts().add(batch.counts)
            for index, handler in batch.reply_handlers:
                total.add(handler(replies[index]))
            for why, n in total.rejected.items():
                self.stats.records_rejected[f"{where}: {why}"] += n
            st["records_received"] += total.records
            st["records_written"] += total.written
            st["records_repeated"] += total.repeats
            st["records_rejected"] += sum(total.rejected.values())
            st["write_batches"] += 1
            return total

        def failed(failure: Any) -> Any:
            st["write_failures"] += 1
            return failure

        return self.redis.transaction(batch.commands).addCallbacks(written, failed)


class Refused(Exception):
    """A body the server will not store, with the reason it is counted under."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
