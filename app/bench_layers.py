"""Synthetic benchmark layers: the nine fully connected layers of EIE's Table III, rebuilt from
their sizes and densities.

EIE (Han et al., ISCA 2016, Tables III and IV) measured nine layers of AlexNet, VGG-16 and
NeuralTalk. Their trained weights are not public in compressed form, so the benchmark builds, per
layer and seed:

* **weights** of the layer's shape: i.i.d. Gaussian, magnitude-pruned to the layer's weight density
  (the ``k = round(density * size)`` largest magnitudes stay, ties at the threshold included, the
  rule of :func:`eie.sw.prune.prune`), shared to 15 centroids plus the zero with the project's
  k-means (:func:`eie.sw.share.kmeans_1d`, linear initialisation) and quantised like
  :func:`eie.sw.compress.compress_layer` (per-layer ``w_frac`` from
  :func:`eie.sw.fixedpoint.choose_w_frac`, at most what a 32-bit accumulator leaves room for,
  :func:`eie.sw.fixedpoint.acc_w_frac_limit`). The result equals
  ``compress_layer(gaussian_weights(...), density=...)`` bit for bit, but is built sparse-aware:
  the Gaussian is drawn in row blocks and only the candidates above a safe lower threshold are
  kept, so the 25088 x 4096 VGG-6 layer needs about its dense code matrix (100 MB) and never a
  dense float copy;
* **an input** with the layer's activation density: exactly ``round(density * n_in)`` nonzero
  activations at uniformly random positions, each the magnitude of a Gaussian (ReLU of a Gaussian,
  conditioned on being positive) in the activation format (``act_frac`` fraction bits, at least
  1 LSB so it stays nonzero). NeuralTalk's layers (density 1.0, LSTM/embedding inputs) take
  signed values.

Everything is fixed by ``seed`` and the layer's name (a layer's data does not depend on which other
layers are selected). ``scale`` shrinks ``n_in`` and ``n_out`` for quick runs and tests.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Sequence

import numpy as np

from ..sw.encode import QuantLayer
from ..common.errors import EieError
from ..sw.fixedpoint import INT16_MAX, acc_w_frac_limit, choose_w_frac, quantize
from ..sw.share import MAX_CENTROIDS, kmeans_1d

__all__ = [
    "LayerSpec",
    "SyntheticLayer",
    "TABLE3",
    "TABLE3_SOURCE",
    "EIE_CLOCK_MHZ",
    "EIE_N_PE",
    "table3_specs",
    "parse_layer_spec",
    "parse_layers",
    "scale_spec",
    "layer_seeds",
    "gaussian_weights",
    "weight_std",
    "synth_weights",
    "synth_input",
    "synth_layer",
]

#: EIE's clock and PE count for the published times.
EIE_CLOCK_MHZ = 800
EIE_N_PE = 64
TABLE3_SOURCE = ("Han et al., EIE: Efficient Inference Engine on Compressed Deep Neural Network, "
                 "ISCA 2016 (arXiv:1602.01528), Tables III and IV; 64 PEs, 800 MHz")

#: Rows of Gaussian drawn at once (about this many elements a block).
_BLOCK_ELEMS = 1 << 22


@dataclass(frozen=True)
class LayerSpec:
    """One benchmark layer: ``name``, shape (``n_in`` inputs, ``n_out`` outputs), the fraction of
    weights kept (``weight_density``) and of nonzero input activations (``act_density``), EIE's
    published times in microseconds at 64 PEs / 800 MHz (None for a custom layer), whether the
    input is signed (NeuralTalk) and whether the layer applies ReLU."""

    name: str
    n_in: int
    n_out: int
    weight_density: float
    act_density: float
    eie_actual_us: float | None = None
    eie_theoretical_us: float | None = None
    signed_input: bool = False
    relu: bool = True

    def __post_init__(self) -> None:
        if not self.name or not re.fullmatch(r"[A-Za-z0-9_.+-]+", self.name):
            raise EieError(f"layer name {self.name!r} must be letters, digits and _ . + - only")
        for f, v in (("n_in", self.n_in), ("n_out", self.n_out)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 1 <= v <= 1 << 20:
                raise EieError(f"layer {self.name}: {f} = {v!r} must be an integer from 1 to "
                               f"{1 << 20}")
        if not 0.0 < self.weight_density <= 1.0:
            raise EieError(f"layer {self.name}: weight density {self.weight_density!r} must be in "
                           "(0, 1]")
        if not 0.0 <= self.act_density <= 1.0:
            raise EieError(f"layer {self.name}: activation density {self.act_density!r} must be "
                           "in [0, 1]")
        for f in ("eie_actual_us", "eie_theoretical_us"):
            v = getattr(self, f)
            if v is not None and not v > 0:
                raise EieError(f"layer {self.name}: {f} = {v!r} must be a positive time in us")

    @property
    def has_eie(self) -> bool:
        """Whether EIE's published times apply (full-size Table III layers only)."""
        return self.eie_actual_us is not None and self.eie_theoretical_us is not None

    @property
    def eie_actual_cycles(self) -> float | None:
        return None if self.eie_actual_us is None else self.eie_actual_us * EIE_CLOCK_MHZ

    @property
    def eie_theoretical_cycles(self) -> float | None:
        return None if self.eie_theoretical_us is None else self.eie_theoretical_us * EIE_CLOCK_MHZ


def _t3(name, n_in, n_out, wd, ad, actual, theo, signed=False, relu=True) -> LayerSpec:
    return LayerSpec(name, n_in, n_out, wd, ad, actual, theo, signed, relu)


#: EIE's Table III layers (sizes and densities from its Table IV, times from its Table III).
#: The same numbers as ``shared/reference/eie_isca2016_benchmarks.json``, kept here so the package
#: needs no file outside itself. The classifier layers (Alex-8, VGG-8) have no ReLU.
TABLE3: tuple[LayerSpec, ...] = (
    _t3("Alex-6", 9216, 4096, 0.09, 0.351, 30.3, 28.1),
    _t3("Alex-7", 4096, 4096, 0.09, 0.353, 12.2, 11.7),
    _t3("Alex-8", 4096, 1000, 0.25, 0.375, 9.9, 8.9, relu=False),
    _t3("VGG-6", 25088, 4096, 0.04, 0.183, 34.4, 28.1),
    _t3("VGG-7", 4096, 4096, 0.04, 0.375, 8.7, 7.9),
    _t3("VGG-8", 4096, 1000, 0.23, 0.411, 8.4, 7.3, relu=False),
    _t3("NT-We", 4096, 600, 0.10, 1.0, 8.0, 5.2, signed=True),
    _t3("NT-Wd", 600, 8791, 0.11, 1.0, 13.9, 13.0, signed=True),
    _t3("NT-LSTM", 1201, 2400, 0.10, 1.0, 7.5, 6.5, signed=True),
)


def table3_specs() -> list[LayerSpec]:
    """The nine Table III layers, in the paper's order."""
    return list(TABLE3)


_CUSTOM = re.compile(r"^(?P<name>[A-Za-z0-9_.+-]+):(?P<n_in>\d+)x(?P<n_out>\d+):(?P<wd>[0-9.eE+-]+)"
                     r":(?P<ad>[0-9.eE+-]+)(?::(?P<act>[0-9.eE+-]+):(?P<theo>[0-9.eE+-]+))?"
                     r"(?P<flags>(?::(?:signed|norelu))*)$")

_CUSTOM_FORM = "NAME:N_INxN_OUT:WEIGHT_DENSITY:ACT_DENSITY[:EIE_ACTUAL_US:EIE_THEORETICAL_US][:signed][:norelu]"


def parse_layer_spec(text: str) -> LayerSpec:
    """One ``--layers`` item: a Table III name (``Alex-6``, case-insensitive) or a custom layer
    ``NAME:N_INxN_OUT:WEIGHT_DENSITY:ACT_DENSITY[:EIE_ACTUAL_US:EIE_THEORETICAL_US][:signed][:norelu]``,
    e.g. ``tiny:256x128:0.1:0.4``."""
    t = text.strip()
    for spec in TABLE3:
        if spec.name.lower() == t.lower():
            return spec
    m = _CUSTOM.match(t)
    if not m:
        names = ", ".join(s.name for s in TABLE3)
        raise EieError(f"layer {text!r} is neither a Table III layer ({names}) nor a custom layer "
                       f"{_CUSTOM_FORM}")
    try:
        wd, ad = float(m["wd"]), float(m["ad"])
        act = float(m["act"]) if m["act"] else None
        theo = float(m["theo"]) if m["theo"] else None
    except ValueError:
        raise EieError(f"layer {text!r}: densities and times must be numbers ({_CUSTOM_FORM})") \
            from None
    flags = set(filter(None, (m["flags"] or "").split(":")))
    return LayerSpec(m["name"], int(m["n_in"]), int(m["n_out"]), wd, ad, act, theo,
                     signed_input="signed" in flags, relu="norelu" not in flags)


def parse_layers(items: Sequence[str] | str | None) -> list[LayerSpec]:
    """``--layers`` values (each may hold several comma-separated items) to specs; None or
    ``all`` gives the nine Table III layers. Duplicate names raise :class:`EieError`."""
    if items is None:
        return table3_specs()
    if isinstance(items, str):
        items = [items]
    parts = [p for item in items for p in item.split(",") if p.strip()]
    if not parts:
        raise EieError("--layers is empty; give Table III names (e.g. Alex-6,NT-We), custom layers "
                       f"({_CUSTOM_FORM}) or 'all'")
    specs: list[LayerSpec] = []
    for p in parts:
        if p.strip().lower() == "all":
            specs.extend(TABLE3)
        else:
            specs.append(parse_layer_spec(p))
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise EieError(f"layer {s.name} is listed twice in --layers")
        seen.add(s.name)
    return specs


def scale_spec(spec: LayerSpec, scale: float) -> LayerSpec:
    """``spec`` with ``n_in`` and ``n_out`` multiplied by ``scale`` in (0, 1] (rounded, at least 1).
    A scaled layer is not the paper's, so EIE's times are dropped (``has_eie`` is False)."""
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0.0 < scale <= 1.0:
        raise EieError(f"--scale {scale!r} must be in (0, 1] (1 = the paper's layer sizes)")
    if scale == 1.0:
        return spec
    return replace(spec, n_in=max(1, round(spec.n_in * scale)),
                   n_out=max(1, round(spec.n_out * scale)),
                   eie_actual_us=None, eie_theoretical_us=None)


def layer_seeds(name: str, seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """Independent seed sequences for a layer's weights and its input, from ``seed`` and the
    layer's name (so a layer's data is the same whichever layers run beside it)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise EieError(f"--seed {seed!r} must be a non-negative integer")
    ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())])
    w, x = ss.spawn(2)
    return w, x


def weight_std(spec: LayerSpec) -> float:
    """Standard deviation of the unpruned Gaussian: ``1 / sqrt(expected products per output)``,
    so outputs land mid-range in int16 rather than all saturating."""
    terms = spec.n_in * spec.weight_density * max(spec.act_density, 1.0 / spec.n_in)
    return 1.0 / float(np.sqrt(max(1.0, terms)))


def _gaussian_blocks(spec: LayerSpec, seed: int):
    """Yield ``(row0, block)`` of the layer's float32 Gaussian, row block by row block; the
    blocks concatenate to :func:`gaussian_weights`. One generator, drawn in order."""
    rng = np.random.default_rng(layer_seeds(spec.name, seed)[0])
    rows = max(1, _BLOCK_ELEMS // spec.n_in)
    std = np.float32(weight_std(spec))
    for r0 in range(0, spec.n_out, rows):
        r1 = min(spec.n_out, r0 + rows)
        block = rng.standard_normal((r1 - r0, spec.n_in), dtype=np.float32)
        block *= std
        yield r0, block


def gaussian_weights(spec: LayerSpec, seed: int = 0) -> np.ndarray:
    """The dense float32 Gaussian ``(n_out, n_in)`` that :func:`synth_weights` prunes (for tests
    and small layers: the dense reference path through :func:`eie.sw.compress.compress_layer`)."""
    out = np.empty((spec.n_out, spec.n_in), dtype=np.float32)
    for r0, block in _gaussian_blocks(spec, seed):
        out[r0:r0 + block.shape[0]] = block
    return out


def _candidates(spec: LayerSpec, seed: int, k: int, slack: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions (int64, increasing) and float32 values of the weights whose magnitude is at
    least a threshold set so that about ``k * slack`` (plus a few standard deviations) pass."""
    n = spec.n_out * spec.n_in
    q = min(1.0, (k * slack + 8.0 * np.sqrt(k) + 64.0) / n)
    t_lo = 0.0 if q >= 1.0 else np.float32(NormalDist().inv_cdf(1.0 - q / 2.0) * weight_std(spec))
    pos: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for r0, block in _gaussian_blocks(spec, seed):
        flat = block.reshape(-1)
        idx = np.flatnonzero(np.abs(flat) >= t_lo)
        pos.append(idx.astype(np.int64) + r0 * spec.n_in)
        val.append(flat[idx])
    return np.concatenate(pos), np.concatenate(val)


def synth_weights(spec: LayerSpec, seed: int = 0, acc_bits: int = 32) -> QuantLayer:
    """The layer's magnitude-pruned, weight-shared, quantised weights as a :class:`QuantLayer`
    (no bias; ReLU as the spec says) for an ``acc_bits`` accumulator. Equal to
    ``compress_layer(gaussian_weights(spec, seed), density=spec.weight_density,
    acc_bits=acc_bits)`` but with memory of the order of the kept weights plus the uint8 code
    matrix."""
    n = spec.n_out * spec.n_in
    k = max(1, int(round(spec.weight_density * n)))
    slack = 1.02
    while True:
        pos, val = _candidates(spec, seed, k, slack)
        if pos.size >= k:
            break
        slack *= 1.5            # the candidate band fell short (astronomically rare): widen it
    mags = np.abs(val)
    if k < mags.size:
        t = np.partition(mags, mags.size - k)[mags.size - k]     # the k-th largest magnitude
    else:
        nz = mags[mags > 0]
        t = nz.min() if nz.size else np.float32(0)
    keep = (mags >= t) if t > 0 else (val != 0)
    pos, val = pos[keep], val[keep]
    del mags, keep
    centroids, bounds, _ = kmeans_1d(np.sort(val), MAX_CENTROIDS, init="linear", presorted=True)
    code_vals = (np.searchsorted(bounds, val, side="right") + 1).astype(np.uint8)
    codes = np.zeros((spec.n_out, spec.n_in), dtype=np.uint8)
    codes.reshape(-1)[pos] = code_vals
    w_frac = min(choose_w_frac(centroids), acc_w_frac_limit(acc_bits))
    codebook = np.zeros(16, dtype=np.int16)
    codebook[1:1 + centroids.size] = quantize(centroids, w_frac)
    return QuantLayer(codes=codes, codebook=codebook, w_frac=int(w_frac), bias=None,
                      relu=spec.relu)


def synth_input(spec: LayerSpec, seed: int = 0, act_frac: int = 8) -> np.ndarray:
    """int16 ``(n_in,)``: exactly ``round(act_density * n_in)`` nonzero activations at uniformly
    random positions, magnitudes of a Gaussian in ``act_frac`` fixed point (at least 1 LSB),
    signed for layers whose spec says so."""
    if not isinstance(act_frac, (int, np.integer)) or not 0 <= act_frac <= 15:
        raise EieError(f"act_frac {act_frac!r} must be an integer in [0, 15]")
    rng = np.random.default_rng(layer_seeds(spec.name, seed)[1])
    m = int(round(spec.act_density * spec.n_in))
    if spec.act_density > 0:
        m = max(1, m)
    where = np.sort(rng.choice(spec.n_in, size=m, replace=False))
    mag = np.abs(rng.standard_normal(m))
    vals = np.clip(quantize(mag, int(act_frac)).astype(np.int64), 1, INT16_MAX)
    if spec.signed_input:
        vals = np.where(rng.random(m) < 0.5, -vals, vals)
    x = np.zeros(spec.n_in, dtype=np.int16)
    x[where] = vals
    return x


@dataclass(eq=False)
class SyntheticLayer:
    """A benchmark layer: its spec, the compressed weights and the input."""

    spec: LayerSpec
    quant: QuantLayer
    x: np.ndarray
    seed: int

    @property
    def weight_density(self) -> float:
        """Measured fraction of nonzero weights."""
        return self.quant.nonzeros / (self.spec.n_in * self.spec.n_out)

    @property
    def act_density(self) -> float:
        """Measured fraction of nonzero input activations."""
        return int(np.count_nonzero(self.x)) / self.spec.n_in


def synth_layer(spec: LayerSpec, seed: int = 0, act_frac: int = 8) -> SyntheticLayer:
    """Weights and input of one benchmark layer (see the module docstring)."""
    return SyntheticLayer(spec=spec, quant=synth_weights(spec, seed),
                          x=synth_input(spec, seed, act_frac), seed=int(seed))
