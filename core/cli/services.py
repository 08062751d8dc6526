"""``wiredraw demo``, ``server`` and ``probe``: the commands that run until stopped."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiredraw.core.cli.common import about, add_data_dir, log_to_stderr, run_reactor
from wiredraw.core.plugins import ModuleSet
from wiredraw.core.server.credentials import read_key_file

if TYPE_CHECKING:
    from wiredraw.core.cli.common import Subcommands

# `wiredraw probe --give-up` for a finite source (a replay): a job that ends anyway should not wait for ever on a
# server that is not there; an endless one (a live follower) waits for ever, saying so.
REPLAY_GIVE_UP = 300.0


def _server_config(args: argparse.Namespace) -> Any:
    from wiredraw.core.server.service import ServerConfig

    return ServerConfig(data_dir=args.data_dir, redis_url=args.redis, bind=args.bind, probe_port=args.probe_port,
                        viz_port=args.viz_port, http_port=args.http_port, ephemeral=args.ephemeral,
                        max_upload=int(args.max_upload_mb * (1 << 20)),
                        retention=None if args.retention_days is None else int(args.retention_days * 86400),
                        viz_config=args.viz_config, live_window=args.live_window, full_every=args.full_every,
                        viewer_backlog=int(args.viewer_backlog_kb * 1024)).check()


def cmd_server(args: argparse.Namespace, modules: ModuleSet) -> int:
    """Run the processing server: probe listeners (UDP and TCP on one port), HTTP (/stats, /health) and the viz
    listener. With no --redis it starts its own private redis-server in the data directory and stops it on exit.
    Prints one line `wiredraw server ready: probes=H:P viz=H:P http=H:P redis=URL` once everything listens.
    """

    from wiredraw.core.server.service import run_server

    config = _server_config(args)
    log_to_stderr(verbose=args.verbose)
    return run_reactor(lambda reactor: run_server(reactor, config, modules))


def cmd_probe(args: argparse.Namespace, modules: ModuleSet) -> int:
    """Run a module's probe: read its source, sign and send batches to the server. Over TCP, batches wait in an on-disk
    spool until the server has stored them, so an outage loses nothing. A finite source (a replay) ends the probe
    once all it read is stored, with its summary (exit status 0); a replay of the files of an earlier run resumes
    where that one stopped, a replay of other files starts fresh. While the probe waits (for the server to accept
    it or to acknowledge the spool, for files to appear) it says for what every 5 s, even with --quiet; after
    --give-up seconds of one wait it stops with status 3, keeping the spool for the next run.
    """

    from twisted.internet import defer
    from wiredraw.core.address import parse_server
    from wiredraw.probes.runner import ProbeOptions, ProbeRunner, is_finite

    loaded = modules.get(args.module)
    assert loaded is not None  # argparse only offers loaded modules
    host, port = parse_server(args.server)
    key = read_key_file(args.key_file)
    state_dir = args.state_dir or (args.data_dir / "probes" / f"{args.probe_id}-{loaded.spec.slug}")
    if args.give_up is not None and args.give_up < 0:
        raise ValueError(f"--give-up {args.give_up}: expected seconds >= 0 (0: never give up)")
    try:
        source = loaded.module.make_source(args)
    except NotImplementedError as exc:
        print(f"wiredraw probe: {exc}", file=sys.stderr)
        return 2
    give_up = args.give_up if args.give_up is not None else (REPLAY_GIVE_UP if is_finite(source) else 0.0)
    opts = ProbeOptions(host=host, port=port, probe_id=args.probe_id, key=key, transport=args.transport,
                        state_dir=state_dir, batch_records=args.batch, max_datagram=args.max_datagram,
                        progress_interval=0 if args.quiet else args.progress, give_up=give_up)

    def start(reactor: Any) -> Any:
        print(f"wiredraw probe {args.probe_id}: module {loaded.spec.slug} → {host}:{port} over {args.transport}",
              file=sys.stderr, flush=True)
        try:
            runner = ProbeRunner(reactor, loaded.module, source, opts)
        except Exception as exc:  # raised here, it would leave the reactor running with nothing to do
            print(f"wiredraw probe {args.probe_id}: error: {exc}", file=sys.stderr, flush=True)
            reactor.stop()
            return defer.succeed(1)
        reactor.addSystemEventTrigger("before", "shutdown", runner.stop)

        def finished(code: int) -> int:
            print(f"wiredraw probe {args.probe_id}: done: {json.dumps(runner.summary())}", file=sys.stderr)
            if reactor.running:
                reactor.stop()
            return code

        return runner.start().addCallback(finished)

    return run_reactor(start)


def cmd_demo(args: argparse.Namespace, modules: ModuleSet) -> int:
    """Start a private Redis, the server, a generator of realistic input (a small office's Zeek logs, written live),
    the real probe reading it, and the viewer logged in. Ctrl-C, --duration or closing the viewer stops everything
    and leaves no process behind.
    """

    from wiredraw.core.cli.demo import run_demo
    from wiredraw.core.cli.local import viewer_args

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="wiredraw-demo-"))
    try:
        return run_reactor(lambda reactor: run_demo(reactor, modules, data_dir, module=args.module,
                                                     duration=args.duration, viewer=not args.no_viewer,
                                                     viewer_args=viewer_args(args)))
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


def add_demo_parser(sub: Subcommands) -> None:
    p = sub.add_parser("demo", help="everything on this machine: server, generated traffic, probe and viewer",
                       description=about(cmd_demo))
    add_data_dir(p)
    p.add_argument("--module", default=None, help="whose demo to run (default: the first module that has one)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    p.add_argument("--no-viewer", action="store_true", help="no viewer: print progress only")
    p.add_argument("--offscreen", action="store_true", help="viewer renders offscreen (no window; with --screenshot)")
    p.add_argument("--screenshot", type=Path, default=None, metavar="PNG",
                   help="viewer saves a screenshot here (with --duration: shortly before the end)")
    p.add_argument("--size", default=None, metavar="WxH", help="viewer window size, e.g. 1280x720")
    p.set_defaults(func=cmd_demo)


def add_server_parser(sub: Subcommands) -> None:
    from wiredraw.core.address import DEFAULT_HTTP_PORT, DEFAULT_PROBE_PORT, DEFAULT_VIZ_PORT

    p = sub.add_parser("server", help="run the processing server",
                       description=about(cmd_server))
    add_data_dir(p)
    p.add_argument("--redis", metavar="URL", default=None,
                   help="use this Redis (redis://[user:pass@]host:port/db, rediss://..., unix:///path) "
                        "instead of a private one")
    p.add_argument("--ephemeral", action="store_true",
                   help="private Redis keeps nothing on disk (default: append-only file, fsync every second)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--probe-port", type=int, default=DEFAULT_PROBE_PORT,
                   help=f"UDP and TCP port for probes (default {DEFAULT_PROBE_PORT}; 0 picks a free one)")
    p.add_argument("--viz-port", type=int, default=DEFAULT_VIZ_PORT,
                   help=f"TCP port for viewers (default {DEFAULT_VIZ_PORT}; 0 picks a free one)")
    p.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT,
                   help=f"HTTP port for /stats and /health (default {DEFAULT_HTTP_PORT}; 0 picks a free one)")
    p.add_argument("--retention-days", type=float, default=None,
                   help="days of history modules keep in Redis (the keys' TTL; default: each module's own, 7 for "
                        "net_zeek)")
    p.add_argument("--max-upload-mb", type=float, default=64.0,
                   help="largest HTTP collector upload (POST /logs/<type>) in MiB; larger ones get 413 (default 64)")
    p.add_argument("--viz-config", type=Path, default=None, metavar="FILE",
                   help="TOML file with one table of view options per module, e.g. [net_zeek] local_networks, "
                        "groups (see each module's README and viz.sample.toml)")
    p.add_argument("--live-window", type=float, default=3600.0, metavar="SECONDS",
                   help="event time the live graph holds, back from the latest event stored (default 3600; "
                        "0: everything stored)")
    p.add_argument("--full-every", type=float, default=30.0, metavar="SECONDS",
                   help="seconds between full graphs sent to viewers, which also recover lost notifications "
                        "(default 30)")
    p.add_argument("--viewer-backlog-kb", type=float, default=1024.0, metavar="KIB",
                   help="diffs a viewer that reads slower than they come may have queued before they are dropped "
                        "and it gets one full graph when it catches up: this many KiB, or the size of its last "
                        "full graph if bigger, up to 32 MiB (default 1024)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log everything to stderr (default: warnings and errors only)")
    p.set_defaults(func=cmd_server)


def add_probe_parser(sub: Subcommands, modules: ModuleSet) -> None:
    """``wiredraw probe MODULE``: one subcommand per loaded module, with its own options."""
    from wiredraw.core.address import DEFAULT_PROBE_PORT

    p = sub.add_parser("probe", help="run a module's probe source and send its events to a server",
                       description=about(cmd_probe))
    msub = p.add_subparsers(dest="module", metavar="MODULE", required=True)
    for loaded in modules:
        mp = msub.add_parser(loaded.spec.slug, help=loaded.spec.doc, description=loaded.spec.doc)
        add_data_dir(mp)
        mp.add_argument("--server", default=f"127.0.0.1:{DEFAULT_PROBE_PORT}", help="server HOST:PORT")
        mp.add_argument("--probe-id", required=True, help="this probe's id (as given to `wiredraw keys add`)")
        mp.add_argument("--key-file", required=True, type=Path,
                        help="file holding the hex key `wiredraw keys add` printed")
        mp.add_argument("--transport", choices=("tcp", "udp"), default="tcp",
                        help="tcp (default: acknowledged, spooled, nothing lost) or udp (fire and forget)")
        mp.add_argument("--state-dir", type=Path, default=None,
                        help="where the spool and resume state live (default: DATA_DIR/probes/ID-MODULE)")
        mp.add_argument("--batch", type=int, default=500, help="most records per frame (default 500)")
        mp.add_argument("--max-datagram", type=int, default=None,
                        help="UDP: largest datagram in bytes (default 1200, or 60000 to a loopback server)")
        mp.add_argument("--progress", type=float, default=2.0, help="seconds between progress lines (default 2)")
        mp.add_argument("--quiet", action="store_true",
                        help="no progress lines (what the probe waits for, warnings and errors are still said)")
        mp.add_argument("--give-up", type=float, default=None, metavar="SECONDS",
                        help="after waiting this long for one thing (the server, its acknowledgements, files to "
                             "appear), stop with exit status 3, saying what it waited for and what is left in the "
                             f"spool (kept for the next run). Default: {REPLAY_GIVE_UP:.0f} for a finite source "
                             "(a replay), never for an endless one (a live --logdir); 0: never")
        loaded.module.add_probe_options(mp)
        mp.set_defaults(func=cmd_probe)
