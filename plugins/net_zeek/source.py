"""net_zeek probe sources: follow a live Zeek log directory, or replay recorded logs in event-time order.

Both produce ``("log", {"path", "ts", "uid", "rec"})`` messages (``uid`` left out when the record has none), one
per Zeek record, parsed by :class:`~wiredraw.plugins.net_zeek.parser.LogStream` from complete lines only.

One file a role, all re-exported here:

- :mod:`~wiredraw.plugins.net_zeek.lines`: the line reader (complete lines from a byte offset, plain or .gz, a
  bounded chunk at a time) and file identity (:func:`identity_of`: how a resume token finds a file again after
  zeekctl has moved and compressed it).
- :mod:`~wiredraw.plugins.net_zeek.logdir`: :class:`LogDirSource`, the live directory, with its follower per
  log type and its index of rotated files (which rotated files are read, and when).
- :mod:`~wiredraw.plugins.net_zeek.replay`: :class:`ReplaySource`, recorded logs merged on ``ts`` with a
  reorder buffer per file, paced, resumable.
"""

from __future__ import annotations

from wiredraw.core.timeparse import parse_time as _parse_time
from wiredraw.plugins.net_zeek.lines import EMPTY_ID, ID_MAX, Message, identity_of, log_message
from wiredraw.plugins.net_zeek.logdir import LogDirSource
from wiredraw.plugins.net_zeek.replay import REORDER_MAX, REORDER_SECONDS, ReplaySource

__all__ = ["EMPTY_ID", "ID_MAX", "REORDER_MAX", "REORDER_SECONDS", "LogDirSource", "Message", "ReplaySource",
           "identity_of", "log_message", "parse_time"]


def parse_time(text: str) -> float:
    """``--since``: epoch seconds or ISO-8601, UTC unless it names a zone (see :mod:`wiredraw.core.timeparse`)."""
    return _parse_time(text, "--since")
