"""Building the plugin manager and the set of loaded modules.

Built in a function, never at import time (tox); built-ins come through the same entry point group
as third-party plugins (pytest). One broken plugin is reported by name and skipped, unless
``WIREDRAW_PLUGINS_STRICT=1`` makes it fatal. Environment switches (llm, datasette, tox):

- ``WIREDRAW_PLUGINS_STRICT=1``  a plugin that fails to load or register stops the program;
- ``WIREDRAW_LOAD_PLUGINS=a,b``   load only these entry points (empty value: none at all);
- ``WIREDRAW_BLOCK_PLUGINS=a,b``  never load these;
- ``WIREDRAW_TRACE_PLUGINS=1``    trace every hook call on stderr.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from importlib.resources import files
from typing import Any

import pluggy
from wiredraw.core import hookspecs
from wiredraw.core.module import SLUG_RE, Collector, KeySchema, Module, ModuleSpec

ENTRY_POINT_GROUP = "wiredraw.modules"


class PluginError(Exception):
    """A plugin problem that stops the program: a clash, or any failure in strict mode."""


# ----------------------------------------------------------------------------------------------
# The ID registry (spec/registry.toml)


@dataclass(frozen=True)
class Block:
    name: str
    first: int
    last: int
    doc: str


@dataclass(frozen=True)
class Registry:
    blocks: tuple[Block, ...]
    ids: Mapping[int, str]  # module id -> slug

    def block_of(self, module_id: int) -> Block | None:
        for b in self.blocks:
            if b.first <= module_id <= b.last:
                return b
        return None


def load_registry(text: str | None = None) -> Registry:
    """Load and check the module ID registry; raises ValueError naming what is wrong."""
    if text is None:
        text = (files("wiredraw.spec") / "registry.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    blocks = tuple(Block(b["name"], int(b["first"]), int(b["last"]), b.get("doc", "")) for b in raw["blocks"])
    ordered = sorted(blocks, key=lambda b: b.first)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.first <= a.last:
            raise ValueError(f"registry: blocks {a.name!r} and {b.name!r} overlap")
    ids: dict[int, str] = {}
    slugs: dict[str, int] = {}
    for m in raw.get("modules", []):
        mid, slug = int(m["id"]), m["slug"]
        if mid in ids:
            raise ValueError(f"registry: id {mid} given to both {ids[mid]!r} and {slug!r}")
        if slug in slugs:
            raise ValueError(f"registry: slug {slug!r} has ids {slugs[slug]} and {mid}")
        if not SLUG_RE.match(slug):
            raise ValueError(f"registry: slug {slug!r} is not lower_snake_case (2-32 chars)")
        reg = Registry(blocks, {})
        block = reg.block_of(mid)
        if block is None or block.name not in ("reserved", "public"):
            raise ValueError(f"registry: id {mid} ({slug}) must be in the reserved or public block")
        ids[mid] = slug
        slugs[slug] = mid
    return Registry(blocks, ids)


# ----------------------------------------------------------------------------------------------
# Loaded modules


@dataclass(frozen=True)
class LoadedModule:
    module: Module
    plugin: str  # the entry point / plugin name that registered it

    @property
    def spec(self) -> ModuleSpec:
        return self.module.spec


@dataclass
class ModuleSet:
    """The modules this process knows, by ID and by slug, plus what failed to load."""

    by_id: dict[int, LoadedModule] = field(default_factory=dict)
    broken: list[tuple[str, str]] = field(default_factory=list)  # (plugin name, error)
    manager: pluggy.PluginManager | None = None

    @property
    def by_slug(self) -> dict[str, LoadedModule]:
        return {m.spec.slug: m for m in self.by_id.values()}

    def get(self, id_or_slug: int | str) -> LoadedModule | None:
        if isinstance(id_or_slug, int):
            return self.by_id.get(id_or_slug)
        return self.by_slug.get(id_or_slug)

    def __iter__(self) -> Iterable[LoadedModule]:  # type: ignore[override]
        return iter(sorted(self.by_id.values(), key=lambda m: m.spec.id))

    def __len__(self) -> int:
        return len(self.by_id)

    def notify_classes(self) -> str:
        """The smallest keyspace-notification class set the loaded modules need."""
        classes = sorted({c for m in self.by_id.values() for c in m.spec.notify_classes})
        return "".join(classes)


def _csv_env(env: Mapping[str, str], name: str) -> set[str] | None:
    if name not in env:
        return None
    return {p.strip() for p in env[name].split(",") if p.strip()}


def validate_module(obj: Any, plugin: str, registry: Registry) -> Module:
    """Check one registered object at once; the error names the plugin, the field, expected and got."""
    if not isinstance(obj, Module):
        raise PluginError(f"plugin {plugin!r}: register() expected a wiredraw.core.module.Module, got {obj!r}")
    spec = getattr(obj, "spec", None)
    if not isinstance(spec, ModuleSpec):
        raise PluginError(f"plugin {plugin!r}: module.spec expected a ModuleSpec, got {spec!r}")
    if obj.schema is not None and not isinstance(obj.schema, KeySchema):
        raise PluginError(f"plugin {plugin!r}: module.schema expected a wiredraw.core.module.KeySchema or None, "
                          f"got {obj.schema!r}")
    collector = obj.collector
    if collector is not None and not (isinstance(collector, Collector) and isinstance(collector.prefix, str)
                                      and re.fullmatch(r"[a-z0-9_\-]{1,64}", collector.prefix)):
        raise PluginError(f"plugin {plugin!r}: module.collector expected a wiredraw.core.module.Collector with a "
                          f"prefix of [a-z0-9_-]{{1,64}}, or None, got {collector!r}")
    block = registry.block_of(spec.id)
    if spec.id == 0 or block is None:
        raise PluginError(f"plugin {plugin!r}: module id expected in 1..65535 outside the reserved block, "
                          f"got {spec.id}")
    registered = registry.ids.get(spec.id)
    if block.name == "public" and registered != spec.slug:
        want = f"the registry's slug {registered!r}" if registered else "an id listed in spec/registry.toml"
        raise PluginError(f"plugin {plugin!r}: module id {spec.id} (public block) expected {want}, "
                          f"got slug {spec.slug!r}")
    for rid, rslug in registry.ids.items():
        if rslug == spec.slug and rid != spec.id:
            raise PluginError(f"plugin {plugin!r}: slug {spec.slug!r} is registered with id {rid}, "
                              f"got id {spec.id}")
    return obj


def load_modules(
    *,
    extra_plugins: Iterable[tuple[str, object]] = (),
    env: Mapping[str, str] | None = None,
    use_entry_points: bool = True,
    registry: Registry | None = None,
) -> ModuleSet:
    """Build the plugin manager, load plugins, collect and validate their modules."""
    env = os.environ if env is None else env
    strict = env.get("WIREDRAW_PLUGINS_STRICT", "") not in ("", "0")
    only = _csv_env(env, "WIREDRAW_LOAD_PLUGINS")
    blocked = _csv_env(env, "WIREDRAW_BLOCK_PLUGINS") or set()
    registry = registry or load_registry()

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if env.get("WIREDRAW_TRACE_PLUGINS", "") not in ("", "0"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    result = ModuleSet(manager=pm)

    def broken(name: str, error: str) -> None:
        if strict:
            raise PluginError(f"plugin {name!r} failed (WIREDRAW_PLUGINS_STRICT is set): {error}")
        result.broken.append((name, error))

    candidates: list[tuple[str, object | None, Any]] = []
    if use_entry_points:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            candidates.append((ep.name, None, ep))
    candidates.extend((name, obj, None) for name, obj in extra_plugins)

    for name, obj, ep in candidates:
        if name in blocked or (only is not None and name not in only):
            continue
        try:
            plugin = obj if obj is not None else ep.load()
            pm.register(plugin, name=name)
        except Exception as exc:  # a broken plugin is reported by name, never fatal unless strict
            broken(name, f"{type(exc).__name__}: {exc}")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        broken(getattr(exc, "plugin_name", "?"), str(exc))

    plugin_of: dict[str, str] = {}  # slug -> plugin, to name both sides of a clash
    for impl in pm.hook.register_modules.get_hookimpls():
        name = impl.plugin_name
        found: list[Module] = []
        try:
            impl.function(register=found.append)
            modules = [validate_module(m, name, registry) for m in found]
        except PluginError as exc:
            broken(name, str(exc))
            continue
        except Exception as exc:
            broken(name, f"register_modules raised {type(exc).__name__}: {exc}")
            continue
        for module in modules:
            spec = module.spec
            if spec.id in result.by_id:
                other = result.by_id[spec.id]
                raise PluginError(f"module id {spec.id} clash: plugin {other.plugin!r} registers "
                                  f"{other.spec.slug!r} and plugin {name!r} registers {spec.slug!r}")
            if spec.slug in plugin_of:
                raise PluginError(f"module slug {spec.slug!r} clash: registered by plugin "
                                  f"{plugin_of[spec.slug]!r} and by plugin {name!r}")
            plugin_of[spec.slug] = name
            result.by_id[spec.id] = LoadedModule(module, name)
    return result
