"""Module registry, declarations and the plugin manager."""

from __future__ import annotations

import inspect
import re
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from wiredraw.core import devtest, hookspecs
from wiredraw.core.hookspecs import hookimpl
from wiredraw.core.module import Module, SpecError, load_module_spec
from wiredraw.core.plugins import ENTRY_POINT_GROUP, PluginError, load_modules, load_registry

ROOT = Path(__file__).resolve().parents[2]


def declaration(slug: str) -> Path:
    """A built-in module's declaration: in its package, devtest's beside core/devtest.py."""
    return ROOT / "core" / "devtest.toml" if slug == "devtest" else ROOT / "plugins" / slug / f"{slug}.toml"


def test_registry_blocks_and_builtin_ids():
    reg = load_registry()
    assert reg.ids[0] == "core" and reg.ids[1] == "net_zeek" and reg.ids[2] == "proc_events"
    assert reg.block_of(0).name == "reserved"
    assert reg.block_of(999).name == "development"
    assert reg.block_of(1000).name == "private" and reg.block_of(65535).name == "private"
    assert reg.block_of(500).name == "public"


@pytest.mark.parametrize("text, message", [
    ("""[[blocks]]\nname="a"\nfirst=0\nlast=10\n[[blocks]]\nname="b"\nfirst=5\nlast=20\n""", "overlap"),
    ("""[[blocks]]\nname="public"\nfirst=0\nlast=10\n[[modules]]\nid=1\nslug="x_a"\n[[modules]]\nid=1\nslug="y_b"\n""",
     "id 1 given to both 'x_a' and 'y_b'"),
    ("""[[blocks]]\nname="public"\nfirst=0\nlast=10\n[[modules]]\nid=1\nslug="Bad-Name"\n""", "lower_snake_case"),
    ("""[[blocks]]\nname="public"\nfirst=0\nlast=10\n[[blocks]]\nname="private"\nfirst=11\nlast=20\n"""
     """[[modules]]\nid=12\nslug="xx"\n""", "reserved or public"),
])
def test_registry_validator_rejects(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_registry(text)


def test_builtins_load_through_entry_points():
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"net_zeek", "proc_events"} <= names
    modules = load_modules(env={})
    assert modules.broken == []
    assert modules.get(1).spec.slug == "net_zeek" and modules.get(1).plugin == "net_zeek"
    assert modules.get("proc_events").spec.id == 2
    assert modules.get(999) is None  # the development module is never loaded by default


def test_declarations_agree_with_registry_and_keys_stay_in_prefix():
    reg = load_registry()
    for slug in ("net_zeek", "proc_events", "devtest"):
        spec = load_module_spec(declaration(slug))
        if spec.id in reg.ids:
            assert reg.ids[spec.id] == slug
        assert spec.keys, f"{slug} declares no keys"
        for k in spec.keys:
            assert k.template.startswith(f"wd:{slug}:")
        assert spec.messages


def _spec_file(tmp_path, body):
    path = tmp_path / "m.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_key_outside_prefix_is_rejected_with_field_named(tmp_path):
    path = _spec_file(tmp_path, """
        id = 1000
        slug = "mine"
        version = "1"
        [[keys]]
        template = "wd:other:thing"
        type = "set"
    """)
    with pytest.raises(SpecError, match=r"keys\[0\]\.template: expected a key template under the module's prefix"):
        load_module_spec(path)


def test_bad_field_type_is_rejected(tmp_path):
    path = _spec_file(tmp_path, """
        id = 1000
        slug = "mine"
        version = "1"
        [messages.x.fields]
        a = { type = "integer" }
    """)
    with pytest.raises(SpecError, match=r"messages\.x\.fields\.a\.type: expected one of"):
        load_module_spec(path)


def test_key_template_matching():
    spec = load_module_spec(declaration("devtest"))
    assert spec.key_matches("wd:devtest:tick:42").template == "wd:devtest:tick:{n}"
    assert spec.key_matches("wd:devtest:ticks:s1").template == "wd:devtest:ticks:{probe}"
    assert spec.key_matches("wd:devtest:other") is None
    assert spec.key_matches("wd:net_zeek:tick:1") is None


class _Plugin:
    """A plugin object registering the given modules (pluggy accepts any object with hookimpls)."""

    def __init__(self, *modules):
        self.modules = modules

    @hookimpl
    def register_modules(self, register):
        for m in self.modules:
            register(m)


def _module(mid, slug):
    spec = load_module_spec(declaration("devtest"))
    from dataclasses import replace

    return Module(replace(spec, id=mid, slug=slug))


def test_broken_plugin_is_reported_by_name_and_skipped():
    class Broken:
        @hookimpl
        def register_modules(self, register):
            raise RuntimeError("boom")

    modules = load_modules(extra_plugins=[("broken_one", Broken()), ("devtest", devtest)], env={})
    assert modules.get("devtest") is not None  # the others still load
    assert modules.get("net_zeek") is not None
    assert [(n, "boom" in e) for n, e in modules.broken] == [("broken_one", True)]


def test_broken_plugin_is_fatal_in_strict_mode():
    class Broken:
        @hookimpl
        def register_modules(self, register):
            raise RuntimeError("boom")

    with pytest.raises(PluginError, match="broken_one.*boom"):
        load_modules(extra_plugins=[("broken_one", Broken())], env={"WIREDRAW_PLUGINS_STRICT": "1"})


def test_plugin_registering_wrong_object_is_named():
    modules = load_modules(extra_plugins=[("weird", _Plugin(object()))], env={}, use_entry_points=False)
    (name, error), = modules.broken
    assert name == "weird" and "expected a wiredraw.core.module.Module" in error


def test_id_clash_names_both_plugins():
    with pytest.raises(PluginError, match=r"module id 1500 clash: plugin 'first' registers 'aaa' and plugin "
                                          r"'second' registers 'bbb'"):
        load_modules(extra_plugins=[("first", _Plugin(_module(1500, "aaa"))),
                                    ("second", _Plugin(_module(1500, "bbb")))], env={}, use_entry_points=False)


def test_slug_clash_names_both_plugins():
    with pytest.raises(PluginError, match=r"slug 'aaa' clash: registered by plugin 'first' and by plugin 'second'"):
        load_modules(extra_plugins=[("first", _Plugin(_module(1500, "aaa"))),
                                    ("second", _Plugin(_module(1501, "aaa")))], env={}, use_entry_points=False)


def test_clash_with_builtin_through_entry_points():
    with pytest.raises(PluginError, match=r"plugin 'net_zeek' registers 'net_zeek' and plugin 'intruder'"):
        load_modules(extra_plugins=[("intruder", _Plugin(_module(1, "net_zeek")))], env={})


def test_public_id_needs_registry_entry_and_slug_must_match():
    modules = load_modules(extra_plugins=[("p", _Plugin(_module(7, "seven")))], env={}, use_entry_points=False)
    assert "expected an id listed in spec/registry.toml" in modules.broken[0][1]
    modules = load_modules(extra_plugins=[("p", _Plugin(_module(1000, "net_zeek")))], env={},
                           use_entry_points=False)
    assert "slug 'net_zeek' is registered with id 1" in modules.broken[0][1]
    modules = load_modules(extra_plugins=[("p", _Plugin(_module(0, "zero")))], env={}, use_entry_points=False)
    assert "outside the reserved block" in modules.broken[0][1]


def test_block_and_restrict_switches():
    assert load_modules(env={"WIREDRAW_BLOCK_PLUGINS": "net_zeek"}).get("net_zeek") is None
    only = load_modules(env={"WIREDRAW_LOAD_PLUGINS": "proc_events"})
    assert [m.spec.slug for m in only] == ["proc_events"]
    assert len(load_modules(env={"WIREDRAW_LOAD_PLUGINS": ""})) == 0


def test_order_between_plugins_does_not_matter():
    a = load_modules(extra_plugins=[("devtest", devtest), ("x", _Plugin(_module(2000, "xx")))], env={})
    b = load_modules(extra_plugins=[("x", _Plugin(_module(2000, "xx"))), ("devtest", devtest)], env={})
    assert [m.spec.slug for m in a] == [m.spec.slug for m in b]
    union = {c for m in a for c in m.spec.notify_classes}
    assert a.notify_classes() == b.notify_classes() == "".join(sorted(union))
    assert set(a.notify_classes()) >= {"s", "h"}


def test_every_hook_is_documented_and_docs_match_signatures():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    hooks = [f for name, f in vars(hookspecs).items()
             if callable(f) and hasattr(f, "wiredraw_spec")]
    assert hooks, "no hookspecs found"
    for hook in hooks:
        doc = inspect.getdoc(hook) or ""
        assert "versionadded:" in doc, f"{hook.__name__} lacks versionadded"
        assert ":param" in doc or not inspect.signature(hook).parameters
        documented = f"{hook.__name__}{inspect.signature(hook)}".replace("'", "")
        assert documented in docs, f"docs/plugins.md does not show the signature {documented}"
