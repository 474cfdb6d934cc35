"""Huffman code lengths: optimality against brute force, Kraft equality, canonical codes."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from eie.sw.huffman import canonical_codes, huffman_code_lengths, huffman_stats, kraft_sum


def _optimal_cost_bruteforce(counts):
    """Minimum total bits of a prefix code, by trying every length assignment (tiny alphabets)."""
    counts = [c for c in counts if c > 0]
    n = len(counts)
    if n == 1:
        return counts[0]
    best = None
    for lengths in itertools.product(range(1, n), repeat=n):
        if sum(2.0 ** -l for l in lengths) <= 1.0:
            cost = sum(c * l for c, l in zip(counts, lengths))
            best = cost if best is None else min(best, cost)
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=5))
def test_optimal_against_bruteforce(counts):
    lengths = huffman_code_lengths(counts)
    if sum(counts) == 0:
        assert not lengths.any()
        return
    assert int(np.dot(lengths, counts)) == _optimal_cost_bruteforce(counts)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=2, max_size=16))
def test_kraft_and_never_longer_than_fixed(counts):
    lengths = huffman_code_lengths(counts)
    present = sum(1 for c in counts if c)
    assert all((l > 0) == (c > 0) for l, c in zip(lengths, counts))
    if present >= 2:
        assert kraft_sum(lengths) == 1.0
    fixed = max(1, int(np.ceil(np.log2(len(counts)))))
    assert int(np.dot(lengths, counts)) <= fixed * sum(counts)
    codes = canonical_codes(lengths)
    words = [c for c in codes if c is not None]
    assert len(set(words)) == len(words)
    for a, b in itertools.permutations(words, 2):
        assert not b.startswith(a), "prefix-free"
    for c, l in zip(codes, lengths):
        assert (c is None) == (l == 0) and (c is None or len(c) == l)


def test_known_example():
    # Counts 45,13,12,16,9,5 (CLRS's example): lengths 1,3,3,3,4,4, total 224 bits.
    lengths = huffman_code_lengths([45, 13, 12, 16, 9, 5])
    assert lengths.tolist() == [1, 3, 3, 3, 4, 4]
    assert canonical_codes(lengths) == ["0", "100", "101", "110", "1110", "1111"]


def test_single_and_empty_stream():
    assert huffman_code_lengths([0, 7, 0]).tolist() == [0, 1, 0]
    st_ = huffman_stats(np.array([], dtype=np.uint8), 16, 4)
    assert st_.huffman_bits == 0 and st_.fixed_bits == 0 and st_.table_bits == 0


def test_stats_counts_bits():
    sym = np.array([0] * 6 + [1] * 2 + [2] + [3], dtype=np.uint8)
    s = huffman_stats(sym, 16, 4)
    assert s.counts[:4] == (6, 2, 1, 1) and sum(s.counts) == 10
    assert s.fixed_bits == 40
    assert s.huffman_bits == 6 * 1 + 2 * 2 + 1 * 3 + 1 * 3
    assert s.table_bits == 64
    assert s.as_dict()["huffman_bits"] == 16
    with pytest.raises(ValueError):
        huffman_stats(np.array([16]), 16, 4)
