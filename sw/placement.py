"""Balanced row placement: which output rows of a layer each PE owns.

The hardware stores a layer's rows by *position*: position ``p`` lives in PE ``p % N`` at local
row ``p // N``, and the layer's outputs land in the activation file at the same positions, where
the next layer reads them as its inputs. The contract's plain interleave puts model row ``i`` at
position ``i``. Trained layers are uneven (some rows hold several times the mean number of
nonzeros), so under the interleave one PE owns more entries than the others and the rest wait
for it.

A placement is a permutation ``order`` of the rows: position ``p`` holds model row ``order[p]``.
:func:`balanced_order` chooses one so that every PE holds about the same number of entries in every
column, and, given calibration inputs, about the same work on every calibration sample. The PEs'
totals are not its aim: on a sparse layer (about one entry a PE in a column) every placement that
gives no PE two of a column's entries has the same sum of squared loads, whatever its totals, so
the totals can come out less even than the interleave's while every column is more even (which is
what holds broadcasts back; ``eie inspect`` shows both). The next layer's columns are permuted the
same way (its input position ``q`` is model input ``order[q]``), so layers still run back to back
with no host work, and the host reads the last layer's outputs back in model order.

Per PE the row count is fixed by the positions (``ceil`` or ``floor`` of ``n_out / N``); within a
PE, the densest rows come first (fewer long gaps in a column, so fewer padding entries).

A network's first layer has no previous layer to follow: :func:`input_order` places its inputs
(shuffled, so that alike neighbouring inputs do not reach a PE in bursts; the weightless ones
last; with calibration, a first round that is not all zero).
"""

from __future__ import annotations

import numpy as np

from .sram import pe_rows

__all__ = ["balanced_order", "input_order", "pe_column_counts", "FIRST_ROUND_EMPTY", "INPUT_SHUFFLE_SEED", "invert_order",
           "MAX_BLOCKS", "COLUMN_WEIGHT", "REFINE_STEPS"]

#: The widest per-column load vector the placement keeps: wider layers group neighbouring
#: columns (``ceil(n_in / MAX_BLOCKS)`` a block), which bounds its time on Table III-sized layers.
MAX_BLOCKS = 1024


def invert_order(order: np.ndarray) -> np.ndarray:
    """``pos`` with ``pos[order[p]] = p``: the position of every model row."""
    order = np.asarray(order, dtype=np.int64)
    pos = np.empty_like(order)
    pos[order] = np.arange(order.size)
    return pos


#: The share of calibration samples (those with a nonzero input) on which the first round may be
#: all zero before :func:`input_order` moves the most often nonzero inputs to the front. (An
#: LSTM's first step, zero pixels and a zero hidden state, is all zero: no reason to move.)
FIRST_ROUND_EMPTY = 0.01

#: The seed of :func:`input_order`'s shuffle (fixed: the same layer gets the same image).
INPUT_SHUFFLE_SEED = 0


def input_order(codes: np.ndarray, n_pe: int, activity: np.ndarray | None = None,
                row_order: np.ndarray | None = None) -> np.ndarray:
    """An input placement for a network's first layer (``codes`` ``(n_out, n_in)``) on ``n_pe``
    PEs: the live inputs shuffled, so that neighbouring inputs do not reach a PE back to back,
    and the LNZD's first round not all zero.

    Neighbouring inputs of real data are alike: an image's pixels along a stroke are nonzero
    together and the weight columns of neighbouring pixels are alike, so in the model's order a
    PE meets its heavy columns in bursts its FIFO cannot hide, and every PE waits for it
    (LeNet-300-100's first layer, ``bench/layer_overhead.py``: 4 broadcast cycles a digit above
    the nonzero inputs at 64 PEs in the model's order, 2 shuffled). A fixed pseudo-random order spreads them over the
    layer; on inputs without such neighbours it changes nothing on average. (Sorting inputs by
    weight does the opposite: an LSTM's heaviest columns back to back, 0.937 -> 0.922.) So:

    * inputs without a nonzero weight (they compute nothing) go last;
    * the others in a shuffled order (seeded with :data:`INPUT_SHUFFLE_SEED`);
    * with ``activity`` (bool ``(samples, n_in)``: which inputs are nonzero on calibration
      samples), if the first round of ``n_pe`` positions is then all zero on more than
      :data:`FIRST_ROUND_EMPTY` of the calibration samples that have a nonzero input (an
      all-zero round costs a cycle at a layer's start, while every PE waits for its first
      work; later ones cost nothing), the ``n_pe`` inputs most often nonzero (ties: more
      weights, then the model's order) come first, in the model's order;
    * with ``activity`` and ``row_order`` (the layer's row placement, :func:`balanced_order`'s),
      when every live column holds the same number of nonzeros in every PE (a layer pruned
      load-balance-aware per column), a *tail* of columns with two or more a PE goes last
      among the live ones, in the shuffled order: the most often nonzero such columns (not
      among the first round's), as few as put one nonzero in the tail on all but
      :data:`FIRST_ROUND_EMPTY` of those samples. A layer ends a cycle sooner when no PE's last
      entry is its column's first (the drain need not wait for a first entry, which may write
      the row the next layer reads first; docs/eie-hardware.md), so most inputs then end on
      such a column. The tail is short because grouping more columns costs: a PE that meets
      its one-entry columns back to back keeps no work queued to hide the LNZD's gaps (all of
      them first and the rest last: LeNet-300-100's first layer at 16 PEs 0.943 -> 0.941), and
      on a layer whose columns are uneven the heavy ones must fill the gaps the light ones
      leave, so there it does nothing.

    Returns int64 ``order``: input position ``q`` holds model input ``order[q]``.
    """
    nz = np.asarray(codes) != 0
    n_in = nz.shape[1]
    weights = nz.sum(axis=0)
    live = np.flatnonzero(weights > 0)
    live = np.random.default_rng(INPUT_SHUFFLE_SEED).permutation(live)
    dead = np.flatnonzero(weights == 0)
    if activity is None:
        return np.concatenate([live, dead]).astype(np.int64)
    act = np.asarray(activity, dtype=bool)
    if act.ndim != 2 or act.shape[1] != n_in:
        raise ValueError(f"activity must be (samples, {n_in}), got {act.shape}")
    busy = act[act.any(axis=1)]         # an all-zero sample has nothing to broadcast anyway
    first = np.zeros(n_in, dtype=bool)
    if busy.shape[0] and np.mean(~busy[:, live[:n_pe]].any(axis=1)) > FIRST_ROUND_EMPTY:
        score = act.mean(axis=0) + weights / (weights.max() + 1) / (act.shape[0] + 1)
        first[np.argsort(-score, kind="stable")[:n_pe]] = True
    tail = np.zeros(n_in, dtype=bool)
    if row_order is not None and busy.shape[0]:
        per_pe = pe_column_counts(nz, n_pe, row_order)
        if (per_pe[:, live] == per_pe[:1, live]).all():
            freq = busy.mean(axis=0)
            covered = np.zeros(busy.shape[0], dtype=bool)
            for c in np.argsort(-freq, kind="stable"):
                if covered.mean() >= 1 - FIRST_ROUND_EMPTY or freq[c] == 0:
                    break
                if per_pe[0, c] >= 2 and not first[c]:
                    tail[c] = True
                    covered |= busy[:, c]
    body = live[~first[live] & ~tail[live]]
    return np.concatenate([np.flatnonzero(first), body, live[tail[live]],
                           dead[~first[dead]]]).astype(np.int64)


def pe_column_counts(nz: np.ndarray, n_pe: int, row_order: np.ndarray) -> np.ndarray:
    """Int64 ``(n_pe, n_in)``: the nonzeros of every column of a layer (``nz``, bool ``(n_out,
    n_in)``) that each PE holds when its rows are placed by ``row_order`` (position ``p`` holds
    model row ``row_order[p]`` and lives in PE ``p % n_pe``)."""
    pe = invert_order(row_order) % n_pe
    per_pe = np.zeros((n_pe, nz.shape[1]), dtype=np.int64)
    np.add.at(per_pe, pe, np.asarray(nz).astype(np.int64))
    return per_pe


#: Weight of the per-column loads beside the per-sample loads when calibration inputs are given
#: (per-sample totals decide the busiest PE; per-column evenness lets the FIFOs hide the rest).
COLUMN_WEIGHT = 0.3


def _column_features(nz: np.ndarray) -> np.ndarray:
    """Per row, its nonzeros in every column (columns grouped when wider than MAX_BLOCKS)."""
    n_out, n_in = nz.shape
    block = -(-n_in // MAX_BLOCKS)
    nb = -(-n_in // block)
    f = np.pad(nz, ((0, 0), (0, nb * block - n_in))).reshape(n_out, nb, block).sum(axis=2)
    return f.astype(np.float64)


def balanced_order(codes: np.ndarray, n_pe: int,
                   activity: np.ndarray | None = None) -> np.ndarray:
    """A row order for ``codes`` (``(n_out, n_in)``, 0 = zero weight) on ``n_pe`` PEs that evens
    out the PEs' work.

    What a PE costs on an input is its entries in the columns whose activation is nonzero, and
    the input decides which those are. Each row gets a load vector: its nonzeros in every column
    and, when ``activity`` (bool ``(samples, n_in)``: which inputs of this layer are nonzero on
    calibration samples) is given, its work on every calibration sample (normalised per sample,
    the columns weighted :data:`COLUMN_WEIGHT`). Greedy, heaviest row first: each row goes to
    the PE (among those with a free position) whose load so far overlaps least with the row's,
    i.e. minimises ``loads[k] @ row``, the growth of the sum of squared loads. That evens out
    every column (not the totals as such: see the module doc); where the plain interleave has a
    sum of squared loads no larger (a layer pruned column-balanced has the least possible), the
    interleave's owners stay. With calibration, pairwise swaps then lower the sum over the
    samples of the busiest PE's work (:func:`_refine_on_samples`). Within a PE, rows go densest
    first (ties in model order).

    Returns int64 ``order`` (``n_out``,): position ``p`` holds row ``order[p]``.
    """
    nz = np.asarray(codes) != 0
    n_out, n_in = nz.shape
    if n_pe <= 1 or n_out <= 1:
        return np.arange(n_out, dtype=np.int64)
    rows = _column_features(nz)
    if activity is not None:
        act = np.asarray(activity, dtype=bool)
        if act.ndim != 2 or act.shape[1] != n_in:
            raise ValueError(f"activity must be (samples, {n_in}), got {act.shape}")
        if act.shape[0]:
            per_sample = nz.astype(np.float32) @ act.T.astype(np.float32)     # (n_out, S)
            rows = np.concatenate([per_sample.astype(np.float64) / act.shape[0],
                                   COLUMN_WEIGHT * rows], axis=1)
    free = np.array([pe_rows(n_out, n_pe, k) for k in range(n_pe)], dtype=np.int64)
    loads = np.zeros((n_pe, rows.shape[1]), dtype=np.float64)
    owner = np.empty(n_out, dtype=np.int64)
    # stable: equal rows keep model order
    for i in np.argsort(-rows.sum(axis=1), kind="stable"):
        score = loads @ rows[i]
        score[free == 0] = np.inf
        k = int(np.argmin(score))
        owner[i] = k
        loads[k] += rows[i]
        free[k] -= 1
    # the greedy is a heuristic: keep the interleave where it is at least as even (e.g. a
    # layer pruned column-balanced, where every PE's rows already hold the same in every column)
    interleave = np.arange(n_out, dtype=np.int64) % n_pe
    if _square_loads(interleave, rows, n_pe) <= _square_loads(owner, rows, n_pe):
        owner = interleave
    if activity is not None and act.shape[0]:
        owner = _refine_on_samples(owner, per_sample.astype(np.float64), n_pe)
    # within a PE, densest rows first: a column's entries then cluster at the low local rows,
    # so fewer gaps exceed 15 rows and need padding entries
    dens = nz.sum(axis=1)
    order = np.empty(n_out, dtype=np.int64)
    for k in range(n_pe):
        mine = np.flatnonzero(owner == k)
        mine = mine[np.argsort(-dens[mine], kind="stable")]
        order[k + n_pe * np.arange(mine.size)] = mine
    return order


def _square_loads(owner: np.ndarray, rows: np.ndarray, n_pe: int) -> float:
    """The greedy's objective: the sum over the PEs of their squared loads (``rows`` summed per
    owner), lower is more even."""
    loads = np.zeros((n_pe, rows.shape[1]), dtype=np.float64)
    np.add.at(loads, owner, rows)
    return float(np.square(loads).sum())


#: Swap steps of the calibrated refinement; the most candidate rows one step weighs, and its
#: work budget (row pairs x samples), which caps the candidates on wide layers (a Table III-sized
#: layer with 1,000 calibration samples then takes about a minute, not an hour).
REFINE_STEPS = 300
REFINE_CANDIDATES = 1024
REFINE_BUDGET = 20_000_000


def _refine_on_samples(owner: np.ndarray, work: np.ndarray, n_pe: int,
                       steps: int = REFINE_STEPS, seed: int = 0) -> np.ndarray:
    """Local search on the calibration samples: ``work`` ``(n_out, samples)`` is each row's work
    on each sample; a PE's work on a sample is the sum over its rows, and what a sample costs is
    its busiest PE's. Each step takes one PE (alternately the one busiest on the most samples
    and one drawn at random, seeded) and makes the one swap of one of its rows with a row of
    another PE that lowers the summed cost most, if any does. Row counts per PE never change."""
    owner = owner.copy()
    n_out, S = work.shape
    V = np.zeros((n_pe, S), dtype=np.float64)
    np.add.at(V, owner, work)
    cost = V.max(axis=0).sum()
    rng = np.random.default_rng(seed)
    for step in range(steps):
        if step % 2 == 0:
            a = int(np.bincount(V.argmax(axis=0), minlength=n_pe).argmax())
        else:
            a = int(rng.integers(n_pe))
        mine = np.flatnonzero(owner == a)
        others = np.flatnonzero(owner != a)
        if not mine.size or not others.size:
            continue
        n_cand = min(REFINE_CANDIDATES, max(16, REFINE_BUDGET // (mine.size * S)))
        if others.size > n_cand:
            others = np.sort(rng.choice(others, n_cand, replace=False))
        # each sample's busiest and second-busiest PE other than a: the maximum over the PEs
        # that a swap between a and b leaves alone
        Va = V.copy()
        Va[a] = -np.inf
        arg1 = Va.argmax(axis=0)
        top = np.sort(Va, axis=0)
        top1 = top[-1]
        top2 = top[-2] if n_pe > 2 else np.full(S, -np.inf)
        ob = owner[others]
        rest = np.where(arg1[None, :] == ob[:, None], top2[None, :], top1[None, :])
        Wo = work[others]
        best_gain, best = 1e-9, None
        for i in mine:
            d = Wo - work[i][None, :]                  # row j in place of row i in PE a
            new = np.maximum(np.maximum(V[a][None, :] + d, V[ob] - d), rest).sum(axis=1)
            k = int(np.argmin(new))
            if cost - new[k] > best_gain:
                best_gain, best = cost - new[k], (int(i), int(others[k]))
        if best is None:
            continue
        i, j = best
        b = owner[j]
        V[a] += work[j] - work[i]
        V[b] += work[i] - work[j]
        owner[i], owner[j] = b, a
        cost = V.max(axis=0).sum()
    return owner

