"""proc_events: the module object and its registration (entry point ``wiredraw.modules: proc_events``)."""

from __future__ import annotations

from collections.abc import Callable

from wiredraw.core.hookspecs import hookimpl
from wiredraw.core.module import Module, builtin_spec_path


class ProcEventsModule(Module):
    spec_path = builtin_spec_path("proc_events")


@hookimpl
def register_modules(register: Callable[[Module], None]) -> None:
    register(ProcEventsModule())
