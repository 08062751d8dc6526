"""``wiredraw demo``: everything on this machine, nothing else needed.

A private Redis, the server, a module's demo generator writing realistic input (for net_zeek: a small office's
Zeek logs, live), the module's real probe source reading it and sending it over TCP, and the viewer already
logged in. Ctrl-C, the end of ``--duration``, or closing the viewer's window stops everything; no process is
left behind (:class:`wiredraw.core.cli.local.LocalRun`, shared with ``wiredraw open``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from twisted.internet import defer
from wiredraw.core.cli.local import LocalRun, local_credentials
from wiredraw.core.module import Demo
from wiredraw.core.plugins import LoadedModule, ModuleSet
from wiredraw.core.server.service import ServerConfig
from wiredraw.probes.runner import ProbeOptions


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


@defer.inlineCallbacks
def run_demo(reactor: Any, modules: ModuleSet, data_dir: Path, *, module: str | None = None,
             duration: float = 0.0, viewer: bool = True, viewer_args: list[str] | None = None,
             out: Any = None) -> Any:
    run = LocalRun(reactor, "demo", out)
    loaded, demo = pick_demo(modules, module, data_dir / "demo-input")
    slug = loaded.spec.slug
    run.say(f"data directory {data_dir} (Ctrl-C stops everything); module {slug}: "
            f"{demo.describe or 'generated input'}")
    config = ServerConfig(data_dir=data_dir, probe_port=0, viz_port=0, http_port=0, ephemeral=True,
                          live_window=900.0).check()
    server = yield run.start_server(config, modules)
    key, token_file = local_credentials(data_dir, "demo-probe", "demo-viewer", reuse=False)
    probe_port = server.listeners.ports["probe_tcp"].getHost().port
    viz = server.listeners.address("viz")
    opts = ProbeOptions(host="127.0.0.1", port=probe_port, probe_id="demo-probe", key=key,
                        state_dir=data_dir / "probe", progress_interval=0, fsync=False)
    runner = run.start_probe(loaded.module, demo.source, opts)
    run.every(demo.interval, lambda: demo.step(time.time()), now=True)
    run.say(f"watch it as JSON too: wiredraw watch --server {viz} --token-file {token_file} --module {slug}")

    def progress() -> None:
        s = server.stats.as_dict()
        run.say(f"probe read {runner.counts['records_read']:,} records, server stored {s['records_written']:,}, "
                f"{runner.spool.records:,} waiting; viewers: {s.get('viewers', 0)}")

    run.every(5.0, progress)
    if viewer:  # the viewer ships with wiredraw (panda3d is a dependency); if it cannot start, it says why
        run.open_viewer(viz, token_file, slug, viewer_args or [],
                        no_display_hint="Showing progress. Watch it with the command above, or render it: "
                                        "wiredraw demo --offscreen --screenshot demo.png --duration 20")
    run.stop_after(duration)
    return (yield run.run(progress))
