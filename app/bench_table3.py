"""``eie bench table3``: EIE's benchmark table on the synthetic Table III layers
(:mod:`eie.app.bench_layers`; the command line is :mod:`eie.app.cmd_bench`).

:func:`table3` encodes each layer for the setup's PEs (64 as in the paper), runs it on the RTL
(``verilator``, ``icarus`` or ``amaranth``; every output compared with the golden model) or on the
cycle model (``model``), and reports per layer: cycles, the contract's ideal bound, efficiency =
bound / cycles, microseconds at 800 MHz, EIE's actual and theoretical times and the ratio of our
cycles to EIE's actual cycles (64 PEs, 800 MHz both; EIE cycles = us x 800), and what holds a
layer below the efficiency target back; :func:`format_table3` and :func:`plot_table3` show it.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .bench_layers import (EIE_CLOCK_MHZ, EIE_N_PE, TABLE3_SOURCE, LayerSpec, scale_spec,
                           synth_layer)
from .bench_setup import (RTL_SIMS, SIZE_FIELDS, BenchSetup, model_kwargs, predict,
                          progress_bar, savefig)
from ..common.errors import EieError

__all__ = [
    "EFFICIENCY_TARGET",
    "overhead_breakdown",
    "interleave_floor",
    "table3",
    "format_table3",
    "plot_table3",
]

#: The issue's target: bound / cycles on every Table III layer at 64 PEs.
EFFICIENCY_TARGET = 0.95


# ----------------------------------------------------------------------------- limiters

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
        model_kwargs(cfg_fields)           # fail early on a field the model cannot model
    paper_fields = _paper_fields(setup) if compare_paper else None
    prepared = []
    preds = []
    rows: list[dict[str, Any]] = []
    it = progress_bar(specs, len(specs), "bench table3" if sim == "model" else "prepare layers") \
        if progress else specs
    for spec in it:
        s, syn, image, g = _prepare(spec, setup)
        st = g.stats[0]
        bound = int(st.bound[0])
        pred = predict(layer_column_entries(image, 0), syn.x, s.n_out, cfg_fields)
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
            row["paper_model_cycles"] = int(predict(layer_column_entries(image, 0), syn.x,
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
    savefig(fig, Path(path))
    plt.close(fig)

