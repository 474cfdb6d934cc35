"""Simulator speed: simulated clock cycles per second of one EIE design on the Amaranth
simulator, Icarus Verilog and Verilator, on the same layer and inputs, in one run.

Every simulator runs the same host program (load the image through the bus, then per sample:
write the input, start, wait for done, read outputs and counters) on the same 8-PE design, and
must produce the golden model's outputs. Two rates are reported:

* ``all``: every simulated cycle of the job (bus loading, runs, read-back) over its wall time;
* ``compute``: only the cycles from each start to done (the accelerator working, no testbench
  activity in the cocotb runs) over their wall time.

Build time (Amaranth elaboration; Verilog export plus Icarus/Verilator compilation) is excluded
from both and reported separately; a build taken from the cache shows as 0.

Icarus and Verilator run twice, once per load (``--loads``): ``bus`` writes the whole image over
the host bus, ``backdoor`` deposits the pointer and sparse-matrix words through the VPI
(:mod:`eie.sim.backdoor`); ``sim s`` shows what that saves. The outputs must be equal either way.

    .venv/bin/python bench/sim_speed.py [--pes 8] [--rows 256] [--cols 256] [--density 0.1]
        [--act-density 0.5] [--samples 4] [--sims amaranth,icarus,verilator]
        [--loads bus,backdoor]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from eie.app.bench_setup import config_range
from eie.sim.backdoor import LOADS
from eie.sim.eie_run import config_for_images, run_eie
from eie.sim.runner import ALL_SIMULATORS, SIMULATORS
from eie.sw.encode import QuantLayer, build_image
from eie.sw.golden import golden_forward

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_options as check  # noqa: E402  (the option checks bench/ shares)


def make_layer(rows: int, cols: int, density: float, n_pe: int, seed: int):
    rng = np.random.default_rng(seed)
    codes = (rng.integers(1, 16, (rows, cols)) * (rng.random((rows, cols)) < density))
    cb = np.concatenate([[0], rng.integers(-300, 301, 15)]).astype(np.int16)
    layer = QuantLayer(codes=codes.astype(np.uint8), codebook=cb, w_frac=8,
                       bias=rng.integers(-500, 501, rows).astype(np.int16), relu=True)
    return build_image([layer], n_pe)


def check_options(ap: argparse.ArgumentParser, args: argparse.Namespace
                  ) -> tuple[list[str], list[str]]:
    """Every option before the first simulator starts (exit 2 with what to give): the
    simulators and loads to run, in order."""
    pe_lo, pe_hi = config_range("n_pe")
    fifo_lo, fifo_hi = config_range("fifo_depth")
    if not pe_lo <= args.pes <= pe_hi:
        ap.error(f"--pes {args.pes}: the accelerator takes {pe_lo} to {pe_hi} PEs")
    for opt, n in (("--rows", args.rows), ("--cols", args.cols), ("--samples", args.samples)):
        if n < 1:
            ap.error(f"{opt} {n}: give at least 1")
    if not 0 < args.density <= 1:
        ap.error(f"--density {args.density}: give the weight density in (0, 1]")
    if not 0 <= args.act_density <= 1:
        ap.error(f"--act-density {args.act_density}: give the input density in [0, 1]")
    if not fifo_lo <= args.fifo_depth <= fifo_hi:
        ap.error(f"--fifo-depth {args.fifo_depth}: the FIFO depth must be {fifo_lo} to {fifo_hi}")
    if args.seed < 0:
        ap.error(f"--seed {args.seed}: give a seed >= 0")
    sims = check.names(ap, "--sims", args.sims, sorted(ALL_SIMULATORS), "simulator")
    loads = check.names(ap, "--loads", args.loads, LOADS, "load")
    if set(sims) == {"amaranth"} and "bus" not in loads:
        ap.error(f"--loads {args.loads}: the Amaranth simulator loads over the bus only; add bus "
                 "or an RTL simulator to --sims")
    check.directory(ap, "--build-dir", args.build_dir)
    for sim in sims:
        if sim in SIMULATORS:
            check.simulator(ap, sim)
    return sims, loads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pes", type=int, default=8)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--cols", type=int, default=256)
    ap.add_argument("--density", type=float, default=0.1, help="weight density")
    ap.add_argument("--act-density", type=float, default=0.5, help="input density")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--fifo-depth", type=int, default=8)
    # every simulator, alphabetical: the Amaranth simulator first, the base of the speed-ups
    ap.add_argument("--sims", default=",".join(sorted(ALL_SIMULATORS)))
    ap.add_argument("--loads", default="bus,backdoor",
                    help="image loads to time on Icarus and Verilator (Amaranth: bus only)")
    ap.add_argument("--build-dir", default=None, help="build cache (default ~/.cache/eie)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    sims, loads = check_options(ap, args)

    img = make_layer(args.rows, args.cols, args.density, args.pes, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    x = (rng.integers(-800, 801, (args.samples, args.cols))
         * (rng.random((args.samples, args.cols)) < args.act_density)).astype(np.int16)
    ref = golden_forward(img, x).outputs
    cfg = config_for_images([img], fifo_depth=args.fifo_depth)
    print(f"layer {args.rows} x {args.cols}, weight density {args.density:.0%}, input density "
          f"{args.act_density:.0%}, {args.pes} PEs, FIFO {args.fifo_depth}, {args.samples} "
          f"samples; {img.layers[0].stats.get('entries', '?')} entries")
    rows = []
    for sim in sims:
        for load in loads:
            if sim == "amaranth" and load != "bus":
                continue
            t0 = time.perf_counter()
            r = run_eie(img, x, sim=sim, config=cfg, build_dir=args.build_dir, load=load)
            total = time.perf_counter() - t0
            ok = bool(np.array_equal(r.outputs, ref))
            name = sim if load == "bus" else f"{sim}/{load}"
            rows.append(dict(sim=name, ok=ok, cycles=r.sim_cycles, seconds=r.sim_seconds,
                             c_cycles=r.compute_cycles, c_seconds=r.compute_seconds,
                             build=r.build_seconds, wall=total,
                             run_cycles=sum(r.run_cycles)))
            print(f"  {name}: done in {total:.1f} s", file=sys.stderr)
    if not rows:
        return 0
    base = rows[0]
    rate = lambda c, s: c / s if s > 0 else float("inf")  # noqa: E731
    print()
    print(f"{'simulator':<18} {'golden':>6} {'cycles':>9} {'sim s':>8} {'cycles/s':>10} "
          f"{'vs ' + base['sim']:>12} {'compute c/s':>12} {'vs ' + base['sim']:>12} "
          f"{'build s':>8}")
    for r in rows:
        all_rate = rate(r["cycles"], r["seconds"])
        c_rate = rate(r["c_cycles"], r["c_seconds"])
        print(f"{r['sim']:<18} {'equal' if r['ok'] else 'DIFF':>6} {r['cycles']:>9} "
              f"{r['seconds']:>8.2f} {all_rate:>10.0f} "
              f"{all_rate / rate(base['cycles'], base['seconds']):>11.1f}x "
              f"{c_rate:>12.0f} {c_rate / rate(base['c_cycles'], base['c_seconds']):>11.1f}x "
              f"{r['build']:>8.1f}")
    print(f"\n(cycles: all simulated cycles of the job, {rows[0]['run_cycles']} of them from "
          "start to done; build 0.0 = taken from the cache)")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
