"""Unit tests of the EIE's blocks on the Amaranth simulator, each against a plain Python
reference: write-back rounding and saturation, pointer banks at odd and even j, the entry stage
across word and column boundaries, the accumulator's bypass on back-to-back updates of one row,
the row/weight/product stages (Arith), and the central control unit (CCU) with a model of the PE
array around it."""

from types import SimpleNamespace

import numpy as np
import pytest

from eie.hw.eie.accum import Accumulator
from eie.hw.eie.act_fifo import ActFifo
from eie.hw.eie.config import EIEConfig
from eie.hw.eie.ptr_read import PtrRead
from eie.hw.eie.spmat_read import SpmatRead
from eie.hw.eie.memory_map import pointer_words
from eie.hw.eie.memory_map import (ACT_READ_LATENCY, BCAST_IN_FLIGHT, CONFIG0, CONFIG1, CTRL,
                                   Region)
from eie.hw.eie.writeback import WRITEBACK_LATENCY, Writeback
from eie.sw.fixedpoint import writeback as ref_writeback


@pytest.mark.parametrize("acc_bits", [32, 40])
def test_writeback_ties_saturation_relu(acc_bits, simulate):
    rng = np.random.default_rng(acc_bits)
    dut = Writeback(acc_bits)
    cases = []
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    for w in (0, 1, 2, 7, 15, 16, 30):
        half = (1 << w) >> 1
        ties = [(2 * k + 1) * half for k in range(-4, 4)] if w else []
        edges = [lo, hi, 0, -1, 1, (32767 << w), (32767 << w) + half, (-32768 << w) - half - 1,
                 (-32768 << w), (32768 << w)]
        rand = list(rng.integers(lo, hi, 20, dtype=np.int64))
        for v in ties + edges + rand:
            v = int(v)
            if lo <= v <= hi:
                for relu in (0, 1):
                    cases.append((v, w, relu))
    got = []
    stalls = rng.random(len(cases) + WRITEBACK_LATENCY) < 0.3

    async def bench(ctx):
        # One case a cycle into the pipeline, with cycles of en = 0 (garbage inputs) between:
        # after the tick that takes case k, y shows case k - WRITEBACK_LATENCY + 1 (it entered
        # WRITEBACK_LATENCY advancing ticks earlier); while en = 0 it holds.
        accepted = 0
        feed = cases + [(0, 0, 0)] * (WRITEBACK_LATENCY - 1)
        i = 0
        held = None
        while i < len(feed):
            en = not stalls[i] or accepted < 1
            v, w, relu = feed[i] if en else (int(rng.integers(lo, hi)), 3, 1)
            ctx.set(dut.en, en)
            ctx.set(dut.acc, v)
            ctx.set(dut.w_frac, w)
            ctx.set(dut.relu, relu)
            await ctx.tick()
            y = ctx.get(dut.y)
            assert ctx.get(dut.nz) == (y != 0)                  # the flag the LNZD reads
            if en:
                accepted += 1
                i += 1
                if accepted >= WRITEBACK_LATENCY:
                    got.append(y)
            else:
                assert held is None or y == held                # a stalled pipeline holds
            held = y
            stalls[i - 1 if en else i] = False                   # each slot stalls at most once

    simulate(dut, bench)
    want = [int(ref_writeback(np.array([v], dtype=np.int64), w, bool(r))[0]) for v, w, r in cases]
    assert got == want
    assert 32767 in got and -32768 in got                    # both saturation ends exercised
    assert 0 in got                                          # and a zero (nz low)


def test_pointer_banks_odd_and_even_j(simulate):
    cfg = EIEConfig(n_pe=1, ptr_depth=16, spmat_depth=8, act_depth=16, acc_depth=16,
                    bias_depth=4, ptr_queue_depth=4)
    dut = PtrRead(cfg)
    ptrs = [0, 3, 3, 7, 8, 8, 8, 12, 20, 21, 25, 25, 30, 31, 40, 41]
    cols = [(base, j) for base in (0, 5) for j in range(9)]   # even and odd ptr_base, all j
    entry_base = {0: 0, 5: 24}      # each layer's first entry: added to both pointers
    # the two layers' pointers overlap here (5 .. 9), so each layer's words (absolute addresses
    # and flags, as the host loads them) are written as it starts
    words = {b: pointer_words(cfg, [SimpleNamespace(n_in=9, ptr_base=b, entry_base=eb)], ptrs)
             for b, eb in entry_base.items()}
    out = []
    left = [0]                  # entries of the head column still to issue (0: a new head)

    def consume(ctx):
        """The entry stage's side of the queue, as ``SpmatRead`` takes it: one entry a cycle,
        the head popped with its last entry (the bypass relies on a fresh head finishing in
        its first cycle exactly when it is single)."""
        if not ctx.get(dut.q.valid):
            ctx.set(dut.q.ready, 0)
            return
        q = ctx.get(dut.q.payload)
        if left[0] == 0:
            out.append((q.start, q.end, q.a))
            assert q.single == (q.end - q.start == 1) and q.two == (q.end - q.start == 2)
            left[0] = q.end - q.start
        left[0] -= 1
        ctx.set(dut.q.ready, int(left[0] == 0))

    async def load(ctx, base):
        ctx.set(dut.host.mode, 1)
        for p, v in enumerate(words[base]):
            ctx.set(dut.host.w_en, 1)
            ctx.set(dut.host.w_addr, p)
            ctx.set(dut.host.w_data, v)
            await ctx.tick()
        ctx.set(dut.host.w_en, 0)
        ctx.set(dut.host.mode, 0)

    async def bench(ctx):
        await load(ctx, 0)
        # a column's value comes on col_a in the cycle after it is taken (as from the FIFO);
        # in any other cycle col_a holds a value no column has
        for base, j in cols:
            if base != ctx.get(dut.ptr_base):
                # a new layer: the stage drains (as a PE's does before a layer ends), then
                # its bases, a cycle ahead of its first column
                ctx.set(dut.col.valid, 0)
                for _ in range(100):
                    if ctx.get(dut.idle):
                        break
                    consume(ctx)
                    await ctx.tick()
                    ctx.set(dut.col_a, -1)
                assert ctx.get(dut.idle)
                await load(ctx, base)
                ctx.set(dut.ptr_base, base)
                consume(ctx)
                await ctx.tick()
            ctx.set(dut.col.valid, 1)
            ctx.set(dut.col.payload, {"j": j})
            while True:
                popped = ctx.get(dut.col.ready)
                consume(ctx)
                await ctx.tick()
                ctx.set(dut.col_a, 100 * base + j if popped else -1)
                if popped:
                    break
        ctx.set(dut.col.valid, 0)
        for _ in range(40):
            consume(ctx)
            await ctx.tick()
            ctx.set(dut.col_a, -1)

    simulate(dut, bench)
    want = [(entry_base[b] + ptrs[b + j], entry_base[b] + ptrs[b + j + 1], 100 * b + j)
            for b, j in cols
            if ptrs[b + j + 1] != ptrs[b + j]]                  # empty columns are dropped
    assert out == want


@pytest.mark.parametrize("depth", [1, 2, 8])
def test_act_fifo_bypass_and_order(simulate, depth):
    """An empty FIFO offers the arriving broadcast in its own cycle (taken, it is not stored);
    otherwise the head; nonzeros come out once each, in order, whatever the consumer does, each
    value on ``a`` in the cycle after its column (it arrives on ``bcast.a`` a cycle after its
    ``j``)."""
    cfg = EIEConfig(n_pe=1, fifo_depth=depth, ptr_depth=16, spmat_depth=8, act_depth=512,
                    acc_depth=16, bias_depth=4)      # j up to 511: every nonzero's own j
    dut = ActFifo(cfg)
    rng = np.random.default_rng(depth)
    ready = rng.random(400) < 0.5
    sent, got, bypassed = [], [], []

    async def bench(ctx):
        n = 0
        taken = None                # the j taken in the last cycle: its value shows now
        late = 0x7FFF               # bcast.a: the value of the last cycle's arrival, if any
        for t in range(400 + depth + 2):
            ctx.set(dut.bcast.a, late)
            if taken is not None:
                got.append((taken, ctx.get(dut.a)))
                taken = None
            level = ctx.get(dut.fifo.level)
            # never more arrivals than the FIFO can hold (the controller's job): send when room
            send = bool(rng.random() < 0.6) and level < depth and t < 360
            ctx.set(dut.bcast.valid, send)
            ctx.set(dut.bcast.j, n)
            take = bool(ready[t]) if t < 400 else True
            ctx.set(dut.o.ready, take)
            if ctx.get(dut.o.valid) and take:
                taken = ctx.get(dut.o.payload).j
                if send and level == 0:
                    bypassed.append(n)
                    assert taken == n                     # the arrival itself, this cycle
            if send and level == 0:
                assert ctx.get(dut.o.valid)               # offered in its own cycle
            late = 0x7FFF
            if send:
                sent.append((n, 1000 + n))
                late = 1000 + n
                n += 1
            await ctx.tick()
            if bypassed and bypassed[-1] == n - 1 and send:
                assert ctx.get(dut.fifo.level) == 0      # taken from the bypass: not stored

    simulate(dut, bench)
    assert got == sent
    assert bypassed                                      # the case happened


def test_entry_stage_straddles_words_one_entry_per_cycle(simulate):
    cfg = EIEConfig(n_pe=1, ptr_depth=16, spmat_depth=8, act_depth=16, acc_depth=16,
                    bias_depth=4)
    dut = SpmatRead(cfg)
    entries = np.arange(64, dtype=np.uint64) * 37 % 256         # distinct-ish bytes
    words = [int(sum(int(entries[8 * w + e]) << (8 * e) for e in range(8))) for w in range(8)]
    entry_base = 8
    # columns relative to entry_base: [5, 13) straddles words 1-2; then [13, 14), [14, 30)
    cols = [(5, 13, 11), (13, 14, -2), (14, 30, 7)]
    trace = []

    async def bench(ctx):
        ctx.set(dut.host.mode, 1)
        for w, v in enumerate(words):
            for half in (0, 1):
                ctx.set(dut.host.w_en, 1)
                ctx.set(dut.host.w_addr, 2 * w + half)
                ctx.set(dut.host.w_data, (v >> (32 * half)) & 0xFFFFFFFF)
                await ctx.tick()
        ctx.set(dut.host.w_en, 0)
        ctx.set(dut.host.mode, 0)
        i = 0
        for cyc in range(40):
            if i < len(cols):
                s, e, a = cols[i]
                ctx.set(dut.q.valid, 1)
                ctx.set(dut.q.payload, {"start": entry_base + s, "end": entry_base + e,
                                        "a": a,                          # as PtrRead pushes it
                                        "single": int(e - s == 1), "two": int(e - s == 2)})
            else:
                ctx.set(dut.q.valid, 0)
            if ctx.get(dut.spm_valid):
                ent = ctx.get(dut.spm_entry)
                trace.append((cyc, (ent.z << 4) | ent.code, ctx.get(dut.spm_first),
                              ctx.get(dut.spm_a)))
            if ctx.get(dut.q.ready):
                i += 1
            await ctx.tick()

    simulate(dut, bench)
    cycles = [c for c, *_ in trace]
    assert cycles == list(range(cycles[0], cycles[0] + 25))     # 25 entries, no bubble
    want = []
    for s, e, a in cols:
        for k in range(s, e):
            want.append((int(entries[entry_base + k]), int(k == s), a))
    assert [t[1:] for t in trace] == want


def test_accumulator_bypass_back_to_back_rows(simulate):
    cfg = EIEConfig(n_pe=1, ptr_depth=16, spmat_depth=8, act_depth=8, acc_depth=8,
                    bias_depth=8)
    dut = Accumulator(cfg)
    # (row, product): same row back to back (the bypass), one apart, and a fresh row.
    ups = [(3, 1000), (3, -7), (3, 5), (1, 2), (3, 40000), (1, -1), (6, 9), (6, 9), (6, 9)]
    bias = [10, -20, 30, -40, 50, -60, 70, -80]
    w_frac = 2
    got = []

    async def accumulate(ctx, seq):
        # mul_ stage in cycle t, acc_ stage in cycle t + 1 (as the Arith block drives them)
        seq = [None] + seq + [None]
        for t in range(len(seq)):
            nxt = seq[t + 1] if t + 1 < len(seq) else None
            cur = seq[t]
            ctx.set(dut.mul_valid, nxt is not None)
            ctx.set(dut.mul_row, nxt[0] if nxt else 0)
            ctx.set(dut.acc_valid, cur is not None)
            ctx.set(dut.acc_row, cur[0] if cur else 0)
            ctx.set(dut.acc_prod, cur[1] if cur else 0)
            await ctx.tick()

    async def read_rows(ctx):
        # the destination becomes the source: streamed through the bias and the write-back,
        # one row a cycle, each ACT_READ_LATENCY cycles after its address
        ctx.set(dut.src.bank, 0)
        ctx.set(dut.src.bias_base, 0)
        ctx.set(dut.src.has_bias, 1)
        ctx.set(dut.src.w_frac, w_frac)
        rows = []
        for t in range(8 + ACT_READ_LATENCY):
            ctx.set(dut.act.addr, t % 8)
            await ctx.tick()
            if t + 1 >= ACT_READ_LATENCY:
                rows.append(ctx.get(dut.act.data))
        return rows[:8]

    async def bench(ctx):
        ctx.set(dut.host.mode, 1)
        ctx.set(dut.host.w_region, Region.BIAS)
        for s, b in enumerate(bias):
            ctx.set(dut.host.w_en, 1)
            ctx.set(dut.host.w_addr, s)
            ctx.set(dut.host.w_data, b & 0xFFFF)
            await ctx.tick()
        ctx.set(dut.host.w_en, 0)
        ctx.set(dut.host.mode, 0)
        for layer in range(2):          # twice: layer_start must clear what the first left
            ctx.set(dut.src.bank, 1)    # destination: bank 0 (from the next cycle on)
            await ctx.tick()
            ctx.set(dut.layer_start, 1)
            await ctx.tick()
            ctx.set(dut.layer_start, 0)
            await accumulate(ctx, ups)
            got.append(await read_rows(ctx))

    simulate(dut, bench)
    acc = {r: bias[r] << w_frac for r in range(8)}
    for r, p in ups:
        acc[r] += p
    want = [int(ref_writeback(np.array([acc[r]]), w_frac, False)[0]) for r in range(8)]
    assert got == [want, want]


# ----------------------------------------------------------------------------- Arith

@pytest.mark.parametrize("acc_depth", [8, 64])
def test_arith_rows_weights_products(simulate, acc_depth):
    """Row from the relative index (the first entry of a column on row z, every later one on
    previous + z + 1, modulo the row counter's width), weight codebook[code] (of the layer
    ``layer_idx`` selects, as the codebook writes left it), product a * w:
    the row one cycle after the entry (mul_), row and product two cycles after (acc_); cycles
    without an entry keep the row count and show nothing."""
    from eie.hw.eie.arith import Arith

    cfg = EIEConfig(n_pe=1, ptr_depth=16, spmat_depth=8, act_depth=acc_depth,
                    acc_depth=acc_depth, bias_depth=8, max_layers=2)
    dut = Arith(cfg)
    rbits = max(1, (acc_depth - 1).bit_length())
    rng = np.random.default_rng(acc_depth)
    codebook = [0] + [int(v) for v in rng.integers(-32768, 32768, 15)]
    codebook[5], codebook[6] = -32768, 32767                  # the extremes of both operands
    entries = []                                               # (first, z, code, a) or None
    for col in range(40):
        for k in range(int(rng.integers(1, 6))):
            a = int(rng.choice([-32768, 32767, int(rng.integers(-32768, 32768))]))
            entries.append((k == 0, int(rng.integers(0, 16)), int(rng.integers(0, 16)), a))
            if rng.random() < 0.3:
                entries.append(None)                           # a bubble inside a column
    # the reference, in plain Python
    want, row = [], 0
    for e in entries:
        if e is None:
            want.append(None)
            continue
        first, z, code, a = e
        row = (z if first else row + z + 1) % (1 << rbits)
        want.append((row, a * codebook[code]))
    mul, acc, idle = [], [], []

    other = [int(v) for v in rng.integers(-32768, 32768, 16)]  # another layer's codebook

    async def bench(ctx):
        # the codebook writes (layer 1 the one used, layer 0 another), then the entries with
        # layer_idx 1; garbage on the write lines with cbk_w_en low must write nothing
        for layer, cb in ((0, other), (1, codebook)):
            for c, w in enumerate(cb):
                ctx.set(dut.cbk_w_en, 1)
                ctx.set(dut.cbk_w_addr, 16 * layer + c)
                ctx.set(dut.cbk_w_data, w)
                await ctx.tick()
                ctx.set(dut.cbk_w_en, 0)
                ctx.set(dut.cbk_w_addr, 16 + (c + 1) % 16)
                ctx.set(dut.cbk_w_data, -1)
        ctx.set(dut.layer_idx, 1)
        for e in entries + [None, None, None]:
            ctx.set(dut.spm_valid, e is not None)
            if e is not None:
                first, z, code, a = e
                ctx.set(dut.spm_first, first)
                ctx.set(dut.spm_entry, {"z": z, "code": code})
                ctx.set(dut.spm_a, a)
            else:       # garbage on the data lines: must change nothing
                ctx.set(dut.spm_first, 1)
                ctx.set(dut.spm_entry, {"z": 15, "code": 15})
                ctx.set(dut.spm_a, -1)
            await ctx.tick()
            mul.append(ctx.get(dut.mul_row) if ctx.get(dut.mul_valid) else None)
            acc.append((ctx.get(dut.acc_row), ctx.get(dut.acc_prod))
                       if ctx.get(dut.acc_valid) else None)
            idle.append(ctx.get(dut.idle))

    simulate(dut, bench)
    assert mul[:len(want)] == [w and w[0] for w in want]
    assert acc[1:len(want) + 1] == want
    assert idle == [m is None and a is None for m, a in zip(mul, acc)]
    assert idle[-1] and not all(idle)


# ----------------------------------------------------------------------------- CCU

def _ccu_harness(cfg, acts, activation_files):
    """The CCU with what a PE array shows it: per PE an activation file of two banks (``acts[b]``
    for bank ``b``), read through ACT_READ_LATENCY registers (as the PE's accumulator file
    does), and every PE's round slots."""
    from amaranth.hdl import Module

    from eie.hw.eie.ccu import CCU

    m = Module()
    ccu = m.submodules.ccu = CCU(cfg)
    activation_files(m, cfg.n_pe, acts, addr=ccu.act.addr, latency=ACT_READ_LATENCY,
                     bank=ccu.layer.src.bank, stale=0x1234, into=ccu.act)
    return m, ccu


FILL = BCAST_IN_FLIGHT + 1      # fill flags a PE shows the CCU


@pytest.mark.parametrize("n_pe,n_layers", [(1, 2), (3, 3), (4, 1)])
def test_ccu_sequences_layers_broadcasts_and_counters(simulate, activation_files, n_pe,
                                                     n_layers):
    """A run of ``n_layers`` layers (some FIFO's fill flags set every third cycle, PEs idle at
    random) against a plain Python reference: each layer broadcasts the nonzeros of its source
    bank (bank 0, 1, 0, ...) below its n_in, in increasing j, none decided while a PE's fill
    flag for the broadcasts in flight was set (the registered decision of
    ``eie.hw.eie.act_fifo``), a stall only then; the layer's descriptor is on the PE outputs
    while it broadcasts and the codebook writes passed on to the PEs hold its codebook at
    ``16 * layer.idx``, the previous layer's write-back
    parameters on ``layer.src``; the counters read back through the bus equal the cycles and
    broadcasts seen; a second run starts from nothing."""
    from eie.hw.eie.memory_map import (CODEBOOK_OFFSET, EIE_ID, LAYER_COUNTERS, LAYER_FIELDS,
                                       LAYER_STRIDE, REGS, MemoryMap)

    cfg = EIEConfig(n_pe=n_pe, ptr_depth=64, spmat_depth=16, act_depth=6, acc_depth=6,
                    bias_depth=16, max_layers=3, fifo_depth=2)
    mm = MemoryMap(cfg)
    rng = np.random.default_rng(10 * n_pe + n_layers)
    max_in = cfg.max_n_in
    acts = [rng.integers(-32768, 32768, max_in) * (rng.random(max_in) < 0.5) for _ in range(2)]
    for a in acts:
        a[:3] = [-32768, 32767, 1]         # at least three nonzeros: the FIFOs fill in between
    layers = []
    for l in range(cfg.max_layers):
        layers.append({
            "n_in": max_in if l == 0 else int(rng.integers(1, max_in + 1)),
            "n_out": int(rng.integers(1, 20)),
            "ptr_base": int(rng.integers(0, 64)), "entry_base": 8 * int(rng.integers(0, 16)),
            "bias_base": int(rng.integers(0, 16)), "w_frac": int(rng.integers(0, 31)),
            "relu": int(rng.integers(0, 2)), "has_bias": int(rng.integers(0, 2)),
            "codebook": [0] + [int(v) for v in rng.integers(-32768, 32768, 15)]})
    m, dut = _ccu_harness(cfg, acts, activation_files)
    runs = []
    pe_codebook = {}                # a PE's copy of the codebooks, from the CCU's writes

    async def write(ctx, off, data):
        ctx.set(dut.host.w_en, 1)
        ctx.set(dut.host.w_addr, off)
        ctx.set(dut.host.w_data, data & 0xFFFF_FFFF)
        # the top's decodes of the request (CTRL's start bit included)
        ctx.set(dut.start_w, off == REGS["CTRL"][0] and CTRL.unpack(data & 0xFFFF_FFFF)["start"])
        ctx.set(dut.tbl_w, mm.layer_base <= off < mm.global_span)
        await ctx.tick()
        ctx.set(dut.host.w_en, 0)
        ctx.set(dut.start_w, 0)
        ctx.set(dut.tbl_w, 0)
        if ctx.get(dut.layer.cbk_w_en):             # registered: the write just made
            pe_codebook[ctx.get(dut.layer.cbk_w_addr)] = ctx.get(dut.layer.cbk_w_data)

    async def read(ctx, off):
        ctx.set(dut.host.r_addr, off)
        await ctx.tick().repeat(2)
        return ctx.get(dut.host.r_data)

    async def bench(ctx):
        for l, d in enumerate(layers):
            base = mm.layer_base + LAYER_STRIDE * l
            flags = d["w_frac"] | (d["relu"] << 8) | (d["has_bias"] << 9)
            for f in ("n_in", "n_out", "ptr_base", "entry_base", "bias_base"):
                await write(ctx, base + LAYER_FIELDS[f][0], d[f])
            await write(ctx, base + LAYER_FIELDS["flags"][0], flags)
            for c, v in enumerate(d["codebook"]):
                await write(ctx, base + CODEBOOK_OFFSET + c, v)
        for n_run in (n_layers, 1):
            await write(ctx, REGS["N_LAYERS"][0], n_run)
            await write(ctx, REGS["CTRL"][0], 1)
            seen = {"layers": [], "stall_without_full": 0, "bcast_while_full": 0, "stalls": 0,
                    "in_flight_wrong": 0, "end_while_busy": 0}
            cur = None
            cycle = 0
            fills = [[0] * n_pe, [0] * n_pe]         # the fill flags set 2 and 1 cycles ago
            valids = [0, 0]                          # bcast.valid 2 and 1 cycles ago
            while True:
                # some FIFO filling every third cycle (any of its fill[i] flags): a pending
                # broadcast must wait when the flag of its in-flight count is set
                fill = ([int(v) for v in rng.integers(0, 1 << FILL, n_pe)] if cycle % 3 == 1
                        else [0] * n_pe)
                for k in range(n_pe):
                    ctx.set(dut.bcast.fill[k], fill[k])
                # what the CCU decided the broadcast or stall now showing with: the fill flags
                # of 2 cycles ago, at bit "broadcasts of the 2 cycles before"
                in_flight = valids[0] + valids[1]
                blocked = any((f >> in_flight) & 1 for f in fills[0])
                valid = ctx.get(dut.bcast.valid)
                if valids[1]:                    # the value of last cycle's broadcast, now
                    cur["bcast"][-1][1] = ctx.get(dut.bcast.a)
                idle = int(rng.random() < 0.4)
                ctx.set(dut.idle_all, idle)
                layer, src = dut.layer, dut.layer.src
                if ctx.get(layer.start):
                    cur = {"start": cycle, "bcast": [], "idx": ctx.get(layer.idx)}
                if valid:
                    seen["bcast_while_full"] += blocked
                    idx = ctx.get(layer.idx)     # what a PE's copy holds for the layer
                    cb = [pe_codebook.get(16 * idx + i) for i in range(16)]
                    cur["bcast"].append([ctx.get(dut.bcast.j), None])
                    cur.setdefault("during", set()).add((
                        ctx.get(layer.ptr_base), tuple(cb),
                        ctx.get(src.bank), ctx.get(src.w_frac), ctx.get(src.relu),
                        ctx.get(src.has_bias), ctx.get(src.bias_base)))
                if ctx.get(dut.bcast.stall):
                    seen["stalls"] += 1
                    seen["stall_without_full"] += not blocked
                    seen["in_flight_wrong"] += ctx.get(dut.bcast.in_flight) != in_flight
                if ctx.get(layer.cbk_w_en):       # a PE's copy takes the write
                    pe_codebook[ctx.get(layer.cbk_w_addr)] = ctx.get(layer.cbk_w_data)
                fills = [fills[1], fill]
                valids = [valids[1], valid]
                if ctx.get(layer.end):
                    # only with every PE idle and no broadcast arriving now or a cycle ago
                    seen["end_while_busy"] += not idle or valids[0] or valids[1]
                    cur["cycles"] = cycle - cur["start"] + 1
                    seen["layers"].append(cur)
                    if len(seen["layers"]) == n_run:
                        await ctx.tick()
                        if valid:                # the last broadcast's value
                            cur["bcast"][-1][1] = ctx.get(dut.bcast.a)
                        break
                await ctx.tick()
                cycle += 1
            for k in range(n_pe):
                ctx.set(dut.bcast.fill[k], 0)
            seen["busy_after"] = ctx.get(dut.busy)
            seen["status"] = await read(ctx, REGS["STATUS"][0])
            seen["run_cycles"] = await read(ctx, REGS["CYCLES"][0])
            seen["id"] = await read(ctx, REGS["ID"][0])
            # the rest of the register block, the write-only CTRL and the unmapped words next
            # to it (8..15: the block's offsets with bit 3 set) read 0
            seen["regs"] = [await read(ctx, off) for off in
                            (REGS["N_LAYERS"][0], REGS["CONFIG0"][0], REGS["CONFIG1"][0],
                             REGS["CTRL"][0], 7, 8 + REGS["ID"][0], 8 + REGS["CYCLES"][0],
                             8 + REGS["STATUS"][0])]
            seen["counters"] = [
                [await read(ctx, mm.counter_base + len(LAYER_COUNTERS) * l + i)
                 for i in range(len(LAYER_COUNTERS))] for l in range(n_run)]
            runs.append(seen)

    simulate(m, bench)
    for seen, n_run in zip(runs, (n_layers, 1)):
        assert seen["bcast_while_full"] == 0 and seen["stall_without_full"] == 0
        assert seen["in_flight_wrong"] == 0 and seen["end_while_busy"] == 0
        assert [L["idx"] for L in seen["layers"]] == list(range(n_run))
        for l, L in enumerate(seen["layers"]):
            d, bank = layers[l], l % 2
            want = [[j, int(acts[bank][j])] for j in range(d["n_in"]) if acts[bank][j]]
            assert L["bcast"] == want, f"layer {l}"
            prev = layers[l - 1] if l else {"w_frac": 0, "relu": 0, "has_bias": 0}
            if want:
                (ptr, cb, src_bank, w_frac, relu, has_bias, bias_base), = L["during"]
                assert (ptr, list(cb)) == (d["ptr_base"], d["codebook"])
                assert (src_bank, w_frac, relu, has_bias) == \
                    (bank, prev["w_frac"], prev["relu"], prev["has_bias"])
                if l:
                    assert bias_base == prev["bias_base"]
        assert seen["counters"] == [[L["cycles"], len(L["bcast"])] for L in seen["layers"]]
        assert seen["run_cycles"] == sum(L["cycles"] for L in seen["layers"])
        # not busy, done, the result in bank n_run % 2, no error
        assert seen["busy_after"] == 0 and seen["status"] == 0b10 | ((n_run % 2) << 2)
        assert seen["id"] == EIE_ID
        assert seen["regs"] == [n_run, CONFIG0.pack(n_pe=n_pe, fifo_depth=cfg.fifo_depth),
                                CONFIG1.pack(max_layers=cfg.max_layers, acc_bits=cfg.acc_bits,
                                             act_frac=cfg.act_frac), 0, 0, 0, 0, 0]
    assert runs[0]["stalls"] > 0
