"""Training a binarized MLP (FINN's TFC/SFC/LFC shapes) in NumPy, for the BNN core.

The network is the float model of the contract's BNN section:

- inputs are bits, used as +/-1 (1 = +1);
- every layer binarizes its latent float weights with ``sign`` (``sign(0) = +1``) and computes the
  integer ``dot = x_pm1 @ sign(W).T``;
- a hidden layer applies batch norm and the sign:
  ``bit = gamma * (dot - mean) / sqrt(var + eps) + beta >= 0``;
- the last layer outputs ``dot``; the class is its argmax;
- a ternary layer (``weight_bits`` 2, TWN) quantizes its latent weights with
  :func:`eie.sw.bnn.float_model.ternarize` (``t`` in -1/0/+1 where ``|W| > 0.7 * mean(|W|)``,
  scale ``a``) and its batch norm sees ``a * dot``;
- with XNOR-Net scaling (``scaling="xnor"``, Rastegari et al. 2016) every layer's weights are
  ``alpha * sign(W)`` (W1) or ``alpha * t`` (W2) with one ``alpha > 0`` per output neuron,
  computed from the latent weights at every step (:func:`eie.sw.bnn.float_model.xnor_alpha`:
  ``mean |W_row|``; for W2 the mean ``|W|`` over the row's kept weights, which replaces TWN's
  per-layer scale); the model file holds them as ``alpha{l}`` (relative to the layer's TWN
  scale ``a``, so a W2 layer's ``a * alpha`` is the row's own scale), the float model
  multiplies each neuron's dot by it before batch norm and the last layer's logits are
  ``alpha * dot``.

Training uses the straight-through estimator (Courbariaux et al., BinaryNet): the gradient of
``sign`` is passed through where the pre-activation lies in [-1, 1] (the derivative of hardtanh),
and the gradient of a binarized weight goes to its latent weight, which is clipped to [-1, 1]
after every step. A ternary layer's quantized weights ``a * t`` pass the gradient the same way
(TWN's straight-through estimator: the gradient of ``a * t`` goes to the latent weight, ``a`` and
the threshold held constant in the backward pass); the last layer trains on ``t`` alone (its
scale does not change the argmax, and the loss's fixed scale stands in for it). XNOR-Net
scales pass the gradient through ``alpha`` (the chain rule of ``alpha = mean |W_row|`` over the
row, the kept set of a W2 row and the layer's ``a`` held constant), and the straight-through
term is multiplied by ``alpha`` as in the paper: ``dL/dW_i = alpha * dL/dWq_i + q_i / n *
sum_j q_j * dL/dWq_j``. Batch norm uses the batch's statistics while training; the exported
``mean`` and ``var`` are the statistics of the whole training set, measured in one pass once
training is over, so the float model evaluated here is exactly the one the compiler folds into
thresholds.
The loss is softmax cross-entropy of ``dot * scale`` with one fixed positive ``scale`` (it does
not change the argmax). Minibatch Adam, seeded and deterministic.

:meth:`BinaryMLP.to_npz_dict` writes the model file of ``eie bnn compile``: ``W{l}``
``(n_out, n_in)``, ``gamma{l}, beta{l}, mean{l}, var{l}`` for each hidden layer, ``eps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ...common.errors import EieError
from ..train import Adam

__all__ = [
    "TFC",
    "SFC",
    "LFC",
    "BinaryMLP",
    "BnnTrainConfig",
    "binarize_weights",
    "train_bnn",
    "bnn_accuracy",
    "SCALINGS",
]

TFC = (784, 64, 64, 64, 10)
SFC = (784, 256, 256, 256, 10)
LFC = (784, 1024, 1024, 1024, 10)
#: The weight scalings :class:`BinaryMLP` trains with: none, or XNOR-Net's per-output scales.
SCALINGS = ("none", "xnor")


def binarize_weights(w: np.ndarray) -> np.ndarray:
    """``sign(w)`` with ``sign(0) = +1``, as float32 +/-1."""
    return np.where(np.asarray(w) >= 0, np.float32(1.0), np.float32(-1.0))


@dataclass
class BinaryMLP:
    """Latent weights ``(n_out, n_in)`` per layer; BN parameters per hidden layer."""

    weights: list[np.ndarray]
    gamma: list[np.ndarray]
    beta: list[np.ndarray]
    mean: list[np.ndarray]
    var: list[np.ndarray]
    eps: float = 1e-5
    #: per layer 1 (binary) or 2 (ternary, TWN); empty: every layer binary
    weight_bits: list[int] = field(default_factory=list)
    #: per layer the output activation precision 1..4 (DoReFa for k >= 2; the last 1)
    act_bits: list[int] = field(default_factory=list)
    #: "none", or "xnor": XNOR-Net per-output weight scales in every layer
    scaling: str = "none"

    def __post_init__(self) -> None:
        from .float_model import check_act_bits, check_weight_bits

        n = len(self.weights)
        if n < 1:
            raise EieError("a binarized network needs at least one layer")
        if self.scaling not in SCALINGS:
            raise EieError(f"scaling is {self.scaling!r}; choose one of {', '.join(SCALINGS)} "
                           f"(xnor: XNOR-Net per-output weight scales)")
        self.weight_bits = check_weight_bits(self.weight_bits, n)
        self.act_bits = check_act_bits(self.act_bits, n)
        for name in ("gamma", "beta", "mean", "var"):
            if len(getattr(self, name)) != n - 1:
                raise EieError(f"{len(getattr(self, name))} {name} vectors for {n - 1} hidden layers")
        for l in range(1, n):
            if self.weights[l].shape[1] != self.weights[l - 1].shape[0]:
                raise EieError(f"layer {l} takes {self.weights[l].shape[1]} inputs but layer "
                               f"{l - 1} gives {self.weights[l - 1].shape[0]} outputs")

    @classmethod
    def init(cls, sizes: Sequence[int], seed: int = 0,
             weight_bits: Sequence[int] | None = None,
             act_bits: Sequence[int] | None = None, scaling: str = "none") -> "BinaryMLP":
        """Uniform latent weights in [-1, 1] (Glorot-scaled), unit BN scale, zero shift;
        ``weight_bits`` (per layer 1 or 2, default all 1) makes layers ternary; ``act_bits``
        (per layer 1..4, the last 1; default all 1) gives hidden layers DoReFa k-bit
        activations (their BN starts at scale 0.5, shift 0.5: the middle of the clip range);
        ``scaling="xnor"`` trains with XNOR-Net per-output weight scales."""
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise EieError(f"layer sizes {tuple(sizes)} need at least two positive entries")
        rng = np.random.default_rng(seed)
        weights = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            lim = min(1.0, np.sqrt(6.0 / (n_in + n_out)))
            weights.append(rng.uniform(-lim, lim, (n_out, n_in)).astype(np.float32))
        hidden = list(sizes[1:-1])
        acts = list(act_bits or [1] * (len(sizes) - 1))
        q = [l < len(hidden) and acts[l] > 1 for l in range(len(hidden))]
        return cls(
            weights=weights,
            gamma=[np.full(n, 0.5 if q[l] else 1.0, np.float32) for l, n in enumerate(hidden)],
            beta=[np.full(n, 0.5 if q[l] else 0.0, np.float32) for l, n in enumerate(hidden)],
            mean=[np.zeros(n, np.float32) for n in hidden],
            var=[np.ones(n, np.float32) for n in hidden],
            weight_bits=list(weight_bits or []),
            act_bits=list(act_bits or []),
            scaling=scaling,
        )

    @property
    def quantized(self) -> bool:
        """Whether a hidden layer has k-bit (k >= 2) activations."""
        return any(b != 1 for b in self.act_bits)

    @property
    def scaled(self) -> bool:
        """Whether the layers have XNOR-Net per-output scales."""
        return self.scaling == "xnor"

    def alphas(self) -> list[np.ndarray]:
        """Every layer's XNOR-Net scales (float64 ``(n_out,)``, what ``alpha{l}`` holds), or
        ``[]`` without scaling."""
        from .float_model import xnor_alpha

        if not self.scaled:
            return []
        return [xnor_alpha(w, b) for w, b in zip(self.weights, self.weight_bits)]

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    def forward(self, bits: np.ndarray) -> np.ndarray:
        """The float model of the contract: the last layer's integer ``dot`` as int64."""
        if self.quantized or self.scaled:
            from .float_model import float_forward

            _to_pm1(bits, self.sizes[0])
            return float_forward(self.to_float_bnn(), np.asarray(bits)).astype(np.int64)
        h = _to_pm1(bits, self.sizes[0]).astype(np.float64)
        last = len(self.weights) - 1
        for l, w in enumerate(self.weights):
            if l == last:
                return np.rint(_scaled_dot(self, l, h, scaled=False)).astype(np.int64)
            dot = _scaled_dot(self, l, h)
            pre = (self.gamma[l].astype(np.float64) * (dot - self.mean[l])
                   / np.sqrt(self.var[l].astype(np.float64) + self.eps) + self.beta[l])
            h = np.where(pre >= 0, 1.0, -1.0)
        raise AssertionError("unreachable")

    def predict(self, bits: np.ndarray) -> np.ndarray:
        """The classes: the argmax of the logits (``alpha * dot`` with XNOR-Net scales)."""
        if self.scaled:
            from .float_model import float_logits

            _to_pm1(bits, self.sizes[0])
            return np.argmax(float_logits(self.to_float_bnn(), np.asarray(bits)), axis=1)
        return np.argmax(self.forward(bits), axis=1)

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        """The model file ``eie bnn compile`` reads."""
        out: dict[str, np.ndarray] = {}
        for l, w in enumerate(self.weights):
            out[f"W{l}"] = w.astype(np.float32)
        for l in range(len(self.weights) - 1):
            out[f"gamma{l}"] = self.gamma[l].astype(np.float32)
            out[f"beta{l}"] = self.beta[l].astype(np.float32)
            out[f"mean{l}"] = self.mean[l].astype(np.float32)
            out[f"var{l}"] = self.var[l].astype(np.float32)
        out["eps"] = np.float64(self.eps)
        if any(b == 2 for b in self.weight_bits):      # a binary model's file as it always was
            out["weight_bits"] = np.array(self.weight_bits, dtype=np.int64)
        if self.quantized:                             # an A1 model's file as it always was
            out["act_bits"] = np.array(self.act_bits, dtype=np.int64)
        for l, a in enumerate(self.alphas()):          # only with XNOR-Net scaling
            out[f"alpha{l}"] = a
        return out

    def to_float_bnn(self):
        """The same model as :class:`eie.sw.bnn.float_model.FloatBnn` (float64 arrays), what
        :func:`eie.sw.bnn.compile.compile_model` takes."""
        from .float_model import FloatBnn

        f64 = lambda arrs: [np.asarray(a, dtype=np.float64) for a in arrs]  # noqa: E731
        return FloatBnn(weights=f64(self.weights), gamma=f64(self.gamma), beta=f64(self.beta),
                        mean=f64(self.mean), var=f64(self.var), eps=float(self.eps),
                        weight_bits=list(self.weight_bits),
                        act_bits=list(self.act_bits) if self.quantized else [],
                        alpha=self.alphas()).validate()


@dataclass
class BnnTrainConfig:
    """Minibatch Adam settings for :func:`train_bnn`."""

    epochs: int = 30
    batch_size: int = 100
    lr: float = 1e-2
    lr_decay: float = 0.9   # the learning rate is multiplied by this after every epoch
    bn_momentum: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise EieError(f"epochs must be >= 0, not {self.epochs}")
        if self.batch_size < 2:
            raise EieError(f"batch size must be >= 2 for batch norm, not {self.batch_size}")
        if not self.lr > 0:
            raise EieError(f"learning rate must be > 0, not {self.lr}")


def _scaled_dot(model: BinaryMLP, l: int, h: np.ndarray, *, scaled: bool = True) -> np.ndarray:
    """Layer ``l``'s pre-activation in float64 as the float model computes it: ``dot`` of the
    binarized weights, or ``a * dot`` of the ternarized ones (``dot`` alone when not
    ``scaled``)."""
    w = model.weights[l]
    if model.weight_bits[l] != 2:
        return h @ binarize_weights(w).astype(np.float64).T
    from .float_model import ternarize

    t, a = ternarize(w)
    dot = h @ t.T
    return a * dot if scaled else dot


def _xnor_weights(model: BinaryMLP, l: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer ``l``'s XNOR-Net weights for training, float64: ``(q, s, k)`` with ``q`` the
    quantized weights (+-1, or TWN's -1/0/+1), ``s`` the per-output scale (``a * alpha`` of a
    hidden layer, ``alpha`` of the last: the float model's factors up to ``1 / L``), the
    weights ``s * q``, and ``k = ds / d(row mean |W|)`` per output (0 where ``alpha`` is the
    constant 1.0 of a row without a nonzero kept weight)."""
    from .float_model import ternarize, xnor_alpha

    w = np.asarray(model.weights[l], dtype=np.float64)
    if model.weight_bits[l] == 2:
        q, a = ternarize(w)
    else:
        q, a = binarize_weights(w).astype(np.float64), 1.0
    alpha = xnor_alpha(w, model.weight_bits[l])
    last = l == len(model.weights) - 1
    s = alpha if last else a * alpha
    live = np.any((q != 0) & (w != 0), axis=1)
    k = np.where(live, 1.0 / a if last else 1.0, 0.0)
    return q, s, k


def _xnor_grad(q: np.ndarray, s: np.ndarray, k: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The latent weights' gradient from ``g``, that of the weights ``s * q`` (XNOR-Net:
    ``s * g_i`` straight through, plus ``k * q_i / n * sum_j q_j * g_j`` through ``s``)."""
    n = np.maximum(np.abs(q).sum(axis=1), 1.0)
    through = (k / n * (g * q).sum(axis=1))[:, None] * q
    return (s[:, None] * g + through).astype(np.float32)


def _train_weights(model: BinaryMLP) -> list[np.ndarray]:
    """The quantized weights of the training forward pass (float32): ``sign(W)`` of a binary
    layer, ``a * t`` of a ternary hidden layer, ``t`` of a ternary last layer; with XNOR-Net
    scaling ``s * q`` (:func:`_xnor_weights`)."""
    from .float_model import ternarize

    if model.scaled:
        return [(s[:, None] * q).astype(np.float32)
                for q, s, _ in (_xnor_weights(model, l) for l in range(len(model.weights)))]
    out = []
    last = len(model.weights) - 1
    for l, w in enumerate(model.weights):
        if model.weight_bits[l] != 2:
            out.append(binarize_weights(w))
            continue
        t, a = ternarize(w)
        out.append((t if l == last else a * t).astype(np.float32))
    return out


def _to_pm1(bits: np.ndarray, n_in: int) -> np.ndarray:
    b = np.asarray(bits)
    if b.ndim != 2 or b.shape[1] != n_in:
        raise EieError(f"input bits have shape {b.shape} but the network takes {n_in} inputs")
    if b.size and (b.min() < 0 or b.max() > 1):
        raise EieError(f"input bits must be 0 or 1, found values {b.min()}..{b.max()}")
    return np.where(b > 0, np.float32(1.0), np.float32(-1.0))


def _loss_and_grads(model: BinaryMLP, x: np.ndarray, y: np.ndarray, scale: float
                    ) -> tuple[float, list[np.ndarray], list[np.ndarray], list[np.ndarray],
                               list[tuple[np.ndarray, np.ndarray]]]:
    """Training-mode forward (batch statistics) and STE backward.

    Returns the loss, the latent weights' gradients, gamma and beta gradients and the
    batch's (mean, var) of every hidden layer."""
    eps = np.float32(model.eps)
    n = x.shape[0]
    last = len(model.weights) - 1
    wb = _train_weights(model)
    cache = []
    stats = []
    h = x
    for l in range(last):
        dot = h @ wb[l].T
        mu = dot.mean(axis=0)
        var = dot.var(axis=0)
        inv = 1.0 / np.sqrt(var + eps)
        xhat = (dot - mu) * inv
        pre = model.gamma[l] * xhat + model.beta[l]
        cache.append((h, xhat, inv, pre))
        stats.append((mu, var))
        if model.act_bits[l] > 1:
            # DoReFa: the level q / L of round(clip(pre, 0, 1) * L), L = 2^k - 1
            levels = np.float32((1 << model.act_bits[l]) - 1)
            h = (np.round(np.clip(pre, 0.0, 1.0) * levels) / levels).astype(np.float32)
        else:
            h = np.where(pre >= 0, np.float32(1.0), np.float32(-1.0))
    logits = (h @ wb[last].T) * np.float32(scale)
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.mean(np.log(p[np.arange(n), y] + 1e-12)))
    g = p
    g[np.arange(n), y] -= 1.0
    g *= np.float32(scale / n)
    gw: list[np.ndarray] = [None] * (last + 1)  # type: ignore[list-item]
    ggamma: list[np.ndarray] = [None] * last  # type: ignore[list-item]
    gbeta: list[np.ndarray] = [None] * last  # type: ignore[list-item]
    gw[last] = g.T @ h
    gh = g @ wb[last]
    for l in range(last - 1, -1, -1):
        h_in, xhat, inv, pre = cache[l]
        if model.act_bits[l] > 1:                 # straight-through: clip's derivative
            gpre = gh * ((pre >= 0.0) & (pre <= 1.0))
        else:
            gpre = gh * (np.abs(pre) <= 1.0)      # straight-through estimator (hardtanh)
        ggamma[l] = (gpre * xhat).sum(axis=0)
        gbeta[l] = gpre.sum(axis=0)
        gx = gpre * model.gamma[l]
        # batch-norm backward through the batch statistics
        gdot = inv / n * (n * gx - gx.sum(axis=0) - xhat * (gx * xhat).sum(axis=0))
        gw[l] = gdot.T @ h_in
        gh = gdot @ wb[l]
    if model.scaled:
        gw = [_xnor_grad(*_xnor_weights(model, l), g) for l, g in enumerate(gw)]
    # the gradient of a binarized weight reaches its latent weight while |w| <= 1
    gw = [(gwl * (np.abs(w) <= 1.0)).astype(np.float32) for gwl, w in zip(gw, model.weights)]
    return loss, gw, [a.astype(np.float32) for a in ggamma], [a.astype(np.float32) for a in gbeta], stats


def _dataset_stats(model: BinaryMLP, x: np.ndarray) -> None:
    """Set every hidden layer's mean and var to those of the whole set ``x`` (+/-1 inputs)."""
    if model.quantized or model.scaled:
        _dataset_stats_qnn(model, x)
        return
    h = x.astype(np.float64)
    for l in range(len(model.weights) - 1):
        dot = _scaled_dot(model, l, h)
        model.mean[l] = dot.mean(axis=0).astype(np.float32)
        model.var[l] = dot.var(axis=0).astype(np.float32)
        pre = (model.gamma[l].astype(np.float64) * (dot - model.mean[l])
               / np.sqrt(model.var[l].astype(np.float64) + model.eps) + model.beta[l])
        h = np.where(pre >= 0, 1.0, -1.0)


def _dataset_stats_qnn(model: BinaryMLP, x: np.ndarray) -> None:
    """:func:`_dataset_stats` of a network with k-bit layers or XNOR-Net scales, through the
    float model's own expressions (``(a / L) * alpha * dot`` of the integer levels, DoReFa)."""
    from .float_model import act_quantize, bn_expression, neuron_scales, ternarize

    h = x.astype(np.float64)
    in_bits = 1
    alphas = model.alphas()
    for l in range(len(model.weights) - 1):
        w = model.weights[l]
        if model.weight_bits[l] == 2:
            t, a = ternarize(w)
        else:
            t, a = binarize_weights(w).astype(np.float64), 1.0
        z = neuron_scales(a, in_bits, alphas[l] if alphas else None) * (h @ t.T)
        model.mean[l] = z.mean(axis=0).astype(np.float32)
        model.var[l] = z.var(axis=0).astype(np.float32)
        pre = bn_expression(model.gamma[l].astype(np.float64), model.beta[l].astype(np.float64),
                            model.mean[l].astype(np.float64), model.var[l].astype(np.float64),
                            np.float64(model.eps), z)
        if model.act_bits[l] > 1:
            h = act_quantize(pre, model.act_bits[l])
        else:
            h = np.where(pre >= 0, 1.0, -1.0)
        in_bits = model.act_bits[l]


def train_bnn(model: BinaryMLP, bits: np.ndarray, y: np.ndarray, config: BnnTrainConfig,
              progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Train ``model`` in place; return the mean loss of every epoch.

    ``bits`` ``(n, n_in)`` 0/1, ``y`` class labels. After the last epoch the BN statistics are
    those of the whole training set (see the module docstring)."""
    x = _to_pm1(bits, model.sizes[0])
    y = np.asarray(y, dtype=np.int64)
    if y.shape != (x.shape[0],):
        raise EieError(f"{x.shape[0]} training inputs but labels of shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= model.sizes[-1]):
        raise EieError(f"labels span {y.min()}..{y.max()} but the network has "
                       f"{model.sizes[-1]} outputs")
    scale = 1.0 / np.sqrt(model.sizes[-2])
    rng = np.random.default_rng(config.seed)
    params = list(model.weights) + list(model.gamma) + list(model.beta)
    opt = Adam(params, lr=config.lr)
    history = []
    for epoch in range(config.epochs):
        losses = []
        order = rng.permutation(x.shape[0])
        for i in range(0, x.shape[0], config.batch_size):
            idx = order[i:i + config.batch_size]
            if idx.size < 2:
                continue
            loss, gw, gg, gb, stats = _loss_and_grads(model, x[idx], y[idx], scale)
            opt.step(params, gw + gg + gb)
            for w in model.weights:
                np.clip(w, -1.0, 1.0, out=w)
            m = config.bn_momentum
            for l, (mu, var) in enumerate(stats):
                model.mean[l] = ((1 - m) * model.mean[l] + m * mu).astype(np.float32)
                model.var[l] = ((1 - m) * model.var[l] + m * var).astype(np.float32)
            losses.append(loss)
        opt.lr *= config.lr_decay
        history.append(float(np.mean(losses)) if losses else float("nan"))
        if progress is not None:
            progress(epoch, history[-1])
    if config.epochs:
        _dataset_stats(model, x)
    return history


def bnn_accuracy(model: BinaryMLP, bits: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the float model (argmax of the last layer's dot)."""
    return float(np.mean(model.predict(bits) == np.asarray(y)))
