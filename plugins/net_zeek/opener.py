"""What ``wiredraw open PATH…`` makes of Zeek logs: a live log directory to follow, or recorded logs to replay.

- **Live**: a directory zeekctl writes (its ``logs/current``, i.e. a directory named ``current`` or one holding
  zeekctl's ``.pid``/``.status``/``stderr.log`` files beside the logs), or zeekctl's ``logs`` directory itself
  (its ``current`` is followed), or any directory given with ``live=True``. Followed as ``probe --logdir``;
  ``since`` first reads the archives in the date directories beside it.
- **Recorded**: any mix of files and folders of them (searched recursively): every file whose content is a Zeek
  log, TSV or JSON, plain or gzipped, whatever its name (zeekctl's ``conn-summary`` reports and other text are
  left out). Replayed in event-time order across all of them, as fast as the server takes them or at ``speed``.

Nothing is a Zeek log: None, so another module may claim the paths.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from wiredraw.core.module import Opened, OpenRequest
from wiredraw.plugins.net_zeek.logdir import NOT_LOGS, LogDirSource
from wiredraw.plugins.net_zeek.parser import path_from_filename, sniff_log
from wiredraw.plugins.net_zeek.replay import ReplaySource

ZEEKCTL_MARKS = (".pid", ".status", ".cmdline", "stderr.log", "stdout.log")  # zeekctl's files in a live spool


def live_dir(path: Path) -> Path | None:
    """The directory to follow if ``path`` is one zeekctl writes live (or its ``logs`` holding ``current``)."""
    if not path.is_dir():
        return None
    if path.name == "current" or any((path / mark).exists() for mark in ZEEKCTL_MARKS):
        return path
    current = path / "current"
    return current if current.is_dir() else None


def zeek_files(paths: Sequence[Path]) -> tuple[list[Path], int]:
    """Every Zeek log under ``paths`` (files as given, folders recursively, in name order), and how many other
    files were passed over."""
    found: list[Path] = []
    other = 0
    for path in paths:
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            candidates = [path]
        for f in candidates:
            if path_from_filename(f.name) in NOT_LOGS:
                other += 1
                continue
            try:
                kind = sniff_log(f)
            except (OSError, EOFError, ValueError):  # unreadable, or a .gz cut short: not ours to replay
                kind = None
            if kind is None:
                other += 1
            else:
                found.append(f)
    return found, other


def open_paths(request: OpenRequest) -> Opened | None:
    """The source for the request's paths and a line that says what it reads; None when none of them holds Zeek
    logs. Raises ValueError for what cannot work (a missing path, a live directory beside other paths, --since on
    recorded logs)."""
    paths = [Path(p) for p in request.paths]
    for p in paths:
        if not p.exists():
            raise ValueError(f"{p}: no such file or directory")
    follow = live_dir(paths[0]) if len(paths) == 1 else None
    if follow is None and request.live:
        if len(paths) != 1 or not paths[0].is_dir():
            raise ValueError("--live follows one log directory: give exactly one directory")
        follow = paths[0]
    if follow is None and any(live_dir(p) is not None for p in paths):
        raise ValueError("a live Zeek log directory is followed alone: open it in a command of its own")
    if follow is not None:
        if request.speed is not None:
            raise ValueError("--speed is for recorded logs; a live directory is followed as it is written")
        what = f"following the live Zeek log directory {follow}"
        if request.since is not None:
            what += " (first its archives from --since)"
        return Opened(LogDirSource(follow, since=request.since), what, live=True)
    if request.since is not None:
        raise ValueError("--since is for a live log directory; recorded logs are replayed whole")
    files, other = zeek_files(paths)
    if not files:
        return None
    size = sum(os.stat(f).st_size for f in files)
    pace = "as fast as the server takes them" if request.speed is None else f"at {request.speed:g}x event time"
    what = (f"replaying {len(files):,} Zeek log file{'s' if len(files) != 1 else ''} ({size / 1e6:,.1f} MB) in "
            f"event-time order, {pace}")
    if other:
        what += f"; {other:,} other file{'s' if other != 1 else ''} left out (not Zeek logs)"
    return Opened(ReplaySource(files, speed=request.speed, fast=request.speed is None), what)
