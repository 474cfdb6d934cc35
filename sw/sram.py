"""The EIE's SRAM bit format (docs/ARCHITECTURE.md, "SRAM image formats"): the one module that
the encoder (:mod:`eie.sw.encode`), the image reader (:mod:`eie.sw.image`) and, through the
image, the golden model use for entries, words and pointers.

* output row ``i`` belongs to PE ``i % N`` at local row ``i // N`` (or the image's row placement,
  :mod:`eie.sw.placement`, applied before encoding);
* per PE and column ``j``, the nonzeros in increasing local row become entries ``(code, z)``,
  ``z`` counting the zero local rows skipped since the previous entry of the column (or since local
  row 0); a gap ``d > 15`` first emits ``d // 16`` padding entries ``(0, 15)``, each standing on a
  row itself, then ``(code, d % 16)``;
* entry byte ``= (z << 4) | code``; 64-bit words hold 8 entries, entry ``e`` at bits
  ``[8e+7 : 8e]``; columns lie back to back and may straddle words;
* per PE, ``n_in + 1`` pointers (entry indices counted from the layer's entry base):
  column ``j`` is entries ``[p[j], p[j+1])``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..common.errors import EieError

__all__ = ["ENTRIES_PER_WORD", "PADDING_BYTE", "entry_byte", "split_entry_bytes", "pe_rows",
           "encode_column_entries", "decode_layer", "pack_words", "unpack_words", "ceil_word", "is_int",
           "check_n_pe"]

#: Entries in one 64-bit sparse-matrix word.
ENTRIES_PER_WORD = 8
#: The padding entry ``(code 0, z 15)`` as a byte.
PADDING_BYTE = 0xF0


def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def entry_byte(code: np.ndarray | int, z: np.ndarray | int) -> np.ndarray:
    """Entry bytes ``(z << 4) | code`` (uint8)."""
    return ((np.asarray(z, dtype=np.uint8) << 4) | np.asarray(code, dtype=np.uint8)).astype(np.uint8)


def split_entry_bytes(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry bytes back to ``(code, z)`` arrays (uint8)."""
    e = np.asarray(entries, dtype=np.uint8)
    return (e & 0xF).astype(np.uint8), (e >> 4).astype(np.uint8)


def pe_rows(n_out: int, n_pe: int, pe: int) -> int:
    """How many output rows PE ``pe`` owns (rows ``pe, pe + n_pe, ...`` below ``n_out``)."""
    return max(0, (n_out - pe + n_pe - 1) // n_pe)


def encode_column_entries(local_rows: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encode one PE's column: nonzeros at increasing ``local_rows`` with codes 1..15 become
    ``(code, z)`` arrays with padding, the contract's rule stated directly.

    >>> encode_column_entries([2, 3, 22], [1, 2, 3])   # column [0,0,1,2, 18 zeros, 3]
    (array([1, 2, 0, 3], dtype=uint8), array([ 2,  0, 15,  2], dtype=uint8))
    """
    rows = np.asarray(local_rows, dtype=np.int64).ravel()
    cs = np.asarray(codes, dtype=np.int64).ravel()
    if rows.shape != cs.shape:
        raise ValueError(f"local_rows and codes differ in length ({rows.size} vs {cs.size})")
    if rows.size and (rows[0] < 0 or np.any(np.diff(rows) <= 0)):
        raise ValueError("local_rows must be non-negative and strictly increasing")
    if cs.size and (cs.min() < 1 or cs.max() > 15):
        raise ValueError("codes of nonzeros must lie in 1..15")
    out_code: list[int] = []
    out_z: list[int] = []
    prev = -1
    for r, c in zip(rows.tolist(), cs.tolist()):
        d = r - prev - 1                    # zero rows skipped since the previous entry
        for _ in range(d // 16):            # each padding entry skips 15 and stands on one row
            out_code.append(0)
            out_z.append(15)
        out_code.append(c)
        out_z.append(d % 16)
        prev = r
    return np.array(out_code, dtype=np.uint8), np.array(out_z, dtype=np.uint8)


def check_n_pe(n_pe) -> int:
    if not is_int(n_pe) or n_pe < 1:
        raise EieError(f"the number of PEs must be an integer >= 1, got {n_pe!r}")
    return int(n_pe)


def decode_layer(entries_per_pe: Sequence[np.ndarray], pointers_per_pe: Sequence[np.ndarray],
                 n_in: int, n_out: int, n_pe: int) -> np.ndarray:
    """Decode per-PE entries and pointers back to codes ``(n_out, n_in)`` (uint8).

    ``entries_per_pe[k]`` holds at least PE ``k``'s entries of this layer (from its entry base);
    ``pointers_per_pe[k]`` its ``n_in + 1`` pointers. Raises :class:`EieError` when pointers are
    not monotonic from 0, point past the entries, or an entry lands beyond the PE's rows.
    """
    n_pe = check_n_pe(n_pe)
    if len(entries_per_pe) != n_pe or len(pointers_per_pe) != n_pe:
        raise EieError(f"expected {n_pe} PEs of entries and pointers, got "
                       f"{len(entries_per_pe)} and {len(pointers_per_pe)}")
    out = np.zeros((n_out, n_in), dtype=np.uint8)
    for k in range(n_pe):
        p = np.asarray(pointers_per_pe[k]).astype(np.int64)
        e = np.asarray(entries_per_pe[k], dtype=np.uint8)
        if p.shape != (n_in + 1,):
            raise EieError(f"PE {k}: expected {n_in + 1} pointers (n_in + 1), got {p.size}")
        if p[0] != 0:
            raise EieError(f"PE {k}: the first pointer must be 0, got {int(p[0])}")
        if np.any(np.diff(p) < 0):
            j = int(np.argmax(np.diff(p) < 0))
            raise EieError(f"PE {k}: pointers decrease at column {j} ({int(p[j])} -> {int(p[j + 1])})")
        if p[-1] > e.size:
            raise EieError(f"PE {k}: pointers reach entry {int(p[-1])} but only {e.size} "
                           f"entries are stored")
        n = int(p[-1])
        if n == 0:
            continue
        code, z = split_entry_bytes(e[:n])
        cs = np.cumsum(z.astype(np.int64) + 1)
        col = np.repeat(np.arange(n_in, dtype=np.int64), np.diff(p))
        start = p[col]
        base = np.where(start > 0, cs[np.maximum(start - 1, 0)], 0)
        row = cs - base - 1
        n_local = pe_rows(n_out, n_pe, k)
        if np.any(row >= n_local):
            i = int(np.argmax(row >= n_local))
            raise EieError(f"PE {k}: entry {i} of column {int(col[i])} lands on local row "
                           f"{int(row[i])} but the PE owns {n_local} rows (n_out={n_out}, "
                           f"N={n_pe})")
        nz = code != 0
        out[k + n_pe * row[nz], col[nz]] = code[nz]
    return out


def pack_words(entry_bytes: np.ndarray) -> np.ndarray:
    """Entry bytes to 64-bit words, 8 a word, entry ``e`` of a word at bits ``[8e+7 : 8e]``; the
    last word is zero-padded. uint64 out, ``ceil(n / 8)`` words."""
    e = np.asarray(entry_bytes, dtype=np.uint8).ravel()
    n_words = -(-e.size // ENTRIES_PER_WORD)
    buf = np.zeros(n_words * ENTRIES_PER_WORD, dtype=np.uint8)
    buf[: e.size] = e
    return np.frombuffer(buf.tobytes(), dtype="<u8").astype(np.uint64)


def unpack_words(words: np.ndarray, n_entries: int) -> np.ndarray:
    """The first ``n_entries`` entry bytes of 64-bit words (inverse of :func:`pack_words`)."""
    w = np.asarray(words, dtype=np.uint64).ravel()
    if not is_int(n_entries) or not 0 <= n_entries <= w.size * ENTRIES_PER_WORD:
        raise ValueError(f"n_entries must be in [0, {w.size * ENTRIES_PER_WORD}] for {w.size} "
                         f"words, got {n_entries!r}")
    return np.frombuffer(w.astype("<u8").tobytes(), dtype=np.uint8)[: int(n_entries)].copy()


def ceil_word(n: int) -> int:
    return -(-n // ENTRIES_PER_WORD) * ENTRIES_PER_WORD
