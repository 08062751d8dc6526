"""``wiredraw new-module``: the scaffolded distribution is complete and green at once.

- fast: the files are there, TOML/JSON parse, the generated module passes the conformance suite in-process
  (imported from the generated folder), its source test passes, and bad slugs / folders are refused;
- the must-hold (issue #7): scaffold into a temporary folder, install it into a fresh virtual environment
  together with wiredraw, run its own tests there (they pass) and ``wiredraw plugins --json`` there (it lists it).

The virtual environment is made with ``--system-site-packages``: wiredraw's heavy dependencies (panda3d, twisted,
redis, msgpack, pytest, ...) come from the environment running this test instead of being downloaded; wiredraw
itself (a copy of this checkout) and the scaffold are installed into it with ``--no-deps``, offline
(``--no-index --no-build-isolation``) when the venv's setuptools can build a wheel by itself, else with pip's
build isolation (which fetches setuptools from the configured index). Nothing is installed into, or written to,
the environment running the test or this checkout.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from wiredraw.core.cli import main
from wiredraw.core.cli.scaffold import ScaffoldError, create, names_for
from wiredraw.testing import CHECKS, ModuleConformance, run_check

ROOT = Path(__file__).resolve().parents[3]
SLUG = "my_source"
EXPECTED = {
    "pyproject.toml",
    "tests/test_my_source_conformance.py",
    "tests/test_my_source_source.py",
    "wiredraw_my_source/README.md",
    "wiredraw_my_source/__init__.py",
    "wiredraw_my_source/schema.py",
    "wiredraw_my_source/module.py",
    "wiredraw_my_source/my_source.toml",
    "wiredraw_my_source/source.py",
    "wiredraw_my_source/vectors/my_source-messages.json",
    "wiredraw_my_source/view.py",
    "wiredraw_my_source/viz.sample.toml",
}


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WIREDRAW_", "PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


@pytest.fixture
def scaffolded(tmp_path, capsys):
    target = tmp_path / "wiredraw-my-source"
    assert main(["new-module", SLUG, "--dir", str(target)]) == 0
    out = capsys.readouterr().out
    return target, out


@pytest.fixture
def generated_package(scaffolded):
    """The generated package imported from its folder (not installed), unloaded afterwards."""
    target, _ = scaffolded
    sys.path.insert(0, str(target))
    try:
        yield importlib.import_module("wiredraw_my_source.module"), target
    finally:
        sys.path.remove(str(target))
        for name in [n for n in sys.modules if n == "wiredraw_my_source" or n.startswith("wiredraw_my_source.")]:
            del sys.modules[name]


# --- fast: a broken template fails here ------------------------------------------------------------------------


def test_new_module_writes_the_distribution_and_says_what_next(scaffolded):
    target, out = scaffolded
    written = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert written == EXPECTED
    for rel in EXPECTED:
        assert rel in out
    assert "pip install -e ." in out and "wiredraw plugins" in out
    assert "{{" not in "".join(p.read_text() for p in target.rglob("*") if p.is_file())

    pyproject = tomllib.loads((target / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "wiredraw-my-source"
    assert "wiredraw" in pyproject["project"]["dependencies"]
    assert pyproject["project"]["entry-points"]["wiredraw.modules"] == {SLUG: "wiredraw_my_source.module"}
    data = pyproject["tool"]["setuptools"]["package-data"]["wiredraw_my_source"]
    assert {"my_source.toml", "README.md", "vectors/*.json"} <= set(data)
    spec = tomllib.loads((target / "wiredraw_my_source" / "my_source.toml").read_text())
    assert (spec["id"], spec["slug"]) == (999, SLUG)
    tomllib.loads((target / "wiredraw_my_source" / "viz.sample.toml").read_text())
    vectors = json.loads((target / "wiredraw_my_source" / "vectors" / "my_source-messages.json").read_text())
    assert vectors["module"] == SLUG and set(vectors["messages"]) == set(spec["messages"])


def test_generated_module_passes_the_conformance_suite_in_process(generated_package):
    module_py, target = generated_package
    package = target / "wiredraw_my_source"

    class Suite(ModuleConformance):
        module = module_py.MySourceModule()
        vectors = package / "vectors" / "my_source-messages.json"

    suite = Suite()
    for check in CHECKS:
        run_check(suite, check)
    # The viz options are checked: a bad one is a ValueError naming it.
    with pytest.raises(ValueError, match="fade"):
        module_py.MySourceModule().make_view(None, {"fade": -1})


def test_generated_source_test_passes(generated_package, tmp_path):
    _, target = generated_package
    sys.path.insert(0, str(target / "tests"))
    try:
        mod = importlib.import_module("test_my_source_source")
        mod.test_source_reads_complete_lines_and_resumes(tmp_path)
    finally:
        sys.path.remove(str(target / "tests"))
        sys.modules.pop("test_my_source_source", None)


def test_generated_write_path_test_passes(generated_package):
    """The scaffold's write path (module.write -> its schema part) counts as the server counts."""
    _, target = generated_package
    sys.path.insert(0, str(target / "tests"))
    try:
        mod = importlib.import_module("test_my_source_conformance")
        mod.test_write_path_counts_new_repeats_and_rejects()
    finally:
        sys.path.remove(str(target / "tests"))
        sys.modules.pop("test_my_source_conformance", None)


def test_refuses_bad_slugs_ids_and_busy_folders(tmp_path, capsys):
    for slug in ("My", "x", "1abc", "a-b", "proc_events", "core"):
        with pytest.raises(ScaffoldError, match=repr(slug)):
            create(slug, tmp_path / slug)
        assert not (tmp_path / slug).exists()
    with pytest.raises(ScaffoldError, match="module id 5"):
        create("abc", tmp_path / "abc", module_id=5)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="not empty"):
        create("abc", busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    assert main(["new-module", "abc", "--dir", str(busy)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["new-module", "proc_events", "--dir", str(tmp_path / "pe")]) == 2
    assert "already taken" in capsys.readouterr().err
    made = create("abc", tmp_path / "empty", module_id=4242)  # an empty folder is fine; a private id too
    assert made.module_id == 4242 and "id = 4242" in (tmp_path / "empty" / "wiredraw_abc" / "abc.toml").read_text()
    assert names_for("my_source")["Name"] == "MySource"


def test_generated_code_is_ruff_clean(scaffolded):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    target, _ = scaffolded
    result = subprocess.run([ruff, "check", "--no-cache", str(target)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the must-hold: installed into a fresh virtual environment, its tests pass and wiredraw lists it -------------


def _pip_install(python: Path, *args: str, cwd: Path) -> None:
    """Offline first (no index, no build isolation); if the venv cannot build that way (an old setuptools
    without bdist_wheel), with pip's build isolation."""
    base = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-cache-dir",
            "--disable-pip-version-check"]
    env = _clean_env()
    offline = subprocess.run([*base, "--no-index", "--no-build-isolation", *args], capture_output=True, text=True,
                             cwd=cwd, env=env, timeout=300)
    if offline.returncode == 0:
        return
    isolated = subprocess.run([*base, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert isolated.returncode == 0, (f"pip install {' '.join(args)} failed offline:\n{offline.stderr[-2000:]}\n"
                                      f"and with build isolation:\n{isolated.stderr[-3000:]}")


@pytest.mark.timeout(600)
def test_scaffold_installs_into_a_fresh_venv_passes_its_tests_and_is_listed(tmp_path):
    target = tmp_path / "wiredraw-my-source"
    made = subprocess.run([sys.executable, "-m", "wiredraw.core.cli", "new-module", SLUG, "--dir", str(target)],
                          capture_output=True, text=True, env=_clean_env(), cwd=tmp_path, timeout=120)
    assert made.returncode == 0, made.stderr

    env_dir = tmp_path / "venv"
    try:
        venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    except Exception as exc:  # e.g. a Python built without ensurepip
        pytest.skip(f"cannot create a virtual environment with pip here: {type(exc).__name__}: {exc}")
    python = env_dir / "bin" / "python"

    # wiredraw: a copy of this checkout (building in place would write build/ and *.egg-info into it).
    copy = tmp_path / "wiredraw-src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, copy / name)
    for name in ("core", "plugins", "probes", "viz", "spec"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    _pip_install(python, str(copy), cwd=tmp_path)
    _pip_install(python, "-e", str(target), cwd=tmp_path)

    where = subprocess.run([str(python), "-c", "import wiredraw.core, wiredraw_my_source; "
                            "print(wiredraw.core.__file__); print(wiredraw_my_source.__file__)"],
                           capture_output=True, text=True, env=_clean_env(), cwd=tmp_path, timeout=60)
    assert where.returncode == 0, where.stderr
    core_file, pkg_file = where.stdout.split()
    assert Path(core_file).is_relative_to(env_dir), f"wiredraw imported from {core_file}, not from the venv"
    assert Path(pkg_file).is_relative_to(target)

    tests = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], capture_output=True,
                           text=True, env=_clean_env(), cwd=target, timeout=300)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout and "skipped" not in tests.stdout

    listed = subprocess.run([str(env_dir / "bin" / "wiredraw"), "plugins", "--json"], capture_output=True,
                            text=True, env=_clean_env(), cwd=tmp_path, timeout=120)
    assert listed.returncode == 0, listed.stderr
    modules = {m["slug"]: m for m in json.loads(listed.stdout)["modules"]}
    assert modules[SLUG]["id"] == 999 and modules[SLUG]["plugin"] == SLUG
    assert json.loads(listed.stdout)["broken"] == []

    # The environment running this test does not know the module.
    outside = subprocess.run([sys.executable, "-m", "wiredraw.core.cli", "plugins", "--json"], capture_output=True,
                             text=True, env=_clean_env(), cwd=tmp_path, timeout=120)
    assert SLUG not in {m["slug"] for m in json.loads(outside.stdout)["modules"]}
