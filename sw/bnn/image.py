"""The BNN image directory: what ``eie bnn compile`` writes and the core loads.

Layout (all files ``$readmemh`` text, one memory word a line, hex, most significant digit first):

- ``manifest.json``: ``format`` ("eie-bnn-image"), ``version`` (1; 2 when the output layer is
  thresholded), ``shape``, ``folding``
  (``"SIMD:PE,..."``), ``ii`` (analytic initiation interval) and ``layers``, each with ``n_in``,
  ``n_out``, ``simd``, ``pe``, ``sf``, ``nf``, ``hidden``, ``threshold_width``, the file names,
  and compile statistics (flipped and constant neurons).
- ``l{l}_pe{p}_w.hex``: the weight memory of PE ``p`` of layer ``l``: ``nf * sf`` words of
  ``simd`` bits. Word ``nf_i * sf + sf_i`` holds the weights of neuron ``nf_i * pe + p`` for inputs
  ``sf_i * simd + b`` at bit ``b`` (1 means +1). Bits of padding inputs and padding neurons are 0;
  the core masks them, so their value never matters.
- ``l{l}_pe{p}_thr.hex`` (hidden layers, and the output layer when it is thresholded): ``nf``
  thresholds of ``threshold_width`` bits; word ``nf_i`` is neuron ``nf_i * pe + p``'s ``T``: the
  neuron outputs 1 when ``matches >= T`` (``T = 0``: always 1; ``T = n_in + 1``: always 0).
  Padding neurons hold 0.

A thresholded output layer (version 2): its layer entry says ``"hidden": false, "thresholded":
true`` and lists its threshold files like a hidden layer's; the network then outputs bits. An
image whose output layer outputs dots is written as version 1, exactly as before, and both
versions are read.

Ternary (W2) layers (version 3): every layer entry says ``"weight_bits"`` (1 or 2); a W2 layer
lists ``mask_files``, ``l{l}_pe{p}_mask.hex``, laid out as the weight files (bit 1: the weight
is nonzero), and its weight files hold the signs (0 where the mask is 0; the reader clears any
sign bit under a 0 mask, as the hardware ignores it). An image without a W2 layer is written as
version 1 or 2, exactly as before.

k-bit activations (version 4, docs/ARCHITECTURE.md "k-bit activations"): every layer entry says
``"weight_bits"`` and ``"act_bits"`` (its output precision 1..4; the output layer's 1), and
``"in_bits"``/``"out_bits"`` when a precision is not 1; ``"ii"`` counts the bit planes
(``nf * sf * in_bits``) of a layer that takes them serially; a layer that takes them in
parallel says ``"consume": "parallel"`` (absent: ``"serial"``) and its ``"ii"`` is ``nf * sf``
(the core the image is built into gets these modes; the weight and threshold files are the
same in either mode). A layer fed by k-bit activations stores its thresholds (on the dot)
biased by ``K * L``; a layer with k-bit outputs has ``2**k - 1`` thresholds a neuron, packed in
one word (``threshold_width`` bits each, threshold ``j`` at bits ``[w*(j+1)-1 : w*j]``), so its
threshold files hold words of ``(2**k - 1) * threshold_width`` bits. ``BnnImage.thresholds`` hold
them unbiased, ``(n_out, 2**k - 1)``. An image without a k-bit layer is written exactly as before.

XNOR-Net output scales (version 5): the output layer's entry may say ``"output_scale"``, a
list of ``n_out`` finite numbers > 0 (float64, written with ``repr`` so they read back
exactly): the logits are ``output_scale[i] * dot[i]`` and the class is their argmax. The core
is not involved (it outputs the dots); the host scales them. Only an output layer of dots has
one. An image without it is written exactly as before.

The weights in the image are the *folded* ones: a neuron whose batch-norm scale is negative has
its weights inverted, so that one comparison direction serves all.

:func:`read_image` checks as strictly as the EIE image's reader, with the same code
(:mod:`eie.sw.imagefile`): the manifest's keys and types, the shape and folding against every
per-layer figure, file names confined to the directory, every hex file's words (count, width,
line-numbered errors) and thresholds at most ``n_in + 1``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...common import outputs
from ...common.atomic import atomic_dir
from ...common.errors import EieError
from ...hw.bnn.folding import (CONSUME_MODES, LayerFold, fold_act_bits, folding_text,
                                make_folding, parse_folding, with_act_bits)
from ...hw.bnn.words import threshold_fields, threshold_words, weight_words
from ..imagefile import (MANIFEST, MAX_LAYER_WEIGHTS, Fields, ImageDir, describe, plural,
                         write_hex)

__all__ = ["BnnImage", "InputConversion", "random_image", "random_thresholds", "image_files",
           "OWNER", "OWNER_KIND",
           "write_image", "read_image", "FORMAT", "VERSION"]

FORMAT = "eie-bnn-image"
#: The newest version this eie writes and reads: 5 (output scales), 4 (a layer with k-bit
#: activations), 3 (a ternary layer). Images without any of them are still written as
#: version 2 (a thresholded output layer) or 1, which older eie versions read.
VERSION = 5
VERSIONS = (1, 2, 3, 4, 5)


#: The largest finite float32: a threshold below every finite input (bit always 1; with
#: ``invert`` always 0).
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass
class InputConversion:
    """How a sample of the source graph's input becomes the core's input bits: what a QONNX
    graph does before its first layer (reshapes, transposes, elementwise ops, its input
    quantizer), recorded by ``eie bnn compile`` as the manifest's ``"input"`` so that ``eie bnn
    golden|run --graph-input`` apply it (docs/bnn.md, "Image directory").

    A sample is the graph input without its batch dimension (``sample_shape``), read as float32
    (the graph's arithmetic) and flattened in C order; bit ``i`` reads element ``order[i]``:

    - threshold rule (``levels`` None): ``bit = (x >= threshold[i]) != invert[i]``, exact on
      every finite float32 (the quantizer after monotone elementwise ops is a step in ``x``);
    - levels rule (an input annotated BIPOLAR/BINARY, no quantizer): ``x`` must be
      ``levels[0]`` or ``levels[1]``, ``bit = (x == levels[1]) != invert[i]``.
    """

    sample_shape: tuple[int, ...]
    order: np.ndarray                           # int64 (n_in,), a permutation
    threshold: np.ndarray | None                # float32 (n_in,); None with ``levels``
    invert: np.ndarray                          # bool (n_in,)
    levels: tuple[float, float] | None = None
    source: str = ""

    @property
    def n_in(self) -> int:
        return int(self.order.size)

    def bits(self, x, what: str = "input") -> np.ndarray:
        """A batch of graph inputs, ``(batch, *sample_shape)`` or ``(batch, n_in)``, as the
        core's input bits, uint8 ``(batch, n_in)``; anything else is one :class:`EieError`
        line naming ``what``."""
        x = np.asarray(x)
        per, n = tuple(self.sample_shape), self.n_in
        shown = ", ".join(map(str, per)) + ("," if len(per) == 1 else "")
        if x.dtype.kind not in "biuf":
            raise EieError(f"{what} has dtype {x.dtype}; the graph's input values are numbers")
        if x.ndim < 2 or (x.shape[1:] != per and x.shape[1:] != (n,)) or x.shape[0] < 1:
            raise EieError(f"{what} has shape {x.shape}; give a batch of the graph's samples, "
                           f"(batch, {', '.join(map(str, per))})"
                           + (f" or (batch, {n})" if per != (n,) else "")
                           + f" (one sample has shape ({shown}))")
        x = x.reshape(x.shape[0], n)
        with np.errstate(over="ignore"):        # beyond float32: inf, refused below
            xf = x.astype(np.float32)
        bad = ~np.isfinite(xf)
        if np.any(bad):
            b, i = np.argwhere(bad)[0]
            v = x[b, i].item()
            raise EieError(f"{what}: sample {b} element {i} is {v!r}"
                           + (", beyond float32 (the graph's arithmetic)" if np.isfinite(v)
                              else "") + "; the graph's input values must be finite")
        xs = xf[:, self.order]
        if self.levels is None:
            bit = xs >= self.threshold[None, :]
        else:
            lo, hi = (np.float32(v) for v in self.levels)
            off = (xs != lo) & (xs != hi)
            if np.any(off):
                b, i = np.argwhere(off)[0]
                raise EieError(f"{what}: sample {b} element {int(self.order[i])} is "
                               f"{float(xs[b, i])!r}; the graph's input is annotated to take "
                               f"only {float(lo):g} or {float(hi):g}")
            bit = xs == hi
        return (bit != self.invert[None, :]).astype(np.uint8)

    def same_as_binarize(self, thresh: float) -> bool:
        """Whether ``--binarize thresh`` (bit ``i`` = ``x[i] >= thresh``) is this conversion."""
        return (self.levels is None and np.array_equal(self.order, np.arange(self.n_in))
                and not np.any(self.invert) and float(np.float32(thresh)) == thresh
                and bool(np.all(self.threshold == np.float32(thresh))))

    def describe(self) -> str:
        """The rule in a few words, for messages."""
        x = "x[i]" if np.array_equal(self.order, np.arange(self.n_in)) else "x[order[i]]"
        if self.levels is not None:
            return f"bit i = {x} == {self.levels[1]:g}, {x} in {{{self.levels[0]:g}, " \
                   f"{self.levels[1]:g}}}"
        t, inv = np.unique(self.threshold), np.unique(self.invert)
        if t.size == 1 and inv.size == 1:
            if inv[0] and t[0] > -_F32_MAX:         # x < t is x <= the float32 below t
                below = np.nextafter(t[0], np.float32(-np.inf))
                return f"bit i = {x} <= {float(below):.9g} (float32)"
            return f"bit i = {x} >= {float(t[0]):.9g} (float32)"
        return f"bit i = {x} compared with a threshold of its own"

    def to_json(self) -> dict:
        out: dict = {}
        if self.source:
            out["from"] = self.source
        out["sample_shape"] = [int(v) for v in self.sample_shape]
        if not np.array_equal(self.order, np.arange(self.n_in)):
            out["order"] = [int(v) for v in self.order]
        if self.levels is not None:
            out["levels"] = [float(v) for v in self.levels]
        else:
            t = [float(v) for v in self.threshold]
            out["threshold"] = t[0] if len(set(t)) == 1 else t
        inv = [bool(v) for v in self.invert]
        out["invert"] = inv[0] if len(set(inv)) == 1 else inv
        return out


def _read_input_conversion(man: Fields, n_in: int) -> InputConversion | None:
    """The manifest's ``"input"`` (:class:`InputConversion`), checked; None when absent."""
    if "input" not in man:
        return None
    man.mapping("input")
    f = Fields(man.raw("input"), "input", man.image)
    per = tuple(f.integers("sample_shape", min_length=1, lo=1))
    size = int(np.prod(per, dtype=object))
    if size != n_in:
        raise f.error("sample_shape", f"is {list(per)}: {size} values a sample, but the network "
                                      f"takes {n_in} input bits (shape[0])")
    if "order" in f:
        order = f.integers("order", length=n_in, lo=0, hi=n_in - 1)
        if len(set(order)) != n_in:
            dup = next(v for v in order if order.count(v) > 1)
            raise f.error("order", f"names element {dup} twice; it must be a permutation of "
                                   f"0..{n_in - 1}")
        order = np.array(order, dtype=np.int64)
    else:
        order = np.arange(n_in, dtype=np.int64)

    def numbers(key, count, what):
        v = f.raw(key)
        items = v if isinstance(v, list) else [v]
        expected = f"{what}: a number or a list of {count} numbers (finite float32 values)"
        if isinstance(v, list) and len(v) != count:
            raise f._wrong(key, expected, v)
        for i, item in enumerate(items):
            ok = (not isinstance(item, bool) and isinstance(item, (int, float))
                  and np.isfinite(float(item)) and abs(float(item)) <= _F32_MAX
                  and float(np.float32(item)) == float(item))
            if not ok:
                raise f._wrong(key, expected, v, f" whose item {i} is {describe(item)}"
                               if isinstance(v, list) else "")
        return np.broadcast_to(np.array(items, dtype=np.float32), (count,)).copy()

    if ("threshold" in f) == ("levels" in f):
        raise f.error("threshold", "and 'input.levels': exactly one of the two must be given "
                                   "(a threshold per element, or the two values of an annotated "
                                   "input)")
    levels = threshold = None
    if "levels" in f:
        v = f.raw("levels")
        lv = numbers("levels", 2, "the two input values") if isinstance(v, list) else None
        if lv is None or lv[0] == lv[1]:
            raise f._wrong("levels", "a list of two different numbers", v)
        levels = (float(lv[0]), float(lv[1]))
    else:
        threshold = numbers("threshold", n_in, "the thresholds")
    v = f.raw("invert", False)
    inv = v if isinstance(v, list) else [v]
    if (isinstance(v, list) and len(v) != n_in) or not all(isinstance(b, bool) for b in inv):
        raise f._wrong("invert", f"true, false or a list of {n_in} of them", v)
    invert = np.broadcast_to(np.array(inv, dtype=bool), (n_in,)).copy()
    source = f.string("from", "")
    return InputConversion(per, order, threshold, invert, levels, source)


@dataclass
class BnnImage:
    """A compiled BNN: folded weight bits (n_out, n_in) per layer, integer thresholds per
    hidden layer (``thresholds[l]``, ``matches >= T``), and the folding. With one threshold
    array more than hidden layers (``len(thresholds) == len(weights)``) the output layer is
    thresholded too and the network outputs bits (:attr:`last_thresholded`). ``masks``: per
    layer ``None`` (binary, W1) or the nonzero-mask bits ``(n_out, n_in)`` of a ternary (W2)
    layer, whose ``weights`` are then its sign bits (0 under a 0 mask)."""

    folds: list[LayerFold]
    weights: list[np.ndarray]
    thresholds: list[np.ndarray]
    stats: list[dict] = field(default_factory=list)
    masks: list[np.ndarray | None] | None = None
    #: per layer the output activation precision 1..4 (the last 1); None: what the folds say
    #: (all 1 from :func:`make_folding`). The folds are given these precisions.
    act_bits: list[int] | None = None
    #: the output layer's per-class scale (float64 ``(n_classes,)``, XNOR-Net's ``alpha``):
    #: the logits are ``output_scale * dot``; None: the dots are the logits
    output_scale: np.ndarray | None = None
    #: how the source graph's input becomes the input bits (a QONNX graph's; the manifest's
    #: ``"input"``); None: the image takes bits (or ``--binarize``) only
    input_conversion: InputConversion | None = None

    def __post_init__(self):
        if self.act_bits is not None and len(self.act_bits):
            self.folds = with_act_bits(self.folds, self.act_bits)
        self.act_bits = fold_act_bits(self.folds)
        if self.masks is None or all(m is None for m in self.masks):
            self.masks = [None] * len(self.weights)
        else:
            self.masks = list(self.masks)
            self.weights = list(self.weights)
            for l, (w, m) in enumerate(zip(self.weights, self.masks)):
                if m is not None:
                    self.weights[l] = (np.asarray(w) & np.asarray(m)).astype(np.uint8)

    @property
    def weight_bits(self) -> list[int]:
        """Per layer 1 (binary) or 2 (ternary)."""
        return [1 if m is None else 2 for m in self.masks]

    @property
    def ternary(self) -> bool:
        return any(m is not None for m in self.masks)

    @property
    def quantized(self) -> bool:
        """Whether some layer has k-bit (k >= 2) activations."""
        return any(b != 1 for b in self.act_bits)

    @property
    def shape(self) -> list[int]:
        return [self.folds[0].n_in] + [f.n_out for f in self.folds]

    @property
    def n_classes(self) -> int:
        return self.folds[-1].n_out

    @property
    def last_thresholded(self) -> bool:
        """The output layer compares with thresholds and outputs bits (not dots)."""
        return len(self.thresholds) == len(self.weights)

    @property
    def version(self) -> int:
        """The manifest version :func:`write_image` writes for this image."""
        if self.output_scale is not None:
            return 5
        return 4 if self.quantized else 3 if self.ternary else 2 if self.last_thresholded else 1

    def refold(self, folds: list[LayerFold], consume=None) -> "BnnImage":
        """The same network under another folding of the same shape, its k-bit-fed layers
        taking their bit planes as ``consume`` asks (per layer ``serial``, ``parallel``,
        ``auto``; default ``auto``)."""
        return BnnImage(with_act_bits(folds, self.act_bits, consume), self.weights,
                        self.thresholds, self.stats, self.masks,
                        output_scale=self.output_scale, input_conversion=self.input_conversion)


def random_image(folds: list[LayerFold], rng: np.random.Generator, *,
                 last_thresholded: bool = False, weight_bits=None, act_bits=None) -> BnnImage:
    """Random weight bits and thresholds (mostly near ``n_in / 2``, some constant neurons) for
    testing hardware without a float model: outputs stay varied in every layer.
    ``last_thresholded``: the output layer gets thresholds too (it outputs bits).
    ``weight_bits`` (per layer 1 or 2): ternary layers get random masks too (about a third of
    the weights zero, some neurons with none or all nonzero), their thresholds near ``K' / 2``;
    without it the random draws are the binary image's, as they always were. ``act_bits`` (per
    layer 1..4, the last 1): k-bit layers get ``2**k - 1`` sorted thresholds a neuron spread
    over the accumulator's likely range."""
    if act_bits is not None and any(b != 1 for b in act_bits):
        return _random_qnn_image(with_act_bits(folds, act_bits), rng, last_thresholded,
                                 list(weight_bits or [1] * len(folds)))
    if weight_bits is not None and any(b == 2 for b in weight_bits):
        return _random_ternary_image(list(folds), rng, last_thresholded, list(weight_bits))
    weights, thresholds = [], []
    for l, f in enumerate(folds):
        weights.append(rng.integers(0, 2, size=(f.n_out, f.n_in), dtype=np.uint8))
        if l < len(folds) - 1 or last_thresholded:
            thresholds.append(random_thresholds(rng, f.n_out, f.n_in))
    return BnnImage(list(folds), weights, thresholds, [{} for _ in folds])


def random_thresholds(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    """A binary layer's random thresholds (int64, ``0..n_in + 1``): near ``n_in / 2``, about
    5% of the neurons always on (0) and 5% never (``n_in + 1``), as :func:`random_image` draws
    them."""
    t = np.round(n_in / 2 + rng.normal(size=n_out) * np.sqrt(n_in) / 4).astype(np.int64)
    special = rng.random(n_out)
    t[special < 0.05] = 0
    t[special > 0.95] = n_in + 1
    return np.clip(t, 0, n_in + 1)


def _random_ternary_image(folds, rng, last_thresholded: bool, bits: list[int]) -> BnnImage:
    weights, thresholds, masks = [], [], []
    for l, f in enumerate(folds):
        w = rng.integers(0, 2, size=(f.n_out, f.n_in), dtype=np.uint8)
        mask = None
        nz = np.full(f.n_out, f.n_in)
        if bits[l] == 2:
            mask = (rng.random((f.n_out, f.n_in)) >= 0.35).astype(np.uint8)
            mask[0] = 0                                  # no nonzero weight at all
            if f.n_out > 2:
                mask[1] = 1                              # every weight nonzero
            nz = mask.sum(axis=1)
        weights.append(w)
        masks.append(mask)
        if l < len(folds) - 1 or last_thresholded:
            t = np.round(nz / 2 + rng.normal(size=f.n_out) * np.sqrt(np.maximum(nz, 1)) / 4)
            t = t.astype(np.int64)
            special = rng.random(f.n_out)
            t[special < 0.05] = 0
            t[special > 0.95] = f.n_in + 1
            thresholds.append(np.clip(t, 0, f.n_in + 1))
    return BnnImage(list(folds), weights, thresholds, [{} for _ in folds], masks)


def _random_qnn_image(folds, rng, last_thresholded: bool, bits: list[int]) -> BnnImage:
    weights, thresholds, masks = [], [], []
    for l, f in enumerate(folds):
        w = rng.integers(0, 2, size=(f.n_out, f.n_in), dtype=np.uint8)
        mask = None
        if bits[l] == 2:
            mask = (rng.random((f.n_out, f.n_in)) >= 0.35).astype(np.uint8)
            mask[0] = 0
        weights.append(w)
        masks.append(mask)
        if l < len(folds) - 1 or last_thresholded:
            nz = np.full(f.n_out, f.n_in) if mask is None else mask.sum(axis=1)
            if f.in_bits == 1:
                lo, hi = 0, f.n_in
                centre, spread = nz / 2, np.sqrt(np.maximum(nz, 1)) / 2
            else:
                L = f.levels
                lo, hi = -f.n_in * L, f.n_in * L
                centre, spread = 0 * nz, np.sqrt(np.maximum(nz, 1)) * L / 2
            t = np.round(centre[:, None] + rng.normal(size=(f.n_out, f.n_thresholds))
                         * spread[:, None] * 1.5).astype(np.int64)
            t = np.sort(t, axis=1)
            special = rng.random(f.n_out)
            t[special < 0.05] = lo
            t[special > 0.95] = hi + 1
            t = np.clip(t, lo, hi + 1)
            thresholds.append(t if f.out_bits > 1 else t[:, 0])
    return BnnImage(list(folds), weights, thresholds, [{} for _ in folds], masks)


def image_files(manifest: dict) -> list[str] | None:
    """The files a BNN image's ``manifest.json`` lists (besides itself), or None when it is not
    a BNN image manifest: what :data:`OWNER` checks."""
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("layers"), list):
        return None
    files = []
    for layer in manifest["layers"]:
        for key in ("weight_files", "threshold_files", "mask_files"):
            names = layer.get(key, [])
            if not isinstance(names, list):
                return None
            files += names
    return files


#: Recognises a directory :func:`write_image` wrote (see :func:`image_files`): the only kind of
#: non-empty directory it replaces, for ``eie bnn compile -o`` and library callers alike
#: (:func:`eie.common.outputs.check_replaceable`).
OWNER = outputs.manifest_owner(MANIFEST, image_files)
OWNER_KIND = "a BNN image"


def write_image(image: BnnImage, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write ``image`` to directory ``path`` atomically (nothing half-written on failure). An
    existing directory is replaced only when it is empty or a BNN image with nothing else in it
    (:data:`OWNER`)."""
    layers = []
    path = Path(path)
    outputs.check_replaceable(path, "the image directory", owner=OWNER, kind=OWNER_KIND)
    with atomic_dir(path) as tmp:
        for l, fold in enumerate(image.folds):
            hidden = l < len(image.folds) - 1
            thresholded = hidden or image.last_thresholded
            wfiles, tfiles = [], []
            for p, words in enumerate(weight_words(fold, image.weights[l])):
                name = f"l{l}_pe{p}_w.hex"
                write_hex(tmp / name, words, fold.simd)
                wfiles.append(name)
            if thresholded:
                for p, words in enumerate(threshold_words(fold, image.thresholds[l])):
                    name = f"l{l}_pe{p}_thr.hex"
                    write_hex(tmp / name, words, fold.threshold_word_width)
                    tfiles.append(name)
            mfiles = []
            if image.masks[l] is not None:
                for p, words in enumerate(weight_words(fold, image.masks[l])):
                    name = f"l{l}_pe{p}_mask.hex"
                    write_hex(tmp / name, words, fold.simd)
                    mfiles.append(name)
            entry = {"index": l, **fold.to_json(), "hidden": hidden}
            if image.last_thresholded:      # version 2 only: version 1 stays as it was
                entry["thresholded"] = thresholded
            if image.ternary or image.quantized:   # version 3 and 4 only
                entry["weight_bits"] = image.weight_bits[l]
            if image.quantized:             # version 4 only
                entry["act_bits"] = image.act_bits[l]
            entry.update({"threshold_width": fold.threshold_width if thresholded else 0,
                          "weight_files": wfiles, "threshold_files": tfiles})
            if mfiles:
                entry["mask_files"] = mfiles
            if not hidden and image.output_scale is not None:      # version 5 only
                entry["output_scale"] = [float(v) for v in image.output_scale]
            if l < len(image.stats):
                entry["stats"] = image.stats[l]
            layers.append(entry)
        manifest = {"format": FORMAT, "version": image.version, "shape": image.shape,
                    "folding": folding_text(image.folds),
                    "ii": max(f.ii for f in image.folds),
                    "bit_convention": "1 is +1, 0 is -1; element i at bit i % W of word i // W",
                    "layers": layers}
        if image.input_conversion is not None:
            if image.input_conversion.n_in != image.shape[0]:
                raise EieError(f"the input conversion makes {image.input_conversion.n_in} bits "
                               f"but the network takes {image.shape[0]}")
            manifest["input"] = image.input_conversion.to_json()
        if extra:
            manifest.update(extra)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return path


READ_HINT = "compile the image again with `eie bnn compile`"


def read_image(path: str | os.PathLike) -> BnnImage:
    """Read an image directory back into a :class:`BnnImage`, checking everything: the manifest
    (typed keys; the shape, the folding and what each layer says about them; file names confined
    to the directory) and every hex file (count and width of the words; thresholds at most
    ``n_in + 1``). A problem raises :class:`EieError`, one line naming the file, the key or line,
    what was expected and what to do (the rules are :mod:`eie.sw.imagefile`'s, shared with the
    EIE image)."""
    d = ImageDir(path, kind="a BNN image", make="eie bnn compile", hint=READ_HINT)
    try:
        return _read_image(d)
    except MemoryError:
        raise d.error(f"{d.manifest_path} describes memories too large to load") from None


def _read_folds(man: Fields) -> tuple[list[LayerFold], list[Fields], bool, list[int]]:
    """The folding the manifest describes, checked against everything it says about it,
    whether the output layer is thresholded and each layer's weight precision."""
    fmt = man.string("format")
    if fmt != FORMAT:
        raise man.error("format", f"is {describe(fmt)}, expected {FORMAT!r}",
                        hint=("this is an EIE image: use `eie golden`, `eie run` for it"
                              if fmt == "eie-image" else None))
    version = man.integer("version")
    if version not in VERSIONS:
        raise man.error("version", f"is {version}; this eie reads versions "
                                   f"{', '.join(map(str, VERSIONS))}",
                        hint="read it with the eie that wrote it, or compile it again with "
                             "`eie bnn compile`")
    shape = man.integers("shape", min_length=2, lo=1)
    layers = man.objects("layers")
    if len(layers) != len(shape) - 1:
        raise man.error("layers", f"lists {plural(len(layers), 'layer')} but 'shape' "
                                  f"{','.join(map(str, shape))} has {len(shape) - 1} layers")
    pairs = [(ly.integer("simd", lo=1), ly.integer("pe", lo=1)) for ly in layers]
    try:
        folds = make_folding(shape, pairs)
    except EieError as exc:
        raise man.image.error(f"{man.image.manifest_path}: {exc}") from None
    for fold, ly in zip(folds, layers):
        bits = fold.nf * fold.pe * fold.sf * fold.simd
        if bits > MAX_LAYER_WEIGHTS:
            raise ly.error("n_out", f"with the shape and folding gives {bits} weight bits "
                                    f"(padding included), more than the {MAX_LAYER_WEIGHTS} a "
                                    f"layer may have")
    if "folding" in man:
        text = man.string("folding")
        try:
            same = parse_folding(text) == pairs
        except EieError:
            same = False
        if not same:
            raise man.error("folding", f"is {text!r} but the layers' simd and pe give "
                                       f"{folding_text(folds)!r}")
    acts = []
    for l, ly in enumerate(layers):
        a = ly.integer("act_bits", lo=1, hi=4, default=1)
        if a != 1 and version < 4:
            raise ly.error("act_bits", f"is {a} (k-bit activations) but the image is version "
                                       f"{version}; they need version 4")
        if a != 1 and l == len(layers) - 1:
            raise ly.error("act_bits", f"is {a} but layer {l} is the output layer, whose "
                                       f"activation precision is 1 (it outputs dots or bits)")
        acts.append(a)
    modes = []
    for l, ly in enumerate(layers):
        c = ly.string("consume", "serial")
        if c not in CONSUME_MODES:
            raise ly.error("consume", f"is {c!r}; a layer consumes its bit planes "
                                      f"{' or '.join(map(repr, CONSUME_MODES))}")
        if c != "serial" and (l == 0 or acts[l - 1] == 1):
            raise ly.error("consume", f"is {c!r} but layer {l}'s inputs are 1 bit; only a layer "
                                      f"fed by k-bit activations takes bit planes in parallel")
        modes.append(c)
    folds = with_act_bits(folds, acts, modes)
    planes = " * in_bits" if any(a != 1 for a in acts) else ""
    if "parallel" in modes:
        planes += " (of the serial layers)"
    man.check_equal("ii", max(f.ii for f in folds), f"the folding's largest nf * sf{planes} is")
    last = layers[-1]
    last_thresholded = "thresholded" in last and last.boolean("thresholded")
    if last_thresholded and version < 2:
        raise last.error("thresholded", f"is true but the image is version {version}; a "
                                        f"thresholded output layer needs version 2")
    bits = []
    for l, ly in enumerate(layers):
        b = ly.integer("weight_bits", lo=1, hi=2, default=1)
        if b == 2 and version < 3:
            raise ly.error("weight_bits", f"is 2 (ternary) but the image is version {version}; "
                                          f"ternary layers need version 3")
        bits.append(b)
    for l, (fold, ly) in enumerate(zip(folds, layers)):
        hidden = l < len(folds) - 1
        thresholded = hidden or last_thresholded
        if hidden and "thresholded" in ly and not ly.boolean("thresholded"):
            raise ly.error("thresholded", f"is false but layer {l} is a hidden layer, which "
                                          f"always has thresholds")
        ly.check_equal("index", l, "its place in 'layers' is")
        ly.check_equal("n_in", fold.n_in, f"shape[{l}] is")
        ly.check_equal("n_out", fold.n_out, f"shape[{l + 1}] is")
        ly.check_equal("sf", fold.sf, "ceil(n_in / simd) is")
        ly.check_equal("nf", fold.nf, "ceil(n_out / pe) is")
        ly.check_equal("ii", fold.ii, f"nf * sf{planes} is")
        ly.check_equal("in_bits", fold.in_bits, "the previous layer's act_bits (1 for layer 0) is")
        ly.check_equal("out_bits", fold.out_bits, "its act_bits is")
        ly.check_equal("threshold_width", fold.threshold_width if thresholded else 0,
                       "bit_length(n_in + 1) is" if thresholded else
                       "an output layer without thresholds has")
        if "hidden" in ly and ly.boolean("hidden") != hidden:
            raise ly.error("hidden", f"is {str(not hidden).lower()} but layer {l} of "
                                     f"{len(folds)} is {'a hidden' if hidden else 'the output'} "
                                     f"layer")
    return folds, layers, last_thresholded, bits


def _read_bits(d: ImageDir, fold: LayerFold, ly: Fields, key: str, names: list[str], l: int,
               what: str) -> np.ndarray:
    """The ``(n_out, n_in)`` bits of a layer's weight-shaped files (weights or masks)."""
    needs = f"layer {l}'s folding {fold.simd}:{fold.pe} needs"
    words = [d.read_hex(name, fold.nf * fold.sf, fold.simd, key=ly.path(key) + f"[{p}]",
                        role=f"layer {l}, PE {p}'s {what}", needs=f"{needs} nf * sf =")
             for p, name in enumerate(names)]
    w = np.zeros((fold.nf * fold.pe, fold.sf * fold.simd), dtype=np.uint8)
    shifts = np.arange(fold.simd, dtype=object)
    for p, pe_words in enumerate(words):
        col = np.array(pe_words, dtype=object)
        bits = ((col[:, None] >> shifts[None, :]) & 1).astype(np.uint8)
        w[p::fold.pe] = bits.reshape(fold.nf, fold.sf * fold.simd)
    return w[:fold.n_out, :fold.n_in].copy()


def _read_image(d: ImageDir) -> BnnImage:
    man = d.manifest()
    folds, layers, last_thresholded, bits = _read_folds(man)
    weights, thresholds, stats, masks = [], [], [], []
    for l, (fold, ly) in enumerate(zip(folds, layers)):
        hidden = l < len(folds) - 1 or last_thresholded       # has thresholds
        wfiles = ly.strings("weight_files")
        tfiles = ly.strings("threshold_files") if hidden else ly.strings("threshold_files", [])
        for key, names, want in (("weight_files", wfiles, fold.pe),
                                 ("threshold_files", tfiles, fold.pe if hidden else 0)):
            if len(names) != want:
                raise ly.error(key, f"lists {plural(len(names), 'file')} but layer {l} "
                                    + (f"has {fold.pe} PEs" if want else
                                       "is the output layer, which has no thresholds (its "
                                       "'thresholded' is not true)"))
        needs = f"layer {l}'s folding {fold.simd}:{fold.pe} needs"
        weights.append(_read_bits(d, fold, ly, "weight_files", wfiles, l, "weights"))
        mfiles = ly.strings("mask_files", [])
        want = fold.pe if bits[l] == 2 else 0
        if len(mfiles) != want:
            raise ly.error("mask_files", f"lists {plural(len(mfiles), 'file')} but layer {l} "
                                         + (f"is ternary (weight_bits 2) with {fold.pe} PEs"
                                            if want else "is binary (weight_bits 1), which has "
                                                         "no masks"))
        masks.append(_read_bits(d, fold, ly, "mask_files", mfiles, l, "masks") if want else None)
        if hidden and (fold.in_bits > 1 or fold.out_bits > 1):
            thresholds.append(_read_multi_thresholds(d, fold, ly, tfiles, l, needs))
        elif hidden:
            t = np.zeros(fold.nf * fold.pe, dtype=np.int64)
            for p, name in enumerate(tfiles):
                vals = d.read_hex(name, fold.nf, fold.threshold_width,
                                  key=ly.path("threshold_files") + f"[{p}]",
                                  role=f"layer {l}, PE {p}'s thresholds", needs=f"{needs} nf =")
                for i, v in enumerate(vals):
                    if i * fold.pe + p < fold.n_out and v > fold.n_in + 1:
                        raise d.error(f"{d.path / name}: value {i + 1} is {v}, the threshold of "
                                      f"layer {l} neuron {i * fold.pe + p}; a threshold is at "
                                      f"most n_in + 1 = {fold.n_in + 1}")
                t[p::fold.pe] = vals
            thresholds.append(t[:fold.n_out].copy())
        stats.append(ly.mapping("stats", {}))
    return BnnImage(folds, weights, thresholds, stats, masks,
                    output_scale=_read_output_scale(layers[-1], folds[-1], last_thresholded,
                                                    man.integer("version")),
                    input_conversion=_read_input_conversion(man, folds[0].n_in))


def _positive_finite(v) -> bool:
    """Whether the JSON value ``v`` is a finite number > 0."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return bool(np.isfinite(float(v)) and v > 0)
    except OverflowError:
        return False


def _read_output_scale(ly: Fields, fold: LayerFold, thresholded: bool,
                       version: int) -> np.ndarray | None:
    """The output layer's ``output_scale`` (float64 ``(n_out,)``, each finite and > 0), or
    None when the entry has none."""
    if "output_scale" not in ly:
        return None
    if version < 5:
        raise ly.error("output_scale", f"is given but the image is version {version}; output "
                                       f"scales need version 5")
    if thresholded:
        raise ly.error("output_scale", "is given but the output layer is thresholded (it "
                                       "outputs bits); only an output layer of dots has scales")
    v = ly.raw("output_scale")
    expected = f"a list of {fold.n_out} finite numbers > 0 (one per class)"
    if not isinstance(v, list) or len(v) != fold.n_out:
        raise ly._wrong("output_scale", expected, v)
    for i, item in enumerate(v):
        if not _positive_finite(item):
            raise ly._wrong("output_scale", expected, v, f" whose item {i} is {describe(item)}")
    return np.array(v, dtype=np.float64)


def _read_multi_thresholds(d: ImageDir, fold: LayerFold, ly: Fields, tfiles: list[str], l: int,
                           needs: str) -> np.ndarray:
    """A k-bit layer's thresholds: ``(n_out,)`` or ``(n_out, 2**k - 1)``, unbiased (on the dot
    for k-bit inputs), each stored field at most ``fold.threshold_max``."""
    t = np.zeros((fold.nf * fold.pe, fold.n_thresholds), dtype=np.int64)
    for p, name in enumerate(tfiles):
        vals = d.read_hex(name, fold.nf, fold.threshold_word_width,
                          key=ly.path("threshold_files") + f"[{p}]",
                          role=f"layer {l}, PE {p}'s thresholds", needs=f"{needs} nf =")
        for i, v in enumerate(vals):
            fields = threshold_fields(fold, v)
            if i * fold.pe + p < fold.n_out:
                for j, tv in enumerate(fields):
                    if tv > fold.threshold_max:
                        raise d.error(f"{d.path / name}: value {i + 1} holds {tv} as threshold "
                                      f"{j} of layer {l} neuron {i * fold.pe + p}; a stored "
                                      f"threshold is at most {fold.threshold_max}")
            t[i * fold.pe + p] = fields
    t = t[:fold.n_out] - fold.threshold_bias
    return t if fold.out_bits > 1 else t[:, 0].copy()
