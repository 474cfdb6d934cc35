"""The ECP5 floorplan of the EIE's PEs (eie.boards.floorplan): the layout on made-up netlists,
the device's sites as nextpnr lists them, and a real 3-PE netlist pinned and placed by nextpnr."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from eie.boards.floorplan import SITE_TYPES, device_args, device_sites, pin_pes
from eie.boards.platforms import board_by_name
from eie.common.errors import EieError

PE = "eie_top_pe"
PE_RAMS = ["accum.file.0.0", "spm.mem.0.1", "ptr.odd.0.0", "accum.file.1.0", "ptr.even.0.0",
           "spm.mem.0.0"]
DATAFLOW = ["ptr.even.0.0", "ptr.odd.0.0", "spm.mem.0.0", "spm.mem.0.1", "accum.file.0.0",
            "accum.file.1.0"]


def _cell(kind):
    return {"type": kind, "attributes": {}, "parameters": {}, "connections": {}}


def _netlist(n_pe, rams=PE_RAMS):
    pe = {"cells": {**{r: _cell("DP16KD") for r in rams}, "arith.mul": _cell("MULT18X18D"),
                    "lut": _cell("LUT4")}, "attributes": {}}
    top = {"cells": {**{f"top.core.pe{k}": _cell(PE) for k in range(n_pe)},
                     "top.core.ccu.tbl": _cell("DP16KD")}, "attributes": {}}
    return {"modules": {PE: pe, "top": top}}


def _sites(rows=(22, 46, 70, 82), per_row=52, dsp_rows=(10, 34, 58)):
    xs = [4 + 2 * i + i // 4 for i in range(per_row)]
    return {"DP16KD": [(x, y, f"EBR{i % 4}") for y in rows for i, x in enumerate(xs)],
            "MULT18X18D": [(x, y, f"MULT18_{i % 2}") for y in dsp_rows for i, x in enumerate(xs)]}


def _bel(cell):
    m = re.fullmatch(r"X(\d+)/Y(\d+)/(\S+)", cell["attributes"]["BEL"])
    return int(m[1]), int(m[2]), m[3]


def _pins(netlist, n_pe):
    mods = netlist["modules"]
    out = []
    for k in range(n_pe):
        kind = mods["top"]["cells"][f"top.core.pe{k}"]["type"]
        cells = mods[kind]["cells"]
        out.append(({r: _bel(cells[r]) for r in PE_RAMS}, _bel(cells["arith.mul"])))
    return out


#: the block-RAM row of each PE (85F-like rows 22, 46, 70, 82): a square of PEs in the rows
#: nearest the middle
ROWS = {1: [46], 2: [46, 46], 4: [46, 46, 70, 70], 9: [22] * 3 + [46] * 3 + [70] * 3,
        16: [22] * 4 + [46] * 4 + [70] * 4 + [82] * 4}


@pytest.mark.parametrize("n_pe", sorted(ROWS))
def test_each_pe_gets_its_own_block_rams_side_by_side(n_pe):
    netlist = _netlist(n_pe)
    sites = _sites()
    info = pin_pes(netlist, PE, sites)
    mods = netlist["modules"]
    assert PE not in mods
    assert sorted(c["type"] for c in mods["top"]["cells"].values() if c["type"] != "DP16KD") == \
        sorted(f"{PE}_{k}" for k in range(n_pe))
    pins = _pins(netlist, n_pe)
    used = [s for rams, _ in pins for s in rams.values()]
    assert len(set(used)) == len(used) == 6 * n_pe
    assert len({m for _, m in pins}) == n_pe
    order = {y: sorted(x for x, yy, _ in sites["DP16KD"] if yy == y) for y in (22, 46, 70, 82)}
    for k, (rams, mult) in enumerate(pins):
        ys = {y for _, y, _ in rams.values()}
        assert len(ys) == 1, f"PE {k}'s block RAMs in one row"
        y = ys.pop()
        assert y == ROWS[n_pe][k]
        idx = [order[y].index(rams[r][0]) for r in DATAFLOW]
        if k and ROWS[n_pe][k - 1] == y:
            # next to the PE before it: at most a PE's width between them
            prev = [order[y].index(pins[k - 1][0][r][0]) for r in DATAFLOW]
            assert idx[0] - prev[-1] - 1 <= 6
        assert idx == list(range(idx[0], idx[0] + 6)), "side by side, in dataflow order"
        assert tuple(rams[r] for r in DATAFLOW) == tuple(
            next(s for s in sites["DP16KD"] if s[:2] == (order[y][i], y)) for i in idx)
        # the multiplier: the nearest DSP row, within the PE's columns
        xs = [x for x, _, _ in rams.values()]
        assert mult[1] in (10, 34, 58) and abs(mult[1] - y) <= 24
        assert min(xs) - 4 <= mult[0] <= max(xs) + 4
    assert info["pes"] == n_pe and info["block_rams_a_pe"] == 6


def test_slices_too_narrow_take_consecutive_sites():
    netlist = _netlist(8)
    info = pin_pes(netlist, PE, _sites(rows=(5, 9, 13), per_row=16))
    assert "row order" in info["layout"]
    used = [s for rams, _ in _pins(netlist, 8) for s in rams.values()]
    assert len(set(used)) == 48


def test_a_design_larger_than_the_device_is_refused():
    with pytest.raises(EieError, match=r"16 x 6 block RAMs .* do not fit the device's 20"):
        pin_pes(_netlist(16), PE, _sites(rows=(5, 9), per_row=10))
    with pytest.raises(EieError, match="no module"):
        pin_pes(_netlist(2), "other", _sites())


def test_device_args_from_the_plans_nextpnr_command():
    argv = ["nextpnr-ecp5", "--report", "r.json", "--seed", "1", "--85k", "--package",
            "CABGA381", "--speed", "6", "--json", "top.json", "--lpf", "top.lpf"]
    assert device_args(argv) == ["--85k", "--package", "CABGA381", "--speed", "6"]
    assert device_args(["nextpnr-ecp5", "--um5g-45k", "--package", "CABGA554"]) == [
        "--um5g-45k", "--package", "CABGA554"]


def test_the_85f_sites_as_nextpnr_lists_them(tmp_path):
    """What floorplan.py's docstring says of the LFE5U-85F: 4 block-RAM rows of 52, 3 DSP rows
    of 52, every site once."""
    import eie.boards.build as build_module

    env = build_module.yowasp_env()
    sites = device_sites(env["NEXTPNR_ECP5"], ["--85k", "--package", "CABGA381", "--speed", "6"],
                         tmp_path, env)
    for kind, rows in (("DP16KD", [22, 46, 70, 82]), ("MULT18X18D", [10, 34, 58])):
        assert len(set(sites[kind])) == len(sites[kind]) == 52 * len(rows)
        assert sorted({y for _, y, _ in sites[kind]}) == rows
        for y in rows:
            assert sum(1 for _, yy, _ in sites[kind] if yy == y) == 52
    # and what it says of the layout there: 16 PEs 4 a row in slices of 12; 2 side by side
    for n_pe in (16, 2):
        netlist = _netlist(n_pe)
        info = pin_pes(netlist, PE, sites)
        assert [rams["ptr.even.0.0"][1] for rams, _ in _pins(netlist, n_pe)] == ROWS[n_pe]
        if n_pe == 16:
            assert "slice of 12 sites" in info["layout"]


def test_a_pinned_3pe_netlist_places_where_pinned(tmp_path):
    """The build's floorplan step on a real 3-PE netlist (ulx3s-25f): nextpnr accepts the pins
    and places every PE's block RAMs and multiplier there (its placed netlist, no routing).
    And the synthesized netlist keeps a copy of the broadcast, source-bank, source, layer,
    host-request, read-address and scanned-slot registers for each of the 2 groups of PEs
    (``fanout_*``: Yosys would merge them into one without the build's ``keep``), and the
    controller's own registers of them apart from the copies."""
    import eie.boards.build as build_module
    from eie.boards.build import BuildSpec

    spec = BuildSpec(board_by_name("ulx3s-25f"), "eie", tmp_path / "out", pes=3)
    platform, top, _, _, kept = build_module._plan(spec)
    work = tmp_path / "w"
    build_module._extract_plan(spec, work, top, platform, kept)
    yosys, nextpnr = json.loads((work / "build_top.json").read_text())["commands"][:2]
    env = build_module.yowasp_env()
    subprocess.run([env["YOSYS"], *yosys[1:]], cwd=work, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    flops = {}
    act_regs = set()
    top_cells = json.loads((work / "top.json").read_text())["modules"]["top"]["cells"]
    for name, cell in top_cells.items():
        copy = re.match(r"top\.core\.(?:ccu\.)?fanout_([a-z]+)(\d+)(_[a-z_]+?)?_TRELLIS_FF",
                        name)
        if copy and cell["type"] == "TRELLIS_FF":
            flops.setdefault(copy.group(1), {}).setdefault(int(copy.group(2)), 0)
            flops[copy.group(1)][int(copy.group(2))] += 1
            if copy.group(1) == "act":
                act_regs.add(copy.group(3))
    assert sorted(flops) == ["act", "bank", "bcast", "host", "layer", "src"]
    # a group's activation stream: the read address and the scanned round slot
    assert act_regs == {"_addr", "_scan"}, act_regs
    # and the controller's own registers that the copies are copies of, not merged into one
    # of them (each set from the same next value): the source bank, the LNZD's read address,
    # the request register, the broadcast's valid flag (which its decision reads)
    own = {re.sub(r"_TRELLIS_FF.*", "", name) for name, cell in top_cells.items()
           if cell["type"] == "TRELLIS_FF"}
    assert {"top.core.ccu.fanout_bank", "top.core.ccu.lnzd.fanout_t_issue",
            "top.core.fanout_host_addr", "top.core.ccu.bcast__valid"} <= own
    for kind, groups in flops.items():
        assert sorted(groups) == [0, 1] and groups[0] == groups[1] >= 1, (kind, groups)
    # inside the PE (synthesized on its own, as one module): the pointer queue's head flag and
    # its select copy, the accumulator's wr_ stage flag and its copy, each kept apart
    pe_cells = json.loads((work / "top.json").read_text())["modules"][kept[0]]["cells"]
    pe_copies = {m.group(1) for name, cell in pe_cells.items() if cell["type"] == "TRELLIS_FF"
                 for m in [re.match(r"(ptr\.fanout_head_(?:valid|sel)|accum\.fanout_wr_valid"
                                    r"(?:_h)?)_TRELLIS_FF", name)] if m}
    assert pe_copies == {"ptr.fanout_head_valid", "ptr.fanout_head_sel", "accum.fanout_wr_valid",
                         "accum.fanout_wr_valid_h"}, sorted(n for n in pe_cells if "fanout_" in n)
    logged = []
    info = build_module._pin_pes(work, nextpnr, env, kept[0], logged.append)
    assert info["pes"] == 3 and logged and "3 PEs pinned" in logged[0]
    netlist = json.loads((work / "top.json").read_text())
    pinned = {}
    for k in range(3):
        cells = netlist["modules"][f"{kept[0]}_{k}"]["cells"]
        for name, cell in cells.items():
            if cell["type"] in SITE_TYPES:
                pinned[f"top.core.pe{k}.{name}"] = cell["attributes"]["BEL"]
    assert len(pinned) == 3 * (info["block_rams_a_pe"] + info["multipliers_a_pe"])
    argv = [a for a in nextpnr[1:] if a not in ("--quiet",)]
    argv = [a for a in argv if not a.startswith("--textcfg") and a != "top.config"]
    r = subprocess.run([env["NEXTPNR_ECP5"], *argv, "--no-route", "--write", "placed.json"],
                       cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    assert r.returncode == 0, r.stdout[-2000:]
    placed = json.loads((work / "placed.json").read_text())["modules"]["top"]["cells"]
    for name, bel in pinned.items():
        assert placed[name]["attributes"]["NEXTPNR_BEL"] == bel, name


def test_the_build_pins_8_pes_or_more_or_when_told():
    from eie.boards.build import FLOORPLAN_MIN_PES, BuildSpec, floorplan_wanted

    def spec(design="eie", board="ulx3s-85f", **kw):
        return BuildSpec(board_by_name(board), design, Path("unused"), **kw)

    assert FLOORPLAN_MIN_PES == 8
    assert floorplan_wanted(spec(pes=16)) and floorplan_wanted(spec())    # 16 by default
    assert floorplan_wanted(spec(pes=8))
    assert not floorplan_wanted(spec(pes=4)) and not floorplan_wanted(spec(pes=2))
    assert floorplan_wanted(spec(pes=2, floorplan=True))
    assert not floorplan_wanted(spec(pes=16, floorplan=False))
    for other in (spec("bnn"), spec("ram"), spec(board="icebreaker", pes=2, floorplan=True)):
        assert not floorplan_wanted(other)


def test_an_ecp5_eie_build_routes_with_router2_unless_told():
    from eie.boards.build import BuildSpec, router_for

    def spec(design="eie", board="ulx3s-85f", **kw):
        return BuildSpec(board_by_name(board), design, Path("unused"), **kw)

    assert router_for(spec()) == "router2"
    assert router_for(spec(router="router1")) == "router1"
    assert router_for(spec("bnn")) is None and router_for(spec(board="icebreaker")) is None


@pytest.mark.parametrize("argv, want", [([], (None, None)), (["--no-floorplan"], (False, None)),
                                        (["--floorplan"], (True, None)),
                                        (["--no-tmg-ripup"], (None, False)),
                                        (["--tmg-ripup", "--floorplan"], (True, True))])
def test_the_cli_passes_the_floorplan_and_ripup_choices(tmp_path, cli, monkeypatch, argv, want):
    """`eie build` leaves the choices to the PE count and the design; `--floorplan`/
    `--no-floorplan` and `--tmg-ripup`/`--no-tmg-ripup` reach the build as
    ``BuildSpec.floorplan`` and ``BuildSpec.tmg_ripup`` (the toolchain faked: nothing is
    synthesized)."""
    import eie.boards.build as build_module

    seen = {}

    def fake_build(spec, log=print):
        seen["choices"] = (spec.floorplan, spec.tmg_ripup)
        return {"resources": {"luts": 1, "ffs": 1, "brams": 1, "dsps": 0}, "core": {},
                "bitstream": "top.bit", "device": "LFE5U-85F", "step_seconds": {},
                "fmax_mhz": 30.0, "target_mhz": 25.0, "timing_met": True}

    monkeypatch.setattr(build_module, "build", fake_build)
    r = cli(["build", "--board", "ulx3s-85f", "--design", "eie", "--pes", "2", *argv,
             "--out", tmp_path / "b"])
    assert r.code == 0, r.err
    assert seen == {"choices": want}
