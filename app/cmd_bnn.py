"""``eie bnn compile|golden|run|generate``: the BNN XNOR-popcount core from the command line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..common import outputs
from ..common.atomic import atomic_file
from ..common.errors import EieError
from ..sim.runner import ALL_SIMULATORS

__all__ = ["register"]


def _save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_file(path, "wb") as f:
        np.save(f, array)


@contextlib.contextmanager
def _output_to(log: Path | None):
    """Send this process's stdout/stderr (file descriptors, so simulator subprocesses too) to
    ``log`` while the block runs; ``None`` leaves them alone."""
    if log is None:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log, "w") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _cmd_compile(args) -> int:
    paths = outputs.plan()          # first: an interrupt from here on can say what -o holds
    paths.input(args.model, "MODEL.npz", kind="npz")
    from ..sw.bnn.image import OWNER, OWNER_KIND, write_image

    paths.directory(args.output, "-o", owner=OWNER, kind=OWNER_KIND)
    from ..sw.bnn.compile import compile_model
    from ..sw.bnn.float_model import load_model

    model = load_model(args.model)
    image = compile_model(model, args.fold)
    write_image(image, args.output, extra={"source": Path(args.model).name, "eps": model.eps})
    folds = image.folds
    flipped = sum(s.get("flipped_neurons", 0) for s in image.stats)
    const = sum(s.get("constant_one", 0) + s.get("constant_zero", 0) for s in image.stats)
    print(f"{args.output}: shape {','.join(map(str, image.shape))}, folding "
          f"{','.join(f'{f.simd}:{f.pe}' for f in folds)}, II {max(f.ii for f in folds)} cycles; "
          f"{flipped} neurons flipped, {const} constant")
    return 0


def _cmd_golden(args) -> int:
    from ..sw.bnn.golden import golden_forward
    from ..sw.bnn.image import read_image
    from ..sw.inputs import load_bnn_input

    paths = outputs.plan()
    paths.input(args.image, "IMAGE_DIR")
    paths.input(args.input, "--input", kind="npy")
    paths.file(args.output, "-o")
    image = read_image(args.image)
    x = load_bnn_input(args.input, image.shape[0])
    y = golden_forward(image, x)
    _save_npy(args.output, y)
    print(f"{args.output}: {y.shape[0]} samples x {y.shape[1]} classes (int32 dot)")
    return 0


def _folds_from_args(args):
    from ..hw.bnn.folding import make_folding, parse_shape
    from ..sw.bnn.image import read_image

    if args.image is not None:
        if args.shape is not None:
            raise EieError("give either IMAGE_DIR or --shape, not both")
        image = read_image(args.image)
        folds = image.folds
        if args.fold is not None:
            folds = make_folding(image.shape, args.fold)
            image = image.refold(folds)
        return folds, image
    if args.shape is None:
        raise EieError("give an IMAGE_DIR or --shape N_IN,N1,...,N_CLASSES (with --fold)")
    return make_folding(parse_shape(args.shape), args.fold), None


def _cmd_generate(args) -> int:
    from ..sim.bnn_run import build_top_verilog
    from ..hw.bnn.folding import analytic_ii
    from ..hw.bnn.memory_map import BnnMemoryMap

    paths = outputs.plan()
    if args.image is not None:
        paths.input(args.image, "IMAGE_DIR")
    vpath = paths.file(args.output, "-o")
    mpath = paths.file(args.memory_map if args.memory_map else vpath.with_suffix(".memmap.json"),
                       "--memory-map")
    folds, image = _folds_from_args(args)
    mm = BnnMemoryMap(folds, in_depth=args.in_depth, out_depth=args.out_depth)
    bake = image if (image is not None and not args.no_bake) else None
    path = build_top_verilog(folds, vpath, in_depth=args.in_depth, out_depth=args.out_depth,
                             image=bake)
    with atomic_file(mpath) as f:
        f.write(mm.to_json_text() + "\n")
    print(f"{path}: module bnn_top, {len(folds)} layers, II {analytic_ii(folds)} cycles, "
          f"bus address width {mm.addr_width}, weights {'baked in' if bake else 'loaded at run time'}; "
          f"memory map in {mpath}")
    return 0


def _cmd_run(args) -> int:
    from ..hw.bnn.memory_map import config_crc
    from ..sim.bnn_run import BnnJob, run_amaranth, run_rtl
    from ..hw.bnn.folding import analytic_ii
    from ..sw.bnn.golden import golden_forward
    from ..hw.bnn.memory_map import BnnMemoryMap
    from ..sw.bnn.image import read_image
    from ..sw.inputs import load_bnn_input

    if not 0 <= args.backpressure < 1:
        raise EieError(f"--backpressure is {args.backpressure}; choose a probability in [0, 1)")
    paths = outputs.plan()
    paths.input(args.image, "IMAGE_DIR")
    paths.input(args.input, "--input", kind="npy")
    paths.file(args.output, "-o")
    if args.stats:
        paths.file(args.stats, "--stats")
    if args.sim != "amaranth":
        paths.cache(args.build_dir, "--build-dir")
    image = read_image(args.image)
    x = load_bnn_input(args.input, image.shape[0])
    folds = image.folds
    BnnMemoryMap(folds, in_depth=args.in_depth, out_depth=args.out_depth)   # options, before mkdir
    job = BnnJob(image, x, preload=True, backpressure=args.backpressure, seed=args.seed,
                 max_gap=4 * analytic_ii(folds))
    if args.sim == "amaranth":
        run_amaranth(folds, [job], in_depth=args.in_depth, out_depth=args.out_depth)
    else:
        build = Path(args.build_dir) / f"{config_crc(folds):08x}_{args.in_depth}_{args.out_depth}"
        log = None if args.verbose else build / f"{args.sim}.log"
        try:
            with _output_to(log):
                run_rtl(args.sim, folds, [job], build_dir=build, in_depth=args.in_depth,
                        out_depth=args.out_depth)
        except RuntimeError as exc:
            tail = "".join(log.read_text(errors="replace").splitlines(True)[-25:]) if log else ""
            print(f"{tail}eie bnn run: {args.sim} simulation failed: {exc}"
                  + (f" (full log: {log})" if log else ""))
            return 1
    y = np.asarray(job.y, dtype=np.int32)
    gold = golden_forward(image, x)
    equal = y.shape == gold.shape and bool(np.array_equal(y, gold))
    _save_npy(args.output, y)
    c = job.counters
    stats = {"simulator": args.sim, "samples": int(x.shape[0]), "equal_golden": equal,
             "ii_analytic": analytic_ii(folds), "layer_ii": [f.ii for f in folds],
             "folding": [f.to_json() for f in folds], "counters": c}
    if c.get("samples_out", 0) > 1:
        stats["ii_measured_mean"] = (c["t_last_out"] - c["t_first_out"]) / (c["samples_out"] - 1)
    if args.stats:
        with atomic_file(args.stats) as f:
            json.dump(stats, f, indent=1)
            f.write("\n")
    if equal:
        print(f"{args.sim}: {x.shape[0]} samples, outputs equal the golden model "
              f"(II {c.get('ii_min')} cycles measured, {analytic_ii(folds)} analytic; "
              f"latency {c.get('latency')} cycles)")
        return 0
    bad = np.argwhere(y != gold)[0] if y.shape == gold.shape else None
    where = f"first at sample {bad[0]}, class {bad[1]}: {y[tuple(bad)]} vs golden {gold[tuple(bad)]}" \
        if bad is not None else f"shape {y.shape} vs golden {gold.shape}"
    print(f"{args.sim}: outputs DIFFER from the golden model ({where})")
    return 1


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bnn", help="BNN XNOR-popcount core: compile, golden, run, generate",
        description="Binarized neural networks on a FINN-style folded XNOR-popcount core.")
    sub = p.add_subparsers(dest="bnn_command", metavar="BNN_COMMAND")
    sub.required = True
    fold_help = ("folding per layer as SIMD:PE,SIMD:PE,... (input bits and output neurons per "
                 "cycle; default: a balanced folding with SIMD 32, PE 16 on the first layer)")

    c = sub.add_parser("compile", help="float model .npz -> image directory",
                       description="Binarise weights, fold batch norm into integer thresholds, "
                                   "write an image directory (manifest + $readmemh files).")
    c.add_argument("model", metavar="MODEL.npz",
                   help="W{l} (n_out, n_in); gamma{l} beta{l} mean{l} var{l} per hidden layer; "
                        "optional eps")
    c.add_argument("-o", "--output", required=True, metavar="IMAGE_DIR")
    c.add_argument("--fold", default=None, help=fold_help)
    c.set_defaults(func=_cmd_compile)

    g = sub.add_parser("golden", help="bit-exact golden model of an image",
                       description="Run the bit-exact golden model: X uint8 bits (batch, n_in) "
                                   "-> Y int32 dot (batch, n_classes).")
    g.add_argument("image", metavar="IMAGE_DIR")
    g.add_argument("--input", required=True, metavar="X.npy", help="uint8 bits (batch, n_in)")
    g.add_argument("-o", "--output", required=True, metavar="Y.npy",
                   help="int32 dot (batch, n_classes)")
    g.set_defaults(func=_cmd_golden)

    r = sub.add_parser("run", help="run an image on the simulated core, compare with golden",
                       description="Load the image into the core through its host bus, stream "
                                   "the samples, compare with the golden model (exit 1 if they "
                                   "differ).")
    r.add_argument("image", metavar="IMAGE_DIR")
    r.add_argument("--input", required=True, metavar="X.npy", help="uint8 bits (batch, n_in)")
    r.add_argument("-o", "--output", required=True, metavar="Y.npy",
                   help="the core's int32 dot (batch, n_classes)")
    r.add_argument("--sim", choices=ALL_SIMULATORS, default="verilator")
    r.add_argument("--stats", default=None, metavar="S.json",
                   help="write counters (cycles, latency, II, stalls) and the analytic II")
    r.add_argument("--in-depth", type=int, default=4, help="input FIFO depth in samples (4)")
    r.add_argument("--out-depth", type=int, default=4, help="output FIFO depth in results (4)")
    r.add_argument("--backpressure", type=float, default=0.0,
                   help="probability that the host pauses before reading a result (0)")
    r.add_argument("--seed", type=int, default=0, help="seed of the host's pauses")
    r.add_argument("--build-dir", default="build/bnn",
                   help="simulator build cache (default build/bnn)")
    r.add_argument("-v", "--verbose", action="store_true",
                   help="show the simulator's output (default: only in <build-dir>/.../<sim>.log)")
    r.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate", help="write the core as Verilog",
                         description="Write the bus-mapped BNN top (module bnn_top) as Verilog, "
                                     "from an image (weights baked in as initial values, still "
                                     "loadable) or from --shape and --fold (weights loaded at "
                                     "run time), and its memory map as JSON.")
    gen.add_argument("image", nargs="?", default=None, metavar="IMAGE_DIR")
    gen.add_argument("-o", "--output", required=True, metavar="bnn.v")
    gen.add_argument("--shape", default=None, help="N_IN,N1,...,N_CLASSES (without an image)")
    gen.add_argument("--fold", default=None, help=fold_help)
    gen.add_argument("--no-bake", action="store_true",
                     help="with an image: leave the memories empty (load at run time)")
    gen.add_argument("--in-depth", type=int, default=4, help="input FIFO depth in samples (4)")
    gen.add_argument("--out-depth", type=int, default=4, help="output FIFO depth in results (4)")
    gen.add_argument("--memory-map", default=None, metavar="MAP.json",
                     help="where to write the memory map (default: beside the Verilog)")
    gen.set_defaults(func=_cmd_generate)
