"""The viewer as a whole, headless: one ShowBase (tests/conftest.py), the real backend process (spawn), a real
server holding real Zeek logs. Login refusal in words, picking with details, the timeline against `query`,
and `wiredraw demo --offscreen --screenshot`."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from processes import ZEEK_TSV, ServedZeek, World, dev_env, short_dir

DATA = ZEEK_TSV
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real Zeek data not found at {DATA} (../shared/data)")


@pytest.fixture(scope="module")
def served() -> Iterator[ServedZeek]:
    world = World(short_dir())
    try:
        yield ServedZeek(world)
    finally:
        world.close()


@pytest.fixture
def viewer(panda_base, tmp_path, monkeypatch):
    """Make a ViewerApp on the shared ShowBase with a fresh backend process; everything is taken down after."""
    from wiredraw.viz.app import ViewerApp, ViewerOptions
    from wiredraw.viz.backend import start_backend

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # remembered settings go here, not to ~
    made: list[tuple[Any, Any, Any]] = []

    def make(**options: Any) -> Any:
        proc, conn = start_backend()
        app = ViewerApp(panda_base, conn, ViewerOptions(**options))
        made.append((app, proc, conn))
        return app

    yield make
    for app, proc, conn in made:
        app.destroy()
        try:
            conn.send({"kind": "quit"})
        except OSError:
            pass
        proc.join(5)
        if proc.is_alive():
            proc.kill()
        assert not proc.is_alive()


def pump(app: Any, until: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.base.taskMgr.step()
        value = until()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; status: {app.status_text.getText()!r}")


def scene_nodes(app: Any) -> set[str]:
    return {i for i in app.scene.ids if i is not None}


def test_login_screen_reports_a_refused_token_in_words(viewer, served):
    app = viewer()
    assert not app.login.root.isHidden()  # no server/token given: the login screen
    app.login.server.enterText(served.viz)
    app.login.token.enterText("wdv_not-a-real-token")
    app.login.connect()
    text = pump(app, lambda: "refused" in app.login.message.getText() and app.login.message.getText(), 30,
                "the refusal")
    assert "token" in text and "Traceback" not in text
    assert not app.login.root.isHidden()


def test_login_screen_says_when_it_cannot_connect(viewer):
    app = viewer()
    app.connect("127.0.0.1:9", "wdv_whatever")  # nothing listens on the discard port
    text = pump(app, lambda: "connect" in app.login.message.getText() and app.login.message.getText(), 30,
                "the connection error")
    assert "127.0.0.1:9" in text


def test_click_selects_a_node_and_shows_its_details_and_empty_space_selects_nothing(viewer, served):
    app = viewer(server=served.viz, token=served.token, module="net_zeek")
    pump(app, lambda: app.welcome is not None and len(scene_nodes(app)) > 5 and app.positions_seen > 10, 60,
         "a scene with positions")
    app.user_moved_camera = True  # hold the camera still from here
    app.rig.frame(app.scene.bounds())
    app.base.graphicsEngine.renderFrame()
    # the biggest node: projected into the view, then clicked
    sizes = np.asarray(app.scene.sizes)
    order = sorted((i for i, n in enumerate(app.scene.ids) if n is not None), key=lambda i: -float(sizes[i]))
    target = None
    for i in order:
        pos = app.scene.node_screen_pos(app.scene.ids[i], app.base.cam)
        if pos is not None and app.scene.pick(pos, app.base.cam, app.base.camLens) == ("node", app.scene.ids[i]):
            target = (app.scene.ids[i], pos)
            break
    assert target is not None, "no node could be clicked"
    assert app.click_at(target[1]) == target[0]
    assert app.selected == target[0]
    pump(app, lambda: not app.details.root.isHidden() and app.details.section_titles, 30, "the details panel")
    assert target[0] in app.details.title
    assert app.details.section_titles  # the module's sections, tiled
    # empty space: a corner of the view
    assert app.click_at((0.99, -0.99)) is None
    assert app.selected is None and app.details.root.isHidden()


def test_timeline_scrub_play_and_histogram_match_query(viewer, served):
    app = viewer(server=served.viz, token=served.token, module="net_zeek")
    pump(app, lambda: app.timeline.range is not None and app.timeline.bars, 60, "the range and histogram")
    span = served.request("range")
    assert app.timeline.range == pytest.approx((span["first"], span["last"]))
    hist = served.request("histogram", **{"from": span["first"], "to": span["last"]}, bins=200)
    assert app.timeline.bars == [float(b["conns"]) for b in hist]
    # scrub: the scene becomes the graph at that instant
    t = span["first"] + (span["last"] - span["first"]) * 0.5
    app.scrub(t)
    expected = {n["id"] for n in served.request("graph", at=t)["nodes"]}
    assert expected
    pump(app, lambda: scene_nodes(app) == expected, 60, f"the scene at {t} to equal query graph --at")
    assert app.mode == "at" and app.present == t
    # play advances the present time
    app.play(120.0)
    start = app.present
    pump(app, lambda: app.present is not None and app.present > start + 60, 30, "play to advance time")
    assert app.mode == "play"


def test_demo_offscreen_screenshot_has_a_graph(tmp_path):
    png = tmp_path / "demo.png"
    r = subprocess.run([sys.executable, "-m", "wiredraw.core.cli", "demo", "--offscreen", "--screenshot", str(png),
                        "--duration", "20", "--size", "640x360"], capture_output=True, text=True, env=dev_env(),
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert png.is_file() and "wiredraw viz: screenshot" in r.stdout
    nodes = int(r.stdout.split("wiredraw viz: screenshot")[1].split("(")[1].split(" nodes")[0])
    assert nodes > 5
    from panda3d.core import PNMImage  # type: ignore[import-untyped]

    img = PNMImage()
    assert img.read(str(png))
    w, h = img.getXSize(), img.getYSize()
    # count bright, saturated pixels in the middle of the picture (node spheres; panels sit at the edges)
    colourful = 0
    for y in range(h // 4, 3 * h // 4, 2):
        for x in range(w // 4, 3 * w // 4, 2):
            r_, g, b = img.getXel(x, y)
            if max(r_, g, b) - min(r_, g, b) > 0.25 and max(r_, g, b) > 0.4:
                colourful += 1
    assert colourful > 50, colourful


def test_category_toggle_and_search(viewer, served):
    app = viewer(server=served.viz, token=served.token, module="net_zeek")
    pump(app, lambda: len(scene_nodes(app)) > 5 and app.filters.boxes, 60, "a scene and its category toggles")
    # suppress the most common edge category, as Traffic Map's checkboxes do
    snapshot_cats = pump(app, lambda: app.last_scene and app.last_scene["edge_categories"], 30, "edges")
    common = max(set(snapshot_cats), key=snapshot_cats.count)
    app.filters.boxes[common].commandFunc(None)  # uncheck it
    pump(app, lambda: app.last_scene and common not in app.last_scene["edge_categories"], 60,
         f"edges of category {common!r} to disappear")
    assert app.filter == f'category not in ["{common}"]'
    # search by address: selects it and flies there
    some = sorted(scene_nodes(app))[0]
    assert app.search(some) == some
    assert app.selected == some and app.user_moved_camera
    assert app.search("no-such-host.invalid") is None


def test_ctrl_c_on_the_demo_leaves_no_process_behind(tmp_path):
    import os
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "wiredraw.core.cli", "demo", "--offscreen", "--screenshot",
                             str(tmp_path / "x.png"), "--duration", "120", "--size", "320x240"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dev_env(),
                            start_new_session=True)
    sid = proc.pid
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        for line in proc.stdout:
            if "server ready" in line or time.monotonic() > deadline:
                break
        time.sleep(6)  # the viewer and its backend are up by now
        members = session_members(sid)
        assert len(members) >= 4, members  # demo, redis-server, viewer, viewer backend
        os.killpg(sid, signal.SIGINT)  # what Ctrl-C in a terminal does
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(sid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session_members(sid) == []


def session_members(sid: int) -> list[str]:
    """Live processes of session ``sid``: 'pid command'."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(f"{entry} {Path(f'/proc/{entry}/cmdline').read_bytes()[:80]!r}")
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_timeline_histogram_of_any_module_counters_and_of_nothing_renders(panda_base):
    from wiredraw.viz.offscreen import render_frames
    from wiredraw.viz.panels import Timeline

    tl = Timeline(panda_base.aspect2d, on_scrub=print, on_play=print, on_pause=print, on_live=print)
    try:
        tl.set_range(0, 100)
        tl.set_histogram([{"t0": 0, "t1": 50, "forks": 2, "execs": 3, "exits": 1}, {"t0": 50, "t1": 100, "forks": 0}])
        assert tl.bars == [6.0, 0.0]  # no "conns": the module's counters summed
        render_frames(panda_base, 1)
        tl.set_histogram([{"t0": 0, "t1": 100, "conns": 0}])  # nothing to draw: no empty Geom (it would crash)
        assert tl.bars == [0.0] and tl.hist_np.getNumChildren() == 0
        render_frames(panda_base, 1)
    finally:
        tl.root.destroy()
