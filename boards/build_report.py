"""What a bitstream build's tools report, read into ``report.json``'s fields.

:func:`parse_yosys_stats` reads the design's cell counts from the Yosys log, :func:`resources`
turns them into LUTs, flip-flops, block RAMs and DSPs; :func:`parse_nextpnr_report` reads block
use and the routed Fmax per clock from nextpnr's ``--report`` JSON; :func:`nextpnr_phases`
splits nextpnr's wall time into placement and routing from its log.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

__all__ = ["parse_yosys_stats", "resources", "parse_nextpnr_report", "nextpnr_phases"]

_YOSYS_CELL = re.compile(r"^\s+(\d+)\s+([A-Za-z_$][\w$]*)\s*$")
_YOSYS_CELL_OLD = re.compile(r"^\s+([A-Za-z_$][\w$]*)\s+(\d+)\s*$")


def parse_yosys_stats(log: str) -> dict[str, int]:
    """Cell counts of the whole design from a Yosys log: the last statistics block (the
    design hierarchy's totals, after synthesis; the hierarchy's own modules and instance counts
    left out). Reads both the newer ``count  type`` and the older ``type  count`` layouts."""
    for marker in ("=== design hierarchy ===", "Number of cells"):
        if marker in log:
            block = log.rsplit(marker, 1)[1]
            break
    else:
        return {}
    cells: dict[str, int] = {}
    modules: set[str] = set()    # a hierarchy's modules: listed (with their totals) before "wires"
    seen_wires = False
    for line in block.splitlines():
        if line.startswith("End of script") or line.startswith("==="):
            break
        mt = _YOSYS_CELL.match(line)
        if mt:
            seen_wires = seen_wires or mt.group(2) == "wires"
            if not seen_wires:
                modules.add(mt.group(2))
            elif mt.group(2) not in modules:
                cells[mt.group(2)] = int(mt.group(1))
            continue
        mt = _YOSYS_CELL_OLD.match(line)
        if mt and mt.group(1)[0].isupper():
            cells[mt.group(1)] = int(mt.group(2))
    for generic in ("wires", "cells", "submodules", "ports", "memories", "processes"):
        cells.pop(generic, None)
    return cells


def parse_nextpnr_report(report: dict, family: str) -> dict[str, Any]:
    """Block use and Fmax from nextpnr's ``--report`` JSON."""
    util = report.get("utilization", {})

    def use(*names):
        used = sum(util.get(n, {}).get("used", 0) for n in names)
        avail = sum(util.get(n, {}).get("available", 0) for n in names)
        return {"used": used, "available": avail}

    if family == "ice40":
        out = {"logic_cells": use("ICESTORM_LC"), "bram": use("ICESTORM_RAM"),
               "spram": use("ICESTORM_SPRAM"), "dsp": use("ICESTORM_DSP")}
    else:
        out = {"slices": use("TRELLIS_COMB"), "ff_sites": use("TRELLIS_FF"),
               "bram": use("DP16KD"), "dsp": use("MULT18X18D")}
    fmax = {clk: {"achieved_mhz": round(v.get("achieved", 0.0), 2),
                  "target_mhz": round(v.get("constraint", 0.0), 2)}
            for clk, v in report.get("fmax", {}).items()}
    return {"nextpnr_utilization": out, "fmax": fmax}


#: nextpnr's first line of routing (router1 "Routing..", router2 "Running router2...", the ECP5's
#: global nets routed first "Routing globals..."): placement is over when one appears.
_ROUTE_START = re.compile(
    r"^Info: (Routing globals|Routing\.\.|Running router2|Setting up routing)")
#: nextpnr's own timers: "HeAP Placer Time: 6.35s", "SA placement time 8.67s", "Router1 time 7.62s".
_NEXTPNR_TIMER = re.compile(r"^Info: (HeAP Placer Time|Initial placement time|SA placement time|"
                            r"Router1 time|Router2 time):? ([0-9.]+)s\s*$")


def nextpnr_phases(lines: Iterable[tuple[float, str]], total: float
                   ) -> tuple[dict[str, float | None], dict[str, float]]:
    """Split nextpnr's wall time ``total`` (seconds) into placement and routing from its log,
    given as ``(seconds since nextpnr started, line)`` in the order the lines were written.

    ``placement`` runs from nextpnr's start (reading the netlist, packing cells into the device's
    sites, placing) to its first routing line; ``routing`` from there to its exit (routing, the
    final timing analysis, writing the routed design). Both are None when the log has no
    routing line. The second dict holds nextpnr's own timers in seconds (``heap_placer``,
    ``sa_placement``, ``router1``, ...), summed when one appears twice."""
    route_start = None
    timers: dict[str, float] = {}
    for t, line in lines:
        if route_start is None and _ROUTE_START.match(line):
            route_start = t
        mt = _NEXTPNR_TIMER.match(line.rstrip())
        if mt:
            key = re.sub(r"\W+", "_", mt.group(1).lower().replace(" time", "")).strip("_")
            timers[key] = round(timers.get(key, 0.0) + float(mt.group(2)), 2)
    if route_start is None:
        return {"placement": None, "routing": None}, timers
    return {"placement": round(route_start, 1), "routing": round(total - route_start, 1)}, timers


def resources(cells: dict[str, int], family: str) -> dict[str, int]:
    if family == "ice40":
        luts = cells.get("SB_LUT4", 0)
        ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
        brams = sum(v for k, v in cells.items() if k.startswith("SB_RAM40"))
        dsps = cells.get("SB_MAC16", 0)
    else:
        luts = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
        ffs = cells.get("TRELLIS_FF", 0)
        brams = cells.get("DP16KD", 0)
        dsps = cells.get("MULT18X18D", 0)
    return {"luts": luts, "ffs": ffs, "brams": brams, "dsps": dsps}


