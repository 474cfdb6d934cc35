"""The Deep Compression pipeline: float model -> pruned -> shared -> fixed point -> SRAM image.

Per layer (:func:`compress_layer`):

1. **Prune** (:mod:`eie.sw.prune`): keep a fraction ``density`` of the weights by magnitude, or
   those with ``|w| >= quality x std`` (``prune_std``); with neither, keep every nonzero weight
   (a model pruned and retrained already, e.g. by :func:`eie.sw.train.prune_and_retrain`).
2. **Share** (:mod:`eie.sw.share`): 1-D k-means of the kept weights into at most 15 centroids
   (linear initialisation by default); code 0 is the fixed zero.
3. **Fixed point** (:mod:`eie.sw.fixedpoint`): ``w_frac = min(choose_w_frac(centroids),
   acc_w_frac_limit(acc_bits))`` (the most fraction bits that keep every codebook entry in
   int16 and leave the accumulator room for twice the output range, so that outputs saturate
   instead of wrapping), codebook ``quantize(c, w_frac)``; bias
   ``quantize(b, act_frac)`` (saturating; saturated biases are counted in the statistics).
   Codebook entries that saturate (weights beyond int16 even with ``w_frac`` 0) or round to 0
   (below the last bit even with the largest shift) are counted too (``codebook_saturated``,
   ``codebook_zeroed``: lossy, ``eie compress`` warns); a layer whose every entry rounds to 0
   would ignore its input, and :func:`compress_model` refuses it (:class:`EieError`).
4. A :class:`~eie.sw.encode.QuantLayer` with ReLU as the model says.

:func:`compress_model` runs every layer, builds the image (:func:`eie.sw.encode.build_image`,
capacity checked) and adds to each layer's ``stats`` the pruning/sharing facts and the storage
accounting of :func:`storage_report` (Deep Compression's ratio with and without Huffman coding;
see ``docs/compression.md``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .encode import QuantLayer, build_image
from ..common.errors import EieError
from ..hw.eie.config import MAX_PE
from .fixedpoint import INT16_MAX, INT16_MIN, acc_w_frac_limit, choose_w_frac, quantize
from .huffman import huffman_stats
from .image import Image
from .model_io import FloatLayer, FloatModel, validate_layers
from .prune import check_density, prune
from .share import INIT_METHODS, MAX_CENTROIDS, share

__all__ = [
    "CODEBOOK_BITS",
    "CompressConfig",
    "LayerCompression",
    "CompressResult",
    "compress_layer",
    "compress_model",
    "storage_report",
    "add_storage_stats",
    "model_totals",
]

#: A codebook is 16 entries of 16 bits.
CODEBOOK_BITS = 16 * 16


#: Calibration samples the placement looks at (the first ones of a larger set).
MAX_CALIBRATION = 1000


@dataclass
class CompressConfig:
    """Options of :func:`compress_model` (the ``eie compress`` flags).

    ``density`` is one fraction for every layer or one per layer; ``prune_std`` the quality
    factor of the std rule; give at most one of them (neither: keep every nonzero weight).
    Depths (per PE: pointers, 64-bit sparse-matrix words, activations, bias slots) are checked
    when given. ``balance`` places each layer's rows so that every PE holds about the same
    number of entries (:mod:`eie.sw.placement`); False keeps the plain interleave
    (``--no-balance``). ``calibration`` (``--calibrate``): inputs the placement also balances
    each sample's work on.
    """

    n_pe: int
    density: float | Sequence[float] | None = None
    prune_std: float | None = None
    n_centroids: int = MAX_CENTROIDS
    init: str = "linear"
    act_frac: int = 8
    acc_bits: int = 32
    ptr_depth: int | None = None
    spmat_depth: int | None = None
    act_depth: int | None = None
    bias_depth: int | None = None
    balance: bool = True
    #: float inputs ``(samples, n_in)`` the placement evens the PEs' work on (e.g. training
    #: data; at most :data:`MAX_CALIBRATION` samples are used), or None
    calibration: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.n_pe, (int, np.integer)) or isinstance(self.n_pe, bool) or self.n_pe < 1:
            raise EieError(f"number of PEs {self.n_pe!r} must be an integer >= 1 (--pes)")
        if self.n_pe > MAX_PE:
            raise EieError(f"number of PEs {self.n_pe} is more than the accelerator takes "
                           f"(1..{MAX_PE}; --pes)")
        if self.density is not None and self.prune_std is not None:
            raise EieError("give at most one of --density and --prune-std")
        if isinstance(self.density, (str, bytes)):
            raise EieError(f"density {self.density!r} is text: give a number in (0, 1] or a "
                           "list of them, one per layer")
        if self.density is not None:
            ds = ([self.density] if isinstance(self.density, (int, float, np.floating,
                                                              np.integer))
                  else list(self.density))
            for i, d in enumerate(ds):
                check_density(d, "density" if len(ds) == 1 else f"density of layer {i}")
        if isinstance(self.calibration, (str, bytes, os.PathLike)):
            raise EieError(f"calibration {self.calibration!r} is a path: give the inputs "
                           "themselves, e.g. np.load(path) (float, (samples, n_in))")
        if self.init not in INIT_METHODS:
            raise EieError(f"k-means init {self.init!r} is not one of {', '.join(INIT_METHODS)}")
        if not isinstance(self.n_centroids, (int, np.integer)) or not 1 <= self.n_centroids <= MAX_CENTROIDS:
            raise EieError(f"number of centroids {self.n_centroids!r} is outside 1..{MAX_CENTROIDS} "
                           "(16 codebook entries, entry 0 is the fixed zero)")
        if not isinstance(self.act_frac, (int, np.integer)) or not 0 <= self.act_frac <= 15:
            raise EieError(f"act_frac {self.act_frac!r} is outside 0..15 (fraction bits of int16 "
                           "activations)")
        if not isinstance(self.acc_bits, (int, np.integer)) or not 16 <= self.acc_bits <= 64:
            raise EieError(f"acc_bits {self.acc_bits!r} is outside 16..64")
        if self.prune_std is not None:
            q = self.prune_std
            if not isinstance(q, (int, float, np.floating)) or not np.isfinite(q) or q < 0:
                raise EieError(f"prune quality {q!r} must be a finite number >= 0 "
                               "(threshold = quality x std)")

    def layer_density(self, l: int, n_layers: int) -> float | None:
        """The density of layer ``l`` (None when not pruning by density)."""
        if self.density is None:
            return None
        if isinstance(self.density, (int, float, np.floating, np.integer)):
            return check_density(self.density)
        ds = list(self.density)
        if len(ds) == 1:
            return check_density(ds[0])
        if len(ds) != n_layers:
            raise EieError(f"{len(ds)} densities given for a model of {n_layers} layers "
                           "(give one, or one per layer)")
        return check_density(ds[l], f"density of layer {l}")


@dataclass
class LayerCompression:
    """One compressed layer and how it got there."""

    quant: QuantLayer
    centroids: np.ndarray          # float centroids (sorted) before fixed point
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompressResult:
    """The image, the per-layer results and model-wide totals (see :func:`model_totals`)."""

    image: Image
    layers: list[LayerCompression]
    totals: dict[str, Any]


def compress_layer(
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    relu: bool = True,
    *,
    density: float | None = None,
    prune_std: float | None = None,
    n_centroids: int = MAX_CENTROIDS,
    init: str = "linear",
    act_frac: int = 8,
    acc_bits: int = 32,
    timings: dict[str, float] | None = None,
) -> LayerCompression:
    """Prune, share and quantise one float layer ``weight`` (n_out, n_in) to a QuantLayer for an
    accumulator of ``acc_bits`` (which bounds the weight shift: :func:`acc_w_frac_limit`).

    ``timings``, when given, receives the seconds spent in ``prune``, ``share`` and ``quantize``.
    """
    t0 = time.perf_counter()
    w = np.asarray(weight)
    if not np.issubdtype(w.dtype, np.floating):
        w = w.astype(np.float64)
    if density is not None or prune_std is not None:
        pr = prune(w, density=density, std_quality=prune_std)
        mask, threshold, rule = pr.mask, pr.threshold, ("density" if density is not None else "std")
    else:
        mask, threshold, rule = None, 0.0, "nonzero"
    t1 = time.perf_counter()
    sh = share(w, mask, n_centroids, init=init)
    del mask
    t2 = time.perf_counter()
    cents = sh.centroids
    w_frac = min(choose_w_frac(cents), acc_w_frac_limit(acc_bits))
    codebook = np.zeros(16, dtype=np.int16)
    codebook[1:1 + cents.size] = quantize(cents, w_frac)
    # a centroid beyond int16 even with w_frac 0 saturates; one below the last bit becomes 0
    scaled_cents = np.rint(np.ldexp(np.asarray(cents, dtype=np.float64), int(w_frac)))
    codebook_saturated = int(np.count_nonzero((scaled_cents < INT16_MIN)
                                              | (scaled_cents > INT16_MAX)))
    codebook_zeroed = int(np.count_nonzero((scaled_cents == 0) & (np.asarray(cents) != 0)))
    qbias = None
    bias_saturated = 0
    if bias is not None:
        b = np.asarray(bias, dtype=np.float64)
        qbias = quantize(b, act_frac)
        scaled = np.rint(np.ldexp(b, act_frac))
        bias_saturated = int(np.count_nonzero((scaled < INT16_MIN) | (scaled > INT16_MAX)))
    quant = QuantLayer(codes=sh.codes, codebook=codebook, w_frac=int(w_frac), bias=qbias,
                       relu=bool(relu))
    kept = int(np.count_nonzero(sh.codes))
    if timings is not None:
        timings.update(prune=t1 - t0, share=t2 - t1, quantize=time.perf_counter() - t2)
    cb_err = np.abs(np.ldexp(codebook[1:1 + cents.size].astype(np.float64), -int(w_frac)) - cents)
    info = {
        "prune_rule": rule,
        "prune_threshold": float(threshold),
        "kept_weights": kept,
        "kept_fraction": kept / w.size,
        "centroids": int(cents.size),
        "kmeans_init": init,
        "kmeans_iterations": int(sh.iterations),
        "centroids_float": [float(c) for c in cents],
        "codebook_max_error": float(cb_err.max()) if cb_err.size else 0.0,
        "bias_saturated": bias_saturated,
        "codebook_saturated": codebook_saturated,
        "codebook_zeroed": codebook_zeroed,
    }
    if codebook_saturated or codebook_zeroed:
        # the layer's range, for the warning to tell an outlier from a scale (computed only
        # for such a layer: a median of every kept weight is not free on a large one)
        kept_abs = np.abs(np.asarray(w[sh.codes != 0], dtype=np.float64))
        if kept_abs.size:
            info["kept_abs_max"] = float(kept_abs.max())
            info["kept_abs_median"] = float(np.median(kept_abs))
    return LayerCompression(quant=quant, centroids=cents, info=info)


def storage_report(n_in: int, n_out: int, n_pe: int, entries_per_pe: Sequence[np.ndarray]) -> dict[str, Any]:
    """Deep Compression's storage accounting of one layer, from the per-PE entry bytes.

    Counted: 4-bit codes and 4-bit relative indices of every entry (padding included), ``n_in + 1``
    pointers per PE of ``pointer_bits = bit_length(largest PE's entry count)`` bits, one codebook
    of 16 x 16 bits. With Huffman: the codes and the indices each Huffman-coded with one table per
    layer (the table itself counted: 4 bits per symbol length, 16 symbols). Biases are not counted
    (neither in the dense baseline). Dense baseline: ``n_out x n_in x 32`` bits.
    """
    entries = np.concatenate([np.asarray(e, dtype=np.uint8) for e in entries_per_pe]) \
        if entries_per_pe else np.zeros(0, np.uint8)
    n_entries = int(entries.size)
    biggest = max((int(np.size(e)) for e in entries_per_pe), default=0)
    pointer_bits = max(1, biggest.bit_length())
    pointer_total = n_pe * (n_in + 1) * pointer_bits
    hc = huffman_stats(entries & 0xF, 16, 4)
    hz = huffman_stats(entries >> 4, 16, 4)
    fixed = hc.fixed_bits + hz.fixed_bits + pointer_total + CODEBOOK_BITS
    huff = hc.huffman_bits + hz.huffman_bits + hc.table_bits + hz.table_bits + pointer_total + CODEBOOK_BITS
    dense = n_out * n_in * 32
    return {
        "dense_bits": dense,
        "entries": n_entries,
        "code_bits": hc.fixed_bits,
        "index_bits": hz.fixed_bits,
        "pointer_bits_each": pointer_bits,
        "pointer_bits": pointer_total,
        "codebook_bits": CODEBOOK_BITS,
        "total_bits": fixed,
        "huffman_code_bits": hc.huffman_bits,
        "huffman_index_bits": hz.huffman_bits,
        "huffman_table_bits": hc.table_bits + hz.table_bits,
        "total_bits_huffman": huff,
        "ratio": dense / fixed if fixed else 0.0,
        "ratio_huffman": dense / huff if huff else 0.0,
        "bits_per_weight": fixed / max(1, n_entries),
        "huffman_codes": hc.as_dict(),
        "huffman_indices": hz.as_dict(),
    }


def add_storage_stats(image: Image) -> None:
    """Add ``stats["storage"]`` (see :func:`storage_report`) to every layer of ``image``."""
    for l, d in enumerate(image.layers):
        ent = [image.layer_entries(l, k) for k in range(image.n_pe)]
        d.stats["storage"] = storage_report(d.n_in, d.n_out, image.n_pe, ent)


def model_totals(image: Image) -> dict[str, Any]:
    """Model-wide sums of the layers' storage statistics and the overall ratios."""
    keys = ("dense_bits", "entries", "total_bits", "total_bits_huffman", "pointer_bits",
            "code_bits", "index_bits", "huffman_code_bits", "huffman_index_bits")
    tot: dict[str, Any] = {k: 0 for k in keys}
    weights = nonzeros = 0
    for d in image.layers:
        s = d.stats.get("storage")
        if s is None:
            continue
        for k in keys:
            tot[k] += s[k]
        weights += d.n_in * d.n_out
        nonzeros += int(d.stats.get("nonzeros", 0))
    tot["weights"] = weights
    tot["nonzeros"] = nonzeros
    tot["density"] = nonzeros / weights if weights else 0.0
    tot["ratio"] = tot["dense_bits"] / tot["total_bits"] if tot["total_bits"] else 0.0
    tot["ratio_huffman"] = (tot["dense_bits"] / tot["total_bits_huffman"]
                            if tot["total_bits_huffman"] else 0.0)
    return tot


def compress_model(model: FloatModel | Sequence[FloatLayer], config: CompressConfig,
                   progress: Callable[[int, int], None] | None = None) -> CompressResult:
    """Compress every layer of ``model`` and lay them out in one image (see the module doc).

    ``progress(done, total)`` (optional) is called after each layer is compressed.
    """
    if not isinstance(config, CompressConfig):
        raise EieError(f"config is {type(config).__name__}, not a CompressConfig (e.g. "
                       "CompressConfig(n_pe=16, density=0.1))")
    if isinstance(model, (str, bytes, os.PathLike)):
        raise EieError(f"model {model!r} is a path: load it first (eie.sw.model_io.load_model), "
                       "or give a FloatModel or a list of FloatLayer")
    layers = model.layers if isinstance(model, FloatModel) else list(model)
    source = model.source if isinstance(model, FloatModel) else "model"
    for l, layer in enumerate(layers):
        if not isinstance(layer, FloatLayer):
            raise EieError(f"{source}: layer {l} is {type(layer).__name__}, not a FloatLayer "
                           "(FloatLayer(weight, bias=None, relu=True), weight (n_out, n_in))")
    validate_layers(layers, source=source)
    n = len(layers)
    results = []
    for l, layer in enumerate(layers):
        results.append(compress_layer(
            layer.weight, layer.bias, layer.relu,
            density=config.layer_density(l, n), prune_std=config.prune_std,
            n_centroids=config.n_centroids, init=config.init, act_frac=config.act_frac,
            acc_bits=config.acc_bits))
        if progress is not None:
            progress(l + 1, n)
        info = results[-1].info
        if info["kept_weights"] and info["codebook_zeroed"] == info["centroids"]:
            w = np.abs(np.asarray(layer.weight, dtype=np.float64))
            raise EieError(
                f"layer {l}: every weight is below int16 fixed point's smallest step even with "
                f"the largest weight shift a {config.acc_bits}-bit accumulator allows "
                f"({acc_w_frac_limit(config.acc_bits)}: |w| <= {w.max():.3g}, so every codebook "
                "entry rounds to 0 and the layer would ignore its input); scale the layer's "
                "weights up (and the next layer's down), raise --acc-bits, or prune it away")
    calibration = None
    if config.calibration is not None:
        calibration = quantize(np.asarray(config.calibration, dtype=np.float64)[:MAX_CALIBRATION],
                               config.act_frac)
    image = build_image([r.quant for r in results], config.n_pe, config.act_frac, config.acc_bits,
                        ptr_depth=config.ptr_depth, spmat_depth=config.spmat_depth,
                        act_depth=config.act_depth, bias_depth=config.bias_depth,
                        balance=config.balance, calibration=calibration)
    for d, r in zip(image.layers, results):
        d.stats["compression"] = dict(r.info)
    add_storage_stats(image)
    return CompressResult(image=image, layers=results, totals=model_totals(image))
