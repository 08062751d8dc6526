"""The details panel (viz/panels.py DetailsPanel, laid out by viz/details_layout.py), rendered offscreen on the shared
ShowBase and read back from its text nodes: tables of any number of columns, decodes tiled side by side, long values
cut with their full text reachable. The details come from the modules' own views: net_zeek's over real Zeek logs
(../shared/data), proc_events' over a shell session written through its key schema.

Screenshots of the panel (twice the window's resolution, to be read) go to ``$WIREDRAW_SHOTS`` when set, else to
the test's tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from viz_store import DATA, Ingester, replay, run
from wiredraw.viz.details_layout import ELLIPSIS, cell_text, cut, details_text, fit_columns, section_rows

ROLLING = DATA / "tsv" / "rita_proxy_rolling"
HOUR = "16:00:00-17:00:00"
needs_data = pytest.mark.skipif(not ROLLING.is_dir(), reason=f"real Zeek data not found at {ROLLING} (../shared/data)")


# --- fixtures and readers ----------------------------------------------------------------------------------------


@pytest.fixture
def panel(panda_base) -> Iterator[Any]:
    """A DetailsPanel where the viewer puts it (app.py: the top right corner)."""
    from wiredraw.viz.panels import DetailsPanel

    p = DetailsPanel(panda_base.aspect2d)
    p.root.setPos(panda_base.getAspectRatio() - DetailsPanel.WIDTH - 0.02, 0, 0.98)
    yield p
    p.root.destroy()


@pytest.fixture
def zeek_view(redis_client, store) -> Any:
    """net_zeek's view over an hour of real proxy traffic (conn, http, dns, ssl, x509 logs linked by uid)."""
    from wiredraw.plugins.net_zeek.view import NetZeekView

    ingest = Ingester(redis_client)
    files = sorted(p for p in ROLLING.glob(f"*.{HOUR}.log.gz") if p.name.split(".")[0] in
                   ("conn", "http", "dns", "ssl", "x509"))
    for batch in replay(files):
        ingest(batch)
    view = NetZeekView(store, {})
    view.span = run(view.time_range())
    return view


def zeek_details(view: Any, element: str) -> dict[str, Any]:
    details = run(view.details(element, *view.span))
    assert details is not None, element
    return details.to_wire()  # what the viewer receives (spec/viewer.md "details")


def shots_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("WIREDRAW_SHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def shot(base: Any, path: Path, factor: int = 2) -> Path:
    """The 2D layer (panels) drawn into a buffer ``factor`` times the window's size, saved as PNG: small text is
    readable there (the window itself is 640x480)."""
    from panda3d.core import (  # type: ignore[import-untyped]
        Camera,
        FrameBufferProperties,
        GraphicsPipe,
        NodePath,
        OrthographicLens,
        PNMImage,
        WindowProperties,
    )
    from wiredraw.viz.offscreen import render_frames

    w, h = base.win.getXSize() * factor, base.win.getYSize() * factor
    buf = base.graphicsEngine.makeOutput(base.pipe, "details-shot", -10, FrameBufferProperties(),
                                         WindowProperties.size(w, h), GraphicsPipe.BFRefuseWindow, base.win.getGsg(),
                                         base.win)
    assert buf is not None
    cam = NodePath(Camera("details-shot"))
    lens = OrthographicLens()
    lens.setFilmSize(2, 2)  # render2d's -1..1, as camera2d sees it
    lens.setNearFar(-1000, 1000)
    cam.node().setLens(lens)
    cam.reparentTo(base.render2d)
    try:
        buf.makeDisplayRegion().setCamera(cam)
        buf.setClearColor(base.win.getClearColor())
        render_frames(base, 2)
        img = PNMImage()
        assert buf.getScreenshot(img) and img.write(str(path))
    finally:
        base.graphicsEngine.removeWindow(buf)
        cam.removeNode()
    return path


def box_np(panel: Any, box: Any) -> Any:
    np = panel.canvas.find(f"section-{box.index}")
    assert not np.isEmpty()
    return np


def rendered_rows(panel: Any, box: Any) -> list[list[str]]:
    """A box's rows as drawn: one TextNode per column (header apart), its lines the rows."""
    np = box_np(panel, box)
    columns = {int(n.getName().split("-")[1]): n.node().getText().split("\n") for n in np.findAllMatches("column-*")}
    rows = [list(r) for r in zip(*(columns[j] for j in sorted(columns)), strict=True)]
    headers = {int(n.getName().split("-")[1]): n.node().getText() for n in np.findAllMatches("header-*")}
    return ([[headers[j] for j in sorted(headers)]] if headers else []) + rows


def drawn_as(shown: str, full: str) -> bool:
    return shown == full or (shown.endswith(ELLIPSIS) and full.startswith(shown[: -len(ELLIPSIS)]))


def assert_table_drawn(panel: Any, box: Any, section: dict[str, Any]) -> list[list[str]]:
    """Every row and column of ``section`` is drawn, each cell in full or cut (then reachable), columns apart."""
    header, rows = section_rows(section)
    expected = [[cell_text(c) for c in r] for r in ([header] if header is not None else []) + rows]
    drawn = rendered_rows(panel, box)
    assert len(drawn) == len(expected) and all(len(d) == len(e) for d, e in zip(drawn, expected, strict=True))
    for d, e in zip(drawn, expected, strict=True):
        assert all(drawn_as(s, f) for s, f in zip(d, e, strict=True)), (d, e)
    cut_cells = {id(c) for c, _ in panel.cells}
    for col in box.columns:
        assert all(id(c) in cut_cells for c in col.cells if c.cut)
    # the columns do not overlap as drawn, lie inside the box, and their rows line up (one baseline per row)
    np = box_np(panel, box)
    card_lo, card_hi = np.find("background").getTightBounds(np)
    spans, baselines = [], set()
    for j in range(len(box.columns)):
        nodes = [n for n in (np.find(f"header-{j}"), np.find(f"column-{j}")) if not n.isEmpty()]
        bounds = [n.getTightBounds(np) for n in nodes if n.node().getText().strip()]
        if bounds:
            spans.append((min(lo.x for lo, _ in bounds), max(hi.x for _, hi in bounds)))
        data = np.find(f"column-{j}")
        if not data.isEmpty():
            baselines.add(round(data.getZ(), 6))
    assert len(baselines) == 1
    for (_, right), (left, _) in zip(spans, spans[1:], strict=False):
        assert right < left, spans
    assert card_lo.x <= spans[0][0] and spans[-1][1] <= card_hi.x
    return drawn


def drawn_boxes(panel: Any) -> list[tuple[str, float, float, float, float]]:
    """(title, left, right, bottom, top) of every box as drawn, in the canvas's coordinates."""
    out = []
    for box in panel.layout.boxes:
        lo, hi = box_np(panel, box).find("background").getTightBounds(panel.canvas)
        out.append((box.title.full, lo.x, hi.x, lo.z, hi.z))
    return out


# --- tables of any width -----------------------------------------------------------------------------------------


@needs_data
def test_a_hosts_five_column_peers_table_shows_all_its_rows_and_columns(panel, zeek_view, panda_base, tmp_path):
    from wiredraw.viz.offscreen import render_frames

    details = zeek_details(zeek_view, "10.0.0.238")
    panel.show_details(details, "10.0.0.238")
    render_frames(panda_base, 2)
    assert panel.section_titles == [s["title"] for s in details["sections"]]
    peers = next(b for b in panel.layout.boxes if b.title.full.startswith("peers"))
    section = details["sections"][peers.index]
    assert section["rows"][0] == ["peer", "direction", "conns", "bytes", "service"] and len(section["rows"]) == 21
    drawn = assert_table_drawn(panel, peers, section)
    assert drawn[0] == ["peer", "direction", "conns", "bytes", "service"]
    assert [r[0] for r in drawn[1:]] == [r[0] for r in section["rows"][1:]]  # every peer, in the module's order
    assert all(cell_text(v) == d for r, dr in zip(section["rows"][1:], drawn[1:], strict=True)
               for v, d in zip(r, dr, strict=True))  # nothing of this table needed cutting
    host = next(b for b in panel.layout.boxes if b.title.full == "host")
    assert_table_drawn(panel, host, details["sections"][host.index])  # key/value sections as before
    png = shot(panda_base, shots_dir(tmp_path) / "details-host-peers.png")
    assert png.stat().st_size > 10_000


def test_proc_events_programs_and_children_tables_show_every_row(panel, panda_base, redis_client, store, tmp_path):
    from wiredraw.plugins.proc_events.module import ProcEventsModule
    from wiredraw.plugins.proc_events.view import ProcEventsView
    from wiredraw.testing import write_messages
    from wiredraw.viz.offscreen import render_frames

    module = ProcEventsModule()
    for script in module.scripts:
        redis_client.script_load(script.source)
    t0 = 1_714_424_000.0
    cc = ["cc", "-O2", "-g", "-Wall", "-Wextra", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2",
          "-I/home/alice/src/wiredraw/build/include", "-c", "-o", "build/obj/ingest.o", "src/ingest.c"]

    def events(kind: str, *messages: dict[str, Any]) -> None:
        write_messages(redis_client, module, kind, list(messages), "build-1")

    def program(pid: int, t: float, argv: list[str], exe: str) -> dict[str, Any]:
        return {"pid": pid, "start": t0 if pid == 200 else t, "t": t, "exe": exe, "argv": argv, "uid": 1000,
                "user": "alice", "cwd": "/home/alice/src/wiredraw", "comm": exe.rsplit("/", 1)[-1][:15]}

    events("fork", {"pid": 200, "ppid": 100, "start": t0})
    events("exec", program(200, t0, ["sh", "-c", "make -j2 all"], "/usr/bin/dash"),
           program(200, t0 + 0.01, ["make", "-j2", "all"], "/usr/bin/make"))
    events("fork", *({"pid": 201 + i, "ppid": 200, "start": t0 + 0.1 + i} for i in range(3)))
    events("exec", *(program(201 + i, t0 + 0.1 + i, cc[:-1] + [f"src/part{i}.c"], "/usr/bin/x86_64-linux-gnu-gcc-12")
                     for i in range(3)))
    events("exit", *({"pid": 201 + i, "start": t0 + 0.1 + i, "end": t0 + 0.9 + i, "code": i % 2} for i in range(3)))
    view = ProcEventsView(store, {"fade": 30})
    make = f"build-1:200:{t0:.2f}"
    details = run(view.details(make, t0, t0 + 10)).to_wire()
    panel.show_details(details, make)
    render_frames(panda_base, 2)
    titles = [s["title"] for s in details["sections"]]
    assert panel.section_titles == titles and titles[1:] == ["programs (execs seen)", "children in view"]
    programs, children = panel.layout.boxes[1], panel.layout.boxes[2]
    drawn = assert_table_drawn(panel, programs, details["sections"][1])
    assert drawn[0] == ["t", "exe", "argv", "uid", "cwd"] and len(drawn) == 3  # header + sh, then make
    drawn = assert_table_drawn(panel, children, details["sections"][2])
    assert drawn[0] == ["id", "label", "start", "end", "exit code"] and len(drawn) == 4
    assert [r[4] for r in drawn[1:]] == ["0", "1", "0"]
    shot(panda_base, shots_dir(tmp_path) / "details-proc-events.png")


# --- decodes side by side, scrolling -----------------------------------------------------------------------------


@needs_data
def test_an_edges_decodes_tile_side_by_side_in_rows_that_fill_the_panel(panel, zeek_view, panda_base, tmp_path):
    from wiredraw.viz.offscreen import render_frames

    details = zeek_details(zeek_view, "10.0.0.111>10.0.0.238")  # the proxy: conn, http and ssl of each connection
    panel.show_details(details, "10.0.0.111>10.0.0.238")
    render_frames(panda_base, 2)
    assert panel.section_titles == [s["title"] for s in details["sections"]]
    boxes = drawn_boxes(panel)
    assert len(boxes) == len(details["sections"]) > 20
    eps = 1e-4
    inner_right = panel.WIDTH - panel.SCROLLBAR - panel.MARGIN
    rows: dict[float, list[tuple[str, float, float, float, float]]] = {}
    for b in boxes:
        assert panel.MARGIN - eps <= b[1] and b[2] <= inner_right + eps  # inside the panel, left of the scroll bar
        rows.setdefault(round(b[4], 4), []).append(b)
    for a in boxes:  # boxes that overlap vertically stand in one row: same top, same bottom, apart side by side
        for b in boxes:
            if a is not b and a[3] < b[4] - eps and b[3] < a[4] - eps:
                assert abs(a[4] - b[4]) < eps and abs(a[3] - b[3]) < eps, (a, b)
                assert a[2] <= b[1] + eps or b[2] <= a[1] + eps, (a, b)
    assert sum(len(r) > 1 for r in rows.values()) >= len(rows) // 2  # tiled, not one long column
    for row in rows.values():  # each row fills the panel's width
        assert min(b[1] for b in row) == pytest.approx(panel.MARGIN, abs=eps)
        assert max(b[2] for b in row) == pytest.approx(inner_right, abs=eps)
    # one connection's decodes next to each other: the same uid in two boxes of one row
    uids = [[b[0].split()[1] for b in row if b[0].split()[0] in ("conn", "http", "ssl")] for row in rows.values()]
    assert any(len(set(u)) < len(u) for u in uids)
    for box in panel.layout.boxes[:6]:
        assert_table_drawn(panel, box, details["sections"][box.index])  # records as key/value, cut or whole
    shot(panda_base, shots_dir(tmp_path) / "details-edge-decodes.png")
    # far more than the panel's height: the scroll bar and the wheel move through it
    canvas = panel.root["canvasSize"]
    assert canvas[3] - canvas[2] > 5 * panel.HEIGHT and canvas[2] <= min(b[3] for b in boxes)
    assert not panel.root.verticalScroll.isHidden()
    z = panel.canvas.getZ(panel.root)
    from direct.showbase.MessengerGlobal import messenger  # type: ignore[import-untyped]

    messenger.send(f"press-wheel_down-{panel.root.guiId}", [None])
    panda_base.taskMgr.step()
    render_frames(panda_base, 1)
    assert float(panel.root.verticalScroll["value"]) > 0 and panel.canvas.getZ(panel.root) > z
    panel.scroll(-1)
    assert float(panel.root.verticalScroll["value"]) == pytest.approx(0, abs=1e-6)


@needs_data
def test_a_connection_with_ssl_and_its_certificate_tiles_its_records(panel, zeek_view, panda_base, tmp_path):
    from wiredraw.plugins.net_zeek.view import NetZeekView
    from wiredraw.viz.offscreen import render_frames

    assert isinstance(zeek_view, NetZeekView)
    graph = run(zeek_view.graph(*zeek_view.span))
    tls = [eid for eid, e in sorted(graph.edges.items()) if "ssl" in (e.attrs.get("services") or {})]
    details, eid = next((d, eid) for eid in tls for d in [zeek_details(zeek_view, eid)]
                        if any(s["title"].startswith("x509 ") for s in d["sections"]))
    panel.show_details(details, eid)
    render_frames(panda_base, 2)
    kinds = [t.split()[0] for t in panel.section_titles]
    assert {"connections", "conn", "ssl", "x509"} <= set(kinds)
    tops = {b[0]: b[4] for b in drawn_boxes(panel)}
    assert len(set(tops.values())) < len(tops)  # some of them side by side
    x509 = next(b for b in panel.layout.boxes if b.title.full.startswith("x509 "))
    assert_table_drawn(panel, x509, details["sections"][x509.index])
    shot(panda_base, shots_dir(tmp_path) / "details-tls-x509.png")


# --- long values -------------------------------------------------------------------------------------------------


class Mouse:
    """A mouse over the offscreen window: Panda's VirtualMouse feeding a MouseWatcher that the 2D layer's PGTop
    watches, as a window's mouse does (regions, enter/exit, presses, suppression), its buttons thrown with "vm-"."""

    def __init__(self, base: Any) -> None:
        from panda3d.core import ButtonThrower, MouseWatcher, VirtualMouse  # type: ignore[import-untyped]

        self.base = base
        self.size = (base.win.getXSize(), base.win.getYSize())
        self.vm = VirtualMouse("test-mouse")
        self.vm.setWindowSize(*self.size)
        self.vm.setMouseOn(True)
        self.np = base.dataRoot.attachNewNode(self.vm)
        self.watcher = MouseWatcher("test-mouse-watcher")
        thrower = ButtonThrower("test-mouse-buttons")
        thrower.setPrefix("vm-")
        self.np.attachNewNode(self.watcher).attachNewNode(thrower)
        self.before = base.aspect2d.node().getMouseWatcher()
        base.aspect2d.node().setMouseWatcher(self.watcher)

    def move_to(self, np: Any, x: float, z: float) -> None:
        """Over the point (x, z) of ``np``'s 2D coordinates."""
        from panda3d.core import Point3  # type: ignore[import-untyped]

        pt = self.base.render2d.getRelativePoint(np, Point3(x, 0, z))
        self.vm.setMousePos(int((pt.x + 1) / 2 * self.size[0]), int((1 - pt.z) / 2 * self.size[1]))
        self.step()

    def click(self, button: Any) -> None:
        self.vm.pressButton(button)
        self.vm.releaseButton(button)
        self.step()

    def step(self) -> None:
        for _ in range(3):  # the data graph, the 2D layer's cull (regions) and the events, each in turn
            self.base.taskMgr.step()

    def close(self) -> None:
        if self.before is not None:
            self.base.aspect2d.node().setMouseWatcher(self.before)
        # else PGTop keeps this watcher (it cannot be given none back): fed no mouse from here, it sends nothing
        self.np.removeNode()


@pytest.fixture
def mouse(panda_base) -> Iterator[Mouse]:
    m = Mouse(panda_base)
    yield m
    m.close()


@needs_data
def test_a_long_value_is_cut_and_its_full_text_shows_on_hover_and_stays_on_click(panel, zeek_view, panda_base,
                                                                                  mouse, tmp_path):
    from panda3d.core import MouseButton, Point3  # type: ignore[import-untyped]

    details = zeek_details(zeek_view, "10.0.0.111>10.0.0.238")
    panel.show_details(details, "10.0.0.111>10.0.0.238")
    http = next(b for b in panel.layout.boxes if b.title.full.startswith("http "))
    agent = details["sections"][http.index]["record"]["user_agent"]
    assert len(agent) > 60
    row = list(details["sections"][http.index]["record"]).index("user_agent")
    cell = http.columns[1].cells[row]
    assert cell.full == agent and cell.cut and cell.shown.endswith(ELLIPSIS)
    assert rendered_rows(panel, http)[row] == ["user_agent", cell.shown]  # the cut text is what is drawn
    region = next(r for c, r in panel.cells if c is cell)
    # its hover region covers the drawn line of that row
    left, right, bottom, top = region.node().getFrame()
    column = box_np(panel, http).find("column-1")
    baseline = column.getZ() - row * panel.metrics.row
    assert bottom < baseline < top and left == pytest.approx(column.getX())

    mouse.move_to(region, (left + right) / 2, (bottom + top) / 2)  # hover: the tooltip has the whole value
    assert mouse.watcher.getOverRegion().getName() == region.node().getId()
    assert panel.tooltip_text() == agent
    lo, hi = panel.tooltip_np.getTightBounds(panel.root)
    assert 0 <= lo.x and hi.x <= panel.WIDTH and hi.z <= panel.root.getRelativePoint(region, Point3(0, 0, bottom)).z
    shot(panda_base, shots_dir(tmp_path) / "details-tooltip.png")
    mouse.move_to(panel.root, panel.WIDTH / 2, -panel.HEIGHT + 0.01)  # off it, still over the panel
    assert mouse.watcher.getOverRegion().getName() == panel.root.guiId and panel.tooltip_text() is None
    mouse.move_to(region, (left + right) / 2, (bottom + top) / 2)
    mouse.click(MouseButton.one())  # a click pins it: leaving keeps it
    mouse.move_to(panel.root, panel.WIDTH / 2, -panel.HEIGHT + 0.01)
    assert panel.tooltip_text() == agent
    mouse.move_to(region, (left + right) / 2, (bottom + top) / 2)
    mouse.click(MouseButton.one())
    mouse.move_to(panel.root, panel.WIDTH / 2, -panel.HEIGHT + 0.01)
    assert panel.tooltip_text() is None

    # the wheel over the panel scrolls it and never reaches the 3D view; the hover regions move with the rows
    wheeled: list[str] = []
    panel.root.accept("vm-wheel_down", wheeled.append, ["3d"])
    far = next((c, r) for c, r in panel.cells if r.getZ(panel.canvas) + r.node().getFrame()[3] < -3 * panel.HEIGHT)
    for _ in range(3):
        mouse.click(MouseButton.wheelDown())
    assert float(panel.root.verticalScroll["value"]) > 0 and wheeled == []
    l2, r2, b2, t2 = far[1].node().getFrame()
    for _ in range(200):
        if -panel.HEIGHT + 0.1 < panel.root.getRelativePoint(far[1], Point3(l2, 0, b2)).z < -0.1:
            break
        mouse.click(MouseButton.wheelDown())
    mouse.move_to(far[1], (l2 + r2) / 2, (b2 + t2) / 2)
    assert mouse.watcher.getOverRegion().getName() == far[1].node().getId() and panel.tooltip_text() == far[0].full
    mouse.move_to(panel.root, -0.2, -0.5)  # beside the panel: the wheel is the 3D view's
    mouse.click(MouseButton.wheelDown())
    assert wheeled == ["3d"]
    panel.root.ignore("vm-wheel_down")

    # the text copy has every value in full
    text = panel.text()
    assert agent in text and details["title"] in text
    assert f"user_agent\t{agent}" in text.splitlines()
    panel.hide()
    assert panel.root.isHidden() and panel.tooltip_text() is None


# --- key/value, records and odd shapes ---------------------------------------------------------------------------


def test_key_value_records_empty_ragged_and_missing_details(panel, panda_base):
    from wiredraw.viz.offscreen import render_frames

    details = {  # http_traefik's shapes: a summary, pairs, a record; then odd ones a module might send
        "id": "svc@docker", "title": "whoami → svc@docker", "on": "node", "sections": [
            {"title": "Summary", "kind": "table", "t": None,
             "rows": [["kind", "service"], ["requests in view", 3], ["mean duration (ms)", 1.5], ["first", None]]},
            {"title": "Recent requests (1)", "kind": "table", "t": None, "rows": [["GET /api", "200 in 1.2 ms"]]},
            {"title": "GET /api -> 200", "kind": "record", "t": 1.0,
             "record": {"ClientHost": "10.0.0.5", "RequestPath": "/api\n?x=1", "Tags": ["a", "b"]}},
            {"title": "children in view", "kind": "table", "t": None,
             "rows": [["id", "label", "start", "end", "exit code"]]},
            {"title": "ragged", "kind": "table", "t": None, "rows": [["a", 1, 2], ["b"], "lone"]},
        ]}
    panel.show_details(details, "svc@docker")
    render_frames(panda_base, 2)
    summary, pairs, record, children, ragged = panel.layout.boxes
    assert rendered_rows(panel, summary) == [["kind", "service"], ["requests in view", "3"],
                                             ["mean duration (ms)", "1.5"], ["first", "-"]]
    assert rendered_rows(panel, pairs) == [["GET /api", "200 in 1.2 ms"]]
    assert rendered_rows(panel, record) == [["ClientHost", "10.0.0.5"], ["RequestPath", "/api\\n?x=1"],
                                            ["Tags", '["a", "b"]']]  # one line per field, control chars escaped
    assert rendered_rows(panel, children) == [["id", "label", "start", "end", "exit code"]]
    none, head = box_np(panel, children).find("none"), box_np(panel, children).find("header-0")
    assert none.node().getText() == "none" and none.getZ() == pytest.approx(head.getZ() - panel.metrics.row
                                                                            - panel.metrics.header_gap)
    assert children.width > panel.WIDTH / 2  # a header of five columns gets the room a table needs
    assert rendered_rows(panel, ragged) == [["a", "1", "2"], ["b", "", ""], ["lone", "", ""]]
    assert panel.canvas.find("details-title").node().getText() == "whoami -> svc@docker"  # no arrow in the font
    assert panel.title == "whoami → svc@docker"
    assert "RequestPath\t/api\n?x=1" in panel.text()
    panel.show_details(None, "10.9.9.9")
    assert panel.title == "10.9.9.9: nothing stored for this element in the time shown"
    assert panel.layout.boxes == [] and panel.cells == [] and not panel.root.isHidden()


# --- the geometry alone ------------------------------------------------------------------------------------------


class CharMeasure:
    """Every character 0.5 wide."""

    def width(self, text: str) -> float:
        return 0.5 * len(text)

    def printable(self, text: str) -> str:
        return text


def test_fit_columns_keeps_what_fits_and_cuts_the_widest_first():
    assert fit_columns([0.1, 0.2], 1.0, 0.05) == [0.1, 0.2]
    assert fit_columns([0.1, 0.5, 0.9], 0.9, 0.05) == pytest.approx([0.1, 0.4, 0.4])
    assert fit_columns([0.3, 0.3], 0.4, 0.05) == pytest.approx([0.2, 0.2])
    assert fit_columns([0.3] * 10, 0.2, 0.05) == pytest.approx([0.05] * 10)  # never below the minimum


def test_cut_keeps_the_longest_start_that_fits_with_an_ellipsis():
    m = CharMeasure()
    assert cut("abcdef", 3.0, m) == "abcdef"
    assert cut("abcdefgh", 3.0, m) == "abcde" + ELLIPSIS  # 5 characters and the ellipsis: 3.0
    assert cut("ab   cdefgh", 3.0, m) == "ab" + ELLIPSIS  # no trailing blanks before it
    assert cut("x" * 100_000, 3.0, m) == "xxxxx" + ELLIPSIS


def test_section_rows_headers_and_text():
    assert section_rows({"kind": "table", "rows": [["peer", "direction", "conns"], ["10.0.0.1", "in", 3]]}) == (
        ["peer", "direction", "conns"], [["10.0.0.1", "in", 3]])
    assert section_rows({"kind": "table", "rows": [["a", "b"], ["c", "d"]]}) == (None, [["a", "b"], ["c", "d"]])
    assert section_rows({"kind": "table", "rows": [[1, "x", "y"]]}) == (None, [[1, "x", "y"]])  # numbers: data
    assert section_rows({"kind": "record", "record": {"ts": 1.5}}) == (None, [["ts", 1.5]])
    assert [cell_text(v) for v in (None, "s", 3, 1.25, True, [1, "a"], {"k": 1})] == [
        "-", "s", "3", "1.25", "true", '[1, "a"]', '{"k": 1}']
    text = details_text({"title": "T", "sections": [{"title": "S", "kind": "table", "rows": [["k", None]]}]})
    assert text == "T\n\nS\nk\t-\n"
    assert details_text(None, "x") == "x: nothing stored for this element in the time shown\n"
