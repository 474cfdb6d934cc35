"""The EIE SRAM image: the per-PE pointer, sparse-matrix and bias memories plus the layer table,
in memory (:class:`Image`) and on disk (:func:`write_image`, :func:`read_image`).

On disk an image is a directory readable without this project (see ``docs/image-format.md``):

* ``manifest.json`` -- ``format``, ``format_version``, ``n_pe``, ``act_frac``, ``acc_bits``, the
  per-PE file lengths and ``layers`` (``n_in``, ``n_out``, ``w_frac``, ``relu``, ``codebook``,
  ``ptr_base``, ``entry_base``, ``bias_base``, ``has_bias``, ``stats``);
* ``pe{k}_ptr.hex`` -- one pointer a line, 8 hex digits (``$readmemh``);
* ``pe{k}_spmat.hex`` -- one 64-bit word a line, 16 hex digits;
* ``pe{k}_bias.hex`` -- only when a layer has bias: one int16 a line, 4 hex digits.

:func:`read_image` checks everything (keys and their types, files, line syntax, value ranges,
bases, pointers, rows, statistics) and raises :class:`EieError` naming the file, the key or line
and what to do. The hex files, the manifest's typed keys and the confinement of files to the
directory are :mod:`eie.sw.imagefile`'s, shared with the BNN image.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..common import outputs
from ..common.atomic import atomic_dir, save_npz
from ..common.errors import EieError
from .encode import QuantLayer
from .sram import ENTRIES_PER_WORD, decode_layer, split_entry_bytes, unpack_words
from .fixedpoint import INT16_MAX, INT16_MIN, MAX_W_FRAC
from .imagefile import MANIFEST, MAX_LAYER_WEIGHTS, Fields, ImageDir, describe, write_hex

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LayerDesc",
    "Image",
    "compute_layer_stats",
    "image_files",
    "OWNER",
    "OWNER_KIND",
    "write_image",
    "read_image",
]

FORMAT_NAME = "eie-image"
#: Version 2 adds a layer's ``row_order`` (balanced placement); version 3 the first layer's
#: ``input_order``. An image is written with the lowest version that holds what it has (one
#: without either is version 1, which every earlier reader takes). All three are read.
FORMAT_VERSION = 3
READ_VERSIONS = (1, 2, 3)
#: The most PEs an image may have (the hardware takes at most ``eie.hw.eie.config.MAX_PE``).
MAX_IMAGE_PE = 4096
#: Bits of the words in the files: pointers, sparse-matrix words, biases (two's complement).
PTR_BITS, SPMAT_BITS, BIAS_BITS = 32, 64, 16


def compute_layer_stats(nonzeros: int, n_in: int, n_out: int, entries_per_pe: list[int],
                        padding_per_pe: list[int]) -> dict[str, Any]:
    """Compression statistics of one encoded layer (JSON-serialisable)."""
    entries_per_pe = [int(e) for e in entries_per_pe]
    padding_per_pe = [int(p) for p in padding_per_pe]
    n_pe = len(entries_per_pe)
    total = sum(entries_per_pe)
    padding = sum(padding_per_pe)
    biggest = max(entries_per_pe) if entries_per_pe else 0
    weights = n_in * n_out
    # Storage per PE: entries (1 byte each, in whole words up to the largest PE) and n_in + 1
    # pointers. Pointer width: enough bits to address the largest PE's entries.
    ptr_bits = max(1, int(biggest).bit_length())
    stored_bits = n_pe * (-(-biggest // ENTRIES_PER_WORD) * 64) + n_pe * (n_in + 1) * ptr_bits
    return {
        "weights": weights,
        "nonzeros": int(nonzeros),
        "density": (nonzeros / weights) if weights else 0.0,
        "entries": total,
        "padding": padding,
        "padding_fraction": (padding / total) if total else 0.0,
        "entries_per_pe": entries_per_pe,
        "padding_per_pe": padding_per_pe,
        "max_entries_per_pe": biggest,
        "load_balance": (total / (n_pe * biggest)) if biggest else 1.0,
        "pointer_bits": ptr_bits,
        "stored_bits": stored_bits,
        "dense_bits_fp32": weights * 32,
        "compression_vs_fp32": (weights * 32 / stored_bits) if stored_bits else 0.0,
    }


@dataclass
class LayerDesc:
    """One row of the layer table (what the hardware's controller reads per layer)."""

    n_in: int
    n_out: int
    w_frac: int
    relu: bool
    codebook: list[int]
    ptr_base: int
    entry_base: int          # an entry index (multiple of 8); the word index is entry_base // 8
    bias_base: int
    has_bias: bool
    stats: dict = field(default_factory=dict)
    #: position ``p`` (PE ``p % N``, local row ``p // N``) holds model row ``row_order[p]``; None
    #: is the interleave (position ``p`` holds row ``p``). The next layer's input ``q`` is this
    #: layer's output position ``q``.
    row_order: list[int] | None = None
    #: the first layer only: position ``q`` (PE ``q % N``, local row ``q // N``) of the input
    #: activation file holds model input ``input_order[q]`` (the host writes them there); None
    #: is model input ``q`` at position ``q``.
    input_order: list[int] | None = None

    def bias_slots(self, n_pe: int) -> int:
        """Bias slots this layer takes in every PE (``ceil(n_out / N)`` if it has bias)."""
        return -(-self.n_out // n_pe) if self.has_bias else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "n_in": self.n_in, "n_out": self.n_out, "w_frac": self.w_frac, "relu": self.relu,
            "codebook": list(self.codebook), "ptr_base": self.ptr_base,
            "entry_base": self.entry_base, "bias_base": self.bias_base,
            "has_bias": self.has_bias, "stats": self.stats,
            **({} if self.row_order is None else {"row_order": list(self.row_order)}),
            **({} if self.input_order is None else {"input_order": list(self.input_order)}),
        }


@dataclass(eq=False)
class Image:
    """A whole SRAM image: per PE, pointers (uint32), 64-bit sparse-matrix words (uint64) and
    biases (int16, or None when no layer has bias), all layers back to back, plus the layer
    table. Build one with :func:`eie.sw.encode.build_image` or :func:`read_image`."""

    n_pe: int
    act_frac: int
    acc_bits: int
    layers: list[LayerDesc]
    ptr: list[np.ndarray]
    spmat: list[np.ndarray]
    bias: list[np.ndarray] | None = None

    @property
    def n_in(self) -> int:
        """Inputs of the first layer."""
        return self.layers[0].n_in

    @property
    def n_out(self) -> int:
        """Outputs of the last layer."""
        return self.layers[-1].n_out

    @property
    def ptr_words(self) -> int:
        """Pointers per PE (all layers)."""
        return sum(d.n_in + 1 for d in self.layers)

    @property
    def spmat_words(self) -> int:
        """64-bit sparse-matrix words per PE (all layers)."""
        return int(self.spmat[0].size) if self.spmat else 0

    @property
    def bias_words(self) -> int:
        """Bias slots per PE (all layers), 0 when no layer has bias."""
        return sum(d.bias_slots(self.n_pe) for d in self.layers)

    def _check_index(self, l: int, pe: int | None = None) -> LayerDesc:
        if not 0 <= l < len(self.layers):
            raise IndexError(f"layer {l} out of range (the image has {len(self.layers)} layers)")
        if pe is not None and not 0 <= pe < self.n_pe:
            raise IndexError(f"PE {pe} out of range (the image has {self.n_pe} PEs)")
        return self.layers[l]

    def layer_pointers(self, l: int, pe: int) -> np.ndarray:
        """PE ``pe``'s ``n_in + 1`` pointers of layer ``l`` (uint32, counted from the entry base)."""
        d = self._check_index(l, pe)
        return self.ptr[pe][d.ptr_base: d.ptr_base + d.n_in + 1].copy()

    def layer_entries(self, l: int, pe: int) -> np.ndarray:
        """PE ``pe``'s entry bytes of layer ``l`` (uint8, ``pointers[-1]`` of them)."""
        d = self._check_index(l, pe)
        n = int(self.layer_pointers(l, pe)[-1])
        w0 = d.entry_base // ENTRIES_PER_WORD
        words = self.spmat[pe][w0: w0 + -(-n // ENTRIES_PER_WORD)]
        if words.size * ENTRIES_PER_WORD < n:
            raise EieError(f"layer {l}, PE {pe}: pointers reach entry {d.entry_base + n} but the "
                           f"sparse-matrix memory holds {self.spmat[pe].size * ENTRIES_PER_WORD}")
        return unpack_words(words, n)

    def layer_bias(self, l: int) -> np.ndarray | None:
        """Layer ``l``'s biases in position order (int16 ``(n_out,)``), or None."""
        d = self._check_index(l)
        if not d.has_bias:
            return None
        assert self.bias is not None
        out = np.zeros(d.n_out, dtype=np.int16)
        for k in range(self.n_pe):
            own = out[k::self.n_pe]
            own[:] = self.bias[k][d.bias_base: d.bias_base + own.size]
        return out

    def layer_codes(self, l: int) -> np.ndarray:
        """Layer ``l``'s codes ``(n_out, n_in)`` decoded from the entries, in hardware positions
        (rows as the PEs hold them, columns as the previous layer's outputs lie)."""
        d = self._check_index(l)
        return decode_layer([self.layer_entries(l, k) for k in range(self.n_pe)],
                            [self.layer_pointers(l, k) for k in range(self.n_pe)],
                            d.n_in, d.n_out, self.n_pe)

    def quant_layer(self, l: int) -> QuantLayer:
        """Layer ``l`` decoded back to a :class:`QuantLayer`, in hardware positions (what the
        accelerator computes; the golden model runs these)."""
        d = self._check_index(l)
        return QuantLayer(codes=self.layer_codes(l),
                          codebook=np.array(d.codebook, dtype=np.int64), w_frac=d.w_frac,
                          bias=self.layer_bias(l), relu=d.relu)

    def quant_layers(self) -> list[QuantLayer]:
        """All layers decoded back to :class:`QuantLayer` objects, in hardware positions."""
        return [self.quant_layer(l) for l in range(len(self.layers))]

    def row_order(self, l: int) -> np.ndarray:
        """Layer ``l``'s placement: int64 ``order`` with position ``p`` holding model row
        ``order[p]`` (``arange(n_out)`` for the interleave)."""
        d = self._check_index(l)
        if d.row_order is None:
            return np.arange(d.n_out, dtype=np.int64)
        return np.asarray(d.row_order, dtype=np.int64)

    def input_order(self) -> np.ndarray:
        """The first layer's input placement: int64 ``order`` with input position ``q`` holding
        model input ``order[q]`` (``arange(n_in)`` when the image has none)."""
        d = self.layers[0]
        if d.input_order is None:
            return np.arange(d.n_in, dtype=np.int64)
        return np.asarray(d.input_order, dtype=np.int64)

    def to_positions(self, x: np.ndarray) -> np.ndarray:
        """First-layer inputs in the model's order (``(..., n_in)``) to input positions (what
        the host writes into the activation file, position ``q`` at PE ``q % N``, local row
        ``q // N``)."""
        x = np.asarray(x)
        return x if self.layers[0].input_order is None else x[..., self.input_order()]

    @property
    def balanced(self) -> bool:
        """Whether any layer is placed other than by the interleave."""
        return any(d.row_order is not None for d in self.layers) or \
            self.layers[0].input_order is not None

    @property
    def format_version(self) -> int:
        """The lowest format version that holds this image (see :data:`FORMAT_VERSION`)."""
        if self.layers[0].input_order is not None:
            return 3
        return 2 if any(d.row_order is not None for d in self.layers) else 1

    def model_layer(self, l: int) -> QuantLayer:
        """Layer ``l`` in the model's row and column order (the inverse of the placement)."""
        q = self.quant_layer(l)
        order = self.row_order(l)
        in_order = self.row_order(l - 1) if l else self.input_order()
        codes = np.zeros_like(q.codes)
        codes[np.ix_(order, in_order)] = q.codes
        bias = None
        if q.bias is not None:
            bias = np.zeros_like(q.bias)
            bias[order] = q.bias
        return QuantLayer(codes=codes, codebook=q.codebook, w_frac=q.w_frac, bias=bias,
                          relu=q.relu)

    def model_layers(self) -> list[QuantLayer]:
        """All layers in the model's order (what :func:`golden_forward_layers` takes)."""
        return [self.model_layer(l) for l in range(len(self.layers))]

    def output_positions(self) -> np.ndarray:
        """Where the accelerator leaves each model output: int64 ``pos`` with model output ``i``
        at position ``pos[i]`` (PE ``pos[i] % N``, local ``pos[i] // N``) of the last layer."""
        from .placement import invert_order

        return invert_order(self.row_order(len(self.layers) - 1))

    def to_model_order(self, y: np.ndarray) -> np.ndarray:
        """Last-layer outputs in positions (``(..., n_out)``) to the model's order."""
        y = np.asarray(y)
        return y[..., self.output_positions()]

    def validate(self) -> None:
        """Check the image against the contract; raise :class:`EieError` on the first problem."""
        _validate(self)

    def manifest(self) -> dict[str, Any]:
        """The ``manifest.json`` content."""
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "n_pe": self.n_pe,
            "act_frac": self.act_frac,
            "acc_bits": self.acc_bits,
            "ptr_words": self.ptr_words,
            "spmat_words": self.spmat_words,
            "bias_words": self.bias_words if self.bias is not None else 0,
            "layers": [d.to_json() for d in self.layers],
        }


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _validate(img: Image) -> None:
    if not _is_int(img.n_pe) or img.n_pe < 1:
        raise EieError(f"n_pe must be an integer >= 1, got {img.n_pe!r}")
    if not _is_int(img.act_frac) or not 0 <= img.act_frac <= 15:
        raise EieError(f"act_frac must be an integer in [0, 15], got {img.act_frac!r}")
    if not _is_int(img.acc_bits) or not 16 <= img.acc_bits <= 64:
        raise EieError(f"acc_bits must be an integer in [16, 64], got {img.acc_bits!r}")
    if not img.layers:
        raise EieError("the image has no layers")
    if len(img.ptr) != img.n_pe or len(img.spmat) != img.n_pe:
        raise EieError(f"the image has {len(img.ptr)} pointer and {len(img.spmat)} sparse-matrix "
                       f"memories for {img.n_pe} PEs")
    any_bias = any(d.has_bias for d in img.layers)
    if any_bias != (img.bias is not None):
        raise EieError("bias memories must be present exactly when some layer has bias "
                       f"(layers with bias: {any_bias}, bias memories: {img.bias is not None})")
    if img.bias is not None and len(img.bias) != img.n_pe:
        raise EieError(f"the image has {len(img.bias)} bias memories for {img.n_pe} PEs")

    ptr_base = bias_base = entry_base = 0
    for l, d in enumerate(img.layers):
        where = f"layer {l}"
        for name in ("n_in", "n_out"):
            v = getattr(d, name)
            if not _is_int(v) or v < 1:
                raise EieError(f"{where}: {name} must be an integer >= 1, got {v!r}")
        if l and d.n_in != img.layers[l - 1].n_out:
            raise EieError(f"{where} takes {d.n_in} inputs but layer {l - 1} gives "
                           f"{img.layers[l - 1].n_out} outputs")
        if not _is_int(d.w_frac) or not 0 <= d.w_frac <= MAX_W_FRAC:
            raise EieError(f"{where}: w_frac must be an integer in [0, {MAX_W_FRAC}], "
                           f"got {d.w_frac!r}")
        if not isinstance(d.relu, bool) or not isinstance(d.has_bias, bool):
            raise EieError(f"{where}: relu and has_bias must be booleans")
        cb = d.codebook
        if (not isinstance(cb, (list, tuple)) or len(cb) != 16
                or not all(_is_int(c) and INT16_MIN <= c <= INT16_MAX for c in cb)):
            raise EieError(f"{where}: codebook must be 16 integers in [{INT16_MIN}, {INT16_MAX}], "
                           f"got {cb!r}")
        if cb[0] != 0:
            raise EieError(f"{where}: codebook[0] must be 0 (the padding zero), got {cb[0]}")
        for name, want in (("ptr_base", ptr_base), ("entry_base", entry_base)):
            got = getattr(d, name)
            if got != want:
                raise EieError(f"{where}: {name} is {got!r} but the contract puts it at {want}")
        if d.row_order is not None:
            ro = d.row_order
            if (not isinstance(ro, (list, tuple)) or len(ro) != d.n_out
                    or not all(_is_int(i) for i in ro)
                    or sorted(int(i) for i in ro) != list(range(d.n_out))):
                raise EieError(f"{where}: row_order must be a permutation of 0..{d.n_out - 1} "
                               f"({d.n_out} distinct row indices)")
        if d.input_order is not None:
            io = d.input_order
            if l:
                raise EieError(f"{where}: only the first layer has an input_order (the others' "
                               "inputs are the previous layer's output positions)")
            if (not isinstance(io, (list, tuple)) or len(io) != d.n_in
                    or not all(_is_int(i) for i in io)
                    or sorted(int(i) for i in io) != list(range(d.n_in))):
                raise EieError(f"{where}: input_order must be a permutation of 0..{d.n_in - 1} "
                               f"({d.n_in} distinct input indices)")
        if d.has_bias and d.bias_base != bias_base:
            raise EieError(f"{where}: bias_base is {d.bias_base!r} but the contract puts it at "
                           f"{bias_base}")
        biggest = 0
        for k in range(img.n_pe):
            if img.ptr[k].size != img.ptr_words:
                raise EieError(f"PE {k} has {img.ptr[k].size} pointers but the layers need "
                               f"{img.ptr_words}")
            p = img.layer_pointers(l, k).astype(np.int64)
            if p[0] != 0:
                raise EieError(f"{where}, PE {k}: the first pointer (pointer {d.ptr_base}) must "
                               f"be 0, got {int(p[0])}")
            if np.any(np.diff(p) < 0):
                j = int(np.argmax(np.diff(p) < 0))
                raise EieError(f"{where}, PE {k}: pointers decrease at column {j} "
                               f"({int(p[j])} -> {int(p[j + 1])})")
            biggest = max(biggest, int(p[-1]))
        ptr_base += d.n_in + 1
        bias_base += d.bias_slots(img.n_pe)
        entry_base = -(-(entry_base + biggest) // ENTRIES_PER_WORD) * ENTRIES_PER_WORD

    n_words = entry_base // ENTRIES_PER_WORD
    for k in range(img.n_pe):
        if img.spmat[k].size != n_words:
            raise EieError(f"PE {k} has {img.spmat[k].size} sparse-matrix words but the layers "
                           f"need {n_words}")
        if img.bias is not None and img.bias[k].size != bias_base:
            raise EieError(f"PE {k} has {img.bias[k].size} bias slots but the layers need "
                           f"{bias_base}")
    if img.bias is not None:
        for l, d in enumerate(img.layers):
            if not d.has_bias:
                continue
            for k in range(img.n_pe):
                used = -(-(d.n_out - k) // img.n_pe) if k < d.n_out else 0
                slots = img.bias[k][d.bias_base + used: d.bias_base + d.bias_slots(img.n_pe)]
                if np.any(slots != 0):
                    raise EieError(f"layer {l}, PE {k}: unused bias slots must be 0")
    for l in range(len(img.layers)):
        img.layer_codes(l)          # raises on entries past the PE's rows


# ----------------------------------------------------------------------------- on disk

_NUM_LIST = re.compile(r"\[\s*((?:-?[0-9.eE+-]+,\s*)*-?[0-9.eE+-]+)\s*\]")


def _json_default(o: Any) -> Any:
    """NumPy scalars and arrays in statistics become plain JSON numbers and lists."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} in the manifest is not JSON-serialisable")


def _compact_json(obj: Any) -> str:
    """Indented JSON with lists of numbers on one line (codebooks, per-PE counts)."""
    text = json.dumps(obj, indent=2, default=_json_default)
    return _NUM_LIST.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text) + "\n"


def image_files(manifest: dict) -> list[str] | None:
    """The files an EIE image's ``manifest.json`` accounts for (besides itself), or None when
    it is not an EIE image manifest: what :data:`OWNER` checks."""
    n = manifest.get("n_pe")
    if manifest.get("format") != FORMAT_NAME or type(n) is not int or not 1 <= n <= MAX_IMAGE_PE:
        return None
    return ["image.npz"] + [f"pe{k}_{part}.hex" for k in range(n)
                            for part in ("ptr", "spmat", "bias")]


#: Recognises a directory :func:`write_image` wrote (see :func:`image_files`): the only kind of
#: non-empty directory it replaces, for ``eie compress -o`` and library callers alike
#: (:func:`eie.common.outputs.check_replaceable`).
OWNER = outputs.manifest_owner(MANIFEST, image_files)
OWNER_KIND = "an EIE image"


def write_image(image: Image, path: str | os.PathLike) -> None:
    """Write ``image`` as a directory (``manifest.json`` and per-PE ``.hex`` files, plus an
    ``image.npz`` copy of the arrays), atomically: on any error nothing is left at ``path`` (an
    existing image there stays as it was). An existing directory is replaced only when it is
    empty or an EIE image with nothing else in it (:data:`OWNER`)."""
    image.validate()
    path = Path(path)
    # Writing replaces the whole directory: never do that to something that is not an image.
    outputs.check_replaceable(path, "the image directory", owner=OWNER, kind=OWNER_KIND)
    with atomic_dir(path) as tmp:
        (tmp / MANIFEST).write_text(_compact_json(image.manifest()))
        arrays: dict[str, np.ndarray] = {}
        for k in range(image.n_pe):
            write_hex(tmp / f"pe{k}_ptr.hex", image.ptr[k], PTR_BITS)
            write_hex(tmp / f"pe{k}_spmat.hex", image.spmat[k], SPMAT_BITS)
            arrays[f"pe{k}_ptr"] = image.ptr[k]
            arrays[f"pe{k}_spmat"] = image.spmat[k]
            if image.bias is not None:
                write_hex(tmp / f"pe{k}_bias.hex", image.bias[k], BIAS_BITS, signed=True)
                arrays[f"pe{k}_bias"] = image.bias[k]
        save_npz(tmp / "image.npz", arrays, compressed=True)


READ_HINT = "write the image again with `eie compress`"


def read_image(path: str | os.PathLike) -> Image:
    """Read and validate an image directory written by :func:`write_image` (or any tool that
    follows ``docs/image-format.md``). A missing, damaged or inconsistent file raises
    :class:`EieError`, one line naming the file, the key or line, what was expected and what
    to do (the rules are :mod:`eie.sw.imagefile`'s, shared with the BNN image)."""
    d = ImageDir(path, kind="an EIE image", make="eie compress", hint=READ_HINT)
    try:
        return _read_image(d)
    except MemoryError:
        raise d.error(f"{d.manifest_path} describes memories too large to load") from None


def _read_layer(lj: Fields, l: int, prev: LayerDesc | None, version: int) -> LayerDesc:
    n_in, n_out = lj.integer("n_in", lo=1), lj.integer("n_out", lo=1)
    if n_in * n_out > MAX_LAYER_WEIGHTS:
        raise lj.error("n_out", f"is {n_out} with n_in {n_in}: {n_in * n_out} weights, more "
                                f"than the {MAX_LAYER_WEIGHTS} a layer may have")
    if prev is not None and n_in != prev.n_out:
        raise lj.error("n_in", f"is {n_in}: layer {l} takes {n_in} inputs but layer {l - 1} "
                               f"gives {prev.n_out} outputs")
    row_order = lj.integers("row_order", length=n_out, lo=0, hi=n_out - 1, default=None)
    if row_order is not None and version < 2:
        raise lj.error("row_order", "is there but format_version is 1; a placement needs "
                                    "format_version 2")
    input_order = lj.integers("input_order", length=n_in, lo=0, hi=n_in - 1, default=None)
    if input_order is not None and l:
        raise lj.error("input_order", f"is there in layer {l}; only the first layer has one (the "
                                      "others read the previous layer's output positions)")
    if input_order is not None and version < 3:
        raise lj.error("input_order", f"is there but format_version is {version}; an input "
                                      "placement needs format_version 3")
    return LayerDesc(
        n_in=n_in, n_out=n_out, w_frac=lj.integer("w_frac", 0, MAX_W_FRAC),
        relu=lj.boolean("relu"),
        codebook=list(lj.integers("codebook", length=16, lo=INT16_MIN, hi=INT16_MAX)),
        ptr_base=lj.integer("ptr_base", lo=0), entry_base=lj.integer("entry_base", lo=0),
        bias_base=lj.integer("bias_base", lo=0), has_bias=lj.boolean("has_bias"),
        stats=lj.mapping("stats", {}), row_order=row_order, input_order=input_order)


def _read_image(d: ImageDir) -> Image:
    man = d.manifest()
    fmt = man.raw("format", FORMAT_NAME)
    if fmt != FORMAT_NAME:
        raise man.error("format", f"is {describe(fmt)}, expected {FORMAT_NAME!r}",
                        hint=("this is a BNN image: use the `eie bnn` commands for it"
                              if fmt == "eie-bnn-image" else None))
    version = man.integer("format_version")
    if version not in READ_VERSIONS:
        raise man.error("format_version", f"is {version}; this eie reads versions "
                        f"{', '.join(map(str, READ_VERSIONS))}",
                        hint="read it with the eie that wrote it, or write it again with "
                             "`eie compress`")
    n_pe = man.integer("n_pe", 1, MAX_IMAGE_PE)
    act_frac = man.integer("act_frac", 0, 15)
    acc_bits = man.integer("acc_bits", 16, 64)
    layers: list[LayerDesc] = []
    for l, lj in enumerate(man.objects("layers")):
        layers.append(_read_layer(lj, l, layers[-1] if layers else None, version))
    if not layers:
        raise man.error("layers", "is empty: the image has no layers")
    ptr_words = sum(ld.n_in + 1 for ld in layers)
    bias_words = sum(ld.bias_slots(n_pe) for ld in layers)
    any_bias = any(ld.has_bias for ld in layers)
    man.check_equal("ptr_words", ptr_words, "the layers' pointers per PE (n_in + 1 each) are")
    man.check_equal("bias_words", bias_words if any_bias else 0,
                    f"the layers' bias slots per PE with n_pe={n_pe} are")
    spmat_words = man.integer("spmat_words", lo=0)

    ptr, spmat, bias = [], [], ([] if any_bias else None)
    for k in range(n_pe):
        ptr.append(np.array(d.read_hex(f"pe{k}_ptr.hex", ptr_words, PTR_BITS,
                                       role=f"PE {k}'s pointers",
                                       needs="the manifest's layers need"), dtype=np.uint32))
        spmat.append(np.array(d.read_hex(f"pe{k}_spmat.hex", spmat_words, SPMAT_BITS,
                                         role=f"PE {k}'s sparse-matrix words",
                                         needs="the manifest's spmat_words is"),
                              dtype=np.uint64))
        if bias is not None:
            bias.append(np.array(d.read_hex(f"pe{k}_bias.hex", bias_words, BIAS_BITS,
                                            role=f"PE {k}'s biases", signed=True,
                                            needs="the manifest's layers with bias need"),
                                 dtype=np.int16))
    img = Image(n_pe=n_pe, act_frac=act_frac, acc_bits=acc_bits, layers=layers, ptr=ptr,
                spmat=spmat, bias=bias)
    try:
        img.validate()
    except EieError as exc:
        raise d.error(f"image {d.path} is inconsistent: {exc}") from None
    # The statistics must describe the stored entries.
    for l, ld in enumerate(layers):
        entries = [int(img.layer_pointers(l, k)[-1]) for k in range(n_pe)]
        padding = [int(np.count_nonzero(split_entry_bytes(img.layer_entries(l, k))[0] == 0))
                   for k in range(n_pe)]
        for key, got in (("entries_per_pe", entries), ("padding_per_pe", padding)):
            want = ld.stats.get(key, got)
            if want != got:
                if isinstance(want, list) and len(want) == len(got):
                    k = next(k for k in range(n_pe) if want[k] != got[k])
                    detail = f"PE {k} has {got[k]} in the files, {describe(want[k])} in the stats"
                else:
                    detail = f"the stats hold {describe(want)} for {n_pe} PEs"
                raise d.error(f"{d.manifest_path}: 'layers[{l}].stats.{key}' disagrees with the "
                              f"pe*_ptr.hex/pe*_spmat.hex files ({detail})")
    return img
