"""LNZD quadtree: nonzeros come out in increasing j, none lost, none repeated, with the
documented timing (a round with m nonzeros takes m cycles, an all-zero round 1 cycle, after
``latency`` cycles that fill the read pipelines)."""

import numpy as np
import pytest
from amaranth.hdl import Cat, Module

from eie.hw.eie.lnzd import LNZD
from eie.hw.eie.memory_map import ACT_READ_LATENCY


def run_lnzd(simulate, activation_files, n, x, *, ready_pattern=None, depth=None, latency=1):
    """x: the layer input (n_in,). Returns [(cycle, j, a)] of accepted outputs (``a`` read
    from the ``a`` port in the cycle after) and the cycle (after start) at which done rose.
    Each leaf reads a memory through a pipeline of ``latency`` registers that advance in every
    cycle (like the PE's activation read), and the PE's round slots; the addresses past the
    input hold stale non-zero values."""
    n_in = len(x)
    depth = depth or max(1, -(-n_in // n))
    m = Module()
    dut = LNZD(n, j_bits=12, addr_depth=depth, latency=latency)
    m.submodules.dut = dut
    activation_files(m, n, [x], addr=dut.rd.addr, latency=latency, into=dut.rd)
    out, done_at = [], [None]

    async def bench(ctx):
        ctx.set(dut.n_in, n_in)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        fired = None                        # (cycle, j) of the nonzero taken in the last cycle
        for cyc in range(1, 4 * (n_in + depth) + 10):
            if fired is not None:
                out.append((*fired, ctx.get(dut.a)))
                fired = None
            ready = 1 if ready_pattern is None else ready_pattern(cyc)
            ctx.set(dut.o.ready, ready)
            if ctx.get(dut.done):
                done_at[0] = cyc
                return
            if ctx.get(dut.o.valid) and ready:
                fired = (cyc, ctx.get(dut.o.payload.j))
            await ctx.tick()

    simulate(m, bench)
    return out, done_at[0]


def expected_timing(n, x, latency=1):
    """Cycle (1-based after start) of each nonzero and of done, as the docstring states."""
    n_in = len(x)
    cyc = latency                             # round 0 loads `latency` cycles after start
    times = []
    rounds = -(-n_in // n)
    for t in range(rounds):
        nz = [j for j in range(t * n, min(n_in, t * n + n)) if x[j] != 0]
        if not nz and t < rounds - 1:
            cyc += 1                          # an empty round shows for one cycle
        for i, j in enumerate(nz):
            cyc += 1
            times.append((cyc, j))
    # done: the cycle after the last nonzero, or the cycle an empty last round shows in
    return times, cyc + 1


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 16, 17])
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("latency", [1, 2, ACT_READ_LATENCY])
def test_order_and_timing(n, density, latency, simulate, activation_files):
    rng = np.random.default_rng(n * 100 + int(density * 10))
    n_in = int(rng.integers(1, 3 * n + 5))
    x = rng.integers(-32768, 32768, n_in) * (rng.random(n_in) < density)
    x[x == 0] = 0
    out, done_at = run_lnzd(simulate, activation_files, n, x, latency=latency)
    nz = [j for j in range(n_in) if x[j] != 0]
    assert [j for _, j, _ in out] == nz                      # increasing j, none lost/repeated
    assert [a for _, _, a in out] == [int(x[j]) for j in nz]
    times, done_expected = expected_timing(n, x, latency)
    assert [(c, j) for c, j, _ in out] == times
    assert done_at == done_expected


READY_PATTERNS = {
    "scattered": lambda c: int((c * 7919) % 5 < 2),
    # long stalls: the round buffer fills, addressing stops until rounds are taken again
    "bursts": lambda c: int((c // 9) % 2),
}


@pytest.mark.parametrize("n", [3, 16])
@pytest.mark.parametrize("latency", [1, ACT_READ_LATENCY])
@pytest.mark.parametrize("pattern", sorted(READY_PATTERNS))
def test_back_pressure_loses_nothing(n, latency, pattern, simulate, activation_files):
    rng = np.random.default_rng(7 + n)
    x = rng.integers(-5, 6, 9 * n + 3)       # 10 rounds: more than the buffer holds
    x[n:3 * n] = 0                            # empty rounds: taken one a cycle after a stall
    out, done_at = run_lnzd(simulate, activation_files, n, x,
                            ready_pattern=READY_PATTERNS[pattern], latency=latency)
    nz = [j for j in range(len(x)) if x[j] != 0]
    assert [j for _, j, _ in out] == nz
    assert [a for _, _, a in out] == [int(x[j]) for j in nz]
    assert done_at is not None


@pytest.mark.parametrize("latency", [1, ACT_READ_LATENCY])
def test_ignores_stale_values_beyond_n_in(latency, simulate, activation_files):
    # Activations past n_in (the tail of the last round) hold stale nonzero data: never emitted.
    x = np.array([0, 0, 9, 0, 0])
    out, _ = run_lnzd(simulate, activation_files, 4, x, depth=3, latency=latency)
    assert [(j, a) for _, j, a in out] == [(2, 9)]


@pytest.mark.parametrize("n", [63, 256])
def test_large_trees(n, simulate, activation_files):
    rng = np.random.default_rng(n)
    x = rng.integers(-3, 4, 2 * n + 5) * (rng.random(2 * n + 5) < 0.2)
    out, done_at = run_lnzd(simulate, activation_files, n, x, latency=ACT_READ_LATENCY)
    nz = [j for j in range(len(x)) if x[j] != 0]
    assert [j for _, j, _ in out] == nz
    assert [a for _, _, a in out] == [int(x[j]) for j in nz]
    times, done_expected = expected_timing(n, x, ACT_READ_LATENCY)
    assert [(c, j) for c, j, _ in out] == times and done_at == done_expected


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8])
def test_at_least_thresholds_equal_the_popcount(width, simulate):
    """The LNZD's "none / exactly one / exactly two" flags come from an OR/AND tree that counts
    ones saturating at k: on every pattern of ``width`` bits, entry t says popcount > t."""
    from amaranth.hdl import Signal
    from eie.hw.eie.lnzd import _at_least

    k = 3
    m = Module()
    bits = Signal(width)
    flags = Signal(k)
    m.d.comb += flags.eq(Cat(*_at_least(m, bits, k, "count")))
    seen = []

    async def bench(ctx):
        for v in range(1 << width):
            ctx.set(bits, v)
            seen.append((v, ctx.get(flags)))

    simulate(m, bench, period=None)
    for v, got in seen:
        ones = bin(v).count("1")
        assert got == sum(1 << t for t in range(k) if ones > t), (v, got)
