"""proc_events end to end with real processes: `wiredraw server` + `wiredraw probe proc_events` watching this
machine + a shell the test runs, checked with `wiredraw query graph` and followed live by `wiredraw watch`.

The shell is ``sh -c 'sleep 1 & /bin/echo hi; wait'``: ``/bin/echo`` so that it really forks and execs a child
(``echo`` alone is the shell's builtin), ``wait`` so that sh outlives its sleep (without it sh exits at once and
the sleep is re-parented to init before a poll can see it under sh).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from processes import Proc, Server, World, add_key, dev_env, wait_until, wiredraw_cmd
from test_proc_source import SHELL, connector_or_skip
from wiredraw.core.server.credentials import Tokens


def start(world: World) -> tuple[Server, str, Path]:
    data_dir = world.root / "data"
    key_file = world.root / "host1.key"
    add_key(data_dir, "host1", key_file)
    token = Tokens(data_dir).add("viewer1", "viewer")
    server = world.server("server", data_dir, "--ephemeral", "--full-every", "3600").wait_ready()
    return server, token, key_file


def viz_addr(server: Server) -> str:
    assert server.match is not None
    return f"127.0.0.1:{server.match['viz']}"


def query(server: Server, token: str, *args: str) -> Any:
    r = subprocess.run(wiredraw_cmd("query", "--server", viz_addr(server), "--token", token, "--module", "proc_events",
                                    *args), capture_output=True, text=True, env=dev_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def probe(world: World, server: Server, key_file: Path, method: str) -> Proc:
    return world.probe("probe", server.probe_addr, key_file, world.root / "probe-state", None,
                       "--method", method, "--interval", "0.1", probe_id="host1", module="proc_events")


def run_shell(command: str) -> int:
    sh = subprocess.Popen(["sh", "-c", command], stdout=subprocess.DEVNULL)
    assert sh.wait(30) is not None
    return sh.pid


def find(graph: dict[str, Any], sh_pid: int, command: str) -> dict[str, Any] | None:
    """The sh node of ``graph`` with this pid and argv (None if not there)."""
    for n in graph["nodes"]:
        if n["attrs"]["pid"] == sh_pid and n["attrs"]["argv"] == ["sh", "-c", command]:
            return n
    return None


def check_tree(server: Server, token: str, sh_pid: int, command: str) -> dict[str, Any]:
    """Wait for the sh and its sleep, both ended, in `query graph`; check them and the edges to the sh's children.
    Returns the nodes: sh, sleep, echo (a list: the sh's other children)."""
    def ready() -> Any:
        g = query(server, token, "graph")
        sh = find(g, sh_pid, command)
        if sh is None or sh["attrs"]["end"] is None:
            return None
        kids = [n for n in g["nodes"] if f"{sh['id']}>{n['id']}" in {e["id"] for e in g["edges"]}]
        sleep = [n for n in kids if n["attrs"]["argv"] == ["sleep", "1"]]
        if not sleep or sleep[0]["attrs"]["end"] is None:
            return None
        return g

    g = wait_until(ready, 30, f"sh (pid {sh_pid}) and its sleep, ended, in `query graph`", interval=0.3)
    sh = find(g, sh_pid, command)
    assert sh is not None
    edges = {e["id"]: e for e in g["edges"]}
    kids = {n["id"]: n for n in g["nodes"] if f"{sh['id']}>{n['id']}" in edges}
    for eid in (f"{sh['id']}>{k}" for k in kids):
        assert (edges[eid]["src"], edges[eid]["kind"]) == (sh["id"], "fork")
    assert sh["id"] == f"host1:{sh_pid}:{sh['attrs']['start']:.2f}" and sh["group"] == "host1"
    assert sh["attrs"]["exe"].endswith("sh") or sh["attrs"]["exe"].endswith("dash") or sh["attrs"]["exe"] is None
    (sleep,) = [k for k in kids.values() if k["attrs"]["argv"] == ["sleep", "1"]]
    assert sleep["label"] == "sleep" and sleep["attrs"]["exe"].endswith("/sleep")
    assert sleep["attrs"]["end"] - sleep["attrs"]["start"] >= 0.9  # it slept a second
    assert sh["attrs"]["end"] >= sleep["attrs"]["end"] - 0.2  # sh waited for it
    echo = [k for k in kids.values() if k["id"] != sleep["id"]]
    return {"sh": sh, "sleep": sleep, "echo": echo}


def dropped_events(p: Proc) -> bool:
    """Whether the probe said the kernel dropped connector events (ENOBUFS) since it started; it then rescanned
    /proc (README, troubleshooting), which recovers what ran but not what began and ended unseen."""
    return "dropped process events" in p.stderr_path.read_text(errors="replace")


def test_polling_probe_the_shell_tree_in_query_graph_and_live(world: World):
    server, token, key_file = start(world)
    watcher = Proc("watch", wiredraw_cmd("watch", "--server", viz_addr(server), "--token", token, "--module",
                                         "proc_events"), world.logs, watch_stdout=True)
    world.procs.append(watcher)
    p = probe(world, server, key_file, "poll")
    wait_until(lambda: query(server, token, "range"), 30, lambda: f"the probe's first snapshot; {p.describe()}",
               interval=0.3)
    assert "polling /proc every 0.1 s (--method poll)" in p.stderr()
    sh_pid = run_shell(SHELL)
    found = check_tree(server, token, sh_pid, SHELL)
    assert all(k["attrs"]["argv"] == ["/bin/echo", "hi"] for k in found["echo"])  # polling sees it only by luck
    # polling cannot know exit codes of processes that are not its own zombies: unknown (None) or 0
    assert found["sh"]["attrs"]["code"] in (None, 0) and found["sleep"]["attrs"]["code"] in (None, 0)

    # live: the watcher saw the sh appear and exit (pulses), then the sleep under it
    sh_id, sleep_id = found["sh"]["id"], found["sleep"]["id"]

    def live_saw() -> bool:
        msgs = [json.loads(line) for line in list(watcher.lines)]
        pulses = {(pl["target"], pl["meaning"]) for m in msgs if m["type"] == "diff" for pl in m["pulses"]}
        edges = {e["id"] for m in msgs for e in m["edges"]}
        return {(sh_id, "new"), (sh_id, "ok")} <= pulses and f"{sh_id}>{sleep_id}" in edges

    wait_until(live_saw, 30, lambda: f"the sh's pulses in `wiredraw watch`; {watcher.describe()}", interval=0.2)
    details = query(server, token, "details", sh_id)
    rows = {r[0]: r[1] for r in details["sections"][0]["rows"]}
    assert rows["argv"] == ["sh", "-c", SHELL] and rows["pid"] == sh_pid


def test_connector_probe_sees_echo_too_with_exit_codes(world: World):
    connector_or_skip()
    server, token, key_file = start(world)
    p = probe(world, server, key_file, "auto")
    wait_until(lambda: query(server, token, "range"), 30, lambda: f"the probe's first snapshot; {p.describe()}",
               interval=0.3)
    assert "process-event connector" in p.stderr()
    command = SHELL + "; exit 3"
    sh_pid = run_shell(command)
    found = check_tree(server, token, sh_pid, command)  # sh and sleep live a second: a rescan finds them
    echo = found["echo"]
    if not dropped_events(p):
        # every process with its exit code; echo's program only if /proc could be read before it ended (it lives
        # about a millisecond): then it is /bin/echo, else unknown
        assert len(echo) == 1, [(k["label"], k["attrs"]) for k in echo]
        assert echo[0]["attrs"]["end"] is not None and echo[0]["attrs"]["code"] == 0
        assert echo[0]["attrs"]["argv"] in (["/bin/echo", "hi"], []), echo[0]["attrs"]
        assert found["sh"]["attrs"]["code"] == 3 and found["sleep"]["attrs"]["code"] == 0
    else:
        # the kernel dropped events (a loaded machine): the rescans recovered the tree, but an exit whose event was
        # dropped has no code, and echo is missing if its fork was dropped; still nothing of it is left alive
        assert len(echo) <= 1 and all(k["attrs"]["end"] is not None and k["attrs"]["code"] in (0, None) for k in echo)
        assert found["sh"]["attrs"]["code"] in (3, None) and found["sleep"]["attrs"]["code"] in (0, None)


def test_a_restarted_probe_keeps_identities(world: World):
    """The probe's resume token keeps its btime: a process that runs throughout keeps its node id (pid, start)."""
    server, token, key_file = start(world)
    p = probe(world, server, key_file, "poll")
    wait_until(lambda: query(server, token, "range"), 30, lambda: f"the first snapshot; {p.describe()}", interval=0.3)

    def server_node() -> set[str]:
        return {n["id"] for n in query(server, token, "graph")["nodes"] if n["attrs"]["pid"] == server.pid}

    before = server_node()
    assert len(before) == 1
    p.reap()
    world.procs.remove(p)
    first_range = query(server, token, "range")
    p2 = probe(world, server, key_file, "poll")
    wait_until(lambda: query(server, token, "range")["last"] > first_range["last"], 30,
               lambda: f"the restarted probe's snapshot; {p2.describe()}", interval=0.3)
    assert server_node() == before
