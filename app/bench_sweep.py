"""``eie bench sweep {fifo,pes,width}``: design-space sweeps of the cycle model on the
synthetic Table III layers (:mod:`eie.app.bench_layers`; the command line is
:mod:`eie.app.cmd_bench`).

:func:`sweep` runs the cycle model over one design parameter: the activation-FIFO depth (EIE's
Fig. 8, load-balance efficiency), the PE count (Fig. 11, speed-up over one PE) or the
sparse-matrix SRAM word width (:func:`width_stats`: storage, padding, columns straddling words and
SRAM reads; the RTL and the cycle model have 64-bit words with prefetch across word boundaries, so
cycles do not depend on the width). A few small points are run on the RTL too
(:func:`run_checks`) and compared counter by counter with the cycle model; :func:`format_sweep`
and :func:`plot_sweep` show the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .bench_layers import LayerSpec, scale_spec, synth_layer
from .bench_setup import (RTL_SIMS, BenchSetup, check_int, config_range, model_kwargs, predict,
                          progress_bar, savefig)
from ..common.errors import EieError

__all__ = [
    "FIFO_DEPTHS",
    "PE_COUNTS",
    "WORD_WIDTHS",
    "column_entries",
    "width_stats",
    "run_checks",
    "sweep_values",
    "sweep",
    "format_sweep",
    "plot_sweep",
]

FIFO_DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PE_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WORD_WIDTHS = (32, 64, 128, 256, 512)


# ----------------------------------------------------------------------------- sweeps

def column_entries(layer, n_pe: int) -> np.ndarray:
    """Entries (padding included) of every column in every PE, int64 ``(n_in, n_pe)``, straight
    from the encoder (no image needed; :func:`eie.sw.bound.column_entries`)."""
    from ..sw.bound import column_entries as from_pointers
    from ..sw.encode import encode_layer

    return from_pointers([e.pointers for e in encode_layer(layer, n_pe)])


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
            pred = predict(ce, syn.x, s.n_out, setup.config_fields(fifo_depth=d))
            points.append({"fifo_depth": d, "cycles": int(pred.cycles), "bound": bound,
                           "efficiency": efficiency(bound, pred.cycles),
                           "stall_max": int(max(pred.stall))})
    elif kind == "pes":
        for n in values:
            ce = column_entries(syn.quant, n)
            bound = ideal_bound(ce, syn.x)
            pred = predict(ce, syn.x, s.n_out, setup.config_fields(n_pe=n))
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
        pred = predict(ce, syn.x, s.n_out, setup.config_fields())
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
        pred = predict(layer_column_entries(image, 0), syn.x, spec.n_out, cfg_fields)
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


def sweep_values(kind: str, values: Sequence[int] | None, setup: BenchSetup) -> list[int]:
    """The values sweep ``kind`` runs over (``values``, sorted and unique, or its defaults),
    each checked against its limits and, with ``setup``, against the cycle model's arguments:
    :class:`~eie.common.errors.EieError` naming the first bad one. Nothing is run."""
    if kind not in _SWEEP_VALUES:
        raise EieError(f"sweep {kind!r} is not one of {', '.join(_SWEEP_VALUES)}")
    values = sorted(set(values)) if values else list(_SWEEP_VALUES[kind])
    limits = {"fifo": config_range("fifo_depth"), "pes": config_range("n_pe"),
              "width": (8, 4096)}[kind]
    for v in values:
        check_int(f"--values ({kind})", v, *limits, _SWEEP_KEY[kind])
    if kind == "width":
        for v in values:
            width_stats([np.zeros(2, np.int64)], np.zeros(1), v)         # checks multiple of 8
    if kind == "fifo":
        for d in values:
            model_kwargs(setup.config_fields(fifo_depth=d))
    else:
        model_kwargs(setup.config_fields())
    return values


def sweep(kind: str, specs: Sequence[LayerSpec], setup: BenchSetup,
          values: Sequence[int] | None = None, *, check_sim: str | None = "amaranth",
          build_dir: str | Path | None = None, jobs: int = 1,
          progress: bool = True) -> dict[str, Any]:
    """Run a sweep (``fifo``, ``pes`` or ``width``) over ``values`` (defaults: FIFO depths and PE
    counts 1..256 in powers of two, widths 32..512) with the cycle model; with ``check_sim``, also
    the RTL check points. Returns the JSON document."""
    values = sweep_values(kind, values, setup)
    if check_sim is not None and check_sim not in RTL_SIMS:
        raise EieError(f"--check-sim {check_sim!r} is not one of {', '.join(RTL_SIMS)} or none")
    specs = list(specs)
    layers: list[dict[str, Any]] = []
    if jobs > 1 and len(specs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futs = [pool.submit(_sweep_layer, kind, s, setup, values) for s in specs]
            it = progress_bar(futs, len(futs), f"sweep {kind}") if progress else futs
            layers = [f.result() for f in it]
    else:
        it = progress_bar(specs, len(specs), f"sweep {kind}") if progress else specs
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
                 "do not depend on the width; the width changes the SRAM depth, the unused bits "
                 "at the end of each PE's entries, how many columns straddle words and how many "
                 "word reads the input costs (each column reads each word it touches once, no "
                 f"reuse between columns); {setup.n_pe} PEs",
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
                       f"{c['model_cycles']}, counters "
                       f"{'equal' if c['counters_equal'] else 'DIFFER'}"
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
                    lambda p: 100 * p["unused_bits"] / p["storage_bits"]
                    if p["storage_bits"] else 0),
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
    savefig(fig, Path(path))
    plt.close(fig)
