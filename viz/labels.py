"""What the scene writes as text (viz/scene.py): the pool of node labels that follow their nodes, and the legend.

- :class:`LabelPool`: a fixed pool of billboarded TextNodes drawn on top; a label's text is only set when its node
  changes, its position follows the node.
- :class:`Legend`: the category -> color key, in 2D.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from panda3d.core import CardMaker, NodePath, Point3, TextNode, TransparencyAttrib  # type: ignore[import-untyped]
from wiredraw.viz import palette


class LabelPool:
    """``count`` labels under ``parent``, drawn over everything (no depth test); each shows one node or nothing."""

    def __init__(self, parent: NodePath, count: int, font: Any) -> None:
        self.root = parent.attachNewNode("labels")
        self.root.setBin("fixed", 50)
        self.root.setDepthTest(False)
        self.root.setDepthWrite(False)
        self.root.setLightOff()
        self.labels: list[_Label] = [_Label(self.root, font) for _ in range(count)]

    def targets(self) -> list[str]:
        return [lab.ident for lab in self.labels if lab.ident is not None]

    def assign(self, wanted: Sequence[str], text_of: Callable[[str], str], emphasis: set[str],
               selected: str | None) -> None:
        """Label the nodes ``wanted`` (in that order of preference) with ``text_of`` them; those in ``emphasis`` larger,
        the ``selected`` one in its color. A node labelled already keeps its label (no text regeneration)."""
        labels = self.labels
        keep = {lab.ident for lab in labels} & set(wanted)
        free = [lab for lab in labels if lab.ident not in keep]
        missing: list[str | None] = [i for i in wanted if i not in {lab.ident for lab in labels}]
        for lab, ident in zip(free, missing + [None] * len(free), strict=False):
            lab.assign(ident, text_of(ident) if ident is not None else "")
        for lab in labels:  # a kept label follows its node's new name (a host's DNS name arriving)
            ident = lab.ident
            if ident is not None and ident in keep and lab.text.getText() != text_of(ident):
                lab.text.setText(text_of(ident))
        for lab in labels:
            lab.set_emphasis(lab.ident in emphasis, lab.ident == selected)

    def place(self, index: Mapping[str, int], centres: np.ndarray, radii: np.ndarray, space: NodePath,
              scale: float, camera: NodePath | None, size: float) -> None:
        """Put each label above its node (``centres`` and ``radii`` by slot, in ``space``'s coordinates): ``scale``
        world units high, or with a ``camera`` ``size`` of the screen height."""
        per_depth = 0.0
        if camera is not None:
            # world height of `size` of the screen at depth 1: scale by depth for a constant size on screen
            fov_y = camera.node().getLens().getFov()[1]
            per_depth = size * 2 * math.tan(math.radians(fov_y) / 2)
        for lab in self.labels:
            if lab.ident is None:
                continue
            k = index[lab.ident]
            if k >= len(centres):
                continue
            c = centres[k]
            at_scale = scale
            if camera is not None:
                depth = camera.getRelativePoint(space, Point3(float(c[0]), float(c[1]), float(c[2]))).y
                at_scale = per_depth * max(depth, 1e-3)
            lab.place(float(c[0]), float(c[1]), float(c[2]), float(radii[k]), at_scale)


class _Label:
    """One pooled, billboarded text label (always drawn on top)."""

    def __init__(self, parent: NodePath, font: Any) -> None:
        self.ident: str | None = None
        self.text = TextNode("label")
        if font is not None:
            self.text.setFont(font)
        self.text.setAlign(TextNode.ACenter)
        self.text.setTextColor(*palette.TEXT)
        self.text.setShadow(0.06, 0.06)
        self.text.setShadowColor(0, 0, 0, 0.9)
        self.anchor = parent.attachNewNode("label-anchor")
        self.anchor.setBillboardPointEye()
        self.np = self.anchor.attachNewNode(self.text)
        self.anchor.setTransparency(TransparencyAttrib.MAlpha)
        self.anchor.hide()
        self._emphasis = 1.0

    def assign(self, ident: str | None, text: str) -> None:
        self.ident = ident
        if ident is None:
            self.anchor.hide()
            return
        self.text.setText(text)
        self.anchor.show()

    def set_emphasis(self, on: bool, selected: bool) -> None:
        self._emphasis = 1.35 if on else 1.0
        self.text.setTextColor(*(palette.SELECTED if selected else palette.TEXT))

    def place(self, x: float, y: float, z: float, radius: float, scale: float) -> None:
        self.anchor.setPos(x, y, z)
        self.np.setScale(scale * self._emphasis)
        self.np.setZ(radius * 1.15 + 0.1)



class Legend:
    """Category -> color key for the nodes and edges present, in 2D (put it under ``aspect2d``).

    ``Legend(base.aspect2d, pos=(-1.3, 0.9))``, then :meth:`set_categories` whenever the scene changes; the rows
    are only rebuilt when the set of categories does."""

    def __init__(
        self, parent: NodePath, *, pos: tuple[float, float] = (-1.3, 0.9), scale: float = 0.045, font: Any = None
    ) -> None:
        self.root = parent.attachNewNode("legend")
        self.root.setPos(pos[0], 0, pos[1])
        self.root.setScale(scale)
        self.font = font
        self.entries: tuple[tuple[tuple[str, palette.Color], ...], tuple[tuple[str, palette.Color], ...]] = ((), ())
        self._rows = self.root.attachNewNode("rows")

    def set_categories(self, node_categories: Iterable[str], edge_categories: Iterable[str] = ()) -> None:
        entries = (tuple(palette.legend_entries(node_categories)), tuple(palette.legend_entries(edge_categories)))
        if entries == self.entries:
            return
        self.entries = entries
        self._rows.removeNode()
        self._rows = self.root.attachNewNode("rows")
        y = 0.0
        width = 0.0
        for title, rows, swatch in (("nodes", entries[0], "dot"), ("edges", entries[1], "bar")):
            if not rows:
                continue
            self._text(title, 0.0, y, palette.TEXT_DIM)
            y -= 1.25
            for name, color in rows:
                card = CardMaker("swatch")
                if swatch == "dot":
                    card.setFrame(0.1, 0.8, -0.05, 0.65)
                else:
                    card.setFrame(0.0, 0.9, 0.2, 0.4)
                c = self._rows.attachNewNode(card.generate())
                c.setPos(0.2, 0, y)
                c.setColor(*color)
                width = max(width, 1.5 + 0.55 * len(name))
                self._text(name, 1.5, y, palette.TEXT)
                y -= 1.1
            y -= 0.4
        if y < 0:
            frame = CardMaker("legend-frame")
            frame.setFrame(-0.5, max(width, 4.0) + 0.5, y + 0.3, 1.2)
            bg = self._rows.attachNewNode(frame.generate())
            bg.setColor(0.0, 0.0, 0.0, 0.45)
            bg.setTransparency(TransparencyAttrib.MAlpha)
            bg.setBin("background", 0)
            bg.setDepthWrite(False)

    def _text(self, text: str, x: float, y: float, color: palette.Color) -> None:
        node = TextNode("legend-text")
        if self.font is not None:
            node.setFont(self.font)
        node.setText(text)
        node.setTextColor(*color)
        t = self._rows.attachNewNode(node)
        t.setPos(x, 0, y)

    def texts(self) -> list[str]:
        """The legend's text rows, top to bottom (titles included), for tests."""
        found = sorted(self._rows.findAllMatches("**/+TextNode"), key=lambda n: -n.getZ())
        return [n.node().getText() for n in found]

    def destroy(self) -> None:
        self.root.removeNode()

