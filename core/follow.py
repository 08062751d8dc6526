"""A followed file: the complete lines appended to one growing file, polled without blocking and resumed exactly.

A probe source that reads a log as another program writes it (``tail -F`` without the waiting) keeps a
:class:`FollowedFile` and turns each line it hands out into a message::

    self.file = FollowedFile(path, from_end)
    def poll(self, max_messages):
        return self.file.poll(max_messages, self.message)   # message(line, offset) -> Message | None

What it does:

- **Whole lines only.** A line is handed out once its newline is there; a line still being written waits for a
  later poll. Blank lines are counted (``lines``) but not handed out.
- **Bounded per poll.** :meth:`FollowedFile.poll` stops once ``max_items`` lines have been turned into items
  (lines that give None, bad ones, do not count) or the file's end is reached; it never waits for more.
- **Resume by identity and offset.** :meth:`FollowedFile.state` is ``{"v": 1, "path", "inode", "offset"}``, the
  offset just after the last line handed out; a source restored from it reads on from there, so a restarted
  probe sends nothing twice. A token for another path, or of another version, is ignored (start afresh).
- **Rotation and truncation.** A file replaced under the same name (another inode) or truncated (shorter than
  the offset) is read again from its beginning and counted (``reopened``). A file not there (yet) gives nothing.
- **Where a first start begins.** From the file's beginning, or with ``from_end`` from its end (only what is
  appended from then on). A restored position wins over ``from_end``.

Only the standard library: a plugin's source and the scaffold's template both use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class FollowedFile:
    """One followed file (see the module docstring): ``path``, where a first start begins (``from_end``), the
    resume position (``inode``, ``offset``) and two counters (``lines`` read, ``reopened``)."""

    def __init__(self, path: Path | str, from_end: bool = False) -> None:
        self.path = Path(path)
        self.from_end = from_end
        self.inode: int | None = None
        self.offset = 0
        self.restored = False  # a restored position not yet checked against the file
        self.lines = 0
        self.reopened = 0

    def poll(self, max_items: int, item: Callable[[bytes, int], T | None]) -> list[T]:
        """Up to ``max_items`` items, one per complete, non-blank line read since the last poll.

        ``item(line, offset)`` gets the line (bytes, newline included) and the byte offset where it starts, and
        returns its item, or None for a line to skip (the caller counts why). The resume offset has already
        moved past the line when ``item`` is called.
        """
        try:
            st = os.stat(self.path)
        except OSError:
            return []  # not there (yet): keep polling
        if self.inode is None and not self.restored:
            self.offset = st.st_size if self.from_end else 0
        elif st.st_ino != self.inode or st.st_size < self.offset:
            self.offset = 0  # replaced or truncated: read it again from its beginning
            self.reopened += 1
        self.inode, self.restored = st.st_ino, False
        out: list[T] = []
        if st.st_size <= self.offset:
            return out
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            while len(out) < max_items:
                line = f.readline()
                if not line.endswith(b"\n"):
                    break  # the end, or a line still being written
                at = self.offset
                self.offset += len(line)
                self.lines += 1
                if not line.strip():
                    continue
                got = item(line, at)
                if got is not None:
                    out.append(got)
        return out

    def state(self) -> dict[str, Any]:
        """The resume token (JSON- and msgpack-able)."""
        return {"v": 1, "path": str(self.path), "inode": self.inode, "offset": self.offset}

    def restore(self, state: Any) -> None:
        """Go on from a token of :meth:`state`; one for another file, an older version or malformed is ignored."""
        if not isinstance(state, dict) or state.get("v") != 1 or state.get("path") != str(self.path):
            return  # another file, or an older token: start afresh
        inode, offset = state.get("inode"), state.get("offset")
        if isinstance(inode, int) and isinstance(offset, int) and offset >= 0:
            self.inode, self.offset, self.restored = inode, offset, True
