"""The cycle model against the RTL's counters (Amaranth simulator) on random configurations,
and its own invariants against the golden model's work statistics on larger layers."""

import numpy as np
import pytest

from eie.hw.eie.config import EIEConfig
from eie.sim.eie_amaranth import run_image_amaranth
from eie.sw.cycle_model import predict_counters
from eie.sw.encode import QuantLayer, build_image
from eie.sw.golden import golden_forward


def random_case(seed, pes=(1, 2, 3, 4, 5, 8)):
    rng = np.random.default_rng(seed)
    n = int(rng.choice(pes))
    fifo = int(rng.choice([1, 2, 3, 8]))
    sizes = [int(v) for v in rng.integers(4, 30, int(rng.integers(2, 4)))]
    wd = float(rng.choice([0.05, 0.2, 0.5, 1.0]))
    ad = float(rng.choice([0.1, 0.5, 1.0]))
    layers = []
    for i in range(len(sizes) - 1):
        codes = rng.integers(1, 16, (sizes[i + 1], sizes[i])) * (rng.random((sizes[i + 1], sizes[i])) < wd)
        cb = np.concatenate([[0], rng.integers(-300, 301, 15)]).astype(np.int16)
        bias = rng.integers(-999, 1000, sizes[i + 1]).astype(np.int16) if rng.integers(2) else None
        layers.append(QuantLayer(codes=codes.astype(np.uint8), codebook=cb, w_frac=7, bias=bias,
                                 relu=i < len(sizes) - 2))
    img = build_image(layers, n)
    x = (rng.integers(-600, 601, (1, sizes[0])) * (rng.random((1, sizes[0])) < ad)).astype(np.int16)
    return img, x, fifo


def compare(seeds, **kw):
    rows = []
    for seed in seeds:
        img, x, fifo = random_case(seed, **kw)
        r = run_image_amaranth(EIEConfig.for_image(img, fifo_depth=fifo), img, x)
        np.testing.assert_array_equal(r.outputs, golden_forward(img, x).outputs)
        p = predict_counters(img, x, fifo_depth=fifo)
        for l in range(len(img.layers)):
            rows.append((seed, l, r.counters[0][l], p[0][l].counters()))
    return rows


def check(rows):
    """Every counter of every layer run equal, no tolerance (docs/eie-hardware.md: the cycle
    model equals the RTL's counters)."""
    differ = [(seed, layer, rtl, model) for seed, layer, rtl, model in rows if rtl != model]
    assert not differ, f"{len(differ)} of {len(rows)} layer runs differ, first {differ[0]}"


@pytest.mark.rtl
def test_model_matches_rtl_counters():
    check(compare(range(6)))


@pytest.mark.rtl
@pytest.mark.slow
def test_model_matches_rtl_counters_many():
    check(compare(range(100, 160)))


@pytest.mark.rtl
@pytest.mark.slow
def test_model_matches_rtl_counters_16_pes():
    check(compare(range(200, 210), pes=(16,)))


@pytest.mark.parametrize("n_pe,fifo", [(4, 8), (16, 8), (16, 1)])
def test_model_invariants_on_256x256(n_pe, fifo):
    rng = np.random.default_rng(n_pe + fifo)
    codes = (rng.integers(1, 16, (256, 256)) * (rng.random((256, 256)) < 0.1)).astype(np.uint8)
    cb = np.concatenate([[0], rng.integers(-300, 301, 15)]).astype(np.int16)
    img = build_image([QuantLayer(codes=codes, codebook=cb, w_frac=8, bias=None, relu=False)], n_pe)
    x = (rng.integers(1, 500, (2, 256)) * (rng.random((2, 256)) < 0.3)).astype(np.int16)
    g = golden_forward(img, x)
    p = predict_counters(img, x, fifo_depth=fifo)
    for s in range(2):
        st, pr = g.stats[0], p[s][0]
        assert pr.broadcasts == st.nonzero_inputs[s]
        assert pr.busy == [int(v) for v in st.work_per_pe[s]]
        # every PE is busy at most once a cycle; nothing finishes before its busiest PE
        assert pr.cycles >= max(st.work_per_pe[s].max(), st.nonzero_inputs[s], st.bound[s])
        if fifo == 1:
            # a one-entry FIFO holds the broadcast back while one is in flight (at most one in
            # three cycles): slower than with 8 entries on the same input
            assert pr.cycles > predict_counters(img, x[s], fifo_depth=8)[0][0].cycles
            assert pr.bcast_cycles >= 3 * (pr.broadcasts - 1)


def test_batch_model_equals_per_sample_model():
    from eie.sw.cycle_model import predict_layer, predict_layer_batch

    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = int(rng.choice([1, 3, 4, 16]))
        n_in, n_out = int(rng.integers(1, 50)), int(rng.integers(1, 50))
        cols = rng.binomial(-(-n_out // n) + 2, float(rng.choice([0.0, 0.2, 1.0])), (n_in, n))
        X = (rng.random((3, n_in)) < float(rng.choice([0.0, 0.3, 1.0]))).astype(np.int16)
        for fifo, q in [(1, 2), (8, 4)]:
            batch = predict_layer_batch(cols, X, n_out, fifo_depth=fifo, ptr_queue_depth=q)
            assert batch == [predict_layer(cols, X[s], n_out, fifo_depth=fifo, ptr_queue_depth=q)
                             for s in range(3)]


@pytest.mark.parametrize("variant", ["paper", "standard", "deep"])
def test_column_balanced_layer_costs_its_work_and_one_latency(variant):
    """A layer whose every column holds the same number of entries (at least one) in every PE,
    as load-balance-aware pruning per column leaves it, takes exactly its work plus the latency
    of a layer (the cycles of a one-entry layer, less its one cycle of work; one cycle less
    when the layer's last entry is not its column's first) on every input with no round of
    the LNZD all zero: no stall, no idle PE. That is the ceiling
    docs/performance.md ("The ceiling the fixed cost sets") measures the MLP's input layer at,
    and why no placement lifts it."""
    from eie.hw.eie.variants import VARIANTS
    from eie.sw.cycle_model import predict_layer, predict_layer_batch

    f = VARIANTS[variant].fields
    depths = dict(fifo_depth=f["fifo_depth"], ptr_queue_depth=f["ptr_queue_depth"])
    latency = predict_layer(np.array([[1]]), np.array([1]), 1, **depths).cycles - 1
    assert latency > 0
    # (PEs, inputs, input density): dense enough that no round of the LNZD is all zero (an
    # empty round costs the LNZD a cycle; the MLP's input layer at 64 PEs has about 12 nonzero
    # pixels a round)
    kinds = set()
    for seed, (n_pe, n_in, density) in enumerate([(4, 300, 1.0), (16, 512, 0.5), (64, 768, 0.2),
                                                  (64, 784, 1.0)]):
        rng = np.random.default_rng(seed)
        per_pe = rng.choice([1, 2, 3], size=n_in, p=[0.5, 0.3, 0.2])
        cols = np.repeat(per_pe[:, None], n_pe, axis=1)
        X = (rng.random((10, n_in)) < density).astype(np.int16)
        assert np.pad(X != 0, ((0, 0), (0, -n_in % n_pe))).reshape(10, -1, n_pe).any(axis=2).all()
        work = (X != 0) @ per_pe
        cycles = [p.cycles for p in predict_layer_batch(cols, X, 4 * n_pe, **depths,
                                                        last_layer=False)]
        # a cycle less when the layer's last entry is not its column's first (the last nonzero
        # column holds more than one entry a PE): DRAIN ends with it in the entry stage
        last_many = [per_pe[np.flatnonzero(x)[-1]] > 1 for x in X]
        assert cycles == [int(w) + latency - int(m) for w, m in zip(work, last_many)]
        kinds.update(last_many)
        # the run's last layer drains the entry stage: its work plus the latency, always
        last_cycles = [p.cycles for p in predict_layer_batch(cols, X, 4 * n_pe, **depths,
                                                             last_layer=True)]
        assert last_cycles == [int(w) + latency for w in work]
    assert kinds == {False, True}               # both kinds of last entry met
