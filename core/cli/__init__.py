"""The ``wiredraw`` command: ``build_parser`` assembles one parser per command, ``main`` runs it.

The commands live by kind: ``services`` (demo, server, probe), ``open`` (one's own logs on screen), ``viewing``
(viz, watch, query) and ``admin`` (plugins, new-module, keys, tokens); ``common`` holds what they share, ``local``
what demo and open run on this machine.
"""

from __future__ import annotations

import argparse
import sys

from wiredraw.core.cli.admin import add_new_module_parser, add_plugins_parser, add_secret_parsers
from wiredraw.core.cli.common import EPILOG_ENV, default_data_dir, get_modules
from wiredraw.core.cli.open import add_open_parser
from wiredraw.core.cli.services import add_demo_parser, add_probe_parser, add_server_parser
from wiredraw.core.cli.viewing import add_query_parser, add_viz_parser, add_watch_parser
from wiredraw.core.plugins import ModuleSet, PluginError, load_registry
from wiredraw.core.server.credentials import CredentialError

__all__ = ["build_parser", "default_data_dir", "get_modules", "main"]


def build_parser(modules: ModuleSet) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wiredraw",
        description="wiredraw turns live event streams (Zeek logs, process events, your own modules) into a "
                    "live graph. Probes send signed events to the server, which stores them in Redis.",
        epilog="Start with `wiredraw demo`. Each command has its own --help.\n\n" + EPILOG_ENV,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wiredraw {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # in this order in `wiredraw --help`
    add_demo_parser(sub)
    add_open_parser(sub)
    add_server_parser(sub)
    add_probe_parser(sub, modules)
    add_viz_parser(sub)
    add_watch_parser(sub)
    add_query_parser(sub)
    add_plugins_parser(sub)
    add_new_module_parser(sub)
    add_secret_parsers(sub)
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
