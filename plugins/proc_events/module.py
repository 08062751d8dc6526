"""proc_events: the module object and its registration (entry point ``wiredraw.modules: proc_events``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiredraw.core.hookspecs import hookimpl
from wiredraw.core.module import Module, ModuleSpec
from wiredraw.plugins.proc_events.schema import ProcSchema

if TYPE_CHECKING:
    from wiredraw.plugins.proc_events.source import ProcSource
    from wiredraw.plugins.proc_events.view import ProcEventsView


class ProcEventsModule(Module):
    """Module proc_events: its part (the write path :class:`ProcSchema`), its probe options and source, its view."""

    spec_path = Path(__file__).with_name("proc_events.toml")

    def __init__(self, spec: ModuleSpec | None = None) -> None:
        super().__init__(spec)
        self.schema: ProcSchema = ProcSchema()

    def add_probe_options(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("proc_events source", "the processes of this host (Linux /proc)")
        g.add_argument("--method", choices=("auto", "poll", "connector"), default="auto",
                       help="how to learn of processes: the kernel's process-event connector (every process, exit "
                            "codes; needs CAP_NET_ADMIN), polling /proc (unprivileged; misses processes that live "
                            "between two polls), or auto: the connector where it works (default)")
        g.add_argument("--interval", type=float, default=0.5, metavar="SECONDS",
                       help="polling: seconds between two reads of /proc (default 0.5)")
        g.add_argument("--snapshot-every", type=float, default=60.0, metavar="SECONDS",
                       help="seconds between two snapshots of the whole tree (default 60; one is sent at start)")

    def make_source(self, options: argparse.Namespace) -> ProcSource:
        from wiredraw.plugins.proc_events.source import ProcSource

        return ProcSource(interval=float(getattr(options, "interval", 0.5)),
                          snapshot_every=float(getattr(options, "snapshot_every", 60.0)),
                          method=str(getattr(options, "method", "auto")))

    def make_view(self, store: Any, options: Mapping[str, Any]) -> ProcEventsView:
        """The process tree of each probe host; ``options``: the ``[proc_events]`` table of the server's viz config
        (``fade``, ``category``; see viz.sample.toml). A bad option: ValueError."""
        from wiredraw.plugins.proc_events.view import ProcEventsView  # server side only

        return ProcEventsView(store, options)


@hookimpl
def register_modules(register: Callable[[Module], None]) -> None:
    register(ProcEventsModule())
