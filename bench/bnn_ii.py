"""Measured vs analytic initiation interval of the BNN core for FINN's TFC, SFC and LFC shapes.

For each shape and folding the bus-mapped top (``bnn_top``) is built for Verilator, ``N``
samples are preloaded into its input FIFO with the network stopped, then the network runs them
back to back and the core's own counters (:mod:`eie.hw.bnn.memory_map`) report the intervals
between results. The analytic II is ``max over layers of ceil(n_out/PE) * ceil(n_in/SIMD)``;
"bubbles" is ``(T_LAST_OUT - T_FIRST_OUT) - (N-1) * II``, 0 when the stream has no gaps.
The weights are the memories' reset values (zeros, the same image is passed to the golden model
to check the outputs too): timing does not depend on them, and the Verilog stays small.

    .venv/bin/python bench/bnn_ii.py                 # all six rows (Verilator, a few minutes)
    .venv/bin/python bench/bnn_ii.py --shapes TFC    # one shape
    .venv/bin/python bench/bnn_ii.py --sim icarus --shapes TFC
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eie.sim.runner import SIMULATORS

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_options as check  # noqa: E402  (the option checks bench/ shares)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "eie_isca2016_benchmarks.json"

# FINN (FPGA 2017) shapes and its LFC-w1a1 folding, as in the reference file; copied here so the
# bench also runs without that file.
TOPOLOGIES = {"TFC": [784, 64, 64, 64, 10], "SFC": [784, 256, 256, 256, 10],
              "LFC": [784, 1024, 1024, 1024, 10]}
FINN_LFC_FOLDING = [(64, 32), (32, 64), (64, 32), (8, 16)]
#: A small folding for small FPGAs: 32 XNOR lanes per hidden layer, 16 on the classifier.
SMALL_FOLDING = [(8, 4), (8, 4), (8, 4), (8, 2)]


def _reference() -> tuple[dict, list]:
    if REFERENCE.is_file():
        ref = json.loads(REFERENCE.read_text())["finn_fpga2017_bnn"]
        return ref["topologies"], [(f["simd"], f["pe"]) for f in ref["lfc_w1a1_folding_example"]]
    return TOPOLOGIES, FINN_LFC_FOLDING


def measure(shape, fold, *, simulator: str, n: int, build_root: Path) -> dict:
    from eie.sim.bnn_run import BnnJob, run_rtl
    from eie.hw.bnn.folding import analytic_ii, make_folding
    from eie.sw.bnn.golden import golden_forward
    from eie.sw.bnn.image import BnnImage

    folds = make_folding(shape, fold)
    zeros = BnnImage(folds, [np.zeros((f.n_out, f.n_in), dtype=np.uint8) for f in folds],
                     [np.zeros(f.n_out, dtype=np.int64) for f in folds[:-1]])
    x = np.random.default_rng(0).integers(0, 2, size=(n, shape[0]), dtype=np.uint8)
    job = BnnJob(zeros, x, preload=True, load=False, poll_gap=max(1, analytic_ii(folds) // 4))
    t0 = time.time()
    run_rtl(simulator, folds, [job], build_dir=build_root / f"{'_'.join(map(str, shape))}_"
            f"{'_'.join(f'{s}x{p}' for s, p in fold)}", in_depth=n, out_depth=n,
            build_args=("-CFLAGS", "-O1") if simulator == "verilator" else ())
    c = job.counters
    ii = analytic_ii(folds)
    return {
        "folds": folds, "ii": ii, "ii_min": c["ii_min"], "ii_last": c["ii_last"],
        "ii_mean": (c["t_last_out"] - c["t_first_out"]) / (n - 1),
        "bubbles": (c["t_last_out"] - c["t_first_out"]) - (n - 1) * ii,
        "latency": c["latency"], "stall": c["stall"],
        "equal": bool(np.array_equal(job.y, golden_forward(zeros, x))),
        "seconds": time.time() - t0,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="TFC,SFC,LFC")
    p.add_argument("--sim", default="verilator", choices=SIMULATORS)
    p.add_argument("-n", "--samples", type=int, default=6, help="samples streamed (6)")
    p.add_argument("--build-dir", default=None, help="keep builds here (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)
    topologies, finn = _reference()
    shapes = check.names(p, "--shapes", args.shapes, list(topologies), "shape")
    if not 2 <= args.samples <= 65535:
        p.error(f"--samples {args.samples}: the II needs 2 or more samples, and the input FIFO "
                "holds at most 65535; give 2 to 65535")
    check.directory(p, "--build-dir", args.build_dir)
    check.output_file(p, "--json", args.json, follow_links=True)
    check.simulator(p, args.sim)
    foldings = {"FINN LFC": finn, "small": SMALL_FOLDING}
    build_root = Path(args.build_dir) if args.build_dir else Path(tempfile.mkdtemp(prefix="bnn_ii_"))
    rows = []
    for name in shapes:
        for fname, fold in foldings.items():
            r = measure(topologies[name], fold, simulator=args.sim, n=args.samples,
                        build_root=build_root)
            rows.append((name, fname, fold, r))
            print(f"  {name} {fname}: II {r['ii_min']} measured, {r['ii']} analytic "
                  f"({r['seconds']:.0f} s)", file=sys.stderr)
    head = (f"| shape | folding (SIMD:PE per layer) | layer cycles | analytic II | measured II "
            f"(min / mean) | bubbles | latency | samples/s @100 MHz | = golden |")
    print(head)
    print("|" + "---|" * 9)
    for name, fname, fold, r in rows:
        layers = "/".join(str(f.ii) for f in r["folds"])
        print(f"| {name} | {fname} {','.join(f'{s}:{p}' for s, p in fold)} | {layers} | {r['ii']} "
              f"| {r['ii_min']} / {r['ii_mean']:.2f} | {r['bubbles']} | {r['latency']} "
              f"| {1e8 / r['ii_min']:,.0f} | {'yes' if r['equal'] else 'NO'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"shape": n, "folding": f, "fold": fold,
              **{k: v for k, v in r.items() if k != "folds"}} for n, f, fold, r in rows], indent=1))
    ok = all(r["ii_min"] == r["ii"] and r["bubbles"] == 0 and r["equal"] for *_, r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
