"""``eie bench table3`` and ``eie bench sweep {fifo,pes,width}``: EIE's benchmark table and
design-space sweeps on the synthetic Table III layers (:mod:`eie.app.bench_layers`).

``table3`` encodes each layer for ``--pes`` PEs (64 as in the paper), runs it on the RTL
(``--sim verilator``, ``icarus`` or ``amaranth``; every output compared with the golden model) or
on the cycle model (``--sim model``), and reports per layer: cycles, the contract's ideal bound,
efficiency = bound / cycles, microseconds at 800 MHz, EIE's actual and theoretical times and the
ratio of our cycles to EIE's actual cycles (64 PEs, 800 MHz both; EIE cycles = us x 800).

``sweep`` runs the cycle model over one design parameter: the activation-FIFO depth (EIE's Fig. 8,
load-balance efficiency), the PE count (Fig. 11, speed-up over one PE) or the sparse-matrix SRAM
word width (storage, padding, columns straddling words and SRAM reads; the RTL and the cycle model
have 64-bit words with prefetch across word boundaries, so cycles do not depend on the width). A
few small points are run on the RTL too (``--check-sim``) and compared counter by counter with the
cycle model; the comparison is part of the output.

The computations are :mod:`eie.app.bench_table3` and :mod:`eie.app.bench_sweep`, with what they
share (the setup, the cycle model's arguments, the output files) in :mod:`eie.app.bench_setup`;
this module is the command line.

Exit codes: 0; 1 when an RTL output differs from the golden model or a checked point of the cycle
model differs from the RTL; 2 for bad options (:class:`~eie.common.errors.EieError`).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Sequence

from .bench_layers import EIE_N_PE, parse_layers
from .bench_setup import RTL_SIMS, BenchSetup, write_json
from .bench_sweep import format_sweep, plot_sweep, sweep
from .bench_table3 import format_table3, plot_table3, table3
from ..hw.eie.variants import DEFAULT_VARIANT, variants_help
from ..sim.backdoor import LOADS
from ..sim.runner import CACHE_DIR_DEFAULT
from ..common import outputs
from ..common.errors import EieError

__all__ = [
    "register",
    "parse_int_list",
    "parse_set",
    "cmd_table3",
    "cmd_sweep",
]


# ----------------------------------------------------------------------------- options

def parse_set(items: Sequence[str] | None) -> dict[str, int]:
    """``--set FIELD=VALUE`` items to EIEConfig overrides, checked against the config's fields
    and each field's own limits (``EIEConfig._LIMITS``, the hardware's: what ``eie generate``
    accepts), before anything runs."""
    from ..hw.eie.config import EIEConfig

    names = [f.name for f in fields(EIEConfig)]
    out: dict[str, int] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise EieError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                           f"{', '.join(names)}")
        try:
            v = int(value, 0)
        except ValueError:
            raise EieError(f"--set {item!r}: {value!r} is not an integer") from None
        lo, hi, what = EIEConfig._LIMITS[key]
        if not lo <= v <= hi:
            raise EieError(f"--set {key}={v} is out of range: {what} must be from {lo} to {hi}; "
                           "give a value in that range")
        out[key] = v
    return out


def parse_int_list(text: str, opt: str, *, empty: bool = True) -> list[int]:
    """``"8,16,32"`` -> ``[8, 16, 32]``; :class:`EieError` naming ``opt`` for anything else,
    and (``empty=False``) for no value at all."""
    try:
        values = [int(v, 0) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EieError(f"{opt} {text!r} must be integers separated by commas") from None
    if not values and not empty:
        raise EieError(f"{opt} {text!r} names no value; give integers separated by commas "
                       f"(e.g. {opt} 4,8,16), or leave {opt} out for the defaults")
    return values


# ----------------------------------------------------------------------------- CLI

def _check_out_path(path: Path | None, what: str, suffix: str) -> None:
    if path is None:
        return
    if path.is_dir():
        raise EieError(f"{what} {path} is a directory; give a file name ending in {suffix}")
    if path.suffix.lower() != suffix:
        raise EieError(f"{what} {path} must end in {suffix}")


def _plan_outputs(args: argparse.Namespace) -> None:
    """Check ``--json``, ``--plot`` and ``--build-dir`` before anything runs
    (:mod:`eie.common.outputs`)."""
    _check_out_path(args.json, "--json", ".json")
    _check_out_path(args.plot, "--plot", ".png")
    paths = outputs.plan()
    if args.json:
        paths.file(args.json, "--json")
    if args.plot:
        paths.file(args.plot, "--plot")
    if args.build_dir is not None:
        paths.cache(args.build_dir, "--build-dir")


def _setup_from_args(args: argparse.Namespace) -> BenchSetup:
    return BenchSetup.from_variant(args.variant, fifo_depth=args.fifo_depth,
                                   overrides=parse_set(args.set),
                                   n_pe=EIE_N_PE if args.pes is None else args.pes,
                                   seed=args.seed, scale=args.scale, act_frac=args.act_frac)


def _refuse_unused(given: Sequence[str], context: str, instead: str = "") -> None:
    """Options that would change nothing in this run: refused, not silently ignored."""
    if given:
        raise EieError(f"{' and '.join(given)} cannot be used {context} (drop "
                       f"{'it' if len(given) == 1 else 'them'}{instead})")


def cmd_table3(args: argparse.Namespace) -> int:
    _plan_outputs(args)
    if args.sim == "model":
        _refuse_unused([opt for opt, v in (("--load", args.load), ("--build-dir", args.build_dir))
                        if v is not None], "with --sim model, which runs no RTL",
                       f", or pick --sim {', '.join(RTL_SIMS[:-1])} or {RTL_SIMS[-1]}")
    setup = _setup_from_args(args)
    specs = parse_layers(args.layers)
    doc = table3(specs, setup, args.sim, build_dir=args.build_dir, load=args.load)
    print(format_table3(doc))
    if args.json:
        write_json(doc, args.json)
    if args.plot:
        plot_table3(doc, args.plot)
    if doc["sim"] != "model" and not (doc["all_equal_golden"] and doc["model_equals_rtl"]):
        return 1        # an output off the golden model or a counter off the cycle model
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    _plan_outputs(args)
    swept = {"fifo": ("--fifo-depth", args.fifo_depth, "FIFO depth"),
             "pes": ("--pes", args.pes, "PE count")}
    if args.kind in swept and swept[args.kind][1] is not None:
        opt, _, what = swept[args.kind]
        _refuse_unused([opt], f"with sweep {args.kind}, which sets the {what} of each point "
                              "itself", "; choose the points with --values")
    if args.check_sim == "none" and args.build_dir is not None:
        _refuse_unused(["--build-dir"], "with --check-sim none, which builds and simulates "
                                        "nothing")
    setup = _setup_from_args(args)
    specs = parse_layers(args.layers)
    values = (parse_int_list(args.values, "--values", empty=False) if args.values is not None
              else None)
    if args.jobs < 1:
        raise EieError(f"--jobs {args.jobs} must be at least 1")
    check = None if args.check_sim == "none" else args.check_sim
    doc = sweep(args.kind, specs, setup, values, check_sim=check, build_dir=args.build_dir,
                jobs=args.jobs)
    print(format_sweep(doc))
    if args.json:
        write_json(doc, args.json)
    if args.plot:
        plot_sweep(doc, args.plot)
    return 0 if doc["checks_pass"] in (None, True) else 1


def _common(p: argparse.ArgumentParser, default_layers: str, default_variant: str) -> None:
    p.add_argument("--pes", type=int, default=None, metavar="N",
                   help=f"processing elements (default {EIE_N_PE}, as in the paper; not with "
                        "sweep pes, which sets it)")
    p.add_argument("--variant", default=default_variant, metavar="NAME",
                   help=f"named configuration: {variants_help()}; --fifo-depth and --set "
                        f"replace its fields (default {default_variant})")
    p.add_argument("--fifo-depth", type=int, default=None, metavar="D",
                   help="activation-FIFO depth per PE (default: the variant's; not with sweep "
                        "fifo, which sets it)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="any other EIEConfig field (e.g. ptr_queue_depth=8), within the limits "
                        "eie generate takes; repeatable")
    p.add_argument("--layers", action="append", metavar="LIST",
                   help="comma-separated Table III names (Alex-6, ..., NT-LSTM), 'all', or custom "
                        "layers NAME:N_INxN_OUT:WEIGHT_DENSITY:ACT_DENSITY[:EIE_US:EIE_THEO_US]"
                        f"[:signed][:norelu] (default {default_layers})")
    p.add_argument("--scale", type=float, default=1.0, metavar="S",
                   help="shrink every layer's n_in and n_out by S in (0, 1] for quick runs "
                        "(default 1, the paper's sizes; EIE's times then do not apply)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and inputs (default 0)")
    p.add_argument("--act-frac", type=int, default=8, metavar="F",
                   help="activation fraction bits (default 8)")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write the results as JSON")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="write the figure (PNG)")
    p.add_argument("--build-dir", type=Path, metavar="DIR",
                   help=f"RTL build cache (default {CACHE_DIR_DEFAULT})")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench table3`` and ``bench sweep``."""
    p = subparsers.add_parser(
        "bench", help="EIE's benchmark table (Table III) and design-space sweeps",
        description="Benchmarks on synthetic layers with the sizes and densities of EIE's nine "
                    "Table III layers (magnitude-pruned Gaussian weights shared to 16 codes, "
                    "inputs with the layer's activation density, fixed seeds).")
    sub = p.add_subparsers(dest="bench_command", metavar="{table3,sweep}")
    sub.required = True
    t = sub.add_parser(
        "table3", help="cycles, bound, efficiency and EIE's times for the nine layers",
        description="Per layer: cycles, the contract's bound, efficiency = bound / cycles, "
                    "microseconds at 800 MHz, EIE's actual and theoretical times and our cycles "
                    "over EIE's actual cycles (64 PEs, 800 MHz). With an RTL simulator every "
                    "output is compared with the golden model (exit 1 if one differs).")
    t.add_argument("--sim", choices=("model",) + RTL_SIMS, default="model",
                   help="cycle model (default) or an RTL simulator")
    t.add_argument("--load", choices=LOADS, default=None,
                   help="how the images get into the RTL: backdoor (default with verilator and "
                        "icarus: pointer and sparse-matrix words deposited into the memories, "
                        "a sample read back through the bus) or bus (default with amaranth: "
                        "every word written through the host bus, about 1,300 words a second "
                        "at 64 PEs on Verilator, hours for the nine full-size layers)")
    _common(t, "all nine", DEFAULT_VARIANT)
    t.set_defaults(func=cmd_table3)
    s = sub.add_parser(
        "sweep", help="cycle-model sweeps: FIFO depth, PE count, SRAM word width",
        description="Efficiency against FIFO depth (EIE Fig. 8), speed-up against PE count "
                    "(Fig. 11) or storage and reads against SRAM word width, with the cycle "
                    "model; a few small points are checked against the RTL (--check-sim).")
    s.add_argument("kind", choices=("fifo", "pes", "width"), help="what to sweep")
    s.add_argument("--values", metavar="V1,V2,...",
                   help="points to sweep (default: 1..256 in powers of two for fifo and pes, "
                        "32..512 bits for width)")
    s.add_argument("--check-sim", choices=RTL_SIMS + ("none",), default="amaranth",
                   help="simulator for the RTL check points (default amaranth; none to skip)")
    s.add_argument("--jobs", type=int, default=1, metavar="J",
                   help="worker processes, one layer each (default 1)")
    _common(s, "all nine", "paper")
    s.set_defaults(func=cmd_sweep)
