"""The ideal bound (docs/ARCHITECTURE.md, "The ideal bound"), computed here straight from the
contract's words, element by element, against :mod:`eie.sw.bound` and everything that reports
the bound through it (the golden model's statistics, ``eie bench``'s sweeps, the cycle model's
column entries).

The contract: for a layer on ``N`` PEs and one input, ``bound = max(nonzero input activations,
ceil(total entries of the nonzero-activation columns, padding included, / N))``; a column's
entries in one PE are its nonzeros there plus ``floor(d / 16)`` padding entries for every gap of
``d`` zero local rows before a nonzero (counted from local row 0); position ``p`` is PE
``p % N``, local row ``p // N``, and holds the model's row ``row_order[p]`` (the identity without
a placement).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from eie.app.bench_sweep import column_entries as bench_column_entries
from eie.sw import bound
from eie.sw.encode import QuantLayer, build_image
from eie.sw.golden import golden_forward


def contract_entries(codes: np.ndarray, n_pe: int, row_order) -> list[list[int]]:
    """``entries[j][k]``: entries of column ``j`` in PE ``k``, padding included, by the rule."""
    n_out, n_in = codes.shape
    order = list(range(n_out)) if row_order is None else [int(r) for r in row_order]
    entries = [[0] * n_pe for _ in range(n_in)]
    for j in range(n_in):
        for k in range(n_pe):
            local_rows = [p // n_pe for p in range(n_out) if p % n_pe == k and codes[order[p], j]]
            previous = -1
            for r in sorted(local_rows):
                gap = r - previous - 1
                entries[j][k] += 1 + gap // 16
                previous = r
    return entries


def contract_bound(entries: list[list[int]], x_row, n_pe: int) -> int:
    active = [j for j, v in enumerate(x_row) if int(v) != 0]
    work = sum(sum(entries[j]) for j in active)
    return max(len(active), math.ceil(work / n_pe))


def _random_case(seed: int):
    rng = np.random.default_rng(seed)
    n_pe = int(rng.integers(1, 9))
    n_out, n_in = int(rng.integers(1, 90)), int(rng.integers(1, 40))
    density = float(rng.choice([0.02, 0.1, 0.4, 1.0]))
    codes = (rng.integers(1, 16, (n_out, n_in)) * (rng.random((n_out, n_in)) < density))
    if n_out > 40 and n_in > 1:                      # a long gap: padding entries
        codes[:, 0] = 0
        codes[n_out - 1, 0] = 3
    codebook = np.concatenate([[0], rng.integers(-200, 201, 15)]).astype(np.int16)
    layer = QuantLayer(codes=codes.astype(np.uint8), codebook=codebook, w_frac=4, bias=None,
                       relu=False)
    batch = int(rng.integers(1, 6))
    act_density = float(rng.choice([0.0, 0.2, 0.6, 1.0]))
    x = (rng.integers(-300, 301, (batch, n_in)) * (rng.random((batch, n_in)) < act_density))
    return layer, n_pe, x.astype(np.int16)


@pytest.mark.parametrize("balance", [False, True])
@pytest.mark.parametrize("seed", range(24))
def test_bound_is_the_contracts_formula(seed, balance):
    layer, n_pe, x = _random_case(seed)
    image = build_image([layer], n_pe, balance=balance)
    row_order = image.layers[0].row_order
    entries = contract_entries(layer.codes, n_pe, row_order)
    want = [contract_bound(entries, x[s], n_pe) for s in range(x.shape[0])]

    # the image's columns are input positions: position q holds model input input_order[q]
    # (docs/image-format.md, "Input placement"; none without one)
    in_order = image.layers[0].input_order or list(range(layer.codes.shape[1]))
    ce = bound.layer_column_entries(image, 0)
    assert ce.tolist() == [entries[j] for j in in_order]
    xp = x[:, in_order]
    assert bound.ideal_bounds(ce, xp).tolist() == want
    assert [bound.ideal_bound(ce, xp[s]) for s in range(x.shape[0])] == want
    stats = golden_forward(image, x).stats[0]
    assert stats.bound.tolist() == want
    assert stats.nonzero_inputs.tolist() == [int(np.count_nonzero(r)) for r in x]
    assert stats.work_entries.tolist() == [sum(sum(entries[j]) for j in np.flatnonzero(r))
                                           for r in x]
    assert stats.work_per_pe.tolist() == [[sum(entries[j][k] for j in np.flatnonzero(r))
                                           for k in range(n_pe)] for r in x]
    assert stats.entries_per_pe.tolist() == [sum(entries[j][k] for j in range(len(entries)))
                                             for k in range(n_pe)]
    if not balance:                 # eie bench's sweeps: column entries from the encoder
        assert bench_column_entries(layer, n_pe).tolist() == entries


def test_efficiency_and_one_input():
    ce = np.array([[3, 0], [1, 1], [0, 5]])
    # nonzero inputs 0 and 2: 3 + 0 + 0 + 5 = 8 entries on 2 PEs -> 4 > 2 nonzero inputs
    assert bound.ideal_bound(ce, np.array([7, 0, -1])) == 4
    assert bound.ideal_bound(ce, np.array([[0, 2, 0]])) == 1              # max(1, ceil(2 / 2))
    assert bound.ideal_bound(ce, np.zeros(3)) == 0
    with pytest.raises(ValueError, match="one input"):
        bound.ideal_bound(ce, np.ones((2, 3)))
    assert bound.efficiency(4, 5) == 0.8 and bound.efficiency(4, 0) == 0.0


def test_one_implementation():
    """The golden model, the cycle model and the benchmarks take the bound from eie.sw.bound."""
    from eie.sw import cycle_model, golden

    assert cycle_model.layer_column_entries is bound.layer_column_entries
    assert cycle_model.efficiency is bound.efficiency
    assert golden.LayerStats is bound.LayerStats
    from eie.app import bench_setup, bench_sweep, bench_table3, cmd_bench

    for module in (cmd_bench, bench_setup, bench_table3, bench_sweep):
        assert not hasattr(module, "ideal_bound"), module.__name__
