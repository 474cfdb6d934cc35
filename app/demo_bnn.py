"""The demo's BNN path (:func:`bnn_path`; :func:`eie.app.demo.run_demo` runs it after the EIE
path).

**BNN.** A binarized MLP of FINN's TFC shape (784-64-64-64-10, or SFC) trained with the
straight-through estimator and batch norm on the same digits binarized at pixel >= 128
(:mod:`eie.sw.bnn.train`), compiled to thresholds (:func:`eie.sw.bnn.compile.compile_model`),
run on the BNN RTL (:func:`eie.sim.bnn_run.run_rtl`), every output compared with the golden
model; accuracy and the measured initiation interval next to the analytic one. That network is
the W1A1 entry of ``report["bnn"]["precisions"]``; the same shape is then trained with the same
seed, epochs and digits at W2A1 (ternary weights), W1A2 (2-bit activations) and W2A2, and each
goes through the same steps (``bnn.precisions.<NAME>``: float, golden and RTL accuracy, RTL ==
golden, measured and analytic II). Their LUT/BRAM cost is in docs/bnn.md (measured once with
Yosys; the demo synthesizes nothing).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..common.atomic import save_npz
from ..common.errors import EieError
from ..common.progress import progress_bar
from .demo_common import (
    BNN_COST_NOTE, BNN_PRECISIONS, DemoConfig, _bar, _blas_single_thread, _keep_log, _locked,
    _quiet_fds, _say,
)
from ..sw.imagefile import plural

__all__ = ["bnn_path"]


def _train_tfc(cfg: DemoConfig, data, npz: Path, shape, label: str, *, weight_bits=None,
               act_bits=None) -> tuple[Any, np.ndarray, float, float]:
    """Train the demo's BNN of ``shape`` at the given precisions (the W1A1 defaults when
    ``None``) with ``cfg``'s seed and epochs on the binarized training digits, save it to
    ``npz``; return ``(float model, its outputs on the test digits, its accuracy, seconds)``."""
    from ..sw.bnn.float_model import float_forward
    from ..sw.bnn.train import BinaryMLP, BnnTrainConfig, train_bnn
    from ..sw.mnist import binarize_pixels

    t0 = time.perf_counter()
    model = BinaryMLP.init(shape, seed=cfg.seed, weight_bits=weight_bits, act_bits=act_bits)
    with _blas_single_thread():
        bar = _bar(cfg.bnn_epochs, f"BNN: train {cfg.bnn_shape.upper()} {label}", cfg.progress)
        train_bnn(model, binarize_pixels(data.x_train), data.y_train,
                  BnnTrainConfig(epochs=cfg.bnn_epochs, seed=cfg.seed),
                  progress=lambda e, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.3f}")))
        bar.close()
    save_npz(npz, model.to_npz_dict())
    fb = model.to_float_bnn()
    flt = float_forward(fb, binarize_pixels(data.x_test))
    float_acc = float(np.mean(np.argmax(flt, axis=1) == data.y_test))
    return fb, flt, float_acc, time.perf_counter() - t0


def bnn_path(cfg: DemoConfig, data, tmp: Path, timings: dict[str, float]) -> dict[str, Any]:
    from ..sw.bnn.compile import compile_model
    from ..hw.bnn.folding import analytic_ii, folding_text
    from ..hw.bnn.host_program import measured_ii
    from ..sw.bnn.golden import golden_forward as bnn_golden
    from ..sw.bnn.image import write_image as write_bnn_image
    from ..sw.bnn.train import SFC, TFC
    from .demo_report import ii_text
    from ..sw.mnist import binarize_pixels

    show = cfg.progress
    shape = TFC if cfg.bnn_shape == "tfc" else SFC
    xb_test = binarize_pixels(data.x_test)
    y_test = data.y_test
    npz_name = f"bnn_{cfg.bnn_shape}.npz"
    fb, flt, float_acc, timings["bnn_training"] = _train_tfc(cfg, data, tmp / npz_name, shape,
                                                           "(STE)")
    _say(f"BNN  {cfg.bnn_shape.upper()} {'-'.join(map(str, shape))}: float-model test accuracy "
         f"{float_acc:.2%} ({plural(cfg.bnn_epochs, 'epoch')}, {timings['bnn_training']:.1f} s)",
         show)

    image = compile_model(fb, cfg.bnn_fold)
    write_bnn_image(image, tmp / "bnn_image")
    np.save(tmp / "x_test_bits.npy", xb_test)
    gold = bnn_golden(image, xb_test)
    golden_acc = float(np.mean(np.argmax(gold, axis=1) == y_test))
    folds = image.folds
    ii_analytic = analytic_ii(folds)

    t0 = time.perf_counter()
    n = cfg.images
    y_rtl, counters = _run_bnn_rtl(cfg, image, xb_test[:n], tmp)
    timings["bnn_rtl"] = time.perf_counter() - t0
    np.save(tmp / "bnn_rtl_outputs.npy", y_rtl)
    matches = bool(y_rtl.shape == gold[:n].shape and np.array_equal(y_rtl, gold[:n]))
    mismatched = int(np.sum(np.any(y_rtl != gold[:n], axis=1))) if y_rtl.shape == gold[:n].shape \
        else n
    rtl_acc = float(np.mean(np.argmax(y_rtl, axis=1) == y_test[:n]))
    ii_measured = measured_ii(counters)     # None for one digit: no interval between results
    ii_mean = None
    if counters.get("samples_out", 0) > 1:
        ii_mean = (counters["t_last_out"] - counters["t_first_out"]) / (counters["samples_out"] - 1)
    _say(f"BNN  RTL ({cfg.sim}): {plural(n, 'test digit')}, outputs "
         f"{'EQUAL' if matches else 'DIFFER FROM'} the golden model"
         f"{'' if matches else ' on ' + plural(mismatched, 'digit')}; accuracy {rtl_acc:.2%}, "
         f"initiation interval {ii_text(ii_measured, ' cycles', why=True)} (analytic "
         f"{ii_analytic}), folding {folding_text(folds)}", show)
    n_layers = len(shape) - 1
    golden_equals_float = bool(np.array_equal(gold, flt))
    precisions = {"W1A1": {
        "weight_bits": [1] * n_layers, "act_bits": [1] * n_layers, "model_file": npz_name,
        "image_dir": "bnn_image", "rtl_outputs_file": "bnn_rtl_outputs.npy",
        "epochs": cfg.bnn_epochs, "folding": folding_text(folds), "float_accuracy": float_acc,
        "golden_accuracy": golden_acc, "golden_equals_float": golden_equals_float,
        "rtl_images": n, "rtl_matches_golden": matches, "rtl_mismatched_images": mismatched,
        "rtl_accuracy": rtl_acc, "initiation_interval": ii_measured, "analytic_ii": ii_analytic,
        "initiation_interval_mean": ii_mean, "latency_cycles": counters.get("latency"),
        "layer_ii": [f.ii for f in folds], "zero_weights": 0,
        "training_seconds": timings["bnn_training"], "rtl_seconds": timings["bnn_rtl"]}}
    _say_precision(cfg, "W1A1", precisions["W1A1"])
    t0 = time.perf_counter()
    for name, (wb, ab) in BNN_PRECISIONS.items():
        if name != "W1A1":
            precisions[name] = _bnn_precision(cfg, data, tmp, name, shape,
                                              [wb] * n_layers, [ab] * (n_layers - 1) + [1])
    timings["bnn_precisions"] = time.perf_counter() - t0
    return {
        "network": cfg.bnn_shape.upper(),
        "shape": list(shape),
        "folding": folding_text(folds),
        "float_accuracy": float_acc,
        "golden_accuracy": golden_acc,
        "golden_equals_float": golden_equals_float,
        "rtl_simulator": cfg.sim,
        "rtl_images": n,
        "rtl_matches_golden": matches,
        "rtl_mismatched_images": mismatched,
        "rtl_accuracy": rtl_acc,
        "golden_accuracy_same_images": float(np.mean(np.argmax(gold[:n], 1) == y_test[:n])),
        "initiation_interval": ii_measured,
        "initiation_interval_analytic": ii_analytic,
        "initiation_interval_mean": ii_mean,
        "latency_cycles": counters.get("latency"),
        "stall_cycles": counters.get("stall"),
        "counters": counters,
        "layer_ii": [f.ii for f in folds],
        "precisions": precisions,
        "precisions_hardware_cost": BNN_COST_NOTE,
    }


def _say_precision(cfg: DemoConfig, name: str, r: dict[str, Any]) -> None:
    """The console's line of one precision."""
    from .demo_report import ii_text

    ok = "EQUAL to" if r["rtl_matches_golden"] else \
        f"DIFFERENT FROM ({plural(r['rtl_mismatched_images'], 'digit')})"
    _say(f"BNN  {name} ({cfg.bnn_shape.upper()}, {plural(r['epochs'], 'epoch')}): float "
         f"{r['float_accuracy']:.2%}, golden {r['golden_accuracy']:.2%}; RTL ({cfg.sim}) "
         f"{r['rtl_accuracy']:.2%} on {plural(r['rtl_images'], 'digit')}, {ok} golden; II "
         f"{ii_text(r['initiation_interval'])} (analytic {r['analytic_ii']}), folding "
         f"{r['folding']}", cfg.progress)


def _bnn_precision(cfg: DemoConfig, data, tmp: Path, name: str, shape, weight_bits: list[int],
                   act_bits: list[int]) -> dict[str, Any]:
    """TFC (or SFC) at another weight/activation precision: trained with the W1A1 network's
    seed, epochs and digits, compiled (default folding, or ``--bnn-fold``), golden over every
    test digit, the first ``cfg.images`` through the RTL; files ``bnn_<shape>_<NAME>.npz``,
    ``bnn_image_<NAME>/``, ``bnn_rtl_outputs_<NAME>.npy``."""
    from ..hw.bnn.folding import analytic_ii, folding_text
    from ..hw.bnn.host_program import measured_ii
    from ..sw.bnn.compile import compile_model
    from ..sw.bnn.golden import golden_forward as bnn_golden
    from ..sw.bnn.image import write_image as write_bnn_image
    from ..sw.mnist import binarize_pixels

    xb_test = binarize_pixels(data.x_test)
    y_test = data.y_test
    npz_name = f"bnn_{cfg.bnn_shape}_{name}.npz"
    fb, flt, float_acc, t_train = _train_tfc(cfg, data, tmp / npz_name, shape, name,
                                             weight_bits=weight_bits, act_bits=act_bits)

    image = compile_model(fb, cfg.bnn_fold)
    write_bnn_image(image, tmp / f"bnn_image_{name}")
    gold = bnn_golden(image, xb_test)
    folds = image.folds
    t0 = time.perf_counter()
    n = cfg.images
    y_rtl, counters = _run_bnn_rtl(cfg, image, xb_test[:n], tmp, label=f"{name} ")
    t_rtl = time.perf_counter() - t0
    np.save(tmp / f"bnn_rtl_outputs_{name}.npy", y_rtl)
    same_shape = y_rtl.shape == gold[:n].shape
    matches = bool(same_shape and np.array_equal(y_rtl, gold[:n]))
    ii_mean = None
    if counters.get("samples_out", 0) > 1:
        ii_mean = (counters["t_last_out"] - counters["t_first_out"]) / (counters["samples_out"] - 1)
    res = {
        "weight_bits": list(weight_bits), "act_bits": list(act_bits), "model_file": npz_name,
        "image_dir": f"bnn_image_{name}", "rtl_outputs_file": f"bnn_rtl_outputs_{name}.npy",
        "epochs": cfg.bnn_epochs, "folding": folding_text(folds),
        "float_accuracy": float_acc,
        "golden_accuracy": float(np.mean(np.argmax(gold, axis=1) == y_test)),
        "golden_equals_float": bool(np.array_equal(gold, flt)),
        "rtl_images": n, "rtl_matches_golden": matches,
        "rtl_mismatched_images": int(np.sum(np.any(y_rtl != gold[:n], axis=1))) if same_shape
        else n,
        "rtl_accuracy": float(np.mean(np.argmax(y_rtl, axis=1) == y_test[:n])),
        "initiation_interval": measured_ii(counters), "analytic_ii": analytic_ii(folds),
        "initiation_interval_mean": ii_mean, "latency_cycles": counters.get("latency"),
        "layer_ii": [f.ii for f in folds],
        "zero_weights": int(sum(int(np.sum(m == 0)) for m in image.masks if m is not None)),
        "training_seconds": t_train, "rtl_seconds": t_rtl,
    }
    _say_precision(cfg, name, res)
    return res


def _run_bnn_rtl(cfg: DemoConfig, image, x: np.ndarray, tmp: Path,
                 label: str = "") -> tuple[np.ndarray, dict]:
    from ..sim.bnn_run import BnnJob, run_amaranth, run_rtl
    from ..sim.eie_run import cache_dir

    job = BnnJob(image, x, preload=True)
    _say(f"BNN  {label}RTL: building {cfg.sim} (cached after the first run) and streaming "
         f"{plural(x.shape[0], 'digit')}", cfg.progress)
    bar = progress_bar(x.shape[0], desc=f"BNN: {label}RTL ({cfg.sim})", unit="sample",
                       enabled=cfg.progress)
    try:
        if cfg.sim == "amaranth":
            run_amaranth(image.folds, [job])
        else:
            from ..hw.bnn.memory_map import config_crc
            from ..hw.bnn.words import image_last_thresholded, image_weight_bits

            # one build directory a core (shape, folding, precisions); W1A1's key as before
            crc = config_crc(image.folds, image_last_thresholded(image), image_weight_bits(image))
            build = cache_dir() / "bnn_demo" / f"{crc:08x}"
            with _locked(build.with_suffix(".lock")), _quiet_fds(tmp / "bnn_sim.log"):
                run_rtl(cfg.sim, image.folds, [job], build_dir=build)
    except RuntimeError as exc:
        log = _keep_log(tmp / "bnn_sim.log", cfg)
        raise EieError(f"the BNN RTL simulation on {cfg.sim} failed ({str(exc)[:300]}); "
                       f"see {log}") from None
    finally:
        bar.update(x.shape[0] if job.y is not None else 0)
        bar.close()
    return np.asarray(job.y, dtype=np.int32), dict(job.counters)
