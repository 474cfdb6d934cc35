"""``eie compress``, ``eie golden`` and ``eie inspect``: the software flow from the command line.

- ``eie compress MODEL -o IMAGE_DIR --pes N [--density D | --prune-std Q] ...`` prunes, shares,
  quantises and encodes a float model (``.npz`` with ``W0, b0, ...`` or a PyTorch ``state_dict``)
  into an SRAM image directory, and prints the per-layer compression table.
- ``eie golden IMAGE_DIR --input X.npy -o Y.npy [--raw]`` runs the bit-exact golden model.
- ``eie inspect IMAGE_DIR [--json]`` reports, per layer and per PE, entries, padding, density,
  how evenly the entries spread (per column and per PE), storage and compression ratios,
  recomputed from the image files.

Every user error is an :class:`~eie.common.errors.EieError` (one line, exit code 2); outputs are
written atomically, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..common import outputs
from ..common.errors import EieError
from ..common.progress import progress_bar

__all__ = ["register", "cmd_compress", "cmd_golden", "cmd_inspect", "inspect_report"]


def _parse_densities(text: str) -> list[float]:
    from ..sw.prune import check_density

    out = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise EieError(f"density {part!r} is not a number (give a fraction in (0, 1], or one "
                           "per layer separated by commas)") from None
        out.append(check_density(value))
    return out


def _parse_quality(text: str) -> float:
    try:
        q = float(text)
    except ValueError:
        raise EieError(f"prune quality {text!r} is not a number (give e.g. --prune-std 1.0)") from None
    return q


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compress``, ``golden`` and ``inspect`` sub-commands."""
    from dataclasses import fields

    from ..sw.compress import MAX_CALIBRATION, CompressConfig
    from ..sw.share import INIT_METHODS, MAX_CENTROIDS

    default = {f.name: f.default for f in fields(CompressConfig)}
    p = subparsers.add_parser(
        "compress", help="prune, weight-share and encode a float model into an SRAM image",
        description="Deep Compression of a fully connected float model into an EIE SRAM image "
                    "directory (manifest.json, pe{k}_ptr.hex, pe{k}_spmat.hex, pe{k}_bias.hex). "
                    "Without --density or --prune-std every nonzero weight is kept (a model "
                    "pruned already).")
    p.add_argument("model", type=Path, help="float model: .npz with W0, b0, W1, ... (W{l} of shape "
                   "(n_out, n_in), biases optional, optional bool array relu), or .pt/.pth PyTorch "
                   "state_dict of Linear layers")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="IMAGE_DIR",
                   help="image directory to write (replaced atomically)")
    p.add_argument("--pes", type=int, required=True, metavar="N",
                   help="number of processing elements")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--density", metavar="D",
                   help="fraction of weights to keep, in (0, 1]: one value, or one per layer "
                        "separated by commas (e.g. 0.08,0.09,0.26)")
    g.add_argument("--prune-std", metavar="Q",
                   help="prune |w| < Q x std(W) per layer (Deep Compression's quality factor)")
    p.add_argument("--centroids", type=int, default=default["n_centroids"], metavar="K",
                   help=f"learned centroids per layer, 1..{MAX_CENTROIDS} (default "
                        f"{default['n_centroids']}; entry 0 is the zero)")
    p.add_argument("--init", choices=INIT_METHODS, default=default["init"],
                   help=f"k-means initialisation (default {default['init']}, Deep Compression's "
                        "best)")
    p.add_argument("--act-frac", type=int, default=default["act_frac"], metavar="F",
                   help=f"fraction bits of the int16 activations (default {default['act_frac']})")
    p.add_argument("--acc-bits", type=int, default=default["acc_bits"], metavar="B",
                   help=f"accumulator width in bits, wraps around (default "
                        f"{default['acc_bits']})")
    p.add_argument("--ptr-depth", type=int, metavar="N",
                   help="pointer SRAM depth per PE (checked when given)")
    p.add_argument("--spmat-depth", type=int, metavar="N",
                   help="sparse-matrix SRAM depth per PE in 64-bit words (checked when given)")
    p.add_argument("--act-depth", type=int, metavar="N",
                   help="activation SRAM depth per PE (checked when given)")
    p.add_argument("--bias-depth", type=int, metavar="N",
                   help="bias SRAM depth per PE (checked when given)")
    p.add_argument("--no-balance", dest="balance", action="store_false",
                   help="keep the plain interleave (row i on PE i %% N) instead of placing rows "
                        "so that every column's entries are spread evenly over the PEs (the "
                        "default: a PE that holds more of a column than the others falls behind "
                        "and, its FIFO full, holds the broadcasts back, so each column, not each "
                        "PE's total, is what it evens; the totals may end up less even than the "
                        "interleave's; eie inspect shows both). Outputs come back in the "
                        "model's order either way")
    p.add_argument("--calibrate", type=Path, metavar="X.npy",
                   help="float inputs (samples, n_in), e.g. training data, that the balanced "
                        f"placement also evens each PE's work on (the first {MAX_CALIBRATION} "
                        "samples are used: it lowers the sum over them of the busiest PE's "
                        "weights in their nonzero columns); without it the placement evens "
                        "every column")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=cmd_compress)

    p = subparsers.add_parser(
        "golden", help="run the bit-exact golden model on an image",
        description="Run the bit-exact golden model of an image directory on a batch of inputs. "
                    "X is float (batch, n_in), quantised with the image's act_frac "
                    "(round half to even, saturating), or with --raw int16 fixed point already. "
                    "Y is the int16 output of the last layer, (batch, n_out).")
    p.add_argument("image", type=Path, metavar="IMAGE_DIR")
    p.add_argument("--input", type=Path, required=True, metavar="X.npy")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="Y.npy")
    p.add_argument("--raw", action="store_true",
                   help="X is int16 fixed point with act_frac fraction bits already")
    p.set_defaults(func=cmd_golden)

    p = subparsers.add_parser(
        "inspect", help="per-layer and per-PE statistics of an image",
        description="Entries, padding, density, how evenly the entries spread over the PEs "
                    "(per column, what holds broadcasts back and what the default placement "
                    "evens; and per PE, the load imbalance), storage and compression ratios "
                    "(with and without Huffman coding) of an image directory, per layer and per "
                    "PE, recomputed from the image files. For the cycles on given inputs, run "
                    "eie run IMAGE_DIR --input X.npy -o Y.npy --sim model.")
    p.add_argument("image", type=Path, metavar="IMAGE_DIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)


# ----------------------------------------------------------------------------- compress

def _fmt_bits(bits: int) -> str:
    b = bits / 8
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or unit == "GiB":
            return f"{b:.1f} {unit}" if unit != "B" else f"{int(b)} B"
        b /= 1024
    return f"{b:.1f} GiB"


def _column_spread(image: Any, l: int) -> tuple[int, int]:
    """How evenly layer ``l``'s columns spread over the PEs: the sum over the columns of the
    busiest PE's entries in the column (padding included: it takes a cycle too), and the least
    that sum could be, every column's entries shared out as evenly as they divide."""
    from ..sw.bound import layer_column_entries

    cols = layer_column_entries(image, l)          # (n_in, n_pe)
    if not cols.size:
        return 0, 0
    return int(cols.max(axis=1).sum()), int((-(-cols.sum(axis=1) // image.n_pe)).sum())


def _layer_table(image: Any) -> str:
    head = (f"{'layer':>5} {'n_in':>6} {'n_out':>6} {'density':>8} {'cents':>5} {'w_frac':>6} "
            f"{'entries':>9} {'padding':>8} {'col.bal':>7} {'pe.bal':>7} {'storage':>10} "
            f"{'ratio':>7} {'+huff':>7}")
    rows = [head]
    for l, d in enumerate(image.layers):
        s = d.stats["storage"]
        per = [int(image.layer_pointers(l, k)[-1]) for k in range(image.n_pe)]
        biggest = max(per)
        balance = (sum(per) / (len(per) * biggest)) if biggest else 1.0
        # per column: eie inspect's column_imbalance inverted (1.0: every column as even as it
        # can be), beside the PEs' totals' balance
        col_max, col_least = _column_spread(image, l)
        col_bal = (col_least / col_max) if col_max else 1.0
        n_cent = d.stats.get("compression", {}).get("centroids",
                                                     sum(1 for c in d.codebook[1:] if c != 0))
        rows.append(
            f"{l:>5} {d.n_in:>6} {d.n_out:>6} {d.stats['nonzeros'] / (d.n_in * d.n_out):>8.4f} "
            f"{n_cent:>5} {d.w_frac:>6} {s['entries']:>9} {d.stats['padding']:>8} {col_bal:>7.3f} "
            f"{balance:>7.3f} "
            f"{_fmt_bits(s['total_bits']):>10} {s['ratio']:>6.1f}x {s['ratio_huffman']:>6.1f}x")
    return "\n".join(rows)


def cmd_compress(args: argparse.Namespace) -> int:
    paths = outputs.plan()          # first: an interrupt from here on can say what -o holds
    paths.input(args.model, "MODEL", kind="npz" if Path(args.model).suffix.lower() == ".npz"
                else None)
    if args.calibrate is not None:
        paths.input(args.calibrate, "--calibrate", kind="npy")
    from ..sw.image import OWNER, OWNER_KIND, write_image

    out = paths.directory(args.output, "-o", owner=OWNER, kind=OWNER_KIND)
    from ..sw.compress import MAX_CALIBRATION, CompressConfig, compress_model
    from ..sw.inputs import load_calibration
    from ..sw.model_io import load_model

    density = _parse_densities(args.density) if args.density is not None else None
    prune_std = _parse_quality(args.prune_std) if args.prune_std is not None else None
    for name in ("ptr_depth", "spmat_depth", "act_depth", "bias_depth"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise EieError(f"--{name.replace('_', '-')} {v} must be >= 1 (entries per PE)")
    config = CompressConfig(
        n_pe=args.pes, density=density, prune_std=prune_std, n_centroids=args.centroids,
        init=args.init, act_frac=args.act_frac, acc_bits=args.acc_bits, ptr_depth=args.ptr_depth,
        spmat_depth=args.spmat_depth, act_depth=args.act_depth, bias_depth=args.bias_depth,
        balance=args.balance)
    model = load_model(args.model)
    if args.calibrate is not None:
        if not args.balance:
            raise EieError("--calibrate tunes the balanced placement; it cannot be used with "
                           "--no-balance")
        config.calibration = load_calibration(args.calibrate, model.layers[0].weight.shape[1],
                                              max_samples=MAX_CALIBRATION)
    # A progress bar on a terminal only (common.progress's rule).
    with progress_bar(len(model.layers), desc="compress", unit="layer") as bar:
        result = compress_model(model, config, progress=lambda done, total: bar.update(1))
    write_image(result.image, out)
    if args.json:
        print(json.dumps(inspect_report(result.image), indent=2))
        _lossy_warnings(result.image, config)    # on stderr: stdout stays one JSON document
        return 0
    t = result.totals
    print(f"{args.model} -> {out}: {len(model.layers)} layers, {config.n_pe} PEs, "
          f"act_frac {config.act_frac}, acc_bits {config.acc_bits}")
    print(_layer_table(result.image))
    print(f"total: {t['nonzeros']} of {t['weights']} weights kept ({t['density']:.2%}), "
          f"{_fmt_bits(t['total_bits'])} vs {_fmt_bits(t['dense_bits'])} dense float32: "
          f"{t['ratio']:.1f}x, {t['ratio_huffman']:.1f}x with Huffman coding")
    _lossy_warnings(result.image, config)
    return 0


def _lossy_warnings(image: Any, config: Any) -> None:
    """Legal but lossy compression, one ``warning:`` line each on stderr (with ``--json`` too):
    biases or codebook entries saturated to int16, codebook entries rounded to 0 (a layer whose
    every entry rounds to 0 is refused by :func:`eie.sw.compress.compress_model`), and a layer
    that keeps no weight at all (its outputs are then its bias alone, whatever the input)."""
    comp = [d.stats["compression"] for d in image.layers]
    sat = sum(c["bias_saturated"] for c in comp)
    if sat:
        print(f"warning: {sat} biases saturated to int16 with act_frac {config.act_frac} "
              "(lower --act-frac)", file=sys.stderr)
    for l, (d, c) in enumerate(zip(image.layers, comp)):
        n = c.get("centroids", 0)
        if c.get("codebook_saturated"):
            # with entries rounded to 0 as well, the layer's range exceeds int16's: scaling it
            # down would lose more of the small weights
            fix = ("scaling them down would round more of the small ones to 0 (next warning): "
                   "check the largest weights (an outlier? clip it, or fix the model)"
                   if c.get("codebook_zeroed") else
                   "scale them down (and the next layer's up)")
            print(f"warning: layer {l}: {c['codebook_saturated']} of {n} codebook entries "
                  "saturated to int16 even with weight shift 0 (weights up to "
                  f"{max(abs(v) for v in c['centroids_float']):.3g}); the layer's weights are "
                  f"clipped: {fix}", file=sys.stderr)
        if c.get("codebook_zeroed"):
            print(_zeroed_warning(l, image, d, c, config), file=sys.stderr)
        if c.get("kept_weights", 1) == 0:
            outs = (f"its bias alone{', after ReLU' if d.relu else ''}" if d.has_bias
                    else "all 0")
            if config.prune_std is not None:
                fix = f"lower --prune-std {config.prune_std:g}"
            elif config.density is not None:
                fix = "raise --density"
            else:
                fix = "every weight of the model's layer is 0"
            print(f"warning: layer {l}: no weight kept (0 of {d.n_in * d.n_out}); its outputs "
                  f"are {outs}, the same for every input ({fix})", file=sys.stderr)


def _zeroed_warning(l: int, image: Any, d: Any, c: dict, config: Any) -> str:
    """The warning for a layer some of whose codebook entries round to 0: how many of its kept
    weights no longer contribute (the outputs change), why the step is that coarse (the
    accumulator width, the largest weight against the typical one, or no finer step at all)
    and what to do; the storage they still take comes last."""
    import numpy as np

    from ..sw.fixedpoint import INT16_MAX, MAX_W_FRAC, choose_w_frac

    cents = np.asarray(c["centroids_float"], dtype=np.float64)
    book = np.asarray(d.codebook[1:1 + cents.size])
    zeroed = np.flatnonzero((book == 0) & (cents != 0)) + 1    # their codes
    lost = sum(int(np.count_nonzero(np.isin(image.layer_entries(l, k) & 0xF, zeroed)))
               for k in range(image.n_pe))
    kept = int(c.get("kept_weights", lost)) or lost
    largest = float(np.abs(cents[zeroed - 1]).max())
    step = 2.0 ** -d.w_frac
    biggest = float(c.get("kept_abs_max", np.abs(cents).max()))
    median = c.get("kept_abs_median")
    # how far the layer's weights could be scaled up before the largest saturates
    room = INT16_MAX / (biggest * 2.0 ** d.w_frac) if biggest else float("inf")
    text = (f"warning: layer {l}: {lost} of its {kept} kept weights ({lost / kept:.2%}) round to "
            f"0 in int16 fixed point, so their contributions are lost and the layer's outputs "
            f"change: {c['codebook_zeroed']} of {c.get('centroids', cents.size)} codebook "
            f"entries (|w| up to {largest:.3g}) {'is' if c['codebook_zeroed'] == 1 else 'are'} "
            f"below half the step {step:.3g} of w_frac {d.w_frac}")
    typical = "" if median is None else f"; the median kept |w| is {float(median):.3g}"
    if d.w_frac < choose_w_frac(cents):
        # the shift was cut short by the accumulator, not by the layer's largest weight
        text += (f"; that step is the finest a {config.acc_bits}-bit accumulator allows: raise "
                 f"--acc-bits (now {config.acc_bits}, which limits w_frac to {d.w_frac}; a "
                 "larger one may keep them), or scale the layer's weights up (and the next "
                 "layer's down)")
    elif d.w_frac >= MAX_W_FRAC and room >= 2:
        text += (f"; that is the finest step there is, and the largest |w|, {biggest:.3g}, "
                 f"leaves int16 room for {room:.3g}x more: scale the layer's weights up (and the "
                 "next layer's down)")
    elif median is not None and float(median) < step:
        # the typical weight is below one step: one large weight sets the step for all
        text += (f"; the step is that coarse because the largest |w|, {biggest:.3g}, must fit "
                 f"int16, and it is {biggest / float(median):.3g}x the median kept |w| "
                 f"({float(median):.3g}): check it (an outlier? clip it, or fix the model)")
    else:
        text += (f"; they are the layer's smallest weights (the step is set by the largest "
                 f"|w|, {biggest:.3g}, which must fit int16{typical})")
    return (text + f"; they are still stored, as entries that add nothing (pruning them, with a "
                   "higher --prune-std or a lower --density, saves that storage)")


# ----------------------------------------------------------------------------- golden

def cmd_golden(args: argparse.Namespace) -> int:
    import numpy as np

    from ..common.atomic import atomic_file
    from ..common.errors import warn
    from ..sw.golden import golden_forward
    from ..sw.image import read_image
    from ..sw.inputs import load_eie_input

    paths = outputs.plan()
    paths.input(args.image, "IMAGE_DIR")
    paths.input(args.input, "--input", kind="npy")
    paths.array(args.output, "-o")
    image = read_image(args.image)
    xq = load_eie_input(args.input, image, raw=args.raw, warn=warn)
    result = golden_forward(image, xq)
    y = np.ascontiguousarray(result.outputs, dtype=np.int16)
    with atomic_file(Path(args.output), "wb") as f:
        np.save(f, y)
    print(f"{args.output}: int16 {y.shape[0]} x {y.shape[1]} (act_frac {image.act_frac})")
    return 0


# ----------------------------------------------------------------------------- inspect

def inspect_report(image: Any) -> dict[str, Any]:
    """Statistics of an image, recomputed from its arrays (a JSON-serialisable dict)."""
    import numpy as np

    from ..sw.compress import model_totals, storage_report

    layers = []
    for l, d in enumerate(image.layers):
        ent = [image.layer_entries(l, k) for k in range(image.n_pe)]
        col_max, col_least = _column_spread(image, l)
        n_ent = [int(e.size) for e in ent]
        n_pad = [int(np.count_nonzero((e & 0xF) == 0)) for e in ent]
        nonzeros = sum(n_ent) - sum(n_pad)
        biggest = max(n_ent)
        mean = sum(n_ent) / len(n_ent)
        storage = storage_report(d.n_in, d.n_out, image.n_pe, ent)
        d.stats["storage"] = storage
        d.stats["nonzeros"] = nonzeros
        layers.append({
            "layer": l, "n_in": d.n_in, "n_out": d.n_out, "w_frac": d.w_frac, "relu": d.relu,
            "has_bias": d.has_bias, "codebook": list(d.codebook),
            "placement": "interleave" if d.row_order is None else "balanced",
            "weights": d.n_in * d.n_out, "nonzeros": nonzeros,
            "density": nonzeros / (d.n_in * d.n_out),
            "entries": sum(n_ent), "padding": sum(n_pad),
            "max_entries_per_pe": biggest,
            "load_imbalance": (biggest / mean) if mean else 1.0,
            "load_balance": (mean / biggest) if biggest else 1.0,
            "column_max_entries": col_max,
            "column_max_entries_least": col_least,
            "column_imbalance": (col_max / col_least) if col_least else 1.0,
            "storage": {k: v for k, v in storage.items()},
            "compression": d.stats.get("compression"),
            "per_pe": [{"pe": k, "entries": n_ent[k], "padding": n_pad[k],
                        "nonzeros": n_ent[k] - n_pad[k], "words": -(-n_ent[k] // 8)}
                       for k in range(image.n_pe)],
        })
    return {"n_pe": image.n_pe, "act_frac": image.act_frac, "acc_bits": image.acc_bits,
            "ptr_words": image.ptr_words, "spmat_words": image.spmat_words,
            "layers": layers, "totals": model_totals(image)}


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..sw.image import read_image

    outputs.plan().input(args.image, "IMAGE_DIR")
    image = read_image(args.image)
    rep = inspect_report(image)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{args.image}: {len(rep['layers'])} layers, {rep['n_pe']} PEs, act_frac "
          f"{rep['act_frac']}, acc_bits {rep['acc_bits']}; per PE {rep['ptr_words']} pointers, "
          f"{rep['spmat_words']} sparse-matrix words")
    for L in rep["layers"]:
        s = L["storage"]
        print(f"\nlayer {L['layer']}: {L['n_in']} -> {L['n_out']}, w_frac {L['w_frac']}, "
              f"{'ReLU' if L['relu'] else 'linear'}, {'bias' if L['has_bias'] else 'no bias'}; "
              f"{L['nonzeros']} nonzeros (density {L['density']:.4f}), {L['entries']} entries "
              f"({L['padding']} padding), {L['placement']} placement")
        print(f"  per column: {L['column_max_entries']} entries in the busiest PE of each "
              f"column, summed ({L['column_max_entries_least']} if every column were spread as "
              f"evenly as it divides: imbalance {L['column_imbalance']:.3f}); a PE that holds "
              "more of a column than the others falls behind and, its FIFO full, holds the "
              "broadcasts back: this is what the default placement evens")
        print(f"  per PE: load imbalance {L['load_imbalance']:.3f} (the largest PE's entries / "
              "the mean)")
        print(f"  storage {s['total_bits']} bits ({s['code_bits']} codes + {s['index_bits']} "
              f"indices + {s['pointer_bits']} pointers of {s['pointer_bits_each']} bits + "
              f"{s['codebook_bits']} codebook): {s['ratio']:.1f}x vs float32; with Huffman "
              f"{s['total_bits_huffman']} bits: {s['ratio_huffman']:.1f}x")
        print(f"  {'pe':>4} {'entries':>8} {'padding':>8} {'nonzeros':>8} {'words':>7}")
        for p in L["per_pe"]:
            print(f"  {p['pe']:>4} {p['entries']:>8} {p['padding']:>8} {p['nonzeros']:>8} "
                  f"{p['words']:>7}")
    t = rep["totals"]
    print(f"\ntotal: {t['nonzeros']} of {t['weights']} weights ({t['density']:.2%}), "
          f"{t['ratio']:.1f}x vs dense float32, {t['ratio_huffman']:.1f}x with Huffman coding")
    return 0
