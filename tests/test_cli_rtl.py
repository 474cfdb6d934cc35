"""``eie generate`` and ``eie run`` through the CLI entry point (``eie.app.cli.main``)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from eie.hw.eie.config import EIEConfig
from eie.hw.eie.memory_map import MemoryMap
from eie.app.cli import main
from eie.app.cmd_rtl import LINT_WAIVERS, lint_verilog
from eie.sw.fixedpoint import quantize
from eie.sw.golden import golden_forward
from eie.sw.image import read_image


def _port_widths(verilog: str, module: str) -> dict[str, tuple[str, int]]:
    """Direction and width of every port of ``module``, parsed from the declarations."""
    body = verilog.split(f"module {module}(", 1)[1].split("endmodule", 1)[0]
    header, rest = body.split(");", 1)
    names = [n.strip() for n in header.split(",")]
    out = {}
    for name in names:
        m = re.search(rf"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?{re.escape(name)};", rest, re.M)
        assert m, f"no declaration of port {name}"
        out[name] = (m.group(1), int(m.group(2)) + 1 if m.group(2) else 1)
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    code = main(["generate", "--pes", "5", "--fifo-depth", "3", "--ptr-depth", "300",
                 "--spmat-depth", "100", "--act-depth", "20", "--acc-depth", "12",
                 "-o", str(d / "eie.v")])
    assert code == 0
    return d


def test_generate_writes_verilog_and_memory_map(generated):
    cfg = EIEConfig(n_pe=5, fifo_depth=3, ptr_depth=300, spmat_depth=100, act_depth=20,
                    acc_depth=12)
    text = (generated / "eie.v").read_text()
    meta = json.loads((generated / "eie.json").read_text())
    assert text.count("module eie_top(") == 1
    assert meta["toplevel"] == "eie_top" and meta["verilog"] == "eie.v"
    assert meta["parameters"] == cfg.to_json()
    assert meta["memory_map"] == json.loads(json.dumps(MemoryMap(cfg).to_json()))
    ports = _port_widths(text, "eie_top")
    assert {p["name"]: (p["dir"] + "put", p["width"]) for p in meta["ports"]} == ports
    assert ports["bus__addr"] == ("input", MemoryMap(cfg).addr_width)
    assert ports["bus__r_data"] == ("output", 32)
    assert not any("$" in name or "\\" in name for name in ports)


@pytest.mark.rtl
def test_generated_verilog_passes_verilator_lint(generated):
    code, msgs = lint_verilog(generated / "eie.v")
    assert code == 0, msgs
    assert "%Warning" not in msgs and "%Error" not in msgs, msgs
    # the waivers are the documented ones, nothing broader
    assert set(LINT_WAIVERS) == {"-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE",
                                 "-Wno-ASCRANGE"}


@pytest.mark.rtl
def test_generate_lint_option(tmp_path, cli):
    r = cli(["generate", "--pes", "1", "--fifo-depth", "1", "--ptr-depth", "16",
             "--spmat-depth", "4", "--act-depth", "4", "--acc-depth", "4",
             "-o", tmp_path / "one.v", "--name", "eie_one", "--lint"])
    assert r.code == 0, r.err
    assert "lint-only clean" in r.out
    assert "module eie_one(" in (tmp_path / "one.v").read_text()


@pytest.mark.parametrize("argv,fifo,queue", [
    (["--variant", "balanced"], 8, 32),
    (["--variant", "paper"], 8, 4),
    (["--variant", "standard"], 8, 15),
    ([], 8, 15),                      # the accelerator's defaults are the standard variant's
    (["--variant", "balanced", "--ptr-queue-depth", "16", "--fifo-depth", "2"], 2, 16),
])
def test_generate_variant(tmp_path, cli, argv, fifo, queue):
    out = tmp_path / "v.v"
    assert cli(["generate", "--pes", "2", "--ptr-depth", "32", "--spmat-depth", "8",
                "--act-depth", "8", "--acc-depth", "8", "--bias-depth", "8", *argv,
                "-o", out]).code == 0
    params = json.loads(out.with_suffix(".json").read_text())["parameters"]
    assert (params["fifo_depth"], params["ptr_queue_depth"]) == (fifo, queue)


def test_generate_sized_from_image(tmp_path, cli, small_eie_image):
    d = small_eie_image()
    assert cli(["generate", "--image", d, "--fifo-depth", "2", "-o", tmp_path / "e.v"]).code == 0
    meta = json.loads((tmp_path / "e.json").read_text())
    assert meta["parameters"] == EIEConfig.for_image(read_image(d), fifo_depth=2).to_json()


@pytest.mark.parametrize("argv,message", [
    (["--pes", "0"], "n_pe = 0 is out of range.*from 1 to 256.*--pes"),
    (["--pes", "300"], "n_pe = 300 is out of range"),
    (["--pes", "2", "--fifo-depth", "0"], "fifo_depth = 0.*--fifo-depth"),
    ([], "--pes N"),
    (["--pes", "2", "--name", "9bad"], "not a valid Verilog module name"),
])
def test_generate_bad_options_exit_2_and_write_nothing(tmp_path, cli, argv, message):
    r = cli(["generate", *argv, "-o", tmp_path / "x.v"])
    assert r.code == 2
    err = r.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("eie: error:")
    assert re.search(message, err), err
    assert list(tmp_path.iterdir()) == []


def test_generate_keeps_a_json_it_did_not_write(tmp_path, cli, small_eie_image):
    # the memory map goes beside the Verilog (-o X.v -> X.json); a user's X.json there (here an
    # image's own manifest) is not replaced, and nothing is written; the tool's own is
    d = small_eie_image(n_pe=2)
    manifest = (d / "manifest.json").read_bytes()
    r = cli(["generate", "--pes", "2", "-o", d / "manifest.v"])
    assert r.code == 2
    assert "exists and is not a memory map eie generate wrote" in r.err, r.err
    assert (d / "manifest.json").read_bytes() == manifest
    assert not (d / "manifest.v").exists()
    mine = tmp_path / "notes.json"
    mine.write_text('{"generator": "someone else"}')
    r = cli(["generate", "--pes", "2", "-o", tmp_path / "notes.v"])
    assert r.code == 2 and mine.read_text() == '{"generator": "someone else"}'
    assert cli(["generate", "--pes", "2", "-o", tmp_path / "eie.v"]).code == 0
    first = json.loads((tmp_path / "eie.json").read_text())
    assert cli(["generate", "--pes", "3", "-o", tmp_path / "eie.v"]).code == 0
    second = json.loads((tmp_path / "eie.json").read_text())
    assert (first["parameters"]["n_pe"], second["parameters"]["n_pe"]) == (2, 3)


def test_generate_pes_contradicting_image(tmp_path, cli, small_eie_image):
    d = small_eie_image(n_pe=3)
    r = cli(["generate", "--image", d, "--pes", "4", "-o", tmp_path / "x.v"])
    assert r.code == 2 and "encoded for 3 PEs" in r.err
    assert not (tmp_path / "x.v").exists()


# ----------------------------------------------------------------------------- run

@pytest.mark.rtl
def test_run_amaranth_float_input_equals_golden_with_stats(tmp_path, cli, small_eie_image):
    d = small_eie_image()
    rng = np.random.default_rng(4)
    x = rng.normal(0, 2, (3, 14)) * (rng.random((3, 14)) < 0.6)
    np.save(tmp_path / "x.npy", x)
    r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
             "--sim", "amaranth", "--stats", tmp_path / "s.json"])
    assert r.code == 0, r
    assert "equal to the golden model on all 3 samples" in r.out
    assert "eie run (amaranth)" in r.err          # the progress bar
    img = read_image(d)
    xq = quantize(x, img.act_frac)
    g = golden_forward(img, xq)
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.int16
    np.testing.assert_array_equal(y, g.outputs)
    # the same result as `eie golden` on the same file
    assert cli(["golden", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "g.npy"]).code == 0
    np.testing.assert_array_equal(y, np.load(tmp_path / "g.npy"))
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["equal"] is True and stats["simulator"] == "amaranth"
    assert len(stats["samples"]) == 3
    for s, sample in enumerate(stats["samples"]):
        assert sample["equal"] and sample["mismatches"] == 0
        assert sample["run_cycles"] == sum(l["cycles"] for l in sample["layers"])
        for l, layer in enumerate(sample["layers"]):
            assert layer["broadcasts"] == int(g.stats[l].nonzero_inputs[s])
            assert layer["bound"] == int(g.stats[l].bound[s])
            assert layer["efficiency"] == layer["bound"] / layer["cycles"]    # exactly
            assert len(layer["busy"]) == len(layer["stall"]) == 3
    assert stats["config"] == EIEConfig.for_image(img).to_json()


@pytest.mark.rtl
def test_run_raw_icarus(tmp_path, cli, small_eie_image):
    d = small_eie_image(n_pe=2, seed=9)
    img = read_image(d)
    x = np.random.default_rng(1).integers(-900, 900, (2, 14)).astype(np.int16)
    np.save(tmp_path / "x.npy", x)
    r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--raw",
             "--sim", "icarus", "--fifo-depth", "1", "--no-progress",
             "--stats", tmp_path / "s.json"])
    assert r.code == 0, r
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), golden_forward(img, x).outputs)
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["config"]["fifo_depth"] == 1 and stats["simulator"] == "icarus"


@pytest.mark.rtl
def test_run_backdoor_load_icarus(tmp_path, cli, small_eie_image):
    """``--load backdoor`` gives the same outputs and counters as the bus load."""
    d = small_eie_image(n_pe=3, seed=4)
    img = read_image(d)
    x = np.random.default_rng(3).integers(-900, 900, (2, 14)).astype(np.int16)
    np.save(tmp_path / "x.npy", x)
    stats = {}
    for load in ("bus", "backdoor"):
        r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / f"y_{load}.npy",
                 "--raw", "--sim", "icarus", "--load", load, "--no-progress",
                 "--stats", tmp_path / f"s_{load}.json"])
        assert r.code == 0, r
        np.testing.assert_array_equal(np.load(tmp_path / f"y_{load}.npy"),
                                      golden_forward(img, x).outputs)
        stats[load] = json.loads((tmp_path / f"s_{load}.json").read_text())
    assert [s["run_cycles"] for s in stats["bus"]["samples"]] == \
        [s["run_cycles"] for s in stats["backdoor"]["samples"]]
    assert [s["layers"] for s in stats["bus"]["samples"]] == \
        [s["layers"] for s in stats["backdoor"]["samples"]]


def test_run_backdoor_on_amaranth_exit_2(tmp_path, cli, small_eie_image):
    d = small_eie_image()
    np.save(tmp_path / "x.npy", np.zeros((1, 14), np.int16))
    r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--raw",
             "--sim", "amaranth", "--load", "backdoor", "--no-progress"])
    assert r.code == 2
    assert "use --sim verilator or icarus" in r.err
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.rtl
def test_run_reports_a_mismatch_with_exit_1(tmp_path, cli, small_eie_image, monkeypatch):
    """The comparison itself: a simulator that returned a wrong value is caught and located."""
    import eie.sim.eie_run as eie_run

    real = eie_run.run_eie

    def corrupt(*args, **kwargs):
        r = real(*args, **kwargs)
        r.outputs = r.outputs.copy()
        r.outputs[1, 4] ^= 1
        return r

    monkeypatch.setattr(eie_run, "run_eie", corrupt)
    d = small_eie_image()
    x = np.random.default_rng(2).integers(-900, 900, (2, 14)).astype(np.int16)
    np.save(tmp_path / "x.npy", x)
    r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--raw",
             "--sim", "amaranth", "--no-progress", "--stats", tmp_path / "s.json"])
    assert r.code == 1
    assert "MISMATCH: 1 of 2 samples" in r.err and "sample 1, output 4" in r.err
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["equal"] is False and stats["samples"][1]["mismatches"] == 1
    assert stats["samples"][0]["equal"] is True


@pytest.mark.parametrize("make_x,extra,message", [
    (lambda: np.zeros((2, 9)), [], r"shape \(2, 9\).*takes 14 inputs"),
    (lambda: np.zeros((2, 14)), ["--raw"], "--raw expects int16"),
    (lambda: np.zeros((2, 14), np.int16), [], "float input is expected"),
    (lambda: np.full((1, 14), 70000, np.int32), ["--raw"], "70000.*outside int16"),
    (lambda: np.full((1, 14), np.nan), [], "NaN"),
    (lambda: np.zeros((1, 14)), ["--ptr-depth", "4"], "pointers per PE.*--ptr-depth"),
    (lambda: np.zeros((1, 14)), ["--fifo-depth", "0"], "fifo_depth = 0.*--fifo-depth"),
])
def test_run_bad_input_exit_2_nothing_written(tmp_path, cli, small_eie_image, make_x, extra,
                                              message):
    d = small_eie_image()
    np.save(tmp_path / "x.npy", make_x())
    r = cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
             "--sim", "amaranth", "--no-progress", "--stats", tmp_path / "s.json", *extra])
    err = r.err.strip()
    assert r.code == 2
    assert re.search(message, err.splitlines()[-1]), err
    assert not (tmp_path / "y.npy").exists() and not (tmp_path / "s.json").exists()


def test_run_missing_input_file(tmp_path, cli, small_eie_image):
    d = small_eie_image()
    r = cli(["run", d, "--input", tmp_path / "nope.npy", "-o", tmp_path / "y.npy",
             "--sim", "amaranth"])
    assert r.code == 2 and "does not exist" in r.err


@pytest.mark.rtl
def test_run_vcd(tmp_path, cli, small_eie_image):
    d = small_eie_image()
    np.save(tmp_path / "x.npy", np.ones((1, 14), np.int16))
    assert cli(["run", d, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--raw",
                "--sim", "amaranth", "--no-progress", "--vcd", tmp_path / "w.vcd"]).code == 0
    # the header declares every signal of the design (about 100 kB for this one)
    head = (tmp_path / "w.vcd").read_text(errors="replace")[:1_000_000]
    assert "$enddefinitions" in head and "bus__addr" in head
