"""The core knows no module's specifics: no line of code in core/, probes/ or viz/ names a registered module.

"Names" means an identifier, an import, or a string literal that is a name, a key or a dotted path (no spaces):
what code would use to reach a module. Comments, docstrings and prose in help texts ("module to view, e.g.
net_zeek") may mention a module as an example. The slugs come from spec/registry.toml, so a new module is covered.
"""

from __future__ import annotations

import ast
import io
import tokenize
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("core", "probes", "viz")


def module_slugs() -> list[str]:
    registry = tomllib.loads((ROOT / "spec" / "registry.toml").read_text())
    return [m["slug"] for m in registry["modules"] if m["slug"] != "core"]


def docstring_lines(source: str) -> set[int]:
    """Line numbers of the docstrings of modules, classes and functions."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(
                    body[0].value.value, str):
                lines.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    return lines


def literal_text(token: str) -> str:
    """The content of a string token, without its prefix and quotes."""
    body = token.lstrip("rRbBuUfF")
    for quote in ('"""', "'''", '"', "'"):
        if body.startswith(quote) and body.endswith(quote) and len(body) >= 2 * len(quote):
            return body[len(quote):-len(quote)]
    return body


def names_in(path: Path, slugs: list[str], source: str | None = None) -> list[str]:
    """Hits as "path:line: token". Adjacent string literals are one literal (implicit concatenation: a help text
    cut over two lines is prose as a whole)."""
    source = path.read_text(encoding="utf-8") if source is None else source
    docs = docstring_lines(source)
    found = []
    strings: list[tokenize.TokenInfo] = []

    def check_strings() -> None:
        if strings and strings[0].start[0] not in docs:
            content = "".join(literal_text(t.string) for t in strings)
            if len(content.split()) == 1 and any(slug in content for slug in slugs):  # prose may name one
                found.append(f"{path}:{strings[0].start[0]}: {' '.join(t.string for t in strings)}")
        strings.clear()

    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING:
            strings.append(tok)
            continue
        if tok.type in (tokenize.NL, tokenize.COMMENT) and strings:
            continue
        check_strings()
        if tok.type == tokenize.NAME and any(slug in tok.string for slug in slugs):
            found.append(f"{path}:{tok.start[0]}: {tok.string}")
        elif tokenize.tok_name.get(tok.type) == "FSTRING_MIDDLE" and len(tok.string.split()) == 1 and any(
                slug in tok.string for slug in slugs):  # Python 3.12+ tokenizes f-strings in parts
            found.append(f"{path}:{tok.start[0]}: {tok.string}")
    check_strings()
    return found


def test_core_probes_and_viz_name_no_module():
    slugs = module_slugs()
    assert {"net_zeek", "proc_events"} <= set(slugs)
    files = [f for d in SCANNED if (ROOT / d).is_dir() for f in sorted((ROOT / d).rglob("*.py"))]
    assert any(f.parent.name == "core" for f in files)
    found = [hit for f in files for hit in names_in(f, slugs)]
    assert found == [], "the core names a module:\n" + "\n".join(found)


def test_the_scan_would_catch_a_module_named_in_code():
    source = ('"""Docstring naming net_zeek is fine."""\n'
              'from wiredraw.plugins.net_zeek import viz  # comment naming proc_events is fine\n'
              'KEY = "wd:proc_events:alive"\n'
              'HELP = "module to view, e.g. net_zeek (default: the only one)"\n'
              'SLUG = \'proc_events\'\n')
    found = names_in(Path("sample.py"), ["net_zeek", "proc_events"], source)
    assert [h.split(": ", 1)[1] for h in found] == ["net_zeek", '"wd:proc_events:alive"', "'proc_events'"]
