"""`wiredraw watch --commands`: a real watch process against a real server holding an hour of real Zeek logs; view
commands written to its stdin (filter, at, play, live), each checked in the JSON lines it prints against what the
server answers `query graph` with."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

import pytest
from processes import ZEEK_TSV, ServedZeek, World, dev_env, short_dir, wiredraw_cmd

DATA = ZEEK_TSV
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real Zeek data not found at {DATA} (../shared/data)")
SSL = 'category == "ssl"'  # the connections whose main service is ssl, and their hosts


class Served(ServedZeek):
    """The shared served hour (tests/processes.py), with the two questions these tests ask it."""

    def graph(self, **args: Any) -> tuple[set[str], set[str]]:
        """Node and edge ids of `query graph` with these arguments."""
        g = self.request("graph", **args)
        return {n["id"] for n in g["nodes"]}, {e["id"] for e in g["edges"]}

    def range(self) -> tuple[float, float]:
        span = self.request("range")
        return span["first"], span["last"]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    world = World(short_dir())
    try:
        yield Served(world)
    finally:
        world.close()


class Watch:
    """A `wiredraw watch --commands` process: ``send`` writes a command line, ``next`` reads its JSON lines."""

    def __init__(self, served: Served, *extra: str) -> None:
        argv = wiredraw_cmd("watch", "--server", served.viz, "--token", served.token, "--module", "net_zeek",
                            "--commands", *extra)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=dev_env())
        self.out: queue.Queue[dict[str, Any]] = queue.Queue()
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._read, args=(self.proc.stdout, self.out.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, None), daemon=True).start()

    def _read(self, stream: IO[str], put: Any) -> None:
        for line in stream:
            if put is None:
                self.err.append(line)
            else:
                put(json.loads(line))

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def next(self, timeout: float = 30.0) -> dict[str, Any]:
        try:
            return self.out.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no JSON line within {timeout} s; rc {self.proc.poll()}, stderr "
                                 f"{''.join(self.err)!r}") from None

    def graph(self, mode: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next full graph of ``mode`` (diffs and other graphs before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(max(0.1, deadline - time.monotonic()))
            if msg["type"] == "graph" and msg["mode"] == mode:
                return msg
            if time.monotonic() > deadline:
                raise AssertionError(f"no {mode} graph within {timeout} s; last: {msg['type']} {msg.get('mode')}")

    def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Everything it prints in the next ``seconds``."""
        got, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.out.get(timeout=left))
            except queue.Empty:
                break
        return got

    def stderr_with(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.err):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no stderr line with {text!r} within {timeout} s; stderr {''.join(self.err)!r}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass


@pytest.fixture
def watch(served: Served) -> Iterator[Any]:
    made: list[Watch] = []

    def start(*extra: str) -> Watch:
        w = Watch(served, *extra)
        made.append(w)
        return w

    yield start
    for w in made:
        w.close()


def ids(msg: dict[str, Any]) -> tuple[set[str], set[str]]:
    return {n["id"] for n in msg["nodes"]}, {e["id"] for e in msg["edges"]}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_commands_change_the_filter_and_the_time_and_go_back_to_live(watch, served):
    first, last = served.range()
    middle = float(int(first + (last - first) / 2))
    late = float(int(first + (last - first) * 0.9))
    w = watch("--at", str(middle))
    g = w.graph("at")
    assert g["module"] == "net_zeek" and g["t"] == middle
    everything = served.graph(at=middle)
    assert ids(g) == everything and len(everything[0]) > 10

    # filter EXPR: the same instant, only what matches
    w.send(f"filter {SSL}")
    g = w.graph("at")
    ssl = served.graph(at=middle, filter=SSL)
    assert ids(g) == ssl and g["t"] == middle
    assert ssl[1] and ssl[0] < everything[0] and ssl[1] < everything[1]  # a real, smaller part

    # at TIME (ISO-8601, UTC): another instant, the filter kept
    w.send(f"at {iso(late)}")
    g = w.graph("at")
    assert g["t"] == late and ids(g) == served.graph(at=late, filter=SSL)
    assert ids(g) != ssl

    # filter with no expression: everything again
    w.send("filter")
    g = w.graph("at")
    assert g["t"] == late and ids(g) == served.graph(at=late)

    # play TIME SPEED: a graph of the window back from TIME, then the present moves on
    w.send(f"play {first:.6f} 600")
    g = w.graph("play")
    assert g["t"] == pytest.approx(first) and g["t0"] == pytest.approx(first - 60)  # the default 60 s window
    later = [m for m in w.quiet(3.0) if m.get("t") is not None]
    assert later and max(m["t"] for m in later) > first + 60, [m["type"] for m in later]

    # live: what is stored in the live window (the whole hour here)
    w.send("live")
    g = w.graph("live")
    assert g["t"] == pytest.approx(last)
    assert ids(g) == served.graph(**{"from": last - 3600, "to": last})
    assert w.proc.poll() is None and not w.err


def test_a_bad_command_is_said_on_stderr_and_the_watch_goes_on(watch, served):
    first, last = served.range()
    middle = float(int(first + (last - first) / 2))
    w = watch("--at", str(middle))
    w.graph("at")
    w.send("zoom 3")
    assert "unknown command 'zoom'" in w.stderr_with("unknown command")
    w.send("at yesterday")
    assert "'yesterday'" in w.stderr_with("yesterday")
    w.send("filter service ==")  # the server refuses it: say so, not nothing
    assert "filter" in w.stderr_with("refused")
    w.send("play 1714420737 0")  # speed must be > 0
    assert "speed" in w.stderr_with("speed")
    assert w.quiet(1.0) == []  # no view changed
    w.send(f"filter {SSL}")  # and it still takes commands
    g = w.graph("at")
    assert ids(g) == served.graph(at=middle, filter=SSL)
    assert w.proc.poll() is None


def test_the_watch_runs_on_when_stdin_ends(watch, served):
    first, last = served.range()
    w = watch("--at", str(float(int(first + (last - first) / 2))))
    w.graph("at")
    assert w.proc.stdin is not None
    w.proc.stdin.close()  # no more commands: the view stays, the watch does not exit
    time.sleep(1.0)
    assert w.proc.poll() is None, "".join(w.err)
