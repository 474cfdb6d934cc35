"""UART load time of a LeNet-300-100-sized EIE image, and the protocol's overhead.

Compresses a random 784-300-100-10 model (``--density`` kept, default 8%, Deep Compression's
LeNet-300-100 figure) for ``--pes`` PEs, then runs the host driver's load program (the EIE
core's own :mod:`eie.hw.eie.host_program`, bursts merged by :mod:`eie.app.host`) against a
byte-exact software model of the bridge, and prints, per burst size:

- the image's raw bits as the hardware stores them (pointers at their width, 64-bit words,
  16-bit biases and codebooks, layer descriptors), the bus payload (32-bit bus words), and the
  bytes on the wire both ways (frames, CRCs, responses);
- the load time at each ``--baud``: the line time, and with ``--turnaround-ms`` per frame
  (a USB serial adapter's latency; FTDI's default latency timer is up to 16 ms, 1 ms when set).

Run: ``.venv/bin/python bench/uart_load.py`` (about 10 s).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eie.boards.build import LENET_EIE
from eie.boards.model import LoopbackTransport
from eie.hw.eie.config import MAX_PE, EIEConfig
from eie.hw.eie.host_program import STATUS_DONE, HostProgram
from eie.hw.eie.memory_map import MemoryMap
from eie.sw.compress import CompressConfig, compress_model
from eie.app.host import BridgeClient, burst_friendly, execute_ops
from eie.sw.model_io import FloatLayer


def lenet_image(pes: int, density: float, seed: int):
    rng = np.random.default_rng(seed)
    shape = (784, 300, 100, 10)
    layers = [FloatLayer(rng.normal(0, 1 / np.sqrt(n_in), size=(n_out, n_in)).astype(np.float32),
                         (0.01 * rng.normal(size=n_out)).astype(np.float32), relu=i < 2)
              for i, (n_in, n_out) in enumerate(zip(shape[:-1], shape[1:]))]
    return compress_model(layers, CompressConfig(n_pe=pes, density=density)).image


def raw_bits(image, config: EIEConfig) -> int:
    bits = 0
    for d in image.layers:
        bits += 16 * 16 + 6 * 32                      # codebook, descriptor fields
    bits += image.n_pe * image.ptr_words * config.ptr_bits
    bits += image.n_pe * image.spmat_words * 64
    if image.bias is not None:
        bits += image.n_pe * image.bias_words * 16
    return bits


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pes", type=int, default=16)
    ap.add_argument("--density", type=float, default=0.08)
    ap.add_argument("--baud", type=int, nargs="+", default=[115200, 921600, 3000000])
    ap.add_argument("--bursts", type=int, nargs="+", default=[1, 16, 256])
    ap.add_argument("--turnaround-ms", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 1 <= args.pes <= MAX_PE:
        ap.error(f"--pes {args.pes}: the accelerator takes 1 to {MAX_PE} PEs")
    if not 0 < args.density <= 1:
        ap.error(f"--density {args.density}: give the fraction of weights kept, in (0, 1]")
    if min(args.baud) <= 0:
        ap.error(f"--baud {min(args.baud)}: give line rates above 0 baud")
    if not all(1 <= b <= 0xFFFF for b in args.bursts):
        ap.error(f"--bursts {' '.join(map(str, args.bursts))}: the bridge's bursts are 1 to "
                 "65535 words")
    if args.turnaround_ms < 0:
        ap.error(f"--turnaround-ms {args.turnaround_ms:g}: give 0 or more")
    if args.seed < 0:
        ap.error(f"--seed {args.seed}: give a seed >= 0")

    t0 = time.monotonic()
    image = lenet_image(args.pes, args.density, args.seed)
    try:
        config = EIEConfig(n_pe=args.pes, **LENET_EIE)
        config.check_image(image)
        which = "the board default (boards/build.py LENET_EIE)"
    except Exception:
        config = EIEConfig.for_image(image)
        which = "sized for the image"
    hp = HostProgram(config, image)
    load = hp.load()
    raw = raw_bits(image, config) / 8
    nnz = sum(int(d.stats.get("nonzeros", 0)) for d in image.layers)
    print(f"LeNet-300-100 random weights, {args.density:.0%} kept ({nnz} nonzeros), {args.pes} PEs, "
          f"core configuration {which}; compressed in {time.monotonic() - t0:.1f} s")
    print(f"raw image bits as stored: {raw:,.0f} B; bus writes: {len(load)} words "
          f"({4 * len(load):,} B payload)")
    print()
    head = (f"{'burst':>6} {'frames':>7} {'wire B':>9} {'wire/raw':>9} {'wire/payload':>13}"
            + "".join(f" {f'{b} Bd line':>14} {f'+{args.turnaround_ms:g}ms/frame':>15}"
                      for b in args.baud))
    print(head)
    print("-" * len(head))
    for burst in args.bursts:
        transport = LoopbackTransport(max_burst=burst, addr_width=MemoryMap(config).addr_width)
        client = BridgeClient(transport)
        client.info()
        before = client.stats.wire_bytes, client.stats.requests
        execute_ops(client, load)
        wire = client.stats.wire_bytes - before[0]
        frames = client.stats.requests - before[1]
        assert transport.bus_writes == len(load)
        row = (f"{burst:>6} {frames:>7} {wire:>9,} {wire / raw:>9.2f} "
               f"{wire / (4 * len(load)):>13.2f}")
        for baud in args.baud:
            line = wire * 10 / baud
            row += f" {line:>13.2f}s {line + frames * args.turnaround_ms / 1e3:>14.2f}s"
        print(row)

    # one inference: inputs, start, one status poll, outputs and counters
    mm = MemoryMap(config)
    transport = LoopbackTransport({mm.reg("STATUS"): STATUS_DONE}, max_burst=256,
                                  addr_width=mm.addr_width)
    client = BridgeClient(transport)
    client.info()
    before = client.stats.wire_bytes, client.stats.requests
    x = np.zeros(image.n_in, dtype=np.int16)
    shift = mm.pe_bits + mm.off_bits
    execute_ops(client, burst_friendly(hp.run(x) + hp.collect(), lambda a: (a >> shift) != 0))
    wire = client.stats.wire_bytes - before[0]
    frames = client.stats.requests - before[1]
    print()
    print(f"one inference (784 inputs, start, 1 status poll, 10 outputs, every counter): "
          f"{frames} frames, {wire:,} B on the wire"
          + "".join(f"; {wire * 10 / b * 1e3:.1f} ms at {b} Bd" for b in args.baud))


if __name__ == "__main__":
    main()
