"""Weight sharing: deterministic 1-D k-means per layer, Deep Compression style.

The kept (nonzero, unpruned) weights of a layer are clustered into at most 15 centroids; code 0
is reserved for the fixed zero (pruned weights and the hardware's padding entries), so a layer's
codebook is ``[0, c_1, ..., c_k]`` with ``c_1 <= ... <= c_k`` and codes ``1..k`` for kept weights.

Algorithm (exact Lloyd iterations, made cheap by one dimension):

1. Sort the kept values once (``O(n log n)``) and take prefix sums (float64).
2. Initialise the ``k`` centroids (``init``): ``"linear"`` spaces them evenly over
   ``[min, max]`` of the kept values (Deep Compression's best: it keeps the rare large weights);
   ``"density"`` puts them at evenly spaced quantiles; ``"random"`` (Forgy) picks ``k`` distinct
   values with a seeded generator.
3. Each iteration: the cluster boundaries are the midpoints between neighbouring centroids; one
   ``searchsorted`` on the sorted values finds every cluster's range, and the prefix sums give each
   cluster's mean in ``O(k log n)``, whatever the number of weights. Stop when no centroid moves
   by more than ``tol`` of the value range, or after ``max_iter`` iterations.
4. With at most ``k`` distinct values (a model weight-shared and fine-tuned already), every value
   is its own centroid: the codebook reproduces the model exactly.
5. Clusters left empty (linear initialisation places some centroids in the gap pruning opened
   around zero) are dropped, so every code in use stands for some weights. Ties at a boundary go
   to the upper cluster. Centroids stay sorted: each lies inside its own boundary interval.

A weight's code is then ``1 + searchsorted(boundaries, w, side="right")``: one vectorised pass.

For retraining, :func:`fine_tune_centroids` applies Deep Compression's centroid update: the
gradient of a shared weight is the sum of the gradients of the weights of its cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.errors import EieError

__all__ = [
    "MAX_CENTROIDS",
    "INIT_METHODS",
    "SharedLayer",
    "kmeans_1d",
    "assign_codes",
    "share",
    "cluster_gradients",
    "centroid_gradients",
    "fine_tune_centroids",
    "reconstruct",
]

#: Learned centroids per layer: 16 codebook entries, entry 0 the fixed zero.
MAX_CENTROIDS = 15
INIT_METHODS = ("linear", "density", "random")


@dataclass(frozen=True)
class SharedLayer:
    """One layer after weight sharing.

    ``centroids``: float64 ``(k,)``, sorted, ``k <= 15``; ``codes``: uint8 with the weights'
    shape, 0 for pruned weights and ``1..k`` for the kept ones (code ``c`` means
    ``centroids[c - 1]``); ``iterations``: Lloyd iterations run.
    """

    centroids: np.ndarray
    codes: np.ndarray
    iterations: int

    @property
    def codebook(self) -> np.ndarray:
        """The float codebook ``[0, c_1, ..., c_k]`` indexed by code."""
        return np.concatenate([[0.0], self.centroids])

    def weights(self) -> np.ndarray:
        """The dense shared weights (float64), ``codebook[codes]``."""
        return reconstruct(self.centroids, self.codes)


def _init_centroids(sorted_vals: np.ndarray, k: int, init: str, seed: int) -> np.ndarray:
    lo, hi = float(sorted_vals[0]), float(sorted_vals[-1])
    if init == "linear":
        return np.linspace(lo, hi, k)
    if init == "density":
        q = (np.arange(k) + 0.5) / k
        idx = np.minimum((q * sorted_vals.size).astype(np.int64), sorted_vals.size - 1)
        return sorted_vals[idx].astype(np.float64)
    if init == "random":
        uniq = np.unique(sorted_vals)
        rng = np.random.default_rng(seed)
        pick = rng.choice(uniq.size, size=min(k, uniq.size), replace=False)
        return np.sort(uniq[pick].astype(np.float64))
    raise EieError(f"k-means init {init!r} is not one of {', '.join(INIT_METHODS)}")


def kmeans_1d(
    values: np.ndarray,
    k: int = MAX_CENTROIDS,
    *,
    init: str = "linear",
    max_iter: int = 100,
    tol: float = 1e-7,
    seed: int = 0,
    presorted: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Cluster 1-D ``values`` into at most ``k`` groups.

    Returns ``(centroids, boundaries, iterations)``: sorted float64 centroids of the non-empty
    clusters, the ``len(centroids) - 1`` boundaries between them (value ``v`` belongs to cluster
    ``searchsorted(boundaries, v, side="right")``), and the iterations run. Deterministic for a
    given input (and ``seed`` for ``init="random"``).
    """
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise EieError(f"number of centroids {k!r} must be an integer >= 1")
    if init not in INIT_METHODS:
        raise EieError(f"k-means init {init!r} is not one of {', '.join(INIT_METHODS)}")
    v = np.asarray(values).reshape(-1)
    if v.size == 0:
        return np.zeros(0), np.zeros(0), 0
    if not np.all(np.isfinite(v)):
        raise EieError("weights contain NaN or infinite values (fix the model before sharing)")
    s = v if presorted else np.sort(v)
    s64 = s.astype(np.float64, copy=False)
    distinct = np.concatenate([[True], s64[1:] != s64[:-1]])
    if int(np.count_nonzero(distinct)) <= k:
        # No more distinct values than clusters (e.g. a model weight-shared already): each value
        # is its own centroid, the exact optimum, whatever the initialisation.
        c = s64[distinct]
        return c, (c[:-1] + c[1:]) * 0.5, 0
    csum = np.concatenate([[0.0], np.cumsum(s64)])
    c = _init_centroids(s64, int(k), init, seed)
    span = float(s64[-1] - s64[0])
    it = 0
    counts = None
    for it in range(1, max_iter + 1):
        bounds = (c[:-1] + c[1:]) * 0.5
        edges = np.concatenate([[0], np.searchsorted(s64, bounds, side="left"), [s64.size]])
        counts = np.diff(edges)
        sums = csum[edges[1:]] - csum[edges[:-1]]
        new = c.copy()
        nz = counts > 0
        new[nz] = sums[nz] / counts[nz]
        moved = float(np.max(np.abs(new - c))) if c.size else 0.0
        c = new
        if moved <= tol * span:
            break
    # Final membership with the converged centroids; drop the empty clusters and merge duplicates.
    bounds = (c[:-1] + c[1:]) * 0.5
    edges = np.concatenate([[0], np.searchsorted(s64, bounds, side="left"), [s64.size]])
    counts = np.diff(edges)
    keep = counts > 0
    c = c[keep]
    c = np.unique(c)  # sorted; equal centroids (possible with ties) become one
    return c, (c[:-1] + c[1:]) * 0.5, it


def assign_codes(
    weights: np.ndarray, mask: np.ndarray | None, boundaries: np.ndarray
) -> np.ndarray:
    """Codes (uint8, the weights' shape): 0 where pruned or zero, else ``1 + cluster``."""
    w = np.asarray(weights)
    keep = (w != 0) if mask is None else (np.asarray(mask, dtype=bool) & (w != 0))
    codes = np.zeros(w.shape, dtype=np.uint8)
    kept = w[keep]
    codes[keep] = (np.searchsorted(boundaries, kept, side="right") + 1).astype(np.uint8)
    return codes


def share(
    weights: np.ndarray,
    mask: np.ndarray | None = None,
    n_centroids: int = MAX_CENTROIDS,
    *,
    init: str = "linear",
    max_iter: int = 100,
    tol: float = 1e-7,
    seed: int = 0,
) -> SharedLayer:
    """Weight-share one layer: k-means over the kept nonzero weights, then code every weight.

    ``mask`` (bool, True = kept) selects the weights to cluster; ``None`` keeps every nonzero.
    ``n_centroids`` is at most 15 (codebook entry 0 is the fixed zero).
    """
    w = np.asarray(weights)
    if w.ndim != 2:
        raise EieError(f"weight matrix has shape {w.shape}; expected 2-D (n_out, n_in)")
    if not isinstance(n_centroids, (int, np.integer)) or not 1 <= n_centroids <= MAX_CENTROIDS:
        raise EieError(f"number of centroids {n_centroids!r} is outside 1..{MAX_CENTROIDS} "
                       "(16 codebook entries, entry 0 is the fixed zero)")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != w.shape:
            raise EieError(f"mask has shape {mask.shape} but the weights have shape {w.shape}")
    # One boolean gather in matrix order; exact zeros among the kept weights keep code 0.
    keep = (w != 0) if mask is None else mask
    vals = w[keep]
    nonzero = None if mask is None else (vals != 0)
    kept = np.sort(vals if nonzero is None or nonzero.all() else vals[nonzero])
    centroids, bounds, iters = kmeans_1d(kept, int(n_centroids), init=init, max_iter=max_iter,
                                         tol=tol, seed=seed, presorted=True)
    del kept
    code_vals = (np.searchsorted(bounds, vals, side="right") + 1).astype(np.uint8)
    if nonzero is not None:
        code_vals[~nonzero] = 0
    codes = np.zeros(w.shape, dtype=np.uint8)
    codes[keep] = code_vals
    return SharedLayer(centroids=centroids, codes=codes, iterations=iters)


def cluster_gradients(codes: np.ndarray, grads: np.ndarray, n_centroids: int) -> np.ndarray:
    """Sum of ``grads`` over the weights of each cluster: float64 ``(n_centroids,)``, entry
    ``c - 1`` for code ``c``. Pruned weights (code 0) contribute nothing."""
    codes = np.asarray(codes)
    grads = np.asarray(grads)
    if codes.shape != grads.shape:
        raise EieError(f"gradients have shape {grads.shape} but the codes have shape {codes.shape}")
    flat = codes.reshape(-1).astype(np.intp)
    sums = np.bincount(flat, weights=grads.reshape(-1).astype(np.float64), minlength=n_centroids + 1)
    return sums[1:n_centroids + 1]


def centroid_gradients(grads: np.ndarray, codes: np.ndarray, n_entries: int) -> np.ndarray:
    """Per codebook entry, the sum of ``grads`` over the weights with that code: float64
    ``(n_entries,)`` indexed by code (entry 0 sums the pruned weights; a caller keeping the zero
    fixed ignores it). The layout the training loop's codebook uses."""
    codes = np.asarray(codes)
    grads = np.asarray(grads)
    if codes.shape != grads.shape:
        raise EieError(f"gradients have shape {grads.shape} but the codes have shape {codes.shape}")
    if codes.size and int(codes.max()) >= n_entries:
        raise EieError(f"code {int(codes.max())} is outside a codebook of {n_entries} entries")
    return np.bincount(codes.reshape(-1).astype(np.intp),
                       weights=grads.reshape(-1).astype(np.float64), minlength=n_entries)


def fine_tune_centroids(
    centroids: np.ndarray, codes: np.ndarray, grads: np.ndarray, lr: float
) -> np.ndarray:
    """One gradient step on the shared weights: ``c_i - lr * sum(grads of cluster i)``.

    Returns new centroids (same order, so ``codes`` stay valid; they may stop being sorted, which
    the codebook does not require). ``grads`` has the weights' shape (dL/dW of the dense layer).
    """
    c = np.asarray(centroids, dtype=np.float64)
    return c - float(lr) * cluster_gradients(codes, grads, c.size)


def reconstruct(centroids: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Dense float64 weights ``[0, *centroids][codes]``."""
    book = np.concatenate([[0.0], np.asarray(centroids, dtype=np.float64)])
    return book[np.asarray(codes)]
