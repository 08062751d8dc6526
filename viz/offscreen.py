"""Headless rendering for tests, benchmarks and screenshots (notes/panda3d.md, "Install and headless rendering").

- CPU (default): Panda's bundled rasteriser, ``p3tinydisplay``, with ``TinyOffscreenGraphicsPipe`` picked by name
  (the default pipe would try ``$DISPLAY`` first and log an error). Needs only ``libX11.so.6``. Lines are 1 px.
- GPU (``gpu=True``): ``p3headlessgl`` (EGL, no X server); ``EGL_PLATFORM=surfaceless`` is set if unset. On a
  machine without a GPU this is Mesa llvmpipe.

Only one ShowBase can exist per process: open it once (tests: a session-scoped fixture) and reuse it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from panda3d.core import (  # type: ignore[import-untyped]
    GraphicsPipeSelection,
    NodePath,
    PNMImage,
    Point3,
    loadPrcFileData,
)
from wiredraw.viz import palette


class OffscreenError(RuntimeError):
    pass


def configure(width: int, height: int, *, gpu: bool = False) -> None:
    """Panda settings for a headless ShowBase; call before ShowBase is created."""
    if gpu:
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    display = "p3headlessgl" if gpu else "p3tinydisplay"
    loadPrcFileData(
        "wiredraw-offscreen",
        f"""
        load-display {display}
        window-type none
        win-size {width} {height}
        audio-library-name null
        sync-video false
        framebuffer-multisample 0
        notify-level-device fatal
        """,
    )


def open_offscreen(width: int = 800, height: int = 600, *, gpu: bool = False) -> Any:
    """A ShowBase drawing into a `width` x `height` offscreen buffer (``base.win``), dark background."""
    configure(width, height, gpu=gpu)
    from direct.showbase.ShowBase import ShowBase  # type: ignore[import-untyped]

    base = ShowBase(windowType="none")
    selection = GraphicsPipeSelection.getGlobalPtr()
    selection.loadAuxModules()
    if gpu:
        pipe = selection.makeModulePipe("p3headlessgl")
    else:
        pipe = selection.makePipe("TinyOffscreenGraphicsPipe", "p3tinydisplay")
    if pipe is None or not pipe.isValid():
        base.destroy()
        raise OffscreenError(
            "no offscreen graphics pipe: "
            + ("p3headlessgl needs libegl1 libgl1 libgl1-mesa-dri" if gpu else "p3tinydisplay needs libX11.so.6")
        )
    base.pipe = pipe
    if not base.openDefaultWindow(type="offscreen", size=(width, height)):
        base.destroy()
        raise OffscreenError(f"could not open a {width}x{height} offscreen buffer on {pipe.getType().getName()}")
    base.setBackgroundColor(*palette.BACKGROUND)
    base.disableMouse()
    return base


def render_frames(base: Any, n: int = 2) -> None:
    """Draw `n` frames (a change reaches the buffer in the next one; two is safe for double buffering)."""
    for _ in range(n):
        base.graphicsEngine.renderFrame()


def screenshot_rgba(base: Any) -> np.ndarray:
    """The last frame as uint8 (H, W, 4) RGBA, top row first."""
    tex = base.win.getScreenshot()
    if tex is None:
        raise OffscreenError("no screenshot: render a frame first")
    h, w = tex.getYSize(), tex.getXSize()
    data = np.frombuffer(bytes(tex.getRamImageAs("RGBA")), np.uint8).reshape(h, w, 4)
    return data[::-1].copy()  # Panda's images are bottom row first


def save_screenshot(base: Any, path: str | Path) -> Path:
    """Write the last frame to a PNG file."""
    path = Path(path)
    img = PNMImage()
    if not base.win.getScreenshot(img) or not img.write(str(path)):
        raise OffscreenError(f"could not write a screenshot to {path}")
    return path


def frame_camera(
    camera: NodePath,
    lens: Any,
    bounds: tuple[np.ndarray, np.ndarray] | None,
    *,
    relative_to: NodePath,
    direction: tuple[float, float, float] = (0.35, 1.0, -0.45),
    margin: float = 1.05,
    fit: str = "ellipsoid",
) -> None:
    """Put `camera` where it sees the box `bounds` (lo, hi corners in `relative_to`'s coordinates), looking at its
    centre along `direction` (Panda: +y forward, +z up). ``fit="box"`` keeps all of the box in view;
    ``"ellipsoid"`` (default) the ellipsoid inscribed in it, which frames a roundish cloud of nodes much tighter
    (its corners are mostly empty). No bounds (an empty scene): look at the origin from 10 units away."""
    d = np.asarray(direction, np.float64)
    d /= np.linalg.norm(d)
    if bounds is None:
        centre, distance, depth = np.zeros(3), 10.0, 1.0
    else:
        lo, hi = (np.asarray(b, np.float64) for b in bounds)
        centre = (lo + hi) / 2
        # the smallest distance that keeps all 8 corners of the box inside the view frustum
        right = np.cross(d, (0.0, 0.0, 1.0))
        right = right / np.linalg.norm(right) if np.linalg.norm(right) > 1e-9 else np.array([1.0, 0.0, 0.0])
        up = np.cross(right, d)
        if fit == "box":
            rel = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            rel -= centre
        else:
            rel = _fibonacci_sphere(256) * (hi - lo) / 2
        cx, cy, cz = rel @ right, rel @ d, rel @ up
        tan_x, tan_y = (math.tan(math.radians(f) / 2) for f in lens.getFov())
        distance = float(max((np.abs(cx) / tan_x - cy).max(), (np.abs(cz) / tan_y - cy).max(), 1e-3)) * margin
        depth = max(float(np.abs(cy).max()), 1e-3)
    eye = centre - d * distance
    camera.setPos(relative_to, Point3(*map(float, eye)))
    camera.lookAt(relative_to, Point3(*map(float, centre)), (0, 0, 1))
    lens.setNearFar(max(distance - 2 * depth, distance * 0.01, 0.01), distance + 2 * depth + 1)


def _fibonacci_sphere(n: int) -> np.ndarray:
    """`n` points spread evenly over the unit sphere."""
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5**0.5) * k
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
