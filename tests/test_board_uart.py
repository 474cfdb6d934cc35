"""UART and CRC blocks alone in the Amaranth simulator, against independent Python models."""

import random


from eie.boards.crc import CRC16, crc16
from eie.boards.uart import UARTRx, UARTTx

DIV = 5


def _line_bits(byte, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def test_tx_waveform_is_8n1(simulate):
    dut = UARTTx(DIV)
    data = [0x00, 0xFF, 0xA5, 0x3C]
    samples = []

    async def bench(ctx):
        for byte in data:
            ctx.set(dut.i.payload, byte)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
        await ctx.tick().until(~dut.busy)

    async def sampler(ctx):
        async for _, _, tx in ctx.tick().sample(dut.tx):
            samples.append(tx)

    simulate(dut, bench, background=[sampler], period=1e-6)
    # decode the line independently: find each start bit, sample the middle of each bit
    out, i = [], 0
    while i < len(samples):
        if samples[i] == 0:
            bits = [samples[i + DIV // 2 + DIV * k] for k in range(10)]
            assert bits[0] == 0 and bits[9] == 1, bits
            out.append(sum(b << k for k, b in enumerate(bits[1:9])))
            i += DIV * 10 - DIV // 2
        else:
            i += 1
    assert out == data


def _run_rx(simulate, line):
    dut = UARTRx(DIV)
    got, frame_errors = [], []

    async def driver(ctx):
        for bit in line:
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(DIV)
        await ctx.tick().repeat(4 * DIV)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        async for _, _, valid, payload, ferr in ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                                   dut.frame_error):
            if valid:
                got.append(payload)
            if ferr:
                frame_errors.append(1)

    simulate(dut, driver, background=[sink], period=1e-6)
    return got, len(frame_errors)


def test_rx_bytes_framing_errors_and_glitches(simulate):
    rng = random.Random(1)
    data = [rng.randrange(256) for _ in range(6)]
    line = [1, 1]
    for b in data:
        line += _line_bits(b) + [1] * rng.randrange(3)
    got, ferr = _run_rx(simulate, line)
    assert got == data and ferr == 0
    # a low stop bit: the byte is dropped and frame_error pulses; the next byte is fine
    got, ferr = _run_rx(simulate, [1, 1] + _line_bits(0x42, stop=0) + [1, 1] + _line_bits(0x99))
    assert got == [0x99] and ferr == 1


def test_rx_ignores_a_glitch_shorter_than_half_a_bit(simulate):
    dut = UARTRx(8)
    got = []

    async def driver(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(10)
        ctx.set(dut.rx, 0)                 # 2 cycles low: not a start bit
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(100)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(dut.o.valid, dut.o.payload):
            if valid:
                got.append(payload)

    simulate(dut, driver, background=[sink], period=1e-6)
    assert got == []


def test_crc_block_equals_software(simulate):
    rng = random.Random(2)
    data = bytes(rng.randrange(256) for _ in range(40))
    dut = CRC16()
    seen = []

    async def bench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for i, b in enumerate(data):
            ctx.set(dut.data, b)
            ctx.set(dut.valid, 1)
            await ctx.tick()
            seen.append(ctx.get(dut.crc))
        ctx.set(dut.valid, 0)
        # the frame followed by its own CRC, high byte first, leaves zero
        c = crc16(data)
        for b in (c >> 8, c & 0xFF):
            ctx.set(dut.data, b)
            ctx.set(dut.valid, 1)
            await ctx.tick()
        assert ctx.get(dut.zero) == 1

    simulate(dut, bench, period=1e-6)
    assert seen == [crc16(data[:i + 1]) for i in range(len(data))]
