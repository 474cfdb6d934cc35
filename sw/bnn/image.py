"""The BNN image directory: what ``eie bnn compile`` writes and the core loads.

Layout (all files ``$readmemh`` text, one memory word a line, hex, most significant digit first):

- ``manifest.json``: ``format`` ("eie-bnn-image"), ``version`` (1; 2 when the output layer is
  thresholded), ``shape``, ``folding``
  (``"SIMD:PE,..."``), ``ii`` (analytic initiation interval) and ``layers``, each with ``n_in``,
  ``n_out``, ``simd``, ``pe``, ``sf``, ``nf``, ``hidden``, ``threshold_width``, the file names,
  and compile statistics (flipped and constant neurons).
- ``l{l}_pe{p}_w.hex``: the weight memory of PE ``p`` of layer ``l``: ``nf * sf`` words of
  ``simd`` bits. Word ``nf_i * sf + sf_i`` holds the weights of neuron ``nf_i * pe + p`` for inputs
  ``sf_i * simd + b`` at bit ``b`` (1 means +1). Bits of padding inputs and padding neurons are 0;
  the core masks them, so their value never matters.
- ``l{l}_pe{p}_thr.hex`` (hidden layers, and the output layer when it is thresholded): ``nf``
  thresholds of ``threshold_width`` bits; word ``nf_i`` is neuron ``nf_i * pe + p``'s ``T``: the
  neuron outputs 1 when ``matches >= T`` (``T = 0``: always 1; ``T = n_in + 1``: always 0).
  Padding neurons hold 0.

A thresholded output layer (version 2): its layer entry says ``"hidden": false, "thresholded":
true`` and lists its threshold files like a hidden layer's; the network then outputs bits. An
image whose output layer outputs dots is written as version 1, exactly as before, and both
versions are read.

The weights in the image are the *folded* ones: a neuron whose batch-norm scale is negative has
its weights inverted, so that one comparison direction serves all.

:func:`read_image` checks as strictly as the EIE image's reader, with the same code
(:mod:`eie.sw.imagefile`): the manifest's keys and types, the shape and folding against every
per-layer figure, file names confined to the directory, every hex file's words (count, width,
line-numbered errors) and thresholds at most ``n_in + 1``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...common import outputs
from ...common.atomic import atomic_dir
from ...common.errors import EieError
from ...hw.bnn.folding import LayerFold, folding_text, make_folding, parse_folding
from ...hw.bnn.words import threshold_words, weight_words
from ..imagefile import (MANIFEST, MAX_LAYER_WEIGHTS, Fields, ImageDir, describe, plural,
                         write_hex)

__all__ = ["BnnImage", "random_image", "image_files", "OWNER", "OWNER_KIND", "write_image",
           "read_image", "FORMAT", "VERSION"]

FORMAT = "eie-bnn-image"
#: The newest version this eie writes and reads: 2 (a thresholded output layer). Images whose
#: output layer outputs dots are still written as version 1, which older eie versions read.
VERSION = 2
VERSIONS = (1, 2)


@dataclass
class BnnImage:
    """A compiled BNN: folded weight bits (n_out, n_in) per layer, integer thresholds per
    hidden layer (``thresholds[l]``, ``matches >= T``), and the folding. With one threshold
    array more than hidden layers (``len(thresholds) == len(weights)``) the output layer is
    thresholded too and the network outputs bits (:attr:`last_thresholded`)."""

    folds: list[LayerFold]
    weights: list[np.ndarray]
    thresholds: list[np.ndarray]
    stats: list[dict] = field(default_factory=list)

    @property
    def shape(self) -> list[int]:
        return [self.folds[0].n_in] + [f.n_out for f in self.folds]

    @property
    def n_classes(self) -> int:
        return self.folds[-1].n_out

    @property
    def last_thresholded(self) -> bool:
        """The output layer compares with thresholds and outputs bits (not dots)."""
        return len(self.thresholds) == len(self.weights)

    @property
    def version(self) -> int:
        """The manifest version :func:`write_image` writes for this image."""
        return 2 if self.last_thresholded else 1

    def refold(self, folds: list[LayerFold]) -> "BnnImage":
        """The same network under another folding of the same shape."""
        return BnnImage(folds, self.weights, self.thresholds, self.stats)


def random_image(folds: list[LayerFold], rng: np.random.Generator, *,
                 last_thresholded: bool = False) -> BnnImage:
    """Random weight bits and thresholds (mostly near ``n_in / 2``, some constant neurons) for
    testing hardware without a float model: outputs stay varied in every layer.
    ``last_thresholded``: the output layer gets thresholds too (it outputs bits)."""
    weights, thresholds = [], []
    for l, f in enumerate(folds):
        weights.append(rng.integers(0, 2, size=(f.n_out, f.n_in), dtype=np.uint8))
        if l < len(folds) - 1 or last_thresholded:
            t = np.round(f.n_in / 2 + rng.normal(size=f.n_out) * np.sqrt(f.n_in) / 4).astype(np.int64)
            special = rng.random(f.n_out)
            t[special < 0.05] = 0
            t[special > 0.95] = f.n_in + 1
            thresholds.append(np.clip(t, 0, f.n_in + 1))
    return BnnImage(list(folds), weights, thresholds, [{} for _ in folds])


def image_files(manifest: dict) -> list[str] | None:
    """The files a BNN image's ``manifest.json`` lists (besides itself), or None when it is not
    a BNN image manifest: what :data:`OWNER` checks."""
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("layers"), list):
        return None
    files = []
    for layer in manifest["layers"]:
        for key in ("weight_files", "threshold_files"):
            names = layer.get(key, [])
            if not isinstance(names, list):
                return None
            files += names
    return files


#: Recognises a directory :func:`write_image` wrote (see :func:`image_files`): the only kind of
#: non-empty directory it replaces, for ``eie bnn compile -o`` and library callers alike
#: (:func:`eie.common.outputs.check_replaceable`).
OWNER = outputs.manifest_owner(MANIFEST, image_files)
OWNER_KIND = "a BNN image"


def write_image(image: BnnImage, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write ``image`` to directory ``path`` atomically (nothing half-written on failure). An
    existing directory is replaced only when it is empty or a BNN image with nothing else in it
    (:data:`OWNER`)."""
    layers = []
    path = Path(path)
    outputs.check_replaceable(path, "the image directory", owner=OWNER, kind=OWNER_KIND)
    with atomic_dir(path) as tmp:
        for l, fold in enumerate(image.folds):
            hidden = l < len(image.folds) - 1
            thresholded = hidden or image.last_thresholded
            wfiles, tfiles = [], []
            for p, words in enumerate(weight_words(fold, image.weights[l])):
                name = f"l{l}_pe{p}_w.hex"
                write_hex(tmp / name, words, fold.simd)
                wfiles.append(name)
            if thresholded:
                for p, words in enumerate(threshold_words(fold, image.thresholds[l])):
                    name = f"l{l}_pe{p}_thr.hex"
                    write_hex(tmp / name, words, fold.threshold_width)
                    tfiles.append(name)
            entry = {"index": l, **fold.to_json(), "hidden": hidden}
            if image.last_thresholded:      # version 2 only: version 1 stays as it was
                entry["thresholded"] = thresholded
            entry.update({"threshold_width": fold.threshold_width if thresholded else 0,
                          "weight_files": wfiles, "threshold_files": tfiles})
            if l < len(image.stats):
                entry["stats"] = image.stats[l]
            layers.append(entry)
        manifest = {"format": FORMAT, "version": image.version, "shape": image.shape,
                    "folding": folding_text(image.folds),
                    "ii": max(f.ii for f in image.folds),
                    "bit_convention": "1 is +1, 0 is -1; element i at bit i % W of word i // W",
                    "layers": layers}
        if extra:
            manifest.update(extra)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return path


READ_HINT = "compile the image again with `eie bnn compile`"


def read_image(path: str | os.PathLike) -> BnnImage:
    """Read an image directory back into a :class:`BnnImage`, checking everything: the manifest
    (typed keys; the shape, the folding and what each layer says about them; file names confined
    to the directory) and every hex file (count and width of the words; thresholds at most
    ``n_in + 1``). A problem raises :class:`EieError`, one line naming the file, the key or line,
    what was expected and what to do (the rules are :mod:`eie.sw.imagefile`'s, shared with the
    EIE image)."""
    d = ImageDir(path, kind="a BNN image", make="eie bnn compile", hint=READ_HINT)
    try:
        return _read_image(d)
    except MemoryError:
        raise d.error(f"{d.manifest_path} describes memories too large to load") from None


def _read_folds(man: Fields) -> tuple[list[LayerFold], list[Fields], bool]:
    """The folding the manifest describes, checked against everything it says about it, and
    whether the output layer is thresholded."""
    fmt = man.string("format")
    if fmt != FORMAT:
        raise man.error("format", f"is {describe(fmt)}, expected {FORMAT!r}",
                        hint=("this is an EIE image: use `eie golden`, `eie run` for it"
                              if fmt == "eie-image" else None))
    version = man.integer("version")
    if version not in VERSIONS:
        raise man.error("version", f"is {version}; this eie reads versions "
                                   f"{', '.join(map(str, VERSIONS))}",
                        hint="read it with the eie that wrote it, or compile it again with "
                             "`eie bnn compile`")
    shape = man.integers("shape", min_length=2, lo=1)
    layers = man.objects("layers")
    if len(layers) != len(shape) - 1:
        raise man.error("layers", f"lists {plural(len(layers), 'layer')} but 'shape' "
                                  f"{','.join(map(str, shape))} has {len(shape) - 1} layers")
    pairs = [(ly.integer("simd", lo=1), ly.integer("pe", lo=1)) for ly in layers]
    try:
        folds = make_folding(shape, pairs)
    except EieError as exc:
        raise man.image.error(f"{man.image.manifest_path}: {exc}") from None
    for fold, ly in zip(folds, layers):
        bits = fold.nf * fold.pe * fold.sf * fold.simd
        if bits > MAX_LAYER_WEIGHTS:
            raise ly.error("n_out", f"with the shape and folding gives {bits} weight bits "
                                    f"(padding included), more than the {MAX_LAYER_WEIGHTS} a "
                                    f"layer may have")
    if "folding" in man:
        text = man.string("folding")
        try:
            same = parse_folding(text) == pairs
        except EieError:
            same = False
        if not same:
            raise man.error("folding", f"is {text!r} but the layers' simd and pe give "
                                       f"{folding_text(folds)!r}")
    man.check_equal("ii", max(f.ii for f in folds), "the folding's largest nf * sf is")
    last = layers[-1]
    last_thresholded = "thresholded" in last and last.boolean("thresholded")
    if last_thresholded and version < 2:
        raise last.error("thresholded", f"is true but the image is version {version}; a "
                                        f"thresholded output layer needs version 2")
    for l, (fold, ly) in enumerate(zip(folds, layers)):
        hidden = l < len(folds) - 1
        thresholded = hidden or last_thresholded
        if hidden and "thresholded" in ly and not ly.boolean("thresholded"):
            raise ly.error("thresholded", f"is false but layer {l} is a hidden layer, which "
                                          f"always has thresholds")
        ly.check_equal("index", l, "its place in 'layers' is")
        ly.check_equal("n_in", fold.n_in, f"shape[{l}] is")
        ly.check_equal("n_out", fold.n_out, f"shape[{l + 1}] is")
        ly.check_equal("sf", fold.sf, "ceil(n_in / simd) is")
        ly.check_equal("nf", fold.nf, "ceil(n_out / pe) is")
        ly.check_equal("ii", fold.ii, "nf * sf is")
        ly.check_equal("threshold_width", fold.threshold_width if thresholded else 0,
                       "bit_length(n_in + 1) is" if thresholded else
                       "an output layer without thresholds has")
        if "hidden" in ly and ly.boolean("hidden") != hidden:
            raise ly.error("hidden", f"is {str(not hidden).lower()} but layer {l} of "
                                     f"{len(folds)} is {'a hidden' if hidden else 'the output'} "
                                     f"layer")
    return folds, layers, last_thresholded


def _read_image(d: ImageDir) -> BnnImage:
    folds, layers, last_thresholded = _read_folds(d.manifest())
    weights, thresholds, stats = [], [], []
    for l, (fold, ly) in enumerate(zip(folds, layers)):
        hidden = l < len(folds) - 1 or last_thresholded       # has thresholds
        wfiles = ly.strings("weight_files")
        tfiles = ly.strings("threshold_files") if hidden else ly.strings("threshold_files", [])
        for key, names, want in (("weight_files", wfiles, fold.pe),
                                 ("threshold_files", tfiles, fold.pe if hidden else 0)):
            if len(names) != want:
                raise ly.error(key, f"lists {plural(len(names), 'file')} but layer {l} "
                                    + (f"has {fold.pe} PEs" if want else
                                       "is the output layer, which has no thresholds (its "
                                       "'thresholded' is not true)"))
        needs = f"layer {l}'s folding {fold.simd}:{fold.pe} needs"
        words = [d.read_hex(name, fold.nf * fold.sf, fold.simd,
                            key=ly.path("weight_files") + f"[{p}]",
                            role=f"layer {l}, PE {p}'s weights", needs=f"{needs} nf * sf =")
                 for p, name in enumerate(wfiles)]
        w = np.zeros((fold.nf * fold.pe, fold.sf * fold.simd), dtype=np.uint8)
        shifts = np.arange(fold.simd, dtype=object)
        for p, pe_words in enumerate(words):
            col = np.array(pe_words, dtype=object)
            bits = ((col[:, None] >> shifts[None, :]) & 1).astype(np.uint8)
            w[p::fold.pe] = bits.reshape(fold.nf, fold.sf * fold.simd)
        weights.append(w[:fold.n_out, :fold.n_in].copy())
        if hidden:
            t = np.zeros(fold.nf * fold.pe, dtype=np.int64)
            for p, name in enumerate(tfiles):
                vals = d.read_hex(name, fold.nf, fold.threshold_width,
                                  key=ly.path("threshold_files") + f"[{p}]",
                                  role=f"layer {l}, PE {p}'s thresholds", needs=f"{needs} nf =")
                for i, v in enumerate(vals):
                    if i * fold.pe + p < fold.n_out and v > fold.n_in + 1:
                        raise d.error(f"{d.path / name}: value {i + 1} is {v}, the threshold of "
                                      f"layer {l} neuron {i * fold.pe + p}; a threshold is at "
                                      f"most n_in + 1 = {fold.n_in + 1}")
                t[p::fold.pe] = vals
            thresholds.append(t[:fold.n_out].copy())
        stats.append(ly.mapping("stats", {}))
    return BnnImage(folds, weights, thresholds, stats)
