"""End to end on the Amaranth simulator: images loaded through the host bus with the shared host
program, outputs equal to the golden model bit for bit, counters consistent with the golden
model's work statistics."""

import numpy as np
import pytest

from eie.hw.eie.config import EIEConfig
from eie.hw.eie.host_program import HostProgram
from eie.hw.eie.memory_map import EIE_ID, MemoryMap
from eie.sim.eie_amaranth import run_image_amaranth
from eie.sw.encode import QuantLayer, build_image
from eie.sw.golden import golden_forward

pytestmark = pytest.mark.rtl        # the whole EIE core in the Amaranth simulator


def rand_layer(rng, n_out, n_in, density, bias, relu, w_frac=7, cb_scale=300):
    codes = rng.integers(1, 16, (n_out, n_in)) * (rng.random((n_out, n_in)) < density)
    cb = np.concatenate([[0], rng.integers(-cb_scale, cb_scale + 1, 15)]).astype(np.int16)
    b = rng.integers(-3000, 3001, n_out).astype(np.int16) if bias else None
    return QuantLayer(codes=codes.astype(np.uint8), codebook=cb, w_frac=w_frac, bias=b, relu=relu)


def rand_input(rng, batch, n_in, density, scale=600):
    x = rng.integers(-scale, scale + 1, (batch, n_in)) * (rng.random((batch, n_in)) < density)
    return x.astype(np.int16)


def check_run(img, x, cfg):
    g = golden_forward(img, x)
    r = run_image_amaranth(cfg, img, x)
    np.testing.assert_array_equal(r.outputs, g.outputs)
    for s in range(x.shape[0]):
        for l, st in enumerate(g.stats):
            c = r.counters[s][l]
            assert c["broadcasts"] == st.nonzero_inputs[s]
            assert c["busy"] == [int(v) for v in st.work_per_pe[s]]
            assert c["cycles"] >= st.bound[s]
        assert r.run_cycles[s] == sum(c["cycles"] for c in r.counters[s])
    return r, g


CASES = [  # (n_pe, fifo_depth, sizes, weight density, act density, bias, seed)
    (1, 2, [9, 7, 5], 0.5, 0.6, True, 1),
    (2, 1, [12, 10, 6], 0.4, 0.7, False, 2),
    (3, 2, [13, 11, 8, 5], 0.35, 0.6, True, 3),
    (4, 8, [20, 18, 9], 0.3, 0.5, True, 4),
]


@pytest.mark.parametrize("n_pe,fifo,sizes,wd,ad,bias,seed", CASES)
def test_multilayer_equals_golden(n_pe, fifo, sizes, wd, ad, bias, seed):
    rng = np.random.default_rng(seed)
    layers = [rand_layer(rng, sizes[i + 1], sizes[i], wd, bias, relu=i < len(sizes) - 2)
              for i in range(len(sizes) - 1)]
    img = build_image(layers, n_pe)
    x = rand_input(rng, 2, sizes[0], ad)
    check_run(img, x, EIEConfig.for_image(img, fifo_depth=fifo))


def test_saturation_both_ends_and_long_gaps():
    # Large weights and activations saturate at both ends; 40 rows in one PE force padding.
    rng = np.random.default_rng(11)
    codes = np.zeros((40, 6), dtype=np.uint8)
    codes[0, :] = 1
    codes[39, :] = 2          # gap of 38 zero rows: padding entries
    codes[20, 1] = 3
    cb = np.zeros(16, dtype=np.int16)
    cb[1], cb[2], cb[3] = 32767, -32768, 5
    layer = QuantLayer(codes=codes, codebook=cb, w_frac=4, bias=None, relu=False)
    img = build_image([layer], 1)
    assert img.layers[0].stats["padding"] > 0
    x = np.array([[32767, 32767, 1, 0, -32768, 3], [-5, 7, 0, 0, 0, 0]], dtype=np.int16)
    r, g = check_run(img, x, EIEConfig.for_image(img, fifo_depth=2))
    assert g.outputs.max() == 32767 and g.outputs.min() == -32768


@pytest.mark.parametrize("pattern", ["same_cycle", "cycle_after"])
def test_next_layer_reads_rows_whose_last_write_is_in_flight(pattern):
    """A layer ends while its last entries are still in ``mul_`` and ``acc_``; their writes land
    in the next layer's first 2 cycles, when it reads local rows 0 and 1 of every PE. Rows are
    written in the cycle they are read (``same_cycle``: the last column writes local rows 0 then
    1) or in the cycle after (``cycle_after``: local row 1 from the column before, then local
    row 0 from the last column); a stale read would give 0 for a row."""
    n = 2
    codes = np.zeros((4, 4), dtype=np.uint8)        # model row i: PE i % 2, local row i // 2
    if pattern == "same_cycle":
        codes[:, 3] = [3, 4, 5, 6]
    else:
        codes[2:, 2] = [5, 6]                       # local row 1 of both PEs
        codes[:2, 3] = [3, 4]                       # local row 0 of both PEs, last
    cb = np.arange(16, dtype=np.int16) * 7
    first = QuantLayer(codes=codes, codebook=cb, w_frac=0, bias=None, relu=False)
    second = QuantLayer(codes=np.full((2, 4), 1, dtype=np.uint8) + np.eye(2, 4, dtype=np.uint8),
                        codebook=np.arange(16, dtype=np.int16), w_frac=0, bias=None, relu=False)
    img = build_image([first, second], n)
    x = np.array([[0, 0, 9, 11], [0, 0, -13, 2]], dtype=np.int16)
    r, g = check_run(img, x, EIEConfig.for_image(img, fifo_depth=2))
    assert np.all(g.layer_outputs[0] != 0)      # every row of the first layer matters


def test_every_layer_weighs_with_its_own_codebook():
    """Each PE keeps every layer's codebook (written by the host through the layer table) and
    reads the current layer's by its index: all weights here use entries 12-15, which differ
    from layer to layer, from the first entry of a layer on (the first column, its nonzero at
    j = 0, every PE idle: the shortest path from ``LSTART`` to a weight); a copy read with the
    wrong layer's index or not written gives a wrong product."""
    rng = np.random.default_rng(21)
    n, sizes = 2, [6, 6, 4, 4]
    layers = []
    for i in range(len(sizes) - 1):
        codes = rng.integers(12, 16, (sizes[i + 1], sizes[i])).astype(np.uint8)
        cb = np.concatenate([[0], rng.integers(-300, 301, 15)]).astype(np.int16)
        cb[12:] = (i + 1) * np.array([41, -43, 47, -53])      # differ from layer to layer
        layers.append(QuantLayer(codes=codes, codebook=cb, w_frac=6, bias=None,
                                 relu=False))
    img = build_image(layers, n)
    x = np.array([[200, 0, -5, 7, 0, 9], [-300, 1, 0, 0, 2, 0]], dtype=np.int16)
    r, g = check_run(img, x, EIEConfig.for_image(img, fifo_depth=2))
    assert np.all(g.layer_outputs[0][:, 0] != 0) and np.all(g.outputs != 0)


def test_fifo_full_back_pressure():
    # One PE gets dense columns, the others none: with a 4-deep FIFO the broadcast must wait
    # for PE 0 (3 entries a column) while PEs 1 and 2 (empty columns, 1 a cycle) never hold
    # more than one entry, below every fill flag (4 - in_flight >= 2). The paper's 4-column
    # pointer queue: a 15-column one would take all 24 columns in before the FIFO filled.
    n = 3
    codes = np.zeros((9, 24), dtype=np.uint8)
    codes[0::3, :] = 5        # rows 0, 3, 6: PE 0 only
    cb = np.arange(16, dtype=np.int16) * 3
    img = build_image([QuantLayer(codes=codes, codebook=cb, w_frac=2, bias=None, relu=True)], n)
    x = np.arange(1, 25, dtype=np.int16)[None, :]
    r, g = check_run(img, x, EIEConfig.for_image(img, fifo_depth=4, ptr_queue_depth=4))
    stall = r.counters[0][0]["stall"]
    assert stall[0] > 0 and stall[1] == 0 and stall[2] == 0


def _bus(ctx, dut):
    """The Amaranth-simulator host-bus driver of ``dut`` in testbench ``ctx``, the one the host
    program's executor (:func:`eie.hw.common.host.execute`) runs over."""
    from eie.sim.bus_driver import AmaranthBus

    return AmaranthBus(ctx, dut.bus)


@pytest.mark.parametrize("max_layers,n_pe", [(1, 2), (2, 2), (1, 5)])
def test_registers_and_readback(simulate, max_layers, n_pe):
    """ID, CONFIG, layer table and memories read back through the bus what the program wrote;
    writes just outside the table change none of it. (5 PEs: two groups, of 3 and 2, whose
    words the top selects in two steps; PE numbers 5-7 read 0.)"""
    from eie.hw.eie.host_program import Read, Write, execute
    from eie.hw.eie.top import EIETop, pe_groups

    rng = np.random.default_rng(5)
    img = build_image([rand_layer(rng, 6, 5, 0.6, True, True)], n_pe)
    assert pe_groups(n_pe) == (2 if n_pe == 5 else 1)
    # with room for 2 layers the global region has addresses past the table
    cfg = EIEConfig.for_image(img, fifo_depth=3, max_layers=max_layers)
    prog = HostProgram(cfg, img)
    mm = MemoryMap(cfg)
    dut = EIETop(cfg)
    load = prog.load()
    got = {}
    again = {}

    async def bench(ctx):
        bus = _bus(ctx, dut)
        w, r = bus.write, bus.read
        await execute(bus, load)
        reads = [Read(op.addr, op.addr) for op in load if isinstance(op, Write)]
        reads += [Read(mm.reg("ID"), "id"), Read(mm.reg("CONFIG0"), "c0"),
                  Read(mm.reg("STATUS"), "st"), Read(1 << (mm.addr_width - 1), "unmapped")]
        # a PE number past the last PE, in an existing region: reads 0
        reads += [Read(mm.spmat(0, 0, 0) | (k << mm.off_bits), ("no pe", k))
                  for k in range(n_pe, 1 << mm.pe_bits)]
        got.update(await execute(bus, reads))
        # Past a memory's depth: reads 0, and a write there must not alias onto word 0.
        shift = mm.pe_bits + mm.off_bits
        past = [(2 << shift) | (2 * cfg.spmat_depth), (1 << shift) | cfg.ptr_depth,
                (3 << shift) | cfg.bias_depth]
        past = [a for a in past if a & ((1 << mm.off_bits) - 1)]   # offset bits can hold it
        past += [mm.layer_base + 7, mm.layer_base + 15]   # unused descriptor words read 0
        for a in past:
            await w(a, 0xDEADBEEF)
            got[("past", a)] = await r(a)
        got["w0"] = await r(mm.spmat(0, 0, 0))
        # the top decodes table writes before its request register (``tbl_w``): a write just
        # below or past the table changes no table word (every word loaded reads back again)
        assert (mm.global_span < 1 << (mm.pe_bits + mm.off_bits)) == (max_layers == 2)
        for a in (mm.layer_base - 1, mm.global_span):
            if a < 1 << (mm.pe_bits + mm.off_bits):
                await w(a, 0xFFFF_FFFF)
        table = [op for op in load
                 if isinstance(op, Write) and mm.layer_base <= op.addr < mm.global_span]
        again.update(await execute(bus, [Read(op.addr, op.addr) for op in table]))

    simulate(dut, bench)
    assert got.pop("id") == EIE_ID
    assert got.pop("c0") == n_pe | (3 << 16)
    assert got.pop("st") == 0
    assert got.pop("unmapped") == 0
    assert got.pop("w0") == next(op.data for op in load if op.addr == mm.spmat(0, 0, 0))
    for key in [k for k in got if isinstance(k, tuple)]:
        assert got.pop(key) == 0, key
    for op in load:
        if op.addr >= mm.layer_base and op.addr < mm.global_span:   # codebook/table
            assert got[op.addr] & 0xFFFF == op.data & 0xFFFF
            assert again[op.addr] == got[op.addr], hex(op.addr)
        elif op.addr >= (1 << (mm.pe_bits + mm.off_bits)) * 3:     # bias: sign-extended
            assert got[op.addr] & 0xFFFF == op.data
        else:
            assert got[op.addr] == op.data, hex(op.addr)


def _small_top(seed):
    """A 1-PE top sized for one random 4 x 4 layer: ``(config, memory map, EIETop)``."""
    from eie.hw.eie.top import EIETop

    rng = np.random.default_rng(seed)
    img = build_image([rand_layer(rng, 4, 4, 0.5, False, False)], 1)
    cfg = EIEConfig.for_image(img)
    return cfg, MemoryMap(cfg), EIETop(cfg)


def test_start_with_bad_layer_count_is_refused(simulate):
    from eie.hw.eie.host_program import STATUS_ERROR, Poll, Write, execute

    cfg, mm, dut = _small_top(9)
    seen = {}

    async def bench(ctx):
        bus = _bus(ctx, dut)
        for n_layers in (0, cfg.max_layers + 1):
            ops = [Write(mm.reg("N_LAYERS"), n_layers), Write(mm.reg("CTRL"), 1),
                   Poll(mm.reg("STATUS"), 0b11, 0b10, max_polls=20, fail_mask=STATUS_ERROR)]
            with pytest.raises(RuntimeError, match="error bits"):
                await execute(bus, ops)
            seen[n_layers] = (await bus.read(mm.reg("STATUS")), ctx.get(dut.busy))

    simulate(dut, bench)
    assert seen == {0: (STATUS_ERROR, 0), cfg.max_layers + 1: (STATUS_ERROR, 0)}


def test_only_a_write_of_ctrl_starts_a_run(simulate):
    """The top decodes a write of CTRL with ``start`` set before its request register (the
    CCU's ``start_w``): a write of 1 to N_LAYERS, to a layer-table word or to a PE's memory
    neither starts a run nor is refused as one (STATUS stays 0: not busy, not done, no error),
    nor does a write of CTRL with ``start`` clear; ``CTRL = 1`` starts one."""
    _, mm, dut = _small_top(11)
    status = {}

    async def bench(ctx):
        bus = _bus(ctx, dut)
        # N_LAYERS first: a start taken at its write is refused (no layer count yet), a start
        # taken at a later one runs
        for name, addr, data in (("N_LAYERS", mm.reg("N_LAYERS"), 1),
                                 ("n_in", mm.layer_field(0, "n_in"), 1),
                                 ("PE 0 bias", mm.bias(0, 0), 1),
                                 ("CTRL, start clear", mm.reg("CTRL"), 0b10),
                                 ("CTRL = 1", mm.reg("CTRL"), 1)):
            await bus.write(addr, data)
            await ctx.tick().repeat(3)
            status[name] = (ctx.get(dut.busy), await bus.read(mm.reg("STATUS")))

    simulate(dut, bench)
    assert {k: v for k, v in status.items() if k != "CTRL = 1"} == {
        "N_LAYERS": (0, 0), "n_in": (0, 0), "PE 0 bias": (0, 0), "CTRL, start clear": (0, 0)}
    assert status["CTRL = 1"][0] == 1 or status["CTRL = 1"][1] & 0b10    # busy, or done already


def test_writes_to_the_pes_while_busy_are_ignored(simulate):
    """The PEs leave host mode while a run is busy: a bus write then to any PE memory (input
    and output activation rows, a bias slot, a pointer, a sparse-matrix word) is dropped, and
    the run's outputs equal the golden model's."""
    from eie.hw.eie.host_program import STATUS, Write, execute
    from eie.hw.eie.top import EIETop

    rng = np.random.default_rng(21)
    layers = [rand_layer(rng, 24, 30, 0.6, True, True), rand_layer(rng, 10, 24, 0.6, True, False)]
    img = build_image(layers, 2)
    x = rand_input(rng, 1, 30, 0.9)
    cfg = EIEConfig.for_image(img, fifo_depth=2)
    prog = HostProgram(cfg, img)
    mm = MemoryMap(cfg)
    dut = EIETop(cfg)
    garbage = [Write(addr, 0x5A5A)
               for k in range(2)
               for addr in (mm.act(k, 0, 0), mm.act(k, 0, 1), mm.act(k, 1, 0), mm.act(k, 1, 1),
                            mm.bias(k, 0), mm.ptr(k, 0), mm.ptr(k, 1), mm.spmat(k, 0, 0),
                            mm.spmat(k, 0, 1))]
    got = {}

    async def bench(ctx):
        bus = _bus(ctx, dut)
        await execute(bus, prog.load())
        run = prog.run(x[0])
        await execute(bus, run[:-1])                # the inputs and the start
        await execute(bus, garbage)
        got["busy after"] = await bus.read(mm.reg("STATUS"))
        await execute(bus, run[-1:])                # wait for done
        got.update(await execute(bus, prog.collect()))

    simulate(dut, bench)
    # every garbage write came while the run was busy
    assert got.pop("busy after") & STATUS.mask("busy")
    y, _ = prog.decode(got)
    np.testing.assert_array_equal(y, golden_forward(img, x).outputs[0])


@pytest.mark.parametrize("acc_bits,w_frac", [(20, 0), (40, 30), (32, 15)])
def test_accumulator_width_wraps_like_golden(acc_bits, w_frac):
    # Large products overflow a 20-bit accumulator (wrap-around); w_frac 0 and 30 are the ends.
    rng = np.random.default_rng(acc_bits)
    codes = (rng.integers(1, 16, (7, 9)) * (rng.random((7, 9)) < 0.7)).astype(np.uint8)
    cb = np.concatenate([[0], rng.integers(-32768, 32768, 15)]).astype(np.int16)
    bias = rng.integers(-32768, 32768, 7).astype(np.int16)
    l0 = QuantLayer(codes=codes, codebook=cb, w_frac=w_frac, bias=bias, relu=True)
    l1 = QuantLayer(codes=np.zeros((3, 7), dtype=np.uint8), codebook=cb, w_frac=w_frac,
                    bias=bias[:3], relu=False)          # an empty layer: only the bias
    img = build_image([l0, l1], 2, acc_bits=acc_bits)
    x = np.stack([rng.integers(-32768, 32768, 9), np.zeros(9, int)]).astype(np.int16)
    r, g = check_run(img, x, EIEConfig.for_image(img, fifo_depth=2))
    assert np.any(g.layer_outputs[0] != 0)


def test_driver_rejects_bad_inputs():
    from eie.common.errors import EieError

    rng = np.random.default_rng(3)
    img = build_image([rand_layer(rng, 4, 5, 0.5, False, False)], 2)
    cfg = EIEConfig.for_image(img)
    with pytest.raises(EieError, match="shape"):
        run_image_amaranth(cfg, img, np.zeros((1, 6), dtype=np.int16))
    with pytest.raises(EieError, match="int16"):
        run_image_amaranth(cfg, img, np.full((1, 5), 40000))
    with pytest.raises(EieError, match="for 2 PEs but the accelerator has 3"):
        run_image_amaranth(EIEConfig(n_pe=3), img, np.zeros((1, 5), dtype=np.int16))


def test_read_latency_is_fixed_for_every_region(simulate):
    """r_ack comes READ_LATENCY cycles after r_stb for registers, memories and activations
    alike (the bus contract: one fixed latency a slave), and the answer belongs to the address
    of the r_stb cycle even when the address lines change right after it."""
    from eie.hw.eie.memory_map import READ_LATENCY
    from eie.hw.eie.top import EIETop
    from eie.sim.bus_driver import AmaranthBus

    rng = np.random.default_rng(11)
    img = build_image([rand_layer(rng, 9, 5, 0.6, True, True)], 3)
    cfg = EIEConfig.for_image(img, fifo_depth=2)
    mm = MemoryMap(cfg)
    dut = EIETop(cfg)
    acts = {(k, b, i): int(v) for k in range(3) for b in range(2) for i in range(cfg.act_depth)
            for v in [rng.integers(-32768, 32768)]}
    ptrs = {k: int(rng.integers(0, 1 << cfg.ptr_bits)) for k in range(3)}
    seen = []

    async def bench(ctx):
        bus = AmaranthBus(ctx, dut.bus)
        for (k, b, i), v in acts.items():
            await bus.write(mm.act(k, b, i), v & 0xFFFF)
        for k, v in ptrs.items():
            await bus.write(mm.ptr(k, 1), v)
        await bus.write(mm.reg("N_LAYERS"), 1)
        reads = [(mm.act(k, b, i), v & 0xFFFFFFFF) for (k, b, i), v in acts.items()]
        reads += [(mm.ptr(k, 1), v) for k, v in ptrs.items()]
        reads += [(mm.reg("ID"), EIE_ID), (mm.reg("N_LAYERS"), 1)]
        for addr, want in [reads[j] for j in rng.permutation(len(reads))]:
            ctx.set(dut.bus.addr, addr)
            ctx.set(dut.bus.r_stb, 1)
            await ctx.tick()
            ctx.set(dut.bus.r_stb, 0)
            for cyc in range(1, READ_LATENCY + 3):
                ctx.set(dut.bus.addr, int(rng.integers(0, 1 << mm.addr_width)))
                if ctx.get(dut.bus.r_ack):
                    seen.append((addr, cyc, ctx.get(dut.bus.r_data), want))
                await ctx.tick()

    simulate(dut, bench)
    assert len(seen) == len(acts) + len(ptrs) + 2                  # one r_ack per read
    for addr, cyc, got, want in seen:
        assert cyc == READ_LATENCY, hex(addr)
        # host-written inputs read back as raw int16 (the identity write-back), sign-extended
        assert got == want, (hex(addr), got, want)


def test_busy_and_done_pins_follow_a_start_a_cycle_late(simulate):
    """The timing docs/eie-hardware.md ("The host's view") and eie.json state for a host that
    watches the pins: in the cycle after the one whose clock edge takes the CTRL write (``w_stb``
    high), ``busy`` is still 0 and ``done`` still holds the previous run's 1; from the next
    ``busy`` is 1 and ``done`` 0, until the run ends: ``busy`` falls and ``done`` rises in the
    same cycle, and STATUS read over the bus says the same."""
    from eie.hw.eie.host_program import HostProgram, execute

    cfg, mm, dut = _small_top(12)
    rng = np.random.default_rng(12)
    img = build_image([rand_layer(rng, 4, 4, 0.5, False, False)], 1)
    prog = HostProgram(cfg, img)
    x = rand_input(rng, 1, 4, 1.0)[0]
    seen = {}

    async def bench(ctx):
        bus = _bus(ctx, dut)
        await execute(bus, prog.load() + prog.run(x))          # a first run: done is 1
        seen["before"] = (ctx.get(dut.busy), ctx.get(dut.done))
        ctx.set(dut.bus.addr, mm.reg("CTRL"))
        ctx.set(dut.bus.w_data, 1)
        ctx.set(dut.bus.w_stb, 1)
        await ctx.tick()                                        # the edge that takes the write
        ctx.set(dut.bus.w_stb, 0)
        pins = []
        for _ in range(200):
            pins.append((ctx.get(dut.busy), ctx.get(dut.done)))
            if len(pins) > 3 and pins[-1] == (0, 1):
                break
            await ctx.tick()
        seen["pins"] = pins
        seen["status"] = await bus.read(mm.reg("STATUS"))

    simulate(dut, bench)
    pins = seen["pins"]
    assert seen["before"] == (0, 1)
    assert pins[0] == (0, 1) and pins[1] == (1, 0)
    assert pins[-1] == (0, 1) and set(pins[1:-1]) == {(1, 0)}
    assert seen["status"] & 0b11 == 0b10                       # not busy, done
