"""Zeek TSV parsing speed: wiredraw's parser beside zat and parsezeeklogs, same file, same run.

    python3 bench/parse.py [--lines N] [--repeat R]

Builds one large conn.log from the real conn logs under ../shared/data/zeek/tsv (the header group with the most
rows, those rows repeated to N lines under one header) in a temporary directory, then times each reader over
that file, all producing one typed dict per row. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wiredraw.plugins.net_zeek.parser import LogStream, iter_log, open_log, path_from_filename, read_log, sniff_log

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "zeek" / "tsv"
PEERS_PIP = "pip install zat parsezeeklogs"


@dataclass
class Result:
    name: str
    lines_per_s: float
    rows: int


def build_conn_log(out: Path, lines: int) -> tuple[int, str]:
    """Write a conn.log of ``lines`` data rows; returns (rows, description of the source)."""
    groups: dict[bytes, tuple[list[bytes], list[bytes], list[str]]] = {}
    for p in sorted(DATA.rglob("conn*")):
        if not p.is_file() or path_from_filename(p.name) != "conn" or sniff_log(p) != "tsv":
            continue
        with open_log(p) as f:
            raw = f.read().split(b"\n")
        header = [ln for ln in raw if ln.startswith(b"#") and not ln.startswith(b"#close")]
        rows = [ln for ln in raw if ln and not ln.startswith(b"#")]
        key = b"\n".join(ln for ln in header if ln.startswith((b"#fields", b"#types")))
        g = groups.setdefault(key, (header, [], []))
        g[1].extend(rows)
        g[2].append(p.name)
    if not groups:
        raise SystemExit(f"no TSV conn logs under {DATA}")
    header, rows, names = max(groups.values(), key=lambda g: len(g[1]))
    body = (rows * (lines // len(rows) + 1))[:lines]
    out.write_bytes(b"\n".join([*header, *body, b"#close\t2024-01-01-00-00-00"]) + b"\n")
    ncols = header[-1].count(b"\t")
    return len(body), f"{len(rows)} distinct rows, {ncols} columns, from {len(names)} files ({names[0]}, ...)"


def timed(name: str, run: Callable[[], Iterable[Any]], rows: int, repeat: int) -> Result:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = sum(1 for _ in run())
        best = min(best, time.perf_counter() - t0)
        if n != rows:
            print(f"  note: {name} returned {n} rows, expected {rows}", file=sys.stderr)
    return Result(name, rows / best, rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="data rows in the generated conn.log")
    ap.add_argument("--repeat", type=int, default=1, help="runs per reader; the best is reported")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"real Zeek data not found at {DATA}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conn.log"
        rows, source = build_conn_log(path, args.lines)
        print(f"conn.log: {rows:,} rows ({path.stat().st_size / 1e6:.0f} MB); {source}")
        lines = path.read_bytes().split(b"\n")[:-1]

        def feed_in_memory() -> Iterable[Any]:
            s = LogStream("conn.log")
            feed = s.feed
            return [r for n, ln in enumerate(lines, 1) if (r := feed(ln, n)) is not None]

        names = next(ln for ln in lines if ln.startswith(b"#fields")).decode().split("\t")[1:]

        def split_to_dict() -> Iterable[Any]:
            # Reference floor, not a reader: untyped str dicts, no header/escape/bad-line handling (notes/perf.md).
            return [dict(zip(names, ln.decode().split("\t"), strict=False)) for ln in lines if ln[:1] != b"#"]

        ours = [
            timed("wiredraw read_log", lambda: read_log(path).records, rows, args.repeat),
            timed("wiredraw iter_log", lambda: iter_log(path), rows, args.repeat),
            timed("wiredraw LogStream.feed (lines in memory)", feed_in_memory, rows, args.repeat),
        ]
        floor = timed("reference: str.split into dict, strings only", split_to_dict, rows, args.repeat)
        peers: list[Result] = []
        missing: list[str] = []
        try:
            from zat.zeek_log_reader import ZeekLogReader

            peers.append(timed("zat ZeekLogReader", lambda: ZeekLogReader(str(path)).readrows(), rows, args.repeat))
        except ImportError:
            missing.append("zat")
        try:
            from parsezeeklogs import ParseZeekLogs

            peers.append(timed("parsezeeklogs ParseZeekLogs", lambda: ParseZeekLogs(str(path)), rows, args.repeat))
        except ImportError:
            missing.append("parsezeeklogs")

    for r in [*ours, floor, *peers]:
        print(f"{r.name:45s} {r.lines_per_s / 1e3:8.0f} k lines/s")
    if missing:
        print(f"peers not installed ({', '.join(missing)}): {PEERS_PIP}")
    if peers:
        fastest = max(peers, key=lambda r: r.lines_per_s)
        for r in ours:
            print(f"ratio {r.name} / {fastest.name}: {r.lines_per_s / fastest.lines_per_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
