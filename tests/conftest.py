"""Shared fixtures. One section per subsystem; keep each small."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from processes import World, short_dir
from wiredraw.core.server.embedded_redis import EmbeddedRedis

# --- the code under test ----------------------------------------------------------------------------------
# The tree is not importable as `wiredraw` (core/ installs as wiredraw.core, ...): the tests import the installed
# copy. A copy installed before the last edit (pip install ., not -e) would be tested instead of the tree, green
# or red for the wrong code; refuse to run then.


def _stale_install() -> list[str]:
    import importlib.util
    import tomllib

    root = Path(__file__).resolve().parents[1]
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = dict(setup["package-dir"])
    for package in setup["packages"]:  # subpackages (wiredraw.core.server) sit in their parent's folder
        parent, _, name = package.rpartition(".")
        if package not in dirs and parent in dirs:
            dirs[package] = f"{dirs[parent]}/{name}"
    differ = []
    for package, folder in dirs.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            differ.append(f"{folder}/ (not installed)")
            continue
        installed = Path(next(iter(spec.submodule_search_locations))).resolve()
        if installed == (root / folder).resolve():
            continue  # an editable install: the tree itself
        for source in sorted((root / folder).glob("*.py")):
            copy = installed / source.name
            if not copy.is_file() or copy.read_bytes() != source.read_bytes():
                differ.append(str(source.relative_to(root)))
    return differ


def pytest_configure(config: pytest.Config) -> None:
    differ = _stale_install()
    if differ:
        raise pytest.UsageError(
            f"the installed wiredraw is not this working tree ({len(differ)} file(s) differ: "
            f"{', '.join(differ[:5])}{' ...' if len(differ) > 5 else ''}); the tests would run the installed copy. "
            f"Install the tree again: python3 -m pip install -e '.[test]' (editable, for development) or "
            f"python3 -m pip install '.[test]'"
        )


# --- Redis ---------------------------------------------------------------------------------------------
# One private, ephemeral redis-server for the whole session (the same starter the server uses);
# every test that asks for `redis_url` or `redis_client` gets it emptied first.


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), ephemeral=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    if not redis_server.alive():  # a test broke it: the next one still gets a server
        redis_server.restart()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    yield redis_server.url


@pytest.fixture
def store(redis_url: str) -> Iterator[object]:
    """The server's Redis client interface over redis-py (tests/viz_store.py), for a module's view translation."""
    from viz_store import Store

    s = Store(redis_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        client.close()


# --- processes ------------------------------------------------------------------------------------------
# A World starts real `wiredraw server` / `wiredraw probe` processes and stops them all in teardown.


@pytest.fixture
def world() -> Iterator[World]:
    root = short_dir()
    w = World(root)
    try:
        yield w
    finally:
        w.close()
        shutil.rmtree(root, ignore_errors=True)


# --- Panda3D --------------------------------------------------------------------------------------------
# One headless ShowBase for the session (Panda allows one per process): p3tinydisplay offscreen, 640x480.


@pytest.fixture(scope="session")
def panda_base() -> Iterator[object]:
    offscreen = pytest.importorskip("wiredraw.viz.offscreen")
    try:
        base = offscreen.open_offscreen(640, 480)
    except offscreen.OffscreenError as e:
        pytest.skip(f"no headless Panda3D display: {e}")
    try:
        yield base
    finally:
        base.destroy()
