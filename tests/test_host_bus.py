"""The host-bus abstraction both cores share: packed register layouts (one declaration for the
gateware's views and the host's ints), the one host-program executor, the blocking wrapper."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from eie.hw.common.host import Poll, Read, Write, execute, run_sync
from eie.hw.common.regs import RegisterLayout
from eie.hw.bnn import memory_map as bnn_mm
from eie.hw.eie import memory_map as eie_mm

LAYOUTS = {
    "eie.CTRL": eie_mm.CTRL, "eie.CONFIG0": eie_mm.CONFIG0, "eie.CONFIG1": eie_mm.CONFIG1,
    "eie.STATUS": eie_mm.STATUS, "eie.flags": eie_mm.LAYER_FLAGS,
    "bnn.CTRL": bnn_mm.CTRL, "bnn.STATUS": bnn_mm.STATUS, "bnn.ERRORS": bnn_mm.ERRORS,
}


# ----------------------------------------------------------------------------- register layouts

@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_pack_is_the_struct_layouts_const(name):
    """The host's ints and the gateware's StructLayout agree bit for bit, both ways."""
    reg = LAYOUTS[name]
    rng = random.Random(name)
    for _ in range(50):
        values = {n: rng.getrandbits(reg.field(n)[1]) for n in reg.names}
        word = reg.pack(**values)
        assert word == reg.const(**values).as_value().value
        assert reg.unpack(word) == values
        assert reg.layout.from_bits(word).as_value().value == word
    assert reg.layout.size == reg.size


def test_the_documented_bits_stay():
    """The register tables' text comes from the layouts and says what it always said."""
    assert eie_mm.LAYER_FLAGS.describe() == "bits 4:0 w_frac, bit 8 relu, bit 9 has_bias"
    assert eie_mm.CONFIG0.describe() == "bits 8:0 n_pe, bits 31:16 fifo_depth"
    assert eie_mm.CONFIG1.describe() == "bits 7:0 max_layers, bits 15:8 acc_bits, bits 19:16 act_frac"
    assert eie_mm.STATUS.mask("busy", "done", "bank", "error") == 0b1111
    assert eie_mm.LAYER_FLAGS.pack(w_frac=7, relu=1, has_bias=1) == 7 | 1 << 8 | 1 << 9
    assert (bnn_mm.CTRL_RUN, bnn_mm.CTRL_CLEAR) == (1, 2)
    assert bnn_mm.STATUS.pack(in_free=3, out_count=2) == 3 | 2 << 16
    assert eie_mm.LAYER_FIELDS["flags"][1] == eie_mm.LAYER_FLAGS.describe()


def test_pack_refuses_what_does_not_fit():
    reg = RegisterLayout(a=3, _gap=2, b=1)
    with pytest.raises(ValueError, match="3 bits wide; 8 does not fit"):
        reg.pack(a=8)
    with pytest.raises(KeyError, match="no field '_gap'"):
        reg.pack(_gap=1)
    with pytest.raises(KeyError):
        reg.pack(c=1)
    assert reg.pack(b=True) == 1 << 5 and reg.mask("b") == 1 << 5
    assert reg.unpack(0xFF) == {"a": 7, "b": 1}
    with pytest.raises(ValueError, match="at least 1 bit"):
        RegisterLayout(a=0)


def test_memory_maps_list_the_fields():
    from eie.hw.bnn.folding import make_folding
    from eie.hw.eie.config import EIEConfig

    doc = eie_mm.MemoryMap(EIEConfig()).to_json()
    assert doc["registers"]["CONFIG0"]["fields"]["fifo_depth"] == {"lsb": 16, "width": 16}
    assert doc["layer_table"]["fields"]["flags"]["fields"]["relu"] == {"lsb": 8, "width": 1}
    assert doc["read_latency"] == eie_mm.READ_LATENCY
    bdoc = bnn_mm.BnnMemoryMap(make_folding([10, 3, 2], "5:1,3:2")).to_json()
    assert bdoc["fields"]["STATUS"]["out_count"] == {"lsb": 16, "width": 16}
    assert bdoc["bus"]["read_latency"] == bnn_mm.READ_LATENCY == 1


def test_views_decode_a_word_as_the_host_packs_it(simulate):
    """A view of a bus word (the gateware's side) reads the fields the host packed."""
    from amaranth.hdl import Module, Signal

    reg = eie_mm.LAYER_FLAGS
    m = Module()
    word = Signal(32)
    view = reg.view(word)
    relu, has_bias, w_frac = Signal(), Signal(), Signal(5)
    m.d.comb += [relu.eq(view.relu), has_bias.eq(view.has_bias), w_frac.eq(view.w_frac)]
    seen = []

    async def bench(ctx):
        for values in ({"w_frac": 30, "relu": 0, "has_bias": 1}, {"w_frac": 0, "relu": 1,
                                                                   "has_bias": 0}):
            ctx.set(word, reg.pack(**values) | 0xFFFF_FC00)     # bits above the word ignored
            seen.append(({"w_frac": ctx.get(w_frac), "relu": ctx.get(relu),
                          "has_bias": ctx.get(has_bias)}, values))

    simulate(m, bench, period=None)
    assert all(got == want for got, want in seen) and len(seen) == 2


def test_memory_maps_and_host_programs_import_without_amaranth():
    code = ("import sys, eie.hw.eie.memory_map, eie.hw.bnn.memory_map, eie.hw.eie.host_program, "
            "eie.hw.bnn.host_program, eie.hw.common.host, eie.hw.common.regs; "
            "assert not any(m.startswith('amaranth') for m in sys.modules), 'amaranth imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- the executor

class DictBus:
    """A host-bus driver over a dict; ``many`` adds ``read_many``; ``log`` records the calls."""

    def __init__(self, memory=None, many=False):
        self.memory = dict(memory or {})
        self.log: list = []
        if many:
            self.read_many = self._read_many

    async def write(self, addr, data):
        self.log.append(("w", addr, data))
        self.memory[addr] = data

    async def read(self, addr):
        self.log.append(("r", addr))
        return self.memory.get(addr, 0)

    async def _read_many(self, addrs):
        self.log.append(("rm", tuple(addrs)))
        return [self.memory.get(a, 0) for a in addrs]


@pytest.mark.parametrize("many", [False, True])
def test_execute_runs_ops_in_order(many):
    bus = DictBus({5: 0b10}, many=many)
    ops = [Write(1, 11), Write(2, 22), Read(2, "b"), Read(1, "a"), Poll(5, 0b11, 0b10),
           Write(1, 33), Read(1, "c")]
    assert run_sync(execute(bus, ops)) == {"a": 11, "b": 22, "c": 33}
    if many:
        assert bus.log == [("w", 1, 11), ("w", 2, 22), ("rm", (2, 1)), ("r", 5), ("w", 1, 33),
                           ("rm", (1,))]
    else:
        assert [e[0] for e in bus.log] == ["w", "w", "r", "r", "r", "w", "r"]


def test_poll_times_out_or_fails():
    with pytest.raises(TimeoutError, match="did not reach 0x2"):
        run_sync(execute(DictBus({5: 0}), [Poll(5, 2, 2, max_polls=3)]))
    with pytest.raises(RuntimeError, match=r"error bits 0x8 set \(why\)"):
        run_sync(execute(DictBus({5: 8}), [Poll(5, 2, 2, fail_mask=8, fail_why="why")]))
    with pytest.raises(TypeError, match="not a host operation"):
        run_sync(execute(DictBus(), ["write 1"]))


def test_run_sync_refuses_a_program_that_waits_on_a_loop():
    import asyncio

    async def waits():
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="suspended"):
        run_sync(waits())
