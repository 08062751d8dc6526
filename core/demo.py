"""``wiredraw demo``: everything on this machine, nothing else needed.

For now: a private Redis, the server and a probe sending development ticks over TCP, with a progress
line every two seconds. It grows into the full demo (generated Zeek logs, the viewer) later.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from wiredraw.core.credentials import ProbeKeys
from wiredraw.core.devtest import CounterSource
from wiredraw.core.plugins import ModuleSet
from wiredraw.core.server import ServerConfig, WiredrawServer
from wiredraw.probes.runner import ProbeOptions, ProbeRunner


@defer.inlineCallbacks
def run_demo(reactor: Any, modules: ModuleSet, data_dir: Path, *, rate: float = 500.0,
             duration: float = 0.0, out: Any = None) -> Any:
    out = out or sys.stdout
    print(f"wiredraw demo: data directory {data_dir} (Ctrl-C stops everything)", file=out, flush=True)
    config = ServerConfig(data_dir=data_dir, probe_port=0, viz_port=0, http_port=0, ephemeral=True).check()
    failures: list[BaseException] = []
    server = WiredrawServer(reactor, config, modules, on_fatal=failures.append)
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    server.startService()
    yield server.ready
    print(server.ready_line(), file=out, flush=True)

    key = bytes.fromhex(ProbeKeys(data_dir).add("demo-probe", replace=True))
    port = server.listeners.ports["probe_tcp"].getHost().port
    loaded = modules.get("devtest")
    opts = ProbeOptions(host="127.0.0.1", port=port, probe_id="demo-probe", key=key,
                        state_dir=data_dir / "probe", progress_interval=0, fsync=False)
    runner = ProbeRunner(reactor, loaded.module, CounterSource(rate=rate, text="demo"), opts, out=out)
    runner.start()
    reactor.addSystemEventTrigger("before", "shutdown", runner.stop)

    def progress() -> None:
        s = server.stats.as_dict()
        print(f"wiredraw demo: probe read {runner.counts['records_read']:,} records, server stored "
              f"{s['records_written']:,} in {s['write_batches']:,} batches, "
              f"{runner.spool.records:,} waiting; rejected frames: {s['frames_rejected']}", file=out, flush=True)

    loop = task.LoopingCall(progress)
    loop.clock = reactor
    loop.start(2.0, now=False)
    if duration > 0:
        yield task.deferLater(reactor, duration, lambda: None)
        loop.stop()
        yield runner.drain()
        progress()
        yield server.stopService()
        reactor.stop()
    else:
        yield defer.Deferred()  # until Ctrl-C: the shutdown triggers stop the probe and the server
    return 0 if not failures else 1
