"""BNN gateware in the Amaranth simulator: popcount tree, threshold unit, one folded layer (MVTU)
against a plain Python reference, streaming network with random back-pressure, and the
bus-mapped top driven by the host program."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from eie.hw.bnn.host_program import load_ops
from eie.hw.bnn.memory_map import BnnMemoryMap
from eie.hw.bnn.network import BnnNetwork
from eie.hw.bnn.popcount import PopCount
from eie.hw.bnn.threshold import AccThreshold
from eie.hw.bnn.top import BnnTop
from eie.sim.bnn_run import BnnJob, run_amaranth
from eie.sim.bus_driver import AmaranthBus
from eie.sw.bnn.compile import compile_model
from eie.sw.bnn.float_model import float_forward, random_model
from eie.hw.bnn.folding import LayerFold, make_folding
from eie.sw.bnn.golden import golden_forward
from eie.sw.bnn.image import random_image


# --- popcount -----------------------------------------------------------------------------

@pytest.mark.parametrize("width, lps", [(1, 2), (2, 1), (7, 2), (13, 1), (32, 2), (64, 3), (70, 2)])
def test_popcount_tree(width, lps, simulate):
    """One vector a cycle in; each count appears `latency` cycles later; stalls hold it."""
    dut = PopCount(width, levels_per_stage=lps)
    levels = (width - 1).bit_length()
    assert dut.latency == -(-levels // lps)
    rng = random.Random(width * 10 + lps)
    vectors = [rng.getrandbits(width) for _ in range(60)] + [(1 << width) - 1, 0]
    seen = []

    async def bench(ctx):
        pipe = []  # vectors in flight, oldest first
        for v in vectors + [0] * (dut.latency + 1):
            while True:  # hold each vector until an enabled cycle takes it
                en = rng.random() < 0.8
                ctx.set(dut.i, v)
                ctx.set(dut.en, en)
                if dut.latency == 0:
                    seen.append((ctx.get(dut.o), bin(v).count("1")))
                elif len(pipe) == dut.latency:
                    seen.append((ctx.get(dut.o), bin(pipe[0]).count("1")))
                if en:
                    pipe.append(v)
                    if len(pipe) > dut.latency:
                        pipe.pop(0)
                if dut.latency:
                    await ctx.tick()
                else:
                    await ctx.delay(1e-8)
                if en:
                    break

    simulate(dut, bench, vcd="popcount")
    assert len(seen) > 40
    assert all(got == want for got, want in seen), [s for s in seen if s[0] != s[1]][:5]
    assert any(want == width for _, want in seen)


# --- accumulate and threshold -------------------------------------------------------------

@pytest.mark.parametrize("hidden", [True, False])
def test_acc_threshold(hidden, simulate):
    """Partial counts over `sf` folds sum to matches; hidden: matches >= T; output: 2m - K."""
    pe, simd, sf = 3, 5, 4
    n_in = simd * sf - 2
    dut = AccThreshold(pe, n_in, simd.bit_length(), hidden=hidden)
    rng = np.random.default_rng(1 if hidden else 2)
    cases = []
    for _ in range(25):
        counts = rng.integers(0, simd + 1, size=(sf, pe))
        counts[-1] = np.minimum(counts[-1], simd - 2)  # the last fold has 3 real lanes
        m = counts.sum(axis=0)
        thr = np.clip(m + rng.integers(-1, 2, size=pe), 0, n_in + 1)  # thresholds at m-1, m, m+1
        cases.append((counts, thr, m))
    got = []

    async def bench(ctx):
        ctx.set(dut.en, 1)
        for counts, thr, _ in cases:
            for s in range(sf):
                ctx.set(dut.i_valid, 1)
                ctx.set(dut.i_first, s == 0)
                ctx.set(dut.i_last, s == sf - 1)
                for p in range(pe):
                    ctx.set(dut.i_count[p], int(counts[s, p]))
                    if hidden:
                        ctx.set(dut.i_thr[p], int(thr[p]))
                await ctx.tick()
                if s == 0:
                    # a stalled cycle in the middle changes nothing
                    ctx.set(dut.en, 0)
                    ctx.set(dut.i_count[0], 7)
                    await ctx.tick()
                    ctx.set(dut.en, 1)
                    ctx.set(dut.i_count[0], int(counts[s, 0]))
                    ctx.set(dut.i_valid, 0)
                    await ctx.tick()
            assert ctx.get(dut.o_valid)
            if hidden:
                got.append([(ctx.get(dut.o_bits) >> p) & 1 for p in range(pe)])
            else:
                got.append([ctx.get(dut.o_dots[p]) for p in range(pe)])
            ctx.set(dut.i_valid, 0)
            await ctx.tick()
            assert not ctx.get(dut.o_valid)

    simulate(dut, bench, vcd="acc_threshold")
    for (counts, thr, m), g in zip(cases, got):
        want = (m >= thr).astype(int).tolist() if hidden else (2 * m - n_in).tolist()
        assert g == want
    if hidden:
        assert any(any(g) for g in got) and any(not all(g) for g in got)


# --- the streaming network ----------------------------------------------------------------

NETWORKS = [
    ([13, 7, 5, 3], "4:3,3:2,5:2"),        # nothing divides
    ([16, 8, 4], "16:8,4:4"),               # II 1 everywhere
    ([20, 9, 10], "32:16,1:1"),             # SIMD and PE padded beyond the layer
    ([70, 33, 2], "64:5,33:2"),             # wide SIMD, 2 synapse folds
]


@pytest.mark.parametrize("shape, fold", NETWORKS)
def test_network_random_backpressure(shape, fold, simulate):
    """Samples streamed back to back, random ready on the output: equal to golden, in order."""
    rng = np.random.default_rng(sum(shape))
    folds = make_folding(shape, fold)
    image = random_image(folds, rng)
    x = rng.integers(0, 2, size=(24, shape[0]), dtype=np.uint8)
    want = golden_forward(image, x)
    dut = BnnNetwork(folds, image=image)
    got = []
    prng = random.Random(3)

    async def source(ctx):
        for row in x:
            ctx.set(dut.i.payload, int("".join(str(b) for b in row[::-1]), 2))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        await _pull(ctx, dut.o, got, len(x), prng, 0.5, lambda v: [int(b) for b in v])

    simulate(dut, source, sink, vcd="network")
    assert np.array_equal(np.array(got), want)
    assert len(set(map(tuple, want.tolist()))) > 1, "degenerate test: all outputs equal"


def test_network_full_throughput(simulate):
    """Always-ready output: one result every max(nf*sf) cycles, no bubbles."""
    folds = make_folding([40, 9, 5, 3], "7:4,3:2,2:3")
    image = random_image(folds, np.random.default_rng(0))
    dut = BnnNetwork(folds, image=image)
    n = 10
    times = []

    async def source(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 0x5A5A5A5A5A)
        for _ in range(n):
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(times) < n:
            if ctx.get(dut.o.valid):
                times.append(cycle)
            await ctx.tick()
            cycle += 1

    simulate(dut, source, sink, vcd="throughput")
    assert np.diff(times).tolist() == [max(f.ii for f in folds)] * (n - 1)  # 18


# --- the bus-mapped top -------------------------------------------------------------------

@pytest.mark.rtl
def test_top_float_model_end_to_end():
    """Float model -> compile -> load through the bus -> stream: equals float and golden."""
    rng = np.random.default_rng(11)
    shape = [37, 19, 11, 5]
    model = random_model(shape, rng)
    image = compile_model(model, "8:5,6:4,11:2")
    x = rng.integers(0, 2, size=(15, shape[0]), dtype=np.uint8)
    other = random_image(image.folds, rng)
    jobs = [BnnJob(image, x), BnnJob(other, x, preload=False, backpressure=0.8, max_gap=80,
                                     seed=1)]
    run_amaranth(image.folds, jobs, in_depth=3, out_depth=2)
    assert np.array_equal(jobs[0].y, float_forward(model, x))
    assert np.array_equal(jobs[1].y, golden_forward(other, x))
    ii = max(f.ii for f in image.folds)
    c = jobs[0].counters
    assert c["samples_in"] == c["samples_out"] == 15
    assert c["ii_min"] == ii
    assert jobs[1].counters["stall"] > 0, "back-pressure never reached the network"
    assert jobs[1].counters["layer_stall"][-1] > 0      # ... and held the last layer
    assert jobs[0].counters["layer_stall"] == [0, 0, 0]  # layer 0 is the bottleneck


@pytest.mark.rtl
def test_top_baked_weights_then_reload():
    """Weights baked in run without loading; a reload through the bus replaces them."""
    rng = np.random.default_rng(12)
    folds = make_folding([33, 6, 4], "33:2,6:3")  # 33-bit words: two bus chunks
    a, b = random_image(folds, rng), random_image(folds, rng)
    x = rng.integers(0, 2, size=(8, 33), dtype=np.uint8)
    jobs = [BnnJob(a, x, load=False), BnnJob(b, x), BnnJob(b, x, load=False)]
    run_amaranth(folds, jobs, bake=a)
    assert np.array_equal(jobs[0].y, golden_forward(a, x))
    assert np.array_equal(jobs[1].y, golden_forward(b, x))
    assert np.array_equal(jobs[2].y, golden_forward(b, x))
    assert not np.array_equal(jobs[0].y, jobs[1].y)


@pytest.mark.rtl
def test_top_registers_and_unmapped_writes(simulate):
    """ID/config registers; writes to unmapped memory addresses change nothing."""
    from eie.hw.bnn import host_program as hp
    folds = make_folding([10, 3, 2], "3:2,2:2")
    image = random_image(folds, np.random.default_rng(5))
    top = BnnTop(folds, image=image)
    mm = top.memory_map
    x = np.random.default_rng(6).integers(0, 2, size=(5, 10), dtype=np.uint8)
    out = {}

    async def bench(ctx):
        bus = AmaranthBus(ctx, top.bus)
        out["id"] = await bus.read(mm.reg("ID"))
        out["cfg"] = [await bus.read(mm.reg(k)) for k in
                      ("N_IN", "N_CLASSES", "N_LAYERS", "II_ANALYTIC", "IN_DEPTH", "OUT_DEPTH")]
        out["unmapped"] = await bus.read(7)
        # entry beyond the depth, PE beyond the count, thresholds of the output layer
        for layer, kind, pe, entry in ((0, 0, 0, 8), (0, 0, 1, 7), (1, 0, 1, 2), (1, 1, 0, 0)):
            addr = ((1 << mm.mem_bit) | (layer << mm.layer_shift) | (kind << mm.kind_shift)
                    | (pe << mm.pe_shift) | (entry << mm.entry_shift))
            if pe < folds[layer].pe and entry < mm.depth(layer, kind):
                continue
            await bus.write(addr, 0xFFFFFFFF)
        await hp.check_config(bus, mm)
        out["y"], out["c"] = await hp.run_samples(bus, mm, x)
        out["mem_read"] = await bus.read(mm.mem_addr(0, 0, 0, 0))

    simulate(top, bench, vcd="top_regs")
    assert out["id"] == 0x424E4E31
    assert out["cfg"] == [10, 2, 2, max(f.ii for f in folds), 4, 4]
    assert out["unmapped"] == 0 and out["mem_read"] == 0
    assert np.array_equal(out["y"], golden_forward(image, x))


def test_load_ops_cover_every_word_once():
    folds = make_folding([70, 9, 3], "35:4,9:2")
    image = random_image(folds, np.random.default_rng(0))
    mm = BnnMemoryMap(folds)
    ops = list(load_ops(mm, image))
    words = sum(f.pe * (f.nf * f.sf * -(-f.simd // 32) + (f.nf if l == 0 else 0))
                for l, f in enumerate(folds))
    assert len(ops) == words and len({a for a, _ in ops}) == words
    assert all(a >> mm.mem_bit == 1 for a, _ in ops)
    assert mm.to_json()["memory"]["layers"][0]["weights"]["chunks"] == 2


def test_load_ops_reject_other_folding():
    from eie.common.errors import EieError
    folds = make_folding([20, 6, 3], "5:2,3:3")
    image = random_image(make_folding([20, 6, 3], "4:2,3:3"), np.random.default_rng(0))
    with pytest.raises(EieError, match="does not match the core"):
        list(load_ops(BnnMemoryMap(folds), image))


def test_memory_map_fields_and_limits():
    """Field layout is consistent, JSON-able, and a folding needing > 32 address bits is refused."""
    import json as _json
    from eie.common.errors import EieError
    folds = make_folding([784, 64, 64, 64, 10], "64:32,32:64,64:32,8:16")
    mm = BnnMemoryMap(folds, in_depth=8, out_depth=8)
    assert mm.in_words == 25 and mm.out_words == 10
    assert mm.registers["STALL_L3"] == 35 and max(mm.registers.values()) < (1 << mm.mem_bit)
    seen = set()
    for l, f in enumerate(folds):
        for kind in (0, 1):
            for p in {0, f.pe - 1}:
                for e in {0, mm.depth(l, kind) - 1} if mm.depth(l, kind) else ():
                    for c in range(mm.chunks(l, kind)):
                        a = mm.mem_addr(l, kind, p, e, c)
                        assert a < (1 << mm.addr_width) and a not in seen
                        seen.add(a)
    assert _json.loads(mm.to_json_text())["memory"]["layers"][3]["thresholds"]["depth"] == 0
    with pytest.raises(EieError, match="needs a 3[3-9]-bit bus address, more than 32"):
        BnnMemoryMap([LayerFold(1 << 22, 1024, 1, 1), LayerFold(1024, 2, 1, 1)])
    with pytest.raises(EieError, match="input FIFO depth is 0"):
        BnnMemoryMap(folds, in_depth=0)


# --- MVTU: one folded layer ----------------------------------------------------------------

def _mvtu_reference(w, t, x):
    """Plain Python: matches of each neuron (XNOR, popcount); a hidden layer's bit is
    matches >= threshold, an output layer's value 2 * matches - n_in."""
    out = []
    for row in x:
        m = [sum(int(a == b) for a, b in zip(row, wk)) for wk in w]
        out.append([int(mk >= tk) for mk, tk in zip(m, t)] if t is not None
                   else [2 * mk - len(row) for mk in m])
    return out


def _mvtu_words(fold, w, t):
    """Per PE, the weight words (neuron nf_i * pe + p, inputs sf_i * simd + b at bit b) and
    the thresholds (word nf_i), padding 0: the layout of the image files, in plain Python."""
    def bit(k, j):
        return int(w[k][j]) if k < fold.n_out and j < fold.n_in else 0

    words = [[sum(bit(nf * fold.pe + p, sf * fold.simd + b) << b for b in range(fold.simd))
              for nf in range(fold.nf) for sf in range(fold.sf)] for p in range(fold.pe)]
    thr = None if t is None else [
        [int(t[nf * fold.pe + p]) if nf * fold.pe + p < fold.n_out else 0
         for nf in range(fold.nf)] for p in range(fold.pe)]
    return words, thr


def _mvtu_input_words(fold, row, rng):
    """A sample as ``sf`` words of ``simd`` bits, the padding lanes of the last one random."""
    words = []
    for s in range(fold.sf):
        lanes = [int(row[j]) if j < fold.n_in else int(rng.integers(0, 2))
                 for j in range(s * fold.simd, (s + 1) * fold.simd)]
        words.append(sum(b << i for i, b in enumerate(lanes)))
    return words


@pytest.mark.parametrize("n_in,n_out,simd,pe", [(23, 10, 5, 3), (9, 4, 9, 4), (17, 6, 1, 1)])
def test_mvtu_hidden_layer_loaded_through_the_port(simulate, n_in, n_out, simd, pe):
    """Weights and thresholds written through the ld_ port, samples streamed with random
    gaps, results read with random back-pressure: every output vector equals the reference,
    in order; the padding lanes of the last input word change nothing."""
    from eie.hw.bnn.mvtu import Mvtu

    fold = LayerFold(n_in, n_out, simd, pe)
    rng = np.random.default_rng(n_in * 7 + simd)
    w = rng.integers(0, 2, (n_out, n_in))
    x = rng.integers(0, 2, (14, n_in))
    m = np.array([[sum(int(a == b) for a, b in zip(row, wk)) for wk in w] for row in x])
    t = m[0] + rng.integers(-1, 2, n_out)              # thresholds at the edges of sample 0's
    t[0] = n_in + 1                                    # a neuron that never fires
    t = np.clip(t, 0, n_in + 1)
    words, thr = _mvtu_words(fold, w, t)
    want = _mvtu_reference(w.tolist(), t.tolist(), x.tolist())
    dut = Mvtu(fold, hidden=True)
    prng = random.Random(n_in)
    got, stalls = [], []

    async def source(ctx):
        for kind, mem in (("ld_w_en", words), ("ld_t_en", thr)):
            for p, values in enumerate(mem):
                for addr, v in enumerate(values):
                    ctx.set(getattr(dut, kind), 1)
                    ctx.set(dut.ld_pe, p)
                    ctx.set(dut.ld_addr, addr)
                    ctx.set(dut.ld_data, v)
                    await ctx.tick()
            ctx.set(getattr(dut, kind), 0)
        for row in x:
            for word in _mvtu_input_words(fold, row, rng):
                await _push(ctx, dut.i, word, prng)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        cycle = 0
        while len(got) < len(x):
            # ready low for stretches of two samples' work: the pipeline must hold
            ready = (cycle // (2 * fold.ii)) % 2 == 1 and prng.random() < 0.7
            cycle += 1
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                v = ctx.get(dut.o.payload)
                got.append([(v >> k) & 1 for k in range(n_out)])
            stalls.append(ctx.get(dut.stall))
            await ctx.tick()

    simulate(dut, source, sink, vcd="mvtu_hidden")
    assert got == want
    assert any(stalls), "the output never held the pipeline"
    assert {b for row in got for b in row} == {0, 1}


def test_mvtu_output_layer_dots_at_full_rate(simulate):
    """An output layer with baked weights, input always valid and output always ready: the
    signed dots equal the reference and a result leaves every nf * sf cycles, no bubble."""
    from eie.hw.bnn.mvtu import Mvtu

    fold = LayerFold(20, 5, 8, 2)                      # sf 3 (4 lanes padding), nf 3: II 9
    rng = np.random.default_rng(5)
    w = rng.integers(0, 2, (5, 20))
    x = rng.integers(0, 2, (8, 20))
    x[0] = w[0]                                        # dot +20 for neuron 0
    x[1] = 1 - w[1]                                    # dot -20 for neuron 1
    words, _ = _mvtu_words(fold, w, None)
    want = _mvtu_reference(w.tolist(), None, x.tolist())
    dut = Mvtu(fold, hidden=False, weight_init=words)
    got, times = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        feed = [word for row in x for word in _mvtu_input_words(fold, row, rng)]
        ctx.set(dut.i.valid, 1)
        cycle = 0
        while len(got) < len(x):
            if feed:
                ctx.set(dut.i.payload, feed[0])
            else:
                ctx.set(dut.i.valid, 0)
            if ctx.get(dut.o.valid):
                v = ctx.get(dut.o.payload)              # an ArrayLayout of signed dots
                got.append([v[k] for k in range(5)])
                times.append(cycle)
            if feed and ctx.get(dut.i.ready):
                feed.pop(0)
            await ctx.tick()
            cycle += 1

    simulate(dut, bench, vcd="mvtu_output")
    assert got == want
    assert got[0][0] == 20 and got[1][1] == -20
    assert np.diff(times).tolist() == [fold.nf * fold.sf] * (len(x) - 1)


# --- width converter (bus words / whole vectors -> SIMD words) -----------------------------

async def _push(ctx, port, word, rng):
    """Offer ``word`` on stream ``port`` after random idle cycles (valid low 30% of the time)
    and hold it until the sink takes it."""
    while rng.random() < 0.3:
        ctx.set(port.valid, 0)
        await ctx.tick()
    ctx.set(port.payload, word)
    ctx.set(port.valid, 1)
    await ctx.tick().until(port.ready)


async def _pull(ctx, port, got, n, rng, p_ready, convert=lambda v: v):
    """Take words from stream ``port`` into ``got`` until it holds ``n``, with ``ready`` high
    a random ``p_ready`` of the cycles."""
    while len(got) < n:
        ready = rng.random() < p_ready
        ctx.set(port.ready, ready)
        if ready and ctx.get(port.valid):
            got.append(convert(ctx.get(port.payload)))
        await ctx.tick()


def _pack(bits, width):
    """Frame bits -> little-endian words of `width` bits (padding 0)."""
    n = -(-len(bits) // width)
    return [sum(int(b) << i for i, b in enumerate(bits[w * width:(w + 1) * width])) for w in range(n)]


@pytest.mark.parametrize("n_bits, in_width, out_width", [
    (784, 32, 8),     # the TFC input from the bus, SIMD 8
    (40, 32, 64),     # two input words make one output word
    (70, 32, 7),      # nothing divides
    (100, 32, 33),
    (20, 8, 32),      # one output word a frame
    (64, 64, 8),      # whole vector in: serializer
    (13, 16, 4),      # serializer with padding on both sides
    (33, 33, 33),
])
def test_width_converter_random_handshakes(n_bits, in_width, out_width, simulate):
    """Frames in as in_width words with garbage in the padding, random valid/ready on both sides:
    out come the frame's bits as out_width words, padding 0; the gearbox's rate is the narrow side's."""
    from eie.hw.bnn.width_converter import WidthConverter
    dut = WidthConverter(n_bits, in_width, out_width)
    rng = random.Random(n_bits * 7 + in_width + out_width)
    frames = [[rng.getrandbits(1) for _ in range(n_bits)] for _ in range(6)]
    frames += [[1] * n_bits, [0] * n_bits]
    want = [w for f in frames for w in _pack(f, out_width)]
    got = []

    async def source(ctx):
        for f in frames:
            words = _pack(f, in_width)
            pad = in_width * len(words) - n_bits
            if pad:  # garbage above the frame's bits must not leak
                words[-1] |= ((1 << pad) - 1) << (in_width - pad)
            for w in words:
                await _push(ctx, dut.i, w, rng)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        await _pull(ctx, dut.o, got, len(want), rng, 0.7)
        ctx.set(dut.o.ready, 0)
        for _ in range(8):  # nothing more comes out
            assert not ctx.get(dut.o.valid)
            await ctx.tick()

    simulate(dut, source, sink, vcd="width_converter")
    assert dut.in_words == -(-n_bits // in_width) and dut.out_words == len(want) // len(frames)
    assert got == want


@pytest.mark.parametrize("n_bits, in_width, out_width", [(784, 32, 8), (784, 32, 64), (96, 32, 32)])
def test_width_converter_full_rate(n_bits, in_width, out_width, simulate):
    """Always valid, always ready: one word a cycle on the narrower side, no bubble between frames."""
    from eie.hw.bnn.width_converter import WidthConverter
    dut = WidthConverter(n_bits, in_width, out_width)
    n_frames = 3
    out_cycles, in_cycles = [], []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 1)
        for cycle in range(n_frames * (dut.in_words + dut.out_words) + 8):
            ctx.set(dut.i.payload, cycle & 0xFFFFFFFF)
            if len(in_cycles) >= n_frames * dut.in_words:
                ctx.set(dut.i.valid, 0)
            _, _, i_rdy, i_val, o_val = await ctx.tick().sample(
                dut.i.ready, dut.i.valid, dut.o.valid)
            if i_rdy and i_val:
                in_cycles.append(cycle)
            if o_val:
                out_cycles.append(cycle)

    simulate(dut, bench, vcd="width_converter_rate")
    assert len(out_cycles) == n_frames * dut.out_words
    if out_width <= in_width:   # output side is narrow: one output word every cycle
        assert np.diff(out_cycles).tolist() == [1] * (len(out_cycles) - 1)
    else:                       # input side is narrow: one input word every cycle
        assert np.diff(in_cycles).tolist() == [1] * (len(in_cycles) - 1)


# --- MVTU input buffer (double-buffered block RAM) -----------------------------------------

@pytest.mark.parametrize("sf, simd", [(1, 4), (3, 5), (98, 8), (4, 64)])
def test_input_buffer_double_buffering(sf, simd, simulate):
    """Samples written word by word at random; the reader walks each sample several times in
    random order with random pauses, then releases it: every read returns the written word, the
    writer fills the other bank meanwhile and never overwrites the bank being read."""
    from eie.hw.bnn.input_buffer import InputBuffer
    dut = InputBuffer(sf, simd)
    assert dut.depth >= 2 * sf
    rng = random.Random(sf * 100 + simd)
    samples = [[rng.getrandbits(simd) for _ in range(sf)] for _ in range(7)]
    reads, overlap = [], []
    written = [0]

    async def writer(ctx):
        for s in samples:
            for w in s:
                await _push(ctx, dut.i, w, rng)
            written[0] += 1
        ctx.set(dut.i.valid, 0)

    async def reader(ctx):
        for k, s in enumerate(samples):
            while not ctx.get(dut.valid):
                await ctx.tick()
            await ctx.tick()   # valid counts a last word written this cycle: read from the next
            for _ in range(2):
                order = list(range(sf))
                rng.shuffle(order)
                for idx in order:
                    ctx.set(dut.rd_en, 1)
                    ctx.set(dut.rd_index, idx)
                    await ctx.tick()
                    ctx.set(dut.rd_en, 0)
                    ctx.set(dut.rd_index, (idx + 1) % sf)   # rd_en low: the data holds
                    for _ in range(rng.randrange(3)):
                        await ctx.tick()
                    reads.append((k, idx, ctx.get(dut.rd_data)))
            overlap.append(written[0] > k + 1)   # the next sample was written meanwhile
            ctx.set(dut.release, 1)
            await ctx.tick()
            ctx.set(dut.release, 0)

    simulate(dut, writer, reader, vcd="input_buffer")
    assert len(reads) == 2 * sf * len(samples)
    assert all(data == samples[k][idx] for k, idx, data in reads), \
        [(k, idx, d, samples[k][idx]) for k, idx, d in reads if d != samples[k][idx]][:4]
    assert any(overlap), "the writer never ran ahead: double buffering untested"


def test_input_buffer_just_in_time_no_bubble(simulate):
    """A bank whose last word is written in the cycle the reader releases the other bank counts
    as valid at once (valid_other), so a reader that walks a sample in sf cycles and a writer that
    writes a word a cycle go on without a gap; the writer is held while both banks are full."""
    from eie.hw.bnn.input_buffer import InputBuffer
    sf = 4
    dut = InputBuffer(sf, 8)
    n = 6
    words = [[(17 * k + i) & 0xFF for i in range(sf)] for k in range(n)]
    starts, got = [], []

    async def writer(ctx):
        ctx.set(dut.i.valid, 1)
        for s in words:
            for w in s:
                ctx.set(dut.i.payload, w)
                await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def reader(ctx):
        cycle, active, idx, k = 0, False, 0, 0
        pending = None
        while k < n:
            if pending is not None:
                got.append((pending, ctx.get(dut.rd_data)))
                pending = None
            release = active and idx == sf - 1
            if active:
                ctx.set(dut.rd_en, 1)
                ctx.set(dut.rd_index, idx)
                pending = (k, idx)
                if idx == 0:
                    starts.append(cycle)
            else:
                ctx.set(dut.rd_en, 0)
            ctx.set(dut.release, release)
            nxt_active = (ctx.get(dut.valid_other) if release else
                          (active or ctx.get(dut.valid)))
            await ctx.tick()
            cycle += 1
            if release:
                k += 1
                idx = 0
            elif active:
                idx += 1
            active = nxt_active
        got.append((pending, ctx.get(dut.rd_data)))

    simulate(dut, writer, reader, vcd="input_buffer_jit")
    assert [d for (k, i), d in got] == [w for s in words for w in s]
    assert np.diff(starts).tolist() == [sf] * (n - 1)


@pytest.mark.rtl
def test_top_full_input_fifo_drops_whole_sample(simulate):
    """With RUN=0 and the one input slot taken, a second sample is dropped whole (all its words),
    ERRORS bit 0 is set, STATUS shows no free slot; the kept sample and a later one compute right."""
    from eie.hw.bnn import host_program as hp
    folds = make_folding([70, 6, 3], "8:2,3:3")   # 3 bus words a sample
    rng = np.random.default_rng(21)
    image = random_image(folds, rng)
    x = rng.integers(0, 2, size=(3, 70), dtype=np.uint8)
    while np.array_equal(golden_forward(image, x[1:2]), golden_forward(image, x[2:3])):
        x[2] = rng.integers(0, 2, size=70)    # the dropped sample's result must differ
    top = BnnTop(folds, image=image, in_depth=1, out_depth=2)
    mm = top.memory_map
    out = {}

    async def bench(ctx):
        bus = AmaranthBus(ctx, top.bus)
        await bus.write(mm.reg("CTRL"), 2)                    # CLEAR, RUN=0
        for row in x[:2]:
            for w in hp.sample_words(mm, row):
                await bus.write(mm.reg("IN_DATA"), w)
        out["status"] = await bus.read(mm.reg("STATUS"))
        out["errors"] = await bus.read(mm.reg("ERRORS"))
        await bus.write(mm.reg("CTRL"), 1)                    # RUN
        await bus.idle(200)
        out["status_after"] = await bus.read(mm.reg("STATUS"))
        for w in hp.sample_words(mm, x[2]):
            await bus.write(mm.reg("IN_DATA"), w)
        await bus.idle(200)
        out["y"] = [hp.decode_result([await bus.read(mm.reg("OUT_DATA")) for _ in range(3)])
                    for _ in range(2)]
        out["c"] = await hp.read_counters(bus, mm)
        out["errors_end"] = await bus.read(mm.reg("ERRORS"))

    simulate(top, bench, vcd="top_drop")
    assert out["status"] & 0xFFFF == 0 and out["errors"] == 1
    assert out["status_after"] == (1 | (1 << 16))             # slot free, one result waiting
    want = golden_forward(image, x[[0, 2]])
    assert np.array_equal(np.array(out["y"]), want)
    assert out["c"]["samples_in"] == out["c"]["samples_out"] == 2
    assert out["errors_end"] == 1                             # sticky until CLEAR


@pytest.mark.rtl
@pytest.mark.parametrize("shape, fold", [
    ([80, 8, 4], "64:8,8:4"),        # SIMD 64: two bus words a FIFO word, II 2 < 3 bus words
    ([100, 12, 3], "8:4,12:3"),      # SIMD 8: gearbox 32 -> 8, II 39
])
def test_top_preloaded_stream_keeps_the_analytic_ii(shape, fold):
    """Samples preloaded into the input FIFO stream through the word path with no bubble:
    every interval between results is the analytic II, results equal golden."""
    folds = make_folding(shape, fold)
    rng = np.random.default_rng(len(shape) + shape[0])
    image = random_image(folds, rng)
    n = 6
    x = rng.integers(0, 2, size=(n, shape[0]), dtype=np.uint8)
    job = BnnJob(image, x, load=False)
    run_amaranth(folds, [job], in_depth=n, out_depth=n, bake=image)
    assert np.array_equal(job.y, golden_forward(image, x))
    ii = max(f.ii for f in folds)
    c = job.counters
    assert c["ii_min"] == ii and c["t_last_out"] - c["t_first_out"] == (n - 1) * ii, (ii, c)


@pytest.mark.slow
def test_icebreaker_tfc_bitstream(tmp_path, cli):
    """Acceptance of issue 7: the TFC core with the iCEBreaker folding places and routes on the
    iCE40UP5K and meets the 12 MHz board clock (a few minutes of Yosys and nextpnr)."""
    from eie.boards.build import ICEBREAKER_BNN_FOLD, TFC_SHAPE
    out = tmp_path / "ice_bnn"
    r = cli(["build", "--board", "icebreaker", "--design", "bnn", "--out", out])
    assert r.code == 0, r.err
    report = json.loads((out / "report.json").read_text())
    assert report["core"]["shape"] == list(TFC_SHAPE)
    assert report["core"]["folding"] == ICEBREAKER_BNN_FOLD
    lcs = report["nextpnr_utilization"]["logic_cells"]
    assert lcs["available"] == 5280 and 0 < lcs["used"] <= lcs["available"]
    assert report["nextpnr_utilization"]["bram"]["used"] <= 30
    assert report["timing_met"] and (out / "top.bin").stat().st_size > 100_000
