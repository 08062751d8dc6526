#!/usr/bin/env python3
"""Regenerate the README's screenshot: ``wiredraw open`` on real Zeek logs, rendered offscreen.

    python3 docs/make_screenshots.py [--data ../shared/data] [--out docs/open.png]

Runs ``wiredraw open <data>/zeek/tsv/rita_proxy_rolling --offscreen --screenshot OUT --duration 20`` in a
throwaway data directory (nothing is kept but the PNG). The logs are other people's (../shared/data/README.md);
they are read where they are, never copied into the project.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "open.png", help="where the PNG goes")
    args = p.parse_args()
    logs = args.data / "zeek" / "tsv" / "rita_proxy_rolling"
    if not logs.is_dir():
        print(f"make_screenshots: {logs} not found: give --data (the shared data folder)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="wiredraw-shot-") as data_dir:
        cmd = [sys.executable, "-m", "wiredraw.core.cli", "open", str(logs), "--data-dir", data_dir,
               "--offscreen", "--screenshot", str(args.out.absolute()), "--duration", "20", "--size", "1280x720"]
        print("make_screenshots:", " ".join(cmd), flush=True)
        return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
