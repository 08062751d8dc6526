"""``wiredraw.testing``: the conformance suite every module's tests inherit (built-in or third-party).

- :class:`ModuleConformance`: subclass it in a test file, set ``module`` and ``vectors``; pytest runs its checks.
- :mod:`wiredraw.testing.vectors`: the message vectors file format and its loader.
- :mod:`wiredraw.testing.redis`: the kit's own redis-server and the sync adapters over it.
"""

from __future__ import annotations

from wiredraw.testing.conformance import CHECKS, README_SECTIONS, ModuleConformance, run_check
from wiredraw.testing.redis import RedisKit, SyncStore, keyspace_events, run, shared_redis, write_messages
from wiredraw.testing.vectors import ModuleVectors, Vector, VectorFileError, load_vectors

__all__ = [
    "CHECKS",
    "README_SECTIONS",
    "ModuleConformance",
    "ModuleVectors",
    "RedisKit",
    "SyncStore",
    "Vector",
    "VectorFileError",
    "keyspace_events",
    "load_vectors",
    "run",
    "run_check",
    "shared_redis",
    "write_messages",
]
