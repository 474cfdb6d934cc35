"""The EIE RTL on real simulators (Verilator, Icarus through cocotb) against the golden model.

One design per (PE count, FIFO depth) configuration, built once (cached by the Verilog's hash),
runs a set of random multi-layer networks (weight densities from 1% to 100%, with and without
bias and ReLU, values that saturate, tall layers whose gaps need padding entries): each must
equal the golden model bit for bit, its counters must agree with the golden model's work
statistics, and with the cycle model (``eie.sw.cycle_model``).

CI runs the ``DEFAULT`` subset on both simulators; the whole matrix (N in {1, 2, 3, 4, 8, 16} x
FIFO depth in {1, 2, 8} x both simulators) is marked slow:

    .venv/bin/pytest -m slow tests/test_eie_rtl.py -n 2        (or: make test-full)

The acceptance test compresses a random 3-layer float model with ``eie compress`` for 3 and 16
PEs and checks that ``eie run --sim verilator`` and ``--sim icarus`` give ``eie golden``'s output.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from eie.hw.eie.config import EIEConfig
from eie.sim.eie_run import (EieJob, build_simulator, check_inputs, config_for_images,
                             run_eie, run_eie_jobs, verilog_for_config)
from eie.sw.encode import QuantLayer, build_image
from eie.common.errors import EieError
from eie.sw.golden import golden_forward, golden_forward_layers

def rand_layer(rng, n_out, n_in, density, *, bias, relu, saturate=False, uneven=False):
    """``uneven``: rows as a trained layer has them (per-row densities spread over ~10x, one
    row empty), the case balanced placement is for."""
    if uneven:
        row_d = np.clip(density * rng.lognormal(0.0, 0.9, n_out), 0.0, 1.0)
        row_d[rng.integers(0, n_out)] = 0.0
        mask = rng.random((n_out, n_in)) < row_d[:, None]
    else:
        mask = rng.random((n_out, n_in)) < density
    codes = (rng.integers(1, 16, (n_out, n_in)) * mask).astype(np.uint8)
    if saturate:   # full-scale weights and a small shift: sums far beyond int16 at both ends
        cb = np.concatenate([[0], rng.choice([-32768, -20000, 20000, 32767], 15)])
        w_frac = int(rng.integers(0, 3))
    else:
        cb = np.concatenate([[0], rng.integers(-400, 401, 15)])
        w_frac = int(rng.integers(6, 10))
    b = rng.integers(-32768, 32768, n_out) if (bias and saturate) else \
        rng.integers(-2000, 2001, n_out) if bias else None
    return QuantLayer(codes=codes, codebook=cb.astype(np.int16), w_frac=w_frac,
                      bias=None if b is None else b.astype(np.int16), relu=relu)


# (sizes, weight density, input density, bias, ReLU on hidden layers, ReLU on the last,
#  saturating values). Every network with an odd index is built with balanced placement
#  (``build_image(..., balance=True)``), the others with the interleave; UNEVEN ones have
#  trained-like uneven rows.
NETWORKS = [
    ([48, 40, 24, 10], 0.01, 0.9, False, True, False, False),   # 1%: mostly empty columns
    ([20, 16, 12], 1.0, 1.0, True, True, False, False),          # dense weights and inputs
    ([33, 48, 17, 9], 0.3, 0.5, True, True, True, False),        # ReLU on every layer
    ([40, 30, 20], 0.1, 0.3, False, False, False, False),        # no ReLU at all
    ([24, 24, 12], 0.6, 0.8, True, True, False, True),           # saturates at both ends
    ([8, 48, 5], 0.04, 1.0, True, True, False, False),           # tall, sparse: padding
    ([30, 20], 0.5, 0.7, True, True, False, False),              # one layer: output in bank 1
    ([37, 45, 29, 11], 0.15, 0.6, True, True, False, False),     # uneven rows, balanced
    ([45, 31, 13], 0.2, 0.8, False, True, True, False),          # uneven rows, interleaved
]
UNEVEN = {7, 8}


MODEL_LAYERS: dict[int, list[QuantLayer]] = {}   # image -> the layers it was built from


def make_networks(n_pe: int, seed: int, batch: int = 2):
    """The test networks for ``n_pe`` PEs (images) with their int16 inputs."""
    rng = np.random.default_rng(seed)
    out = []
    for k, (sizes, wd, ad, bias, relu_hidden, relu_last, sat) in enumerate(NETWORKS):
        layers = [rand_layer(rng, sizes[i + 1], sizes[i], wd, bias=bias,
                             relu=relu_last if i == len(sizes) - 2 else relu_hidden,
                             saturate=sat, uneven=k in UNEVEN)
                  for i in range(len(sizes) - 1)]
        if k in UNEVEN:
            # inputs without weights (an image's zero border): a balanced image places the
            # first layer's inputs (input_order), the host writes them at their positions
            layers[0].codes[:, ::5] = 0
        img = build_image(layers, n_pe, balance=k % 2 == 1)
        if k % 2 == 1 and n_pe > 1:
            assert img.balanced
        if k in UNEVEN and k % 2 == 1:
            assert img.layers[0].input_order is not None
        MODEL_LAYERS[id(img)] = layers
        scale = 32767 if sat else 800
        shape = (batch, sizes[0])
        x = rng.integers(-scale, scale + 1, shape) * (rng.random(shape) < ad)
        out.append((img, x.astype(np.int16)))
    return out


def check_counters(img, x, result, golden, config) -> tuple[int, int]:
    """Counters against the golden model's work statistics (exact) and the cycle model.
    Returns (layer runs whose four counters all equal the model's, layer runs)."""
    from eie.sw.cycle_model import predict_counters

    pred = predict_counters(img, x, fifo_depth=config.fifo_depth,
                            ptr_queue_depth=config.ptr_queue_depth)
    equal = total = 0
    for s in range(x.shape[0]):
        layers = result.counters[s]
        assert len(layers) == len(img.layers)
        for l, c in enumerate(layers):
            st = golden.stats[l]
            assert c["broadcasts"] == int(st.nonzero_inputs[s]), (s, l, c)
            assert c["busy"] == [int(v) for v in st.work_per_pe[s]], (s, l, c)
            assert c["cycles"] >= int(st.bound[s]), (s, l, c, int(st.bound[s]))
            assert all(0 <= v <= c["cycles"] for v in c["stall"]), (s, l, c)
            p = pred[s][l].counters()
            total += 1
            equal += p == c
            assert p == c, f"sample {s}, layer {l}: cycle model {p}, RTL {c}"
        assert result.run_cycles[s] == sum(c["cycles"] for c in layers)
    return equal, total


def run_matrix_case(sim: str, config: EIEConfig) -> None:
    """The test networks on the design ``config`` (one of the shared ``rtl_designs``)."""
    n_pe, fifo = config.n_pe, config.fifo_depth
    nets = make_networks(n_pe, seed=1000 * n_pe + fifo)
    jobs = [EieJob(img, x) for img, x in nets]
    run_eie_jobs(jobs, sim=sim, config=config)
    equal = total = 0
    saturated = set()
    for k, (job, (img, x)) in enumerate(zip(jobs, nets)):
        g = golden_forward(img, x)
        r = job.result
        assert r.outputs.dtype == np.int16 and r.outputs.shape == g.outputs.shape
        # the model's own answer, from the layers before any placement
        np.testing.assert_array_equal(g.outputs, golden_forward_layers(MODEL_LAYERS[id(img)], x))
        mism = np.argwhere(r.outputs != g.outputs)
        assert mism.size == 0, (f"network {k} on {sim} (N={n_pe}, FIFO {fifo}): "
                                f"{len(mism)} outputs differ, first {mism[0].tolist()}: rtl "
                                f"{r.outputs[tuple(mism[0])]} golden {g.outputs[tuple(mism[0])]}")
        if NETWORKS[k][6]:
            for o in g.layer_outputs:
                saturated.update({int(o.max()), int(o.min())} & {32767, -32768})
        e, t = check_counters(img, x, r, g, config)
        equal += e
        total += t
    assert saturated == {32767, -32768}, f"the saturating network saturated only at {saturated}"
    assert equal == total


DEFAULT = [("verilator", 3, 8), ("verilator", 16, 8),
           ("icarus", 3, 8), ("icarus", 1, 2), ("icarus", 4, 1)]   # icarus 16-8: slow
FULL = [(sim, n, f) for sim in ("verilator", "icarus") for n in (1, 2, 3, 4, 8, 16)
        for f in (1, 2, 8)]


@pytest.mark.rtl
@pytest.mark.parametrize("sim,n_pe,fifo", DEFAULT)
def test_networks_equal_golden(sim, n_pe, fifo, rtl_designs):
    run_matrix_case(sim, rtl_designs.config(n_pe, fifo))


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("sim,n_pe,fifo", [c for c in FULL if c not in DEFAULT])
def test_networks_equal_golden_full(sim, n_pe, fifo, rtl_designs):
    run_matrix_case(sim, rtl_designs.config(n_pe, fifo))


@pytest.mark.rtl
@pytest.mark.parametrize("n_pe,fifo", [(3, 8), (16, 8)])
def test_cycle_model_matches_verilator_counters(n_pe, fifo, rtl_designs):
    """Random configurations (layer shapes, weight and input densities, bias, depth) on the
    Verilator builds of the matrix: the cycle model predicts every counter of every layer run,
    equal on every one."""
    rng = np.random.default_rng(500 + n_pe)
    config = rtl_designs.config(n_pe, fifo)
    nets = []
    for _ in range(10):
        depth = int(rng.integers(1, rtl_designs.max_layers + 1))
        sizes = [int(v) for v in rng.integers(4, rtl_designs.max_dim + 1, depth + 1)]
        wd, ad = float(rng.uniform(0.02, 1.0)), float(rng.uniform(0.1, 1.0))
        bias = bool(rng.integers(0, 2))
        layers = [rand_layer(rng, sizes[i + 1], sizes[i], wd, bias=bias,
                             relu=i < depth - 1) for i in range(depth)]
        img = build_image(layers, n_pe, balance=bool(rng.integers(0, 2)))
        x = rng.integers(-800, 801, (2, sizes[0])) * (rng.random((2, sizes[0])) < ad)
        nets.append((img, x.astype(np.int16)))
    jobs = run_eie_jobs([EieJob(img, x) for img, x in nets], sim="verilator", config=config)
    equal = total = 0
    for r, (img, x) in zip(jobs, nets):
        g = golden_forward(img, x)
        np.testing.assert_array_equal(r.outputs, g.outputs)
        e, t = check_counters(img, x, r, g, config)
        equal += e
        total += t
    assert total >= 20
    assert equal == total


def test_design_config_holds_every_network(rtl_designs):
    for n in (1, 2, 3, 4, 8, 16):
        cfg = rtl_designs.config(n, 8)
        for img, _ in make_networks(n, seed=n):
            cfg.check_image(img)


# ----------------------------------------------------------------------------- acceptance

def _random_float_model(path: Path, sizes, seed: int) -> None:
    rng = np.random.default_rng(seed)
    arrays = {}
    for l in range(len(sizes) - 1):
        arrays[f"W{l}"] = rng.normal(0, 1 / np.sqrt(sizes[l]), (sizes[l + 1], sizes[l]))
        arrays[f"b{l}"] = rng.normal(0, 0.1, sizes[l + 1])
    np.savez(path, **arrays)


def _design_options(cfg: EIEConfig) -> list[str]:
    return ["--fifo-depth", str(cfg.fifo_depth), "--ptr-depth", str(cfg.ptr_depth),
            "--spmat-depth", str(cfg.spmat_depth), "--act-depth", str(cfg.act_depth),
            "--acc-depth", str(cfg.acc_depth), "--bias-depth", str(cfg.bias_depth),
            "--max-layers", str(cfg.max_layers)]


@pytest.mark.rtl
@pytest.mark.parametrize("n_pe", [3, 16])
def test_acceptance_compress_run_equals_golden(n_pe, tmp_path, cli, rtl_designs):
    """eie compress -> eie run --sim verilator / --sim icarus == eie golden (3 layers)."""
    model = tmp_path / "model.npz"
    _random_float_model(model, [40, 32, 24, 10], seed=n_pe)
    img_dir = tmp_path / "img"
    assert cli(["compress", model, "-o", img_dir, "--pes", n_pe, "--density", "0.35"]).code == 0
    rng = np.random.default_rng(7 + n_pe)
    x = rng.normal(0, 1.5, (3, 40)) * (rng.random((3, 40)) < 0.7)
    np.save(tmp_path / "x.npy", x)
    assert cli(["golden", img_dir, "--input", tmp_path / "x.npy",
                "-o", tmp_path / "golden.npy"]).code == 0
    ref = np.load(tmp_path / "golden.npy")
    assert ref.shape == (3, 10) and np.count_nonzero(ref) > 0
    # the design of the matrix tests for this N (shared build); the image must fit it
    opts = _design_options(rtl_designs.config(n_pe, 8))
    for sim in ("verilator", "icarus"):
        y = tmp_path / f"y_{sim}.npy"
        r = cli(["run", img_dir, "--input", tmp_path / "x.npy", "-o", y, "--sim", sim,
                 "--no-progress", *opts])
        assert r.code == 0, r
        assert "equal to the golden model on all 3 samples" in r.out
        got = np.load(y)
        assert got.dtype == np.int16
        np.testing.assert_array_equal(got, ref)


# ----------------------------------------------------------------------------- API

@pytest.mark.rtl
def test_run_eie_sizes_design_from_image_and_agrees_across_simulators():
    """run_eie without a config: for_image sizing; Amaranth, Icarus and the golden model agree,
    counters included, for a 1-D input as well."""
    img, x = make_networks(2, seed=77, batch=2)[2]
    g = golden_forward(img, x)
    ra = run_eie(img, x, sim="amaranth")
    ri = run_eie(img, x, sim="icarus")
    np.testing.assert_array_equal(ra.outputs, g.outputs)
    np.testing.assert_array_equal(ri.outputs, g.outputs)
    assert ra.counters == ri.counters
    assert ra.run_cycles == ri.run_cycles
    assert ri.simulator == "icarus" and ri.sim_cycles > sum(ri.run_cycles)
    r1 = run_eie(img, x[1], sim="icarus")
    np.testing.assert_array_equal(r1.outputs, g.outputs[1:2])
    assert r1.counters[0] == ri.counters[1]


def test_bad_inputs_are_clear_errors():
    img, x = make_networks(2, seed=5)[1]
    with pytest.raises(EieError, match=r"shape \(2, 7\).*takes 20 inputs"):
        run_eie(img, np.zeros((2, 7), np.int16), sim="amaranth")
    with pytest.raises(EieError, match="dtype float64"):
        check_inputs(img, np.zeros((1, 20)))
    with pytest.raises(EieError, match="40000.*outside int16"):
        check_inputs(img, np.full((1, 20), 40000))
    with pytest.raises(EieError, match="unknown simulator 'modelsim'"):
        run_eie(img, x, sim="modelsim")
    small = EIEConfig(n_pe=2, ptr_depth=8)
    with pytest.raises(EieError, match="pointers per PE.*raise --ptr-depth"):
        run_eie(img, x, sim="amaranth", config=small)
    other = make_networks(3, seed=5)[1][0]
    with pytest.raises(EieError, match="different PE counts"):
        config_for_images([img, other])


def _build_in_child(args):
    sim, verilog, cache = args
    bdir, seconds = build_simulator(sim, Path(verilog), build_dir=cache)
    return str(bdir), seconds


@pytest.mark.rtl
def test_concurrent_builds_share_one_build(tmp_path):
    """Two processes wanting the same build: one builds, the other waits for it and reuses it.
    (A cache of its own, not the session's: the build must happen here.)"""
    cfg = EIEConfig(n_pe=1, fifo_depth=1, ptr_depth=8, spmat_depth=4, act_depth=4, acc_depth=4,
                    bias_depth=4, max_layers=1)
    cache = tmp_path / "cache"
    verilog, export_s = verilog_for_config(cfg, build_dir=cache)
    assert export_s > 0 and verilog.read_text().count("module eie_top(") == 1
    assert verilog_for_config(cfg, build_dir=cache) == (verilog, 0.0)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_build_in_child, [("icarus", str(verilog), str(cache))] * 2)
    dirs = {d for d, _ in results}
    assert len(dirs) == 1
    built = sorted(s for _, s in results)
    assert built[0] == 0.0 and built[1] > 0.0, built
    assert (Path(dirs.pop()) / "sim.vvp").exists()


@pytest.mark.rtl
@pytest.mark.parametrize("sim", ["amaranth", "icarus"])
def test_vcd_on_request(sim, tmp_path):
    img, x = make_networks(1, seed=3, batch=1)[1]
    vcd = tmp_path / f"w_{sim}.vcd"
    r = run_eie(img, x, sim=sim, vcd=vcd)
    np.testing.assert_array_equal(r.outputs, golden_forward(img, x).outputs)
    head = vcd.read_text(errors="replace")[:200000]
    assert "$enddefinitions" in head and "$var" in head
    assert "busy" in head


@pytest.mark.rtl
@pytest.mark.slow
def test_vcd_on_request_verilator(tmp_path):
    img, x = make_networks(1, seed=3, batch=1)[1]
    vcd = tmp_path / "w.vcd"
    r = run_eie(img, x, sim="verilator", vcd=vcd)
    np.testing.assert_array_equal(r.outputs, golden_forward(img, x).outputs)
    assert "$enddefinitions" in vcd.read_text(errors="replace")[:200000]


def test_icarus_source_runs_every_combinational_block():
    """Each of Yosys's time-0 dummies gets an ``initial #1`` that changes it; nothing else
    changes. (Without it a one-layer network reads X on Icarus: NETWORKS' last entry.)"""
    from eie.sim.eie_run import icarus_source

    cfg = EIEConfig(n_pe=1, fifo_depth=1, ptr_depth=8, spmat_depth=4, act_depth=4, acc_depth=4,
                    bias_depth=4, max_layers=1)
    text = verilog_for_config(cfg)[0].read_bytes()
    out = icarus_source(text)
    lines = text.split(b"\n")
    dummies = [l for l in lines if b"dump_module$" in l and l.rstrip().endswith(b"= 0;")]
    added = [l for l in out.split(b"\n") if l.startswith(b"  initial #1 ")]
    assert dummies and len(added) == len(dummies)
    assert [l for l in out.split(b"\n") if not l.startswith(b"  initial #1 ")] == lines
