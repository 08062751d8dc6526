"""The graph drawn in 3D (DESIGN.md §7, issue #5): node spheres, arrowed edges, pulses, labels, a legend.

Batched geometry, written from numpy (notes/panda3d.md, "Speed"):

- **nodes**: one Geom of triangles for all node spheres: a low-poly icosphere template (320, 80 or 20
  triangles by node count, see ``HIGH_DETAIL_NODES``: a CPU rasteriser is bound by triangles) scaled by the
  node's radius and moved to its centre. Shading is baked into the vertex colors (a fixed light, no lighting
  state), so every pipe draws the same picture and a color change is one column write.
- **edges**: one GeomNode with two Geoms: every edge as a 1-pixel line (p3tinydisplay draws lines 1 px wide
  whatever the thickness setting, so thickness is geometry), and one Geom of triangles holding every edge's
  arrowhead (a three-sided cone at the dst end, its tip on the dst sphere's surface) plus, for the heaviest edges,
  a ribbon of two crossed quads whose width follows the weight. Crossed quads need no camera: they stay one
  static-topology Geom written only when positions change. Measured with ``bench/viz_frame.py``.
- Vertex and color columns are numpy views over the GeomVertexArrayData (``memoryview``): a position update is
  one vectorised computation per column; a pulse, hover or selection rewrites only the affected rows' colors.
  Nothing here is ever flattened, and no element has its own NodePath.
- Radius and thickness scale with log(1 + raw measure), normalised over the current scene (sizes can be 1e9).
- Labels: a fixed pool of TextNodes (the top ``max_labels`` nodes by size, plus the hovered and the selected
  node); a label's text is only set when its node changes, its position follows the node.

The geometry kit (templates, vertex format, numpy column views) is viz/geometry.py; labels and the legend are
viz/labels.py.

Coordinates are those of the `parent` NodePath, in the layout's units (viz/layout.py: 1 = the ideal edge length);
``node_radius``, ``edge_width``, ``arrow_length`` and ``label_scale`` are in those units.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from panda3d.core import (  # type: ignore[import-untyped]
    Geom,
    GeomLines,
    GeomTriangles,
    GeomVertexData,
    NodePath,
    Point2,
    Point3,
)
from wiredraw.viz import palette, picking
from wiredraw.viz.geometry import (
    HIGH_DETAIL_NODES,
    LOW_DETAIL_NODES,
    col_view,
    geom_node,
    icosphere,
    log_norm,
    make_geom,
    perpendiculars,
    pos_view,
    selection_ring,
    set_indices,
    shade,
    sphere_detail,
    to_u8,
    vformat,
)
from wiredraw.viz.labels import LabelPool, Legend

__all__ = ["HIGH_DETAIL_NODES", "LOW_DETAIL_NODES", "GraphScene", "Legend", "icosphere", "snapshot_from_lists",
           "sphere_detail"]

RIBBON_MIN_T = 0.3  # edges whose normalised log-weight reaches this get a ribbon ...


# ---------------------------------------------------------------------------------------------------------
# the scene


class GraphScene:
    """Nodes, edges, pulses and labels of one graph view, under `parent`.

    Feed it the backend's messages: :meth:`set_scene` (a snapshot), :meth:`set_positions` (often),
    :meth:`pulse`; call :meth:`update` once a frame with the frame time. With a `camera`, labels keep a size of
    `label_size` of the screen height (rescaled in :meth:`update`); without, they are `label_scale` world units.
    """

    ARROW_SIDES = 3

    def __init__(
        self,
        parent: NodePath,
        *,
        max_labels: int = 12,
        node_radius: tuple[float, float] = (0.08, 0.32),
        edge_width: float = 0.065,
        arrow_length: float = 0.13,
        label_scale: float = 0.13,
        label_size: float = 0.024,
        camera: NodePath | None = None,
        max_ribbons: int = 2000,
        pulse_seconds: float = 1.0,
        font: Any = None,
    ) -> None:
        self.root = parent.attachNewNode("graph")
        self.max_labels = max_labels
        self.node_radius = node_radius
        self.edge_width = edge_width
        self.arrow_length = arrow_length
        self.label_scale = label_scale
        self.label_size = label_size
        self.camera = camera
        self.max_ribbons = max_ribbons
        self.pulse_seconds = pulse_seconds

        fmt = vformat()
        self._node_vdata = GeomVertexData("nodes", fmt, Geom.UH_dynamic)
        self._node_tris = GeomTriangles(Geom.UH_static)
        node_geom = geom_node("nodes")
        node_geom.addGeom(make_geom(self._node_vdata, self._node_tris))
        self._nodes_np = self.root.attachNewNode(node_geom)

        self._line_vdata = GeomVertexData("edge-lines", fmt, Geom.UH_dynamic)
        self._lines = GeomLines(Geom.UH_static)
        self._tri_vdata = GeomVertexData("edge-arrows", fmt, Geom.UH_dynamic)
        self._edge_tris = GeomTriangles(Geom.UH_static)
        edge_geom = geom_node("edges")
        edge_geom.addGeom(make_geom(self._line_vdata, self._lines))
        edge_geom.addGeom(make_geom(self._tri_vdata, self._edge_tris))
        self._edges_np = self.root.attachNewNode(edge_geom)
        self._edges_np.setTwoSided(True)  # ribbons are flat quads

        self._ring = selection_ring(self.root)
        self._label_pool = LabelPool(self.root, max_labels + 2, font)
        self._labels = self._label_pool.labels

        self._template_detail = -1
        self._template = np.zeros((0, 3), np.float32)
        self._diffuse = np.zeros(0, np.float32)
        self._highlight = np.zeros(0, np.float32)
        self.hovered: str | None = None
        self.selected: str | None = None
        self._set_empty()

    # -- state ------------------------------------------------------------------------------------------

    def _set_empty(self) -> None:
        self.ids: list[str | None] = []
        self._index: dict[str, int] = {}
        self.sizes = np.zeros(0, np.float32)
        self.categories: list[str] = []
        self.labels: list[str] = []
        self.groups: list[str] = []
        self.alive = np.zeros(0, bool)
        self.radii = np.zeros(0, np.float32)
        self._node_rgb = np.zeros((0, 3), np.float32)
        self.positions = np.zeros((0, 3), np.float32)
        self._centres = np.zeros((0, 3), np.float32)  # positions with non-finite rows at 0 ...
        self._eff_radii = np.zeros(0, np.float32)  # ... and their radius 0 (not drawn, not picked)
        self.edge_index = np.zeros((0, 2), np.int32)
        self.edge_ids: list[str] = []
        self._edge_lookup: dict[str, int] = {}
        self.weights = np.zeros(0, np.float32)
        self.edge_categories: list[str] = []
        self._edge_valid = np.zeros(0, bool)
        self._edge_t = np.zeros(0, np.float32)
        self._edge_rgb = np.zeros((0, 3), np.float32)
        self._ribbon_edges = np.zeros(0, np.int64)
        self._ribbon_of = np.zeros(0, np.int64)
        self._node_flash = np.zeros((0, 4), np.float32)  # rgb + seconds left
        self._edge_flash = np.zeros((0, 4), np.float32)

    def set_scene(self, snapshot: Mapping[str, Any]) -> None:
        """Replace the whole graph (the backend's scene snapshot, see the module doc of wiredraw.viz.messages).
        Positions are kept for slots of the same count (or taken from ``snapshot["positions"]`` if present);
        pulses still running, the hover and the selection follow their ids."""
        old_ids, old_pos = self.ids, self.positions
        old_node_flash = {old_ids[k]: self._node_flash[k] for k in np.flatnonzero(self._node_flash[:, 3] > 0)
                          if old_ids[k] is not None}  # (only the flashing rows: no Python loop over every slot)
        old_edge_flash = {self.edge_ids[k]: self._edge_flash[k] for k in np.flatnonzero(self._edge_flash[:, 3] > 0)}

        ids = list(snapshot.get("ids", []))
        n = len(ids)
        self.ids = ids
        self._index = {i: k for k, i in enumerate(ids) if i is not None}
        self.sizes = np.asarray(snapshot.get("sizes", np.zeros(n)), np.float32).reshape(n)
        self.categories = [c or "" for c in snapshot.get("categories", [""] * n)]
        self.labels = [lab or (i or "") for lab, i in zip(snapshot.get("labels", ids), ids, strict=True)]
        self.groups = [g or "" for g in snapshot.get("groups", [""] * n)]
        self.alive = np.array([i is not None for i in ids], bool)
        t = log_norm(self.sizes, self.alive)
        lo, hi = self.node_radius
        self.radii = np.where(self.alive, lo + (hi - lo) * t, 0.0).astype(np.float32)
        self._node_rgb = palette.category_colors(self.categories)[:, :3].reshape(n, 3)

        edge_index = np.asarray(snapshot.get("edge_index", np.zeros((0, 2))), np.int32).reshape(-1, 2)
        m = len(edge_index)
        self.edge_index = edge_index
        self.edge_ids = list(snapshot.get("edge_ids", [str(k) for k in range(m)]))
        self._edge_lookup = {e: k for k, e in enumerate(self.edge_ids)}
        self.weights = np.asarray(snapshot.get("weights", np.ones(m)), np.float32).reshape(m)
        self.edge_categories = [c or "other" for c in snapshot.get("edge_categories", ["other"] * m)]
        inside = (edge_index >= 0) & (edge_index < n)
        valid: np.ndarray = np.asarray(inside.all(axis=1), bool)
        if m:
            valid[valid] &= self.alive[edge_index[valid, 0]] & self.alive[edge_index[valid, 1]]
        self._edge_valid = valid
        self._edge_t = log_norm(self.weights, valid)
        self._edge_rgb = palette.category_colors(self.edge_categories)[:, :3].reshape(m, 3)
        heavy = np.flatnonzero(valid & (self._edge_t >= RIBBON_MIN_T))
        if len(heavy) > self.max_ribbons:
            heavy = heavy[np.argsort(-self.weights[heavy], kind="stable")[: self.max_ribbons]]
        self._ribbon_edges = np.sort(heavy)
        self._ribbon_of = np.full(m, -1, np.int64)
        self._ribbon_of[self._ribbon_edges] = np.arange(len(self._ribbon_edges))

        if "positions" in snapshot:
            pos = np.asarray(snapshot["positions"], np.float32).reshape(n, 3)
        elif len(old_pos) == n:
            pos = old_pos
        else:
            pos = np.zeros((n, 3), np.float32)
            by_id = {i: k for k, i in enumerate(old_ids) if i is not None}
            for k, i in enumerate(ids):
                if i is not None and i in by_id:
                    pos[k] = old_pos[by_id[i]]
        self.positions = np.array(pos, np.float32)

        self._node_flash = np.zeros((n, 4), np.float32)
        for i, f in old_node_flash.items():
            if i in self._index:
                self._node_flash[self._index[i]] = f
        self._edge_flash = np.zeros((m, 4), np.float32)
        for e, f in old_edge_flash.items():
            if e in self._edge_lookup:
                self._edge_flash[self._edge_lookup[e]] = f
        if self.hovered is not None and not self._known(self.hovered):
            self.hovered = None
        if self.selected is not None and not self._known(self.selected):
            self.selected = None

        self._build_topology()
        self._write_all_colors()
        self._assign_labels()
        self._write_positions()

    def _known(self, ident: str) -> bool:
        return ident in self._index or ident in self._edge_lookup

    def set_positions(self, positions: np.ndarray) -> None:
        """New node centres, float32 (N, 3), indexed like the snapshot's ``ids``. Fewer rows than slots (the
        layout has not placed the newest yet): the rest stay where they were; extra rows are ignored."""
        pos = np.asarray(positions, np.float32)
        if pos.ndim != 2 or pos.shape[1] != 3:
            raise ValueError(f"positions must be (N, 3), not {pos.shape}")
        k = min(len(pos), len(self.ids))
        self.positions[:k] = pos[:k]
        self._write_positions()

    # -- geometry ---------------------------------------------------------------------------------------

    def _build_topology(self) -> None:
        n, m, r = len(self.ids), len(self.edge_index), len(self._ribbon_edges)
        detail = sphere_detail(int(self.alive.sum()))
        if detail != self._template_detail:
            self._template_detail = detail
            self._template, self._template_tris = icosphere(detail)
            self._diffuse, self._highlight = shade(self._template.astype(np.float64))
        v = len(self._template)
        tris = self._template_tris[None, :, :] + (np.arange(n, dtype=np.int64) * v)[:, None, None]
        set_indices(self._node_tris, tris)
        self._node_vdata.uncleanSetNumRows(n * v)

        self._line_vdata.uncleanSetNumRows(2 * m)
        self._lines.clearVertices()
        if m:
            self._lines.setNonindexedVertices(0, 2 * m)

        k = self.ARROW_SIDES
        arrow_tris = [(0, 1 + s, 1 + (s + 1) % k) for s in range(k)] + [
            (1 + s, 1, 1 + (s + 1) % k) for s in range(1, k - 1)
        ]
        a_tris = np.array(arrow_tris, np.int64)[None] + (np.arange(m, dtype=np.int64) * (k + 1))[:, None, None]
        quad = np.array([(0, 1, 2), (0, 2, 3), (4, 5, 6), (4, 6, 7)], np.int64)
        r_tris = quad[None] + (m * (k + 1) + np.arange(r, dtype=np.int64) * 8)[:, None, None]
        set_indices(self._edge_tris, np.concatenate([a_tris.reshape(-1, 3), r_tris.reshape(-1, 3)]))
        self._tri_vdata.uncleanSetNumRows(m * (k + 1) + r * 8)

    def _write_positions(self) -> None:
        n, m = len(self.ids), len(self.edge_index)
        finite: np.ndarray = np.asarray(np.isfinite(self.positions).all(axis=1), bool)
        centres = np.where(finite[:, None], self.positions, 0.0).astype(np.float32)
        radii = np.where(finite, self.radii, 0.0).astype(np.float32)
        self._centres, self._eff_radii = centres, radii
        if n:
            verts = centres[:, None, :] + radii[:, None, None] * self._template[None, :, :]
            pos_view(self._node_vdata)[:] = verts.reshape(-1, 3)
        if m:
            self._write_edge_positions(centres, radii)
        if self.camera is None:
            self._place_labels()  # (with a camera, update() places them every frame)
        self._place_ring()

    def _write_edge_positions(self, centres: np.ndarray, radii: np.ndarray) -> None:
        ei = np.where(self._edge_valid[:, None], self.edge_index, 0)
        a, b = centres[ei[:, 0]], centres[ei[:, 1]]
        ra, rb = radii[ei[:, 0]], radii[ei[:, 1]]
        valid = self._edge_valid & (ra > 0) & (rb > 0)
        delta = (b - a).astype(np.float32)
        length = np.linalg.norm(delta, axis=1)
        d = delta / np.maximum(length, 1e-9)[:, None]
        gap = np.maximum(length - ra - rb, 0.0)
        t = self._edge_t
        alen = np.minimum(self.arrow_length * (0.8 + 0.7 * t), 0.6 * gap)
        awid = alen * 0.42
        start = a + d * ra[:, None]
        tip = b - d * rb[:, None]
        base = tip - d * alen[:, None]
        dead = ~valid | (gap <= 0)
        start[dead] = base[dead] = tip[dead] = 0.0

        lines = pos_view(self._line_vdata).reshape(-1, 2, 3)
        lines[:, 0] = start
        lines[:, 1] = base

        k = self.ARROW_SIDES
        u, w = perpendiculars(d)
        tri = pos_view(self._tri_vdata)
        arrows = tri[: len(d) * (k + 1)].reshape(-1, k + 1, 3)
        arrows[:, 0] = tip
        angles = 2 * np.pi * np.arange(k) / k
        ring = np.cos(angles)[None, :, None] * u[:, None, :] + np.sin(angles)[None, :, None] * w[:, None, :]
        arrows[:, 1:] = base[:, None, :] + awid[:, None, None] * ring
        arrows[dead] = 0.0

        re = self._ribbon_edges
        if len(re):
            half = (0.5 * self.edge_width * t[re])[:, None]
            s, e, ur, wr = start[re], base[re], u[re] * half, w[re] * half
            quads = tri[len(d) * (k + 1) :].reshape(-1, 8, 3)
            quads[:, 0], quads[:, 1], quads[:, 2], quads[:, 3] = s + ur, s - ur, e - ur, e + ur
            quads[:, 4], quads[:, 5], quads[:, 6], quads[:, 7] = s + wr, s - wr, e - wr, e + wr

    # -- colors -----------------------------------------------------------------------------------------

    def _colors(self, idx: np.ndarray, base: np.ndarray, flash: np.ndarray, lookup: Mapping[str, int],
                hover_mix: float) -> np.ndarray:
        """Display RGB of elements `idx` (nodes or edges, their rows in `lookup`): their color ``base`` moved toward
        their pulse's color by the pulse's time left, lightened by `hover_mix` when hovered."""
        rgb = base[idx].copy()
        flash = flash[idx]
        live = flash[:, 3] > 0
        if live.any():
            s = np.clip(flash[live, 3:4] / self.pulse_seconds, 0.0, 1.0)
            rgb[live] += (flash[live, :3] - rgb[live]) * s
        if self.hovered is not None and self.hovered in lookup:
            h = idx == lookup[self.hovered]
            rgb[h] += (1.0 - rgb[h]) * hover_mix
        return rgb

    def _node_colors(self, idx: np.ndarray) -> np.ndarray:
        """Display RGB of nodes `idx`: category color, flashed by a pulse, lightened when hovered."""
        return self._colors(idx, self._node_rgb, self._node_flash, self._index, palette.HOVER_MIX)

    def _edge_colors(self, idx: np.ndarray) -> np.ndarray:
        """Display RGB of edges `idx`: as nodes, and the selected one in the selection's color."""
        rgb = self._colors(idx, self._edge_rgb, self._edge_flash, self._edge_lookup, palette.EDGE_HOVER_MIX)
        if self.selected is not None and self.selected in self._edge_lookup:
            rgb[idx == self._edge_lookup[self.selected]] = palette.SELECTED[:3]
        return rgb

    def _write_node_colors(self, idx: np.ndarray) -> None:
        if len(idx) == 0 or len(self.ids) == 0:
            return
        rgb = self._node_colors(idx)
        shaded = rgb[:, None, :] * self._diffuse[None, :, None] + self._highlight[None, :, None]
        v = len(self._template)
        cols = col_view(self._node_vdata).reshape(-1, v, 4)
        cols[idx, :, :3] = to_u8(shaded)
        cols[idx, :, 3] = 255

    def _write_edge_colors(self, idx: np.ndarray) -> None:
        m = len(self.edge_index)
        if len(idx) == 0 or m == 0:
            return
        rgb = self._edge_colors(idx)
        # lines a little darker than arrowheads and ribbons: a dense graph stays readable
        line_rgb = rgb * 0.72 + np.array(palette.BACKGROUND[:3], np.float32) * 0.28
        lines = col_view(self._line_vdata).reshape(-1, 2, 4)
        lines[idx, :, :3] = to_u8(line_rgb)[:, None, :]
        lines[idx, :, 3] = 255
        k = self.ARROW_SIDES
        tri = col_view(self._tri_vdata)
        arrows = tri[: m * (k + 1)].reshape(-1, k + 1, 4)
        u8 = to_u8(rgb)
        arrows[idx, :, :3] = u8[:, None, :]
        arrows[idx, 1:, :3] = to_u8(rgb * 0.8)[:, None, :]  # base darker than the tip: reads as a cone
        arrows[idx, :, 3] = 255
        slot = self._ribbon_of[idx]
        has = slot >= 0
        if has.any():
            quads = tri[m * (k + 1) :].reshape(-1, 8, 4)
            quads[slot[has], :, :3] = to_u8(line_rgb[has])[:, None, :]
            quads[slot[has], :, 3] = 255

    def _write_all_colors(self) -> None:
        self._write_node_colors(np.arange(len(self.ids)))
        self._write_edge_colors(np.arange(len(self.edge_index)))

    # -- pulses, hover, selection -----------------------------------------------------------------------

    def pulse(self, items: Iterable[Mapping[str, Any]]) -> None:
        """Start flashes: each item ``{"target": id, "on": "node" | "edge", "meaning": "ok" | "error" | "new"}``.
        Unknown targets are ignored (the element may have gone). The flash fades in :meth:`update`."""
        nodes, edges = [], []
        for item in items:
            target, on = item.get("target"), item.get("on", "node")
            rgb = palette.pulse_color(str(item.get("meaning", "new")))[:3]
            if on == "edge" and target in self._edge_lookup:
                k = self._edge_lookup[target]
                self._edge_flash[k] = (*rgb, self.pulse_seconds)
                edges.append(k)
            elif on == "node" and target in self._index:
                k = self._index[target]
                self._node_flash[k] = (*rgb, self.pulse_seconds)
                nodes.append(k)
        self._write_node_colors(np.unique(np.array(nodes, np.int64)))
        self._write_edge_colors(np.unique(np.array(edges, np.int64)))

    def update(self, dt: float) -> None:
        """Advance time by `dt` seconds: fade the running flashes (rewriting only their colors)."""
        for flash, write in ((self._node_flash, self._write_node_colors), (self._edge_flash, self._write_edge_colors)):
            if len(flash) == 0:
                continue
            live = np.flatnonzero(flash[:, 3] > 0)
            if len(live):
                flash[live, 3] = np.maximum(flash[live, 3] - dt, 0.0)
                write(live)
        if self.selected is not None and not self._ring.isHidden():
            self._ring.setH(self._ring.getH() + 40.0 * dt)
        if self.camera is not None:
            self._place_labels()  # the camera may have moved: keep the labels' size on screen

    @property
    def active_pulses(self) -> int:
        return int((self._node_flash[:, 3] > 0).sum() + (self._edge_flash[:, 3] > 0).sum())

    def hover(self, ident: str | None) -> None:
        """Lighten the node or edge `ident` and label it (None: nothing hovered)."""
        self._mark("hovered", ident)

    def select(self, ident: str | None) -> None:
        """Ring and label the node `ident`, or color the edge `ident` (None: clear the selection)."""
        if self._mark("selected", ident):
            self._place_ring()

    def _mark(self, which: str, ident: str | None) -> bool:
        """Set :attr:`hovered` or :attr:`selected` (``which``) to `ident` (None when unknown), recoloring what it
        leaves and what it takes and relabelling; False when nothing changed."""
        if ident is not None and not self._known(ident):
            ident = None
        old = getattr(self, which)
        if ident == old:
            return False
        setattr(self, which, ident)
        self._recolor(old, ident)
        self._assign_labels()
        return True

    def _recolor(self, *idents: str | None) -> None:
        for ident in idents:
            if ident is None:
                continue
            if ident in self._index:
                self._write_node_colors(np.array([self._index[ident]]))
            elif ident in self._edge_lookup:
                self._write_edge_colors(np.array([self._edge_lookup[ident]]))

    def _place_ring(self) -> None:
        k = self._index.get(self.selected) if self.selected is not None else None
        if k is None or not len(self.positions) or self.radii[k] <= 0:
            self._ring.hide()
            return
        c = self._centres[k]
        self._ring.setPos(float(c[0]), float(c[1]), float(c[2]))
        self._ring.setScale(float(self.radii[k]) * 1.3 + 0.05)
        self._ring.show()

    # -- labels -----------------------------------------------------------------------------------------

    def label_targets(self) -> list[str]:
        """Ids of the nodes labelled now: the top nodes by size, then hovered and selected ones."""
        return self._label_pool.targets()

    def _assign_labels(self) -> None:
        wanted: list[str] = []
        alive = np.flatnonzero(self.alive)
        if len(alive) and self.max_labels > 0:
            order = alive[np.argsort(-self.sizes[alive], kind="stable")][: self.max_labels]
            wanted = [self.ids[k] for k in order]  # type: ignore[misc]
        emphasis = {i for i in (self.hovered, self.selected) if i is not None and i in self._index}
        wanted += [i for i in (self.selected, self.hovered) if i in emphasis and i not in wanted]
        self._label_pool.assign(wanted, lambda ident: self.labels[self._index[ident]], emphasis, self.selected)
        self._place_labels()

    def _place_labels(self) -> None:
        self._label_pool.place(self._index, self._centres, self.radii, self.root, self.label_scale, self.camera,
                               self.label_size)

    # -- queries ----------------------------------------------------------------------------------------

    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(lo, hi) corners of the box holding every node sphere, or None for an empty scene."""
        ok = self.alive & np.isfinite(self.positions).all(axis=1) if len(self.ids) else np.zeros(0, bool)
        if not ok.any():
            return None
        p, r = self.positions[ok].astype(np.float64), self.radii[ok, None].astype(np.float64)
        return (p - r).min(axis=0), (p + r).max(axis=0)

    def node_screen_pos(self, ident: str, camera: NodePath, lens: Any = None) -> tuple[float, float] | None:
        """Where node `ident`'s centre is on screen, in film coordinates (-1..1, as the mouse), or None when it is
        unknown, behind the camera or off screen."""
        k = self._index.get(ident)
        if k is None or not np.isfinite(self.positions[k]).all():
            return None
        lens = lens if lens is not None else camera.node().getLens()
        p = self.positions[k]
        cam_p = camera.getRelativePoint(self.root, Point3(float(p[0]), float(p[1]), float(p[2])))
        film = Point2()
        if not lens.project(cam_p, film):
            return None
        return float(film.x), float(film.y)

    def pick(self, mouse: tuple[float, float], camera: NodePath, lens: Any = None) -> tuple[str, str] | None:
        """What is under the mouse (film coordinates): ``("node", id)``, ``("edge", id)`` or None. Edges count
        within about 1.5 % of the screen height of the pointer."""
        if not len(self.ids):
            return None
        lens = lens if lens is not None else camera.node().getLens()
        origin, direction = picking.ray_from_mouse(mouse, camera, lens, self.root)
        slope = 0.03 * math.tan(math.radians(lens.getFov()[1]) / 2)
        valid_edges = self.edge_index[self._edge_valid] if len(self.edge_index) else self.edge_index
        hit = picking.pick(origin, direction, self._centres, self._eff_radii, valid_edges, 0.0, edge_slope=slope)
        if hit is None:
            return None
        kind, k = hit
        if kind == "node":
            ident = self.ids[k]
            return ("node", ident) if ident is not None else None
        return ("edge", self.edge_ids[int(np.flatnonzero(self._edge_valid)[k])])

    def destroy(self) -> None:
        self.root.removeNode()



def snapshot_from_lists(
    ids: Sequence[str | None],
    sizes: Sequence[float],
    categories: Sequence[str],
    edges: Sequence[tuple[int, int]],
    weights: Sequence[float],
    edge_categories: Sequence[str],
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A scene snapshot in the backend's shape from plain lists (tests, benchmarks, demos)."""
    m = len(edges)
    return {
        "ids": list(ids),
        "sizes": np.asarray(sizes, np.float32),
        "categories": list(categories),
        "labels": list(labels) if labels is not None else [i or "" for i in ids],
        "groups": [""] * len(ids),
        "edge_index": np.asarray(edges, np.int32).reshape(m, 2),
        "edge_ids": [f"e{k}" for k in range(m)],
        "weights": np.asarray(weights, np.float32),
        "edge_categories": list(edge_categories),
    }

