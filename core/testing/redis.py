"""A real Redis for a module's tests, started by the test kit itself (no conftest needed), and the small adapters
that let the server's code run against it synchronously.

- :func:`shared_redis`: one private, ephemeral redis-server per test process (the same starter the server uses,
  :class:`~wiredraw.core.server.embedded_redis.EmbeddedRedis`), started on first use, stopped at exit.
- :class:`RedisKit`: a client on it that answers as the server's own client does (RESP2, raw replies), with
  :meth:`RedisKit.flush`, :meth:`RedisKit.keys`, and the server's write (:meth:`RedisKit.transaction`).
- :class:`SyncStore`: what a view translation gets as ``store`` (``execute`` / ``pipeline`` returning fired
  Deferreds), and :func:`run` to drive its coroutines without a reactor.
- :func:`keyspace_events`: record the keyspace notifications an action causes, as the server subscribes to them.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgpack
import redis
from twisted.internet import defer
from twisted.python.failure import Failure
from wiredraw.core.module import Body, IngestContext, IngestCounts, Module, WriteBatch, validate_message
from wiredraw.core.server.embedded_redis import EmbeddedRedis

__all__ = ["RedisKit", "SyncStore", "keyspace_events", "run", "shared_redis"]

_server: EmbeddedRedis | None = None


def shared_redis() -> EmbeddedRedis:
    """The test process's own redis-server: started on first call (about 50 ms), restarted if a test killed it,
    stopped and its directory removed at exit. Raises RedisNotFound naming how to get a redis-server."""
    global _server
    if _server is None:
        # A short directory: the unix socket path must fit AF_UNIX (EmbeddedRedis falls back to TCP otherwise).
        directory = tempfile.mkdtemp(prefix="wd-kit-")
        server = EmbeddedRedis(directory, ephemeral=True)

        def stop() -> None:
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)

        server.start()
        atexit.register(stop)
        _server = server
    elif not _server.alive():
        _server.restart()
    return _server


def _raw_client(url: str) -> redis.Redis:
    # RESP2 and no reply callbacks: replies as the server's Twisted client (hiredis) gives them.
    client = redis.Redis.from_url(url, protocol=2)
    client.response_callbacks.clear()
    return client


class RedisKit:
    """A client on a (flushed) test Redis that speaks like the server's ``RedisClient``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = _raw_client(url)

    @classmethod
    def shared(cls) -> RedisKit:
        """A kit on :func:`shared_redis`, emptied."""
        kit = cls(shared_redis().url)
        kit.flush()
        return kit

    def flush(self) -> None:
        self.client.execute_command("FLUSHALL")
        self.client.execute_command("CONFIG", "SET", "notify-keyspace-events", "")

    def keys(self, pattern: str = "*") -> list[str]:
        """Every key in the database (SCAN, never KEYS), sorted."""
        keys: set[str] = set()
        cursor: Any = b"0"
        while True:  # raw replies: the cursor stays bytes, so redis-py's scan_iter would never see 0
            cursor, batch = self.client.execute_command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            keys.update(k.decode(errors="replace") for k in batch)
            if int(cursor) == 0:
                return sorted(keys)

    def execute(self, *command: Any) -> Any:
        return self.client.execute_command(*command)

    def transaction(self, commands: Sequence[Sequence[Any]]) -> defer.Deferred[list[Any]]:
        """MULTI/EXEC, as the server's ``RedisClient.transaction``: fires with the replies, fails with the first
        error reply (a module's command Redis refused)."""
        pipe = self.client.pipeline(transaction=True)
        for command in commands:
            pipe.execute_command(*command)
        try:
            replies = pipe.execute(raise_on_error=False) if commands else []
        except redis.RedisError as exc:
            return defer.fail(exc)
        for command, reply in zip(commands, replies, strict=False):
            if isinstance(reply, Exception):
                return defer.fail(type(reply)(f"{_show(command)}: {reply}"))
        return defer.succeed(replies)

    def store(self) -> SyncStore:
        return SyncStore(self.url)

    def close(self) -> None:
        self.client.close()


def _show(command: Sequence[Any], limit: int = 120) -> str:
    text = " ".join(repr(a) if isinstance(a, bytes) else str(a) for a in command)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SyncStore:
    """``execute`` / ``pipeline`` like the server's RedisClient (Deferreds, raw replies, errors inside a pipeline as
    exception values), over redis-py: Deferreds that have already fired, so :func:`run` needs no reactor."""

    def __init__(self, url: str) -> None:
        self.client = _raw_client(url)

    def execute(self, *command: Any) -> defer.Deferred[Any]:
        try:
            return defer.succeed(self.client.execute_command(*command))
        except redis.ResponseError as exc:
            return defer.fail(exc)

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> defer.Deferred[list[Any]]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return defer.succeed(pipe.execute(raise_on_error=False) if commands else [])

    def close(self) -> None:
        self.client.close()


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that awaits only fired Deferreds to its end; return its result or raise its error."""
    d = defer.Deferred.fromCoroutine(coro)
    out: list[Any] = []
    d.addBoth(out.append)
    if not out:
        raise AssertionError("the coroutine waits on a Deferred that never fires (a store call not awaited "
                             "through execute/pipeline?)")
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def fired(d: defer.Deferred[Any]) -> Any:
    """The result of a Deferred that has already fired (raise its error)."""
    out: list[Any] = []
    d.addBoth(out.append)
    if not out:
        raise AssertionError("expected a Deferred that has fired")
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


_SENTINEL = "wd:testing:keyspace-events-end"


@contextmanager
def keyspace_events(url: str, patterns: Sequence[str], classes: str, db: int = 0) -> Iterator[list[tuple[str, str]]]:
    """Record the keyspace notifications of keys matching ``patterns`` (globs) while the block runs, with
    notification classes ``classes`` switched on (as the server does: ``K`` + the modules' ``notify_classes``).
    The list yielded is filled when the block ends, with ``(key, event)`` in the order Redis sent them."""
    events: list[tuple[str, str]] = []
    admin = _raw_client(url)
    listener = redis.Redis.from_url(url)
    pubsub = listener.pubsub()
    prefix = f"__keyspace@{db}__:"
    try:
        admin.execute_command("CONFIG", "SET", "notify-keyspace-events", "K" + classes if classes else "")
        if patterns:
            pubsub.psubscribe(*[prefix + p for p in patterns])
        pubsub.subscribe(_SENTINEL)
        for _ in range(len(patterns) + 1):  # the subscription confirmations
            pubsub.get_message(timeout=5)
        yield events
        # Published after the block's writes have completed: it arrives after all of their notifications.
        admin.execute_command("PUBLISH", _SENTINEL, "end")
        while True:
            m = pubsub.get_message(timeout=5)
            if m is None:
                raise AssertionError("keyspace notifications did not arrive within 5 s")
            channel = m["channel"].decode(errors="replace")
            if channel == _SENTINEL:
                break
            if m["type"] == "pmessage":
                events.append((channel[len(prefix):], m["data"].decode(errors="replace")))
    finally:
        admin.execute_command("CONFIG", "SET", "notify-keyspace-events", "")
        pubsub.close()
        listener.close()
        admin.close()


def write_messages(client: redis.Redis, module: Module, message_type: str, messages: Sequence[dict[str, Any]],
                   probe: str = "test") -> IngestCounts:
    """One batch of a module written as the server writes it: each message checked against the declaration, packed
    into one body as a probe packs it, the module's write path (``Module.write``), the batch's commands in one
    MULTI/EXEC, counted from the replies (the module's Lua scripts must be loaded already)."""
    spec = module.spec
    for m in messages:
        why = validate_message(spec.messages[message_type], m)
        assert why is None, (message_type, m, why)
    packed = msgpack.packb(list(messages), use_bin_type=not spec.bin_as_str)
    body = Body(packed, spec.messages[message_type])
    batch = WriteBatch(spec, message_type)
    module.write(IngestContext(probe, message_type, time.time()), body, batch)
    batch.counts.add(body.counts)
    pipe = client.pipeline(transaction=True)
    for command in batch.commands:
        pipe.execute_command(*command)
    replies = pipe.execute()
    total = IngestCounts().add(batch.counts)
    for index, handler in batch.reply_handlers:
        total.add(handler(replies[index]))
    return total
