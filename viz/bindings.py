"""The viewer's key bindings: actions mapped to Panda3D key names in configuration, never in handlers (STYLE.md).

Defaults below; a user overrides any of them in ``~/.config/wiredraw/keys.toml`` (the file's name and its
``[keys]`` table are what users already write; in the code they are *bindings*, "keys" being the modules' Redis
key schemas)::

    [keys]
    frame_all = "home"
    toggle_play = "p"
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

DEFAULT_BINDINGS: dict[str, str] = {
    "orbit_left": "arrow_left",
    "orbit_right": "arrow_right",
    "orbit_up": "arrow_up",
    "orbit_down": "arrow_down",
    "zoom_in": "=",
    "zoom_out": "-",
    "frame_all": "f",
    "toggle_play": "space",
    "live": "l",
    "close_details": "escape",
    "toggle_grouping": "g",
    "weight_less": "[",
    "weight_more": "]",
    "toggle_panels": "tab",
}
HELD = frozenset({"orbit_left", "orbit_right", "orbit_up", "orbit_down", "zoom_in", "zoom_out"})


class BindingError(ValueError):
    """A bindings file the viewer cannot use; the message names the file and the action."""


def bindings_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "wiredraw" / "keys.toml"


def load_bindings(path: Path | None = None) -> dict[str, str]:
    """Action -> key name: the defaults, with the file's ``[keys]`` table over them. Unknown actions, a key given
    to two actions, or a non-string key are errors that name the file and the action."""
    path = path or bindings_path()
    keys = dict(DEFAULT_BINDINGS)
    if not path.exists():
        return keys
    try:
        table = tomllib.loads(path.read_text()).get("keys", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BindingError(f"{path}: {exc}") from exc
    for action, key in table.items():
        if action not in DEFAULT_BINDINGS:
            raise BindingError(f"{path}: unknown action {action!r} (known: {', '.join(sorted(DEFAULT_BINDINGS))})")
        if not isinstance(key, str) or not key:
            raise BindingError(f"{path}: {action} must be a key name such as \"f\" or \"arrow_left\"")
        keys[action] = key
    seen: dict[str, str] = {}
    for action, key in keys.items():
        if key in seen:
            raise BindingError(f"{path}: key {key!r} is given to both {seen[key]} and {action}")
        seen[key] = action
    return keys
