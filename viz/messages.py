"""The pipe protocol between the viewer's render process (Panda3D) and its backend process (viz/backend.py).

Messages are plain dicts with a ``kind``, sent whole over a ``multiprocessing`` Connection (pickled); arrays are
numpy arrays. Node *slots* are the backend's stable integer indices (viz/model.py): slot ``i`` of every array in
``scene`` and ``positions`` is the same node until a later ``scene`` says otherwise.

Backend → render
----------------
``{"kind": "welcome", "server": str, "modules": [{"id", "slug", "version", "doc", "node_kinds", "edge_kinds"}...],
"module": slug}``
    Logged in; ``module`` is the one subscribed (the login's, or the only one offered). ``module`` None: the
    server offers several and the login named none; nothing is subscribed (the connection is closed): log in
    again naming one of ``modules``.
``{"kind": "status", "text": str, "error": bool}``
    Something to tell the user in words: "connecting to 127.0.0.1:4431", "cannot connect to the viz port ...",
    "viewer token refused: ...", "connection lost: ...; reconnecting". ``error`` marks failures.
``{"kind": "scene", "version": int, "ids": [node id | None per slot], "sizes": float32 (N,), "categories": [str |
None], "labels": [str | None], "groups": [str | None], "edge_index": int32 (M, 2) slot pairs (src, dst),
"edge_ids": [str], "weights": float32 (M,), "edge_categories": [str], "t": float | None, "mode": str | None,
"all_categories": [str], "all_groups": [str]}``
    The graph's structure and attributes, whole, when they changed (at most ~20 per second). ``version`` grows;
    free slots have id None (draw nothing there). ``all_categories``/``all_groups``: what the filter toggles offer.
``{"kind": "positions", "version": int, "positions": float32 (N, 3)}``
    Node positions by slot after layout steps (at most ~60 per second; only the newest is kept while the render
    side is busy). ``version`` is the scene version they belong to; N may be shorter than the scene's slot count
    for a moment (the render draws the rest where it last had them, or at the origin).
``{"kind": "pulses", "items": [{"target": id, "on": "node" | "edge", "meaning": "ok" | "error" | "new",
"t": float | None}...]}``
    Transient highlights from diffs, as they arrive.
``{"kind": "details" | "histogram" | "range", "result": ..., "error": str | None, "request": {...}}``
    Answers to the render's requests of the same kind (``result`` as in spec/viewer.md "Requests"; None with
    ``error`` set when the server said no or no server is connected). ``request`` echoes the command.

Render → backend
----------------
``{"kind": "login", "server": "host:port", "token": str, "module": slug | None}``
    (Re)connect and subscribe; the current view (below) is used.
``{"kind": "view", "mode": "live" | "at" | "play", "t": float | None, "speed": float | None,
"filter": str | None}``
    What to show; the render owns the present time. Switching to ``at`` a time seen recently is answered from
    the backend's buffer at once (then refreshed from the server).
``{"kind": "details", "id": str}``, ``{"kind": "histogram", "from": float | None, "to": float | None,
"bins": int}``, ``{"kind": "range"}``
    Requests; each is answered by a message of the same kind.
``{"kind": "layout", "weight_pull": float | None, "grouping": float | None}``
    Layout controls in [0, 1] (None: unchanged); the layout warms up and settles again.
``{"kind": "quit"}``
    Stop; the backend also stops by itself when the render side's end of the pipe closes.

This module must not import panda3d (both processes import it).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BACKEND_KINDS", "RENDER_KINDS", "details", "histogram", "layout", "login", "quit_", "range_", "status",
    "view",
]

BACKEND_KINDS = frozenset({"welcome", "status", "scene", "positions", "pulses", "details", "histogram", "range"})
RENDER_KINDS = frozenset({"login", "view", "details", "histogram", "range", "layout", "quit"})
VIEW_MODES = ("live", "at", "play")


# -- render → backend -----------------------------------------------------------------------------------------
def login(server: str, token: str, module: str | None = None) -> dict[str, Any]:
    return {"kind": "login", "server": server, "token": token, "module": module}


def view(mode: str = "live", t: float | None = None, speed: float | None = None,
         filter: str | None = None) -> dict[str, Any]:  # noqa: A002 (the protocol's name)
    if mode not in VIEW_MODES:
        raise ValueError(f"view mode must be one of {', '.join(VIEW_MODES)}, not {mode!r}")
    if mode in ("at", "play") and t is None:
        raise ValueError(f"view mode {mode!r} needs a time t")
    return {"kind": "view", "mode": mode, "t": t, "speed": speed, "filter": filter}


def details(element_id: str) -> dict[str, Any]:
    return {"kind": "details", "id": element_id}


def histogram(t0: float | None = None, t1: float | None = None, bins: int = 200) -> dict[str, Any]:
    return {"kind": "histogram", "from": t0, "to": t1, "bins": bins}


def range_() -> dict[str, Any]:
    return {"kind": "range"}


def layout(weight_pull: float | None = None, grouping: float | None = None) -> dict[str, Any]:
    return {"kind": "layout", "weight_pull": weight_pull, "grouping": grouping}


def quit_() -> dict[str, Any]:
    return {"kind": "quit"}


# -- backend → render -----------------------------------------------------------------------------------------
def status(text: str, error: bool = False) -> dict[str, Any]:
    return {"kind": "status", "text": text, "error": error}
