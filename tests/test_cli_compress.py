"""`eie compress`, `eie golden`, `eie inspect` end to end, checked against an independent decoder
of the image files, and every bad input of issue 2 (one-line error, exit 2, nothing written)."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest


# ------------------------------------------------------------------ independent reference
# Plain Python over the on-disk files, written from docs/ARCHITECTURE.md alone: it shares no code
# with eie.sw (no encoder, no image reader, no fixed-point helpers).


def _read_hex_file(path):
    return [int(line, 16) for line in Path(path).read_text().split()]


def decode_image(d):
    d = Path(d)
    man = json.loads((d / "manifest.json").read_text())
    n = man["n_pe"]
    ptr = [_read_hex_file(d / f"pe{k}_ptr.hex") for k in range(n)]
    words = [_read_hex_file(d / f"pe{k}_spmat.hex") for k in range(n)]
    bias_files = [d / f"pe{k}_bias.hex" for k in range(n)]
    bias = [_read_hex_file(f) if f.exists() else None for f in bias_files]
    layers = []
    # docs/image-format.md: input position q of the first layer holds model input
    # input_order[q] (no input_order: q)
    in_order = man["layers"][0].get("input_order", list(range(man["layers"][0]["n_in"])))
    for L in man["layers"]:
        W = [[0] * L["n_in"] for _ in range(L["n_out"])]
        for k in range(n):
            for j in range(L["n_in"]):
                p0 = ptr[k][L["ptr_base"] + j]
                p1 = ptr[k][L["ptr_base"] + j + 1]
                row = -1
                for e in range(L["entry_base"] + p0, L["entry_base"] + p1):
                    byte = (words[k][e // 8] >> (8 * (e % 8))) & 0xFF
                    z, code = byte >> 4, byte & 0xF
                    row += z + 1
                    if code:
                        W[k + n * row][j] = L["codebook"][code]
        b = None
        if L["has_bias"]:
            b = []
            for i in range(L["n_out"]):
                v = bias[i % n][L["bias_base"] + i // n]
                b.append(v - 0x10000 if v & 0x8000 else v)
        # docs/image-format.md: position p holds model row row_order[p] (no row_order: p), and
        # input q is the previous layer's output position q
        order = L.get("row_order", list(range(L["n_out"])))
        Wm = [[0] * L["n_in"] for _ in range(L["n_out"])]
        for p_, i in enumerate(order):
            for q, j in enumerate(in_order):
                Wm[i][j] = W[p_][q]
        bm = None if b is None else [0] * L["n_out"]
        if b is not None:
            for p_, i in enumerate(order):
                bm[i] = b[p_]
        in_order = order
        layers.append((Wm, bm, L["w_frac"], L["relu"]))
    return man, layers


def reference_forward(man, layers, x_int):
    acc_bits = man["acc_bits"]
    out = []
    for sample in x_int:
        a = [int(v) for v in sample]
        for W, b, w_frac, relu in layers:
            y = []
            for i, row in enumerate(W):
                acc = (b[i] << w_frac) if b is not None else 0
                for aj, wij in zip(a, row):
                    acc += aj * wij
                acc %= 1 << acc_bits                       # wrap to acc_bits, two's complement
                if acc >= 1 << (acc_bits - 1):
                    acc -= 1 << acc_bits
                q, r = divmod(acc, 1 << w_frac)            # floor division, r >= 0
                half = (1 << w_frac) // 2 if w_frac else 0
                if w_frac and (r > half or (r == half and q % 2 == 1)):
                    q += 1                                 # round half to even
                q = max(-32768, min(32767, q))
                y.append(max(q, 0) if relu else q)
            a = y
        out.append(a)
    return out


def quantize_ref(x, frac):
    return [[max(-32768, min(32767, round(float(v) * (1 << frac)))) for v in row] for row in x]


# ------------------------------------------------------------------ fixtures

def _model(tmp_path, sizes=(40, 30, 20, 10), seed=0, **edit):
    rng = np.random.default_rng(seed)
    arrays = {}
    for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        arrays[f"W{l}"] = (rng.standard_normal((o, i)) * np.sqrt(2 / i)).astype(np.float32)
        arrays[f"b{l}"] = (0.1 * rng.standard_normal(o)).astype(np.float32)
    arrays.update(edit)
    p = tmp_path / "model.npz"
    np.savez(p, **arrays)
    return p


def _listing(path):
    return sorted(os.listdir(path))


# ------------------------------------------------------------------ end to end

@pytest.mark.parametrize("pes, extra", [
    (4, ["--density", "0.3"]),
    (3, ["--prune-std", "0.8"]),
    (1, ["--density", "0.5,0.2,0.9", "--act-frac", "6"]),
    (8, ["--density", "0.05", "--acc-bits", "20"]),   # gaps > 15 (padding), narrow wrap-around
])
def test_compress_golden_matches_independent_decode(tmp_path, cli, pes, extra):
    model = _model(tmp_path)
    img = tmp_path / "img"
    code, out, err = cli(["compress", model, "-o", img, "--pes", pes, *extra])
    assert code == 0, err
    assert "total:" in out
    rng = np.random.default_rng(pes)
    x = rng.standard_normal((4, 40)) * 2
    x[0, :5] = 0.5 / 256          # a tie: rounds to even (0)
    x[1, 0] = 1000.0              # saturates
    np.save(tmp_path / "x.npy", x)
    code, out, err = cli(["golden", img, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy"])
    assert code == 0, err
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.int16 and y.shape == (4, 10)
    man, layers = decode_image(img)
    assert man["n_pe"] == pes and len(layers) == 3
    expect = reference_forward(man, layers, quantize_ref(x, man["act_frac"]))
    assert y.tolist() == expect
    # --raw with int16 input gives the same as the reference on those integers.
    xi = np.array(quantize_ref(x, man["act_frac"]), dtype=np.int16)
    np.save(tmp_path / "xi.npy", xi)
    code, _, err = cli(["golden", img, "--input", tmp_path / "xi.npy", "-o", tmp_path / "yi.npy",
                        "--raw"])
    assert code == 0, err
    assert np.load(tmp_path / "yi.npy").tolist() == expect


def test_density_and_padding_visible_in_files(tmp_path, cli):
    # A 1-PE layer with 5% density has long gaps: padding entries (0, 15) must appear.
    model = _model(tmp_path, sizes=(30, 200, 10))
    img = tmp_path / "img"
    assert cli(["compress", model, "-o", img, "--pes", "1", "--density", "0.05"])[0] == 0
    man, layers = decode_image(img)
    W0 = layers[0][0]
    nnz = sum(1 for row in W0 for v in row if v)
    assert nnz <= round(0.05 * 30 * 200)  # codes that quantise to 0 may drop out
    assert nnz >= round(0.05 * 30 * 200) - 2
    words = _read_hex_file(img / "pe0_spmat.hex")
    n0 = _read_hex_file(img / "pe0_ptr.hex")[30]
    entries = [(words[e // 8] >> (8 * (e % 8))) & 0xFF for e in range(n0)]
    assert entries.count(0xF0) > 0
    assert man["layers"][0]["stats"]["padding"] == entries.count(0xF0)


def test_inspect_text_and_json(tmp_path, cli):
    model = _model(tmp_path)
    img = tmp_path / "img"
    assert cli(["compress", model, "-o", img, "--pes", "4", "--density", "0.2"])[0] == 0
    code, out, _ = cli(["inspect", img, "--json"])
    assert code == 0
    rep = json.loads(out)
    man, layers = decode_image(img)
    assert rep["n_pe"] == 4 and len(rep["layers"]) == 3
    for l, L in enumerate(rep["layers"]):
        ptr = [_read_hex_file(img / f"pe{k}_ptr.hex") for k in range(4)]
        base = man["layers"][l]["ptr_base"]
        n_in = man["layers"][l]["n_in"]
        per_pe = [ptr[k][base + n_in] - ptr[k][base] for k in range(4)]
        assert [p["entries"] for p in L["per_pe"]] == per_pe
        nnz = sum(1 for row in layers[l][0] for v in row if v)
        # codes whose codebook value is 0 are stored but compute nothing
        assert L["nonzeros"] >= nnz
        assert L["entries"] == sum(per_pe) and L["padding"] == sum(p["padding"] for p in L["per_pe"])
        assert L["load_imbalance"] == pytest.approx(max(per_pe) / (sum(per_pe) / 4))
        s = L["storage"]
        ptr_bits = max(per_pe).bit_length()
        fixed = 8 * sum(per_pe) + 4 * (n_in + 1) * ptr_bits + 256
        assert s["total_bits"] == fixed
        assert s["ratio"] == pytest.approx(32 * n_in * man["layers"][l]["n_out"] / fixed)
        assert s["total_bits_huffman"] < s["total_bits"]
    code, out, _ = cli(["inspect", img])
    assert code == 0
    assert "layer 2: 20 -> 10" in out and "load imbalance" in out and "with Huffman" in out


def test_bundled_example_model(tmp_path, cli):
    from eie.sw import model_io
    ex = Path(model_io.__file__).parent / "data" / "example_mlp.npz"
    assert ex.exists()
    img = tmp_path / "img"
    assert cli(["compress", ex, "-o", img, "--pes", "4", "--density", "0.25"])[0] == 0
    man, layers = decode_image(img)
    assert [L["n_in"] for L in man["layers"]] == [64, 48, 32]


# ------------------------------------------------------------------ bad input

def _assert_error(cli, argv, match, tmp_path, must_not_exist=()):
    before = _listing(tmp_path)
    code, out, err = cli(argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eie: error: "), err
    assert match in lines[0], lines[0]
    for p in must_not_exist:
        assert not Path(p).exists()
    # nothing half-written: no new files or temporaries beside the outputs
    assert _listing(tmp_path) == before
    return lines[0]


@pytest.mark.parametrize("edit, match", [
    ({"W1": np.full((20, 30), np.nan, np.float32)}, "layer 1 weight has 600 NaN or infinite"),
    ({"W0": np.where(np.eye(30, 40) > 0, np.inf, 0.5).astype(np.float32)}, "layer 0 weight has 30 NaN or infinite"),
    ({"W2": np.ones((10, 21), np.float32)}, "layer 2 takes 21 inputs but layer 1 gives 20 outputs"),
    # biases that are not real numbers: text was a TypeError traceback, complex lost its
    # imaginary part with a raw ComplexWarning, bools were read as 1.0 and 0.0
    ({"b0": np.array(["a"] * 30)}, "layer 0 bias has dtype <U1; it holds text, not numbers"),
    ({"b1": np.ones(20) + 0.5j}, "layer 1 bias has dtype complex128; complex values are not taken"),
    ({"b2": np.ones(10, bool)}, "layer 2 bias has dtype bool; bools are not taken as numbers"),
    # relu: every entry of a text or float array was read as True
    ({"relu": np.array(["no", "no", "no"])}, "relu has dtype <U2; give one bool per layer"),
    ({"relu": np.array([1.0, np.nan, 0.0])}, "relu has dtype float64; give one bool per layer"),
    ({"relu": np.array([1, 2, 0])}, "relu[1] is 2, not 0 or 1"),
    # two arrays for one layer: W00 replaced W0 (or the reverse) without a word
    ({"W00": np.ones((30, 40), np.float32)}, "W0 and W00 are both layer 0's weight; keep one"),
    ({"b001": np.ones(20, np.float32)}, "b1 and b001 are both layer 1's bias; keep one"),
])
def test_bad_models(tmp_path, cli, edit, match):
    model = _model(tmp_path, **edit)
    img = tmp_path / "img"
    _assert_error(cli, ["compress", model, "-o", img, "--pes", "2"], match, tmp_path, [img])


def test_relu_as_integers_0_and_1(tmp_path, cli):
    # integers 0/1 are bools spelled as numbers: taken, and each layer gets its own
    model = _model(tmp_path, relu=np.array([0, 1, 1], np.uint8))
    assert cli(["compress", model, "-o", tmp_path / "img", "--pes", "2"]).code == 0
    man = json.loads((tmp_path / "img" / "manifest.json").read_text())
    assert [L["relu"] for L in man["layers"]] == [False, True, True]


@pytest.mark.parametrize("far", ["W1000000000", "W" + "7" * 5000])
def test_missing_layer_far_below_the_largest_number(tmp_path, far):
    # W0 and W1000000000: the loader built set(range(1000000001)) to find the gap (a
    # MemoryError after many GiB); 5000 digits made int() itself fail. Run under a 2 GiB
    # address-space limit, so that a regression fails here instead of exhausting the machine.
    import resource
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "gap.npz", W0=rng.standard_normal((4, 5)),
             **{far: rng.standard_normal((3, 4))})
    before = _listing(tmp_path)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    r = subprocess.run([sys.executable, "-m", "eie.app.cli", "compress", str(tmp_path / "gap.npz"),
                        "-o", str(tmp_path / "img"), "--pes", "2"],
                       capture_output=True, text=True, timeout=300, preexec_fn=limit,
                       env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("eie: error: "), r.stderr[-2000:]
    shown = far if len(far) <= 24 else f"{far[:12]}... ({len(far)} characters)"
    assert "W1 is missing" in lines[0] and f"up to {shown};" in lines[0]
    assert len(lines[0]) < 500      # a key of 5,000 digits is not printed in full
    assert _listing(tmp_path) == before


def test_model_without_layers(tmp_path, cli):
    np.savez(tmp_path / "empty.npz")
    img = tmp_path / "img"
    _assert_error(cli, ["compress", tmp_path / "empty.npz", "-o", img, "--pes", "2"],
                  "has no layers", tmp_path, [img])


@pytest.mark.parametrize("density, match", [
    ("0", "density 0.0 is outside (0, 1]"),
    ("1.5", "density 1.5 is outside (0, 1]"),
    ("-0.2", "density -0.2 is outside (0, 1]"),
    ("nan", "density nan is outside (0, 1]"),
    ("0.5,0.5", "2 densities given for a model of 3 layers"),
])
def test_bad_density(tmp_path, cli, density, match):
    model = _model(tmp_path)
    img = tmp_path / "img"
    _assert_error(cli, ["compress", model, "-o", img, "--pes", "2", f"--density={density}"],
                  match, tmp_path, [img])


@pytest.mark.parametrize("opt, match", [
    (["--spmat-depth", "4"], "sparse-matrix entries in PE"),
    (["--spmat-depth", "1"], "the SRAM holds 8 (1 word; raise --spmat-depth"),   # not "1 words"
    (["--ptr-depth", "50"], "pointer SRAM holds 50"),
    (["--act-depth", "5"], "activation SRAM holds 5"),
])
def test_over_capacity(tmp_path, cli, opt, match):
    model = _model(tmp_path)
    img = tmp_path / "img"
    line = _assert_error(cli, ["compress", model, "-o", img, "--pes", "2", *opt], match,
                         tmp_path, [img])
    assert "raise --" in line


def test_over_capacity_keeps_old_image(tmp_path, cli):
    model = _model(tmp_path)
    img = tmp_path / "img"
    assert cli(["compress", model, "-o", img, "--pes", "2"])[0] == 0
    before = {p.name: p.read_bytes() for p in img.iterdir()}
    _assert_error(cli, ["compress", model, "-o", img, "--pes", "4", "--spmat-depth", "2"],
                  "sparse-matrix entries", tmp_path)
    assert {p.name: p.read_bytes() for p in img.iterdir()} == before


@pytest.fixture
def image(tmp_path, cli):
    model = _model(tmp_path)
    img = tmp_path / "img"
    assert cli(["compress", model, "-o", img, "--pes", "2", "--density", "0.4"])[0] == 0
    np.save(tmp_path / "x.npy", np.zeros((2, 40)))
    return img


@pytest.mark.parametrize("damage, match", [
    (lambda d: (d / "pe1_spmat.hex").unlink(), "pe1_spmat.hex is missing"),
    (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
    (lambda d: (d / "manifest.json").write_text("{ not json"), "not valid JSON"),
    (lambda d: (d / "pe0_ptr.hex").write_text("zz\n"), "pe0_ptr.hex line 1"),
    (lambda d: (d / "pe0_ptr.hex").write_text("0\n1\n"), "pe0_ptr.hex has 2 values"),
])
@pytest.mark.parametrize("command", ["golden", "inspect"])
def test_missing_or_corrupt_image(tmp_path, cli, image, damage, match, command):
    damage(image)
    y = tmp_path / "y.npy"
    argv = ["golden", image, "--input", tmp_path / "x.npy", "-o", y] if command == "golden" \
        else ["inspect", image]
    _assert_error(cli, argv, match, tmp_path, [y])


def test_missing_image_dir(tmp_path, cli):
    np.save(tmp_path / "x.npy", np.zeros((1, 40)))
    _assert_error(cli, ["golden", tmp_path / "nope", "--input", tmp_path / "x.npy", "-o",
                        tmp_path / "y.npy"], "does not exist", tmp_path, [tmp_path / "y.npy"])


@pytest.mark.parametrize("x, raw, match", [
    (np.zeros((3, 39)), False, "has shape (3, 39) but the image's first layer takes 40 inputs"),
    (np.zeros((2, 3, 40)), False, "has shape (2, 3, 40)"),
    (np.zeros((3, 40), np.int16), False, "has dtype int16 but real-valued float input"),
    (np.zeros((3, 40), np.float32), True, "has dtype float32 but --raw expects int16"),
    (np.full((1, 40), 40000, np.int32), True, "outside int16"),
    (np.full((1, 40), np.nan), False, "40 NaN or infinite"),
    (np.array(["a"] * 40)[None, :], False, "expected a numeric"),
])
def test_bad_golden_inputs(tmp_path, cli, image, x, raw, match):
    np.save(tmp_path / "bad.npy", x)
    y = tmp_path / "y.npy"
    argv = ["golden", image, "--input", tmp_path / "bad.npy", "-o", y] + (["--raw"] if raw else [])
    _assert_error(cli, argv, match, tmp_path, [y])


def test_unreadable_input_file(tmp_path, cli, image):
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    y = tmp_path / "y.npy"
    _assert_error(cli, ["golden", image, "--input", tmp_path / "bad.npy", "-o", y],
                  "not a readable .npy", tmp_path, [y])
    _assert_error(cli, ["golden", image, "--input", tmp_path / "none.npy", "-o", y],
                  "does not exist", tmp_path, [y])


def test_console_script_exit_code(tmp_path, console):
    model = _model(tmp_path)
    r = console(["compress", model, "-o", tmp_path / "img", "--pes", "2", "--density", "1.5"])
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        "eie: error: density 1.5 is outside (0, 1] (give the fraction of weights to keep, e.g. 0.1)"]
    assert not (tmp_path / "img").exists()


def test_output_path_is_a_file(tmp_path, cli):
    model = _model(tmp_path)
    (tmp_path / "taken").write_text("keep me")
    _assert_error(cli, ["compress", model, "-o", tmp_path / "taken", "--pes", "2"],
                  "exists and is not a directory", tmp_path)
    assert (tmp_path / "taken").read_text() == "keep me"


@pytest.mark.parametrize("opts, match", [
    (["--density", "abc"], "density 'abc' is not a number"),
    (["--prune-std", "x"], "prune quality 'x' is not a number"),
    (["--prune-std", "-1"], "prune quality -1.0 must be a finite number >= 0"),
    (["--pes", "0"], "number of PEs 0 must be an integer >= 1"),
    (["--spmat-depth", "0"], "--spmat-depth 0 must be >= 1"),
    (["--centroids", "16"], "number of centroids 16 is outside 1..15"),
    (["--act-frac", "16"], "act_frac 16 is outside 0..15"),
])
def test_bad_options(tmp_path, cli, opts, match):
    model = _model(tmp_path)
    img = tmp_path / "img"
    argv = ["compress", model, "-o", img] + ([] if "--pes" in opts else ["--pes", "2"]) + opts
    _assert_error(cli, argv, match, tmp_path, [img])


def test_compress_json(tmp_path, cli):
    model = _model(tmp_path)
    code, out, _ = cli(["compress", model, "-o", tmp_path / "img", "--pes", "2",
                        "--density", "0.5", "--json"])
    assert code == 0
    rep = json.loads(out)
    assert rep["n_pe"] == 2 and [L["n_in"] for L in rep["layers"]] == [40, 30, 20]
    assert rep["layers"][0]["compression"]["prune_rule"] == "density"
    assert rep["totals"]["nonzeros"] == sum(L["nonzeros"] for L in rep["layers"])


def _warnings(err):
    return [line for line in err.splitlines() if line.startswith("warning: ")]


def test_compress_json_prints_the_same_warnings(tmp_path, cli):
    # biases beyond int16 at act_frac 8 (|b| > 128) saturate: the text output warns on stderr,
    # and --json must too (stdout stays one JSON document)
    model = _model(tmp_path, b0=np.full(30, 500.0, np.float32))
    text = cli(["compress", model, "-o", tmp_path / "a", "--pes", "2"])
    js = cli(["compress", model, "-o", tmp_path / "b", "--pes", "2", "--json"])
    assert text.code == 0 and js.code == 0
    json.loads(js.out)
    assert _warnings(text.err) and "30 biases saturated" in _warnings(text.err)[0]
    assert _warnings(js.err) == _warnings(text.err)
    assert "warning" not in js.out


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_layer_that_keeps_no_weight_warns(tmp_path, cli, json_flag):
    # --prune-std 100 prunes every weight of every layer: the image computes its biases only
    model = _model(tmp_path)
    r = cli(["compress", model, "-o", tmp_path / "img", "--pes", "2", "--prune-std", "100",
             *json_flag])
    assert r.code == 0, r.err
    man, layers = decode_image(tmp_path / "img")
    empty = [l for l, (W, _, _, _) in enumerate(layers) if not any(any(row) for row in W)]
    assert empty == [0, 1, 2]
    warn = _warnings(r.err)
    assert len(warn) == 3, r.err
    for l, line in zip(empty, warn):
        L = man["layers"][l]
        assert line.startswith(f"warning: layer {l}: no weight kept (0 of "
                               f"{L['n_in'] * L['n_out']})"), line
        assert "its bias alone" in line and "lower --prune-std 100" in line


def test_only_the_empty_layer_warns(tmp_path, cli):
    # a model whose middle layer is all zero, compressed without pruning: one warning, for it
    model = _model(tmp_path, W1=np.zeros((20, 30), np.float32))
    r = cli(["compress", model, "-o", tmp_path / "img", "--pes", "3"])
    assert r.code == 0, r.err
    warn = _warnings(r.err)
    assert len(warn) == 1 and warn[0].startswith("warning: layer 1: no weight kept (0 of 600)")
    assert "every weight of the model's layer is 0" in warn[0]


# ------------------------------------------------------------------ property: pipeline vs reference

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(1, 40), min_size=2, max_size=4),
    n_pe=st.integers(1, 9),
    density=st.floats(0.02, 1.0),
    bias=st.booleans(),
    act_frac=st.integers(4, 10),
    seed=st.integers(0, 2**31),
)
def test_property_pipeline_matches_reference(tmp_path_factory, sizes, n_pe, density, bias, act_frac, seed):
    from eie.sw.compress import CompressConfig, compress_model
    from eie.sw.golden import golden_forward
    from eie.sw.image import write_image
    from eie.sw.model_io import FloatLayer

    rng = np.random.default_rng(seed)
    layers = [FloatLayer((rng.standard_normal((o, i)) * rng.uniform(0.05, 3)).astype(np.float32),
                         (rng.standard_normal(o) * 0.5).astype(np.float32) if bias else None,
                         l < len(sizes) - 2)
              for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    res = compress_model(layers, CompressConfig(n_pe=n_pe, density=density, act_frac=act_frac))
    d = tmp_path_factory.mktemp("img") / "img"
    write_image(res.image, d)
    man, decoded = decode_image(d)
    # The decoded weights are the pipeline's codebook[codes]: nothing lost in the files.
    for (W, b, w_frac, relu), lc in zip(decoded, res.layers):
        assert np.array_equal(np.array(W, dtype=np.int64), lc.quant.weights())
        assert w_frac == lc.quant.w_frac and relu == lc.quant.relu
    x = np.rint(rng.standard_normal((3, sizes[0])) * (1 << act_frac)).astype(np.int16)
    y = golden_forward(res.image, x).outputs
    assert y.tolist() == reference_forward(man, decoded, x.tolist())


def test_acceptance_console_script_compress_then_golden(tmp_path, console):
    """Issue 2's acceptance, literally: the `eie` console script compresses a 3-layer model,
    `eie golden` runs it, and the output equals the independent decode of the image files."""
    model = _model(tmp_path, seed=9)
    img = tmp_path / "img"
    r = console(["compress", model, "-o", img, "--pes", "4", "--density", "0.1"])
    assert r.code == 0, r.err
    x = np.random.default_rng(9).standard_normal((5, 40))
    np.save(tmp_path / "x.npy", x)
    r = console(["golden", img, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy"])
    assert r.code == 0, r.err
    man, layers = decode_image(img)
    assert len(layers) == 3
    assert np.load(tmp_path / "y.npy").tolist() == reference_forward(
        man, layers, quantize_ref(x, man["act_frac"]))


def test_balance_is_the_default_and_no_balance_keeps_the_interleave(tmp_path, cli):
    """Both placements compute the same outputs (in the model's order); --no-balance writes the
    plain interleave (format version 1, no row_order), the default a balanced placement."""
    rng = np.random.default_rng(11)
    arrays = {}
    for l, (i, o) in enumerate(((30, 41), (41, 23), (23, 9))):
        w = rng.standard_normal((o, i)) * rng.lognormal(0, 1, (o, 1))   # uneven rows
        arrays[f"W{l}"], arrays[f"b{l}"] = w.astype(np.float32), rng.standard_normal(o) * 0.1
    np.savez(tmp_path / "m.npz", **arrays)
    x = rng.standard_normal((5, 30))
    np.save(tmp_path / "x.npy", x)
    ys, reports = {}, {}
    for name, extra in (("bal", []), ("plain", ["--no-balance"])):
        img = tmp_path / name
        code, _, err = cli(["compress", tmp_path / "m.npz", "-o", img, "--pes", 4,
                            "--density", "0.3", *extra])
        assert code == 0, err
        code, _, err = cli(["golden", img, "--input", tmp_path / "x.npy",
                            "-o", tmp_path / f"{name}.npy"])
        assert code == 0, err
        ys[name] = np.load(tmp_path / f"{name}.npy")
        code, out, err = cli(["inspect", img, "--json"])
        assert code == 0, err
        reports[name] = json.loads(out)
        man = json.loads((img / "manifest.json").read_text())
        # rows placed and the inputs shuffled (version 3); the interleave: version 1
        assert man["format_version"] == (3 if name == "bal" else 1)
        assert ("input_order" in man["layers"][0]) == (name == "bal")
        # the independent reader (row_order applied as docs/image-format.md says) agrees
        m, layers = decode_image(img)
        assert ys[name].tolist() == reference_forward(m, layers, quantize_ref(x, m["act_frac"]))
    np.testing.assert_array_equal(ys["bal"], ys["plain"])
    assert {L["placement"] for L in reports["bal"]["layers"]} == {"balanced"}
    assert {L["placement"] for L in reports["plain"]["layers"]} == {"interleave"}
    worst = [max(L["max_entries_per_pe"] for L in reports[n]["layers"][:2]) for n in ("bal", "plain")]
    assert worst[0] < worst[1]


def test_what_the_placement_evens_is_shown_and_predicts_the_cycles(tmp_path, cli):
    """docs/compression.md's example (`eie inspect`): on a sparse layer the default placement
    evens every column, not the PEs' totals, which may end up less even than the interleave's;
    the per-column figure is the one that goes with the cycles. The help says so too."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "m.npz", W0=rng.normal(size=(32, 64)).astype(np.float32),
             b0=np.zeros(32, np.float32), W1=rng.normal(size=(10, 32)).astype(np.float32),
             b1=np.zeros(10, np.float32))
    np.save(tmp_path / "x.npy", np.random.default_rng(1).normal(size=(100, 64)).astype(np.float32))
    L0, cycles = {}, {}
    for name, extra in (("bal", []), ("plain", ["--no-balance"])):
        img = tmp_path / name
        r = cli(["compress", tmp_path / "m.npz", "-o", img, "--pes", 8, "--density",
                 "0.08,0.25", *extra])
        assert r.code == 0, r.err
        # the table's col.bal and pe.bal: inspect's column_imbalance and load_imbalance, inverted
        head, row0 = r.out.splitlines()[1:3]
        col = dict(zip(head.split(), row0.split()))
        r = cli(["inspect", img, "--json"])
        assert r.code == 0, r.err
        L0[name] = json.loads(r.out)["layers"][0]
        assert float(col["col.bal"]) == pytest.approx(1 / L0[name]["column_imbalance"], abs=1e-3)
        assert float(col["pe.bal"]) == pytest.approx(1 / L0[name]["load_imbalance"], abs=1e-3)
        # the per-column figure, recomputed from the files by the independent reader
        man = json.loads((img / "manifest.json").read_text())
        ptr = [_read_hex_file(img / f"pe{k}_ptr.hex") for k in range(8)]
        cols = np.array([[ptr[k][j + 1] - ptr[k][j] for k in range(8)] for j in range(64)])
        assert man["layers"][0]["ptr_base"] == 0
        assert L0[name]["column_max_entries"] == int(cols.max(axis=1).sum())
        assert L0[name]["column_max_entries_least"] == int((-(-cols.sum(axis=1) // 8)).sum())
        r = cli(["run", img, "--input", tmp_path / "x.npy", "-o", tmp_path / f"{name}.npy",
                 "--sim", "model", "--stats", tmp_path / f"{name}.json"])
        assert r.code == 0, r.err
        samples = json.loads((tmp_path / f"{name}.json").read_text())["samples"]
        cycles[name] = np.mean([s["run_cycles"] for s in samples])
    # the figures docs/compression.md quotes
    assert round(L0["bal"]["load_imbalance"], 3) == 1.415
    assert round(L0["plain"]["load_imbalance"], 3) == 1.122
    assert [L0[n]["column_max_entries"] for n in ("bal", "plain")] == [59, 78]
    assert L0["bal"]["column_max_entries_least"] == L0["plain"]["column_max_entries_least"] == 58
    assert (round(cycles["bal"], 1), round(cycles["plain"], 1)) == (104.2, 106.1)
    # the text says which figure is which, and that the per-column one is what it evens
    r = cli(["inspect", tmp_path / "bal"])
    assert ("  per column: 59 entries in the busiest PE of each column, summed (58 if every "
            "column were spread as evenly as it divides: imbalance 1.017); a PE that holds more "
            "of a column than the others falls behind and, its FIFO full, holds the broadcasts "
            "back: this is what the default placement evens") in r.out.splitlines()
    assert "  per PE: load imbalance 1.415 (the largest PE's entries / the mean)" in r.out
    r = cli(["compress", "--help"])
    text = " ".join(r.out.split())
    assert "so that every PE holds about the same number of entries" not in text
    assert "so that every column's entries are spread evenly over the PEs" in text
    assert "the totals may end up less even than the interleave's" in text


def test_an_outlier_that_zeroes_the_layer_says_what_is_lost(tmp_path, cli):
    """A Gaussian layer with one weight of 1e6 (docs/compression.md, "Fixed point"): the
    outlier sets w_frac 0, every other weight rounds to 0; the warning says the contributions
    are lost and points at the outlier, not at storage or at scaling the layer down."""
    w = np.random.default_rng(4).standard_normal((64, 32)).astype(np.float32)
    w[3, 5] = 1e6
    np.savez(tmp_path / "huge.npz", W0=w)
    r = cli(["compress", tmp_path / "huge.npz", "-o", tmp_path / "img", "--pes", 4])
    assert r.code == 0, r.err
    sat, zero = _warnings(r.err)
    assert "the layer's weights are clipped: scaling them down would round more of the small " \
           "ones to 0 (next warning): check the largest weights" in sat
    assert "scale them down (and the next layer's up)" not in sat
    median = float(np.median(np.abs(w)))
    assert zero.startswith("warning: layer 0: 2047 of its 2048 kept weights (99.95%) round to 0 "
                           "in int16 fixed point, so their contributions are lost and the "
                           "layer's outputs change: 1 of 2 codebook entries "), zero
    assert (f"is below half the step 1 of w_frac 0; the step is that coarse because the largest "
            f"|w|, 1e+06, must fit int16, and it is {1e6 / median:.3g}x the median kept |w| "
            f"({median:.3g}): check it (an outlier? clip it, or fix the model); they are still "
            "stored") in zero, zero
    man = json.loads((tmp_path / "img" / "manifest.json").read_text())
    comp = man["layers"][0]["stats"]["compression"]
    assert comp["kept_abs_max"] == 1e6 and comp["kept_abs_median"] == pytest.approx(median)
    # the layer computes next to nothing of what the model did: its golden outputs on an input
    # that misses the outlier's column are all 0
    x = np.full((1, 32), 0.5, np.float32)
    x[0, 5] = 0
    np.save(tmp_path / "x.npy", x)
    assert cli(["golden", tmp_path / "img", "--input", tmp_path / "x.npy", "-o",
                tmp_path / "y.npy"]).code == 0
    assert not np.load(tmp_path / "y.npy").any() and (w @ x[0]).any()


def test_acc_bits_that_zero_entries_says_its_current_value(tmp_path, cli):
    """--acc-bits 16 limits w_frac to 0: the advice is to raise it, with the current value said
    as such (it read "raise --acc-bits 16", the value already given)."""
    r = cli(["compress", _model(tmp_path), "-o", tmp_path / "img", "--pes", 4, "--acc-bits", 16,
             "--density", "0.1"])
    assert r.code == 0, r.err
    warn = _warnings(r.err)
    assert warn and all("that step is the finest a 16-bit accumulator allows: raise --acc-bits "
                        "(now 16, which limits w_frac to 0; a larger one may keep them), or "
                        "scale the layer's weights up (and the next layer's down)" in line
                        for line in warn), warn
    assert not any("raise --acc-bits 16" in line for line in warn)
    assert all("their contributions are lost" in line for line in warn)


def test_a_layer_below_the_finest_step_is_told_to_scale_up(tmp_path, cli):
    """w_frac 30 (a 64-bit accumulator allows it) and still entries round to 0, with int16 room
    above the largest weight: the layer is small as a whole, and scaling it up keeps them."""
    w = np.full((6, 8), 1e-12)
    w[0, :4] = 1e-8
    w[1, ::2] = -1e-12
    np.savez(tmp_path / "m.npz", W0=w)
    r = cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img", "--pes", 2, "--centroids",
             3, "--acc-bits", 64])
    assert r.code == 0, r.err
    (warn,) = _warnings(r.err)
    room = 32767 / (1e-8 * 2 ** 30)
    assert warn.startswith("warning: layer 0: 44 of its 48 kept weights (91.67%) round to 0"), warn
    assert (f"below half the step {2.0 ** -30:.3g} of w_frac 30; that is the finest step there "
            f"is, and the largest |w|, 1e-08, leaves int16 room for {room:.3g}x more: scale the "
            "layer's weights up (and the next layer's down); they are still stored") in warn
    # and so it does: scaled up 1000x, nothing rounds to 0
    np.savez(tmp_path / "m.npz", W0=w * 1000)
    r = cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img", "--pes", 2, "--centroids",
             3, "--acc-bits", 64])
    assert r.code == 0 and _warnings(r.err) == [], r.err


def test_only_the_smallest_weights_lost_is_said_so(tmp_path, cli):
    """Weights of +-1 and +-2 and a share of 1e-6: the largest sets w_frac 13 and the median
    (1) is far above its step, so only the tiny ones are lost, and no outlier is blamed."""
    rng = np.random.default_rng(5)
    w = rng.choice([-2.0, -1.0, 1.0, 2.0], size=(20, 30))
    w[rng.random(w.shape) < 0.3] = 1e-6
    np.savez(tmp_path / "m.npz", W0=w)
    r = cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img", "--pes", 2, "--centroids",
             5])
    assert r.code == 0, r.err
    (warn,) = _warnings(r.err)
    tiny = int(np.count_nonzero(w == 1e-6))
    assert warn.startswith(f"warning: layer 0: {tiny} of its 600 kept weights"), warn
    assert ("1 of 5 codebook entries (|w| up to 1e-06) is below half the step 0.000122 of "
            "w_frac 13; they are the layer's smallest weights (the step is set by the largest "
            "|w|, 2, which must fit int16; the median kept |w| is 1); they are still stored") \
        in warn, warn
    assert "outlier" not in warn


def test_calibrate_changes_the_placement_not_the_outputs(tmp_path, cli):
    rng = np.random.default_rng(12)
    arrays = {}
    for l, (i, o) in enumerate(((24, 37), (37, 8))):
        w = rng.standard_normal((o, i)) * rng.lognormal(0, 1, (o, 1))
        arrays[f"W{l}"] = w.astype(np.float32)
    np.savez(tmp_path / "m.npz", **arrays)
    x = rng.standard_normal((6, 24))
    cal = np.abs(rng.standard_normal((50, 24))) * (rng.random((50, 24)) < 0.3)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "cal.npy", cal)
    ys, orders = {}, {}
    for name, extra in (("cols", []), ("cal", ["--calibrate", tmp_path / "cal.npy"])):
        img = tmp_path / name
        code, _, err = cli(["compress", tmp_path / "m.npz", "-o", img, "--pes", 4,
                                     "--density", "0.4", *extra])
        assert code == 0, err
        orders[name] = json.loads((img / "manifest.json").read_text())["layers"][0]["row_order"]
        code, _, err = cli(["golden", img, "--input", tmp_path / "x.npy",
                                     "-o", tmp_path / f"{name}.npy"])
        assert code == 0, err
        ys[name] = np.load(tmp_path / f"{name}.npy")
    np.testing.assert_array_equal(ys["cols"], ys["cal"])
    assert orders["cols"] != orders["cal"]


@pytest.mark.parametrize("bad,msg", [
    (np.zeros((5, 23)), "expected \\(samples, 24\\)"),
    (np.zeros((5, 24), dtype=np.int16), "has dtype int16 but real-valued float input is "
                                        "expected"),
    (np.full((2, 24), np.nan), "NaN or infinite"),
])
def test_calibrate_rejects_bad_inputs(tmp_path, cli, bad, msg):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "m.npz", W0=rng.standard_normal((8, 24)).astype(np.float32))
    np.save(tmp_path / "cal.npy", bad)
    code, _, err = cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img",
                                 "--pes", 2, "--calibrate", tmp_path / "cal.npy"])
    assert code == 2 and re.search(msg, err), err
    assert not (tmp_path / "img").exists()
    code, _, err = cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img",
                                 "--pes", 2, "--no-balance", "--calibrate", tmp_path / "cal.npy"])
    assert code == 2 and "--no-balance" in err
