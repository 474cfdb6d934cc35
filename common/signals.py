"""SIGINT and SIGTERM as exceptions that let cleanup run, and regions they cannot interrupt.

Three tools, used by :mod:`eie.common.atomic` and the ``eie`` command line:

* :class:`Terminated` -- what SIGTERM raises (a :class:`KeyboardInterrupt`, so every
  ``except KeyboardInterrupt`` and ``finally`` treats both signals alike). Python's default
  action for SIGTERM kills the process on the spot, which skips every ``finally`` and leaves
  temporary files behind.
* :func:`deferred` -- a block during which SIGINT and SIGTERM are held and delivered when it
  ends: renames that must happen together (replace an output, remove a temporary) are not cut
  in half.
* :func:`sigterm_raises` -- while the block runs, SIGTERM raises :class:`Terminated` if nothing
  else handles it (used by the atomic writers when a library caller has no handler of its own).
* :class:`InterruptGuard` -- the ``eie`` command's handler: the first SIGINT or SIGTERM
  raises; further ones while the command winds down are ignored (so they cannot cut the
  cleanup short), and one more after :data:`FORCE_AFTER` seconds ends the process at once.

Signal handlers can only be set in the main thread; elsewhere these are no-ops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Callable, Iterator

__all__ = ["Terminated", "deferred", "sigterm_raises", "InterruptGuard", "FORCE_AFTER",
           "WATCHED"]

#: The signals the tools here hold or turn into exceptions.
WATCHED = (signal.SIGINT, signal.SIGTERM)
#: Seconds after the first signal from which another one ends the process without cleanup.
FORCE_AFTER = 10.0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an exception so that cleanup (``finally``) runs."""

    signum = signal.SIGTERM


def _exception_for(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _restore(signum: int, handler) -> None:
    # getsignal() gives None for a handler not installed from Python: the default then
    signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs; deliver them (to the handlers there were
    before) when it ends, so their exception is raised after the block, never inside it."""
    if not _main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum, frame):
        held.append(signum)

    saved = {}
    try:
        for s in WATCHED:
            saved[s] = signal.getsignal(s)
            signal.signal(s, hold)
        yield
    finally:
        for s, handler in saved.items():
            _restore(s, handler)
        for s in dict.fromkeys(held):
            signal.raise_signal(s)        # the restored handler runs: raise, ignore or die


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` when its handler is the default
    (which would kill the process without running any ``finally``)."""
    if not _main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is _raise_terminated:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


class InterruptGuard:
    """The command line's SIGINT/SIGTERM handler (:meth:`install`, :meth:`uninstall`).

    While the command runs, the first signal raises :class:`KeyboardInterrupt` (SIGINT) or
    :class:`Terminated` (SIGTERM) and records :attr:`signum`; the guard is then *quiet*: while
    the command cleans up and exits, signals are ignored, except one arriving
    :data:`FORCE_AFTER` seconds or more after the first, which ends the process at once with
    one line (exit 128 + signal number; temporary files may then remain).
    """

    def __init__(self, prog: str = "eie"):
        self.prog = prog
        self.signum: int | None = None
        self._quiet = False
        self._first = 0.0
        self._saved: dict[int, object] = {}

    def __call__(self, signum, frame):
        if not self._quiet:
            self.quiet()
            self.signum = signum
            raise _exception_for(signum)
        if self.signum is None:
            # quiet because the command finished, not because of a signal: this is the first
            # one; the process is exiting anyway, so note it (one line at exit) and go on
            self.signum = signum
            self._first = time.monotonic()
            return
        if time.monotonic() - self._first >= FORCE_AFTER:
            word = "terminated" if signum == signal.SIGTERM else "interrupted"
            with contextlib.suppress(OSError):
                os.write(2, f"{self.prog}: {word} again; exiting at once, without "
                            "cleanup\n".encode())
            os._exit(128 + signum)

    def install(self) -> "InterruptGuard":
        """Handle SIGINT and SIGTERM, except one ignored already (``nohup``, a background job
        of a shell without job control: it stays ignored, as Python leaves it)."""
        if _main_thread():
            for s in WATCHED:
                handler = signal.getsignal(s)
                if handler is signal.SIG_IGN:
                    continue
                self._saved[s] = handler
                signal.signal(s, self)
        return self

    def quiet(self) -> None:
        """From now on signals are ignored (the process is about to exit): the first is noted
        (:attr:`signum`), and only one more, :data:`FORCE_AFTER` seconds after it, ends the
        process at once."""
        if not self._quiet:
            self._quiet = True
            self._first = time.monotonic()

    def uninstall(self) -> None:
        """Put back the handlers there were before :meth:`install`."""
        for s, handler in self._saved.items():
            _restore(s, handler)
        self._saved.clear()
