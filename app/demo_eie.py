"""The demo's EIE path (:func:`eie_path`; :func:`eie.app.demo.run_demo` runs it first).

**EIE.** LeNet-300-100 (784-300-100-10, ReLU) trained in NumPy on the 4,000 training digits
(:mod:`eie.sw.mnist`, pixels scaled by 1/256 so that ``act_frac = 8`` represents them exactly);
Deep Compression: iterative magnitude pruning with retraining to 8% / 9% / 26% of the weights
per layer (the paper's figures, 8.2% overall), masks fixed while retraining
(:func:`eie.sw.train.prune_and_retrain`); weight sharing by k-means into at most 15 centroids
plus the zero, centroids fine-tuned by the summed gradients of their clusters
(:func:`eie.sw.train.finetune_shared`); fixed point and an SRAM image for 16 PEs
(:func:`eie.sw.compress.compress_model`). The compressed accuracy is the argmax of the golden
model's int16 outputs over all 1,000 test digits; the test digits (``--images``) then run on the
EIE RTL (:func:`eie.sim.eie_run.run_eie`, Verilator by default), every output compared with the
golden model; cycles per image and efficiency (the contract's bound / measured cycles) come
from the hardware's own counters.
The same float model is also pruned load-balance-aware (ESE's per-PE balance, per column where a
layer has 16 or more rows a PE: every PE keeps the same number of weights in every column at
every prune step, ``prune_and_retrain(..., balance_pes=N, balance_columns=True)``), shared and
compressed the same way, and compared with the plain model: golden accuracy, weights kept and
efficiency from the cycle model over all test digits (``report["eie"]["load_balance_pruning"]``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..common.atomic import save_npz
from ..common.errors import EieError
from ..sw.imagefile import plural
from ..hw.eie.config import EIEConfig
from .demo_common import (
    DemoConfig, _bar, _blas_single_thread, _keep_log, _pow2, _quiet_fds, _say,
)

__all__ = ["eie_path", "ESE_FIFO_DEPTH", "ESE_PTR_QUEUE_DEPTH"]


def eie_path(cfg: DemoConfig, data, tmp: Path, timings: dict[str, float]) -> dict[str, Any]:
    from ..sw.compress import CompressConfig, compress_model
    from ..sw.fixedpoint import quantize
    from ..sw.golden import golden_forward
    from ..sw.image import write_image
    from ..sw.mnist import scale_pixels, shift_pixels
    from ..sw.train import (
        LENET_300_100, MLP, TrainConfig, accuracy, finetune_shared, prune_and_retrain,
        share_weights, train,
    )

    show = cfg.progress
    x_train, y_train = scale_pixels(data.x_train), data.y_train
    x_test, y_test = scale_pixels(data.x_test), data.y_test
    res: dict[str, Any] = {"network": "LeNet-300-100", "shape": list(LENET_300_100),
                           "n_pe": cfg.n_pe, "act_frac": 8}

    # 1. dense float training
    t0 = time.perf_counter()
    model = MLP.init(LENET_300_100, seed=cfg.seed)
    with _blas_single_thread():
        bar = _bar(cfg.dense_epochs, "EIE: train LeNet-300-100 (float)", show)
        train(model, x_train, y_train,
              TrainConfig(epochs=cfg.dense_epochs, lr=1e-3, lr_decay=0.9,
                          weight_decay=cfg.weight_decay, seed=cfg.seed, augment=shift_pixels),
              progress=lambda e, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.3f}")))
        bar.close()
        float_acc = accuracy(model, x_test, y_test)
        float_model = model.copy()      # the ESE comparison starts from the same float model
        save_npz(tmp / "lenet_float.npz", model.to_npz_dict())
        _say(f"EIE  float LeNet-300-100: test accuracy {float_acc:.2%} "
             f"({plural(cfg.dense_epochs, 'epoch')}, {time.perf_counter() - t0:.1f} s)", show)

        # 2. iterative pruning with retraining, masks fixed
        curve = [{"stage": "dense", "weights_kept": 1.0, "accuracy": float_acc}]
        bar = _bar(cfg.prune_steps * cfg.prune_epochs, "EIE: prune + retrain", show)

        def on_step(st):
            bar.update(cfg.prune_epochs)
            bar.set_postfix(kept=f"{st.weights_kept:.1%}", acc=f"{st.accuracy_retrained:.1%}")
            k = (len(curve) - 1) // 2 + 1   # prune step, from 1
            curve.append({"stage": f"step {k}: pruned", "weights_kept": st.weights_kept,
                          "accuracy": st.accuracy_pruned, "retrained": False})
            curve.append({"stage": f"step {k}: retrained", "weights_kept": st.weights_kept,
                          "accuracy": st.accuracy_retrained, "retrained": True})

        masks, steps = prune_and_retrain(
            model, x_train, y_train, cfg.densities, cfg.prune_steps, _prune_config(cfg),
            x_val=x_test, y_val=y_test, on_step=on_step)
        bar.close()
        pruned_acc = accuracy(model, x_test, y_test)
        pruned_weights = [w[w != 0].copy() for w in model.weights]
        _say(f"EIE  pruned to {model.n_nonzero() / model.n_weights():.2%} of the weights "
             f"(per layer {', '.join(f'{d:.0%}' for d in cfg.densities)}) in "
             f"{plural(cfg.prune_steps, 'step')}: test accuracy {pruned_acc:.2%}", show)

        # 3. weight sharing, centroids fine-tuned
        books, codes = share_weights(model)
        shared = model.copy()
        shared.weights = [b[c] for b, c in zip(books, codes)]
        shared_acc_before = accuracy(shared, x_test, y_test)
        bar = _bar(cfg.share_epochs, "EIE: fine-tune centroids", show)
        books, _ = finetune_shared(
            shared, books, codes, x_train, y_train, _share_config(cfg),
            progress=lambda e, loss: bar.update(1))
        bar.close()
        shared_acc = accuracy(shared, x_test, y_test)
    shared_weights = [w[w != 0].copy() for w in shared.weights]
    save_npz(tmp / "lenet_compressed.npz", shared.to_npz_dict())
    _say(f"EIE  weight sharing ({max(len(b) - 1 for b in books)} centroids + zero per layer): "
         f"{shared_acc_before:.2%} before fine-tuning, {shared_acc:.2%} after", show)
    timings["eie_training"] = time.perf_counter() - t0

    # 4. fixed point and the SRAM image
    t0 = time.perf_counter()
    fmodel = shared.float_model("lenet_compressed.npz")
    calibration = _calibration_digits(x_train)
    np.save(tmp / "calibration.npy", calibration)
    comp = compress_model(fmodel, _compress_config(cfg, calibration))
    image = comp.image
    write_image(image, tmp / "eie_image")
    one_pe = compress_model(fmodel, CompressConfig(n_pe=1)).totals
    totals = comp.totals
    xq = quantize(x_test, 8)
    np.save(tmp / "x_test_int16.npy", xq)
    np.save(tmp / "y_test.npy", y_test)
    gold = golden_forward(image, xq)
    comp_acc = float(np.mean(np.argmax(gold.outputs, axis=1) == y_test))
    timings["eie_compress_golden"] = time.perf_counter() - t0
    _say(f"EIE  image for {plural(cfg.n_pe, 'PE')}: {totals['nonzeros']:,} of "
         f"{totals['weights']:,} weights kept ({totals['density']:.2%}), compression "
         f"{totals['ratio']:.1f}x "
         f"({totals['ratio_huffman']:.1f}x with Huffman); golden-model accuracy {comp_acc:.2%}",
         show)

    # 5. the RTL
    t0 = time.perf_counter()
    n = cfg.images
    rtl = _run_eie_rtl(cfg, image, xq[:n], tmp)
    timings["eie_rtl"] = time.perf_counter() - t0
    y_rtl = rtl.outputs
    np.save(tmp / "eie_rtl_outputs.npy", y_rtl)
    matches = bool(np.array_equal(y_rtl, gold.outputs[:n]))
    mismatched = int(np.sum(np.any(y_rtl != gold.outputs[:n], axis=1))) if y_rtl.shape == \
        gold.outputs[:n].shape else n
    rtl_acc = float(np.mean(np.argmax(y_rtl, axis=1) == y_test[:n]))
    n_layers = len(image.layers)
    layer_cycles = np.array([[c[l]["cycles"] for l in range(n_layers)] for c in rtl.counters])
    bounds = np.stack([gold.stats[l].bound[:n] for l in range(n_layers)], axis=1)
    busy = np.array([[c[l]["busy"] for l in range(n_layers)] for c in rtl.counters])
    stall = np.array([[c[l]["stall"] for l in range(n_layers)] for c in rtl.counters])
    run_cycles = np.array(rtl.run_cycles, dtype=np.float64)
    eff_layers = bounds.sum(axis=0) / np.maximum(layer_cycles.sum(axis=0), 1)
    eff = float(bounds.sum() / max(int(layer_cycles.sum()), 1))
    off = "" if matches else f" on {plural(mismatched, 'digit')}"
    _say(f"EIE  RTL ({cfg.sim}): {plural(n, 'test digit')}, outputs "
         f"{'EQUAL' if matches else 'DIFFER FROM'} the golden model{off}; accuracy "
         f"{rtl_acc:.2%}, "
         f"{run_cycles.mean():.0f} cycles per image, efficiency {eff:.2f}", show)

    # 6. load-balance-aware pruning (ESE) against plain pruning, same float model and schedule
    t0 = time.perf_counter()
    ese = _ese_comparison(cfg, float_model, data, xq,
                          {"image": image, "gold": gold, "totals": totals,
                           "pruned_accuracy": pruned_acc, "weights": shared.weights},
                          rtl.counters[:n])
    timings["eie_ese_comparison"] = time.perf_counter() - t0

    ref = _paper_reference()
    res.update({
        "float_accuracy": float_acc,
        "pruned_accuracy": pruned_acc,
        "shared_float_accuracy": shared_acc,
        "compressed_accuracy": comp_acc,
        "accuracy_loss_points": 100.0 * (float_acc - comp_acc),
        "weights_kept": float(totals["density"]),
        "weights_kept_per_layer": [float(np.count_nonzero(w) / w.size) for w in shared.weights],
        "nonzeros": int(totals["nonzeros"]),
        "weights": int(totals["weights"]),
        "compression_ratio": float(totals["ratio"]),
        "compression_ratio_huffman": float(totals["ratio_huffman"]),
        "compression_ratio_1pe": float(one_pe["ratio"]),
        "compression_ratio_huffman_1pe": float(one_pe["ratio_huffman"]),
        "storage_bits": {k: int(totals[k]) for k in (
            "dense_bits", "total_bits", "total_bits_huffman", "pointer_bits", "code_bits",
            "index_bits", "huffman_code_bits", "huffman_index_bits")},
        "entries": int(totals["entries"]),
        "codebook_sizes": [int(len(b) - 1) for b in books],
        "w_frac": [int(d.w_frac) for d in image.layers],
        "paper": ref,
        "prune_curve": curve,
        "rtl_simulator": cfg.sim,
        "rtl_load": cfg.load,
        "rtl_images": n,
        "rtl_matches_golden": matches,
        "rtl_mismatched_images": mismatched,
        "rtl_accuracy": rtl_acc,
        "golden_accuracy_same_images": float(np.mean(np.argmax(gold.outputs[:n], 1) == y_test[:n])),
        "cycles_per_image": float(run_cycles.mean()),
        "layer_cycles_per_image": [float(v) for v in layer_cycles.mean(axis=0)],
        "bound_per_image": [float(v) for v in bounds.mean(axis=0)],
        "efficiency": eff,
        "efficiency_per_layer": [float(v) for v in eff_layers],
        "nonzero_inputs_per_image": [float(gold.stats[l].nonzero_inputs[:n].mean())
                                     for l in range(n_layers)],
        "entries_per_pe": [[int(v) for v in gold.stats[l].entries_per_pe] for l in range(n_layers)],
        "busy_per_pe_per_image": [[float(v) for v in busy[:, l, :].mean(axis=0)]
                                  for l in range(n_layers)],
        "stall_cycles_per_image": float(stall.sum(axis=(1, 2)).mean()),
        "us_per_image_at_800mhz": float(run_cycles.mean() / 800.0),
        "load_balance_pruning": ese,
    })
    plots = {"pruned": pruned_weights, "shared": shared_weights, "books": books}
    return res, plots


def _prune_config(cfg: DemoConfig):
    """Retraining after each prune step (the plain and the load-balance-aware path alike)."""
    from ..sw.mnist import shift_pixels
    from ..sw.train import TrainConfig

    return TrainConfig(epochs=cfg.prune_epochs, lr=1e-3, lr_decay=0.9,
                       weight_decay=cfg.weight_decay, seed=cfg.seed + 1, augment=shift_pixels)


def _share_config(cfg: DemoConfig):
    """Centroid fine-tuning after weight sharing."""
    from ..sw.mnist import shift_pixels
    from ..sw.train import TrainConfig

    return TrainConfig(epochs=cfg.share_epochs, lr=1e-4, seed=cfg.seed + 2, augment=shift_pixels)


def _compress_config(cfg: DemoConfig, calibration: np.ndarray):
    """How the demo compresses a trained LeNet-300-100 (the same for every model it compares):
    ``eie compress --calibrate calibration.npy``: the balanced placement, also balancing the work
    on training digits (``calibration``, float pixels as the model takes them, written beside
    the model so that the image can be rebuilt from the two files). On the demo's design (FIFO 8,
    pointer queue 15) it lifts the first layer from 0.87 to 0.90 of the bound, for no storage."""
    from ..sw.compress import CompressConfig

    return CompressConfig(n_pe=cfg.n_pe, calibration=calibration)


def _calibration_digits(x_train: np.ndarray) -> np.ndarray:
    """The calibration inputs of the demo's placement: the first training digits (as many as the
    placement looks at), float32 pixels in [0, 1], exactly as saved to ``calibration.npy``."""
    from ..sw.compress import MAX_CALIBRATION

    return np.asarray(x_train[:MAX_CALIBRATION], dtype=np.float32)


#: FIFO and pointer-queue depths of the cycle-model figures of the ESE comparison: the demo's RTL
#: design's (the accelerator's defaults, :class:`eie.hw.eie.config.EIEConfig`).
ESE_FIFO_DEPTH = EIEConfig.fifo_depth
ESE_PTR_QUEUE_DEPTH = EIEConfig.ptr_queue_depth


def _model_efficiency(image, xq: np.ndarray, gold) -> tuple[dict[str, Any], list]:
    """Efficiency of ``image`` on ``xq`` from the cycle model: sum of the golden model's bounds
    over sum of the predicted cycles, over every digit and layer (and per layer)."""
    from ..sw.cycle_model import predict_counters

    n_layers = len(image.layers)
    inputs = gold.layer_inputs
    pred = predict_counters(image, xq, fifo_depth=ESE_FIFO_DEPTH,
                            ptr_queue_depth=ESE_PTR_QUEUE_DEPTH, layer_inputs=inputs)
    cycles = np.array([[p[l].cycles for l in range(n_layers)] for p in pred], dtype=np.int64)
    bounds = np.stack([np.asarray(gold.stats[l].bound, dtype=np.int64)
                       for l in range(n_layers)], axis=1)
    entries = [np.asarray(gold.stats[l].entries_per_pe, dtype=np.float64) for l in range(n_layers)]
    return {
        "efficiency": float(bounds.sum() / max(int(cycles.sum()), 1)),
        "efficiency_per_layer": [float(v) for v in
                                 bounds.sum(axis=0) / np.maximum(cycles.sum(axis=0), 1)],
        "cycles_per_image": float(cycles.sum(axis=1).mean()),
        "bound_per_image": [float(v) for v in bounds.mean(axis=0)],
        # largest PE's sparse-matrix entries (padding included) over the mean, as stored
        "entries_imbalance_per_layer": [float(e.max() / e.mean()) if e.sum() else 1.0
                                        for e in entries],
    }, pred


def _kept_imbalance(weights: list[np.ndarray], n_pe: int) -> list[float]:
    """Per layer: the most kept weights of a PE's rows (row ``i`` on PE ``i % n_pe``) over the
    mean of all PEs (1.0 = perfectly even)."""
    out = []
    for w in weights:
        per_pe = np.array([np.count_nonzero(w[k::n_pe]) for k in range(n_pe)], dtype=np.float64)
        out.append(float(per_pe.max() / per_pe.mean()) if per_pe.sum() else 1.0)
    return out


def _ese_comparison(cfg: DemoConfig, float_model, data, xq: np.ndarray,
                    plain: dict[str, Any], rtl_counters: list) -> dict[str, Any]:
    """ESE's load-balance-aware pruning (Han et al., FPGA 2017) against the demo's plain pruning.

    From the same trained float model, the same prune-and-retrain schedule with every step
    pruning each PE's rows to the same count, in every column of a layer with 16 or more rows a
    PE (:func:`eie.sw.prune.prune_column_balanced`, else :func:`eie.sw.prune.prune_balanced`),
    then the
    same weight sharing, fine-tuning and compression as the main model. Both are scored at the
    same stage: the golden model's accuracy over all test digits (int16, after sharing and fixed
    point), weights kept, and efficiency at ``cfg.n_pe`` PEs from the cycle model over all test
    digits. ``plain`` holds the main model's ``image``, ``gold``, ``totals``, ``pruned_accuracy``
    and shared ``weights``; ``rtl_counters`` the RTL's counters of the digits it ran, against
    which the cycle model is confirmed."""
    from ..sw.compress import compress_model
    from ..sw.golden import golden_forward
    from ..sw.mnist import scale_pixels
    from ..sw.train import accuracy, finetune_shared, prune_and_retrain, share_weights

    show = cfg.progress
    x_train, y_train = scale_pixels(data.x_train), data.y_train
    x_test, y_test = scale_pixels(data.x_test), data.y_test
    model = float_model.copy()
    with _blas_single_thread():
        bar = _bar(cfg.prune_steps * cfg.prune_epochs + cfg.share_epochs,
                   "EIE: load-balance-aware prune + retrain, share", show)
        prune_and_retrain(model, x_train, y_train, cfg.densities, cfg.prune_steps,
                          _prune_config(cfg), balance_pes=cfg.n_pe, balance_columns=True,
                          on_step=lambda st: bar.update(cfg.prune_epochs))
        pruned_acc = accuracy(model, x_test, y_test)
        books, codes = share_weights(model)
        model.weights = [b[c] for b, c in zip(books, codes)]
        finetune_shared(model, books, codes, x_train, y_train, _share_config(cfg),
                        progress=lambda e, loss: bar.update(1))
        bar.close()
    comp = compress_model(model.float_model("ESE"),
                          _compress_config(cfg, _calibration_digits(x_train)))
    gold = golden_forward(comp.image, xq)

    def side(image, g, totals, pruned_accuracy, weights):
        eff, pred = _model_efficiency(image, xq, g)
        return {
            "pruned_accuracy": float(pruned_accuracy),
            "compressed_accuracy": float(np.mean(np.argmax(g.outputs, axis=1) == y_test)),
            "weights_kept": float(totals["density"]),
            "nonzeros": int(totals["nonzeros"]),
            "kept_imbalance_per_layer": _kept_imbalance(weights, cfg.n_pe),
            **eff,
        }, pred

    p, pred = side(plain["image"], plain["gold"], plain["totals"], plain["pruned_accuracy"],
                   plain["weights"])
    b, _ = side(comp.image, gold, comp.totals, pruned_acc, model.weights)
    # the cycle model against the RTL's own counters on the digits the RTL ran (plain image)
    keys = ("cycles", "broadcasts", "busy", "stall")
    model_equals_rtl = bool(rtl_counters) and all(
        [int(v) for v in np.atleast_1d(pred[s][l].counters()[k])]
        == [int(v) for v in np.atleast_1d(c[l][k])]
        for s, c in enumerate(rtl_counters) for l in range(len(c)) for k in keys)
    res = {
        "method": "load-balance-aware pruning (ESE, Han et al., FPGA 2017, per column): every "
                  "prune step keeps the same number of weights in each PE's rows (row i on PE "
                  "i % N), in every column where the layer has >= 16 rows a PE (so every PE has "
                  "the same work on any input), in all in the others",
        "n_pe": cfg.n_pe,
        "fifo_depth": ESE_FIFO_DEPTH,
        "ptr_queue_depth": ESE_PTR_QUEUE_DEPTH,
        "images": int(xq.shape[0]),
        "efficiency_source": "cycle model (eie.sw.cycle_model.predict_counters); bound from "
                             "the golden model; sum of bounds / sum of cycles",
        "plain": p,
        "balanced": b,
        "accuracy_difference_points": 100.0 * (b["compressed_accuracy"]
                                               - p["compressed_accuracy"]),
        "efficiency_ratio": b["efficiency"] / p["efficiency"] if p["efficiency"] else None,
        "cycle_model_equals_rtl": bool(model_equals_rtl),
        "cycle_model_checked_images": len(rtl_counters),
    }
    _say(f"EIE  load-balance-aware pruning (ESE) at {plural(cfg.n_pe, 'PE')}: golden accuracy "
         f"{b['compressed_accuracy']:.2%} (plain {p['compressed_accuracy']:.2%}), "
         f"{b['weights_kept']:.2%} kept (plain {p['weights_kept']:.2%}), efficiency "
         f"{b['efficiency']:.2f} (plain {p['efficiency']:.2f}; cycle model, "
         f"{plural(xq.shape[0], 'digit')})", show)
    return res


def _run_eie_rtl(cfg: DemoConfig, image, x: np.ndarray, tmp: Path):
    from ..sim.eie_run import config_for_images, run_eie

    # a design sized with headroom (powers of two), so that retrained models of the same
    # network reuse one cached simulator build
    design = config_for_images([image], spmat_depth=_pow2(image.spmat_words, 64),
                               bias_depth=_pow2(max(1, image.bias_words), 16))
    _say(f"EIE  RTL: {plural(cfg.n_pe, 'PE')}, FIFO depth {design.fifo_depth}, "
         f"{design.spmat_depth} sparse-matrix words per PE; building {cfg.sim} (cached after "
         f"the first run) and "
         f"running {plural(x.shape[0], 'digit')}", cfg.progress)
    try:
        with _quiet_fds(tmp / "eie_sim.log"):
            return run_eie(image, x, sim=cfg.sim, config=design, progress=cfg.progress,
                           load=cfg.load)
    except RuntimeError as exc:
        log = _keep_log(tmp / "eie_sim.log", cfg)
        raise EieError(f"the EIE RTL simulation on {cfg.sim} failed ({exc}); see {log}") from None



def _paper_reference() -> dict[str, Any]:
    """Deep Compression's LeNet-300-100 figures (``deep_compression_iclr2016``)."""
    return {"source": "Han et al., Deep Compression, ICLR 2016, Table 1 (LeNet-300-100)",
            "weights_kept": 0.08, "ratio_without_huffman": 32, "ratio": 40,
            "top1_error_ref": 0.0164, "top1_error_compressed": 0.0158}
