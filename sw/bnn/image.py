"""The BNN image directory: what ``eie bnn compile`` writes and the core loads.

Layout (all files ``$readmemh`` text, one memory word a line, hex, most significant digit first):

- ``manifest.json``: ``format`` ("eie-bnn-image"), ``version`` (1), ``shape``, ``folding``
  (``"SIMD:PE,..."``), ``ii`` (analytic initiation interval) and ``layers``, each with ``n_in``,
  ``n_out``, ``simd``, ``pe``, ``sf``, ``nf``, ``hidden``, ``threshold_width``, the file names,
  and compile statistics (flipped and constant neurons).
- ``l{l}_pe{p}_w.hex``: the weight memory of PE ``p`` of layer ``l``: ``nf * sf`` words of
  ``simd`` bits. Word ``nf_i * sf + sf_i`` holds the weights of neuron ``nf_i * pe + p`` for inputs
  ``sf_i * simd + b`` at bit ``b`` (1 means +1). Bits of padding inputs and padding neurons are 0;
  the core masks them, so their value never matters.
- ``l{l}_pe{p}_thr.hex`` (hidden layers): ``nf`` thresholds of ``threshold_width`` bits; word
  ``nf_i`` is neuron ``nf_i * pe + p``'s ``T``: the neuron outputs 1 when ``matches >= T``
  (``T = 0``: always 1; ``T = n_in + 1``: always 0). Padding neurons hold 0.

The weights in the image are the *folded* ones: a neuron whose batch-norm scale is negative has
its weights inverted, so that one comparison direction serves all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...common.atomic import atomic_dir
from ...common.errors import EieError
from ...hw.bnn.folding import LayerFold, folding_text, make_folding
from ...hw.bnn.words import threshold_words, weight_words

__all__ = ["BnnImage", "random_image", "write_image", "read_image",
           "FORMAT", "VERSION"]

FORMAT = "eie-bnn-image"
VERSION = 1


@dataclass
class BnnImage:
    """A compiled BNN: folded weight bits (n_out, n_in) per layer, integer thresholds per
    hidden layer, and the folding."""

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

    def refold(self, folds: list[LayerFold]) -> "BnnImage":
        """The same network under another folding of the same shape."""
        return BnnImage(folds, self.weights, self.thresholds, self.stats)


def random_image(folds: list[LayerFold], rng: np.random.Generator) -> BnnImage:
    """Random weight bits and thresholds (mostly near ``n_in / 2``, some constant neurons) for
    testing hardware without a float model: outputs stay varied in every layer."""
    weights, thresholds = [], []
    for l, f in enumerate(folds):
        weights.append(rng.integers(0, 2, size=(f.n_out, f.n_in), dtype=np.uint8))
        if l < len(folds) - 1:
            t = np.round(f.n_in / 2 + rng.normal(size=f.n_out) * np.sqrt(f.n_in) / 4).astype(np.int64)
            special = rng.random(f.n_out)
            t[special < 0.05] = 0
            t[special > 0.95] = f.n_in + 1
            thresholds.append(np.clip(t, 0, f.n_in + 1))
    return BnnImage(list(folds), weights, thresholds, [{} for _ in folds])


def _hex_lines(words: list[int], bits: int) -> str:
    digits = max(1, -(-bits // 4))
    return "".join(f"{w:0{digits}x}\n" for w in words)


def write_image(image: BnnImage, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write ``image`` to directory ``path`` atomically (nothing half-written on failure)."""
    layers = []
    path = Path(path)
    with atomic_dir(path) as tmp:
        for l, fold in enumerate(image.folds):
            hidden = l < len(image.folds) - 1
            wfiles, tfiles = [], []
            for p, words in enumerate(weight_words(fold, image.weights[l])):
                name = f"l{l}_pe{p}_w.hex"
                (tmp / name).write_text(_hex_lines(words, fold.simd))
                wfiles.append(name)
            if hidden:
                for p, words in enumerate(threshold_words(fold, image.thresholds[l])):
                    name = f"l{l}_pe{p}_thr.hex"
                    (tmp / name).write_text(_hex_lines(words, fold.threshold_width))
                    tfiles.append(name)
            entry = {"index": l, **fold.to_json(), "hidden": hidden,
                     "threshold_width": fold.threshold_width if hidden else 0,
                     "weight_files": wfiles, "threshold_files": tfiles}
            if l < len(image.stats):
                entry["stats"] = image.stats[l]
            layers.append(entry)
        manifest = {"format": FORMAT, "version": VERSION, "shape": image.shape,
                    "folding": folding_text(image.folds),
                    "ii": max(f.ii for f in image.folds),
                    "bit_convention": "1 is +1, 0 is -1; element i at bit i % W of word i // W",
                    "layers": layers}
        if extra:
            manifest.update(extra)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def _read_hex(path: Path, n: int, bits: int) -> list[int]:
    if not path.is_file():
        raise EieError(f"image file {path} is missing")
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("//")]
    if len(lines) != n:
        raise EieError(f"{path} has {len(lines)} words; the manifest's folding needs {n}")
    out = []
    for k, ln in enumerate(lines):
        try:
            v = int(ln, 16)
        except ValueError:
            raise EieError(f"{path} line {k + 1} is {ln!r}, not hex") from None
        if v >> bits:
            raise EieError(f"{path} line {k + 1} is {ln}, wider than {bits} bits")
        out.append(v)
    return out


def read_image(path: str | os.PathLike) -> BnnImage:
    """Read an image directory back into a :class:`BnnImage` (checks every file)."""
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise EieError(f"{path} is not a BNN image directory (no manifest.json); "
                       f"create one with `eie bnn compile`")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise EieError(f"{mpath} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise EieError(f"{mpath} has format {manifest.get('format')!r}, expected {FORMAT!r} "
                       f"(is this an EIE image? use `eie golden` for those)")
    if manifest.get("version") != VERSION:
        raise EieError(f"{mpath} has version {manifest.get('version')!r}; this eie reads {VERSION}")
    shape = manifest["shape"]
    folds = make_folding(shape, [(ly["simd"], ly["pe"]) for ly in manifest["layers"]])
    weights, thresholds, stats = [], [], []
    for l, (fold, ly) in enumerate(zip(folds, manifest["layers"])):
        w = np.zeros((fold.nf * fold.pe, fold.sf * fold.simd), dtype=np.uint8)
        if len(ly["weight_files"]) != fold.pe:
            raise EieError(f"{mpath}: layer {l} lists {len(ly['weight_files'])} weight files, "
                           f"its PE count is {fold.pe}")
        shifts = np.arange(fold.simd, dtype=object)
        for p, name in enumerate(ly["weight_files"]):
            words = np.array(_read_hex(path / name, fold.nf * fold.sf, fold.simd), dtype=object)
            bits = ((words[:, None] >> shifts[None, :]) & 1).astype(np.uint8)
            bits = bits.reshape(fold.nf, fold.sf * fold.simd)
            w[p::fold.pe] = bits
        weights.append(w[:fold.n_out, :fold.n_in].copy())
        if l < len(folds) - 1:
            t = np.zeros(fold.nf * fold.pe, dtype=np.int64)
            if len(ly["threshold_files"]) != fold.pe:
                raise EieError(f"{mpath}: layer {l} lists {len(ly['threshold_files'])} threshold "
                               f"files, its PE count is {fold.pe}")
            for p, name in enumerate(ly["threshold_files"]):
                t[p::fold.pe] = _read_hex(path / name, fold.nf, fold.threshold_width)
            t = t[:fold.n_out]
            if np.any(t > fold.n_in + 1):
                k = int(np.argmax(t > fold.n_in + 1))
                raise EieError(f"layer {l} neuron {k} has threshold {t[k]} > n_in + 1 = {fold.n_in + 1}")
            thresholds.append(t)
        stats.append(ly.get("stats", {}))
    return BnnImage(folds, weights, thresholds, stats)
