"""A BNN given as integer parameters: bipolar weights and integer thresholds per layer.

This is the form a trained network has in the FINN ecosystem (BNN-PYNQ's parameter files, a
QONNX graph after streamlining): no batch norm, the thresholds already integers. Every importer
(``.npz`` of ``W{l}``/``T{l}``, QONNX) produces an :class:`IntegerBnn`; the compiler turns it into
a :class:`~eie.sw.bnn.image.BnnImage`.

Semantics (docs/ARCHITECTURE.md, BNN section), for layer ``l`` with fan-in ``K``:

- ``weights[l]``: int8 in ``{-1, +1}``, shape ``(n_out, n_in)``;
- ``matches = popcount(XNOR(x, w))``: the number of inputs whose bit agrees with the weight's
  sign (input bit 1 is +1, 0 is -1); the bipolar dot is ``2 * matches - K``;
- ``thresholds[l]``: int64 ``(n_out,)``, compared with ``matches`` (not with the dot) under
  ``rule``: ``"ge"`` fires when ``matches >= T`` (eie's own rule), ``"gt"`` when ``matches > T``
  (FINN's). Any integer is allowed; a threshold that no match count in ``0..K`` reaches gives a
  constant neuron. ``None`` (allowed for the last layer only) leaves the layer unthresholded: it
  outputs the dot.
- ``weight_bits`` (optional, per layer 1 or 2): a ternary (W2) layer's weights are in
  ``{-1, 0, +1}``; ``matches`` counts only the nonzero weights that agree
  (``popcount(mask & XNOR)``), the dot is ``2 * matches - K'`` with ``K'`` the neuron's nonzero
  weights, and the thresholds still count matches, clipped to ``0..K + 1`` (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ...common.errors import EieError
from ..npz_keys import beyond, shown_key

__all__ = ["IntegerBnn", "RULES", "ge_thresholds", "saturate", "load_integer_npz",
           "save_integer_npz",
           "npz_kind", "npz_file_kind", "strip_padding", "FLOAT_KEYS"]

#: The threshold comparison rules, by name: eie's own ``matches >= T`` and FINN's ``matches > T``.
RULES = ("ge", "gt")


def saturate(t, lo: int, hi: int) -> np.ndarray:
    """``t`` (integers of any dtype, or floats holding integers: rounded) clipped to
    ``lo..hi`` as int64, exactly: the comparisons happen in ``t``'s own dtype (a float in
    float64), never after a wrapping cast, so ``2**64 - 1`` (uint64), ``2**63 - 1`` (int64) or
    ``1e30`` end at ``hi`` and ``-1e30`` at ``lo``. NaN is refused."""
    lo, hi = int(lo), int(hi)
    a = np.asarray(t)
    if a.dtype.kind == "b":
        a = a.astype(np.int64)
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        if hi < info.min:
            return np.full(a.shape, hi, dtype=np.int64)
        if lo > info.max:
            return np.full(a.shape, lo, dtype=np.int64)
        c = np.clip(a, a.dtype.type(max(lo, info.min)), a.dtype.type(min(hi, info.max)))
        return c.astype(np.int64)
    if a.dtype.kind == "f":
        f = a.astype(np.float64)                # float16/32 exactly; wider ones saturate to inf
        if np.any(np.isnan(f)):
            raise EieError("a threshold is NaN; thresholds are integers")
        return np.clip(np.round(f), float(lo), float(hi)).astype(np.int64)
    raise EieError(f"thresholds of dtype {a.dtype}; thresholds are integers")


def ge_thresholds(t, rule: str, n_in: int, lo: int = 0) -> np.ndarray:
    """Thresholds under ``rule`` as eie's ``acc >= T'`` with ``lo <= T' <= n_in + 1``: the
    same output bit for every accumulator value ``lo..n_in`` (the match count ``0..n_in`` by
    default; ``T' = lo``: always 1; ``n_in + 1``: never). Any integer (or integer-valued float)
    of any magnitude and dtype is clipped exactly (:func:`saturate`): ``gt``'s ``T + 1`` is
    taken after the clip, so it cannot overflow."""
    if rule not in RULES:
        raise EieError(f"threshold rule {rule!r} is not one of {', '.join(RULES)} "
                       f"(ge: matches >= T, eie's; gt: matches > T, FINN's)")
    if rule == "gt":                            # acc > T  <=>  acc >= T + 1
        return saturate(t, lo - 1, n_in) + 1
    return saturate(t, lo, n_in + 1)


@dataclass
class IntegerBnn:
    """Bipolar weights per layer, integer thresholds per layer (``None`` for an unthresholded
    last layer) and the comparison rule they were written for."""

    weights: list[np.ndarray]
    thresholds: list[np.ndarray | None]
    rule: str = "ge"
    #: per layer 1 (binary) or 2 (ternary); empty: every layer binary
    weight_bits: list[int] = field(default_factory=list)
    #: per layer the output activation precision 1..4 (the last 1); empty: every layer A1.
    #: A hidden layer of precision k >= 2 has ``2**k - 1`` thresholds a neuron,
    #: ``thresholds[l]`` of shape ``(n_out, 2**k - 1)``; a layer fed by k-bit activations
    #: compares them with its integer dot (``-K*L .. K*L``), not with a match count.
    act_bits: list[int] = field(default_factory=list)

    @property
    def layer_bits(self) -> list[int]:
        from .float_model import check_weight_bits

        return check_weight_bits(self.weight_bits, len(self.weights))

    @property
    def layer_acts(self) -> list[int]:
        from .float_model import check_act_bits

        return check_act_bits(self.act_bits, len(self.weights))

    def in_bits(self, l: int) -> int:
        """Layer ``l``'s input precision (1 for layer 0)."""
        return 1 if l == 0 else self.layer_acts[l - 1]

    @property
    def shape(self) -> list[int]:
        return [self.weights[0].shape[1]] + [w.shape[0] for w in self.weights]

    @property
    def last_thresholded(self) -> bool:
        return self.thresholds[-1] is not None

    def validate(self) -> "IntegerBnn":
        """Check the shapes chain, the weights are +-1 and the thresholds integers of the right
        shape; raise :class:`EieError` naming the array otherwise."""
        if self.rule not in RULES:
            raise EieError(f"threshold rule {self.rule!r} is not one of {', '.join(RULES)}")
        if not self.weights:
            raise EieError("the network has no layers (expected arrays W0, W1, ...)")
        bits = self.layer_bits
        acts = self.layer_acts
        if len(self.thresholds) != len(self.weights):
            raise EieError(f"{len(self.weights)} weight arrays but {len(self.thresholds)} "
                           f"threshold entries; give one per layer (None for an unthresholded "
                           f"last layer)")
        for l, w in enumerate(self.weights):
            w = np.asarray(w)
            if w.ndim != 2 or 0 in w.shape:
                raise EieError(f"W{l} has shape {w.shape}; expected a non-empty (n_out, n_in) matrix")
            if l > 0 and w.shape[1] != self.weights[l - 1].shape[0]:
                raise EieError(f"shapes don't chain: W{l} has fan-in {w.shape[1]} but layer {l - 1} "
                               f"has {self.weights[l - 1].shape[0]} outputs")
            if not (np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
                raise EieError(f"W{l} has dtype {w.dtype}; bipolar weights are numbers -1 or +1")
            if bits[l] == 2:
                bad = ~np.isin(w, (-1, 0, 1))
                if np.any(bad):
                    i, j = np.argwhere(bad)[0]
                    raise EieError(f"W{l}[{i}, {j}] is {w[i, j].item()!r}; ternary weights "
                                   f"(weight_bits[{l}] = 2) are -1, 0 or +1")
            else:
                bad = ~np.isin(w, (-1, 1))
                if np.any(bad):
                    i, j = np.argwhere(bad)[0]
                    raise EieError(f"W{l}[{i}, {j}] is {w[i, j].item()!r}; bipolar weights are "
                                   f"-1 or +1 (from bits b, 1 meaning +1: W = 2*b - 1; from "
                                   f"floats: sign, with sign(0) = +1; a ternary layer, -1/0/+1, "
                                   f"needs weight_bits[{l}] = 2 in the file)")
            t = self.thresholds[l]
            if t is None:
                if l < len(self.weights) - 1:
                    raise EieError(f"hidden layer {l} has no thresholds (T{l}); only the last "
                                   f"layer may output its dot unthresholded")
                continue
            t = np.asarray(t)
            want = (w.shape[0],) if acts[l] == 1 else (w.shape[0], (1 << acts[l]) - 1)
            if t.shape != want:
                hint = ""
                if (acts[l] == 1 and t.ndim == 2 and t.shape[0] == w.shape[0]
                        and t.shape[1] in (3, 7, 15)):
                    k = (t.shape[1] + 1).bit_length() - 1
                    hint = (f"; {t.shape[1]} thresholds a neuron are a {k}-bit (A{k}) layer: "
                            f"say so in the file with act_bits (one a layer, e.g. act_bits="
                            f"{[k if i == l else 1 for i in range(len(self.weights))]})")
                raise EieError(f"T{l} has shape {t.shape}; layer {l} has {w.shape[0]} neurons"
                               + (f" and {acts[l]}-bit outputs ({want[1]} thresholds a neuron)"
                                  if acts[l] > 1 else
                                  (" and 1-bit outputs (no act_bits given: every layer "
                                   "A1)" if not self.act_bits else
                                   f" and 1-bit outputs (act_bits[{l}] = 1)")
                                  if t.ndim == 2 else "")
                               + f", expected {want}{hint}")
            if not np.issubdtype(t.dtype, np.integer):
                if not (np.issubdtype(t.dtype, np.floating) and np.all(np.isfinite(t))
                        and np.all(t == np.round(t))):
                    flat = t.reshape(-1)
                    k = int(np.argwhere(~np.isfinite(flat) | (flat != np.round(flat)))[0][0]) \
                        if np.issubdtype(t.dtype, np.floating) else 0
                    raise EieError(f"T{l}[{k}] is {flat[k].item()!r} (dtype {t.dtype}); "
                                   f"thresholds are integers (compared with the match count; "
                                   f"any magnitude, clipped to the layer's range)")
        return self

    def ge_thresholds(self) -> list[np.ndarray | None]:
        """Every layer's thresholds as eie's ``matches >= T`` in ``0..n_in + 1`` (or ``acc >=
        T`` in ``-K*L .. K*L + 1`` for a layer fed by k-bit activations)."""
        out = []
        for l, (w, t) in enumerate(zip(self.weights, self.thresholds)):
            if t is None:
                out.append(None)
                continue
            lo, hi = self.acc_range(l)
            out.append(ge_thresholds(t, self.rule, hi, lo))
        return out

    def acc_range(self, l: int) -> tuple[int, int]:
        """Layer ``l``'s accumulator range ``lo..hi``: the match count ``0..K`` (1-bit inputs)
        or the dot ``-K*L .. K*L`` (k-bit inputs, ``L = 2**k - 1``)."""
        k_in = np.asarray(self.weights[l]).shape[1]
        k = self.in_bits(l)
        if k == 1:
            return 0, k_in
        span = k_in * ((1 << k) - 1)
        return -span, span

    def saturated_thresholds(self) -> list[np.ndarray | None]:
        """The thresholds as int64: each value that int64 holds exactly as it is (an
        integer-valued float rounded), any other (beyond int64: ``1e30``, uint64's ``2**64 -
        1``) clipped exactly (:func:`saturate`) to one beyond its layer's accumulator range,
        ``lo - 1`` or ``hi + 1``, which gives the same bit at every accumulator value under
        either rule (below ``lo``: always fires, above ``hi``: never)."""
        out = []
        for l, t in enumerate(self.thresholds):
            if t is None:
                out.append(None)
                continue
            lo, hi = self.acc_range(l)
            a = np.asarray(t)
            sat = saturate(a, lo - 1, hi + 1)
            if a.dtype.kind in "bi":
                out.append(a.astype(np.int64))
                continue
            if a.dtype.kind == "u":
                fits = a <= np.uint64(np.iinfo(np.int64).max)
                exact = np.where(fits, a, 0).astype(np.int64)
            else:
                f = np.round(a.astype(np.float64))
                fits = (f >= -2.0 ** 63) & (f < 2.0 ** 63)
                exact = np.where(fits, f, 0.0).astype(np.int64)
            out.append(np.where(fits, exact, sat))
        return out


#: The keys of a float model ``.npz`` (:func:`eie.sw.bnn.float_model.load_model`) that an
#: integer one must not have.
FLOAT_KEYS = ("gamma", "beta", "mean", "var", "eps", "alpha")


def _layer_keys(keys, prefix: str) -> list[str]:
    return sorted(k for k in keys if k.startswith(prefix) and k[len(prefix):].isdigit())


def npz_kind(keys) -> str:
    """``"integer"`` (thresholds ``T{l}``) or ``"float"`` (anything else: the float model's
    keys), or an :class:`EieError` for a file that mixes both kinds."""
    keys = set(keys)
    ints = _layer_keys(keys, "T") + (["rule"] if "rule" in keys else [])
    floats = [k for name in FLOAT_KEYS for k in (_layer_keys(keys, name) if name != "eps"
                                                  else (["eps"] if "eps" in keys else []))]
    if ints and floats:
        what = ("XNOR-Net scales, which integer thresholds already include"
                if floats[0].startswith("alpha") else "float batch-norm parameters")
        raise EieError(f"the model mixes integer thresholds ({ints[0]}) with {what} "
                       f"({floats[0]}); give either W{{l}} and T{{l}} (integer) or "
                       f"W{{l}} with gamma, beta, mean, var (float), not both")
    return "integer" if ints else "float"


def npz_file_kind(path: str | os.PathLike) -> str:
    """:func:`npz_kind` of the ``.npz`` at ``path`` (``"float"`` for a file that cannot be read
    as one: the float model's loader then says what it expected)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
    except Exception:  # noqa: BLE001 - unreadable: the loader says what it expected
        return "float"
    return npz_kind(keys)


def load_integer_npz(path: str | os.PathLike, rule: str | None = None) -> IntegerBnn:
    """Read an integer BNN ``.npz``: ``W0..W{L-1}`` (+1/-1, ``(n_out, n_in)``), ``T{l}``
    (integers ``(n_out,)``, compared with the match count) for every hidden layer and, optionally,
    the last, optionally ``rule`` (the string ``"ge"`` or ``"gt"``) and optionally
    ``weight_bits`` (integers ``(L,)``: 2 makes a layer ternary, ``W{l}`` in -1/0/+1; default
    all 1). ``rule`` given here
    must agree with the file's; one of the two must state it (the same thresholds under the
    other rule give other bits). Validated (:meth:`IntegerBnn.validate`)."""
    from .float_model import open_model_npz

    path, data, keys, n = open_model_npz(path)
    if npz_kind(keys) != "integer":
        raise EieError(f"model {path} has no thresholds T0, T1, ...; it is not an integer BNN")
    if n == 0:
        raise EieError(f"model {path} has no array W0 (expected W0..W{{L-1}} and T{{l}})")
    extra = [k for k in _layer_keys(keys, "W") + _layer_keys(keys, "T")
             if beyond(k, k[0], n)]
    if extra:
        raise EieError(f"model {path} has {shown_key(extra[0])} but no W{n}: layers must be numbered "
                       f"0..L-1 without gaps")
    if "rule" in keys:
        own = data["rule"]
        if own.shape != () or own.dtype.kind != "U":
            raise EieError(f"'rule' in {path} must be the string 'ge' or 'gt'")
        own = str(own)
        if own not in RULES:
            raise EieError(f"'rule' in {path} is {own!r}; expected 'ge' (matches >= T) or 'gt' "
                           f"(matches > T)")
        if rule is not None and rule != own:
            raise EieError(f"--threshold-rule {rule} contradicts the model's own rule {own!r} "
                           f"({path}); leave the option out or correct the file")
        rule = own
    if rule is None:
        raise EieError(f"model {path} has integer thresholds but no comparison rule: give "
                       f"--threshold-rule gt (FINN / BNN-PYNQ: matches > T) or ge (matches >= T)")

    def arr(key):
        a = data[key]
        if a.dtype.kind not in "biuf":
            raise EieError(f"{key} in {path} has dtype {a.dtype}; expected real numbers")
        return a

    weights = [arr(f"W{l}") for l in range(n)]
    thresholds = []
    for l in range(n):
        if f"T{l}" in keys:
            thresholds.append(arr(f"T{l}"))
        elif l < n - 1:
            raise EieError(f"model {path} lacks T{l}: hidden layer {l} needs thresholds (only the "
                           f"last layer may leave them out and output its dot)")
        else:
            thresholds.append(None)
    from .float_model import load_precisions

    bits, acts = load_precisions(data, keys, n, path)
    net = IntegerBnn(weights, thresholds, rule, bits, acts).validate()
    net.weights = [np.asarray(w).astype(np.int8) for w in net.weights]
    net.thresholds = net.saturated_thresholds()
    return net


def save_integer_npz(net: IntegerBnn, path: str | os.PathLike) -> None:
    """Write ``net`` as the ``.npz`` :func:`load_integer_npz` reads, its rule included
    (atomically)."""
    from ...common.atomic import atomic_file, save_npz

    net.validate()
    arrays = {f"W{l}": np.asarray(w, dtype=np.int8) for l, w in enumerate(net.weights)}
    arrays.update({f"T{l}": t for l, t in enumerate(net.saturated_thresholds())
                   if t is not None})
    arrays["rule"] = np.array(net.rule)
    if any(b != 1 for b in net.layer_bits):
        arrays["weight_bits"] = np.array(net.layer_bits, dtype=np.int64)
    if any(b != 1 for b in net.layer_acts):
        arrays["act_bits"] = np.array(net.layer_acts, dtype=np.int64)
    with atomic_file(path, "wb") as f:
        save_npz(f, arrays)


def strip_padding(net: IntegerBnn, shape: Sequence[int], *, input_pad_bit: int = 0) -> IntegerBnn:
    """The network without the padding a FINN export carries (BNN-PYNQ's LFC: 832 inputs for
    784 pixels, 64 output neurons for 10 classes): keep the first ``shape[l]`` inputs and
    ``shape[l + 1]`` neurons of every layer, and subtract from each kept neuron's threshold the
    matches that the dropped inputs contributed, so every kept bit is the same as the padded
    network's at every input.

    The dropped inputs of layer 0 carried ``input_pad_bit`` (BNN-PYNQ pads the input with 0
    bits, -1, and the weights with +1, so there they never match and no threshold moves). The
    dropped neurons of a hidden layer must be constant (a threshold no match count reaches, such
    as BNN-PYNQ's 32767, or one every count passes), their constant bit is what the next
    layer's dropped inputs carried; a dropped neuron of the output layer is simply gone. An
    unthresholded output layer keeps its weights: its dots become those of the real inputs
    (the padded network's differ from them by the padding's constant share)."""
    net.validate()
    if any(b != 1 for b in net.layer_acts):
        raise EieError("--strip-padding takes networks of 1-bit activations only (this one has "
                       "k-bit layers); strip the padding before quantizing the activations")
    padded = net.shape
    shape = [int(v) for v in shape]
    if len(shape) != len(padded):
        raise EieError(f"--strip-padding {','.join(map(str, shape))} has {len(shape)} widths but "
                       f"the network has {len(padded)} ({','.join(map(str, padded))})")
    for k, (real, pad) in enumerate(zip(shape, padded)):
        if not 1 <= real <= pad:
            raise EieError(f"--strip-padding: width {k} is {real}, but the network's is {pad}; "
                           f"each real width must be 1..{pad}")
    if input_pad_bit not in (0, 1):
        raise EieError(f"input_pad_bit is {input_pad_bit!r}; a bit is 0 or 1")
    pad_values = np.full(padded[0] - shape[0], 2 * input_pad_bit - 1, dtype=np.int64)
    weights, thresholds = [], []
    last = len(net.weights) - 1
    for l, (w, t) in enumerate(zip(net.weights, net.thresholds)):
        w = np.asarray(w, dtype=np.int64)
        n_in, n_out = shape[l], shape[l + 1]
        extra = (w[:n_out, n_in:] == pad_values[None, :]).sum(axis=1)    # matches of padding
        weights.append(w[:n_out, :n_in].astype(np.int8))
        if t is None:
            thresholds.append(None)
            continue
        t = saturate(t, -1, w.shape[1] + 1)      # the same bits under either rule
        thresholds.append(t[:n_out] - extra)
        if l < last:
            ge = ge_thresholds(t[n_out:], net.rule, w.shape[1])
            varying = np.flatnonzero((ge != 0) & (ge != w.shape[1] + 1))
            if varying.size:
                j = n_out + int(varying[0])
                raise EieError(f"layer {l} neuron {j} is padding to strip but not constant: its "
                               f"threshold {t[j]} lies within the match counts 0..{w.shape[1]}; "
                               f"only neurons that never or always fire can be dropped")
            pad_values = np.where(ge == 0, 1, -1).astype(np.int64)
    return IntegerBnn(weights, thresholds, net.rule, list(net.weight_bits)).validate()
