"""The scene's geometry kit (viz/scene.py draws with it): the icosphere template and its baked shading, the vertex
format (positions float32 x3 and colors RGBA uint8, two arrays), numpy views over a GeomVertexData's columns,
index lists written from numpy, and the scaling of raw measures (notes/panda3d.md, "Speed")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from panda3d.core import (  # type: ignore[import-untyped]
    Geom,
    GeomLines,
    GeomNode,
    GeomVertexArrayFormat,
    GeomVertexData,
    GeomVertexFormat,
    InternalName,
    NodePath,
    OmniBoundingVolume,
)
from wiredraw.viz import palette

# Sphere detail by node count: icosphere subdivisions 2 (320 triangles) up to HIGH_DETAIL_NODES, 1 (80) up to
# LOW_DETAIL_NODES, else 0 (an icosahedron, 20): a CPU rasteriser is bound by triangles.
HIGH_DETAIL_NODES = 400
LOW_DETAIL_NODES = 2500
LIGHT_DIR = np.array([-0.45, -0.55, 0.70])  # world direction towards the baked light (from the front left, above)


# ---------------------------------------------------------------------------------------------------------
# templates


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere: (vertices float32 (V, 3), triangles int32 (F, 3), counter-clockwise seen from outside)."""
    p = (1 + math.sqrt(5)) / 2
    verts = [(-1, p, 0), (1, p, 0), (-1, -p, 0), (1, -p, 0), (0, -1, p), (0, 1, p),
             (0, -1, -p), (0, 1, -p), (p, 0, -1), (p, 0, 1), (-p, 0, -1), (-p, 0, 1)]  # fmt: skip
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    vs = [np.array(v, np.float64) / np.linalg.norm(v) for v in verts]
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int, cache: dict[tuple[int, int], int] = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = vs[a] + vs[b]
                vs.append(m / np.linalg.norm(m))
                cache[key] = len(vs) - 1
            return cache[key]

        new_faces = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new_faces
    # counter-clockwise seen from outside, as Panda's front faces (right-handed, z up)
    return np.array(vs, np.float32), np.array(faces, np.int32)


def sphere_detail(nodes: int) -> int:
    """Icosphere subdivisions for a scene of `nodes` nodes."""
    return 2 if nodes <= HIGH_DETAIL_NODES else 1 if nodes <= LOW_DETAIL_NODES else 0


def shade(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Baked lighting per template vertex: (diffuse factor (V,), additive white highlight (V,))."""
    light = LIGHT_DIR / np.linalg.norm(LIGHT_DIR)
    ndotl = np.clip(normals @ light, 0.0, 1.0)
    diffuse = 0.38 + 0.62 * ndotl
    half = light + np.array([0.0, -1.0, 0.0])  # towards a viewer in front (-y), roughly
    half /= np.linalg.norm(half)
    highlight = 0.22 * np.clip(normals @ half, 0.0, 1.0) ** 24
    return diffuse.astype(np.float32), highlight.astype(np.float32)


def _format() -> Any:
    """Two arrays: positions (float32 x3, rewritten often) and colors (RGBA uint8, rewritten on pulses)."""
    pos = GeomVertexArrayFormat()
    pos.addColumn(InternalName.getVertex(), 3, Geom.NT_float32, Geom.C_point)
    col = GeomVertexArrayFormat()
    col.addColumn(InternalName.getColor(), 4, Geom.NT_uint8, Geom.C_color)
    fmt = GeomVertexFormat()
    fmt.addArray(pos)
    fmt.addArray(col)
    return GeomVertexFormat.registerFormat(fmt)


_FORMAT: Any = None


def vformat() -> Any:
    global _FORMAT
    if _FORMAT is None:
        _FORMAT = _format()
    return _FORMAT


def columns(vdata: Any, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy views (rows, 3) float32 and (rows, 4) uint8 over `vdata`'s two arrays, marked modified.
    Take them fresh for each write: they are only valid until the arrays change size."""
    if vdata.getNumRows() != rows:
        vdata.uncleanSetNumRows(rows)
    if rows == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 4), np.uint8)
    pos = np.frombuffer(memoryview(vdata.modifyArray(0)), np.float32).reshape(rows, 3)
    col = np.frombuffer(memoryview(vdata.modifyArray(1)), np.uint8).reshape(rows, 4)
    return pos, col


def pos_view(vdata: Any) -> np.ndarray:
    rows = vdata.getNumRows()
    if rows == 0:
        return np.zeros((0, 3), np.float32)
    return np.frombuffer(memoryview(vdata.modifyArray(0)), np.float32).reshape(rows, 3)


def col_view(vdata: Any) -> np.ndarray:
    rows = vdata.getNumRows()
    if rows == 0:
        return np.zeros((0, 4), np.uint8)
    return np.frombuffer(memoryview(vdata.modifyArray(1)), np.uint8).reshape(rows, 4)


def set_indices(prim: Any, indices: np.ndarray) -> None:
    """Replace a GeomPrimitive's index list from numpy (uint32)."""
    flat = np.ascontiguousarray(indices, np.uint32).reshape(-1)
    prim.clearVertices()
    prim.setIndexType(Geom.NT_uint32)
    arr = prim.modifyVertices()
    arr.uncleanSetNumRows(len(flat))
    if len(flat):
        np.frombuffer(memoryview(arr), np.uint32)[:] = flat


def to_u8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def log_norm(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """log(1 + max(v, 0)) scaled to 0..1 over the (masked) values; all equal -> 0.5."""
    lv = np.log1p(np.maximum(np.nan_to_num(values.astype(np.float64), nan=0.0), 0.0))
    sel = lv if mask is None else lv[mask]
    if len(sel) == 0:
        return np.zeros(len(lv), np.float32)
    lo, hi = float(sel.min()), float(sel.max())
    if hi - lo < 1e-9:
        return np.full(len(lv), 0.5, np.float32)
    return np.clip((lv - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def perpendiculars(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to each unit row of `d` and to each other."""
    up = np.zeros_like(d)
    up[:, 2] = 1.0
    near_vertical = np.abs(d[:, 2]) > 0.9
    up[near_vertical] = (1.0, 0.0, 0.0)
    u = np.cross(d, up)
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    v = np.cross(d, u)
    return u, v


def geom_node(name: str) -> GeomNode:
    node = GeomNode(name)
    # the geometry moves every frame: never let stale bounds cull it, never walk it for bounds
    node.setBounds(OmniBoundingVolume())
    node.setFinal(True)
    return node


def make_geom(vdata: Any, prim: Any) -> Any:
    geom = Geom(vdata)
    geom.addPrimitive(prim)
    geom.setBounds(OmniBoundingVolume())
    return geom


def selection_ring(parent: NodePath) -> NodePath:
    """The selected node's ring: a unit icosphere's edges as lines, hidden (scale and place it on the node)."""
    verts, tris = icosphere(1)
    pairs = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    vdata = GeomVertexData("ring", vformat(), Geom.UH_static)
    pos, col = columns(vdata, len(verts))
    pos[:] = verts
    col[:, :3] = to_u8(np.array(palette.SELECTED[:3]))
    col[:, 3] = 255
    lines = GeomLines(Geom.UH_static)
    set_indices(lines, pairs)
    node = GeomNode("selection-ring")
    node.addGeom(Geom(vdata))
    node.modifyGeom(0).addPrimitive(lines)
    ring = parent.attachNewNode(node)
    ring.hide()
    return ring
