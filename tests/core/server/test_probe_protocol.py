"""The TCP session state machines of probe and server, talking to each other in memory on a Clock.

Storage is a recording stand-in here on purpose: these tests are about the protocol's states, acks and
resends. Storage itself is tested against a real redis-server in test_server_processes.py.
"""

from __future__ import annotations

import os

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.test import iosim
from wiredraw.core import devtest, wire
from wiredraw.core.plugins import load_modules
from wiredraw.core.server.ingest import Ingest
from wiredraw.core.server.probe_listener import ProbeStreamFactory, State
from wiredraw.probes.runner import ClientState, ProbeClientProtocol, ProbeOptions, ProbeRunner

KEY = bytes(range(32))


class RecordingStore:
    """Applies nothing; records every command; completes writes now, or when told to (held=True)."""

    def __init__(self):
        self.commands = []
        self.held: list[defer.Deferred] = []
        self.hold = False

    def transaction(self, commands):
        d = defer.Deferred()
        if self.hold:
            self.held.append((d, commands))
        else:
            self.commands.extend(commands)
            d.callback([1] * len(commands))
        return d

    def execute(self, *command):
        return defer.succeed(b"PONG")

    def release(self, fail=False):
        held, self.held = self.held, []
        for d, commands in held:
            if fail:
                d.errback(wire.WireError("malformed", "connection lost"))  # any failure will do
            else:
                self.commands.extend(commands)
                d.callback([1] * len(commands))

    def ticks(self):
        return [c[1] for c in self.commands if c[0] == "SADD"]


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    clock.advance(1_700_000_000)
    modules = load_modules(extra_plugins=[("devtest", devtest)], env={})
    store = RecordingStore()
    keys = {"s1": KEY}
    ingest = Ingest(modules, keys.get, store, clock)
    ingest.ready = True
    factory = ProbeStreamFactory(ingest, clock)

    def make_runner(count=1200, key=KEY, probe_id="s1", batch=500):
        source = devtest.CounterSource(count=count, clock=clock.seconds)
        opts = ProbeOptions(host="127.0.0.1", port=1, probe_id=probe_id, key=key, state_dir=tmp_path / probe_id,
                            batch_records=batch, progress_interval=0, fsync=False)
        return ProbeRunner(clock, modules.get("devtest").module, source, opts, out=open(os.devnull, "w"),
                           clock=clock.seconds)

    def connect(runner, client=None):
        server = factory.buildProtocol(None)
        client = client or ProbeClientProtocol(runner)
        pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client),
                             greet=True, clock=clock)
        return server, client, pump

    class World:
        pass

    w = World()
    w.clock, w.store, w.ingest, w.factory = clock, store, ingest, factory
    w.make_runner, w.connect = make_runner, connect
    return w


def test_handshake_frames_and_acks_clear_the_spool(world):
    runner = world.make_runner(count=1200)
    server, client, pump = world.connect(runner)
    pump.flush()
    assert server.state is State.STREAMING and client.state is ClientState.STREAMING
    runner.tick()  # polls up to 1000 ticks (2 batches) per turn, to keep turns short
    assert len(runner.spool) == 2
    runner.tick()  # the rest: a third batch
    assert len(runner.spool) == 3 and runner.source.finished()
    pump.flush()
    assert len(runner.spool) == 0
    assert runner.counts["records_acked"] == 1200
    assert sorted(int(k.split(":")[-1]) for k in world.store.ticks()) == list(range(1, 1201))
    assert world.ingest.stats.counts["acks_sent"] >= 1


def write_in_flight(world):
    """A streaming session whose first batch (10 records) is sent and held: its write has not completed."""
    runner = world.make_runner(count=10)
    server, client, pump = world.connect(runner)
    pump.flush()
    world.store.hold = True
    runner.tick()
    pump.flush()
    return runner, server, client, pump


def test_ack_waits_for_the_write(world):
    runner, server, client, pump = write_in_flight(world)
    assert len(runner.spool) == 1  # written to Redis not yet: no ack, the batch stays spooled
    world.store.release()
    pump.flush()
    assert len(runner.spool) == 0


def test_failed_write_closes_and_the_resend_is_stored(world):
    runner, server, client, pump = write_in_flight(world)
    world.store.release(fail=True)
    pump.flush()
    assert client.state is ClientState.CLOSED and len(runner.spool) == 1
    world.store.hold = False
    server2, client2, pump2 = world.connect(runner)
    pump2.flush()
    assert len(runner.spool) == 0, "the resent batch was not accepted after the failed write"
    assert len(world.store.ticks()) == 10


def test_resend_of_a_stored_frame_is_acked_not_stored_again(world):
    runner, server, client, pump = write_in_flight(world)
    # stored in Redis, but the connection drops before the ack reaches the probe
    client.transport.loseConnection()
    pump.flush()
    world.store.release()
    assert len(runner.spool) == 1
    world.store.hold = False
    server2, client2, pump2 = world.connect(runner)
    pump2.flush()
    assert len(runner.spool) == 0
    assert len(world.store.ticks()) == 10, "a duplicate was written twice"
    assert world.ingest.stats.counts["frames_duplicate"] == 1


def test_wrong_key_probe_refuses_the_server_and_server_refuses_the_probe(world):
    runner = world.make_runner(key=bytes(32))
    server, client, pump = world.connect(runner)
    pump.flush()
    # the server's proof was made with the real key: the probe does not trust it and leaves
    assert client.state is ClientState.CLOSED and server.state is State.CLOSED
    assert world.store.commands == []


def test_unknown_probe_gets_a_random_challenge_and_no_session(world):
    runner = world.make_runner(probe_id="stranger")
    server, client, pump = world.connect(runner)
    pump.flush()
    assert client.state is ClientState.CLOSED and server.state is State.CLOSED




def _raw_session(world, payloads):
    from twisted.internet.protocol import Protocol

    received = []

    class Raw(Protocol):
        def connectionMade(self):
            for p in payloads:
                self.transport.write(wire.frame_stream(p))

        def dataReceived(self, data):
            received.append(data)

    server = world.factory.buildProtocol(None)
    client = Raw()
    pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client), clock=world.clock)
    pump.flush()
    decoder = wire.StreamDecoder()
    msgs = [wire.decode_control(p) for chunk in received for p in decoder.feed(chunk)]
    return server, msgs, pump


def test_bad_auth_is_refused_and_counted(world):
    hello = wire.encode_control("hello", 1, "s1", b"\x01" * 32)
    auth = wire.encode_control("auth", b"\x00" * 32)
    server, msgs, _ = _raw_session(world, [hello, auth])
    assert [m[0] for m in msgs] == ["challenge", "error"]
    assert msgs[1][1][0] == "auth_failed"
    assert server.state is State.CLOSED
    assert world.ingest.stats.rejected["auth_failed"] == 1


def test_frame_before_handshake_is_a_protocol_error(world):
    frame = wire.encode_frame(KEY, 999, "tick", "s1", 1, world.clock.seconds(), wire.encode_body([{"n": 1, "ts": 1.0}]))
    server, msgs, _ = _raw_session(world, [frame])
    assert msgs[-1][0] == "error" and server.state is State.CLOSED
    assert world.store.commands == []


def test_handshake_timeout(world):
    server, msgs, pump = _raw_session(world, [])
    assert server.state is State.AWAIT_HELLO
    world.clock.advance(11)
    pump.flush()
    assert server.state is State.CLOSED
    assert world.ingest.stats.rejected["handshake_timeout"] == 1


def test_unusable_frame_is_rejected_for_good_and_dropped_from_the_spool(world):
    runner = world.make_runner(count=5)
    server, client, pump = world.connect(runner)
    pump.flush()
    from wiredraw.probes.spool import SpoolEntry

    # a batch of an undeclared message type: the server says reject, the probe drops it
    runner.spool.append(SpoolEntry(runner.next_seq, 999, "nonsense", wire.encode_body([{"n": 1}]), {"next": 1}, 1))
    runner.next_seq += 1
    client.pump()
    pump.flush()
    assert len(runner.spool) == 0
    assert runner.counts["frames_rejected"] == 1
    assert world.ingest.stats.rejected["unknown_message"] == 1


def test_invalid_records_are_counted_and_the_rest_stored(world):
    runner = world.make_runner(count=0)
    server, client, pump = world.connect(runner)
    pump.flush()
    from wiredraw.probes.spool import SpoolEntry

    body = wire.encode_body([{"n": 1, "ts": 1.0}, {"n": "two", "ts": 1.0}, {"ts": 2.0}, {"n": 4, "ts": 3.0}])
    runner.spool.append(SpoolEntry(runner.next_seq, 999, "tick", body, {"next": 5}, 4))
    client.pump()
    pump.flush()
    assert len(runner.spool) == 0
    assert sorted(world.store.ticks()) == ["wd:devtest:tick:1", "wd:devtest:tick:4"]
    st = world.ingest.stats.as_dict()
    assert st["records_rejected"] == 2 and st["records_written"] == 2
    assert "devtest.tick: field 'n': expected int, got str" in st["records_rejected_by_reason"]
    assert "devtest.tick: missing field 'n'" in st["records_rejected_by_reason"]


def test_storage_down_refuses_sessions(world):
    world.ingest.ready = False
    runner = world.make_runner()
    server, client, pump = world.connect(runner)
    pump.flush()
    assert client.state is ClientState.CLOSED


def test_restarted_probe_resumes_from_spool_without_duplicates(world, tmp_path):
    runner = world.make_runner(count=1000)
    runner.tick()  # spooled while the server is unreachable
    assert len(runner.spool) == 2 and runner.source.finished()
    # the probe is killed and started again: it finds its spool and resumes its source after it
    runner2 = world.make_runner(count=1000)
    assert runner2.source.next_n == 1001
    runner2.tick()
    assert len(runner2.spool) == 2  # nothing new was read twice
    server, client, pump = world.connect(runner2)
    pump.flush()
    assert len(runner2.spool) == 0
    assert sorted(int(k.split(":")[-1]) for k in world.store.ticks()) == list(range(1, 1001))


def test_new_session_replaces_the_older_after_its_writes_settle(world):
    runner, server1, client1, pump1 = write_in_flight(world)
    client2 = ProbeClientProtocol(runner)
    server2, client2, pump2 = world.connect(runner, client2)
    pump2.flush()
    pump1.flush()
    assert server1.state is State.CLOSED  # replaced
    assert server2.state is State.AWAIT_SETTLED and client2.state is ClientState.AWAIT_WELCOME
    world.store.hold = False
    world.store.release()  # the older write lands: only now is the new session welcomed
    pump2.flush()
    assert server2.state is State.STREAMING
    assert len(runner.spool) == 0  # the resend was recognised as a duplicate and acked
    assert len(world.store.ticks()) == 10 and world.ingest.stats.counts["frames_duplicate"] == 1


def test_stale_frame_on_tcp_closes_and_the_probe_keeps_its_spool(world):
    runner = world.make_runner(count=10)
    server, client, pump = world.connect(runner)
    pump.flush()
    runner.clock = lambda: world.clock.seconds() - 3600  # the probe's clock is an hour late
    runner.tick()
    pump.flush()
    assert client.state is ClientState.CLOSED and len(runner.spool) == 1
    assert world.ingest.stats.rejected["stale"] == 1 and world.store.ticks() == []


def test_auth_failures_are_logged_at_most_once_per_interval(world):
    from twisted.logger import LogLevel, globalLogPublisher

    seen = []

    def observer(event):
        if event.get("log_level") == LogLevel.warn and "failed authentication" in event.get("log_format", ""):
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        for _ in range(50):
            _raw_session(world, [wire.encode_control("hello", 1, "s1", b"\x01" * 32),
                                 wire.encode_control("auth", b"\x00" * 32)])
        world.clock.advance(11)
        _raw_session(world, [wire.encode_control("hello", 1, "s1", b"\x01" * 32),
                             wire.encode_control("auth", b"\x00" * 32)])
    finally:
        globalLogPublisher.removeObserver(observer)
    assert world.ingest.stats.rejected["auth_failed"] == 51  # every one counted
    assert len(seen) == 2 and seen[1]["held"] == 49  # but logged twice, the second saying how many were held
