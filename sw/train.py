"""NumPy training of fully connected ReLU networks, and Deep Compression's retraining loops.

Everything here is plain NumPy in float32, seeded and deterministic (same seed, same data, same
result): minibatch Adam on softmax cross-entropy, He initialisation, decoupled weight decay.

- :class:`MLP` holds ``weights[l]`` of shape ``(n_out, n_in)`` (the contract's ``W @ x``
  orientation) and ``biases[l]``; every layer but the last has ReLU, as in the EIE contract.
- :func:`train` runs minibatch Adam. With ``masks`` the pruned weights stay exactly zero: their
  gradients are dropped and the mask is applied after every step, so a mask is fixed for the
  whole of a retraining run (Deep Compression, "Learning both weights and connections").
- :func:`prune_and_retrain` is the iterative loop: prune by magnitude to a density that falls
  step by step to the target of each layer (masks from :mod:`eie.sw.prune`), retrain with the
  masks fixed after every step.
  With ``balance_pes=N`` every step prunes load-balance-aware (ESE): each of the N PEs' rows
  (``i % N``) keeps the same number of weights (:func:`eie.sw.prune.prune_balanced`).
- :func:`finetune_shared` retrains a weight-shared network: weights are ``codebook[code]``, the
  codes stay fixed, and every centroid moves by the sum of the gradients of its cluster
  (Deep Compression, section 3.1), through :mod:`eie.sw.share`'s fine-tuning API. Biases keep
  training as ordinary parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

import numpy as np

from ..common.errors import EieError

__all__ = [
    "LENET_300_100",
    "LENET_300_100_DENSITIES",
    "MLP",
    "TrainConfig",
    "Adam",
    "train",
    "accuracy",
    "loss_and_grads",
    "density_schedule",
    "PruneStep",
    "prune_and_retrain",
    "share_weights",
    "finetune_shared",
]

#: LeNet-300-100's layer sizes.
LENET_300_100 = (784, 300, 100, 10)
#: Deep Compression's per-layer densities for LeNet-300-100 (8%, 9%, 26%: 8% of all weights).
LENET_300_100_DENSITIES = (0.08, 0.09, 0.26)


@dataclass
class MLP:
    """A fully connected network: ``weights[l]`` ``(n_out, n_in)``, ``biases[l]`` ``(n_out,)``,
    ReLU after every layer but the last."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def __post_init__(self) -> None:
        if not self.weights:
            raise EieError("a network needs at least one layer")
        if len(self.weights) != len(self.biases):
            raise EieError(f"{len(self.weights)} weight matrices but {len(self.biases)} bias vectors")
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.ndim != 2 or b.shape != (w.shape[0],):
                raise EieError(f"layer {l}: weights {w.shape} and bias {b.shape} do not match")
            if l and w.shape[1] != self.weights[l - 1].shape[0]:
                raise EieError(f"layer {l} takes {w.shape[1]} inputs but layer {l - 1} gives "
                               f"{self.weights[l - 1].shape[0]} outputs")

    @classmethod
    def init(cls, sizes: Sequence[int], seed: int = 0) -> "MLP":
        """He-normal weights, zero biases."""
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise EieError(f"layer sizes {tuple(sizes)} need at least two positive entries")
        rng = np.random.default_rng(seed)
        weights, biases = [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            std = np.sqrt(2.0 / n_in)
            weights.append((rng.standard_normal((n_out, n_in)) * std).astype(np.float32))
            biases.append(np.zeros(n_out, dtype=np.float32))
        return cls(weights, biases)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    def copy(self) -> "MLP":
        return MLP([w.copy() for w in self.weights], [b.copy() for b in self.biases])

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits of the last layer, ``(batch, n_out)``."""
        h = np.asarray(x, dtype=np.float32)
        last = len(self.weights) - 1
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w.T + b
            if l != last:
                h = np.maximum(h, 0)
        return h

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.forward(x), axis=1)

    def n_weights(self) -> int:
        return sum(int(w.size) for w in self.weights)

    def n_nonzero(self) -> int:
        return sum(int(np.count_nonzero(w)) for w in self.weights)

    def float_model(self, source: str = "model"):
        """The model as ``compress_model`` takes it (:class:`eie.sw.model_io.FloatModel`:
        float64, ReLU on every layer but the last); ``source`` names it in messages."""
        from .model_io import FloatLayer, FloatModel

        last = len(self.weights) - 1
        return FloatModel([FloatLayer(w.astype(np.float64), b.astype(np.float64), relu=l < last)
                           for l, (w, b) in enumerate(zip(self.weights, self.biases))],
                          source=source)

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        """The model file's arrays: ``W0, b0, W1, b1, ...`` (what ``eie compress`` reads)."""
        out: dict[str, np.ndarray] = {}
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"W{l}"] = w
            out[f"b{l}"] = b
        return out


@dataclass
class TrainConfig:
    """Minibatch Adam settings."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_decay: float = 1.0  # the learning rate is multiplied by this after every epoch
    seed: int = 0
    #: ``augment(x_batch, rng) -> x_batch`` applied to every minibatch (e.g.
    #: :func:`eie.sw.mnist.shift_pixels`); ``rng`` is the run's seeded generator.
    augment: Optional[Callable[[np.ndarray, np.random.Generator], np.ndarray]] = None

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise EieError(f"epochs must be >= 0, not {self.epochs}")
        if self.batch_size < 1:
            raise EieError(f"batch size must be >= 1, not {self.batch_size}")
        if not self.lr > 0:
            raise EieError(f"learning rate must be > 0, not {self.lr}")


class Adam:
    """Adam over a list of arrays, updated in place."""

    def __init__(self, params: Sequence[np.ndarray], lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        self.t += 1
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            p -= (self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)).astype(p.dtype)


def loss_and_grads(model: MLP, x: np.ndarray, y: np.ndarray
                   ) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """Mean softmax cross-entropy over the batch and its gradients by weight and bias."""
    x = np.asarray(x, dtype=np.float32)
    acts = [x]
    last = len(model.weights) - 1
    h = x
    for l, (w, b) in enumerate(zip(model.weights, model.biases)):
        h = h @ w.T + b
        if l != last:
            h = np.maximum(h, 0)
        acts.append(h)
    logits = acts[-1]
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = float(-np.mean(np.log(p[np.arange(n), y] + 1e-12)))
    delta = p
    delta[np.arange(n), y] -= 1.0
    delta /= n
    gw: list[np.ndarray] = [None] * len(model.weights)  # type: ignore[list-item]
    gb: list[np.ndarray] = [None] * len(model.weights)  # type: ignore[list-item]
    for l in range(last, -1, -1):
        gw[l] = (delta.T @ acts[l]).astype(np.float32)
        gb[l] = delta.sum(axis=0).astype(np.float32)
        if l:
            delta = (delta @ model.weights[l]) * (acts[l] > 0)
    return loss, gw, gb


def accuracy(model: MLP, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` classified as ``y``."""
    return float(np.mean(model.predict(x) == np.asarray(y)))


def _check_data(model: MLP, x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 2 or x.shape[1] != model.sizes[0]:
        raise EieError(f"training data has shape {x.shape} but the network takes "
                       f"{model.sizes[0]} inputs")
    if y.shape != (x.shape[0],):
        raise EieError(f"{x.shape[0]} training inputs but labels of shape {y.shape}")
    if y.min() < 0 or y.max() >= model.sizes[-1]:
        raise EieError(f"labels span {y.min()}..{y.max()} but the network has "
                       f"{model.sizes[-1]} outputs")


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def train(model: MLP, x: np.ndarray, y: np.ndarray, config: TrainConfig,
          masks: Sequence[np.ndarray] | None = None,
          progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Train ``model`` in place with minibatch Adam; return the mean loss of every epoch.

    ``masks`` (one boolean array per layer, the weights' shape) fixes the pruned weights at zero
    for the whole run. ``progress(epoch, loss)`` is called after every epoch.
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    _check_data(model, x, y)
    if masks is not None:
        if len(masks) != len(model.weights):
            raise EieError(f"{len(masks)} masks for {len(model.weights)} layers")
        masks = [np.asarray(m, dtype=bool) for m in masks]
        for l, (m, w) in enumerate(zip(masks, model.weights)):
            if m.shape != w.shape:
                raise EieError(f"layer {l}: mask {m.shape} does not match weights {w.shape}")
            w *= m
    rng = np.random.default_rng(config.seed)
    params = list(model.weights) + list(model.biases)
    opt = Adam(params, lr=config.lr)
    history = []
    for epoch in range(config.epochs):
        losses = []
        for idx in _batches(x.shape[0], config.batch_size, rng):
            xb = x[idx] if config.augment is None else config.augment(x[idx], rng)
            loss, gw, gb = loss_and_grads(model, xb, y[idx])
            if masks is not None:
                gw = [g * m for g, m in zip(gw, masks)]
            opt.step(params, gw + gb)
            if config.weight_decay:
                for w in model.weights:
                    w *= np.float32(1.0 - opt.lr * config.weight_decay)
            if masks is not None:
                for w, m in zip(model.weights, masks):
                    w *= m
            losses.append(loss)
        opt.lr *= config.lr_decay
        history.append(float(np.mean(losses)) if losses else float("nan"))
        if progress is not None:
            progress(epoch, history[-1])
    return history


def density_schedule(target: float, steps: int) -> list[float]:
    """Densities falling geometrically from 1 to ``target`` in ``steps`` prune steps
    (``steps = 1`` prunes straight to the target)."""
    if not 0 < target <= 1:
        raise EieError(f"density {target} is outside (0, 1]")
    if steps < 1:
        raise EieError(f"prune steps must be >= 1, not {steps}")
    return [float(target ** ((s + 1) / steps)) for s in range(steps)]


@dataclass
class PruneStep:
    """One step of the iterative loop: the densities pruned to and where retraining left it."""

    densities: tuple[float, ...]
    weights_kept: float
    accuracy_pruned: float      # test accuracy right after pruning, before retraining
    accuracy_retrained: float   # after retraining with the mask fixed
    losses: list[float] = field(default_factory=list)


def prune_and_retrain(model: MLP, x: np.ndarray, y: np.ndarray,
                      densities: Sequence[float], steps: int, config: TrainConfig,
                      x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
                      on_step: Callable[[PruneStep], None] | None = None,
                      balance_pes: int | None = None, balance_columns: bool = False
                      ) -> tuple[list[np.ndarray], list[PruneStep]]:
    """Deep Compression's iterative pruning: ``steps`` times, prune every layer by magnitude to
    the next density of its schedule (ending at ``densities[l]``), then retrain ``config.epochs``
    epochs with the masks fixed. Works in place; returns the final masks and the history.

    Pruning at a step acts on the retrained weights of the step before and never revives a
    weight: a weight pruned once stays pruned.

    ``balance_pes`` (the PE count of the EIE that will run the model): prune load-balance-aware
    (ESE, :func:`eie.sw.prune.prune_balanced`) instead of by one threshold per layer: at every
    step, each PE's rows (row ``i`` belongs to PE ``i % balance_pes``) keep the same number of
    weights (one more for the lowest PEs when the count does not divide), each PE its largest.
    With ``balance_columns`` as well, each PE keeps the same number in every column
    (:func:`eie.sw.prune.prune_column_balanced`): the same work on every input; only in layers
    with at least :data:`~eie.sw.prune.COLUMN_BALANCE_MIN_ROWS` rows a PE (the others keep the
    per-PE balance: with a few rows a PE, a per-column count keeps or drops whole columns, which
    costs accuracy, and such a layer is bound by its nonzero inputs, not its entries).
    """
    from .prune import (COLUMN_BALANCE_MIN_ROWS, check_n_pe, prune_balanced,
                        prune_column_balanced, prune_to_density)

    if len(densities) != len(model.weights):
        raise EieError(f"{len(densities)} densities for {len(model.weights)} layers")
    if balance_pes is not None:
        balance_pes = check_n_pe(balance_pes)
    elif balance_columns:
        raise EieError("balance_columns needs balance_pes (the PE count the columns are balanced over)")
    per_column = [balance_columns and w.shape[0] >= COLUMN_BALANCE_MIN_ROWS * balance_pes
                  for w in model.weights]
    schedules = [density_schedule(float(d), steps) for d in densities]
    masks: list[np.ndarray] = [np.ones_like(w, dtype=bool) for w in model.weights]
    history: list[PruneStep] = []
    for s in range(steps):
        step_d = tuple(sched[s] for sched in schedules)
        for l, d in enumerate(step_d):
            # the density counts the whole layer; the previous mask keeps pruned weights pruned
            if balance_pes is None:
                _, mask = prune_to_density(model.weights[l], d, mask=masks[l])
            else:
                balanced = prune_column_balanced if per_column[l] else prune_balanced
                _, mask = balanced(model.weights[l], d, balance_pes, mask=masks[l])
            masks[l] = np.asarray(mask, dtype=bool)
            model.weights[l] *= masks[l]
        acc_pruned = accuracy(model, x_val, y_val) if x_val is not None else float("nan")
        cfg = replace(config, seed=config.seed + 1000 * (s + 1))
        losses = train(model, x, y, cfg, masks=masks)
        acc = accuracy(model, x_val, y_val) if x_val is not None else float("nan")
        kept = model.n_nonzero() / model.n_weights()
        step = PruneStep(step_d, kept, acc_pruned, acc, losses)
        history.append(step)
        if on_step is not None:
            on_step(step)
    return masks, history


def share_weights(model: MLP, n_centroids: int = 15, init: str = "linear"
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Weight-share every layer of a pruned ``model`` (k-means of :func:`eie.sw.share.share`
    over its nonzero weights). Returns per layer the float32 codebook ``[0, c_1, ..., c_k]``
    and the codes (uint8, the weights' shape, 0 where pruned); ``model`` is not modified."""
    from .share import share

    books, codes = [], []
    for w in model.weights:
        layer = share(w, None, n_centroids, init=init)
        books.append(layer.codebook.astype(np.float32))
        codes.append(layer.codes)
    return books, codes


def finetune_shared(model: MLP, codebooks: Sequence[np.ndarray], codes: Sequence[np.ndarray],
                    x: np.ndarray, y: np.ndarray, config: TrainConfig,
                    progress: Callable[[int, float], None] | None = None
                    ) -> tuple[list[np.ndarray], list[float]]:
    """Retrain a weight-shared network: ``weights[l] = codebooks[l][codes[l]]``.

    ``codes[l]`` (ints, the weights' shape) stay fixed; code 0 is the pruned zero and never
    moves. Every step, the gradient of each centroid is the sum of the gradients of the weights
    in its cluster (:func:`eie.sw.share.centroid_gradients`), applied with Adam; biases train
    as usual. Updates ``model.weights`` in place to the shared values; returns the fine-tuned
    codebooks and the mean loss of every epoch.
    """
    from .share import centroid_gradients

    if not (len(codebooks) == len(codes) == len(model.weights)):
        raise EieError(f"{len(codebooks)} codebooks and {len(codes)} code arrays for "
                       f"{len(model.weights)} layers")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    _check_data(model, x, y)
    books = [np.asarray(c, dtype=np.float32).copy() for c in codebooks]
    codes = [np.asarray(c) for c in codes]
    for l, (book, c, w) in enumerate(zip(books, codes, model.weights)):
        if c.shape != w.shape:
            raise EieError(f"layer {l}: codes {c.shape} do not match weights {w.shape}")
        if book[0] != 0:
            raise EieError(f"layer {l}: codebook entry 0 is {book[0]}, it must be the zero")
        model.weights[l] = book[c]
    rng = np.random.default_rng(config.seed)
    opt = Adam(books + list(model.biases), lr=config.lr)
    history = []
    for epoch in range(config.epochs):
        losses = []
        for idx in _batches(x.shape[0], config.batch_size, rng):
            xb = x[idx] if config.augment is None else config.augment(x[idx], rng)
            loss, gw, gb = loss_and_grads(model, xb, y[idx])
            gc = []
            for l, (g, c, book) in enumerate(zip(gw, codes, books)):
                gcl = np.asarray(centroid_gradients(g, c, book.size), dtype=np.float32)
                gcl[0] = 0.0  # the zero entry is fixed
                gc.append(gcl)
            opt.step(books + list(model.biases), gc + gb)
            for l, (book, c) in enumerate(zip(books, codes)):
                book[0] = 0.0
                model.weights[l] = book[c]
            losses.append(loss)
        opt.lr *= config.lr_decay
        history.append(float(np.mean(losses)) if losses else float("nan"))
        if progress is not None:
            progress(epoch, history[-1])
    return books, history
