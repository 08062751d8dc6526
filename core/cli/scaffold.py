"""``wiredraw new-module SLUG``: a new module as its own installable distribution, green at once.

The distribution (``wiredraw-<slug with dashes>``) holds package ``wiredraw_<slug>`` with the files every
built-in module has — the module object and its registration (``module.py``), its probe source (``source.py``), its
key schema and write path (``schema.py``), its view translation (``view.py``), its declaration (``<slug>.toml``:
ID, messages, keys), a README with the fixed sections and a sample view configuration (``viz.sample.toml``, for
the server's ``--viz-config``) — plus its message vectors (``vectors/<slug>-messages.json``) and tests: the
shared conformance suite (:class:`wiredraw.testing.ModuleConformance`) and a test of the source. Its
``pyproject.toml`` registers the module in the ``wiredraw.modules`` entry point group, so once installed
(``pip install -e``) ``wiredraw plugins`` lists it.

The files come from ``wiredraw/core/cli/templates/module/`` (``*.tmpl``): ``{{slug}}``, ``{{pkg}}``, ``{{dist}}``,
``{{Name}}`` and ``{{id}}`` are replaced in their paths and text, nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from wiredraw.core.module import SLUG_RE

__all__ = ["DEVELOPMENT_ID", "Scaffold", "ScaffoldError", "create", "names_for"]

DEVELOPMENT_ID = 999
TEMPLATE_SUFFIX = ".tmpl"
_PLACEHOLDER = re.compile(r"\{\{(slug|pkg|dist|Name|id)\}\}")


class ScaffoldError(ValueError):
    """The module cannot be made: a bad slug or ID, or a folder in the way. Says which and why."""


@dataclass(frozen=True)
class Scaffold:
    """What :func:`create` wrote."""

    slug: str
    module_id: int
    directory: Path
    package: str
    distribution: str
    files: tuple[Path, ...]  # relative to directory, sorted


def names_for(slug: str, module_id: int = DEVELOPMENT_ID) -> dict[str, str]:
    """The template placeholders for a slug: e.g. ``my_source`` -> package ``wiredraw_my_source``, distribution
    ``wiredraw-my-source``, class-name stem ``MySource``."""
    return {
        "slug": slug,
        "pkg": f"wiredraw_{slug}",
        "dist": "wiredraw-" + slug.replace("_", "-"),
        "Name": "".join(part.capitalize() for part in slug.split("_") if part),
        "id": str(module_id),
    }


def check_slug(slug: str) -> None:
    if not SLUG_RE.match(slug):
        raise ScaffoldError(f"slug {slug!r}: expected lower_snake_case, 2-32 characters, starting with a letter "
                            f"(e.g. my_source)")
    from wiredraw.core.plugins import load_registry

    # (the registry also holds the core's own slug, "core", id 0)
    for mid, registered in load_registry().ids.items():
        if registered == slug:
            raise ScaffoldError(f"slug {slug!r}: registered to module id {mid} in wiredraw's registry; pick another")


def check_id(module_id: int) -> None:
    from wiredraw.core.plugins import load_registry

    block = load_registry().block_of(module_id)
    if block is None or block.name not in ("development", "private"):
        raise ScaffoldError(f"module id {module_id}: expected {DEVELOPMENT_ID} (development) or a private id "
                            f"1000-65535 (a public id is handed out in wiredraw's registry, not here)")


def _templates() -> Traversable:
    return files("wiredraw.core.cli") / "templates" / "module"


def _walk(node: Traversable, parts: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Traversable]]:
    out: list[tuple[tuple[str, ...], Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            if child.name != "__pycache__":
                out += _walk(child, (*parts, child.name))
        elif child.name.endswith(TEMPLATE_SUFFIX):
            out.append(((*parts, child.name[: -len(TEMPLATE_SUFFIX)]), child))
    return out


def render(text: str, names: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: names[m.group(1)], text)


def create(slug: str, directory: Path | str, module_id: int = DEVELOPMENT_ID) -> Scaffold:
    """Write the distribution of a new module ``slug`` into ``directory`` (made if missing; refused if it exists
    and is not empty). Raises :class:`ScaffoldError` naming what is wrong, before writing anything."""
    check_slug(slug)
    check_id(module_id)
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise ScaffoldError(f"{directory}: exists and is not a folder")
        if any(directory.iterdir()):
            raise ScaffoldError(f"{directory}: exists and is not empty; give a new or empty folder with --dir")
    names = names_for(slug, module_id)
    templates = _walk(_templates())
    if not templates:
        raise ScaffoldError(f"no templates found in {_templates()} (is wiredraw installed with its package data?)")
    written: list[Path] = []
    for parts, template in templates:
        rel = Path(*(render(p, names) for p in parts))
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(template.read_text(encoding="utf-8"), names), encoding="utf-8")
        written.append(rel)
    return Scaffold(slug, module_id, directory, names["pkg"], names["dist"], tuple(sorted(written)))
