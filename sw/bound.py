"""The contract's ideal bound and the work statistics behind it (docs/ARCHITECTURE.md, "The
ideal bound"), the one implementation the golden model, the cycle model, the CLI's ``--stats``,
the benchmarks and the demo use.

For an EIE layer on ``N`` PEs and one input ``x``::

    bound = max(nonzero inputs, ceil(total entries of the nonzero-input columns, padding
                                     included, / N))
    efficiency = bound / cycles

A layer's work is described by its *column entries*: int64 ``(n_in, N)``, the entries (padding
included) of every column in every PE, the differences of each PE's pointers
(:func:`column_entries`, :func:`layer_column_entries`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["LayerStats", "column_entries", "layer_column_entries", "layer_work",
           "ideal_bounds", "ideal_bound", "efficiency", "layer_stats"]


def column_entries(pointers_per_pe: Sequence[np.ndarray]) -> np.ndarray:
    """Entries of every column in every PE, int64 ``(n_in, N)``, from each PE's ``n_in + 1``
    pointers (the start of every column and the end of the last)."""
    return np.stack([np.diff(np.asarray(p).astype(np.int64)) for p in pointers_per_pe], axis=1)


def layer_column_entries(image, l: int) -> np.ndarray:
    """:func:`column_entries` of layer ``l`` of an :class:`~eie.sw.image.Image`."""
    return column_entries([image.layer_pointers(l, k) for k in range(image.n_pe)])


def _active(x: np.ndarray, n_in: int) -> np.ndarray:
    """0/1 int64 ``(batch, n_in)``: which inputs are nonzero (a vector is a batch of one)."""
    return (np.asarray(x).reshape(-1, n_in) != 0).astype(np.int64)


def layer_work(col_entries: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(nonzero inputs (batch,), entries of the nonzero-input columns per PE (batch, N))``."""
    ce = np.asarray(col_entries, dtype=np.int64)
    active = _active(x, ce.shape[0])
    return active.sum(axis=1), active @ ce


def ideal_bounds(col_entries: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The bound of every sample of ``x`` (``(batch, n_in)`` or a vector): int64 ``(batch,)``."""
    nnz, work_per_pe = layer_work(col_entries, x)
    n_pe = np.shape(col_entries)[1]
    return np.maximum(nnz, -(-work_per_pe.sum(axis=1) // n_pe))


def ideal_bound(col_entries: np.ndarray, x: np.ndarray) -> int:
    """The bound of one input ``x`` (``(n_in,)``, or a batch of one)."""
    bounds = ideal_bounds(col_entries, x)
    if bounds.shape != (1,):
        raise ValueError(f"ideal_bound takes one input; got {bounds.shape[0]} (use ideal_bounds)")
    return int(bounds[0])


def efficiency(bound: float, cycles: float) -> float:
    """The contract's efficiency: ideal bound / measured (or predicted) cycles (0.0 for no
    cycles)."""
    return bound / cycles if cycles else 0.0


@dataclass(eq=False)
class LayerStats:
    """Work of one layer; arrays over the batch where per-sample."""

    nonzero_inputs: np.ndarray      # (batch,) nonzero input activations
    entries_per_pe: np.ndarray      # (n_pe,) entries incl. padding, whole layer
    padding_per_pe: np.ndarray      # (n_pe,)
    work_entries: np.ndarray        # (batch,) entries (padding incl.) of nonzero-input columns
    work_per_pe: np.ndarray         # (batch, n_pe) the same per PE
    bound: np.ndarray               # (batch,) max(nonzero_inputs, ceil(work_entries / n_pe))


def layer_stats(image, l: int, x: np.ndarray) -> LayerStats:
    """The work statistics of layer ``l`` of ``image`` on its inputs ``x`` ``(batch, n_in)``."""
    n_pe = image.n_pe
    ptrs = [image.layer_pointers(l, k) for k in range(n_pe)]
    ce = column_entries(ptrs)
    padding = np.array([int(np.count_nonzero((image.layer_entries(l, k) & 0xF) == 0))
                        for k in range(n_pe)], dtype=np.int64)
    nnz, work_per_pe = layer_work(ce, x)
    work = work_per_pe.sum(axis=1)
    return LayerStats(nonzero_inputs=nnz,
                      entries_per_pe=np.array([int(p[-1]) for p in ptrs], dtype=np.int64),
                      padding_per_pe=padding, work_entries=work, work_per_pe=work_per_pe,
                      bound=np.maximum(nnz, -(-work // n_pe)))
