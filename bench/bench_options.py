"""Option checks the scripts of ``bench/`` share (not a script: ``bench/`` is not a package, so a
script puts its folder on ``sys.path`` and imports this module, as ``bench/layer_overhead.py``
imports ``real_layers``).

Each check runs right after ``parse_args``, before any work (building, simulating, training,
synthesis), and stops a bad value with ``ap.error``: one line with the value, the limit and what
to give instead, exit 2, no traceback, nothing written.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Sequence

from eie.common import outputs
from eie.common.errors import EieError


def int_list(ap: argparse.ArgumentParser, opt: str, text: str, lo: int, hi: int, what: str,
             *, empty: bool = False) -> list[int]:
    """``"4,16"`` -> ``[4, 16]``: integers separated by commas (blank items skipped), each from
    ``lo`` to ``hi``; none at all only with ``empty``. ``what``: the values, plural ("PE
    counts"), for the message."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        ap.error(f"{opt} {text!r}: give integers separated by commas; {what} are {lo} to {hi}")
    if not values and not empty:
        ap.error(f"{opt} {text!r}: give at least one; {what} are {lo} to {hi}")
    for v in values:
        if not lo <= v <= hi:
            ap.error(f"{opt} {text}: {v} is out of range; {what} are {lo} to {hi}")
    return values


def names(ap: argparse.ArgumentParser, opt: str, text: str, choices: Sequence[str],
          what: str) -> list[str]:
    """Comma-separated names (blank items skipped), at least one, each one of ``choices``."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        ap.error(f"{opt} {text!r}: give at least one {what}, from {', '.join(choices)}")
    for name in items:
        if name not in choices:
            ap.error(f"{opt} {text}: unknown {what} {name!r}; choose from {', '.join(choices)}")
    return items


def output_file(ap: argparse.ArgumentParser, opt: str, path: str | Path | None, *,
                create_parents: bool = False, follow_links: bool = False) -> None:
    """``path`` (None: no output) can be written: the rule of :mod:`eie.common.outputs` for a
    file (not a directory, in an existing writable directory, or one ``create_parents`` lets
    the script make). ``follow_links``: the script writes through a symbolic link (a plain
    ``open``), so the file it points to is checked."""
    if path is None:
        return
    path = Path(path)
    if follow_links and path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        outputs.Plan().file(path, opt, create_parents=create_parents)
    except EieError as exc:
        ap.error(str(exc))


def directory(ap: argparse.ArgumentParser, opt: str, path: str | Path | None) -> None:
    """``path`` (None: the default) is a folder the script writes into, made when missing: the
    rule of :mod:`eie.common.outputs` for a cache (not a file, writable)."""
    if path is None:
        return
    try:
        outputs.Plan().cache(Path(path), opt)
    except EieError as exc:
        ap.error(str(exc))


def tools(ap: argparse.ArgumentParser, *commands: str) -> None:
    """The YoWASP ``commands`` are on ``PATH`` (the scripts run them by name)."""
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        ap.error(f"{', '.join(missing)} not found on PATH: activate the virtual environment "
                 f"(. .venv/bin/activate) or pip install 'eie[boards]' (YoWASP tools)")


def simulator(ap: argparse.ArgumentParser, sim: str) -> None:
    """The RTL simulator ``sim`` (verilator, icarus) is installed and new enough
    (:func:`eie.sim.runner.check_simulator`)."""
    from eie.sim.runner import check_simulator

    try:
        check_simulator(sim)
    except EieError as exc:
        ap.error(str(exc))
