"""One input loader and one rule set for both cores (eie.sw.inputs): arrays handed to the
libraries and the ``.npy`` files of ``eie golden``, ``eie run``, ``eie bnn golden|run``,
``eie board run`` and ``eie compress --calibrate``. The command-line cases (exit 2, one line,
nothing touched) are in tests/test_hostile_inputs.py."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.sw import inputs

ROOT = Path(__file__).resolve().parent.parent


class _Image:
    n_in, act_frac = 4, 8


def test_activations_rules():
    a = inputs.check_activations(np.array([1, -2, 3, 32767], np.int32), 4)
    assert a.dtype == np.int64 and a.tolist() == [[1, -2, 3, 32767]]          # a batch of one
    with pytest.raises(EieError, match=r"input\[2\] is -32769, outside int16 \[-32768, 32767\]"):
        inputs.check_activations(np.array([0, 0, -32769, 0]), 4)
    with pytest.raises(EieError, match=r"input\[1, 3\] is 40000, outside int16"):
        inputs.check_activations(np.array([[0] * 4, [0, 0, 0, 40000]], np.uint16), 4)
    with pytest.raises(EieError, match=r"has shape \(2, 5\) but the first layer takes 4 inputs "
                                       r"\(expected \(batch, 4\)\)"):
        inputs.check_activations(np.zeros((2, 5), np.int16), 4)
    with pytest.raises(EieError, match="has dtype float64 but the EIE takes int16 fixed point"):
        inputs.check_activations(np.zeros((2, 4)), 4)
    with pytest.raises(EieError, match="has dtype bool"):
        inputs.check_activations(np.zeros((2, 4), bool), 4)
    with pytest.raises(EieError, match="has dtype <U1, not numbers"):
        inputs.check_activations(np.array([["a"] * 4]), 4)
    with pytest.raises(EieError, match="holds Python objects"):
        inputs.check_activations(np.array([[1] * 4], dtype=object), 4)
    assert inputs.check_activations(np.zeros((0, 4), np.int16), 4).shape == (0, 4)
    with pytest.raises(EieError, match=r"holds no samples \(shape \(0, 4\)\)"):
        inputs.check_activations(np.zeros((0, 4), np.int16), 4, allow_empty=False)


def test_bits_rules():
    assert inputs.check_bits(np.array([[True, False, True]]), 3).dtype == np.uint8
    with pytest.raises(EieError, match=r"input\[1\] is 2; bits must be 0 or 1"):
        inputs.check_bits(np.array([0, 2, 1]), 3)
    with pytest.raises(EieError, match=r"input\[1, 0\] is -1; bits must be 0 or 1"):
        inputs.check_bits(np.array([[0, 1, 1], [-1, 0, 0]]), 3)
    with pytest.raises(EieError, match="has dtype float64 but bits are integers 0 or 1"):
        inputs.check_bits(np.ones((1, 3)), 3)
    with pytest.raises(EieError, match=r"\(expected \(batch, 3\) bits\)"):
        inputs.check_bits(np.ones((1, 4), np.uint8), 3)


def test_real_inputs_quantised_and_saturation_warned():
    warned = []
    x = np.array([[0.5, -1.0, 200.0, 1 / 256]])
    q = inputs.eie_input(x, 4, 8, raw=False, warn=warned.append)
    assert q.dtype == np.int16 and q.tolist() == [[128, -256, 32767, 1]]
    assert warned == ["1 inputs beyond +-127.996 saturated to int16 with act_frac 8"]
    with pytest.raises(EieError, match=r"has 2 NaN or infinite values \(the first, \[0, 1\], is "
                                       r"nan\); every input must be finite"):
        inputs.eie_input(np.array([[0, np.nan, np.inf, 0]]), 4, 8, raw=False)
    # integers without --raw: the message says what --raw means (fixed point, 1.0 = 2**act_frac),
    # so that 0..255 pixels are not passed with --raw and read as 0..0.996
    for act_frac in (8, 4):
        with pytest.raises(EieError) as info:
            inputs.eie_input(np.full((1, 4), 255, np.uint8), 4, act_frac, raw=False)
        msg = str(info.value)
        assert msg.startswith("input has dtype uint8 but real-valued float input is expected")
        assert "x / 255" in msg and f"quantised with act_frac {act_frac}" in msg
        assert f"{act_frac} fraction bits (1.0 = {2 ** act_frac})" in msg
        assert "\n" not in msg
    with pytest.raises(EieError, match="--raw expects int16 fixed point .drop --raw to quantise "
                                       "real values with act_frac 8"):
        inputs.eie_input(np.zeros((1, 4)), 4, 8, raw=True)
    assert inputs.eie_input(np.array([[1, 2, 3, 4]], np.int64), 4, 8, raw=True).dtype == np.int16


def test_npy_files(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    np.save(tmp_path / "c.npy", x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    np.save(tmp_path / "v.npy", x[0])
    assert inputs.load_eie_input(tmp_path / "c.npy", _Image, raw=False).tolist() == \
        (x * 256).astype(np.int16).tolist()
    assert np.array_equal(inputs.read_npy(tmp_path / "f.npy", n_in=4), x)
    assert inputs.load_eie_input(tmp_path / "v.npy", _Image, raw=False).shape == (1, 4)
    with pytest.raises(EieError, match=r"^input .*nope.npy does not exist$"):
        inputs.read_npy(tmp_path / "nope.npy", n_in=4)
    (tmp_path / "garbage.npy").write_bytes(b"garbage")
    with pytest.raises(EieError, match="is not a readable .npy array"):
        inputs.read_npy(tmp_path / "garbage.npy", n_in=4)
    np.savez(tmp_path / "z.npz", x=x)
    with pytest.raises(EieError, match="is a .npz archive, not a .npy array"):
        inputs.read_npy(tmp_path / "z.npz", n_in=4)
    data = (tmp_path / "c.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data[:-3])
    with pytest.raises(EieError, match="the file ends early"):
        inputs.read_npy(tmp_path / "short.npy", n_in=4)
    (tmp_path / "long.npy").write_bytes(data + b"\0")
    with pytest.raises(EieError, match=r"holds 1 bytes after its \(3, 4\) array"):
        inputs.read_npy(tmp_path / "long.npy", n_in=4)


def test_too_big_for_the_command(tmp_path, monkeypatch):
    """At most MAX_INPUT_BYTES of samples are read; a command that uses only the first samples
    (--calibrate) reads only those, and checks only those."""
    x = np.ones((100, 4))
    x[90, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    monkeypatch.setattr(inputs, "MAX_INPUT_BYTES", 1000)
    with pytest.raises(EieError, match=r"holds 3.1 KiB of samples \(100 x 4 float64\), more than "
                                       r"the 1000 B an input may have; split the batch into files "
                                       r"of at most 31 samples"):
        inputs.read_npy(tmp_path / "x.npy", n_in=4)
    cal = inputs.load_calibration(tmp_path / "x.npy", 4, max_samples=10)
    assert cal.shape == (10, 4) and cal.dtype == np.float64
    monkeypatch.setattr(inputs, "MAX_INPUT_BYTES", 1 << 20)
    with pytest.raises(EieError, match=r"--calibrate .*x.npy has 1 NaN or infinite values"):
        inputs.load_calibration(tmp_path / "x.npy", 4, max_samples=100)


def test_one_loader():
    """No command loads or checks an input itself: every one goes through eie.sw.inputs (the
    copies in cmd_bnn, cmd_board, cmd_compress and cmd_rtl are gone)."""
    for path in sorted((ROOT / "app").glob("*.py")):
        tree = ast.parse(path.read_text())
        calls = {(n.func.value.id, n.func.attr) for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                 and isinstance(n.func.value, ast.Name)}
        assert ("np", "load") not in calls, path.name
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not names & {"_load_npy", "_load_bits", "_load_calibration", "_load_input",
                            "_eie_input"}, path.name
    from eie.sw import golden
    from eie.sw.bnn import float_model

    assert float_model.check_bits is inputs.check_bits
    with pytest.raises(EieError, match=r"input\[0, 0\] is 40000, outside int16"):
        golden.check_input(np.array([[40000]]), 1)
