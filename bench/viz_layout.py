"""Layout ms per step (viz/layout.py) at 1,000 and 10,000 nodes with twice as many edges, beside a same-run naive
baseline: the same forces with exact all-pairs repulsion in numpy (O(N²), chunked), and networkx's
spring_layout for one iteration (3D; at 1,000 nodes only: its dense N×N arrays need ~2.4 GB at 10,000).

    python3 bench/viz_layout.py                 # 1,000 and 10,000 nodes
    python3 bench/viz_layout.py --quick         # fewer steps
    python3 bench/viz_layout.py --sizes 1000 3000 30000

Every node is kept hot (no cooling) while timing, the worst case: a settled layout costs nothing per step.
Also reported: how far the mesh repulsion is from the exact one (median relative error and cosine per node, for
nodes spread uniformly in a ball) and, for the incremental case, how many steps 10 new nodes take to settle and
how far the old ones moved.
The last line is one JSON object. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import numpy as np
from wiredraw.viz.layout import ForceLayout


def make_layout(n: int, seed: int = 1) -> tuple[ForceLayout, np.ndarray]:
    rng = np.random.default_rng(seed)
    edges = rng.integers(0, n, (2 * n, 2))
    layout = ForceLayout(n, seed=seed, weight_pull=0.5, grouping=0.5, cooling=1.0)
    layout.set_edges(edges, rng.pareto(1.5, 2 * n) * 1000)
    layout.set_groups(rng.integers(0, 20, n))
    layout.add_nodes(np.arange(n))
    return layout, edges


def time_steps(layout: ForceLayout, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        t = time.perf_counter()
        layout.step()
        out.append((time.perf_counter() - t) * 1000)
    return out


def exact_repulsion(p: np.ndarray, k: float, chunk: int = 256) -> np.ndarray:
    """All pairs, k³ d / r³, chunked so memory stays bounded."""
    f = np.zeros_like(p)
    k3 = k ** 3
    for i in range(0, len(p), chunk):
        d = p[i:i + chunk, None, :] - p[None, :, :]
        r2 = np.maximum((d * d).sum(axis=2), (0.05 * k) ** 2)
        r2[np.arange(len(d)), np.arange(i, i + len(d))] = np.inf
        f[i:i + chunk] = k3 * (d / (r2 * np.sqrt(r2))[:, :, None]).sum(axis=1)
    return f


def naive_step(layout: ForceLayout) -> None:
    """One step of the same model with the exact O(N²) repulsion in place of the mesh."""
    mesh = layout._repulsion  # noqa: SLF001 (a benchmark may reach inside)
    layout._repulsion = lambda p: exact_repulsion(p, layout.k)  # type: ignore[method-assign]
    try:
        layout.step()
    finally:
        layout._repulsion = mesh  # type: ignore[method-assign]


def force_error(n: int, seed: int = 3) -> tuple[float, float]:
    """Mesh against exact repulsion for n nodes spread uniformly in the ball the layout settles into: the median
    of |approx - exact| / |exact| per node, and the median cosine between the two. (Measured on a settled layout
    instead, per-node relative errors mean little: there the total repulsion on a node nearly cancels.)"""
    layout = ForceLayout(n)
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    p = v * np.cbrt(n / layout.gravity) * np.cbrt(rng.random((n, 1)))
    approx = layout._repulsion(p)  # noqa: SLF001 (a benchmark may reach inside)
    exact = exact_repulsion(p, layout.k)
    na, ne = np.linalg.norm(approx, axis=1), np.linalg.norm(exact, axis=1)
    return (float(np.median(np.linalg.norm(approx - exact, axis=1) / ne)),
            float(np.median((approx * exact).sum(axis=1) / (na * ne))))


def networkx_step_ms(n: int, seed: int = 1) -> float:
    import networkx as nx

    rng = np.random.default_rng(seed)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(map(tuple, rng.integers(0, n, (2 * n, 2))))
    pos = {i: rng.normal(size=3) for i in range(n)}
    t = time.perf_counter()
    nx.spring_layout(g, pos=pos, iterations=1, dim=3, seed=seed)
    return (time.perf_counter() - t) * 1000


def incremental(n: int) -> dict[str, Any]:
    layout, edges = make_layout(n)
    layout.cooling = 0.96
    settle = 0
    while layout.step() and settle < 3000:
        settle += 1
    before = layout.positions()
    rng = np.random.default_rng(2)
    new = np.stack([np.arange(n, n + 10), rng.integers(0, n, 10)], axis=1)
    layout.set_edges(np.concatenate([edges, new]), np.concatenate([layout.weights, np.ones(10, np.float32)]))
    layout.add_nodes(np.arange(n, n + 10))
    steps = 0
    while layout.step() and steps < 3000:
        steps += 1
    moved = np.linalg.norm(layout.positions()[:n] - before, axis=1)
    return {"initial_settle_steps": settle, "settle_steps_after_10_new": steps,
            "old_nodes_moved": int((moved > 1e-6).sum()), "old_max_move_k": round(float(moved.max()), 3),
            "extent_k": round(float(np.ptp(before, axis=0).max()), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    steps = 20 if args.quick else 60
    results: dict[str, Any] = {"bench": "viz_layout", "python": platform.python_version(), "numpy": np.__version__,
                               "edges_per_node": 2, "sizes": {}}
    for n in args.sizes:
        layout, _ = make_layout(n)
        time_steps(layout, 5)  # warm-up: kernels, caches
        ms = time_steps(layout, steps)
        med = statistics.median(ms)
        p90 = float(np.percentile(ms, 90))
        err, cos = force_error(n)
        naive_runs = 1 if n > 3000 else 3
        t = time.perf_counter()
        for _ in range(naive_runs):
            naive_step(layout)
        naive_ms = (time.perf_counter() - t) * 1000 / naive_runs
        nx_ms = networkx_step_ms(n) if n <= 3000 else None
        inc = incremental(n)
        row: dict[str, Any] = {
            "step_ms_median": round(med, 2), "step_ms_p90": round(p90, 2),
            "naive_all_pairs_step_ms": round(naive_ms, 1),
            "speedup_vs_naive": round(naive_ms / med, 1), "networkx_spring_1_iter_ms": None if nx_ms is None else
            round(nx_ms, 1), "speedup_vs_networkx": None if nx_ms is None else round(nx_ms / med, 1),
            "mesh_repulsion_median_rel_error": round(err, 3), "mesh_repulsion_median_cosine": round(cos, 4), **inc,
        }
        results["sizes"][str(n)] = row
        print(f"{n:>6,} nodes, {2 * n:>6,} edges: {med:6.2f} ms/step (p90 {p90:.2f}; {steps} steps, all hot)  "
              f"naive all-pairs {naive_ms:8.1f} ms -> {naive_ms / med:6.1f}x"
              + (f"  networkx spring_layout 1 iter {nx_ms:.1f} ms -> {nx_ms / med:.1f}x" if nx_ms else ""))
        print(f"        mesh repulsion vs exact (uniform ball): median relative error {err:.1%}, cosine {cos:.3f}; "
              f"settled in "
              f"{inc['initial_settle_steps']} steps; 10 new nodes settled in {inc['settle_steps_after_10_new']} "
              f"steps, {inc['old_nodes_moved']} old nodes moved (max {inc['old_max_move_k']} k, "
              f"extent {inc['extent_k']} k)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
