"""``eie bench table3`` and ``eie bench sweep {fifo,pes,width}``: EIE's benchmark table and
design-space sweeps on the synthetic Table III layers (:mod:`eie.app.bench_layers`).

``table3`` encodes each layer for ``--pes`` PEs (64 as in the paper), runs it on the RTL
(``--sim verilator``, ``icarus`` or ``amaranth``; every output compared with the golden model) or
on the cycle model (``--sim model``), and reports per layer: cycles, the contract's ideal bound,
efficiency = bound / cycles, microseconds at 800 MHz, EIE's actual and theoretical times and the
ratio of our cycles to EIE's actual cycles (64 PEs, 800 MHz both; EIE cycles = us x 800).

``sweep`` runs the cycle model over one design parameter: the activation-FIFO depth (EIE's Fig. 8,
load-balance efficiency), the PE count (Fig. 11, speed-up over one PE) or the sparse-matrix SRAM
word width (storage, padding, columns straddling words and SRAM reads; the RTL and the cycle model
have 64-bit words with prefetch across word boundaries, so cycles do not depend on the width). A
few small points are run on the RTL too (``--check-sim``) and compared counter by counter with the
cycle model; the comparison is part of the output.

Exit codes: 0; 1 when an RTL output differs from the golden model or a checked point of the cycle
model differs from the RTL; 2 for bad options (:class:`~eie.common.errors.EieError`).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .bench_layers import (EIE_CLOCK_MHZ, EIE_N_PE, TABLE3_SOURCE, LayerSpec, SyntheticLayer,
                           parse_layers, scale_spec, synth_layer)
from ..hw.eie.variants import DEFAULT_VARIANT, variants_help
from ..sim.backdoor import LOADS
from ..sim.runner import ALL_SIMULATORS, CACHE_DIR_DEFAULT
from ..common import outputs
from ..common.errors import EieError

__all__ = [
    "register",
    "EFFICIENCY_TARGET",
    "RTL_SIMS",
    "FIFO_DEPTHS",
    "PE_COUNTS",
    "WORD_WIDTHS",
    "BenchSetup",
    "parse_int_list",
    "column_entries",
    "overhead_breakdown",
    "interleave_floor",
    "table3",
    "format_table3",
    "plot_table3",
    "width_stats",
    "sweep",
    "format_sweep",
    "plot_sweep",
    "cmd_table3",
    "cmd_sweep",
]

#: The issue's target: bound / cycles on every Table III layer at 64 PEs.
EFFICIENCY_TARGET = 0.95
#: The RTL simulators the benchmarks run on (besides ``model``, the cycle model).
RTL_SIMS = ALL_SIMULATORS
FIFO_DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PE_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WORD_WIDTHS = (32, 64, 128, 256, 512)
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
        _check_int("--pes", self.n_pe, *config_range("n_pe"), "processing elements")
        _check_int("--fifo-depth", self.fifo_depth, *config_range("fifo_depth"),
                   "activation-FIFO entries")
        _check_int("--seed", self.seed, 0, 2 ** 63 - 1, "seed")
        _check_int("--act-frac", self.act_frac, *config_range("act_frac"),
                   "activation fraction bits")
        scale_spec(LayerSpec("x", 1, 1, 1.0, 1.0), self.scale)          # checks the range
        self.overrides = dict(self.overrides or {})
        for k in ("n_pe", "fifo_depth"):
            if k in self.overrides:
                raise EieError(f"--set {k}=... is not allowed; use --{k.replace('_', '-')}"
                               .replace("n-pe", "pes"))

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
        same = [n for n, w in VARIANTS.items() if all(have.get(k) == x for k, x in w.fields.items())]
        return cls(fifo_depth=fifo, overrides=fields_, variant=same[0] if same else None, **kw)

    def config_fields(self, n_pe: int | None = None, fifo_depth: int | None = None) -> dict[str, int]:
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


def _check_int(opt: str, v: Any, lo: int, hi: int, what: str) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= v <= hi:
        raise EieError(f"{opt} {v!r} is out of range: {what} must be an integer from {lo} to {hi}")
    return int(v)


def _parse_set(items: Sequence[str] | None) -> dict[str, int]:
    """``--set FIELD=VALUE`` items to EIEConfig overrides, checked against the config's fields."""
    from ..hw.eie.config import EIEConfig

    names = [f.name for f in fields(EIEConfig)]
    out: dict[str, int] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise EieError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                           f"{', '.join(names)}")
        try:
            out[key] = int(value, 0)
        except ValueError:
            raise EieError(f"--set {item!r}: {value!r} is not an integer") from None
    return out


def parse_int_list(text: str, opt: str) -> list[int]:
    """``"8,16,32"`` -> ``[8, 16, 32]``; :class:`EieError` naming ``opt`` for anything else."""
    try:
        return [int(v, 0) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EieError(f"{opt} {text!r} must be integers separated by commas") from None


def _predictor() -> Callable[..., Any]:
    from ..sw.cycle_model import predict_layer

    return predict_layer


def _model_kwargs(cfg_fields: dict[str, int]) -> dict[str, Any]:
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
            raise EieError(f"the cycle model does not model {k} (it takes "
                           f"{', '.join(p for p in params if p not in ('col_entries', 'x', 'n_out'))}); "
                           "run the RTL instead (--sim verilator) or drop --set " + k)
    return kw


def _predict(col_entries: np.ndarray, x: np.ndarray, n_out: int, cfg_fields: dict[str, int]):
    kw = _model_kwargs(cfg_fields)
    return _predictor()(col_entries, x, n_out, **kw)


def column_entries(layer, n_pe: int) -> np.ndarray:
    """Entries (padding included) of every column in every PE, int64 ``(n_in, n_pe)``, straight
    from the encoder (no image needed; :func:`eie.sw.bound.column_entries`)."""
    from ..sw.bound import column_entries as from_pointers
    from ..sw.encode import encode_layer

    return from_pointers([e.pointers for e in encode_layer(layer, n_pe)])


def overhead_breakdown(bound: int, pred) -> dict[str, int]:
    """Where the cycles above the bound go, from a cycle-model prediction: ``broadcast`` (the
    broadcast phase beyond the bound: FIFO-full stalls from load imbalance and LNZD rounds without
    a nonzero), ``drain`` (after the last broadcast until every PE is idle: the busiest PE's
    backlog and the pipeline), ``writeback`` (if the model charges the write-back any cycles) and
    ``other`` (the rest: the layer's start cycle)."""
    bcast = int(pred.bcast_cycles)
    drain = int(pred.drain_cycles)
    wb = int(getattr(pred, "writeback_cycles", 0))
    return {"broadcast": bcast - int(bound), "drain": drain, "writeback": wb,
            "other": int(pred.cycles) - bcast - drain - wb}


def interleave_floor(busy: Sequence[int], broadcasts: int) -> int:
    """Cycles no design with the contract's row interleaving can beat: every PE issues one entry
    a cycle and the controller broadcasts one activation a cycle, so ``max(busiest PE's entries,
    broadcasts)``."""
    return max(max(busy) if len(busy) else 0, int(broadcasts))


def _limiter_text(row: dict[str, Any]) -> str:
    """What holds a layer's efficiency back, in one line: the part of the cycles over the bound
    that the row interleaving forces (the busiest PE's entries above the average) and the part
    the microarchitecture adds (broadcasts held by a full FIFO, drain, start)."""
    ob = row["overhead"]
    floor = row["interleave_floor"]
    imbalance = floor - row["bound"]
    pipeline = row["cycles"] - floor
    bcast = ob["broadcast"] + row["bound"]
    parts = [f"{row['cycles'] - row['bound']} cycles over the bound",
             f"{imbalance} from PE load imbalance (busiest PE {row['busy_max']} entries, mean "
             f"{row['busy_mean']:.0f}; ceiling {row['interleave_ceiling']:.3f} with row "
             "interleaving)",
             f"{pipeline} from the microarchitecture (broadcast phase {bcast} cycles for "
             f"{row['broadcasts']} broadcasts, a PE's FIFO full up to {row['stall_max']} cycles; "
             f"drain {ob['drain']}; start {ob['other']}"
             + (f"; write-back {ob['writeback']}" if ob["writeback"] else "") + ")"]
    return "; ".join(parts)


# ----------------------------------------------------------------------------- table3

def _progress(iterable, total: int, desc: str, unit: str = "layer"):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=None)


def _eie_fields(spec: LayerSpec, cycles: int, n_pe: int) -> dict[str, Any]:
    if not spec.has_eie or n_pe != EIE_N_PE:
        return {"eie_actual_us": None, "eie_theoretical_us": None, "eie_actual_cycles": None,
                "eie_theoretical_cycles": None, "eie_efficiency": None,
                "cycles_over_eie_actual": None}
    act, theo = spec.eie_actual_cycles, spec.eie_theoretical_cycles
    return {"eie_actual_us": spec.eie_actual_us, "eie_theoretical_us": spec.eie_theoretical_us,
            "eie_actual_cycles": act, "eie_theoretical_cycles": theo,
            "eie_efficiency": spec.eie_theoretical_us / spec.eie_actual_us,
            "cycles_over_eie_actual": cycles / act}


def _prepare(spec: LayerSpec, setup: BenchSetup):
    from ..sw.encode import build_image
    from ..sw.golden import golden_forward

    s = scale_spec(spec, setup.scale)
    syn = synth_layer(s, setup.seed, setup.act_frac)
    image = build_image([syn.quant], setup.n_pe, act_frac=setup.act_frac)
    g = golden_forward(image, syn.x)
    return s, syn, image, g


def table3(specs: Sequence[LayerSpec], setup: BenchSetup, sim: str = "model", *,
           build_dir: str | Path | None = None, progress: bool = True,
           compare_paper: bool = True, load: str | None = None) -> dict[str, Any]:
    """Run the benchmark layers; returns the JSON document (see docs/performance.md).
    ``compare_paper``: also predict the paper variant's cycles (cycle model) when the setup
    is another configuration. ``load``: how an RTL simulator gets the images
    (:func:`eie.sim.eie_run.run_eie`); by default ``backdoor`` on Verilator and Icarus, ``bus``
    on Amaranth."""
    from ..sw.bound import efficiency, layer_column_entries

    if sim not in ("model",) + RTL_SIMS:
        raise EieError(f"--sim {sim!r} is not one of model, {', '.join(RTL_SIMS)}")
    if sim == "model":
        load = None
    elif load is None:
        load = "bus" if sim == "amaranth" else "backdoor"
    specs = list(specs)
    cfg_fields = setup.config_fields()
    if sim == "model":
        _model_kwargs(cfg_fields)           # fail early on a field the model cannot model
    paper_fields = _paper_fields(setup) if compare_paper else None
    prepared = []
    preds = []
    rows: list[dict[str, Any]] = []
    it = _progress(specs, len(specs), "bench table3" if sim == "model" else "prepare layers") \
        if progress else specs
    for spec in it:
        s, syn, image, g = _prepare(spec, setup)
        st = g.stats[0]
        bound = int(st.bound[0])
        pred = _predict(layer_column_entries(image, 0), syn.x, s.n_out, cfg_fields)
        prepared.append((s, syn, image, g))
        preds.append(pred)
        busy = np.asarray(pred.busy)
        row: dict[str, Any] = {
            "name": s.name, "n_in": s.n_in, "n_out": s.n_out,
            "weight_density": s.weight_density, "act_density": s.act_density,
            "measured_weight_density": syn.weight_density,
            "measured_act_density": syn.act_density,
            "nonzero_inputs": int(st.nonzero_inputs[0]),
            "entries": int(st.entries_per_pe.sum()), "padding": int(st.padding_per_pe.sum()),
            "work_entries": int(st.work_entries[0]),
            "bound": bound,
            "model_cycles": int(pred.cycles),
            "rtl_cycles": None,
            "cycles": int(pred.cycles),
            "broadcasts": int(pred.broadcasts),
            "busy_max": int(busy.max()), "busy_mean": float(busy.mean()),
            "stall_max": int(max(pred.stall)),
            "interleave_floor": interleave_floor(pred.busy, pred.broadcasts),
            "interleave_ceiling": bound / interleave_floor(pred.busy, pred.broadcasts),
            "overhead": overhead_breakdown(bound, pred),
            "golden_equal": None, "model_equals_rtl": None,
            "paper_model_cycles": None,
        }
        if paper_fields is not None:
            row["paper_model_cycles"] = int(_predict(layer_column_entries(image, 0), syn.x,
                                                     s.n_out, paper_fields).cycles)
        rows.append(row)
    del it
    if sim != "model":
        _run_rtl(prepared, preds, rows, setup, sim, build_dir, progress, load)
    for row, (s, *_rest) in zip(rows, prepared):
        c = row["cycles"]
        row["efficiency"] = efficiency(row["bound"], c)
        pc = row["paper_model_cycles"]
        row["paper_efficiency"] = None if pc is None else efficiency(row["bound"], pc)
        row["time_us"] = c / EIE_CLOCK_MHZ
        row.update(_eie_fields(s, c, setup.n_pe))
        row["limiter"] = _limiter_text(row) if row["efficiency"] < EFFICIENCY_TARGET else None
    effs = [r["efficiency"] for r in rows]
    doc: dict[str, Any] = {
        "command": "table3",
        "sim": sim,
        "load": load,
        "n_pe": setup.n_pe,
        "fifo_depth": setup.fifo_depth,
        "config_overrides": dict(setup.overrides or {}),
        "variant": setup.variant,
        "clock_mhz": EIE_CLOCK_MHZ,
        "seed": setup.seed,
        "scale": setup.scale,
        "act_frac": setup.act_frac,
        "efficiency_target": EFFICIENCY_TARGET,
        "eie_source": TABLE3_SOURCE,
        "layers": rows,
        "min_efficiency": min(effs) if effs else None,
        "below_target": [r["name"] for r in rows if r["efficiency"] < EFFICIENCY_TARGET],
        "all_equal_golden": None if sim == "model" else all(r["golden_equal"] for r in rows),
        "model_equals_rtl": None if sim == "model" else all(r["model_equals_rtl"] for r in rows),
    }
    return doc


def _paper_fields(setup: BenchSetup) -> dict[str, int] | None:
    """The behavioural fields of the ``paper`` variant at this setup's PE count when they differ
    from the setup's (the table then shows the paper configuration's cycle-model efficiency
    beside the measured one); None when the setup already behaves as the paper's."""
    from ..hw.eie.config import EIEConfig

    paper = BenchSetup.from_variant("paper", n_pe=setup.n_pe).config_fields()
    mine = setup.config_fields()
    default = EIEConfig()
    behavioural = {f.name for f in fields(EIEConfig)} - SIZE_FIELDS
    if all(mine.get(k, getattr(default, k)) == paper.get(k, getattr(default, k))
           for k in behavioural):
        return None
    return paper


def _run_rtl(prepared, preds, rows, setup: BenchSetup, sim: str, build_dir,
             progress: bool, load: str = "bus") -> None:
    """Run every prepared layer on one RTL design (built once) and fill the rows' RTL fields:
    the RTL's cycles, whether the output equals the golden model and whether every counter
    (cycles, broadcasts, per-PE busy and stall) equals the cycle model's prediction."""
    from ..sim.eie_run import EieJob, config_for_images, run_eie_jobs

    images = [p[2] for p in prepared]
    over = {k: v for k, v in setup.config_fields().items() if k != "n_pe"}
    config = config_for_images(images, **over)
    jobs = [EieJob(image, syn.x) for (_s, syn, image, _g) in prepared]
    run_eie_jobs(jobs, sim=sim, config=config, build_dir=build_dir, progress=progress,
                 load=load)
    for row, job, pred, (_s, _syn, _image, g) in zip(rows, jobs, preds, prepared):
        res = job.result
        counters = res.counters[0][0]
        model = pred.counters()
        row["rtl_cycles"] = int(counters["cycles"])
        row["cycles"] = row["rtl_cycles"]
        row["golden_equal"] = bool(np.array_equal(res.outputs, g.outputs))
        row["model_equals_rtl"] = all(
            [int(v) for v in np.ravel(counters[k])] == [int(v) for v in np.ravel(model[k])]
            for k in ("cycles", "broadcasts", "busy", "stall"))
        row["rtl_counters"] = {"broadcasts": int(counters["broadcasts"]),
                               "busy_max": int(max(counters["busy"])),
                               "stall_max": int(max(counters["stall"]))}


def _fmt(v: Any, spec: str = "", none: str = "-") -> str:
    if v is None:
        return none
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return format(v, spec)


def format_table3(doc: dict[str, Any]) -> str:
    """The table as text (what the terminal shows)."""
    rtl = doc["sim"] != "model"
    head = ["layer", "n_in x n_out", "w dens", "a dens", "bound", "cycles", "eff", "us@800",
            "EIE us", "EIE theo", "EIE eff", "ours/EIE"]
    paper = any(r.get("paper_efficiency") is not None for r in doc["layers"])
    if paper:
        head += ["paper eff"]
    if rtl:
        head += ["model", "=golden"]
    lines = []
    for r in doc["layers"]:
        cells = [r["name"], f"{r['n_in']}x{r['n_out']}",
                 f"{r['measured_weight_density']:.3f}", f"{r['measured_act_density']:.3f}",
                 str(r["bound"]), str(r["cycles"]), f"{r['efficiency']:.3f}",
                 f"{r['time_us']:.2f}", _fmt(r["eie_actual_us"], ".1f"),
                 _fmt(r["eie_theoretical_us"], ".1f"), _fmt(r["eie_efficiency"], ".3f"),
                 _fmt(r["cycles_over_eie_actual"], ".3f")]
        if paper:
            cells += [_fmt(r.get("paper_efficiency"), ".3f")]
        if rtl:
            cells += [str(r["model_cycles"]), _fmt(r["golden_equal"])]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    out = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for c in lines:
        out.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in
                             enumerate(zip(c, widths))))
    over = "".join(f" {k}={v}" for k, v in doc["config_overrides"].items())
    src = f"{doc['sim']} ({doc.get('load') or 'bus'} load)" if rtl else "cycle model"
    name = f"variant {doc['variant']}: " if doc.get("variant") else "custom configuration: "
    out.append(f"{src}, {name}{doc['n_pe']} PEs, FIFO depth {doc['fifo_depth']}{over}, seed "
               f"{doc['seed']}, scale {doc['scale']}; eff = bound / cycles; us at "
               f"{doc['clock_mhz']} MHz; ours/EIE = our cycles / EIE's actual cycles (us x 800)")
    if paper:
        out.append("paper eff = bound / cycles of the paper variant (FIFO 8, pointer queue 4) "
                   "on the same layers, from the cycle model")
    if doc["scale"] != 1.0 or doc["n_pe"] != EIE_N_PE:
        out.append("EIE columns only for the paper's layer sizes at 64 PEs (scale 1, --pes 64)")
    for r in doc["layers"]:
        if r["limiter"]:
            out.append(f"  {r['name']}: efficiency {r['efficiency']:.3f} < "
                       f"{doc['efficiency_target']}: {r['limiter']}")
    if rtl:
        bad = [r["name"] for r in doc["layers"] if not r["golden_equal"]]
        out.append("every output equals the golden model" if not bad else
                   f"OUTPUT DIFFERS FROM THE GOLDEN MODEL: {', '.join(bad)}")
        off = [r["name"] for r in doc["layers"] if not r["model_equals_rtl"]]
        out.append("every counter (cycles, broadcasts, per-PE busy and stall) equals the cycle "
                   "model" if not off else f"cycle model differs from the RTL on: {', '.join(off)}")
    return "\n".join(out)


def _usual_mode(path: Path) -> None:
    """Give a file written through a private temporary file the mode ``open()`` would have."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _savefig(fig, path: Path) -> None:
    from ..common.atomic import atomic_file

    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    _usual_mode(path)


def plot_table3(doc: dict[str, Any], path: str | Path) -> None:
    """Bar chart: per layer, our time against EIE's actual and theoretical times and the bound
    (microseconds at 800 MHz), and the efficiencies, ours and EIE's, against the 0.95 target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["layers"]
    names = [r["name"] for r in rows]
    xs = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(7.0, 1.1 * len(rows) + 2), 7.5),
                                   sharex=True)
    series = [("ours (" + ("cycle model" if doc["sim"] == "model" else doc["sim"]) + ")",
               [r["time_us"] for r in rows]),
              ("bound", [r["bound"] / doc["clock_mhz"] for r in rows]),
              ("EIE actual", [r["eie_actual_us"] for r in rows]),
              ("EIE theoretical", [r["eie_theoretical_us"] for r in rows])]
    series = [(lab, v) for lab, v in series if any(x is not None for x in v)]
    w = 0.8 / len(series)
    for i, (lab, vals) in enumerate(series):
        ax1.bar(xs + (i - (len(series) - 1) / 2) * w,
                [np.nan if v is None else v for v in vals], w, label=lab)
    ax1.set_ylabel(f"time (us at {doc['clock_mhz']} MHz)")
    ax1.set_title(f"EIE Table III layers, {doc['n_pe']} PEs, FIFO depth {doc['fifo_depth']}")
    ax1.legend(fontsize=8)
    ax2.bar(xs - 0.2, [r["efficiency"] for r in rows], 0.4, label="ours: bound / cycles")
    eie = [r["eie_efficiency"] for r in rows]
    if any(v is not None for v in eie):
        ax2.bar(xs + 0.2, [np.nan if v is None else v for v in eie], 0.4,
                label="EIE: theoretical / actual")
    ax2.axhline(doc["efficiency_target"], color="k", ls="--", lw=1,
                label=f"target {doc['efficiency_target']}")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("efficiency")
    ax2.set_xticks(xs, names, rotation=30, ha="right")
    ax2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _savefig(fig, Path(path))
    plt.close(fig)


# ----------------------------------------------------------------------------- sweeps

def width_stats(pointers_per_pe: Sequence[np.ndarray], x: np.ndarray, width: int) -> dict[str, Any]:
    """Storage and read statistics of one layer with ``width``-bit sparse-matrix words
    (``width / 8`` entries a word, entries back to back from a word boundary in every PE, as the
    contract lays them out for 64 bits). ``pointers_per_pe``: each PE's ``n_in + 1`` pointers.

    Returns: ``words_max`` (SRAM depth the layer needs), ``storage_bits`` (all PEs, whole words),
    ``unused_bits`` (the tails of the last words), ``straddle_fraction`` (nonempty columns that
    span more than one word), ``word_reads`` (words the nonzero-input columns touch, every PE,
    each column reading each of its words once, no reuse between columns) and
    ``entries_per_read``.
    """
    if width % 8 or width < 8:
        raise EieError(f"SRAM word width {width} must be a multiple of 8 bits (one entry is 8)")
    e = width // 8
    active = np.asarray(x).reshape(-1) != 0
    words = []
    straddle = nonempty = reads = entries = work = 0
    for p in pointers_per_pe:
        p = np.asarray(p, dtype=np.int64)
        n = int(p[-1])
        words.append(-(-n // e))
        entries += n
        lo, hi = p[:-1], p[1:]
        ne = hi > lo
        span = np.zeros_like(lo)
        span[ne] = (hi[ne] - 1) // e - lo[ne] // e + 1
        nonempty += int(ne.sum())
        straddle += int((span > 1).sum())
        reads += int(span[active].sum())
        work += int((hi - lo)[active].sum())
    storage = sum(words) * width
    return {"width": width, "entries_per_word": e, "words_max": max(words) if words else 0,
            "storage_bits": storage, "unused_bits": storage - 8 * entries,
            "straddle_fraction": straddle / nonempty if nonempty else 0.0,
            "word_reads": reads, "entries_per_read": work / reads if reads else 0.0}


def _sweep_layer(kind: str, spec: LayerSpec, setup: BenchSetup,
                 values: Sequence[int]) -> dict[str, Any]:
    """One layer's points of a sweep (top level, so a process pool can run it)."""
    from ..sw.bound import column_entries as bound_column_entries, efficiency, ideal_bound
    from ..sw.encode import encode_layer

    s = scale_spec(spec, setup.scale)
    syn = synth_layer(s, setup.seed, setup.act_frac)
    points: list[dict[str, Any]] = []
    if kind == "fifo":
        ce = column_entries(syn.quant, setup.n_pe)
        bound = ideal_bound(ce, syn.x)
        for d in values:
            pred = _predict(ce, syn.x, s.n_out, setup.config_fields(fifo_depth=d))
            points.append({"fifo_depth": d, "cycles": int(pred.cycles), "bound": bound,
                           "efficiency": efficiency(bound, pred.cycles),
                           "stall_max": int(max(pred.stall))})
    elif kind == "pes":
        for n in values:
            ce = column_entries(syn.quant, n)
            bound = ideal_bound(ce, syn.x)
            pred = _predict(ce, syn.x, s.n_out, setup.config_fields(n_pe=n))
            points.append({"n_pe": n, "cycles": int(pred.cycles), "bound": bound,
                           "efficiency": efficiency(bound, pred.cycles)})
        base = points[0]["cycles"]              # the smallest PE count (values are sorted)
        for p in points:
            p["speedup"] = base / p["cycles"]
    elif kind == "width":
        enc = encode_layer(syn.quant, setup.n_pe)
        ptrs = [e.pointers for e in enc]
        ce = bound_column_entries(ptrs)
        bound = ideal_bound(ce, syn.x)
        pred = _predict(ce, syn.x, s.n_out, setup.config_fields())
        for w in values:
            st = width_stats(ptrs, syn.x, w)
            st.update(cycles=int(pred.cycles), bound=bound,
                      efficiency=efficiency(bound, pred.cycles))
            points.append(st)
    else:  # pragma: no cover - the parser restricts kind
        raise EieError(f"unknown sweep {kind!r}")
    return {"name": s.name, "n_in": s.n_in, "n_out": s.n_out,
            "weight_density": s.weight_density, "act_density": s.act_density,
            "nonzero_inputs": int(np.count_nonzero(syn.x)), "points": points}


def _check_layer(spec: LayerSpec) -> LayerSpec:
    """A small version of ``spec`` for RTL checks (at most 96 inputs and 48 outputs)."""
    from dataclasses import replace

    return replace(spec, name=f"{spec.name}-check", n_in=min(spec.n_in, 96),
                   n_out=min(spec.n_out, 48), eie_actual_us=None, eie_theoretical_us=None)


def _check_points(kind: str, specs: Sequence[LayerSpec], setup: BenchSetup) -> list[tuple]:
    """(layer spec, behavioural config fields) of the RTL checks of a sweep: small layers, 2-3
    points spanning the swept parameter."""
    a = _check_layer(specs[0])
    b = _check_layer(specs[-1])
    if kind == "fifo":
        return [(a, setup.config_fields(n_pe=8, fifo_depth=1)),
                (a, setup.config_fields(n_pe=8, fifo_depth=2)),
                (b, setup.config_fields(n_pe=8, fifo_depth=8))]
    if kind == "pes":
        return [(a, setup.config_fields(n_pe=1)), (a, setup.config_fields(n_pe=3)),
                (b, setup.config_fields(n_pe=16))]
    return [(a, setup.config_fields(n_pe=8))]


def run_checks(kind: str, specs: Sequence[LayerSpec], setup: BenchSetup, sim: str,
               build_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Run the sweep's check points on the RTL simulator ``sim``; per point, the RTL's counters,
    the cycle model's, whether they are equal and whether the output equals the golden model."""
    from ..hw.eie.config import EIEConfig
    from ..sim.eie_run import run_eie
    from ..sw.bound import layer_column_entries
    from ..sw.encode import build_image
    from ..sw.golden import golden_forward

    out = []
    for spec, cfg_fields in _check_points(kind, specs, setup):
        syn = synth_layer(spec, setup.seed, setup.act_frac)
        image = build_image([syn.quant], cfg_fields["n_pe"], act_frac=setup.act_frac)
        behav = {k: v for k, v in cfg_fields.items() if k != "n_pe"}
        try:
            config = EIEConfig.for_image(image, **behav)
        except ValueError as exc:
            raise EieError(str(exc)) from None
        res = run_eie(image, syn.x, sim=sim, config=config, build_dir=build_dir)
        rtl = res.counters[0][0]
        pred = _predict(layer_column_entries(image, 0), syn.x, spec.n_out, cfg_fields)
        model = pred.counters()
        same = all(rtl[k] == model[k] for k in ("cycles", "broadcasts", "busy", "stall"))
        out.append({"layer": spec.name, "n_in": spec.n_in, "n_out": spec.n_out,
                    "n_pe": cfg_fields["n_pe"], "fifo_depth": cfg_fields["fifo_depth"],
                    "sim": sim, "rtl_cycles": int(rtl["cycles"]),
                    "model_cycles": int(model["cycles"]), "counters_equal": bool(same),
                    "golden_equal": bool(np.array_equal(res.outputs,
                                                        golden_forward(image, syn.x).outputs))})
    return out


_SWEEP_VALUES = {"fifo": FIFO_DEPTHS, "pes": PE_COUNTS, "width": WORD_WIDTHS}
_SWEEP_KEY = {"fifo": "fifo_depth", "pes": "n_pe", "width": "width"}


def sweep(kind: str, specs: Sequence[LayerSpec], setup: BenchSetup,
          values: Sequence[int] | None = None, *, check_sim: str | None = "amaranth",
          build_dir: str | Path | None = None, jobs: int = 1,
          progress: bool = True) -> dict[str, Any]:
    """Run a sweep (``fifo``, ``pes`` or ``width``) over ``values`` (defaults: FIFO depths and PE
    counts 1..256 in powers of two, widths 32..512) with the cycle model; with ``check_sim``, also
    the RTL check points. Returns the JSON document."""
    if kind not in _SWEEP_VALUES:
        raise EieError(f"sweep {kind!r} is not one of {', '.join(_SWEEP_VALUES)}")
    values = sorted(set(values)) if values else list(_SWEEP_VALUES[kind])
    limits = {"fifo": config_range("fifo_depth"), "pes": config_range("n_pe"),
              "width": (8, 4096)}[kind]
    for v in values:
        _check_int(f"--values ({kind})", v, *limits, _SWEEP_KEY[kind])
    if kind == "width":
        for v in values:
            width_stats([np.zeros(2, np.int64)], np.zeros(1), v)         # checks multiple of 8
    if check_sim is not None and check_sim not in RTL_SIMS:
        raise EieError(f"--check-sim {check_sim!r} is not one of {', '.join(RTL_SIMS)} or none")
    specs = list(specs)
    if kind == "fifo":
        for d in values:
            _model_kwargs(setup.config_fields(fifo_depth=d))
    else:
        _model_kwargs(setup.config_fields())
    layers: list[dict[str, Any]] = []
    if jobs > 1 and len(specs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futs = [pool.submit(_sweep_layer, kind, s, setup, values) for s in specs]
            it = _progress(futs, len(futs), f"sweep {kind}") if progress else futs
            layers = [f.result() for f in it]
    else:
        it = _progress(specs, len(specs), f"sweep {kind}") if progress else specs
        layers = [_sweep_layer(kind, s, setup, values) for s in it]
    checks = run_checks(kind, specs, setup, check_sim, build_dir) if check_sim else []
    assumptions = {
        "fifo": "load-balance efficiency = bound / cycles of the cycle model, "
                f"{setup.n_pe} PEs, per activation-FIFO depth (EIE Fig. 8)",
        "pes": f"speed-up = cycles at {values[0]} PE(s) / cycles at N PEs, cycle model, FIFO depth "
               f"{setup.fifo_depth} (EIE Fig. 11); each N re-encodes the layer (rows interleave "
               "over N PEs)",
        "width": "the RTL and its cycle model have 64-bit sparse-matrix words and prefetch across "
                 "word boundaries (a column straddling two words costs no extra cycle), so cycles "
                 "do not depend on the width; the width changes the SRAM depth, the unused bits at the "
                 "end of each PE's entries, how many columns straddle words and how many word "
                 "reads the input costs (each column reads each word it touches once, no reuse "
                 f"between columns); {setup.n_pe} PEs",
    }[kind]
    return {"command": "sweep", "kind": kind, "parameter": _SWEEP_KEY[kind], "values": values,
            "n_pe": setup.n_pe, "fifo_depth": setup.fifo_depth,
            "config_overrides": dict(setup.overrides or {}), "seed": setup.seed,
            "scale": setup.scale, "assumptions": assumptions, "layers": layers,
            "checks": checks,
            "checks_pass": all(c["counters_equal"] and c["golden_equal"] for c in checks)
            if checks else None}


def format_sweep(doc: dict[str, Any]) -> str:
    """The sweep as text tables."""
    kind, values = doc["kind"], doc["values"]
    out: list[str] = []

    def table(title: str, metric: Callable[[dict], str]) -> None:
        head = ["layer"] + [str(v) for v in values]
        rows = [[L["name"]] + [metric(p) for p in L["points"]] for L in doc["layers"]]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        out.append(title)
        out.append("  ".join(h.rjust(w) if i else h.ljust(w)
                             for i, (h, w) in enumerate(zip(head, widths))))
        for r in rows:
            out.append("  ".join(c.rjust(w) if i else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))))
        out.append("")

    if kind == "fifo":
        table(f"efficiency (bound / cycles) by FIFO depth, {doc['n_pe']} PEs",
              lambda p: f"{p['efficiency']:.3f}")
    elif kind == "pes":
        table(f"speed-up over {values[0]} PE(s) by PE count, FIFO depth {doc['fifo_depth']}",
              lambda p: f"{p['speedup']:.2f}")
        table("efficiency (bound / cycles) by PE count", lambda p: f"{p['efficiency']:.3f}")
    else:
        table(f"SRAM depth (words per PE) by word width (bits), {doc['n_pe']} PEs",
              lambda p: str(p["words_max"]))
        table("unused bits at the end of the PEs' entries, % of storage",
              lambda p: f"{100 * p['unused_bits'] / p['storage_bits']:.2f}"
              if p["storage_bits"] else "-")
        table("columns straddling a word boundary, % of nonempty columns",
              lambda p: f"{100 * p['straddle_fraction']:.1f}")
        table("SRAM word reads for the input (all PEs)", lambda p: str(p["word_reads"]))
        table("entries per word read", lambda p: f"{p['entries_per_read']:.2f}")
        table("cycles (cycle model; width-independent)", lambda p: str(p["cycles"]))
    out.append("assumes: " + doc["assumptions"])
    if doc["checks"]:
        out.append("cycle model vs RTL at the checked points:")
        for c in doc["checks"]:
            out.append(f"  {c['layer']} {c['n_in']}x{c['n_out']}, {c['n_pe']} PEs, FIFO "
                       f"{c['fifo_depth']}, {c['sim']}: RTL {c['rtl_cycles']} cycles, model "
                       f"{c['model_cycles']}, counters {'equal' if c['counters_equal'] else 'DIFFER'}"
                       f", output {'= golden' if c['golden_equal'] else 'DIFFERS FROM GOLDEN'}")
    else:
        out.append("no RTL check points run (--check-sim none)")
    return "\n".join(out)


def plot_sweep(doc: dict[str, Any], path: str | Path) -> None:
    """The sweep's figure: efficiency against FIFO depth (log x), speed-up against PE count
    (log-log, with the linear ideal), or storage / straddles / reads against word width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind, values = doc["kind"], doc["values"]
    if kind == "width":
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
        metrics = [("unused bits (% of storage)",
                    lambda p: 100 * p["unused_bits"] / p["storage_bits"] if p["storage_bits"] else 0),
                   ("columns straddling words (%)", lambda p: 100 * p["straddle_fraction"]),
                   ("entries per SRAM word read", lambda p: p["entries_per_read"])]
        for ax, (label, f) in zip(axes, metrics):
            for L in doc["layers"]:
                ax.plot(values, [f(p) for p in L["points"]], marker="o", label=L["name"])
            ax.set_xscale("log", base=2)
            ax.set_xticks(values, [str(v) for v in values])
            ax.set_xlabel("SRAM word width (bits)")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"Sparse-matrix SRAM word width, {doc['n_pe']} PEs (cycles are "
                     "width-independent with prefetch)")
    else:
        fig, ax = plt.subplots(figsize=(7.5, 5))
        for L in doc["layers"]:
            if kind == "fifo":
                ys = [p["efficiency"] for p in L["points"]]
            else:
                ys = [p["speedup"] for p in L["points"]]
            ax.plot(values, ys, marker="o", label=L["name"])
        ax.set_xscale("log", base=2)
        ax.set_xticks(values, [str(v) for v in values])
        if kind == "fifo":
            ax.set_xlabel("activation FIFO depth")
            ax.set_ylabel("load-balance efficiency (bound / cycles)")
            ax.set_ylim(0, 1.02)
            ax.set_title(f"Efficiency vs FIFO depth, {doc['n_pe']} PEs (cf. EIE Fig. 8)")
        else:
            ax.plot(values, [v / values[0] for v in values], "k--", lw=1, label="linear")
            ax.set_yscale("log", base=2)
            ax.set_xlabel("PEs")
            ax.set_ylabel(f"speed-up over {values[0]} PE(s)")
            ax.set_title(f"Scalability, FIFO depth {doc['fifo_depth']} (cf. EIE Fig. 11)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _savefig(fig, Path(path))
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI

def _write_json(doc: dict[str, Any], path: Path) -> None:
    from ..common.atomic import atomic_file

    with atomic_file(path) as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    _usual_mode(path)


def _check_out_path(path: Path | None, what: str, suffix: str) -> None:
    if path is None:
        return
    if path.is_dir():
        raise EieError(f"{what} {path} is a directory; give a file name ending in {suffix}")
    if path.suffix.lower() != suffix:
        raise EieError(f"{what} {path} must end in {suffix}")


def _plan_outputs(args: argparse.Namespace) -> None:
    """Check ``--json``, ``--plot`` and ``--build-dir`` before anything runs
    (:mod:`eie.common.outputs`)."""
    _check_out_path(args.json, "--json", ".json")
    _check_out_path(args.plot, "--plot", ".png")
    paths = outputs.plan()
    if args.json:
        paths.file(args.json, "--json")
    if args.plot:
        paths.file(args.plot, "--plot")
    if args.build_dir is not None:
        paths.cache(args.build_dir, "--build-dir")


def _setup_from_args(args: argparse.Namespace) -> BenchSetup:
    return BenchSetup.from_variant(args.variant, fifo_depth=args.fifo_depth,
                                   overrides=_parse_set(args.set), n_pe=args.pes, seed=args.seed,
                                   scale=args.scale, act_frac=args.act_frac)


def cmd_table3(args: argparse.Namespace) -> int:
    _plan_outputs(args)
    setup = _setup_from_args(args)
    specs = parse_layers(args.layers)
    doc = table3(specs, setup, args.sim, build_dir=args.build_dir, load=args.load)
    print(format_table3(doc))
    if args.json:
        _write_json(doc, args.json)
    if args.plot:
        plot_table3(doc, args.plot)
    if doc["sim"] != "model" and not (doc["all_equal_golden"] and doc["model_equals_rtl"]):
        return 1        # an output off the golden model or a counter off the cycle model
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    _plan_outputs(args)
    setup = _setup_from_args(args)
    specs = parse_layers(args.layers)
    values = parse_int_list(args.values, "--values") if args.values else None
    if args.jobs < 1:
        raise EieError(f"--jobs {args.jobs} must be at least 1")
    check = None if args.check_sim == "none" else args.check_sim
    doc = sweep(args.kind, specs, setup, values, check_sim=check, build_dir=args.build_dir,
                jobs=args.jobs)
    print(format_sweep(doc))
    if args.json:
        _write_json(doc, args.json)
    if args.plot:
        plot_sweep(doc, args.plot)
    return 0 if doc["checks_pass"] in (None, True) else 1


def _common(p: argparse.ArgumentParser, default_layers: str, default_variant: str) -> None:
    p.add_argument("--pes", type=int, default=EIE_N_PE, metavar="N",
                   help=f"processing elements (default {EIE_N_PE}, as in the paper)")
    p.add_argument("--variant", default=default_variant, metavar="NAME",
                   help=f"named configuration: {variants_help()}; --fifo-depth and --set "
                        f"replace its fields (default {default_variant})")
    p.add_argument("--fifo-depth", type=int, default=None, metavar="D",
                   help="activation-FIFO depth per PE (default: the variant's)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="any other EIEConfig field (e.g. ptr_queue_depth=8); repeatable")
    p.add_argument("--layers", action="append", metavar="LIST",
                   help="comma-separated Table III names (Alex-6, ..., NT-LSTM), 'all', or custom "
                        "layers NAME:N_INxN_OUT:WEIGHT_DENSITY:ACT_DENSITY[:EIE_US:EIE_THEO_US]"
                        f"[:signed][:norelu] (default {default_layers})")
    p.add_argument("--scale", type=float, default=1.0, metavar="S",
                   help="shrink every layer's n_in and n_out by S in (0, 1] for quick runs "
                        "(default 1, the paper's sizes; EIE's times then do not apply)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and inputs (default 0)")
    p.add_argument("--act-frac", type=int, default=8, metavar="F",
                   help="activation fraction bits (default 8)")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write the results as JSON")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="write the figure (PNG)")
    p.add_argument("--build-dir", type=Path, metavar="DIR",
                   help=f"RTL build cache (default {CACHE_DIR_DEFAULT})")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench table3`` and ``bench sweep``."""
    p = subparsers.add_parser(
        "bench", help="EIE's benchmark table (Table III) and design-space sweeps",
        description="Benchmarks on synthetic layers with the sizes and densities of EIE's nine "
                    "Table III layers (magnitude-pruned Gaussian weights shared to 16 codes, "
                    "inputs with the layer's activation density, fixed seeds).")
    sub = p.add_subparsers(dest="bench_command", metavar="{table3,sweep}")
    sub.required = True
    t = sub.add_parser(
        "table3", help="cycles, bound, efficiency and EIE's times for the nine layers",
        description="Per layer: cycles, the contract's bound, efficiency = bound / cycles, "
                    "microseconds at 800 MHz, EIE's actual and theoretical times and our cycles "
                    "over EIE's actual cycles (64 PEs, 800 MHz). With an RTL simulator every "
                    "output is compared with the golden model (exit 1 if one differs).")
    t.add_argument("--sim", choices=("model",) + RTL_SIMS, default="model",
                   help="cycle model (default) or an RTL simulator")
    t.add_argument("--load", choices=LOADS, default=None,
                   help="how the images get into the RTL: backdoor (default with verilator and "
                        "icarus: pointer and sparse-matrix words deposited into the memories, "
                        "a sample read back through the bus) or bus (default with amaranth: "
                        "every word written through the host bus, about 1,300 words a second "
                        "at 64 PEs on Verilator, hours for the nine full-size layers)")
    _common(t, "all nine", DEFAULT_VARIANT)
    t.set_defaults(func=cmd_table3)
    s = sub.add_parser(
        "sweep", help="cycle-model sweeps: FIFO depth, PE count, SRAM word width",
        description="Efficiency against FIFO depth (EIE Fig. 8), speed-up against PE count "
                    "(Fig. 11) or storage and reads against SRAM word width, with the cycle "
                    "model; a few small points are checked against the RTL (--check-sim).")
    s.add_argument("kind", choices=("fifo", "pes", "width"), help="what to sweep")
    s.add_argument("--values", metavar="V1,V2,...",
                   help="points to sweep (default: 1..256 in powers of two for fifo and pes, "
                        "32..512 bits for width)")
    s.add_argument("--check-sim", choices=RTL_SIMS + ("none",), default="amaranth",
                   help="simulator for the RTL check points (default amaranth; none to skip)")
    s.add_argument("--jobs", type=int, default=1, metavar="J",
                   help="worker processes, one layer each (default 1)")
    _common(s, "all nine", "paper")
    s.set_defaults(func=cmd_sweep)
