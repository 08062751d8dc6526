"""The interval index: which bucket holds an interval (a connection, a process) and which buckets a time query reads.

Level k holds the intervals that last at most ``size(k) = base * factor**k`` seconds (the last level also holds the
longer ones), each in the bucket of its start, ``floor(start / size(k))``. An interval active somewhere in [t0, t1]
sits in some level k and started in [t0 - size(k), t1], so a query reads the buckets of that range on each level:
for a point query (t0 == t1) at most 2 per level, whatever the intervals' lengths.

One geometry, :data:`DEFAULT_INDEX` (60 s x 4^k, 13 levels: up to 60 * 4^12 s, about 32 years), serves every module
that keeps such an index, in Python and in the Lua a module runs inside Redis: :meth:`IntervalIndex.fill_lua` writes
the constants into a script's ``@INDEX_BASE@``, ``@INDEX_FACTOR@`` and ``@INDEX_LEVELS@`` placeholders (not Lua
syntax, so a script loaded without them filled in fails to compile rather than run with other numbers). A bucket
is ``floor(start / size)`` on both sides, the same IEEE division then floor as Lua's ``math.floor(ts / size)``.

Only the standard library: the kernel, imported by plugins.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["DEFAULT_INDEX", "IntervalIndex"]

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


@dataclass(frozen=True)
class IntervalIndex:
    base: int = 60  # seconds: the longest interval of level 0 and the width of its buckets
    factor: int = 4  # each level's intervals (and buckets) are this many times longer than the one below
    levels: int = 13

    def __post_init__(self) -> None:
        for name, least in (("base", 1), ("factor", 2), ("levels", 1)):
            value = getattr(self, name)
            if type(value) is not int or value < least:
                raise ValueError(f"IntervalIndex {name}: expected an int >= {least}, got {value!r}")

    def size(self, level: int) -> int:
        """The longest interval of ``level``, and the width of its buckets (seconds)."""
        return self.base * self.factor**level

    def level_of(self, duration: float) -> int:
        """The smallest level whose intervals may last ``duration`` (the last level for anything longer; a negative
        or NaN duration is level 0)."""
        size, k, top = self.base, 0, self.levels - 1
        while size < duration and k < top:
            size *= self.factor
            k += 1
        return k

    def bucket_of(self, level: int, start: float) -> int:
        """The bucket of ``level`` that holds an interval starting at ``start``."""
        return math.floor(start / self.size(level))

    def place(self, start: float, duration: float) -> tuple[int, int]:
        """(level, bucket) of the interval [start, start + duration]."""
        k = self.level_of(duration)
        return k, self.bucket_of(k, start)

    def buckets(self, t0: float, t1: float) -> list[tuple[int, int]]:
        """The (level, bucket) pairs that can hold an interval active somewhere in [t0, t1], level by level."""
        out: list[tuple[int, int]] = []
        for k in range(self.levels):
            size = self.size(k)
            out.extend((k, b) for b in range(math.floor((t0 - size) / size), math.floor(t1 / size) + 1))
        return out

    def lua_constants(self) -> dict[str, str]:
        """The geometry as Lua number literals, by placeholder name."""
        return {"INDEX_BASE": str(self.base), "INDEX_FACTOR": str(self.factor), "INDEX_LEVELS": str(self.levels)}

    def fill_lua(self, source: str) -> str:
        """``source`` with every ``@INDEX_BASE@``, ``@INDEX_FACTOR@``, ``@INDEX_LEVELS@`` replaced by this geometry's
        number. A ValueError for any other ``@NAME@`` placeholder, or when the script has none of these."""
        constants = self.lua_constants()
        used: set[str] = set()

        def fill(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in constants:
                raise ValueError(f"Lua placeholder @{name}@: expected one of {', '.join(sorted(constants))}")
            used.add(name)
            return constants[name]

        out = _PLACEHOLDER.sub(fill, source)
        if not used:
            raise ValueError("the Lua script has no interval index placeholder (@INDEX_BASE@, ...)")
        return out


DEFAULT_INDEX = IntervalIndex()
