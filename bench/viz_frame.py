#!/usr/bin/env python3
"""Benchmark: the graph scene's cost per frame and per full position update, beside a naive baseline.

    python3 bench/viz_frame.py [--sizes 1000,10000] [--frames 12] [--size 800x600] [--quick] [--gpu]

For each N: N nodes (log-uniform sizes 1..1e9, 3 categories) and 2N edges (random pairs, 5 categories), placed
like a layout would (a Gaussian cloud, ideal edge length 1), drawn offscreen, the camera framing the cloud.

- **batched**: `wiredraw.viz.scene.GraphScene` (one Geom for all node spheres, one GeomNode for all edges:
  lines + arrowheads + ribbons, columns written from numpy), 12 labels.
- **naive** (same run, same sphere template, same arrowhead shape): one NodePath per node (a shared sphere Geom,
  placed by setPos/setScale/setColor) and one NodePath per edge (a shared unit line + arrowhead Geom, placed by
  setPos/lookAt/setScale): the way one first writes it.

Measured, medians over `--frames`:
- `frame_ms`: `renderFrame()` with nothing changed (cull + draw);
- `update_ms`: a full position update: every node moves (set_positions / the per-NodePath loop);
- `moving_frame_ms`: update + renderFrame, i.e. a frame while the layout runs.
`ratio` = naive / batched (> 1: batched is faster). CPU rasteriser (p3tinydisplay) by default; `--gpu` uses
p3headlessgl over EGL (`EGL_PLATFORM=surfaceless`), a real GPU where there is one, else Mesa llvmpipe.
The last line is one JSON object. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import numpy as np
from wiredraw.viz import offscreen, palette
from wiredraw.viz.scene import GraphScene, icosphere, snapshot_from_lists, sphere_detail

NODE_CATS = ["local", "remote", "printer"]
EDGE_CATS = ["http", "dns", "ssl", "ssh", "other"]


def make_graph(n: int, seed: int = 1) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = [f"n{i}" for i in range(n)]
    sizes = 10 ** rng.uniform(0, 9, n)
    cats = [NODE_CATS[i] for i in rng.integers(0, len(NODE_CATS), n)]
    m = 2 * n
    src = rng.integers(0, n, m)
    dst = (src + rng.integers(1, n, m)) % n if n > 1 else src
    weights = 10 ** rng.uniform(0, 9, m)
    ecats = [EDGE_CATS[i] for i in rng.integers(0, len(EDGE_CATS), m)]
    snap = snapshot_from_lists(ids, sizes, cats, np.stack([src, dst], 1), weights, ecats)
    spread = 0.6 * max(n, 1) ** (1 / 3)  # a cloud of ideal edge length ~1
    pos = rng.normal(0, spread, (n, 3)).astype(np.float32)
    pos2 = pos + rng.normal(0, 0.05 * spread, (n, 3)).astype(np.float32)
    snap["positions"] = pos
    return snap, pos, pos2


def median_ms(fn: Any, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


class NaiveScene:
    """One NodePath per node and per edge (the baseline)."""

    def __init__(self, parent: Any, snap: dict[str, Any], scene: GraphScene) -> None:
        from panda3d.core import (  # type: ignore[import-untyped]
            Geom,
            GeomLines,
            GeomNode,
            GeomTriangles,
            GeomVertexData,
            GeomVertexFormat,
            GeomVertexWriter,
        )

        self.root = parent.attachNewNode("naive")
        n = len(snap["ids"])
        verts, tris = icosphere(sphere_detail(n))
        sphere = GeomVertexData("s", GeomVertexFormat.getV3(), Geom.UH_static)
        w = GeomVertexWriter(sphere, "vertex")
        for v in verts:
            w.addData3(*map(float, v))
        prim = GeomTriangles(Geom.UH_static)
        for t in tris:
            prim.addVertices(*map(int, t))
        sg = GeomNode("sphere")
        sg.addGeom(Geom(sphere))
        sg.modifyGeom(0).addPrimitive(prim)
        # a unit edge along +y: the line, then a 3-sided arrowhead at its end
        edge = GeomVertexData("e", GeomVertexFormat.getV3(), Geom.UH_static)
        w = GeomVertexWriter(edge, "vertex")
        for p in [(0, 0, 0), (0, 0.9, 0), (0, 1, 0)] + [
            (0.04 * math.cos(a), 0.9, 0.04 * math.sin(a)) for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)
        ]:
            w.addData3(*p)
        lines = GeomLines(Geom.UH_static)
        lines.addVertices(0, 1)
        cone = GeomTriangles(Geom.UH_static)
        for a, b in ((3, 4), (4, 5), (5, 3)):
            cone.addVertices(2, a, b)
        eg = GeomNode("edge")
        eg.addGeom(Geom(edge))
        eg.modifyGeom(0).addPrimitive(lines)
        g2 = Geom(edge)
        g2.addPrimitive(cone)
        eg.addGeom(g2)

        self.nodes = []
        colors = palette.category_colors(snap["categories"])
        for k in range(n):
            np_ = self.root.attachNewNode(sg.makeCopy())
            np_.setScale(float(scene.radii[k]))
            np_.setColor(*map(float, colors[k]))
            self.nodes.append(np_)
        self.edges = []
        ecolors = palette.category_colors(snap["edge_categories"])
        for j in range(len(snap["edge_index"])):
            np_ = self.root.attachNewNode(eg.makeCopy())
            np_.setColor(*map(float, ecolors[j]))
            self.edges.append(np_)
        self.edge_index = snap["edge_index"]
        self.root.setTwoSided(True)

    def set_positions(self, pos: np.ndarray) -> None:
        from panda3d.core import Point3  # type: ignore[import-untyped]

        pts = [Point3(*map(float, p)) for p in pos]
        for np_, p in zip(self.nodes, pts, strict=True):
            np_.setPos(p)
        for np_, (a, b) in zip(self.edges, self.edge_index, strict=True):
            np_.setPos(pts[a])
            np_.lookAt(pts[b])
            np_.setSy((pts[b] - pts[a]).length())

    def destroy(self) -> None:
        self.root.removeNode()


def measure(base: Any, n: int, frames: int) -> dict[str, Any]:
    snap, pos, pos2 = make_graph(n)
    out: dict[str, Any] = {"nodes": n, "edges": 2 * n}
    for name in ("batched", "naive"):
        scene = GraphScene(base.render, max_labels=12, camera=base.cam)
        scene.set_scene(snap)
        offscreen.frame_camera(base.camera, base.camLens, scene.bounds(), relative_to=base.render)
        target: Any = scene
        if name == "naive":
            t0 = time.perf_counter()
            target = NaiveScene(base.render, snap, scene)
            build_ms = (time.perf_counter() - t0) * 1000
            scene.destroy()
            target.set_positions(pos)
        else:
            t0 = time.perf_counter()
            scene.set_scene(snap)
            build_ms = (time.perf_counter() - t0) * 1000
        offscreen.render_frames(base, 3)  # warm: textures, state, first cull
        flip = [pos, pos2]

        def update(target: Any = target, flip: list[np.ndarray] = flip) -> None:
            flip.reverse()
            target.set_positions(flip[0])

        def moving(update: Any = update) -> None:
            update()
            base.graphicsEngine.renderFrame()

        out[name] = {
            "build_ms": round(build_ms, 2),
            "frame_ms": round(median_ms(base.graphicsEngine.renderFrame, frames), 2),
            "update_ms": round(median_ms(update, frames), 2),
            "moving_frame_ms": round(median_ms(moving, frames), 2),
        }
        target.destroy()
    out["ratio"] = {
        k: round(out["naive"][k] / max(out["batched"][k], 1e-6), 2)
        for k in ("frame_ms", "update_ms", "moving_frame_ms")
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    ap.add_argument("--sizes", default="1000,10000", help="node counts, comma-separated (edges: 2x)")
    ap.add_argument("--frames", type=int, default=12, help="frames per measurement (median)")
    ap.add_argument("--size", default="800x600", help="offscreen buffer WxH")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1,000 and 3,000 nodes, 4 frames")
    ap.add_argument("--gpu", action="store_true", help="p3headlessgl (EGL) instead of p3tinydisplay")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    frames = args.frames
    if args.quick:
        sizes, frames = [1000, 3000], 4
    width, height = (int(v) for v in args.size.lower().split("x"))
    base = offscreen.open_offscreen(width, height, gpu=args.gpu)
    gsg = base.win.getGsg()
    driver = f"{gsg.getDriverVendor()} {gsg.getDriverRenderer()}".strip()
    device = base.pipe.getType().getName() + (f" ({driver})" if driver else "")
    print(f"viz_frame: {device}, {width}x{height}, {frames} frames per median", flush=True)
    results = []
    for n in sizes:
        r = measure(base, n, frames)
        results.append(r)
        b, nv, ratio = r["batched"], r["naive"], r["ratio"]
        print(
            f"  N={n:>6} edges={2 * n:>6} | "
            f"frame {b['frame_ms']:8.2f} ms (naive {nv['frame_ms']:8.2f}, x{ratio['frame_ms']:.1f}) | "
            f"position update {b['update_ms']:7.2f} ms (naive {nv['update_ms']:8.2f}, x{ratio['update_ms']:.1f}) | "
            f"moving frame {b['moving_frame_ms']:8.2f} ms (naive {nv['moving_frame_ms']:8.2f}, "
            f"x{ratio['moving_frame_ms']:.1f}) | build {b['build_ms']:.0f} ms (naive {nv['build_ms']:.0f})",
            flush=True,
        )
    print(json.dumps({"bench": "viz_frame", "device": device, "size": [width, height], "frames": frames,
                      "results": results}))  # fmt: skip
    base.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
