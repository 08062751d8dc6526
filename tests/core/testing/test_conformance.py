"""The module conformance suite (wiredraw.testing): the built-in modules pass it, and a deliberately broken module
fails it with a message naming the cause (a key outside its prefix, an undeclared message type, a missing vector,
...). The broken modules are small third-party-style modules written to a temporary directory."""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest
from wiredraw.core.graph import Graph, ModuleView, Node
from wiredraw.core.module import Body, IngestContext, Module, WriteBatch, load_module_spec
from wiredraw.plugins.http_traefik.module import HttpTraefikModule
from wiredraw.plugins.net_zeek.module import NetZeekModule
from wiredraw.plugins.proc_events.module import ProcEventsModule
from wiredraw.testing import CHECKS, ModuleConformance, run_check
from wiredraw.testing.vectors import VectorFileError, load_vectors

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[3]
PLUGINS = ROOT / "plugins"


# --- the built-in modules pass it ---------------------------------------------------------------------------------


class TestNetZeekConformance(ModuleConformance):
    module = NetZeekModule()
    vectors = PLUGINS / "net_zeek" / "vectors" / "net_zeek-messages.json"
    entry_point = "net_zeek"


class TestProcEventsConformance(ModuleConformance):
    module = ProcEventsModule()
    vectors = PLUGINS / "proc_events" / "vectors" / "proc_events-messages.json"
    entry_point = "proc_events"


class TestHttpTraefikConformance(ModuleConformance):
    module = HttpTraefikModule()
    vectors = PLUGINS / "http_traefik" / "vectors" / "http_traefik-messages.json"
    entry_point = "http_traefik"


# --- a small third-party module, and ways to break it ---------------------------------------------------------------

SPEC = """
    id = 1000
    slug = "kit_demo"
    version = "0.1.0"
    doc = "A third-party style module for the conformance suite's own tests."
    notify_classes = "h"

    [messages.event]
    doc = "Something happened to a named thing."
    [messages.event.fields]
    name = { type = "str" }
    n = { type = "int" }
    {event_fields}
    {more_messages}

    [[keys]]
    template = "wd:kit_demo:thing:{name}"
    type = "hash"
    ttl = 3600
"""

VALID = {"event": [{"message": {"name": "alpha", "n": 1}}, {"message": {"name": "beta", "n": 2}}]}
INVALID = {"event": [{"message": {"name": "alpha"}, "reason": "missing field 'n'"},
                     {"message": {"name": "alpha", "n": "1"}, "reason": "field 'n': expected int"}]}

README = "# kit_demo\n\n" + "\n".join(
    f"## {s}\n{'1000' if s == 'ID' else 'event' if s == 'Messages' else 'text'}\n"
    for s in ("Summary", "ID", "Messages", "Keys", "Viz mapping", "Configuration", "Example", "Troubleshooting"))


class DemoView(ModuleView):
    watch_keys = ("wd:kit_demo:thing:*",)
    node_kinds: tuple[str, ...] = ("thing",)
    kind = "thing"

    async def graph(self, t0: float, t1: float) -> Graph:
        keys = await self.store.execute("KEYS", "wd:kit_demo:thing:*")
        return Graph(Node(k.decode().rsplit(":", 1)[1], kind=self.kind) for k in keys)


class DemoModule(Module):
    """Writes one hash per event name under ``key``'s format."""

    key = "wd:kit_demo:thing:{name}"
    viz: type[DemoView] | None = DemoView

    def write(self, ctx: IngestContext, body: Body, batch: WriteBatch) -> None:
        n = 0
        for msg in body.messages():
            key = self.key.format(name=msg["name"])
            batch.add("HSET", key, "n", msg["n"])
            batch.add("EXPIRE", key, 3600)
            n += 1
        batch.counts.written += n

    def make_view(self, store: Any, options: Any) -> DemoView | None:
        return self.viz(store, options) if self.viz is not None else None


def demo_suite(tmp_path: Path, *, module_class: type[DemoModule] = DemoModule, event_fields: str = "",
               more_messages: str = "", valid: dict[str, Any] | None = None, invalid: dict[str, Any] | None = None,
               readme: str = README, **spec_changes: Any) -> ModuleConformance:
    """A conformance suite for a kit_demo module written to ``tmp_path``, ready to call check by check.
    ``spec_changes``: fields of the loaded ModuleSpec to replace (the declaration file keeps its own)."""
    spec_path = tmp_path / "kit_demo.toml"
    spec_path.write_text(textwrap.dedent(SPEC).replace("{event_fields}", event_fields)
                         .replace("{more_messages}", textwrap.dedent(more_messages)))
    valid, invalid = valid if valid is not None else VALID, invalid if invalid is not None else INVALID
    messages = {t: {"valid": valid.get(t, []), "invalid": invalid.get(t, [])} for t in {**valid, **invalid}}
    vectors_path = tmp_path / "kit_demo-messages.json"
    vectors_path.write_text(json.dumps({"format": "wiredraw-module-vectors/1", "module": "kit_demo",
                                        "messages": messages}))
    readme_path = tmp_path / "README.md"
    readme_path.write_text(readme)

    class Suite(ModuleConformance):
        module = module_class(replace(load_module_spec(spec_path), **spec_changes))
        vectors = vectors_path
        readme = readme_path

    return Suite()




def fails(suite: ModuleConformance, check: str, *causes: str) -> str:
    with pytest.raises(AssertionError) as info:
        run_check(suite, check)
    text = str(info.value)
    for cause in causes:
        assert cause in text, text
    return text


def test_the_demo_module_passes_every_check(tmp_path):
    suite = demo_suite(tmp_path)
    for check in CHECKS:
        run_check(suite, check)


# --- the must-hold: a deliberately broken module fails, naming the cause ------------------------------------------


def test_a_key_outside_the_prefix_fails_naming_the_key(tmp_path):
    class OutsidePrefix(DemoModule):
        key = "wd:other:thing:{name}"

    suite = demo_suite(tmp_path, module_class=OutsidePrefix)
    fails(suite, "test_keys_written_match_declared_templates",
          "module 'kit_demo' does not conform",
          "key 'wd:other:thing:alpha' is outside the module's prefix wd:kit_demo:")


def test_a_key_matching_no_template_fails_naming_the_key(tmp_path):
    class Undeclared(DemoModule):
        key = "wd:kit_demo:stuff:{name}"

    suite = demo_suite(tmp_path, module_class=Undeclared)
    fails(suite, "test_keys_written_match_declared_templates",
          "key 'wd:kit_demo:stuff:beta' matches no declared template")


def test_an_undeclared_message_type_fails_naming_it(tmp_path):
    suite = demo_suite(tmp_path, valid={**VALID, "foo": [{"message": {"x": 1}}]},
                       invalid={**INVALID, "foo": [{"message": {}, "reason": "x"}]})
    fails(suite, "test_vectors_cover_every_message_type", "vector for undeclared message type 'foo'")


def test_a_missing_vector_fails_naming_the_type(tmp_path):
    exit_message = """
        [messages.exit]
        doc = "A thing ended."
        [messages.exit.fields]
        name = { type = "str" }
    """
    suite = demo_suite(tmp_path, more_messages=exit_message, valid={**VALID, "exit": [{"message": {"name": "a"}}]})
    fails(suite, "test_vectors_cover_every_message_type",
          f"message type 'exit' has no invalid vector in {tmp_path / 'kit_demo-messages.json'}")
    suite = demo_suite(tmp_path, more_messages=exit_message)
    fails(suite, "test_vectors_cover_every_message_type", "message type 'exit' has no valid vector",
          "message type 'exit' has no invalid vector")


def test_a_declared_field_no_valid_vector_shows_fails(tmp_path):
    suite = demo_suite(tmp_path, event_fields='note = { type = "str", required = false }')
    fails(suite, "test_vectors_cover_every_message_type",
          "field 'note' of message type 'event' appears in no valid vector")


def test_wrong_vectors_fail_naming_the_vector(tmp_path):
    suite = demo_suite(tmp_path, valid={"event": [{"message": {"name": "a", "n": 1.5}, "doc": "n as a float"}]},
                       invalid={"event": [{"message": {"name": "a", "n": 1}, "reason": "missing field 'n'"},
                                          {"message": {"name": 5, "n": 1}, "reason": "missing field 'n'"}]})
    fails(suite, "test_valid_vectors_validate_and_round_trip",
          "valid vector kit_demo-messages.json: messages.event.valid[0] (n as a float) is refused by the declaration: "
          "field 'n': expected int, got float")
    fails(suite, "test_invalid_vectors_are_refused",
          "invalid vector kit_demo-messages.json: messages.event.invalid[0] is accepted by the declaration",
          "is taken by the module's write path",
          "invalid[1] is refused for \"field 'name': expected str, got int\", the vector expects \"missing field 'n'\"")


def test_a_module_raising_on_bad_input_fails_naming_the_error(tmp_path):
    class Fragile(DemoModule):
        def write(self, ctx, body, batch):
            for msg in body.messages():
                if msg["n"] < 0:
                    raise KeyError("negative")
            super().write(ctx, body, batch)

    suite = demo_suite(tmp_path, module_class=Fragile)
    fails(suite, "test_bad_input_raises_only_the_protocol_error",
          "a 'event' message with n=-1: the module raised KeyError: 'negative' (bad input must raise only the "
          "protocol's error, WireError)")


def test_undeclared_node_kinds_fail_naming_the_kind(tmp_path):
    class OtherKind(DemoView):
        kind = "widget"

    class WithOtherKind(DemoModule):
        viz = OtherKind

    suite = demo_suite(tmp_path, module_class=WithOtherKind)
    fails(suite, "test_translation_gives_declared_kinds",
          "graph(-inf, inf): node 'alpha' has kind 'widget', not one of node_kinds ['thing']")


def test_a_translation_deaf_to_its_events_fails(tmp_path):
    """Declared notify classes that do not cover the writes: the live graph never hears of them."""

    class LiveView(DemoView):
        async def live_graph(self, t0):
            return Graph()

        async def on_events(self, events, graph):
            from wiredraw.core.graph import Change

            return Change(nodes=[Node(k.rsplit(":", 1)[1], kind="thing") for k, _ in events])

    class Deaf(DemoModule):
        viz = LiveView

    run_check(demo_suite(tmp_path, module_class=Deaf), "test_translation_gives_declared_kinds")  # "h" covers HSET
    fails(demo_suite(tmp_path, module_class=Deaf, notify_classes="z"), "test_translation_gives_declared_kinds",
          "the live graph stayed empty through 0 keyspace events while graph(-inf, inf) has 2 nodes")


def test_a_module_without_viz_skips_translation(tmp_path):
    class NoView(DemoModule):
        viz = None

    with pytest.raises(pytest.skip.Exception, match="has no view translation"):
        run_check(demo_suite(tmp_path, module_class=NoView), "test_translation_gives_declared_kinds")


def test_a_readme_missing_a_section_fails_naming_it(tmp_path):
    suite = demo_suite(tmp_path, readme=README.replace("## Troubleshooting", "## Problems"))
    fails(suite, "test_readme_has_fixed_sections", "has no section '## Troubleshooting'")
    suite = demo_suite(tmp_path, readme=README.replace("1000", "one thousand"))
    fails(suite, "test_readme_has_fixed_sections", "section 'ID' does not give the module's id 1000")


def test_a_public_id_not_in_the_registry_fails(tmp_path):
    fails(demo_suite(tmp_path, id=500), "test_declaration_loads_and_matches_registry", "the registry refuses it",
          "module id 500 (public block) expected an id listed in spec/registry.toml",
          "module.spec differs from its declaration file")
    fails(demo_suite(tmp_path, id=1, source_path=""), "test_declaration_loads_and_matches_registry",
          "id 1 is registered to 'net_zeek' in spec/registry.toml, not 'kit_demo'")


def test_vectors_file_errors_name_the_file_and_place(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"format": "wiredraw-module-vectors/1",
                                "messages": {"event": {"valid": [], "invalid": [{"message": {}}]}}}))
    with pytest.raises(VectorFileError, match=re.escape("v.json: messages.event.invalid[0]: an invalid vector needs")):
        load_vectors(path)
    path.write_text("{}")
    with pytest.raises(VectorFileError, match="format expected 'wiredraw-module-vectors/1'"):
        load_vectors(path)


def test_vector_values_decode_msgpack_and_bin(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"format": "wiredraw-module-vectors/1", "messages": {"event": {
        "valid": [{"message": {"rec": {"$msgpack": {"b": {"$bin": "00ff"}, "l": [1.5, None]}}, "raw": {"$bin": "c1"}}}],
    }}}))
    (v,) = load_vectors(path).valid["event"]
    assert v.message["raw"] == b"\xc1"
    assert msgpack.unpackb(v.message["rec"]) == {"b": b"\x00\xff", "l": [1.5, None]}
    assert v.where == "v.json: messages.event.valid[0]"


# --- a third-party package's tests: pytest collects a subclass with no conftest of ours -----------------------------


def test_a_subclass_in_a_third_party_test_file_is_collected_and_runs(pytester, tmp_path):
    suite = demo_suite(tmp_path)  # writes the spec, vectors and README
    pytester.makepyfile(test_third_party=f"""
        from pathlib import Path
        from wiredraw.core.module import Module, load_module_spec
        from wiredraw.testing import ModuleConformance

        class Demo(Module):
            def write(self, ctx, body, batch):
                for m in body.messages():
                    batch.add("HSET", "wd:kit_demo:thing:" + m["name"], "n", m["n"])
                    batch.add("EXPIRE", "wd:kit_demo:thing:" + m["name"], 3600)
                batch.counts.written += len(body.messages())

        class TestDemo(ModuleConformance):
            module = Demo(load_module_spec({str(tmp_path / 'kit_demo.toml')!r}))
            vectors = Path({str(suite.vectors)!r})
            readme = Path({str(suite.readme)!r})
    """)
    # no:twisted: pytest-twisted cannot run inside itself (its greenlet is this run's).
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-p", "no:twisted")
    # The translation check skips (no viz); the entry point check skips (none given).
    result.assert_outcomes(passed=len(CHECKS) - 1, skipped=2)
