"""The BNN top as Verilog on Verilator and Icarus (cocotb), against the golden model.

Each test builds one core and runs several jobs on it: images of the same topology loaded at
run time through the host bus, samples streamed back to back (input FIFO preloaded) or with
random pauses of the host before it reads results (back-pressure: the output FIFO fills and the
network stalls)."""

from __future__ import annotations

import numpy as np
import pytest

from eie.sim.bnn_run import BnnJob, run_rtl
from eie.sw.bnn.compile import compile_model
from eie.sw.bnn.float_model import float_forward, random_model
from eie.hw.bnn.folding import LayerFold, analytic_ii, make_folding
from eie.sw.bnn.golden import golden_forward
from eie.sw.bnn.image import random_image

pytestmark = pytest.mark.rtl


def _random_topology(rng: np.random.Generator) -> tuple[list[int], list[LayerFold]]:
    depth = int(rng.integers(2, 5))
    shape = [int(v) for v in rng.integers(2, 48, size=depth + 1)]
    fold = []
    for n_in, n_out in zip(shape[:-1], shape[1:]):
        simd = int(rng.integers(1, n_in + 1))
        pe = int(rng.integers(1, n_out + 1))
        fold.append((simd, pe))
    # keep the simulations short: cap the cycles per sample
    folds = make_folding(shape, fold)
    while analytic_ii(folds) > 120:
        k = max(range(depth), key=lambda i: folds[i].ii)
        f = folds[k]
        fold[k] = (min(f.n_in, f.simd * 2), min(f.n_out, f.pe + 1))
        folds = make_folding(shape, fold)
    return shape, folds


def _check(simulator: str, shape, folds, build_dir, seed: int, n: int = 24,
           in_depth: int = 4, out_depth: int = 2):
    rng = np.random.default_rng(seed)
    model = random_model(shape, rng)
    compiled = compile_model(model, [(f.simd, f.pe) for f in folds])
    x = rng.integers(0, 2, size=(n, shape[0]), dtype=np.uint8)
    ii = analytic_ii(folds)
    jobs = [
        BnnJob(random_image(folds, rng), x, preload=True),
        BnnJob(compiled, x, preload=True),
        BnnJob(random_image(folds, rng), x, preload=False, backpressure=0.7,
               max_gap=3 * ii + 8, seed=seed),
    ]
    with build_dir(simulator, folds, in_depth, out_depth) as bdir:    # the session's cache
        run_rtl(simulator, folds, jobs, build_dir=bdir, in_depth=in_depth, out_depth=out_depth)
    for k, job in enumerate(jobs):
        assert job.y.dtype == np.int32 and job.y.shape == (n, shape[-1])
        assert np.array_equal(job.y, golden_forward(job.image, x)), f"job {k}"
        c = job.counters
        assert c["samples_in"] == c["samples_out"] == n, c
    assert np.array_equal(jobs[1].y, float_forward(model, x))
    # preloaded samples stream back to back: results exactly one analytic II apart
    assert jobs[0].counters["ii_min"] == ii
    assert jobs[2].counters["stall"] > 0, "back-pressure never reached the network"


AWKWARD = ([40, 9, 5, 3], "7:4,3:2,2:3")   # no fold divides its layer


def test_icarus_awkward(bnn_build_dir):
    shape, fold = AWKWARD
    _check("icarus", shape, make_folding(shape, fold), bnn_build_dir, seed=1)


def test_icarus_random_topology(bnn_build_dir):
    shape, folds = _random_topology(np.random.default_rng(2024))
    _check("icarus", shape, folds, bnn_build_dir, seed=2)


@pytest.mark.slow
def test_verilator_awkward(bnn_build_dir):
    shape, fold = AWKWARD
    _check("verilator", shape, make_folding(shape, fold), bnn_build_dir, seed=3, n=40)


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_random_topologies(simulator, seed, bnn_build_dir):
    shape, folds = _random_topology(np.random.default_rng(seed))
    _check(simulator, shape, folds, bnn_build_dir, seed=seed, n=32, in_depth=3, out_depth=1)
