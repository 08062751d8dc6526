"""http_traefik: the module object and its registration (entry point ``wiredraw.modules: http_traefik``).

The parts, one file each: the declaration (http_traefik.toml: ID 3, the ``request`` message, keys),
the probe source (source.py: Traefik's access log, JSON or common log format), the key schema and write path
(schema.py), the view translation (view.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiredraw.core.hookspecs import hookimpl
from wiredraw.core.module import Module, ModuleSpec
from wiredraw.plugins.http_traefik.schema import HttpTraefikSchema

if TYPE_CHECKING:
    from wiredraw.plugins.http_traefik.source import HttpTraefikSource
    from wiredraw.plugins.http_traefik.view import HttpTraefikView


class HttpTraefikModule(Module):
    """Module http_traefik: its part (the write path :class:`HttpTraefikSchema`), its probe options and source, its
    view."""

    spec_path = Path(__file__).with_name("http_traefik.toml")

    def __init__(self, spec: ModuleSpec | None = None) -> None:
        super().__init__(spec)
        self.schema: HttpTraefikSchema = HttpTraefikSchema()

    def add_probe_options(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("http_traefik source", "a Traefik access log (JSON or common log format)")
        g.add_argument("--file", type=Path, required=True, metavar="PATH",
                       help="the access log to follow (Traefik's accessLog.filePath); each line JSON "
                            "(format: json) or common log format (format: common, the default)")
        g.add_argument("--from-end", action="store_true",
                       help="start at the end of the file instead of its beginning (first run only: a restarted "
                            "probe resumes where it stopped)")
        g.add_argument("--entrypoint", default=None, metavar="NAME",
                       help="the entry point of lines that name none (common log format has no entry point; "
                            "default: '*')")

    def make_source(self, options: argparse.Namespace) -> HttpTraefikSource:
        from wiredraw.plugins.http_traefik.source import HttpTraefikSource

        return HttpTraefikSource(Path(options.file), from_end=bool(getattr(options, "from_end", False)),
                                 entrypoint=getattr(options, "entrypoint", None))

    def make_view(self, store: Any, options: Mapping[str, Any]) -> HttpTraefikView:
        """Callers, routers and services of each proxy; ``options``: the ``[http_traefik]`` table of the server's
        viz config (``fade``, ``client_networks``, ``details_requests``; see viz.sample.toml). Bad: ValueError."""
        from wiredraw.plugins.http_traefik.view import HttpTraefikView  # server side only

        return HttpTraefikView(store, options)


@hookimpl
def register_modules(register: Callable[[Module], None]) -> None:
    register(HttpTraefikModule())
