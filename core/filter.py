"""The viewer filter language (spec/filter.md): ``compile_filter(text).matches(attrs)``.

``attrs`` is the flat mapping :func:`wiredraw.core.graph.element_attrs` builds for a node or an edge. A hand-written
tokenizer and recursive-descent parser compile the text once into a tree of closures; nothing of the user's text
is ever evaluated as Python or used as a regular expression, and evaluation never raises.

Why one file of ~700 lines: it is one small language, in spec/filter.md's order (tokens, grammar, values and
comparisons, the compiled tree); its parts share private token and value types that a split would make public.
"""

from __future__ import annotations

import ipaddress
import math
import operator
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

__all__ = ["MAX_DEPTH", "MAX_LIST_ITEMS", "MAX_TEXT_LENGTH", "Filter", "FilterError", "compile_filter"]

MAX_TEXT_LENGTH: Final = 4096
MAX_DEPTH: Final = 64  # nested parentheses and not/! together
MAX_LIST_ITEMS: Final = 1000

Attrs = Mapping[str, Any]
Test = Callable[[Attrs], bool]
Value = str | int | float | bool | None  # a literal


class FilterError(ValueError):
    """A filter text that does not compile. ``str(err)`` is one line naming the problem, the column (1-based) and
    what was expected; :attr:`caret` shows the text with a caret under that column, for terminals."""

    def __init__(self, message: str, text: str = "", column: int | None = None) -> None:
        super().__init__(f"filter: {message}")
        self.text = text
        self.column = column

    @property
    def caret(self) -> str:
        """Two lines: the text (control characters shown as spaces) and a caret under :attr:`column`."""
        if self.column is None:
            return ""
        shown = "".join(" " if c < " " or c == "\x7f" else c for c in self.text)
        return f"  {shown}\n  {' ' * (self.column - 1)}^"


class Filter:
    """A compiled filter. The empty filter (blank text) matches everything and is falsy, so callers can skip it."""

    __slots__ = ("_test", "names", "text")

    def __init__(self, text: str, test: Test | None, names: frozenset[str]) -> None:
        self.text = text
        self.names = names  # the attribute names the filter reads
        self._test = test

    @property
    def is_empty(self) -> bool:
        return self._test is None

    def __bool__(self) -> bool:
        return self._test is not None

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"

    def matches(self, attrs: Attrs) -> bool:
        """Whether an element with these attributes is selected. Never raises."""
        test = self._test
        if test is None:
            return True
        try:
            return bool(test(attrs))
        except Exception:  # only exotic values get here (leaves already catch): the element is not selected
            return False


def compile_filter(text: str) -> Filter:
    """Compile ``text`` (spec/filter.md); raise :class:`FilterError` when it is not a filter."""
    if not isinstance(text, str):
        raise TypeError(f"filter text must be a str, not {type(text).__name__}")
    if len(text) > MAX_TEXT_LENGTH:
        raise FilterError(f"text too long ({len(text)} characters, at most {MAX_TEXT_LENGTH})", text)
    parser = _Parser(text, _tokenize(text))
    test = parser.parse()
    return Filter(text, test, frozenset(parser.names))


# --- tokens --------------------------------------------------------------------------------------------------

_NAME_START: Final = frozenset(string.ascii_letters + "_")
_NAME_CHARS: Final = _NAME_START | frozenset(string.digits + ".")
_DIGITS: Final = frozenset(string.digits)
_HEX: Final = frozenset(string.hexdigits)
_SPACE: Final = frozenset(" \t\r\n")
_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "has", "within", "true", "false", "null"})
_SUFFIXES: Final = {"k": 10**3, "M": 10**6, "G": 10**9}
_OPERATORS: Final = ("==", "!=", "<=", ">=", "&&", "||", "=", "<", ">", "~", "!", "(", ")", "[", "]", ",")
# JSON's escapes (so that any JSON string literal is a filter string with the same value) and \' and \`.
_ESCAPES: Final = {
    "\\": "\\", '"': '"', "'": "'", "`": "`", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
}  # fmt: skip
_ESCAPES_EXPECTED: Final = "\\\\, \\\", \\', \\`, \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "name", "string", "number", "keyword", "op" or "end"
    value: Any  # the name, the decoded string, the number, the keyword in lower case, the operator
    pos: int  # offset in the text (the column is pos + 1)
    source: str  # the token as written


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c in _SPACE:
            i += 1
        elif c in _NAME_START:
            j = i + 1
            while j < n and text[j] in _NAME_CHARS:
                j += 1
            word = text[i:j]
            low = word.lower()
            tokens.append(_Token("keyword", low, i, word) if low in _KEYWORDS else _Token("name", word, i, word))
            i = j
        elif c in _DIGITS or (c in "+-." and _number_follows(text, i)):
            tok = _number(text, i)
            tokens.append(tok)
            i += len(tok.source)
        elif c in "\"'":
            value, j = _quoted(text, i)
            tokens.append(_Token("string", value, i, text[i:j]))
            i = j
        elif c == "`":
            value, j = _quoted(text, i)
            if not value:
                raise FilterError(f"empty quoted name at column {i + 1}", text, i + 1)
            tokens.append(_Token("name", value, i, text[i:j]))
            i = j
        else:
            op = next((op for op in _OPERATORS if text.startswith(op, i)), None)
            if op is None:
                hint = {"&": " (did you mean '&&'?)", "|": " (did you mean '||'?)"}.get(c, "")
                raise FilterError(f"unexpected character {c!r} at column {i + 1}{hint}", text, i + 1)
            tokens.append(_Token("op", op, i, op))
            i += len(op)
    tokens.append(_Token("end", None, n, ""))
    return tokens


def _number_follows(text: str, i: int) -> bool:
    """A sign or a point starts a number only when digits follow (``-5``, ``.5``, ``-.5``)."""
    j = i + 1 if text[i] in "+-" else i
    if j < len(text) and text[j] == ".":
        j += 1
    return j < len(text) and text[j] in _DIGITS


def _number(text: str, start: int) -> _Token:
    n = len(text)
    i = start + 1 if text[start] in "+-" else start
    while i < n and text[i] in _DIGITS:
        i += 1
    is_float = False
    if i < n and text[i] == ".":
        is_float = True
        i += 1
        while i < n and text[i] in _DIGITS:
            i += 1
    bad = False
    if i < n and text[i] in "eE":
        is_float = True
        i += 1
        if i < n and text[i] in "+-":
            i += 1
        if i >= n or text[i] not in _DIGITS:
            bad = True
        while i < n and text[i] in _DIGITS:
            i += 1
    body = text[start:i]
    multiplier = 1
    if i < n and text[i] in _SUFFIXES:
        multiplier = _SUFFIXES[text[i]]
        i += 1
    if bad or (i < n and text[i] in _NAME_CHARS):
        while i < n and (text[i] in _NAME_CHARS or text[i] in "+-"):
            i += 1
        raise FilterError(
            f"bad number {text[start:i]!r} at column {start + 1} (expected digits, an optional fraction and "
            "exponent, and an optional suffix k, M or G)",
            text,
            start + 1,
        )
    value: int | float
    if is_float:
        value = float(body) * multiplier
        if not math.isfinite(value):
            raise FilterError(f"number {text[start:i]!r} out of range at column {start + 1}", text, start + 1)
    else:
        value = int(body) * multiplier
    return _Token("number", value, start, text[start:i])


def _quoted(text: str, start: int) -> tuple[str, int]:
    """Decode the quoted string or name at ``start``; return it and the offset after its closing quote."""
    quote = text[start]
    n = len(text)
    out: list[str] = []
    i = start + 1
    while True:
        if i >= n:
            what = "name" if quote == "`" else "string"
            raise FilterError(
                f"unterminated {what} starting at column {start + 1} (expected a closing {quote})", text, start + 1
            )
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = text[i + 1 : i + 2]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e == "u" and (code := _hex4(text, i + 2)) is not None:
            i += 6
            low = _hex4(text, i + 2) if 0xD800 <= code < 0xDC00 and text.startswith("\\u", i) else None
            if low is not None and 0xDC00 <= low < 0xE000:  # a UTF-16 surrogate pair, as JSON writes one
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                i += 6
            out.append(chr(code))
        elif e == "":
            i += 1  # a backslash at the very end: reported as unterminated above
        else:
            shown = text[i : i + 6] if e == "u" else text[i : i + 2]
            raise FilterError(f"bad escape '{shown}' at column {i + 1} (expected {_ESCAPES_EXPECTED})", text, i + 1)


def _hex4(text: str, i: int) -> int | None:
    digits = text[i : i + 4]
    return int(digits, 16) if len(digits) == 4 and all(d in _HEX for d in digits) else None


# --- parser --------------------------------------------------------------------------------------------------

_COMPARISONS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": operator.eq, "=": operator.eq, "!=": operator.ne,
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
_LITERAL_KEYWORDS: Final[dict[str, Value]] = {"true": True, "false": False, "null": None}


class _Parser:
    """Recursive descent over the grammar in spec/filter.md; or/and chains loop, so only parentheses and not/!
    recurse (and both count against MAX_DEPTH)."""

    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.names: set[str] = set()

    # helpers

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def is_op(self, tok: _Token, *ops: str) -> bool:
        return tok.kind == "op" and tok.value in ops

    def is_keyword(self, tok: _Token, word: str) -> bool:
        return tok.kind == "keyword" and tok.value == word

    def error(self, expected: str, tok: _Token, hint: str = "") -> FilterError:
        prev = self.tokens[self.i - 1] if self.i > 0 and self.tokens[self.i - 1] is not tok else None
        after = f" after {_quote(prev.source)}" if prev is not None else ""
        return FilterError(
            f"expected {expected}{after} at column {tok.pos + 1}, found {_describe(tok)}{hint}", self.text, tok.pos + 1
        )

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(
                f"nested too deeply at column {tok.pos + 1} (at most {MAX_DEPTH} levels of parentheses and 'not')",
                self.text,
                tok.pos + 1,
            )

    # grammar

    def parse(self) -> Test | None:
        if self.peek().kind == "end":
            return None
        test = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            if self.is_op(tok, ")"):
                raise FilterError(f"unmatched ')' at column {tok.pos + 1}", self.text, tok.pos + 1)
            raise self.error("'and', 'or' or the end of the filter", tok)
        return test

    def or_expr(self) -> Test:
        tests = [self.and_expr()]
        while self.is_keyword(tok := self.peek(), "or") or self.is_op(tok, "||"):
            self.advance()
            tests.append(self.and_expr())
        return _any(tests)

    def and_expr(self) -> Test:
        tests = [self.not_expr()]
        while self.is_keyword(tok := self.peek(), "and") or self.is_op(tok, "&&"):
            self.advance()
            tests.append(self.not_expr())
        return _all(tests)

    def not_expr(self) -> Test:
        tok = self.peek()
        if self.is_keyword(tok, "not") or self.is_op(tok, "!"):
            self.enter(tok)
            self.advance()
            operand = self.not_expr()
            self.depth -= 1
            return _negate(operand)
        return self.primary()

    def primary(self) -> Test:
        tok = self.peek()
        if self.is_op(tok, "("):
            self.enter(tok)
            self.advance()
            test = self.or_expr()
            close = self.peek()
            if not self.is_op(close, ")"):
                raise self.error("')'", close, f" (to close the '(' at column {tok.pos + 1})")
            self.advance()
            self.depth -= 1
            return test
        if tok.kind == "name":
            return self.test()
        hint = f" (write a name that is a keyword in backquotes: `{tok.source}`)" if tok.kind == "keyword" else ""
        raise self.error("an attribute name, '(' or 'not'", tok, hint)

    def test(self) -> Test:
        name = self.advance().value
        self.names.add(name)
        tok = self.peek()
        if tok.kind == "op" and tok.value in _COMPARISONS:
            self.advance()
            return _compare(name, tok.value, self.literal("a value"))
        if self.is_op(tok, "~"):
            self.advance()
            needle = self.literal("a string", str)
            assert isinstance(needle, str)
            return _contains(name, needle)
        if self.is_keyword(tok, "in"):
            self.advance()
            return _member(name, self.list_literal())
        if self.is_keyword(tok, "not"):
            self.advance()
            if not self.is_keyword(self.peek(), "in"):
                raise self.error("'in'", self.peek())
            self.advance()
            return _not_member(name, self.list_literal())
        if self.is_keyword(tok, "has"):
            self.advance()
            return _has(name, self.literal("a value"))
        if self.is_keyword(tok, "within"):
            self.advance()
            lit_tok = self.peek()
            network = self.literal('a network string such as "10.0.0.0/8"', str)
            assert isinstance(network, str)
            try:
                net = ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise FilterError(
                    f"bad network {lit_tok.source} at column {lit_tok.pos + 1} (expected an IPv4 or IPv6 address "
                    'or network such as "10.0.0.0/8" or "fd00::/8")',
                    self.text,
                    lit_tok.pos + 1,
                ) from None
            return _within(name, net)
        return _truthy(name)

    def literal(self, expected: str, kind: type | None = None) -> Value:
        tok = self.peek()
        value: Value
        if tok.kind in ("string", "number"):
            value = tok.value
        elif tok.kind == "keyword" and tok.value in _LITERAL_KEYWORDS:
            value = _LITERAL_KEYWORDS[tok.value]
        else:
            hint = f' (write a string in quotes: "{tok.source}")' if tok.kind == "name" else ""
            raise self.error(expected, tok, hint)
        if kind is not None and not isinstance(value, kind):
            raise self.error(expected, tok)
        self.advance()
        return value

    def list_literal(self) -> list[Value]:
        tok = self.peek()
        if not self.is_op(tok, "["):
            raise self.error("'[' to start a list", tok)
        self.advance()
        items: list[Value] = []
        while not self.is_op(self.peek(), "]"):
            if len(items) == MAX_LIST_ITEMS:
                at = self.peek().pos + 1
                raise FilterError(f"list too long at column {at} (at most {MAX_LIST_ITEMS} items)", self.text, at)
            items.append(self.literal("a value or ']'" if not items else "a value"))
            sep = self.peek()
            if self.is_op(sep, ","):
                self.advance()
            elif not self.is_op(sep, "]"):
                raise self.error("',' or ']'", sep)
        self.advance()
        return items


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "the end of the filter"
    source = tok.source if len(tok.source) <= 40 else tok.source[:37] + "..."
    if tok.kind in ("name", "string", "number"):
        return f"{tok.kind} {source}" if tok.kind != "name" else f"name {_quote(source)}"
    return _quote(source)


def _quote(source: str) -> str:
    return f"'{source}'"


# --- evaluation ----------------------------------------------------------------------------------------------
# Each leaf reads one attribute and catches everything, so that a value it cannot handle counts as a false
# comparison and `not` still negates a plain boolean. The type checks take the exact-type path first: that is
# what element attributes (msgpack/JSON data) hold, and it keeps a typical filter at well under a microsecond.


def _never(attrs: Attrs) -> bool:
    return False


def _any(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        left, right = tests
        return lambda attrs: left(attrs) or right(attrs)
    chain = tuple(tests)

    def any_(attrs: Attrs) -> bool:
        for test in chain:
            if test(attrs):
                return True
        return False

    return any_


def _all(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        left, right = tests
        return lambda attrs: left(attrs) and right(attrs)
    chain = tuple(tests)

    def all_(attrs: Attrs) -> bool:
        for test in chain:
            if not test(attrs):
                return False
        return True

    return all_


def _negate(test: Test) -> Test:
    return lambda attrs: not test(attrs)


def _truthy(name: str) -> Test:
    def truthy(attrs: Attrs) -> bool:
        try:
            return bool(attrs.get(name))  # missing and None are falsy
        except Exception:
            return False

    return truthy


def _compare(name: str, op: str, lit: Value) -> Test:
    fn = _COMPARISONS[op]
    if lit is None:
        return _never  # a null attribute fails every comparison, and nothing else is of null's kind
    if isinstance(lit, bool):
        if op in ("<", "<=", ">", ">="):
            return _never  # booleans are not ordered here
        want = lit if fn is operator.eq else not lit

        def compare_bool(attrs: Attrs) -> bool:
            try:
                return attrs.get(name) is want
            except Exception:
                return False

        return compare_bool
    if isinstance(lit, str):

        def compare_str(attrs: Attrs) -> bool:
            try:
                v = attrs.get(name)
                return (type(v) is str or isinstance(v, str)) and fn(v, lit)
            except Exception:
                return False

        return compare_str

    def compare_number(attrs: Attrs) -> bool:
        try:
            v = attrs.get(name)
            t = type(v)
            if t is int or t is float:
                return fn(v, lit)
            return isinstance(v, (int, float)) and not isinstance(v, bool) and fn(v, lit)
        except Exception:
            return False

    return compare_number


def _contains(name: str, needle: str) -> Test:
    folded = needle.casefold()

    def contains(attrs: Attrs) -> bool:
        try:
            v = attrs.get(name)
            return isinstance(v, str) and folded in v.casefold()
        except Exception:
            return False

    return contains


def _split(items: list[Value]) -> tuple[frozenset[str], frozenset[int | float], frozenset[bool]]:
    """Literals by kind (null matches nothing and is dropped); bool is not a number, so it has its own set."""
    strs = frozenset(v for v in items if isinstance(v, str))
    bools = frozenset(v for v in items if isinstance(v, bool))
    numbers = frozenset(v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool))
    return strs, numbers, bools


def _member_of(items: list[Value]) -> Callable[[Any], bool]:
    strs, numbers, bools = _split(items)

    def member(v: Any) -> bool:
        t = type(v)
        if t is str:
            return v in strs
        if t is int or t is float:
            return v in numbers
        if t is bool:
            return v in bools
        if isinstance(v, str):
            return str(v) in strs
        if isinstance(v, (int, float)):  # a subclass: compare by value (bool was taken above)
            return any(v == n for n in numbers)
        return False

    return member


def _member(name: str, items: list[Value]) -> Test:
    member = _member_of(items)

    def in_(attrs: Attrs) -> bool:
        try:
            return member(attrs.get(name))
        except Exception:
            return False

    return in_


def _not_member(name: str, items: list[Value]) -> Test:
    member = _member_of(items)

    def not_in(attrs: Attrs) -> bool:
        try:
            v = attrs.get(name)
            return v is not None and not member(v)
        except Exception:
            return False

    return not_in


_CONTAINERS: Final = frozenset({list, tuple, set, frozenset, dict})
_SCALARS: Final = frozenset({str, int, float, bool, type(None), bytes})


def _container(v: Any) -> Any:
    """The collection ``has`` searches: a list, tuple or set, or a mapping (iterating one and `in` use its keys);
    None for anything else."""
    t = type(v)
    if t in _CONTAINERS:
        return v
    if t in _SCALARS or not isinstance(v, (list, tuple, set, frozenset, Mapping)):
        return None
    return v


def _has(name: str, lit: Value) -> Test:
    if lit is None:
        return _never
    if isinstance(lit, str):

        def has_str(attrs: Attrs) -> bool:
            try:
                c = _container(attrs.get(name))
                return c is not None and lit in c
            except Exception:
                return False

        return has_str
    if isinstance(lit, bool):

        def has_bool(attrs: Attrs) -> bool:
            try:
                c = _container(attrs.get(name))
                return c is not None and any(x is lit for x in c)
            except Exception:
                return False

        return has_bool

    def has_number(attrs: Attrs) -> bool:
        try:
            c = _container(attrs.get(name))
            # `in` first (fast, and a superset: it also finds True for 1); then the kind-aware look.
            return (
                c is not None
                and lit in c
                and any(x == lit and isinstance(x, (int, float)) and not isinstance(x, bool) for x in c)
            )
        except Exception:
            return False

    return has_number


_MAX_ADDRESS_LENGTH: Final = 64  # longer than any IPv6 address with a zone: not an address, and not cached


def _address(text: str) -> tuple[int, int, int | None] | None:
    """(version, integer, the IPv4 integer of an IPv4-mapped IPv6 address or None), or None if not an address."""
    parts = text.split(".")
    if len(parts) == 4:  # a plain dotted quad by hand: 4x faster than ipaddress, and a graph can hold more distinct
        number = 0  # IPv4 addresses than fit in the cache. Anything unusual goes to ipaddress (e.g. ::ffff:1.2.3.4).
        for part in parts:
            if not (0 < len(part) <= 3 and part.isascii() and part.isdigit()) or (part[0] == "0" and part != "0"):
                break
            octet = int(part)
            if octet > 255:
                break
            number = number << 8 | octet
        else:
            return 4, number, None
    return _parsed_address(text)


@lru_cache(maxsize=16384)
def _parsed_address(text: str) -> tuple[int, int, int | None] | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return _address_parts(addr)


def _address_parts(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int, int | None]:
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return addr.version, int(addr), None if mapped is None else int(mapped)


def _within(name: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Test:
    version, base, mask = net.version, int(net.network_address), int(net.netmask)

    def within(attrs: Attrs) -> bool:
        try:
            v = attrs.get(name)
            if isinstance(v, str):
                parts = _address(str(v)) if len(v) <= _MAX_ADDRESS_LENGTH else None
            elif isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                parts = _address_parts(v)
            else:
                return False
            if parts is None:
                return False
            v_version, number, mapped = parts
            if v_version != version:
                if mapped is None:
                    return False
                number = mapped  # ::ffff:a.b.c.d is tested against an IPv4 network as a.b.c.d
            return number & mask == base
        except Exception:
            return False

    return within
