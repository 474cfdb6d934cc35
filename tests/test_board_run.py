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


def test_waveform_into_a_missing_directory_is_refused_before_the_session(eie_image, tmp_path,
                                                                          cli, monkeypatch):
    """EIE_VCD naming a file in a directory that does not exist: one line before the simulated
    session (it was the simulator's traceback at its end), no output; EIE_VCD=1 names
    board_sim.vcd in the working directory, as eie run's EIE_VCD=1 names eie_<sim>.vcd."""
    from eie.common.outputs import env_waveform

    d = eie_image
    np.save(tmp_path / "x.npy", np.zeros((1, 10), np.float32))
    monkeypatch.setenv("EIE_VCD", str(tmp_path / "nodir" / "s.vcd"))
    r = cli(["board", "run", d / "img", "--input", tmp_path / "x.npy", "-o",
             tmp_path / "y.npy", "--simulate"])
    assert r.code == 2, r.err
    assert r.err.strip() == (f"eie: error: EIE_VCD={tmp_path / 'nodir' / 's.vcd'}: the "
                             f"directory {tmp_path / 'nodir'} does not exist; set EIE_VCD to a "
                             "file in an existing directory, to 1 (a file in the working "
                             "directory), or unset it"), r.err
    assert not (tmp_path / "y.npy").exists() and not (tmp_path / "nodir").exists()
    monkeypatch.setenv("EIE_VCD", "1")
    assert env_waveform("board_sim.vcd") == "board_sim.vcd"
    monkeypatch.setenv("EIE_VCD", str(tmp_path / "w.vcd"))
    assert env_waveform("board_sim.vcd") == str(tmp_path / "w.vcd")
    monkeypatch.setenv("EIE_VCD", "")
    assert env_waveform("board_sim.vcd") is None


def test_simulated_board_options_that_apply(eie_image, tmp_path, cli):
    """--baud is for a serial port (the simulated board has none): refused with --simulate;
    --build with --simulate makes the simulated board that build's core, so an image the
    built core cannot hold is refused as on the real board (it was only kind-checked)."""
    from eie.hw.eie.config import EIEConfig
    from eie.sw.image import read_image

    d = eie_image
    np.save(tmp_path / "x.npy", np.zeros((1, 10), np.float32))
    r = cli(["board", "run", d / "img", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
             "--simulate", "--baud", "9600"])
    assert r.code == 2 and "--baud 9600 applies with --port" in r.err, r.err
    small = EIEConfig.for_image(read_image(d / "img"))
    build = tmp_path / "build"
    build.mkdir()
    (build / "report.json").write_text(json.dumps({"board": "icebreaker", "bitstream": "top.bin"}))
    cfg = small.to_json()
    cfg["spmat_depth"] = 1                      # too small for the image's entries
    (build / "core.json").write_text(json.dumps({"kind": "eie", "config": cfg}))
    r = cli(["board", "run", d / "img", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
             "--simulate", "--build", build])
    assert r.code == 2 and "sparse-matrix" in r.err, r.err
    assert not (tmp_path / "y.npy").exists()


# ----------------------------------------------------------------------------- ternary (W2) images

def _ternary_image(tmp_path, weight_bits=(2, 2), last_thresholded=False, seed=12):
    from eie.hw.bnn.folding import make_folding
    from eie.sw.bnn.image import random_image, write_image

    rng = np.random.default_rng(seed)
    folds = make_folding([40, 12, 6], "8:4,4:2")
    image = random_image(folds, rng, last_thresholded=last_thresholded,
                         weight_bits=list(weight_bits))
    write_image(image, tmp_path / "timg")
    x = rng.integers(0, 2, size=(3, 40)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    return image, x


@pytest.mark.rtl
@pytest.mark.parametrize("weight_bits, last_thresholded", [((2, 2), False), ((1, 2), True)])
def test_ternary_bnn_image_through_the_simulated_board(tmp_path, cli, weight_bits,
                                                       last_thresholded):
    """A W2 image (all ternary, dots out: the output layer's nonzero counts are loaded too; and
    W1/W2 mixed with a thresholded output layer) through the host driver, the UART bridge and
    the core built for its precisions equals the golden model."""
    from eie.sw.bnn.golden import golden_forward

    image, x = _ternary_image(tmp_path, weight_bits, last_thresholded)
    assert image.weight_bits == list(weight_bits)
    zero = sum(int((m == 0).sum()) for m in image.masks if m is not None)
    assert zero > 0                          # the masks do zero some weights
    r = cli(["board", "run", tmp_path / "timg", "--input", tmp_path / "x.npy",
             "-o", tmp_path / "y.npy", "--simulate", "--stats", tmp_path / "s.json"])
    assert r.code == 0, r.out + r.err
    assert "outputs equal the golden model" in r.out
    y = np.load(tmp_path / "y.npy")
    gold = golden_forward(image, x)
    assert y.dtype == gold.dtype and y.shape == (3, 6)
    np.testing.assert_array_equal(y, gold)
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["equal_golden"] is True and stats["counters"][0]["samples_out"] == 3


@pytest.mark.rtl
def test_ternary_image_on_a_binary_board_is_refused_in_one_line(tmp_path):
    """A board whose core has this topology and folding but W1 weights (its CONFIG_CRC tells)
    refuses a W2 image before anything is loaded, naming both precisions; so does a W2 core a
    W1 image."""
    from eie.app.host import run_bnn, simulated_board
    from eie.boards.protocol import Design
    from eie.common.errors import EieError
    from eie.hw.bnn.top import BnnTop

    image, x = _ternary_image(tmp_path, (2, 2))
    client, transport = simulated_board(BnnTop(image.folds), Design.BNN)
    try:
        with pytest.raises(EieError) as exc:
            run_bnn(client, image, x)
    finally:
        transport.close()
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("the bitstream on the board was built for this topology and folding "
                          "with weights W1,W1 but the image has W2,W2: build one for the image "
                          "(eie build --design bnn --image IMAGE_DIR)"), msg
    assert client.stats.payload_bytes < 64       # ID, CONFIG_CRC and the depths: no load

    w1 = _ternary_image(tmp_path, (1, 1))[0]
    client, transport = simulated_board(BnnTop(image.folds, weight_bits=(1, 2)), Design.BNN)
    try:
        with pytest.raises(EieError, match="with weights W1,W2 but the image has W1,W1"):
            run_bnn(client, w1, x)
    finally:
        transport.close()


def test_ternary_image_against_a_binary_build_is_refused(tmp_path, cli):
    """`eie board run --port P --build DIR`: the image is checked against the bitstream's
    core.json before the port is opened: a W2 image against a W1-built core description (as
    `eie build` writes it, or as older builds wrote it, without weight_bits), and another
    folding, are refused in one line."""
    from eie.boards.build import BuildSpec, make_core_factory
    from eie.boards.platforms import board_by_name

    _ternary_image(tmp_path, (2, 2))
    _, _, core = make_core_factory(BuildSpec(board_by_name("ulx3s-85f"), "bnn", tmp_path / "u",
                                             bnn_shape=(40, 12, 6), bnn_fold="8:4,4:2"))
    assert core["weight_bits"] == [1, 1] and core["last_thresholded"] is False
    old = {k: v for k, v in core.items() if k not in ("weight_bits", "last_thresholded")}
    other = dict(core, folding="4:4,4:2", weight_bits=[2, 2])
    for name, desc, message in (
            ("w1", core, "--build {b}: the bitstream was built for this topology and folding "
                         "with weights W1,W1 but the image has W2,W2: build one for the image"),
            ("old", old, "with weights W1,W1 but the image has W2,W2"),
            ("fold", other, "was built for shape 40,12,6 folded 4:4,4:2, the image is "
                            "40,12,6 folded 8:4,4:2")):
        b = tmp_path / name
        b.mkdir()
        (b / "core.json").write_text(json.dumps(desc))
        (b / "report.json").write_text(json.dumps({"board": "ulx3s-85f", "bitstream": "top.bit",
                                                   "uart": {"baud": 115200}}))
        r = cli(["board", "run", tmp_path / "timg", "--input", tmp_path / "x.npy", "-o",
                 tmp_path / "y.npy", "--port", "/dev/null-eie", "--build", b])
        lines = r.err.strip().splitlines()
        assert r.code == 2 and len(lines) == 1, r.err
        assert lines[0].startswith("eie: error: ") and message.format(b=b) in lines[0], lines[0]
        assert not (tmp_path / "y.npy").exists()
