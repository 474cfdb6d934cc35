"""The backdoor load (eie.sim.backdoor): the split of the load program, checked against the
image itself, and runs on Verilator and Icarus that must give the same outputs and the same
counters as the front-door (bus) load, and the golden model's outputs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from eie.hw.eie.config import EIEConfig
from eie.hw.eie.host_program import HostProgram, Read, Write
from eie.hw.eie.memory_map import MemoryMap, Region, pointer_words
from eie.sim.backdoor import CHECKS_PER_MEMORY, memory_paths, split_load, verify_reads
from eie.sim.eie_run import config_for_images, run_eie
from eie.sw.encode import QuantLayer, build_image
from eie.common.errors import EieError
from eie.sw.golden import golden_forward


def _layer(rng, n_out, n_in, density, bias):
    codes = ((rng.random((n_out, n_in)) < density) * rng.integers(1, 16, (n_out, n_in)))
    cb = np.concatenate([[0], rng.integers(-300, 301, 15)]).astype(np.int16)
    b = rng.integers(-1000, 1001, n_out).astype(np.int16) if bias else None
    return QuantLayer(codes=codes.astype(np.uint8), codebook=cb, w_frac=7, bias=b, relu=True)


def _network(n_pe: int, seed: int):
    """A 3-layer network with biases (so pointers, words and bias slots of every layer sit at
    non-zero bases) and a batch of inputs."""
    rng = np.random.default_rng(seed)
    sizes = [37, 29, 21, 11]
    layers = [_layer(rng, sizes[i + 1], sizes[i], (0.05, 0.4, 0.9)[i], bias=i != 1)
              for i in range(3)]
    image = build_image(layers, n_pe)
    x = (rng.integers(-700, 701, (3, sizes[0])) * (rng.random((3, sizes[0])) < 0.6))
    return image, x.astype(np.int16)


def _region(mm: MemoryMap, addr: int) -> int:
    return addr >> (mm.pe_bits + mm.off_bits)


@pytest.mark.parametrize("n_pe", [1, 2, 5])
def test_split_holds_the_image_words(n_pe):
    image, _ = _network(n_pe, seed=n_pe)
    config = config_for_images([image])
    mm = MemoryMap(config)
    ops = HostProgram(config, image).load()
    split = split_load(config, ops)
    # Everything outside the pointer and sparse-matrix regions stays on the bus, in order.
    assert split.front == [op for op in ops
                           if _region(mm, op.addr) not in (Region.PTR, Region.SPMAT)]
    assert any(_region(mm, op.addr) == Region.BIAS for op in split.front)
    # The deposits are the image's pointer words (even and odd banks: absolute entry addresses
    # with their columns' flags, as the host loads them) and its 64-bit words' 32-bit halves,
    # low half first (the SRAM's own layout).
    for k in range(n_pe):
        paths = memory_paths(k)
        ptr = np.asarray(pointer_words(config, image.layers, image.ptr[k]), dtype=np.int64)
        for name, part in (("ptr_even", ptr[0::2]), ("ptr_odd", ptr[1::2])):
            idx, words = split.memories[paths[name]]
            assert idx.tolist() == list(range(len(part)))
            assert words == part.tolist()
        idx, words = split.memories[paths["spmat"]]
        spmat = np.asarray(image.spmat[k], dtype=np.uint64)
        assert idx.tolist() == list(range(2 * len(spmat)))
        assert words == [int(v) >> (32 * h) & 0xFFFF_FFFF for v in spmat for h in (0, 1)]
    assert split.n_words == sum(len(image.ptr[k]) + 2 * len(image.spmat[k]) for k in range(n_pe))
    # The read-back sample holds the first and the last write of every PE's pointer and
    # sparse-matrix regions, expecting what the image holds there.
    want = {}
    for k in range(n_pe):
        ptr = pointer_words(config, image.layers, image.ptr[k])
        spmat = np.asarray(image.spmat[k], dtype=np.uint64)
        want[mm.ptr(k, 0)] = int(ptr[0])
        want[mm.ptr(k, len(ptr) - 1)] = int(ptr[-1])
        want[mm.spmat(k, 0, 0)] = int(spmat[0]) & 0xFFFF_FFFF
        want[mm.spmat(k, len(spmat) - 1, 1)] = int(spmat[-1]) >> 32
    checks = dict(split.checks)
    for addr, value in want.items():
        assert checks[addr] == value
    assert len(split.checks) <= n_pe * 4 * CHECKS_PER_MEMORY


def test_split_truncates_pointers_like_the_write_port():
    config = EIEConfig(n_pe=2, ptr_depth=8, spmat_depth=4)
    mm = MemoryMap(config)
    # a pointer word is ptr_bits + 3 wide (the address and the column's three flags)
    too_wide = (1 << config.ptr_word_bits) | (0b101 << config.ptr_bits) | 5
    split = split_load(config, [Write(mm.ptr(1, 3), too_wide)])
    assert split.memories[memory_paths(1)["ptr_odd"]][1] == [(0b101 << config.ptr_bits) | 5]


def test_split_rejects_a_read_of_a_bulk_region():
    config = EIEConfig(n_pe=2, ptr_depth=8, spmat_depth=4)
    mm = MemoryMap(config)
    with pytest.raises(ValueError, match="reads a bulk memory region"):
        split_load(config, [Read(mm.spmat(0, 1, 0), "w")])


def test_verify_reads_names_the_first_difference():
    verify_reads([(0x10, 7), (0x11, 8)], [7, 8])
    with pytest.raises(AssertionError, match=r"0x11 gives 0x9, the image has 0x8"):
        verify_reads([(0x10, 7), (0x11, 8)], [7, 9])


def test_backdoor_needs_a_verilog_simulator():
    image, x = _network(2, seed=0)
    with pytest.raises(EieError, match="verilator or icarus"):
        run_eie(image, x, sim="amaranth", load="backdoor")
    with pytest.raises(EieError, match="unknown load"):
        run_eie(image, x, sim="icarus", load="vpi")


@pytest.mark.rtl
@pytest.mark.parametrize("sim,n_pe", [("icarus", 1), ("icarus", 3), ("verilator", 3),
                                      pytest.param("verilator", 1, marks=pytest.mark.slow)])
def test_backdoor_run_equals_bus_run(sim, n_pe, rtl_designs):
    image, x = _network(n_pe, seed=10 + n_pe)
    golden = golden_forward(image, x).outputs
    # Icarus on the smallest design that holds the image (every memory filled to its last
    # word); Verilator on the design the RTL matrix shares (one build a session)
    config = rtl_designs.config(n_pe, 8) if sim == "verilator" else None
    bus = run_eie(image, x, sim=sim, load="bus", config=config)
    back = run_eie(image, x, sim=sim, load="backdoor", config=config)
    assert np.array_equal(bus.outputs, golden)
    assert np.array_equal(back.outputs, golden)
    assert back.counters == bus.counters
    assert back.run_cycles == bus.run_cycles


@pytest.mark.parametrize("n_pe", [1, 3])
def test_pointer_words_hold_each_column_as_the_image_does(n_pe):
    """Decoded without the project's code (bit positions as docs/eie-hardware.md gives them):
    every pointer word of a layer is its entry base plus the image's pointer, and the flags of
    the column it starts say what the image's next pointer says (entries here, one, two);
    a layer's last pointer ends a column and has none."""
    image, _ = _network(n_pe, seed=7 + n_pe)
    config = config_for_images([image])
    b = config.ptr_bits
    spans = set()
    for k in range(n_pe):
        ptr = [int(v) for v in image.ptr[k]]
        words = pointer_words(config, image.layers, ptr)
        assert len(words) == len(ptr)
        for d in image.layers:
            for q in range(d.n_in + 1):
                w = words[d.ptr_base + q]
                assert w & ((1 << b) - 1) == d.entry_base + ptr[d.ptr_base + q]
                if q == d.n_in:
                    assert w >> b == 0
                    continue
                span = ptr[d.ptr_base + q + 1] - ptr[d.ptr_base + q]
                spans.add(min(span, 3))
                assert (w >> b & 1, w >> (b + 1) & 1, w >> (b + 2) & 1) == \
                    (int(span > 0), int(span == 1), int(span == 2))
    assert spans == {0, 1, 2, 3}                    # every kind of column met


def test_pointer_words_refuse_an_address_past_the_pointer_width():
    config = EIEConfig(n_pe=1, ptr_depth=8, spmat_depth=4)      # entries 0 .. 32: 6 bits
    layer = SimpleNamespace(n_in=2, ptr_base=0, entry_base=40)
    with pytest.raises(ValueError, match=r"entry address 40 \+ 30 = 70 does not fit"):
        pointer_words(config, [layer], [0, 10, 30])
