"""``eie run --sim model``: the golden model's outputs and the cycle model's counters, in the
same ``--stats`` document as the RTL simulators write."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from eie.hw.eie.config import EIEConfig
from eie.hw.eie.variants import variant
from eie.sw.cycle_model import predict_counters
from eie.sw.encode import QuantLayer, build_image
from eie.sw.golden import golden_forward
from eie.sw.image import read_image, write_image


def _edge_image(tmp_path, n_pe=3, seed=11):
    """13-10-7-5 at ``n_pe`` = 3 (no layer's n_out a multiple of N), biases everywhere, ReLU on
    the hidden layers, an empty row (layer 0, row 2), an empty column (layer 1, column 4) and a
    dense column (layer 2, column 0: long work for every PE, FIFO back-pressure)."""
    rng = np.random.default_rng(seed)
    sizes = [13, 10, 7, 5]
    layers = []
    for i in range(len(sizes) - 1):
        shape = (sizes[i + 1], sizes[i])
        codes = (rng.integers(1, 16, shape) * (rng.random(shape) < 0.55)).astype(np.uint8)
        if i == 0:
            codes[2, :] = 0
        if i == 1:
            codes[:, 4] = 0
        if i == 2:
            codes[:, 0] = rng.integers(1, 16, sizes[i + 1])
        cb = np.concatenate([[0], rng.integers(-300, 301, 15)]).astype(np.int16)
        layers.append(QuantLayer(codes=codes, codebook=cb, w_frac=7,
                                 bias=rng.integers(-500, 501, sizes[i + 1]).astype(np.int16),
                                 relu=i < len(sizes) - 2))
    img = build_image(layers, n_pe)
    assert all(d.n_out % n_pe for d in img.layers)
    write_image(img, tmp_path / "img")
    return tmp_path / "img"


def _run(cli, tmp_path, d, x, sim, *extra, tag=None):
    """``eie run --raw --sim SIM`` on int16 ``x``, which must succeed; returns (what it
    printed, Y, stats document)."""
    tag = tag or sim
    np.save(tmp_path / "x.npy", x)
    r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / f"y_{tag}.npy", "--raw",
             "--sim", sim, "--no-progress", "--stats", tmp_path / f"s_{tag}.json", *extra])
    assert r.code == 0, r
    return (r.out, np.load(tmp_path / f"y_{tag}.npy"),
            json.loads((tmp_path / f"s_{tag}.json").read_text()))


def _shape(doc):
    """The structure of a JSON document: keys, list lengths and leaf types."""
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_shape(v) for v in doc]
    return type(doc).__name__


# timings and the simulator's name are the only fields in which the two documents may differ
_TIMINGS = ("simulator", "sim_cycles", "build_seconds", "sim_seconds")


@pytest.mark.rtl
def test_model_equals_verilator_in_outputs_and_every_counter(tmp_path, cli):
    d = _edge_image(tmp_path)
    rng = np.random.default_rng(5)
    x = (rng.integers(-900, 900, (4, 13)) * (rng.random((4, 13)) < 0.7)).astype(np.int16)
    x[1] = 0                                         # no nonzero input at all
    x[2] = rng.integers(1, 900, 13)                  # every input nonzero
    opts = ["--fifo-depth", "2", "--ptr-queue-depth", "2"]
    _, y_rtl, rtl = _run(cli, tmp_path, d, x, "verilator", *opts)
    _, y_model, model = _run(cli, tmp_path, d, x, "model", *opts)
    np.testing.assert_array_equal(y_model, y_rtl)
    assert y_model.dtype == np.int16
    assert rtl["simulator"] == "verilator" and model["simulator"] == "model"
    # every counter of every sample and layer, run_cycles, bounds, efficiencies and the config
    assert {k: v for k, v in model.items() if k not in _TIMINGS} == \
        {k: v for k, v in rtl.items() if k not in _TIMINGS}
    assert _shape(model) == _shape(rtl)
    # the run exercised what it is meant to: back-pressure, and the CYCLES register's rule
    assert any(any(l["stall"]) for s in rtl["samples"] for l in s["layers"])
    for s in rtl["samples"]:
        assert s["run_cycles"] == sum(l["cycles"] for l in s["layers"])


def _fake_rtl(monkeypatch):
    """``run_eie`` replaced by one that returns counters of the right shape without simulating:
    the RTL path's ``--stats`` document, in seconds."""
    import eie.sim.eie_run as eie_run

    def fake(image, x, *, sim, config, **kwargs):
        g = golden_forward(image, x)
        c = [[{"cycles": 100 + l, "broadcasts": 1, "busy": [1] * image.n_pe,
               "stall": [0] * image.n_pe} for l in range(len(image.layers))]
             for _ in range(x.shape[0])]
        return eie_run.RunResult(outputs=g.outputs, counters=c,
                                 run_cycles=[sum(l["cycles"] for l in s) for s in c],
                                 sim_cycles=1234, simulator=sim, build_seconds=1.5,
                                 sim_seconds=0.25)

    monkeypatch.setattr(eie_run, "run_eie", fake)


@pytest.mark.parametrize("opts,fields,chunk", [
    ([], {}, None),
    (["--variant", "balanced", "--fifo-depth", "3"], {**variant("balanced").fields,
                                                      "fifo_depth": 3}, None),
    (["--fifo-depth", "1"], {"fifo_depth": 1}, 1),    # predicted one sample at a time
])
def test_model_stats_document(tmp_path, cli, small_eie_image, monkeypatch, opts, fields, chunk):
    if chunk is not None:
        import eie.app.cmd_rtl as cmd_rtl

        monkeypatch.setattr(cmd_rtl, "MODEL_BATCH_ELEMENTS", chunk)
    d = small_eie_image()
    img = read_image(d)
    rng = np.random.default_rng(8)
    x = (rng.integers(-900, 900, (3, 14)) * (rng.random((3, 14)) < 0.6)).astype(np.int16)
    out, y, stats = _run(cli, tmp_path, d, x, "model", *opts)
    assert "the golden model's outputs" in out and "counters from the cycle model" in out
    g = golden_forward(img, x)
    np.testing.assert_array_equal(y, g.outputs)
    assert y.dtype == np.int16
    config = EIEConfig.for_image(img, **fields)
    assert stats["config"] == config.to_json()
    assert stats["simulator"] == "model" and stats["equal"] is True
    assert stats["build_seconds"] == 0.0 and stats["sim_seconds"] >= 0.0
    pred = predict_counters(img, x, fifo_depth=config.fifo_depth,
                            ptr_queue_depth=config.ptr_queue_depth)
    assert stats["sim_cycles"] == sum(s["run_cycles"] for s in stats["samples"])
    for s, sample in enumerate(stats["samples"]):
        assert sample["equal"] is True and sample["mismatches"] == 0
        assert sample["run_cycles"] == sum(l["cycles"] for l in sample["layers"])
        for l, layer in enumerate(sample["layers"]):
            assert {k: layer[k] for k in ("cycles", "broadcasts", "busy", "stall")} == \
                pred[s][l].counters()
            assert layer["bound"] == int(g.stats[l].bound[s])
            assert layer["efficiency"] == layer["bound"] / layer["cycles"]   # exactly
    # the same document, key for key and list for list, as the RTL path's run_stats
    _fake_rtl(monkeypatch)
    _, _, rtl = _run(cli, tmp_path, d, x, "verilator", *opts)
    assert rtl["simulator"] == "verilator" and rtl["sim_cycles"] == 1234
    assert _shape(stats) == _shape(rtl)


@pytest.mark.parametrize("extra,named", [
    (["--load", "backdoor"], "--load"),
    (["--load", "bus"], "--load"),
    (["--vcd", "w.vcd"], "--vcd"),
    (["--build-dir", "build"], "--build-dir"),
    (["--vcd", "w.vcd", "--load", "backdoor"], "--load and --vcd"),
])
def test_model_refuses_rtl_only_options(tmp_path, cli, small_eie_image, extra, named):
    d = small_eie_image()
    np.save(tmp_path / "x.npy", np.ones((1, 14), np.int16))
    extra = [str(tmp_path / a) if a in ("w.vcd", "build") else a for a in extra]
    r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
             "--raw", "--sim", "model", "--stats", tmp_path / "s.json", *extra])
    err = r.err.strip()
    assert r.code == 2
    assert len(err.splitlines()) == 1 and err.startswith("eie: error:")
    assert re.search(f"{re.escape(named)} cannot be used with --sim model", err), err
    assert not (tmp_path / "y.npy").exists() and not (tmp_path / "s.json").exists()
    assert not (tmp_path / "w.vcd").exists() and not (tmp_path / "build").exists()


def test_model_checks_the_design_like_the_rtl(tmp_path, cli, small_eie_image):
    """Design options are checked against the image as for an RTL simulator."""
    d = small_eie_image()
    np.save(tmp_path / "x.npy", np.ones((1, 14), np.int16))
    r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
             "--raw", "--sim", "model", "--ptr-depth", "4"])
    assert r.code == 2
    assert re.search("pointers per PE.*--ptr-depth", r.err)
    assert not (tmp_path / "y.npy").exists()


# ----------------------------------------------------------------------------- the progress bar

class _Terminal:
    """A stderr that says it is a terminal, and keeps what is written to it."""

    def __init__(self):
        import io

        self.buffer = io.StringIO()

    def isatty(self):
        return True

    def write(self, text):
        return self.buffer.write(text)

    def flush(self):
        pass


@pytest.mark.parametrize("terminal", [False, True])
def test_run_progress_bar_only_on_a_terminal(tmp_path, cli, small_eie_image, monkeypatch,
                                             terminal):
    # `eie run --sim icarus ... 2>log` wrote tqdm's carriage-return redraws into the log: the bar
    # follows eie compress's rule (shown when stderr is a terminal). The simulation is replaced
    # by the golden model, one progress step a sample, as the runner reports them.
    import sys

    import eie.sim.eie_run as eie_run

    def fake_run_core_jobs(core, jobs, *, on_progress=None, **kwargs):
        for job in jobs:
            g = golden_forward(job.image, job.x)
            counters = [[{"cycles": 10, "broadcasts": 1, "busy": [1] * job.image.n_pe,
                          "stall": [0] * job.image.n_pe} for _ in job.image.layers]
                        for _ in range(job.x.shape[0])]
            for _ in range(job.x.shape[0]):
                if on_progress is not None:
                    on_progress(1)
            job.result = eie_run.RunResult(outputs=g.outputs, counters=counters,
                                           run_cycles=[20] * job.x.shape[0], sim_cycles=99,
                                           simulator=kwargs["sim"])

    monkeypatch.setattr(eie_run, "run_core_jobs", fake_run_core_jobs)
    d = small_eie_image()
    np.save(tmp_path / "x.npy", np.ones((3, 14), np.int16))
    stderr = _Terminal() if terminal else None
    if terminal:
        monkeypatch.setattr(sys, "stderr", stderr)
    r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--raw",
             "--sim", "amaranth"])
    monkeypatch.undo()
    assert r.code == 0, r
    assert "equal to the golden model on all 3 samples" in r.out
    err = stderr.buffer.getvalue() if terminal else r.err
    if terminal:
        assert "eie run (amaranth)" in err and "/3 " in err
    else:
        assert err == "" and "\r" not in err


# ----------------------------------------------------------------------------- singular counts

@pytest.mark.parametrize("corrupt", [False, True])
def test_one_sample_on_one_pe_is_said_in_the_singular(tmp_path, cli, small_eie_image,
                                                      monkeypatch, corrupt):
    # "1 PEs", "on all 1 samples" and "1 of 1 samples differ" were printed. The RTL run is
    # replaced by the cycle model (eie run --sim model's result, as a simulator returns it),
    # its output corrupted for the mismatch.
    import eie.sim.eie_run as eie_run
    from eie.app.cmd_rtl import run_model

    def fake_run_eie(image, x, *, sim, config, **kwargs):
        result = run_model(image, x, config, golden_forward(image, x))
        result.simulator = sim
        if corrupt:
            result.outputs = result.outputs.copy()
            result.outputs[0, 2] ^= 1
        return result

    monkeypatch.setattr(eie_run, "run_eie", fake_run_eie)
    d = small_eie_image(n_pe=1)
    np.save(tmp_path / "x.npy", np.ones((1, 14), np.int16))
    r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--raw",
             "--sim", "amaranth", "--no-progress"])
    assert r.code == (1 if corrupt else 0), r
    assert "(1 PE, FIFO" in r.out and "1 PEs" not in r.out, r.out
    if corrupt:
        assert "MISMATCH: 1 of 1 sample differs from the golden model" in r.err, r.err
    else:
        assert "equal to the golden model on its 1 sample" in r.out, r.out
    r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--raw",
             "--sim", "model"])
    assert r.code == 0 and "cycle model (1 PE, FIFO" in r.out, r.out
    r = cli(["generate", "--pes", "1", "-o", tmp_path / "one.v"])
    assert r.code == 0 and ": module eie_top, 1 PE, FIFO" in r.out and "1 PEs" not in r.out, r.out
    assert "EIE sparse accelerator, 1 PE, FIFO depth" in (tmp_path / "one.v").read_text()


# ----------------------------------------------------------------------------- the summary line

def test_summary_line_states_the_same_design_and_one_count_when_all_agree(tmp_path, cli,
                                                                           small_eie_image,
                                                                           monkeypatch):
    # "103..103 cycles a sample" when every sample took the same; and the RTL's line named
    # "(8 PEs, FIFO 8)" while --sim model's named the pointer queue too. The RTL run is
    # replaced by the cycle model, as in the test above.
    import eie.sim.eie_run as eie_run
    from eie.app.cmd_rtl import run_model

    def fake_run_eie(image, x, *, sim, config, **kwargs):
        result = run_model(image, x, config, golden_forward(image, x))
        result.simulator = sim
        return result

    monkeypatch.setattr(eie_run, "run_eie", fake_run_eie)
    d = small_eie_image(n_pe=3)
    same = np.ones((3, 14), np.int16)                   # three equal samples: equal cycles
    mixed = np.zeros((2, 14), np.int16)
    mixed[1] = np.arange(1, 15)                         # one all zero, one dense: they differ
    for x in (same, mixed):
        np.save(tmp_path / "x.npy", x)
        cyc = {}
        for sim in ("amaranth", "model"):
            r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--raw",
                     "--sim", sim, "--no-progress", "--stats", tmp_path / "s.json",
                     "--fifo-depth", 4, "--ptr-queue-depth", 6])
            assert r.code == 0, r
            assert "(3 PEs, FIFO 4, pointer queue 6)" in r.out, r.out
            cyc[sim] = [s["run_cycles"] for s in
                        json.loads((tmp_path / "s.json").read_text())["samples"]]
            lo, hi = min(cyc[sim]), max(cyc[sim])
            if x is same:
                assert lo == hi and f" {lo} cycles a sample" in r.out and ".." not in r.out, r.out
            else:
                assert lo < hi and f" {lo}..{hi} cycles a sample" in r.out, r.out
        assert cyc["amaranth"] == cyc["model"]
