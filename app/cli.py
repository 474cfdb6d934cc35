"""The ``eie`` command line.

Each group of sub-commands lives in its own module with a ``register(subparsers)`` function that
adds its parsers and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and
returning an exit code). Heavy imports (Amaranth, simulators) happen inside the handlers, so
``eie --help`` stays fast.

Errors a user can fix are raised as :class:`eie.common.errors.EieError`; ``main`` prints them as one
line, ``eie: error: ...``, and exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..common.errors import EieError

__all__ = ["main", "build_parser"]

# One module per group of sub-commands, in the order --help lists them.
COMMAND_MODULES = [
    "eie.app.cmd_compress",  # compress, golden, inspect
    "eie.app.cmd_rtl",       # generate, run
    "eie.app.cmd_bnn",       # bnn compile|golden|run|generate
    "eie.app.cmd_bench",     # bench table3|sweep
    "eie.app.cmd_board",     # build, board run
    "eie.app.cmd_demo",      # demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eie",
        description="Compress neural networks the Deep Compression way and run them on the EIE "
                    "sparse accelerator or a BNN XNOR-popcount core, in simulation or on a board.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except EieError as exc:
        print(f"eie: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eie: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        import os
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
