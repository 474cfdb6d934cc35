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
