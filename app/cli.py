"""The ``eie`` command line.

Each group of sub-commands lives in its own module with a ``register(subparsers)`` function that
adds its parsers and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and
returning an exit code). Heavy imports (Amaranth, simulators) happen inside the handlers, so
``eie --help`` stays fast.

Errors a user can fix are raised as :class:`eie.common.errors.EieError`; ``main`` prints them as one
line, ``eie: error: ...``, and exits with code 2. Every output path goes through
:mod:`eie.common.outputs` before anything is written, and every write through
:mod:`eie.common.atomic`; an interrupt prints one line saying what each output holds.
"""

from __future__ import annotations

import os
import signal
import sys


def _early_exit(signum, frame):
    os.write(2, f"eie: {'terminated' if signum == signal.SIGTERM else 'interrupted'}; nothing "
                "written\n".encode())
    os._exit(128 + signum)


# The console script (or ``python -m eie.app.cli``): from here on, until ``main`` takes over, a
# Ctrl-C or SIGTERM ends the program with one line, not a traceback from the middle of an
# import (nothing can have been written yet). Imported by anything else, nothing is installed.
if __name__ == "__main__" or os.path.basename(sys.argv[0] if sys.argv else "") in ("eie",
                                                                                     "eie.exe"):
    for _s in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(_s) is not signal.SIG_IGN:
            signal.signal(_s, _early_exit)
    _CONSOLE = True
else:
    _CONSOLE = False

import argparse  # noqa: E402 - after the guard
import importlib  # noqa: E402
from typing import Sequence  # noqa: E402

from ..common import atomic, outputs  # noqa: E402
from ..common.errors import EieError  # noqa: E402
from ..common.signals import InterruptGuard  # noqa: E402

__all__ = ["main", "build_parser"]

# One module per group of sub-commands, in the order --help lists them.
COMMAND_MODULES = [
    "eie.app.cmd_compress",  # compress, golden, inspect
    "eie.app.cmd_rtl",       # generate, run
    "eie.app.cmd_bnn",       # bnn compile|golden|run|generate
    "eie.app.cmd_verify",    # verify (randomized regression)
    "eie.app.cmd_bench",     # bench table3|sweep
    "eie.app.cmd_board",     # build, board run
    "eie.app.cmd_demo",      # demo
]


class _Parser(argparse.ArgumentParser):
    """argparse's parser with the error line of every other ``eie`` error: ``eie: error: ...``
    and exit 2, one line (no usage block; it says where the usage is). Every sub-command's
    parser is one too (``add_subparsers`` makes parsers of the parent's class); ``--help`` is
    unchanged."""

    def error(self, message: str):
        text = " ".join(message.split())
        self.exit(2, f"eie: error: {text} (usage: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="eie",
        description="Compress neural networks the Deep Compression way and run them on the EIE "
                    "sparse accelerator or a BNN XNOR-popcount core, in simulation or on a board.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _command_parser(parser: argparse.ArgumentParser,
                    args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub-)command ``args`` ran: ``eie bnn train``'s for ``eie bnn
    train ...``."""
    name = args.command
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or name is None or name not in subs[0].choices:
            return parser
        parser = subs[0].choices[name]
        name = getattr(args, f"{name}_command", None)


def _interrupted(guard: InterruptGuard) -> int:
    """The one line an interrupted command prints, and its exit code: which outputs are
    complete, which kept their old content, which were not written."""
    guard.quiet()                       # a second Ctrl-C must not cut the cleanup short
    atomic.abandon_all()
    plan = outputs.current()
    report = plan.interrupt_report() if plan is not None else "nothing written"
    term = guard.signum == signal.SIGTERM
    print(f"eie: {'terminated' if term else 'interrupted'}; {report}", file=sys.stderr,
          flush=True)
    return 143 if term else 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eie`` command ``argv`` (default ``sys.argv[1:]``); return its exit code.

    SIGINT (Ctrl-C) and SIGTERM at any moment, the imports included, end the command with one
    line, ``eie: interrupted; <what each output holds>`` (exit 130; ``terminated``, 143), after
    the atomic writers removed their temporaries (:mod:`eie.common.atomic`). An interrupt that
    Python turned into another exception (an error raised while a class was being created) or
    swallowed (in a finaliser, which then reports it as "ignored") is recognised as one too.
    Called with ``argv`` (in-process, e.g. tests), the caller's signal handlers are restored on
    return; without (the console script), later signals are ignored while the process exits.
    """
    in_process = argv is not None or not _CONSOLE
    guard = InterruptGuard()
    unraisable = sys.unraisablehook

    def quiet_unraisable(info):         # an interrupt landing in a finaliser: no traceback
        if not (isinstance(info.exc_value, KeyboardInterrupt) and guard.signum is not None):
            unraisable(info)

    sys.unraisablehook = quiet_unraisable
    try:
        # installed inside the try: a signal can land as soon as the first handler is in place,
        # before install() returns (its handler then raises from install itself)
        guard.install()
        outputs.reset()
        atomic.reset_journal()
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:                       # said by the command's parser, which names its usage
            _command_parser(parser, args).error(
                f"unrecognized arguments: {' '.join(extra)}")
        code = args.func(args)
        if not in_process:
            # quiet here, inside the try: a signal landing in the `finally` below would
            # otherwise raise out of main with a traceback (the command is complete by then)
            guard.quiet()
    except KeyboardInterrupt:
        if guard.signum is None:        # raised by code, not by a signal: as Ctrl-C
            guard.signum = signal.SIGINT
        return _interrupted(guard)
    except EieError as exc:
        if guard.signum is not None:
            return _interrupted(guard)
        print(f"eie: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception:
        if guard.signum is not None:    # the interrupt surfaced as another exception
            return _interrupted(guard)
        raise
    finally:
        sys.unraisablehook = unraisable
        if in_process:
            guard.uninstall()
        else:
            guard.quiet()
    if guard.signum is not None:        # swallowed on the way: every output is complete
        return _interrupted(guard)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
