"""EIEConfig checks and the memory map: every address distinct, inside the bus, described."""

import json

import numpy as np
import pytest

from eie.hw.eie.config import EIEConfig
from eie.hw.eie.memory_map import (LAYER_COUNTERS, LAYER_FIELDS, PE_COUNTERS, REGS, MemoryMap)
from eie.sw.encode import QuantLayer, build_image
from eie.common.errors import EieError


@pytest.mark.parametrize("field,value", [("n_pe", 0), ("n_pe", 257), ("fifo_depth", 0),
                                         ("acc_bits", 15), ("max_layers", 65), ("n_pe", 2.0),
                                         ("ptr_queue_depth", 1)])
def test_bad_values_name_field_value_and_limit(field, value):
    with pytest.raises(ValueError) as e:
        EIEConfig(**{field: value})
    assert field in str(e.value) and str(value) in str(e.value)


def test_acc_depth_not_above_act_depth():
    with pytest.raises(ValueError, match="acc_depth = 9 exceeds act_depth = 8"):
        EIEConfig(act_depth=8, acc_depth=9)


def small_image(n_pe=3):
    rng = np.random.default_rng(0)
    cb = np.arange(16, dtype=np.int16)
    codes0 = (rng.integers(1, 16, (10, 7)) * (rng.random((10, 7)) < 0.5)).astype(np.uint8)
    codes1 = (rng.integers(1, 16, (5, 10)) * (rng.random((5, 10)) < 0.5)).astype(np.uint8)
    return build_image([
        QuantLayer(codes=codes0, codebook=cb, w_frac=3, bias=np.arange(10, dtype=np.int16),
                   relu=True),
        QuantLayer(codes=codes1, codebook=cb, w_frac=2, bias=None, relu=False),
    ], n_pe)


def test_for_image_is_the_smallest_fit():
    img = small_image()
    cfg = EIEConfig.for_image(img, fifo_depth=2)
    assert (cfg.n_pe, cfg.fifo_depth, cfg.max_layers) == (3, 2, 2)
    assert cfg.ptr_depth == img.ptr_words and cfg.spmat_depth == img.spmat_words
    assert cfg.act_depth == 4 and cfg.acc_depth == 4 and cfg.bias_depth == img.bias_words
    for field, msg in [("spmat_depth", "sparse-matrix words"), ("ptr_depth", "pointers"),
                       ("max_layers", "layers"), ("acc_depth", "outputs")]:
        kw = {field: getattr(cfg, field) - 1}
        with pytest.raises(EieError, match=msg):
            EIEConfig.for_image(img, **kw)
    with pytest.raises(EieError, match="for 3 PEs but the accelerator has 4"):
        EIEConfig(n_pe=4).check_image(img)


@pytest.mark.parametrize("n_pe", [1, 3, 16])
def test_memory_map_addresses_are_distinct_and_fit(n_pe):
    cfg = EIEConfig(n_pe=n_pe, ptr_depth=10, spmat_depth=5, act_depth=6, acc_depth=5,
                    bias_depth=7, max_layers=3)
    mm = MemoryMap(cfg)
    addrs = [mm.reg(r) for r in REGS]
    for l in range(cfg.max_layers):
        addrs += [mm.layer_counter(l, c) for c in LAYER_COUNTERS]
        addrs += [mm.layer_field(l, f) for f in LAYER_FIELDS]
        addrs += [mm.codebook(l, i) for i in range(16)]
    for k in range(n_pe):
        addrs += [mm.ptr(k, p) for p in range(cfg.ptr_depth)]
        addrs += [mm.spmat(k, w, h) for w in range(cfg.spmat_depth) for h in (0, 1)]
        addrs += [mm.bias(k, s) for s in range(cfg.bias_depth)]
        addrs += [mm.act(k, b, i) for b in (0, 1) for i in range(cfg.act_depth)]
        addrs += [mm.pe_counter(k, l, c) for l in range(cfg.max_layers) for c in PE_COUNTERS]
    assert len(set(addrs)) == len(addrs)
    assert max(addrs) < (1 << mm.addr_width)
    with pytest.raises(IndexError):
        mm.ptr(n_pe, 0)
    with pytest.raises(IndexError):
        mm.spmat(0, cfg.spmat_depth, 0)
    d = json.loads(mm.dumps())
    assert d["addr_width"] == mm.addr_width
    assert d["regions"]["spmat"]["base"] == mm.spmat(0, 0, 0)
    assert json.loads(cfg.dumps())["n_pe"] == n_pe
    assert json.loads(json.dumps(mm.describe()))["params"]["n_pe"] == n_pe


@pytest.mark.parametrize("kw", [dict(n_pe=1, ptr_depth=2, spmat_depth=1, act_depth=1,
                                     acc_depth=1, bias_depth=1, max_layers=1),
                                dict(n_pe=3, ptr_depth=64, spmat_depth=32, act_depth=16,
                                     acc_depth=8, bias_depth=5, max_layers=4),
                                dict(n_pe=16, ptr_depth=1000, spmat_depth=1 << 12,
                                     act_depth=100, acc_depth=33, bias_depth=64, max_layers=64)])
def test_widths_hold_their_ranges(kw):
    """Every width property holds the largest value of what it names, and is at least 1 bit (an
    activation file's index bits, which may be 0, excepted); an index is no wider than it needs;
    the activation index bits are the memory map's."""
    cfg = EIEConfig(**kw)
    fits = {
        "j_bits": cfg.max_n_in - 1, "size_bits": cfg.max_n_in,
        "ptr_index_bits": cfg.ptr_depth - 1, "ptr_base_bits": cfg.ptr_depth - 1,
        "spmat_word_bits": cfg.spmat_depth - 1, "spmat_half_bits": 2 * cfg.spmat_depth - 1,
        "bias_slot_bits": cfg.bias_depth - 1, "bias_base_bits": cfg.bias_depth - 1,
        "row_bits": cfg.acc_depth - 1, "act_index_bits": cfg.act_depth - 1,
        "act_addr_bits": cfg.act_depth - 1, "act_file_bits": (1 << cfg.act_index_bits)
        + cfg.act_depth - 1, "layer_bits": cfg.max_layers - 1, "pe_index_bits": cfg.n_pe - 1,
        "ptr_bits": cfg.entry_depth,
    }
    for name, biggest in fits.items():
        bits = getattr(cfg, name)
        assert biggest < (1 << bits), name
        assert bits >= (0 if name == "act_index_bits" else 1), name
        if name.endswith("index_bits") or name in ("j_bits", "spmat_word_bits",
                                                   "bias_slot_bits", "row_bits", "layer_bits"):
            assert bits == max(0 if name == "act_index_bits" else 1, biggest.bit_length()), name
    assert cfg.act_index_bits == MemoryMap(cfg).act_bits
    assert max(1, MemoryMap(cfg).pe_bits) == cfg.pe_index_bits
