"""Compile a float BNN into integer thresholds and folded weight bits (a :class:`BnnImage`).

Per hidden neuron with fan-in ``K``, the float model outputs
``f(m) = bn_expression(gamma, beta, mean, var, eps, 2*m - K) >= 0`` for ``m = matches`` in
``0..K``. The compiler evaluates ``f`` at every one of the ``K + 1`` possible integer match
counts, in float64 with the float model's own expression, so the integer threshold is exact by
construction, including thresholds that fall exactly on an integer:

- ``gamma > 0``: ``f`` rises with ``m``; ``T = K + 1 - #{m : f(m)}`` (the first ``m`` that fires).
- ``gamma < 0``: ``f`` falls with ``m``. The weights are inverted (``matches' = K - matches``),
  which turns ``f`` into a rising function of ``matches'``; ``T`` as above.
- ``gamma == 0``: ``f`` is the constant ``beta >= 0``: ``T = 0`` (always 1) or ``K + 1`` (never).

Rounding is monotone, so ``f`` evaluated in floating point is monotone too; the compiler checks
that anyway and refuses a neuron where it is not.

A network given as integers (:class:`~eie.sw.bnn.params.IntegerBnn`: bipolar weights and
thresholds on the match count under a named rule) needs no folding of batch norm:
:func:`compile_integer` converts the thresholds to eie's ``matches >= T`` (``gt``: ``T + 1``),
clipped to ``0..K + 1``, and keeps the output layer's thresholds when it has them (the network
then outputs bits).

Ternary (W2) layers (docs/ARCHITECTURE.md): the float weights are ternarized with TWN's
quantizer (:func:`~eie.sw.bnn.float_model.ternarize`: sign bits, nonzero mask, scale ``a``);
:func:`fold_ternary_thresholds` evaluates the float model's expression at ``a * (2m - K')`` for
each neuron's reachable counts ``m = 0..K'`` (``K'`` its nonzero weights), so batch norm and
``a`` fold into ``T`` exactly; ``gamma < 0`` inverts the signs of the nonzero weights
(``matches' = K' - matches``). A neuron that never fires gets ``K + 1``.

XNOR-Net scales (a float model's ``alpha{l}``): every fold evaluates the float model's
expression at ``s * dot`` with the neuron's own ``s = (a / L) * alpha``
(:func:`~eie.sw.bnn.float_model.neuron_scales`), so ``alpha > 0`` folds into the thresholds
exactly like batch norm; the last layer's ``alpha`` becomes the image's
:attr:`~eie.sw.bnn.image.BnnImage.output_scale` (the host's logits ``alpha * dot``; an image
without one, or with all ones, is written as before).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...common.errors import EieError
from .float_model import FloatBnn, act_quantize, bn_expression, neuron_scales, ternarize
from ...hw.bnn.folding import LayerFold, make_folding, with_act_bits
from .image import BnnImage
from .params import IntegerBnn

__all__ = ["binarize", "fold_thresholds", "fold_ternary_thresholds", "fold_multi_thresholds",
           "compile_model", "compile_integer"]


def binarize(w: np.ndarray) -> np.ndarray:
    """``sign`` with ``sign(0) = +1``, as bits (1 is +1)."""
    return (np.asarray(w) >= 0).astype(np.uint8)


def fold_thresholds(gamma, beta, mean, var, eps, n_in: int,
                    scale=None) -> tuple[np.ndarray, np.ndarray]:
    """Integer thresholds ``T`` (n_out,) and a flip mask (n_out,) for one hidden layer whose
    batch norm sees ``dot``, or ``scale * dot`` with per-neuron ``scale`` (n_out,) when given."""
    gamma = np.asarray(gamma, dtype=np.float64)
    m = np.arange(n_in + 1, dtype=np.float64)
    dot = (2.0 * m - n_in)[:, None]                    # (K+1, 1), like the float model's dots
    if scale is not None:
        dot = np.asarray(scale, dtype=np.float64)[None, :] * dot      # (K+1, n_out)
    fires = bn_expression(gamma, np.asarray(beta, dtype=np.float64),
                          np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64),
                          np.float64(eps), dot) >= 0      # (K+1, n_out)
    fires = fires.T.copy()                              # (n_out, K+1), column m
    flip = gamma < 0
    fires[flip] = fires[flip, ::-1]                     # in terms of matches' = K - matches
    steps = np.diff(fires.astype(np.int8), axis=1)
    if np.any(steps < 0):
        k = int(np.argwhere(np.any(steps < 0, axis=1))[0][0])
        raise EieError(f"neuron {k}: the batch-norm output is not monotone in dot "
                       f"(gamma={float(gamma[k])!r}); cannot fold it into one threshold")
    t = (n_in + 1) - fires.sum(axis=1).astype(np.int64)
    return t, flip


def fold_ternary_thresholds(gamma, beta, mean, var, eps, scale, nonzero,
                            n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer thresholds ``T`` (n_out,) on the masked match count and a flip mask (n_out,) for
    one ternary hidden layer with scale ``scale`` (one, or one a neuron) and ``nonzero[n] =
    K'`` nonzero weights per neuron. ``T`` is the first count ``m`` in ``0..K'`` at which the
    float model fires (after the flip, in terms of ``K' - m``), or ``n_in + 1`` when none
    does."""
    gamma = np.asarray(gamma, dtype=np.float64)
    nz = np.asarray(nonzero, dtype=np.int64)
    m = np.arange(n_in + 1, dtype=np.int64)
    dot = (2.0 * m[:, None] - nz[None, :]).astype(np.float64)     # (K+1, n_out)
    fires = bn_expression(gamma, np.asarray(beta, dtype=np.float64),
                          np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64),
                          np.float64(eps), np.asarray(scale, dtype=np.float64) * dot) >= 0
    fires = fires.T                                                  # (n_out, K+1), column m
    flip = gamma < 0
    valid = m[None, :] <= nz[:, None]                                # reachable counts
    idx = np.where(flip[:, None], nz[:, None] - m[None, :], m[None, :])
    fires = np.take_along_axis(fires, np.clip(idx, 0, n_in), axis=1) & valid
    steps = np.diff(fires.astype(np.int8), axis=1)
    bad = (steps < 0) & valid[:, 1:]
    if np.any(bad):
        k = int(np.argwhere(np.any(bad, axis=1))[0][0])
        raise EieError(f"neuron {k}: the batch-norm output is not monotone in dot "
                       f"(gamma={float(gamma[k])!r}); cannot fold it into one threshold")
    count = fires.sum(axis=1).astype(np.int64)
    t = np.where(count > 0, nz + 1 - count, n_in + 1)
    return t, flip


#: Accumulator values evaluated at once (values x neurons) when folding k-bit layers.
_FOLD_CHUNK = 1 << 20


def fold_multi_thresholds(gamma, beta, mean, var, eps, scale, nonzero, n_in: int,
                          in_bits: int, out_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds and a flip mask (n_out,) for one hidden layer with k-bit inputs or outputs
    (docs/ARCHITECTURE.md, "k-bit activations"): ``scale`` is the float model's ``a / L``
    (times ``alpha``: one a neuron),
    ``nonzero[n]`` the neuron's nonzero weights ``K'`` (``n_in`` for W1).

    The float model's own expression is evaluated at every accumulator value ``acc`` in
    ``lo .. hi`` (``0 .. K`` matches for 1-bit inputs, the dot ``-K*L .. K*L`` for k-bit ones),
    as the hardware sees it after the flip (``gamma < 0`` negates the neuron's weights:
    ``dot = -(2*acc - K')`` or ``-acc``), giving the output level ``q(acc)``; ``T_j`` is the
    first reachable ``acc`` with ``q >= j`` (``lo`` when the first reachable one has it,
    ``hi + 1`` when none does). Returns ``T`` of shape ``(n_out, 2**out_bits - 1)`` (or
    ``(n_out,)`` for an A1 output) and the flip mask."""
    gamma = np.asarray(gamma, dtype=np.float64)
    beta, mean, var = (np.asarray(v, dtype=np.float64) for v in (beta, mean, var))
    nz = np.asarray(nonzero, dtype=np.int64)
    n_out = gamma.shape[0]
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (n_out,))
    levels = (1 << in_bits) - 1
    if in_bits == 1:
        lo, hi = 0, n_in
        vlo, vhi = np.zeros(n_out, np.int64), nz                 # reachable counts 0..K'
    else:
        lo, hi = -n_in * levels, n_in * levels
        vlo, vhi = -nz * levels, nz * levels                     # reachable dots
    acc = np.arange(lo, hi + 1, dtype=np.int64)
    flip = gamma < 0
    n_thr = (1 << out_bits) - 1
    t = np.empty((n_out, n_thr), dtype=np.int64)
    step = max(1, _FOLD_CHUNK // len(acc))
    for c0 in range(0, n_out, step):
        sl = slice(c0, min(n_out, c0 + step))
        dot = (2 * acc[:, None] - nz[None, sl]) if in_bits == 1 else acc[:, None] + 0 * nz[None, sl]
        dot = np.where(flip[None, sl], -dot, dot).astype(np.float64)
        u = bn_expression(gamma[sl], beta[sl], mean[sl], var[sl], np.float64(eps),
                          scale[None, sl] * dot)
        q = (u >= 0).astype(np.int64) if out_bits == 1 else act_quantize(u, out_bits).astype(np.int64)
        q = q.T                                                   # (neurons, values)
        valid = (acc[None, :] >= vlo[sl, None]) & (acc[None, :] <= vhi[sl, None])
        steps = np.diff(q, axis=1)
        bad = (steps < 0) & valid[:, 1:] & valid[:, :-1]
        if np.any(bad):
            k = c0 + int(np.argwhere(np.any(bad, axis=1))[0][0])
            raise EieError(f"neuron {k}: the batch-norm output is not monotone in dot "
                           f"(gamma={float(gamma[k])!r}); cannot fold it into thresholds")
        for j in range(1, n_thr + 1):
            count = ((q >= j) & valid).sum(axis=1)
            first = vhi[sl] + 1 - count
            tj = np.where(count > 0, first, hi + 1)
            tj = np.where((count > 0) & (first == vlo[sl]), lo, tj)
            t[sl, j - 1] = tj
    return (t[:, 0].copy() if out_bits == 1 else t), flip


def compile_model(model: FloatBnn,
                  fold: Sequence[tuple[int, int]] | str | None = None) -> BnnImage:
    """Binarise, fold batch norm into thresholds and choose the folding."""
    model.validate()
    acts = model.layer_acts
    folds: list[LayerFold] = make_folding(model.shape, fold, acts)
    weights, thresholds, stats, masks = [], [], [], []
    n = len(model.weights)
    layer_bits = model.layer_bits
    for l, w in enumerate(model.weights):
        if folds[l].in_bits > 1 or folds[l].out_bits > 1:
            sign, mask, st = _compile_qnn(model, l, w, folds[l], thresholds, last=l == n - 1)
            weights.append(sign)
            masks.append(mask)
            stats.append(st)
            continue
        if layer_bits[l] == 2:
            sign, mask, st = _compile_ternary(model, l, w, thresholds, last=l == n - 1)
            weights.append(sign)
            masks.append(mask)
            stats.append(st)
            continue
        masks.append(None)
        bits = binarize(w)
        st: dict = {"zero_weights": int(np.sum(w == 0))}
        if l < n - 1:
            alpha = model.layer_alpha(l)
            t, flip = fold_thresholds(model.gamma[l], model.beta[l], model.mean[l],
                                      model.var[l], model.eps, w.shape[1],
                                      None if alpha is None else neuron_scales(1.0, 1, alpha))
            bits[flip] ^= 1
            thresholds.append(t)
            st.update({"flipped_neurons": int(flip.sum()),
                       "constant_one": int(np.sum(t == 0)),
                       "constant_zero": int(np.sum(t == w.shape[1] + 1))})
        weights.append(bits)
        stats.append(st)
    return BnnImage(folds, weights, thresholds, stats, masks,
                    output_scale=_output_scale(model.layer_alpha(n - 1)))


def _output_scale(alpha) -> np.ndarray | None:
    """The image's output scale for the last layer's XNOR-Net scales: None (the dots are the
    logits) when there are none or all are 1.0, so such an image is written as before."""
    if alpha is None or np.all(np.asarray(alpha) == 1.0):
        return None
    return np.asarray(alpha, dtype=np.float64)


def _compile_qnn(model: FloatBnn, l: int, w: np.ndarray, fold: LayerFold, thresholds: list, *,
                 last: bool):
    """Sign bits, mask bits (None for W1) and statistics of a layer with k-bit inputs or
    outputs; its thresholds appended to ``thresholds`` when it is hidden."""
    if model.layer_bits[l] == 2:
        t, a = ternarize(w)
        mask = (t != 0).astype(np.uint8)
        sign = (t > 0).astype(np.uint8)
        st: dict = {"zero_weights": int(np.sum(mask == 0)), "scale": a}
    else:
        a, mask = 1.0, None
        sign = binarize(w)
        st = {"zero_weights": int(np.sum(w == 0))}
    if not last:
        nz = mask.sum(axis=1) if mask is not None else np.full(w.shape[0], w.shape[1])
        thr, flip = fold_multi_thresholds(model.gamma[l], model.beta[l], model.mean[l],
                                          model.var[l], model.eps,
                                          neuron_scales(a, fold.in_bits, model.layer_alpha(l)),
                                          nz, w.shape[1],
                                          fold.in_bits, fold.out_bits)
        sign[flip] ^= 1 if mask is None else mask[flip]
        thresholds.append(thr)
        lo = 0 if fold.in_bits == 1 else -fold.threshold_bias
        hi = w.shape[1] if fold.in_bits == 1 else fold.threshold_bias
        t2 = thr.reshape(thr.shape[0], -1)
        st.update({"flipped_neurons": int(flip.sum()),
                   "constant_one": int(np.sum(np.all(t2 == lo, axis=1))),
                   "constant_zero": int(np.sum(np.all(t2 == hi + 1, axis=1)))})
    return sign, mask, st


def _compile_ternary(model: FloatBnn, l: int, w: np.ndarray, thresholds: list, *, last: bool):
    """Sign bits, mask bits and statistics of ternary layer ``l``; its thresholds appended to
    ``thresholds`` when it is hidden."""
    t, scale = ternarize(w)
    mask = (t != 0).astype(np.uint8)
    sign = (t > 0).astype(np.uint8)
    st: dict = {"zero_weights": int(np.sum(mask == 0)), "scale": scale}
    if not last:
        nz = mask.sum(axis=1)
        thr, flip = fold_ternary_thresholds(model.gamma[l], model.beta[l], model.mean[l],
                                            model.var[l], model.eps,
                                            neuron_scales(scale, 1, model.layer_alpha(l)), nz,
                                            w.shape[1])
        sign[flip] ^= mask[flip]
        thresholds.append(thr)
        st.update({"flipped_neurons": int(flip.sum()),
                   "constant_one": int(np.sum(thr == 0)),
                   "constant_zero": int(np.sum(thr > nz))})
    return sign, mask, st


def compile_integer(net: IntegerBnn,
                    fold: Sequence[tuple[int, int]] | str | None = None) -> BnnImage:
    """An integer BNN as an image: weights +1/-1 as bits (1 is +1), every threshold as eie's
    ``matches >= T`` (:meth:`IntegerBnn.ge_thresholds`); a thresholded last layer keeps its
    thresholds (the image's :attr:`~BnnImage.last_thresholded`), and the folding as
    :func:`compile_model` chooses or checks it."""
    net.validate()
    folds: list[LayerFold] = make_folding(net.shape, fold, net.layer_acts)
    weights, thresholds, stats, masks = [], [], [], []
    for w, t, b, f in zip(net.weights, net.ge_thresholds(), net.layer_bits, folds):
        weights.append((np.asarray(w) > 0).astype(np.uint8))
        masks.append((np.asarray(w) != 0).astype(np.uint8) if b == 2 else None)
        st: dict = {"zero_weights": int(np.sum(np.asarray(w) == 0))} if b == 2 else {}
        if t is not None and (f.in_bits > 1 or f.out_bits > 1):
            thresholds.append(t)
            lo = 0 if f.in_bits == 1 else -f.threshold_bias
            hi = w.shape[1] if f.in_bits == 1 else f.threshold_bias
            t2 = np.asarray(t).reshape(len(t), -1)
            st.update({"constant_one": int(np.sum(np.all(t2 == lo, axis=1))),
                       "constant_zero": int(np.sum(np.all(t2 == hi + 1, axis=1)))})
        elif t is not None:
            thresholds.append(t)
            st.update({"constant_one": int(np.sum(t == 0)),
                       "constant_zero": int(np.sum(t == w.shape[1] + 1))})
        stats.append(st)
    return BnnImage(folds, weights, thresholds, stats, masks)
