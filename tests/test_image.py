"""Image directories: round trip, the on-disk format, validation of corrupt images, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import eie.sw.image as image_mod
from eie.sw.encode import QuantLayer, build_image
from eie.sw.golden import golden_forward, golden_forward_layers
from eie.common.errors import EieError
from eie.sw.image import FORMAT_VERSION, Image, read_image, write_image


def make_layers(seed: int = 0, with_bias: bool = True) -> list[QuantLayer]:
    rng = np.random.default_rng(seed)
    shapes = [(29, 11), (7, 29), (10, 7)]
    layers = []
    for l, (n_out, n_in) in enumerate(shapes):
        codes = np.where(rng.random((n_out, n_in)) < 0.35, rng.integers(1, 16, (n_out, n_in)), 0)
        cb = np.concatenate([[0], rng.integers(-2000, 2000, 15)])
        bias = rng.integers(-300, 300, n_out) if with_bias and l != 1 else None
        layers.append(QuantLayer(codes=codes.astype(np.uint8), codebook=cb, w_frac=9 + l,
                                 bias=bias, relu=l < 2))
    return layers


@pytest.fixture
def img() -> Image:
    return build_image(make_layers(), n_pe=4, act_frac=7, acc_bits=24)


def assert_same(a: Image, b: Image) -> None:
    assert (a.n_pe, a.act_frac, a.acc_bits) == (b.n_pe, b.act_frac, b.acc_bits)
    assert a.layers == b.layers
    for k in range(a.n_pe):
        np.testing.assert_array_equal(a.ptr[k], b.ptr[k])
        np.testing.assert_array_equal(a.spmat[k], b.spmat[k])
        assert a.ptr[k].dtype == b.ptr[k].dtype == np.uint32
        assert a.spmat[k].dtype == b.spmat[k].dtype == np.uint64
    assert (a.bias is None) == (b.bias is None)
    if a.bias is not None:
        for k in range(a.n_pe):
            np.testing.assert_array_equal(a.bias[k], b.bias[k])
            assert b.bias[k].dtype == np.int16


def test_round_trip(img, tmp_path):
    write_image(img, tmp_path / "img")
    back = read_image(tmp_path / "img")
    assert_same(img, back)
    layers = make_layers()
    for l, q in enumerate(layers):
        r = back.quant_layer(l)
        np.testing.assert_array_equal(r.codes, q.codes)
        np.testing.assert_array_equal(r.codebook, q.codebook)
        assert (r.w_frac, r.relu) == (q.w_frac, q.relu)
        if q.bias is None:
            assert r.bias is None
        else:
            np.testing.assert_array_equal(r.bias, q.bias)
    assert back.n_in == 11 and back.n_out == 10


def test_round_trip_without_bias(tmp_path):
    img = build_image(make_layers(1, with_bias=False), n_pe=3)
    write_image(img, tmp_path / "i")
    assert not list(tmp_path.glob("i/*bias*"))
    assert_same(img, read_image(tmp_path / "i"))


def test_files_follow_the_contract(img, tmp_path):
    """Parse the files with plain Python, as a user without this project would."""
    d = tmp_path / "img"
    write_image(img, d)
    man = json.loads((d / "manifest.json").read_text())
    # an interleaved image is written as version 1, which readers before row_order take
    assert man["format_version"] == 1 and not img.balanced
    assert all("row_order" not in L for L in man["layers"])
    assert (man["n_pe"], man["act_frac"], man["acc_bits"]) == (4, 7, 24)
    for key in ("n_in", "n_out", "w_frac", "relu", "codebook", "ptr_base", "entry_base",
                "bias_base", "has_bias", "stats"):
        assert all(key in lj for lj in man["layers"])
    assert [lj["ptr_base"] for lj in man["layers"]] == [0, 12, 42]
    assert [lj["has_bias"] for lj in man["layers"]] == [True, False, True]
    assert [lj["bias_base"] for lj in man["layers"]][0::2] == [0, 8]   # ceil(29 / 4) = 8 slots
    for k in range(4):
        ptr_lines = (d / f"pe{k}_ptr.hex").read_text().splitlines()
        sp_lines = (d / f"pe{k}_spmat.hex").read_text().splitlines()
        b_lines = (d / f"pe{k}_bias.hex").read_text().splitlines()
        assert len(ptr_lines) == 12 + 30 + 8
        assert all(len(s) == 8 for s in ptr_lines)
        assert all(len(s) == 16 for s in sp_lines)
        assert len(b_lines) == 8 + 3 and all(len(s) == 4 for s in b_lines)
        # two's complement bias
        vals = [int(s, 16) - (0x10000 if int(s, 16) >= 0x8000 else 0) for s in b_lines]
        assert vals == img.bias[k].tolist()
        assert [int(s, 16) for s in ptr_lines] == img.ptr[k].tolist()
        assert [int(s, 16) for s in sp_lines] == [int(w) for w in img.spmat[k]]
    for lj in man["layers"]:
        assert lj["entry_base"] % 8 == 0
        assert lj["stats"]["entries"] == sum(lj["stats"]["entries_per_pe"])


def test_overwrite_replaces(img, tmp_path):
    d = tmp_path / "img"
    write_image(build_image(make_layers(5), n_pe=7), d)
    write_image(img, d)
    assert not (d / "pe6_ptr.hex").exists()
    assert_same(img, read_image(d))


# --------------------------------------------------------------------- corruption

def _write(img, tmp_path) -> Path:
    d = tmp_path / "img"
    write_image(img, d)
    return d


def _edit_manifest(d: Path, fn) -> None:
    man = json.loads((d / "manifest.json").read_text())
    fn(man)
    (d / "manifest.json").write_text(json.dumps(man))


def _edit_lines(path: Path, fn) -> None:
    lines = path.read_text().splitlines()
    fn(lines)
    path.write_text("".join(s + "\n" for s in lines))


def _set(key, value, layer=None):
    def fn(man):
        (man if layer is None else man["layers"][layer])[key] = value
    return fn


def _del(key, layer=None):
    def fn(man):
        del (man if layer is None else man["layers"][layer])[key]
    return fn


@pytest.mark.parametrize("edit,match", [
    (_set("format_version", 99), "'format_version' is 99; this eie reads versions 1, 2"),
    (_del("n_pe"), "'n_pe'"),
    (_set("n_pe", "4"), r"'n_pe' must be an integer in \[1, 4096\], got the string '4'"),
    (_set("n_pe", 5), "'bias_words' is 11 but the layers' bias slots per PE with n_pe=5 are 8"),
    (_set("n_pe", 3), "'bias_words' is 11 but .* 14"),
    (_set("act_frac", 16), r"'act_frac' must be an integer in \[0, 15\], got 16"),
    (_set("acc_bits", 8), r"'acc_bits' must be an integer in \[16, 64\], got 8"),
    (_set("layers", []), "'layers' is empty: the image has no layers"),
    (_set("ptr_base", 5, 1), "ptr_base is 5 but the contract puts it at 12"),
    (_set("entry_base", 0, 1), "entry_base is 0"),
    (_set("bias_base", 1, 2), "bias_base is 1"),
    (_set("n_in", 12, 1), "takes 12 inputs"),
    (_set("codebook", [1] + [0] * 15, 0), r"codebook\[0\] must be 0"),
    (_set("codebook", [0] * 15, 0), r"'layers\[0\].codebook' must be a list of 16 integers"),
    (_set("w_frac", 31, 0), r"'layers\[0\].w_frac' must be an integer in \[0, 30\]"),
    (_set("has_bias", False, 0), "'bias_words' is 11 but .* 3"),
    (_set("relu", 1, 0), r"'layers\[0\].relu' must be true or false, got 1"),
    (_set("spmat_words", 1), "pe0_spmat.hex has"),
    (lambda m: (m.pop("bias_words"), m.__setitem__("n_pe", 3)), "pe0_bias.hex has 11 values"),
])
def test_corrupt_manifest(img, tmp_path, edit, match):
    d = _write(img, tmp_path)
    _edit_manifest(d, edit)
    with pytest.raises(EieError, match=match):
        read_image(d)


def test_stats_must_match(img, tmp_path):
    d = _write(img, tmp_path)

    def fn(man):
        man["layers"][0]["stats"]["entries_per_pe"][0] += 1
    _edit_manifest(d, fn)
    with pytest.raises(EieError, match="entries_per_pe"):
        read_image(d)


def test_missing_and_unreadable(img, tmp_path):
    with pytest.raises(EieError, match="does not exist"):
        read_image(tmp_path / "nope")
    d = _write(img, tmp_path)
    (d / "pe2_spmat.hex").unlink()
    with pytest.raises(EieError, match="pe2_spmat.hex is missing"):
        read_image(d)
    d2 = tmp_path / "img2"
    write_image(img, d2)
    (d2 / "pe1_bias.hex").unlink()
    with pytest.raises(EieError, match="pe1_bias.hex is missing"):
        read_image(d2)
    (d2 / "manifest.json").write_text("{not json")
    with pytest.raises(EieError, match="manifest.json .* not valid JSON"):
        read_image(d2)
    (d2 / "manifest.json").unlink()
    with pytest.raises(EieError, match="manifest.json is missing"):
        read_image(d2)


@pytest.mark.parametrize("fname,edit,match", [
    ("pe1_ptr.hex", lambda ls: ls.pop(),
     r"pe1_ptr.hex has 49 values but the manifest's layers need 50 \(the file ends early\)"),
    ("pe1_ptr.hex", lambda ls: ls.append("0"),
     r"pe1_ptr.hex has 51 values .*\(line 51 holds value 51, one too many\)"),
    ("pe0_ptr.hex", lambda ls: ls.__setitem__(3, "xyz"), "pe0_ptr.hex line 4: 'xyz'"),
    ("pe0_ptr.hex", lambda ls: ls.__setitem__(3, "123456789"), "at most 8 digits"),
    ("pe0_ptr.hex", lambda ls: ls.__setitem__(0, "00000001"), "first pointer"),
    ("pe3_ptr.hex", lambda ls: ls.__setitem__(5, "00000000"), "decrease"),
    ("pe2_spmat.hex", lambda ls: ls.__setitem__(0, "g" * 16), "pe2_spmat.hex line 1"),
    ("pe2_spmat.hex", lambda ls: ls.pop(), "pe2_spmat.hex has"),
    ("pe0_bias.hex", lambda ls: ls.__setitem__(0, "12345"), "pe0_bias.hex line 1"),
    ("pe3_bias.hex", lambda ls: ls.__setitem__(7, "0001"), "unused bias slots must be 0"),
])
def test_corrupt_files(img, tmp_path, fname, edit, match):
    d = _write(img, tmp_path)
    _edit_lines(d / fname, edit)
    with pytest.raises(EieError, match=match):
        read_image(d)


def test_entry_beyond_rows(tmp_path):
    # one PE, 3 rows, one entry; rewrite the entry's z so it lands on row 3 (past the end)
    q = QuantLayer(codes=np.array([[2], [0], [0]], np.uint8),
                   codebook=np.arange(16) * 3, w_frac=0, relu=False)
    d = _write(build_image([q], 1), tmp_path)
    assert (d / "pe0_spmat.hex").read_text() == "0000000000000002\n"
    (d / "pe0_spmat.hex").write_text("0000000000000032\n")
    with pytest.raises(EieError, match="local row 3 but the PE owns 3 rows"):
        read_image(d)


def test_comments_and_blank_lines_are_ignored(img, tmp_path):
    d = _write(img, tmp_path)
    _edit_lines(d / "pe0_ptr.hex", lambda ls: ls.insert(2, "// a comment") or ls.append(""))
    assert_same(img, read_image(d))


# --------------------------------------------------------------------- atomicity

def test_failed_write_leaves_nothing(img, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = image_mod.write_hex

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(image_mod, "write_hex", failing)
    with pytest.raises(OSError, match="disk full"):
        write_image(img, tmp_path / "img")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old_image(img, tmp_path, monkeypatch):
    d = tmp_path / "img"
    old = build_image(make_layers(9), n_pe=2)
    write_image(old, d)

    def failing(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(image_mod.np, "savez_compressed", failing)
    with pytest.raises(OSError):
        write_image(img, d)
    assert [p.name for p in tmp_path.iterdir()] == ["img"]
    assert_same(old, read_image(d))


def test_invalid_image_is_not_written(img, tmp_path):
    img.layers[1].ptr_base = 3
    with pytest.raises(EieError, match="ptr_base"):
        write_image(img, tmp_path / "img")
    assert not (tmp_path / "img").exists()


def test_write_over_a_file(img, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(EieError, match="not a directory"):
        write_image(img, tmp_path / "f")
    assert (tmp_path / "f").read_text() == "x"


def test_accessor_errors(img):
    with pytest.raises(IndexError):
        img.layer_pointers(3, 0)
    with pytest.raises(IndexError):
        img.layer_entries(0, 4)
    assert img.layer_bias(1) is None


def test_documented_example(tmp_path):
    """The complete example of docs/image-format.md, files derived by hand there."""
    codes = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 0], [3, 0, 4], [0, 0, 0], [0, 5, 0]], np.uint8)
    cb = np.array([0, 64, -32, 128, -128, 16] + [0] * 10)
    q = QuantLayer(codes, cb, 6, np.array([1, -2, 3, -4, 5, -6]), True)
    d = tmp_path / "img"
    write_image(build_image([q], 2), d)
    files = {p.name: p.read_text().split() for p in d.glob("*.hex")}
    assert files == {
        "pe0_ptr.hex": ["00000000", "00000001", "00000001", "00000001"],
        "pe0_spmat.hex": ["0000000000000001"],
        "pe0_bias.hex": ["0001", "0003", "0005"],
        "pe1_ptr.hex": ["00000000", "00000001", "00000003", "00000004"],
        "pe1_spmat.hex": ["0000000014150213"],
        "pe1_bias.hex": ["fffe", "fffc", "fffa"],
    }


def test_more_pes_than_outputs_and_empty_memories(tmp_path):
    q0 = QuantLayer(np.array([[1, 2, 0], [0, 0, 3]], np.uint8), np.arange(16), 2,
                    np.array([-5, 7]), True)
    qz = QuantLayer(np.zeros((4, 2), np.uint8), np.arange(16), 0, None, False)
    img = build_image([q0, qz], 5)
    assert [b.tolist() for b in img.bias] == [[-5], [7], [0], [0], [0]]
    write_image(img, tmp_path / "a")
    assert_same(img, read_image(tmp_path / "a"))
    z = build_image([qz], 2)
    assert z.spmat_words == 0
    write_image(z, tmp_path / "z")
    assert (tmp_path / "z" / "pe1_spmat.hex").read_text() == ""
    assert_same(z, read_image(tmp_path / "z"))


def test_numpy_values_in_stats_are_written(img, tmp_path):
    img.layers[0].stats["extra"] = {"n": np.int64(3), "v": np.arange(3), "f": np.float32(0.5)}
    write_image(img, tmp_path / "img")
    man = json.loads((tmp_path / "img" / "manifest.json").read_text())
    assert man["layers"][0]["stats"]["extra"] == {"n": 3, "v": [0, 1, 2], "f": 0.5}


def test_refuses_to_replace_a_non_image_directory(img, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "precious.txt").write_text("keep me")
    with pytest.raises(EieError, match="is not empty and is not an EIE image written by eie"):
        write_image(img, d)
    assert (d / "precious.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    write_image(img, empty)                          # an empty directory is fine
    assert_same(img, read_image(empty))


# ----------------------------------------------------------------------------- balanced placement

def _uneven_layers(seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for n_out, n_in, relu in ((23, 17, True), (13, 23, True), (7, 13, False)):
        dens = np.clip(0.3 * rng.lognormal(0, 0.9, n_out), 0, 1)
        codes = (rng.random((n_out, n_in)) < dens[:, None]) * rng.integers(1, 16, (n_out, n_in))
        codes[rng.integers(0, n_out)] = 0
        out.append(QuantLayer(codes=codes.astype(np.uint8),
                              codebook=np.concatenate([[0], rng.integers(-300, 300, 15)]),
                              w_frac=7, bias=rng.integers(-900, 900, n_out), relu=relu))
    return out


def test_balanced_image_round_trip_and_model_order(tmp_path):
    layers = _uneven_layers()
    img = build_image(layers, n_pe=4, balance=True)
    assert img.balanced
    for l, d in enumerate(img.layers):
        assert sorted(d.row_order) == list(range(d.n_out))
    write_image(img, tmp_path / "b")
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    # rows placed and the first layer's inputs shuffled: version 3
    assert FORMAT_VERSION == 3 and man["format_version"] == 3 and img.format_version == 3
    assert [L["row_order"] for L in man["layers"]] == [d.row_order for d in img.layers]
    assert man["layers"][0]["input_order"] == img.layers[0].input_order
    assert sorted(img.layers[0].input_order) == list(range(layers[0].n_in))
    assert img.layers[0].input_order != list(range(layers[0].n_in))
    assert all("input_order" not in L for L in man["layers"][1:])
    back = read_image(tmp_path / "b")
    assert_same(img, back)
    # the placement undone gives the layers the image was built from
    for q, m in zip(layers, back.model_layers()):
        np.testing.assert_array_equal(q.codes, m.codes)
        np.testing.assert_array_equal(q.bias, m.bias)
    # the stored rows are the model's rows at the recorded positions
    for l, q in enumerate(layers):
        order = np.array(img.layers[l].row_order)
        in_order = np.array(img.layers[l - 1].row_order) if l else img.input_order()
        np.testing.assert_array_equal(img.layer_codes(l), q.codes[np.ix_(order, in_order)])


def test_input_order_first_round_not_all_zero_and_golden_undoes_it():
    # inputs 0..9 never carry weights (an image's zero border), 10..29 do
    rng = np.random.default_rng(21)
    codes = np.zeros((12, 30), np.uint8)
    codes[:, 10:] = (rng.random((12, 20)) < 0.6) * rng.integers(1, 16, (12, 20))
    codes[:, 12] = 0                                          # a dead input inside
    layers = [QuantLayer(codes=codes, codebook=np.arange(16) * 7, w_frac=4, bias=None,
                         relu=False)]
    img = build_image(layers, n_pe=4, balance=True)
    order = np.array(img.layers[0].input_order)
    # inputs without weights go last, in the model's order; the rest shuffled, the same on
    # every build
    live = [j for j in range(30) if j >= 10 and j != 12]
    assert sorted(order[:len(live)].tolist()) == live and order[:len(live)].tolist() != live
    assert order[len(live):].tolist() == [j for j in range(30) if j not in live]
    assert build_image(layers, n_pe=4, balance=True).layers[0].input_order == order.tolist()
    # with calibration: the first round (positions 0..3) would be all zero on some sample, so
    # the 4 inputs most often nonzero lead (29 always, 3 on 2 samples; then by weights)
    calib = np.zeros((5, 30), np.int16)
    calib[:, 29] = 256
    calib[:2, 3] = 256
    first = build_image(layers, n_pe=4, balance=True, calibration=calib).layers[0].input_order[:4]
    assert {3, 29} <= set(first) and first == sorted(first)
    # ... but not when the first round already has a nonzero on every sample (dense inputs:
    # the shuffled order is kept, no burst of heavy columns)
    dense = np.zeros((6, 30), np.int16)
    dense[1:, order[0]] = 256       # (sample 0 is all zero: nothing to broadcast, not counted)
    kept = build_image(layers, n_pe=4, balance=True, calibration=dense).layers[0].input_order
    assert kept == order.tolist()
    # the host writes x at the positions; the golden model's outputs are the model's
    x = rng.integers(-300, 300, (6, 30)).astype(np.int16)
    g = golden_forward(img, x)
    np.testing.assert_array_equal(g.inputs, x[:, order])
    np.testing.assert_array_equal(g.outputs, golden_forward_layers(layers, x))
    np.testing.assert_array_equal(img.to_positions(x), x[:, order])
    # no placement: no input order, format version 1
    plain = build_image(layers, n_pe=4)
    assert plain.layers[0].input_order is None and plain.format_version == 1
    np.testing.assert_array_equal(plain.to_positions(x), x)


@pytest.mark.parametrize("bad", [[0] * 30, list(range(29)), list(range(31)),
                                 list(range(29)) + ["29"]])
def test_input_order_must_be_a_permutation(tmp_path, bad):
    rng = np.random.default_rng(2)
    codes = ((rng.random((12, 30)) < 0.4) * rng.integers(1, 16, (12, 30))).astype(np.uint8)
    img = build_image([QuantLayer(codes=codes, codebook=np.arange(16), w_frac=4, bias=None,
                                  relu=False)], n_pe=4, balance=True)
    write_image(img, tmp_path / "i")
    man_path = tmp_path / "i" / "manifest.json"
    man = json.loads(man_path.read_text())
    man["layers"][0]["input_order"] = bad
    man_path.write_text(json.dumps(man))
    with pytest.raises(EieError, match="input_order"):
        read_image(tmp_path / "i")


def test_input_order_needs_version_3_and_the_first_layer(tmp_path):
    layers = _uneven_layers()
    layers[0].codes[:, :3] = 0                                # dead inputs: an input_order
    img = build_image(layers, n_pe=4, balance=True)
    assert img.format_version == 3
    write_image(img, tmp_path / "v")
    man_path = tmp_path / "v" / "manifest.json"
    man = json.loads(man_path.read_text())
    man["format_version"] = 2
    man_path.write_text(json.dumps(man))
    with pytest.raises(EieError, match="format_version is 2"):
        read_image(tmp_path / "v")
    man["format_version"] = 3
    man["layers"][1]["input_order"] = list(range(man["layers"][1]["n_in"]))
    man_path.write_text(json.dumps(man))
    with pytest.raises(EieError, match="only the first layer"):
        read_image(tmp_path / "v")


def test_balance_evens_out_the_pes():
    layers = _uneven_layers(5)
    plain = build_image(layers, n_pe=4)
    bal = build_image(layers, n_pe=4, balance=True)
    for l in range(2):   # the last layer has 7 rows on 4 PEs: little to move
        assert max(bal.layers[l].stats["entries_per_pe"]) < \
            max(plain.layers[l].stats["entries_per_pe"])


@pytest.mark.parametrize("bad", [[0, 0, 1], [0, 1], [0, 1, 2, 3], [0, 1, "2"], "012"])
def test_row_order_must_be_a_permutation(tmp_path, bad):
    img = build_image(_uneven_layers(), n_pe=4, balance=True)
    write_image(img, tmp_path / "b")
    mpath = tmp_path / "b" / "manifest.json"
    man = json.loads(mpath.read_text())
    man["layers"][2]["row_order"] = bad if not isinstance(bad, list) or len(bad) != 3 else \
        bad + list(range(3, 7))
    mpath.write_text(json.dumps(man))
    with pytest.raises(EieError, match="row_order"):
        read_image(tmp_path / "b")


def test_version_1_image_without_row_order_still_loads(img, tmp_path):
    write_image(img, tmp_path / "v1")
    mpath = tmp_path / "v1" / "manifest.json"
    man = json.loads(mpath.read_text())
    assert man["format_version"] == 1
    back = read_image(tmp_path / "v1")
    assert not back.balanced
    np.testing.assert_array_equal(back.output_positions(), np.arange(back.n_out))
