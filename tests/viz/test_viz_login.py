"""The viewer's first use, headless, against a real server holding real Zeek logs (test_viz_app.py's ``Served``):
log in through the login screen as a user would (type into its entries, press Connect), pick a module when the
server offers several, and the settings it remembers (server, token, module; a 0600 file under XDG_CONFIG_HOME)
or, with ``--forget``, does not."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import test_viz_app
from processes import HOUR, ROLLING
from test_viz_app import pump, scene_nodes
from wiredraw.core.viewer_client import ViewerClient
from wiredraw.plugins.net_zeek.parser import read_log

pytestmark = test_viz_app.pytestmark
# the fixtures of test_viz_app.py: a server with an hour of real Zeek logs, and a factory of viewers on the one
# ShowBase (XDG_CONFIG_HOME pointed at tmp_path, so that remembered settings land there)
served = test_viz_app.served
viewer = test_viz_app.viewer


def live_graph(served: Any, module: str) -> dict[str, Any]:
    """The first graph a live subscription to ``module`` gets: what the viewer should come to show."""
    host, port = served.viz.split(":")
    with ViewerClient(host, int(port), served.token) as c:
        c.connect()
        c.subscribe(module, mode="live")
        graph = c.next_message()
    assert graph["type"] == "graph" and graph["module"] == module, graph.get("type")
    return graph


def conn_addresses() -> set[str]:
    records = read_log(ROLLING / f"conn.{HOUR}.log.gz").records
    return {r.fields[k] for r in records for k in ("id.orig_h", "id.resp_h")}


def type_login(app: Any, server: str, token: str) -> None:
    """What a user does on the login screen: clear and type both entries."""
    assert not app.login.root.isHidden(), "the login screen is not showing"
    app.login.server.enterText(server)
    app.login.token.enterText(token)


def settings_file(config_home: Path) -> Path:
    return config_home / "wiredraw" / "viewer.json"


def close(app: Any) -> None:
    """Quit one viewer in the middle of a test (the fixture's teardown does it again, harmlessly)."""
    app.destroy()
    try:
        app.conn.send({"kind": "quit"})
    except OSError:
        pass


def expected_net_zeek(served: Any) -> set[str]:
    expected = {n["id"] for n in live_graph(served, "net_zeek")["nodes"]}
    assert len(expected) > 100 and expected <= conn_addresses()  # hosts of the real conn.log
    return expected


def test_login_screen_connects_with_a_typed_server_and_token_and_shows_the_graph(viewer, served):
    expected = expected_net_zeek(served)
    app = viewer(module="net_zeek")  # no server, no token: the login screen
    assert app.welcome is None and scene_nodes(app) == set()
    type_login(app, served.viz, served.token)
    app.login.connect_button.commandFunc(None)  # the Connect button
    pump(app, lambda: app.welcome is not None, 30, "the welcome")
    assert app.welcome["module"] == "net_zeek" and app.module == "net_zeek"
    assert app.login.root.isHidden()
    assert "net_zeek" in app.status_text.getText()
    pump(app, lambda: scene_nodes(app) == expected, 60, f"the scene to hold the {len(expected)} live hosts")
    pump(app, lambda: app.timeline.range is not None, 30, "the timeline's range")
    span = served.request("range")
    assert app.timeline.range == (span["first"], span["last"])


def test_enter_in_the_token_entry_logs_in_too(viewer, served):
    app = viewer(module="net_zeek")
    type_login(app, served.viz, served.token)
    app.login.token.commandFunc(None)  # Enter in the token entry
    pump(app, lambda: app.welcome is not None and len(scene_nodes(app)) > 100, 60, "the graph after Enter")
    assert app.welcome["module"] == "net_zeek" and app.login.root.isHidden()


def test_login_with_no_module_offers_the_servers_modules_and_the_pick_subscribes_to_it(viewer, served, tmp_path):
    offered = [m["slug"] for m in served.request("modules")]
    assert len(offered) > 1 and "net_zeek" in offered  # the server has several modules with a view
    expected = expected_net_zeek(served)
    app = viewer()  # no --module
    type_login(app, served.viz, served.token)
    app.login.connect_button.commandFunc(None)
    pump(app, lambda: app.login.module_buttons, 30, "the module picker")
    assert sorted(app.login.module_buttons) == sorted(offered)
    assert not app.login.root.isHidden() and app.login.message.getText() == "Pick a module:"
    assert app.module is None and app.welcome is not None and app.welcome["module"] is None
    assert scene_nodes(app) == set()  # nothing subscribed before the pick
    assert not settings_file(tmp_path).exists()  # nor remembered

    app.login.module_buttons["net_zeek"].commandFunc(None)
    pump(app, lambda: app.welcome["module"] == "net_zeek", 30, "the welcome for the picked module")
    assert app.module == "net_zeek" and app.login.root.isHidden()
    pump(app, lambda: scene_nodes(app) == expected, 60, "the picked module's hosts")
    assert json.loads(settings_file(tmp_path).read_text())["module"] == "net_zeek"


def test_picking_a_module_without_data_subscribes_to_that_one(viewer, served):
    """The pick decides the subscription: proc_events has nothing stored here, so no net_zeek host shows."""
    assert live_graph(served, "proc_events")["nodes"] == []
    app = viewer()
    type_login(app, served.viz, served.token)
    app.login.connect_button.commandFunc(None)
    pump(app, lambda: "proc_events" in app.login.module_buttons, 30, "the module picker")
    app.login.module_buttons["proc_events"].commandFunc(None)
    pump(app, lambda: app.welcome["module"] == "proc_events", 30, "the welcome for proc_events")
    assert app.module == "proc_events" and app.login.root.isHidden()
    # ask for a real net_zeek host's details: the subscribed module (proc_events) has none to give
    host = sorted(conn_addresses())[0]
    app.select(host)
    pump(app, lambda: not app.details.root.isHidden() or app.status_text.getText().startswith("details:"), 30,
         "the details answer")
    assert app.details.title == f"{host}: nothing stored for this element in the time shown"
    assert scene_nodes(app) == set()


def test_a_login_is_remembered_privately_and_prefills_the_next_start(viewer, served, tmp_path):
    app = viewer(module="net_zeek")
    assert app.login.server.get() == "127.0.0.1:4431" and app.login.token.get() == ""  # nothing remembered yet
    type_login(app, served.viz, served.token)
    app.login.connect_button.commandFunc(None)
    pump(app, lambda: app.welcome is not None and app.welcome["module"], 30, "the welcome")
    path = settings_file(tmp_path)
    assert path.is_file()
    assert json.loads(path.read_text()) == {"server": served.viz, "token": served.token, "module": "net_zeek"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a token
    assert [p.name for p in path.parent.iterdir()] == ["viewer.json"]  # no temporary file left beside it
    close(app)

    again = viewer(module="net_zeek")  # the second start: the login screen, filled in
    assert not again.login.root.isHidden()
    assert again.login.server.get() == served.viz and again.login.token.get() == served.token
    again.login.connect_button.commandFunc(None)  # nothing typed: Connect with what it remembered
    pump(again, lambda: again.welcome is not None and len(scene_nodes(again)) > 100, 60, "the graph")
    assert again.welcome["module"] == "net_zeek"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_remembered_file_that_was_readable_by_others_becomes_private(viewer, served, tmp_path):
    path = settings_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"server": "192.0.2.1:4431", "token": "wdv_old", "module": "net_zeek"}))
    path.chmod(0o644)
    path.with_suffix(".tmp").write_text("{}")  # left by a run that died while saving
    path.with_suffix(".tmp").chmod(0o644)
    app = viewer(module="net_zeek")
    assert app.login.server.get() == "192.0.2.1:4431" and app.login.token.get() == "wdv_old"
    type_login(app, served.viz, served.token)
    app.login.connect_button.commandFunc(None)
    pump(app, lambda: app.welcome is not None and app.welcome["module"], 30, "the welcome")
    assert json.loads(path.read_text())["token"] == served.token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_forget_remembers_nothing_and_leaves_what_was_remembered(viewer, served, tmp_path):
    app = viewer(module="net_zeek", remember=False)  # wiredraw viz --forget
    type_login(app, served.viz, served.token)
    app.login.connect_button.commandFunc(None)
    pump(app, lambda: app.welcome is not None and len(scene_nodes(app)) > 100, 60, "the graph")
    assert not settings_file(tmp_path).exists()
    assert not any(served.token in p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    close(app)

    path = settings_file(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    before = json.dumps({"server": "192.0.2.1:4431", "token": "wdv_other", "module": "net_zeek"})
    path.write_text(before)
    forgetful = viewer(module="net_zeek", remember=False)
    type_login(forgetful, served.viz, served.token)
    forgetful.login.connect_button.commandFunc(None)
    pump(forgetful, lambda: forgetful.welcome is not None and forgetful.welcome["module"], 30, "the welcome")
    assert path.read_text() == before


@pytest.mark.parametrize(("argv", "remember"), [([], True), (["--forget"], False)])
def test_wiredraw_viz_forget_is_the_viewers_remember_off(monkeypatch, argv, remember):
    import wiredraw.viz.app
    from wiredraw.core.cli import main

    started: list[Any] = []
    monkeypatch.setattr(wiredraw.viz.app, "run_viewer", lambda options: started.append(options) or 0)
    monkeypatch.delenv("WIREDRAW_TOKEN", raising=False)
    assert main(["viz", *argv]) == 0
    assert [(o.server, o.token, o.remember) for o in started] == [(None, None, remember)]  # the login screen
