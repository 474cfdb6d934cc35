"""TFC (784-64-64-64-10) at W1A1, W2A1, W1A2 and W2A2 on the digits: accuracy of the float and
golden models, golden == float on every test digit, and the core's measured II against the
analytic one (digits preloaded, so no bubbles are allowed); optionally the first N test digits
through the RTL compared with golden.

Each precision is trained as ``eie bnn train --weights W? --acts A? --epochs 30`` does (seed
0), compiled with the default folding (and, with ``--fold``, another one as well), then run on
the simulator. Exit code 0 when every check holds.

    .venv/bin/python bench/bnn_qnn_tfc.py --sim icarus                     # the table in docs/bnn.md
    .venv/bin/python bench/bnn_qnn_tfc.py --sim verilator --only W2A2 --digits 300
    .venv/bin/python bench/bnn_qnn_tfc.py --no-rtl --scaling none,xnor      # the XNOR-Net table

``--scaling none,xnor`` trains every precision both ways (``eie bnn train --scaling xnor``:
XNOR-Net per-output weight scales); ``--no-rtl`` leaves out the simulator (accuracies only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_options as check  # noqa: E402  (the option checks bench/ shares)

PRECISIONS = {"W1A1": ([1] * 4, [1] * 4), "W2A1": ([2] * 4, [1] * 4),
              "W1A2": ([1] * 4, [2, 2, 2, 1]), "W2A2": ([2] * 4, [2, 2, 2, 1])}


def main(argv=None) -> int:
    from eie.hw.bnn.folding import analytic_ii, make_folding
    from eie.sim.bnn_run import BnnJob, run_rtl
    from eie.sw.bnn.compile import compile_model
    from eie.sw.bnn.float_model import float_forward, float_logits
    from eie.sw.bnn.golden import golden_forward, golden_logits
    from eie.common.errors import EieError
    from eie.sw.bnn.train import SCALINGS, BinaryMLP, BnnTrainConfig, TFC, train_bnn
    from eie.sw.mnist import binarize_pixels, load_mnist

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sim", default="icarus", choices=("icarus", "verilator"))
    p.add_argument("--only", default=",".join(PRECISIONS), help="precisions (W1A1,...)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--fold", action="append", default=["32:16,64:1,64:1,8:1"],
                   help="another folding to measure (the A1 default by default)")
    p.add_argument("-n", "--samples", type=int, default=6, help="digits preloaded for the II (6)")
    p.add_argument("--digits", type=int, default=0, help="also run this many test digits (0)")
    p.add_argument("--scaling", default="none", help="weight scalings, none and/or xnor (none)")
    p.add_argument("--no-rtl", action="store_true", help="accuracies only, no simulator")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    # every option before the digits are loaded and the first precision trains
    only = check.names(p, "--only", args.only, list(PRECISIONS), "precision")
    scalings = check.names(p, "--scaling", args.scaling, SCALINGS, "scaling")
    if args.epochs < 0:
        p.error(f"--epochs {args.epochs}: give 0 or more")
    check.output_file(p, "--json", args.json, follow_links=True)
    if not args.no_rtl:
        if not 0 <= args.digits <= 1000:
            p.error(f"--digits {args.digits}: the test split has 1000 digits; give 0 to 1000")
        if not 2 <= args.samples <= 1000:
            p.error(f"--samples {args.samples}: the II needs 2 or more digits, of the 1000 "
                    "test digits; give 2 to 1000")
        for fold in args.fold:
            try:
                make_folding(TFC, fold)
            except EieError as exc:
                p.error(f"--fold {fold}: {exc}")
        check.simulator(p, args.sim)
    data = load_mnist()
    xtr, xte = binarize_pixels(data.x_train), binarize_pixels(data.x_test)
    rows, ok = [], True
    for name, scaling in ((n, s) for n in only for s in scalings):
        wb, ab = PRECISIONS[name]
        net = BinaryMLP.init(TFC, seed=0, weight_bits=wb, act_bits=ab, scaling=scaling)
        train_bnn(net, xtr, data.y_train, BnnTrainConfig(epochs=args.epochs, seed=0))
        model = net.to_float_bnn()
        image = compile_model(model)
        gold, flt = golden_forward(image, xte), float_forward(model, xte)
        glog, flog = golden_logits(image, xte), float_logits(model, xte)
        equal = bool(np.array_equal(gold, flt) and np.array_equal(glog, flog))
        acc = float(np.mean(np.argmax(glog, axis=1) == data.y_test))
        facc = float(np.mean(np.argmax(flog, axis=1) == data.y_test))
        ok &= equal
        if args.no_rtl:
            r = {"precision": name, "scaling": scaling, "float_acc": facc, "golden_acc": acc,
                 "golden_equals_float": equal}
            rows.append(r)
            print(json.dumps(r), flush=True)
            continue
        for fold in [None, *args.fold]:
            img = image if fold is None else image.refold(make_folding(image.shape, fold))
            ii = analytic_ii(img.folds)
            x = xte[:args.samples]
            job = BnnJob(img, x, preload=True, poll_gap=max(1, ii // 4))
            t0 = time.time()
            run_rtl(args.sim, img.folds, [job], in_depth=args.samples, out_depth=args.samples)
            c = job.counters
            r = {"precision": name, "scaling": scaling,
                 "folding": ",".join(f"{f.simd}:{f.pe}" for f in img.folds),
                 "layer_ii": [f.ii for f in img.folds],
                 "consume": [f.consume for f in img.folds], "ii": ii, "ii_min": c["ii_min"],
                 "ii_mean": (c["t_last_out"] - c["t_first_out"]) / (args.samples - 1),
                 "bubbles": (c["t_last_out"] - c["t_first_out"]) - (args.samples - 1) * ii,
                 "latency": c["latency"], "rtl_equal": bool(np.array_equal(job.y, gold[:args.samples])),
                 "float_acc": facc, "golden_acc": acc, "golden_equals_float": equal,
                 "seconds": round(time.time() - t0, 1)}
            ok &= r["ii_min"] == ii and r["bubbles"] == 0 and r["rtl_equal"]
            if fold is None and args.digits:
                job = BnnJob(image, xte[:args.digits], poll_gap=ii // 4)
                run_rtl(args.sim, image.folds, [job])
                r["digits"] = args.digits
                r["digits_equal"] = bool(np.array_equal(job.y, gold[:args.digits]))
                ok &= r["digits_equal"]
            rows.append(r)
            print(json.dumps(r), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
