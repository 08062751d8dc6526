"""What the ``wiredraw`` commands share: the data directory, the loaded modules, the reactor, logging."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiredraw.core.plugins import ModuleSet, load_modules

if TYPE_CHECKING:
    from collections.abc import Callable

    #: what ``build_parser`` hands each command's parser function: the top parser's subcommands
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]
    #: a command: the parsed arguments and the loaded modules in, the exit status out
    Command = Callable[[argparse.Namespace, Any], int]

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


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"where keys, tokens and the embedded Redis live (default: {default_data_dir()})")


def run_reactor(start: Any) -> int:
    from twisted.internet import reactor

    codes: list[Any] = []

    def ended(result: Any) -> None:
        codes.append(result)
        if not isinstance(result, int):  # it failed: say why and stop, rather than sit in the reactor silently
            error = getattr(result, "value", result)
            if isinstance(error, ValueError):  # what the user can fix (CredentialError is one): its words alone
                print(f"wiredraw: {error}", file=sys.stderr, flush=True)
            else:
                print(f"wiredraw: stopped by an error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            if reactor.running:
                reactor.stop()

    reactor.callWhenRunning(lambda: start(reactor).addBoth(ended))
    reactor.run()
    code = codes[0] if codes else 0
    if not isinstance(code, int):
        return 2 if isinstance(getattr(code, "value", None), ValueError) else 1
    return code


def log_to_stderr(verbose: bool) -> None:
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


def about(command: Command, *more: str) -> str:
    """A command's ``--help`` description: its docstring as one paragraph (argparse wraps it), then ``more``."""
    return " ".join([*(command.__doc__ or "").split(), *more])
