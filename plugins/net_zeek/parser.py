"""Zeek log parsing: ASCII TSV (by its ``#fields``/``#types`` header) and JSON lines, whole files or line by line.

Why generated row functions, and why one file of over 600 lines
----------------------------------------------------------------
The TSV row functions are generated source (see :func:`_compile_row`) because it pays: measured with
``python3 bench/parse.py --lines 300000 --repeat 3`` (22-column conn.log), alternating this code with plain
closures (one converter call per column, ``dict(zip(names, map(operator.call, convs, parts)))``, no fused
``feed``; the same records and bad lines on 60 real logs), twice in one sitting, 2026-12-04:
read_log 272 vs 172 k lines/s (1.6x), iter_log 358 vs 205 (1.75x), LogStream.feed 220 vs 154 (1.4x).
The file stays whole (not split under ~600 lines) because the value rules below, the generated code that
applies them and the stream that switches between its fast and general paths are one contract, read together.

Entry points
------------
- :class:`LogStream` parses ONE log file's lines incrementally (the live-tailing probe feeds it).
- :func:`read_log` loads a whole file, :func:`iter_log` streams one; both are gzip-aware by magic bytes.
- :func:`sniff_log` tells a Zeek log (TSV or JSON lines) from other text found beside it (zeekctl's
  ``conn-summary.*`` reports).

One record whichever writer
---------------------------
The same Zeek run written by the ASCII writer as TSV and as JSON gives equal records (tests/plugins/net_zeek/
test_zeek_writers.py checks all 141,466 records of the pair in ../shared/data). The rule, on both sides:

- **Unset fields are left out** of ``fields``: TSV's unset marker and JSON's ``null`` (the JSON writer omits unset
  fields, and writes ``null`` only for the inf and nan it cannot spell) read as "no such field", never None or 0.
  Absent is what JSON already says, costs nothing to store (no key, no value packed on the wire) and reads the
  same through ``fields.get(name)``. ``ZeekRecord.ts``/``uid`` are None when unset. Inside a set or vector an
  unset element stays None (TSV ``-``, JSON ``null``): a vector's positions are data.
- **Floats are at microsecond resolution**, ``round(x, 6)``: Zeek keeps times as pcap's microseconds and its TSV
  writer gives every time, interval and double 6 decimals, while JSON writes the double's full precision
  (``9.22084903717041`` beside TSV's ``9.220849``; that tail is float noise from subtracting two epoch times).
  Rounding JSON loses nothing the TSV writer keeps; for ``double`` columns it drops digits past the 6th decimal
  (ntp's 16.16 fixed-point fields, capture_loss's percentage), which TSV never had. ISO times become the double
  nearest their exact microsecond value, as float() of TSV's ``%.6f`` text does.
- **An empty container is** ``[]``: TSV's empty marker, JSON's ``[]``, and JSON's ``[""]`` too, because the TSV
  writer spells ``{""}`` and ``{}`` alike (``(empty)``; known_services.service holds ``{""}`` for "no service
  known") and an empty-string element carries no value. An empty-string element among others stays ``""``
  (TSV ``(empty),a`` is ``["", "a"]``).
- Otherwise the writers already agree once typed: ``T``/``F`` and ``true``/``false`` are bool, counts and ports
  int, addresses, subnets and enums str, TSV escapes decode to what JSON spells (below), ISO times become epoch
  floats, nested JSON objects become dotted names. What no rule can join is a writer's own loss: the JSON
  writer's ``null`` for inf and nan (TSV writes ``inf``, ``nan``).

Value rules (TSV, by the column's declared type)
------------------------------------------------
- ``time``, ``interval``, ``double`` -> float (epoch seconds / seconds) at microsecond resolution (text with an
  exponent is rounded; plain text, which Zeek writes with at most 6 decimals, already is: see ``_FLOAT_US``);
  ``count``, ``int``, ``port`` -> int; ``bool`` (``T``/``F``) -> bool; ``addr``, ``subnet``, ``string``, ``enum``,
  ``pattern`` -> str; ``set[T]``/``vector[T]`` -> list of typed T (an element equal to the unset marker is None,
  one equal to the empty marker is ``""``).
- The unset marker (``#unset_field``, normally ``-``) -> the field is left out, never 0. The empty marker
  (``#empty_field``, normally ``(empty)``) -> ``[]`` for a container, ``""`` for any other type. Both are compared
  before unescaping, so ``\\x2d`` is the one-character string ``"-"``.
- Unknown types (``int64``, ``table[...]``, anything this module does not know) are not an error: that column's
  values stay str (unset/empty rules still apply). A value that does not parse for a KNOWN type (``abc`` in a
  ``count`` column, ``X`` in a ``bool``) makes the whole line bad.
- Escapes: ``\\xNN`` -> byte NN and ``\\\\`` -> one backslash (the Zeek ASCII writer's two escapes); a backslash
  before anything else stays literal; ``\\x`` without two hex digits makes the line bad. The unescaped bytes
  are decoded as UTF-8; a byte that is not part of valid UTF-8 stays as the 4-character text ``\\xNN``
  (Python's ``backslashreplace``), and so do ASCII control bytes other than ``\\b \\f \\n \\r \\t``. That is
  exactly how Zeek's JSON writer spells them, so TSV and JSON of the same run agree, and every value stays a
  valid str (msgpack-safe). The price: a literal backslash-x text and an escaped byte read the same.
- Sets split on ``#set_separator`` BEFORE unescaping, so an escaped separator inside an element survives.

JSON lines
----------
No types header, so values keep JSON's types, with the conversions that make TSV and JSON of one run equal:
nested objects are flattened to dotted names (``{"id": {"orig_h": ..}}`` -> ``"id.orig_h"``); any string in
Zeek's ISO-8601 time form (``2018-03-24T17:15:20.600843Z``, also pre-1970), alone or in a list, becomes epoch
seconds (float); every float is rounded to 6 decimals; a ``null`` field is left out; ``[""]`` is ``[]``. Writer
metadata that the TSV writer has no column for (``_path``, ``_write_ts``) is kept out of ``fields``; ``_path``
sets the record's path.

Bad lines
---------
Counted (with file and 1-based line number) and skipped, the rest of the file still loads: a data line before
any ``#fields`` header (``no header``), a short or long row (Zeek never writes a row whose column count differs
from ``#fields``, so an extra column is damage, not data), a value that fails its type, a broken escape,
broken JSON or JSON that is not an object, and a cut-off last line (no final newline and it does not parse).
"""

from __future__ import annotations

import gc
import gzip
import io
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FunctionType, MethodType
from typing import Any, BinaryIO, Literal, NamedTuple

__all__ = [
    "BadLine",
    "LogFile",
    "LogReader",
    "LogStream",
    "ZeekRecord",
    "iter_log",
    "open_log",
    "path_from_filename",
    "read_log",
    "sniff_log",
]


class ZeekRecord(NamedTuple):
    """One parsed log record (immutable). A NamedTuple rather than a frozen dataclass: the bulk path builds
    records with the C-level ``tuple.__new__``, where a frozen dataclass's ``__init__`` costs ~0.4 us each."""

    path: str  # log type: #path, JSON _path, else from the file name; "" if unknown
    ts: float | None  # the record's ts field, epoch seconds
    uid: str | None  # the record's uid field, when it has one
    fields: dict[str, Any]  # every field, typed; names exactly as Zeek's #fields (dotted: "id.orig_h")


@dataclass(frozen=True)
class BadLine:
    file: str
    line: int  # 1-based line number within the file
    reason: str


class _BadValue(Exception):
    """A line that cannot become a record; the message is the BadLine reason."""


# ---------------------------------------------------------------------------------------------------------------
# Escapes and plain values
# ---------------------------------------------------------------------------------------------------------------

_ESCAPE_RE = re.compile(rb"\\(?:x([0-9A-Fa-f]{2})|(\\)|(x))")


def _unescape_sub(m: re.Match[bytes]) -> bytes:
    if m.group(1) is not None:
        return bytes((int(m.group(1), 16),))
    if m.group(2) is not None:
        return b"\\"
    raise _BadValue("broken escape: \\x not followed by two hex digits")


# Zeek's JSON writer passes \b \f \n \r \t through and spells the other ASCII control bytes as \xNN text; doing
# the same here makes TSV and JSON of one run equal (dpd.log failure_reason carries a \x01).
_CONTROL_AS_TEXT = {c: f"\\x{c:02x}" for c in (*range(32), 127) if c not in (8, 9, 10, 12, 13)}


def _unescape(s: str) -> str:
    """Zeek-escaped text -> str. Surrogates from a ``surrogateescape`` decode are raw bytes again here."""
    raw = s.encode("utf-8", "surrogateescape")
    if b"\\" in raw:
        raw = _ESCAPE_RE.sub(_unescape_sub, raw)
    return raw.decode("utf-8", "backslashreplace").translate(_CONTROL_AS_TEXT)


def _unescape_header(raw: bytes) -> bytes:
    """Header values (``#separator \\x09``) use the same ``\\xNN`` escapes."""
    try:
        return _ESCAPE_RE.sub(_unescape_sub, raw)
    except _BadValue:
        return raw


_BOOLS: dict[str, bool] = {"T": True, "F": False}


def _to_bool(s: str) -> bool:
    return _BOOLS[s]  # KeyError -> bad line


# int() of a str costs ~3x a dict lookup, and most integer columns (ports, packet counts, small byte counts, 0)
# repeat values below 2**16: row functions look those up here and call int() only on a miss. Built on first use
# (~8 MB), shared by every stream. The unset marker is never a key (a miss compares it before calling int()),
# so a row function whose unset marker is a number gets its own copy without it.
_INT_TABLE_SIZE = 1 << 16
_int_table_shared: dict[str, int] = {}


def _int_table(unset: str) -> dict[str, int]:
    if not _int_table_shared:
        _int_table_shared.update({str(i): i for i in range(_INT_TABLE_SIZE)})
    if unset not in _int_table_shared:
        return _int_table_shared
    return {k: v for k, v in _int_table_shared.items() if k != unset}


# Zeek keeps time as microseconds (pcap's resolution) and its TSV writer gives time, interval and double values
# 6 decimals; JSON's full-precision doubles are rounded to the same 6 (see the module doc).
_US_DIGITS = 6

# Zeek's TSV writer spells a float in plain notation with at most 6 decimals (time as %.6f, interval and double
# at precision 6), and in exponent notation with 17 significant digits where plain would be too long (huge and
# pre-1970 values: -2.1504318496896954e+09 in ntp.log). float() of the plain text is already the double nearest
# that microsecond value, which is what round(x, 6) returns, so only text with an exponent pays for round()
# (~0.3 us). Plain text with more than 6 decimals (no Zeek writer's spelling) is taken as written: testing for it
# costs a slice per value: +6.5% instructions per conn.log line against +2% for this test (callgrind, 2026-12-04).
# The template's {v} is the column's variable; _float_us is the same rule as a function (container elements).
_FLOAT_US = "(float({v}) if 'e' not in {v} and 'E' not in {v} else _round(float({v}), 6))"


def _float_us(s: str) -> float:
    """A TSV float value at microsecond resolution, by the rule above (the row functions inline it)."""
    if "e" not in s and "E" not in s:
        return float(s)
    return round(float(s), _US_DIGITS)


_FLOAT_TYPES = frozenset({"time", "interval", "double"})
_INT_TYPES = frozenset({"count", "int", "port", "counter"})
_STR_TYPES = frozenset({"string", "enum", "addr", "subnet", "pattern", "file", "func"})
_CONTAINER_RE = re.compile(r"(set|vector)\[(.*)\]\Z")


def _element_converter(type_name: str) -> Callable[[str], Any] | None:
    """The converter for one scalar of ``type_name``; None means 'keep the str' (string-like or unknown)."""
    if type_name in _FLOAT_TYPES:
        return _float_us
    if type_name in _INT_TYPES:
        return int
    if type_name == "bool":
        return _to_bool
    return None


# ---------------------------------------------------------------------------------------------------------------
# TSV header -> compiled row function
# ---------------------------------------------------------------------------------------------------------------

_RowFn = Callable[[list[str]], "ZeekRecord"]
_EOL = (10, 13)  # line[-1] of a line that ends in \n or \r


@dataclass
class _TsvHeader:
    separator: str = "\t"
    set_separator: str = ","
    empty: str = "(empty)"
    unset: str = "-"
    path: str | None = None
    fields: list[str] | None = None
    types: list[str] | None = None


def _make_container(
    elem: Callable[[str], Any] | None, set_sep: str, unset: str, empty: str, escaped: bool
) -> Callable[[str], list[Any] | None]:
    # Split first, unescape each element after: an escaped set separator stays inside its element. Zeek writes
    # an element that is the empty string as the empty marker ("(empty),a" is ["", "a"]) and one that is unset as
    # the unset marker (JSON's null in a vector): both compared before unescaping, like whole values.
    if elem is not None:
        c = elem

        def container(s: str) -> list[Any] | None:
            if s == unset:
                return None
            if s == empty:
                return []
            return [None if e == unset else c(e) for e in s.split(set_sep)]

    elif escaped:

        def container(s: str) -> list[Any] | None:
            if s == unset:
                return None
            if s == empty:
                return []
            return [None if e == unset else "" if e == empty else _unescape(e) for e in s.split(set_sep)]

    else:

        def container(s: str) -> list[Any] | None:
            if s == unset:
                return None
            if s == empty:
                return []
            return [None if e == unset else "" if e == empty else e for e in s.split(set_sep)]

    return container


def _last_index(names: list[str], name: str) -> int | None:
    """The last column called ``name`` (a repeated name: the last value is the one the fields dict keeps)."""
    return len(names) - 1 - names[::-1].index(name) if name in names else None


def _compile_row(
    header: _TsvHeader, escaped: bool, path: str, prefix: bytes = b"#"
) -> tuple[_RowFn, list[Callable[[str], Any]], dict[str, Any]]:
    """Build the per-header row function once, so the hot loop has no per-field type dispatch.

    The function is generated source (as dataclasses and namedtuple do): one inline statement per column, which
    stores the typed value only when the column is not unset (unset fields are left out of the record), about
    twice as fast as calling a converter per field, and it builds the ZeekRecord itself (``path`` is baked in: a
    ``#path`` line recompiles). The fields dict is, when the names allow it (see :func:`_fields_code`), the
    ``__dict__`` of a per-header class's instance whose attributes are stored in column order: CPython gives such
    dicts one shared key table (a left-out attribute is just a missing value), so each record's dict costs a third
    of the memory and 40% less time than a dict display. ``escaped`` builds the variant used for lines that
    contain a backslash or non-UTF-8 bytes: string-like values are unescaped.
    Also returns the per-column converters, used only to name the failing column of a bad line, and the
    namespace of the generated code. The unescaped variant also defines ``_feed(line, lineno)``, the whole
    :meth:`LogStream.feed` fast path in one frame (see ``LogStream._compile``); it needs ``_st`` (the stream)
    and ``_slow`` (its general path) set in that namespace.
    """
    assert header.fields is not None
    names = header.fields
    types = header.types if header.types is not None and len(header.types) == len(names) else ["string"] * len(names)
    ns: dict[str, Any] = {
        "U": header.unset,
        "E": header.empty,
        "float": float,
        "int": int,
        "_round": round,
        "_I": _int_table(header.unset),
        "_B": dict(_BOOLS),  # KeyError for anything but T and F: the unset marker is compared first
        "_unesc": _unescape,
        "_R": ZeekRecord,
        "_new": tuple.__new__,
        "_PATH": path,
    }
    # ts only when time-typed and uid only when str-typed, as the record's fields promise: kept in locals t and u
    # as their columns are stored (an unset ts or uid is None in the record and absent from its fields).
    ts_col = _last_index(names, "ts")
    if ts_col is not None and types[ts_col] != "time":
        ts_col = None
    uid_col = _last_index(names, "uid")
    if uid_col is not None and (
        _element_converter(types[uid_col]) is not None or _CONTAINER_RE.match(types[uid_col]) is not None
    ):
        uid_col = None
    head, tail, target = _fields_code(names, ns)
    body: list[str] = [head]
    convs: list[Callable[[str], Any]] = []
    for i, type_name in enumerate(types):
        v = f"p{i}"
        m = _CONTAINER_RE.match(type_name)
        elem = None
        if m is not None:
            fn = _make_container(
                _element_converter(m.group(2)), header.set_separator, header.unset, header.empty, escaped
            )
            ns[f"_c{i}"] = fn
            # The container function checks the markers too; testing the empty one here skips its call.
            value = f"[] if {v} == E else _c{i}({v})"
            convs.append(fn)
        else:
            elem = _element_converter(type_name)
            if elem is _float_us:
                value = _FLOAT_US.format(v=v)
            elif elem is int:
                value = f"_I[{v}] if {v} in _I else int({v})"
            elif elem is not None:  # bool
                value = f"_B[{v}]"
            elif escaped:
                value = f'"" if {v} == E else _unesc({v})'
            else:
                value = f'"" if {v} == E else {v}'
            convs.append(_scalar_checker(f"None if {v} == U else ({value})", v, ns))
        store = target(i)
        if i in (ts_col, uid_col):
            local = "t" if i == ts_col else "u"
            body += [f"if {v} != U: {store} = {local} = {value}", f"else: {local} = None"]
        elif elem is int:  # a table hit is never the unset marker: compare it only on a miss
            body += [f"if {v} in _I: {store} = _I[{v}]", f"elif {v} != U: {store} = int({v})"]
        else:
            body.append(f"if {v} != U: {store} = {value}")
    if tail:
        body.append(tail)
    unpack = ", ".join(f"p{i}" for i in range(len(names))) + ("," if len(names) == 1 else "")
    ts = "t" if ts_col is not None else "None"
    uid = "u" if uid_col is not None else "None"
    record = f"_new(_R, (_PATH, {ts}, {uid}, f))"
    ind = "\n    "
    src = f"def _row(p):{ind}{unpack} = p{ind}{ind.join(body)}{ind}return {record}\n"
    if not escaped:
        # A plain line (not blank, no CR/LF at its end, no meta prefix, no backslash) under THIS header (the
        # stream's row function is still the one compiled here): split, type and build the record in one frame.
        # A wrong width (the unpack) or a value that fails its type falls to _slow, which does it all again.
        ns["_PFX"] = prefix
        ns["_SEP"] = header.separator
        ns["_EOL"] = _EOL
        not_meta = f"line[0] != {prefix[0]}" if len(prefix) == 1 else "not line.startswith(_PFX)"
        ind3 = "\n            "
        src += (
            "def _feed(line, lineno):\n"
            "    if _st._row is not _row:\n"
            "        return _st.feed(line, lineno)  # a newer header: its own fast path, or the general one\n"
            f"    if line and line[-1] not in _EOL and {not_meta} and b'\\\\' not in line:\n"
            "        try:\n"
            f"            {unpack} = line.decode().split(_SEP)\n"
            f"            {ind3.join(body)}\n"
            "        except Exception:\n"
            "            return _slow(line, lineno)\n"
            "        _st.records += 1\n"
            f"        return {record}\n"
            "    return _slow(line, lineno)\n"
        )
    exec(compile(src, "<zeek-row>", "exec"), ns)  # source built only from repr()'d names
    _rename_attrs(ns, names)
    return ns["_row"], convs, ns


_SHARED_KEYS_MAX = 30  # CPython's SHARED_KEYS_MAX_SIZE: wider instances get an ordinary dict anyway


def _fields_code(names: list[str], ns: dict[str, Any]) -> tuple[str, str, Callable[[int], str]]:
    """How the generated code builds the fields dict ``f``: (first line, last line, column i -> store target).

    Attribute stores are compiled with placeholder names ``_zf<i>_`` that :func:`_rename_attrs` swaps for the
    real column names in the code objects (an attribute name may be any str at run time: ``id.orig_h`` too).
    Names that could hit a class attribute (``__dict__``, ``__class__``...) or too many columns: item stores
    into a plain dict.
    """
    if len(set(names)) > _SHARED_KEYS_MAX or any(n.startswith("__") and n.endswith("__") for n in names):
        return "f = {}", "", lambda i: f"f[{names[i]!r}]"
    ns["_F"] = type("_ZeekFields", (), {"__module__": __name__})
    return "o = _F()", "f = o.__dict__", lambda i: f"o._zf{i}_"


def _rename_attrs(ns: dict[str, Any], names: list[str]) -> None:
    """Swap :func:`_fields_code`'s placeholder attribute names for the column names in the generated functions."""
    real = {f"_zf{i}_": name for i, name in enumerate(names)}
    for fn in ns.values():
        if isinstance(fn, FunctionType) and fn.__code__.co_filename == "<zeek-row>":
            code = fn.__code__
            fn.__code__ = code.replace(co_names=tuple(real.get(n, n) for n in code.co_names))


def _scalar_checker(expr: str, var: str, ns: dict[str, Any]) -> Callable[[str], Any]:
    fn: Callable[[str], Any] = eval(f"lambda {var}: {expr}", ns)  # our own expression, built above
    return fn


# ---------------------------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------------------------

# Zeek's JSON writer spells times exactly like this (LogAscii::json_timestamps = JSON::TS_ISO8601).
_ISO_RE = re.compile(r"-?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)\Z")
_JSON_WRITER_META = frozenset({"_path", "_write_ts"})
_US = 10**_US_DIGITS


def _iso_to_epoch(s: str) -> float | None:
    """Epoch seconds at microsecond resolution: the double nearest the exact decimal value, as float() of the
    TSV writer's ``%.6f`` text gives (a longer fraction is rounded half-even to 6 digits first)."""
    if _ISO_RE.match(s) is None:
        return None
    micros = 0
    dot = s.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(s) and s[end].isdigit():
            end += 1
        digits = s[dot + 1 : end]
        if len(digits) <= _US_DIGITS:
            micros = int(digits) * 10 ** (_US_DIGITS - len(digits))
        else:
            unit = 10 ** (len(digits) - _US_DIGITS)
            micros, rest = divmod(int(digits), unit)
            if 2 * rest > unit or (2 * rest == unit and micros & 1):
                micros += 1
        s = s[:dot] + s[end:]
    try:
        whole = datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()  # whole seconds: exact
    except ValueError:
        return None
    return (int(whole) * _US + micros) / _US  # int / int is correctly rounded


def _json_value(v: Any) -> Any:
    """One JSON value (a list's element too) by the module's rules; None stays None inside a list."""
    c = v.__class__
    if c is float:
        return round(v, _US_DIGITS)
    if c is str:
        if len(v) >= 20 and v[10] == "T":
            t = _iso_to_epoch(v)
            if t is not None:
                return t
        return v
    if c is list:
        return [_json_value(e) for e in v]
    return v


def _flatten(obj: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for k, v in obj.items():
        c = v.__class__
        if c is dict:
            _flatten(v, f"{prefix}{k}.", out)
        elif v is None:
            continue  # null: unset, left out as the TSV side leaves out '-'
        elif c is list:
            # [""]: the TSV writer spells {""} and {} alike, "(empty)"; both read as [] (see the module doc).
            out[prefix + k] = [] if v == _ONLY_EMPTY_STR else [_json_value(e) for e in v]
        else:
            out[prefix + k] = _json_value(v)


_ONLY_EMPTY_STR = [""]


# ---------------------------------------------------------------------------------------------------------------
# LogStream
# ---------------------------------------------------------------------------------------------------------------

_META_KEYS = ("separator", "set_separator", "empty_field", "unset_field", "path", "open", "fields", "types")
_PREFIX_RE = re.compile(rb"(\S{1,32}?)separator[ \t]")


class LogStream:
    """Incremental parser of ONE log file's lines, TSV or JSON lines.

    The format is detected from the first non-empty line: ``{`` -> JSON lines; anything else -> TSV. A TSV
    meta prefix other than ``#`` (Zeek's ``LogAscii::meta_prefix``, e.g. ``PREFIX<>``) is learnt from the first
    line when it is a ``<prefix>separator`` line. Several header blocks in one stream are fine: each
    ``#fields``/``#types`` pair recompiles the row function and ``#path`` sets the path of the records after it.

    Counters: ``records`` (records returned), ``bad_count`` (bad lines), ``data_lines`` (non-meta, non-blank
    lines: always ``records + bad_count``), ``bad`` (the first ``max_bad_kept`` bad lines).
    """

    def __init__(self, name: str, path_hint: str | None = None, max_bad_kept: int = 1000) -> None:
        self.name = name
        self.path_hint = path_hint if path_hint is not None else path_from_filename(name)
        self.max_bad_kept = max_bad_kept
        self.records = 0
        self.bad_count = 0
        self.bad: list[BadLine] = []
        self.format: Literal["tsv", "json"] | None = None
        self._prefix = b"#"
        self._header = _TsvHeader()
        self._header_lines: dict[str, bytes] = {}
        self._row: _RowFn | None = None
        self._row_escaped: _RowFn | None = None
        self._convs: list[Callable[[str], Any]] = []
        self._ncols = 0

    # -- public ----------------------------------------------------------------------------------------------

    @property
    def data_lines(self) -> int:
        """Non-meta, non-blank lines seen: every one became a record or a bad line."""
        return self.records + self.bad_count

    def feed(self, line: bytes, lineno: int) -> ZeekRecord | None:
        """One complete line without its trailing newline (a trailing ``\\r`` or ``\\n`` is stripped here).

        Returns a record, or None for header/meta/blank/bad lines. Never raises for any input bytes.

        This is the general path. Once a TSV header is compiled, the stream's ``feed`` attribute is the generated
        fast path for plain data lines (``_compile``), which hands every other line to this method.
        """
        if line[-1:] == b"\n":
            line = line[:-1]
        if line[-1:] == b"\r":
            line = line[:-1]
        if not line:
            return None
        fmt = self.format
        if fmt is None:
            fmt = self._detect(line)
        try:
            if fmt == "tsv":
                if line.startswith(self._prefix):
                    self._meta(line)
                    return None
                return self._tsv_row(line)
            return self._json_row(line)
        except _BadValue as e:
            self._add_bad(lineno, str(e))
        except Exception as e:  # a parser of untrusted input must not raise; count it instead
            self._add_bad(lineno, f"{type(e).__name__}: {e}"[:200])
        return None

    def header_state(self) -> list[bytes]:
        """The TSV header lines in force (latest of each kind, separator first): enough to resume mid-file."""
        return list(self._header_lines.values())

    @classmethod
    def resume(cls, name: str, header_state: list[bytes], path_hint: str | None = None) -> LogStream:
        """A stream that continues after ``header_state`` (from :meth:`header_state`); counters start at 0."""
        stream = cls(name, path_hint)
        for line in header_state:
            stream.feed(line, 0)
        return stream

    def mark_truncated(self, lineno: int) -> None:
        """Re-label the last bad line: the caller saw that it was the file's cut-off last line."""
        if self.bad and self.bad[-1].line == lineno:
            self.bad[-1] = BadLine(self.name, lineno, f"cut-off last line ({self.bad[-1].reason})")

    # -- internals -------------------------------------------------------------------------------------------

    def _add_bad(self, lineno: int, reason: str) -> None:
        self.bad_count += 1
        if len(self.bad) < self.max_bad_kept:
            self.bad.append(BadLine(self.name, lineno, reason))

    def _detect(self, line: bytes) -> Literal["tsv", "json"]:
        if line.lstrip()[:1] == b"{":
            self.format = "json"
        else:
            self.format = "tsv"
            m = _PREFIX_RE.match(line)
            if m is not None:
                self._prefix = m.group(1)
        return self.format

    def _meta(self, line: bytes) -> None:
        rest = line[len(self._prefix) :]
        h = self._header
        if rest.startswith(b"separator") and rest[9:10] in (b" ", b"\t"):
            # "#separator \x09"; some writers add a tab after it: take the escapes, ignore trailing whitespace.
            value = rest[10:]
            if value.startswith(b"\\x"):
                m = re.match(rb"(?:\\x[0-9A-Fa-f]{2})+", value)
                value = _unescape_header(m.group(0)) if m else value
            else:
                value = value.rstrip(b"\t\r ") or value
            h.separator = value.decode("utf-8", "backslashreplace")
            self._header_lines = {"separator": line}
            self._invalidate()
            return
        sep = h.separator.encode("utf-8", "surrogateescape")
        key_b, _, value = rest.partition(sep)
        key = key_b.decode("utf-8", "backslashreplace")
        if key in ("close",) or key not in _META_KEYS:
            return  # #close and unknown meta lines carry nothing a row needs
        self._header_lines[key] = line
        text = value.decode("utf-8", "backslashreplace")
        if key == "set_separator":
            h.set_separator = _unescape_header(value).decode("utf-8", "backslashreplace")
        elif key == "empty_field":
            h.empty = text
        elif key == "unset_field":
            h.unset = text
        elif key == "path":
            h.path = text
        elif key == "fields":
            h.fields = text.split(h.separator)
            h.types = None
        elif key == "types":
            h.types = text.split(h.separator)
        else:
            return
        self._invalidate()

    def _invalidate(self) -> None:
        self._row = None
        self._row_escaped = None
        self.__dict__.pop("feed", None)  # back to the general path until the next data line compiles

    def _compile(self) -> _RowFn:
        h = self._header
        if h.fields is None:
            raise _BadValue("no header: data line before any #fields line")
        path = h.path or self.path_hint
        self._row, self._convs, ns = _compile_row(h, False, path, self._prefix)
        self._row_escaped, _, _ = _compile_row(h, True, path)
        # The generated fast path becomes this stream's feed (an instance attribute over the method; _invalidate
        # removes it): one frame per plain line instead of three. It checks that its header is still in force on
        # every call and otherwise forwards, so a caller holding an old `stream.feed` stays correct.
        ns["_st"] = self
        ns["_slow"] = MethodType(LogStream.feed, self)
        self.__dict__["feed"] = ns["_feed"]
        self._ncols = len(h.fields)
        return self._row

    def feed_lines(self, lines: list[bytes], first_lineno: int = 1) -> list[ZeekRecord]:
        """Many complete lines at once (``first_lineno`` numbers the first): the records :meth:`feed` would return
        one by one, with the same counters."""
        feed = self.feed
        return [r for n, line in enumerate(lines, first_lineno) if (r := feed(line, n)) is not None]

    def _tsv_row(self, line: bytes) -> ZeekRecord:
        row = self._row
        if row is None:
            row = self._compile()
        try:
            text = line.decode()
            escaped = "\\" in text
        except UnicodeDecodeError:
            # Raw non-UTF-8 bytes: keep them recoverable for the escaped path, which spells them as \xNN.
            text = line.decode("utf-8", "surrogateescape")
            escaped = True
        parts = text.split(self._header.separator)
        if len(parts) != self._ncols:
            kind = "short" if len(parts) < self._ncols else "long"
            raise _BadValue(f"{kind} row: {len(parts)} columns, #fields has {self._ncols}")
        try:
            if escaped:
                assert self._row_escaped is not None
                rec = self._row_escaped(parts)
            else:
                rec = row(parts)
        except _BadValue:
            raise
        except Exception as e:  # name the failing column for the report
            raise _BadValue(self._explain(parts, e)) from None
        self.records += 1
        return rec

    def _explain(self, parts: list[str], err: Exception) -> str:
        h = self._header
        types = h.types or []
        assert h.fields is not None
        for i, (name, conv) in enumerate(zip(h.fields, self._convs, strict=True)):
            try:
                conv(parts[i])
            except Exception:  # the column that fails is the one to report
                t = types[i] if i < len(types) else "?"
                return f"bad value for {name} ({t}): {parts[i][:60]!r}"
        return f"bad value: {type(err).__name__}: {err}"[:200]

    def _json_row(self, line: bytes) -> ZeekRecord:
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise _BadValue(f"broken JSON: {e}"[:200]) from None
        if obj.__class__ is not dict:
            raise _BadValue(f"JSON line is a {type(obj).__name__}, not an object")
        # Writer metadata comes out first: _write_ts would cost an ISO parse only to be dropped.
        path = obj.pop("_path", None)
        for k in _JSON_WRITER_META:
            obj.pop(k, None)
        fields: dict[str, Any] = {}
        _flatten(obj, "", fields)
        ts = fields.get("ts")
        if ts.__class__ is int:
            ts = float(ts)
            fields["ts"] = ts
        uid = fields.get("uid")
        self.records += 1
        return ZeekRecord(
            path if path.__class__ is str else self.path_hint,
            ts if ts.__class__ is float else None,
            uid if uid.__class__ is str else None,
            fields,
        )


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


def path_from_filename(name: str) -> str:
    """The log type from a file name: ``conn.16:00:00-17:00:00.log.gz`` -> ``conn``, ``conn.log`` -> ``conn``."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.split(".", 1)[0]


def open_log(path: Path | str) -> BinaryIO:
    """Open a log for binary reading, gunzipping when the file starts with the gzip magic (whatever its name)."""
    f = open(path, "rb")  # returned to the caller, who closes it
    try:
        magic = f.read(2)
        f.seek(0)
    except Exception:
        f.close()
        raise
    if magic == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=f, mode="rb"))  # type: ignore[return-value]
    return f


def sniff_log(path: Path | str) -> Literal["tsv", "json"] | None:
    """'tsv' or 'json' for a Zeek log, None for other text (zeekctl's ``conn-summary`` reports, empty files).

    A Zeek log's first non-blank line is a ``<prefix>separator`` meta line or a JSON object; a headerless TSV
    remnant still has tab-separated columns.
    """
    with open_log(path) as f:
        head = f.read(65536)
    for line in head.split(b"\n"):
        line = line.strip(b"\r")
        if not line.strip():
            continue
        if line.lstrip()[:1] == b"{":
            return "json"
        if _PREFIX_RE.match(line) is not None or b"\t" in line:
            return "tsv"
        return None
    return None


@dataclass
class LogFile:
    records: list[ZeekRecord]
    bad: list[BadLine]
    data_lines: int
    bad_count: int


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a bulk load keeps every record: its passes over millions of fresh, acyclic
    dicts find nothing and cost ~25% of the load. Restored afterwards (only if it was on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_log(path: Path | str, max_bad_kept: int = 1000) -> LogFile:
    """Parse a whole log file (TSV or JSON lines, plain or gzip) into memory."""
    # Block by block (LogReader), not the whole file split at once: the file's bytes and line objects never
    # all sit in memory beside the records: smaller, and ~10% faster on a 1M-line conn.log here.
    reader = LogReader(path, max_bad_kept)
    with _gc_paused():
        records = list(reader)
    stream = reader.stream
    return LogFile(records, stream.bad, stream.data_lines, stream.bad_count)


_BLOCK = 1 << 20


class LogReader:
    """What :func:`iter_log` returns: iterate it for records; after the loop ``bad``, ``bad_count``,
    ``data_lines`` and ``records`` hold the file's counts (they grow while iterating)."""

    def __init__(self, path: Path | str, max_bad_kept: int = 1000) -> None:
        self.path = path
        self.stream = LogStream(str(path), max_bad_kept=max_bad_kept)

    @property
    def bad(self) -> list[BadLine]:
        return self.stream.bad

    @property
    def bad_count(self) -> int:
        return self.stream.bad_count

    @property
    def data_lines(self) -> int:
        return self.stream.data_lines

    @property
    def records(self) -> int:
        return self.stream.records

    def __iter__(self) -> Iterator[ZeekRecord]:
        stream = self.stream
        lineno = 1
        tail = b""
        with open_log(self.path) as f:
            while block := f.read(_BLOCK):
                lines = (tail + block).split(b"\n")
                tail = lines.pop()  # a partial line: completed by the next block
                # Line by line, not feed_lines: a block's worth of records held at once costs ~25% (allocation,
                # cache and GC) when the consumer drops each record after use.
                feed = stream.feed  # the fast path of the header in force (it forwards if a new one comes)
                for n, line in enumerate(lines, lineno):
                    r = feed(line, n)
                    if r is not None:
                        yield r
                lineno += len(lines)
        if tail:  # no final newline: the last line may be cut off
            r = stream.feed(tail, lineno)
            if r is not None:
                yield r
            stream.mark_truncated(lineno)


def iter_log(path: Path | str, max_bad_kept: int = 1000) -> LogReader:
    """Stream a log file's records; the returned :class:`LogReader` carries the counts afterwards."""
    return LogReader(path, max_bad_kept)
