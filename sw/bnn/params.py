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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...common.errors import EieError

__all__ = ["IntegerBnn", "RULES", "ge_thresholds"]

#: The threshold comparison rules, by name: eie's own ``matches >= T`` and FINN's ``matches > T``.
RULES = ("ge", "gt")


def ge_thresholds(t, rule: str, n_in: int) -> np.ndarray:
    """Thresholds under ``rule`` as eie's ``matches >= T'`` with ``0 <= T' <= n_in + 1``: the
    same output bit for every match count ``0..n_in`` (``T' = 0``: always 1; ``n_in + 1``: never)."""
    if rule not in RULES:
        raise EieError(f"threshold rule {rule!r} is not one of {', '.join(RULES)} "
                       f"(ge: matches >= T, eie's; gt: matches > T, FINN's)")
    t = np.asarray(t, dtype=np.int64)
    if rule == "gt":
        t = t + 1
    return np.clip(t, 0, n_in + 1)


@dataclass
class IntegerBnn:
    """Bipolar weights per layer, integer thresholds per layer (``None`` for an unthresholded
    last layer) and the comparison rule they were written for."""

    weights: list[np.ndarray]
    thresholds: list[np.ndarray | None]
    rule: str = "ge"

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
            bad = ~np.isin(w, (-1, 1))
            if np.any(bad):
                i, j = np.argwhere(bad)[0]
                raise EieError(f"W{l}[{i}, {j}] is {w[i, j]!r}; bipolar weights are -1 or +1 "
                               f"(binarise with sign first)")
            t = self.thresholds[l]
            if t is None:
                if l < len(self.weights) - 1:
                    raise EieError(f"hidden layer {l} has no thresholds (T{l}); only the last "
                                   f"layer may output its dot unthresholded")
                continue
            t = np.asarray(t)
            if t.shape != (w.shape[0],):
                raise EieError(f"T{l} has shape {t.shape}; layer {l} has {w.shape[0]} neurons, "
                               f"expected ({w.shape[0]},)")
            if not np.issubdtype(t.dtype, np.integer):
                if not (np.issubdtype(t.dtype, np.floating) and np.all(np.isfinite(t))
                        and np.all(t == np.round(t))):
                    k = int(np.argwhere(~np.isfinite(t) | (t != np.round(t)))[0][0]) \
                        if np.issubdtype(t.dtype, np.floating) else 0
                    raise EieError(f"T{l}[{k}] is {t.reshape(-1)[k]!r}; thresholds are integers "
                                   f"(compared with the match count)")
        return self

    def ge_thresholds(self) -> list[np.ndarray | None]:
        """Every layer's thresholds as eie's ``matches >= T`` in ``0..n_in + 1``."""
        return [None if t is None else ge_thresholds(np.round(np.asarray(t)).astype(np.int64),
                                                    self.rule, w.shape[1])
                for w, t in zip(self.weights, self.thresholds)]
