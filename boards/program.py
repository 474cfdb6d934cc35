"""Loading a built bitstream onto its board through amaranth-boards.

:func:`program` runs the platform's own ``toolchain_program`` (what ``platform.build(...,
do_program=True)`` runs), with the programmer :func:`~eie.boards.platforms.find_programmer`
chooses, so the ``OPENFPGALOADER``/``ICEPROG`` overrides users know keep working.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from ..common.errors import EieError
from .platforms import Board, Programmer, find_programmer

__all__ = ["program"]


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set while the block runs (amaranth-boards reads its
    programmer from ``os.environ``)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def program(board: Board, out: Path, programmer: Programmer | None = None) -> Programmer:
    """Load the bitstream in ``out`` (an ``eie build`` output) onto the board through the
    amaranth-boards platform's ``toolchain_program``, with ``programmer`` (default:
    :func:`find_programmer`'s). Returns the programmer. A programmer that fails (no board
    answers, no permission to its USB device) is an :class:`EieError`; ``out`` is not touched."""
    from amaranth.build.run import LocalBuildProducts

    bitstream = out / f"top.{board.bitstream_ext}"
    if not bitstream.is_file():
        raise EieError(f"{out} has no {bitstream.name} to load onto {board.name}: build it with "
                       f"eie build --board {board.name}")
    prog = programmer or find_programmer(board)
    prog.check_starts()
    platform = board.make_platform(prog.ofl_args)
    with _environ(prog.env):
        try:
            platform.toolchain_program(LocalBuildProducts(str(out)), "top")
        except subprocess.CalledProcessError as exc:
            raise EieError(
                f"loading {bitstream} onto {board.name} failed: {_shown(exc.cmd, bitstream)} "
                f"exited with {exc.returncode} (no board answered, or it refused the bitstream); "
                f"check that the board is plugged in and powered, that no other program holds "
                f"its USB port, and that you may use the device (udev rules); then `eie board "
                f"program {out}`") from None
        except OSError as exc:
            raise EieError(f"cannot run {prog.tool} ({prog.source}) to load {board.name}: "
                           f"{exc.strerror or exc}") from None
    return prog


def _shown(cmd, bitstream: Path) -> str:
    """The programmer's command line as the user can repeat it: the temporary copy of the
    bitstream amaranth hands the programmer shown as ``bitstream``."""
    args = [str(c) for c in (cmd if isinstance(cmd, (list, tuple)) else [cmd])]
    tmp = tempfile.gettempdir()
    return shlex.join([str(bitstream) if a.startswith(os.path.join(tmp, "amaranth_")) else a
                       for a in args])
