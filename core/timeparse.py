"""One reading of a time typed by a person, for every command that takes one (``probe --since``, ``watch --from``,
``query --at``, the viewer's commands): epoch seconds, or ISO-8601 where **a time without a zone is UTC**.

UTC and not local time because Zeek's timestamps are epoch seconds (UTC) and a sensor, a server and an analyst are
often in different zones: ``2024-04-29T16:00`` names one instant whoever types it, on whichever machine.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["parse_time"]


def parse_time(text: str, what: str = "time") -> float:
    """Epoch seconds (``1541240000``, ``1541240000.5``) or ISO-8601 (``2018-11-03T12:00``, ``...+01:00``,
    ``...Z``; no zone: UTC) -> epoch seconds. ValueError names ``what`` (e.g. ``--since``) and what it takes."""
    s = text.strip()
    try:
        v = float(s)
    except ValueError:
        pass
    else:
        if math.isfinite(v):
            return v
        raise ValueError(f"{what} {text!r}: not a finite number")
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected epoch seconds (1541240000) or ISO-8601, UTC unless a zone "
                         f"is given (2018-11-03T12:00, 2018-11-03T12:00:00+01:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
