"""What the demo's steps share (:mod:`eie.app.demo` runs them, :mod:`eie.app.demo_eie`,
:mod:`eie.app.demo_bnn` and :mod:`eie.app.demo_report` are the steps): the configuration
(:class:`DemoConfig`, the presets of :data:`MODES`), the BNN precisions the demo trains
(:data:`BNN_PRECISIONS`), the keys every ``report.json`` has (:data:`REQUIRED_KEYS`), and the
helpers of both paths: progress bars and console lines, one BLAS thread while training, a
simulator's chatter sent to a log (:func:`_quiet_fds`; :func:`_keep_log` keeps it beside
``--out`` when a run fails), a lock on a shared simulator build. It imports none of the other
demo modules; all of them import it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..common.errors import EieError
from ..common.progress import progress_bar

__all__ = ["MODES", "MAX_SEED", "BNN_PRECISIONS", "PRECISION_KEYS", "BNN_COST_NOTE",
           "REQUIRED_KEYS", "DemoConfig"]

MODES = ("quick", "default", "full")
#: The largest ``--seed`` (as ``eie bench`` takes it); the seeds of NumPy's generators are >= 0.
MAX_SEED = 2 ** 63 - 1

#: The weight and activation precisions the demo trains (hidden layers; the output layer is A1),
#: in this order; W1A1 is the BNN the demo trains first (``bnn.*``).
BNN_PRECISIONS = {"W1A1": (1, 1), "W2A1": (2, 1), "W1A2": (1, 2), "W2A2": (2, 2)}
#: Every ``bnn.precisions.<NAME>`` has these keys (besides the precisions, files and folding).
PRECISION_KEYS = ("float_accuracy", "rtl_accuracy", "rtl_images", "rtl_matches_golden",
                  "initiation_interval", "analytic_ii")
#: Where the hardware cost of each precision is (the demo synthesizes nothing).
BNN_COST_NOTE = ("LUT/BRAM of each precision: docs/bnn.md, \"In the demo (eie demo): the "
                 "four precisions side by side\" (iCE40 SB_LUT4 and EBR of the TFC at fold 8:1 "
                 "x4, Yosys synth_ice40, measured once (commit b7b5b15) with the command given "
                 "there; the demo synthesizes nothing)")

#: Keys every report.json has (``section.key``), as the end-to-end issue lists them.
REQUIRED_KEYS = (
    "eie.float_accuracy", "eie.compressed_accuracy", "eie.weights_kept",
    "eie.compression_ratio", "eie.compression_ratio_huffman", "eie.rtl_images",
    "eie.rtl_matches_golden", "eie.rtl_accuracy", "eie.cycles_per_image",
    "bnn.float_accuracy", "bnn.rtl_images", "bnn.rtl_matches_golden", "bnn.rtl_accuracy",
    "bnn.initiation_interval",
) + tuple(f"bnn.precisions.{name}.{key}" for name in BNN_PRECISIONS for key in PRECISION_KEYS)


@dataclass
class DemoConfig:
    """What ``eie demo`` runs. :meth:`for_mode` gives the three presets."""

    mode: str = "default"
    out: Path = Path("out/demo")
    images: int = 1000              # test digits run on each RTL
    sim: str = "verilator"
    # how the EIE image gets into the RTL: "bus" (every word over the host bus, as a host does)
    # or "backdoor" (Verilator and Icarus: deposited into the memories, a sample read back)
    load: str = "bus"
    n_pe: int = 16
    seed: int = 0
    # EIE training
    dense_epochs: int = 20
    prune_steps: int = 4
    prune_epochs: int = 8
    share_epochs: int = 6
    densities: tuple[float, ...] = (0.08, 0.09, 0.26)
    weight_decay: float = 1.0       # decoupled (AdamW-style): w *= 1 - lr * weight_decay a step
    # BNN
    bnn_shape: str = "tfc"
    bnn_epochs: int = 30
    bnn_fold: str | None = None     # "SIMD:PE,..." or the compiler's default folding
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.mode not in MODES:
            raise EieError(f"demo mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not 1 <= self.images <= 1000:
            raise EieError(f"--images {self.images} is outside 1..1000 (the test set has 1,000 digits)")
        from ..hw.eie.config import MAX_PE
        from ..sim.runner import ALL_SIMULATORS

        if self.sim not in ALL_SIMULATORS:
            raise EieError(f"--sim {self.sim!r} is not one of {', '.join(ALL_SIMULATORS)}")
        from ..sim.backdoor import LOADS

        if self.load not in LOADS:
            raise EieError(f"--load {self.load!r} is not one of {', '.join(LOADS)}")
        if self.load == "backdoor" and self.sim == "amaranth":
            raise EieError("--load backdoor needs --sim verilator or icarus (the Amaranth "
                           "simulator loads over the bus)")
        if not 1 <= self.n_pe <= MAX_PE:
            raise EieError(f"--pes {self.n_pe} is outside 1..{MAX_PE}")
        if self.bnn_shape not in ("tfc", "sfc"):
            raise EieError(f"--bnn-shape {self.bnn_shape!r} is not tfc or sfc")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) \
                or not 0 <= self.seed <= MAX_SEED:
            raise EieError(f"--seed {self.seed!r} is out of range: the seed must be an integer "
                           f"from 0 to {MAX_SEED}")
        for name in ("dense_epochs", "prune_steps", "prune_epochs", "share_epochs", "bnn_epochs"):
            if getattr(self, name) < (1 if name in ("dense_epochs", "prune_steps", "bnn_epochs") else 0):
                raise EieError(f"{name.replace('_', ' ')} {getattr(self, name)} is too small")
        if self.bnn_fold is not None:
            self._check_bnn_fold()

    def _check_bnn_fold(self) -> None:
        """``--bnn-fold`` against the BNN's shape at every precision the demo compiles, before
        any training (the compiler would find a bad one only after the whole EIE half)."""
        from ..hw.bnn.folding import make_folding
        from ..sw.bnn.train import SFC, TFC

        shape = TFC if self.bnn_shape == "tfc" else SFC
        n_layers = len(shape) - 1
        try:
            for _wb, ab in BNN_PRECISIONS.values():
                make_folding(shape, self.bnn_fold, [ab] * (n_layers - 1) + [1])
        except EieError as exc:
            why = str(exc).replace("--fold ", "--bnn-fold ")
            raise EieError(f"--bnn-fold {self.bnn_fold!r} does not fold the "
                           f"{self.bnn_shape.upper()} ({'-'.join(map(str, shape))}): {why}") \
                from None

    @classmethod
    def for_mode(cls, mode: str = "default", **overrides: Any) -> "DemoConfig":
        """``quick`` (CI: small epochs, 16 images), ``default`` (the demo: every test digit),
        ``full`` (longer training, SFC for the BNN)."""
        presets: dict[str, dict[str, Any]] = {
            "quick": dict(images=16, dense_epochs=4, prune_steps=2, prune_epochs=2,
                          share_epochs=1, bnn_epochs=4),
            "default": {},
            "full": dict(dense_epochs=30, prune_steps=6, prune_epochs=10, share_epochs=10,
                         bnn_epochs=60, bnn_shape="sfc"),
        }
        if mode not in presets:
            raise EieError(f"demo mode {mode!r} is not one of {', '.join(MODES)}")
        kw = dict(presets[mode])
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(mode=mode, **kw)


# ----------------------------------------------------------------------------- helpers

def _bar(total: int, desc: str, enabled: bool):
    """A bar over training epochs (:func:`eie.common.progress.progress_bar`'s rule: on a
    terminal only, never with ``--no-progress``)."""
    return progress_bar(total, desc=desc, unit="epoch", enabled=enabled)


def _say(msg: str, enabled: bool = True) -> None:
    if enabled:
        print(msg, flush=True)


@contextlib.contextmanager
def _blas_single_thread() -> Iterator[None]:
    """Training runs with one BLAS thread: deterministic and immune to oversubscription on a
    shared machine (the networks are small; one core trains LeNet-300-100 in seconds)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn (the demo extras)
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@contextlib.contextmanager
def _quiet_fds(log_path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr file descriptors (and so a simulator's chatter) to
    ``log_path`` for the duration; Python's own ``sys.stderr`` keeps the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    err_py = sys.stderr
    term = os.fdopen(os.dup(2), "w")
    sys.stderr = term
    try:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        sys.stderr = err_py
        term.close()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pow2(n: int, at_least: int = 1) -> int:
    p = max(1, at_least)
    while p < n:
        p *= 2
    return p



def _keep_log(log: Path, cfg: DemoConfig) -> Path:
    """Copy a simulator log out of the temporary output directory (dropped on failure)."""
    import shutil

    kept = cfg.out.parent / f"{cfg.out.name}-{log.name}"
    kept.parent.mkdir(parents=True, exist_ok=True)
    if log.is_file():
        shutil.copyfile(log, kept)
    return kept
