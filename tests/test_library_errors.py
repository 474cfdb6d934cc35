"""The Python API as a library user calls it (docs/compression.md, "Python API summary"): a bad
argument is one EieError that names it and says what to give, never a hang, a count for a design
that cannot exist, or an AttributeError from deep inside."""

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.sw.compress import CompressConfig, compress_model
from eie.sw.cycle_model import predict_counters
from eie.sw.fixedpoint import quantize
from eie.sw.golden import golden_forward, golden_forward_layers
from eie.sw.model_io import FloatLayer, FloatModel


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(5)
    model = FloatModel([FloatLayer(rng.normal(size=(12, 9)), rng.normal(size=12)),
                        FloatLayer(rng.normal(size=(4, 12)), relu=False)])
    image = compress_model(model, CompressConfig(n_pe=3, density=0.5)).image
    xq = quantize(rng.uniform(-1, 1, size=(2, 9)), image.act_frac)
    return model, image, xq


@pytest.mark.parametrize("kw, message", [
    ({"fifo_depth": 0}, "fifo_depth 0 is out of range: the hardware takes an integer from 1 to "
                        "4096"),
    ({"fifo_depth": -3}, "fifo_depth -3 is out of range"),
    ({"fifo_depth": 2.5}, "fifo_depth 2.5 is out of range"),
    ({"fifo_depth": "8"}, "fifo_depth '8' is out of range"),
    ({"fifo_depth": 8, "ptr_queue_depth": 0}, "ptr_queue_depth 0 is out of range: the hardware "
                                              "takes an integer from 2 to 64"),
    ({"fifo_depth": 8, "ptr_queue_depth": -1}, "ptr_queue_depth -1 is out of range"),
    ({"fifo_depth": 8, "ptr_queue_depth": 65}, "ptr_queue_depth 65 is out of range"),
])
def test_cycle_model_refuses_designs_that_cannot_exist(small, kw, message):
    """fifo_depth=0 spun forever and ptr_queue_depth=-1 or 0 gave cycle counts; the command
    line refused both through EIEConfig's limits, which the library now applies too."""
    _, image, xq = small
    with pytest.raises(EieError) as e:
        predict_counters(image, xq, **kw)
    assert message in str(e.value)


def test_cycle_model_at_the_limits_runs_and_agrees_with_its_default(small):
    _, image, xq = small
    lo = predict_counters(image, xq, fifo_depth=1, ptr_queue_depth=2)
    hi = predict_counters(image, xq, fifo_depth=4096, ptr_queue_depth=64)
    assert all(p.cycles >= q.cycles for a, b in zip(lo, hi) for p, q in zip(a, b))
    with pytest.raises(EieError, match="layer_inputs has 1 arrays but the image has 2 layers"):
        predict_counters(image, xq, fifo_depth=8, layer_inputs=[xq])


def test_paths_and_wrong_objects_say_what_to_give(small, tmp_path):
    model, image, xq = small
    with pytest.raises(EieError, match=r"image 'img' is a path: read it first"):
        golden_forward("img", xq)
    with pytest.raises(EieError, match=r"image 'img' is a path"):
        predict_counters("img", xq, fifo_depth=8)
    with pytest.raises(EieError, match=r"image is dict, not an eie.sw.image.Image"):
        golden_forward({}, xq)
    with pytest.raises(EieError, match=r"model 'm.npz' is a path: load it first"):
        compress_model("m.npz", CompressConfig(n_pe=2))
    with pytest.raises(EieError, match=r"layer 0 is ndarray, not a FloatLayer"):
        compress_model([np.ones((3, 2)), np.ones((1, 3))], CompressConfig(n_pe=2))
    with pytest.raises(EieError, match=r"config is dict, not a CompressConfig"):
        compress_model(model, {"n_pe": 4})
    with pytest.raises(EieError, match=r"calibration 'x.npy' is a path"):
        CompressConfig(n_pe=2, calibration="x.npy")


def test_densities_are_numbers_checked_when_the_config_is_made():
    """A density given as text was read one character per layer ('0', '.', '1'); a negative
    one was refused only at compress_model, unlike every other field."""
    with pytest.raises(EieError, match=r"density '0.1' is text"):
        CompressConfig(n_pe=2, density="0.1")
    with pytest.raises(EieError, match=r"density -0.1 is outside \(0, 1\]"):
        CompressConfig(n_pe=2, density=-0.1)
    with pytest.raises(EieError, match=r"density of layer 1 1.5 is outside \(0, 1\]"):
        CompressConfig(n_pe=2, density=[0.1, 1.5])
    assert CompressConfig(n_pe=2, density=np.float32(0.25)).layer_density(0, 3) == 0.25


def test_float_layer_relu_is_a_flag_and_weights_may_be_lists(small):
    with pytest.raises(EieError, match=r"FloatLayer relu='no': give True or False"):
        FloatLayer(np.ones((2, 2)), relu="no")
    layer = FloatLayer([[0.5, -0.25], [0.125, 1.0]], [0.0, 0.5], relu=np.bool_(False))
    assert isinstance(layer.weight, np.ndarray) and layer.relu is False and layer.n_in == 2
    image = compress_model([layer], CompressConfig(n_pe=1)).image
    y = golden_forward(image, quantize(np.array([[1.0, 1.0]]), image.act_frac)).outputs
    np.testing.assert_array_equal(y, quantize(np.array([[0.25, 1.625]]), image.act_frac))


def test_numpy_integer_accumulator_width_is_taken(small):
    """CompressConfig took np.int64(32) for acc_bits; golden_forward_layers refused it,
    printing np.int64(32) as not an integer in [16, 64]."""
    _, image, xq = small
    layers = image.quant_layers()
    np.testing.assert_array_equal(golden_forward_layers(layers, xq, np.int64(32)),
                                  golden_forward_layers(layers, xq, 32))


def test_bnn_golden_model_given_a_path_says_read_it_first():
    from eie.sw.bnn.golden import golden_forward as bnn_golden

    with pytest.raises(EieError, match=r"image 'bimg' is a path: read it first"):
        bnn_golden("bimg", np.zeros((1, 8), np.uint8))
    with pytest.raises(EieError, match=r"image is dict, not a BNN image"):
        bnn_golden({}, np.zeros((1, 8), np.uint8))
