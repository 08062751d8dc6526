"""A probe never hangs silently: it ends when its finite source is done and nothing is in flight (even with
nothing to send), says what it waits for every few seconds (also with --quiet), gives up after --give-up with an
error naming the wait and what is left unsent, and says when a saved state is not for its source.

Driven by twisted's Clock (no sockets): the TCP transport is never started, its connection attempts are played
by hand. The same behaviour with real processes is in test_probe_processes.py."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, error
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from wiredraw.core import devtest
from wiredraw.core.plugins import load_modules
from wiredraw.probes.runner import EXIT_GAVE_UP, WAIT_CHECK, ProbeOptions, ProbeRunner
from wiredraw.probes.spool import SpoolEntry
from wiredraw.probes.transport import TcpTransport, _AttemptsEndpoint, describe_connect_error

MODULES = load_modules(extra_plugins=[("devtest", devtest)], env={})


class Lines:
    """The runner's events, as the lines a person reads."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def text(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def matching(self, part: str) -> list[str]:
        return [line for line in self.text() if part in line]


def make(tmp_path, source=None, *, started=True, **opts) -> tuple[ProbeRunner, Clock, Lines, list[int]]:
    clock = Clock()
    clock.advance(1_700_000_000)
    lines = Lines()
    options = ProbeOptions(host="127.0.0.1", port=4430, probe_id="p1", key=bytes(32), state_dir=tmp_path,
                           progress_interval=0, fsync=False, **opts)
    source = source if source is not None else devtest.CounterSource(count=50, clock=clock.seconds)
    runner = ProbeRunner(clock, MODULES.get("devtest").module, source, options, clock=clock.seconds,
                         observer=lines)
    codes: list[int] = []
    if started:
        runner.transport.start = lambda: None  # type: ignore[method-assign]  # no sockets: attempts by hand
        runner.start().addCallback(codes.append)
    return runner, clock, lines, codes


class Session:
    """A welcomed session that sends nothing and is never acknowledged (the server's side is not played)."""

    paused = False

    def pump(self) -> None:
        pass


def advance(clock: Clock, seconds: float) -> None:
    for _ in range(int(seconds / WAIT_CHECK)):
        clock.advance(WAIT_CHECK)


class Finished:
    """A finite source with nothing in it: finished before the first poll."""

    def poll(self, max_messages: int) -> list[Any]:
        return []

    def finished(self) -> bool:
        return True

    def state(self) -> Any:
        return {"v": 1}

    def restore(self, state: Any) -> None:
        if state != {"v": 1}:
            raise ValueError("resume state is for another set of files")

    def close(self) -> None:
        pass

    def progress(self) -> tuple[int, int]:
        return 0, 0


class Endless(Finished):
    """A live source with nothing to say."""

    def finished(self) -> bool:
        return False


def test_a_finished_source_with_nothing_to_send_ends_at_once_with_0(tmp_path):
    runner, clock, lines, codes = make(tmp_path, Finished())
    assert codes == [0]
    assert runner.summary()["records_read"] == 0 and not lines.matching("waiting")


def test_waiting_for_the_server_is_said_every_few_seconds_and_quiet_keeps_it(tmp_path):
    runner, clock, lines, codes = make(tmp_path, wait_report=5.0)  # progress_interval=0: --quiet
    runner.transport.why = describe_connect_error(error.ConnectionRefusedError())
    advance(clock, 1.5)
    assert not lines.matching("waiting")  # the first moments of a connection are not a wait worth a line
    advance(clock, 11)
    said = lines.matching("waiting for")
    assert len(said) == 3, lines.text()  # at 2, 7 and 12 s
    assert said[0] == ("waiting for the server at 127.0.0.1:4430 (connection refused), 1 batch (50 records) "
                       "spooled: 2 s so far")
    assert runner.spool.records == 50 and runner.source.finished() and not codes  # it waits, it does not end
    event = next(e for e in lines.events if "what" in e)
    assert event["what"] == "the server at 127.0.0.1:4430 (connection refused)" and event["probe_id"] == "p1"


def test_give_up_stops_with_an_error_naming_the_wait_and_what_is_left_unsent(tmp_path):
    runner, clock, lines, codes = make(tmp_path, give_up=3.0)
    runner.transport.why = "connection refused"
    advance(clock, 2.5)
    assert lines.matching("giving up in 1 s")
    assert not codes
    advance(clock, 1)
    assert codes == [EXIT_GAVE_UP]
    (gave_up,) = lines.matching("gave up")
    assert gave_up == ("gave up after 3 s waiting for the server at 127.0.0.1:4430 (connection refused): 1 batch "
                       f"(50 records) left unsent, kept in the spool ({tmp_path / 'spool'}) for the next run")
    assert runner.spool.records == 50  # kept: the next run sends it


def test_a_wait_that_ends_resets_the_give_up_clock_and_is_said_to_be_over(tmp_path):
    runner, clock, lines, codes = make(tmp_path, Endless(), give_up=4.0)
    advance(clock, 3)
    assert lines.matching("waiting for the server at 127.0.0.1:4430 (connecting)")
    runner.transport.connection = Session()  # type: ignore[assignment]  # welcomed, and the spool is acknowledged
    advance(clock, 1)
    assert lines.matching("no longer waiting (after 4 s)") and not codes
    runner.transport.connection = None
    runner.transport.why = "connection lost"
    advance(clock, 3)
    assert not codes  # a new wait: 3 s of it, not 6


def test_unacknowledged_batches_are_a_wait_too(tmp_path):
    runner, clock, lines, codes = make(tmp_path, give_up=10.0)
    runner.transport.connection = Session()  # type: ignore[assignment]  # connected; the server never answers
    runner.transport.last_heard = clock.seconds()
    advance(clock, 3.5)
    assert lines.matching("waiting for the server at 127.0.0.1:4430 to acknowledge what it was sent, 1 batch "
                          "(50 records) spooled: 2 s so far")
    advance(clock, 8)
    assert codes == [EXIT_GAVE_UP]


def test_the_source_says_what_it_waits_for(tmp_path):
    class Waiting(Endless):
        def waiting(self) -> str:
            return "conn.log to appear in /zeek/logs"

    runner, clock, lines, codes = make(tmp_path, Waiting())
    runner.transport.connection = Session()  # type: ignore[assignment]
    advance(clock, 3)
    assert lines.matching("waiting for conn.log to appear in /zeek/logs: 2 s so far")  # nothing spooled: not said


def test_a_token_for_another_source_is_said_and_the_source_starts_fresh(tmp_path):
    runner, *_ = make(tmp_path, Finished(), started=False)
    runner.stop()
    (tmp_path / "probe-state.json").write_text('{"next_seq": 5, "source_state": {"v": 1, "other": true}}')
    again, _, lines, codes = make(tmp_path, Finished())
    assert lines.matching("resume state is for another set of files: starting fresh")
    assert not again.resumed and codes == [0]
    same, _, lines, _ = make(tmp_path, Finished())
    assert same.resumed and lines.matching("resuming where the last run stopped")
    assert lines.matching("nothing was left to send: the last run read this source to its end")


def test_a_tick_that_raises_stops_the_probe_with_1_and_the_error(tmp_path):
    class Broken(Endless):
        def poll(self, max_messages: int) -> list[Any]:
            raise OSError("conn.log: Input/output error")

    runner, clock, lines, codes = make(tmp_path, Broken())
    assert codes == [1]
    assert lines.matching("stopped by an error: OSError: conn.log: Input/output error")


def test_the_endpoint_tells_why_an_attempt_failed(tmp_path):
    runner, *_ = make(tmp_path, started=False)
    link = runner.transport
    assert isinstance(link, TcpTransport)

    class Refusing:
        def connect(self, factory: Any) -> defer.Deferred[Any]:
            return defer.fail(error.ConnectionRefusedError())

    failures: list[Any] = []
    _AttemptsEndpoint(Refusing(), link).connect(None).addErrback(failures.append)
    assert failures and link.why == "connection refused"
    assert describe_connect_error(error.DNSLookupError("nowhere.example")) == "host name not found"
    assert describe_connect_error(error.TCPTimedOutError()) == "connection timed out"
    link.runner.spool.append(SpoolEntry(runner.next_seq, 999, "tick", b"\x90", None, 2))
    assert link.waiting() == "the server at 127.0.0.1:4430 (connection refused)"
    assert link.left() == "1 batch (2 records) spooled"
