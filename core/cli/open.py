"""``wiredraw open PATH…``: one's own logs on screen in one command.

Each loaded module is asked whether it reads the paths (:meth:`wiredraw.core.module.Module.open_paths`: net_zeek
claims Zeek logs, live or recorded); the first that does, by module ID, or the one ``--module`` names, gives the
source. Then, on this machine (:class:`wiredraw.core.cli.local.LocalRun`): with no ``--server``, the embedded
server in the data directory, its probe key and viewer token made on first use and reused after; the module's
probe over the source, in this process; the viewer, logged in on that module. A replay prints a progress line and,
once everything is stored, says so and keeps serving the graph until it is stopped.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from wiredraw.core.cli.common import about, add_data_dir, run_reactor
from wiredraw.core.cli.local import LocalRun, local_credentials, viewer_args
from wiredraw.core.module import Module, OpenRequest
from wiredraw.core.plugins import LoadedModule, ModuleSet
from wiredraw.core.server.credentials import write_private
from wiredraw.core.timeparse import parse_time

if TYPE_CHECKING:
    from wiredraw.core.cli.common import Subcommands
    from wiredraw.core.module import Opened

PROBE_ID = "open"  # the probe id `wiredraw open` sends as (its key is made on first use)
VIEWER = "open-viewer"  # the name of its viewer token


def claim(modules: ModuleSet, request: OpenRequest, slug: str | None) -> tuple[LoadedModule, Opened]:
    """The module that reads ``request``'s paths and what it opened. ValueError saying what to do otherwise."""
    if slug is not None:
        loaded = modules.get(slug)
        if loaded is None:
            raise ValueError(f"--module {slug}: no such module loaded ({', '.join(m.spec.slug for m in modules)})")
        candidates = [loaded]
    else:
        candidates = sorted(modules, key=lambda m: m.spec.id)
    for loaded in candidates:
        opened = loaded.module.open_paths(request)
        if opened is not None:
            return loaded, opened
    readers = [m.spec.slug for m in candidates if type(m.module).open_paths is not Module.open_paths]
    names = " ".join(str(p) for p in request.paths)
    raise ValueError(f"nothing in {names} is input {('module ' + slug) if slug else 'any module'} reads"
                     + (f" (modules that open paths: {', '.join(readers)}; net_zeek reads Zeek logs, TSV or JSON, "
                        ".log or .gz, and live Zeek log directories)" if readers else ""))


def store_of(data_dir: Path, paths: Sequence[Path]) -> Path:
    """Where one opened set of paths keeps its store and probe state: ``DATA_DIR/open/<name>-<hash>``, the same for
    the same paths (opened again, it is shown at once and resumes), another for others (so the live graph shows
    what was opened, not the end of an earlier capture)."""
    resolved = sorted(str(Path(p).absolute()) for p in paths)
    digest = hashlib.sha256("\0".join(resolved).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(resolved[0]).name or "root")[:40]
    return data_dir / "open" / f"{name}-{digest}"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports() -> tuple[int, int, int]:
    """The default ports when they are all free (so `watch --server 127.0.0.1:4431` works), else free ones."""
    from wiredraw.core.address import DEFAULT_HTTP_PORT, DEFAULT_PROBE_PORT, DEFAULT_VIZ_PORT

    ports = (DEFAULT_PROBE_PORT, DEFAULT_VIZ_PORT, DEFAULT_HTTP_PORT)
    return ports if all(_port_free(p) for p in ports) else (0, 0, 0)


def _remote_credentials(args: argparse.Namespace, viz: str) -> tuple[bytes, Path]:
    """The probe key and a viewer token file for ``--server``: from the files given, else asked for."""
    from wiredraw.core.server.credentials import read_key_file

    if args.key_file is not None:
        key = read_key_file(args.key_file)
    else:
        if not sys.stdin.isatty():
            raise ValueError(f"--server: give --key-file (the hex key `wiredraw keys add {args.probe_id}` printed "
                             "on the server)")
        text = getpass.getpass(f"probe key for {args.probe_id!r} (as `wiredraw keys add {args.probe_id}` printed "
                               "on the server): ")
        try:
            key = bytes.fromhex(text.strip())
        except ValueError:
            raise ValueError("that is not a hex key") from None
    if args.token_file is not None:
        return key, args.token_file
    if not sys.stdin.isatty():
        raise ValueError("--server: give --token-file (a viewer token: `wiredraw tokens add NAME --role viewer` on "
                         "the server)")
    token = getpass.getpass(f"viewer token for {viz} (`wiredraw tokens add NAME --role viewer` on the server): ")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    token_file = args.data_dir / "open-remote-viewer.token"
    write_private(token_file, token.strip() + "\n")
    return key, token_file


@defer.inlineCallbacks
def run_open(reactor: Any, modules: ModuleSet, args: argparse.Namespace, loaded: LoadedModule, opened: Opened,
             remote: tuple[bytes, Path] | None = None, out: Any = None) -> Any:
    """Run what ``open`` starts until it is stopped; ``remote``: the key and token file for ``--server``."""
    from wiredraw.core.address import parse_server
    from wiredraw.core.server.service import ServerConfig
    from wiredraw.probes.runner import ProbeOptions

    run = LocalRun(reactor, "open", out)
    slug = loaded.spec.slug
    data_dir: Path = args.data_dir
    place = store_of(data_dir, args.paths)
    run.say(f"{opened.describe}; module {slug}; its store {place} (Ctrl-C stops everything)")
    if args.server is None:
        probe_port, viz_port, http_port = _ports()
        config = ServerConfig(data_dir=data_dir, store_dir=place / "redis", probe_port=probe_port,
                              viz_port=viz_port, http_port=http_port, live_window=args.live_window).check()
        key, token_file = local_credentials(data_dir, args.probe_id, VIEWER, reuse=True)
        server = yield run.start_server(config, modules)
        host, port = "127.0.0.1", server.listeners.ports["probe_tcp"].getHost().port
        viz = server.listeners.address("viz")
    else:
        host, port = parse_server(args.server)
        viz = args.viz
        assert remote is not None
        key, token_file = remote
    opts = ProbeOptions(host=host, port=port, probe_id=args.probe_id, key=key,
                        state_dir=place / f"probe-{args.probe_id}",
                        progress_interval=2.0 if not opened.live else 30.0)
    runner = run.start_probe(loaded.module, opened.source, opts)

    def sent(code: Any) -> Any:
        if run.ended.called:
            return code
        if code != 0:
            run.say(f"the probe stopped (exit status {code}; its lines above say why); the graph of what was "
                    "stored stays up until Ctrl-C" + (" or the window is closed" if viewing else ""), err=True)
        else:
            s = runner.summary()
            done = (f"everything is stored: {s.get('records_sent', 0):,} records sent in {s.get('seconds', 0):,.1f} s "
                    f"({s.get('source_bad_lines', 0):,} bad lines)" if s.get("records_sent") else
                    "nothing new to send (these logs were sent before: the graph is read from their store)")
            run.say(done + "; the graph stays up until Ctrl-C" + (" or the window is closed" if viewing else ""))
        return code

    def last_words() -> None:
        s = runner.summary()
        run.say(f"probe: {s.get('records_read', 0):,} records read, {s.get('records_acked', 0):,} stored, "
                f"{s.get('spooled', 0):,} still spooled, {s.get('source_bad_lines', 0):,} bad lines")

    watch = f"wiredraw watch --server {viz} --token-file {token_file} --module {slug}"
    viewing = False
    if not args.no_viewer:
        viewing = run.open_viewer(viz, token_file, slug, viewer_args(args),
                                  no_display_hint=f"Watch it as JSON: {watch}; or render it: wiredraw open "
                                                  f"--offscreen --screenshot graph.png --duration 20 PATH")
    if not viewing:
        run.say(f"watch it: {watch}")
        run.say(f"query it: wiredraw query --server {viz} --token-file {token_file} --module {slug} graph")
    runner.done.addCallback(sent)
    run.stop_after(args.duration)
    return (yield run.run(last_words))


def cmd_open(args: argparse.Namespace, modules: ModuleSet) -> int:
    """Put your own logs on screen: a live Zeek log directory (zeekctl's logs/current, followed as it is written)
    or recorded logs and folders of them (.log/.gz, TSV/JSON, any mix, replayed in event-time order). With no
    --server it runs the embedded server in the data directory, making the probe key and viewer token on first use
    and reusing them after; it runs the probe and opens the viewer logged in. Ctrl-C, --duration or closing the
    window stops all it started.
    """
    if args.screenshot is not None and not args.offscreen:
        raise ValueError("--screenshot goes with --offscreen")
    if args.offscreen and args.screenshot is None:
        raise ValueError("--offscreen needs --screenshot FILE.png (there is no window to look at)")
    if args.speed is not None and not args.speed > 0:
        raise ValueError(f"--speed {args.speed}: expected a number > 0")
    since = parse_time(args.since, "--since") if args.since is not None else None
    request = OpenRequest(tuple(args.paths), live=args.live, since=since, speed=None if args.fast else args.speed)
    remote = None
    if args.server is not None:  # asked for (or read) before anything starts
        from wiredraw.core.address import DEFAULT_VIZ_PORT, parse_server

        args.viz = args.viz or f"{parse_server(args.server)[0]}:{DEFAULT_VIZ_PORT}"
        remote = _remote_credentials(args, args.viz)
    loaded, opened = claim(modules, request, args.module)
    return run_reactor(lambda reactor: run_open(reactor, modules, args, loaded, opened, remote))


def add_open_parser(sub: Subcommands) -> None:
    p = sub.add_parser("open", help="your own logs on screen: a live Zeek log directory or recorded logs",
                       description=about(cmd_open, "Examples: wiredraw open /opt/zeek/logs/current; "
                                         "wiredraw open ~/captures/2024-04-19/ --speed 60"))
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="a live log directory, or log files and folders of them")
    add_data_dir(p)
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None, metavar="X",
                      help="recorded logs at X times event time (default: as fast as the server takes them)")
    pace.add_argument("--fast", action="store_true", help="recorded logs as fast as the server takes them (default)")
    p.add_argument("--live", action="store_true",
                   help="follow this one directory as a live log directory (found by itself for zeekctl's "
                        "logs/current)")
    p.add_argument("--since", default=None, metavar="TIME",
                   help="live directory, first start: first send its archives from TIME on (epoch seconds or "
                        "ISO-8601, UTC unless a zone is given)")
    p.add_argument("--module", default=None, help="the module that reads the paths (default: the first that does)")
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="send to this server's probe port instead of running one here (with --key-file and "
                        "--token-file, or asked for)")
    p.add_argument("--viz", default=None, metavar="HOST:PORT",
                   help="with --server: its viz address (default: the same host, port 4431)")
    p.add_argument("--key-file", type=Path, default=None, help="with --server: the probe's hex key file")
    p.add_argument("--token-file", type=Path, default=None, help="with --server: a viewer token file")
    p.add_argument("--probe-id", default=PROBE_ID, help=f"the probe id to send as (default {PROBE_ID})")
    p.add_argument("--live-window", type=float, default=3600.0, metavar="SECONDS",
                   help="event time the live graph holds, back from the latest event (default 3600; 0: all)")
    p.add_argument("--no-viewer", action="store_true", help="no viewer: print how to watch and query instead")
    p.add_argument("--offscreen", action="store_true", help="viewer renders offscreen (with --screenshot)")
    p.add_argument("--screenshot", type=Path, default=None, metavar="PNG",
                   help="viewer saves a screenshot here (with --duration: shortly before the end)")
    p.add_argument("--size", default=None, metavar="WxH", help="viewer window size, e.g. 1280x720")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until stopped)")
    p.set_defaults(func=cmd_open)
