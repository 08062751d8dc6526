"""The viewer listener (the ``viz=`` port of the ready line): one :class:`ViewerSession` per viewer connection
(spec/viewer.md).

States: AWAIT_HELLO -> READY (token accepted: requests allowed) -> SUBSCRIBED (a module view: live, at t, or
play from t at a speed) -> CLOSED. A wrong token gets ``refused`` and the connection is closed.

Back-pressure: the session is its connection's streaming producer. When the viewer reads slower than diffs come
and the transport's buffer fills, Twisted pauses it. Diffs are still written while what was written since the
pause (the backlog) is smaller than a full graph would be (at least BACKLOG_MIN, at most BACKLOG_MAX): a viewer
that is only briefly slower, as any is when the machine is busy, catches up at no cost. Past that, diffs are
dropped and the view is marked stale; when the viewer reads again (resume) it gets one full graph instead, which
is then the cheaper way to catch up. Memory per viewer is thus bounded by the budget plus one graph, however
long it stalls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from wiredraw.core import viewer_protocol
from wiredraw.core.filter import FilterError, compile_filter
from wiredraw.core.graph import Change, Edge, Graph, Pulse
from wiredraw.core.server.credentials import Tokens
from wiredraw.core.server.live import ClientView, Matcher, ModuleFeed, SharedDiff
from wiredraw.core.server.redis_client import NotConnected
from wiredraw.core.viewer_protocol import ViewerProtocolError
from zope.interface import implementer

HELLO_TIMEOUT = 10.0
BACKLOG_MIN = 1 << 20  # bytes a paused viewer may have queued before its diffs collapse into one full graph ...
BACKLOG_MAX = 32 << 20  # ... or the size of its last full graph, if bigger, up to this
PLAY_TICK = 0.5  # seconds of wall time between play steps


class State(Enum):
    AWAIT_HELLO = "await_hello"
    READY = "ready"
    SUBSCRIBED = "subscribed"
    CLOSED = "closed"


def matcher(text: str | None) -> Matcher | None:
    if text is None or not text.strip():
        return None
    return compile_filter(text).matches


@implementer(IPushProducer)
class ViewerSession(Protocol):
    log = Logger()
    transport: Any

    def __init__(self, factory: ViewerFactory) -> None:
        self.factory = factory
        self.state = State.AWAIT_HELLO
        self.decoder = viewer_protocol.FrameDecoder(viewer_protocol.MAX_CLIENT_FRAME)
        self.seq = 0
        self.paused = False
        self.stale = False
        self.backlog = 0  # bytes written since the transport paused this producer
        self.full_bytes = 0  # the size of the last full graph sent: what a resync would cost
        self.feed: ModuleFeed | None = None
        self.mode = "live"
        self.t: float | None = None
        self.speed = 1.0
        self.window = viewer_protocol.DEFAULT_PLAY_WINDOW
        self.filter_text = ""
        self.view = ClientView(None)
        self.play_graph = Graph()
        self._play: LoopingCall | None = None
        self._play_busy = False
        self._gen = 0  # the view's generation: a result computed for an older view is dropped
        self._ticks = 0
        self._timeout: Any = None
        self.sent = {"graph": 0, "diff": 0, "dropped_diffs": 0}

    # -- connection ------------------------------------------------------------------------------------------
    def connectionMade(self) -> None:
        self.factory.sessions.add(self)
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)  # small diffs go out now, not after a delayed ACK (~40 ms)
        self.transport.registerProducer(self, True)
        self._timeout = self.factory.clock.callLater(HELLO_TIMEOUT, self._hello_timeout)

    def connectionLost(self, reason: Any = None) -> None:
        self.state = State.CLOSED
        self.factory.sessions.discard(self)
        self._leave()
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()

    def _hello_timeout(self) -> None:
        self.fail("timeout", f"no hello within {HELLO_TIMEOUT:g} s")

    def send(self, message: dict[str, Any]) -> int:
        """Write one message; returns its size in bytes (0: closed)."""
        return self.write(viewer_protocol.pack(message))

    def write(self, frame: bytes | list[bytes]) -> int:
        """Write one frame, whole or in parts (written in order, not joined); returns its size in bytes."""
        if self.state is State.CLOSED:
            return 0
        if isinstance(frame, list):
            self.transport.writeSequence(frame)
            size = sum(map(len, frame))
        else:
            self.transport.write(frame)
            size = len(frame)
        if self.paused:
            self.backlog += size
        return size

    def _room(self) -> bool:
        """Whether a diff may go out: the view is not stale, and the viewer reads, or its backlog since it paused
        is still smaller than a full graph (see the module docstring)."""
        if self.stale:
            return False
        return not self.paused or self.backlog < min(BACKLOG_MAX, max(self.factory.backlog, self.full_bytes))

    def fail(self, code: str, reason: str) -> None:
        self.send({"type": "error", "code": code, "reason": reason, "fatal": True})
        self.state = State.CLOSED
        self._leave()
        self.transport.loseConnection()

    # IPushProducer: the transport says when the viewer stops and starts reading again.
    def pauseProducing(self) -> None:
        self.paused = True
        self.backlog = 0

    def resumeProducing(self) -> None:
        self.paused = False
        self.backlog = 0
        if self.stale and self.state is State.SUBSCRIBED:
            self.stale = False
            self._send_current("resync")

    def stopProducing(self) -> None:
        self.paused = True

    # -- messages --------------------------------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        try:
            for msg in self.decoder.feed(data):
                if self.state is State.CLOSED:
                    return
                self._message(msg)
        except ViewerProtocolError as exc:
            self.fail(exc.code, str(exc))

    def _message(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if self.state is State.AWAIT_HELLO:
            token = viewer_protocol.check_hello(msg)
            if self._timeout is not None and self._timeout.active():
                self._timeout.cancel()
            who = self.factory.tokens.check(token, "viewer")
            if who is None:
                self.factory.refusals += 1
                self.send({"type": "refused", "code": "bad_token",
                           "reason": "viewer token refused: create one with `wiredraw tokens add NAME --role viewer` "
                                     "on the server and pass it with --token"})
                self.state = State.CLOSED
                self.transport.loseConnection()
                return
            self.viewer = who.name
            self.state = State.READY
            self.send({"type": "welcome", "version": viewer_protocol.VERSION, "server": self.factory.server_name,
                       "modules": self.factory.module_list(), "full_every": self.factory.full_every})
        elif kind == "subscribe":
            view = viewer_protocol.check_subscribe(msg)
            feed = self.factory.feed_for(view["module"])
            if feed is None:
                raise ViewerProtocolError("unknown_module", f"no module {view['module']!r} with a view on this server; "
                                                         f"it has: {', '.join(self.factory.feeds) or 'none'}")
            try:
                matcher(view.get("filter"))
            except FilterError as exc:
                raise ViewerProtocolError("bad_message", str(exc)) from None
            self._leave()
            self.feed = feed
            self.state = State.SUBSCRIBED
            self._configure(view)
        elif kind == "request":
            rid, what = viewer_protocol.check_request(msg)
            d = defer.Deferred.fromCoroutine(self._request(what, msg))
            d.addCallbacks(lambda result: self.send({"type": "reply", "id": rid, "ok": True, "result": result}),
                           lambda f: self._request_failed(rid, what, f))
        else:
            raise ViewerProtocolError("bad_message", f"unknown message type {kind!r:.40}")

    def _request_failed(self, rid: int, what: str, failure: Any) -> None:
        if failure.check(ViewerProtocolError, FilterError, LookupError, ValueError):
            error = failure.getErrorMessage()
        elif failure.check(NotConnected):  # Redis is away (restarting, or the server stopping): no traceback
            self.log.warn("viewer request {what}: {why}", what=what, why=failure.getErrorMessage())
            error = f"cannot answer {what} now: {failure.getErrorMessage()}"
        else:
            self.log.failure("viewer request {what} failed", failure, what=what)
            error = f"internal error answering {what}: {failure.getErrorMessage()}"
        self.send({"type": "reply", "id": rid, "ok": False, "error": error})

    async def _request(self, what: str, msg: Mapping[str, Any]) -> Any:
        if what == "modules":
            return self.factory.module_list()
        if what == "configure":
            if self.state is not State.SUBSCRIBED:
                raise ViewerProtocolError("bad_message", "configure needs a subscription first")
            self._configure(viewer_protocol.check_view(msg))
            return {"mode": self.mode, "t": self.t, "filter": self.filter_text}
        feed = self.feed
        if "module" in msg:
            feed = self.factory.feed_for(msg["module"])
            if feed is None:
                raise LookupError(f"no module {msg['module']!r} with a view on this server")
        if feed is None:
            raise ViewerProtocolError("bad_message", "name a 'module' or subscribe first")
        view = feed.view
        if what == "range":
            span = await view.time_range()
            return None if span is None else {"first": span[0], "last": span[1]}
        interval = viewer_protocol.interval_of(msg)
        if what == "histogram":
            bins = msg.get("bins", 100)
            if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= viewer_protocol.MAX_BINS:
                raise ViewerProtocolError("bad_message", f"'bins' must be an integer in 1..{viewer_protocol.MAX_BINS}")
            interval = interval or await self._whole(feed)
            if interval is None:
                return []
            return await view.histogram(interval[0], interval[1], bins)
        if what == "details":
            element = viewer_protocol._string(msg, "element", required=True, limit=1024)
            assert element is not None
            interval = interval or self._interval() or await self._whole(feed)
            if interval is None:
                return None
            details = await view.details(element, interval[0], interval[1])
            return None if details is None else details.to_wire()
        # graph
        interval = interval or await self._whole(feed)
        if interval is None:
            return {"nodes": [], "edges": [], "t0": None, "t1": None}
        graph = await view.graph(interval[0], interval[1])
        flt = msg.get("filter")
        view = ClientView(matcher(flt if isinstance(flt, str) else None))
        return {**view.full(graph), "t0": interval[0], "t1": interval[1]}

    async def _whole(self, feed: ModuleFeed) -> tuple[float, float] | None:
        return await feed.view.time_range()

    def _interval(self) -> tuple[float, float] | None:
        """What this viewer is looking at now."""
        if self.feed is None:
            return None
        if self.mode == "live":
            iv = self.feed.interval()
            return None if iv is None or math.isinf(iv[0]) else iv
        assert self.t is not None
        if self.mode == "at":
            return self.t, self.t
        return self.t - self.window, self.t

    # -- views -----------------------------------------------------------------------------------------------
    def _configure(self, view: Mapping[str, Any]) -> None:
        self._new_view()
        if "filter" in view:
            self.view = ClientView(matcher(view["filter"]))  # FilterError: the viewer's message is wrong
            self.filter_text = view["filter"]
        if "mode" in view:
            self._leave()
            self.mode = view["mode"]
            self.t = view.get("t")
        elif "t" in view:
            self.t = view["t"]
        if "speed" in view:
            self.speed = view["speed"]
        if "window" in view:
            self.window = view["window"]
        assert self.feed is not None
        if self.mode == "live":
            self.feed.subscribers.add(self)
        self._send_current("subscribe")

    def _new_view(self) -> None:
        """Results still in flight for the previous view are dropped when they come (see ``_gen``)."""
        self._gen += 1
        self._play_busy = False

    def _leave(self) -> None:
        self._new_view()
        if self.feed is not None:
            self.feed.subscribers.discard(self)
        if self._play is not None and self._play.running:
            self._play.stop()
        self._play = None

    def _send_current(self, reason: str) -> None:
        """A full graph of the current view (for live: under the feed's lock, so no change interleaves)."""
        feed = self.feed
        assert feed is not None
        if self.mode == "live":
            feed.lock.run(self._send_live_full, reason)
            return
        assert self.t is not None
        t, gen = self.t, self._gen
        t0 = t if self.mode == "at" else t - self.window
        d = defer.Deferred.fromCoroutine(feed.view.graph(t0, t))

        def got(graph: Graph) -> None:
            if gen != self._gen or self.state is State.CLOSED:
                return  # the viewer moved on meanwhile: its newer view's graph follows
            self.play_graph = graph
            self._send_graph(graph, reason, t0, t)
            if self.mode == "play" and self._play is None:
                self._ticks = 0
                loop = LoopingCall(self._play_step)
                loop.clock = self.factory.clock
                self._play = loop
                loop.start(PLAY_TICK, now=False).addErrback(lambda f: self.log.failure("play", f))

        d.addCallbacks(got, lambda f: self._view_failed(f))

    def _view_failed(self, failure: Any) -> None:
        if failure.check(NotConnected):
            self.log.warn("view for {viewer}: {why}", viewer=getattr(self, "viewer", "?"),
                          why=failure.getErrorMessage())
        else:
            self.log.failure("view for {viewer}", failure, viewer=getattr(self, "viewer", "?"))
        self.send({"type": "error", "code": "view_failed", "reason": failure.getErrorMessage(), "fatal": False})

    def _send_live_full(self, reason: str) -> None:
        feed = self.feed
        if feed is None or self.mode != "live" or not feed.ready:
            return  # not ready: the feed's first recompute sends it
        if self.view.match is None:
            # everything shows: the frame every unfiltered viewer gets, its elements packed once (the view's
            # sets are only needed with a filter, as in live_change)
            if self.paused:
                self.stale = True
                return
            self.seq += 1
            self.sent["graph"] += 1
            self.full_bytes = self.write(feed.full_frame(self.seq, reason))
            return
        iv = feed.interval()
        self._send_graph(feed.graph, reason, iv[0] if iv and not math.isinf(iv[0]) else None, feed.latest)

    def _send_graph(self, graph: Graph, reason: str, t0: float | None, t1: float | None) -> None:
        if self.paused:
            self.stale = True
            return
        assert self.feed is not None
        self.seq += 1
        self.sent["graph"] += 1
        self.full_bytes = self.send({"type": "graph", "seq": self.seq, "module": self.feed.slug, "mode": self.mode,
                                     "reason": reason, "t": t1, "t0": t0, "t1": t1, **self.view.full(graph)})

    def _send_diff(self, diff: dict[str, Any], t: float | None) -> None:
        if not self._room():
            self.stale = True  # collapse: the next full graph replaces every diff dropped meanwhile
            self.sent["dropped_diffs"] += 1
            return
        self.seq += 1
        self.sent["diff"] += 1
        self.send({"type": "diff", "seq": self.seq, "t": t, **diff})

    # LiveSubscriber
    def live_full(self, feed: ModuleFeed, reason: str) -> None:
        if feed is self.feed and self.mode == "live":
            self.stale = False
            self._send_live_full("periodic" if reason == "periodic" else reason)

    def live_change(self, feed: ModuleFeed, change: Change, removed: list[Edge], shared: SharedDiff) -> None:
        mine = self.feed
        if mine is None or feed is not mine or self.mode != "live":
            return
        if not self._room():
            self.stale = True
            self.sent["dropped_diffs"] += 1
            return
        if self.view.match is None:
            # everything shows: the diff every unfiltered viewer gets, packed once (ClientView's sets are only
            # needed with a filter; a new filter starts a new view with a full graph)
            self.seq += 1
            self.sent["diff"] += 1
            self.write(shared.frame(self.seq, mine.latest))
            return
        diff = self.view.change(mine.graph, change, removed)
        if diff is not None:
            self._send_diff(diff, mine.latest)

    # play
    def _play_step(self) -> Any:
        if self._play_busy or self.feed is None or self.t is None:
            return None
        self._play_busy = True
        self.t += self.speed * PLAY_TICK
        self._ticks += 1
        t, gen = self.t, self._gen
        d = defer.Deferred.fromCoroutine(self.feed.view.graph(t - self.window, t))

        def got(graph: Graph) -> None:
            if gen != self._gen:
                return  # reconfigured meanwhile (which also freed the busy flag)
            self._play_busy = False
            if self.mode != "play" or self.state is State.CLOSED:
                return
            old, self.play_graph = self.play_graph, graph
            if self._ticks * PLAY_TICK >= self.factory.full_every:
                self._ticks = 0
                self._send_graph(graph, "periodic", t - self.window, t)
                return
            change = old.diff(graph)
            change.pulses = [Pulse(e.id, "edge", "new", e.first) for e in change.edges if e.id not in old.edges]
            removed = [old.edges[eid] for eid in change.removed_edges]
            if not self._room():
                self.stale = True
                return
            diff = self.view.change(graph, change, removed)
            if diff is not None:
                self._send_diff(diff, t)

        def failed(f: Any) -> None:
            if gen == self._gen:
                self._play_busy = False
            self._view_failed(f)

        d.addCallbacks(got, failed)
        return None


class ViewerFactory(Factory):
    def __init__(self, feeds: dict[str, ModuleFeed], ids: dict[int, str], tokens: Tokens, clock: Any, *,
                 server_name: str, full_every: float, modules_info: list[dict[str, Any]],
                 backlog: int | None = None) -> None:
        self.feeds, self.ids, self.tokens, self.clock = feeds, ids, tokens, clock
        self.backlog = BACKLOG_MIN if backlog is None else backlog
        self.server_name, self.full_every = server_name, full_every
        self._modules_info = modules_info
        self.sessions: set[ViewerSession] = set()
        self.refusals = 0

    def buildProtocol(self, addr: Any) -> ViewerSession:
        return ViewerSession(self)

    def module_list(self) -> list[dict[str, Any]]:
        return self._modules_info

    def feed_for(self, module: Any) -> ModuleFeed | None:
        if isinstance(module, int) and not isinstance(module, bool):
            module = self.ids.get(module)
        return self.feeds.get(module) if isinstance(module, str) else None
