"""The conformance suite every wiredraw module inherits and passes, built-in or third-party (STYLE.md, Plugins).

Subclass :class:`ModuleConformance` in a test file; pytest collects its ``test_*`` methods::

    from pathlib import Path
    from wiredraw.testing import ModuleConformance
    import my_package
    from my_package.module import MySource

    class TestMySource(ModuleConformance):
        module = MySource()                                # or a factory: module = MySource
        vectors = Path(my_package.__file__).parent / "vectors" / "my_source-messages.json"
        readme = Path(__file__).parents[1] / "README.md"   # default: README.md beside the module's code

Every check runs against a real Redis the kit starts itself (:func:`wiredraw.testing.redis.shared_redis`), through
the server's own write path (:meth:`wiredraw.core.server.ingest.Ingest.prepare` and ``commit``), and fails with an
AssertionError naming the module and the cause. The checks can also be called directly (as the suite's own tests
do): ``TestMySource().test_keys_written_match_declared_templates(RedisKit.shared())``.

Why one file of ~600 lines: it is one class an author subclasses, and pytest collects only the ``test_*`` methods
of that class; each check reads the same declaration, vectors and kit, so splitting it would hand authors several
bases to inherit and keep in step.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import msgpack
import pytest
from wiredraw.core import wire
from wiredraw.core.batching import Batcher
from wiredraw.core.graph import PULSE_MEANINGS, Change, Graph, ModuleView
from wiredraw.core.module import (
    IngestCounts,
    Module,
    ModuleSpec,
    SpecError,
    load_module_spec,
    validate_message,
)
from wiredraw.core.plugins import LoadedModule, ModuleSet, PluginError, load_modules, load_registry, validate_module
from wiredraw.core.server.ingest import Ingest, Refused
from wiredraw.testing.redis import RedisKit, fired, keyspace_events, run
from wiredraw.testing.vectors import ModuleVectors, Vector, VectorFileError, load_vectors

__all__ = ["README_SECTIONS", "ModuleConformance"]

#: The fixed sections of a module's README (``## `` headings), in this order.
README_SECTIONS = ("Summary", "ID", "Messages", "Keys", "Viz mapping", "Configuration", "Example", "Troubleshooting")

# Values a field of a valid message is replaced with to make bad input: each must be refused or taken, never
# make the module raise (bad input raises only the protocol's error).
_BAD_VALUES: tuple[Any, ...] = (None, True, -1, 2**64 - 1, 1.5, "", "x" * 300, [], {}, b"\x00\xff", [[None]],
                                {"": None}, float("nan"), float("inf"), float("-inf"))
_EVENT_BATCH = 500  # the most keyspace events the core hands to on_events at once (core/server/live.py)


class _Problems:
    """Collects what is wrong; :meth:`check` raises one AssertionError listing it all, prefixed by the module."""

    def __init__(self, slug: str) -> None:
        self.slug = slug
        self.items: list[str] = []

    def add(self, text: str) -> None:
        self.items.append(text)

    def check(self) -> None:
        if self.items:
            raise AssertionError(f"module {self.slug!r} does not conform:\n- " + "\n- ".join(self.items))


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1, 1.0 and True are three different wire values)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ModuleConformance:
    """Base class of a module's conformance tests. Set :attr:`module` and :attr:`vectors` in the subclass."""

    #: The module object, or a callable returning one (called once per test).
    module: ClassVar[Module | Callable[[], Module] | None] = None
    #: The module's message vectors file (format: :mod:`wiredraw.testing.vectors`).
    vectors: ClassVar[Path | str | None] = None
    #: The module's README; None: ``README.md`` beside the file that defines the module's class.
    readme: ClassVar[Path | str | None] = None
    #: More recorded (message type, message) pairs ingested after the valid vectors (keys and translation checks).
    samples: ClassVar[Sequence[tuple[str, Any]]] = ()
    #: The module's table of the server's ``--viz-config`` for :meth:`Module.make_view`.
    view_options: ClassVar[Mapping[str, Any]] = {}
    #: The name of the module's ``wiredraw.modules`` entry point, to check that it registers through it (None: skip).
    entry_point: ClassVar[str | None] = None
    #: Whether the valid vectors (and samples) must give a non-empty graph.
    expect_graph: ClassVar[bool] = True
    #: The probe id the messages are ingested from.
    probe_id: ClassVar[str] = "conformance"

    # -- fixtures (pytest finds them on the class: a module's test file needs no conftest from us) ---------------

    @pytest.fixture
    def conformance_redis(self) -> Iterator[RedisKit]:
        """A client on the kit's own redis-server, emptied for this test."""
        kit = RedisKit.shared()
        try:
            yield kit
        finally:
            kit.close()

    # -- what the subclass gives ----------------------------------------------------------------------------

    def make_module(self) -> Module:
        given = type(self).module
        if given is None:
            raise AssertionError(f"{type(self).__name__}: set `module` to the module object (or a factory)")
        module = given if isinstance(given, Module) else given()
        if not isinstance(module, Module):
            raise AssertionError(f"{type(self).__name__}: `module` expected a wiredraw.core.module.Module, "
                                 f"got {module!r}")
        return module

    def load_vectors(self) -> ModuleVectors:
        if self.vectors is None:
            raise AssertionError(f"{type(self).__name__}: set `vectors` to the module's message vectors file")
        try:
            return load_vectors(self.vectors)
        except VectorFileError as exc:
            raise AssertionError(str(exc)) from None

    def readme_path(self, module: Module) -> Path:
        if self.readme is not None:
            return Path(self.readme)
        return Path(inspect.getfile(type(module))).with_name("README.md")

    # -- 1. declaration ----------------------------------------------------------------------------------------

    def test_declaration_loads_and_matches_registry(self) -> None:
        module = self.make_module()
        spec = module.spec
        problems = _Problems(getattr(spec, "slug", "?"))
        if not isinstance(spec, ModuleSpec):
            raise AssertionError(f"module.spec expected a ModuleSpec, got {spec!r}")
        if not spec.source_path:
            problems.add("module.spec has no source_path: declare the module in a TOML spec file (spec_path)")
        else:
            try:
                declared = load_module_spec(spec.source_path)
            except SpecError as exc:
                problems.add(f"its declaration does not load: {exc}")
            else:
                if declared.as_dict() != spec.as_dict():
                    problems.add(f"module.spec differs from its declaration file {spec.source_path}")
        registry = load_registry()
        try:
            validate_module(module, f"{spec.slug} (conformance)", registry)
        except PluginError as exc:
            problems.add(f"the registry refuses it: {exc}")
        registered = registry.ids.get(spec.id)
        if registered is not None and registered != spec.slug:
            problems.add(f"id {spec.id} is registered to {registered!r} in spec/registry.toml, not {spec.slug!r}")
        block = registry.block_of(spec.id)
        if registered is None and (block is None or block.name not in ("development", "private")):
            problems.add(f"id {spec.id} is not in spec/registry.toml: use 999 (development) or the private block "
                         f"1000-65535, or register it")
        for template in spec.keys:
            if not template.template.startswith(spec.prefix):
                problems.add(f"key template {template.template!r} is outside the module's prefix {spec.prefix}")
        if not spec.messages:
            problems.add("it declares no message type")
        if not spec.keys:
            problems.add("it declares no key template")
        problems.check()

    def test_registers_through_its_entry_point(self) -> None:
        if self.entry_point is None:
            pytest.skip("no entry_point given")
        module = self.make_module()
        loaded = load_modules(env={"WIREDRAW_LOAD_PLUGINS": self.entry_point})
        got = loaded.get(module.spec.slug)
        problems = _Problems(module.spec.slug)
        for name, error in loaded.broken:
            problems.add(f"entry point {name!r} is broken: {error}")
        if got is None:
            problems.add(f"entry point {self.entry_point!r} (group wiredraw.modules) registers no module "
                         f"{module.spec.slug!r}")
        elif got.plugin != self.entry_point or type(got.module) is not type(module):
            problems.add(f"module {module.spec.slug!r} comes from plugin {got.plugin!r} as "
                         f"{type(got.module).__name__}, expected {self.entry_point!r} as {type(module).__name__}")
        problems.check()

    # -- 2. vectors cover the declaration --------------------------------------------------------------------

    def test_vectors_cover_every_message_type(self) -> None:
        spec = self.make_module().spec
        vectors = self.load_vectors()
        problems = _Problems(spec.slug)
        where = vectors.path
        if vectors.module and vectors.module != spec.slug:
            problems.add(f"{where} holds vectors of module {vectors.module!r}, not {spec.slug!r}")
        for mtype in vectors.types:
            if mtype not in spec.messages:
                problems.add(f"vector for undeclared message type {mtype!r} in {where} (declared: "
                             f"{', '.join(sorted(spec.messages)) or 'none'})")
        for mtype, mspec in spec.messages.items():
            if not vectors.valid.get(mtype):
                problems.add(f"message type {mtype!r} has no valid vector in {where}")
            if not vectors.invalid.get(mtype):
                problems.add(f"message type {mtype!r} has no invalid vector in {where}")
            seen = {k for v in vectors.valid.get(mtype, []) if isinstance(v.message, dict) for k in v.message}
            for fname in mspec.fields:
                if vectors.valid.get(mtype) and fname not in seen:
                    problems.add(f"field {fname!r} of message type {mtype!r} appears in no valid vector in {where}")
        problems.check()

    # -- 3. valid vectors validate and round-trip; invalid ones are refused, with the protocol's error only -------

    def test_valid_vectors_validate_and_round_trip(self) -> None:
        spec = self.make_module().spec
        problems = _Problems(spec.slug)
        for v in self._declared(self.load_vectors().all_valid()):
            why = validate_message(spec.messages[v.message_type], v.message)
            if why is not None:
                problems.add(f"valid vector {v} is refused by the declaration: {why}")
                continue
            try:
                body = wire.encode_body([v.message])
            except ValueError as exc:
                problems.add(f"valid vector {v} cannot be encoded as a wire body: {exc}")
                continue
            try:
                (back,) = wire.decode_body(body)
            except wire.WireError as exc:
                problems.add(f"valid vector {v}: its wire body does not decode: {exc}")
                continue
            if not _same(back, v.message):
                problems.add(f"valid vector {v} changes through the wire body encoding: {_short(back)}")
            elif validate_message(spec.messages[v.message_type], back) is not None:
                problems.add(f"valid vector {v} is refused after the wire body round trip")
        problems.check()

    def test_invalid_vectors_are_refused(self, conformance_redis: RedisKit) -> None:
        module = self.make_module()
        spec = module.spec
        problems = _Problems(spec.slug)
        writer = _Writer(module, conformance_redis, self.probe_id)
        for v in self._declared(self.load_vectors().all_invalid()):
            why = validate_message(spec.messages[v.message_type], v.message)
            if why is None:
                problems.add(f"invalid vector {v} is accepted by the declaration (expected refused for "
                             f"{v.reason!r})")
            elif v.reason not in why:
                problems.add(f"invalid vector {v} is refused for {why!r}, the vector expects {v.reason!r}")
            # The server's own write path must refuse it too (the module's Lua, for a module that takes bodies).
            conformance_redis.flush()
            outcome = writer.write(v.message_type, [v.message])
            if outcome.error:
                problems.add(f"invalid vector {v}: {outcome.error}")
                continue
            if not outcome.refused and outcome.counts is not None and not outcome.counts.rejected:
                problems.add(f"invalid vector {v} is taken by the module's write path ({_counts(outcome.counts)}); "
                             f"expected it refused for {v.reason!r}")
            written = conformance_redis.keys()
            if written:
                problems.add(f"invalid vector {v} wrote keys {', '.join(written[:5])}")
        problems.check()

    def test_bad_input_raises_only_the_protocol_error(self, conformance_redis: RedisKit) -> None:
        """Mangled bodies and messages whose fields hold the wrong values or are missing: the server's path refuses
        them (WireError) or counts them rejected, or takes them; nothing else may escape, and Redis must not refuse
        the module's commands."""
        module = self.make_module()
        spec = module.spec
        problems = _Problems(spec.slug)
        writer = _Writer(module, conformance_redis, self.probe_id)
        by_type: dict[str, list[Any]] = {}
        for v in self._declared(self.load_vectors().all_valid()):
            by_type.setdefault(v.message_type, []).append(v.message)
        for mtype, messages in by_type.items():
            body = writer.body(mtype, messages)
            bodies = [body[:n] for n in sorted({0, 1, len(body) // 2, len(body) - 1}) if n < len(body)]
            bodies += [b"\xc1", msgpack.packb([None]), msgpack.packb({"a": 1}), msgpack.packb([{1: 2}]),
                       msgpack.packb([]), body + b"\x00", msgpack.packb([[1, 2]])]
            for bad in bodies:
                try:
                    decoded = wire.decode_body(bad)
                except wire.WireError:
                    decoded = None
                except Exception as exc:
                    problems.add(f"decode_body raised {type(exc).__name__} (not WireError) on {bad[:40]!r}")
                    continue
                if decoded is not None and _same(decoded, messages):
                    continue  # a cut that left a whole body
                outcome = writer.write_body(mtype, bad)
                if outcome.error:
                    problems.add(f"a mangled {mtype!r} body {bad[:40]!r}: {outcome.error}")
            for message in messages[:3]:
                if not isinstance(message, dict):
                    continue
                for fname in list(message):
                    variants = [{k: val for k, val in message.items() if k != fname}]
                    variants += [{**message, fname: bad_value} for bad_value in _BAD_VALUES]
                    for variant in variants:
                        outcome = writer.write(mtype, [variant])
                        if outcome.error:
                            problems.add(f"a {mtype!r} message with {fname}={_short(variant.get(fname, '<missing>'))}"
                                         f": {outcome.error}")
                            break  # one per field is enough to say it
        problems.check()

    # -- 4. keys ---------------------------------------------------------------------------------------------

    def test_keys_written_match_declared_templates(self, conformance_redis: RedisKit) -> None:
        module = self.make_module()
        spec = module.spec
        problems = _Problems(spec.slug)
        writer = _Writer(module, conformance_redis, self.probe_id)
        problems.items += writer.script_problems
        for outcome in self._ingest_all(writer):
            if outcome.error:
                problems.add(outcome.error)
            elif outcome.refused or (outcome.counts is not None and outcome.counts.rejected):
                problems.add(f"valid {outcome.message_type!r} messages are refused by the module's write path: "
                             f"{outcome.refused or _counts(outcome.counts)}")
        keys = conformance_redis.keys()
        if not keys:
            problems.add("the valid vectors wrote no key at all")
        for key in keys:
            if not key.startswith(spec.prefix):
                problems.add(f"key {key!r} is outside the module's prefix {spec.prefix}")
                continue
            template = spec.key_matches(key)
            if template is None:
                problems.add(f"key {key!r} matches no declared template")
                continue
            kind = conformance_redis.execute("TYPE", key)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind != template.type:
                problems.add(f"key {key!r} is a {kind}, its template {template.template!r} declares {template.type}")
            ttl = int(conformance_redis.execute("TTL", key))
            if template.ttl is None and ttl != -1:
                problems.add(f"key {key!r} has a TTL ({ttl} s), its template {template.template!r} declares none")
            elif template.ttl is not None and not 0 < ttl <= template.ttl:
                problems.add(f"key {key!r} has TTL {ttl}, its template {template.template!r} declares "
                             f"{template.ttl} s")
        problems.check()

    # -- 5. translation ----------------------------------------------------------------------------------------

    def test_translation_gives_declared_kinds(self, conformance_redis: RedisKit) -> None:
        module = self.make_module()
        spec = module.spec
        store = conformance_redis.store()
        try:
            viz = module.make_view(store, dict(self.view_options))
            if viz is None:
                pytest.skip(f"module {spec.slug!r} has no view translation")
            self._check_translation(module, viz, conformance_redis)
        finally:
            store.close()

    def _check_translation(self, module: Module, viz: ModuleView, kit: RedisKit) -> None:
        spec = module.spec
        problems = _Problems(spec.slug)
        if not isinstance(viz, ModuleView):
            raise AssertionError(f"module {spec.slug!r}: make_view expected a ModuleView, got {viz!r}")
        node_kinds, edge_kinds = set(viz.node_kinds), set(viz.edge_kinds)
        if not node_kinds:
            problems.add(f"{type(viz).__name__} declares no node_kinds")
        for pattern in viz.watch_keys:
            if not pattern.startswith(spec.prefix):
                problems.add(f"watch key {pattern!r} is outside the module's prefix {spec.prefix}")
            elif not any(fnmatch.fnmatchcase(t.template, pattern) or t.regex().match(pattern) for t in spec.keys):
                problems.add(f"watch key {pattern!r} matches no declared key template")
        if viz.watch_keys and not spec.notify_classes:
            problems.add("its viz watches keys but the declaration has no notify_classes")
        problems.check()

        # The server starts on an empty store, then messages arrive and their keyspace events are translated.
        live = self._graph(problems, "live_graph(None) on an empty store", viz.live_graph(None))
        writer = _Writer(module, kit, self.probe_id)
        watched = [p for p in viz.watch_keys if p.startswith(spec.prefix)]
        with keyspace_events(kit.url, watched, spec.notify_classes) as events:
            for outcome in self._ingest_all(writer):
                if outcome.error:
                    problems.add(outcome.error)
        problems.check()
        changes: list[Change] = []
        if live is not None:
            for i in range(0, len(events), _EVENT_BATCH):
                try:
                    change = run(viz.on_events(events[i:i + _EVENT_BATCH], live))
                except Exception as exc:
                    problems.add(f"on_events raised {type(exc).__name__}: {exc}")
                    break
                if not isinstance(change, Change):
                    problems.add(f"on_events expected a Change, got {change!r}")
                    break
                changes.append(change)
                live.apply(change)
            self._check_graph(problems, "the live graph after the recorded keyspace events", live, node_kinds,
                              edge_kinds)
            for change in changes:
                for n in change.nodes:
                    if n.kind not in node_kinds:
                        problems.add(f"on_events upserts node {n.id!r} of kind {n.kind!r}, not one of node_kinds "
                                     f"{sorted(node_kinds)}")
                for e in change.edges:
                    if e.kind not in edge_kinds:
                        problems.add(f"on_events upserts edge {e.id!r} of kind {e.kind!r}, not one of edge_kinds "
                                     f"{sorted(edge_kinds)}")
                for p in change.pulses:
                    if p.meaning not in PULSE_MEANINGS:
                        problems.add(f"on_events pulses {p.target!r} with meaning {p.meaning!r}, not one of "
                                     f"{PULSE_MEANINGS}")
        query = self._graph(problems, "graph(-inf, inf)", viz.graph(-math.inf, math.inf))
        if query is not None:
            self._check_graph(problems, "graph(-inf, inf)", query, node_kinds, edge_kinds)
            if self.expect_graph and not query.nodes:
                problems.add("graph(-inf, inf) is empty after ingesting the valid vectors (set expect_graph = False "
                             "if they give no graph)")
            follows_events = type(viz).on_events is not ModuleView.on_events  # else: periodic recomputes only
            if query.nodes and live is not None and not live.nodes and follows_events:
                problems.add(f"the live graph stayed empty through {len(events)} keyspace events while "
                             f"graph(-inf, inf) has {len(query.nodes)} nodes: do notify_classes "
                             f"{spec.notify_classes!r} and watch_keys {list(viz.watch_keys)} cover what it writes?")
        again = self._graph(problems, "live_graph(None)", viz.live_graph(None))
        if again is not None:
            self._check_graph(problems, "live_graph(None) after ingest", again, node_kinds, edge_kinds)
        problems.check()

    @staticmethod
    def _graph(problems: _Problems, what: str, coro: Any) -> Graph | None:
        try:
            graph = run(coro)
        except Exception as exc:
            problems.add(f"{what} raised {type(exc).__name__}: {exc}")
            return None
        if not isinstance(graph, Graph):
            problems.add(f"{what} expected a Graph, got {graph!r}")
            return None
        return graph

    @staticmethod
    def _check_graph(problems: _Problems, what: str, graph: Graph, node_kinds: set[str], edge_kinds: set[str]) -> None:
        for n in graph.nodes.values():
            if n.kind not in node_kinds:
                problems.add(f"{what}: node {n.id!r} has kind {n.kind!r}, not one of node_kinds {sorted(node_kinds)}")
        for e in graph.edges.values():
            if e.kind not in edge_kinds:
                problems.add(f"{what}: edge {e.id!r} has kind {e.kind!r}, not one of edge_kinds {sorted(edge_kinds)}")
            for end in (e.src, e.dst):
                if end not in graph.nodes:
                    problems.add(f"{what}: edge {e.id!r} has endpoint {end!r}, which is not a node")

    # -- 6. README -------------------------------------------------------------------------------------------

    def test_readme_has_fixed_sections(self) -> None:
        module = self.make_module()
        spec = module.spec
        path = self.readme_path(module)
        problems = _Problems(spec.slug)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AssertionError(f"module {spec.slug!r}: cannot read its README {path}: {exc}") from None
        sections: dict[str, str] = {}
        order: list[str] = []
        current: str | None = None
        for line in text.splitlines():
            m = re.match(r"^## +(.+?)\s*#*\s*$", line)
            if m:
                current = m.group(1)
                order.append(current)
                sections[current] = ""
            elif current is not None:
                sections[current] += line + "\n"
        missing = [s for s in README_SECTIONS if s not in sections]
        for s in missing:
            problems.add(f"README {path} has no section '## {s}'")
        present = [s for s in order if s in README_SECTIONS]
        if not missing and present != list(README_SECTIONS):
            problems.add(f"README {path} has its sections in the order {present}, expected {list(README_SECTIONS)}")
        if "ID" in sections and not re.search(rf"(?<!\d){spec.id}(?!\d)", sections["ID"]):
            problems.add(f"README {path}: section 'ID' does not give the module's id {spec.id}")
        if "Messages" in sections:
            for mtype in spec.messages:
                if mtype not in sections["Messages"]:
                    problems.add(f"README {path}: section 'Messages' does not name message type {mtype!r}")
        problems.check()

    # -- helpers ---------------------------------------------------------------------------------------------

    def _declared(self, vectors: list[Vector]) -> list[Vector]:
        """The vectors of declared message types (the others are test_vectors_cover_every_message_type's)."""
        declared = self.make_module().spec.messages
        return [v for v in vectors if v.message_type in declared]

    def _ingest_all(self, writer: _Writer) -> list[_Outcome]:
        """The valid vectors, type by type in file order, then the samples in runs of one type."""
        outcomes = []
        vectors = self.load_vectors()
        for mtype, vs in vectors.valid.items():
            if mtype in writer.spec.messages and vs:
                outcomes.append(writer.write(mtype, [v.message for v in vs]))
        runs: list[tuple[str, list[Any]]] = []
        for mtype, message in self.samples:
            if not runs or runs[-1][0] != mtype:
                runs.append((mtype, []))
            runs[-1][1].append(message)
        outcomes += [writer.write(mtype, messages) for mtype, messages in runs]
        return outcomes


def _counts(counts: IngestCounts | None) -> str:
    if counts is None:
        return "no counts"
    return (f"records {counts.records}, written {counts.written}, repeats {counts.repeats}, rejected "
            f"{counts.rejected or 0}")


class _Outcome:
    def __init__(self, message_type: str, counts: IngestCounts | None = None, refused: str | None = None,
                 error: str | None = None) -> None:
        self.message_type, self.counts, self.refused, self.error = message_type, counts, refused, error


class _Writer:
    """The server's write path for one module (core/server/ingest.py): the probe's packing (Batcher), ``Ingest.prepare``
    (the module's ``write``, with the core's decoding and validation) and ``Ingest.commit`` (one MULTI/EXEC) into the
    kit's Redis, with the module's Lua scripts loaded first as the server does on every connection."""

    def __init__(self, module: Module, kit: RedisKit, probe_id: str) -> None:
        self.module, self.kit, self.probe_id = module, kit, probe_id
        self.spec = module.spec
        self.loaded = LoadedModule(module, f"{self.spec.slug} (conformance)")
        self.clock = _Clock()
        self.ingest = Ingest(ModuleSet(), lambda probe: None, kit, self.clock)
        self.script_problems: list[str] = []
        for script in module.scripts:
            try:
                sha = kit.execute("SCRIPT", "LOAD", script.source)
            except Exception as exc:
                self.script_problems.append(f"script {script.name!r} does not load into Redis: {exc}")
                continue
            sha = sha.decode() if isinstance(sha, bytes) else sha
            if sha != script.sha:
                self.script_problems.append(f"script {script.name!r} loads as {sha}, its sha says {script.sha}")

    def body(self, message_type: str, messages: list[Any]) -> bytes:
        batcher = Batcher(len(messages) or 1, wire.DEFAULT_LIMITS.max_frame_bytes - wire.MAX_ENVELOPE_BYTES,
                          self.spec.bin_as_str)
        batches = batcher.batches([(message_type, m) for m in messages])
        if len(batches) != 1:
            raise AssertionError(f"module {self.spec.slug!r}: {len(messages)} {message_type!r} messages do not fit "
                                 f"one frame body")
        return batches[0][1]

    def write(self, message_type: str, messages: list[Any]) -> _Outcome:
        return self.write_body(message_type, self.body(message_type, messages))

    def write_body(self, message_type: str, body: bytes) -> _Outcome:
        try:
            batch = self.ingest.prepare(self.loaded, self.probe_id, message_type, body)
        except Refused as exc:
            cause = exc.__cause__
            if isinstance(cause, wire.WireError):
                return _Outcome(message_type, refused=exc.reason)
            return _Outcome(message_type, error=f"the module raised {type(cause).__name__}: {cause} "
                                                f"(bad input must raise only the protocol's error, WireError)")
        except Exception as exc:
            return _Outcome(message_type, error=f"the write path raised {type(exc).__name__}: {exc}")
        try:
            counts = fired(self.ingest.commit(batch))
        except Exception as exc:
            return _Outcome(message_type, error=f"Redis refused the module's commands: {type(exc).__name__}: {exc}")
        return _Outcome(message_type, counts=counts)


class _Clock:
    """What Ingest reads the time from: now, for the ingest context's received_at."""

    def seconds(self) -> float:
        return time.time()


#: Every check of the suite, by name, except the entry-point one (it needs the module installed): what
#: :func:`run_check` can run outside pytest, derived from the class so that a new check is never left out.
CHECKS: tuple[str, ...] = tuple(name for name in vars(ModuleConformance)
                                if name.startswith("test_") and name != "test_registers_through_its_entry_point")


def run_check(suite: ModuleConformance, check: str) -> None:
    """Run one check of ``suite`` outside pytest (a test of the suite itself, a scaffold's smoke test): the checks
    that need the kit's Redis get a fresh :class:`~wiredraw.testing.redis.RedisKit`."""
    method = getattr(suite, check)
    if "conformance_redis" in method.__code__.co_varnames[: method.__code__.co_argcount]:
        kit = RedisKit.shared()
        try:
            method(kit)
        finally:
            kit.close()
    else:
        method()
