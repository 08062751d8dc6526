"""Colors of the graph view: category -> color (stable across runs and processes), pulse colors, background,
and the legend's entries.

Well-known categories (net_zeek's ``local``/``remote`` hosts and its edge services) get fixed, hand-picked
colors that read well on the dark background; any other category gets a color from a hash of its name
(crc32, not Python's salted ``hash``), so the same category has the same color in every viewer and run.
Colors are RGBA floats in 0..1.
"""

from __future__ import annotations

import colorsys
import zlib
from collections.abc import Iterable

import numpy as np

Color = tuple[float, float, float, float]


def _hex(code: str) -> Color:
    code = code.lstrip("#")
    return (int(code[0:2], 16) / 255, int(code[2:4], 16) / 255, int(code[4:6], 16) / 255, 1.0)


BACKGROUND: Color = _hex("#12151d")
TEXT: Color = _hex("#e6e9ef")
TEXT_DIM: Color = _hex("#9aa3b2")
SELECTED: Color = _hex("#ffd23f")  # the selection ring and a selected edge
HOVER_MIX = 0.35  # how far a hovered element's color moves towards white
EDGE_HOVER_MIX = 0.5  # edges are thin lines: lighten them more than nodes to show the hover

# Pulses: a flash that fades back to the element's own color (DESIGN.md §5).
PULSE: dict[str, Color] = {
    "ok": _hex("#3dff6e"),
    "error": _hex("#ff2d3d"),
    "new": _hex("#c8fbff"),
}

# Hand-picked for the dark background; no two close in hue, none the pulse green/red.
KNOWN: dict[str, Color] = {
    # hosts
    "local": _hex("#4a9eff"),
    "remote": _hex("#ff9f40"),
    # edge services (net_zeek: the connection's most frequent service, "other" when none)
    "http": _hex("#5fd38d"),
    "dns": _hex("#b388ff"),
    "ssl": _hex("#2ec4c4"),
    "ssh": _hex("#ff6b9a"),
    "smtp": _hex("#e8d44d"),
    "ftp": _hex("#a0d468"),
    "quic": _hex("#4dd0e1"),
    "other": _hex("#aab2bf"),
}


def category_color(category: str) -> Color:
    """The color of `category`: a fixed one for well-known names, else one from a hash of the name."""
    known = KNOWN.get(category)
    if known is not None:
        return known
    h = zlib.crc32(category.encode("utf-8", "surrogatepass"))
    hue = (h & 0xFFFF) / 0x10000
    sat = 0.50 + 0.20 * ((h >> 16) & 0xFF) / 255  # some spread so neighbouring hues still differ
    val = 0.85 + 0.12 * ((h >> 24) & 0xFF) / 255
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return (r, g, b, 1.0)


def category_colors(categories: Iterable[str]) -> np.ndarray:
    """float32 (N, 4): the color of each category, in order (one lookup per distinct category)."""
    cats = list(categories)
    distinct = {c: category_color(c) for c in set(cats)}
    if not cats:
        return np.zeros((0, 4), np.float32)
    return np.array([distinct[c] for c in cats], np.float32)


def pulse_color(meaning: str) -> Color:
    """The flash color of a pulse meaning (`ok`, `error`, `new`); an unknown meaning flashes like `new`."""
    return PULSE.get(meaning, PULSE["new"])


def legend_entries(categories: Iterable[str]) -> list[tuple[str, Color]]:
    """(category, color) for each distinct category present: well-known ones first in their fixed order, then
    the others by name. Empty strings are left out."""
    present = {c for c in categories if c}
    known = [c for c in KNOWN if c in present]
    others = sorted(present - KNOWN.keys())
    return [(c, category_color(c)) for c in known + others]
