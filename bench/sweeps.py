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

KINDS = ("fifo", "pes", "width")


def run(argv: list[str]) -> int:
    kinds = []
    while argv and argv[0] in KINDS:            # leading sweep names; the rest goes through
        kinds.append(argv.pop(0))
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    opts, rest = pre.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print(__doc__)
        return main(["bench", "sweep", "--help"])
    worst = 0
    for kind in kinds or KINDS:
        code = main(["bench", "sweep", kind, *rest, "--json", str(opts.out / f"sweep_{kind}.json"),
                     "--plot", str(opts.out / f"sweep_{kind}.png")])
        worst = max(worst, code)
        print()
    return worst


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
