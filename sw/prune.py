"""Magnitude pruning, per layer, the Deep Compression way.

Two rules choose a layer's threshold ``t``; a weight is kept when ``|w| >= t`` (and ``w != 0``):

- **density** ``D`` in (0, 1]: ``t`` is the ``k``-th largest magnitude, ``k = round(D * size)``
  (at least 1), so about ``D * size`` weights stay. Weights tied with the threshold all stay, so the
  kept count can exceed ``k`` by the number of ties.
- **quality** ``Q`` (``--prune-std``): ``t = Q * std(W)``, Han et al.'s rule (the standard
  deviation of all the layer's weights as given, computed in float64).

A zero weight is never kept (it would cost an entry and computes nothing).

For retraining, :func:`prune` takes the mask of an earlier step: pruned weights stay pruned, and
the density is then a fraction of the whole layer, chosen among the weights still kept, so
iterative pruning (``D = 0.5, 0.25, 0.1, ...``) shrinks the mask monotonically. Between steps,
training keeps the pruned weights at zero with :func:`apply_mask` after every update.

Memory: the threshold search copies ``|W|`` once (one dense float32/float64 matrix) and keeps a
band of candidate magnitudes; the mask is one byte a weight.

**Load-balance-aware pruning** (:func:`prune_balanced`; ESE, Han et al., FPGA 2017): EIE gives
output row ``i`` to PE ``i % N``, so a PE's work is the weights kept in its rows. Plain pruning
can leave one PE with many more than another, and the busiest PE sets the pace. ESE prunes each
PE's sub-matrix (rows ``k, k + N, k + 2N, ...``) on its own, to the same count: the layer's
``round(D * size)`` weights are shared out as evenly as possible, and each PE keeps its largest
ones.

**Column-balanced pruning** (:func:`prune_column_balanced`): what a PE costs on an input is its
weights in the columns whose activation is nonzero, and the input chooses those columns, so a PE
that keeps as many weights as the others in all but holds more of them in the columns a digit
lights up is still the busiest on that digit (on real networks this, not the totals, is what
holds EIE back). Here every PE keeps the *same number in every column*: column ``c`` keeps
``q_c`` weights in each PE's rows, each PE its largest there, and the ``q_c`` follow the column
counts plain magnitude pruning would keep (largest remainder, so they add up to the layer's
density). On any input every PE then has the same work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.errors import EieError

__all__ = [
    "PruneResult",
    "magnitude_threshold",
    "std_threshold",
    "prune",
    "prune_to_density",
    "prune_balanced",
    "prune_column_balanced",
    "column_shares",
    "COLUMN_BALANCE_MIN_ROWS",
    "balanced_counts",
    "apply_mask",
    "check_density",
    "check_n_pe",
]

#: The fewest rows a PE (``n_out / N``) for which the prune-and-retrain flow balances a layer per
#: column (:func:`prune_column_balanced`; fewer rows: per PE, :func:`prune_balanced`). With a few
#: rows a PE, an equal count in every column keeps or drops whole columns: LeNet-300-100 pruned
#: that way for 64 PEs (1.6 rows a PE in its 100-row layer, 0.2 in its 10-row one) lost 5 points
#: of accuracy, and such small layers are bound by their nonzero inputs, not their entries.
COLUMN_BALANCE_MIN_ROWS = 16

#: Rows processed at once by the chunked statistics (bounded temporary memory).
_CHUNK_ELEMS = 1 << 22


@dataclass(frozen=True)
class PruneResult:
    """A pruning decision: ``mask`` (bool, True = kept) and the magnitude ``threshold`` used."""

    mask: np.ndarray
    threshold: float

    @property
    def kept(self) -> int:
        """Number of weights kept."""
        return int(np.count_nonzero(self.mask))

    @property
    def density(self) -> float:
        """Fraction of the layer's weights kept."""
        return self.kept / self.mask.size if self.mask.size else 0.0


def check_density(density: float, what: str = "density") -> float:
    """Return ``density`` as a float, or raise :class:`EieError` unless it is in (0, 1]."""
    try:
        d = float(density)
    except (TypeError, ValueError):
        raise EieError(f"{what} {density!r} is not a number (give a fraction in (0, 1])") from None
    if not (0.0 < d <= 1.0):  # also rejects NaN
        raise EieError(f"{what} {density!r} is outside (0, 1] (give the fraction of weights to keep, e.g. 0.1)")
    return d


def _check_weights(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights)
    if w.ndim != 2:
        raise EieError(f"weight matrix has shape {w.shape}; expected 2-D (n_out, n_in)")
    if not np.issubdtype(w.dtype, np.floating):
        w = w.astype(np.float64)
    return w


def _kth_largest(values: np.ndarray, k: int, may_reorder: bool = True) -> tuple[float, bool]:
    """The ``k``-th largest element of the 1-D ``values`` (``1 <= k <= values.size``).

    A sample brackets the answer so that only a small band (a copy) is partitioned and
    ``values`` stays as it was; otherwise ``values`` is partitioned in place (a copy first unless
    ``may_reorder``). Returns the value and whether ``values`` was reordered.
    """
    n = values.size
    if n > (1 << 20) and k < n // 4:
        # The sample quantile (with a safety margin) is a lower bound for the k-th largest with
        # overwhelming probability; verify by counting and fall back to a full partition if not.
        step = max(1, n // (1 << 18))
        sample = np.sort(values[::step])
        q = 1.0 - k / n
        pos = max(0, int(q * sample.size) - 8 * int(np.sqrt(sample.size)) - 1)
        lo = sample[pos]
        band = values[values >= lo]
        if band.size >= k:
            kth = band.size - k
            band.partition(kth)
            return float(band[kth]), False
    if not may_reorder:
        values = values.copy()
    kth = n - k
    values.partition(kth)
    return float(values[kth]), True


def _density_threshold(mags: np.ndarray, k: int) -> tuple[float, bool]:
    """Threshold keeping the ``k`` largest of the magnitudes ``mags`` (1-D, may be reordered)."""
    if k >= mags.size:  # keep every candidate: the threshold is the smallest nonzero magnitude
        nonzero = mags[mags > 0]
        return (float(nonzero.min()) if nonzero.size else 0.0), False
    return _kth_largest(mags, k)


def magnitude_threshold(weights: np.ndarray, density: float, mask: np.ndarray | None = None) -> float:
    """Threshold keeping about ``density * weights.size`` weights of largest magnitude.

    With ``mask``, only weights where ``mask`` is True compete (and the count is still a fraction of
    the whole layer); if fewer than that are candidates, all of them are kept.
    """
    w = _check_weights(weights)
    d = check_density(density)
    k = max(1, int(round(d * w.size)))
    mags = np.abs(w[mask]) if mask is not None else np.abs(w).ravel()
    return _density_threshold(mags, k)[0]


def _chunked_std(w: np.ndarray) -> float:
    flat = w.reshape(-1)
    total = 0.0
    for start in range(0, flat.size, _CHUNK_ELEMS):
        total += float(np.sum(flat[start:start + _CHUNK_ELEMS], dtype=np.float64))
    mean = total / flat.size
    sq = 0.0
    for start in range(0, flat.size, _CHUNK_ELEMS):
        c = flat[start:start + _CHUNK_ELEMS].astype(np.float64) - mean
        sq += float(np.dot(c, c))
    return float(np.sqrt(sq / flat.size))


def std_threshold(weights: np.ndarray, quality: float) -> float:
    """Deep Compression's threshold ``quality * std(weights)`` (population std, float64)."""
    w = _check_weights(weights)
    try:
        q = float(quality)
    except (TypeError, ValueError):
        raise EieError(f"prune quality {quality!r} is not a number (give e.g. 1.0)") from None
    if not (np.isfinite(q) and q >= 0.0):
        raise EieError(f"prune quality {quality!r} must be a finite number >= 0 (threshold = quality x std)")
    if w.size == 0:
        return 0.0
    return q * _chunked_std(w)


def prune(
    weights: np.ndarray,
    *,
    density: float | None = None,
    std_quality: float | None = None,
    mask: np.ndarray | None = None,
) -> PruneResult:
    """Choose which weights of one layer to keep.

    Give exactly one of ``density`` (fraction of the layer to keep) or ``std_quality`` (threshold
    = quality x std). ``mask`` (optional) is the previous step's mask: weights it pruned stay
    pruned. Returns the new mask (a fresh array) and the threshold; ``weights`` is not modified.
    """
    w = _check_weights(weights)
    if (density is None) == (std_quality is None):
        raise EieError("give exactly one of density or prune quality (--density D or --prune-std Q)")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != w.shape:
            raise EieError(f"mask has shape {mask.shape} but the weights have shape {w.shape}")
    mags = None
    if density is not None:
        k = max(1, int(round(check_density(density) * w.size)))
        if mask is not None:
            t, _ = _density_threshold(np.abs(w[mask]), k)
        else:
            mags = np.abs(w)  # one copy, reused for the mask when the search left it in order
            t, reordered = _density_threshold(mags.reshape(-1), k)
            if reordered:
                mags = None
    else:
        t = std_threshold(w, std_quality)
    if t > 0:
        keep = (mags if mags is not None else np.abs(w)) >= t
    else:
        keep = w != 0
    del mags
    if mask is not None:
        keep &= mask
    return PruneResult(mask=keep, threshold=float(t))


def apply_mask(weights: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Zero the pruned weights: ``weights * mask``, into ``out`` (may be ``weights`` itself)."""
    return np.multiply(weights, mask, out=out)


def prune_to_density(
    weights: np.ndarray, density: float, mask: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Shorthand for the retraining loop: ``(threshold, mask)`` keeping about ``density`` of the
    layer (see :func:`prune`)."""
    r = prune(weights, density=density, mask=mask)
    return r.threshold, r.mask


def check_n_pe(n_pe) -> int:
    """Return ``n_pe`` as an int, or raise :class:`EieError` unless it is an integer >= 1."""
    if isinstance(n_pe, (bool, np.bool_)) or not isinstance(n_pe, (int, np.integer)) or n_pe < 1:
        raise EieError(f"number of PEs {n_pe!r} must be an integer >= 1 (the PEs a layer's rows "
                       "are interleaved over)")
    return int(n_pe)


def balanced_counts(capacity: np.ndarray, total: int) -> np.ndarray:
    """Share ``total`` kept weights out over PEs as evenly as their ``capacity`` allows.

    ``capacity[k]`` is what PE ``k`` can keep at most (its candidate weights). Water-filling: every
    PE gets ``min(capacity[k], L)`` for the largest level ``L`` that fits in ``total``; the
    remainder (fewer than the PEs with room left) adds one weight each to the PEs with room left,
    lowest index first. So PEs that are not capacity-bound differ by at most one, the lower
    indices holding the extra ones, and the counts add up to ``min(total, capacity.sum())``.
    """
    cap = np.asarray(capacity, dtype=np.int64)
    total = int(min(max(int(total), 0), int(cap.sum())))
    lo, hi = 0, int(cap.max()) if cap.size else 0
    while lo < hi:  # the largest L with sum(min(cap, L)) <= total
        mid = (lo + hi + 1) // 2
        if int(np.minimum(cap, mid).sum()) <= total:
            lo = mid
        else:
            hi = mid - 1
    counts = np.minimum(cap, lo)
    rest = total - int(counts.sum())
    if rest:
        room = np.flatnonzero(cap > lo)  # each of these can take one more (rest < room.size)
        counts[room[:rest]] += 1
    return counts


def _balanced_args(weights, density, n_pe, mask):
    """The checked arguments of the load-balance-aware pruners: ``(weights, density, n_pe,
    |weights|)``, the magnitudes zero where ``mask`` (an earlier step's) pruned (None for an
    empty matrix)."""
    w = _check_weights(weights)
    d = check_density(density)
    n = check_n_pe(n_pe)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != w.shape:
            raise EieError(f"mask has shape {mask.shape} but the weights have shape {w.shape}")
    if w.size == 0:
        return w, d, n, None
    absw = np.abs(w)                 # candidates: absw > 0 (pruned weights zeroed here)
    if not np.isfinite(absw.max()):
        raise EieError("weights contain NaN or infinite values; nothing to prune by magnitude")
    if mask is not None:
        absw *= mask
    return w, d, n, absw


def prune_balanced(
    weights: np.ndarray, density: float, n_pe: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load-balance-aware pruning (ESE): every PE keeps the same number of weights.

    Row ``i`` of ``weights`` ``(n_out, n_in)`` belongs to PE ``i % n_pe``. The layer keeps
    ``k = round(density * size)`` weights in all (at least 1), as :func:`prune_to_density` aims
    to; :func:`balanced_counts` shares them out over the PEs (``k // n_pe`` each, one more for
    the lowest ``k % n_pe`` PEs; a PE with fewer candidates than its share keeps all of them and
    the others share the rest), and each PE keeps its largest-magnitude weights. Ties at a PE's
    threshold are broken by position (row-major order), so the counts are exact. A zero weight
    is never kept, and with ``mask`` (an earlier step's) a pruned weight stays pruned.

    Returns ``(pruned weights, mask)``: fresh arrays, ``weights * mask`` and the bool mask;
    ``weights`` is not modified.

    Speed: one ``|W|`` copy; each PE's magnitudes are gathered once (one pass in all) and its
    threshold found by partitioning them (:func:`_kth_largest`, the sampled band for a large
    PE); then one comparison pass makes the mask. About 0.1-0.2 s for 4096 x 4096 on 16-300 PEs.
    """
    w, d, n, absw = _balanced_args(weights, density, n_pe, mask)
    n_out = w.shape[0]
    if w.size == 0:
        return w.copy(), np.zeros(w.shape, dtype=bool)
    k_total = max(1, int(round(d * w.size)))
    pe_of_row = np.arange(n_out) % n
    cap = np.bincount(pe_of_row, weights=np.count_nonzero(absw, axis=1),
                      minlength=n).astype(np.int64)
    counts = balanced_counts(cap, k_total)

    # PE k keeps |w| >= thr[k]: inf keeps nothing, the smallest positive value every candidate
    dt = absw.dtype
    thr = np.full(n, np.inf, dtype=dt)
    tied = []
    for k in np.flatnonzero(counts):
        c = int(counts[k])
        if c == cap[k]:
            thr[k] = np.nextafter(dt.type(0), dt.type(1))
            continue
        vals = absw[k::n].reshape(-1)    # a copy unless the PE has one row
        t, _ = _kth_largest(vals, c, may_reorder=not np.may_share_memory(vals, absw))
        thr[k] = t                       # > 0: c <= the PE's candidates
        if np.count_nonzero(vals >= t) > c:
            tied.append(k)
    keep = absw >= thr[pe_of_row][:, None]
    for k in tied:  # more weights equal the threshold than the count leaves room for
        sub = absw[k::n]
        at = sub == thr[k]
        need = int(counts[k]) - int(np.count_nonzero(sub > thr[k]))
        drop = at & (np.cumsum(at.reshape(-1)).reshape(at.shape) > need)
        keep[k::n] &= ~drop
    return w * keep, keep


def column_shares(ideal: np.ndarray, cap: np.ndarray, total: int) -> np.ndarray:
    """How many weights every PE keeps in each column: ``total`` shared out over the columns in
    proportion to ``ideal`` (largest remainder, ties to the lower column), none above ``cap``
    (the fewest candidates a PE has in that column). Adds up to ``min(total, cap.sum())``."""
    cap = np.asarray(cap, dtype=np.int64)
    ideal = np.asarray(ideal, dtype=np.float64)
    total = int(min(max(int(total), 0), int(cap.sum())))
    if ideal.sum() > 0:
        ideal = ideal * (total / ideal.sum())
    q = np.minimum(np.floor(ideal).astype(np.int64), cap)
    while (rest := total - int(q.sum())) > 0:
        room = np.flatnonzero(q < cap)
        room = room[np.argsort(-(ideal[room] - q[room]), kind="stable")][:rest]
        q[room] += 1
    return q


def prune_column_balanced(
    weights: np.ndarray, density: float, n_pe: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Column-balanced pruning: every PE keeps the same number of weights in every column.

    Row ``i`` of ``weights`` ``(n_out, n_in)`` belongs to PE ``i % n_pe`` (only the
    ``min(n_pe, n_out)`` PEs that own rows count). The layer keeps about ``round(density *
    size)`` weights: :func:`column_shares` gives column ``c`` a per-PE count ``q_c`` in proportion
    to what one magnitude threshold for the whole layer would keep there, never more than the
    PE with the fewest candidates in that column has, and each PE keeps its ``q_c`` largest
    weights of the column (ties broken by row, lower first). A zero weight is never kept, and
    with ``mask`` (an earlier step's) a pruned weight stays pruned.

    Returns ``(pruned weights, mask)`` as :func:`prune_balanced`. The kept count is a multiple
    of the PEs that own rows, so it can differ from ``round(density * size)`` by less than that
    many (at least that many are kept when every column allows it).
    """
    w, d, n, absw = _balanced_args(weights, density, n_pe, mask)
    n_out, n_in = w.shape
    keep = np.zeros(w.shape, dtype=bool)
    if w.size == 0:
        return w.copy(), keep
    n_own = min(n, n_out)
    k_total = max(1, int(round(d * w.size)))
    thr, _ = _density_threshold(absw.reshape(-1).copy(), k_total)
    plain = np.count_nonzero((absw >= thr) & (absw > 0), axis=0)      # per column
    cap = np.min([np.count_nonzero(absw[k::n], axis=0) for k in range(n_own)], axis=0)
    q = column_shares(plain, cap, max(1, int(round(k_total / n_own))))
    for k in range(n_own):
        sub = absw[k::n]
        rank = np.empty(sub.shape, dtype=np.int64)
        np.put_along_axis(rank, np.argsort(-sub, axis=0, kind="stable"),
                          np.arange(sub.shape[0])[:, None], axis=0)
        keep[k::n] = rank < q[None, :]
    return w * keep, keep
