"""Incremental 3D force layout in numpy (DESIGN.md §7): stable, cheap per step, no per-node Python loop.

Nodes live in *slots* (the model's stable integer indices, :class:`wiredraw.viz.model.GraphModel`); a slot is
active or free. One :meth:`ForceLayout.step` moves every active node by the sum of

- **repulsion** between all pairs, ``k³ d / r³`` (Coulomb: in 3D it keeps a constant density as the graph grows),
  computed particle-mesh style: node masses are spread onto a grid (cloud-in-cell), convolved with a softened
  ``1/r`` potential by FFT (zero-padded, so no wrap-around), and the potential's gradient is read back at each
  node. That is O(N + G³ log G), not O(N²). What the grid smooths away at distances under one cell is added back
  exactly for near pairs found by sorting the nodes by cell and comparing each with the next few in that order;
- **springs** along edges, ``s_e |d| d / k`` (Fruchterman–Reingold), where ``s_e`` blends a uniform spring with
  one proportional to ``log1p(weight)`` (normalised to mean 1) by :attr:`weight_pull` ∈ [0, 1];
- **grouping** (strength :attr:`grouping`): a pull toward the centroid of the node's group, and a push away from
  other groups whose balls overlap its own (Traffic Map's clusters); nodes of no group (-1) feel neither;
- **gravity**: a weak linear pull to the origin, so disconnected pieces stay in one ball.

Velocities are damped, and each node's displacement per step is capped by its own *temperature*, which cools
geometrically. New nodes start hot, their neighbours warm, everything else stays as cold as it was: existing
nodes keep their places while new ones settle near their neighbours. When every node is cold, :meth:`step`
does nothing and returns False (a settled layout costs nothing per frame).

Randomness (jitter, placement on a sphere) comes from one ``numpy.random.Generator`` seeded at construction:
the same calls give the same positions.

This module must not import panda3d: it runs in the viewer's backend process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["ForceLayout"]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def _as_index(values: Sequence[int] | npt.NDArray[Any]) -> IntArray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


class ForceLayout:
    """Positions of integer slots (:meth:`positions`: ``float32 (n, 3)``); see the module docstring for the forces.

    Units: ``k`` is the ideal edge length. Temperatures are distances (in ``k``) a node may move per step.
    """

    #: how hot a new node starts, and how warm its already-placed neighbours get
    T_NEW = 2.0
    T_NEIGHBOUR = 0.05
    #: below this a node counts as cold (does not move)
    T_COLD = 2e-3

    def __init__(self, capacity: int = 0, *, seed: int = 0, k: float = 1.0, weight_pull: float = 0.0,
                 grouping: float = 0.0, gravity: float = 0.5, damping: float = 0.6, cooling: float = 0.96,
                 grid: int | None = None, near_window: int = 6) -> None:
        self.k = float(k)
        self.weight_pull = float(weight_pull)
        self.grouping = float(grouping)
        self.gravity = float(gravity)
        self.damping = float(damping)
        self.cooling = float(cooling)
        self.grid = grid  # cells per axis for the repulsion mesh; None: chosen from the node count
        self.near_window = int(near_window)
        self.rng = np.random.default_rng(seed)
        cap = max(int(capacity), 16)
        # float64 inside (no conversions per step); :meth:`positions` hands out float32
        self.pos: npt.NDArray[np.float64] = np.zeros((cap, 3))
        self.vel: npt.NDArray[np.float64] = np.zeros((cap, 3))
        self.heat: npt.NDArray[np.float64] = np.zeros(cap)
        self.active = np.zeros(cap, bool)
        self.group = np.full(cap, -1, np.int64)
        self.edges: IntArray = np.zeros((0, 2), np.int64)
        self.weights: FloatArray = np.zeros(0, np.float32)
        self._kernels: dict[int, npt.NDArray[np.complex128]] = {}
        self._pairs: tuple[IntArray, IntArray, IntArray, IntArray] = (np.zeros(0, np.int64),) * 4
        self._pairs_for = (-1, -1)
        self._version = 0  # bumped whenever nodes, edges or groups change
        self._topo: _Topology | None = None
        self._topo_key: tuple[int, float] = (-1, 0.0)

    # -- slots -------------------------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return len(self.active)

    @property
    def count(self) -> int:
        return int(self.active.sum())

    def _grow(self, need: int) -> None:
        if need <= self.capacity:
            return
        cap = max(need, 2 * self.capacity)
        extra = cap - self.capacity
        self._version += 1
        self.pos = np.concatenate([self.pos, np.zeros((extra, 3))])
        self.vel = np.concatenate([self.vel, np.zeros((extra, 3))])
        self.heat = np.concatenate([self.heat, np.zeros(extra)])
        self.active = np.concatenate([self.active, np.zeros(extra, bool)])
        self.group = np.concatenate([self.group, np.full(extra, -1, np.int64)])

    def positions(self, n: int | None = None) -> FloatArray:
        """A copy of the first ``n`` slots' positions (default: up to the highest active slot); free slots hold
        whatever they last had (the render side hides them by their id being None)."""
        if n is None:
            live = np.flatnonzero(self.active)
            n = int(live[-1]) + 1 if len(live) else 0
        self._grow(n)
        return self.pos[:n].astype(np.float32)

    @property
    def settled(self) -> bool:
        return not bool((self.heat[self.active] > self.T_COLD).any())

    def set_edges(self, edge_index: npt.ArrayLike, weights: npt.ArrayLike | None = None) -> None:
        """The whole edge set, as slot pairs ``(M, 2)``, with raw weights (bytes, counts: any scale >= 0).
        Parallel edges and self-loops are allowed (self-loops exert nothing)."""
        ei = np.asarray(edge_index, dtype=np.int64).reshape(-1, 2)
        self._version += 1
        self.edges = ei
        if weights is None:
            self.weights = np.ones(len(ei), np.float32)
        else:
            self.weights = np.asarray(weights, dtype=np.float32).reshape(-1)
            if len(self.weights) != len(ei):
                raise ValueError(f"{len(ei)} edges but {len(self.weights)} weights")
        if len(ei):
            self._grow(int(ei.max()) + 1)

    def set_groups(self, groups: npt.ArrayLike) -> None:
        """A group number per slot (-1: none), for slots ``0..len(groups)-1``."""
        g = np.asarray(groups, dtype=np.int64).reshape(-1)
        self._grow(len(g))
        self.group[: len(g)] = g
        self.group[len(g):] = -1
        self._version += 1

    def reheat(self, indices: Sequence[int] | npt.NDArray[Any], temperature: float) -> None:
        """Let these nodes move again (up to ``temperature`` per step, cooling from there)."""
        idx = _as_index(indices)
        idx = idx[self.active[idx]]
        self.heat[idx] = np.maximum(self.heat[idx], temperature)

    def warm_all(self, temperature: float = 0.5) -> None:
        """Let every node move again, e.g. after the forces changed (weight pull, grouping)."""
        self.heat[self.active] = np.maximum(self.heat[self.active], temperature)

    def remove_nodes(self, indices: Sequence[int] | npt.NDArray[Any]) -> None:
        idx = _as_index(indices)
        if not len(idx):
            return
        self._version += 1
        self.active[idx] = False
        self.heat[idx] = 0
        self.vel[idx] = 0

    def add_nodes(self, indices: Sequence[int] | npt.NDArray[Any]) -> None:
        """Activate slots and place each near the mean of its already-placed neighbours (plus a little jitter).

        Neighbours are the current edge set (:meth:`set_edges`). New nodes are placed in breadth-first rounds, so
        a chain of new nodes hanging off a placed one is laid out along its own neighbours; a piece with no placed
        node at all is seeded at its local degree maxima, at random on a sphere around the layout.
        """
        new = np.unique(_as_index(indices))
        if not len(new):
            return
        self._grow(int(new.max()) + 1)
        new = new[~self.active[new]]
        if not len(new):
            return
        pairs = self.edges
        if len(pairs):
            self._grow(int(pairs.max()) + 1)
        cap = self.capacity
        is_new = np.zeros(cap, bool)
        is_new[new] = True
        placed = self.active.copy()  # active nodes are placed; new ones become placed round by round
        self.active[new] = True  # so that forces see them from the next step on
        self._version += 1
        # both directions, only pairs touching a new node, without self-loops
        a = np.concatenate([pairs[:, 0], pairs[:, 1]])
        b = np.concatenate([pairs[:, 1], pairs[:, 0]])
        keep = is_new[a] & (a != b) & self.active[b]
        a, b = a[keep], b[keep]
        degree = np.bincount(a, minlength=cap) if len(a) else np.zeros(cap, np.int64)
        jitter = 0.3 * self.k
        while True:
            waiting = is_new & ~placed
            if not waiting.any():
                break
            use = waiting[a] & placed[b]
            if use.any():
                aa, bb = a[use], b[use]
                cnt = np.bincount(aa, minlength=cap).astype(np.float64)
                target = np.flatnonzero(cnt > 0)
                mean = np.stack([np.bincount(aa, weights=self.pos[bb, c], minlength=cap)[target] for c in range(3)],
                                axis=1) / cnt[target, None]
                self.pos[target] = mean + self.rng.normal(0.0, jitter, (len(target), 3))
                placed[target] = True
                continue
            # nothing waiting touches a placed node: seed each untouched piece at its local degree maxima
            cand = np.flatnonzero(waiting)
            score = degree.astype(np.float64) - np.arange(cap) * 1e-9  # ties: the lowest slot wins
            among = waiting[a] & waiting[b]
            best = np.full(cap, -np.inf)
            np.maximum.at(best, a[among], score[b[among]])
            seeds = cand[score[cand] > best[cand]]
            if not len(seeds):  # cannot happen (the global maximum is a local one); be safe anyway
                seeds = cand[:1]
            self.pos[seeds] = self._on_sphere(len(seeds), placed)
            placed[seeds] = True
        self.vel[new] = 0
        self.heat[new] = self.T_NEW
        # warm the already-placed neighbours a little so they make room, nothing else
        old_nb = b[~is_new[b]]
        if len(old_nb):
            self.heat[old_nb] = np.maximum(self.heat[old_nb], self.T_NEIGHBOUR)

    def _on_sphere(self, n: int, placed: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        """``n`` points at random on a sphere around what is placed (radius: the layout's, or its ideal size)."""
        ideal = self.k * np.cbrt(max(self.count, 1) * 0.5 / self.gravity) if self.gravity > 0 else self.k
        if placed.any():
            p = self.pos[placed]
            centre = p.mean(axis=0)
            radius = max(float(np.sqrt(((p - centre) ** 2).sum(axis=1)).max()), float(ideal))
        else:
            centre, radius = np.zeros(3), float(ideal)
        v = self.rng.normal(size=(n, 3))
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return centre + radius * v

    # -- one step ----------------------------------------------------------------------------------------------
    def step(self, dt: float = 1.0) -> bool:
        """One incremental step; returns False (and does nothing) when every node is cold."""
        topo = self._topology()
        act = topo.act
        heat = self.heat[act]
        hot = heat > self.T_COLD
        if not hot.any():
            return False
        p = self.pos[act]
        v = self.vel[act] * self.damping + self.forces(p, topo) * dt
        speed = np.sqrt(np.einsum("ij,ij->i", v, v))
        cap = np.where(hot, heat * self.k, 0.0)
        v *= (cap / np.maximum(np.maximum(speed, cap), 1e-12))[:, None]  # (the floor: a still, cold node is 0/0)
        self.vel[act] = v
        self.pos[act] = p + v
        self.heat[act] = np.where(hot, heat * self.cooling, 0.0)
        return True

    def forces(self, p: npt.NDArray[np.float64], topo: _Topology | None = None) -> npt.NDArray[np.float64]:
        """The total force on each active node (rows in slot order), at positions ``p`` (float64 (n, 3))."""
        topo = topo or self._topology()
        n = len(p)
        f = self._repulsion(p)
        if len(topo.s):  # springs
            d = np.take(p, topo.t, axis=0) - np.take(p, topo.s, axis=0)
            dist = np.sqrt(np.einsum("ij,ij->i", d, d))
            pull = ((topo.strength * dist / self.k)[:, None] * d).reshape(-1)  # |F| = s dist² / k, along d
            f += (np.bincount(topo.s_flat, pull, 3 * n) - np.bincount(topo.t_flat, pull, 3 * n)).reshape(n, 3)
        if self.grouping > 0 and topo.groups:
            f[topo.g_rows] += self._group_forces(np.take(p, topo.g_rows, axis=0), topo)
        f -= self.gravity * p  # gravity
        return f

    #: above this many groups, groups only pull together (the pairwise push between groups is skipped)
    MAX_PUSHED_GROUPS = 512

    def _group_forces(self, pg: npt.NDArray[np.float64], topo: _Topology) -> npt.NDArray[np.float64]:
        """Per grouped node: a pull toward its group's centroid, and a push away from every other group whose
        ball (radius from the group's size) overlaps its own. Without the push, groups whose members are mixed
        all share one centroid and a pull alone only shrinks the whole ball."""
        gn = topo.groups
        cnt = np.bincount(topo.g_inv, minlength=gn).astype(np.float64)
        cen = np.bincount(topo.g_flat, pg.reshape(-1), 3 * gn).reshape(gn, 3) / cnt[:, None]
        out = self.grouping * (np.take(cen, topo.g_inv, axis=0) - pg)
        if 1 < gn <= self.MAX_PUSHED_GROUPS:
            radius = self.k * np.cbrt(cnt / max(self.gravity, 0.05))
            diff = cen[:, None, :] - cen[None, :, :]
            dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
            tied = dist < 1e-6 * self.k  # same centroid: split along a fixed direction per group
            if tied.any():
                dirs = np.random.default_rng(gn).normal(size=(gn, 3))
                diff = np.where(tied[:, :, None], dirs[:, None, :] - dirs[None, :, :], diff)
                dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
            overlap = np.clip(1.0 - dist / (radius[:, None] + radius[None, :]), 0.0, None)
            np.fill_diagonal(overlap, 0.0)
            share = cnt[None, :] / (cnt[:, None] + cnt[None, :])  # a small group gives way to a big one
            push = ((overlap * share / np.maximum(dist, 1e-12))[:, :, None] * diff).sum(axis=1)
            out += self.grouping * self.GROUP_PUSH * np.take(push, topo.g_inv, axis=0)
        return out

    #: how hard overlapping groups push each other apart (per member, at full overlap, times ``grouping``)
    GROUP_PUSH = 8.0

    def _topology(self) -> _Topology:
        """Rows of the active slots, edge endpoints as rows, spring strengths, group membership: recomputed only
        when nodes, edges, groups or the weight pull changed."""
        key = (self._version, self.weight_pull)
        if self._topo is not None and self._topo_key == key:
            return self._topo
        act = np.flatnonzero(self.active)
        n = len(act)
        row = np.full(self.capacity, -1, np.int64)
        row[act] = np.arange(n)
        s, t = row[self.edges[:, 0]], row[self.edges[:, 1]]
        ok = (s >= 0) & (t >= 0) & (s != t)
        s, t = s[ok], t[ok]
        lw = np.log1p(np.maximum(self.weights[ok].astype(np.float64), 0.0))
        mean = float(lw.mean()) if len(lw) else 0.0
        rel = lw / mean if mean > 0 else np.ones_like(lw)
        strength = (1.0 - self.weight_pull) + self.weight_pull * rel
        g = self.group[act]
        g_rows = np.flatnonzero(g >= 0)
        _, g_inv = np.unique(g[g_rows], return_inverse=True)
        groups = int(g_inv.max()) + 1 if len(g_inv) else 0
        self._topo = _Topology(act, s, t, _flat3(s), _flat3(t), strength, g_rows, g_inv, _flat3(g_inv), groups)
        self._topo_key = key
        return self._topo

    # -- repulsion -------------------------------------------------------------------------------------------
    def _grid_size(self, n: int) -> int:
        if self.grid is not None:
            return int(self.grid)
        # error against exact all-pairs in a uniform ball (bench/viz_layout.py): ~18 % at 16 cells, ~12 % at 20
        return int(np.clip(np.ceil(np.cbrt(n) * 0.9), 16, 24))

    def _window_pairs(self, n: int) -> tuple[IntArray, IntArray, IntArray, IntArray]:
        """Row pairs (i, i + off) for off = 1..near_window among n rows, with their flat 3-vector indices
        (cached: n changes rarely)."""
        if self._pairs_for != (n, self.near_window):
            w = min(self.near_window, n - 1)
            a = np.concatenate([np.arange(n - off) for off in range(1, w + 1)])
            b = np.concatenate([np.arange(off, n) for off in range(1, w + 1)])
            self._pairs = (a, b, _flat3(a), _flat3(b))
            self._pairs_for = (n, self.near_window)
        return self._pairs

    def _kernel(self, g: int) -> npt.NDArray[np.complex128]:
        """FFT of the softened potential ``1 / sqrt(m² + 1)`` (m in cells) on a zero-padded ``2g`` grid."""
        if g not in self._kernels:
            m = np.arange(2 * g)
            m = np.where(m < g, m, m - 2 * g).astype(np.float64)
            r2 = m[:, None, None] ** 2 + m[None, :, None] ** 2 + m[None, None, :] ** 2
            self._kernels[g] = np.fft.rfftn(1.0 / np.sqrt(r2 + 1.0))
        return self._kernels[g]

    def _repulsion(self, p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        n = len(p)
        if n < 2:
            return np.zeros((n, 3))
        k3 = self.k ** 3
        if n <= 64:  # small: exact, all pairs
            d = p[:, None, :] - p[None, :, :]
            r2 = np.maximum((d * d).sum(axis=2), (0.05 * self.k) ** 2)
            np.fill_diagonal(r2, np.inf)
            out: npt.NDArray[np.float64] = k3 * (d / (r2 * np.sqrt(r2))[:, :, None]).sum(axis=1)
            return out
        g = self._grid_size(n)
        lo, hi = p.min(axis=0), p.max(axis=0)
        h = max(float((hi - lo).max()) / (g - 3), 1e-6 * self.k)
        lo = (lo + hi) / 2 - h * g / 2  # centred: every node falls in cells 1..g-2
        u = (p - lo) / h - 0.5  # grid points at cell centres
        i0 = np.floor(u).astype(np.int64)
        fr = u - i0
        base = (i0[:, 0] * g + i0[:, 1]) * g + i0[:, 2]
        # cloud-in-cell deposit onto the g³ grid (the FFT pads it to 2g per axis with zeros)
        fl = np.empty((8, n), np.int64)
        w = np.empty((8, n))
        j = 0
        for dx in (0, 1):
            wx = fr[:, 0] if dx else 1 - fr[:, 0]
            for dy in (0, 1):
                wxy = wx * (fr[:, 1] if dy else 1 - fr[:, 1])
                for dz in (0, 1):
                    fl[j] = base + (dx * g + dy) * g + dz
                    w[j] = wxy * (fr[:, 2] if dz else 1 - fr[:, 2])
                    j += 1
        rho = np.bincount(fl.reshape(-1), weights=w.reshape(-1), minlength=g ** 3).reshape(g, g, g)
        shape, axes = (2 * g,) * 3, (0, 1, 2)
        phi = np.fft.irfftn(np.fft.rfftn(rho, s=shape, axes=axes) * self._kernel(g), s=shape, axes=axes)[:g, :g, :g]
        # F = -grad(k³ / r) in physical units: the potential scales as 1/h, its gradient another 1/h
        scale = -k3 / (h * h)
        f = np.empty((n, 3))
        for c, grad in enumerate(np.gradient(phi)):
            f[:, c] = scale * np.einsum("ij,ij->j", w, np.take(grad.reshape(-1), fl))
        # near pairs: what the softening took away (exact 1/r² minus the mesh's softened one), each node against
        # the next few in cell order (pairs further than ~1.5 cells apart need nothing: the mesh is close enough)
        if self.near_window > 0:
            order = np.argsort(base, kind="stable")
            a, b, a_flat, b_flat = self._window_pairs(n)
            ps = np.take(p, order, axis=0)
            d = np.take(ps, a, axis=0) - np.take(ps, b, axis=0)  # np.take: 4x faster than p[a] here
            r2 = np.maximum(np.einsum("ij,ij->i", d, d), (0.05 * self.k) ** 2)
            h2 = h * h
            soft = r2 + h2
            mag = k3 * (1.0 / (r2 * np.sqrt(r2)) - 1.0 / (soft * np.sqrt(soft)))
            mag[r2 > 2.25 * h2] = 0.0
            push = (d * mag[:, None]).reshape(-1)
            fs = (np.bincount(a_flat, push, 3 * n) - np.bincount(b_flat, push, 3 * n)).reshape(n, 3)
            f[order] += fs
        return f


def _flat3(rows: IntArray) -> IntArray:
    """Indices of the x, y, z components of ``rows`` in a flattened (n, 3) array (for bincount sums)."""
    return (rows[:, None] * 3 + np.arange(3)).reshape(-1)


class _Topology(NamedTuple):
    act: IntArray  # active slots, in order: row i of the step's arrays is slot act[i]
    s: IntArray  # edge endpoints as rows (edges touching a free slot and self-loops left out)
    t: IntArray
    s_flat: IntArray
    t_flat: IntArray
    strength: npt.NDArray[np.float64]  # spring strength per edge
    g_rows: IntArray  # rows of nodes in a group
    g_inv: IntArray  # their group, numbered 0..groups-1
    g_flat: IntArray
    groups: int
