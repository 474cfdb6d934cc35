"""``eie verify`` (issue 19, the randomized regression): drawing is a pure function of the seed
and the configuration's number, the draws cover the ranges the issue asks for, configurations
of one design share its build, small real runs pass on Icarus (and Verilator, slow), and an
injected mismatch ends the command with exit 1 and a reproducer that reruns exactly that
configuration."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.sim import verify as v
from eie.sim import verify_bnn, verify_case, verify_eie
from eie.sim.runner import SimResult


def _same_case(a: verify_case.Case, b: verify_case.Case) -> bool:
    if a.info != b.info or not np.array_equal(a.x, b.x):
        return False
    if a.engine == "eie":
        return all(np.array_equal(p, q) for k in range(a.image.n_pe)
                   for l in range(len(a.image.layers))
                   for p, q in [(a.image.layer_pointers(l, k), b.image.layer_pointers(l, k))])
    if a.image.weight_bits != b.image.weight_bits or a.image.act_bits != b.image.act_bits:
        return False
    return all(np.array_equal(p, q) for p, q in zip(
        a.image.weights + a.image.thresholds + [m for m in a.image.masks if m is not None],
        b.image.weights + b.image.thresholds + [m for m in b.image.masks if m is not None]))


def test_the_cli_copies_of_the_defaults_are_the_libraries():
    """app/cmd_verify.py spells the defaults out (so `eie --help` imports no NumPy) and leaves
    them out of a reproducer: they must be eie.sim.verify's (the PE range eie.sim.verify_eie's),
    or a reproducer draws another pool."""
    from eie.app import cmd_verify as c

    assert c._ENGINES == v.ENGINES
    assert c._DEFAULT_DESIGNS == v.DEFAULT_DESIGNS
    assert (c._DEFAULT_MAX_PES, c._DEFAULT_MIN_PES, c._DEFAULT_CHUNK) == \
        (verify_eie.DEFAULT_MAX_PES, verify_eie.DEFAULT_MIN_PES, v.DEFAULT_CHUNK)


# ----------------------------------------------------------------------------- drawing

@pytest.mark.parametrize("engine", v.ENGINES)
def test_drawing_is_a_pure_function_of_seed_and_index(engine):
    pool = v.design_pool(engine, 5)
    again = v.design_pool(engine, 5)
    assert [d.to_json() for d in pool] == [d.to_json() for d in again]
    assert [d.to_json() for d in v.design_pool(engine, 6)] != [d.to_json() for d in pool]
    for i in (0, 3, 17):
        a = v.draw_case(engine, 5, i, pool)
        b = v.draw_case(engine, 5, i, again)
        assert a.design.index == i % len(pool)
        assert _same_case(a, b)
    # another seed, another configuration; another index, another configuration
    other = v.draw_case(engine, 6, 3, v.design_pool(engine, 6))
    assert not _same_case(v.draw_case(engine, 5, 3, pool), other)
    assert not _same_case(v.draw_case(engine, 5, 3, pool), v.draw_case(engine, 5, 13, pool))


def test_pe_strata_cover_the_range():
    assert verify_eie.pe_strata(10, 64) == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 7), (8, 11),
                                            (12, 18), (19, 27), (28, 42), (43, 64)]
    assert verify_eie.pe_strata(1, 1) == [(1, 1)]
    assert verify_eie.pe_strata(10, 3) == [(1, 1), (2, 2), (3, 3)]
    for k, m in ((1, 64), (7, 33), (12, 64), (3, 5)):
        s = verify_eie.pe_strata(k, m)
        assert s[0][0] == 1 and s[-1][1] == m and len(s) == min(k, m)
        assert all(a[1] + 1 == b[0] for a, b in zip(s, s[1:]))


def test_pe_strata_from_a_smallest_count():
    """``--min-pes``: the strata cut ``min_pes..max_pes`` instead; 1 is the default cut."""
    assert verify_eie.pe_strata(10, 64, 1) == verify_eie.pe_strata(10, 64)
    for k, lo, m in ((6, 17, 64), (10, 17, 64), (3, 5, 5), (4, 30, 33), (1, 64, 64)):
        s = verify_eie.pe_strata(k, m, lo)
        assert s[0][0] == lo and s[-1][1] == m and len(s) == min(k, m - lo + 1)
        assert all(a[1] + 1 == b[0] and a[0] <= a[1] for a, b in zip(s, s[1:]))
    # edges round(17 * (65 / 17) ** (j / 6)): 17, 21, 27, 33, 42, 52, 65
    assert verify_eie.pe_strata(6, 64, 17) == [(17, 20), (21, 26), (27, 32), (33, 41), (42, 51),
                                               (52, 64)]
    for lo, m in ((0, 8), (9, 8)):
        with pytest.raises(EieError, match="PE counts"):
            verify_eie.pe_strata(4, m, lo)
    pool = v.design_pool("eie", 1, 6, max_pes=64, min_pes=17)
    assert all(17 <= d.config.n_pe <= 64 for d in pool)
    assert len({d.config.n_pe for d in pool}) == 6
    # the other build parameters do not depend on the PE range
    base = v.design_pool("eie", 1, 6)
    assert [d.config.fifo_depth for d in pool] == [d.config.fifo_depth for d in base]


def test_eie_pools_cover_the_build_parameters():
    designs = [d for s in range(12) for d in v.design_pool("eie", s)]
    n_pe = {d.config.n_pe for d in designs}
    assert {1, 2, 3, 4} <= n_pe and max(n_pe) > 42 and max(n_pe) <= 64
    assert len({n for n in n_pe if n % 2 and n > 4}) >= 5          # odd counts
    assert {1, 2, 8, 32} <= {d.config.fifo_depth for d in designs}
    assert {2, 4, 32} <= {d.config.ptr_queue_depth for d in designs}
    assert {16, 32, 48} <= {d.config.acc_bits for d in designs}
    assert {1, 4} <= {d.config.max_layers for d in designs}
    assert max(d.config.n_pe for d in v.design_pool("eie", 0, max_pes=8)) <= 8


def test_eie_configurations_cover_the_issue_list():
    cases = [v.draw_case("eie", s, i, v.design_pool("eie", s)) for s in (0, 1) for i in range(60)]
    layers = [(c, l) for c in cases for l in c.info["layers"]]
    dens = [l["density"] for _, l in layers]
    assert min(dens) < 0.02 and max(dens) == 1.0
    assert any(l["n_out"] % c.info["n_pe"] for c, l in layers)        # n_out % N != 0
    assert any(l["n_out"] < c.info["n_pe"] for c, l in layers)        # PEs without rows
    assert any(l["empty_rows"] for _, l in layers) and any(l["empty_cols"] for _, l in layers)
    for key in ("bias", "relu", "uneven"):
        assert {l[key] for _, l in layers} == {True, False}, key
    assert {c.info["saturate"] for c in cases} == {True, False}
    assert {c.info["placement"] for c in cases} == {"balanced", "interleaved"}
    assert any(c.info["calibrated"] for c in cases)
    assert {len(c.info["layers"]) for c in cases} == {1, 2, 3, 4}
    assert min(c.info["input_density"] for c in cases) == 0.0
    # every image fits its design (draw_eie checks), and the models agree with each other
    from eie.sw.golden import golden_forward, golden_forward_layers

    for c in cases[:20]:
        np.testing.assert_array_equal(golden_forward(c.image, c.x).outputs,
                                      golden_forward_layers(c.reference, c.x, c.image.acc_bits))


def test_bnn_configurations_cover_the_issue_list():
    cases = [v.draw_case("bnn", s, i, v.design_pool("bnn", s)) for s in (0, 1) for i in range(64)]
    info = [c.info for c in cases]
    assert {len(i["shape"]) - 1 for i in info} == {1, 2, 3, 4}
    assert max(w for i in info for w in i["shape"]) > 64 and min(
        w for i in info for w in i["shape"]) <= 2
    folds = [(f, n_in) for i in info for f, n_in in zip(i["folding"], i["shape"][:-1])]
    assert any(f[0] == 1 for f, _ in folds) and any(f[0] == n for f, n in folds)
    assert any(f[0] > n for f, n in folds)                            # padded SIMD
    assert Counter(i["outputs"] for i in info).keys() == {"bits", "dots"}
    assert {i["source"] for i in info} == {"random", "integer-ge", "integer-gt", "float"}
    assert {i["preload"] for i in info} == {True, False}
    assert {i["backpressure"] > 0 for i in info} == {True, False}
    assert max(i["ii"] for i in info) <= verify_bnn.BNN_MAX_II
    cov = v.coverage("bnn", info)
    assert sum(n for _, n in cov["outputs"]) == len(info)


def test_bnn_pools_cover_w1_w2_and_mixed_designs():
    """The weight precision per layer is a build parameter spread over the pool: every default
    pool (16 designs) has all-W1, all-W2 and mixed designs, W2 designs of both output kinds,
    and precisions that are the design's own (one per layer, in the description and JSON)."""
    for seed in range(8):
        pool = v.design_pool("bnn", seed)
        kinds = Counter(d.precision for d in pool)
        assert set(kinds) == {"W1", "W2", "mixed"}, (seed, kinds)
        assert kinds["mixed"] >= 2 and kinds["W2"] >= 3, (seed, kinds)
        w2 = [d for d in pool if 2 in d.layer_bits]
        assert {d.last_thresholded for d in w2} == {True, False}, seed
        for d in pool:
            assert len(d.layer_bits) == len(d.folds) and set(d.layer_bits) <= {1, 2}
            assert d.describe().endswith(f"weights {d.weights}, activations {d.activations}")
            assert d.to_json()["weight_bits"] == list(d.layer_bits)
            if d.precision == "mixed":
                assert len(set(d.layer_bits)) == 2
    # thresholded W2 output layers and mixed designs of every depth above 1, over a few seeds
    designs = [d for s in range(8) for d in v.design_pool("bnn", s)]
    assert any(d.last_thresholded and d.layer_bits[-1] == 2 for d in designs)
    assert {len(d.folds) for d in designs if d.precision == "mixed"} == {2, 3, 4}


def test_bnn_precisions_leave_the_other_draws_as_they_were():
    """The precisions come after every other pool draw, on a knob of their own: the shape,
    folding, FIFOs and output kind of a design do not depend on them, and an all-W1 design's
    configurations are drawn exactly as for a pool without W2 (seed 1: the shapes of the pool
    before W2 layers were drawn, docs/eie-verification.md)."""
    import dataclasses

    pool = v.design_pool("bnn", 1)
    assert [d.shape for d in pool[:4]] == [[46, 1], [5, 21, 44, 18, 95], [39, 64, 22, 8],
                                           [87, 26, 76]]
    w1 = [d for d in pool if d.precision == "W1"]
    assert w1
    for d in w1:
        case = v.draw_case("bnn", 1, d.index, pool)
        assert case.image.weight_bits == [1] * len(d.folds) and not case.info["ternary_layers"]
        # as a W2 design, the same index draws ternary layers where the design says
        bits = tuple(2 if l == 0 else 1 for l in range(len(d.folds)))
        other = list(pool)
        other[d.index] = dataclasses.replace(d, weight_bits=bits)
        tern = v.draw_case("bnn", 1, d.index, other)
        assert tern.image.weight_bits == list(bits)
        assert tern.info["weights"] == ",".join(f"W{b}" for b in bits)


def test_bnn_w2_configurations_cover_the_ternary_cases():
    """Every source draws W2 layers where the design has them: integer weights -1/0/+1 with a
    random share of zeros (down to a few percent and up to none), neurons without a nonzero
    weight (K' = 0), thresholds beyond K' (never firing), thresholded W2 output layers, TWN
    float models whose golden model equals the float model."""
    from eie.sw.bnn.float_model import float_forward
    from eie.sw.bnn.golden import golden_forward

    cases = [v.draw_case("bnn", s, i, v.design_pool("bnn", s)) for s in (0, 1) for i in range(64)]
    w2 = [c for c in cases if 2 in c.design.layer_bits]
    for c in cases:
        assert c.image.weight_bits == list(c.design.layer_bits)
        assert c.info["weights"] == c.design.weights
        assert len(c.info["ternary_layers"]) == c.design.layer_bits.count(2)
    assert {c.info["source"] for c in w2} == {"random", "integer-ge", "integer-gt", "float"}
    assert {c.info["precision"] for c in cases} == {"W1", "W2", "mixed"}
    layers = [t for c in w2 for t in c.info["ternary_layers"]]
    dens = [t["nonzero"] for t in layers]
    assert min(dens) < 0.1 and max(dens) == 1.0 and any(0.3 < d < 0.7 for d in dens)
    assert any(t["zero_neurons"] for t in layers) and not all(t["zero_neurons"] for t in layers)
    thr = [t for t in layers if t["thresholded"]]
    assert any(t["beyond"] for t in thr) and not all(t["beyond"] for t in thr)
    assert any(c.design.last_thresholded and c.design.layer_bits[-1] == 2 for c in w2)
    for c in w2:
        for t in c.info["ternary_layers"]:
            mask = c.image.masks[t["layer"]]
            assert mask is not None and not np.any(c.image.weights[t["layer"]] & ~mask & 1)
            nz = mask.sum(axis=1)
            assert t["zero_neurons"] == int(np.sum(nz == 0))
            if t["thresholded"]:        # on the match count (k-bit-fed layers: the dot, below)
                th = c.image.thresholds[t["layer"]]
                f = c.image.folds[t["layer"]]
                lo, hi = (-f.threshold_bias, f.threshold_bias) if f.in_bits > 1 else (0, f.n_in)
                assert th.min() >= lo and th.max() <= hi + 1
        if c.reference is not None:             # TWN float layers, compiled
            assert 2 in c.reference.layer_bits
            np.testing.assert_array_equal(golden_forward(c.image, c.x),
                                          float_forward(c.reference, c.x))
    cov = v.coverage("bnn", [c.info for c in cases])
    assert dict(cov["weights (configurations)"]).keys() == {"all W1", "all W2", "mixed"}
    assert all(n > 0 for _, n in cov["weights (configurations)"])
    assert sum(n for _, n in cov["weights per layer"]) == sum(len(c.design.folds) for c in cases)
    assert sum(n for _, n in cov["W2 layers: nonzero weights"]) == len(layers)
    assert dict(cov["output layer"])["W2 bits"] > 0


def test_bnn_pools_cover_the_activation_precisions():
    """The activation precision per layer is a build parameter spread over the pool: every
    default pool (16 designs) has all-A1 designs and designs with A2, A3 and A4 layers and
    mixed ones; the output layer is A1; the folds carry the precisions, so the analytic II
    counts a k-bit-fed layer's planes (and stays within BNN_MAX_II); the description and the
    JSON name them."""
    from eie.hw.bnn.folding import analytic_ii

    for seed in range(8):
        pool = v.design_pool("bnn", seed)
        kinds = Counter(d.activation for d in pool)
        assert set(kinds) == {"A1", "A2", "A3", "A4", "mixed"}, (seed, kinds)
        for d in pool:
            acts = d.layer_acts
            assert len(acts) == len(d.folds) and acts[-1] == 1 and set(acts) <= {1, 2, 3, 4}
            assert [f.out_bits for f in d.folds] == list(acts)
            assert [f.in_bits for f in d.folds] == [1, *acts[:-1]]
            assert d.ii == analytic_ii(d.folds) <= verify_bnn.BNN_MAX_II
            assert d.describe().endswith(f"activations {d.activations}")
            assert d.to_json()["act_bits"] == list(acts)
            assert d.quantized == (d.activation != "A1")
            if len(d.folds) == 1:
                assert d.activation == "A1"
            if d.activation == "mixed":
                assert len(set(acts[:-1])) >= 2 and max(acts) > 1
    designs = [d for s in range(8) for d in v.design_pool("bnn", s)]
    kbit = [d for d in designs if d.quantized]
    assert {(d.precision, d.activation) for d in kbit} >= {
        (w, a) for w in ("W1", "W2", "mixed") for a in ("A2", "A3", "A4", "mixed")}
    assert {d.last_thresholded for d in kbit} == {True, False}
    # "mixed" needs two hidden layers; a two-layer design drawn "mixed" gets one of A2..A4
    assert {len(d.folds) for d in designs if d.activation == "mixed"} == {3, 4}


def test_bnn_activations_leave_the_a1_draws_as_they_were():
    """The activation precisions come from a knob and a stream of their own: a design's shape,
    FIFOs, output kind and weight precisions do not depend on them (and its folding only when
    its k-bit planes had to be widened into BNN_MAX_II), and an all-A1 design's configurations
    are drawn exactly as before k-bit layers were drawn (seed 1: the pins below are those of
    the dry run of 0097a7f)."""
    import dataclasses

    from eie.hw.bnn.folding import with_act_bits

    pool = v.design_pool("bnn", 1)
    assert [d.shape for d in pool[:4]] == [[46, 1], [5, 21, 44, 18, 95], [39, 64, 22, 8],
                                           [87, 26, 76]]
    assert [d.weights for d in pool[:4]] == ["W2", "W1,W1,W1,W1", "W2,W2,W1", "W2,W2"]
    before = {0: ("integer-ge", 11, 0.528, 582829147), 4: ("random", 15, 0.386, 1671732787),
              11: ("integer-gt", 6, 0.49, 1236527292), 27: ("integer-gt", 7, 0.563, 1194468919)}
    for i, pin in before.items():
        case = v.draw_case("bnn", 1, i, pool)
        assert case.design.activation == "A1" and not case.info["kbit_layers"]
        assert (case.info["source"], case.info["batch"], case.info["input_ones"],
                case.info["seed"]) == pin
    # a k-bit design drawn as A1 (same shape and folding) draws A1 layers; and back
    d = next(d for d in pool if d.quantized and d.ii <= 24)
    a1 = dataclasses.replace(d, act_bits=(), folds=tuple(with_act_bits(d.folds, None)))
    other = list(pool)
    other[d.index] = a1
    case = v.draw_case("bnn", 1, d.index, other)
    assert case.image.act_bits == [1] * len(d.folds) and case.info["activations"] == a1.activations
    k = v.draw_case("bnn", 1, d.index, pool)
    assert k.image.act_bits == list(d.layer_acts) and k.info["kbit_layers"]
    assert _same_case(k, v.draw_case("bnn", 1, d.index, v.design_pool("bnn", 1)))


def test_bnn_k_bit_configurations_cover_every_source():
    """Every source draws k-bit layers where the design has them: multi-thresholds of the right
    shape within the accumulator's range, sorted in random images and in any order in integer
    ones, two equal, beyond the reachable values and at its lowest; DoReFa float models whose
    golden model equals the float model; inputs reaching every output level of most k-bit
    layers; the coverage counts them."""
    from eie.sw.bnn.float_model import float_forward
    from eie.sw.bnn.golden import golden_forward

    cases = [v.draw_case("bnn", s, i, v.design_pool("bnn", s)) for s in (0, 1) for i in range(64)]
    kbit = [c for c in cases if c.design.quantized]
    assert {c.info["source"] for c in kbit} == {"random", "integer-ge", "integer-gt", "float"}
    unsorted = 0
    for c in cases:
        assert c.image.act_bits == list(c.design.layer_acts)
        assert c.info["activations"] == c.design.activations
        assert len(c.info["kbit_layers"]) == sum(f.in_bits > 1 or f.out_bits > 1
                                                 for f in c.design.folds)
    for c in kbit:
        for l, f in enumerate(c.image.folds):
            if l >= len(c.image.thresholds):
                continue
            t = np.asarray(c.image.thresholds[l])
            assert t.shape == ((f.n_out,) if f.out_bits == 1 else (f.n_out, f.n_thresholds))
            lo = -f.threshold_bias if f.in_bits > 1 else 0
            hi = f.threshold_bias if f.in_bits > 1 else f.n_in
            assert t.min() >= lo and t.max() <= hi + 1
            if t.ndim == 2:
                ordered = np.all(np.diff(t, axis=1) >= 0)
                assert ordered or c.info["source"].startswith("integer")
                unsorted += not ordered
        if c.reference is not None:             # DoReFa layers, compiled
            assert c.reference.layer_acts == list(c.design.layer_acts)
            np.testing.assert_array_equal(golden_forward(c.image, c.x),
                                          float_forward(c.reference, c.x))
    assert unsorted > 0
    layers = [t for c in kbit for t in c.info["kbit_layers"]]
    thr = [t for t in layers if t["thresholded"]]
    for key in ("equal", "beyond", "always"):
        assert any(t[key] for t in thr) and not all(t[key] for t in thr), key
    reached = [t["levels_reached"] == t["levels"] for t in layers if "levels" in t]
    assert sum(reached) > 0.6 * len(reached)
    assert {t["out_bits"] for t in layers} == {1, 2, 3, 4}
    cov = v.coverage("bnn", [c.info for c in cases])
    assert all(n > 0 for _, n in cov["activations (configurations)"])
    assert sum(n for _, n in cov["activations (designs)"]) == len({c.design.index
                                                                   for c in cases if c.index < 64})
    assert sum(n for _, n in cov["activations per layer"]) == sum(len(c.design.folds)
                                                                   for c in cases)
    per_layer = dict(cov["weights and activations per layer"])
    assert all(per_layer[f"W{w}A{a}"] > 0 for w in (1, 2) for a in (1, 2, 3, 4) if (w, a) != (1, 4))
    assert sum(n for _, n in cov["k-bit outputs: levels reached (layers)"]) == len(reached)
    outs = dict(cov["output layer input"])
    assert sum(outs.values()) == len(cases) and outs["A1 bits"] > 0 and outs["A1 dots"] > 0
    assert any(outs[f"A{a} bits"] for a in (2, 3, 4)) and any(outs[f"A{a} dots"] for a in (2, 3, 4))


def test_coverage_histograms_count_every_configuration():
    cases = [v.draw_case("eie", 3, i, v.design_pool("eie", 3)) for i in range(30)]
    cov = v.coverage("eie", [c.info for c in cases])
    for name in ("PE count (configurations)", "FIFO depth", "layers a network",
                 "input density (configurations)", "placement"):
        assert sum(n for _, n in cov[name]) == 30, name
    n_layers = sum(len(c.info["layers"]) for c in cases)
    assert sum(n for _, n in cov["weight density (layers)"]) == n_layers
    assert sum(n for _, n in cov["layer width (n_in, n_out)"]) == 30 + n_layers


# ----------------------------------------------------------------------------- grouping

#: The simulator name the tests with a fake ``_run_jobs`` pass (nothing runs)
FAKE = "amaranth"


def _fake_runs(monkeypatch, calls, corrupt=()):
    """Replace the simulator: every job gets a result the checks accept (counted in
    ``calls`` by design); configurations in ``corrupt`` get a failing one."""
    def run_jobs(engine, design, cases, **kw):
        calls.append((design.index, [c.index for c in cases]))
        jobs = [c.job() for c in cases]
        for c, j in zip(cases, jobs):
            j.result = SimResult(None, None, build_seconds=1.0 if c is cases[0] else 0.0)
        return jobs

    monkeypatch.setattr(v, "_run_jobs", run_jobs)
    monkeypatch.setattr(v, "check_case",
                        lambda case, result: "injected" if case.index in corrupt else None)


def test_configurations_of_a_design_share_its_build(monkeypatch):
    calls = []
    _fake_runs(monkeypatch, calls)
    report = v.verify("eie", sim=FAKE, seed=4, indices=range(23), designs=5, chunk=3)
    assert len(report.results) == 23 and not report.failures and report.builds == 5
    by_design: dict[int, list[int]] = {}
    for d, idx in calls:
        assert len(idx) <= 3 and all(i % 5 == d for i in idx)
        by_design.setdefault(d, []).extend(idx)
    assert {d: sorted(i) for d, i in by_design.items()} == {
        d: [i for i in range(23) if i % 5 == d] for d in range(5)}
    # one design after the other (each built once), the smallest first
    order = list(dict.fromkeys(d for d, _ in calls))
    pes = [report.designs[d].config.n_pe for d in order]
    assert pes == sorted(pes)
    assert [d for d, _ in calls] == sorted((d for d, _ in calls), key=order.index)


def test_a_failure_stops_the_run_unless_keep_going(monkeypatch):
    calls = []
    _fake_runs(monkeypatch, calls, corrupt={7})
    report = v.verify("bnn", sim=FAKE, seed=4, indices=range(40), designs=4, chunk=2)
    assert report.stopped and [r.index for r in report.failures] == [7]
    assert len(report.results) < 40
    calls.clear()
    report = v.verify("bnn", sim=FAKE, seed=4, indices=range(40), designs=4, chunk=2,
                      keep_going=True)
    assert not report.stopped and len(report.results) == 40
    assert [r.message for r in report.failures] == ["injected"]


def test_a_failed_simulation_is_pinned_on_its_configuration(monkeypatch):
    """A simulator error in a chunk: the chunk runs again one configuration at a time."""
    calls = []

    def run_jobs(engine, design, cases, **kw):
        calls.append([c.index for c in cases])
        if any(c.index == 6 for c in cases):
            raise RuntimeError("the icarus testbench failed (hang)")
        jobs = [c.job() for c in cases]
        for j in jobs:
            j.result = SimResult(None, None)
        return jobs

    monkeypatch.setattr(v, "_run_jobs", run_jobs)
    monkeypatch.setattr(v, "check_case", lambda case, result: None)
    report = v.verify("eie", sim=FAKE, seed=4, indices=range(12), designs=2, chunk=4,
                      keep_going=True)
    assert [r.index for r in report.failures] == [6]
    assert "simulation failed" in report.failures[0].message
    assert [0, 2, 4, 6] in calls and [6] in calls and [4] in calls
    assert len(report.results) == 12


# ----------------------------------------------------------------------------- the command

EIE_SMALL = ["--engine", "eie", "--seed", "2", "--designs", "1", "--max-pes", "2"]
BNN_SMALL = ["--engine", "bnn", "--seed", "2", "--designs", "1"]
#: A small k-bit design (seed 23's design 0: shape 33,2,15, weights W2,W1, activations A2,A1;
#: configuration 1 a random image)
BNN_KBIT = ["--engine", "bnn", "--seed", "23", "--designs", "1"]


def test_min_pes_draws_only_big_designs_and_joins_the_reproducer(cli, tmp_path):
    """``--min-pes 17``: every design of the pool has more than 16 PEs (the dry run prints
    them), and the option is part of the repeat command and of a reproducer."""
    import argparse

    from eie.app.cmd_verify import reproducer

    out = tmp_path / "d.json"
    r = cli(["verify", "--engine", "eie", "--configs", "6", "--designs", "6", "--min-pes", "17",
             "--seed", "1", "--dry-run", "--json", out])
    assert r.code == 0, r.out + r.err
    assert "6 designs of 17..64 PEs" in r.out
    pes = [int(line.split(": ")[1].split(" PE")[0]) for line in r.out.splitlines()
           if line.startswith("  design ")]
    assert len(pes) == 6 and min(pes) >= 17 and max(pes) <= 64
    doc = json.loads(out.read_text())
    assert "--min-pes 17" in doc["command"]
    assert sorted(c["n_pe"] for c in doc["configs"]) == sorted(pes)
    args = argparse.Namespace(engine="eie", sim=FAKE, seed=1, designs=6, max_pes=None,
                              min_pes=17, load=None, build_dir=None)
    assert reproducer(args, 4).endswith("--only 4 --designs 6 --min-pes 17")
    args.min_pes = 1
    assert "--min-pes" not in reproducer(args, 4)


@pytest.mark.rtl
def test_small_icarus_run_passes(cli, tmp_path):
    """(The BNN's small real run is the injection test's: its other configurations pass.)"""
    out = tmp_path / "v.json"
    r = cli(["verify", *EIE_SMALL, "--configs", "2", "--sim", "icarus", "--json", out,
             "--no-progress"])
    assert r.code == 0, r.out + r.err
    assert "all 2 configurations equal the golden and cycle models" in r.out
    assert "coverage:" in r.out
    doc = json.loads(out.read_text())
    assert doc["summary"]["passed"] == 2 and doc["summary"]["builds"] == 1
    assert [c["index"] for c in doc["configs"]] == [0, 1]
    assert doc["command"].startswith("eie verify --engine ")
    assert sum(doc["coverage"]["samples a configuration"].values()) == 2


@pytest.mark.rtl
@pytest.mark.slow
def test_small_verilator_run_passes(cli, tmp_path):
    r = cli(["verify", *EIE_SMALL, "--configs", "4", "--sim", "verilator", "--no-progress"])
    assert r.code == 0, r.out + r.err
    assert "all 4 configurations equal" in r.out


@pytest.mark.rtl
@pytest.mark.parametrize("opts", [EIE_SMALL, BNN_SMALL, BNN_KBIT], ids=["eie", "bnn", "bnn-a2"])
def test_injected_mismatch_exits_1_with_a_reproducer(opts, cli, tmp_path, monkeypatch):
    """Configuration 1's first output corrupted (and, EIE, configuration 2's first counter; BNN:
    on a W1A1 design and on a k-bit one): exit 1, the failures named, the first one's reproducer printed and its files saved; the
    reproducer, run without the corruption, runs that configuration alone and passes."""
    real = v._run_jobs
    engine = opts[1]

    def corrupt(engine, design, cases, **kw):
        jobs = real(engine, design, cases, **kw)
        for c, j in zip(cases, jobs):
            if c.index == 1:
                j.result.outputs[0, 0] ^= 1
            elif c.index == 2 and engine == "eie":
                j.result.counters[0][0]["cycles"] += 1
        return jobs

    monkeypatch.setattr(v, "_run_jobs", corrupt)
    keep = tmp_path / "keep"
    out = tmp_path / "v.json"
    r = cli(["verify", *opts, "--configs", "3", "--sim", "icarus", "--keep", keep,
             "--no-progress", "--keep-going", "--json", out])
    assert r.code == 1, r.out + r.err
    line = next(l for l in r.err.splitlines() if l.startswith("reproduce: "))
    repro = line.split(": ", 1)[1].split()
    assert repro[:2] == ["eie", "verify"] and "--only" in repro
    seed = opts[opts.index("--seed") + 1]
    assert repro[repro.index("--only") + 1] == "1" and repro[repro.index("--seed") + 1] == seed
    assert "configuration 1 (design 0): outputs differ from the golden model" in r.err
    failed = 2 if engine == "eie" else 1
    assert f"configurations  3 run of 3, {3 - failed} passed, {failed} failed" in r.out
    if engine == "eie":
        assert "FAIL configuration 2 (design 0): sample 0, layer 0: counters differ from the " \
               "cycle model in cycles" in r.out
    saved = keep / f"{engine}-seed{seed}-config1"
    assert (saved / "x.npy").exists() and (saved / "image" / "manifest.json").exists()
    assert (saved / "reproduce.txt").read_text().splitlines()[0] == " ".join(repro)
    doc = json.loads(out.read_text())
    if opts is BNN_KBIT:            # the mismatch was in a k-bit layer's network
        assert doc["pool"][0]["activations"] == "A2,A1" and doc["configs"][1]["source"] == "random"
    first = doc["failures"][0]
    assert first["index"] == 1 and first["reproducer"] == " ".join(repro)
    assert first["directory"] == str(saved)
    assert [c["passed"] for c in doc["configs"]] == [True, False, engine == "bnn"]
    # the reproducer, without the corruption, reruns the same configuration and passes
    monkeypatch.setattr(v, "_run_jobs", real)
    r = cli(repro[1:] + ["--no-progress"])
    assert r.code == 0, r.out + r.err
    assert f"{engine.upper()} configuration 1, seed {seed}" in r.out


@pytest.mark.rtl
def test_saved_eie_configuration_runs_with_eie_run(cli, tmp_path):
    """The saved image and inputs run with the printed ``eie run`` command on the same design."""
    case = v.draw_case("eie", 2, 1, v.design_pool("eie", 2, 1, 2))
    files = v.save_case(case, tmp_path / "c")
    from eie.app.cmd_verify import _eie_run_command

    cmd = _eie_run_command(case, files, "icarus").split()
    r = cli(cmd[1:] + ["--no-progress"])
    assert r.code == 0, r.out + r.err
    assert "equal to the golden model" in r.out
    stats = json.loads((tmp_path / "c" / "stats.json").read_text())
    assert stats["config"] == case.design.config.to_json()


def test_saved_case_directory_is_replaced_only_when_it_is_a_case(tmp_path, monkeypatch):
    """``--keep``'s writer: a case directory lists its files in case.json; a later save replaces
    such a directory whole (no file of the earlier case left), but refuses a directory holding
    anything else (a user's file, or a file the case does not list) and leaves it as it was; a
    save that fails midway leaves the earlier case, nothing half-written."""
    from eie.common.errors import EieError

    pool = v.design_pool("eie", 2, 1, 2)
    first, second = v.draw_case("eie", 2, 1, pool), v.draw_case("eie", 2, 0, pool)
    d = tmp_path / "c"
    files = v.save_case(first, d, notes={"reproduce.txt": "eie verify --only 1\n"})
    assert files == v.case_paths(d)
    desc = json.loads((d / "case.json").read_text())
    on_disk = sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
    assert sorted(desc["files"] + ["case.json"]) == on_disk
    assert {"x.npy", "reproduce.txt", "image/manifest.json"} <= set(desc["files"])
    np.testing.assert_array_equal(np.load(d / "x.npy"), first.x)
    # a case replaces a case: the note of the first is gone with it
    v.save_case(second, d)
    assert json.loads((d / "case.json").read_text())["index"] == second.index
    assert not (d / "reproduce.txt").exists()
    np.testing.assert_array_equal(np.load(d / "x.npy"), second.x)
    # a failure midway leaves the earlier case
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(v.np, "save", broken)
        with pytest.raises(EieError, match="No space left"):
            v.save_case(first, d)
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]      # no temporary left
    # a file the case does not list: refused, everything left as it was
    (d / "y.npy").write_bytes(b"the user's run")
    with pytest.raises(EieError, match="does not list.*y.npy.*left alone"):
        v.save_case(first, d)
    assert (d / "y.npy").read_bytes() == b"the user's run"
    assert json.loads((d / "case.json").read_text())["index"] == second.index
    # a user's directory: refused, untouched
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("do not delete")
    with pytest.raises(EieError, match="not a failing case saved by eie verify.*left alone"):
        v.save_case(first, mine)
    assert sorted(p.name for p in mine.iterdir()) == ["chapter1.tex"]
    assert (mine / "chapter1.tex").read_text() == "do not delete"


def _w2_picks(seed: int) -> list[int]:
    """Configurations of seed ``seed`` on small W2 and mixed designs: one per source, a
    thresholded W2 output layer, a mixed design."""
    pool = v.design_pool("bnn", seed)
    picks: dict[str, int] = {}
    for i in range(96):
        d = pool[i % len(pool)]
        if 2 not in d.layer_bits or d.cost > 800:
            continue
        c = v.draw_case("bnn", seed, i, pool)
        for key in (c.info["source"], "mixed" if d.precision == "mixed" else None,
                    "w2-bits" if d.last_thresholded and d.layer_bits[-1] == 2 else None):
            if key is not None:
                picks.setdefault(key, i)
    assert {"random", "integer-ge", "integer-gt", "float", "mixed", "w2-bits"} <= picks.keys()
    return sorted(set(picks.values()))


@pytest.mark.rtl
def test_w2_configurations_pass_on_the_amaranth_simulator(cli, tmp_path):
    """W2 and mixed configurations of every source (and a thresholded W2 output layer) run
    through ``eie verify --sim amaranth`` equal to the golden model (and the float model); the
    JSON carries the precisions."""
    picks = _w2_picks(1)
    out = tmp_path / "w2.json"
    r = cli(["verify", "--engine", "bnn", "--seed", "1", "--sim", "amaranth", "--only",
             ",".join(map(str, picks)), "--no-progress", "--json", out])
    assert r.code == 0, r.out + r.err
    assert f"all {len(picks)} configurations equal" in r.out
    assert "weights (configurations)" in r.out and ", weights W" in r.out
    doc = json.loads(out.read_text())
    assert doc["summary"]["passed"] == len(picks)
    assert all("W2" in c["weights"] for c in doc["configs"])
    assert {c["source"] for c in doc["configs"]} == {"random", "integer-ge", "integer-gt",
                                                     "float"}
    pool = {d["index"]: d for d in doc["pool"]}
    assert all(pool[c["design"]]["weights"] == c["weights"] for c in doc["configs"])


def test_bnn_ii_check_allows_a_slow_host_with_one_output_place():
    """``II_MIN`` must equal the analytic II on a preloaded stream without pauses, unless a
    one-result output FIFO was full when a result came (the host, not the core, was slow)."""
    import dataclasses

    from eie.sw.bnn.golden import golden_forward

    pool = v.design_pool("bnn", 1)
    case = next(c for c in (v.draw_case("bnn", 1, i, pool) for i in range(64))
                if c.x.shape[0] >= 2 and c.design.in_depth >= 2)
    case.job_options = {**case.job_options, "preload": True, "backpressure": 0.0}
    n, ii = case.x.shape[0], case.design.ii

    def result(ii_min, stall):
        return SimResult(golden_forward(case.image, case.x),
                         {"samples_in": n, "samples_out": n, "ii_min": ii_min, "stall": stall})

    for out_depth, stall, ok in ((1, 0, False), (1, 5, True), (2, 5, False)):
        case.design = dataclasses.replace(case.design, out_depth=out_depth)
        msg = v.check_case(case, result(ii + 2, stall))
        assert (msg is None) == ok, (out_depth, stall, msg)
        assert v.check_case(case, result(ii, stall)) is None
    bad = result(ii, 0)
    bad.counters["samples_out"] = n - 1
    assert "samples streamed" in v.check_case(case, bad)


def test_only_names_each_configuration_once():
    """--only 2,2 ran and counted configuration 2 twice (and the dry run counted it twice)."""
    from eie.app.cmd_verify import parse_only

    assert parse_only("3, 17") == [3, 17]
    with pytest.raises(EieError, match="names configuration 2 twice"):
        parse_only("2,2")
    with pytest.raises(EieError, match="names configuration 17 twice"):
        parse_only("17,3,17")


def test_one_configuration_and_one_design_are_singular(cli):
    r = cli(["verify", "--configs", "1", "--designs", "1", "--max-pes", "2", "--dry-run"])
    assert r.code == 0, r.err
    assert "EIE 1 configuration, seed 0" in r.out and "1 design of 1..2 PEs" in r.out
    assert ": 1 configuration\n" in r.out
    assert "1 configurations" not in r.out and "1 designs" not in r.out
    r = cli(["verify", "--configs", "3", "--designs", "2", "--max-pes", "2", "--dry-run"])
    assert "EIE 3 configurations" in r.out and "2 designs of" in r.out


def test_no_progress_bar_into_a_file_or_pipe(monkeypatch, cli):
    """`eie verify ... 2>v.err`: the bar is drawn on a terminal only (as eie run's), so the log
    holds no carriage-return redraws; the results are still printed."""
    _fake_runs(monkeypatch, [])
    r = cli(["verify", "--engine", "eie", "--configs", "3", "--designs", "1", "--max-pes", "2",
             "--sim", FAKE])
    assert r.code == 0, r.err
    assert r.err == "" and "\r" not in r.out
    assert "all 3 configurations equal the golden and cycle models" in r.out


def test_the_progress_bar_on_a_terminal(monkeypatch, tmp_path):
    import io
    import sys

    from eie.app.cli import main

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    _fake_runs(monkeypatch, [])
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["verify", "--engine", "eie", "--configs", "3", "--designs", "1", "--max-pes",
                 "2", "--sim", FAKE, "--build-dir", str(tmp_path)]) == 0
    assert "verify eie (amaranth)" in term.getvalue()
