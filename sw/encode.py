"""The encoder: compressed layers into EIE's interleaved sparse format, laid out in the SRAMs.

A layer ``y = W @ x`` with ``W`` of shape ``(n_out, n_in)`` is stored as 4-bit codebook indices
(``codes``, 0 = zero weight) and a 16-entry codebook; the bit format of its entries, words and
pointers is :mod:`eie.sw.sram`'s (shared with the image reader). :func:`encode_layer` encodes one
layer per PE, :func:`place_layer` applies a row placement, :func:`build_image` lays several layers
out in the SRAMs and checks capacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..common.errors import EieError
from .sram import (ENTRIES_PER_WORD, PADDING_BYTE, is_int, ceil_word, check_n_pe, entry_byte,
                   pack_words)
from .fixedpoint import INT16_MAX, INT16_MIN, MAX_W_FRAC
from .imagefile import plural

if TYPE_CHECKING:  # pragma: no cover
    from .image import Image

__all__ = [
    "QuantLayer",
    "EncodedPE",
    "encode_layer",
    "place_layer",
    "build_image",
]


@dataclass(eq=False)
class QuantLayer:
    """One compressed layer, ready to encode.

    ``codes`` uint8 ``(n_out, n_in)`` with values 0..15 (0 is a zero weight); ``codebook`` int16
    ``(16,)`` with ``codebook[0] == 0``; ``w_frac`` the weight shift (fraction bits, 0..30);
    ``bias`` int16 ``(n_out,)`` in the activation format, or None; ``relu`` whether the write-back
    clamps at 0. Invalid fields raise :class:`EieError` naming the field, the value and the limit.
    """

    codes: np.ndarray
    codebook: np.ndarray
    w_frac: int
    bias: np.ndarray | None = None
    relu: bool = True

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes)
        if codes.ndim != 2 or codes.shape[0] < 1 or codes.shape[1] < 1:
            raise EieError(f"codes must be a 2-D (n_out, n_in) array with n_out, n_in >= 1, "
                           f"got shape {codes.shape}")
        if codes.dtype.kind not in "iu":
            raise EieError(f"codes must be integers 0..15, got dtype {codes.dtype}")
        if codes.size and (int(codes.min()) < 0 or int(codes.max()) > 15):
            raise EieError(f"codes must lie in 0..15 (4-bit codebook indices), got values "
                           f"{int(codes.min())}..{int(codes.max())}")
        self.codes = np.ascontiguousarray(codes, dtype=np.uint8)

        cb = np.asarray(self.codebook)
        if cb.shape != (16,) or cb.dtype.kind not in "iu":
            raise EieError(f"codebook must be 16 integers, got shape {cb.shape} dtype {cb.dtype}")
        if int(cb.min()) < INT16_MIN or int(cb.max()) > INT16_MAX:
            raise EieError(f"codebook entries must fit int16 [{INT16_MIN}, {INT16_MAX}], got "
                           f"{int(cb.min())}..{int(cb.max())}")
        if int(cb[0]) != 0:
            raise EieError(f"codebook[0] must be 0 (the explicit zero used by padding), "
                           f"got {int(cb[0])}")
        self.codebook = cb.astype(np.int16)

        if not is_int(self.w_frac) or not 0 <= self.w_frac <= MAX_W_FRAC:
            raise EieError(f"w_frac must be an integer in [0, {MAX_W_FRAC}], got {self.w_frac!r}")
        self.w_frac = int(self.w_frac)

        if self.bias is not None:
            b = np.asarray(self.bias)
            if b.shape != (self.n_out,) or b.dtype.kind not in "iu":
                raise EieError(f"bias must be {self.n_out} integers (one per output), got shape "
                               f"{b.shape} dtype {b.dtype}")
            if b.size and (int(b.min()) < INT16_MIN or int(b.max()) > INT16_MAX):
                raise EieError(f"bias must fit int16 [{INT16_MIN}, {INT16_MAX}], got "
                               f"{int(b.min())}..{int(b.max())}")
            self.bias = b.astype(np.int16)
        if not isinstance(self.relu, (bool, np.bool_)):
            raise EieError(f"relu must be a bool, got {self.relu!r}")
        self.relu = bool(self.relu)

    @property
    def n_out(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_in(self) -> int:
        return int(self.codes.shape[1])

    @property
    def nonzeros(self) -> int:
        """Number of nonzero codes (stored weights, padding excluded)."""
        return int(np.count_nonzero(self.codes))

    def weights(self) -> np.ndarray:
        """The integer weights ``codebook[codes]`` (int64, shape ``(n_out, n_in)``), in units of
        ``2**-w_frac``."""
        return self.codebook.astype(np.int64)[self.codes]


@dataclass(eq=False)
class EncodedPE:
    """One PE's share of one layer: ``entries`` (uint8 entry bytes ``(z << 4) | code``, all
    columns back to back), ``pointers`` (uint32, ``n_in + 1``, from 0) and ``n_padding`` (how
    many of the entries are padding ``(0, 15)``)."""

    entries: np.ndarray
    pointers: np.ndarray
    n_padding: int

    @property
    def n_entries(self) -> int:
        return int(self.entries.size)


def _encode_pe(sub: np.ndarray) -> EncodedPE:
    """Vectorised encoding of one PE's rows ``sub`` (n_local, n_in) of codes."""
    n_in = sub.shape[1]
    cols, rows = np.nonzero(sub.T)          # sorted by column, then by local row
    rows = rows.astype(np.int64)
    cols = cols.astype(np.int64)
    code = sub[rows, cols].astype(np.uint8)
    prev = np.empty_like(rows)
    if rows.size:
        prev[0] = -1
        prev[1:] = rows[:-1]
        prev[1:][cols[1:] != cols[:-1]] = -1
    d = rows - prev - 1
    npad = d // 16
    count = npad + 1                        # entries each nonzero costs, padding included
    ends = np.cumsum(count) - 1
    entries = np.full(int(count.sum()), PADDING_BYTE, dtype=np.uint8)
    entries[ends] = entry_byte(code, (d % 16).astype(np.uint8))
    per_col = np.bincount(cols, weights=count, minlength=n_in).astype(np.int64)
    pointers = np.zeros(n_in + 1, dtype=np.int64)
    np.cumsum(per_col, out=pointers[1:])
    return EncodedPE(entries=entries, pointers=pointers.astype(np.uint32),
                     n_padding=int(npad.sum()))


def encode_layer(layer: QuantLayer, n_pe: int) -> list[EncodedPE]:
    """Encode a layer for ``n_pe`` PEs: per PE, entry bytes, ``n_in + 1`` pointers from 0 and the
    padding count. PEs that own no rows (``n_pe > n_out``) get no entries and all-zero pointers."""
    n_pe = check_n_pe(n_pe)
    return [_encode_pe(layer.codes[k::n_pe, :]) for k in range(n_pe)]


def _check_depth(name: str, value) -> int | None:
    if value is None:
        return None
    if not is_int(value) or value < 1:
        raise EieError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def place_layer(layer: QuantLayer, in_order: np.ndarray | None,
                order: np.ndarray | None) -> QuantLayer:
    """``layer`` in hardware positions: input position ``q`` is model input ``in_order[q]`` and
    output position ``p`` model row ``order[p]`` (None: the identity)."""
    codes, bias = layer.codes, layer.bias
    if in_order is not None:
        codes = codes[:, in_order]
    if order is not None:
        codes = codes[order]
        bias = None if bias is None else bias[order]
    if in_order is None and order is None:
        return layer
    return QuantLayer(codes=codes, codebook=layer.codebook, w_frac=layer.w_frac, bias=bias,
                      relu=layer.relu)


def build_image(layers: Sequence[QuantLayer], n_pe: int, act_frac: int = 8, acc_bits: int = 32, *,
                ptr_depth: int | None = None, spmat_depth: int | None = None,
                act_depth: int | None = None, bias_depth: int | None = None,
                balance: bool = False, calibration: np.ndarray | None = None) -> "Image":
    """Encode ``layers`` (run back to back) for ``n_pe`` PEs into one SRAM image.

    ``balance``: place each layer's rows with :func:`eie.sw.placement.balanced_order` instead of
    the interleave (the image records every layer's ``row_order``; the next layer's columns
    follow it, and the host reads the last layer's outputs back in model order), and the first
    layer's inputs with :func:`eie.sw.placement.input_order` (``input_order``: the host writes
    them there).
    ``calibration``: int16 inputs ``(samples, n_in)`` of the first layer (e.g. training data);
    with ``balance``, the placement also evens out the PEs' work on these samples, each layer's
    inputs computed by the golden model's arithmetic.

    Bases follow the contract: ``ptr_base`` is the sum of ``n_in + 1`` over earlier layers;
    ``entry_base`` (an entry index, a multiple of 8) is the first word boundary after the largest
    PE's entries of the previous layer; ``bias_base`` the sum of ``ceil(n_out / N)`` over earlier
    layers with bias. Optional depths (per PE: pointers, 64-bit sparse-matrix words, activations,
    biases) are checked and a layer that does not fit raises :class:`EieError` saying by how much.
    """
    from .image import Image, LayerDesc, compute_layer_stats

    n_pe = check_n_pe(n_pe)
    if not is_int(act_frac) or not 0 <= act_frac <= 15:
        raise EieError(f"act_frac must be an integer in [0, 15], got {act_frac!r}")
    if not is_int(acc_bits) or not 16 <= acc_bits <= 64:
        raise EieError(f"acc_bits must be an integer in [16, 64], got {acc_bits!r}")
    ptr_depth = _check_depth("ptr_depth", ptr_depth)
    spmat_depth = _check_depth("spmat_depth", spmat_depth)
    act_depth = _check_depth("act_depth", act_depth)
    bias_depth = _check_depth("bias_depth", bias_depth)
    layers = list(layers)
    if not layers:
        raise EieError("an image needs at least one layer")
    for l, layer in enumerate(layers):
        if not isinstance(layer, QuantLayer):
            raise EieError(f"layer {l} is a {type(layer).__name__}, not a QuantLayer")
        if l and layer.n_in != layers[l - 1].n_out:
            raise EieError(f"layer {l} takes {layer.n_in} inputs but layer {l - 1} gives "
                           f"{layers[l - 1].n_out} outputs")

    descs: list[LayerDesc] = []
    encoded: list[list[EncodedPE]] = []
    ptr_base = entry_base = bias_base = 0
    in_order: np.ndarray | None = None
    placed: list[QuantLayer] = []
    acts = None
    if balance:
        from .golden import check_input, quant_layer_forward
        from .placement import balanced_order, input_order

        if calibration is not None:
            acts = check_input(calibration, layers[0].n_in)
    first_order: np.ndarray | None = None
    first_rows: np.ndarray | None = None
    if balance:
        # the placement does not depend on the column order: the model's serves
        first_rows = balanced_order(layers[0].codes, n_pe, None if acts is None else acts != 0)
        # the first layer's inputs too: shuffled, and with calibration the ones most often
        # nonzero in the LNZD's first round and (on a layer whose every column is even over the
        # PEs of that placement) a tail of columns of two or more entries a PE
        first_order = input_order(layers[0].codes, n_pe, None if acts is None else acts != 0,
                                  row_order=first_rows)
        if np.array_equal(first_order, np.arange(first_order.size)):
            first_order = None
        in_order = first_order
    for l, model_layer in enumerate(layers):
        order = None
        if balance:
            order = first_rows if l == 0 else balanced_order(
                model_layer.codes, n_pe, None if acts is None else acts != 0)
            if acts is not None and l + 1 < len(layers):
                acts = quant_layer_forward(model_layer, acts, acc_bits).astype(np.int64)
        layer = place_layer(model_layer, in_order, order)
        placed.append(layer)
        in_order = order
        if act_depth is not None:
            for what, n in (("inputs", layer.n_in), ("outputs", layer.n_out)):
                per_pe = -(-n // n_pe)
                if per_pe > act_depth:
                    raise EieError(f"layer {l} has {n} {what}, {per_pe} per PE, but the activation "
                                   f"SRAM holds {act_depth} per PE (raise --act-depth or add PEs)")
        enc = encode_layer(layer, n_pe)
        if ptr_depth is not None and ptr_base + layer.n_in + 1 > ptr_depth:
            raise EieError(f"layer {l} needs pointers up to {ptr_base + layer.n_in + 1} "
                           f"({layer.n_in + 1} of its own from {ptr_base}) but the pointer SRAM "
                           f"holds {ptr_depth} (raise --ptr-depth)")
        if spmat_depth is not None:
            for k, e in enumerate(enc):
                if entry_base + e.n_entries > spmat_depth * ENTRIES_PER_WORD:
                    own = "" if entry_base == 0 else \
                        f" (its own {e.n_entries} from entry {entry_base})"
                    raise EieError(
                        f"layer {l} needs {entry_base + e.n_entries} sparse-matrix entries in PE "
                        f"{k}{own} but the SRAM holds {spmat_depth * ENTRIES_PER_WORD} "
                        f"({plural(spmat_depth, 'word')}; raise --spmat-depth or add PEs)")
        slots = -(-layer.n_out // n_pe) if layer.bias is not None else 0
        if bias_depth is not None and layer.bias is not None and bias_base + slots > bias_depth:
            raise EieError(f"layer {l} needs bias slots up to {bias_base + slots} ({slots} per PE "
                           f"from {bias_base}) but the bias SRAM holds {bias_depth} "
                           f"(raise --bias-depth or add PEs)")
        descs.append(LayerDesc(
            n_in=layer.n_in, n_out=layer.n_out, w_frac=layer.w_frac, relu=layer.relu,
            codebook=[int(c) for c in layer.codebook], ptr_base=ptr_base, entry_base=entry_base,
            bias_base=bias_base, has_bias=layer.bias is not None,
            row_order=None if order is None else [int(i) for i in order],
            input_order=None if l or first_order is None else [int(i) for i in first_order],
            stats=compute_layer_stats(layer.nonzeros, layer.n_in, layer.n_out,
                                      [e.n_entries for e in enc], [e.n_padding for e in enc]),
        ))
        encoded.append(enc)
        ptr_base += layer.n_in + 1
        bias_base += slots
        entry_base = ceil_word(entry_base + max(e.n_entries for e in enc))

    n_words = entry_base // ENTRIES_PER_WORD
    ptr: list[np.ndarray] = []
    spmat: list[np.ndarray] = []
    for k in range(n_pe):
        ptr.append(np.concatenate([enc[k].pointers for enc in encoded]).astype(np.uint32))
        buf = np.zeros(n_words * ENTRIES_PER_WORD, dtype=np.uint8)
        for desc, enc in zip(descs, encoded):
            buf[desc.entry_base: desc.entry_base + enc[k].n_entries] = enc[k].entries
        spmat.append(pack_words(buf))
    bias = None
    if any(layer.bias is not None for layer in placed):
        bias = [np.zeros(bias_base, dtype=np.int16) for _ in range(n_pe)]
        for desc, layer in zip(descs, placed):
            if layer.bias is None:
                continue
            for k in range(n_pe):
                own = layer.bias[k::n_pe]
                bias[k][desc.bias_base: desc.bias_base + own.size] = own
    return Image(n_pe=n_pe, act_frac=int(act_frac), acc_bits=int(acc_bits), layers=descs,
                 ptr=ptr, spmat=spmat, bias=bias)
