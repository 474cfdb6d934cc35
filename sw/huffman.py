"""Huffman statistics for Deep Compression's last stage.

The hardware stores fixed 4-bit codes and 4-bit relative indices; Deep Compression (Han et al.,
ICLR 2016, section 4) Huffman-codes both streams offline for storage and transfer. This module
computes optimal (Huffman) code lengths from symbol counts, canonical codewords from the lengths,
and the storage in bits, so that ``eie compress``/``eie inspect`` can report the ratio with and
without Huffman coding. It encodes no bitstream: the SRAM image stays fixed-width.

Deterministic: ties between equal weights are broken by symbol value, so the same counts always
give the same lengths. A stream with a single distinct symbol gets a 1-bit code (a decoder needs
at least one bit per symbol to count them); an empty stream costs nothing.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

__all__ = [
    "huffman_code_lengths",
    "canonical_codes",
    "kraft_sum",
    "HuffmanStats",
    "huffman_stats",
]


def huffman_code_lengths(counts: np.ndarray | list[int]) -> np.ndarray:
    """Optimal prefix-code lengths (int64, one per symbol; 0 for symbols that never occur)."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    if np.any(counts < 0):
        raise ValueError("symbol counts must be >= 0")
    lengths = np.zeros(counts.size, dtype=np.int64)
    present = np.flatnonzero(counts)
    if present.size == 0:
        return lengths
    if present.size == 1:
        lengths[present[0]] = 1
        return lengths
    # Heap items: (weight, smallest symbol in the subtree, tie-breaking id, symbols in subtree).
    heap = [(int(counts[s]), int(s), int(s), [int(s)]) for s in present]
    heapq.heapify(heap)
    next_id = counts.size
    while len(heap) > 1:
        w1, m1, _, s1 = heapq.heappop(heap)
        w2, m2, _, s2 = heapq.heappop(heap)
        for s in s1:
            lengths[s] += 1
        for s in s2:
            lengths[s] += 1
        heapq.heappush(heap, (w1 + w2, min(m1, m2), next_id, s1 + s2))
        next_id += 1
    return lengths


def canonical_codes(lengths: np.ndarray | list[int]) -> list[str | None]:
    """Canonical Huffman codewords (as bit strings) for the given lengths; ``None`` for length 0.

    Symbols are ordered by (length, symbol value); each codeword is the previous one plus one,
    shifted left when the length grows, as DEFLATE does. The result is prefix-free whenever the
    lengths satisfy Kraft's inequality.
    """
    lengths = [int(x) for x in np.asarray(lengths).reshape(-1)]
    order = sorted((n, s) for s, n in enumerate(lengths) if n > 0)
    codes: list[str | None] = [None] * len(lengths)
    code = 0
    prev = 0
    for n, s in order:
        code <<= n - prev
        codes[s] = format(code, f"0{n}b")
        code += 1
        prev = n
    return codes


def kraft_sum(lengths: np.ndarray | list[int]) -> float:
    """``sum(2 ** -l)`` over the symbols that occur (1.0 for a complete prefix code)."""
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    return float(sum(2.0 ** -int(n) for n in lengths if n > 0))


@dataclass(frozen=True)
class HuffmanStats:
    """Storage of one symbol stream: fixed-width and Huffman-coded, in bits.

    ``table_bits`` is the cost of transmitting the canonical code (one length a symbol of the
    alphabet, 4 bits each for lengths up to 15; 5 bits each beyond; none for an empty stream).
    """

    counts: tuple[int, ...]
    lengths: tuple[int, ...]
    fixed_bits_per_symbol: int

    @property
    def n_symbols(self) -> int:
        return int(sum(self.counts))

    @property
    def fixed_bits(self) -> int:
        return self.n_symbols * self.fixed_bits_per_symbol

    @property
    def huffman_bits(self) -> int:
        return int(sum(c * n for c, n in zip(self.counts, self.lengths)))

    @property
    def table_bits(self) -> int:
        if self.n_symbols == 0:  # nothing to decode, no table to send
            return 0
        per = 4 if max(self.lengths, default=0) <= 15 else 5
        return per * len(self.counts)

    @property
    def mean_length(self) -> float:
        return self.huffman_bits / self.n_symbols if self.n_symbols else 0.0

    def as_dict(self) -> dict:
        return {
            "counts": list(self.counts),
            "lengths": list(self.lengths),
            "fixed_bits": self.fixed_bits,
            "huffman_bits": self.huffman_bits,
            "table_bits": self.table_bits,
            "mean_length": round(self.mean_length, 4),
        }


def huffman_stats(symbols: np.ndarray, alphabet_size: int, fixed_bits_per_symbol: int) -> HuffmanStats:
    """Count ``symbols`` (ints in ``[0, alphabet_size)``) and compute their Huffman storage."""
    sym = np.asarray(symbols).reshape(-1)
    counts = np.bincount(sym.astype(np.intp), minlength=alphabet_size)
    if counts.size > alphabet_size:
        raise ValueError(f"symbol {int(sym.max())} is outside the alphabet 0..{alphabet_size - 1}")
    lengths = huffman_code_lengths(counts)
    return HuffmanStats(tuple(int(c) for c in counts), tuple(int(n) for n in lengths),
                        int(fixed_bits_per_symbol))
