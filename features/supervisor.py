"""Child processes, supervised in one place: start, deadline, stop, kill, reap, restart.

The Praat worker (:mod:`features.prosody.worker`), the isolated decoder
(``load_audio(isolate=True)``) and the batch pool (:mod:`fusion.batch.pool`) all run work in
a child process that may hang or die. They share this module's rules:

* a child is a **fresh interpreter**, ``python -m module`` (not a ``multiprocessing``
  process: those re-import the user's ``__main__`` — an unguarded script runs twice — and
  cannot be started from daemonic processes such as batch workers); the package's own root
  goes first on its ``PYTHONPATH`` so it imports the same code as the parent;
* it runs in its **own session** (hence process group), so a kill reaches what it started
  (e.g. ffmpeg) and the terminal's Ctrl-C does not reach it (the parent decides);
* it talks over **stdin/stdout pipes** (bytes the caller defines; never pickle); closing its
  stdin asks it to exit;
* a **deadline** kills the whole group (:meth:`Child.deadline`);
* stopping is **close stdin → grace → SIGTERM → grace → SIGKILL → reap**
  (:meth:`Child.stop`); a kill always reaps, so no zombie is left;
* children still running when the interpreter exits are stopped then (``atexit``);
* :class:`Supervisor` keeps one child running: started on first use, replaced after it died.

The child side (:func:`child_streams`) ignores SIGINT, moves stdout to a private channel (so a
library that prints cannot corrupt the answers) and exits within a second of its parent's
death.

Why not a library: ``pebble``'s ``ProcessPool`` (per-task timeouts, dead-worker replacement)
starts its workers with :mod:`multiprocessing`, so it re-imports ``__main__`` under
``spawn``/``forkserver`` and refuses to start from a daemonic process ("daemonic processes are
not allowed to have children"); it also pickles tasks and results. Both constraints above rule
it out; what is shared here is small.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

__all__ = ["Child", "Supervisor", "child_streams", "describe_exit", "package_root"]

log = logging.getLogger(__name__)

#: environment variable that tells a child its parent's pid (it may be orphaned before it looks)
_PARENT_ENV = "VOCALFUSION_SUPERVISOR_PARENT"

#: children started by this process and not yet reaped (stopped at interpreter exit)
_LIVE: weakref.WeakSet[Child] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def package_root() -> str:
    """The folder that holds the ``features`` (and ``fusion``) packages."""
    return str(Path(__file__).resolve().parents[1])


def describe_exit(code: int | None) -> str:
    """An exit status in words: ``exit code 3``, ``killed by signal SIGKILL``."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Child:
    """One fresh-interpreter child process with stdin/stdout pipes, in its own session.

    Started on construction.

    Parameters
    ----------
    module : str
        Run as ``sys.executable -m module``.
    args : sequence of str
        Arguments after the module name.
    argv : sequence of str, optional
        The whole command instead (tests; a wrapper); ``module`` and ``args`` are then unused.
    env : mapping, optional
        Extra environment variables for the child (on top of this process's).
    stderr : int, optional
        ``subprocess.PIPE`` to capture it; default: inherited.

    Raises
    ------
    OSError
        The child cannot be started.
    """

    def __init__(self, module: str, args: Sequence[str] = (), *,
                 argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
                 stderr: int | None = None) -> None:
        cmd = list(argv) if argv is not None else [sys.executable, "-m", module, *args]
        full_env = {**os.environ, **(env or {}), _PARENT_ENV: str(os.getpid())}
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root(), os.environ.get("PYTHONPATH")) if p)
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=full_env,
            start_new_session=True)
        #: the deadline of :meth:`deadline` ran out and the child was killed
        self.expired = False
        self._owner = os.getpid()  # a fork() of this process must not stop it at its exit
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def pid(self) -> int:
        """The child's process id (also its process group's)."""
        return self.proc.pid

    @property
    def stdin(self) -> BinaryIO:
        assert self.proc.stdin is not None
        return self.proc.stdin  # type: ignore[return-value]

    @property
    def stdout(self) -> BinaryIO:
        assert self.proc.stdout is not None
        return self.proc.stdout  # type: ignore[return-value]

    def alive(self) -> bool:
        """Whether the child is still running."""
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status once it ended (negative: killed by that signal); ``None`` while running."""
        return self.proc.poll()

    def _signal_group(self, sig: int) -> None:
        # only while the leader is not reaped: its pid (the group id) cannot be reused then
        if self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(OSError):
                self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the child's process group and reap the child."""
        self._signal_group(signal.SIGKILL)
        self.proc.wait()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def stop(self, grace_s: float = 5.0) -> int:
        """Close stdin (asks it to exit), wait ``grace_s``; SIGTERM, wait; SIGKILL; reap.

        Returns the exit status. The pipes are closed.
        """
        with contextlib.suppress(OSError, ValueError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        self.close()
        return self.proc.wait()

    def close(self) -> None:
        """Kill and reap the child if it still runs, then close the pipes."""
        if self.proc.returncode is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()

    @contextlib.contextmanager
    def deadline(self, timeout_s: float | None) -> Iterator[None]:
        """Kill the child (its whole group) if the block runs past ``timeout_s`` seconds.

        :attr:`expired` tells afterwards whether it did. ``None``: no deadline.
        """
        if timeout_s is None:
            yield
            return
        done = threading.Event()

        def watch() -> None:
            if not done.wait(timeout_s):
                self.expired = True
                self._signal_group(signal.SIGKILL)

        watcher = threading.Thread(target=watch, name=f"deadline-{self.pid}", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()


class Supervisor:
    """Keeps one :class:`Child` running: started on first use, replaced after it died.

    Not thread-safe by itself: the caller serialises its requests.

    Parameters
    ----------
    module, argv, env :
        As for :class:`Child`.
    name : str
        What the child is, for log messages.
    """

    def __init__(self, module: str, *, argv: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None, name: str = "child") -> None:
        self.module = module
        self.argv = list(argv) if argv is not None else None
        self.env = dict(env or {})
        self.name = name
        self._child: Child | None = None
        #: children replaced after they died or were discarded
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """Process id of the running child, if any."""
        c = self._child
        return c.pid if c is not None and c.alive() else None

    def child(self) -> Child:
        """The running child; a new one if there is none or it died since the last call."""
        c = self._child
        if c is not None and c.alive():
            return c
        if c is not None:
            log.warning("the %s process had died (%s); starting a new one", self.name,
                        describe_exit(c.returncode))
            c.close()
            self.restarts += 1
        self._child = Child(self.module, argv=self.argv, env=self.env)
        return self._child

    def discard(self) -> int | None:
        """Kill the current child (after a failed request); its exit status as it was before."""
        c, self._child = self._child, None
        if c is None:
            return None
        code = c.returncode
        c.close()
        self.restarts += 1
        return code

    def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop the child (close its stdin, then escalate); a later :meth:`child` starts one."""
        c, self._child = self._child, None
        if c is not None:
            c.stop(grace_s)


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        children = [c for c in _LIVE if c._owner == os.getpid()]
    for c in children:
        with contextlib.suppress(Exception):
            c.stop(grace_s=1.0)


# ------------------------------------------------------------------------- the child's side

def _exit_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def child_streams() -> tuple[BinaryIO, BinaryIO]:
    """Set up a child started by :class:`Child`; its request and answer streams.

    Ignores SIGINT (the parent decides), ends the process within a second of the parent's
    death even while it is busy, and gives the real stdout to the answers only: anything else
    printed to stdout (by a library) goes to stderr.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the parent's pid as it was at the start: this process may be orphaned before it gets here
    parent = int(os.environ.pop(_PARENT_ENV, "0") or 0) or os.getppid()
    if os.getppid() != parent:
        os._exit(0)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return sys.stdin.buffer, answers
