"""The BNN side of ``eie verify`` (:mod:`eie.sim.verify`): the designs of the pool, the
configurations drawn on them (binary, ternary and k-bit networks, from every source) and the
checks of a run.

**Drawing** (:func:`bnn_design`, :func:`draw_bnn`): a design is the topology (1-4 layers,
widths 1..96, so multi-word inputs and outputs), its folding (SIMD and PE from 1 up to the
padded width), the FIFO depths, whether the output layer is thresholded (bits out), the weight
precision of every layer (:data:`BNN_PRECISIONS`: all binary W1, all ternary W2, or mixed) and
its activation precision (:data:`BNN_ACTIVATIONS`: every hidden layer A1, A2, A3 or A4, or
mixed; the output layer A1). A configuration is the network loaded at run time (random bits
and thresholds; an integer network under the ``ge`` or ``gt`` rule with thresholds inside and
far outside ``0..K``; a float model with batch norm, compiled; W2 layers with a random share of
zero weights, a neuron without any now and then, thresholds beyond ``K'``, TWN layers in a
float model; k-bit layers with ``2**k - 1`` thresholds a neuron from the accumulator's values
on probe inputs, equal ones, beyond the reachable values and at the extremes, DoReFa layers in
a float model), 1-16 input samples, and how the host streams them (input FIFO preloaded or
not, random pauses before reading results, polling gaps). An all-A1 design draws what it drew
before k-bit layers were drawn, an all-W1A1 design what it drew before W2 layers were.

**Checking** (:func:`check_bnn`): the outputs equal the golden model (and a compiled float
model's own forward pass), every sample went in and came out, and a preloaded stream without
pauses has its results exactly one analytic initiation interval apart (``II_MIN``;
``max(nf * sf * in_bits)``, a k-bit-fed layer's bit planes counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..common.errors import EieError
from .verify_case import _ACTS, _CASE, _POOL, Case, _first_difference, _pick, _rng, _spread

__all__ = ["BNN_MAX_II", "BnnDesign", "bnn_design", "draw_bnn", "check_bnn"]


# ----------------------------------------------------------------------------- designs

@dataclass(frozen=True)
class BnnDesign:
    """One BNN build of the pool: topology and folding, FIFO depths, output kind, the weight
    precision of every layer (``weight_bits``: 1 binary, 2 ternary; empty: all 1) and its
    activation precision (``act_bits``: 1..4, the output layer's 1; empty: all 1). The folds
    carry the activation precisions, so :attr:`ii` counts a k-bit-fed layer's bit planes."""

    index: int
    folds: tuple
    in_depth: int
    out_depth: int
    last_thresholded: bool
    weight_bits: tuple = ()
    act_bits: tuple = ()

    @property
    def shape(self) -> list[int]:
        return [self.folds[0].n_in] + [f.n_out for f in self.folds]

    @property
    def ii(self) -> int:
        return max(f.ii for f in self.folds)

    @property
    def layer_bits(self) -> tuple[int, ...]:
        """Per layer 1 (W1) or 2 (W2)."""
        return tuple(self.weight_bits) or (1,) * len(self.folds)

    @property
    def layer_acts(self) -> tuple[int, ...]:
        """Per layer its output activation precision 1..4 (the output layer's 1)."""
        return tuple(self.act_bits) or (1,) * len(self.folds)

    @property
    def quantized(self) -> bool:
        """Whether some layer has k-bit (k >= 2) activations."""
        return any(a != 1 for a in self.layer_acts)

    @property
    def weights(self) -> str:
        """The precisions as docs and errors name them: ``"W1,W2,W1"``."""
        from ..hw.bnn.words import weight_bits_text

        return weight_bits_text(self.layer_bits)

    @property
    def activations(self) -> str:
        """The activation precisions as docs and errors name them: ``"A2,A3,A1"``."""
        from ..hw.bnn.words import act_bits_text

        return act_bits_text(self.layer_acts)

    @property
    def precision(self) -> str:
        """``"W1"`` (every layer binary), ``"W2"`` (every layer ternary) or ``"mixed"``."""
        kinds = set(self.layer_bits)
        return "mixed" if len(kinds) > 1 else f"W{kinds.pop()}"

    @property
    def activation(self) -> str:
        """``"A1"`` .. ``"A4"`` (every hidden layer of that precision; ``"A1"`` for a one-layer
        design, whose only layer is the output layer) or ``"mixed"``."""
        kinds = set(self.layer_acts[:-1]) or {1}
        return "mixed" if len(kinds) > 1 else f"A{kinds.pop()}"

    def describe(self) -> str:
        from ..hw.bnn.folding import folding_text

        return (f"shape {','.join(map(str, self.shape))}, folding {folding_text(self.folds)}, "
                f"II {self.ii}, FIFOs {self.in_depth}/{self.out_depth}, "
                f"{'bits' if self.last_thresholded else 'dots'} out, weights {self.weights}, "
                f"activations {self.activations}")

    def to_json(self) -> dict:
        return {"index": self.index, "shape": self.shape,
                "folding": [[f.simd, f.pe] for f in self.folds], "ii": self.ii,
                "in_depth": self.in_depth, "out_depth": self.out_depth,
                "last_thresholded": self.last_thresholded,
                "weight_bits": list(self.layer_bits), "weights": self.weights,
                "act_bits": list(self.layer_acts), "activations": self.activations}

    @property
    def cost(self) -> int:
        return sum(f.simd * f.pe for f in self.folds)


def _bnn_width(rng: np.random.Generator) -> int:
    u = rng.random()
    if u < 0.2:
        return int(rng.integers(1, 9))
    if u < 0.75:
        return int(rng.integers(9, 41))
    return int(rng.integers(41, 97))


def _fold_lanes(rng: np.random.Generator, n: int) -> int:
    """SIMD or PE for ``n`` inputs or neurons: 1..n, or up to the padded power of two."""
    pow2 = 1 << max(n - 1, 0).bit_length()
    u = rng.random()
    if u < 0.15:
        return n
    if u < 0.25:
        return pow2
    if u < 0.35:
        return 1
    return int(rng.integers(1, n + 1))


#: The largest analytic II of a BNN design (cycles a sample): keeps the simulations short.
BNN_MAX_II = 96


def _bnn_folds(shape: list[int], fold: list[tuple[int, int]], acts: Sequence[int]) -> list:
    """The folds of ``shape`` under ``fold`` with activation precisions ``acts``, the slowest
    layer widened (``fold`` updated) until the analytic II, bit planes counted, is at most
    :data:`BNN_MAX_II` (all A1: the folds the pool always had)."""
    from ..hw.bnn.folding import make_folding, with_act_bits

    folds = with_act_bits(make_folding(shape, fold), acts)
    while max(f.ii for f in folds) > BNN_MAX_II:      # widen the slowest layer
        k = max(range(len(folds)), key=lambda i: folds[i].ii)
        f = folds[k]
        fold[k] = (min(f.n_in, f.simd * 2), min(f.n_out, f.pe + 1 + f.pe // 2))
        folds = with_act_bits(make_folding(shape, fold), acts)
    return folds


def _bnn_act_bits(seed: int, d: int, depth: int) -> tuple[int, ...]:
    """Design ``d``'s activation precision per layer: its entry of :data:`BNN_ACTIVATIONS`
    for the hidden layers, the output layer A1. "mixed": each hidden layer A1..A4, at least one
    k-bit and, with two hidden layers or more, two precisions (one hidden layer: A2..A4). Drawn
    from a stream of its own, so that the pool's other draws are those before k-bit layers."""
    kind = _spread(seed, "bnn", _ACT_KNOB, BNN_ACTIVATIONS, d)
    hidden = depth - 1
    if kind == "A1" or hidden == 0:
        return (1,) * depth
    if kind != "mixed":
        return (int(kind[1:]),) * hidden + (1,)
    rng = _rng(seed, "bnn", _ACTS, d)
    if hidden == 1:
        return (int(rng.integers(2, 5)), 1)
    while True:
        bits = tuple(int(b) for b in rng.integers(1, 5, size=hidden))
        if len(set(bits)) > 1:
            return bits + (1,)


def bnn_design(seed: int, d: int) -> BnnDesign:
    """Design ``d`` of the BNN pool of seed ``seed``."""
    rng = _rng(seed, "bnn", _POOL, d)
    depth = _spread(seed, "bnn", _DEPTH_KNOB, (1, 2, 3, 4), d)
    shape = [_bnn_width(rng) for _ in range(depth + 1)]
    fold = [(_fold_lanes(rng, a), _fold_lanes(rng, b)) for a, b in zip(shape[:-1], shape[1:])]
    acts = _bnn_act_bits(seed, d, depth)
    folds = _bnn_folds(shape, fold, acts)
    in_depth, out_depth, thr = (_spread(seed, "bnn", k, values, d)
                                for k, values in enumerate(BNN_KNOBS))
    kind = _spread(seed, "bnn", _PRECISION_KNOB, BNN_PRECISIONS, d)
    # drawn after everything else from the pool stream: the other parameters are those of the
    # pool before W2 layers were drawn
    if kind == "W1":
        bits = (1,) * depth
    elif kind == "W2":
        bits = (2,) * depth
    elif depth == 1:                # one layer cannot mix: either precision
        bits = (int(rng.integers(1, 3)),)
    else:
        bits = tuple(int(b) for b in rng.integers(1, 3, size=depth))
        if len(set(bits)) == 1:
            k = int(rng.integers(0, depth))
            bits = bits[:k] + (3 - bits[k],) + bits[k + 1:]
    return BnnDesign(d, tuple(folds), in_depth, out_depth, thr, bits,
                     acts if any(a != 1 for a in acts) else ())


#: The BNN build parameters every pool of enough designs covers (:func:`_spread`): input and
#: output FIFO depths, a thresholded output layer (one design in three).
BNN_KNOBS = ((1, 2, 3, 4, 6), (1, 2, 3, 4), (False, True, False))
#: The weight precisions of a BNN design's layers (a build parameter: the mask memories and
#: ``CONFIG_CRC`` depend on it), spread as :data:`BNN_KNOBS` are: every layer binary (W1),
#: every layer ternary (W2), or each layer either, both present ("mixed"; a one-layer design
#: drawn "mixed" gets either). Five entries, a length prime to the layer count's 4 and the
#: output kind's 3: any 15 consecutive designs give each entry three designs of three layer
#: counts, bits and dots out both, so a pool of 16 has all-W1 and all-W2 designs of both
#: output kinds and at least four mixed ones (at most one of each entry's three has one layer).
BNN_PRECISIONS = ("W1", "W2", "mixed", "W2", "mixed")
#: The activation precisions of a BNN design's hidden layers (a build parameter: a k-bit layer
#: has its own datapath, threshold memories and ``CONFIG_CRC``; the output layer is always A1),
#: spread as :data:`BNN_KNOBS` are: every hidden layer A1, A2, A3 or A4, or "mixed"
#: (:func:`_bnn_act_bits`). Seven entries, a length prime to the layer count's 4, the output
#: kind's 3 and the weight precisions' 5: in a pool of 16 every entry has two designs or three,
#: ``d`` and ``d + 7`` (and ``d + 14``) of different layer counts, so at least one of them has
#: a hidden layer: every pool of 16 has A2, A3, A4 and mixed designs, and all-A1 ones (the
#: "A1" entry and the one-layer designs).
BNN_ACTIVATIONS = ("A1", "A2", "mixed", "A3", "A4", "mixed", "A2")
#: The :func:`_spread` knob numbers of the layer count (``len(BNN_KNOBS)``, as before W2
#: layers were drawn), of the weight precisions and of the activation precisions.
_DEPTH_KNOB, _PRECISION_KNOB, _ACT_KNOB = 3, 4, 5


# ----------------------------------------------------------------------------- configurations

def _nonzero_density(rng: np.random.Generator) -> float:
    """The share of nonzero weights of a ternary layer: all nonzero now and then, sparse ones
    (down to ~3%) well covered."""
    u = rng.random()
    if u < 0.1:
        return 1.0
    if u < 0.5:
        return float(10 ** rng.uniform(-1.5, 0))
    return float(rng.uniform(0.05, 1.0))


def _ternary_thresholds(rng: np.random.Generator, nz: np.ndarray, n_in: int, *,
                        integer: bool) -> np.ndarray:
    """Thresholds on the masked match count of a W2 layer whose neurons have ``nz`` (``K'``)
    nonzero weights: mostly near ``K' / 2``; some always firing, some beyond ``K'`` (never
    firing, below ``K + 1`` or at it), and for an integer network some far outside ``0..K``
    (negative, beyond ``K + 1``, 32767) for the compiler to clip."""
    n_out = len(nz)
    t = np.round(nz / 2 + rng.normal(size=n_out) * np.sqrt(np.maximum(nz, 1)) / 3)
    u = rng.random(n_out)
    t[u < 0.05] = 0
    beyond = (u > 0.9) & (u < 0.95)             # K' < T <= K + 1: never fires
    t[beyond] = nz[beyond] + 1 + np.floor(rng.random(int(beyond.sum()))
                                           * (n_in + 1 - nz[beyond]))
    t[u > 0.95] = n_in + 1
    if integer:
        t[u < 0.02] = rng.integers(-40, 0, int(np.sum(u < 0.02)))
        t[u > 0.98] = rng.integers(n_in + 1, n_in + 40, int(np.sum(u > 0.98)))
        t[(u > 0.5) & (u < 0.52)] = 32767
        return t.astype(np.int64)
    return np.clip(t, 0, n_in + 1).astype(np.int64)


def _ternary_mask(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    """A W2 layer's nonzero mask (bool ``(n_out, n_in)``): a random density, rows spread around
    it half the time, sometimes a neuron without any nonzero weight (``K' = 0``) or with all."""
    density = _nonzero_density(rng)
    if rng.random() < 0.8:              # mostly a couple of nonzero weights a neuron at least
        density = min(1.0, max(density, 2.5 / n_in))
    if density < 1.0 and rng.random() < 0.5:
        row_d = np.clip(density * rng.lognormal(0.0, 0.8, n_out), 0.0, 1.0)
    else:
        row_d = np.full(n_out, density)
    mask = rng.random((n_out, n_in)) < row_d[:, None]
    if rng.random() < (0.5 if n_out > 2 else 0.1):
        mask[rng.integers(0, n_out)] = False
    if n_out > 1 and rng.random() < 0.3:
        mask[rng.integers(0, n_out)] = True
    return mask


def _random_ternary_image(folds, rng: np.random.Generator, last_thresholded: bool,
                          bits: Sequence[int]):
    """Random sign bits, masks (:func:`_ternary_mask`) and thresholds for a network with W2
    layers (W1 layers as :func:`eie.sw.bnn.image.random_image` draws them)."""
    from ..sw.bnn.image import BnnImage, random_thresholds

    weights, thresholds, masks = [], [], []
    for l, f in enumerate(folds):
        w = rng.integers(0, 2, size=(f.n_out, f.n_in), dtype=np.uint8)
        mask = None
        nz = np.full(f.n_out, f.n_in)
        if bits[l] == 2:
            m = _ternary_mask(rng, f.n_out, f.n_in)
            mask, nz = m.astype(np.uint8), m.sum(axis=1)
        weights.append(w)
        masks.append(mask)
        if l < len(folds) - 1 or last_thresholded:
            if mask is None:
                thresholds.append(random_thresholds(rng, f.n_out, f.n_in))
            else:
                thresholds.append(_ternary_thresholds(rng, nz, f.n_in, integer=False))
    return BnnImage(list(folds), weights, thresholds, [{} for _ in folds], masks)


def _ternary_float_model(shape, bits: Sequence[int], rng: np.random.Generator):
    """A random float model with TWN layers where ``bits`` says 2
    (:func:`eie.sw.bnn.float_model.random_model`: a neuron without nonzero weights, negative and
    zero batch-norm scales, thresholds exactly on reachable values). Most W2 layers are then made
    sparser than TWN's ~58% nonzero: latent weights zeroed at random, rows scaled over ~10x (so
    the layer's one ``delta`` zeroes some rows entirely and keeps others whole); a hidden layer
    so changed gets batch-norm statistics drawn again on its new ``a * dot``."""
    from ..sw.bnn.float_model import random_model, ternarize

    model = random_model(shape, rng, weight_bits=list(bits))
    last = len(shape) - 2
    for l, w in enumerate(model.weights):
        if bits[l] != 2 or rng.random() < 0.25:
            continue
        n_out = w.shape[0]
        keep = rng.random(w.shape) < float(10 ** rng.uniform(-1.5, 0))
        rows = rng.lognormal(0.0, 1.0, n_out) if rng.random() < 0.5 else np.ones(n_out)
        w = w * keep * rows[:, None]
        if n_out > 2 and rng.random() < 0.3:
            w[rng.integers(1, n_out)] = 0.0
        model.weights[l] = w
        if l == last:
            break
        t, a = ternarize(w)
        nz = np.abs(t).sum(axis=1)
        model.var[l] = rng.uniform(0.1, 4.0, size=n_out) * np.maximum(nz, 1) * a * a
        mean = rng.normal(size=n_out) * np.sqrt(np.maximum(nz, 1)) * a
        on = rng.random(n_out) < 0.4        # a * dot == mean exactly at a reachable dot
        m0 = np.clip(np.round(nz[on] / 2 + rng.normal(size=int(on.sum())) * np.sqrt(nz[on]) / 2),
                     0, nz[on])
        mean[on] = a * (2 * m0 - nz[on])
        model.mean[l] = mean
        model.beta[l] = np.where(on, 0.0, model.beta[l])
    return model


def _integer_layer(rng: np.random.Generator, f, bits: int, thresholded: bool):
    """An integer layer's weights (``-1/+1``, or ``-1/0/+1`` for W2: a random density of zeros,
    :func:`_ternary_mask`) and thresholds (``None`` unless ``thresholded``) under ``ge`` or
    ``gt``, with thresholds inside and far outside ``0..K`` (W2: around ``K' / 2`` and beyond
    ``K'``)."""
    if bits == 2:
        mask = _ternary_mask(rng, f.n_out, f.n_in)
        w = np.where(rng.random((f.n_out, f.n_in)) < 0.5, -1, 1) * mask
        t = (_ternary_thresholds(rng, mask.sum(axis=1), f.n_in, integer=True)
             if thresholded else None)
        return w.astype(np.int8), t
    w = rng.choice(np.array([-1, 1], dtype=np.int8), size=(f.n_out, f.n_in))
    if not thresholded:
        return w, None
    t = np.round(f.n_in / 2 + rng.normal(size=f.n_out) * np.sqrt(f.n_in) / 3)
    u = rng.random(f.n_out)      # some beyond 0..K: constant neurons
    t[u < 0.05] = rng.integers(-40, 1, int(np.sum(u < 0.05)))
    t[u > 0.95] = rng.integers(f.n_in, f.n_in + 40, int(np.sum(u > 0.95)))
    t[(u > 0.5) & (u < 0.52)] = 32767
    return w, t.astype(np.int64)


def _ternary_info(image) -> list[dict]:
    """Per W2 layer of ``image``: its share of nonzero weights, neurons without any (``K' = 0``)
    and thresholds beyond ``K'`` (a neuron that never fires; of a k-bit-fed layer, beyond the
    highest reachable dot), for the coverage."""
    out = []
    for l, (f, mask) in enumerate(zip(image.folds, image.masks)):
        if mask is None:
            continue
        nz = np.asarray(mask, dtype=np.int64).sum(axis=1)
        entry = {"layer": l, "nonzero": round(float(nz.sum()) / (f.n_in * f.n_out), 4),
                 "zero_neurons": int(np.sum(nz == 0)), "full_neurons": int(np.sum(nz == f.n_in)),
                 "thresholded": l < len(image.thresholds)}
        if entry["thresholded"]:        # a threshold beyond K' (k-bit: beyond the reach)
            reach_hi = _accumulator_range(f, image.weights[l], mask)[3]
            t = np.asarray(image.thresholds[l]).reshape(f.n_out, -1)
            entry["beyond"] = int(np.sum(np.any(t > reach_hi[:, None], axis=1)))
        out.append(entry)
    return out


def _accumulator(a: np.ndarray, w: np.ndarray, mask: np.ndarray | None, in_bits: int) -> np.ndarray:
    """What a layer compares with its thresholds, for inputs ``a`` (batch, n_in): the match
    count (masked for W2) of 1-bit inputs, the integer dot of k-bit ones (the golden model's
    functions)."""
    from ..sw.bnn.golden import masked_matches, matches, plane_dot

    if in_bits > 1:
        return plane_dot(a, w, mask)
    return matches(a, w) if mask is None else masked_matches(a, w, mask)


def _accumulator_range(f, w: np.ndarray, mask: np.ndarray | None) -> tuple[int, int, np.ndarray,
                                                                           np.ndarray]:
    """``(lo, hi, reach_lo, reach_hi)``: the accumulator's range ``lo..hi`` for layer ``f``
    (``0..K``, or ``-K*L..K*L`` for k-bit inputs: thresholds are clipped to ``lo..hi+1``) and
    per neuron the values it can reach (``0..K'``; ``-L * #(-1 weights) .. L * #(+1
    weights)``) for sign bits ``w`` and mask bits ``mask`` (None: all nonzero)."""
    z = np.ones_like(w) if mask is None else np.asarray(mask)
    nz = z.sum(axis=1, dtype=np.int64)
    if f.in_bits == 1:
        return 0, f.n_in, np.zeros_like(nz), nz
    pos = (np.asarray(w) & z).sum(axis=1, dtype=np.int64)
    return -f.threshold_bias, f.threshold_bias, -f.levels * (nz - pos), f.levels * pos


def _multi_thresholds(rng: np.random.Generator, acc: np.ndarray, f, w: np.ndarray,
                      mask: np.ndarray | None, *, integer: bool) -> np.ndarray:
    """``2**k - 1`` thresholds a neuron (``(n_out, n_thr)``, ``acc >= T_j``) of layer ``f``
    whose accumulators on probe inputs are ``acc`` (probes, n_out): sorted quantiles of each
    neuron's probe values (so random inputs reach every level), one threshold in eight at an
    extreme (``lo``, the lowest and highest reachable value, one beyond the highest, ``hi + 1``),
    a fifth of the neurons with two thresholds equal. In ``lo..hi + 1``, or, ``integer``
    (for :func:`~eie.sw.bnn.compile.compile_integer` to clip), also far outside it, 32767 too,
    and a neuron's thresholds shuffled now and then (an integer network's need no order)."""
    n_out, n_thr = acc.shape[1], f.n_thresholds
    lo, hi, reach_lo, reach_hi = _accumulator_range(f, w, mask)
    ranked = np.sort(acc, axis=0)
    pos = np.sort(rng.random((n_out, n_thr)), axis=1)
    idx = np.minimum((pos * ranked.shape[0]).astype(np.int64), ranked.shape[0] - 1)
    t = ranked[idx, np.arange(n_out)[:, None]] + rng.integers(-1, 2, (n_out, n_thr))
    u = rng.random((n_out, n_thr))
    for (a, b), value in zip(((0, .025), (.025, .05), (.05, .075), (.075, .1), (.1, .125)),
                             (lo, reach_lo[:, None], reach_hi[:, None], reach_hi[:, None] + 1,
                              hi + 1)):
        t = np.where((u >= a) & (u < b), value, t)
    t = np.sort(np.clip(t, lo, hi + 1), axis=1)
    if n_thr > 1:
        same = np.flatnonzero(rng.random(n_out) < 0.2)
        j = rng.integers(0, n_thr - 1, same.size)
        t[same, j + 1] = t[same, j]
    if integer:
        v = rng.random((n_out, n_thr))
        t = np.where(v < 0.02, lo - rng.integers(1, 40, t.shape), t)
        t = np.where(v > 0.98, hi + 1 + rng.integers(1, 40, t.shape), t)
        t = np.where((v > 0.5) & (v < 0.51), 32767, t)
        for n in np.flatnonzero(rng.random(n_out) < 0.3):
            t[n] = rng.permutation(t[n])
    return t.astype(np.int64)


def _qnn_layers(folds, rng: np.random.Generator, last_thresholded: bool, bits: Sequence[int], *,
                integer: bool) -> tuple[list, list, list]:
    """Sign bits, masks (None for W1; :func:`_ternary_mask` for W2) and thresholds
    (:func:`_multi_thresholds`; ``(n_out,)`` for an A1 output) of a network with k-bit layers
    (``folds`` carry the precisions). The thresholds come from 64 probe inputs (each with its
    own share of ones) run through the layers drawn so far."""
    from ..sw.bnn.golden import multi_threshold

    a = (rng.random((64, folds[0].n_in)) < rng.uniform(0.1, 0.9, (64, 1))).astype(np.uint8)
    weights, masks, thresholds = [], [], []
    for l, f in enumerate(folds):
        w = rng.integers(0, 2, size=(f.n_out, f.n_in), dtype=np.uint8)
        mask = _ternary_mask(rng, f.n_out, f.n_in).astype(np.uint8) if bits[l] == 2 else None
        if mask is not None:
            w &= mask
        weights.append(w)
        masks.append(mask)
        if l == len(folds) - 1 and not last_thresholded:
            break
        acc = _accumulator(a, w, mask, f.in_bits)
        t = _multi_thresholds(rng, acc, f, w, mask, integer=integer)
        a = multi_threshold(acc, np.sort(t, axis=1))
        thresholds.append(t if f.out_bits > 1 else t[:, 0])
    return weights, masks, thresholds


def _qnn_network(kind: str, design: BnnDesign, rng: np.random.Generator):
    """``(image, float model or None)`` of source ``kind`` for a design with k-bit layers:
    random bits and multi-thresholds, an integer network under ``ge`` or ``gt`` (its
    thresholds shifted by one for ``gt``, so that the same values are reached), or a DoReFa
    float model (:func:`eie.sw.bnn.float_model.random_model` with ``act_bits``), compiled."""
    from ..sw.bnn.compile import compile_integer, compile_model
    from ..sw.bnn.float_model import random_model
    from ..sw.bnn.image import BnnImage
    from ..sw.bnn.params import IntegerBnn

    folds, bits, acts = list(design.folds), list(design.layer_bits), list(design.layer_acts)
    fold = [(f.simd, f.pe) for f in folds]
    if kind == "float":
        model = random_model(design.shape, rng, weight_bits=bits, act_bits=acts)
        return compile_model(model, fold), model
    weights, masks, thresholds = _qnn_layers(folds, rng, design.last_thresholded, bits,
                                             integer=kind != "random")
    if kind == "random":
        return BnnImage(folds, weights, thresholds, [{} for _ in folds], masks), None
    rule = kind.split("-")[1]
    signed = [np.where(w == 1, 1, -1).astype(np.int8) * (1 if m is None else m.astype(np.int8))
              for w, m in zip(weights, masks)]
    shift = 1 if rule == "gt" else 0
    thr = [t - shift for t in thresholds] + [None] * (len(folds) - len(thresholds))
    net = IntegerBnn(signed, thr, rule, bits, acts)
    return compile_integer(net, fold), None


def _kbit_info(image, x: np.ndarray) -> list[dict]:
    """Per layer of ``image`` with k-bit inputs or outputs, for the coverage: its precisions,
    and when thresholded the neurons with two equal thresholds, with one beyond the highest
    reachable accumulator (never crossed) and with one at or below the lowest (always
    crossed); for a k-bit output, the levels its outputs reached on ``x`` (of ``2**k``)."""
    from ..sw.bnn.golden import golden_layers

    outs = golden_layers(image, x)
    info = []
    for l, f in enumerate(image.folds):
        if f.in_bits == 1 and f.out_bits == 1:
            continue
        entry = {"layer": l, "in_bits": f.in_bits, "out_bits": f.out_bits,
                 "thresholded": l < len(image.thresholds)}
        if entry["thresholded"]:
            _, _, reach_lo, reach_hi = _accumulator_range(f, image.weights[l], image.masks[l])
            t = np.asarray(image.thresholds[l]).reshape(f.n_out, -1)
            entry.update(equal=int(np.sum(np.any(np.diff(np.sort(t, axis=1), axis=1) == 0,
                                                  axis=1))),
                         beyond=int(np.sum(np.any(t > reach_hi[:, None], axis=1))),
                         always=int(np.sum(np.any(t <= reach_lo[:, None], axis=1))))
        if f.out_bits > 1:
            entry.update(levels=1 << f.out_bits,
                         levels_reached=int(np.unique(outs[l]).size))
        info.append(entry)
    return info


def draw_bnn(seed: int, index: int, pool: Sequence[BnnDesign]) -> Case:
    """BNN configuration ``index`` of seed ``seed`` on ``pool[index % len(pool)]``. The layers
    of a W2 design's network are ternary where the design's are, those of a k-bit design have
    its activation precisions (any source, :func:`_qnn_network`); an all-A1 design's
    configuration is drawn exactly as before k-bit layers were drawn, an all-W1A1 one as before
    W2 layers were."""
    from ..sw.bnn.compile import compile_integer, compile_model
    from ..sw.bnn.float_model import random_model
    from ..sw.bnn.image import random_image
    from ..sw.bnn.params import IntegerBnn

    design = pool[index % len(pool)]
    folds = list(design.folds)
    shape = design.shape
    bits = design.layer_bits
    ternary = 2 in bits
    rng = _rng(seed, "bnn", _CASE, index)
    kinds = ("random", "integer-ge", "integer-gt") + (() if design.last_thresholded else ("float",))
    kind = _pick(rng, kinds, (3, 2, 2, 3)[:len(kinds)])
    reference = None
    fold = [(f.simd, f.pe) for f in folds]
    if design.quantized:
        image, reference = _qnn_network(kind, design, rng)
    elif kind == "random":
        image = (_random_ternary_image(folds, rng, design.last_thresholded, bits) if ternary
                 else random_image(folds, rng, last_thresholded=design.last_thresholded))
    elif kind == "float":
        reference = (_ternary_float_model(shape, bits, rng) if ternary
                     else random_model(shape, rng))
        image = compile_model(reference, fold)
    else:
        weights, thresholds = [], []
        for l, f in enumerate(folds):
            w, t = _integer_layer(rng, f, bits[l], l < len(folds) - 1 or design.last_thresholded)
            weights.append(w)
            thresholds.append(t)
        image = compile_integer(IntegerBnn(weights, thresholds, kind.split("-")[1],
                                           list(bits) if ternary else []), fold)
    if tuple(image.weight_bits) != bits or tuple(image.act_bits) != design.layer_acts:
        raise EieError(f"BNN configuration {index}: the drawn image's precisions are "
                       f"{image.weight_bits} {image.act_bits}, its design's {list(bits)} "
                       f"{list(design.layer_acts)}")
    n = int(rng.integers(1, 17))
    p1 = float(rng.uniform(0.1, 0.9))
    x = (rng.random((n, shape[0])) < p1).astype(np.uint8)
    ii = design.ii
    preload = bool(rng.random() < 0.7)
    backpressure = 0.0 if rng.random() < 0.6 else float(rng.uniform(0.2, 0.9))
    opts = {"preload": preload, "backpressure": round(backpressure, 3),
            "max_gap": int(rng.integers(1, 3 * ii + 9)),
            "poll_gap": 0 if rng.random() < 0.5 else ii // 4,
            "seed": int(rng.integers(0, 1 << 31))}
    info = {"shape": shape, "folding": [[f.simd, f.pe] for f in folds], "ii": ii,
            "in_depth": design.in_depth, "out_depth": design.out_depth,
            "outputs": "bits" if design.last_thresholded else "dots",
            "weights": design.weights, "precision": design.precision,
            "ternary_layers": _ternary_info(image), "source": kind,
            "batch": n, "input_ones": round(p1, 3), **opts,
            "design": design.index, "activations": design.activations,
            "activation": design.activation, "kbit_layers": _kbit_info(image, x)}
    return Case("bnn", index, design, image, x, info, job_options=opts, reference=reference)


# ----------------------------------------------------------------------------- checking

def check_bnn(case: Case, result) -> str | None:
    from ..sw.bnn.float_model import float_forward
    from ..sw.bnn.golden import golden_forward

    gold = golden_forward(case.image, case.x)
    if case.reference is not None:
        ref = float_forward(case.reference, case.x)
        if not np.array_equal(gold, ref):
            return ("golden model of the compiled image differs from the float model: "
                    f"{_first_difference(gold, ref)}")
    y = np.asarray(result.outputs)
    if y.dtype != gold.dtype:
        return f"outputs are {y.dtype}, the golden model's {gold.dtype}"
    if y.shape != gold.shape or not np.array_equal(y, gold):
        return f"outputs differ from the golden model: {_first_difference(y, gold)}"
    c = result.counters
    n = case.x.shape[0]
    if c.get("samples_in") != n or c.get("samples_out") != n:
        return (f"{n} samples streamed but the core counted {c.get('samples_in')} in, "
                f"{c.get('samples_out')} out")
    ii = case.design.ii
    o = case.job_options
    # The first two results are one II apart when the first two samples were in the input
    # FIFO before the start (preloaded), the host never paused, and the second result found
    # room in the output FIFO: two places, or the host drained it in time (no STALL at all).
    # With one place, a host slower than the core (reading many classes in a short II) holds
    # the network back: an II above the analytic one is then the host's, not the core's.
    if o["preload"] and not o["backpressure"] and min(n, case.design.in_depth) >= 2 \
            and (case.design.out_depth >= 2 or c.get("stall") == 0) and c.get("ii_min") != ii:
        return (f"preloaded samples without pauses: smallest interval between results "
                f"{c.get('ii_min')} cycles, the analytic II is {ii} (output stalls "
                f"{c.get('stall')} cycles)")
    return None
