"""``wiredraw viz``, ``watch`` and ``query``: looking at a server's graphs."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiredraw.core.cli.common import about

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from wiredraw.core.cli.common import Command, Subcommands

TIMES_HELP = ("Times are epoch seconds (1541240000) or ISO-8601 (2018-11-03T12:00, UTC unless a zone is given). "
              "Output is JSON.")


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


def _says_why_it_cannot_talk(command: str) -> Callable[[Command], Command]:
    """A viewer command that cannot talk to the server prints why on stderr and exits with 1."""

    def wrap(run: Command) -> Command:
        @functools.wraps(run)
        def guarded(args: argparse.Namespace, modules: Any) -> int:
            from wiredraw.core.viewer_client import ViewerClientError

            try:
                return run(args, modules)
            except ViewerClientError as exc:
                print(f"wiredraw {command}: {exc}", file=sys.stderr)
                return 1

        return guarded

    return wrap


@_says_why_it_cannot_talk("watch")
def cmd_watch(args: argparse.Namespace, _modules: Any) -> int:
    """Subscribe to a module's graph on a server and print each message as one JSON line: a full graph (type graph:
    nodes, edges), then diffs (type diff: upserted nodes and edges, removed ids, pulses) numbered by seq, and a full
    graph again every --full-every seconds of the server.
    """

    import threading

    from wiredraw.core.viewer_client import to_json_bytes

    client, module = _viz_connect(args)
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
        for msg in _pushed_messages(client):
            out.write(to_json_bytes(msg) + b"\n")
            out.flush()
            printed += 1
            if args.count and printed >= args.count:
                return 0
    except BrokenPipeError:
        return 0
    finally:
        client.close()
    return 0


def _pushed_messages(client: Any) -> Iterator[dict[str, Any]]:
    """The server's pushed messages, as ``client.messages()`` gives them; a reply that refuses a --commands command
    (a bad filter, a speed of 0) is said on stderr, since the thread that sent it cannot wait for it (this one
    reads the socket)."""
    from wiredraw.core.viewer_client import ViewerClientError

    while True:
        msg = client.read_message()
        if msg["type"] == "reply":
            if not msg.get("ok"):
                print(f"wiredraw watch: the server refused the command: {msg.get('error', '?')}", file=sys.stderr,
                      flush=True)
            continue
        if msg["type"] == "error" and msg.get("fatal", True):
            raise ViewerClientError(f"server error: {msg.get('reason', '?')}")  # as client.messages() does
        yield msg


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
    """The 3D viewer. With no --server/--token it opens a login screen (the server's viz address, a viewer token, then
    a module the server offers) and remembers them in ~/.config/wiredraw/viewer.json (mode 0600). Mouse: left drag
    orbits, right drag pans, wheel zooms, click selects (details on the right). Keys are in
    ~/.config/wiredraw/keys.toml (see wiredraw.viz.bindings); defaults: arrows orbit, =/- zoom, f frames all, space
    plays/pauses, l goes live, g toggles grouping, [ ] change how much traffic pulls, tab hides panels, escape
    closes details.
    """
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


@_says_why_it_cannot_talk("query")
def cmd_query(args: argparse.Namespace, _modules: Any) -> int:
    """Ask the server one question about a module's stored graph and print the answer as one JSON document."""

    from wiredraw.core.viewer_client import to_json_bytes

    client, module = _viz_connect(args)
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
    with client:
        result = client.request(args.what, **req)
    sys.stdout.flush()
    sys.stdout.buffer.write(to_json_bytes(result) + b"\n")  # UTF-8 whatever the locale says
    sys.stdout.buffer.flush()
    if args.what == "details" and result is None:
        print(f"wiredraw query: no element {args.element!r} in that interval", file=sys.stderr)
        return 1
    return 0


def add_viewer_options(p: argparse.ArgumentParser, *, again: bool = False) -> None:
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


def add_viz_parser(sub: Subcommands) -> None:
    p = sub.add_parser("viz", help="the 3D viewer: live graph, details on click, timeline",
                       description=about(cmd_viz))
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


def add_watch_parser(sub: Subcommands) -> None:
    p = sub.add_parser("watch", help="follow a module's graph as JSON lines: one full graph, then diffs",
                       description=about(cmd_watch, TIMES_HELP),
                       epilog=WATCH_COMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_viewer_options(p)
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


def add_query_parser(sub: Subcommands) -> None:
    """``wiredraw query`` and its questions."""
    p = sub.add_parser("query", allow_abbrev=False,
                       help="ask a server one question about a module's graph; prints one JSON document",
                       description=about(cmd_query, TIMES_HELP))
    add_viewer_options(p)
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
        add_viewer_options(q, again=True)
        if q.prog.split()[-1] in ("graph", "details", "histogram"):
            q.add_argument("--at", type=_viz_time, default=None, metavar="TIME", help="at this instant")
            q.add_argument("--from", dest="from_", type=_viz_time, default=None, metavar="TIME",
                           help="interval start")
            q.add_argument("--to", type=_viz_time, default=None, metavar="TIME", help="interval end")
    p.set_defaults(func=cmd_query)
