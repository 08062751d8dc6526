"""The ``wiredraw`` command."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from wiredraw.core.plugins import ModuleSet, PluginError, load_modules, load_registry
from wiredraw.core.server.credentials import CredentialError, ProbeSecrets, Tokens, read_key_file

EPILOG_ENV = """environment:
  WIREDRAW_DATA_DIR        default for --data-dir
  WIREDRAW_DEV_MODULES=1   also load the development module `devtest` (id 999)
  WIREDRAW_PLUGINS_STRICT=1  a plugin that fails to load stops the program instead of being skipped
  WIREDRAW_LOAD_PLUGINS=a,b / WIREDRAW_BLOCK_PLUGINS=a,b   restrict / block plugins by name
  WIREDRAW_TRACE_PLUGINS=1 trace plugin hook calls on stderr
"""


def default_data_dir() -> Path:
    if os.environ.get("WIREDRAW_DATA_DIR"):
        return Path(os.environ["WIREDRAW_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "wiredraw"


def get_modules() -> ModuleSet:
    extra: list[tuple[str, object]] = []
    if os.environ.get("WIREDRAW_DEV_MODULES", "") not in ("", "0"):
        from wiredraw.core import devtest

        extra.append(("devtest", devtest))
    modules = load_modules(extra_plugins=extra)
    for name, error in modules.broken:
        print(f"wiredraw: plugin {name!r} skipped: {error}", file=sys.stderr)
    return modules


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"where keys, tokens and the embedded Redis live (default: {default_data_dir()})")


# ----------------------------------------------------------------------------------------------
# commands


def cmd_plugins(args: argparse.Namespace, modules: ModuleSet) -> int:
    items = []
    for m in modules:
        d = m.spec.as_dict()
        d["plugin"] = m.plugin
        items.append(d)
    if args.json:
        json.dump({"modules": items, "broken": [{"plugin": n, "error": e} for n, e in modules.broken]},
                  sys.stdout, indent=2)
        print()
        return 0
    if not items:
        print("no modules loaded")
    for d in items:
        print(f"{d['id']:>5}  {d['slug']}  {d['version']}  (plugin {d['plugin']})")
        print(f"       {d['doc']}")
        for name, msg in d["messages"].items():
            print(f"       message {name}: {', '.join(msg['fields'])}")
        for k in d["keys"]:
            ttl = f", ttl {k['ttl']} s" if k["ttl"] else ""
            print(f"       key {k['template']} ({k['type']}{ttl})")
    for name, error in modules.broken:
        print(f"broken plugin {name}: {error}")
    return 0


def cmd_new_module(args: argparse.Namespace, modules: ModuleSet) -> int:
    from wiredraw.core.cli.scaffold import DEVELOPMENT_ID, create, names_for

    slug = args.slug
    loaded = modules.get(slug)
    if loaded is not None:
        raise ValueError(f"slug {slug!r} is already taken by a loaded module (id {loaded.spec.id}, plugin "
                         f"{loaded.plugin!r}); pick another")
    directory = Path(args.dir) if args.dir is not None else Path(names_for(slug)["dist"])
    made = create(slug, directory, args.id)
    print(f"wrote module {slug!r} (id {made.module_id}), distribution {made.distribution}, in {directory}/:")
    for rel in made.files:
        print(f"  {rel}")
    print("next:")
    print(f"  cd {directory} && python3 -m pip install -e . && pytest")
    print(f"  wiredraw plugins        # lists {slug}")
    if made.module_id == DEVELOPMENT_ID:
        print(f"  ({DEVELOPMENT_ID} is the development id: pick a private one, 1000-65535, before you ship)")
    return 0


def cmd_keys(args: argparse.Namespace, _modules: Any) -> int:
    keys = ProbeSecrets(args.data_dir)
    if args.action == "add":
        print(keys.add(args.probe_id, replace=args.replace))
    elif args.action == "remove":
        keys.remove(args.probe_id)
        print(f"removed the key of probe {args.probe_id}", file=sys.stderr)
    else:
        for item in keys.list():
            print(f"{item['probe_id']}\t{item['created']}")
    return 0


def cmd_tokens(args: argparse.Namespace, _modules: Any) -> int:
    tokens = Tokens(args.data_dir)
    if args.action == "add":
        print(tokens.add(args.name, args.role, replace=args.replace))
    elif args.action == "remove":
        tokens.remove(args.name)
        print(f"removed token {args.name}", file=sys.stderr)
    else:
        for item in tokens.list():
            print(f"{item['name']}\t{item['role']}\t{item['created']}")
    return 0


# -- viewers: watch and query ------------------------------------------------------------------------------------


def _viz_time(text: str) -> float:
    from wiredraw.core.timeparse import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _viewer_token(args: argparse.Namespace) -> str | None:
    """--token-file, else --token, else $WIREDRAW_TOKEN; None when none is given."""
    if args.token_file is not None:
        return str(args.token_file.read_text().strip())
    return args.token or os.environ.get("WIREDRAW_TOKEN") or None


def _viz_connect(args: argparse.Namespace) -> Any:
    """A connected ViewerClient and the module slug to use."""
    from wiredraw.core.address import DEFAULT_VIZ_PORT, parse_server
    from wiredraw.core.viewer_client import ViewerClient

    token = _viewer_token(args)
    if not token:
        raise ValueError("a viewer token is needed: --token, --token-file or WIREDRAW_TOKEN "
                         "(make one on the server with `wiredraw tokens add NAME --role viewer`)")
    host, port = parse_server(args.server, DEFAULT_VIZ_PORT)
    client = ViewerClient(host, port, token, timeout=args.timeout)
    welcome = client.connect()
    offered = [m["slug"] for m in welcome.get("modules", [])]
    module = args.module
    if module is None:
        if len(offered) != 1:
            client.close()
            raise ValueError(f"name a --module; the server offers: {', '.join(offered) or 'none'}")
        module = offered[0]
    elif module not in offered:
        client.close()
        raise ValueError(f"the server has no view for module {module!r}; it offers: {', '.join(offered) or 'none'}")
    return client, module


def cmd_watch(args: argparse.Namespace, _modules: Any) -> int:
    import threading

    from wiredraw.core.viewer_client import ViewerClientError, to_json_bytes

    try:
        client, module = _viz_connect(args)
    except ViewerClientError as exc:
        print(f"wiredraw watch: {exc}", file=sys.stderr)
        return 1
    view: dict[str, Any] = {"filter": args.filter}
    if args.at is not None:
        view.update(mode="at", t=args.at)
    elif args.from_ is not None:
        view.update(mode="play", t=args.from_, speed=args.speed, window=args.window)
    else:
        view.update(mode="live")
    sys.stdout.flush()
    out = sys.stdout.buffer  # bytes straight through: a line per message, flushed as it comes
    printed = 0
    try:
        client.subscribe(module, **view)
        client.wait_forever()  # a quiet live view is not an error
        if args.commands:
            threading.Thread(target=_watch_commands, args=(client,), daemon=True).start()
        for msg in client.messages():
            out.write(to_json_bytes(msg) + b"\n")
            out.flush()
            printed += 1
            if args.count and printed >= args.count:
                return 0
    except ViewerClientError as exc:
        print(f"wiredraw watch: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    finally:
        client.close()
    return 0


WATCH_COMMANDS = """commands on stdin (with --commands), one per line:
  filter EXPR        replace the filter (an empty EXPR shows everything)
  live               follow what arrives
  at TIME            the graph at TIME (epoch seconds or ISO-8601)
  play TIME [SPEED]  replay from TIME at SPEED x event time (default 1)"""


def _watch_commands(client: Any) -> None:
    """Read `filter ...`, `live`, `at T`, `play T [S]` lines from stdin and send them as configure requests."""
    from wiredraw.core.timeparse import parse_time

    for line in sys.stdin:
        word, _, rest = line.strip().partition(" ")
        try:
            if word == "filter":
                client.request_async("configure", filter=rest)
            elif word == "live":
                client.request_async("configure", mode="live")
            elif word == "at":
                client.request_async("configure", mode="at", t=parse_time(rest))
            elif word == "play":
                t, _, speed = rest.partition(" ")
                client.request_async("configure", mode="play", t=parse_time(t), speed=float(speed or 1))
            elif word:
                print(f"wiredraw watch: unknown command {word!r}\n{WATCH_COMMANDS}", file=sys.stderr)
        except (ValueError, OSError) as exc:
            print(f"wiredraw watch: {exc}", file=sys.stderr)


def cmd_viz(args: argparse.Namespace, _modules: Any) -> int:
    try:
        from wiredraw.viz.app import ViewerOptions, run_viewer
    except ImportError as exc:
        print(f"wiredraw viz: the 3D viewer cannot start: {exc} (it needs panda3d and numpy)", file=sys.stderr)
        return 2
    token = _viewer_token(args)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    if args.screenshot is not None and not args.offscreen:
        raise ValueError("--screenshot goes with --offscreen")
    if args.offscreen and args.screenshot is None:
        raise ValueError("--offscreen needs --screenshot FILE.png (there is no window to look at)")
    if args.offscreen and (args.server is None or token is None):
        raise ValueError("--offscreen needs --server and a token (there is no login screen to type them into)")
    options = ViewerOptions(server=args.server, token=token, module=args.module, at=args.at,
                            offscreen=args.offscreen, screenshot=args.screenshot,
                            screenshot_after=args.screenshot_after, size=(w, h), remember=not args.forget)
    return run_viewer(options)


def cmd_query(args: argparse.Namespace, _modules: Any) -> int:
    from wiredraw.core.viewer_client import ViewerClientError, to_json_bytes

    try:
        client, module = _viz_connect(args)
    except ViewerClientError as exc:
        print(f"wiredraw query: {exc}", file=sys.stderr)
        return 1
    req: dict[str, Any] = {"module": module}
    if args.what in ("graph", "details", "histogram"):
        if args.at is not None:
            req["at"] = args.at
        elif (args.from_ is None) != (args.to is None):
            client.close()
            raise ValueError("--from and --to go together")
        elif args.from_ is not None:
            req.update({"from": args.from_, "to": args.to})
    if args.what == "graph":
        req["filter"] = args.filter
    elif args.what == "details":
        req["element"] = args.element
    elif args.what == "histogram":
        req["bins"] = args.bins
    try:
        with client:
            result = client.request(args.what, **req)
    except ViewerClientError as exc:
        print(f"wiredraw query: {exc}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stdout.buffer.write(to_json_bytes(result) + b"\n")  # UTF-8 whatever the locale says
    sys.stdout.buffer.flush()
    if args.what == "details" and result is None:
        print(f"wiredraw query: no element {args.element!r} in that interval", file=sys.stderr)
        return 1
    return 0


def _add_viewer_options(p: argparse.ArgumentParser, *, again: bool = False) -> None:
    """The connection options; ``again``: on a subcommand too (no defaults there, so `query --module M graph`
    and `query graph --module M` both work)."""
    from wiredraw.core.address import DEFAULT_VIZ_PORT

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if again else value

    p.add_argument("--server", default=d(f"127.0.0.1:{DEFAULT_VIZ_PORT}"),
                   help=f"the server's viz HOST:PORT (default 127.0.0.1:{DEFAULT_VIZ_PORT})")
    p.add_argument("--token", default=d(None),
                   help="viewer token (`wiredraw tokens add NAME --role viewer`; default: $WIREDRAW_TOKEN)")
    p.add_argument("--token-file", type=Path, default=d(None), help="read the viewer token from this file")
    p.add_argument("--module", default=d(None), help="module to view, e.g. net_zeek (default: the only one offered)")
    p.add_argument("--timeout", type=float, default=d(30.0), help="seconds to wait for the server (default 30)")


def _server_config(args: argparse.Namespace) -> Any:
    from wiredraw.core.server.service import ServerConfig

    return ServerConfig(data_dir=args.data_dir, redis_url=args.redis, bind=args.bind, probe_port=args.probe_port,
                        viz_port=args.viz_port, http_port=args.http_port, ephemeral=args.ephemeral,
                        max_upload=int(args.max_upload_mb * (1 << 20)),
                        retention=None if args.retention_days is None else int(args.retention_days * 86400),
                        viz_config=args.viz_config, live_window=args.live_window, full_every=args.full_every,
                        viewer_backlog=int(args.viewer_backlog_kb * 1024)).check()


def _run_reactor(start: Any) -> int:
    from twisted.internet import reactor

    codes: list[int] = []
    reactor.callWhenRunning(lambda: start(reactor).addBoth(codes.append))
    reactor.run()
    code = codes[0] if codes else 0
    return code if isinstance(code, int) else 1


def cmd_server(args: argparse.Namespace, modules: ModuleSet) -> int:
    from wiredraw.core.server.service import run_server

    config = _server_config(args)
    _log_to_stderr(verbose=args.verbose)
    return _run_reactor(lambda reactor: run_server(reactor, config, modules))


def _log_to_stderr(verbose: bool) -> None:
    """Warnings and errors always reach stderr; everything with --verbose. stdout stays for the ready line."""
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    level = LogLevel.info if verbose else LogLevel.warn
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr),
                                    [LogLevelFilterPredicate(defaultLogLevel=level)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def cmd_probe(args: argparse.Namespace, modules: ModuleSet) -> int:
    from wiredraw.core.address import parse_server
    from wiredraw.probes.runner import ProbeOptions, ProbeRunner

    loaded = modules.get(args.module)
    assert loaded is not None  # argparse only offers loaded modules
    host, port = parse_server(args.server)
    key = read_key_file(args.key_file)
    state_dir = args.state_dir or (args.data_dir / "probes" / f"{args.probe_id}-{loaded.spec.slug}")
    opts = ProbeOptions(host=host, port=port, probe_id=args.probe_id, key=key, transport=args.transport,
                        state_dir=state_dir, batch_records=args.batch, max_datagram=args.max_datagram,
                        progress_interval=0 if args.quiet else args.progress)
    try:
        source = loaded.module.make_source(args)
    except NotImplementedError as exc:
        print(f"wiredraw probe: {exc}", file=sys.stderr)
        return 2

    def start(reactor: Any) -> Any:
        runner = ProbeRunner(reactor, loaded.module, source, opts)
        print(f"wiredraw probe {args.probe_id}: module {loaded.spec.slug} → {host}:{port} over {args.transport}",
              file=sys.stderr, flush=True)
        reactor.addSystemEventTrigger("before", "shutdown", runner.stop)

        def finished(code: int) -> int:
            print(f"wiredraw probe {args.probe_id}: done: {json.dumps(runner.summary())}", file=sys.stderr)
            if reactor.running:
                reactor.stop()
            return code

        return runner.start().addCallback(finished)

    return _run_reactor(start)


def cmd_demo(args: argparse.Namespace, modules: ModuleSet) -> int:
    from wiredraw.core.cli.demo import run_demo

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="wiredraw-demo-"))
    viewer_args: list[str] = []
    if args.offscreen:
        viewer_args.append("--offscreen")
    if args.screenshot is not None:
        viewer_args += ["--screenshot", str(args.screenshot.absolute())]
        if args.duration > 0:
            viewer_args += ["--screenshot-after", str(max(1.0, args.duration - 4.0))]
    if args.size:
        viewer_args += ["--size", args.size]
    try:
        return _run_reactor(lambda reactor: run_demo(reactor, modules, data_dir, module=args.module,
                                                     duration=args.duration, viewer=not args.no_viewer,
                                                     viewer_args=viewer_args))
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# parser


def build_parser(modules: ModuleSet) -> argparse.ArgumentParser:
    from wiredraw.core.address import DEFAULT_HTTP_PORT, DEFAULT_PROBE_PORT, DEFAULT_VIZ_PORT

    parser = argparse.ArgumentParser(
        prog="wiredraw",
        description="wiredraw turns live event streams (Zeek logs, process events, your own modules) into a "
                    "live graph. Probes send signed events to the server, which stores them in Redis.",
        epilog="Start with `wiredraw demo`. Each command has its own --help.\n\n" + EPILOG_ENV,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wiredraw {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="everything on this machine: server, generated traffic, probe and viewer",
                       description="Start a private Redis, the server, a generator of realistic input (a small "
                                   "office's Zeek logs, written live), the real probe reading it, and the viewer "
                                   "logged in. Ctrl-C, --duration or closing the viewer stops everything and leaves "
                                   "no process behind.")
    _add_data_dir(p)
    p.add_argument("--module", default=None, help="whose demo to run (default: the first module that has one)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    p.add_argument("--no-viewer", action="store_true", help="no viewer: print progress only")
    p.add_argument("--offscreen", action="store_true", help="viewer renders offscreen (no window; with --screenshot)")
    p.add_argument("--screenshot", type=Path, default=None, metavar="PNG",
                   help="viewer saves a screenshot here (with --duration: shortly before the end)")
    p.add_argument("--size", default=None, metavar="WxH", help="viewer window size, e.g. 1280x720")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("server", help="run the processing server",
                       description="Run the processing server: probe listeners (UDP and TCP on one port), "
                                   "HTTP (/stats, /health) and the viz listener. With no --redis it starts its "
                                   "own private redis-server in the data directory and stops it on exit. Prints "
                                   "one line `wiredraw server ready: probes=H:P viz=H:P http=H:P redis=URL` "
                                   "once everything listens.")
    _add_data_dir(p)
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

    p = sub.add_parser("probe", help="run a module's probe source and send its events to a server",
                       description="Run a module's probe: read its source, sign and send batches to the server. "
                                   "Over TCP, batches wait in an on-disk spool until the server has stored them, "
                                   "so an outage loses nothing.")
    msub = p.add_subparsers(dest="module", metavar="MODULE", required=True)
    for loaded in modules:
        mp = msub.add_parser(loaded.spec.slug, help=loaded.spec.doc, description=loaded.spec.doc)
        _add_data_dir(mp)
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
        mp.add_argument("--quiet", action="store_true", help="no progress lines")
        loaded.module.add_probe_options(mp)
        mp.set_defaults(func=cmd_probe)

    p = sub.add_parser("viz", help="the 3D viewer: live graph, details on click, timeline",
                       description="The 3D viewer. With no --server/--token it opens a login screen (the server's "
                                   "viz address, a viewer token, then a module the server offers) and remembers "
                                   "them in ~/.config/wiredraw/viewer.json (mode 0600). Mouse: left drag orbits, "
                                   "right drag pans, wheel zooms, click selects (details on the right). Keys are "
                                   "in ~/.config/wiredraw/keys.toml (see wiredraw.viz.bindings); defaults: arrows "
                                   "orbit, =/- zoom, f frames all, space plays/pauses, l goes live, g toggles "
                                   "grouping, [ ] change how much traffic pulls, tab hides panels, escape closes "
                                   "details.")
    p.add_argument("--server", default=None, help="the server's viz HOST:PORT (skips the login screen with --token)")
    p.add_argument("--token", default=None, help="viewer token (default: $WIREDRAW_TOKEN)")
    p.add_argument("--token-file", type=Path, default=None, help="read the viewer token from this file")
    p.add_argument("--module", default=None, help="module to view (default: the only one offered, else pick)")
    p.add_argument("--at", type=_viz_time, default=None, metavar="TIME", help="start at this time instead of live")
    p.add_argument("--offscreen", action="store_true", help="render without a window (with --screenshot)")
    p.add_argument("--screenshot", type=Path, default=None, metavar="PNG", help="save a screenshot, then exit")
    p.add_argument("--screenshot-after", type=float, default=8.0, metavar="SECONDS",
                   help="when to take the screenshot (default 8 s after start: the layout settles)")
    p.add_argument("--size", default="1280x720", metavar="WxH", help="window or image size (default 1280x720)")
    p.add_argument("--forget", action="store_true", help="do not remember server and token")
    p.set_defaults(func=cmd_viz)

    times = ("Times are epoch seconds (1541240000) or ISO-8601 (2018-11-03T12:00, UTC unless a zone is given). "
             "Output is JSON.")
    p = sub.add_parser("watch", help="follow a module's graph as JSON lines: one full graph, then diffs",
                       description="Subscribe to a module's graph on a server and print each message as one JSON "
                                   "line: a full graph (type graph: nodes, edges), then diffs (type diff: upserted "
                                   "nodes and edges, removed ids, pulses) numbered by seq, and a full graph again "
                                   "every --full-every seconds of the server. " + times,
                       epilog=WATCH_COMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_viewer_options(p)
    p.add_argument("--filter", default=None, metavar="EXPR",
                   help="show only what matches, e.g. 'service != \"dns\" and bytes > 10000' (spec/filter.md)")
    p.add_argument("--at", type=_viz_time, default=None, metavar="TIME", help="the graph at TIME, no live updates")
    p.add_argument("--from", dest="from_", type=_viz_time, default=None, metavar="TIME",
                   help="replay history from TIME (play mode)")
    p.add_argument("--speed", type=float, default=1.0, help="play speed, x event time (default 1)")
    p.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="play mode: event time a graph holds, back from the present time (default 60)")
    p.add_argument("--count", type=int, default=0, help="exit after this many messages (default: run until Ctrl-C)")
    p.add_argument("--commands", action="store_true", help="read view commands from stdin (see below)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("query", allow_abbrev=False,
                       help="ask a server one question about a module's graph; prints one JSON document",
                       description="Ask the server one question about a module's stored graph and print the answer "
                                   "as one JSON document. " + times)
    _add_viewer_options(p)
    qsub = p.add_subparsers(dest="what", metavar="QUESTION", required=True)
    q = qsub.add_parser("graph", help="nodes and edges at a time or in an interval (default: everything stored)")
    q.add_argument("--filter", default=None, metavar="EXPR", help="only what matches (spec/filter.md)")
    qd = qsub.add_parser("details", help="details of a node or edge id (e.g. 10.0.0.1 or 10.0.0.1>192.0.2.7)")
    qd.add_argument("element", help="node or edge id")
    qh = qsub.add_parser("histogram", help="the module's counters in equal time bins")
    qh.add_argument("--bins", type=int, default=100, help="number of bins (default 100)")
    qsub.add_parser("range", help="earliest and latest event time stored")
    qsub.add_parser("modules", help="modules the server offers a view of")
    for q in qsub.choices.values():
        _add_viewer_options(q, again=True)
        if q.prog.split()[-1] in ("graph", "details", "histogram"):
            q.add_argument("--at", type=_viz_time, default=None, metavar="TIME", help="at this instant")
            q.add_argument("--from", dest="from_", type=_viz_time, default=None, metavar="TIME",
                           help="interval start")
            q.add_argument("--to", type=_viz_time, default=None, metavar="TIME", help="interval end")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("plugins", help="list the loaded modules",
                       description="List each loaded module: id, slug, version, message types and key templates.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("new-module", help="scaffold a new module as its own installable distribution",
                       description="Write a new module's distribution: pyproject (entry point in wiredraw.modules), "
                       "the module's package (source, messages, key schema, view translation, README, sample "
                       "configuration), its message vectors and tests (the conformance suite), green at once.")
    p.add_argument("slug", help="the module's slug, lower_snake_case (e.g. my_source)")
    p.add_argument("--dir", default=None, metavar="DIR",
                   help="where to write it (default: ./wiredraw-<slug with dashes>); must be new or empty")
    p.add_argument("--id", type=int, default=999,
                   help="module id: 999 (development, the default) or a private one, 1000-65535")
    p.set_defaults(func=cmd_new_module)

    for name, helptext in (("keys", "manage probe keys"), ("tokens", "manage viewer and collector tokens")):
        p = sub.add_parser(name, help=helptext, description=f"{helptext.capitalize()}, stored in the data "
                           "directory with mode 0600. `add` prints the new secret alone on stdout.")
        asub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
        what = "probe_id" if name == "keys" else "name"
        a = asub.add_parser("add", help="make a new one and print it")
        a.add_argument(what)
        if name == "tokens":
            a.add_argument("--role", choices=("viewer", "collector"), required=True,
                           help="viewer: watch graphs; collector: POST logs to /logs")
        a.add_argument("--replace", action="store_true", help="replace an existing one")
        _add_data_dir(a)
        r = asub.add_parser("remove", help="revoke one")
        r.add_argument(what)
        _add_data_dir(r)
        ls = asub.add_parser("list", help="list names (never the secrets)")
        _add_data_dir(ls)
        p.set_defaults(func=cmd_keys if name == "keys" else cmd_tokens)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wiredraw")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    try:
        load_registry()
        modules = get_modules()
    except (PluginError, ValueError) as exc:
        print(f"wiredraw: {exc}", file=sys.stderr)
        return 2
    parser = build_parser(modules)
    args = parser.parse_args(argv)
    if hasattr(args, "data_dir") and args.data_dir is None and args.command != "demo":
        args.data_dir = default_data_dir()
    try:
        return int(args.func(args, modules) or 0)
    except (CredentialError, ValueError) as exc:
        print(f"wiredraw {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
