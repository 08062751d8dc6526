"""Picking by ray cast against the position arrays (DESIGN.md §7): pure numpy, no collision solids, so it works
with the batched geometry of :mod:`wiredraw.viz.scene` (notes/panda3d.md: same answers as a CollisionTraverser
with a sphere per node and a capsule per edge).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from panda3d.core import NodePath, Point2, Point3  # type: ignore[import-untyped]

Hit = tuple[Literal["node", "edge"], int]


def pick(
    origin: np.ndarray,
    direction: np.ndarray,
    positions: np.ndarray,
    radii: np.ndarray,
    edge_index: np.ndarray,
    max_edge_dist: float,
    *,
    edge_slope: float = 0.0,
) -> Hit | None:
    """What the ray `origin` + t * `direction` (t >= 0) hits first.

    - ``("node", i)``: the node sphere (centre ``positions[i]``, radius ``radii[i]``) whose surface the ray meets
      nearest to its origin; a radius <= 0 or a non-finite position never hits (free slots).
    - else ``("edge", j)``: the edge segment ``positions[edge_index[j]]`` closest to the ray, if that distance is
      within ``max_edge_dist + edge_slope * t`` (t: where along the ray; a slope makes the tolerance a cone, i.e.
      a constant number of pixels on screen). Ties go to the edge nearer the origin.
    - else None.
    """
    o = np.asarray(origin, np.float64).reshape(3)
    d = np.asarray(direction, np.float64).reshape(3)
    norm = np.linalg.norm(d)
    if norm == 0 or not np.isfinite(norm):
        return None
    d = d / norm
    pos = np.asarray(positions, np.float64).reshape(-1, 3)
    r = np.asarray(radii, np.float64).reshape(-1)

    if len(pos):
        oc = pos - o
        t_mid = oc @ d  # along the ray to the point closest to the centre
        dist2 = np.einsum("ij,ij->i", oc, oc) - t_mid**2
        r2 = r * r
        ok = np.isfinite(t_mid) & (r > 0) & (dist2 <= r2)
        if ok.any():
            half = np.sqrt(np.maximum(r2 - dist2, 0.0))
            ok &= t_mid + half >= 0  # the sphere is not wholly behind the origin
            t_hit = np.maximum(t_mid - half, 0.0)  # an origin inside a sphere hits it at t = 0
            if ok.any():
                idx = np.flatnonzero(ok)
                return ("node", int(idx[np.argmin(t_hit[idx])]))

    e = np.asarray(edge_index, np.int64).reshape(-1, 2)
    if len(e) == 0 or len(pos) == 0:
        return None
    a = pos[e[:, 0]]
    b = pos[e[:, 1]]
    s_ray, dist = _ray_segment(o, d, a, b)
    within = np.isfinite(dist) & (dist <= max_edge_dist + edge_slope * s_ray)
    if not within.any():
        return None
    idx = np.flatnonzero(within)
    best = np.lexsort((s_ray[idx], dist[idx]))[0]
    return ("edge", int(idx[best]))


def _ray_segment(o: np.ndarray, d: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the unit-direction ray o + s d (s >= 0) and segments a..b: (s at the closest points, distance)."""
    u = b - a
    w = a - o
    uu = np.einsum("ij,ij->i", u, u)
    ud = u @ d
    wd = w @ d
    wu = np.einsum("ij,ij->i", w, u)
    denom = uu - ud * ud  # |u|^2 sin^2(angle); 0 for segments parallel to the ray (or of length 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # unconstrained closest point on the segment's line, then clamp to the segment and re-solve the ray
        v = np.where(denom > 1e-12, (ud * wd - wu) / denom, 0.0)
        v = np.clip(v, 0.0, 1.0)
        s = np.maximum(wd + v * ud, 0.0)
        # with s clamped at 0, the best segment point is the one closest to the origin
        v_at0 = np.where(uu > 0, np.clip(-wu / uu, 0.0, 1.0), 0.0)
        v = np.where(wd + v * ud < 0, v_at0, v)
    p_seg = a + v[:, None] * u
    p_ray = o + s[:, None] * d
    dist = np.linalg.norm(p_seg - p_ray, axis=1)
    return s, dist


def ray_from_mouse(
    mouse: tuple[float, float], camera: NodePath, lens: Any, space: NodePath
) -> tuple[np.ndarray, np.ndarray]:
    """The ray under the mouse at film position `mouse` (x, y in -1..1, as ``mouseWatcherNode.getMouse()``),
    through `camera`'s `lens`, as (origin, unit direction) in `space`'s coordinates (the scene's parent)."""
    near, far = Point3(), Point3()
    if not lens.extrude(Point2(float(mouse[0]), float(mouse[1])), near, far):
        raise ValueError(f"cannot extrude a ray through {mouse}")
    near = space.getRelativePoint(camera, near)
    far = space.getRelativePoint(camera, far)
    o = np.array([near.x, near.y, near.z], np.float64)
    d = np.array([far.x, far.y, far.z], np.float64) - o
    return o, d / np.linalg.norm(d)
