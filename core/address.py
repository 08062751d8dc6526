"""Where the server listens: its default ports and the ``HOST[:PORT]`` every client command takes.

One definition for the server (its listeners), the probe (``--server``), the command line and the viewer, each of
which imports only this kernel module for it (no Twisted here).
"""

from __future__ import annotations

__all__ = ["DEFAULT_HTTP_PORT", "DEFAULT_PROBE_PORT", "DEFAULT_VIZ_PORT", "parse_server"]

DEFAULT_PROBE_PORT, DEFAULT_VIZ_PORT, DEFAULT_HTTP_PORT = 4430, 4431, 4432


def parse_server(text: str, default_port: int = DEFAULT_PROBE_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or a bare ``HOST`` (then ``default_port``); a bad port: ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"--server {text!r}: expected HOST:PORT") from None
