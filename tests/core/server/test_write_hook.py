"""One write-path hook, ``Module.write(ctx, body, batch)``: a module that hands the packed body to its Lua script and
a module that writes the validated messages go through the same hook and the same server path (``Ingest.prepare``,
``Ingest.commit``), and /stats counts both alike (records, written, repeats, rejected by reason)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from twisted.internet.task import Clock
from wiredraw.core import wire
from wiredraw.core.module import (
    Body,
    FieldSpec,
    IngestContext,
    IngestCounts,
    KeySchema,
    KeyTemplate,
    MessageSpec,
    Module,
    ModuleSpec,
    Script,
    WriteBatch,
)
from wiredraw.core.plugins import LoadedModule, ModuleSet, PluginError, load_registry, validate_module
from wiredraw.core.server.ingest import Ingest, Refused
from wiredraw.testing import RedisKit
from wiredraw.testing.redis import fired

EVENT = MessageSpec("event", "a named thing", {"name": FieldSpec("name", "str")})
SPEC = ModuleSpec(1000, "hook_demo", "0.1.0", "", {"event": EVENT},
                  (KeyTemplate("wd:hook_demo:{name}", "string", 60),))

# The Lua side of a module that applies bodies in Redis: it reads the body as the probe packed it.
COUNT = Script("count", """
local messages = cmsgpack.unpack(ARGV[1])
local new, repeats, bad = 0, 0, 0
for _, m in ipairs(messages) do
  if type(m) ~= 'table' or type(m.name) ~= 'string' then
    bad = bad + 1
  elseif redis.call('SET', 'wd:hook_demo:' .. m.name, ARGV[2], 'NX', 'EX', 60) then
    new = new + 1
  else
    repeats = repeats + 1
  end
end
return {#messages, new, repeats, bad}
""")


def count_reply(reply: Any) -> IngestCounts:
    records, new, repeats, bad = (int(x) for x in reply)
    return IngestCounts(records=records, written=new, repeats=repeats,
                        rejected={"field 'name': expected str, got int": bad} if bad else {})


class PackedSchema(KeySchema):
    """Hands ``body.packed`` whole to its script; counts come back in the reply."""

    scripts = (COUNT,)

    def write(self, ctx: IngestContext, body: Body, batch: WriteBatch) -> None:
        batch.script(COUNT, body.packed, ctx.probe_id, on_reply=count_reply)


def set_reply(reply: Any) -> IngestCounts:
    return IngestCounts(written=1) if reply in (b"OK", "OK", True) else IngestCounts(repeats=1)


class RecordsSchema(KeySchema):
    """Writes ``body.messages()``, which the core decoded and validated (and counted)."""

    def write(self, ctx: IngestContext, body: Body, batch: WriteBatch) -> None:
        for m in body.messages():
            batch.add("SET", "wd:hook_demo:" + m["name"], ctx.probe_id, "NX", "EX", 60, on_reply=set_reply)


class HookDemo(Module):
    def __init__(self, schema: KeySchema) -> None:
        super().__init__(SPEC)
        self.schema = schema


@pytest.fixture
def kit():
    kit = RedisKit.shared()
    try:
        yield kit
    finally:
        kit.close()


def write(kit: RedisKit, module: Module, bodies: list[bytes]) -> tuple[Ingest, list[IngestCounts]]:
    """The server's write path for each body, as for a probe's frames, with the module's scripts loaded first."""
    for script in module.scripts:
        kit.execute("SCRIPT", "LOAD", script.source)
    ingest = Ingest(ModuleSet(), lambda probe: None, kit, Clock())
    loaded = LoadedModule(module, "hook_demo")
    return ingest, [fired(ingest.commit(ingest.prepare(loaded, "p1", "event", body))) for body in bodies]


BODY = msgpack.packb([{"name": "a"}, {"name": "b"}, {"name": 5}], use_bin_type=False)


@pytest.mark.parametrize("schema", [PackedSchema, RecordsSchema])
def test_a_packed_body_and_validated_messages_count_alike_through_the_one_hook(kit, schema):
    ingest, (first, again) = write(kit, HookDemo(schema()), [BODY, BODY])
    assert (first.records, first.written, first.repeats) == (3, 2, 0)
    assert (again.records, again.written, again.repeats) == (3, 0, 2)
    assert first.rejected == again.rejected == {"field 'name': expected str, got int": 1}
    stats = ingest.stats.as_dict()
    assert {k: stats[k] for k in ("records_received", "records_written", "records_repeated", "records_rejected",
                                  "write_batches")} == {
        "records_received": 6, "records_written": 2, "records_repeated": 2, "records_rejected": 2, "write_batches": 2}
    assert stats["records_rejected_by_reason"] == {"hook_demo.event: field 'name': expected str, got int": 2}
    assert kit.keys() == ["wd:hook_demo:a", "wd:hook_demo:b"]


def test_a_body_that_does_not_decode_is_refused_as_bad_body(kit):
    ingest = Ingest(ModuleSet(), lambda probe: None, kit, Clock())
    with pytest.raises(Refused) as info:
        ingest.prepare(LoadedModule(HookDemo(RecordsSchema()), "hook_demo"), "p1", "event", b"\xc1")
    assert info.value.reason == "bad_body" and isinstance(info.value.__cause__, wire.WireError)


def test_body_messages_are_decoded_once_and_counted():
    body = Body(BODY, EVENT)
    assert body.counts == IngestCounts()  # nothing decoded until a module asks
    assert body.messages() == [{"name": "a"}, {"name": "b"}]
    assert body.messages() is body.messages()
    assert body.counts == IngestCounts(records=3, rejected={"field 'name': expected str, got int": 1})
    with pytest.raises(wire.WireError, match="bad_body|empty"):
        Body(msgpack.packb([]), EVENT).messages()


def test_the_host_checks_a_module_s_parts_at_once():
    class Mixed(Module):
        pass

    module = Mixed(SPEC)
    assert validate_module(module, "demo", load_registry()) is module  # no parts: fine
    module.schema = RecordsSchema()
    assert validate_module(module, "demo", load_registry()) is module
    module.schema = object()
    with pytest.raises(PluginError, match="plugin 'demo': module.schema expected a wiredraw.core.module.KeySchema"):
        validate_module(module, "demo", load_registry())
