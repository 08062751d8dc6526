"""net_zeek: the module object and its registration (entry point ``wiredraw.modules: net_zeek``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiredraw.core.hookspecs import hookimpl
from wiredraw.core.module import Demo, Module, ModuleSpec, Opened, OpenRequest
from wiredraw.plugins.net_zeek.schema import ZeekCollector, ZeekSchema
from wiredraw.plugins.net_zeek.source import LogDirSource, ReplaySource, parse_time

if TYPE_CHECKING:
    from wiredraw.plugins.net_zeek.view import NetZeekView


class NetZeekModule(Module):
    """Module net_zeek: its parts (the write path :class:`ZeekSchema`, the uploads :class:`ZeekCollector`), its
    probe options and sources, its demo and its view."""

    spec_path = Path(__file__).with_name("net_zeek.toml")

    def __init__(self, spec: ModuleSpec | None = None) -> None:
        super().__init__(spec)
        self.schema: ZeekSchema = ZeekSchema()
        self.collector: ZeekCollector = ZeekCollector()

    def add_probe_options(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("net_zeek source", "exactly one of --logdir (live) or --replay (recorded)")
        g.add_argument("--logdir", type=Path, metavar="DIR",
                       help="follow this live Zeek log directory (zeekctl's logs/current): its *.log files, "
                            "through rotation into the date directories beside it")
        g.add_argument("--logs", metavar="conn,dns,http", default=None,
                       help="with --logdir: only these log types (default: all)")
        g.add_argument("--since", metavar="TIME", default=None,
                       help="with --logdir, on a first start: first send the archived records from TIME on "
                            "(epoch seconds or ISO-8601, UTC unless a zone is given)")
        g.add_argument("--replay", type=Path, nargs="+", metavar="FILE",
                       help="replay these recorded logs (TSV or JSON, .log or .gz) in event-time order, then stop")
        g.add_argument("--speed", type=float, default=None, metavar="X",
                       help="with --replay: X times event time (default 1)")
        g.add_argument("--fast", action="store_true", help="with --replay: as fast as the server takes it")

    def make_demo(self, workdir: Path) -> Demo:
        from wiredraw.plugins.net_zeek.demo import make_demo

        return make_demo(self, workdir)

    def make_source(self, options: argparse.Namespace) -> LogDirSource | ReplaySource:
        logdir: Path | None = getattr(options, "logdir", None)
        replay: list[Path] | None = getattr(options, "replay", None)
        logs, since = getattr(options, "logs", None), getattr(options, "since", None)
        speed, fast = getattr(options, "speed", None), bool(getattr(options, "fast", False))
        if (logdir is None) == (not replay):
            raise ValueError("net_zeek: give exactly one of --logdir DIR (follow a live Zeek log directory) "
                             "or --replay FILE [FILE ...] (replay recorded logs)")
        if logdir is not None:
            if speed is not None or fast:
                raise ValueError("net_zeek: --speed and --fast go with --replay, not --logdir")
            if not logdir.is_dir():
                raise ValueError(f"net_zeek: --logdir {logdir}: not a directory")
            names = {n.strip() for n in logs.split(",") if n.strip()} if logs else None
            return LogDirSource(logdir, logs=names, since=parse_time(since) if since is not None else None)
        assert replay
        if logs is not None or since is not None:
            raise ValueError("net_zeek: --logs and --since go with --logdir, not --replay")
        for f in replay:
            if not f.is_file():
                raise ValueError(f"net_zeek: --replay {f}: no such file")
        return ReplaySource(list(replay), speed=1.0 if speed is None else speed, fast=fast)

    def open_paths(self, request: OpenRequest) -> Opened | None:
        """Zeek logs for ``wiredraw open``: a live log directory (zeekctl's logs/current) or recorded logs and
        folders of them (see opener.py)."""
        from wiredraw.plugins.net_zeek.opener import open_paths

        return open_paths(request)

    def make_view(self, store: Any, options: Mapping[str, Any]) -> NetZeekView:
        """Hosts and the connections between them; ``options``: the ``[net_zeek]`` table of the server's viz
        config (``local_networks``, ``groups``, ``tags_file``; see viz.sample.toml). A bad option: ValueError."""
        from wiredraw.plugins.net_zeek.view import NetZeekView  # server side only: probes never import it

        return NetZeekView(store, options)


@hookimpl
def register_modules(register: Callable[[Module], None]) -> None:
    register(NetZeekModule())
