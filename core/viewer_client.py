"""A blocking viewer-protocol client (spec/viewer.md): what `wiredraw watch` and `wiredraw query` use, and the
reference for other clients. One socket; replies to requests are matched by id, other messages are queued in order.
"""

from __future__ import annotations

import json
import math
import socket
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import orjson
from wiredraw.core import viewer_protocol
from wiredraw.core.graph import Change, Graph


class ViewerClientError(Exception):
    """Cannot talk to the server: the message says why and what to do."""


class ViewerRefused(ViewerClientError):
    """The server refused the token (or the protocol version)."""


class ViewerClient:
    def __init__(self, host: str, port: int, token: str, *, timeout: float | None = 10.0) -> None:
        self.host, self.port, self.token = host, port, token
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.welcome: dict[str, Any] = {}
        self._decoder = viewer_protocol.FrameDecoder(viewer_protocol.MAX_SERVER_FRAME)
        self._queue: deque[dict[str, Any]] = deque()
        self._replies: dict[int, dict[str, Any]] = {}
        self._next_id = 1
        self._send_lock = threading.Lock()

    # -- connection ------------------------------------------------------------------------------------------
    def connect(self) -> dict[str, Any]:
        """Connect and say hello; returns the welcome (server name, modules).

        Raises ViewerRefused / ViewerClientError."""
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            raise ViewerClientError(f"cannot connect to the viz port {self.host}:{self.port} ({exc.strerror or exc}); "
                                 f"is `wiredraw server` running, and is that its viz= address?") from None
        self.send({"type": "hello", "version": viewer_protocol.VERSION, "token": self.token})
        msg = self._read()
        if msg["type"] == "welcome":
            self.welcome = msg
            return msg
        if msg["type"] in ("refused", "error"):
            raise ViewerRefused(str(msg.get("reason", "refused")))
        raise ViewerClientError(f"unexpected first message {msg['type']!r} from the server")

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self) -> ViewerClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, message: dict[str, Any]) -> None:
        if self.sock is None:
            raise ViewerClientError("not connected")
        with self._send_lock:
            self.sock.sendall(viewer_protocol.pack(message))

    def _read(self) -> dict[str, Any]:
        """The next message off the socket (blocking)."""
        while True:
            if self._queue:
                return self._queue.popleft()
            assert self.sock is not None
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                raise ViewerClientError(f"no answer from {self.host}:{self.port} within {self.timeout} s") from None
            except OSError as exc:
                raise ViewerClientError(f"connection to the server failed: {exc}") from None
            if not data:
                raise ViewerClientError("the server closed the connection")
            try:
                self._queue.extend(self._decoder.feed(data))
            except viewer_protocol.ViewerProtocolError as exc:
                raise ViewerClientError(f"bad data from the server: {exc}") from None

    # -- messages --------------------------------------------------------------------------------------------
    def next_message(self) -> dict[str, Any]:
        """The next pushed message (graph, diff, error, ...), in order; replies are kept for :meth:`request`.
        A fatal error from the server raises ViewerClientError with its reason."""
        while True:
            msg = self._read()
            if msg["type"] == "reply":
                self._replies[msg.get("id", -1)] = msg
                continue
            if msg["type"] == "error" and msg.get("fatal", True):
                raise ViewerClientError(f"server error: {msg.get('reason', '?')}")
            return msg

    def read_message(self) -> dict[str, Any]:
        """The next message of any type, replies included, in arrival order (for a client whose one reader thread
        owns the socket and matches replies to :meth:`request_async` ids itself)."""
        return self._read()

    def wait_forever(self) -> None:
        """No read timeout from now on: a quiet live view is not an error (requests then wait as long as it takes)."""
        if self.sock is not None:
            self.sock.settimeout(None)

    def messages(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.next_message()

    def subscribe(self, module: str | int, **view: Any) -> None:
        self.send({"type": "subscribe", "module": module, **{k: v for k, v in view.items() if v is not None}})

    def request_async(self, what: str, **args: Any) -> int:
        rid = self._next_id
        self._next_id += 1
        self.send({"type": "request", "id": rid, "what": what, **{k: v for k, v in args.items() if v is not None}})
        return rid

    def request(self, what: str, **args: Any) -> Any:
        """Send a request and wait for its reply; pushed messages that arrive meanwhile stay queued."""
        rid = self.request_async(what, **args)
        held: list[dict[str, Any]] = []
        try:
            while rid not in self._replies:
                msg = self._read()
                if msg["type"] == "reply":
                    self._replies[msg.get("id", -1)] = msg
                elif msg["type"] == "error" and msg.get("fatal", True):
                    raise ViewerClientError(f"server error: {msg.get('reason', '?')}")
                else:
                    held.append(msg)
        finally:
            self._queue.extendleft(reversed(held))
        reply = self._replies.pop(rid)
        if not reply.get("ok"):
            raise ViewerClientError(str(reply.get("error", "request failed")))
        return reply.get("result")


class SequenceGap(ValueError):
    """A diff did not follow the previous message (missed or out of order): resubscribe for a full graph."""


def check_follows(previous: int | None, seq: Any) -> None:
    """A diff's ``seq`` must be the previous message's + 1 (spec/viewer.md "diff"); else :class:`SequenceGap`."""
    if previous is None or seq != previous + 1:
        raise SequenceGap(f"diff {seq} after {previous}: out of order or missed")


class GraphMirror:
    """Rebuilds a viewer's graph from a full graph and the diffs after it (applied by the kernel's one rule,
    :meth:`Graph.apply`), checking their order (:class:`SequenceGap`)."""

    def __init__(self) -> None:
        self.graph = Graph()
        self.seq: int | None = None
        self.t: float | None = None

    def apply(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "graph":
            self.graph = Graph.from_wire(msg)
        elif msg["type"] == "diff":
            check_follows(self.seq, msg["seq"])
            self.graph.apply(Change.from_wire(msg))
        else:
            return
        self.seq = msg["seq"]
        self.t = msg.get("t")


def to_json(obj: Any) -> str:
    """One line of JSON; bytes become text and non-finite numbers null (JSON has neither)."""
    return to_json_bytes(obj).decode()


def to_json_bytes(obj: Any) -> bytes:
    """:func:`to_json` as UTF-8 bytes, without the decode: orjson (C, several times faster than json, which matters
    to `wiredraw watch` at 10,000 records/s), falling back to json for what orjson refuses (ints over 64 bits)."""
    try:
        return orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        pass
    try:
        text = json.dumps(obj, default=_json_default, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        text = json.dumps(_finite(obj), default=_json_default, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "backslashreplace")


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes | bytearray):
        return bytes(o).decode("utf-8", "backslashreplace")
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return repr(o)


def _finite(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o
