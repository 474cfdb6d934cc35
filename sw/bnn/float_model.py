"""The float BNN model: the reference that the compiled thresholds and the golden model reproduce.

Model file (``.npz``): ``W{l}`` of shape ``(n_out, n_in)`` (floats) for layers ``l = 0..L-1``;
for each hidden layer ``l < L-1`` the batch-norm parameters ``gamma{l}, beta{l}, mean{l},
var{l}`` of shape ``(n_out,)``; optionally a scalar ``eps`` (default ``1e-5``); optionally
``weight_bits`` (ints ``(L,)``, 1 binary or 2 ternary per layer; default all 1); optionally
``alpha{l}`` of shape ``(n_out,)`` for any layer ``l``: XNOR-Net's per-output weight scale,
finite and > 0 (default 1.0 for every neuron: the model as without it).

Semantics (docs/ARCHITECTURE.md, BNN section), computed in float64:

- inputs are bits, 1 is +1 and 0 is -1; weights are binarised with ``sign``, ``sign(0) = +1``;
- ``dot = sum(sign(W) * x)`` (an exact integer in float64);
- a hidden layer outputs ``bit = (gamma * (dot - mean) / sqrt(var + eps) + beta) >= 0``;
- the last layer outputs ``dot`` (int32), the class is its argmax.

A ternary (W2) layer (TWN) quantizes its weights with :func:`ternarize` (``delta = 0.7 *
mean(|W|)``, ``t = sign(W)`` where ``|W| > delta``, else 0; scale ``a``), ``dot = sum(t * x)``
exactly, and its batch norm sees ``a * dot`` (one float64 multiply); the last layer outputs
``dot`` (the logits ``a * dot`` have the same argmax).

XNOR-Net scales (Rastegari et al. 2016): a layer with ``alpha{l}`` multiplies every neuron's
dot by ``s = layer_scale(a, in_bits) * alpha`` (:func:`neuron_scales`, one float64 product a
neuron) before batch norm; the last layer's logits are ``alpha * dot`` (:func:`float_logits`),
whose argmax is the class.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...common.errors import EieError
# the BNN's input rule (bits 0 or 1, (batch, n_in)): eie.sw.inputs, shared with every loader
from ...hw.bnn.folding import ACT_BITS
from ...hw.bnn.words import WEIGHT_BITS
from ..inputs import check_bits
from ..npz_keys import beyond, by_number, canonical_number, layer_key_pattern, shown_key

__all__ = ["FloatBnn", "load_model", "save_model", "random_model", "bn_expression",
           "float_forward", "float_layers", "check_bits", "open_model_npz", "ternarize",
           "TWN_DELTA", "check_weight_bits", "check_act_bits", "act_quantize", "layer_scale",
           "neuron_scales", "check_alpha", "xnor_alpha", "float_logits", "output_logits"]

DEFAULT_EPS = 1e-5
#: TWN's ternarization threshold, as a fraction of the layer's mean absolute weight.
TWN_DELTA = 0.7


def ternarize(w) -> tuple[np.ndarray, float]:
    """TWN's quantizer (Li et al., "Ternary weight networks", 2016), float64: one threshold per
    layer, ``delta = 0.7 * mean(|W|)``; ``t = sign(W)`` where ``|W| > delta``, else 0 (float64
    -1/0/+1); the scale ``a = mean(|W|)`` over the entries with ``t != 0`` (1.0 when there are
    none). The float model, the compiler and the trainer all quantize with this function."""
    w = np.asarray(w, dtype=np.float64)
    mag = np.abs(w)
    delta = TWN_DELTA * float(np.mean(mag))
    keep = mag > delta
    t = np.where(keep, np.sign(w), 0.0)
    a = float(np.mean(mag[keep])) if np.any(keep) else 1.0
    return t, a


def _check_precisions(bits, n_layers: int, where: str, allowed, per_layer: str,
                      value: str) -> list[int]:
    """``bits`` as a list of one precision in ``allowed`` per layer (``None`` or empty: all 1),
    or :class:`EieError` naming ``where`` (``per_layer``: what one entry is, for a wrong shape;
    ``value``: the allowed values, for a wrong entry)."""
    if bits is None or len(bits) == 0:
        return [1] * n_layers
    arr = np.asarray(bits)
    if arr.ndim != 1 or arr.shape[0] != n_layers:
        raise EieError(f"{where} has shape {arr.shape}; expected ({n_layers},): {per_layer}")
    out = []
    for l, b in enumerate(arr.tolist()):
        if isinstance(b, bool) or b not in allowed:
            raise EieError(f"{where}[{l}] is {b!r}; {value}")
        out.append(int(b))
    return out


def check_weight_bits(bits, n_layers: int, where: str = "weight_bits") -> list[int]:
    """``bits`` as a list of 1/2 per layer (``None`` or empty: all 1), or :class:`EieError`."""
    return _check_precisions(bits, n_layers, where, WEIGHT_BITS,
                             "one weight precision per layer (1 binary, 2 ternary)",
                             "a layer's weight precision is 1 (binary, +-1) or 2 (ternary, "
                             "-1/0/+1)")


def check_act_bits(bits, n_layers: int, where: str = "act_bits") -> list[int]:
    """``bits`` as a list of activation precisions 1..4 per layer (``None`` or empty: all 1),
    the output layer's 1; or :class:`EieError`."""
    out = _check_precisions(bits, n_layers, where, ACT_BITS,
                            "one activation precision per layer (1..4 bits; the output "
                            "layer's 1)",
                            "a layer's activation precision is 1 (bipolar +-1), 2, 3 or 4 "
                            "(unsigned 0..2**k-1) bits")
    if out and out[-1] != 1:
        raise EieError(f"{where}[{n_layers - 1}] is {out[-1]}; the output layer outputs dots (or "
                       f"bits), its activation precision is 1")
    return out


def act_quantize(u, bits: int) -> np.ndarray:
    """DoReFa's k-bit activation quantizer on the batch-norm output ``u``, as the integer level
    ``q = round_half_even(clip(u, 0, 1) * (2**bits - 1))`` (float64; the activation is
    ``q / (2**bits - 1)``). The float model, the compiler and the trainer use this function."""
    levels = float((1 << bits) - 1)
    return np.round(np.clip(u, 0.0, 1.0) * levels)


def layer_scale(a: float, in_bits: int) -> float:
    """The factor between a layer's integer dot and its float pre-activation: ``a / L`` with
    ``a`` the TWN scale (1 for W1) and ``L = 2**in_bits - 1`` (1 for bipolar inputs)."""
    return float(np.float64(a) / np.float64((1 << in_bits) - 1))


def neuron_scales(a: float, in_bits: int, alpha=None):
    """The factor between each neuron's integer dot and its float pre-activation:
    :func:`layer_scale` times the neuron's XNOR-Net scale ``alpha`` (float64 ``(n_out,)``), or
    :func:`layer_scale` alone (a float) without one. The float model and the compiler both
    scale with this function."""
    scale = layer_scale(a, in_bits)
    return scale if alpha is None else np.float64(scale) * np.asarray(alpha, dtype=np.float64)


#: The largest scaled dot ``|s * dot|`` a model may reach (:func:`check_alpha`): far below
#: float64's overflow, so batch norm's ``gamma * (z - mean)`` stays finite.
MAX_SCALED_DOT = 1e300


def check_alpha(alpha, n_out: int, name: str, source: str = "",
                reach: float | None = None) -> np.ndarray:
    """``alpha`` as float64 ``(n_out,)``, every entry finite and > 0 (and, given ``reach``,
    the layer's largest ``|dot|`` times its TWN scale, ``alpha * reach`` at most
    :data:`MAX_SCALED_DOT`), or :class:`EieError` naming the array ``name`` (and ``source``,
    e.g. ``" in model.npz"``)."""
    where = name + source
    arr = np.asarray(alpha)
    if arr.dtype.kind not in "iuf":
        raise EieError(f"{where} has dtype {arr.dtype}; expected real numbers (XNOR-Net scales "
                       f"> 0, one per output neuron)")
    arr = arr.astype(np.float64)
    if arr.shape != (n_out,):
        raise EieError(f"{where} has shape {arr.shape}; the layer has {n_out} neurons, expected "
                       f"({n_out},): one scale per output neuron")
    bad = ~np.isfinite(arr) | ~(arr > 0)
    if np.any(bad):
        k = int(np.argwhere(bad)[0][0])
        raise EieError(f"{name}[{k}]{source} is {float(arr[k])!r}; an XNOR-Net scale must be a "
                       f"finite number > 0 (the neuron's mean |weight|; leave the array out for "
                       f"1.0)")
    if reach is not None:
        with np.errstate(over="ignore"):
            big = arr * reach > MAX_SCALED_DOT
        if np.any(big):
            k = int(np.argwhere(big)[0][0])
            raise EieError(f"{name}[{k}]{source} is {float(arr[k])!r}; the layer's scaled dots "
                           f"reach {float(arr[k]) * reach:.3g}, beyond {MAX_SCALED_DOT:g} "
                           f"(float64 overflows): give a smaller scale")
    return arr


def xnor_alpha(w, bits: int) -> np.ndarray:
    """XNOR-Net's per-output scale of latent weights ``w`` ``(n_out, n_in)`` relative to the
    layer's TWN scale: ``mean(|w_row|)`` for W1; for W2 the mean ``|w|`` over the row's weights
    that :func:`ternarize` keeps, divided by the layer's scale ``a`` (so ``a * alpha`` is the
    row's own scale). A neuron whose mean is 0 (no weight, or none kept) gets 1.0."""
    w = np.asarray(w, dtype=np.float64)
    mag = np.abs(w)
    if bits == 2:
        t, a = ternarize(w)
        keep = t != 0
        n = keep.sum(axis=1)
        total = np.where(keep, mag, 0.0).sum(axis=1)
        mean = np.divide(total, n, out=np.zeros(w.shape[0]), where=n > 0) / a
    else:
        mean = mag.mean(axis=1)
    return np.where(mean > 0, mean, 1.0)


@dataclass
class FloatBnn:
    """A float BNN: weights per layer and batch norm per hidden layer (all float64)."""

    weights: list[np.ndarray]
    gamma: list[np.ndarray] = field(default_factory=list)
    beta: list[np.ndarray] = field(default_factory=list)
    mean: list[np.ndarray] = field(default_factory=list)
    var: list[np.ndarray] = field(default_factory=list)
    eps: float = DEFAULT_EPS
    #: per layer 1 (binary) or 2 (ternary, TWN); empty: every layer binary
    weight_bits: list[int] = field(default_factory=list)
    #: per layer the output activation precision 1..4 (the last 1); empty: every layer A1
    act_bits: list[int] = field(default_factory=list)
    #: per layer XNOR-Net's per-output scale ``(n_out,)`` or None (1.0); empty: no scales
    alpha: list[np.ndarray | None] = field(default_factory=list)

    def layer_alpha(self, l: int) -> np.ndarray | None:
        """Layer ``l``'s XNOR-Net scales (float64 ``(n_out,)``), or None when it has none."""
        return self.alpha[l] if l < len(self.alpha) else None

    @property
    def layer_bits(self) -> list[int]:
        """The weight precision of every layer (1 where :attr:`weight_bits` is empty)."""
        return check_weight_bits(self.weight_bits, len(self.weights))

    @property
    def layer_acts(self) -> list[int]:
        """The output activation precision of every layer (1 where :attr:`act_bits` is empty)."""
        return check_act_bits(self.act_bits, len(self.weights))

    @property
    def shape(self) -> list[int]:
        return [self.weights[0].shape[1]] + [w.shape[0] for w in self.weights]

    def validate(self) -> "FloatBnn":
        """Check shapes chain and parameters are finite; raise :class:`EieError` otherwise."""
        if not self.weights:
            raise EieError("the model has no layers (expected arrays W0, W1, ...)")
        for l, w in enumerate(self.weights):
            if w.ndim != 2 or 0 in w.shape:
                raise EieError(f"W{l} has shape {w.shape}; expected a non-empty (n_out, n_in) matrix")
            if l > 0 and w.shape[1] != self.weights[l - 1].shape[0]:
                raise EieError(f"shapes don't chain: W{l} has fan-in {w.shape[1]} but layer {l - 1} "
                               f"has {self.weights[l - 1].shape[0]} outputs (W{l - 1} {self.weights[l - 1].shape})")
            if not np.all(np.isfinite(w)):
                bad = np.argwhere(~np.isfinite(w))[0]
                raise EieError(f"W{l}[{bad[0]}, {bad[1]}] is {w[tuple(bad)]}; weights must be finite")
        n_hidden = len(self.weights) - 1
        self.layer_bits                                  # noqa: B018 - validates weight_bits
        self.layer_acts                                  # noqa: B018 - validates act_bits
        if len(self.alpha) > len(self.weights):
            raise EieError(f"the model has {len(self.alpha)} alpha arrays but "
                           f"{len(self.weights)} layers; give at most one a layer")
        self.alpha = [None if a is None else
                      check_alpha(a, w.shape[0], f"alpha{l}",
                                  reach=w.shape[1] * max(1.0, float(np.max(np.abs(w)))))
                      for l, (a, w) in enumerate(zip(self.alpha, self.weights))]
        if not np.isfinite(self.eps) or self.eps < 0:
            raise EieError(f"eps is {self.eps}; it must be a finite number >= 0")
        for name in ("gamma", "beta", "mean", "var"):
            arrs = getattr(self, name)
            if len(arrs) != n_hidden:
                raise EieError(f"the model has {len(arrs)} {name} arrays but {n_hidden} hidden layers "
                               f"need one each ({name}0..{name}{n_hidden - 1})")
            for l, a in enumerate(arrs):
                n_out = self.weights[l].shape[0]
                if a.shape != (n_out,):
                    raise EieError(f"{name}{l} has shape {a.shape}; layer {l} has {n_out} neurons, "
                                   f"expected ({n_out},)")
                if not np.all(np.isfinite(a)):
                    k = int(np.argwhere(~np.isfinite(a))[0][0])
                    raise EieError(f"{name}{l}[{k}] is {a[k]}; batch-norm parameters must be finite")
        for l, v in enumerate(self.var):
            s = v + self.eps
            if np.any(s <= 0):
                k = int(np.argwhere(s <= 0)[0][0])
                raise EieError(f"var{l}[{k}] + eps is {s[k]}; it must be > 0 (sqrt of the variance)")
        return self


def open_model_npz(path: str | os.PathLike):
    """A BNN model ``.npz`` (float or integer) opened: ``(path, data, keys, n)`` with ``n`` the
    number of layers (``W0..W{n-1}`` present); a missing or unreadable file is an
    :class:`EieError`."""
    path = Path(path)
    if not path.is_file():
        raise EieError(f"model file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
        raise EieError(f"cannot read model {path} as .npz: {exc}") from None
    keys = set(data.files)
    for k in sorted(keys):
        m = _LAYER_KEY.match(k)
        if m and m.group(2) != canonical_number(m.group(2)):
            raise EieError(f"model {path} has {shown_key(k)}: layers are numbered without leading zeros "
                           f"({m.group(1)}{canonical_number(m.group(2))}, ...); rename or remove "
                           f"it")
    n = 0
    while f"W{n}" in keys:
        n += 1
    extra = sorted((k for k in keys if beyond(k, "W", n)), key=by_number)
    if extra and n:
        raise EieError(f"model {path} has {shown_key(extra[0])} but no W{n}: layers must be "
                       f"numbered 0..L-1 without gaps")
    return path, data, keys, n


#: An array of one layer in a model ``.npz``: its name and its layer number's digits.
_LAYER_KEY = layer_key_pattern("W", "T", "gamma", "beta", "mean", "var", "alpha")


def load_model(path: str | os.PathLike) -> FloatBnn:
    """Read and validate a float BNN ``.npz``."""
    path, data, keys, n = open_model_npz(path)
    if n == 0:
        raise EieError(f"model {path} has no array W0 (expected W0..W{{L-1}}, gamma{{l}}, beta{{l}}, "
                       f"mean{{l}}, var{{l}})")

    def arr(key):
        a = data[key]
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise EieError(f"{key} in {path} has dtype {a.dtype}; expected real numbers")
        return np.asarray(a, dtype=np.float64)

    for name in ("gamma", "beta", "mean", "var"):
        if f"{name}{n - 1}" in keys:
            raise EieError(f"model {path} has {name}{n - 1} but layer {n - 1} is the last layer, "
                           f"which outputs dot without batch norm; remove it")
    model = FloatBnn(weights=[arr(f"W{l}") for l in range(n)])
    for name in ("gamma", "beta", "mean", "var"):
        for l in range(n - 1):
            if f"{name}{l}" not in keys:
                raise EieError(f"model {path} lacks {name}{l} (hidden layer {l} needs gamma, beta, "
                               f"mean and var)")
        setattr(model, name, [arr(f"{name}{l}").reshape(-1) if arr(f"{name}{l}").ndim == 0
                              else arr(f"{name}{l}") for l in range(n - 1)])
    if "eps" in keys:
        e = arr("eps")
        if e.size != 1:
            raise EieError(f"eps in {path} has shape {e.shape}; expected a scalar")
        model.eps = float(e.reshape(()))
    model.weight_bits, model.act_bits = load_precisions(data, keys, n, path)
    extra = [k for k in keys if beyond(k, "alpha", n)]
    if extra:
        raise EieError(f"model {path} has {shown_key(sorted(extra)[0])} but only layers 0..{n - 1}; remove "
                       f"it or add its layer's weights")
    model.alpha = [check_alpha(data[f"alpha{l}"], model.weights[l].shape[0], f"alpha{l}",
                               f" in {path}") if f"alpha{l}" in keys else None
                   for l in range(n)]
    if all(a is None for a in model.alpha):
        model.alpha = []
    return model.validate()


def load_precisions(data, keys, n_layers: int, path) -> tuple[list[int], list[int]]:
    """``(weight_bits, act_bits)`` of a model file (``data``, its ``keys``), each checked
    (:func:`check_weight_bits`, :func:`check_act_bits`), ``[]`` where the file has none."""
    out = []
    for name, check, want in (("weight_bits", check_weight_bits,
                               "1 (binary) or 2 (ternary), one per layer"),
                              ("act_bits", check_act_bits, "1..4, one per layer")):
        if name not in keys:
            out.append([])
            continue
        arr = data[name]
        if arr.dtype.kind not in "iu":
            raise EieError(f"{name} in {path} has dtype {arr.dtype}; expected integers {want}")
        out.append(check(arr, n_layers, f"{name} in {path}"))
    return out[0], out[1]


def save_model(model: FloatBnn, path: str | os.PathLike) -> None:
    """Write ``model`` as ``.npz`` (atomically)."""
    from ...common.atomic import atomic_file, save_npz
    arrays = {f"W{l}": w for l, w in enumerate(model.weights)}
    for name in ("gamma", "beta", "mean", "var"):
        for l, a in enumerate(getattr(model, name)):
            arrays[f"{name}{l}"] = a
    arrays["eps"] = np.float64(model.eps)
    if any(b != 1 for b in model.layer_bits):     # a binary model's file stays as it was
        arrays["weight_bits"] = np.array(model.layer_bits, dtype=np.int64)
    if any(b != 1 for b in model.layer_acts):     # an A1 model's file stays as it was
        arrays["act_bits"] = np.array(model.layer_acts, dtype=np.int64)
    for l, a in enumerate(model.alpha):           # a model without scales stays as it was
        if a is not None:
            arrays[f"alpha{l}"] = np.asarray(a, dtype=np.float64)
    with atomic_file(path, "wb") as f:
        save_npz(f, arrays)


def random_model(shape, rng: np.random.Generator, *, special: bool = True,
                 weight_bits=None, act_bits=None, alpha=None) -> FloatBnn:
    """A random float BNN of ``shape``; with ``special`` some neurons get negative or zero
    batch-norm scales, zero weights, and thresholds exactly on integers. ``weight_bits`` (per
    layer 1 or 2) makes layers ternary; their thresholds are drawn on the scaled dot ``a * dot``
    of the ternarized weights, some exactly on a reachable value. Without it the random draws
    are the binary model's, as they always were. ``alpha = (lo, hi)`` gives every layer
    XNOR-Net scales, log-uniform in ``lo .. hi`` (with ``special`` some exactly 1 or a power
    of two), and draws batch norm on the scaled dots."""
    shape = list(shape)
    bits = check_weight_bits(weight_bits, len(shape) - 1)
    acts = check_act_bits(act_bits, len(shape) - 1)
    if alpha is not None:
        return _random_qnn_model(shape, rng, special, bits, acts, alpha)
    if any(b != 1 for b in acts):
        return _random_qnn_model(shape, rng, special, bits, acts)
    if any(b == 2 for b in bits):
        return _random_ternary_model(shape, rng, special, bits)
    model = FloatBnn(weights=[])
    for l, (n_in, n_out) in enumerate(zip(shape[:-1], shape[1:])):
        w = rng.normal(size=(n_out, n_in))
        if special:
            w[rng.random(w.shape) < 0.05] = 0.0  # sign(0) = +1
        model.weights.append(w)
        if l == len(shape) - 2:
            break
        gamma = rng.normal(size=n_out)
        beta = rng.normal(size=n_out) * 2
        mean = rng.normal(size=n_out) * np.sqrt(n_in)
        var = rng.uniform(0.1, 4.0, size=n_out) * n_in
        beta = beta * np.sqrt(var) / np.sqrt(n_in)
        if special:
            kinds = rng.integers(0, 6, size=n_out)
            gamma[kinds == 1] = 0.0                       # constant neuron
            gamma[kinds == 2] = -np.abs(gamma[kinds == 2])  # flipped neuron
            on_int = kinds >= 3                              # threshold exactly on an integer dot
            # dot == mean exactly at matches m0 (a reachable dot), so gamma*(dot-mean) is 0 there
            m0 = np.clip(np.round(n_in / 2 + rng.normal(size=int(on_int.sum())) * np.sqrt(n_in) / 2),
                         0, n_in)
            mean[on_int] = 2 * m0 - n_in
            beta[on_int] = 0.0
            var[kinds == 4] = 1.0 - DEFAULT_EPS  # sqrt(var + eps) close to 1
        model.gamma.append(gamma)
        model.beta.append(beta)
        model.mean.append(mean)
        model.var.append(var)
    return model


def _random_ternary_model(shape, rng, special: bool, bits: list[int]) -> FloatBnn:
    model = FloatBnn(weights=[], weight_bits=list(bits))
    for l, (n_in, n_out) in enumerate(zip(shape[:-1], shape[1:])):
        w = rng.normal(size=(n_out, n_in))
        if special:
            w[rng.random(w.shape) < 0.05] = 0.0
            if bits[l] == 2 and n_out > 1:
                w[0] = 0.0                                 # a neuron without nonzero weights
        model.weights.append(w)
        if l == len(shape) - 2:
            break
        if bits[l] == 2:
            t, a = ternarize(w)
            nz = np.abs(t).sum(axis=1)
        else:
            a, nz = 1.0, np.full(n_out, float(n_in))
        gamma = rng.normal(size=n_out)
        var = rng.uniform(0.1, 4.0, size=n_out) * np.maximum(nz, 1) * a * a
        mean = rng.normal(size=n_out) * np.sqrt(np.maximum(nz, 1)) * a
        beta = rng.normal(size=n_out) * 0.5
        if special:
            kinds = rng.integers(0, 6, size=n_out)
            gamma[kinds == 1] = 0.0
            gamma[kinds == 2] = -np.abs(gamma[kinds == 2])
            on = kinds >= 3                 # a * dot == mean exactly at a reachable dot
            m0 = np.round(nz[on] / 2 + rng.normal(size=int(on.sum())) * np.sqrt(nz[on]) / 2)
            m0 = np.clip(m0, 0, nz[on])
            mean[on] = a * (2 * m0 - nz[on])
            beta[on] = 0.0
        model.gamma.append(gamma)
        model.beta.append(beta)
        model.mean.append(mean)
        model.var.append(var)
    return model


def _random_alpha(rng, n_out: int, span, special: bool) -> np.ndarray:
    """XNOR-Net scales log-uniform in ``span = (lo, hi)``; with ``special`` some exactly 1.0
    or a power of two in the span."""
    lo, hi = (float(v) for v in span)
    alpha = np.exp(rng.uniform(np.log(lo), np.log(hi), size=n_out))
    if special:
        kind = rng.integers(0, 4, size=n_out)
        if lo <= 1.0 <= hi:
            alpha[kind == 1] = 1.0
        alpha[kind == 2] = 2.0 ** np.round(np.log2(alpha[kind == 2]))
    return np.clip(alpha, lo, hi)


def _random_qnn_model(shape, rng, special: bool, bits: list[int], acts: list[int],
                      alpha_span=None) -> FloatBnn:
    """Random k-bit-activation model: batch norm drawn on the scaled dot so that the DoReFa
    outputs use every level, some neurons exactly on a level boundary; with ``alpha_span``
    every layer has XNOR-Net scales (:func:`_random_alpha`)."""
    model = FloatBnn(weights=[], weight_bits=list(bits), act_bits=list(acts))
    alphas = []
    x = np.where(rng.random((256, shape[0])) < 0.5, 1.0, -1.0)   # to draw realistic statistics
    for l, (n_in, n_out) in enumerate(zip(shape[:-1], shape[1:])):
        in_bits = 1 if l == 0 else acts[l - 1]
        w = rng.normal(size=(n_out, n_in))
        if special:
            w[rng.random(w.shape) < 0.05] = 0.0
            if bits[l] == 2 and n_out > 1:
                w[0] = 0.0
        model.weights.append(w)
        alpha = None if alpha_span is None else _random_alpha(rng, n_out, alpha_span, special)
        alphas.append(alpha)
        if l == len(shape) - 2:
            break
        if bits[l] == 2:
            t, a = ternarize(w)
        else:
            t, a = np.where(w >= 0, 1.0, -1.0), 1.0
        scale = neuron_scales(a, in_bits, alpha)
        dot = x @ t.T
        z = scale * dot
        if alpha is None:
            mu, sd = z.mean(axis=0), z.std(axis=0) + 1e-3
        else:                               # on the dot, then scaled: no overflow in the squares
            mu, sd = scale * dot.mean(axis=0), scale * (dot.std(axis=0) + 1e-3)
        gamma = rng.normal(size=n_out)
        kinds = rng.integers(0, 6, size=n_out) if special else np.zeros(n_out, int)
        gamma[kinds == 1] = 0.0
        gamma[kinds == 2] = -np.abs(gamma[kinds == 2])
        with np.errstate(over="ignore"):
            var = np.minimum(sd ** 2 * rng.uniform(0.5, 2.0, size=n_out), 1e300)
        mean = mu + rng.normal(size=n_out) * sd * 0.3
        beta = rng.uniform(0.0, 1.0, size=n_out) if acts[l] > 1 else rng.normal(size=n_out) * 0.5
        if special:
            on = kinds >= 3        # the pre-activation lands exactly on a reachable value
            row = rng.integers(0, x.shape[0], size=n_out)
            mean[on] = z[row[on], np.flatnonzero(on)]
            if acts[l] > 1:
                beta[on] = rng.integers(0, 2 * ((1 << acts[l]) - 1) + 1, size=int(on.sum())) \
                    / (2.0 * ((1 << acts[l]) - 1))   # a rounding boundary (half a level) or a level
            else:
                beta[on] = 0.0
        model.gamma.append(gamma)
        model.beta.append(beta)
        model.mean.append(mean)
        model.var.append(var)
        pre = bn_expression(gamma, beta, mean, var, model.eps, z)
        x = act_quantize(pre, acts[l]) if acts[l] > 1 else np.where(pre >= 0, 1.0, -1.0)
    if alpha_span is not None:
        model.alpha = alphas
    return model


def bn_expression(gamma, beta, mean, var, eps, dot):
    """The float batch-norm-and-sign pre-activation, exactly as the float model evaluates it.

    The compiler calls this same function at every possible integer ``dot`` so that its integer
    thresholds agree with the float model bit for bit."""
    with np.errstate(over="ignore"):  # overflow to +-inf keeps its sign: the comparison holds
        return gamma * (dot - mean) / np.sqrt(var + eps) + beta


def float_layers(model: FloatBnn, x) -> list[np.ndarray]:
    """Every layer's output of the float model: bits (uint8) of hidden layers, int32 dot last."""
    a = check_bits(x, model.shape[0]).astype(np.float64) * 2.0 - 1.0
    outs = []
    n = len(model.weights)
    layer_bits = model.layer_bits
    acts = model.layer_acts
    for l, w in enumerate(model.weights):
        if layer_bits[l] == 2:
            wb, scale = ternarize(w)
        else:
            wb, scale = np.where(w >= 0, 1.0, -1.0), 1.0
        dot = a @ wb.T
        if l == n - 1:
            outs.append(np.rint(dot).astype(np.int32))
            break
        # docs/ARCHITECTURE.md: z = s * dot, s = (a / L) * alpha (1.0 * dot for W1A1: the dot)
        in_bits = 1 if l == 0 else acts[l - 1]
        z = neuron_scales(scale, in_bits, model.layer_alpha(l)) * dot
        pre = bn_expression(model.gamma[l], model.beta[l], model.mean[l], model.var[l],
                            model.eps, z)
        if acts[l] > 1:                     # DoReFa: the integer level passed on
            a = act_quantize(pre, acts[l])
            outs.append(a.astype(np.uint8))
            continue
        bits = pre >= 0
        outs.append(bits.astype(np.uint8))
        a = np.where(bits, 1.0, -1.0)
    return outs


def float_forward(model: FloatBnn, x) -> np.ndarray:
    """Run the float model on bits ``x`` (batch, n_in); return int32 ``dot`` (batch, n_classes)."""
    return float_layers(model, x)[-1]


def output_logits(dot, scale=None) -> np.ndarray:
    """The logits of output dots ``dot`` (batch, n_classes): ``scale * dot`` in float64 (one
    multiply an output), ``dot`` itself without a ``scale``. Their argmax is the class."""
    logits = np.asarray(dot, dtype=np.float64)
    return logits if scale is None else np.asarray(scale, dtype=np.float64)[None, :] * logits


def float_logits(model: FloatBnn, x) -> np.ndarray:
    """The float model's logits (batch, n_classes): the last layer's ``alpha * dot``
    (:func:`output_logits`; the dot itself without ``alpha``)."""
    return output_logits(float_forward(model, x), model.layer_alpha(len(model.weights) - 1))
