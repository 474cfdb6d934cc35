"""What ``eie bench table3`` and ``eie bench sweep`` share (:mod:`eie.app.bench_table3`,
:mod:`eie.app.bench_sweep`): the benchmark setup (:class:`BenchSetup`: PE count, FIFO depth,
EIEConfig overrides, seed, scale), the range checks of its options, the cycle model called with a
setup's configuration, the progress bar and the figure and JSON files written atomically.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .bench_layers import EIE_N_PE, LayerSpec, scale_spec
from ..sim.runner import ALL_SIMULATORS
from ..common.errors import EieError
from ..common.progress import progress_bar as common_progress_bar

__all__ = [
    "RTL_SIMS",
    "SIZE_FIELDS",
    "BenchSetup",
    "config_range",
    "check_int",
    "model_kwargs",
    "predict",
    "progress_bar",
    "savefig",
    "write_json",
]

#: The RTL simulators the benchmarks run on (besides ``model``, the cycle model).
RTL_SIMS = ALL_SIMULATORS
#: EIEConfig fields that size memories only (they never change a cycle count).
SIZE_FIELDS = frozenset({"n_pe", "ptr_depth", "spmat_depth", "act_depth", "acc_depth",
                         "bias_depth", "max_layers", "acc_bits", "act_frac"})


# ----------------------------------------------------------------------------- setup

@dataclass
class BenchSetup:
    """Options shared by the table and the sweeps: PE count, activation-FIFO depth, extra
    :class:`~eie.hw.eie.config.EIEConfig` fields (``--set``), the seed, the layer scale and the
    activation fraction bits."""

    n_pe: int = EIE_N_PE
    fifo_depth: int = 8
    overrides: dict[str, int] | None = None
    seed: int = 0
    scale: float = 1.0
    act_frac: int = 8
    #: the named variant (eie.hw.eie.variants) the fields came from, for the report; None: custom
    variant: str | None = None

    def __post_init__(self) -> None:
        check_int("--pes", self.n_pe, *config_range("n_pe"), "processing elements")
        check_int("--fifo-depth", self.fifo_depth, *config_range("fifo_depth"),
                  "activation-FIFO entries")
        check_int("--seed", self.seed, 0, 2 ** 63 - 1, "seed")
        check_int("--act-frac", self.act_frac, *config_range("act_frac"),
                  "activation fraction bits")
        scale_spec(LayerSpec("x", 1, 1, 1.0, 1.0), self.scale)          # checks the range
        self.overrides = dict(self.overrides or {})
        for k in ("n_pe", "fifo_depth", "act_frac"):
            if k in self.overrides:
                raise EieError(f"--set {k}=... is not allowed; use --{k.replace('_', '-')}"
                               .replace("n-pe", "pes"))
        self._check_overrides()

    def _check_overrides(self) -> None:
        """Each field within EIEConfig's own limits (``EIEConfig._LIMITS``: what ``eie
        generate`` accepts; ``--set`` is checked there already, this covers a setup made in
        code), and the fields given together as EIEConfig relates them (``acc_depth <=
        act_depth``): a size left out is what the layers need, so it is taken at its most
        permissive here."""
        from ..hw.eie.config import EIEConfig

        limits = EIEConfig._LIMITS
        for k, v in self.overrides.items():
            if k not in limits:
                raise EieError(f"--set {k}=...: {k} is not an EIEConfig field (one of "
                               f"{', '.join(limits)})")
            lo, hi, what = limits[k]
            check_int(f"--set {k}", v, lo, hi, what)
        probe = dict(self.overrides, n_pe=self.n_pe, fifo_depth=self.fifo_depth,
                     act_frac=self.act_frac)
        probe.setdefault("acc_depth", 1)
        probe.setdefault("act_depth", probe["acc_depth"])
        try:
            EIEConfig(**probe)
        except ValueError as exc:
            raise EieError(f"the --set fields do not fit together: {exc}") from None

    @classmethod
    def from_variant(cls, name: str, *, fifo_depth: int | None = None,
                     overrides: dict[str, int] | None = None, **kw) -> "BenchSetup":
        """The setup of variant ``name`` (``paper``, ``balanced``), with ``fifo_depth`` and
        ``overrides`` replacing its fields; ``variant`` records the variant the resulting fields
        are (None: a custom configuration)."""
        from ..hw.eie.variants import VARIANTS, variant

        v = variant(name)
        fields_ = {k: val for k, val in v.fields.items() if k != "fifo_depth"}
        fields_.update(overrides or {})
        fifo = v.fields["fifo_depth"] if fifo_depth is None else fifo_depth
        have = dict(fields_, fifo_depth=fifo)
        same = [n for n, w in VARIANTS.items()
                if all(have.get(k) == x for k, x in w.fields.items())]
        return cls(fifo_depth=fifo, overrides=fields_, variant=same[0] if same else None, **kw)

    def config_fields(self, n_pe: int | None = None,
                      fifo_depth: int | None = None) -> dict[str, int]:
        """The behavioural EIEConfig fields of this setup (PE count, FIFO depth, overrides)."""
        d = dict(self.overrides or {})
        d["n_pe"] = self.n_pe if n_pe is None else n_pe
        d["fifo_depth"] = self.fifo_depth if fifo_depth is None else fifo_depth
        return d


def config_range(name: str) -> tuple[int, int]:
    """The range ``(lo, hi)`` :class:`~eie.hw.eie.config.EIEConfig` accepts for field ``name``:
    the hardware's limits, written there once."""
    from ..hw.eie.config import EIEConfig

    lo, hi, _ = EIEConfig._LIMITS[name]
    return lo, hi


def check_int(opt: str, v: Any, lo: int, hi: int, what: str) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= v <= hi:
        raise EieError(f"{opt} {v!r} is out of range: {what} must be an integer from {lo} to {hi}")
    return int(v)


def _predictor() -> Callable[..., Any]:
    from ..sw.cycle_model import predict_layer

    return predict_layer


def model_kwargs(cfg_fields: dict[str, int]) -> dict[str, Any]:
    """Keyword arguments of the cycle model for a configuration: every behavioural field the
    model takes (by name); a behavioural field it does not take raises :class:`EieError`."""
    params = inspect.signature(_predictor()).parameters
    if "config" in params:
        from ..hw.eie.config import EIEConfig

        return {"config": EIEConfig(**cfg_fields)}
    kw: dict[str, Any] = {}
    for k, v in cfg_fields.items():
        if k in params:
            kw[k] = v
        elif k not in SIZE_FIELDS:
            takes = ", ".join(p for p in params if p not in ("col_entries", "x", "n_out"))
            raise EieError(f"the cycle model does not model {k} (it takes {takes}); "
                           "run the RTL instead (--sim verilator) or drop --set " + k)
    return kw


def predict(col_entries: np.ndarray, x: np.ndarray, n_out: int, cfg_fields: dict[str, int]):
    kw = model_kwargs(cfg_fields)
    return _predictor()(col_entries, x, n_out, **kw)


# ----------------------------------------------------------------------------- outputs

def progress_bar(iterable, total: int, desc: str, unit: str = "layer"):
    """A bar over ``iterable`` (:func:`eie.common.progress.progress_bar`'s rule: on a terminal
    only; the callers leave it out with ``--no-progress``)."""
    return common_progress_bar(total, desc=desc, unit=unit, iterable=iterable)


def _usual_mode(path: Path) -> None:
    """Give a file written through a private temporary file the mode ``open()`` would have."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def savefig(fig, path: Path) -> None:
    from ..common.atomic import atomic_file

    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    _usual_mode(path)


def write_json(doc: dict[str, Any], path: Path) -> None:
    from ..common.atomic import atomic_file

    with atomic_file(path) as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    _usual_mode(path)
