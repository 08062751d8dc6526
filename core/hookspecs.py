"""The hooks a wiredraw plugin may implement. Few, verb-first, each one documented.

A test checks that every hook here has a docstring with ``versionadded`` and that the
signature documented in docs/ matches (datasette's test_docs style).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from wiredraw.core.module import Module

PROJECT = "wiredraw"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_modules(register: Callable[[Module], None]) -> None:
    """Contribute modules: call ``register(module)`` once per module the plugin brings.

    Fires once, when the plugin manager is built (at start of every ``wiredraw`` command).
    The host validates each module at once against its declaration and the ID registry and
    raises an error naming the plugin, the field, what was expected and what came.

    :param register: callable taking one :class:`wiredraw.core.module.Module` instance.
    :returns: nothing; the return value is ignored.

    versionadded: 0.1
    """
