"""The viewer filter language (wiredraw.core.filter, spec/filter.md): every operator and rule, the errors, the
limits, and Hypothesis properties against a reference evaluator written here straight from the spec."""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wiredraw.core.filter import MAX_DEPTH, MAX_LIST_ITEMS, MAX_TEXT_LENGTH, Filter, FilterError, compile_filter
from wiredraw.core.graph import Edge, Node, element_attrs

EXAMPLES = int(os.environ.get("WIREDRAW_FUZZ_EXAMPLES", "300"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sel(text: str, **attrs: Any) -> bool:
    return compile_filter(text).matches(attrs)


def error(text: str) -> FilterError:
    with pytest.raises(FilterError) as info:
        compile_filter(text)
    return info.value


# --- the empty filter, the Filter object ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\t\n  \r"])
def test_blank_text_matches_everything_and_is_falsy(text: str) -> None:
    f = compile_filter(text)
    assert not f and f.is_empty
    assert f.names == frozenset()
    assert f.matches({}) and f.matches({"a": None})
    assert f.text == text


def test_filter_object() -> None:
    f = compile_filter('service != "dns" and (bytes > 10k or `odd name`) and not local')
    assert f and not f.is_empty
    assert f.names == {"service", "bytes", "odd name", "local"}
    assert f.text == 'service != "dns" and (bytes > 10k or `odd name`) and not local'
    assert repr(f) == "Filter('service != \"dns\" and (bytes > 10k or `odd name`) and not local')"
    assert isinstance(f, Filter)


def test_compile_rejects_non_text() -> None:
    with pytest.raises(TypeError):
        compile_filter(b"a")  # type: ignore[arg-type]


# --- comparisons ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "results"),  # for the attribute 5 against the literals 4, 5, 6
    [
        ("==", (False, True, False)),
        ("=", (False, True, False)),
        ("!=", (True, False, True)),
        ("<", (False, False, True)),
        ("<=", (False, True, True)),
        (">", (True, False, False)),
        (">=", (True, True, False)),
    ],
)
def test_number_comparisons(op: str, results: tuple[bool, bool, bool]) -> None:
    assert tuple(sel(f"n {op} {lit}", n=5) for lit in (4, 5, 6)) == results
    assert tuple(sel(f"n {op} {lit}", n=5.0) for lit in ("4.0", "5.0", "6.0")) == results


@pytest.mark.parametrize(
    ("op", "results"),  # for the attribute "b" against "a", "b", "c"
    [
        ("==", (False, True, False)),
        ("!=", (True, False, True)),
        ("<", (False, False, True)),
        ("<=", (False, True, True)),
        (">", (True, False, False)),
        (">=", (True, True, False)),
    ],
)
def test_string_comparisons(op: str, results: tuple[bool, bool, bool]) -> None:
    assert tuple(sel(f's {op} "{lit}"', s="b") for lit in "abc") == results


def test_strings_compare_as_strings() -> None:
    assert sel('s < "b"', s="abc") and not sel('s < "B"', s="abc")  # code point order, case-sensitive
    assert sel('s > "10"', s="9")  # lexicographic, not numeric
    assert not sel('s == "DNS"', s="dns")
    assert sel('s == ""', s="") and not sel("s", s="")


def test_int_and_float_compare_alike() -> None:
    assert sel("n == 1", n=1.0) and sel("n == 1.0", n=1) and sel("n == 1e0", n=1)
    assert sel("n > 0.5", n=1) and sel("n < 2", n=1.5)
    big = 10**30
    assert sel(f"n == {big}", n=big) and not sel(f"n == {big + 1}", n=big)  # exact, not through float
    assert sel(f"n > {10**400}", n=10**401) and sel("n < 1e308", n=10**300) and not sel("n > 1e308", n=10**300)


def test_bool_comparisons() -> None:
    assert sel("d == true", d=True) and sel("d == TRUE", d=True) and not sel("d == true", d=False)
    assert sel("d != true", d=False) and not sel("d != true", d=True)
    assert sel("d == false", d=False) and sel("d != False", d=True)
    for op in ("<", "<=", ">", ">="):  # booleans are not ordered
        assert not sel(f"d {op} true", d=True) and not sel(f"d {op} false", d=True)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('n == "5"', 5),  # number attribute, string literal
        ('n != "5"', 5),
        ('n < "6"', 5),
        ("s == 5", "5"),  # string attribute, number literal
        ("s != 5", "5"),
        ("s > 1", "5"),
        ("d == 1", True),  # bool is not a number
        ("d != 0", True),
        ("d > 0", True),
        ("d >= 1", True),
        ("d == true", 1),
        ("d != false", 1),
        ('d == "true"', True),
        ("d == true", "true"),
        ("l == 1", [1]),  # containers equal no literal
        ("l != 1", [1]),
        ('l == "a"', {"a": 1}),
        ('b == "a"', b"a"),  # bytes are not strings
        ('b != "a"', b"b"),
        ("b == 97", b"a"),
    ],
)
def test_comparing_across_kinds_is_false(text: str, value: Any) -> None:
    name = text.split()[0]
    assert sel(text, **{name: value}) is False


def test_null_literal_matches_nothing() -> None:
    for op in ("==", "!=", "<", ">="):
        for value in (None, 0, "", False, "null"):
            assert not sel(f"x {op} null", x=value)
        assert not sel(f"x {op} null")
    assert not sel("x in [null]", x=None) and not sel("x has null", x=[None])
    assert sel("x in [null, 1]", x=1) and sel("not x", x=None)


# --- the missing-attribute rule -------------------------------------------------------------------------------

EVERY_TEST_ON_X = [
    "x == 1",
    "x = 1",
    "x != 1",
    "x < 1",
    "x <= 1",
    "x > 1",
    "x >= 1",
    'x == "a"',
    'x != "a"',
    'x < "a"',
    "x == true",
    "x != true",
    "x != false",
    'x ~ ""',
    "x in [1, 'a', true]",
    "x not in [1, 'a', true]",
    "x not in []",
    'x has "a"',
    'x within "0.0.0.0/0"',
    'x within "::/0"',
    "x",
]


@pytest.mark.parametrize("text", EVERY_TEST_ON_X)
def test_missing_or_null_attribute_fails_every_test(text: str) -> None:
    f = compile_filter(text)
    assert f.names == {"x"}
    assert f.matches({}) is False
    assert f.matches({"x": None}) is False
    assert f.matches({"y": 1}) is False
    # `not` negates the boolean result, so the negation of a failed test is true
    assert compile_filter(f"not ({text})").matches({}) is True
    assert compile_filter(f"!({text})").matches({"x": None}) is True


def test_not_equal_is_sql_like() -> None:
    f = compile_filter('service != "dns"')
    assert f.matches({"service": "http"})
    assert not f.matches({"service": "dns"})
    assert not f.matches({})  # no service: not selected ...
    assert compile_filter('not service == "dns"').matches({})  # ... but "not ==" selects it


# --- numbers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("10", 10),
        ("-10", -10),
        ("+10", 10),
        ("007", 7),
        ("1.5", 1.5),
        ("-1.5", -1.5),
        (".5", 0.5),
        ("-.5", -0.5),
        ("5.", 5.0),
        ("1e3", 1000),
        ("1E3", 1000),
        ("1e+3", 1000),
        ("2.5e-3", 0.0025),
        ("10k", 10_000),
        ("1.5k", 1500),
        ("-2k", -2000),
        ("3M", 3_000_000),
        ("2.5M", 2_500_000),
        ("1G", 1_000_000_000),
        ("1e3k", 1_000_000),
        ("12345678901234567890123", 12345678901234567890123),
    ],
)
def test_number_literals(literal: str, value: float) -> None:
    assert sel(f"n == {literal}", n=value)
    assert not sel(f"n == {literal}", n=value + 1)


def test_suffix_makes_bytes_filters_short() -> None:
    f = compile_filter("bytes > 10k")
    assert f.matches({"bytes": 10_001}) and not f.matches({"bytes": 10_000}) and not f.matches({"bytes": "20000"})


@pytest.mark.parametrize("literal", ["10m", "10K", "10kb", "1g", "1e", "1e+", "1.2.3", "0x10", "10_000", "5and"])
def test_bad_numbers(literal: str) -> None:
    err = error(f"n == {literal}")
    assert "bad number" in str(err) and "column 6" in str(err) and "k, M or G" in str(err)
    assert err.column == 6


def test_number_out_of_range() -> None:
    assert "out of range" in str(error("n > 1e999"))
    assert "out of range" in str(error("n > 1e306G"))


def test_nan_and_infinity_attributes() -> None:
    nan, inf = math.nan, math.inf
    assert not sel("n == 1", n=nan) and not sel("n < 1", n=nan) and not sel("n > 1", n=nan)
    assert sel("n != 1", n=nan)  # IEEE: NaN differs from every number
    assert sel("n", n=nan)  # NaN is truthy
    assert sel("n > 1e308", n=inf) and sel("n < -1e308", n=-inf) and sel("n != 0", n=inf)
    assert not sel("n in [1, 2]", n=nan) and sel("n not in [1, 2]", n=nan)


# --- strings and names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ('"dns"', "dns"),
        ("'dns'", "dns"),
        ('"it\'s"', "it's"),
        ("'say \"hi\"'", 'say "hi"'),
        (r'"a\"b"', 'a"b'),
        (r"'a\'b'", "a'b"),
        (r'"back\\slash"', "back\\slash"),
        (r'"\n\r\t"', "\n\r\t"),
        (r'"\`"', "`"),
        (r'"\/\b\f"', "/\b\f"),
        (r'"\ud83d\ude00"', "\U0001f600"),  # a surrogate pair is one character, as in JSON
        (r'"\ud83d\u0041"', "\ud83dA"),  # a lone surrogate stays one
        (r"'\ude00\ud83d'", "\ude00\ud83d"),
        (r'"caf\u00e9"', "café"),
        (r'"\u00E9"', "é"),
        ('"café ☃"', "café ☃"),
        ('""', ""),
        ("''", ""),
    ],
)
def test_string_literals(literal: str, value: str) -> None:
    assert sel(f"s == {literal}", s=value)


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        (r's == "a\q"', 8, r"bad escape '\q' at column 8 (expected \\, \", \', \`, \/, \b, \f, \n, \r, \t or \uXXXX)"),
        (r's == "\u12"', 7, "bad escape"),
        (r's == "\u12zz"', 7, "bad escape"),
        ('s == "abc', 6, "unterminated string starting at column 6"),
        ("s == 'abc\\'", 6, "unterminated string"),
        ('s == "abc\\', 6, "unterminated string"),
        ("`abc == 1", 1, "unterminated name"),
        ("`` == 1", 1, "empty quoted name"),
    ],
)
def test_bad_strings(text: str, column: int, message: str) -> None:
    err = error(text)
    assert message in str(err) and err.column == column


def test_attribute_names() -> None:
    assert sel('id.orig_h == "10.0.0.1"', **{"id.orig_h": "10.0.0.1"})
    assert sel("_x1.y_2. == 3", **{"_x1.y_2.": 3})
    assert sel("`odd name-1` == 3", **{"odd name-1": 3})
    assert sel(r"`back\`tick` == 3", **{"back`tick": 3})
    assert sel("`in` == 3 and `and`", **{"in": 3, "and": 1})
    assert sel("`7up`", **{"7up": True})
    assert not sel("Service == 'dns'", service="dns")  # names are case-sensitive
    assert sel("android and order and nota and inside", android=1, order=1, nota=1, inside=1)  # keyword prefixes


def test_keywords_are_case_insensitive() -> None:
    attrs = {"a": 1, "b": 0, "s": "x", "l": ["x"], "ip": "10.0.0.1"}
    assert compile_filter("a AND NOT b Or b").matches(attrs)
    assert compile_filter("s In ['x'] and s NOT IN ['y'] and l HAS 'x' and ip WITHIN '10.0.0.0/8'").matches(attrs)
    assert compile_filter("a == True and b != FALSE and a != NULL or b").matches(attrs) is False


# --- contains, in, has, within, truth -------------------------------------------------------------------------


def test_contains_is_a_case_insensitive_substring_test_on_strings() -> None:
    assert sel('label ~ "EXAMPLE"', label="www.example.com")
    assert sel('label ~ "straße"', label="STRASSE street")  # casefold, not just lower
    assert sel('label ~ ""', label="")
    assert not sel('label ~ "x"', label="abc")
    assert not sel('label ~ "1"', label=1) and not sel('label ~ "a"', label=["a"]) and not sel('l ~ "a"', l=b"a")
    err = error("label ~ 5")
    assert str(err) == "filter: expected a string after '~' at column 9, found number 5"


def test_in_and_not_in() -> None:
    assert sel('service in ["dns", "http"]', service="http")
    assert not sel('service in ["dns", "http"]', service="ssl")
    assert sel('service not in ["dns", "http"]', service="ssl")
    assert not sel('service not in ["dns", "http"]', service="dns")
    assert sel("port in [80, 443.0]", port=443) and sel("port in [80, 443]", port=80.0)
    assert not sel("port in [1]", port=True) and not sel("flag in [true]", flag=1)  # bool is not a number
    assert sel("flag in [true]", flag=True) and not sel("flag in [false]", flag=True)
    assert not sel('port in ["80"]', port=80) and not sel("port in [80]", port="80")
    assert sel('port not in ["80"]', port=80)  # present and equal to no item
    assert not sel("x in []", x=1) and sel("x not in []", x=1)
    assert sel("x in [1, 2,]", x=2)  # a trailing comma is fine
    assert not sel("x in [1]", x=[1])  # a list attribute is in no list of literals
    assert sel("x not in [1]", x=[1])
    assert sel("x in ['a', 1, true, null, 2.5]", x=2.5)


def test_has() -> None:
    assert sel('services has "dns"', services={"dns": 3, "http": 1})
    assert not sel('services has "ssl"', services={"dns": 3})
    assert not sel('services has "3"', services={"dns": 3})  # keys, not values
    assert sel("ports has 443", ports=[80, 443]) and sel("ports has 443.0", ports=(80, 443))
    assert sel("ports has 443", ports={80, 443}) and sel("ports has 443", ports=frozenset({443}))
    assert sel("counts has 1", counts={1: "one"})
    assert not sel('ports has "443"', ports=[80, 443]) and not sel("ports has 443", ports=["443"])
    assert not sel("flags has 1", flags=[True]) and not sel("flags has true", flags=[1])  # bool is not a number
    assert not sel("flags has 1", flags={True: 1}) and sel("flags has true", flags=[False, True])
    assert not sel('s has "a"', s="abc")  # `~` is the substring test
    assert not sel("n has 1", n=1) and not sel('b has "a"', b=b"a") and not sel("l has 1", l=[])
    assert not sel("l has 1", l=[[1]])


@pytest.mark.parametrize(
    ("network", "inside", "outside"),
    [
        ("10.0.0.0/8", ["10.0.0.0", "10.255.255.255", "10.1.2.3", "::ffff:10.0.0.1"], ["11.0.0.0", "9.255.255.255"]),
        ("192.168.1.0/24", ["192.168.1.77"], ["192.168.2.1", "::ffff:192.168.2.1", "c0a8:0101::"]),
        ("10.1.2.3/8", ["10.200.0.1"], ["11.1.2.3"]),  # host bits are ignored
        ("10.0.0.1", ["10.0.0.1"], ["10.0.0.2"]),  # an address is its own /32
        ("0.0.0.0/0", ["0.0.0.0", "255.255.255.255", "127.0.0.1"], ["::1", "fd00::1"]),
        ("fd00::/8", ["fd00::1", "fdff:ffff::", "FD12:3456::1"], ["fe80::1", "10.0.0.1", "::ffff:10.0.0.1"]),
        ("2001:db8::/32", ["2001:db8::1", "2001:db8:ffff::", "2001:db8::1%eth0"], ["2001:db9::"]),
        ("::/0", ["::", "fe80::1", "::ffff:10.0.0.1"], ["10.0.0.1"]),
    ],
)
def test_within(network: str, inside: list[str], outside: list[str]) -> None:
    f = compile_filter(f'ip within "{network}"')
    for address in inside:
        assert f.matches({"ip": address}), address
        assert f.matches({"ip": ipaddress.ip_address(address.split("%")[0])}), address
    for address in outside:
        assert not f.matches({"ip": address}), address


@pytest.mark.parametrize(
    "value",
    ["10.0.0", "10.0.0.256", "010.0.0.1", "10.0.0.1/8", " 10.0.0.1", "10.0.0.1 ", "1０.0.0.1", "10..0.1", "host", "", 1,
     167772161, True, b"10.0.0.1", ["10.0.0.1"], "1" * 100, ":::", "::ffff:10.0.0.256"],
)  # fmt: skip
def test_within_is_false_for_anything_but_an_address(value: Any) -> None:
    assert not sel('ip within "0.0.0.0/0"', ip=value) and not sel('ip within "::/0"', ip=value)


@pytest.mark.parametrize("network", ["10.0.0.0/33", "10.0.0", "300.0.0.0/8", "fd00::/129", "fd00:::/8", "", "host"])
def test_bad_network_is_a_compile_error(network: str) -> None:
    err = error(f'ip within "{network}"')
    assert str(err).startswith(f'filter: bad network "{network}" at column 11 (expected an IPv4 or IPv6')
    assert err.column == 11


def test_within_needs_a_string() -> None:
    assert "expected a network string" in str(error("ip within 10")) and error("ip within 10").column == 11


@pytest.mark.parametrize(
    ("value", "truth"),
    [(True, True), (False, False), (1, True), (0, False), (0.0, False), ("x", True), ("", False), ([0], True),
     ([], False), ({}, False), ({"a": 0}, True), (None, False)],
)  # fmt: skip
def test_bare_name_is_a_truth_test(value: Any, truth: bool) -> None:
    assert sel("x", x=value) is truth
    assert sel("not x", x=value) is not truth
    assert sel("!x", x=value) is not truth
    assert sel("not not x", x=value) is truth


# --- logic and precedence -------------------------------------------------------------------------------------


@pytest.mark.parametrize("a", [False, True])
@pytest.mark.parametrize("b", [False, True])
@pytest.mark.parametrize("c", [False, True])
def test_precedence(a: bool, b: bool, c: bool) -> None:
    attrs = {"a": a, "b": b, "c": c}
    cases = {
        "a or b and c": a or (b and c),
        "a and b or c": (a and b) or c,
        "a || b && c": a or (b and c),
        "(a or b) and c": (a or b) and c,
        "not a and b": (not a) and b,
        "not a or b": (not a) or b,
        "not (a and b)": not (a and b),
        "! a && ! b": (not a) and (not b),
        "a and not b or not c and a": (a and not b) or (not c and a),
        "a or b or c": a or b or c,
        "a and b and c": a and b and c,
        "((a))": a,
        "not not a": a,
        "a and (b or (c and not a))": a and (b or (c and not a)),
    }
    for text, expected in cases.items():
        assert compile_filter(text).matches(attrs) is expected, text


def test_not_binds_to_the_following_test() -> None:
    assert sel('not service == "dns"', service="http") and not sel('not service == "dns"', service="dns")
    assert sel("not x in [1]", x=2) and sel("not x in [1]")  # not (x in [1])
    assert sel("!flag", flag=False) and sel("a != 1 && !b", a=2, b=0)


def test_no_spaces_needed_around_symbols() -> None:
    assert sel("(a>1)&&(b<=2)||!c", a=2, b=2, c=1)
    assert sel('s=="x"&&n!=-5', s="x", n=5)
    assert sel("l has'a'and s~'B'", l=["a"], s="abc")


# --- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bytes > ", "expected a value after '>' at column 9, found the end of the filter"),
        ("bytes >  and x", "expected a value after '>' at column 10, found 'and'"),
        ("service == dns", "expected a value after '==' at column 12, found name 'dns' (write a string in quotes"),
        ("a and", "expected an attribute name, '(' or 'not' after 'and' at column 6, found the end of the filter"),
        ("a or or b", "expected an attribute name, '(' or 'not' after 'or' at column 6, found 'or'"),
        ("not", "expected an attribute name, '(' or 'not' after 'not' at column 4"),
        ("5 > bytes", "expected an attribute name, '(' or 'not' at column 1, found number 5"),
        ('"dns"', "expected an attribute name, '(' or 'not' at column 1, found string \"dns\""),
        ("in == 1", "at column 1, found 'in' (write a name that is a keyword in backquotes: `in`)"),
        ("()", "expected an attribute name, '(' or 'not' after '(' at column 2, found ')'"),
        ("(a", "expected ')' after 'a' at column 3, found the end of the filter (to close the '(' at column 1)"),
        (
            "(a or (b)",
            "expected ')' after ')' at column 10, found the end of the filter (to close the '(' at column 1)",
        ),
        ("a)", "unmatched ')' at column 2"),
        ("a b", "expected 'and', 'or' or the end of the filter after 'a' at column 3, found name 'b'"),
        ("a == 1 2", "expected 'and', 'or' or the end of the filter after '1' at column 8, found number 2"),
        ("a not b", "expected 'in' after 'not' at column 7, found name 'b'"),
        ("a not", "expected 'in' after 'not' at column 6, found the end of the filter"),
        ("a in 5", "expected '[' to start a list after 'in' at column 6, found number 5"),
        ("a in [1 2]", "expected ',' or ']' after '1' at column 9, found number 2"),
        ("a in [1,", "expected a value after ',' at column 9, found the end of the filter"),
        ("a in [,]", "expected a value or ']' after '[' at column 7, found ','"),
        ("a in [b]", "expected a value or ']' after '[' at column 7, found name 'b'"),
        ("a has", "expected a value after 'has' at column 6, found the end of the filter"),
        ("a == == 1", "expected a value after '==' at column 6, found '=='"),
        ("a => 1", "expected a value after '=' at column 4, found '>'"),
        ("a & b", "unexpected character '&' at column 3 (did you mean '&&'?)"),
        ("a | b", "unexpected character '|' at column 3 (did you mean '||'?)"),
        ("a == 1 # comment", "unexpected character '#' at column 8"),
        ("a\u00a0== 1", "unexpected character '\\xa0' at column 2"),
        ("a - 1", "unexpected character '-' at column 3"),
    ],
)
def test_error_messages_name_the_column_and_what_was_expected(text: str, message: str) -> None:
    err = error(text)
    assert str(err).startswith("filter: ")
    assert message in str(err), str(err)
    column = int(re.findall(r"at column (\d+)", message)[-1]) if "to close" not in message else None
    if column is not None:
        assert err.column == column
    assert err.text == text
    assert isinstance(err, ValueError)


def test_error_caret_points_at_the_column() -> None:
    err = error("bytes > 10k and\tservice == dns")
    assert err.column == 28
    assert err.caret == "  bytes > 10k and service == dns\n                             ^"
    assert error("x" * (MAX_TEXT_LENGTH + 1)).caret == ""


# --- limits ---------------------------------------------------------------------------------------------------


def test_text_length_limit() -> None:
    longest = "a" * MAX_TEXT_LENGTH
    assert compile_filter(longest).matches({longest: 1})
    assert compile_filter(" " * MAX_TEXT_LENGTH).is_empty
    err = error("a" * (MAX_TEXT_LENGTH + 1))
    assert str(err) == f"filter: text too long ({MAX_TEXT_LENGTH + 1} characters, at most {MAX_TEXT_LENGTH})"


def test_nesting_limit() -> None:
    deepest_parens = "(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH
    assert compile_filter(deepest_parens).matches({"a": 1})
    assert compile_filter("not " * MAX_DEPTH + "a").matches({"a": 1}) is (MAX_DEPTH % 2 == 0)
    assert compile_filter("(not " * (MAX_DEPTH // 2) + "a" + ")" * (MAX_DEPTH // 2)).matches({"a": 1})
    for text, column in [
        ("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1), MAX_DEPTH + 1),
        ("!" * (MAX_DEPTH + 1) + "a", MAX_DEPTH + 1),
        ("(!" * (MAX_DEPTH // 2) + "!a" + ")" * (MAX_DEPTH // 2), MAX_DEPTH + 1),
    ]:
        err = error(text)
        assert str(err) == (
            f"filter: nested too deeply at column {column} (at most {MAX_DEPTH} levels of parentheses and 'not')"
        )
    # long flat chains are not nesting
    assert compile_filter(" or ".join(["a"] * 800)).matches({"a": 1})
    assert compile_filter(" and ".join(f"(a{i})" for i in range(300))).matches({f"a{i}": 1 for i in range(300)})


def test_list_limit() -> None:
    items = ",".join(["7"] * (MAX_LIST_ITEMS - 1) + ["8"])
    assert compile_filter(f"x in [{items}]").matches({"x": 8})
    text = f"x in [{items},9]"
    err = error(text)
    assert str(err) == f"filter: list too long at column {text.rindex('9') + 1} (at most {MAX_LIST_ITEMS} items)"


# --- with the graph -------------------------------------------------------------------------------------------


def test_on_element_attrs() -> None:
    host = Node("10.0.0.5", "host", "10.0.0.5", 2.0, "local", "lan", 1.0, 2.0,
                {"bytes": 12_000, "services": {"dns": 2, "http": 1}, "ports": [53, 80]})  # fmt: skip
    edge = Edge("e1", "10.0.0.5", "93.184.216.34", True, 3.0, "remote", "http", "conn", 1.0, 2.0,
                {"bytes": 500, "service": "http"})  # fmt: skip
    f = compile_filter('type == "node" and category == "local" and id within "10.0.0.0/8" and services has "dns"')
    assert f.matches(element_attrs(host)) and not f.matches(element_attrs(edge))
    f = compile_filter('service != "dns" and bytes > 10k')
    assert not f.matches(element_attrs(host))  # no service attribute
    assert not f.matches(element_attrs(edge))  # too few bytes
    assert compile_filter('directed and dst within "93.184.216.0/24" and weight >= 3').matches(element_attrs(edge))
    assert compile_filter("ports has 53 and not directed and size == 2").matches(element_attrs(host))


# --- the spec ---------------------------------------------------------------------------------------------

SPEC = (files("wiredraw.spec") / "filter.md").read_text(encoding="utf-8")


def spec_table(header: str) -> list[list[str]]:
    """The rows of the Markdown table that starts with ``header``, cells split on unescaped '|', code unquoted."""
    lines = SPEC[SPEC.index(header) :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append([c[1:-1] if c.startswith("`") and c.endswith("`") else c for c in cells])
    return rows


def test_spec_examples() -> None:
    block = SPEC[SPEC.index("```json", SPEC.index("## 6. Examples")) :]
    elements = json.loads(block[len("```json") : block.index("```", 3)])
    ids = [e["id"] for e in elements]
    rows = spec_table("| filter | selects |")
    assert len(rows) >= 15
    for text, selects, _because in rows:
        f = compile_filter("" if text == "(blank text)" else text)
        expected = ids if selects == "everything" else [] if selects == "nothing" else selects.split(", ")
        assert [e["id"] for e in elements if f.matches(e)] == expected, text


def test_spec_error_examples() -> None:
    rows = spec_table("| filter | error |")
    assert len(rows) >= 5
    for text, message in rows:
        assert str(error(text)) == message


def test_spec_limits() -> None:
    assert dict(spec_table("| limit | value |")) == {
        "text length": f"{MAX_TEXT_LENGTH} characters",
        "nesting: parentheses and `not`/`!` together": f"{MAX_DEPTH} levels",
        "items in one list": f"{MAX_LIST_ITEMS}",
    }


def test_spec_keywords_and_escapes() -> None:
    grammar = SPEC[SPEC.index("```ebnf") : SPEC.index("```", SPEC.index("```ebnf") + 3)]
    quoted = set(re.findall(r'"([a-z]+)"', grammar)) - {"e", "k", "u", "b", "f", "n", "r", "t"}
    assert quoted == KEYWORDS
    for escape in re.findall(r'"(.)"', grammar[grammar.index("escape ") : grammar.index("number ")]):
        if escape != "u":
            compile_filter(f'x == "\\{escape}"')


# --- properties -----------------------------------------------------------------------------------------------
# A random small AST is rendered to text (keyword spellings, quoting, suffixes, parentheses varied) and compiled;
# the compiled filter must agree with `reference`, a direct reading of spec/filter.md.

KEYWORDS = {"and", "or", "not", "in", "has", "within", "true", "false", "null"}
NAMES = ["a", "b", "x.y", "odd name", "in", "b`q"]
NETWORKS = ["10.0.0.0/8", "10.0.0.1/32", "10.1.2.3/8", "192.168.0.0/16", "0.0.0.0/0", "fd00::/8", "::/0",
            "2001:db8::/32", "10.0.0.1"]  # fmt: skip
ADDRESSES = ["10.0.0.1", "10.1.2.3", "192.168.1.1", "11.0.0.1", "fd00::1", "::ffff:10.0.0.1", "::1", "2001:db8::5",
             "010.0.0.1", "1.2.3.256", "not an ip"]  # fmt: skip
STRINGS = ["", "a", "A", "ab", "dns", "DNS", "Dns", "10", "9", "é", "q\"'\\`\n"]

strings = st.one_of(st.sampled_from(STRINGS), st.text(max_size=6))
literals = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([1000, -2000, 10**6, 3 * 10**9, 10**30]),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0.5, -1.5, 2.0, 1e3, 1e-3, -0.0, 1e300]),
    st.floats(allow_nan=False, allow_infinity=False),
    strings,
    st.booleans(),
    st.none(),
)
names = st.sampled_from(NAMES)
leaves = st.one_of(
    st.tuples(st.just("cmp"), names, st.sampled_from(["==", "=", "!=", "<", "<=", ">", ">="]), literals),
    st.tuples(st.just("contains"), names, strings),
    st.tuples(st.just("in"), names, st.lists(literals, max_size=4)),
    st.tuples(st.just("notin"), names, st.lists(literals, max_size=4)),
    st.tuples(st.just("has"), names, literals),
    st.tuples(st.just("within"), names, st.sampled_from(NETWORKS)),
    st.tuples(st.just("truth"), names),
)
spelling = st.sampled_from


def _composites(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.tuples(st.just("not"), children, spelling(["not", "NOT", "Not", "!"])),
        st.tuples(st.just("and"), children, children, spelling(["and", "AND", "&&"])),
        st.tuples(st.just("or"), children, children, spelling(["or", "OR", "||"])),
        st.tuples(st.just("paren"), children),
    )


trees = st.recursive(leaves, _composites, max_leaves=8)

plain_values = st.one_of(
    literals,
    st.sampled_from(ADDRESSES),
    st.sampled_from([math.nan, math.inf, -math.inf, b"a", b"dns"]),
    st.lists(literals, max_size=4),
    st.dictionaries(strings, st.integers(0, 3), max_size=3),
    st.frozensets(st.one_of(st.integers(-3, 3), st.sampled_from(STRINGS), st.booleans()), max_size=3),
    st.tuples(st.integers(-3, 3), st.sampled_from(STRINGS)),
)


def literals_of(tree: Any) -> Iterator[tuple[str, Any]]:
    """(name, literal) of each test in the tree (for `within`, the addresses we try)."""
    tag = tree[0]
    if tag in ("not", "paren"):
        yield from literals_of(tree[1])
    elif tag in ("and", "or"):
        yield from literals_of(tree[1])
        yield from literals_of(tree[2])
    elif tag in ("cmp", "has", "contains"):
        yield tree[1], tree[-1]
    elif tag in ("in", "notin"):
        yield from ((tree[1], item) for item in tree[2])
    elif tag == "within":
        yield from ((tree[1], address) for address in ADDRESSES)


def variants(value: Any) -> list[Any]:
    """Values near a literal, so that random attributes often meet the tree's tests (and their edges)."""
    out = [value, [value], (value, 0)]
    if isinstance(value, bool):
        out += [int(value), not value, [int(value)], {int(value): 1}]
    elif isinstance(value, (int, float)):
        out += [value + 1, value - 1, {value: 1}, frozenset({value})]
        if isinstance(value, int) and abs(value) < 2**53:
            out.append(float(value))
        if isinstance(value, float) and value.is_integer():
            out.append(int(value))
    elif isinstance(value, str):
        out += [value.upper(), value.swapcase(), "<" + value + ">", value + "\x00", {value: 1}, frozenset({value})]
    return out


def attr_maps_for(tree: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Random attributes, some of them set from the tree's own tests (its names, values near its literals)."""
    pairs = [(name, v) for name, literal in literals_of(tree) for v in variants(literal)]
    related = st.lists(st.sampled_from(pairs), max_size=4).map(dict) if pairs else st.just({})
    unrelated = st.dictionaries(names, plain_values, max_size=3)
    return st.tuples(unrelated, related).map(lambda p: {**p[0], **p[1]})


def render_name(name: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) and name.lower() not in KEYWORDS:
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def render_string(value: str) -> str:
    quote = "'" if '"' in value and "'" not in value else '"'
    out = []
    for c in value:
        if c in ("\\", quote):
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif 0x7F <= ord(c) <= 0xFFFF:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return quote + "".join(out) + quote


def render_literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "TRUE" if value else "false"
    if isinstance(value, int):
        for suffix, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
            if value and value % size == 0:
                return f"{value // size}{suffix}"
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return render_string(value)


PRECEDENCE = {"or": 1, "and": 2, "not": 3}


def render(tree: Any, need: int = 0) -> str:
    tag = tree[0]
    if tag == "paren":
        return "(" + render(tree[1]) + ")"
    if tag in PRECEDENCE:
        if tag == "not":
            text = f"{tree[2]} {render(tree[1], 3)}"
        else:
            text = f"{render(tree[1], PRECEDENCE[tag])} {tree[3]} {render(tree[2], PRECEDENCE[tag])}"
        return f"({text})" if PRECEDENCE[tag] < need else text
    name = render_name(tree[1])
    if tag == "cmp":
        return f"{name} {tree[2]} {render_literal(tree[3])}"
    if tag == "contains":
        return f"{name} ~ {render_string(tree[2])}"
    if tag in ("in", "notin"):
        items = "[" + ", ".join(render_literal(v) for v in tree[2]) + "]"
        return f"{name} {'not in' if tag == 'notin' else 'in'} {items}"
    if tag == "has":
        return f"{name} has {render_literal(tree[2])}"
    if tag == "within":
        return f'{name} within "{tree[2]}"'
    assert tag == "truth"
    return name


def kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def same(value: Any, literal: Any) -> bool:
    return kind(value) is not None and kind(value) == kind(literal) and value == literal


def reference(tree: Any, attrs: Mapping[str, Any]) -> bool:
    tag = tree[0]
    if tag == "paren":
        return reference(tree[1], attrs)
    if tag == "not":
        return not reference(tree[1], attrs)
    if tag == "and":
        return reference(tree[1], attrs) and reference(tree[2], attrs)
    if tag == "or":
        return reference(tree[1], attrs) or reference(tree[2], attrs)
    v = attrs.get(tree[1])
    if tag == "truth":
        return bool(v)
    if v is None:
        return False
    if tag == "cmp":
        op, lit = tree[2], tree[3]
        if kind(v) is None or kind(v) != kind(lit) or (kind(v) == "bool" and op not in ("==", "=", "!=")):
            return False
        if op in ("==", "="):
            return bool(v == lit)
        if op == "!=":
            return bool(v != lit)
        return bool({"<": v < lit, "<=": v <= lit, ">": v > lit, ">=": v >= lit}[op])
    if tag == "contains":
        return isinstance(v, str) and tree[2].casefold() in v.casefold()
    if tag == "in":
        return any(same(v, item) for item in tree[2])
    if tag == "notin":
        return not any(same(v, item) for item in tree[2])
    if tag == "has":
        return isinstance(v, (list, tuple, set, frozenset, dict)) and any(same(item, tree[2]) for item in v)
    assert tag == "within"
    if not isinstance(v, str):
        return False
    try:
        address = ipaddress.ip_address(v)
    except ValueError:
        return False
    network = ipaddress.ip_network(tree[2], strict=False)
    if address.version != network.version and isinstance(address, ipaddress.IPv6Address):
        return address.ipv4_mapped is not None and address.ipv4_mapped in network
    return address in network


def names_of(tree: Any) -> Iterator[str]:
    if tree[0] in ("not", "paren"):
        yield from names_of(tree[1])
    elif tree[0] in ("and", "or"):
        yield from names_of(tree[1])
        yield from names_of(tree[2])
    else:
        yield tree[1]


@FAST
@given(trees, st.data())
def test_agrees_with_the_reference_evaluator(tree: Any, data: st.DataObject) -> None:
    text = render(tree)
    f = compile_filter(text)
    assert f.names == set(names_of(tree))
    attr_list = data.draw(st.lists(attr_maps_for(tree), min_size=1, max_size=8))
    for attrs in attr_list:
        assert f.matches(attrs) is reference(tree, attrs), (text, attrs)


FRAGMENTS = ["a", "x.y", "`q`", "`", "(", ")", "[", "]", ",", "and", "OR", "not", "!", "&&", "||", "in", "has",
             "within", "~", "==", "=", "!=", "<", "<=", ">=", ">", '"s"', "'t", '"\\', "\\u", "5", "-1.5e3", "10k",
             "1e", "true", "null", '"10.0.0.0/8"', '"::/129"', " ", "\t", "\n", "&", "|", "-", ".", "é"]  # fmt: skip
texts = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(FRAGMENTS), max_size=25).map(" ".join),
    st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join),
    st.tuples(trees.map(render), st.integers(0, 200)).map(lambda p: p[0][: p[1]]),  # cut short
    st.tuples(trees.map(render), st.integers(0, 200), st.sampled_from(FRAGMENTS)).map(
        lambda p: p[0][: p[1]] + p[2] + p[0][p[1] :]  # a fragment slipped in
    ),
)


@FAST
@given(texts)
def test_compile_raises_only_filter_errors(text: str) -> None:
    try:
        f = compile_filter(text)
    except FilterError as err:
        assert str(err).startswith("filter: ")
        assert err.column is None or 1 <= err.column <= len(text) + 1
        assert isinstance(err.caret, str)
        return
    assert f.matches({}) in (True, False)


class Hostile:
    """Raises from every operation a filter might try."""

    def _raise(self, *args: Any) -> Any:
        raise RuntimeError("hostile")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = __bool__ = __str__ = __len__ = __iter__ = _raise
    __contains__ = _raise


class HostileStr(str):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile")

    __hash__ = str.__hash__

    def casefold(self) -> str:
        raise RuntimeError("hostile")

    def split(self, *args: Any, **kw: Any) -> list[str]:
        raise RuntimeError("hostile")


class HostileInt(int):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile")

    __hash__ = int.__hash__
    __lt__ = __gt__ = __le__ = __ge__ = __ne__ = __eq__  # type: ignore[assignment]


class HostileMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("hostile")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("hostile")

    def __len__(self) -> int:
        raise RuntimeError("hostile")


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**400), 10**400),
    st.floats(),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.sampled_from(ADDRESSES),
    st.builds(Hostile),  # builds, not sampled_from: Hypothesis hashes sampled values
    st.builds(HostileStr, st.sampled_from(["dns", "10.0.0.1", "fd00::1"])),
    st.builds(HostileInt, st.integers(-3, 3)),
    st.builds(HostileMapping),
    st.sampled_from([ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("fd00::1"), object(), 1j, ...]),
)
anything = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(), st.booleans()), children, max_size=3),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=3), st.booleans(), st.floats()), max_size=3),
    ),
    max_leaves=6,
)


@FAST
@given(trees, st.dictionaries(names, anything, max_size=len(NAMES)))
def test_matches_never_raises(tree: Any, attrs: dict[str, Any]) -> None:
    f = compile_filter(render(tree))
    assert f.matches(attrs) in (True, False)
    assert f.matches(HostileMapping()) in (True, False)
    assert f.matches(None) in (True, False)  # type: ignore[arg-type]


@FAST
@given(st.text(), st.booleans())
def test_a_json_string_literal_is_a_filter_string(value: str, ascii_only: bool) -> None:
    literal = json.dumps(value, ensure_ascii=ascii_only)
    assert compile_filter(f"x == {literal}").matches({"x": value})
    if value:  # any name can be written in backquotes
        quoted = "`" + value.replace("\\", "\\\\").replace("`", "\\`") + "`"
        assert compile_filter(quoted).names == {value}
        assert compile_filter(quoted).matches({value: 1})
