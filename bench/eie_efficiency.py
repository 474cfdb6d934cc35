"""EIE efficiency (the contract's bound / cycles) on random layers, from the cycle model, with
optional RTL cross-checks on the Amaranth simulator.

    python bench/eie_efficiency.py                 # 256 and 1024 square layers, 4/8/16 PEs
    python bench/eie_efficiency.py --rtl           # plus a few points on the RTL (slow)
    python bench/eie_efficiency.py --sizes 256 512 --pes 4 8 16 --wd 0.1 0.2 --ad 0.3 0.5

Columns: efficiency (mean and min over seeds), the load-balance ceiling bound / max-PE-work (no
design that issues one entry per PE per cycle can beat it), and the fraction of that ceiling the
design reaches (max-PE-work / cycles).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eie.app.bench_setup import config_range
from eie.sw.bound import efficiency, layer_column_entries
from eie.sw.cycle_model import predict_layer
from eie.sw.encode import QuantLayer, build_image
from eie.sw.golden import golden_forward


def random_layer(rng, n_out, n_in, wd):
    codes = (rng.integers(1, 16, (n_out, n_in)) * (rng.random((n_out, n_in)) < wd)).astype(np.uint8)
    cb = np.concatenate([[0], rng.integers(-300, 301, 15)]).astype(np.int16)
    return QuantLayer(codes=codes, codebook=cb, w_frac=8, bias=None, relu=False)


def point(size, n_pe, wd, ad, fifo, seeds, rtl=False):
    effs, ceil, frac, agree = [], [], [], []
    for s in range(seeds):
        rng = np.random.default_rng(1000 * s + size + n_pe)
        img = build_image([random_layer(rng, size, size, wd)], n_pe)
        x = (rng.integers(1, 501, size) * (rng.random(size) < ad)).astype(np.int16)
        st = golden_forward(img, x[None]).stats[0]
        bound, mx = int(st.bound[0]), int(st.work_per_pe[0].max())
        p = predict_layer(layer_column_entries(img, 0), x, size, fifo_depth=fifo)
        effs.append(efficiency(bound, p.cycles))
        ceil.append(bound / mx)
        frac.append(mx / p.cycles)
        if rtl and s == 0:
            from eie.hw.eie.config import EIEConfig
            from eie.sim.eie_amaranth import run_image_amaranth
            r = run_image_amaranth(EIEConfig.for_image(img, fifo_depth=fifo), img, x[None])
            agree.append((r.counters[0][0]["cycles"], p.cycles))
    return np.mean(effs), np.min(effs), np.mean(ceil), np.mean(frac), agree


def check_options(ap: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Every option before the first point (exit 2 with what to give; a FIFO depth of 0 made
    the cycle model loop forever)."""
    pe_lo, pe_hi = config_range("n_pe")
    fifo_lo, fifo_hi = config_range("fifo_depth")
    if min(a.sizes) < 1:
        ap.error(f"--sizes {min(a.sizes)}: give layer sizes of at least 1")
    if not all(pe_lo <= n <= pe_hi for n in a.pes):
        ap.error(f"--pes {' '.join(map(str, a.pes))}: every PE count must be {pe_lo} to {pe_hi}")
    for opt, values in (("--wd", a.wd), ("--ad", a.ad)):
        if not all(0 < d <= 1 for d in values):
            ap.error(f"{opt} {' '.join(map(str, values))}: every density must be in (0, 1] "
                     "(with none kept there is no work to measure)")
    if not fifo_lo <= a.fifo <= fifo_hi:
        ap.error(f"--fifo {a.fifo}: the FIFO depth must be {fifo_lo} to {fifo_hi}")
    if a.seeds < 1:
        ap.error(f"--seeds {a.seeds}: give at least 1 seed a point")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--pes", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--wd", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--ad", type=float, nargs="+", default=[0.3, 0.5])
    ap.add_argument("--fifo", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rtl", action="store_true", help="cross-check one seed per point on the RTL")
    a = ap.parse_args(argv)
    check_options(ap, a)
    t0 = time.time()
    print(f"fifo_depth {a.fifo}, {a.seeds} seeds a point, square layers")
    hdr = f"{'size':>5} {'PEs':>4} {'w dens':>6} {'a dens':>6} {'eff mean':>8} {'eff min':>8} {'ceiling':>8} {'of ceil':>8}"
    if a.rtl:
        hdr += "  RTL cycles / model"
    print(hdr)
    for size in a.sizes:
        for n in a.pes:
            for wd in a.wd:
                for ad in a.ad:
                    e, emin, c, f, agree = point(size, n, wd, ad, a.fifo, a.seeds, a.rtl)
                    line = f"{size:5d} {n:4d} {wd:6.2f} {ad:6.2f} {e:8.3f} {emin:8.3f} {c:8.3f} {f:8.3f}"
                    if agree:
                        line += f"  {agree[0][0]} / {agree[0][1]}"
                    print(line, flush=True)
    print(f"({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
