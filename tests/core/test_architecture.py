"""The layers of docs/architecture.md hold: the import contracts in pyproject.toml are kept, they cover every module
of the kernel, and they would catch an arrow that runs back up (a kernel module importing the server)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
# Checking contracts on a graph changed in memory needs a process of its own: in the test process, something that
# conftest imports makes zope.interface answer ``dir()`` of import-linter's contract classes with a name that
# ``getattr`` then refuses.
CHECK = """
import copy, json, sys, tomllib
import grimp
from importlinter.contracts.independence import IndependenceContract
from importlinter.contracts.layers import LayersContract
config = tomllib.loads(open(sys.argv[1], encoding="utf-8").read())["tool"]["importlinter"]
types = {"layers": LayersContract, "independence": IndependenceContract}
session = {"root_packages": config["root_packages"]}
graph = grimp.build_graph(*config["root_packages"], cache_dir=None)
out = []
for importer, imported in json.loads(sys.argv[2]):
    g = copy.deepcopy(graph)
    if importer:
        g.add_import(importer=importer, imported=imported, line_number=1, line_contents="import " + imported)
    contracts = [types[c["type"]](name=c["name"], session_options=session, contract_options=dict(c))
                 for c in config["contracts"]]
    out.append([c.name for c in contracts if not c.check(copy.deepcopy(g), verbose=False).kept])
print(json.dumps(out))
"""


def broken_contracts(added: list[tuple[str, str]]) -> list[list[str]]:
    """For each (importer, imported) added to the tree's real import graph, the contracts it breaks."""
    done = subprocess.run([sys.executable, "-c", CHECK, str(ROOT / "pyproject.toml"), json.dumps(added)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_lint_imports_keeps_every_contract():
    """The command an engineer runs (`lint-imports`) agrees."""
    done = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
                           "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(CONFIG['contracts'])} kept, 0 broken" in done.stdout


def test_every_module_of_core_is_in_a_layer():
    """A new file in core/ must be placed in the layers, or it would escape them."""
    named = {part.strip() for c in CONFIG["contracts"] if c["type"] == "layers" for layer in c["layers"]
             for alternatives in layer.split("|") for part in alternatives.split(":")}
    modules = {f"wiredraw.core.{p.stem}" for p in (ROOT / "core").glob("*.py") if p.stem != "__init__"}
    modules |= {f"wiredraw.core.{p.name}" for p in (ROOT / "core").iterdir()
                if p.is_dir() and (p / "__init__.py").exists() and p.name != "testing"}
    assert modules - named == set()


ARROWS_BACK_UP = [
    ("wiredraw.core.graph", "wiredraw.core.server.live"),  # the kernel reaching up into the server
    ("wiredraw.core.module", "wiredraw.probes.runner"),  # ... into a probe
    ("wiredraw.core.server.ingest", "wiredraw.plugins.net_zeek.schema"),  # the server naming a module
    ("wiredraw.viz.backend", "wiredraw.core.server.service"),  # the viewer importing the server
    ("wiredraw.core.server.service", "wiredraw.core.cli"),  # the server importing the command line
    ("wiredraw.plugins.proc_events.view", "wiredraw.plugins.net_zeek.query"),  # one plugin using another's code
]


def test_the_tree_keeps_the_contracts_and_each_arrow_back_up_breaks_one():
    as_is, *changed = broken_contracts([("", ""), *ARROWS_BACK_UP])
    assert as_is == []
    for arrow, broken in zip(ARROWS_BACK_UP, changed, strict=True):
        assert broken != [], f"{arrow[0]} -> {arrow[1]} breaks no contract"
