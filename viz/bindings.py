"""Keys of the viewer: actions mapped to Panda3D key names in configuration, never in handlers (STYLE.md).

Defaults below; a user overrides any of them in ``~/.config/wiredraw/keys.toml``::

    [keys]
    frame_all = "home"
    toggle_play = "p"
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

DEFAULT_KEYS: dict[str, str] = {
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


class KeyConfigError(ValueError):
    pass


def keys_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "wiredraw" / "keys.toml"


def load_keys(path: Path | None = None) -> dict[str, str]:
    """Action -> key name: the defaults, with the file's ``[keys]`` table over them. Unknown actions, a key given
    to two actions, or a non-string key are errors that name the file and the action."""
    path = path or keys_path()
    keys = dict(DEFAULT_KEYS)
    if not path.exists():
        return keys
    try:
        table = tomllib.loads(path.read_text()).get("keys", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise KeyConfigError(f"{path}: {exc}") from exc
    for action, key in table.items():
        if action not in DEFAULT_KEYS:
            raise KeyConfigError(f"{path}: unknown action {action!r} (known: {', '.join(sorted(DEFAULT_KEYS))})")
        if not isinstance(key, str) or not key:
            raise KeyConfigError(f"{path}: {action} must be a key name such as \"f\" or \"arrow_left\"")
        keys[action] = key
    seen: dict[str, str] = {}
    for action, key in keys.items():
        if key in seen:
            raise KeyConfigError(f"{path}: key {key!r} is given to both {seen[key]} and {action}")
        seen[key] = action
    return keys
