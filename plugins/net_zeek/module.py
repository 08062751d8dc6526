"""net_zeek: the module object and its registration (entry point ``wiredraw.modules: net_zeek``)."""

from __future__ import annotations

from collections.abc import Callable

from wiredraw.core.hookspecs import hookimpl
from wiredraw.core.module import Module, builtin_spec_path
from wiredraw.plugins.net_zeek.keys import ZeekCollector, ZeekKeys


class NetZeekModule(ZeekKeys, ZeekCollector, Module):
    spec_path = builtin_spec_path("net_zeek")


@hookimpl
def register_modules(register: Callable[[Module], None]) -> None:
    register(NetZeekModule())
