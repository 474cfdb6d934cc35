"""EIE's Table III at 64 PEs: the nine layers of AlexNet, VGG-16 and NeuralTalk, ours beside EIE's.

A thin wrapper of ``eie bench table3`` (same options, same code: :mod:`eie.app.cmd_bench`, the
table itself :mod:`eie.app.bench_table3`); the defaults write ``table3.json`` and ``table3.png``
into ``--out`` (default ``bench/out``).

    .venv/bin/python bench/table3.py                       # cycle model, all nine layers
    .venv/bin/python bench/table3.py --sim verilator       # the 64-PE RTL, outputs vs golden
    .venv/bin/python bench/table3.py --layers NT-We,Alex-7 --fifo-depth 16

Prints the table (cycles, bound, efficiency, microseconds at 800 MHz, EIE's actual and
theoretical times, our cycles over EIE's); exit code 1 if an RTL output differs from the golden
model. See docs/performance.md for measured results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eie.app.cli import main

#: where the outputs go without --out (ignored by git; made on first use)
OUT = Path(__file__).resolve().parent / "out"


def run(argv: list[str]) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--out", type=Path, default=None)
    opts, rest = pre.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print(__doc__)
        return main(["bench", "table3", "--help"])
    # `--sim` last, without its value: left to eie bench table3, which says what it expects
    sim = rest.index("--sim") + 1 if "--sim" in rest else len(rest)
    stem = "table3" if sim == len(rest) else f"table3_{rest[sim]}"
    out = opts.out or OUT
    if opts.out is None and not ("--json" in rest and "--plot" in rest):
        OUT.mkdir(exist_ok=True)         # eie writes only into folders that exist
    if "--json" not in rest:
        rest += ["--json", str(out / f"{stem}.json")]
    if "--plot" not in rest:
        rest += ["--plot", str(out / f"{stem}.png")]
    return main(["bench", "table3", *rest])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
