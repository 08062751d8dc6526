"""The runner reports through twisted.logger, with named fields; its line observer prints what a person reads."""

from __future__ import annotations

import io

import pytest
from twisted.internet.task import Clock
from wiredraw.core import devtest
from wiredraw.core.plugins import load_modules
from wiredraw.probes.runner import ProbeLineObserver, ProbeOptions, ProbeRunner
from wiredraw.probes.transport import TcpTransport, UdpTransport


def make_runner(tmp_path, transport="tcp", **kw):
    clock = Clock()
    clock.advance(1_700_000_000)
    modules = load_modules(extra_plugins=[("devtest", devtest)], env={})
    source = devtest.CounterSource(count=1200, clock=clock.seconds)
    opts = ProbeOptions(host="127.0.0.1", port=1, probe_id="p1", key=bytes(32), transport=transport,
                        state_dir=tmp_path, progress_interval=0, fsync=False)
    return ProbeRunner(clock, modules.get("devtest").module, source, opts, clock=clock.seconds, **kw), clock


@pytest.mark.parametrize(("name", "kind"), [("tcp", TcpTransport), ("udp", UdpTransport)])
def test_the_runner_holds_the_transport_named_in_its_options(tmp_path, name, kind):
    runner, _ = make_runner(tmp_path, name, out=io.StringIO())
    assert type(runner.transport) is kind


def test_unknown_transport_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown transport 'sctp'"):
        make_runner(tmp_path, "sctp", out=io.StringIO())


def test_events_have_named_fields_and_print_as_lines(tmp_path):
    events = []
    runner, clock = make_runner(tmp_path, observer=events.append)
    runner.tick()
    runner.report()
    runner.rejected(runner.next_seq - 1, "bad_body")
    runner.rejected(runner.next_seq - 1, "bad_body")  # said once: the same note again is held back
    progress, rejected = events
    assert progress["probe_id"] == "p1" and progress["records_read"] == 1000 and progress["link"] == "reconnecting"
    assert rejected["reason"] == "bad_body" and rejected["seq"] == runner.next_seq - 1
    out = io.StringIO()
    for event in events:
        ProbeLineObserver(out)(event)
    assert out.getvalue().splitlines() == [
        "wiredraw probe p1: 1,000 records read, 0 stored, 1,000 waiting in spool (2 batches), reconnecting",
        f"wiredraw probe p1: server rejected batch {runner.next_seq - 1}: bad_body (dropped)",
    ]


def test_out_gets_the_same_lines_without_an_observer(tmp_path):
    out = io.StringIO()
    runner, _ = make_runner(tmp_path, "udp", out=out)
    runner.report()
    assert out.getvalue() == "wiredraw probe p1: 0 records read, 0 sent over UDP\n"
