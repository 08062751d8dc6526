"""The 3D graph scene, headless (p3tinydisplay offscreen, one session ShowBase from conftest): screenshots of known
graphs analysed pixel by pixel (node blobs per palette color, arrow direction), picking through the real camera,
pulses, labels, legend, the empty scene; and the pure-numpy ray cast."""

from __future__ import annotations

import colorsys
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from wiredraw.viz import offscreen, palette, picking
from wiredraw.viz.scene import GraphScene, Legend, snapshot_from_lists

W, H = 640, 480

# 5 nodes of 3 categories, spread in the x-z plane (the camera looks along +y), equal sizes so that an edge's
# line runs symmetrically between its two spheres and only the arrowhead breaks the symmetry.
IDS = ["a", "b", "c", "d", "e"]
CATS = ["local", "remote", "ssh", "local", "remote"]
POS = np.array([[-2, 0, 1], [2, 0, 1], [0, 0, 0], [-2, 0, -1.25], [2, 0, -1.25]], np.float32)  # layout units
EDGES = [(0, 1), (3, 4), (2, 0)]  # a -> b (dns), d -> e (http), c -> a (other)
EDGE_CATS = ["dns", "http", "other"]


@pytest.fixture
def base(panda_base: Any) -> Any:
    return panda_base


@pytest.fixture
def scene(base: Any) -> Iterator[GraphScene]:
    s = GraphScene(base.render, max_labels=0)
    try:
        yield s
    finally:
        s.destroy()


def known_graph(scene: GraphScene, base: Any, *, sizes: list[float] | None = None) -> None:
    snap = snapshot_from_lists(IDS, sizes or [1000.0] * 5, CATS, EDGES, [1e3, 1e3, 1e3], EDGE_CATS)
    snap["positions"] = POS
    scene.set_scene(snap)
    offscreen.frame_camera(
        base.camera, base.camLens, scene.bounds(), relative_to=base.render, direction=(0, 1, 0), fit="box"
    )


def shot(base: Any) -> np.ndarray:
    offscreen.render_frames(base, 2)
    img = offscreen.screenshot_rgba(base)
    assert img.shape == (H, W, 4)
    return img


def hue_mask(img: np.ndarray, color: tuple[float, ...], *, tol: float = 14.0, min_sat: float = 0.3) -> np.ndarray:
    """Pixels whose hue is within `tol` degrees of `color`'s (shading scales brightness, not hue)."""
    rgb = img[..., :3].astype(np.float64) / 255
    mx, mn = rgb.max(-1), rgb.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-9), 0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    d = np.maximum(mx - mn, 1e-9)
    hue = np.select([mx == r, mx == g], [((g - b) / d) % 6, (b - r) / d + 2], (r - g) / d + 4) * 60
    want = colorsys.rgb_to_hsv(*color[:3])[0] * 360
    diff = np.abs((hue - want + 180) % 360 - 180)
    return (diff <= tol) & (sat >= min_sat) & (mx > 0.15)


def blobs(mask: np.ndarray, min_px: int = 25) -> list[np.ndarray]:
    """4-connected components of `mask` with at least `min_px` pixels, each as an (n, 2) array of (row, col)."""
    seen = np.zeros_like(mask, bool)
    out = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        queue, pixels = deque([start]), []
        while queue:
            y, x = queue.popleft()
            pixels.append((y, x))
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(pixels) >= min_px:
            out.append(np.array(pixels))
    return out


def to_pixel(film: tuple[float, float]) -> np.ndarray:
    """Film coordinates (-1..1, y up) -> (row, col) of the screenshot."""
    return np.array([(1 - film[1]) / 2 * H, (film[0] + 1) / 2 * W])


def film_of(scene: GraphScene, base: Any, ident: str) -> tuple[float, float]:
    p = scene.node_screen_pos(ident, base.cam)
    assert p is not None
    return p


# --- palette ------------------------------------------------------------------------------------------------


def test_palette_is_stable_and_distinct() -> None:
    assert palette.category_color("local") == palette.KNOWN["local"]
    unknown = palette.category_color("kerberos")
    assert unknown == palette.category_color("kerberos")  # crc32, not the salted hash()
    assert unknown != palette.category_color("kerberos2")
    assert all(0 <= c <= 1 for c in unknown)
    assert palette.category_colors(["dns", "dns", "x"]).shape == (3, 4)
    assert [c for c, _ in palette.legend_entries(["zz", "remote", "", "local", "zz", "aa"])] == [
        "local",
        "remote",
        "aa",
        "zz",
    ]
    assert palette.pulse_color("ok") != palette.pulse_color("error")
    assert palette.pulse_color("whatever") == palette.PULSE["new"]


# --- screenshots --------------------------------------------------------------------------------------------


def test_screenshot_has_one_blob_per_node_in_its_category_color(scene: GraphScene, base: Any) -> None:
    known_graph(scene, base)
    img = shot(base)
    bg = (np.array(palette.BACKGROUND[:3]) * 255).round()
    assert np.abs(img[0, 0, :3].astype(float) - bg).max() <= 2  # the dark background
    for category in ("local", "remote", "ssh"):
        found = blobs(hue_mask(img, palette.category_color(category)))
        expected = [i for i, c in zip(IDS, CATS, strict=True) if c == category]
        assert len(found) == len(expected), (category, [len(b) for b in found])
        # each blob sits where its node projects
        centroids = [b.mean(axis=0) for b in found]
        for ident in expected:
            p = to_pixel(film_of(scene, base, ident))
            assert min(np.linalg.norm(c - p) for c in centroids) < 4, (ident, p, centroids)


def test_arrows_point_at_the_dst(scene: GraphScene, base: Any) -> None:
    known_graph(scene, base)
    img = shot(base)
    for (src, dst), category in zip(EDGES, EDGE_CATS, strict=True):
        if category == "other":  # grey: no hue to tell it from text or highlights
            continue
        mask = hue_mask(img, palette.category_color(category), tol=20, min_sat=0.2)
        pixels = np.argwhere(mask)
        assert len(pixels) > 20, category
        a = to_pixel(film_of(scene, base, IDS[src]))
        b = to_pixel(film_of(scene, base, IDS[dst]))
        # the line (and ribbon) has the same width all along; the arrowhead widens the dst end only
        along = (pixels - a) @ (b - a) / np.dot(b - a, b - a)
        assert 0.02 < along.min() and along.max() < 0.98, category  # drawn between the spheres, not through
        side = (pixels - a) @ np.array([-(b - a)[1], (b - a)[0]]) / np.linalg.norm(b - a)
        lo, hi = along.min(), along.max()
        src_end, dst_end = along < lo + 0.2 * (hi - lo), along > hi - 0.2 * (hi - lo)
        src_width = np.ptp(side[src_end]) + 1
        dst_width = np.ptp(side[dst_end]) + 1
        assert dst_width >= 2 * src_width, (category, src_width, dst_width)
        perp = np.abs(side)
        assert along[perp.argmax()] > 0.6, category


def test_positions_move_the_blobs(scene: GraphScene, base: Any) -> None:
    known_graph(scene, base)
    moved = POS.copy()
    moved[2] = (0, 0, 0.6)  # c (ssh) up
    before = film_of(scene, base, "c")
    scene.set_positions(moved)
    after = film_of(scene, base, "c")
    assert after[1] > before[1]
    (blob,) = blobs(hue_mask(shot(base), palette.category_color("ssh")))
    assert np.linalg.norm(blob.mean(axis=0) - to_pixel(after)) < 4
    scene.set_positions(moved[:2] + 1)  # fewer rows (new slots not laid out yet): the rest stay
    assert np.allclose(scene.positions[:2], moved[:2] + 1) and np.allclose(scene.positions[2:], moved[2:])
    with pytest.raises(ValueError):
        scene.set_positions(np.zeros(3, np.float32))


def test_empty_scene_renders(scene: GraphScene, base: Any) -> None:
    scene.set_scene(snapshot_from_lists([], [], [], [], [], []))
    assert scene.bounds() is None
    offscreen.frame_camera(base.camera, base.camLens, scene.bounds(), relative_to=base.render)
    scene.set_positions(np.zeros((0, 3), np.float32))
    scene.update(0.1)
    scene.pulse([{"target": "nope", "on": "node", "meaning": "ok"}])
    assert scene.pick((0.0, 0.0), base.cam) is None
    img = shot(base)
    bg = (np.array(palette.BACKGROUND[:3]) * 255).round()
    assert np.abs(img[..., :3].astype(float) - bg).max() <= 2


def test_free_slots_and_bad_positions_are_not_drawn(scene: GraphScene, base: Any) -> None:
    snap = snapshot_from_lists(
        ["a", None, "c"], [10, 10, 10], ["local", "", "local"], [(0, 1), (0, 2)], [1, 1], ["dns", "dns"]
    )
    pos = np.array([[-1.5, 0, 0], [0, 0, 0], [1.5, 0, 0]], np.float32)
    snap["positions"] = pos
    snap["categories"][1] = None  # the backend sends None for a free slot's fields
    snap["labels"] = ["A", None, None]
    scene.set_scene(snap)
    assert scene.labels == ["A", "", "c"]
    offscreen.frame_camera(
        base.camera, base.camLens, scene.bounds(), relative_to=base.render, direction=(0, 1, 0), fit="box"
    )
    assert len(blobs(hue_mask(shot(base), palette.category_color("local")))) == 2
    pos[2] = np.nan
    scene.set_positions(pos)
    assert len(blobs(hue_mask(shot(base), palette.category_color("local")))) == 1


# --- picking ------------------------------------------------------------------------------------------------


def test_click_on_a_node_selects_it_and_on_empty_space_nothing(scene: GraphScene, base: Any) -> None:
    known_graph(scene, base)
    for ident in IDS:
        hit = scene.pick(film_of(scene, base, ident), base.cam)
        assert hit == ("node", ident)
        scene.select(hit[1])
        assert scene.selected == ident
    assert scene.pick((0.97, -0.97), base.cam) is None
    scene.select(None)
    assert scene.selected is None


def test_click_on_an_edge_picks_it(scene: GraphScene, base: Any) -> None:
    known_graph(scene, base)
    # a point on edge a -> b between the spheres, projected through the real lens
    from panda3d.core import Point2, Point3  # type: ignore[import-untyped]

    mid = base.cam.getRelativePoint(base.render, Point3(-0.75, 0.0, 1.0))
    film = Point2()
    assert base.camLens.project(mid, film)
    assert scene.pick((film.x, film.y), base.cam) == ("edge", "e0")
    assert scene.pick((film.x, film.y + 0.2), base.cam) is None


def test_pick_ray_cast() -> None:
    pos = np.array([[0, 10, 0], [0, 5, 0], [0, -5, 0], [3, 10, 0]], np.float64)  # (unit-free)
    radii = np.array([1.0, 1.0, 1.0, 0.0])
    edges = np.array([[0, 3]])
    o, d = np.zeros(3), np.array([0, 1.0, 0])
    assert picking.pick(o, d, pos, radii, edges, 0.1) == ("node", 1)  # nearest along the ray, not behind
    assert picking.pick(o, -d, pos, radii, edges, 0.1) == ("node", 2)
    assert picking.pick(np.array([0, 5.5, 0]), d, pos, radii, edges, 0.1) == ("node", 1)  # inside a sphere
    # free slot (radius 0) at (3, 10, 0): not hit; the edge 0 -> 3 passes at x in 0..3, y = 10
    assert picking.pick(np.array([2, 0, 0]), d, pos, radii, edges, 0.1) == ("edge", 0)
    assert picking.pick(np.array([2, 0, 0.5]), d, pos, radii, edges, 0.1) is None
    assert picking.pick(np.array([2, 0, 0.5]), d, pos, radii, edges, 0.1, edge_slope=0.06) == ("edge", 0)
    assert picking.pick(np.array([5, 0, 0]), d, pos, radii, edges, 0.1) is None  # beyond the segment's end
    assert picking.pick(o, d, np.zeros((0, 3)), np.zeros(0), np.zeros((0, 2)), 1.0) is None


def test_ray_from_mouse_goes_through_the_projected_point(scene: GraphScene, base: Any) -> None:
    known_graph(scene, base)
    o, d = picking.ray_from_mouse(film_of(scene, base, "b"), base.cam, base.camLens, base.render)
    to_b = POS[1] - o
    assert np.linalg.norm(np.cross(to_b, d)) / np.linalg.norm(to_b) < 1e-3


# --- pulses, labels, legend ---------------------------------------------------------------------------------


def test_pulse_flashes_then_fades_back(scene: GraphScene, base: Any) -> None:
    known_graph(scene, base)
    row, col = to_pixel(film_of(scene, base, "a")).round().astype(int)
    before = shot(base)[row, col, :3].astype(int)
    scene.pulse([{"target": "a", "on": "node", "meaning": "error"}, {"target": "e1", "on": "edge", "meaning": "ok"}])
    assert scene.active_pulses == 2
    flash = shot(base)[row, col, :3].astype(int)
    assert flash[0] > before[0] + 60 and flash[2] < before[2] - 60  # blue -> red
    scene.update(0.5)
    half = shot(base)[row, col, :3].astype(int)
    assert before[0] < half[0] < flash[0]
    scene.update(0.6)
    assert scene.active_pulses == 0
    assert np.abs(shot(base)[row, col, :3].astype(int) - before).max() <= 1


def test_labels_top_nodes_plus_hovered_and_selected(base: Any) -> None:
    scene = GraphScene(base.render, max_labels=2, camera=base.cam)
    try:
        snap = snapshot_from_lists(
            IDS, [5, 1e9, 3, 1e6, 1], CATS, EDGES, [1, 1, 1], EDGE_CATS, labels=[i.upper() for i in IDS]
        )
        snap["positions"] = POS
        scene.set_scene(snap)
        assert sorted(scene.label_targets()) == ["b", "d"]
        texts_before = {lab.ident: lab.text for lab in scene._labels if lab.ident}
        scene.hover("e")
        scene.select("c")
        assert sorted(scene.label_targets()) == ["b", "c", "d", "e"]
        assert {lab.ident: lab.text for lab in scene._labels if lab.ident in ("b", "d")} == texts_before  # reused
        assert {lab.ident: lab.text.getText() for lab in scene._labels if lab.ident} == {
            "b": "B",
            "c": "C",
            "d": "D",
            "e": "E",
        }
        scene.hover(None)
        scene.select("e1")  # an edge: colored, not labelled
        assert sorted(scene.label_targets()) == ["b", "d"]
        scene.update(0.1)
        shot(base)
    finally:
        scene.destroy()


def test_a_kept_label_takes_its_nodes_new_name(base: Any) -> None:
    scene = GraphScene(base.render, max_labels=2, camera=base.cam)
    try:
        snap = snapshot_from_lists(IDS, [5, 1e9, 3, 1e6, 1], CATS, EDGES, [1, 1, 1], EDGE_CATS, labels=list(IDS))
        snap["positions"] = POS
        scene.set_scene(snap)
        label_b = next(lab for lab in scene._labels if lab.ident == "b")
        assert label_b.text.getText() == "b"
        renamed = snapshot_from_lists(IDS, [5, 1e9, 3, 1e6, 1], CATS, EDGES, [1, 1, 1], EDGE_CATS,
                                      labels=["a", "www.example.com", "c", "d", "e"])  # b's DNS name came
        renamed["positions"] = POS
        scene.set_scene(renamed)
        assert label_b.ident == "b" and label_b.text.getText() == "www.example.com"  # the same label, new text
    finally:
        scene.destroy()


def test_legend_lists_categories_present(base: Any) -> None:
    legend = Legend(base.aspect2d)
    try:
        legend.set_categories(CATS, EDGE_CATS)
        assert legend.texts() == ["nodes", "local", "remote", "ssh", "edges", "http", "dns", "other"]
        rows = legend._rows
        legend.set_categories(reversed(CATS), EDGE_CATS)
        assert legend._rows is rows  # same set: not rebuilt
        legend.set_categories(["local"])
        assert legend.texts() == ["nodes", "local"]
        shot(base)
    finally:
        legend.destroy()


def test_scene_replacement_keeps_selection_and_pulses(scene: GraphScene, base: Any) -> None:
    known_graph(scene, base)
    scene.select("c")
    scene.pulse([{"target": "b", "on": "node", "meaning": "new"}])
    snap = snapshot_from_lists(["c", "b", "z"], [1, 2, 3], ["ssh", "remote", "local"], [(0, 1)], [5], ["dns"])
    scene.set_scene(snap)
    assert scene.selected == "c"
    assert scene.active_pulses == 1
    assert np.allclose(scene.positions[:2], POS[[2, 1]])  # kept by id
    scene.set_scene(snapshot_from_lists(["z"], [1], ["local"], [], [], []))
    assert scene.selected is None and scene.active_pulses == 0
