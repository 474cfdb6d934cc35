"""`eie board run --simulate`: the host driver, the UART bridge and the cores end to end in the
Amaranth simulator (UART pins driven bit by bit), compared with the golden models."""

import json

import numpy as np
import pytest

from eie.app.cli import main


@pytest.fixture(scope="module")
def eie_image(tmp_path_factory):
    d = tmp_path_factory.mktemp("eie")
    rng = np.random.default_rng(7)
    np.savez(d / "model.npz", W0=rng.normal(size=(12, 10)).astype(np.float32),
             b0=(0.1 * rng.normal(size=12)).astype(np.float32),
             W1=rng.normal(size=(5, 12)).astype(np.float32))
    assert main(["compress", str(d / "model.npz"), "-o", str(d / "img"), "--pes", "2",
                 "--density", "0.4"]) == 0
    return d


@pytest.mark.rtl
def test_eie_image_through_the_simulated_board(eie_image, cli):
    from eie.sw.fixedpoint import quantize
    from eie.sw.golden import golden_forward
    from eie.sw.image import read_image

    d = eie_image
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, size=(2, 10)).astype(np.float32)
    np.save(d / "x.npy", x)
    r = cli(["board", "run", d / "img", "--input", d / "x.npy", "-o", d / "y.npy",
             "--simulate", "--stats", d / "s.json"])
    assert r.code == 0, r.out
    image = read_image(d / "img")
    gold = golden_forward(image, quantize(x, image.act_frac)).outputs
    y = np.load(d / "y.npy")
    assert y.dtype == np.int16 and y.shape == (2, 5)
    np.testing.assert_array_equal(y, gold)
    stats = json.loads((d / "s.json").read_text())
    assert stats["equal_golden"] is True and stats["samples"] == 2
    layers = stats["counters"][0]["layers"]
    assert len(layers) == 2 and all(l["cycles"] > 0 for l in layers)
    # every run broadcasts at most the layer's inputs
    assert layers[0]["broadcasts"] <= 10 and layers[1]["broadcasts"] <= 12
    assert stats["link"]["wire_bytes"] > stats["link"]["payload_bytes"] > 0


@pytest.mark.rtl
def test_bnn_image_through_the_simulated_board(tmp_path, cli):
    from eie.hw.bnn.folding import make_folding
    from eie.sw.bnn.golden import golden_forward
    from eie.sw.bnn.image import random_image, write_image

    rng = np.random.default_rng(11)
    folds = make_folding([40, 12, 6], "8:4,4:2")     # fan-in and outputs not multiples
    image = random_image(folds, rng)
    write_image(image, tmp_path / "bimg")
    x = rng.integers(0, 2, size=(3, 40)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    r = cli(["board", "run", tmp_path / "bimg", "--input", tmp_path / "x.npy",
             "-o", tmp_path / "y.npy", "--simulate", "--stats", tmp_path / "s.json"])
    assert r.code == 0, r.out
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, golden_forward(image, x))
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["counters"][0]["samples_out"] == 3


def test_board_run_needs_a_target(eie_image, cli):
    d = eie_image
    np.save(d / "x1.npy", np.zeros((1, 10), np.float32))
    r = cli(["board", "run", d / "img", "--input", d / "x1.npy", "-o", d / "y1.npy"])
    assert r.code == 2 and "--simulate" in r.err       # argparse: one of the targets


def test_board_run_bad_inputs(eie_image, tmp_path, cli):
    d = eie_image
    np.save(tmp_path / "wide.npy", np.zeros((1, 11), np.float32))
    r = cli(["board", "run", d / "img", "--input", tmp_path / "wide.npy", "-o",
             tmp_path / "y.npy", "--simulate"])
    assert r.code == 2 and "(batch, 10)" in r.err
    assert not (tmp_path / "y.npy").exists()
    # an EIE image on a real port needs the bitstream's build directory
    np.save(tmp_path / "x.npy", np.zeros((1, 10), np.float32))
    r = cli(["board", "run", d / "img", "--input", tmp_path / "x.npy", "-o",
             tmp_path / "y.npy", "--port", "/dev/null-eie"])
    assert r.code == 2 and "--build" in r.err
    r = cli(["board", "run", tmp_path, "--input", tmp_path / "x.npy", "-o",
             tmp_path / "y.npy", "--simulate"])
    assert r.code == 2 and "manifest.json" in r.err
    assert not (tmp_path / "y.npy").exists()
