"""`eie demo --quick`: the main job end to end, small (few epochs; 4 digits on each RTL here, 16
with `--quick` itself: on Icarus at 16 PEs a digit took about 30 s of the fixture here, loaded).

One run of the pipeline (module fixture) on Icarus (its 16-PE build takes seconds where
Verilator's takes minutes; `make demo` itself runs Verilator, which the RTL matrix covers), the
EIE image loaded by the backdoor (`--load backdoor`: the bus load is covered by
tests/test_backdoor.py, which shows it equal to the backdoor's, and tests/test_eie_rtl.py); the
tests then check its output
independently of the demo's own comparisons: the saved RTL outputs against the golden models
recomputed from the written images, the accuracies from the saved outputs and labels, the image
against one rebuilt with the `eie compress` command that docs/demo.md shows.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from eie.app.demo import REQUIRED_KEYS, DemoConfig, run_demo

pytest.importorskip("mlxtend", reason="the demo extras (mlxtend) are needed")
pytest.importorskip("matplotlib", reason="the demo extras (matplotlib) are needed")

N_IMAGES = 4            # digits on each RTL in this module's run
QUICK_IMAGES = 16       # the --quick preset's


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from eie.sim.runner import check_simulator

    check_simulator("icarus")          # a clear error naming what to install
    out = tmp_path_factory.mktemp("demo") / "out"
    cfg = DemoConfig.for_mode("quick", out=out, images=N_IMAGES, progress=False, sim="icarus",
                              load="backdoor")
    report = run_demo(cfg)
    return out, report


def _get(report: dict, dotted: str):
    node = report
    for part in dotted.split("."):
        node = node[part]
    return node


pytestmark = pytest.mark.rtl


def test_report_has_every_key(demo):
    out, report = demo
    on_disk = json.loads((out / "report.json").read_text())
    for key in REQUIRED_KEYS:
        assert _get(on_disk, key) is not None, key
    for key in ("eie.float_accuracy", "eie.compressed_accuracy", "eie.rtl_accuracy",
                "bnn.float_accuracy", "bnn.rtl_accuracy"):
        assert 0.0 <= _get(on_disk, key) <= 1.0
    assert on_disk["eie"]["rtl_images"] == N_IMAGES and on_disk["bnn"]["rtl_images"] == N_IMAGES
    assert on_disk["eie"]["rtl_load"] == "backdoor"
    assert on_disk["ok"] is True
    assert on_disk == json.loads(json.dumps(report, default=str))


def test_eie_rtl_equals_golden_on_every_image(demo):
    from eie.sw.golden import golden_forward
    from eie.sw.image import read_image

    out, report = demo
    image = read_image(out / "eie_image")
    x = np.load(out / "x_test_int16.npy")
    y = np.load(out / "y_test.npy")
    rtl = np.load(out / "eie_rtl_outputs.npy")
    assert x.shape == (1000, 784) and x.dtype == np.int16
    assert rtl.shape == (N_IMAGES, 10)
    gold = golden_forward(image, x).outputs
    np.testing.assert_array_equal(rtl, gold[:N_IMAGES])
    assert report["eie"]["rtl_matches_golden"] is True
    assert report["eie"]["rtl_accuracy"] == pytest.approx(
        np.mean(np.argmax(rtl, axis=1) == y[:N_IMAGES]))
    # the compressed accuracy is the golden model's over all 1,000 test digits
    assert report["eie"]["compressed_accuracy"] == pytest.approx(
        np.mean(np.argmax(gold, axis=1) == y))
    assert report["eie"]["cycles_per_image"] > 0
    assert 0 < report["eie"]["efficiency"] <= 1.0


def test_input_scaling_is_exact(demo):
    """Pixels / 256 quantised with act_frac 8 are the pixels themselves."""
    from eie.sw.mnist import load_mnist

    out, _ = demo
    x = np.load(out / "x_test_int16.npy")
    np.testing.assert_array_equal(x, load_mnist().x_test.astype(np.int16))


def test_weights_kept_and_compression(demo):
    out, report = demo
    model = np.load(out / "lenet_compressed.npz")
    ws = [model[f"W{l}"] for l in range(3)]
    nonzero = sum(int(np.count_nonzero(w)) for w in ws)
    total = sum(w.size for w in ws)
    assert report["eie"]["weights_kept"] == pytest.approx(nonzero / total)
    assert report["eie"]["weights_kept"] <= 0.10
    for w in ws:   # weight-shared: at most 15 distinct nonzero values per layer
        assert len(np.unique(w[w != 0])) <= 15
    e = report["eie"]
    assert e["compression_ratio_huffman"] >= e["compression_ratio"] > 1


def test_load_balance_pruning_comparison(demo):
    """ESE's load-balance-aware pruning against plain pruning: the new report keys, sane, and
    the plain side recomputed from the written image with the cycle model."""
    from eie.sw.cycle_model import predict_counters
    from eie.sw.golden import golden_forward
    from eie.sw.image import read_image

    out, report = demo
    on_disk = json.loads((out / "report.json").read_text())
    e = on_disk["eie"]
    lb = e["load_balance_pruning"]
    assert lb["n_pe"] == e["n_pe"] == 16 and lb["images"] == 1000 and lb["fifo_depth"] == 8
    # the depths of the demo's RTL design, the accelerator's defaults
    assert lb["ptr_queue_depth"] == 15
    for side in ("plain", "balanced"):
        d = lb[side]
        assert 0.0 <= d["compressed_accuracy"] <= 1.0 and 0.0 <= d["pruned_accuracy"] <= 1.0
        assert 0.0 < d["weights_kept"] <= 0.10
        assert 0.0 < d["efficiency"] <= 1.0 and len(d["efficiency_per_layer"]) == 3
        assert all(0.0 < v <= 1.0 for v in d["efficiency_per_layer"])
        assert d["cycles_per_image"] > 0 and len(d["kept_imbalance_per_layer"]) == 3
    # the plain side is the demo's main model
    assert lb["plain"]["compressed_accuracy"] == e["compressed_accuracy"]
    assert lb["plain"]["weights_kept"] == e["weights_kept"]
    # both keep the same number of weights; ESE spreads layer 0 (300 rows) evenly over 16 PEs
    assert lb["balanced"]["weights_kept"] == pytest.approx(e["weights_kept"], abs=1e-3)
    bal_imb, plain_imb = (lb[k]["kept_imbalance_per_layer"] for k in ("balanced", "plain"))
    assert bal_imb[0] == pytest.approx(1.0, abs=1e-3) and bal_imb[0] <= plain_imb[0]
    assert lb["accuracy_difference_points"] == pytest.approx(
        100 * (lb["balanced"]["compressed_accuracy"] - lb["plain"]["compressed_accuracy"]))
    # the cycle model reproduces the RTL's counters on the digits the RTL ran
    assert lb["cycle_model_equals_rtl"] is True and lb["cycle_model_checked_images"] == N_IMAGES
    # plain efficiency recomputed from the written image and inputs
    image = read_image(out / "eie_image")
    x = np.load(out / "x_test_int16.npy")
    gold = golden_forward(image, x)
    pred = predict_counters(image, x, fifo_depth=8, ptr_queue_depth=15)
    cycles = sum(p.cycles for s in pred for p in s)
    bound = sum(int(np.sum(gold.stats[l].bound)) for l in range(3))
    assert lb["plain"]["efficiency"] == pytest.approx(bound / cycles)
    summary = (out / "report.md").read_text()
    assert "EIE load-balance-aware pruning (ESE)" in summary


def test_eie_compress_command_rebuilds_the_image(demo, tmp_path, cli):
    """docs/demo.md's worked example: `eie compress` on the saved model gives the same image."""
    out, _ = demo
    rebuilt = tmp_path / "img"
    assert cli(["compress", out / "lenet_compressed.npz", "-o", rebuilt, "--pes", "16",
                "--calibrate", out / "calibration.npy"]).code == 0
    for k in range(16):
        for kind in ("ptr", "spmat", "bias"):
            name = f"pe{k}_{kind}.hex"
            assert (rebuilt / name).read_text() == (out / "eie_image" / name).read_text(), name


def test_bnn_rtl_equals_golden_on_every_image(demo):
    from eie.sw.bnn.float_model import float_forward, load_model
    from eie.sw.bnn.golden import golden_forward
    from eie.sw.bnn.image import read_image

    out, report = demo
    image = read_image(out / "bnn_image")
    bits = np.load(out / "x_test_bits.npy")
    y = np.load(out / "y_test.npy")
    rtl = np.load(out / "bnn_rtl_outputs.npy")
    assert rtl.shape == (N_IMAGES, 10)
    gold = golden_forward(image, bits)
    np.testing.assert_array_equal(rtl, gold[:N_IMAGES])
    b = report["bnn"]
    assert b["rtl_matches_golden"] is True
    assert b["rtl_accuracy"] == pytest.approx(np.mean(np.argmax(rtl, axis=1) == y[:N_IMAGES]))
    model = load_model(out / "bnn_tfc.npz")
    assert b["float_accuracy"] == pytest.approx(
        np.mean(np.argmax(float_forward(model, bits), axis=1) == y))
    assert b["initiation_interval"] == b["initiation_interval_analytic"]


PRECISIONS = {"W1A1": ([1] * 4, [1] * 4), "W2A1": ([2] * 4, [1] * 4),
              "W1A2": ([1] * 4, [2, 2, 2, 1]), "W2A2": ([2] * 4, [2, 2, 2, 1])}
FIELDS = ("float_accuracy", "rtl_accuracy", "rtl_images", "rtl_matches_golden",
          "initiation_interval", "analytic_ii")


def test_bnn_four_precisions_in_the_report(demo):
    """bnn.precisions.<NAME> for W1A1, W2A1, W1A2, W2A2: every field, RTL == golden, measured
    II == analytic; W1A1 is the demo's BNN (not trained twice)."""
    out, report = demo
    on_disk = json.loads((out / "report.json").read_text())
    b = on_disk["bnn"]
    assert list(b["precisions"]) == list(PRECISIONS)
    for name, (wb, ab) in PRECISIONS.items():
        r = b["precisions"][name]
        for key in FIELDS:
            assert r.get(key) is not None, (name, key)
        assert r["weight_bits"] == wb and r["act_bits"] == ab, name
        assert r["rtl_images"] == N_IMAGES, name
        assert r["rtl_matches_golden"] is True, name
        assert r["golden_equals_float"] is True, name
        assert isinstance(r["initiation_interval"], int) and r["initiation_interval"] > 0, name
        assert r["initiation_interval"] == r["analytic_ii"], name
        assert 0.0 <= r["float_accuracy"] <= 1.0 and 0.0 <= r["rtl_accuracy"] <= 1.0, name
        assert r["epochs"] == on_disk["config"]["bnn_epochs"], name
    w1a1 = b["precisions"]["W1A1"]
    assert w1a1["model_file"] == "bnn_tfc.npz" and w1a1["image_dir"] == "bnn_image"
    for key in ("float_accuracy", "rtl_accuracy", "rtl_matches_golden", "initiation_interval"):
        assert w1a1[key] == b[key], key
    assert w1a1["analytic_ii"] == b["initiation_interval_analytic"]
    # the analytic II of each recomputed from its image's folding
    from eie.hw.bnn.folding import analytic_ii
    from eie.sw.bnn.image import read_image

    for name, r in b["precisions"].items():
        image = read_image(out / r["image_dir"])
        assert analytic_ii(image.folds) == r["analytic_ii"], name
        assert [f.out_bits for f in image.folds] == r["act_bits"], name
    checks = {c["check"]: c for c in on_disk["checks"]}
    for name in ("W2A1", "W1A2", "W2A2"):
        assert checks[f"BNN {name} RTL outputs equal the golden model"]["ok"] is True
    # the console/report summary and report.md carry one row a precision
    md = (out / "report.md").read_text()
    for name, r in b["precisions"].items():
        assert f"BNN {name}: float / RTL accuracy, II" in md, name
        assert f"| {name} | `{r['model_file']}` |" in md, name
    assert "docs/bnn.md" in md


@pytest.mark.parametrize("name", list(PRECISIONS))
def test_bnn_precision_from_its_files(demo, name):
    """Each precision's float accuracy re-evaluated from its saved model file, its golden model
    recompiled from that file, and its saved RTL outputs equal to golden."""
    from eie.sw.bnn.compile import compile_model
    from eie.sw.bnn.float_model import float_forward, load_model
    from eie.sw.bnn.golden import golden_forward
    from eie.sw.bnn.image import read_image

    out, report = demo
    r = report["bnn"]["precisions"][name]
    wb, ab = PRECISIONS[name]
    model_file = "bnn_tfc.npz" if name == "W1A1" else f"bnn_tfc_{name}.npz"
    assert r["model_file"] == model_file
    model = load_model(out / model_file)
    assert list(model.layer_bits) == wb and list(model.layer_acts) == ab
    bits = np.load(out / "x_test_bits.npy")
    y = np.load(out / "y_test.npy")
    flt = float_forward(model, bits)
    assert r["float_accuracy"] == pytest.approx(np.mean(np.argmax(flt, axis=1) == y))
    image = compile_model(model, report["config"]["bnn_fold"])
    gold = golden_forward(image, bits)
    np.testing.assert_array_equal(gold, flt)
    np.testing.assert_array_equal(golden_forward(read_image(out / r["image_dir"]), bits), gold)
    rtl = np.load(out / r["rtl_outputs_file"])
    assert rtl.shape == (N_IMAGES, 10)
    np.testing.assert_array_equal(rtl, gold[:N_IMAGES])
    assert r["rtl_accuracy"] == pytest.approx(np.mean(np.argmax(rtl, axis=1) == y[:N_IMAGES]))
    assert r["golden_accuracy"] == pytest.approx(np.mean(np.argmax(gold, axis=1) == y))


def test_bnn_precisions_are_different_networks(demo):
    """The four are trained separately: ternary files hold zeros, 2-bit ones act_bits."""
    out, report = demo
    files = {name: np.load(out / report["bnn"]["precisions"][name]["model_file"])
             for name in PRECISIONS}
    assert "weight_bits" not in files["W1A1"] and "act_bits" not in files["W1A1"]
    for name in ("W2A1", "W2A2"):
        assert list(files[name]["weight_bits"]) == [2] * 4
        assert report["bnn"]["precisions"][name]["zero_weights"] > 0
    for name in ("W1A2", "W2A2"):
        assert list(files[name]["act_bits"]) == [2, 2, 2, 1]
    assert not np.array_equal(files["W1A1"]["W0"], files["W2A1"]["W0"])


def test_report_files(demo):
    out, report = demo
    md = (out / "report.md").read_text()
    assert "all checks passed" in md and "EIE compression" in md
    for name in ("accuracy_vs_kept.png", "weight_hist.png", "pe_load.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert name in md


def test_efficiency_floor_is_a_check_of_the_demo(demo):
    """The README's "efficiency 0.92" on 16 PEs is held to issue 13's floor of 0.90 by the
    demo itself: a check enforced on the default and full runs over 200 digits or more (the
    quick run's few epochs train another network, and a few digits do not measure it: there
    it is reported, not enforced), failing below the floor and absent at other PE counts,
    where the demo claims no floor."""
    from eie.app.demo_report import MIN_EFFICIENCY_16_PES, report_checks

    _, report = demo
    name = "EIE efficiency >= 0.90 on 16 PEs"
    assert MIN_EFFICIENCY_16_PES == 0.90
    quick = {c["check"]: c for c in report["checks"]}[name]
    assert quick["enforced"] is False
    assert quick["ok"] == (report["eie"]["efficiency"] >= 0.90)
    for mode in ("default", "full"):
        for eff, ok in ((0.8999, False), (0.90, True), (0.92, True)):
            eie = {**report["eie"], "efficiency": eff}
            c = {c["check"]: c
                 for c in report_checks(DemoConfig.for_mode(mode), eie, report["bnn"])}
            assert c[name]["enforced"] is True and c[name]["ok"] is ok, (mode, eff)
    few = DemoConfig.for_mode("default", images=199)
    c = {c["check"]: c
         for c in report_checks(few, {**report["eie"], "efficiency": 0.8}, report["bnn"])}
    assert c[name]["enforced"] is False and c[name]["ok"] is False
    for n_pe in (8, 64):
        cfg = DemoConfig.for_mode("default", n_pe=n_pe)
        assert name not in {c["check"] for c in report_checks(cfg, report["eie"], report["bnn"])}


def test_bad_options_exit_2_and_touch_nothing(tmp_path, cli):
    r = cli(["demo", "--quick", "--images", "0", "--out", tmp_path / "o"])
    assert r.code == 2 and "--images 0" in r.err
    assert not (tmp_path / "o").exists()
    r = cli(["demo", "--quick", "--images", "1001", "--out", tmp_path / "o"])
    assert r.code == 2 and "1..1000" in r.err
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    r = cli(["demo", "--quick", "--out", precious])
    assert r.code == 2 and "left alone" in r.err
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_quick_preset():
    cfg = DemoConfig.for_mode("quick")
    assert cfg.images == QUICK_IMAGES and cfg.n_pe == 16
    assert DemoConfig.for_mode("default").images == 1000
    assert DemoConfig.for_mode("full").bnn_shape == "sfc"
    assert DemoConfig.for_mode("quick", images=300).images == 300


def test_load_is_checked_before_any_training(cli, tmp_path):
    from eie.common.errors import EieError

    assert DemoConfig.for_mode("quick").load == "bus"           # a host's way, by default
    with pytest.raises(EieError, match="'dma'.*bus, backdoor"):
        DemoConfig.for_mode("quick", out=tmp_path / "o", load="dma")
    # the command refuses at once, in one line, and leaves no output directory
    r = cli(["demo", "--quick", "--sim", "amaranth", "--load", "backdoor", "--out", tmp_path / "o"])
    assert r.code == 2 and "backdoor needs --sim verilator or icarus" in r.err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- a second run

def _every_entry(d) -> set[str]:
    """Every file under ``d`` (relative POSIX paths), listed here without the tool's help."""
    import os

    out = set()
    for root, _dirs, files in os.walk(d):
        for name in files:
            out.add(os.path.relpath(os.path.join(root, name), d).replace(os.sep, "/"))
    return out


def _replaceable(out) -> bool:
    """What `eie demo --out OUT` checks before a run: may OUT be replaced as a whole?"""
    from eie.app.cmd_demo import demo_dir_files
    from eie.common import outputs

    outputs.plan().directory(out, "--out", owner=demo_dir_files, kind="an `eie demo` output")
    return True


def test_a_second_run_replaces_the_first(demo, tmp_path):
    """`make demo` twice: the second run must accept the first one's output as its own. Every
    file the demo wrote (calibration.npy was missing from the list, so the second run stopped
    with "also holds files it does not list") is accounted for; a file of the user's is not."""
    import shutil

    from eie.app.cmd_demo import demo_dir_files
    from eie.common.errors import EieError

    out, _ = demo
    written = _every_entry(out)
    assert "calibration.npy" in written and "eie_image/manifest.json" in written
    assert demo_dir_files(out) == written
    assert _replaceable(out)
    # an output with a file of the user's in it is left alone
    mine = tmp_path / "mine"
    shutil.copytree(out, mine)
    (mine / "notes.txt").write_text("mine\n")
    with pytest.raises(EieError, match=r"also holds files it does not list \(notes.txt\)"):
        _replaceable(mine)
    # so is one whose report.json lists a file outside it
    evil = tmp_path / "evil"
    shutil.copytree(out, evil)
    report = json.loads((evil / "report.json").read_text())
    (evil / "report.json").write_text(json.dumps({**report, "files": ["../x"]}))
    assert demo_dir_files(evil) is None


def test_the_demo_run_twice_into_one_out(demo, tmp_path, cli):
    """The command itself, a second time into the first run's output (a copy of it: the other
    tests read the first): it replaces it, exit 0, and lists what it wrote."""
    import shutil

    out, _ = demo
    again = tmp_path / "out"
    shutil.copytree(out, again)
    first = json.loads((again / "report.json").read_text())["timings"]
    r = cli(["demo", "--quick", "--images", "1", "--sim", "icarus", "--load", "backdoor",
             "--no-progress", "--out", again])
    assert r.code == 0, r.err[-2000:]
    report = json.loads((again / "report.json").read_text())
    assert report["timings"] != first and report["eie"]["rtl_images"] == 1
    assert "calibration.npy" in report["files"]
    top = {p.name for p in again.iterdir()}
    assert top == set(report["files"]) | set(report["image_dirs"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]        # no debris beside it


def test_an_output_of_an_older_demo_is_replaced_too(demo, tmp_path):
    """An out/demo written before report.json listed its files (no `files`, `image_dirs`) is
    still recognised: every file such a demo wrote, calibration.npy included."""
    import shutil

    from eie.app.cmd_demo import demo_dir_files

    out, _ = demo
    old = tmp_path / "old"
    shutil.copytree(out, old)
    report = json.loads((old / "report.json").read_text())
    del report["files"], report["image_dirs"]
    (old / "report.json").write_text(json.dumps(report))
    assert _every_entry(old) <= demo_dir_files(old)     # the list names the SFC's files too
    assert _replaceable(old)


def test_the_summary_says_one_digit(demo):
    """--images 1: "1 digit", not "1 digits"."""
    import copy

    from eie.app.demo_report import format_summary

    _, report = demo
    one = copy.deepcopy(report)
    for part in (one["eie"], one["bnn"], *one["bnn"]["precisions"].values()):
        part["rtl_images"] = 1
    text = format_summary(one)
    assert "(1 digit)" in text and "  1 digit\n" in text
    assert "1 digits" not in text


def test_one_digit_has_no_measured_ii(demo):
    """--images 1: one result, no interval; the BNN's II (None, II_MIN's empty 4294967295
    before) is "not measured" in the summary and report.md."""
    import copy

    from eie.app.demo_report import format_summary, report_markdown

    _, report = demo
    one = copy.deepcopy(report)
    for part in (one["bnn"], *one["bnn"]["precisions"].values()):
        part["initiation_interval"] = None
    for text in (format_summary(one), report_markdown(one, [])):
        assert "not measured" in text and "None" not in text and "4294967295" not in text
    summary = format_summary(one)
    assert "BNN initiation interval (cycles)" in summary
    assert "; measuring it needs two digits or more" in summary
    md = report_markdown(one, [])
    assert "initiation interval not measured: that needs two digits or more (analytic " in md
    assert "| not measured | " in md


# ----------------------------------------------------------------------------- options first

@pytest.fixture
def no_run(monkeypatch):
    """The demo itself replaced by a failure: an option refused here is refused before it."""
    import eie.app.demo as demo_module

    def run_demo(cfg):
        raise AssertionError("the demo started")

    monkeypatch.setattr(demo_module, "run_demo", run_demo)


@pytest.mark.parametrize("fold, needle", [
    ("abc", "folding entry 0 is 'abc'; write SIMD:PE per layer, e.g. --bnn-fold"),
    ("1:1", "the folding has 1 SIMD:PE entries but the network has 4 layers"),
    ("0:1,1:1,1:1,1:1", "layer 0: SIMD 0 does not fit a fan-in of 784"),
    ("32:16,64:1,64:1,8:99", "layer 3: PE 99 does not fit 10 output neurons"),
])
def test_bnn_fold_is_checked_before_any_work(cli, tmp_path, no_run, fold, needle):
    """--bnn-fold was checked by the compiler, after the whole EIE half, in a message naming
    --fold."""
    r = cli(["demo", "--quick", "--bnn-fold", fold, "--out", tmp_path / "o"])
    r.assert_clean_error(f"--bnn-fold {fold!r} does not fold the TFC (784-64-64-64-10)")
    assert needle in r.err and "--fold " not in r.err
    assert list(tmp_path.iterdir()) == []


def test_bnn_fold_of_the_sfc_and_a_good_one(tmp_path):
    from eie.common.errors import EieError

    with pytest.raises(EieError, match=r"does not fold the SFC \(784-256-256-256-10\).*PE 512"):
        DemoConfig.for_mode("full", out=tmp_path / "o", bnn_fold="32:16,64:512,64:1,8:1")
    cfg = DemoConfig.for_mode("quick", out=tmp_path / "o", bnn_fold="32:16,64:1,64:1,8:1")
    assert cfg.bnn_fold == "32:16,64:1,64:1,8:1"


@pytest.mark.parametrize("seed", ["-1", "-3", str(2 ** 63)])
def test_a_seed_out_of_range_is_refused(cli, tmp_path, no_run, seed):
    """A negative seed was a traceback from NumPy's generator after the options were taken."""
    r = cli(["demo", "--quick", "--seed", seed, "--out", tmp_path / "o"])
    r.assert_clean_error(f"--seed {seed} is out of range")
    assert "from 0 to 9223372036854775807" in r.err
    assert list(tmp_path.iterdir()) == []


def test_progress_bars_only_on_a_terminal(capsys):
    """A bar drawn into a file or pipe (`eie demo 2>log`) is a stream of carriage returns."""
    import io

    from eie.app.demo_common import _bar

    bar = _bar(3, "EIE: train", True)
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    import sys

    term = Terminal()
    real, sys.stderr = sys.stderr, term
    try:
        for enabled in (True, False):
            bar = _bar(3, f"on a terminal {enabled}", enabled)
            bar.update(3)
            bar.close()
    finally:
        sys.stderr = real
    assert "on a terminal True" in term.getvalue()
    assert "on a terminal False" not in term.getvalue()        # --no-progress
