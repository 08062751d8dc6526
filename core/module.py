"""What a module is: its declaration (loaded from its spec file) and the object a plugin registers.

A module owns one numeric ID and brings its wire messages, its Redis key schema and its view translation
(:mod:`wiredraw.core.graph`). The declaration lives in a TOML spec file so that a probe in another language can be
written from spec/ alone; the Python object only points at it and adds behaviour.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Protocol, runtime_checkable

from wiredraw.core import wire

if TYPE_CHECKING:
    from wiredraw.core.graph import ModuleView

SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
MESSAGE_RE = re.compile(r"^[a-z0-9_.]{1,64}$")
# "raw": bytes carried as a msgpack str (not UTF-8): what a body handed to Redis Lua needs, since
# Redis 6.2's cmsgpack cannot read the bin type.
FIELD_TYPES = ("str", "int", "float", "number", "bool", "bin", "raw", "map", "array", "any")
KEY_TYPES = ("string", "hash", "set", "zset", "list", "stream")
NOTIFY_CLASSES = set("g$lshzxetmd")


class SpecError(ValueError):
    """A module declaration that does not hold: names the module, the field, what was expected and came."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    required: bool = True
    nullable: bool = False
    doc: str = ""


@dataclass(frozen=True)
class MessageSpec:
    name: str
    doc: str
    fields: Mapping[str, FieldSpec]


@dataclass(frozen=True)
class KeyTemplate:
    """One Redis key template, e.g. ``wd:net_zeek:host:{ip}``, with its Redis type and TTL."""

    template: str
    type: str
    ttl: int | None
    doc: str = ""

    def regex(self) -> re.Pattern[str]:
        parts = re.split(r"(\{[a-z_][a-z0-9_]*\})", self.template)
        body = "".join("[^\\s]+" if p.startswith("{") else re.escape(p) for p in parts if p)
        return re.compile(f"^{body}$")


@dataclass(frozen=True)
class ModuleSpec:
    id: int
    slug: str
    version: str
    doc: str
    messages: Mapping[str, MessageSpec]
    keys: tuple[KeyTemplate, ...]
    notify_classes: str = ""
    source_path: str = ""
    bin_as_str: bool = False  # probes pack bytes as msgpack str (for bodies applied by Redis Lua)

    @property
    def prefix(self) -> str:
        return key_prefix(self.slug)

    def key_matches(self, key: str) -> KeyTemplate | None:
        for template in self.keys:
            if template.regex().match(key):
                return template
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "slug": self.slug,
            "version": self.version,
            "doc": self.doc,
            "messages": {
                name: {
                    "doc": m.doc,
                    "fields": {
                        f.name: {"type": f.type, "required": f.required, "nullable": f.nullable, "doc": f.doc}
                        for f in m.fields.values()
                    },
                }
                for name, m in sorted(self.messages.items())
            },
            "keys": [{"template": k.template, "type": k.type, "ttl": k.ttl, "doc": k.doc} for k in self.keys],
            "notify_classes": self.notify_classes,
            "bin_as_str": self.bin_as_str,
        }


def key_prefix(slug: str) -> str:
    """Every key a module writes starts with this (the core's own keys use the slug ``core``)."""
    return f"wd:{slug}:"


def _expect(cond: bool, where: str, what: str, got: object) -> None:
    if not cond:
        raise SpecError(f"{where}: expected {what}, got {got!r}")


def load_module_spec(path: Path | str) -> ModuleSpec:
    """Load and check a module declaration (``<slug>.toml`` in the module's package)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"{path}: cannot read module spec: {exc}") from exc
    where = str(path)
    slug: Any = raw.get("slug")
    _expect(isinstance(slug, str) and bool(SLUG_RE.match(slug)), f"{where}: slug", "lower_snake_case", slug)
    mid: Any = raw.get("id")
    _expect(isinstance(mid, int) and 0 <= mid <= 65535, f"{where}: id", "an integer 0..65535", mid)
    version: Any = raw.get("version")
    _expect(isinstance(version, str) and bool(version), f"{where}: version", "a version string", version)
    notify = raw.get("notify_classes", "")
    _expect(isinstance(notify, str) and set(notify) <= NOTIFY_CLASSES, f"{where}: notify_classes",
            f"letters from {''.join(sorted(NOTIFY_CLASSES))}", notify)
    messages: dict[str, MessageSpec] = {}
    for name, m in (raw.get("messages") or {}).items():
        mwhere = f"{where}: messages.{name}"
        _expect(bool(MESSAGE_RE.match(name)), mwhere, "a name matching [a-z0-9_.]{1,64}", name)
        fields: dict[str, FieldSpec] = {}
        for fname, f in (m.get("fields") or {}).items():
            fwhere = f"{mwhere}.fields.{fname}"
            _expect(isinstance(f, dict), fwhere, "a table", f)
            _expect(f.get("type") in FIELD_TYPES, f"{fwhere}.type", f"one of {FIELD_TYPES}", f.get("type"))
            fields[fname] = FieldSpec(fname, f["type"], bool(f.get("required", True)),
                                      bool(f.get("nullable", False)), str(f.get("doc", "")))
        messages[name] = MessageSpec(name, str(m.get("doc", "")), fields)
    keys: list[KeyTemplate] = []
    prefix = key_prefix(slug)
    for i, k in enumerate(raw.get("keys") or []):
        kwhere = f"{where}: keys[{i}]"
        template = k.get("template")
        _expect(isinstance(template, str) and template.startswith(prefix), f"{kwhere}.template",
                f"a key template under the module's prefix {prefix!r}", template)
        _expect(k.get("type") in KEY_TYPES, f"{kwhere}.type", f"one of {KEY_TYPES}", k.get("type"))
        ttl = k.get("ttl")
        _expect(ttl is None or (isinstance(ttl, int) and ttl > 0), f"{kwhere}.ttl", "seconds > 0 or absent", ttl)
        keys.append(KeyTemplate(template, k["type"], ttl, str(k.get("doc", ""))))
    bin_as_str = raw.get("bin_as_str", False)
    _expect(isinstance(bin_as_str, bool), f"{where}: bin_as_str", "true or false", bin_as_str)
    return ModuleSpec(int(mid), str(slug), str(version), str(raw.get("doc", "")), messages, tuple(keys), notify,
                      str(path), bin_as_str)


# ----------------------------------------------------------------------------------------------
# What a module plugin registers


@dataclass
class WriteBatch:
    """Redis commands a module's ingest produces for one frame; the core sends them in one round trip.

    Each command is a tuple of str/bytes/int/float, e.g. ``("SADD", key, probe_id)``.
    """

    spec: ModuleSpec
    message_type: str = ""
    commands: list[tuple[Any, ...]] = field(default_factory=list)
    # What is known before the write (the core's decoding and validation) ...
    counts: IngestCounts = field(default_factory=lambda: IngestCounts())
    # ... and what a command's reply tells: (index in commands, reply -> IngestCounts)
    reply_handlers: list[tuple[int, Callable[[Any], IngestCounts]]] = field(default_factory=list)

    def add(self, *command: Any, on_reply: Callable[[Any], IngestCounts] | None = None) -> None:
        """One command; ``on_reply`` turns its reply into counts (e.g. :func:`count_new`)."""
        if on_reply is not None:
            self.reply_handlers.append((len(self.commands), on_reply))
        self.commands.append(command)

    def script(self, script: Script, *args: Any, on_reply: Callable[[Any], IngestCounts] | None = None) -> None:
        """Run one of the module's Lua scripts (EVALSHA by its :attr:`Script.sha`), no KEYS."""
        if on_reply is not None:
            self.reply_handlers.append((len(self.commands), on_reply))
        self.commands.append(("EVALSHA", script.sha, 0, *args))


def count_new(reply: Any) -> IngestCounts:
    """The reply of HSETNX, SETNX or SADD as a record's count: 1 = written anew, else a repeat."""
    return IngestCounts(written=1) if reply == 1 else IngestCounts(repeats=1)


@dataclass
class IngestCounts:
    """What a module's write did, for /stats: records seen, written anew, repeats, rejected by reason."""

    records: int = 0
    written: int = 0
    repeats: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def add(self, other: IngestCounts) -> IngestCounts:
        self.records += other.records
        self.written += other.written
        self.repeats += other.repeats
        for why, n in other.rejected.items():
            self.rejected[why] = self.rejected.get(why, 0) + n
        return self


@dataclass(frozen=True)
class IngestContext:
    probe_id: str
    message_type: str
    received_at: float


class Body:
    """One frame's body as the server received it, handed to a module's write path (:meth:`Module.write`).

    :attr:`packed` is the msgpack array of messages as the probe sent it: a module that applies bodies in Redis Lua
    hands it on unchanged (and counts from the script's reply). :meth:`messages` is the core's reading of it, for a
    module that writes records from Python. Either way the write path is the same hook.
    """

    def __init__(self, packed: bytes, spec: MessageSpec, limits: wire.Limits = wire.DEFAULT_LIMITS) -> None:
        self.packed, self.spec, self.limits = packed, spec, limits
        #: What decoding and validation found (records, rejected by reason); the core adds it to the batch's counts.
        self.counts = IngestCounts()
        self._messages: list[dict[str, Any]] | None = None

    def messages(self) -> list[dict[str, Any]]:
        """The body's messages that hold to their declaration (types, required fields), decoded once under the
        server's limits; the others are counted rejected, by reason. Raises WireError (``bad_body``) for a body that
        does not decode: the core refuses the frame."""
        if self._messages is None:
            decoded = wire.decode_body(self.packed, self.limits)
            good: list[dict[str, Any]] = []
            rejected = self.counts.rejected
            for message in decoded:
                why = validate_message(self.spec, message)
                if why is None:
                    good.append(message)
                else:
                    rejected[why] = rejected.get(why, 0) + 1
            self.counts.records += len(decoded)
            self._messages = good
        return self._messages


def script_sha(source: str) -> str:
    """The SHA-1 Redis knows a Lua script by (EVALSHA); computed here, so no round trip is needed."""
    return hashlib.sha1(source.encode()).hexdigest()


@dataclass(frozen=True)
class Script:
    """A Lua script a module's write path runs in Redis: the server loads ``source`` on every connection to Redis
    (a restarted Redis has forgotten it), and :meth:`WriteBatch.script` runs it by :attr:`sha`."""

    name: str
    source: str
    sha: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", script_sha(self.source))

    @classmethod
    def from_package(cls, package: str, filename: str) -> Script:
        """The script in file ``filename`` of ``package`` (e.g. ``ingest.lua``), named by its stem."""
        from importlib.resources import files

        return cls(filename.rsplit(".", 1)[0], (files(package) / filename).read_text(encoding="utf-8"))


class KeySchema:
    """A module's key schema on the server side: its write path, a part the module object holds
    (:attr:`Module.schema`). Built with the retention its history keeps; ``wiredraw server --retention-days``
    replaces :attr:`retention` before the server starts."""

    #: The Lua scripts :meth:`write` runs (the server loads them on every connection to Redis).
    scripts: ClassVar[tuple[Script, ...]] = ()
    #: Seconds the history keys are kept (their TTL, renewed by each write); None: the schema keeps no history.
    retention: int | None = None

    def write(self, ctx: IngestContext, body: Body, batch: WriteBatch) -> None:
        """Turn one frame's body into Redis commands on ``batch`` (see :meth:`Module.write`)."""
        raise NotImplementedError(f"{type(self).__name__} does not write yet")


class Collector:
    """A module's uploads, a part the module object holds (:attr:`Module.collector`): ``POST /<prefix>/<name>`` on
    the server's HTTP port is handed to :meth:`collect` (the collector token, size limit and counting are the
    core's), and the messages it returns go through the module's write path like a probe's frames."""

    prefix: str = ""

    def collect(self, name: str, body: BinaryIO) -> Collected:
        """Parse an uploaded body into (message type, message) pairs and the lines that could not be used."""
        raise NotImplementedError(f"{type(self).__name__} takes no uploads")


@runtime_checkable
class Source(Protocol):
    """What a probe runs to produce a module's messages. Polled by the runner, never blocking."""

    def poll(self, max_messages: int) -> list[tuple[str, dict[str, Any]]]:
        """Return up to ``max_messages`` (message type, message) pairs ready now, or []."""
        ...

    def finished(self) -> bool:
        """True once a finite source (a replay) has produced everything; live sources never finish."""
        ...

    def state(self) -> Any:
        """A JSON-able token for resuming right after the last message polled (None if not resumable)."""
        ...

    def restore(self, state: Any) -> None:
        """Resume from a token that :meth:`state` returned in an earlier run."""
        ...

    def close(self) -> None: ...


class Module:
    """Base class for a module plugin object. Subclasses set ``spec_path`` (or ``spec``), build their parts in
    ``__init__`` and override the factories they need.

    The parts are objects of their own, held rather than inherited: :attr:`schema` (the key schema's write path)
    and :attr:`collector` (uploads on the server's HTTP port). The probe options, source, demo and view are
    factories on the module itself.
    """

    spec_path: ClassVar[Path | str | None] = None
    #: The server-side write path (the module's key schema); None: the module writes nothing, or overrides write.
    schema: KeySchema | None = None
    #: Uploads on the server's HTTP port (``POST /<prefix>/<name>``); None: no route.
    collector: Collector | None = None

    def __init__(self, spec: ModuleSpec | None = None) -> None:
        if spec is None:
            if self.spec_path is None:
                raise SpecError(f"{type(self).__name__}: set spec_path or pass a ModuleSpec")
            spec = load_module_spec(self.spec_path)
        self.spec = spec

    # -- probe side ------------------------------------------------------------------------
    def add_probe_options(self, parser: argparse.ArgumentParser) -> None:
        """Add this module's own options to ``wiredraw probe <slug>``."""

    def make_source(self, options: argparse.Namespace) -> Source:
        raise NotImplementedError(f"module {self.spec.slug!r} has no probe source yet")

    def open_paths(self, request: OpenRequest) -> Opened | None:
        """``wiredraw open PATH…``: the source for these paths if they are this module's input (a live directory to
        follow, recorded files to replay), else None so another module may claim them. A ValueError says what
        cannot work (e.g. a missing path); it is shown to the user as it is."""
        return None

    # -- server side -----------------------------------------------------------------------
    def write(self, ctx: IngestContext, body: Body, batch: WriteBatch) -> None:
        """The write path, once per frame (or upload batch): turn ``body`` into Redis commands on ``batch``, which
        the core sends in one transaction with the probe's replay window. Read ``body.packed`` to hand the body on
        whole (e.g. to a Lua script, counting from its reply with ``on_reply``), or ``body.messages()`` for the
        validated messages (the core counts records and rejects). Count what is known before the write on
        ``batch.counts``, what a reply tells with ``on_reply``. The default is the module's :attr:`schema`."""
        if self.schema is None:
            raise NotImplementedError(f"module {self.spec.slug!r} does not write yet")
        self.schema.write(ctx, body, batch)

    @property
    def scripts(self) -> tuple[Script, ...]:
        """The Lua scripts the write path runs (the server loads them on every connection to Redis)."""
        return self.schema.scripts if self.schema is not None else ()

    # -- demo ------------------------------------------------------------------------------
    def make_demo(self, workdir: Path) -> Demo | None:
        """Realistic input for ``wiredraw demo``, written under ``workdir``, and the module's real source over it;
        None: the module has no demo."""
        return None

    # -- view side -------------------------------------------------------------------------
    def make_view(self, store: Any, options: Mapping[str, Any]) -> ModuleView | None:
        """The module's view translation for one server (see :class:`wiredraw.core.graph.ModuleView`); ``options``
        is the module's table from the server's ``--viz-config`` file. None: the module has no view."""
        return None


@dataclass
class Demo:
    """What ``wiredraw demo`` runs for a module: ``step(now)`` is called every ``interval`` seconds to produce
    more input (e.g. append to log files), and ``source`` is the module's own probe source reading it."""

    step: Callable[[float], Any]
    source: Source
    interval: float = 0.5
    describe: str = ""


@dataclass(frozen=True)
class OpenRequest:
    """What ``wiredraw open`` asks a module to open (:meth:`Module.open_paths`)."""

    paths: tuple[Path, ...]
    live: bool = False  # --live: follow the one directory given, whatever it looks like
    since: float | None = None  # --since: a live directory's archives from this time on (epoch seconds)
    speed: float | None = None  # recorded input at this many times event time; None: as fast as it is taken


@dataclass
class Opened:
    """What a module opened for ``wiredraw open``: its probe source and one line saying what it reads."""

    source: Source
    describe: str
    live: bool = False  # a source that never finishes (followed as written)


@dataclass
class Collected:
    """What :meth:`Module.collect` made of an upload: messages, and the lines it could not use."""

    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    bad_count: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason), the first few


def validate_message(spec: MessageSpec, message: Any) -> str | None:
    """Check one message against its declaration: None if good, else why not (for counters and logs)."""
    if not isinstance(message, dict):
        return "not a map"
    for f in spec.fields.values():
        if f.name not in message:
            if f.required:
                return f"missing field {f.name!r}"
            continue
        value = message[f.name]
        if value is None:
            if not f.nullable:
                return f"field {f.name!r} is nil"
            continue
        if not _type_ok(f.type, value):
            return f"field {f.name!r}: expected {f.type}, got {type(value).__name__}"
    return None


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "number"):  # NaN and infinities are not times or measures: refused
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "bin":
        return isinstance(value, bytes)
    if kind == "raw":
        return isinstance(value, (bytes, str))
    if kind == "map":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    return False
