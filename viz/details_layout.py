"""How the details panel (viz/panels.py ``DetailsPanel``) lays out what a module sends (spec/viewer.md "details").

Every section becomes a box: a table's rows with any number of columns (a first row of labels is its header when
the table is wider than key/value), or a record's fields as key/value. Boxes are tiled left to right in rows that
fill the panel's width, then wrap, so a connection's decodes (conn, http, ssl, x509...) stand side by side; boxes
in one row share their top and their height. Column widths fit the content within the box (the widest columns
give way first); a value still too long is cut with an ellipsis and keeps its full text (the panel's tooltip and
its text copy show it).

Pure geometry in the panel's units (aspect2d): text is measured through a :class:`Measure` given in, so nothing
here touches Panda3D.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

ELLIPSIS = "…"


class Measure(Protocol):
    def width(self, text: str) -> float:
        """The width of ``text`` on one line, at scale 1."""

    def printable(self, text: str) -> str:
        """``text`` as the font can draw it on one line (control characters escaped, missing glyphs replaced)."""


@dataclass(frozen=True)
class Metrics:
    """Sizes, in the panel's units except ``line`` (the font's line height at scale 1)."""

    line: float = 1.0
    cell_scale: float = 0.03
    title_scale: float = 0.033
    ascent: float = 0.8  # of the font, at scale 1: a line's top above its baseline
    pad: float = 0.012  # inside a box
    gap: float = 0.014  # between boxes
    column_gap: float = 0.024
    header_gap: float = 0.008  # between a table's header and its first row
    min_column: float = 0.07
    min_box: float = 0.24

    @property
    def row(self) -> float:
        return self.line * self.cell_scale

    @property
    def title_row(self) -> float:
        return self.line * self.title_scale * 1.2


@dataclass
class Cell:
    full: str  # the whole value as text
    shown: str = ""  # what is drawn: the value on one line, cut to its column

    @property
    def cut(self) -> bool:
        return self.shown != self.full


@dataclass
class Column:
    cells: list[Cell]  # the header's cell first when the box has a header
    numeric: bool  # all values numbers: aligned right
    natural: float  # the width its widest cell needs
    x: float = 0.0  # left edge, from the box's content edge
    width: float = 0.0


@dataclass
class Box:
    """One section: where it is (``x``, ``y`` its top-left corner, y up, from the canvas's content origin), its
    title and its columns (``rows`` lines each, the header's included)."""

    index: int  # of the section in the details
    kind: str  # "table" or "record"
    title: Cell
    columns: list[Column]
    header: bool
    rows: int
    empty: bool  # a table with no row: one dim "none" line is drawn
    wanted: float = 0.0  # width before the row it stands in is stretched
    cap: float = 0.0
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0
    content_height: float = 0.0

    @property
    def keyed(self) -> bool:
        """A key/value box (a record, or a table of pairs)."""
        return not self.header and len(self.columns) == 2

    def row_top(self, i: int, m: Metrics) -> float:
        """The top of row ``i`` (the header is row 0 when there is one), relative to the box's top."""
        return -m.pad - m.title_row - i * m.row - (m.header_gap if self.header and i > 0 else 0.0)


@dataclass
class Layout:
    boxes: list[Box] = field(default_factory=list)
    bottom: float = 0.0  # the lowest y used


def cell_text(value: Any) -> str:
    """A value as ``wiredraw watch`` prints it, strings bare; unset (None) is "-"."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return json.dumps(value, default=str, ensure_ascii=False)


def one_line(text: str) -> str:
    """Control characters escaped, so that a value keeps to its row."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def section_rows(section: Mapping[str, Any]) -> tuple[list[Any] | None, list[list[Any]]]:
    """(header or None, rows) of a section, every row as long as the longest (short ones padded with "")."""
    if section.get("kind") == "record":
        record = section.get("record") or {}
        return None, [[k, v] for k, v in (record.items() if isinstance(record, Mapping) else [])]
    rows = [list(r) if isinstance(r, list | tuple) else [r] for r in section.get("rows") or []]
    width = max((len(r) for r in rows), default=0)
    rows = [r + [""] * (width - len(r)) for r in rows]
    # wider than key/value: a first row of labels names the columns (net_zeek's peers, proc_events' programs)
    if width > 2 and rows and all(isinstance(c, str) for c in rows[0]):
        return rows[0], rows[1:]
    return None, rows


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def section_box(index: int, section: Mapping[str, Any], measure: Measure, m: Metrics) -> Box:
    header, rows = section_rows(section)
    ncols = len(header) if header is not None else max((len(r) for r in rows), default=1)
    columns = []
    for j in range(ncols):
        values = [r[j] for r in rows]
        cells = [Cell(cell_text(v)) for v in ([header[j]] if header is not None else []) + values]
        numeric = any(_is_number(v) for v in values) and all(_is_number(v) or v is None for v in values)
        natural = max((measure.width(measure.printable(c.full)) for c in cells), default=0.0) * m.cell_scale
        columns.append(Column(cells, numeric, natural))
    empty = not rows
    if empty and header is None:
        columns = [Column([], False, 0.0)]
    title = Cell(str(section.get("title", "")))
    box = Box(index, str(section.get("kind", "table")), title, columns, header is not None,
              (1 if header is not None else 0) + max(len(rows), 1 if empty else 0), empty)
    content = sum(c.natural for c in columns) + m.column_gap * (len(columns) - 1)
    title_width = measure.width(measure.printable(title.full)) * m.title_scale
    box.wanted = 2 * m.pad + max(content, title_width, measure.width("none") * m.cell_scale if empty else 0.0)
    box.content_height = m.pad - box.row_top(box.rows, m)
    return box


def fit_columns(natural: Sequence[float], avail: float, minimum: float) -> list[float]:
    """Column widths within ``avail``: the natural ones when they fit, else the widest cut to one common width
    (never below ``minimum``, nor below a column's own natural width when that is less)."""
    if sum(natural) <= avail:
        return list(natural)
    remaining, left = avail, len(natural)
    cap = max(natural)
    for w in sorted(natural):
        share = remaining / left
        if w > share:
            cap = share
            break
        remaining -= w
        left -= 1
    cap = max(cap, minimum)
    return [min(w, cap) for w in natural]


def cut(text: str, width: float, measure: Measure) -> str:
    """The longest start of ``text`` that fits ``width`` (scale 1) with an ellipsis after it; ``text`` if it fits."""
    width += 1e-6  # a column as wide as its text (width * scale / scale) must not cut it
    if measure.width(text) <= width:
        return text
    narrowest = 0.2  # no glyph of a text font is narrower (an "i" is 0.25 of the em): nothing past this can show
    text = text[: int(width / narrowest) + 2]
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure.width(text[:mid] + ELLIPSIS) <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + ELLIPSIS


def fit_box(box: Box, width: float, measure: Measure, m: Metrics) -> None:
    """Give ``box`` its final ``width``: column widths and positions, every cell's shown text."""
    box.width = width
    content = width - 2 * m.pad
    avail = content - m.column_gap * (len(box.columns) - 1)
    widths = fit_columns([c.natural for c in box.columns], avail, m.min_column)
    x = 0.0
    for col, w in zip(box.columns, widths, strict=True):
        col.x, col.width = x, w
        x += w + m.column_gap
        for c in col.cells:
            c.shown = cut(measure.printable(c.full), w / m.cell_scale, measure)
    box.title.shown = cut(measure.printable(box.title.full), content / m.title_scale, measure)


def tile(details: Mapping[str, Any], inner: float, measure: Measure, m: Metrics, top: float = 0.0) -> Layout:
    """Every section of ``details`` as a box, tiled in rows of width ``inner`` from ``top`` down."""
    sections = [s for s in details.get("sections") or [] if isinstance(s, Mapping)]
    boxes = [section_box(i, s, measure, m) for i, s in enumerate(sections)]
    half = (inner - m.gap) / 2
    for b in boxes:
        # key/value boxes take at most half the width, so two decodes stand side by side; wider tables all of it
        b.cap = half if b.keyed or (b.empty and not b.header) else inner
        b.wanted = min(max(b.wanted, m.min_box), b.cap)
    rows: list[list[Box]] = []
    used = 0.0
    for b in boxes:
        if rows and used + m.gap + b.wanted <= inner + 1e-9:
            rows[-1].append(b)
            used += m.gap + b.wanted
        else:
            rows.append([b])
            used = b.wanted
    y = top
    for row in rows:
        wanted = sum(b.wanted for b in row)
        extra = max(0.0, inner - wanted - m.gap * (len(row) - 1))
        x = 0.0
        for b in row:
            fit_box(b, b.wanted + extra * b.wanted / wanted, measure, m)
            b.x, b.y = x, y
            x += b.width + m.gap
        height = max(b.content_height for b in row)
        for b in row:
            b.height = height
        y -= height + m.gap
    return Layout(boxes, y + m.gap if rows else top)


def details_text(details: Mapping[str, Any] | None, element_id: str = "") -> str:
    """The whole details as plain text, every value in full: the title, then each section's title and its rows,
    cells separated by tabs."""
    if details is None:
        return f"{element_id}: nothing stored for this element in the time shown\n"
    out = [str(details.get("title", element_id))]
    for s in details.get("sections") or []:
        if not isinstance(s, Mapping):
            continue
        header, rows = section_rows(s)
        out += ["", str(s.get("title", ""))]
        out += ["\t".join(cell_text(c) for c in r) for r in ([header] if header is not None else []) + rows]
    return "\n".join(out) + "\n"
