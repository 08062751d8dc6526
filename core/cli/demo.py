"""``wiredraw demo``: everything on this machine, nothing else needed.

A private Redis, the server, a module's demo generator writing realistic input (for net_zeek: a small office's
Zeek logs, live), the module's real probe source reading it and sending it over TCP, and the viewer already
logged in. Ctrl-C, the end of ``--duration``, or closing the viewer's window stops everything; no process is
left behind (the viewer is our child; the embedded redis-server dies with the server).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, task
from wiredraw.core.module import Demo
from wiredraw.core.plugins import LoadedModule, ModuleSet
from wiredraw.core.server.credentials import ProbeSecrets, Tokens
from wiredraw.core.server.service import ServerConfig, WiredrawServer
from wiredraw.probes.runner import ProbeOptions, ProbeRunner


def pick_demo(modules: ModuleSet, slug: str | None, workdir: Path) -> tuple[LoadedModule, Demo]:
    """The named module's demo, or the first module (lowest id) that has one."""
    candidates = [modules.get(slug)] if slug else sorted(modules, key=lambda m: m.spec.id)
    for loaded in candidates:
        if loaded is None:
            break
        demo = loaded.module.make_demo(workdir / loaded.spec.slug)
        if demo is not None:
            return loaded, demo
    if slug and modules.get(slug) is None:
        raise ValueError(f"--module {slug}: no such module loaded ({', '.join(m.spec.slug for m in modules)})")
    raise ValueError(f"module {slug} has no demo" if slug else "no loaded module has a demo")


class _Viewer(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ended: defer.Deferred[int] = defer.Deferred()

    def processEnded(self, reason: Any) -> None:
        code = getattr(reason.value, "exitCode", 1)
        self.ended.callback(code if code is not None else 1)


def _finish(finished: defer.Deferred[Any], why: str, code: int) -> None:
    if not finished.called:
        finished.callback((why, code))


@defer.inlineCallbacks
def run_demo(reactor: Any, modules: ModuleSet, data_dir: Path, *, module: str | None = None,
             duration: float = 0.0, viewer: bool = True, viewer_args: list[str] | None = None,
             out: Any = None) -> Any:
    out = out or sys.stdout
    loaded, demo = pick_demo(modules, module, data_dir / "demo-input")
    slug = loaded.spec.slug
    print(f"wiredraw demo: data directory {data_dir} (Ctrl-C stops everything); module {slug}: "
          f"{demo.describe or 'generated input'}", file=out, flush=True)
    config = ServerConfig(data_dir=data_dir, probe_port=0, viz_port=0, http_port=0, ephemeral=True,
                          live_window=900.0).check()
    failures: list[BaseException] = []
    server = WiredrawServer(reactor, config, modules, on_fatal=failures.append)
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    server.startService()
    yield server.ready
    print(server.ready_line(), file=out, flush=True)

    key = bytes.fromhex(ProbeSecrets(data_dir).add("demo-probe", replace=True))
    token = Tokens(data_dir).add("demo-viewer", "viewer", replace=True)
    probe_port = server.listeners.ports["probe_tcp"].getHost().port
    viz = server.listeners.address("viz")
    opts = ProbeOptions(host="127.0.0.1", port=probe_port, probe_id="demo-probe", key=key,
                        state_dir=data_dir / "probe", progress_interval=0, fsync=False)
    runner = ProbeRunner(reactor, loaded.module, demo.source, opts, out=out)
    runner.start()
    reactor.addSystemEventTrigger("before", "shutdown", runner.stop)
    generate = task.LoopingCall(lambda: demo.step(time.time()))
    generate.clock = reactor
    generate.start(demo.interval, now=True)
    token_file = data_dir / "viewer.token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    print(f"wiredraw demo: watch it as JSON too: wiredraw watch --server {viz} --token-file {token_file} "
          f"--module {slug}", file=out, flush=True)

    def progress() -> None:
        s = server.stats.as_dict()
        print(f"wiredraw demo: probe read {runner.counts['records_read']:,} records, server stored "
              f"{s['records_written']:,}, {runner.spool.records:,} waiting; viewers: {s.get('viewers', 0)}",
              file=out, flush=True)

    loop = task.LoopingCall(progress)
    loop.clock = reactor
    loop.start(5.0, now=False)

    finished: defer.Deferred[Any] = defer.Deferred()
    view: _Viewer | None = None
    code = 0
    offscreen = "--offscreen" in (viewer_args or [])
    if viewer and not offscreen and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print("wiredraw demo: no display here ($DISPLAY is not set), so no viewer window; showing progress. "
              "Watch it with the command above, or render it: wiredraw demo --offscreen --screenshot demo.png "
              "--duration 20", file=out, flush=True)
        viewer = False

    def stop_viewer() -> Any:
        """Stop the viewer, ours to stop; the Deferred of its end (None: none running)."""
        if view is not None and not view.ended.called and view.transport is not None:
            view.transport.signalProcess("TERM")
            return view.ended
        return None

    if viewer:  # the viewer ships with wiredraw (panda3d is a dependency); if it cannot start, it says why
        view = _Viewer()
        argv = [sys.executable, "-m", "wiredraw.core.cli", "viz", "--server", viz, "--token-file", str(token_file),
                "--module", slug, *(viewer_args or [])]
        reactor.spawnProcess(view, sys.executable, argv, env=os.environ.copy(), childFDs={0: 0, 1: 1, 2: 2})
        reactor.addSystemEventTrigger("before", "shutdown", stop_viewer)  # SIGTERM to the demo alone

        def viewer_ended(code: int) -> None:
            if code == 0 or offscreen:
                _finish(finished, "viewer", code)  # the window was closed (or the screenshot taken): stop
            else:
                print(f"wiredraw demo: the viewer stopped (exit code {code}); the rest keeps running, showing "
                      f"progress (Ctrl-C stops it)", file=sys.stderr, flush=True)

        view.ended.addCallback(viewer_ended)
    if duration > 0:
        reactor.callLater(duration, _finish, finished, "duration", 0)
    why, viewer_code = yield finished
    if why == "viewer" and viewer_code != 0:
        print(f"wiredraw demo: the viewer exited with code {viewer_code}", file=sys.stderr, flush=True)
        code = 1
    stopped = stop_viewer()
    if stopped is not None:
        yield stopped
    for lc in (loop, generate):
        if lc.running:
            lc.stop()
    yield runner.drain()
    progress()
    yield server.stopService()
    reactor.stop()
    return 1 if failures else code
