"""Balanced row placement (eie.sw.placement): a permutation that keeps each PE's row count, evens
out the PEs' entries per column and per calibration sample, and puts a PE's densest rows first."""

from __future__ import annotations

import numpy as np
import pytest

from eie.sw.sram import pe_rows
from eie.sw.cycle_model import predict_counters
from eie.sw.encode import QuantLayer, build_image
from eie.sw.placement import balanced_order, input_order, invert_order


def _uneven(rng, n_out, n_in, density=0.1):
    """Rows and columns as a trained layer has them: densities spread over ~10x."""
    row_d = np.clip(density * rng.lognormal(0, 0.9, n_out), 0, 1)
    col_d = rng.lognormal(0, 0.6, n_in)
    p = np.clip(row_d[:, None] * col_d[None, :] / col_d.mean(), 0, 1)
    return (rng.random((n_out, n_in)) < p).astype(np.uint8) * rng.integers(1, 16, (n_out, n_in))


def _per_pe_column_loads(codes, order, n_pe):
    """(n_pe, n_in) nonzeros of every column in every PE under ``order``."""
    owner = invert_order(order) % n_pe
    loads = np.zeros((n_pe, codes.shape[1]), np.int64)
    np.add.at(loads, owner, (codes != 0).astype(np.int64))
    return loads


@pytest.mark.parametrize("n_out,n_pe", [(1, 4), (7, 16), (37, 4), (64, 8), (100, 7)])
def test_a_permutation_with_each_pe_s_row_count(n_out, n_pe):
    rng = np.random.default_rng(n_out)
    codes = _uneven(rng, n_out, 30)
    order = balanced_order(codes, n_pe)
    assert sorted(order.tolist()) == list(range(n_out))
    owner = invert_order(order) % n_pe
    assert [int(np.sum(owner == k)) for k in range(n_pe)] == \
        [pe_rows(n_out, n_pe, k) for k in range(n_pe)]


def test_one_pe_keeps_the_model_order():
    codes = _uneven(np.random.default_rng(0), 20, 10)
    np.testing.assert_array_equal(balanced_order(codes, 1), np.arange(20))


def test_evens_out_totals_and_columns_against_the_interleave():
    rng = np.random.default_rng(1)
    codes = _uneven(rng, 256, 200)
    n_pe = 16
    plain = _per_pe_column_loads(codes, np.arange(256), n_pe)
    bal = _per_pe_column_loads(codes, balanced_order(codes, n_pe), n_pe)
    assert bal.sum(axis=1).max() < plain.sum(axis=1).max()
    # per column, the spread over the PEs (sum of squares at equal totals) falls
    assert (bal.astype(float) ** 2).sum() < (plain.astype(float) ** 2).sum()
    # and the busiest PE over random subsets of columns (the inputs) is lower on average
    subsets = rng.random((200, 200)) < 0.3
    busiest = lambda loads: (subsets @ loads.T).max(axis=1).mean()   # noqa: E731
    assert busiest(bal) < busiest(plain)


def test_densest_rows_first_within_a_pe():
    codes = _uneven(np.random.default_rng(2), 50, 40)
    order = balanced_order(codes, 4)
    dens = np.count_nonzero(codes, axis=1)
    for k in range(4):
        d = dens[order[k::4]]
        assert np.all(np.diff(d) <= 0)


def test_calibration_evens_each_sample_s_work():
    rng = np.random.default_rng(3)
    codes = _uneven(rng, 128, 64)
    # correlated inputs: each sample activates one of four column groups, mostly
    groups = rng.integers(0, 4, 400)
    act = (rng.random((400, 64)) < 0.05) | ((np.arange(64)[None, :] // 16) == groups[:, None])
    n_pe = 16

    def busiest(order):
        owner = invert_order(order) % n_pe
        per_pe = np.zeros((n_pe, 64))
        np.add.at(per_pe, owner, (codes != 0).astype(float))
        return (act @ per_pe.T).max(axis=1).mean()

    assert busiest(balanced_order(codes, n_pe, act)) < busiest(balanced_order(codes, n_pe))


def test_calibration_shape_is_checked():
    codes = _uneven(np.random.default_rng(4), 10, 8)
    with pytest.raises(ValueError, match=r"\(samples, 8\)"):
        balanced_order(codes, 2, np.zeros((3, 7), bool))


def test_refinement_lowers_the_busiest_pe_on_the_samples_and_keeps_row_counts():
    from eie.sw.placement import _refine_on_samples

    rng = np.random.default_rng(5)
    work = rng.gamma(2.0, 3.0, (96, 50)) * rng.lognormal(0, 0.5, (96, 1))
    n_pe = 8
    owner = np.arange(96) % n_pe

    def cost(o):
        V = np.zeros((n_pe, 50))
        np.add.at(V, o, work)
        return V.max(axis=0).sum()

    refined = _refine_on_samples(owner, work, n_pe, steps=60)
    assert np.array_equal(np.bincount(refined, minlength=n_pe), np.bincount(owner, minlength=n_pe))
    assert cost(refined) < 0.97 * cost(owner)
    # deterministic (seeded)
    np.testing.assert_array_equal(refined, _refine_on_samples(owner, work, n_pe, steps=60))


def test_column_balanced_layer_keeps_interleave_owners():
    # a layer pruned column-balanced is as even as a placement can be under the interleave:
    # the greedy must not make it worse (every PE keeps the same entries in every column)
    from eie.sw.prune import prune_column_balanced

    w = np.random.default_rng(12).standard_normal((640, 120))
    _, mask = prune_column_balanced(w, 0.1, 64)
    order = balanced_order(mask.astype(np.int64), 64)
    assert sorted(order.tolist()) == list(range(640))
    assert (order % 64 == np.arange(640) % 64).all()
    pos_mask = mask[order]
    per = np.array([pos_mask[p::64].sum(axis=0) for p in range(64)])
    assert (per == per[0][None, :]).all()


def test_greedy_never_less_even_than_interleave():
    # on uneven random layers the chosen owners' sum of squared per-column loads is at most
    # the interleave's
    rng = np.random.default_rng(13)
    for n_out, n_in, n_pe in ((100, 30, 8), (257, 40, 16), (64, 20, 64)):
        nz = rng.random((n_out, n_in)) < rng.random((n_out, 1)) * 0.3
        order = balanced_order(nz.astype(np.int64), n_pe)

        def sq(owner_of_row):
            loads = np.zeros((n_pe, n_in))
            np.add.at(loads, owner_of_row, nz)
            return np.square(loads).sum()

        owner = np.empty(n_out, dtype=np.int64)
        owner[order] = np.arange(n_out) % n_pe
        assert sq(owner) <= sq(np.arange(n_out) % n_pe)


def test_input_order_spreads_neighbouring_heavy_columns():
    # 16 rows on 4 PEs; inputs 0..95 carry a weight in every row (4 entries a PE each: a stroke
    # of alike neighbours), 96..383 one row each (rotating). Every input nonzero: the bound is
    # a PE's entries, 96 * 4 + 288 / 4 = 456. In the model's order each PE meets 96 heavy
    # columns back to back (384 entries for 96 broadcasts: the broadcast waits once its FIFO
    # and pointer queue are full) and then idles through the light ones; shuffled, the light
    # columns fill the gaps and the layer's cycles approach the bound.
    codes = np.zeros((16, 384), np.uint8)
    codes[:, :96] = 3
    codes[np.arange(288) % 16, 96 + np.arange(288)] = 5
    order = input_order(codes, 4)
    assert sorted(order.tolist()) == list(range(384))
    heavy = np.isin(order, np.arange(96))
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], heavy, [0]]))))[::2]
    assert runs.max() <= 8                              # no long run of heavy columns
    layers = [QuantLayer(codes=codes, codebook=np.arange(16) * 5, w_frac=4, bias=None,
                         relu=False)]
    x = np.full((1, 384), 256, np.int16)
    shuffled = build_image(layers, n_pe=4, balance=True)
    assert shuffled.layers[0].input_order == order.tolist()
    plain = build_image(layers, n_pe=4)                # the interleave, inputs in model order
    bound = 456
    cyc = [predict_counters(img, x, fifo_depth=8, ptr_queue_depth=15)[0][0].cycles
           for img in (shuffled, plain)]
    assert cyc[0] <= 1.05 * bound and cyc[1] >= 1.25 * bound


def test_pe_column_counts_against_a_count_per_pe():
    from eie.sw.placement import pe_column_counts

    rng = np.random.default_rng(31)
    for n_out, n_in, n_pe, density in [(40, 60, 4, 0.15), (64, 50, 16, 0.3), (7, 30, 4, 0.5),
                                       (300, 80, 64, 0.05)]:
        nz = rng.random((n_out, n_in)) < density
        order = rng.permutation(n_out)
        got = pe_column_counts(nz, n_pe, order)
        want = [[sum(int(nz[order[p], c]) for p in range(k, n_out, n_pe)) for c in range(n_in)]
                for k in range(n_pe)]
        assert got.tolist() == want


def test_input_order_ends_an_even_layer_on_a_tail_of_columns_of_two_or_more():
    # a layer pruned load-balance-aware per column (every PE the same number of nonzeros in
    # every column), with its placement and calibration inputs: a tail of columns of two or
    # more a PE goes last among the live inputs, the most often nonzero ones until all but 1%
    # of the samples have a nonzero there; the rest keep the shuffle's order. Without
    # calibration, or on an uneven layer, the shuffle stays as it is.
    from eie.sw.placement import FIRST_ROUND_EMPTY, pe_column_counts
    from eie.sw.prune import prune_column_balanced

    rng = np.random.default_rng(32)
    w = rng.standard_normal((128, 200)) * rng.lognormal(0, 0.6, 200)   # columns of many sizes
    _, mask = prune_column_balanced(w, 0.1, 8)
    codes = mask.astype(np.uint8) * 3
    codes[:, 5] = 0
    rows = balanced_order(codes, 8)
    per_pe = pe_column_counts(codes != 0, 8, rows)
    live = (codes != 0).any(axis=0)
    two = per_pe[0] >= 2
    assert (per_pe == per_pe[:1]).all() and 10 <= (live & two).sum() <= 190
    act = rng.random((400, 200)) < rng.uniform(0.5, 0.9, 200)          # inputs of many rates
    plain = input_order(codes, 8, act)
    np.testing.assert_array_equal(plain, input_order(codes, 8))   # (the first round not empty)
    np.testing.assert_array_equal(input_order(codes, 8, row_order=rows), plain)   # no activity
    got = input_order(codes, 8, act, row_order=rows)
    assert sorted(got.tolist()) == list(range(200))
    n_live = int(live.sum())
    assert not live[got[n_live:]].any()
    # the tail: the positions from the last one-entry column on are all columns of two or more
    k = n_live - 1 - int(np.flatnonzero(~two[got[:n_live]])[-1])
    tail = got[n_live - k:n_live]
    assert k >= 1 and two[tail].all()
    busy = act[act.any(axis=1)]
    assert busy[:, tail].any(axis=1).mean() >= 1 - FIRST_ROUND_EMPTY
    # as few as that takes, the most often nonzero first: without the least frequent, short
    freq = busy.mean(axis=0)
    least = tail[np.argmin(freq[tail])]
    assert busy[:, np.setdiff1d(tail, [least])].any(axis=1).mean() < 1 - FIRST_ROUND_EMPTY
    assert freq[tail].min() >= freq[two & live & ~np.isin(np.arange(200), tail)].max()
    rest = got[:n_live - k]
    np.testing.assert_array_equal(rest, plain[np.isin(plain, rest)])
    uneven = _uneven(rng, 96, 200, density=0.08)
    np.testing.assert_array_equal(
        input_order(uneven, 8, act, row_order=balanced_order(uneven, 8)), input_order(uneven, 8, act))


def test_a_column_balanced_first_layer_ends_on_a_column_of_two_or_more():
    # A layer pruned load-balance-aware per column (every PE the same number of entries in
    # every column) takes its work plus the latency of a layer, a cycle less when the last
    # nonzero input's column holds two or more entries a PE (tests/test_cycle_model.py). The
    # balanced image calibrated on inputs like these orders its inputs so that every input
    # here ends on such a column: a cycle less on every one. In the model's order about half
    # of them end on one-entry columns.
    from eie.hw.eie.variants import VARIANTS
    from eie.sw.cycle_model import predict_layer

    n_pe, n_in = 16, 256
    rng = np.random.default_rng(33)
    per_pe = rng.choice([1, 2, 3], size=n_in, p=[0.5, 0.3, 0.2])
    rows_per_pe = 4
    codes = np.zeros((n_pe * rows_per_pe, n_in), np.uint8)
    for c, k in enumerate(per_pe):                       # k entries in every PE's rows
        for pe in range(n_pe):
            rows = pe + n_pe * rng.choice(rows_per_pe, size=k, replace=False)
            codes[rows, c] = rng.integers(1, 16, size=k)
    layers = [QuantLayer(codes=codes, codebook=np.arange(16) * 5, w_frac=4, bias=None,
                         relu=True),
              QuantLayer(codes=np.ones((4, n_pe * rows_per_pe), np.uint8),
                         codebook=np.arange(16) * 5, w_frac=4, bias=None, relu=False)]

    def inputs(n):
        x = (rng.random((n, n_in)) < 0.6).astype(np.int16) * rng.integers(1, 100, (n, n_in))
        x[:, 0] = 1                   # (no LNZD round all zero in any order: checked below)
        return x.astype(np.int16)

    img = build_image(layers, n_pe=n_pe, balance=True, calibration=inputs(200))
    assert img.layers[0].input_order is not None
    f = VARIANTS["standard"].fields
    depths = dict(fifo_depth=f["fifo_depth"], ptr_queue_depth=f["ptr_queue_depth"])
    latency = predict_layer(np.array([[1]]), np.array([1]), 1, **depths).cycles - 1
    x = inputs(40)
    work = (x != 0) @ per_pe
    placed = x[:, img.input_order()]
    assert np.pad(placed != 0, ((0, 0), (0, -n_in % n_pe))).reshape(40, -1, n_pe).any(axis=2).all()
    got = [s[0].cycles for s in predict_counters(img, x, **depths)]
    assert got == [int(w) + latency - 1 for w in work]
    # the same inputs in the model's order: some end on a one-entry column
    last_single = [per_pe[np.flatnonzero(r)[-1]] == 1 for r in x]
    assert any(last_single)
