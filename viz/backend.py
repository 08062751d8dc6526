"""The viewer's backend process (DESIGN.md §7): server connection, graph model, layout; talks to the render
process through a pipe (viz/messages.py documents every message).

:func:`start_backend` starts it with multiprocessing ``spawn`` — call it before ShowBase exists (a forked child
that touches an inherited GL context hangs), from a module that does not import panda3d (a spawned child imports
the parent's main module again). Nothing here imports panda3d.

One loop (:class:`Backend`), each turn bounded so that a burst of data never stalls the render side:

1. up to ``MAX_COMMANDS`` render commands, read without blocking;
2. up to ``MAX_SERVER_MESSAGES`` server messages (and at most ``APPLY_BUDGET_S`` of applying them) from the reader
   thread's queue. The reader thread owns the socket: it connects (``ViewerClient.connect`` blocks), subscribes, then
   reads every message — replies included — into the queue, so the loop never waits on the network and replies
   are matched here by request id;
3. model changes go to the layout (removed slots freed, edges and groups replaced, new slots placed near their
   neighbours, endpoints of changed edges warmed);
4. one layout step, at most ``STEP_HZ`` per second, and only while some node is warm;
5. ``scene`` when the structure or attributes changed (at most ``SCENE_HZ``), ``positions`` after steps (at most
   ``POSITIONS_HZ``). A send thread writes to the pipe: scene and positions sit in one-slot "latest" buffers, so
   while the render side is not reading only the newest of each waits; status, welcome and answers queue in
   order; pulses queue up to ``MAX_PULSES`` (the oldest are dropped first).

The buffer of the graph around the present time is kept simple: the last ``AT_CACHE`` full graphs received for
``at`` views, by time. Going back to one of those times shows it at once (then the server's fresh answer replaces
it); live and play views are not buffered (the server keeps them and resyncs).

The loop ends on ``quit``, when the render side's end of the pipe closes, or when the parent process is gone;
it closes the server connection and returns, so the process exits.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np
from wiredraw.core.address import DEFAULT_VIZ_PORT
from wiredraw.core.address import parse_server as _parse_server
from wiredraw.core.viewer_client import ViewerClient, ViewerClientError, ViewerRefused
from wiredraw.viz import messages
from wiredraw.viz.layout import ForceLayout
from wiredraw.viz.model import GraphModel, SequenceGap

__all__ = ["Backend", "backend_main", "start_backend"]

def start_backend(*, seed: int = 0) -> tuple[BaseProcess, Connection]:
    """Start the backend process; returns it and the render side's end of the pipe. Closing that end (or
    sending ``quit``) stops the process."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    render_end, backend_end = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=backend_main, args=(backend_end,), kwargs={"seed": seed},
                       name="wiredraw-viz-backend", daemon=True)
    proc.start()
    backend_end.close()  # only the child holds it now: its EOF tells us the child is gone, and vice versa
    return proc, render_end


def backend_main(conn: Connection, seed: int = 0) -> None:
    """The backend process's entry point."""
    Backend(conn, seed=seed).run()


def parse_server(text: str) -> tuple[str, int]:
    """HOST[:PORT] of a viz listener (the port defaults to the viz port, not the probe port)."""
    return _parse_server(text.strip(), DEFAULT_VIZ_PORT)


# -- the pipe, written by one thread ----------------------------------------------------------------------------
class PipeSender:
    """Sends to the render side from its own thread so that a render side that is not reading never blocks the
    loop. ``scene`` and ``positions`` are latest-value slots; other messages queue in order."""

    MAX_PULSES = 2000

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.closed = False  # the render side's end is gone
        self._cond = threading.Condition()
        self._ordered: deque[dict[str, Any]] = deque()
        self._latest: dict[str, dict[str, Any]] = {}
        self._pulses: deque[dict[str, Any]] = deque(maxlen=self.MAX_PULSES)
        self._stopping = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="pipe-sender", daemon=True)
        self._thread.start()

    def send(self, msg: dict[str, Any]) -> None:
        with self._cond:
            kind = msg["kind"]
            if kind in ("scene", "positions"):
                self._latest[kind] = msg
            elif kind == "pulses":
                self._pulses.extend(msg["items"])
            else:
                self._ordered.append(msg)
            self._cond.notify()

    def _next(self) -> dict[str, Any] | None:
        if self._ordered:
            return self._ordered.popleft()
        for kind in ("scene", "positions"):  # a scene before the positions that belong to it
            if kind in self._latest:
                return self._latest.pop(kind)
        if self._pulses:
            items = list(self._pulses)
            self._pulses.clear()
            return {"kind": "pulses", "items": items}
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                msg = self._next()
                while msg is None and not self._stopping:
                    self._cond.wait()
                    msg = self._next()
                if msg is None:
                    return
                self._busy = True
            try:
                self.conn.send(msg)
            except (OSError, EOFError, ValueError):
                self.closed = True
                return
            finally:
                with self._cond:
                    self._busy = False

    def stop(self, timeout: float = 1.0) -> None:
        """Send what is waiting (for at most ``timeout``), then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)


# -- the server connection, read by one thread ------------------------------------------------------------------
class _Connection:
    """One connection attempt and its reader thread; what it hears goes on ``inbox`` as (generation, event,
    payload): ("welcome", welcome), ("choose", welcome: several modules and none named), ("failed", text),
    ("refused", text: retrying will not help), ("message", msg), ("lost", text)."""

    def __init__(self, generation: int, host: str, port: int, token: str, module: str | None,
                 view: Mapping[str, Any], inbox: queue.Queue[tuple[int, str, Any]]) -> None:
        self.generation = generation
        self.client = ViewerClient(host, port, token, timeout=10.0)
        self.module = module
        self.view = dict(view)
        self.inbox = inbox
        self.closing = False
        self.thread = threading.Thread(target=self._run, name=f"viz-reader-{generation}", daemon=True)
        self.thread.start()

    def _put(self, event: str, payload: Any) -> None:
        self.inbox.put((self.generation, event, payload))

    def _run(self) -> None:
        client = self.client
        try:
            welcome = client.connect()
        except ViewerRefused as exc:
            self._put("refused", str(exc))
            client.close()
            return
        except ViewerClientError as exc:
            self._put("failed", str(exc))
            client.close()
            return
        offered = [m.get("slug") for m in welcome.get("modules", [])]
        module = self.module
        if module is None and len(offered) == 1:
            module = offered[0]
        if module is None:  # several on offer: the render side asks the user and logs in again with one
            self._put("choose", {**welcome, "module": None})
            client.close()
            return
        if module not in offered:
            self._put("refused", f"the server has no view for module {module!r}; it offers: "
                                 f"{', '.join(map(str, offered)) or 'none'}")
            client.close()
            return
        self.module = module
        self._put("welcome", {**welcome, "module": module})
        client.timeout = None
        try:
            assert client.sock is not None
            client.wait_forever()  # a quiet live view is not an error
            client.subscribe(module, **subscribe_args(self.view))
            while True:
                # ViewerClient.next_message keeps replies to itself until the next pushed message; read them all
                msg = client.read_message()  # this thread owns the socket (module docstring)
                self._put("message", msg)
        except (ViewerClientError, OSError) as exc:
            if not self.closing:
                self._put("lost", str(exc))
        finally:
            client.close()

    def close(self) -> None:
        self.closing = True
        sock = self.client.sock
        if sock is not None:
            try:
                import socket

                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread's recv
            except OSError:
                pass


def subscribe_args(view: Mapping[str, Any]) -> dict[str, Any]:
    """The subscribe/configure arguments for a render ``view`` command."""
    mode = view.get("mode") or "live"
    out: dict[str, Any] = {"mode": mode, "filter": view.get("filter")}
    if mode in ("at", "play"):
        out["t"] = view.get("t")
    if mode == "play":
        out["speed"] = view.get("speed")
    return {k: v for k, v in out.items() if v is not None}


# -- the loop ----------------------------------------------------------------------------------------------------
class Backend:
    MAX_COMMANDS = 32
    MAX_SERVER_MESSAGES = 50
    APPLY_BUDGET_S = 0.02
    STEP_HZ = 60.0
    SCENE_HZ = 20.0
    POSITIONS_HZ = 60.0
    AT_CACHE = 16
    RECONNECT_S = (1.0, 2.0, 5.0, 10.0)

    def __init__(self, conn: Connection, *, seed: int = 0) -> None:
        self.conn = conn
        self.sender = PipeSender(conn)
        self.model = GraphModel()
        self.layout = ForceLayout(seed=seed)
        self.inbox: queue.Queue[tuple[int, str, Any]] = queue.Queue()
        self.view: dict[str, Any] = {"mode": "live"}
        self.login: dict[str, Any] | None = None
        self.connection: _Connection | None = None
        self.generation = 0
        self.connected = False
        self.awaiting_graph = False  # after a seq gap: diffs are useless until the next full graph
        self.pending: dict[int, dict[str, Any]] = {}  # request id -> render command
        self.at_cache: OrderedDict[float, dict[str, Any]] = OrderedDict()
        self.reconnect_at: float | None = None
        self.failures = 0
        self.running = True
        self._parent = os.getppid()
        self._last_step = self._last_scene = self._last_positions = 0.0
        self._scene_dirty = False
        self._positions_dirty = False
        self._sent_scene = (-1, 0)  # version and slot count of the last scene sent
        self._last_parent_check = 0.0

    # -- main loop ---------------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while self.running:
                self.turn()
                self.wait()
        finally:
            self.shutdown()

    def turn(self) -> None:
        now = time.monotonic()
        self.read_commands()
        if not self.running:
            return
        self.read_server()
        self.update_layout()
        if now - self._last_step >= 1.0 / self.STEP_HZ and self.layout.step():
            self._last_step = now
            self._positions_dirty = True
        self.publish(now)
        if self.reconnect_at is not None and now >= self.reconnect_at:
            self.reconnect_at = None
            self.connect()
        if self.sender.closed:
            self.running = False
        if now - self._last_parent_check > 1.0:
            self._last_parent_check = now
            if os.getppid() != self._parent:  # the render process died without closing the pipe
                self.running = False

    def wait(self) -> None:
        """Sleep until a command may have come, briefly while there is work, longer when idle."""
        busy = (not self.layout.settled) or self._scene_dirty or not self.inbox.empty()
        try:
            self.conn.poll(0.004 if busy else 0.02)
        except (OSError, EOFError):
            self.running = False

    def shutdown(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection.thread.join(2.0)
            self.connection = None
        self.sender.stop(1.0)
        try:
            self.conn.close()
        except OSError:
            pass

    # -- render commands ----------------------------------------------------------------------------------------
    def read_commands(self) -> None:
        for _ in range(self.MAX_COMMANDS):
            try:
                if not self.conn.poll(0):
                    return
                cmd = self.conn.recv()
            except (EOFError, OSError):
                self.running = False  # the render side is gone
                return
            if not isinstance(cmd, dict):
                self.status(f"ignored a command that is not a dict: {type(cmd).__name__}", error=True)
                continue
            self.handle(cmd)
            if not self.running:
                return

    def handle(self, cmd: dict[str, Any]) -> None:
        kind = cmd.get("kind")
        if kind == "quit":
            self.running = False
        elif kind == "login":
            self.login = dict(cmd)
            self.failures = 0
            self.reset_graph()
            self.connect()
        elif kind == "view":
            self.set_view(cmd)
        elif kind == "layout":
            if cmd.get("weight_pull") is not None:
                self.layout.weight_pull = float(np.clip(cmd["weight_pull"], 0.0, 1.0))
            if cmd.get("grouping") is not None:
                self.layout.grouping = float(np.clip(cmd["grouping"], 0.0, 1.0))
            self.layout.warm_all(0.5)
        elif kind == "details":
            self.request(cmd, "details", element=str(cmd.get("id")))
        elif kind == "histogram":
            self.request(cmd, "histogram", bins=int(cmd.get("bins") or 200),
                         **{k: cmd[k] for k in ("from", "to") if cmd.get(k) is not None})
        elif kind == "range":
            self.request(cmd, "range")
        else:
            self.status(f"unknown command kind {kind!r}; expected one of {', '.join(sorted(messages.RENDER_KINDS))}",
                        error=True)

    def set_view(self, cmd: Mapping[str, Any]) -> None:
        mode = cmd.get("mode") or "live"
        if mode not in messages.VIEW_MODES or (mode in ("at", "play") and cmd.get("t") is None):
            self.status(f"bad view {dict(cmd)!r}: mode live, at T or play T [speed]", error=True)
            return
        self.view = {k: cmd.get(k) for k in ("mode", "t", "speed", "filter")}
        if mode == "at":
            cached = self.at_cache.get(float(cmd["t"]))
            if cached is not None and cached.get("filter") == cmd.get("filter"):
                self.at_cache.move_to_end(float(cmd["t"]))
                self.model.apply_graph(cached["graph"])
        if self.connected and self.connection is not None:
            try:
                rid = self.connection.client.request_async("configure", **subscribe_args(self.view))
                self.pending[rid] = {"kind": "configure"}
            except (ViewerClientError, OSError) as exc:
                self.status(f"cannot change the view: {exc}", error=True)

    def request(self, cmd: dict[str, Any], what: str, **args: Any) -> None:
        if not (self.connected and self.connection is not None):
            self.sender.send({"kind": cmd["kind"], "result": None, "error": "not connected to a server",
                              "request": cmd})
            return
        try:
            rid = self.connection.client.request_async(what, **args)
        except (ViewerClientError, OSError) as exc:
            self.sender.send({"kind": cmd["kind"], "result": None, "error": str(exc), "request": cmd})
            return
        self.pending[rid] = cmd

    def status(self, text: str, error: bool = False) -> None:
        self.sender.send(messages.status(text, error))

    # -- the server ---------------------------------------------------------------------------------------------
    def connect(self) -> None:
        if self.login is None:
            return
        if self.connection is not None:
            self.connection.close()
        self.generation += 1
        self.connected = False
        self.pending.clear()
        try:
            host, port = parse_server(str(self.login.get("server") or ""))
        except ValueError as exc:
            self.status(str(exc), error=True)
            return
        self.status(f"connecting to {host}:{port}")
        self.connection = _Connection(self.generation, host, port, str(self.login.get("token") or ""),
                                      self.login.get("module"), self.view, self.inbox)

    def read_server(self) -> None:
        deadline = time.monotonic() + self.APPLY_BUDGET_S
        for _ in range(self.MAX_SERVER_MESSAGES):
            try:
                generation, event, payload = self.inbox.get_nowait()
            except queue.Empty:
                return
            if generation != self.generation:
                continue  # from a connection we already left
            self.on_server(event, payload)
            if time.monotonic() > deadline:
                return

    def on_server(self, event: str, payload: Any) -> None:
        if event == "welcome":
            self.connected = True
            self.failures = 0
            self.awaiting_graph = True
            self.sender.send({"kind": "welcome", "server": payload.get("server"), "modules": payload.get("modules", []),
                              "module": payload.get("module")})
            self.status(f"connected to {payload.get('server', 'the server')}; module {payload.get('module')}")
        elif event == "choose":
            self.connected = False
            self.sender.send({"kind": "welcome", "server": payload.get("server"), "modules": payload.get("modules", []),
                              "module": None})
            self.status("the server offers several modules: choose one")
        elif event == "refused":
            self.connected = False
            text = str(payload)
            self.status(text if "no view for module" in text else f"viewer token refused: {text}", error=True)
        elif event in ("failed", "lost"):
            self.connected = False
            delay = self.RECONNECT_S[min(self.failures, len(self.RECONNECT_S) - 1)]
            self.failures += 1
            what = "connection lost" if event == "lost" else "cannot connect"
            self.status(f"{what}: {payload}; trying again in {delay:g} s", error=True)
            self.reconnect_at = time.monotonic() + delay
        elif event == "message":
            self.on_message(payload)

    def on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "reply":
            cmd = self.pending.pop(msg.get("id", -1), None)
            if cmd is None:
                return
            error = None if msg.get("ok") else str(msg.get("error", "request failed"))
            if cmd["kind"] == "configure":
                if error:
                    self.status(f"the server refused the view: {error}", error=True)
                return
            self.sender.send({"kind": cmd["kind"], "result": msg.get("result"), "error": error, "request": cmd})
        elif kind == "graph":
            if msg.get("mode") == "at" and msg.get("t") is not None:
                self.remember_at(msg)
                if self.view.get("mode") == "at" and float(msg["t"]) != float(self.view.get("t") or 0.0):
                    self.model.seq = msg.get("seq")  # an answer to an older scrub position: keep count only
                    return
            self.model.apply_graph(msg)
            self.awaiting_graph = False
        elif kind == "diff":
            if self.awaiting_graph:
                return
            try:
                pulses = self.model.apply_diff(msg)
            except SequenceGap as exc:
                self.status(f"{exc}; asking for a full graph", error=True)
                self.resubscribe()
                return
            if pulses:
                self.sender.send({"kind": "pulses", "items": pulses})
        elif kind == "error":
            self.status(f"server: {msg.get('reason', msg.get('code', '?'))}", error=bool(msg.get("fatal", False)))

    def resubscribe(self) -> None:
        self.awaiting_graph = True
        if self.connection is not None and self.connection.module is not None:
            try:
                self.connection.client.subscribe(self.connection.module, **subscribe_args(self.view))
            except (ViewerClientError, OSError) as exc:
                self.status(f"cannot resubscribe: {exc}", error=True)

    def remember_at(self, msg: dict[str, Any]) -> None:
        t = float(msg["t"])
        self.at_cache[t] = {"graph": msg, "filter": self.view.get("filter")}
        self.at_cache.move_to_end(t)
        while len(self.at_cache) > self.AT_CACHE:
            self.at_cache.popitem(last=False)

    def reset_graph(self) -> None:
        self.model.clear()
        self.at_cache.clear()

    # -- layout and publishing ----------------------------------------------------------------------------------
    def update_layout(self) -> None:
        ch = self.model.take_changes()
        if not ch:
            return
        layout = self.layout
        if ch.removed:
            layout.remove_nodes(sorted(ch.removed))
        if ch.edges or ch.added or ch.removed:
            edge_index, _, weights, _ = self.model.edge_arrays()
            layout.set_edges(edge_index, weights)
        if ch.added or ch.attrs:
            layout.set_groups(self.model.group_array())
        if ch.added:
            layout.add_nodes(sorted(ch.added))
        warm = ch.edge_slots - ch.added
        if warm:
            layout.reheat(sorted(warm), 0.3)
        self._scene_dirty = True
        self._positions_dirty = True

    def publish(self, now: float) -> None:
        if self._scene_dirty and now - self._last_scene >= 1.0 / self.SCENE_HZ:
            scene = self.model.scene()
            self.sender.send(scene)
            self._sent_scene = (scene["version"], len(scene["ids"]))
            self._scene_dirty = False
            self._last_scene = now
            self._positions_dirty = True
        if self._positions_dirty and now - self._last_positions >= 1.0 / self.POSITIONS_HZ:
            # the positions of the slots of the scene last sent (the render side knows no others yet)
            version, slots = self._sent_scene
            self.sender.send({"kind": "positions", "version": version, "positions": self.layout.positions(slots)})
            self._positions_dirty = False
            self._last_positions = now
