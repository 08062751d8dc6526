"""The viewer's force layout (viz/layout.py): placement, stability, grouping, weight pull, no explosions."""

from __future__ import annotations

import numpy as np
from wiredraw.viz.layout import ForceLayout


def random_graph(n: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    edges = rng.integers(0, n, (m, 2))
    return edges, rng.pareto(1.5, m) * 1000


def settle(layout: ForceLayout, max_steps: int = 2000) -> int:
    for i in range(max_steps):
        if not layout.step():
            return i
    raise AssertionError(f"not settled after {max_steps} steps")


def mean_pair_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(p[a] - p[b], axis=1).mean())


def test_a_new_node_is_placed_near_its_placed_neighbours():
    layout = ForceLayout(seed=1)
    layout.set_edges([[0, 1], [1, 2], [2, 3]])
    layout.add_nodes([0, 1, 2, 3])
    settle(layout)
    before = layout.positions()
    layout.set_edges([[0, 1], [1, 2], [2, 3], [4, 0], [4, 3]])
    layout.add_nodes([4])
    p = layout.positions()
    assert np.linalg.norm(p[4] - (before[0] + before[3]) / 2) < 1.5 * layout.k


def test_a_chain_of_new_nodes_grows_out_from_the_placed_one_and_lone_nodes_land_on_a_sphere():
    layout = ForceLayout(seed=2)
    layout.set_edges([[0, 1]])
    layout.add_nodes([0, 1])
    settle(layout)
    layout.set_edges([[0, 1], [1, 2], [2, 3], [3, 4]])
    layout.add_nodes([2, 3, 4, 9])  # 9 has no neighbour at all
    p = layout.positions()
    for i in (2, 3, 4):
        assert np.linalg.norm(p[i] - p[i - 1]) < 1.5 * layout.k
    assert np.isfinite(p[9]).all() and np.linalg.norm(p[9]) > 0.5


def test_a_settled_layout_keeps_its_places_when_a_few_nodes_arrive():
    edges, weights = random_graph(400, 800)
    layout = ForceLayout(seed=3)
    layout.set_edges(edges, weights)
    layout.add_nodes(np.arange(400))
    settle(layout)
    before = layout.positions()
    extent = float(np.ptp(before, axis=0).max())
    rng = np.random.default_rng(9)
    new_edges = np.stack([np.arange(400, 405), rng.integers(0, 400, 5)], axis=1)
    layout.set_edges(np.concatenate([edges, new_edges]), np.concatenate([weights, np.ones(5)]))
    layout.add_nodes(np.arange(400, 405))
    steps = settle(layout)
    after = layout.positions()
    moved = np.linalg.norm(after[:400] - before, axis=1)
    # only the new nodes' neighbours were warmed; everything else stays exactly where it was
    assert moved.max() < 0.05 * extent, (moved.max(), extent)
    assert (moved > 1e-6).sum() <= 10
    assert steps < 300
    for new, old in new_edges:
        assert np.linalg.norm(after[new] - after[old]) < 3 * layout.k


def test_grouping_pulls_each_group_together():
    n = 300
    edges, weights = random_graph(n, 600, seed=4)
    groups = np.arange(n) % 5  # unrelated to the edges
    same = groups[:, None] == groups[None, :]
    iu = np.triu_indices(n, 1)
    intra, inter = same[iu], ~same[iu]

    def ratio(grouping: float) -> float:
        layout = ForceLayout(seed=5, grouping=grouping)
        layout.set_edges(edges, weights)
        layout.set_groups(groups)
        layout.add_nodes(np.arange(n))
        settle(layout)
        p = layout.positions()
        d = np.linalg.norm(p[iu[0]] - p[iu[1]], axis=1)
        return float(d[intra].mean() / d[inter].mean())

    assert ratio(0.0) > 0.9  # without grouping, groups are spread like everything else
    assert ratio(1.0) < 0.75  # groups mixed by edges on purpose: the hardest case


def test_weight_pull_shortens_heavy_edges():
    # a star: the hub's heavy edges should come out shorter than its light ones once weight pulls
    n = 41
    edges = np.stack([np.zeros(n - 1, int), np.arange(1, n)], axis=1)
    weights = np.where(np.arange(1, n) % 2 == 0, 1e6, 1.0)
    heavy, light = weights > 1, weights == 1

    def lengths(pull: float) -> tuple[float, float]:
        layout = ForceLayout(seed=6, weight_pull=pull)
        layout.set_edges(edges, weights)
        layout.add_nodes(np.arange(n))
        settle(layout)
        p = layout.positions()
        d = np.linalg.norm(p[edges[:, 0]] - p[edges[:, 1]], axis=1)
        return float(d[heavy].mean()), float(d[light].mean())

    h0, l0 = lengths(0.0)
    h1, l1 = lengths(1.0)
    assert abs(h0 / l0 - 1) < 0.2
    assert h1 / l1 < 0.7


def test_a_thousand_steps_neither_explode_nor_produce_nan():
    edges, weights = random_graph(2000, 4000, seed=7)
    layout = ForceLayout(seed=7, grouping=0.5, weight_pull=0.5, cooling=0.999)  # slow cooling: all 1000 move
    layout.set_edges(edges, weights)
    layout.set_groups(np.arange(2000) % 7)
    layout.add_nodes(np.arange(2000))
    for _ in range(1000):
        layout.step()
    p = layout.positions()
    assert np.isfinite(p).all()
    assert np.abs(p).max() < 100 * layout.k * np.cbrt(2000)
    assert np.linalg.norm(p[edges[:, 0]] - p[edges[:, 1]], axis=1).mean() < 10 * layout.k


def test_the_same_seed_gives_the_same_layout_after_removals():
    edges, weights = random_graph(500, 1000, seed=8)

    def run() -> np.ndarray:
        layout = ForceLayout(seed=11)
        layout.set_edges(edges, weights)
        layout.add_nodes(np.arange(500))
        for _ in range(50):
            layout.step()
        layout.remove_nodes([3, 4, 5])
        layout.set_edges(edges[~np.isin(edges, [3, 4, 5]).any(axis=1)])
        layout.add_nodes([3])
        for _ in range(10):
            layout.step()
        return layout.positions()

    a, b = run(), run()
    assert np.array_equal(a, b)


def test_a_settled_layout_costs_nothing_and_warming_moves_it_again():
    layout = ForceLayout(seed=12)
    layout.set_edges([[0, 1], [1, 2]])
    layout.add_nodes([0, 1, 2])
    settle(layout)
    assert layout.settled and not layout.step()
    layout.warm_all()
    assert layout.step()
