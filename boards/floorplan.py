"""Floorplan of the EIE's PEs on ECP5: each PE's block RAMs side by side in one block-RAM row, its
multiplier at the nearest DSP site; nextpnr's placer then gathers each PE's logic around them.

Why: left to itself, the placer spreads a PE over the die (its block RAMs in different rows,
its registers far from the logic they feed), and the 16-PE build's critical paths ran inside one
PE across 35 rows (docs/eie-hardware.md). Pinned, each PE sits in its own part of the die.

How: nextpnr takes a cell's ``BEL`` attribute as a placement constraint. The PE is one module
in the netlist nextpnr reads (synthesized once, instantiated ``n_pe`` times), so each instance
gets a copy of that module whose block-RAM and multiplier cells carry that instance's sites
(:func:`pin_pes`); the rest of the netlist is untouched.

The sites are asked of nextpnr itself (:func:`device_sites`): a netlist of as many unconnected
``DP16KD`` and ``MULT18X18D`` cells as the device has (the counts from nextpnr's utilization
report of one of each, packed) placed without routing; a few seconds for any ECP5 device and
package. On the LFE5U-85F the block RAMs lie in 4 rows of 52 (rows 22, 46, 70, 82), the
multipliers in 3 rows of 52 (10, 34, 58).

Layout: ``ceil(sqrt(n_pe))`` PEs a row (a square of PEs, as far as the rows allow: a group of
PEs that takes the broadcast from a copy of its own, ``eie.hw.eie.top.pe_group``), in the
block-RAM rows nearest the middle of the die; in each row a group of equal slices in the middle
of the row, a slice at most twice as wide as a PE's block RAMs, each PE's block RAMs side by
side in the middle of its slice in dataflow order (pointer banks, sparse-matrix words,
accumulator files); its multiplier at the nearest free DSP site (Manhattan distance from the
middle of its block RAMs). On the LFE5U-85F 16 PEs take the 4 rows, 4 a row, a slice of 12
sites each; 2 PEs sit side by side in row 46. When the rows are too few or too short, the PEs
take consecutive runs of sites in row order instead.
"""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any, Callable

from ..common.errors import EieError
from ..hw.eie.top import pe_group_size

__all__ = ["SITE_TYPES", "device_args", "device_sites", "pin_pes"]

#: the cell types pinned, block RAMs first
SITE_TYPES = ("DP16KD", "MULT18X18D")

#: the order of a PE's block RAMs along its slice of a row (by cell-name prefix): the
#: pointer banks, the sparse-matrix words, the accumulator files, then any other
_DATAFLOW = ("ptr.", "spm.", "accum.")

_BEL = re.compile(r"X(\d+)/Y(\d+)/(\S+)")
_USE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", re.M)


def device_args(nextpnr_argv: list[str]) -> list[str]:
    """The device options of a nextpnr-ecp5 command line (``--85k``, ``--package P``,
    ``--speed S``), as the build plan gives them."""
    out: list[str] = []
    it = iter(nextpnr_argv)
    for a in it:
        if re.fullmatch(r"--(um5g-|um-|5g-)?\d+k", a):
            out.append(a)
        elif a in ("--package", "--speed"):
            out += [a, next(it)]
    return out


def _netlist(counts: dict[str, int]) -> dict:
    cells = {f"{t.lower()}{i}": {"hide_name": 0, "type": t, "parameters": {}, "attributes": {},
                                 "port_directions": {}, "connections": {}}
             for t, n in counts.items() for i in range(n)}
    return {"creator": "eie.boards.floorplan",
            "modules": {"top": {"attributes": {"top": "1"}, "ports": {}, "cells": cells,
                                "netnames": {}}}}


def device_sites(nextpnr: str, dev_args: list[str], work: Path, env: dict
                 ) -> dict[str, list[tuple[int, int, str]]]:
    """Every ``DP16KD`` and ``MULT18X18D`` site of the device, ``{type: [(x, y, bel), ...]}``
    with ``bel`` the site's name in its tile, asked of ``nextpnr`` (the nextpnr-ecp5 command)
    run in ``work`` (a directory it may write: YoWASP's tools see their working directory)."""
    work.mkdir(parents=True, exist_ok=True)

    def run(args: list[str]) -> str:
        r = subprocess.run([nextpnr, *dev_args, "--timing-allow-fail", *args], cwd=work, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise EieError(f"floorplan: nextpnr could not list the device's sites (exit "
                           f"{r.returncode}): {r.stdout.strip()[-400:]}")
        return r.stdout

    (work / "one.json").write_text(json.dumps(_netlist({t: 1 for t in SITE_TYPES})))
    totals = {t: int(total) for t, _, total in _USE.findall(run(["--json", "one.json",
                                                                 "--pack-only"]))
              if t in SITE_TYPES}
    if set(totals) != set(SITE_TYPES):
        raise EieError(f"floorplan: nextpnr's report names no count for {set(SITE_TYPES) - set(totals)}")
    (work / "all.json").write_text(json.dumps(_netlist(totals)))
    run(["--json", "all.json", "--no-route", "--write", "placed.json"])
    placed = json.loads((work / "placed.json").read_text())["modules"]["top"]["cells"]
    sites: dict[str, list[tuple[int, int, str]]] = {t: [] for t in SITE_TYPES}
    for cell in placed.values():
        m = _BEL.fullmatch(cell["attributes"].get("NEXTPNR_BEL", ""))
        if m and cell["type"] in sites:
            sites[cell["type"]].append((int(m[1]), int(m[2]), m[3]))
    for t in SITE_TYPES:
        sites[t].sort(key=lambda s: (s[1], s[0]))
    return sites


def _rank(name: str) -> tuple:
    for i, prefix in enumerate(_DATAFLOW):
        if name.startswith(prefix):
            return (i, name)
    return (len(_DATAFLOW), name)


def pin_pes(netlist: dict, module: str, sites: dict[str, list[tuple[int, int, str]]],
            log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Pin every instance of ``module`` in ``netlist`` (Yosys's JSON, changed in place): each
    gets its own copy of the module (``<module>_<k>``, instances in index order of their names'
    last number) whose ``DP16KD`` and ``MULT18X18D`` cells carry ``BEL`` attributes (see the
    module docstring). Returns what was pinned, for the build report."""
    mods = netlist["modules"]
    if module not in mods:
        raise EieError(f"floorplan: the netlist has no module {module}")
    pe = mods[module]
    owners = [(mname, cname) for mname, mod in mods.items()
              for cname, cell in mod.get("cells", {}).items() if cell["type"] == module]
    owners.sort(key=lambda o: int((re.findall(r"\d+", o[1]) or ["0"])[-1]))
    n = len(owners)
    brams = sorted((c for c, cell in pe["cells"].items() if cell["type"] == "DP16KD"), key=_rank)
    mults = sorted(c for c, cell in pe["cells"].items() if cell["type"] == "MULT18X18D")
    b = len(brams)
    if n == 0:
        raise EieError(f"floorplan: nothing instantiates {module}")
    if n * b > len(sites["DP16KD"]) or n * len(mults) > len(sites["MULT18X18D"]):
        raise EieError(f"floorplan: {n} x {b} block RAMs and {n} x {len(mults)} multipliers do "
                       f"not fit the device's {len(sites['DP16KD'])} and "
                       f"{len(sites['MULT18X18D'])} sites")
    rows: dict[int, list[tuple[int, str]]] = {}
    for x, y, bel in sites["DP16KD"]:
        rows.setdefault(y, []).append((x, bel))
    row_len = min(len(r) for r in rows.values())
    # a row a group of PEs (those fed by one copy of the broadcast's registers)
    per_row = min(pe_group_size(n), row_len // b) if b else n
    used_rows = math.ceil(n / per_row) if per_row else len(rows) + 1
    runs: list[list[tuple[int, int, str]]] = []
    if b and used_rows <= len(rows):
        # the rows nearest the middle of the block-RAM rows, and in each a group of slices in
        # the middle of the row (a slice is at most twice a PE's block RAMs wide)
        mid = (min(rows) + max(rows)) / 2
        row_ys = sorted(sorted(rows, key=lambda y: (abs(y - mid), y))[:used_rows])
        width = min(row_len // per_row, 2 * b)
        first = (row_len - per_row * width) // 2
        for k in range(n):
            r, col = divmod(k, per_row)
            y = row_ys[r]
            row = sorted(rows[y])
            start = first + col * width + (width - b) // 2
            runs.append([(x, y, bel) for x, bel in row[start:start + b]])
        layout = (f"{per_row} PEs a row in {used_rows} block-RAM rows (y {row_ys}), {b} block "
                  f"RAMs each in the middle of a slice of {width} sites")
    else:
        row_ys = sorted(rows)
        order = [(x, y, bel) for y in row_ys for x, bel in sorted(rows[y])]
        runs = [order[k * b:(k + 1) * b] for k in range(n)]
        layout = f"{b} consecutive block RAMs a PE, in row order"
    free_dsp = list(sites["MULT18X18D"])
    for k, (mname, cname) in enumerate(owners):
        run = runs[k]
        cx = sum(x for x, _, _ in run) / len(run) if run else 0
        cy = run[0][1] if run else 0
        copy_mod = copy.deepcopy(pe)
        for cell, (x, y, bel) in zip(brams, run):
            copy_mod["cells"][cell]["attributes"]["BEL"] = f"X{x}/Y{y}/{bel}"
        for cell in mults:
            dsp = min(free_dsp, key=lambda s: (abs(s[0] - cx) + abs(s[1] - cy), s[1], s[0]))
            free_dsp.remove(dsp)
            copy_mod["cells"][cell]["attributes"]["BEL"] = f"X{dsp[0]}/Y{dsp[1]}/{dsp[2]}"
        new = f"{module}_{k}"
        mods[new] = copy_mod
        mods[mname]["cells"][cname]["type"] = new
    del mods[module]
    log(f"  floorplan: {n} PEs pinned, {layout}")
    return {"pes": n, "block_rams_a_pe": b, "multipliers_a_pe": len(mults),
            "block_ram_rows": sorted({run[0][1] for run in runs if run}), "layout": layout}
