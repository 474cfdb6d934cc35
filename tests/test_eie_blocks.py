"""Unit tests of the PE's blocks on the Amaranth simulator: write-back rounding and saturation,
pointer banks at odd and even j, the entry stage across word and column boundaries, and the
accumulator's bypass on back-to-back updates of one row."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from eie.hw.eie.accum import Accumulator
from eie.hw.eie.config import EIEConfig
from eie.hw.eie.ptr_read import PtrRead
from eie.hw.eie.spmat_read import SpmatRead
from eie.hw.eie.memory_map import ACT_READ_LATENCY
from eie.hw.eie.writeback import WRITEBACK_LATENCY, Writeback
from eie.sw.fixedpoint import writeback as ref_writeback


def simulate(dut, bench, clock=True):
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("acc_bits", [32, 40])
def test_writeback_ties_saturation_relu(acc_bits):
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


def test_pointer_banks_odd_and_even_j():
    cfg = EIEConfig(n_pe=1, ptr_depth=16, spmat_depth=8, act_depth=16, acc_depth=16,
                    bias_depth=4, ptr_queue_depth=4)
    dut = PtrRead(cfg)
    ptrs = [0, 3, 3, 7, 8, 8, 8, 12, 20, 21, 25, 25, 30, 31, 40, 41]
    cols = [(base, j) for base in (0, 5) for j in range(9)]   # even and odd ptr_base, all j
    out = []

    async def bench(ctx):
        ctx.set(dut.host_mode, 1)
        for p, v in enumerate(ptrs):
            ctx.set(dut.h_w_en, 1)
            ctx.set(dut.h_w_addr, p)
            ctx.set(dut.h_w_data, v)
            await ctx.tick()
        ctx.set(dut.h_w_en, 0)
        ctx.set(dut.host_mode, 0)
        for base, j in cols:
            ctx.set(dut.ptr_base, base)
            ctx.set(dut.col_valid, 1)
            ctx.set(dut.col_j, j)
            ctx.set(dut.col_a, 100 * base + j)
            while True:
                popped = ctx.get(dut.col_pop)
                ctx.set(dut.q_pop, ctx.get(dut.q_valid))
                if ctx.get(dut.q_valid):
                    q = ctx.get(dut.q)
                    out.append((q.start, q.end, q.a))
                await ctx.tick()
                if popped:
                    break
        ctx.set(dut.col_valid, 0)
        for _ in range(6):
            ctx.set(dut.q_pop, ctx.get(dut.q_valid))
            if ctx.get(dut.q_valid):
                q = ctx.get(dut.q)
                out.append((q.start, q.end, q.a))
            await ctx.tick()

    simulate(dut, bench)
    want = [(ptrs[b + j], ptrs[b + j + 1], 100 * b + j) for b, j in cols
            if ptrs[b + j + 1] != ptrs[b + j]]                  # empty columns are dropped
    assert out == want


def test_entry_stage_straddles_words_one_entry_per_cycle():
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
        ctx.set(dut.host_mode, 1)
        for w, v in enumerate(words):
            for half in (0, 1):
                ctx.set(dut.h_w_en, 1)
                ctx.set(dut.h_w_addr, 2 * w + half)
                ctx.set(dut.h_w_data, (v >> (32 * half)) & 0xFFFFFFFF)
                await ctx.tick()
        ctx.set(dut.h_w_en, 0)
        ctx.set(dut.host_mode, 0)
        ctx.set(dut.entry_base, entry_base)
        i = 0
        for cyc in range(40):
            if i < len(cols):
                s, e, a = cols[i]
                ctx.set(dut.q_valid, 1)
                ctx.set(dut.q, {"start": s, "end": e, "a": a})
            else:
                ctx.set(dut.q_valid, 0)
            if ctx.get(dut.spm_valid):
                ent = ctx.get(dut.spm_entry)
                trace.append((cyc, (ent.z << 4) | ent.code, ctx.get(dut.spm_first),
                              ctx.get(dut.spm_a)))
            if ctx.get(dut.q_pop):
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


def test_accumulator_bypass_back_to_back_rows():
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
        ctx.set(dut.src_bank, 0)
        ctx.set(dut.src_bias_base, 0)
        ctx.set(dut.src_has_bias, 1)
        ctx.set(dut.src_w_frac, w_frac)
        ctx.set(dut.rd_en, 1)
        rows = []
        for t in range(8 + ACT_READ_LATENCY):
            ctx.set(dut.rd_addr, t % 8)
            await ctx.tick()
            if t + 1 >= ACT_READ_LATENCY:
                rows.append(ctx.get(dut.rd_data))
        ctx.set(dut.rd_en, 0)
        return rows[:8]

    async def bench(ctx):
        ctx.set(dut.host_mode, 1)
        for s, b in enumerate(bias):
            ctx.set(dut.h_bias_w_en, 1)
            ctx.set(dut.h_w_addr, s)
            ctx.set(dut.h_w_data, b & 0xFFFF)
            await ctx.tick()
        ctx.set(dut.h_bias_w_en, 0)
        ctx.set(dut.host_mode, 0)
        for layer in range(2):          # twice: layer_start must clear what the first left
            ctx.set(dut.src_bank, 1)    # destination: bank 0
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
