"""``wiredraw viz``: the render process. It owns the present time, draws and takes input; the backend process
(viz/backend.py, started with ``spawn`` before ShowBase) holds the server connection, the graph and the layout.

:class:`ViewerApp` only wires: the scene (viz/scene.py), the panels (viz/panels.py), the camera rig and the keys
(viz/bindings.py) are their own modules, and nothing here relies on ShowBase's injected builtins. Messages from the
backend are drained by one task with a bounded budget per frame, so a burst of data never stalls drawing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from wiredraw.core.filter import FilterError, compile_filter
from wiredraw.viz import messages, palette
from wiredraw.viz.bindings import HELD, load_bindings
from wiredraw.viz.panels import DetailsPanel, FilterPanel, LoginPanel, Timeline, ViewerSettings, fmt_time

DRAIN_BUDGET_S = 0.006  # seconds of backend messages handled per frame, at most
DRAIN_MAX = 64
HISTOGRAM_BINS = 200


@dataclass
class ViewerOptions:
    server: str | None = None
    token: str | None = None
    module: str | None = None
    at: float | None = None
    offscreen: bool = False
    screenshot: Path | None = None
    screenshot_after: float = 8.0
    size: tuple[int, int] = (1280, 720)
    remember: bool = True


class CameraRig:
    """Orbit / pan / zoom around a target point; ``fly_to`` moves the target smoothly."""

    def __init__(self, camera: Any, lens: Any) -> None:
        self.camera, self.lens = camera, lens
        self.target = np.zeros(3)
        self.heading, self.pitch, self.distance = 20.0, -25.0, 14.0
        self._fly: tuple[np.ndarray, np.ndarray, float, float] | None = None
        self.apply()

    def apply(self) -> None:
        h, p = math.radians(self.heading), math.radians(self.pitch)
        offset = np.array([math.sin(h) * math.cos(p), -math.cos(h) * math.cos(p), -math.sin(p)]) * self.distance
        pos = self.target + offset
        self.camera.setPos(*pos)
        self.camera.lookAt(*self.target)

    def orbit(self, dh: float, dp: float) -> None:
        self.heading = (self.heading + dh) % 360
        self.pitch = max(-89.0, min(89.0, self.pitch + dp))
        self.apply()

    def zoom(self, factor: float) -> None:
        self.distance = max(0.5, min(5000.0, self.distance * factor))
        self.apply()

    def pan(self, dx: float, dy: float) -> None:
        quat = self.camera.getQuat()
        right, up = quat.getRight(), quat.getUp()
        scale = self.distance * 0.5
        self.target = self.target - np.array([right[0], right[1], right[2]]) * dx * scale \
            - np.array([up[0], up[1], up[2]]) * dy * scale
        self.apply()

    def frame(self, bounds: tuple[np.ndarray, np.ndarray] | None) -> None:
        if bounds is None:
            return
        lo, hi = bounds
        self.target = (np.asarray(lo) + np.asarray(hi)) / 2
        radius = float(np.linalg.norm(np.asarray(hi) - np.asarray(lo))) / 2
        fov = math.radians(min(self.lens.getFov()[0], self.lens.getFov()[1]))
        self.distance = max(2.0, radius / math.sin(fov / 2) * 1.05)
        self.apply()

    def fly_to(self, point: np.ndarray, seconds: float = 0.6) -> None:
        self._fly = (self.target.copy(), np.asarray(point, float), 0.0, seconds)

    def update(self, dt: float) -> None:
        if self._fly is None:
            return
        start, end, t, total = self._fly
        t = min(total, t + dt)
        k = 0.5 - 0.5 * math.cos(math.pi * t / total)
        self.target = start + (end - start) * k
        self._fly = None if t >= total else (start, end, t, total)
        self.apply()


class ViewerApp:
    def __init__(self, base: Any, conn: Any, options: ViewerOptions, *, clock: Callable[[], float] = time.monotonic):
        from wiredraw.viz.scene import GraphScene, Legend

        self.base, self.conn, self.options, self.clock = base, conn, options, clock
        self.settings = ViewerSettings()
        self.bindings = load_bindings()
        self.scene = GraphScene(base.render, camera=base.cam)
        self.legend = Legend(base.aspect2d, pos=(-base.getAspectRatio() + 0.05, 0.92))
        self.rig = CameraRig(base.camera, base.camLens)
        aspect = base.getAspectRatio()
        self.details = DetailsPanel(base.aspect2d, on_close=self.deselect)
        self.details.root.setPos(aspect - DetailsPanel.WIDTH - 0.02, 0, 0.98)
        self.timeline = Timeline(base.aspect2d, on_scrub=self.scrub, on_play=self.play, on_pause=self.pause,
                                 on_live=self.live, width=2 * aspect - 0.04)
        self.timeline.root.setPos(0, 0, -1.0)
        self.filters = FilterPanel(base.aspect2d, on_filter=self.set_filter, on_grouping=self.set_grouping,
                                   on_search=self.search)
        self.filters.root.setPos(-aspect + 0.02, 0, 0.3)
        from direct.gui.OnscreenText import OnscreenText  # type: ignore[import-untyped]

        self.status_text = OnscreenText(parent=base.aspect2d, text="", pos=(0, 0.93), scale=0.045,
                                        fg=palette.TEXT_DIM, mayChange=True)
        saved = self.settings.load() if options.remember else {}
        self.login = LoginPanel(base.aspect2d, self.connect, self.choose_module,
                                server=options.server or saved.get("server", "127.0.0.1:4431"),
                                token=options.token or saved.get("token", ""))
        # state
        self.mode = "at" if options.at is not None else "live"
        self.present: float | None = options.at
        self.speed = 1.0
        self.filter = ""
        self.grouping = True
        self.weight_pull = 0.5
        self.welcome: dict[str, Any] | None = None
        self.module: str | None = options.module
        self.selected: str | None = None
        self.last_scene: dict[str, Any] | None = None
        self.positions_seen = 0
        self.framed = False
        self.user_moved_camera = False
        self._last_frame = 0.0
        self.started = clock()
        self.last_range_request = 0.0
        self.done: int | None = None  # exit code once finished (offscreen screenshot)
        self._held: set[str] = set()
        self._press: tuple[float, float] | None = None
        self._drag: str | None = None
        self._last_mouse: tuple[float, float] | None = None
        self._bind_input()
        base.taskMgr.add(self._frame_task, "wiredraw-frame")
        if options.server and options.token:
            self.login.hide()
            self.connect(options.server, options.token)
        else:
            self.status("")

    # -- backend ---------------------------------------------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        try:
            self.conn.send(msg)
        except (OSError, ValueError):
            self.status("the viewer's backend process is gone; restart wiredraw viz", error=True)

    def connect(self, server: str, token: str) -> None:
        self._pending_login = (server, token)
        self.status(f"connecting to {server} ...")
        self.send(self._view_msg())
        self.send(messages.login(server, token, self.module))

    def choose_module(self, slug: str) -> None:
        self.module = slug
        server, token = self._pending_login
        self.send(messages.login(server, token, slug))

    def _view_msg(self) -> dict[str, Any]:
        t = self.present if self.mode != "live" else None
        return messages.view(self.mode, t, self.speed if self.mode == "play" else None, self.filter or None)

    def drain(self) -> None:
        """Handle backend messages for at most DRAIN_BUDGET_S (bounded work per frame)."""
        deadline = self.clock() + DRAIN_BUDGET_S
        for _ in range(DRAIN_MAX):
            try:
                if not self.conn.poll():
                    return
                msg = self.conn.recv()
            except (EOFError, OSError):
                self.status("the viewer's backend process stopped", error=True)
                return
            self.handle(msg)
            if self.clock() > deadline:
                return

    def handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("kind")
        if kind == "status":
            self.status(msg.get("text", ""), error=bool(msg.get("error")))
            if msg.get("error") and self.welcome is None:
                self.login.show()
                self.login.show_error(msg.get("text", ""))
        elif kind == "welcome":
            self.on_welcome(msg)
        elif kind == "scene":
            self.on_scene(msg)
        elif kind == "positions":
            self.scene.set_positions(msg["positions"])
            self.positions_seen += 1
            now = self.clock()
            # follow the layout as it unfolds until the user takes the camera
            if not self.user_moved_camera and now - self._last_frame >= 0.5:
                self.rig.frame(self.scene.bounds())
                self._last_frame = now
                self.framed = True
        elif kind == "pulses":
            self.scene.pulse(msg.get("items", []))
        elif kind == "details":
            if msg.get("error"):
                self.status(f"details: {msg['error']}", error=True)
            else:
                self.details.show_details(msg.get("result"), (msg.get("request") or {}).get("id", ""))
        elif kind == "range":
            result = msg.get("result")
            if result:
                self.timeline.set_range(result["first"], result["last"])
                self.send(messages.histogram(result["first"], result["last"], HISTOGRAM_BINS))
        elif kind == "histogram":
            if msg.get("result") is not None:
                self.timeline.set_histogram(msg["result"])

    def on_welcome(self, msg: dict[str, Any]) -> None:
        self.welcome = msg
        modules = msg.get("modules", [])
        if msg.get("module"):
            self.module = msg["module"]
            self.login.hide()
            self.status(f"{msg.get('server', 'server')}: {self.module}")
            if self.options.remember and self.options.server is None:
                server, token = self._pending_login
                self.settings.save(server, token, self.module or "")
            self.send(messages.range_())
        else:
            self.login.show()
            self.login.show_modules(modules)

    def on_scene(self, msg: dict[str, Any]) -> None:
        self.last_scene = msg
        self.scene.set_scene(msg)
        # (the legend keeps each distinct category once; the backend lists them all for the toggles)
        self.legend.set_categories(msg.get("categories", []), msg.get("edge_categories", []))
        self.filters.set_categories(msg.get("all_categories", []))
        if self.mode == "live" and msg.get("t") is not None:
            self.present = msg["t"]

    # -- time (the render owns the present) -----------------------------------------------------------------
    def scrub(self, t: float) -> None:
        self.mode, self.present = "at", t
        self.send(self._view_msg())

    def play(self, speed: float) -> None:
        if self.present is None and self.timeline.range is not None:
            self.present = self.timeline.range[0]
        if self.present is None:
            return
        self.mode, self.speed = "play", speed
        self.send(self._view_msg())

    def pause(self) -> None:
        if self.present is None:
            return
        self.mode = "at"
        self.send(self._view_msg())

    def live(self) -> None:
        self.mode = "live"
        self.send(self._view_msg())
        self.send(messages.range_())

    def toggle_play(self) -> None:
        if self.mode == "play":
            self.pause()
        else:
            self.play(self.timeline.speed)

    # -- filters, grouping, search --------------------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        try:
            compile_filter(text)
        except FilterError as exc:
            self.filters.show_error(str(exc))
            return
        self.filter = text
        self.send(self._view_msg())

    def set_grouping(self, on: bool) -> None:
        self.grouping = on
        self.send(messages.layout(grouping=1.0 if on else 0.0))

    def set_weight_pull(self, value: float) -> None:
        self.weight_pull = min(1.0, max(0.0, value))
        self.send(messages.layout(weight_pull=self.weight_pull))
        self.status(f"traffic weight pull: {self.weight_pull:.1f}")

    def search(self, text: str) -> str | None:
        """Select the node whose id or label matches (exact first, then substring) and fly to it."""
        text = text.strip().lower()
        if not text:
            return None
        ids, labels = self.scene.ids, self.scene.labels
        found = None
        for exact in (True, False):
            for i, nid in enumerate(ids):
                if nid is None:
                    continue
                label = (labels[i] or "").lower()
                if (nid.lower() == text or label == text) if exact else (text in nid.lower() or text in label):
                    found = i
                    break
            if found is not None:
                break
        if found is None:
            self.status(f"no node matches {text!r}", error=True)
            return None
        nid = ids[found]
        assert nid is not None
        self.select(nid)
        self.user_moved_camera = True
        self.rig.fly_to(self.scene.positions[found])
        return nid

    # -- selection ------------------------------------------------------------------------------------------
    def click_at(self, mouse: tuple[float, float]) -> str | None:
        """A click at ``mouse`` (-1..1 screen coordinates): select what is there, or nothing."""
        hit = self.scene.pick(mouse, self.base.cam, self.base.camLens)
        if hit is None:
            self.deselect()
            return None
        self.select(hit[1])
        return hit[1]

    def select(self, element_id: str) -> None:
        self.selected = element_id
        self.scene.select(element_id)
        self.send(messages.details(element_id))

    def deselect(self) -> None:
        self.selected = None
        self.scene.select(None)
        self.details.hide()

    def status(self, text: str, error: bool = False) -> None:
        self.status_text.setText(text)
        self.status_text.setFg(palette.PULSE["error"] if error else palette.TEXT_DIM)

    # -- input ----------------------------------------------------------------------------------------------
    def _bind_input(self) -> None:
        b = self.base
        actions: dict[str, Callable[[], None]] = {
            "frame_all": lambda: self.rig.frame(self.scene.bounds()),
            "toggle_play": self.toggle_play,
            "live": self.live,
            "close_details": self.deselect,
            "toggle_grouping": lambda: self.set_grouping(not self.grouping),
            "weight_less": lambda: self.set_weight_pull(self.weight_pull - 0.1),
            "weight_more": lambda: self.set_weight_pull(self.weight_pull + 0.1),
            "toggle_panels": self._toggle_panels,
        }
        for action, key in self.bindings.items():
            if action in HELD:
                b.accept(key, self._held.add, [action])
                b.accept(key + "-repeat", self._held.add, [action])
                b.accept(key + "-up", self._held.discard, [action])
            elif action in actions:
                b.accept(key, actions[action])
        b.accept("mouse1", self._mouse_down, ["orbit"])
        b.accept("mouse3", self._mouse_down, ["pan"])
        b.accept("mouse1-up", self._mouse_up)
        b.accept("mouse3-up", self._mouse_up)
        b.accept("wheel_up", self._wheel, [0.88])
        b.accept("wheel_down", self._wheel, [1 / 0.88])

    def _wheel(self, factor: float) -> None:
        self.user_moved_camera = True
        self.rig.zoom(factor)

    def _toggle_panels(self) -> None:
        for w in (self.filters.root, self.legend.root):
            w.show() if w.isHidden() else w.hide()

    def _mouse(self) -> tuple[float, float] | None:
        mw = self.base.mouseWatcherNode
        if mw is None or not mw.hasMouse():
            return None
        m = mw.getMouse()
        return (m.getX(), m.getY())

    def _mouse_down(self, how: str) -> None:
        mw = self.base.mouseWatcherNode
        if mw is not None and mw.isOverRegion():  # on a panel: DirectGUI has it
            return
        self._press = self._last_mouse = self._mouse()
        self._drag = how
        self.user_moved_camera = True

    def _mouse_up(self) -> None:
        pos = self._mouse()
        if self._drag == "orbit" and self._press is not None and pos is not None and \
                math.dist(self._press, pos) < 0.01:
            self.click_at(pos)
        self._press = self._drag = None

    def _frame_task(self, task: Any) -> Any:
        dt = min(0.1, self.base.clock.getDt() if hasattr(self.base, "clock") else 0.016)
        self.drain()
        pos = self._mouse()
        if self._drag is not None and pos is not None and self._last_mouse is not None:
            dx, dy = pos[0] - self._last_mouse[0], pos[1] - self._last_mouse[1]
            if self._drag == "orbit":
                self.rig.orbit(-dx * 120, dy * 90)
            else:
                self.rig.pan(dx, dy)
            self._last_mouse = pos
        elif pos is not None and self._drag is None and task.frame % 3 == 0:
            hit = self.scene.pick(pos, self.base.cam, self.base.camLens)
            self.scene.hover(hit[1] if hit else None)
        held = self._held
        if held:
            self.user_moved_camera = True
            self.rig.orbit(60 * dt * (("orbit_right" in held) - ("orbit_left" in held)),
                           45 * dt * (("orbit_up" in held) - ("orbit_down" in held)))
            if "zoom_in" in held or "zoom_out" in held:
                self.rig.zoom(1 - dt if "zoom_in" in held else 1 + dt)
        self.rig.update(dt)
        self.scene.update(dt)
        if self.mode == "play" and self.present is not None:
            self.present += dt * self.speed
        self.timeline.set_present(self.present, self.mode)
        now = self.clock()
        if self.welcome is not None and self.mode == "live" and now - self.last_range_request > 10:
            self.last_range_request = now
            self.send(messages.range_())
        if self.options.screenshot is not None and self.done is None and \
                now - self.started >= self.options.screenshot_after:
            self.take_screenshot()
        return task.cont

    def destroy(self) -> None:
        """Take everything this app added off the ShowBase (tests reuse one ShowBase)."""
        self.base.taskMgr.remove("wiredraw-frame")
        for key in [*self.bindings.values(), "mouse1", "mouse3", "mouse1-up", "mouse3-up", "wheel_up", "wheel_down"]:
            for suffix in ("", "-repeat", "-up"):
                self.base.ignore(key + suffix)
        for panel in (self.login.root, self.details.root, self.timeline.root, self.filters.root):
            panel.destroy()
        self.status_text.destroy()
        self.legend.destroy()
        self.scene.destroy()

    def take_screenshot(self) -> None:
        from wiredraw.viz.offscreen import render_frames, save_screenshot

        assert self.options.screenshot is not None
        if not self.framed:
            self.rig.frame(self.scene.bounds())
        render_frames(self.base, 2)
        save_screenshot(self.base, self.options.screenshot)
        nodes = sum(1 for i in self.scene.ids if i is not None)
        print(f"wiredraw viz: screenshot {self.options.screenshot} ({nodes} nodes, at {fmt_time(self.present)})",
              flush=True)
        self.done = 0 if nodes else 1


def run_viewer(options: ViewerOptions) -> int:
    """Start the backend (spawn, before ShowBase), then the render loop; returns the exit code."""
    from wiredraw.viz.backend import start_backend

    proc, conn = start_backend()
    try:
        w, h = options.size
        if options.offscreen:
            from wiredraw.viz.offscreen import open_offscreen

            base = open_offscreen(w, h)
        else:
            from panda3d.core import loadPrcFileData  # type: ignore[import-untyped]

            loadPrcFileData("wiredraw-viz", f"win-size {w} {h}\nwindow-title wiredraw\nsync-video true\n"
                                            "notify-level-device fatal\naudio-library-name null")
            from direct.showbase.ShowBase import ShowBase  # type: ignore[import-untyped]

            base = ShowBase()
            base.setBackgroundColor(*palette.BACKGROUND)
            base.disableMouse()
        app = ViewerApp(base, conn, options)
        if options.offscreen:
            limit = time.monotonic() + options.screenshot_after + 60
            while app.done is None and time.monotonic() < limit:
                base.taskMgr.step()
                time.sleep(0.005)
            code = app.done if app.done is not None else 1
        else:
            base.exitFunc = lambda: None
            try:
                base.run()
            except SystemExit:
                pass
            code = 0
        try:
            base.destroy()
        except Exception:  # noqa: BLE001 (shutting down: nothing more to do)
            pass
        return code
    finally:
        try:
            conn.send(messages.quit_())
        except (OSError, ValueError):
            pass
        proc.join(3)
        if proc.is_alive():
            proc.kill()
            proc.join(3)
