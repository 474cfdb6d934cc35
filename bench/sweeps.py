"""Design-space sweeps with the cycle model, checked against the RTL at a few small points:
load-balance efficiency against FIFO depth (EIE Fig. 8), speed-up against PE count (Fig. 11) and
sparse-matrix SRAM word width. A thin wrapper of ``eie bench sweep`` (:mod:`eie.app.cmd_bench`,
the sweeps themselves :mod:`eie.app.bench_sweep`).

    .venv/bin/python bench/sweeps.py                       # all three, all nine layers
    .venv/bin/python bench/sweeps.py fifo width --layers NT-We,Alex-6
    .venv/bin/python bench/sweeps.py pes --scale 0.25 --jobs 2

Writes ``sweep_<kind>.json`` and ``sweep_<kind>.png`` into ``--out`` (default ``bench/out``);
other options go to ``eie bench sweep`` unchanged. Exit code 1 if a checked point of the cycle
model differs from the RTL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eie.app.cli import main
from eie.common.errors import EieError

KINDS = ("fifo", "pes", "width")
#: where the outputs go without --out (ignored by git; made on first use)
OUT = Path(__file__).resolve().parent / "out"


def check_values(kinds: list[str], rest: list[str]) -> int:
    """``--values`` is a FIFO depth, a PE count or a word width, depending on the sweep, and
    ``--pes`` and ``--fifo-depth`` are refused by the sweep that sets them: with several sweeps,
    each one's check (``eie bench sweep``'s own,
    :func:`eie.app.bench_sweep.sweep_values`) passes before the first sweep runs, so that a
    value only a later sweep refuses (a width of 12) does not cost the earlier sweeps first.
    0, or 2 on a bad one."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--values")
    pre.add_argument("--pes")
    pre.add_argument("--fifo-depth")
    given = pre.parse_known_args(rest)[0]
    for kind, opt, value in (("pes", "--pes", given.pes), ("fifo", "--fifo-depth",
                                                             given.fifo_depth)):
        if value is not None and kind in kinds and len(kinds) > 1:
            # eie bench sweep refuses it for that sweep: said before any sweep runs
            print(f"eie: error: {opt} cannot be used with sweep {kind}, which sets it for each "
                  f"point itself: name the other sweeps (e.g. bench/sweeps.py "
                  f"{' '.join(k for k in KINDS if k != kind)} {opt} {value})", file=sys.stderr)
            return 2
    text = given.values
    if text is None or len(kinds) < 2:
        return 0                                # one sweep: eie bench sweep checks it first
    from eie.app.bench_setup import BenchSetup
    from eie.app.bench_sweep import sweep_values
    from eie.app.cmd_bench import parse_int_list

    try:
        values = parse_int_list(text, "--values", empty=False)
        for kind in kinds:
            sweep_values(kind, values, BenchSetup())
    except EieError as exc:
        print(f"eie: error: {exc}", file=sys.stderr)
        return 2
    return 0


def run(argv: list[str]) -> int:
    kinds = []
    while argv and argv[0] in KINDS:            # leading sweep names; the rest goes through
        kinds.append(argv.pop(0))
    if argv and not argv[0].startswith("-"):
        print(f"sweeps: error: unknown sweep {argv[0]!r}; choose from {', '.join(KINDS)} "
              "(before the options)", file=sys.stderr)
        return 2
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--out", type=Path, default=None)
    opts, rest = pre.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print(__doc__)
        return main(["bench", "sweep", "--help"])
    if check_values(kinds or list(KINDS), rest):
        return 2
    if opts.out is None:
        OUT.mkdir(exist_ok=True)                # eie writes only into folders that exist
    out = opts.out or OUT
    worst = 0
    for kind in kinds or KINDS:
        code = main(["bench", "sweep", kind, *rest, "--json", str(out / f"sweep_{kind}.json"),
                     "--plot", str(out / f"sweep_{kind}.png")])
        if code == 2:                           # a bad option, said once: no other sweep runs
            return code
        worst = max(worst, code)
        print()
    return worst


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
