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
    # reserved words of Verilog-2005 and SystemVerilog: the writer escapes them (\\module), so
    # the generated module could not be used (it was a RuntimeError traceback, exit 1)
    (["--pes", "2", "--name", "module"], "--name 'module' is a reserved word"),
    (["--pes", "2", "--name", "wire"], "--name 'wire' is a reserved word"),
    (["--pes", "2", "--name", "logic"], "--name 'logic' is a reserved word"),
    (["--pes", "2", "--name", "always_ff"], "--name 'always_ff' is a reserved word"),
    (["--pes", "2", "--name", "uwire"], "--name 'uwire' is a reserved word"),
])
def test_generate_bad_options_exit_2_and_write_nothing(tmp_path, cli, argv, message):
    r = cli(["generate", *argv, "-o", tmp_path / "x.v"])
    assert r.code == 2
    err = r.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("eie: error:")
    assert re.search(message, err), err
    assert list(tmp_path.iterdir()) == []


def test_the_keyword_list_is_what_the_verilog_writer_escapes():
    # a reserved word names nothing in the Verilog the design is written as: the writer escapes
    # it (`\\module `). One design with an input named after each listed word and a few near
    # misses: every listed word comes out escaped, every near miss plain; and
    # check_module_name refuses exactly the escaped ones
    import re

    from amaranth import Module, Signal
    from amaranth.back import verilog

    from eie.app.cmd_rtl import VERILOG_KEYWORDS, check_module_name
    from eie.common.errors import EieError

    near = ["Module", "WIRE", "wire_", "modules", "logic2", "eie_top", "xor_", "begin_end"]
    names = sorted(VERILOG_KEYWORDS) + near
    assert {"module", "wire", "logic", "reg", "always_ff", "endmodule", "uwire"} <= set(names)
    m = Module()
    inputs = [Signal(name=n) for n in names]
    y = Signal(name="y_out")
    parity = 0
    for a in inputs:
        parity = parity ^ a
    m.d.comb += y.eq(parity)
    text = verilog.convert(m, name="top", ports=[*inputs, y])
    for n in names:
        escaped = f"\\{n} " in text
        plain = re.search(rf"^\s*input {n};", text, re.M) is not None
        assert escaped != plain, n
        assert escaped == (n in VERILOG_KEYWORDS), n
        if escaped:
            with pytest.raises(EieError, match=f"--name '{n}' is a reserved word"):
                check_module_name(n)
        else:
            assert check_module_name(n) == n


def test_generate_a_name_beside_a_keyword(tmp_path, cli):
    # Verilog is case-sensitive: "Module" is not the keyword "module"
    r = cli(["generate", "--pes", "1", "--ptr-depth", "16", "--spmat-depth", "4",
             "--act-depth", "4", "--acc-depth", "4", "--name", "Module", "-o", tmp_path / "m.v"])
    assert r.code == 0, r.err
    assert "module Module(" in (tmp_path / "m.v").read_text()


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


def test_act_frac_contradicting_the_image_is_refused(tmp_path, cli, small_eie_image):
    # the image's act_frac is how its inputs are quantised and its outputs read: another one in
    # the design was accepted silently, while a contradicting --acc-bits or --pes is refused
    d = small_eie_image(n_pe=3)
    act_frac = read_image(d).act_frac
    other = (act_frac + 4) % 16
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "x.npy", np.zeros((1, 14)))
    for argv in (["generate", "--image", d, "-o", out / "x.v"],
                 ["run", d, "--input", out / "x.npy", "-o", out / "y.npy",
                  "--sim", "model", "--stats", out / "s.json"]):
        r = cli([*argv, "--act-frac", other])
        err = r.err.strip()
        assert r.code == 2 and len(err.splitlines()) == 1, r.err
        assert err.startswith(f"eie: error: --act-frac {other} contradicts the image"), err
        assert f"uses act_frac {act_frac}" in err and "drop --act-frac" in err, err
        assert sorted(p.name for p in out.iterdir()) == ["x.npy"]
        # the image's own value is no contradiction
        assert cli([*argv, "--act-frac", act_frac]).code == 0
        meta = out / ("x.json" if argv[0] == "generate" else "s.json")
        key = "parameters" if argv[0] == "generate" else "config"
        assert json.loads(meta.read_text())[key]["act_frac"] == act_frac
        for p in out.iterdir():
            if p.name != "x.npy":
                p.unlink()


@pytest.mark.parametrize("given,message", [
    # the image (14-11-6 on 3 PEs) needs 5 activation rows a PE and 4 accumulator rows: an
    # --act-depth below that was reported as "acc_depth = 4 exceeds act_depth = 2 ... (option
    # --acc-depth)", an option not given, its value derived from the image
    (["--act-depth", 2], "--act-depth 2 is too small for the image: it needs --act-depth >= 5 "
                         "(layer 0 has 14 inputs, 5 per PE on 3 PEs)"),
    (["--act-depth", 4], "--act-depth 4 is too small for the image: it needs --act-depth >= 5"),
    (["--acc-depth", 6], "--acc-depth 6 exceeds the 5 activation rows per PE the image needs "
                         "(act_depth, sized to the image): every accumulator row is written "
                         "back into the activation file, so give --act-depth 6 too, or an "
                         "--acc-depth of at most 5"),
])
def test_a_depth_the_image_does_not_allow_names_the_option_given(tmp_path, cli, small_eie_image,
                                                                  given, message):
    d = small_eie_image(n_pe=3)
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "x.npy", np.zeros((1, 14)))
    for argv in (["generate", "--image", d, "-o", out / "x.v"],
                 ["run", d, "--input", out / "x.npy", "-o", out / "y.npy", "--sim", "model",
                  "--stats", out / "s.json"]):
        r = cli([*argv, *given])
        r.assert_clean_error(message)
        other = "--acc-depth" if given[0] == "--act-depth" else "--act-depth"
        assert "acc_depth = " not in r.err and other not in r.err.split("give")[0], r.err
        assert sorted(p.name for p in out.iterdir()) == ["x.npy"]
        # what it asks for is enough
        fix = ["--act-depth", 5] if given[0] == "--act-depth" else [*given, "--act-depth", 6]
        assert cli([*argv, *fix]).code == 0
        for p in out.iterdir():
            if p.name != "x.npy":
                p.unlink()


@pytest.mark.parametrize("given,message", [
    (["--act-depth", 3], "--act-depth 3 is below --acc-depth 64 (its default): every accumulator "
                         "row is written back into the activation file, so give --acc-depth 3 "
                         "(or less) too"),
    (["--acc-depth", 100], "--acc-depth 100 exceeds --act-depth 64 (its default): every "
                           "accumulator row is written back into the activation file, so give "
                           "--act-depth 100 (or more) too"),
    # both given: the fields' own rule, which names them
    (["--act-depth", 8, "--acc-depth", 9], "acc_depth = 9 exceeds act_depth = 8"),
    (["--act-depth", 0], "act_depth = 0 is out of range"),
])
def test_generate_depths_against_the_defaults(tmp_path, cli, given, message):
    r = cli(["generate", "--pes", 2, *given, "-o", tmp_path / "x.v"])
    r.assert_clean_error(message)
    assert list(tmp_path.iterdir()) == []


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
    # stderr is not a terminal here: no progress bar (no carriage-return redraws in a log)
    assert "eie run (amaranth)" not in r.err and "\r" not in r.err
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


def test_generated_json_describes_the_pointer_word_and_the_bus(generated):
    # what a host of its own needs beyond the registers: the pointer word's fields decode what
    # the project's loader packs (eie.hw.eie.memory_map.pointer_words), the read latency is the
    # same number everywhere, and the bus rules and reset are stated
    from types import SimpleNamespace

    from eie.hw.eie.memory_map import pointer_words

    meta = json.loads((generated / "eie.json").read_text())
    cfg = EIEConfig(**{k: v for k, v in meta["parameters"].items()
                       if k in EIEConfig.__dataclass_fields__})
    latency = meta["memory_map"]["read_latency"]
    ack = next(p for p in meta["ports"] if p["name"] == "bus__r_ack")
    assert f"{latency} cycles after r_stb" in ack["doc"]
    assert any(f"{latency} cycles later" in rule for rule in meta["bus"]["rules"])
    assert "rst" in meta["bus"]["reset"] and "CTRL = 1" in meta["bus"]["run"]
    fields = meta["memory_map"]["regions"]["ptr"]["fields"]
    ptr = [0, 0, 1, 3, 3, 7, 9]                     # spans 0, 1, 2, 0, 4, 2
    layer = SimpleNamespace(n_in=6, ptr_base=0, entry_base=16)
    words = pointer_words(cfg, [layer], ptr)

    def field(word, name):
        return (word >> fields[name]["lsb"]) & ((1 << fields[name]["width"]) - 1)

    assert [field(w, "addr") for w in words] == [16 + p for p in ptr]
    spans = np.diff(ptr)
    assert [field(w, "nonempty") for w in words[:-1]] == [int(s != 0) for s in spans]
    assert [field(w, "single") for w in words[:-1]] == [int(s == 1) for s in spans]
    assert [field(w, "two") for w in words[:-1]] == [int(s == 2) for s in spans]
    assert words[-1] >> fields["nonempty"]["lsb"] == 0          # the last pointer: no flags
    assert sum(f["width"] for f in fields.values()) == meta["memory_map"]["regions"]["ptr"]["bits"]


@pytest.mark.rtl
def test_generated_verilog_runs_in_icarus_as_written(generated, tmp_path):
    # the file as `eie generate` writes it, with a plain Verilog testbench of a user's: reset,
    # then read ID over the bus; r_ack comes exactly read_latency cycles after r_stb and holds
    # the ID. (Without the 'initial #1' lines Icarus never ran the combinational blocks whose
    # inputs do not change after time 0, and r_ack stayed X.)
    import shutil
    import subprocess

    if shutil.which("iverilog") is None:
        pytest.fail("iverilog is not installed (apt-get install iverilog)")
    meta = json.loads((generated / "eie.json").read_text())
    mm = meta["memory_map"]
    width = mm["addr_width"]
    tb = tmp_path / "tb.v"
    tb.write_text(f"""`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1, w_stb = 0, r_stb = 0;
  reg [{width - 1}:0] addr = 0;
  reg [31:0] w_data = 0;
  wire [31:0] r_data;
  wire r_ack, busy, done;
  integer n;
  eie_top dut(.clk(clk), .rst(rst), .bus__addr(addr), .bus__w_data(w_data),
              .bus__w_stb(w_stb), .bus__r_stb(r_stb), .bus__r_data(r_data),
              .bus__r_ack(r_ack), .busy(busy), .done(done));
  always #5 clk = ~clk;
  initial begin
    @(posedge clk); #1 rst = 0;
    @(posedge clk); #1 addr = {meta["memory_map"]["registers"]["ID"]["addr"]}; r_stb = 1;
    @(posedge clk); #1 r_stb = 0;
    n = 1;
    while (r_ack !== 1'b1 && n < 50) begin
      if (r_ack !== 1'b0) begin $display("RACK %b at %0d", r_ack, n); $finish; end
      @(posedge clk); #1 n = n + 1;
    end
    $display("ACK %0d DATA %h BUSY %b DONE %b", n, r_data, busy, done);
    $finish;
  end
endmodule
""")
    vvp = tmp_path / "tb.vvp"
    subprocess.run(["iverilog", "-g2012", "-o", str(vvp), str(tb), str(generated / "eie.v")],
                   check=True, capture_output=True)
    out = subprocess.run(["vvp", "-n", str(vvp)], capture_output=True, text=True,
                         timeout=300).stdout
    assert f"ACK {mm['read_latency']} DATA 45494531 BUSY 0 DONE 0" in out, out
