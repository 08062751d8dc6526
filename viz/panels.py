"""The viewer's 2D panels (DirectGUI in aspect2d): login, details, timeline with histogram, filters and search.

Each panel is a small class that owns its widgets under a parent NodePath and talks to the app only through the
callbacks it is given: no panel knows the backend, the scene or ShowBase's injected builtins (STYLE.md).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from direct.gui import DirectGuiGlobals as DGG  # type: ignore[import-untyped]
from direct.gui.DirectGui import (  # type: ignore[import-untyped]
    DirectButton,
    DirectCheckButton,
    DirectEntry,
    DirectFrame,
    DirectScrolledFrame,
    DirectSlider,
)
from direct.gui.OnscreenText import OnscreenText  # type: ignore[import-untyped]
from panda3d.core import (  # type: ignore[import-untyped]
    CardMaker,
    Geom,
    GeomNode,
    GeomTriangles,
    GeomVertexData,
    GeomVertexFormat,
    GeomVertexWriter,
    MouseButton,
    MouseWatcherRegion,
    NodePath,
    OmniBoundingVolume,
    PGItem,
    Point3,
    TextNode,
)
from wiredraw.viz.bindings import bindings_path
from wiredraw.viz.details_layout import ELLIPSIS, Box, Cell, Layout, Metrics, details_text, one_line, tile
from wiredraw.viz.palette import TEXT
from wiredraw.viz.palette import TEXT_DIM as DIM

PANEL = (0.08, 0.09, 0.12, 0.92)
ERROR = (1.0, 0.45, 0.4, 1)
BUTTON = (0.2, 0.24, 0.3, 1)


def _button(parent: NodePath, text: str, command: Callable[[], None], pos: tuple[float, float], *,
            scale: float = 0.045, width: float | None = None) -> Any:
    b = DirectButton(parent=parent, text=text, command=command, scale=scale, pos=(pos[0], 0, pos[1]),
                     frameColor=BUTTON, text_fg=TEXT, relief=DGG.FLAT, pad=(0.4, 0.25))
    if width is not None:
        b["frameSize"] = (-width / 2 / scale, width / 2 / scale, -0.5, 1.0)
    return b


def fmt_time(t: float | None) -> str:
    if t is None or not math.isfinite(t):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + "Z"


# -- login ------------------------------------------------------------------------------------------------------


class ViewerSettings:
    """Server, token and module remembered between runs (the token in a 0600 file, never in a log)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or bindings_path().with_name("viewer.json")  # beside keys.toml

    def load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}

    def save(self, server: str, token: str, module: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a leftover .tmp keeps its mode through O_CREAT; the token must not be readable
        with os.fdopen(fd, "w") as f:
            json.dump({"server": server, "token": token, "module": module}, f)
        os.replace(tmp, self.path)


class LoginPanel:
    """Server address, viewer token, then the module picked from what the server offers. Errors in words."""

    def __init__(self, parent: NodePath, on_connect: Callable[[str, str], None],
                 on_module: Callable[[str], None], *, server: str = "127.0.0.1:4431", token: str = "") -> None:
        self.on_connect, self.on_module = on_connect, on_module
        self.root = DirectFrame(parent=parent, frameColor=PANEL, frameSize=(-0.75, 0.75, -0.5, 0.5))
        OnscreenText(parent=self.root, text="wiredraw", pos=(0, 0.36), scale=0.08, fg=TEXT)
        OnscreenText(parent=self.root, text="server", pos=(-0.68, 0.2), scale=0.045, fg=DIM, align=TextNode.ALeft)
        self.server = DirectEntry(parent=self.root, initialText=server, scale=0.045, width=20, pos=(-0.45, 0, 0.2),
                                  numLines=1, frameColor=BUTTON, text_fg=TEXT, command=lambda _t: self.connect())
        OnscreenText(parent=self.root, text="token", pos=(-0.68, 0.08), scale=0.045, fg=DIM, align=TextNode.ALeft)
        self.token = DirectEntry(parent=self.root, initialText=token, scale=0.045, width=20, pos=(-0.45, 0, 0.08),
                                 numLines=1, obscured=1, frameColor=BUTTON, text_fg=TEXT,
                                 command=lambda _t: self.connect())
        self.connect_button = _button(self.root, "Connect", self.connect, (0.0, -0.06))
        self.message = OnscreenText(parent=self.root, text="", pos=(0, -0.17), scale=0.04, fg=DIM, wordwrap=30,
                                    mayChange=True)
        self.modules_root = self.root.attachNewNode("modules")
        self.module_buttons: dict[str, Any] = {}

    def connect(self) -> None:
        server, token = self.server.get().strip(), self.token.get().strip()
        if not server or not token:
            self.show_error("Enter the server's viz address (host:port) and a viewer token.")
            return
        self.show_status(f"connecting to {server} ...")
        self.on_connect(server, token)

    def show_status(self, text: str) -> None:
        self.message.setText(text)
        self.message.setFg(DIM)

    def show_error(self, text: str) -> None:
        self.message.setText(text)
        self.message.setFg(ERROR)

    def show_modules(self, modules: Sequence[dict[str, Any]]) -> None:
        """Buttons for the modules the server offers (picking one calls ``on_module``)."""
        self.modules_root.getChildren().detach()
        self.module_buttons.clear()
        if not modules:
            self.show_error("The server offers no module with a view.")
            return
        self.show_status("Pick a module:")
        for i, m in enumerate(modules):
            slug = str(m.get("slug"))
            self.module_buttons[slug] = _button(self.modules_root, slug, functools.partial(self.on_module, slug),
                                                (-0.45 + 0.45 * (i % 3), -0.3 - 0.1 * (i // 3)))

    def hide(self) -> None:
        self.root.hide()

    def show(self) -> None:
        self.root.show()


# -- details ----------------------------------------------------------------------------------------------------


class _FontMeasure:
    """Text widths from the panel's font; characters it has no glyph for replaced (the default font has no arrows)."""

    REPLACE = {"→": "->", "←": "<-", "↔": "<->", "⇒": "=>"}

    def __init__(self, font: Any = None) -> None:
        self.node = TextNode("details-measure")
        if font is not None:
            self.node.setFont(font)
        self._glyphs: dict[str, bool] = {}

    def width(self, text: str) -> float:
        return float(self.node.calcWidth(text))

    def printable(self, text: str) -> str:
        text = one_line(text)
        if text.isascii():
            return text
        return "".join(ch if ch.isascii() or self._has(ch) else self.REPLACE.get(ch, "?") for ch in text)

    def _has(self, ch: str) -> bool:
        has = self._glyphs.get(ch)
        if has is None:
            has = self._glyphs[ch] = bool(self.node.hasCharacter(ch))
        return has


ACCENT = (0.55, 0.8, 1.0, 1)  # section titles and table headers
BOX = (0.13, 0.15, 0.2, 0.95)
BAND = (0.19, 0.22, 0.29, 1)  # every other row of a box, so that a row reads across its columns
TOOLTIP = (0.02, 0.03, 0.05, 0.97)
TOOLTIP_CHARS = 1500  # a tooltip shows this much of a value at most; text() has it all
# what DirectGUI's suppressMouse does: a click or wheel over a cell is the panel's, never the 3D view's
SUPPRESS = MouseWatcherRegion.SFMouseButton | MouseWatcherRegion.SFMousePosition


class DetailsPanel:
    """A node's or edge's details: every section the module sends as a box (a table of any number of columns, or a
    record's fields), the boxes tiled side by side in rows that fill the panel's width, then wrapping, scrollable
    (scroll bar or mouse wheel); viz/details_layout.py does the geometry. A value too long for its column is cut
    with an ellipsis: hovering it shows the whole value in a tooltip, a click pins the tooltip (again: unpins).
    Panda3D 1.10 has no clipboard API, so nothing is copied to the system clipboard; :meth:`text` gives the
    whole details as text."""

    WIDTH = 1.4
    HEIGHT = 1.5
    SCROLLBAR = 0.04
    MARGIN = 0.02  # around the canvas's content
    TITLE_SCALE = 0.045

    def __init__(self, parent: NodePath, on_close: Callable[[], None] | None = None, *, font: Any = None) -> None:
        self.font = font
        self.measure = _FontMeasure(font)
        probe = TextNode("details-probe")
        if font is not None:
            probe.setFont(font)
        probe.setText("Ag")
        self.metrics = Metrics(line=float(probe.getLineHeight()), ascent=float(probe.getTop()))
        self.root = DirectScrolledFrame(parent=parent, frameColor=PANEL, frameSize=(0, self.WIDTH, -self.HEIGHT, 0),
                                        canvasSize=(0, self.WIDTH - self.SCROLLBAR, -self.HEIGHT, 0),
                                        scrollBarWidth=self.SCROLLBAR, verticalScroll_frameColor=BUTTON,
                                        horizontalScroll_relief=None, state=DGG.NORMAL)  # the wheel scrolls it
        self.canvas = self.root.getCanvas()
        self.details: dict[str, Any] | None = None
        self.element_id = ""
        self.title = ""
        self.section_titles: list[str] = []
        self.layout = Layout()
        self.cells: list[tuple[Cell, NodePath]] = []  # the cut cells (and titles), each with its hover region
        self.hovered: int | None = None
        self.pinned: int | None = None
        self._events: list[str] = []
        self._close = _button(self.root, "x", on_close or self.hide, (self.WIDTH - 0.08, -0.05), scale=0.04)
        self.tooltip = TextNode("details-tooltip")
        if font is not None:
            self.tooltip.setFont(font)
        self.tooltip.setTextColor(*TEXT)
        self.tooltip.setCardColor(*TOOLTIP)
        self.tooltip.setCardAsMargin(0.4, 0.4, 0.3, 0.3)
        self.tooltip.setWordwrap((self.WIDTH - 0.06) / self.metrics.cell_scale)
        self.tooltip_np = self.root.attachNewNode(self.tooltip)
        self.tooltip_np.setScale(self.metrics.cell_scale)
        self.tooltip_np.setBin("gui-popup", 0)
        self.tooltip_np.hide()
        for button, step in ((MouseButton.wheelUp(), -1), (MouseButton.wheelDown(), 1)):
            self.root.bind(f"press-{button.getName()}-", self.scroll, [step])
        self.root.hide()

    # -- content ---------------------------------------------------------------------------------------------
    def show_details(self, details: dict[str, Any] | None, element_id: str = "") -> None:
        self._clear()
        self.details, self.element_id = details, element_id
        m = self.metrics
        inner = self.WIDTH - self.SCROLLBAR - 2 * self.MARGIN
        if details is None:
            self.title = f"{element_id}: nothing stored for this element in the time shown"
        else:
            self.title = str(details.get("title", element_id))
        title = self._text(self.canvas, "details-title", self.measure.printable(self.title), self.TITLE_SCALE, TEXT,
                           wrap=(inner - 0.08) / self.TITLE_SCALE)  # clear of the close button
        title.setPos(self.MARGIN, 0, -self.MARGIN - m.ascent * self.TITLE_SCALE)
        top = -self.MARGIN - title.node().getNumRows() * m.line * self.TITLE_SCALE - 0.01
        self.layout = tile(details or {}, inner, self.measure, m, top)
        self.section_titles = [b.title.full for b in self.layout.boxes]
        for box in self.layout.boxes:
            self._draw_box(box)
        height = max(self.HEIGHT, -self.layout.bottom + self.MARGIN)
        self.root["canvasSize"] = (0, self.WIDTH - self.SCROLLBAR, -height, 0)
        self.root.verticalScroll["value"] = 0
        self.root.show()

    def text(self) -> str:
        """What is shown, as plain text with every value in full (tab-separated rows)."""
        return details_text(self.details, self.element_id)

    def _draw_box(self, box: Box) -> None:
        m = self.metrics
        np = self.canvas.attachNewNode(f"section-{box.index}")
        np.setPos(self.MARGIN + box.x, 0, box.y)
        background = np.attachNewNode("background")
        _card(background, (0, box.width, -box.height, 0), BOX)
        first = 1 if box.header else 0
        for i in range(first + 1, box.rows, 2):
            _card(background, (m.pad / 2, box.width - m.pad / 2, box.row_top(i + 1, m), box.row_top(i, m)), BAND)
        if box.header:
            line = box.row_top(1, m) + m.header_gap / 2
            _card(background, (m.pad, box.width - m.pad, line - 0.0025, line), ACCENT)
        background.flattenStrong()  # one Geom per box: the cards never move
        title = self._text(np, "title", box.title.shown, m.title_scale, ACCENT)
        title.setPos(m.pad, 0, -m.pad - m.ascent * m.title_scale)
        if box.title.cut:
            self._hover_region(np, box.title, (m.pad, box.width - m.pad, -m.pad - m.title_row, -m.pad))
        if box.empty:
            self._text(np, "none", "none", m.cell_scale, DIM).setPos(
                m.pad, 0, box.row_top(first, m) - m.ascent * m.cell_scale)
        for j, col in enumerate(box.columns):
            left = m.pad + col.x
            align, x = (TextNode.ARight, left + col.width) if col.numeric else (TextNode.ALeft, left)
            if box.header:
                self._text(np, f"header-{j}", col.cells[0].shown, m.cell_scale, ACCENT, align=align).setPos(
                    x, 0, box.row_top(0, m) - m.ascent * m.cell_scale)
            data = col.cells[first:]
            if data:
                color = DIM if box.keyed and j == 0 else TEXT
                self._text(np, f"column-{j}", "\n".join(c.shown for c in data), m.cell_scale, color,
                           align=align).setPos(x, 0, box.row_top(first, m) - m.ascent * m.cell_scale)
            for i, c in enumerate(col.cells):
                if c.cut:
                    bottom = box.row_top(i, m) - m.row
                    self._hover_region(np, c, (left, left + col.width, bottom, box.row_top(i, m)))

    def _text(self, parent: NodePath, name: str, text: str, scale: float, color: tuple[float, ...], *,
              align: int = TextNode.ALeft, wrap: float | None = None) -> NodePath:
        node = TextNode(name)
        if self.font is not None:
            node.setFont(self.font)
        node.setText(text)
        node.setTextColor(*color)
        node.setAlign(align)
        if wrap is not None:
            node.setWordwrap(wrap)
        np = parent.attachNewNode(node)
        np.setScale(scale)
        return np

    # -- the full value of a cut cell ------------------------------------------------------------------------
    def _hover_region(self, parent: NodePath, cell: Cell, frame: tuple[float, float, float, float]) -> None:
        item = PGItem(f"cell-{len(self.cells)}")
        item.setFrame(*frame)
        item.setActive(True)
        item.setSuppressFlags(SUPPRESS)
        item.setBounds(OmniBoundingVolume())  # it draws nothing: without bounds the cull pass skips its region
        k = len(self.cells)
        self.cells.append((cell, parent.attachNewNode(item)))
        for event, handler, args in ((item.getEnterEvent(), self.enter, [k]), (item.getExitEvent(), self.leave, [k]),
                                     (item.getPressEvent(MouseButton.one()), self.pin, [k]),
                                     (item.getPressEvent(MouseButton.wheelUp()), self.scroll, [-1]),
                                     (item.getPressEvent(MouseButton.wheelDown()), self.scroll, [1])):
            self.root.accept(event, handler, args)
            self._events.append(event)

    def enter(self, k: int, _param: Any = None) -> None:
        """The mouse is over cut cell ``k``: its tooltip (unless another one is pinned)."""
        self.hovered = k
        if self.pinned is None:
            self._show_tooltip(k)

    def leave(self, k: int, _param: Any = None) -> None:
        if self.hovered == k:
            self.hovered = None
        if self.pinned is None:
            self.tooltip_np.hide()

    def pin(self, k: int, _param: Any = None) -> None:
        """A click on cut cell ``k``: its tooltip stays until the next click on it (or on another cut cell)."""
        if self.pinned == k:
            self.pinned = None
            if self.hovered != k:
                self.tooltip_np.hide()
            return
        self.pinned = k
        self._show_tooltip(k)

    def tooltip_text(self) -> str | None:
        return None if self.tooltip_np.isHidden() else self.tooltip.getText()

    def _show_tooltip(self, k: int) -> None:
        cell, region = self.cells[k]
        full = cell.full if len(cell.full) <= TOOLTIP_CHARS else cell.full[:TOOLTIP_CHARS] + ELLIPSIS
        self.tooltip.setText("\n".join(self.measure.printable(line) for line in full.split("\n")))
        left, right, bottom, top = region.node().getFrame()
        cell_bottom = self.root.getRelativePoint(region, Point3(left, 0, bottom))
        cell_top = self.root.getRelativePoint(region, Point3(left, 0, top))
        cl, cr, cb, ct = self.tooltip.getCardActual()
        s = self.metrics.cell_scale
        x = min(max(cell_bottom.x, 0.01), self.WIDTH - 0.01 - (cr - cl) * s) - cl * s
        z = cell_bottom.z - 0.004 - ct * s
        if z + cb * s < -self.HEIGHT + 0.01:  # no room below the cell: above it
            z = cell_top.z + 0.004 - cb * s
        self.tooltip_np.setPos(x, 0, z)
        self.tooltip_np.show()

    def scroll(self, step: int, _param: Any = None) -> None:
        """The mouse wheel over the panel: a tenth of the panel's height per step."""
        bar = self.root.verticalScroll
        canvas = self.root["canvasSize"]
        overflow = (canvas[3] - canvas[2]) - self.HEIGHT
        if overflow <= 0:
            return
        value = float(bar["value"]) + step * 0.1 * self.HEIGHT / overflow
        bar["value"] = min(1.0, max(0.0, value))
        self.tooltip_np.hide()
        self.pinned = None

    # -- life ------------------------------------------------------------------------------------------------
    def _clear(self) -> None:
        for event in self._events:
            self.root.ignore(event)
        self._events.clear()
        self.cells.clear()
        self.hovered = self.pinned = None
        self.tooltip_np.hide()
        for child in self.canvas.getChildren():
            child.removeNode()

    def hide(self) -> None:
        self.pinned = None
        self.tooltip_np.hide()
        self.root.hide()


def _card(parent: NodePath, frame: tuple[float, float, float, float], color: tuple[float, ...]) -> NodePath:
    cm = CardMaker("card")
    cm.setFrame(*frame)
    cm.setColor(*color)
    return parent.attachNewNode(cm.generate())


# -- timeline ---------------------------------------------------------------------------------------------------


class Timeline:
    """Bottom bar: rewind, play, pause, fast-forward, live; a scrubber over the stored range with the module's
    histogram drawn across it; the present time. Callbacks: ``on_scrub(t)``, ``on_play(speed)``, ``on_pause()``,
    ``on_live()``."""

    SPEEDS = (1.0, 10.0, 60.0, 600.0, 3600.0)

    def __init__(self, parent: NodePath, *, on_scrub: Callable[[float], None], on_play: Callable[[float], None],
                 on_pause: Callable[[], None], on_live: Callable[[], None], width: float = 2.6) -> None:
        self.on_scrub, self.on_play, self.on_pause, self.on_live = on_scrub, on_play, on_pause, on_live
        self.width = width
        self.range: tuple[float, float] | None = None
        self.present: float | None = None
        self.speed = 1.0
        self.mode = "live"
        self.bars: list[float] = []
        self._set_value: float | None = None
        self.root = DirectFrame(parent=parent, frameColor=PANEL, frameSize=(-width / 2, width / 2, 0, 0.24))
        self.hist_np = self.root.attachNewNode("histogram")
        self.slider = DirectSlider(parent=self.root, range=(0, 1), value=1, pageSize=0.01,
                                   scale=(width / 2 - 0.05, 1, 0.3), pos=(0, 0, 0.09),
                                   frameColor=(0, 0, 0, 0), thumb_frameColor=(0.9, 0.75, 0.3, 1),
                                   thumb_relief=DGG.FLAT, command=self._slid)
        x = -width / 2 + 0.12
        self.buttons = {}
        for name, label, fn in (("rewind", "<<", self.rewind), ("play", ">", self.play), ("pause", "||", self.pause),
                                ("ffwd", ">>", self.fast_forward), ("live", "live", self.live)):
            self.buttons[name] = _button(self.root, label, fn, (x, 0.025), scale=0.04)
            x += 0.14
        self.label = OnscreenText(parent=self.root, text="live", pos=(width / 2 - 0.05, 0.015), scale=0.04, fg=TEXT,
                                  align=TextNode.ARight, mayChange=True)

    # state from the app
    def set_range(self, first: float, last: float) -> None:
        self.range = (first, max(last, first + 1e-6))

    def set_histogram(self, bins: Sequence[dict[str, Any]], key: str = "conns") -> None:
        """Bars across the scrubber, heights scaled to the largest bin: the ``key`` counter when the module has it
        (net_zeek's conns), else the sum of the module's counters (e.g. proc_events' forks + execs + exits)."""
        def height(b: dict[str, Any]) -> float:
            if key in b:
                return float(b.get(key) or 0)
            return float(sum(v for k, v in b.items() if k not in ("t0", "t1") and isinstance(v, int | float)))

        self.bars = [height(b) for b in bins]
        self.hist_np.getChildren().detach()
        if not any(v > 0 for v in self.bars):
            return  # nothing to draw (an empty Geom crashes the software renderer)
        top = max(self.bars) or 1.0
        n = len(self.bars)
        x0, x1, base, height = -self.width / 2 + 0.05, self.width / 2 - 0.05, 0.06, 0.16
        vdata = GeomVertexData("hist", GeomVertexFormat.getV3c4(), Geom.UHStatic)
        vw, cw = GeomVertexWriter(vdata, "vertex"), GeomVertexWriter(vdata, "color")
        tris = GeomTriangles(Geom.UHStatic)
        w = (x1 - x0) / n
        for i, v in enumerate(self.bars):
            h = height * v / top
            if h <= 0:
                continue
            left, right = x0 + i * w, x0 + (i + 1) * w - w * 0.15
            start = vw.getWriteRow()
            for x, z in ((left, base), (right, base), (right, base + h), (left, base + h)):
                vw.addData3(x, 0, z)
                cw.addData4(0.35, 0.55, 0.85, 0.8)
            tris.addVertices(start, start + 1, start + 2)
            tris.addVertices(start, start + 2, start + 3)
        geom = Geom(vdata)
        geom.addPrimitive(tris)
        node = GeomNode("histogram-bars")
        node.addGeom(geom)
        self.hist_np.attachNewNode(node)

    def set_present(self, t: float | None, mode: str) -> None:
        self.present, self.mode = t, mode
        state = {"live": "live", "at": "paused", "play": f"playing x{self.speed:g}"}.get(mode, mode)
        self.label.setText(f"{fmt_time(t)}  {state}")
        if t is not None and self.range is not None:
            first, last = self.range
            value = min(1.0, max(0.0, (t - first) / (last - first)))
            if abs(value - float(self.slider["value"])) > 1e-9:
                # DirectSlider runs its command on the next frame, for our own settings too: remember ours
                self._set_value = value
                self.slider["value"] = value

    def time_at(self, fraction: float) -> float | None:
        if self.range is None:
            return None
        first, last = self.range
        return first + (last - first) * min(1.0, max(0.0, fraction))

    # user actions
    def _slid(self) -> None:
        value = float(self.slider["value"])
        if self._set_value is not None and abs(value - self._set_value) < 1e-5:  # the slider keeps float32
            return  # the echo of set_present, not the user
        t = self.time_at(float(self.slider["value"]))
        if t is not None:
            self.on_scrub(t)

    def play(self) -> None:
        self.on_play(self.speed)

    def pause(self) -> None:
        self.on_pause()

    def fast_forward(self) -> None:
        i = self.SPEEDS.index(self.speed) if self.speed in self.SPEEDS else 0
        self.speed = self.SPEEDS[min(i + 1, len(self.SPEEDS) - 1)]
        self.on_play(self.speed)

    def rewind(self) -> None:
        """Back by a tenth of the range (or a minute), paused there."""
        if self.present is None or self.range is None:
            return
        step = max(60.0, (self.range[1] - self.range[0]) / 10)
        self.on_scrub(max(self.range[0], self.present - step))

    def live(self) -> None:
        self.speed = 1.0
        self.on_live()


# -- filters and search -----------------------------------------------------------------------------------------


class FilterPanel:
    """Checkboxes for the categories present (unchecked = suppressed, as Traffic Map does), a free filter
    expression, grouping on/off and a search box. ``on_filter(text)`` gets the combined filter expression."""

    def __init__(self, parent: NodePath, *, on_filter: Callable[[str], None], on_grouping: Callable[[bool], None],
                 on_search: Callable[[str], None]) -> None:
        self.on_filter, self.on_grouping, self.on_search = on_filter, on_grouping, on_search
        self.root = DirectFrame(parent=parent, frameColor=PANEL, frameSize=(0, 0.8, -0.9, 0))
        OnscreenText(parent=self.root, text="search", pos=(0.03, -0.06), scale=0.04, fg=DIM, align=TextNode.ALeft)
        self.search = DirectEntry(parent=self.root, scale=0.04, width=15, pos=(0.03, 0, -0.12), numLines=1,
                                  frameColor=BUTTON, text_fg=TEXT, command=lambda t: self.on_search(t.strip()))
        OnscreenText(parent=self.root, text="filter", pos=(0.03, -0.2), scale=0.04, fg=DIM, align=TextNode.ALeft)
        self.expression = DirectEntry(parent=self.root, scale=0.04, width=15, pos=(0.03, 0, -0.26), numLines=1,
                                      frameColor=BUTTON, text_fg=TEXT, command=lambda _t: self.apply())
        self.grouping = DirectCheckButton(parent=self.root, text="grouping", scale=0.04, pos=(0.2, 0, -0.34),
                                          indicatorValue=1, text_fg=TEXT, frameColor=(0, 0, 0, 0),
                                          command=lambda status: self.on_grouping(bool(status)))
        self.error = OnscreenText(parent=self.root, text="", pos=(0.03, -0.42), scale=0.035, fg=ERROR,
                                  align=TextNode.ALeft, wordwrap=20, mayChange=True)
        self.boxes_root = self.root.attachNewNode("categories")
        self.boxes: dict[str, Any] = {}
        self.suppressed: set[str] = set()

    def set_categories(self, categories: Sequence[str]) -> None:
        """One checkbox per category present; existing choices are kept."""
        wanted = sorted(set(categories))
        if wanted == sorted(self.boxes):
            return
        self.boxes_root.getChildren().detach()
        self.boxes.clear()
        for i, cat in enumerate(wanted):
            box = DirectCheckButton(parent=self.boxes_root, text=cat or "(none)", scale=0.035,
                                    pos=(0.2 + 0.38 * (i % 2), 0, -0.5 - 0.06 * (i // 2)), text_fg=TEXT,
                                    indicatorValue=0 if cat in self.suppressed else 1, frameColor=(0, 0, 0, 0),
                                    command=lambda status, c=cat: self._toggle(c, bool(status)))
            self.boxes[cat] = box

    def _toggle(self, category: str, shown: bool) -> None:
        if shown:
            self.suppressed.discard(category)
        else:
            self.suppressed.add(category)
        self.apply()

    def combined(self) -> str:
        parts = []
        if self.suppressed:
            items = ", ".join(json.dumps(c) for c in sorted(self.suppressed))
            parts.append(f"category not in [{items}]")
        free = self.expression.get().strip()
        if free:
            parts.append(f"({free})")
        return " and ".join(parts)

    def apply(self) -> None:
        self.error.setText("")
        self.on_filter(self.combined())

    def show_error(self, text: str) -> None:
        self.error.setText(text)
