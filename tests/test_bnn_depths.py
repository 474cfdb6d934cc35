"""The BNN core at every small FIFO depth and sample length (regression: the input FIFO lost words).

The bus-mapped top (:class:`eie.hw.bnn.top.BnnTop`) writes IN_DATA words into its input FIFO
without looking at ``w_rdy``: its slot count (``in_depth`` samples of ``fifo_words`` words)
promises that the FIFO has room. An ``amaranth.lib.fifo.SyncFIFOBuffered`` of depth ``N`` keeps
that promise only while its inner memory (``N - 1`` words ahead of the output register) has
room; with ``N == 2`` a word written in the cycle after another into an empty FIFO (the first
still moving to the output register) met ``w_rdy`` low and was lost, and the host waited
forever for the lost sample's result ("2 samples sent, 1 results"). ``N`` is ``in_depth *
fifo_words``: ``in_depth=2`` with a one-word sample, ``in_depth=1`` with two FIFO words.

Three levels, cheapest first:

* the top's input FIFO alone (as the top builds it), written whenever it holds fewer words
  than the slots allow, read at random: every write must find ``w_rdy`` high, every word come
  out in order;
* the network (no FIFOs) taking samples of 1..3 bus words with random gaps and random
  back-pressure: equal to the golden model;
* the whole top driven by the host program over ``in_depth`` 1..4, ``out_depth`` 1, 2, 4 and
  1..3 input words, preloaded and with random read pauses: equal to the golden model.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Fragment

from eie.hw.bnn import host_program as hp
from eie.hw.bnn.folding import analytic_ii, make_folding
from eie.hw.bnn.network import BnnNetwork
from eie.hw.bnn.top import BnnTop
from eie.sim.bus_driver import simulate as simulate_bus
from eie.sim.runner import PERIOD_NS
from eie.sw.bnn.golden import golden_forward
from eie.sw.bnn.image import random_image

#: Small networks by the shape of their samples on the bus (FIFO words of 32 bits unless the
#: first layer's SIMD is wider): (shape, folding, bus words, FIFO words) a sample.
NETS = {
    "1word": ([12, 6, 3], "5:2,3:3", 1, 1),
    "2words": ([40, 6, 3], "7:2,3:3", 2, 2),
    "3words": ([70, 6, 3], "8:2,3:3", 3, 3),
    "simd64": ([70, 6, 3], "64:2,3:3", 3, 2),   # bus words staged into 64-bit FIFO words
}


def _image(net: str, seed: int = 0):
    shape, fold, _, _ = NETS[net]
    folds = make_folding(shape, fold)
    rng = np.random.default_rng(seed + shape[0])
    return folds, random_image(folds, rng), rng


# --- the top's input FIFO alone -------------------------------------------------------------

def _input_fifo(folds, in_depth: int):
    """The input FIFO exactly as :class:`BnnTop` builds it (elaborated, not simulated)."""
    top = Fragment.get(BnnTop(folds, in_depth=in_depth), None)
    return next(sub.origins[0] for sub, name, _ in top.subfragments if name == "in_fifo")


@pytest.mark.rtl        # elaborates BnnTop (tests/test_markers.py); simulates only its FIFO
@pytest.mark.parametrize("in_depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("net", list(NETS))
def test_top_input_fifo_takes_every_word_the_slots_allow(net, in_depth, simulate):
    """Written back to back from empty (RUN=0, preload), then written whenever it holds fewer
    than ``in_depth * fifo_words`` words while read at random: no write meets ``w_rdy`` low and
    the words come out in order."""
    folds, _, _ = _image(net)
    fifo_words = NETS[net][3]
    cap = in_depth * fifo_words                     # what the top's slot count lets in
    dut = _input_fifo(folds, in_depth)
    rng = random.Random(cap * 7 + len(net))
    words = [rng.getrandbits(dut.width) for _ in range(cap + 40)]
    refused, got = [], []

    async def bench(ctx):
        sent = held = cycle = 0
        while len(got) < len(words) and cycle < 20 * len(words):
            preload = cycle < cap                   # the first `cap` words: back to back, no reads
            write = sent < len(words) and held < cap and (preload or rng.random() < 0.6)
            read = not preload and rng.random() < 0.5
            ctx.set(dut.w_en, write)
            ctx.set(dut.w_data, words[sent] if write else 0)
            ctx.set(dut.r_en, read)
            if write:
                if not ctx.get(dut.w_rdy):
                    refused.append((cycle, sent, held))
                sent += 1
                held += 1
            if read and ctx.get(dut.r_rdy):
                got.append(ctx.get(dut.r_data))
                held -= 1
            await ctx.tick()
            cycle += 1

    simulate(dut, bench, vcd="bnn_in_fifo")
    assert not refused, f"writes lost (cycle, word, words held): {refused[:4]}; FIFO depth " \
                        f"{dut.depth} for {cap} words"
    assert got == words


# --- the network alone, multi-word samples ----------------------------------------------------

@pytest.mark.parametrize("net", ["1word", "2words", "3words"])
def test_network_multiword_samples_random_gaps(net, simulate):
    """32-bit input words, 1..3 a sample, offered with random gaps (often back to back) while
    the output is read at random: results equal golden, in order."""
    folds, image, rng = _image(net)
    x = rng.integers(0, 2, size=(12, folds[0].n_in), dtype=np.uint8)
    want = golden_forward(image, x)
    dut = BnnNetwork(folds, image=image, in_width=32)
    assert dut.in_words == NETS[net][2]
    prng = random.Random(len(net))
    got = []

    async def source(ctx):
        for row in x:
            for w in (int(v) for v in _words(row)):
                while prng.random() < 0.3:          # a gap before the word
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.payload, w)
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        cycles = 0
        while len(got) < len(x):
            ready = prng.random() < 0.5
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                got.append([int(v) for v in ctx.get(dut.o.payload)])
            await ctx.tick()
            cycles += 1
            assert cycles < 200 * len(x), f"network stopped after {len(got)} results"

    simulate(dut, source, sink, vcd="bnn_net_words")
    assert np.array_equal(np.array(got), want)


def _words(row) -> list[int]:
    """Bits -> 32-bit words, element ``k`` at bit ``k % 32`` of word ``k // 32``."""
    n = -(-len(row) // 32)
    return [sum(int(b) << i for i, b in enumerate(row[32 * w:32 * (w + 1)])) for w in range(n)]


# --- the whole top, host program, golden model ------------------------------------------------

MAX_POLLS = 1000     # every healthy case here needs under 250 STATUS polls; a lost word hangs


TOP_CASES = ([(net, i, o) for net in ("1word", "2words", "3words") for i in (1, 2, 3, 4)
              for o in (1, 2, 4)]
             + [("simd64", 1, 2), ("simd64", 2, 2)])


@pytest.mark.rtl        # the whole core in the Amaranth simulator (under a second a case)
@pytest.mark.parametrize("net, in_depth, out_depth", TOP_CASES)
def test_top_every_depth_and_sample_length(net, in_depth, out_depth):
    """The host program streams ``in_depth + 4`` samples twice through one core: preloaded
    (RUN=0 until the FIFO is full, then back to back) and running from the start with random
    pauses before reading results. Both equal the golden model, every sample is counted in and
    out, and STATUS ends with every slot free and no result waiting."""
    folds, image, rng = _image(net, seed=in_depth)
    n = in_depth + 4
    x = rng.integers(0, 2, size=(n, folds[0].n_in), dtype=np.uint8)
    want = golden_forward(image, x)
    top = BnnTop(folds, in_depth=in_depth, out_depth=out_depth, image=image)
    mm = top.memory_map
    assert mm.in_words == NETS[net][2]
    gap = hp.random_gap(random.Random(in_depth * 10 + out_depth), 0.7, 2 * analytic_ii(folds))
    out = {}

    async def bench(bus):
        out["pre"] = await hp.run_samples(bus, mm, x, preload=True, max_polls=MAX_POLLS)
        out["bp"] = await hp.run_samples(bus, mm, x, preload=False, read_gap=gap,
                                         max_polls=MAX_POLLS)
        out["status"] = await bus.read(mm.reg("STATUS"))

    simulate_bus(top, bench, period_ns=PERIOD_NS)
    for name in ("pre", "bp"):
        y, c = out[name]
        assert np.array_equal(y, want), name
        assert c["samples_in"] == c["samples_out"] == n, (name, c)
    assert out["status"] == in_depth                 # all slots free, no result waiting


@pytest.mark.rtl        # the whole core in the Amaranth simulator (a few seconds)
def test_long_run_is_not_cut_short_by_the_poll_limit():
    """``max_polls`` counts STATUS polls without progress, not polls over the whole run: a run
    that polls STATUS many more times in total than the limit still finishes (before the fix, a
    long ``eie bnn run`` stopped with "BNN core stopped" on a healthy core)."""
    folds, image, rng = _image("1word", seed=7)
    n = 40
    x = rng.integers(0, 2, size=(n, folds[0].n_in), dtype=np.uint8)
    want = golden_forward(image, x)
    limit = 4 * analytic_ii(folds)      # enough polls for one interval between results
    top = BnnTop(folds, in_depth=2, out_depth=2, image=image)
    mm = top.memory_map
    out = {"status_reads": 0}

    class CountingBus:
        def __init__(self, bus):
            self.bus = bus

        async def write(self, addr, data):
            await self.bus.write(addr, data)

        async def read(self, addr):
            out["status_reads"] += addr == mm.reg("STATUS")
            return await self.bus.read(addr)

    async def bench(bus):
        out["y"], out["c"] = await hp.run_samples(CountingBus(bus), mm, x, preload=False,
                                                  max_polls=limit)

    simulate_bus(top, bench, period_ns=PERIOD_NS)
    assert out["status_reads"] > limit          # the whole run polled more than the limit
    assert np.array_equal(out["y"], want)
    assert out["c"]["samples_out"] == n
