"""The demo's report: the plots (:func:`make_plots`: ``accuracy_vs_kept.png``,
``weight_hist.png``, ``pe_load.png``), the checks (:func:`report_checks`, with the floors
:data:`MAX_ACCURACY_LOSS`, :data:`MAX_WEIGHTS_KEPT` and :data:`MIN_EFFICIENCY_16_PES`), the table
printed at the end of a run (:func:`format_summary`) and ``report.md`` (:func:`report_markdown`);
:func:`ii_text` says a BNN's measured initiation interval (or that it was not measured).
:func:`eie.app.demo.run_demo` writes them from the two paths' results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..sw.imagefile import plural
from .demo_common import BNN_COST_NOTE, DemoConfig

__all__ = ["MAX_ACCURACY_LOSS", "MAX_WEIGHTS_KEPT", "MIN_EFFICIENCY_16_PES", "make_plots",
           "report_checks", "format_summary", "report_markdown", "ii_text", "II_NOT_MEASURED"]

#: The most accuracy (a fraction) compression may cost, as the issue sets it: 0.5 points.
MAX_ACCURACY_LOSS = 0.005
#: The most weights the compressed LeNet-300-100 may keep.
MAX_WEIGHTS_KEPT = 0.10
#: The least efficiency (the contract's bound / the RTL's cycles, over the network) the demo's
#: LeNet-300-100 reaches on 16 PEs: the floor issue 13 sets it (0.92 measured, README).
MIN_EFFICIENCY_16_PES = 0.90
#: Why a run of one digit has no measured initiation interval (``eie bnn run`` says the same of
#: one sample): the interval is between two results.
II_NOT_MEASURED = "not measured: that needs two digits or more"


def ii_text(ii: int | None, unit: str = "", why: bool = False) -> str:
    """A measured initiation interval (``initiation_interval`` in the report) for the console,
    the summary and report.md: the number and ``unit``; for None (one digit: the core's II_MIN
    register still empty) "not measured", with the reason when ``why``."""
    if ii is None:
        return II_NOT_MEASURED if why else "not measured"
    return f"{ii}{unit}"


# ----------------------------------------------------------------------------- plots

def make_plots(tmp: Path, eie: dict[str, Any], weights: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    # accuracy against weights kept
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    curve = eie["prune_curve"]
    kept = [100 * p["weights_kept"] for p in curve]
    acc = [100 * p["accuracy"] for p in curve]
    ax.plot([kept[0]] + kept[2::2], [acc[0]] + acc[2::2], "o-", label="pruned + retrained")
    ax.plot(kept[1::2], acc[1::2], "x", color="tab:red", label="right after pruning")
    ax.plot([100 * eie["weights_kept"]], [100 * eie["compressed_accuracy"]], "*", ms=14,
            color="tab:green", label="shared + fixed point (golden model)")
    ax.axhline(100 * (eie["float_accuracy"] - MAX_ACCURACY_LOSS), ls=":", color="gray",
               label="float - 0.5 points")
    ax.set_xscale("log")
    ticks = [t for t in (2, 5, 8, 10, 20, 50, 100) if min(kept) * 0.8 <= t <= 100]
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("weights kept (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("LeNet-300-100 on 1,000 MNIST test digits")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(tmp / "accuracy_vs_kept.png", dpi=110)
    plt.close(fig)
    names.append("accuracy_vs_kept.png")

    # weight histogram before and after sharing, per layer
    n_layers = len(weights["pruned"])
    fig, axes = plt.subplots(2, n_layers, figsize=(4 * n_layers, 5.5), sharex="col")
    for l in range(n_layers):
        before, after = weights["pruned"][l], weights["shared"][l]
        lo = min(before.min(), after.min())
        hi = max(before.max(), after.max())
        bins = np.linspace(lo, hi, 120)
        axes[0, l].hist(before, bins=bins, color="tab:blue")
        axes[0, l].set_title(f"layer {l}: {before.size:,} kept weights")
        axes[1, l].hist(after, bins=bins, color="tab:orange")
        for c in weights["books"][l][1:]:
            axes[1, l].axvline(c, color="k", lw=0.5, alpha=0.5)
        axes[1, l].set_title(f"after sharing: {len(weights['books'][l]) - 1} centroids")
        axes[1, l].set_xlabel("weight")
    axes[0, 0].set_ylabel("count (pruned)")
    axes[1, 0].set_ylabel("count (shared)")
    fig.tight_layout()
    fig.savefig(tmp / "weight_hist.png", dpi=100)
    plt.close(fig)
    names.append("weight_hist.png")

    # per-PE load: entries stored and busy cycles measured
    entries = np.array(eie["entries_per_pe"])      # (layers, n_pe)
    busy = np.array(eie["busy_per_pe_per_image"])  # (layers, n_pe)
    n_pe = entries.shape[1]
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4))
    bottom = np.zeros(n_pe)
    for l in range(entries.shape[0]):
        a0.bar(np.arange(n_pe), entries[l], bottom=bottom, label=f"layer {l}")
        bottom += entries[l]
    a0.set_title("sparse-matrix entries per PE (padding included)")
    a0.set_xlabel("PE")
    a0.legend(fontsize=8)
    bottom = np.zeros(n_pe)
    for l in range(busy.shape[0]):
        a1.bar(np.arange(n_pe), busy[l], bottom=bottom, label=f"layer {l}")
        bottom += busy[l]
    a1.set_title(f"busy cycles per PE, mean over {plural(eie['rtl_images'], 'digit')} (RTL)")
    a1.set_xlabel("PE")
    a1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(tmp / "pe_load.png", dpi=100)
    plt.close(fig)
    names.append("pe_load.png")
    return names


# ----------------------------------------------------------------------------- report

def report_checks(cfg: DemoConfig, eie: dict[str, Any],
                  bnn: dict[str, Any]) -> list[dict[str, Any]]:
    checks = [
        {"check": "EIE RTL outputs equal the golden model", "enforced": True,
         "ok": eie["rtl_matches_golden"], "value": f"{plural(eie['rtl_images'], 'digit')}"},
        {"check": "BNN RTL outputs equal the golden model", "enforced": True,
         "ok": bnn["rtl_matches_golden"], "value": f"{plural(bnn['rtl_images'], 'digit')}"},
        {"check": "EIE weights kept <= 10%", "enforced": True,
         "ok": eie["weights_kept"] <= MAX_WEIGHTS_KEPT, "value": f"{eie['weights_kept']:.2%}"},
        {"check": "EIE compressed accuracy within 0.5 points of float",
         "enforced": cfg.mode != "quick",
         "ok": eie["compressed_accuracy"] >= eie["float_accuracy"] - MAX_ACCURACY_LOSS - 1e-12,
         "value": f"{eie['compressed_accuracy']:.2%} vs {eie['float_accuracy']:.2%}"},
        # the floor is the demo's network over the test digits: the quick run's few epochs train
        # another, and a few digits do not measure it; no floor is claimed at other PE counts
        *([{"check": f"EIE efficiency >= {MIN_EFFICIENCY_16_PES:.2f} on 16 PEs",
            "enforced": cfg.mode != "quick" and cfg.images >= 200,
            "ok": eie["efficiency"] >= MIN_EFFICIENCY_16_PES,
            "value": f"{eie['efficiency']:.3f} ({plural(eie['rtl_images'], 'digit')} on the RTL)"}]
          if cfg.n_pe == 16 else []),
        {"check": "BNN golden model equals the float model", "enforced": True,
         "ok": bnn["golden_equals_float"], "value": "1,000 digits"},
    ]
    precisions = bnn.get("precisions", {})
    for name, r in precisions.items():
        if name == "W1A1":      # the BNN above
            continue
        checks += [
            {"check": f"BNN {name} RTL outputs equal the golden model", "enforced": True,
             "ok": r["rtl_matches_golden"], "value": f"{plural(r['rtl_images'], 'digit')}"},
            {"check": f"BNN {name} golden model equals the float model", "enforced": True,
             "ok": r["golden_equals_float"], "value": "1,000 digits"},
        ]
    if precisions:
        # the digits are preloaded, so the core's smallest interval is the analytic II; one
        # digit has no interval
        checks.append({
            "check": "BNN measured II equals the analytic II (" + ", ".join(precisions) + ")",
            "enforced": cfg.images >= 2,
            "ok": all(r["initiation_interval"] == r["analytic_ii"] for r in precisions.values()),
            "value": ", ".join(f"{name} {ii_text(r['initiation_interval'])} / {r['analytic_ii']}"
                               for name, r in precisions.items())})
    if cfg.images < 200:
        # the floor for the demo; a smaller --images is the user's explicit choice
        checks.append({"check": "at least 200 digits on each RTL", "enforced": False,
                       "ok": False, "value": f"{cfg.images} (--images)"})
    return checks


def format_summary(report: dict[str, Any]) -> str:
    """The table printed at the end of a run (and at the top of report.md)."""
    e, b = report["eie"], report["bnn"]
    p = e["paper"]
    rows = [
        ("EIE float accuracy (LeNet-300-100)", f"{e['float_accuracy']:.2%}",
         f"paper {1 - p['top1_error_ref']:.2%} (60k train, 10k test)"),
        ("EIE compressed accuracy (golden, int16)", f"{e['compressed_accuracy']:.2%}",
         f"{-e['accuracy_loss_points']:+.1f} points; paper {1 - p['top1_error_compressed']:.2%}"),
        ("EIE weights kept", f"{e['weights_kept']:.2%}", f"paper {p['weights_kept']:.0%}"),
        (f"EIE compression ({plural(e['n_pe'], 'PE')} / 1 PE)",
         f"{e['compression_ratio']:.1f}x / {e['compression_ratio_1pe']:.1f}x",
         f"paper {p['ratio_without_huffman']}x"),
        ("EIE compression with Huffman", f"{e['compression_ratio_huffman']:.1f}x / "
         f"{e['compression_ratio_huffman_1pe']:.1f}x", f"paper {p['ratio']}x"),
        (f"EIE RTL ({e['rtl_simulator']}) == golden",
         "yes" if e["rtl_matches_golden"] else f"NO ({e['rtl_mismatched_images']} differ)",
         f"{plural(e['rtl_images'], 'digit')}"),
        ("EIE RTL accuracy", f"{e['rtl_accuracy']:.2%}", f"{plural(e['rtl_images'], 'digit')}"),
        ("EIE cycles per image", f"{e['cycles_per_image']:.0f}",
         f"{e['us_per_image_at_800mhz']:.2f} us at 800 MHz"),
        ("EIE efficiency (bound / cycles)", f"{e['efficiency']:.2f}",
         "per layer " + ", ".join(f"{v:.2f}" for v in e["efficiency_per_layer"])),
    ]
    lb = e.get("load_balance_pruning")
    if lb:
        bal, pl = lb["balanced"], lb["plain"]
        rows.append(
            ("EIE load-balance-aware pruning (ESE)",
             f"{bal['compressed_accuracy']:.2%} / {bal['weights_kept']:.2%} / "
             f"{bal['efficiency']:.2f}",
             f"plain {pl['compressed_accuracy']:.2%} / {pl['weights_kept']:.2%} / "
             f"{pl['efficiency']:.2f}: golden acc / kept / efficiency (cycle model, "
             f"{plural(lb['images'], 'digit')})"))
    rows += [
        (f"BNN float accuracy ({b['network']})", f"{b['float_accuracy']:.2%}",
         "binarized inputs, pixel >= 128"),
        (f"BNN RTL ({b['rtl_simulator']}) == golden",
         "yes" if b["rtl_matches_golden"] else f"NO ({b['rtl_mismatched_images']} differ)",
         f"{plural(b['rtl_images'], 'digit')}"),
        ("BNN RTL accuracy", f"{b['rtl_accuracy']:.2%}", f"{plural(b['rtl_images'], 'digit')}"),
        ("BNN initiation interval (cycles)", ii_text(b["initiation_interval"]),
         f"analytic {b['initiation_interval_analytic']}, folding {b['folding']}"
         + ("" if b["initiation_interval"] is not None
            else "; measuring it needs two digits or more")),
    ]
    for name, r in b.get("precisions", {}).items():
        rows.append((f"BNN {name}: float / RTL accuracy, II",
                     f"{r['float_accuracy']:.2%} / {r['rtl_accuracy']:.2%}, "
                     f"{ii_text(r['initiation_interval'])}",
                     f"RTL == golden {'yes' if r['rtl_matches_golden'] else 'NO'} "
                     f"({plural(r['rtl_images'], 'digit')}), analytic II {r['analytic_ii']}, "
                     f"{plural(r['epochs'], 'epoch')}"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'':{w0}}  {'result':>{w1}}  note", "-" * (w0 + w1 + 40)]
    lines += [f"{a:{w0}}  {v:>{w1}}  {n}" for a, v, n in rows]
    bad = [c for c in report["checks"] if c["enforced"] and not c["ok"]]
    info = [c for c in report["checks"] if not c["enforced"] and not c["ok"]]
    lines.append("-" * (w0 + w1 + 40))
    if bad:
        lines.append("FAILED: " + "; ".join(f"{c['check']} ({c['value']})" for c in bad))
    else:
        lines.append("all checks passed" + ("" if not info else " (not enforced in this run: "
                     + "; ".join(f"{c['check']} ({c['value']})" for c in info) + ")"))
    return "\n".join(lines)


def report_markdown(report: dict[str, Any], plots: list[str]) -> str:
    e, b = report["eie"], report["bnn"]
    cfg = report["config"]
    md = [f"# eie demo report ({cfg['mode']} run)", "",
          f"Data: {report['data']}.", "", "## Summary", "", "```", format_summary(report), "```",
          "", "## Checks", "", "| check | value | result |", "|---|---|---|"]
    for c in report["checks"]:
        res = ("pass" if c["ok"] else "FAIL") if c["enforced"] else \
            ("pass" if c["ok"] else "not met (informational here)")
        md.append(f"| {c['check']} | {c['value']} | {res} |")
    md += ["", "## EIE: LeNet-300-100, Deep Compression, 16-PE image", "",
           "| stage | weights kept | test accuracy |", "|---|---|---|"]
    for p in e["prune_curve"]:
        md.append(f"| {p['stage']} | {p['weights_kept']:.2%} | {p['accuracy']:.2%} |")
    md += [f"| shared, centroids fine-tuned (float) | {e['weights_kept']:.2%} | "
           f"{e['shared_float_accuracy']:.2%} |",
           f"| fixed point (golden model, int16) | {e['weights_kept']:.2%} | "
           f"{e['compressed_accuracy']:.2%} |", "",
           "| layer | weights kept | centroids | w_frac | RTL cycles/image | bound/image | "
           "efficiency | nonzero inputs/image |", "|---|---|---|---|---|---|---|---|"]
    for l in range(len(e["w_frac"])):
        md.append(f"| {l} | {e['weights_kept_per_layer'][l]:.2%} | {e['codebook_sizes'][l]} | "
                  f"{e['w_frac'][l]} | {e['layer_cycles_per_image'][l]:.1f} | "
                  f"{e['bound_per_image'][l]:.1f} | {e['efficiency_per_layer'][l]:.2f} | "
                  f"{e['nonzero_inputs_per_image'][l]:.1f} |")
    s = e["storage_bits"]
    md += ["", "Storage as Deep Compression counts it (codes + relative indices + pointers + "
           "codebooks) against dense float32:", "",
           "| | bits | ratio |", "|---|---|---|",
           f"| dense float32 | {s['dense_bits']:,} | 1x |",
           f"| compressed, {plural(e['n_pe'], 'PE')} | {s['total_bits']:,} | "
           f"{e['compression_ratio']:.1f}x |",
           f"| with Huffman, {plural(e['n_pe'], 'PE')} | {s['total_bits_huffman']:,} | "
           f"{e['compression_ratio_huffman']:.1f}x |",
           f"| compressed, 1 PE | | {e['compression_ratio_1pe']:.1f}x |",
           f"| with Huffman, 1 PE | | {e['compression_ratio_huffman_1pe']:.1f}x |",
           f"| Deep Compression (paper) | | {e['paper']['ratio_without_huffman']}x, "
           f"{e['paper']['ratio']}x with Huffman |", "",
           f"Pointers are {s['pointer_bits']:,} of the {s['total_bits']:,} bits at "
           f"{plural(e['n_pe'], 'PE')}: every PE keeps `n_in + 1` pointers per layer, which is "
           "why the ratio at 16 PEs sits below the single-matrix figure.", "",
           f"RTL: {plural(e['rtl_images'], 'test digit')} on {e['rtl_simulator']}, "
           f"{e['cycles_per_image']:.0f} cycles per image ({e['us_per_image_at_800mhz']:.2f} us "
           f"at EIE's 800 MHz), efficiency {e['efficiency']:.2f}, "
           f"{e['stall_cycles_per_image']:.1f} FIFO-full stall cycles per image (all PEs).", ""]
    lb = e.get("load_balance_pruning")
    if lb:
        md += [f"## EIE: load-balance-aware pruning (ESE) against plain pruning, "
               f"{plural(lb['n_pe'], 'PE')}",
               "", "The same float model, prune-and-retrain schedule, weight sharing, fine-tuning "
               "and compression; the load-balance-aware side prunes each PE's rows (row i on PE "
               "i % N) to the same count at every step, in every column where a layer has 16 or "
               "more rows a PE (ESE's balance, per column). Accuracy: the golden model (int16) over all test digits; "
               f"efficiency: the cycle model (FIFO depth {lb['fifo_depth']}, pointer queue "
               f"{lb['ptr_queue_depth']}) over "
               f"{plural(lb['images'], 'digit')}, sum of bounds / sum of cycles.", "",
               "| pruning | golden accuracy | pruned + retrained (float) | weights kept | "
               "kept per PE, max / mean | entries per PE, max / mean | cycles/image | "
               "efficiency | per layer |", "|---|---|---|---|---|---|---|---|---|"]
        for name, d in (("plain (one threshold a layer)", lb["plain"]),
                        ("load-balance-aware (ESE)", lb["balanced"])):
            md.append(f"| {name} | {d['compressed_accuracy']:.2%} | {d['pruned_accuracy']:.2%} | "
                      f"{d['weights_kept']:.2%} | "
                      + ", ".join(f"{v:.2f}" for v in d["kept_imbalance_per_layer"]) + " | "
                      + ", ".join(f"{v:.2f}" for v in d["entries_imbalance_per_layer"])
                      + f" | {d['cycles_per_image']:.0f} | {d['efficiency']:.2f} | "
                      + ", ".join(f"{v:.2f}" for v in d["efficiency_per_layer"]) + " |")
        md += ["", "The cycle model equals the RTL's counters on the "
               f"{plural(lb['cycle_model_checked_images'], 'digit')} the RTL ran (plain model): "
               f"{lb['cycle_model_equals_rtl']}.", ""]
    md += [
           f"## BNN: {b['network']} {'-'.join(map(str, b['shape']))}", "",
           f"Float model {b['float_accuracy']:.2%}, golden model {b['golden_accuracy']:.2%} "
           f"(equal to the float model on every test digit: {b['golden_equals_float']}); "
           f"RTL {b['rtl_accuracy']:.2%} on {plural(b['rtl_images'], 'digit')}. Folding "
           f"`{b['folding']}` (SIMD:PE per layer), per-layer II {b['layer_ii']}; "
           + (f"measured initiation interval {b['initiation_interval']} cycles"
              if b["initiation_interval"] is not None else f"initiation interval {II_NOT_MEASURED}")
           + f" (analytic {b['initiation_interval_analytic']}), latency {b['latency_cycles']} "
           f"cycles.", ""]
    if b.get("precisions"):
        md += [f"### {b['network']} at four precisions", "",
               "The same shape, seed, epochs and digits; W2 = ternary weights (TWN), A2 = 2-bit "
               "activations (DoReFa) in the hidden layers. Float and golden accuracy over all "
               "1,000 test digits; RTL on the first digits, every output compared with golden; "
               "II measured from the core's counters (digits preloaded).", "",
               "| precision | model file | folding | float | golden | RTL accuracy | RTL == "
               "golden | II measured | II analytic | latency | zero weights |",
               "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in b["precisions"].items():
            md.append(f"| {name} | `{r['model_file']}` | `{r['folding']}` | "
                      f"{r['float_accuracy']:.2%} | {r['golden_accuracy']:.2%} | "
                      f"{r['rtl_accuracy']:.2%} ({plural(r['rtl_images'], 'digit')}) | "
                      f"{'yes' if r['rtl_matches_golden'] else 'NO'} | "
                      f"{ii_text(r['initiation_interval'])} | {r['analytic_ii']} | "
                      f"{r['latency_cycles']} | {r['zero_weights']:,} |")
        md += ["", b.get("precisions_hardware_cost", BNN_COST_NOTE) + ".", ""]
    md += ["## Plots", ""]
    md += [f"![{p}]({p})" for p in plots]
    md += ["", "## Time", "", "| step | seconds |", "|---|---|"]
    md += [f"| {k} | {v:.1f} |" for k, v in report["timings"].items()]
    md += ["", "## Files", "",
           "`lenet_float.npz`, `lenet_compressed.npz` (W0, b0, ...: `eie compress` reads them), "
           "`eie_image/` (the SRAM image; `eie compress lenet_compressed.npz --calibrate "
           "calibration.npy` rebuilds it), `calibration.npy`, `x_test_int16.npy`, `y_test.npy`, "
           "`eie_rtl_outputs.npy`, `bnn_*.npz` (W1A1 `bnn_tfc.npz`, the others "
           "`bnn_tfc_W2A1.npz` ...), `bnn_image/` (and `bnn_image_W2A1/` ...), "
           "`x_test_bits.npy`, `bnn_rtl_outputs.npy` (and `bnn_rtl_outputs_W2A1.npy` ...), "
           "simulator logs. See docs/demo.md to repeat each step with the `eie` commands.", ""]
    return "\n".join(md)
