"""A small real LSTM for ``bench/real_layers.py``: MNIST read row by row, trained in NumPy.

The EIE paper runs NeuralTalk's LSTM: its gate matrix ``W`` is one sparse layer
``z = W @ [x_t; h_{t-1}] + b`` per time step, with dense inputs (``h`` is a ``tanh`` output, so
almost every entry is nonzero), unlike the ReLU MLPs. This module trains such an LSTM on real
data so that its gate matrix can be measured on the cycle model (never synthetic weights):

* input: a digit read as 28 time steps of one 28-pixel row, pixels scaled as
  :func:`eie.sw.mnist.scale_pixels` does (``pixel / 256``, exact with ``act_frac = 8``);
* one LSTM layer of ``H = 256``: ``W`` ``(4H, 28 + H)``, rows ``[i; f; g; o]`` (input, forget,
  cell, output gates), columns ``[x_t; h_{t-1}]``, bias ``4H`` (forget gate starting at 1);
  ``c_t = f * c_{t-1} + i * g``, ``h_t = o * tanh(c_t)``, ``h_{-1} = c_{-1} = 0``;
* a linear readout ``V h_27 + c`` to the 10 classes, softmax cross-entropy;
* training: minibatch Adam (:class:`eie.sw.train.Adam`), backpropagation through time written
  out and vectorised over the batch, global-norm gradient clipping, one-pixel shifts
  (:func:`eie.sw.mnist.shift_pixels`) as augmentation; then ``W`` pruned by magnitude to 15%
  (:func:`eie.sw.prune.prune_to_density`) and retrained with its mask fixed (``V`` stays dense:
  it is not the layer measured).

:func:`trained_lstm` trains once and caches the weights (``lstm256_s0.npz`` in the cache
directory of ``bench/real_layers.py``); :func:`gate_inputs` records the ``[x_t; h_{t-1}]``
vectors the gate layer sees on given digits. ``tests/test_real_lstm.py`` checks the backward
pass against finite differences.

    python bench/real_lstm.py            # train (or load) and print the accuracies
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from eie.common.atomic import atomic_file, save_npz
from eie.sw.mnist import scale_pixels, shift_pixels
from eie.sw.prune import prune_to_density
from eie.sw.train import Adam

#: time steps (rows of a digit) and inputs per step (pixels of a row)
STEPS, ROW = 28, 28
N_CLASSES = 10


@dataclass
class LstmSpec:
    """How a benchmark LSTM is trained."""

    hidden: int = 256
    epochs: int = 12            # dense training
    retrain_epochs: int = 2     # after pruning W, with its mask fixed
    density: float = 0.15       # of W after pruning
    lr: float = 2e-3
    retrain_lr: float = 1e-3
    lr_decay: float = 0.85      # per epoch
    batch_size: int = 64
    clip: float = 5.0           # global gradient norm


#: the networks this module provides (``bench/real_layers.py --networks``)
NETWORKS = {"lstm256": LstmSpec(hidden=256)}


@dataclass
class LSTM:
    """Parameters: gate matrix ``W`` ``(4H, n_in + H)`` (rows ``[i; f; g; o]``, columns
    ``[x; h]``), gate bias ``b`` ``(4H,)``, readout ``V`` ``(n_cls, H)`` and ``c`` ``(n_cls,)``."""

    W: np.ndarray
    b: np.ndarray
    V: np.ndarray
    c: np.ndarray

    @property
    def hidden(self) -> int:
        return int(self.W.shape[0] // 4)

    @property
    def n_in(self) -> int:
        return int(self.W.shape[1] - self.hidden)

    def params(self) -> list[np.ndarray]:
        return [self.W, self.b, self.V, self.c]

    @classmethod
    def init(cls, n_in: int, hidden: int, n_cls: int = N_CLASSES, seed: int = 0,
             dtype=np.float32) -> "LSTM":
        """Uniform ``+-1/sqrt(H)`` gate weights, forget-gate bias 1, normal readout."""
        rng = np.random.default_rng(seed)
        s = 1.0 / np.sqrt(hidden)
        W = rng.uniform(-s, s, (4 * hidden, n_in + hidden))
        b = np.zeros(4 * hidden)
        b[hidden:2 * hidden] = 1.0
        V = rng.standard_normal((n_cls, hidden)) * s
        return cls(*(a.astype(dtype) for a in (W, b, V, np.zeros(n_cls))))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))        # no overflow for large |z|


def run(model: LSTM, xs: np.ndarray, gate: Optional[Callable[[np.ndarray], np.ndarray]] = None,
        record: bool = False):
    """Inference on ``xs`` ``(B, T, n_in)``: the logits ``(B, n_cls)``, and with ``record`` also
    the gate layer's inputs ``[x_t; h_{t-1}]`` ``(B, T, n_in + H)``.

    ``gate(xh) -> z`` replaces the gate layer ``xh @ W.T + b`` (e.g. by the EIE's golden model)."""
    dt = model.W.dtype
    xs = np.asarray(xs, dtype=dt)
    B, T, _ = xs.shape
    H = model.hidden
    h = np.zeros((B, H), dt)
    c = np.zeros((B, H), dt)
    rec = np.zeros((B, T, model.n_in + H), dt) if record else None
    for t in range(T):
        xh = np.concatenate([xs[:, t], h], axis=1)
        if rec is not None:
            rec[:, t] = xh
        z = xh @ model.W.T + model.b if gate is None else np.asarray(gate(xh), dtype=dt)
        i, f, o = _sigmoid(z[:, :H]), _sigmoid(z[:, H:2 * H]), _sigmoid(z[:, 3 * H:])
        g = np.tanh(z[:, 2 * H:3 * H])
        c = f * c + i * g
        h = o * np.tanh(c)
    logits = h @ model.V.T + model.c
    return (logits, rec) if record else logits


def loss_and_grads(model: LSTM, xs: np.ndarray, y: np.ndarray
                   ) -> tuple[float, list[np.ndarray]]:
    """Mean softmax cross-entropy on ``xs`` ``(B, T, n_in)`` with labels ``y`` and its gradients
    by ``W, b, V, c`` (backpropagation through time), in the parameters' dtype."""
    dt = model.W.dtype
    xs = np.asarray(xs, dtype=dt)
    B, T, n_in = xs.shape
    H = model.hidden
    W, b = model.W, model.b
    # forward, keeping what the backward pass needs
    zx = (xs.reshape(B * T, n_in) @ W[:, :n_in].T).reshape(B, T, 4 * H) + b   # input part
    Wh = W[:, n_in:]
    h = np.zeros((B, H), dt)
    c = np.zeros((B, H), dt)
    hs = np.zeros((T + 1, B, H), dt)            # hs[t] = h_{t-1}
    cs = np.zeros((T + 1, B, H), dt)            # cs[t] = c_{t-1}
    acts = np.zeros((T, B, 4 * H), dt)          # i, f, g, o after their nonlinearities
    tcs = np.zeros((T, B, H), dt)               # tanh(c_t)
    for t in range(T):
        z = zx[:, t] + h @ Wh.T
        a = acts[t]
        a[:, :2 * H] = _sigmoid(z[:, :2 * H])
        a[:, 2 * H:3 * H] = np.tanh(z[:, 2 * H:3 * H])
        a[:, 3 * H:] = _sigmoid(z[:, 3 * H:])
        c = a[:, H:2 * H] * c + a[:, :H] * a[:, 2 * H:3 * H]
        tcs[t] = np.tanh(c)
        h = a[:, 3 * H:] * tcs[t]
        hs[t + 1], cs[t + 1] = h, c
    logits = h @ model.V.T + model.c
    zl = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(zl)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(B)
    loss = float(-np.mean(np.log(p[rows, y] + 1e-12)))
    dlog = p
    dlog[rows, y] -= 1.0
    dlog /= B
    dV = dlog.T @ h
    dc_out = dlog.sum(axis=0)
    # backward through time
    dh = dlog @ model.V
    dcell = np.zeros((B, H), dt)
    dzs = np.zeros((T, B, 4 * H), dt)
    for t in range(T - 1, -1, -1):
        a = acts[t]
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        tc = tcs[t]
        dcell = dcell + dh * o * (1.0 - tc * tc)
        dz = dzs[t]
        dz[:, :H] = dcell * g * i * (1.0 - i)
        dz[:, H:2 * H] = dcell * cs[t] * f * (1.0 - f)
        dz[:, 2 * H:3 * H] = dcell * i * (1.0 - g * g)
        dz[:, 3 * H:] = dh * tc * o * (1.0 - o)
        dcell = dcell * f
        dh = dz @ Wh
    dZ = dzs.transpose(1, 0, 2).reshape(B * T, 4 * H)
    XH = np.concatenate([xs, hs[:T].transpose(1, 0, 2)], axis=2).reshape(B * T, n_in + H)
    dW = dZ.T @ XH
    db = dZ.sum(axis=0)
    return loss, [dW.astype(dt), db.astype(dt), dV.astype(dt), dc_out.astype(dt)]


def digits_as_rows(pixels: np.ndarray) -> np.ndarray:
    """uint8 digits ``(n, 784)`` to scaled rows ``(n, 28, 28)`` (float32, ``pixel / 256``)."""
    return scale_pixels(pixels).reshape(-1, STEPS, ROW)


def accuracy(model: LSTM, xs: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    pred = np.concatenate([np.argmax(run(model, xs[i:i + batch]), axis=1)
                           for i in range(0, len(xs), batch)])
    return float(np.mean(pred == np.asarray(y)))


def train(model: LSTM, pixels: np.ndarray, y: np.ndarray, epochs: int, lr: float,
          spec: LstmSpec, seed: int, mask: np.ndarray | None = None,
          progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Minibatch Adam on uint8 digits ``pixels`` ``(n, 784)``; ``mask`` keeps ``W``'s pruned
    weights at zero throughout. Returns every epoch's mean loss."""
    rng = np.random.default_rng(seed)
    params = model.params()
    opt = Adam(params, lr=lr)
    if mask is not None:
        model.W *= mask
    history = []
    for epoch in range(epochs):
        losses = []
        order = rng.permutation(len(y))
        for s in range(0, len(y), spec.batch_size):
            idx = order[s:s + spec.batch_size]
            xb = shift_pixels(pixels[idx], rng)
            loss, grads = loss_and_grads(model, digits_as_rows(xb), y[idx])
            if mask is not None:
                grads[0] *= mask
            norm = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads)))
            if norm > spec.clip:
                grads = [g * np.float32(spec.clip / norm) for g in grads]
            opt.step(params, grads)
            if mask is not None:
                model.W *= mask
            losses.append(loss)
        opt.lr *= spec.lr_decay
        history.append(float(np.mean(losses)))
        if progress is not None:
            progress(epoch, history[-1])
    return history


def blas_single_thread():
    """One BLAS thread (as ``eie demo`` trains): the matrices are small, and several threads on
    a busy machine run many times slower (measured: 20x on 2 shared cores). threadpoolctl comes
    with scikit-learn (the demo extras, which this benchmark needs for the digits anyway)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def trained_lstm(name: str, data, cache: Path, seed: int = 0, log=print
                 ) -> tuple[LSTM, dict]:
    """The pruned LSTM ``name`` (trained once, then read from ``cache``) and its facts: test
    accuracy dense and pruned (all 1,000 test digits), W's density, training seconds."""
    spec = NETWORKS[name]
    path = Path(cache) / f"{name}_s{seed}.npz"
    if path.is_file():
        z = np.load(path)
        model = LSTM(z["W"], z["b"], z["V"], z["c"])
        info = {k: float(z[k]) for k in ("accuracy_dense", "accuracy", "density",
                                           "train_seconds")}
        return model, info
    x_test = digits_as_rows(data.x_test)
    t0 = time.perf_counter()
    model = LSTM.init(ROW, spec.hidden, seed=seed)

    def prog(tag):
        return lambda e, loss: log(f"{name} {tag} epoch {e + 1}: loss {loss:.4f} "
                                   f"({time.perf_counter() - t0:.0f} s)")

    with blas_single_thread():
        train(model, data.x_train, data.y_train, spec.epochs, spec.lr, spec, seed,
              progress=prog("dense"))
        acc_dense = accuracy(model, x_test, data.y_test)
        _, mask = prune_to_density(model.W, spec.density)
        model.W *= mask
        acc_cut = accuracy(model, x_test, data.y_test)
        train(model, data.x_train, data.y_train, spec.retrain_epochs, spec.retrain_lr, spec,
              seed + 1, mask=mask, progress=prog("retrain"))
        acc = accuracy(model, x_test, data.y_test)
    seconds = time.perf_counter() - t0
    density = float(np.count_nonzero(model.W) / model.W.size)
    log(f"trained {name} (W {model.W.shape[0]}x{model.W.shape[1]}): accuracy {acc_dense:.2%} "
        f"dense, {acc_cut:.2%} pruned to {density:.1%}, {acc:.2%} retrained ({seconds:.0f} s)")
    with atomic_file(path, "wb") as f:
        save_npz(f, dict(W=model.W, b=model.b, V=model.V, c=model.c, accuracy_dense=acc_dense,
                         accuracy_pruned_only=acc_cut, accuracy=acc, density=density,
                         train_seconds=seconds))
    return model, {"accuracy_dense": acc_dense, "accuracy": acc, "density": density,
                   "train_seconds": seconds}


def gate_inputs(model: LSTM, pixels: np.ndarray) -> np.ndarray:
    """The gate layer's inputs ``[x_t; h_{t-1}]`` on uint8 digits ``pixels`` ``(n, 784)``:
    float ``(n * 28, 28 + H)``, digit by digit, step by step (float LSTM, not quantised)."""
    _, rec = run(model, digits_as_rows(pixels), record=True)
    return rec.reshape(-1, rec.shape[2])


def main(argv=None) -> int:
    import argparse

    from eie.sw.mnist import load_mnist

    ap = argparse.ArgumentParser(description="train (or load) the benchmark LSTM")
    ap.add_argument("--network", default="lstm256", choices=sorted(NETWORKS))
    ap.add_argument("--cache", help="where trained models are kept (default ~/.cache/eie/real)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_options as check
    from real_layers import _cache_dir

    cache = _cache_dir(args.cache)
    if not (cache / f"{args.network}_s0.npz").is_file():
        check.directory(ap, "--cache", cache)       # before training, which writes there last
    _, info = trained_lstm(args.network, load_mnist(), cache,
                           log=lambda s: print(s, file=sys.stderr))
    print(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
