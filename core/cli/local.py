"""What ``wiredraw demo`` and ``wiredraw open`` run on this machine, and how they stop it all.

A :class:`LocalRun` holds the parts one command started: the embedded server (or none, when it sends to a server
elsewhere), one probe runner in this process, and the viewer as a child process. Whatever ends the run (Ctrl-C,
``--duration``, the viewer's window closed, a fatal error), :meth:`LocalRun.finish` stops them in order: the
viewer, the periodic lines, the probe (its spool drained first), the server (the embedded redis-server dies with
it). No process is left behind: the viewer is our child, the redis-server is tied to the server's life.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from twisted.internet import defer, protocol, task
from wiredraw.core.server.credentials import ProbeSecrets, Tokens, write_private


class _Viewer(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ended: defer.Deferred[int] = defer.Deferred()

    def processEnded(self, reason: Any) -> None:
        code = getattr(reason.value, "exitCode", 1)
        self.ended.callback(code if code is not None else 1)


def viewer_args(args: Any) -> list[str]:
    """The ``wiredraw viz`` options that ``--offscreen``, ``--screenshot`` (taken shortly before ``--duration``
    ends) and ``--size`` of ``demo``/``open`` stand for."""
    out: list[str] = []
    if args.offscreen:
        out.append("--offscreen")
    if args.screenshot is not None:
        out += ["--screenshot", str(Path(args.screenshot).absolute())]
        if args.duration > 0:
            out += ["--screenshot-after", str(max(1.0, args.duration - 4.0))]
    if args.size:
        out += ["--size", args.size]
    return out


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def local_credentials(data_dir: Path, probe_id: str, viewer: str, *, reuse: bool) -> tuple[bytes, Path]:
    """The probe's key and the path of a viewer token file for a server whose data dir is ``data_dir``: made on
    first use; with ``reuse``, the ones made before are kept (the token file is checked against the server's
    tokens, and made again only if it no longer works)."""
    secrets = ProbeSecrets(data_dir)
    known = secrets.key_for(probe_id) if reuse else None
    key = known if known is not None else bytes.fromhex(secrets.add(probe_id, replace=True))
    tokens = Tokens(data_dir)
    token_file = data_dir / f"{viewer}.token"
    if reuse and token_file.is_file():
        token = token_file.read_text().strip()
        if tokens.check(token, "viewer") is not None:
            return key, token_file
    write_private(token_file, tokens.add(viewer, "viewer", replace=True) + "\n")
    return key, token_file


class LocalRun:
    """The parts one command runs here, and their stop (module docstring)."""

    def __init__(self, reactor: Any, command: str, out: IO[str] | None = None) -> None:
        self.reactor, self.command = reactor, command
        self.out = out or sys.stdout
        self.server: Any = None
        self.runner: Any = None
        self.failures: list[BaseException] = []
        self.ended: defer.Deferred[tuple[str, int]] = defer.Deferred()
        self._view: _Viewer | None = None
        self._loops: list[task.LoopingCall] = []

    def say(self, text: str, *, err: bool = False) -> None:
        print(f"wiredraw {self.command}: {text}", file=sys.stderr if err else self.out, flush=True)

    # -- starting ----------------------------------------------------------------------------------------------
    @defer.inlineCallbacks
    def start_server(self, config: Any, modules: Any) -> Any:
        """Start the embedded server; fires with it once it listens (its ready line printed)."""
        from wiredraw.core.server.service import WiredrawServer

        def fatal(failure: BaseException) -> None:
            self.failures.append(failure)
            self.finish("server", 1)

        self.server = WiredrawServer(self.reactor, config, modules, on_fatal=fatal)
        self.reactor.addSystemEventTrigger("before", "shutdown", self.server.stopService)
        self.server.startService()
        yield self.server.ready
        print(self.server.ready_line(), file=self.out, flush=True)
        return self.server

    def start_probe(self, module: Any, source: Any, opts: Any) -> Any:
        """Run a probe for ``module`` over ``source`` in this process."""
        from wiredraw.probes.runner import ProbeRunner

        self.runner = ProbeRunner(self.reactor, module, source, opts, out=self.out)
        self.runner.start()
        self.reactor.addSystemEventTrigger("before", "shutdown", self.runner.stop)
        return self.runner

    def every(self, seconds: float, call: Callable[[], Any], *, now: bool = False) -> None:
        """Call ``call`` every ``seconds`` until the run ends."""
        loop = task.LoopingCall(call)
        loop.clock = self.reactor
        loop.start(seconds, now=now)
        self._loops.append(loop)

    def open_viewer(self, viz: str, token_file: Path, slug: str, viewer_args: list[str], *,
                    no_display_hint: str) -> bool:
        """Start ``wiredraw viz`` logged in on ``slug``; False (and why, with ``no_display_hint``) when there is no
        display to open a window on. Closing the window (or an offscreen viewer's screenshot) ends the run."""
        offscreen = "--offscreen" in viewer_args
        if not offscreen and not has_display():
            self.say(f"no display here ($DISPLAY is not set), so no viewer window. {no_display_hint}")
            return False
        view = self._view = _Viewer()
        argv = [sys.executable, "-m", "wiredraw.core.cli", "viz", "--server", viz, "--token-file", str(token_file),
                "--module", slug, *viewer_args]
        self.reactor.spawnProcess(view, sys.executable, argv, env=os.environ.copy(), childFDs={0: 0, 1: 1, 2: 2})
        self.reactor.addSystemEventTrigger("before", "shutdown", self._stop_viewer)  # SIGTERM to us alone

        def viewer_ended(code: int) -> None:
            if code == 0 or offscreen:
                self.finish("viewer", code)  # the window was closed (or the screenshot taken): stop
            else:
                self.say(f"the viewer stopped (exit code {code}); the rest keeps running (Ctrl-C stops it)", err=True)

        view.ended.addCallback(viewer_ended)
        return True

    # -- stopping ----------------------------------------------------------------------------------------------
    def stop_after(self, seconds: float) -> None:
        if seconds > 0:
            self.reactor.callLater(seconds, self.finish, "duration", 0)

    def finish(self, why: str, code: int = 0) -> None:
        if not self.ended.called:
            self.ended.callback((why, code))

    def _stop_viewer(self) -> defer.Deferred[int] | None:
        view = self._view
        if view is not None and not view.ended.called and view.transport is not None:
            view.transport.signalProcess("TERM")
            return view.ended
        return None

    @defer.inlineCallbacks
    def run(self, last_words: Callable[[], Any] | None = None) -> Any:
        """Wait for the end, stop everything (module docstring), stop the reactor; fires with the exit status."""
        why, code = yield self.ended
        if why == "viewer" and code != 0:
            self.say(f"the viewer exited with code {code}", err=True)
        status = 1 if why == "viewer" and code != 0 else code
        stopped = self._stop_viewer()
        if stopped is not None:
            yield stopped
        for loop in self._loops:
            if loop.running:
                loop.stop()
        if self.runner is not None:
            yield self.runner.drain()
        if last_words is not None:
            last_words()
        if self.server is not None:
            yield self.server.stopService()
        if self.reactor.running:
            self.reactor.stop()
        return 1 if self.failures else status
