"""Model import: .npz layout, PyTorch state_dict path (with and without torch), bad models."""

import sys
import types
from collections import OrderedDict

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.sw.model_io import FloatLayer, FloatModel, layers_from_state_dict, load_model, save_model


def _mlp(sizes=(6, 5, 4, 3), seed=0, bias=True):
    rng = np.random.default_rng(seed)
    arrays = {}
    for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        arrays[f"W{l}"] = rng.standard_normal((o, i)).astype(np.float32)
        if bias:
            arrays[f"b{l}"] = rng.standard_normal(o).astype(np.float32)
    return arrays


def test_npz_roundtrip_and_forward(tmp_path):
    arrays = _mlp()
    del arrays["b1"]  # biases are optional per layer
    p = tmp_path / "m.npz"
    np.savez(p, **arrays)
    m = load_model(p)
    assert [l.weight.shape for l in m.layers] == [(5, 6), (4, 5), (3, 4)]
    assert [l.relu for l in m.layers] == [True, True, False]
    assert m.layers[1].bias is None and m.n_in == 6 and m.n_out == 3
    x = np.random.default_rng(1).standard_normal((2, 6))
    h = x
    for l in range(3):
        h = h @ arrays[f"W{l}"].T.astype(np.float64) + (arrays[f"b{l}"] if f"b{l}" in arrays else 0)
        h = np.maximum(h, 0) if l < 2 else h
    np.testing.assert_allclose(m.forward(x), h, rtol=1e-12)
    q = tmp_path / "out" / "copy.npz"
    save_model(m, q)
    m2 = load_model(q)
    for a, b in zip(m.layers, m2.layers):
        assert np.array_equal(a.weight, b.weight) and a.relu == b.relu
        assert (a.bias is None) == (b.bias is None)


def test_npz_relu_override(tmp_path):
    arrays = _mlp()
    arrays["relu"] = np.array([False, True, True])
    np.savez(tmp_path / "m.npz", **arrays)
    assert [l.relu for l in load_model(tmp_path / "m.npz").layers] == [False, True, True]
    arrays["relu"] = np.array([1, 0, 1], np.int64)        # integers 0 and 1 are bools
    np.savez(tmp_path / "m.npz", **arrays)
    assert [l.relu for l in load_model(tmp_path / "m.npz").layers] == [True, False, True]
    arrays["relu"] = np.array([True])
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(EieError, match="relu has 1 entries but the model has 3 layers"):
        load_model(tmp_path / "bad.npz")
    # anything else was read as True entry by entry ("no" and NaN included): refused
    for relu, message in ((np.array(["no", "no", "no"]), "relu has dtype <U2"),
                          (np.array([1.0, np.nan, 0.0]), "relu has dtype float64"),
                          (np.array([0, -1, 1]), r"relu\[1\] is -1, not 0 or 1")):
        arrays["relu"] = relu
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(EieError, match=message):
            load_model(tmp_path / "bad.npz")


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.__setitem__("W1", np.ones((4, 7), np.float32)),
     "layer 1 takes 7 inputs but layer 0 gives 5 outputs"),
    (lambda a: a["W0"].__setitem__((0, 0), np.nan), "layer 0 weight has 1 NaN or infinite"),
    (lambda a: a["W2"].__setitem__((1, 1), np.inf), "layer 2 weight has 1 NaN or infinite"),
    (lambda a: a["b1"].__setitem__(0, np.nan), "layer 1 bias has 1 NaN"),
    (lambda a: a.__setitem__("b0", np.ones(3)), r"bias has shape \(3,\) but the layer has 5 outputs"),
    (lambda a: a.pop("W1"), "W1 is missing"),
    (lambda a: a.__setitem__("foo", np.ones(1)), "unexpected array 'foo'"),
    (lambda a: a.__setitem__("W0", np.ones(5)), "expected 2-D"),
    (lambda a: a.__setitem__("b7", np.ones(5)), "b7 has no matching W7"),
    (lambda a: a.__setitem__("b1", np.array(["x"] * 4)), "layer 1 bias has dtype <U1"),
    (lambda a: a.__setitem__("b2", a["b2"] * 1j), "layer 2 bias has dtype complex"),
    (lambda a: a.__setitem__("W01", a["W1"]), "W1 and W01 are both layer 1's weight"),
    (lambda a: a.__setitem__("b00", a["b0"]), "b0 and b00 are both layer 0's bias"),
    (lambda a: a.__setitem__("W5", np.ones((2, 3))), r"W3 is missing \(the archive has 4 weight "
                                                     r"arrays, up to W5"),
    (lambda a: a.__setitem__("W\u0663", np.ones((2, 3))), "unexpected array"),   # not 0-9
])
def test_npz_bad_models(tmp_path, mutate, message):
    arrays = _mlp()
    mutate(arrays)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(EieError, match=message):
        load_model(tmp_path / "m.npz")


_HUGE = "7" * 5000     # a layer number of 5,000 digits: too long for int(), and for a message


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.__setitem__("W" + _HUGE, np.ones((2, 3))),
     r"W3 is missing \(the archive has 4 weight arrays, up to W77777777777\.\.\. "
     r"\(5001 characters\); layers must be W0\.\.W3"),
    (lambda a: a.__setitem__("b" + _HUGE, np.ones(3)),
     r"b77777777777\.\.\. \(5001 characters\) has no matching W77777777777\.\.\. "
     r"\(5001 characters\) \(the model has 3 layers\)"),
    (lambda a: (a.__setitem__("W" + _HUGE, np.ones((2, 3))),
                a.__setitem__("W0" + _HUGE, np.ones((2, 3)))),
     r"W77777777777\.\.\. \(5001 characters\) and W07777777777\.\.\. \(5002 characters\) "
     r"are both layer 777777777777\.\.\. \(5000 characters\)'s weight"),
    (lambda a: a.__setitem__("x" * 5000, np.ones(1)),
     r"unexpected array 'xxxxxxxxxxxx\.\.\. \(5000 characters\)' \(expected W0"),
])
def test_npz_huge_keys_shortened_in_messages(tmp_path, mutate, message):
    # a key of thousands of characters is named by its first 12 and its length: the one-line
    # error stays short (it was printed in full, 5,000 digits and more)
    arrays = _mlp()
    mutate(arrays)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(EieError, match=message) as info:
        load_model(tmp_path / "m.npz")
    assert len(str(info.value)) < 300 + len(str(tmp_path))


def test_npz_keys_helpers():
    from eie.sw.npz_keys import beyond, by_number, canonical_number, layer_key_pattern, shown_key

    assert sorted(["W10", "W9", "W" + _HUGE, "W100"], key=by_number) == [
        "W9", "W10", "W100", "W" + _HUGE]
    assert [canonical_number(d) for d in ("0", "00", "007", "70")] == ["0", "0", "7", "70"]
    assert beyond("W" + _HUGE, "W", 3) and beyond("W3", "W", 3) and beyond("W003", "W", 3)
    assert not beyond("W2", "W", 3) and not beyond("W", "W", 0) and not beyond("T5", "W", 3)
    assert not beyond("W\u0663", "W", 0) and not beyond("alpha1", "W", 0)
    assert shown_key("W" * 24) == "W" * 24
    assert shown_key("W" + _HUGE) == "W77777777777... (5001 characters)"
    pattern = layer_key_pattern("W", "b")
    assert pattern.match("b12").groups() == ("b", "12")
    assert not pattern.match("W\u0663") and not pattern.match("Wb1") and not pattern.match("W")


def test_no_layers_missing_and_corrupt(tmp_path):
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(EieError, match="has no layers"):
        load_model(tmp_path / "empty.npz")
    with pytest.raises(EieError, match="does not exist"):
        load_model(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(EieError, match="not a readable .npz"):
        load_model(tmp_path / "junk.npz")
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(EieError, match="extension '.onnx'"):
        load_model(tmp_path / "m.onnx")


def test_torch_missing_gives_install_hint(tmp_path, monkeypatch):
    p = tmp_path / "m.pt"
    p.write_bytes(b"\x80\x02}q\x00.")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(EieError, match=r"PyTorch is not installed \(pip install torch"):
        load_model(p)


class _FakeTensor:
    """Just enough of a torch.Tensor for the importer."""

    def __init__(self, a):
        self.a = np.asarray(a)

    def detach(self):
        return self

    def cpu(self):
        return self

    def float(self):
        return _FakeTensor(self.a.astype(np.float32))

    def numpy(self):
        return self.a


def test_torch_state_dict_with_fake_torch(tmp_path, monkeypatch):
    arrays = _mlp(seed=3)
    state = OrderedDict()
    # nn.Sequential(Linear, ReLU, Linear, ReLU, Linear): keys 0.*, 2.*, 4.*; layer 1 without bias.
    for l, idx in enumerate((0, 2, 4)):
        state[f"{idx}.weight"] = _FakeTensor(arrays[f"W{l}"])
        if l != 1:
            state[f"{idx}.bias"] = _FakeTensor(arrays[f"b{l}"])
    fake = types.ModuleType("torch")
    calls = []

    def load(path, map_location=None, weights_only=None):
        calls.append((path, map_location, weights_only))
        return state

    fake.load = load
    monkeypatch.setitem(sys.modules, "torch", fake)
    p = tmp_path / "m.pth"
    p.write_bytes(b"placeholder")
    m = load_model(p)
    assert calls == [(str(p), "cpu", True)]
    assert [l.relu for l in m.layers] == [True, True, False]
    for l, layer in enumerate(m.layers):
        assert np.array_equal(layer.weight, arrays[f"W{l}"])
    assert m.layers[1].bias is None and np.array_equal(m.layers[2].bias, arrays["b2"])


def test_state_dict_rejects_non_linear():
    state = OrderedDict([("conv.weight", np.ones((4, 3, 3, 3))), ("fc.weight", np.ones((2, 4)))])
    with pytest.raises(EieError, match="'conv.weight' with shape \\(4, 3, 3, 3\\) is not"):
        layers_from_state_dict(state)
    state = OrderedDict([("bn.running_mean", np.ones(4))])
    with pytest.raises(EieError, match="running_mean"):
        layers_from_state_dict(state)


def test_save_model_validates(tmp_path):
    with pytest.raises(EieError, match="no layers"):
        save_model(FloatModel(layers=[]), tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
    save_model([FloatLayer(np.ones((2, 3)))], tmp_path / "y.npz")
    assert load_model(tmp_path / "y.npz").layers[0].weight.shape == (2, 3)


def test_torch_load_failure_is_one_line(tmp_path, monkeypatch):
    fake = types.ModuleType("torch")

    def load(path, map_location=None, weights_only=None):
        raise RuntimeError("Weights only load failed.\nlong explanation\nmore lines")

    fake.load = load
    monkeypatch.setitem(sys.modules, "torch", fake)
    p = tmp_path / "m.pt"
    p.write_bytes(b"x")
    with pytest.raises(EieError) as info:
        load_model(p)
    msg = str(info.value)
    assert "\n" not in msg and "Weights only load failed." in msg and "state_dict()" in msg
