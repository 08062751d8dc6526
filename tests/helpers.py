"""Small helpers shared by the tests (tests/ is on sys.path when pytest runs them)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wiredraw.testing import keyspace_events as record_keyspace_events


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited: reaped, or a zombie an orphan's new parent has not reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


def keyspace_events(client: Any, action: Callable[[], Any], pattern: str) -> list[tuple[str, str]]:
    """Every keyspace notification ``(key, event)`` on keys matching ``pattern`` while ``action`` runs, every
    class on: the kit's :func:`wiredraw.testing.keyspace_events`, for a test that holds a client (of the tests'
    unix-socket redis-server) rather than its URL."""
    kw = client.connection_pool.connection_kwargs
    with record_keyspace_events(f"unix://{kw['path']}", [pattern], "A") as events:
        action()
    return events
