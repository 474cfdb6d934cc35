"""The host's side of the BNN top: bus transactions to load an image and stream samples.

Simulator-independent: the Amaranth-simulator runner, the cocotb testbench and the board host
driver (over the UART bridge) all run these coroutines over the host-bus driver every core
shares (:class:`eie.hw.common.host.HostBus`: ``async write``, ``async read``, optionally
``async idle``); the load is a list of :class:`~eie.hw.common.host.Write` operations run by the
one executor (:func:`eie.hw.common.host.execute`), as the EIE's programs are. A blocking driver
(the UART bridge's) runs them with :func:`eie.hw.common.host.run_sync`. CTRL, STATUS and ERRORS
are packed and unpacked with the memory map's register layouts.

Sequence:

1. :func:`check_config`: ID and CONFIG_CRC must match the image's topology and folding;
2. :func:`load_image`: every weight and threshold word (and a ternary layer's mask words and,
   on a ternary output layer of dots, its nonzero counts), chunks lowest first (:func:`load_ops`);
3. :func:`run_samples`: CLEAR the counters; optionally stop the network (RUN=0) while the input
   FIFO fills, so samples then stream back to back; then loop: read STATUS, write as many
   samples as there are free slots (``in_words`` writes of IN_DATA each), read every complete
   result (``out_words`` reads of OUT_DATA each); finally read the counters.
"""

from __future__ import annotations

import random
from typing import Callable, Iterator

import numpy as np

from .words import (BnnWeights, act_bits_text, image_last_thresholded, image_weight_bits,
                    nonzero_counts, threshold_words, weight_bits_text, weight_words)
from ...common.errors import EieError
from ..common.host import HostBus, Write, execute
from .memory_map import COUNTERS, CTRL, ERRORS, ID_VALUE, STATUS, BnnMemoryMap, config_crc

__all__ = ["HostBus", "load_ops", "sample_words", "decode_result", "decode_bits", "check_config",
           "load_image", "run_samples", "read_counters", "measured_ii", "II_NONE", "random_gap",
           "wait_bound"]

#: II_MIN's value until two results have left the core since CLEAR (its reset value): one
#: sample has no interval, so no II was measured.
II_NONE = 0xFFFFFFFF


def load_ops(mm: BnnMemoryMap, image: BnnWeights) -> Iterator[tuple[int, int]]:
    """(address, data) writes that load every weight and threshold word of ``image``."""
    if image.shape != [mm.n_in] + [f.n_out for f in mm.folds] or \
            [(f.simd, f.pe) for f in image.folds] != [(f.simd, f.pe) for f in mm.folds]:
        raise EieError(f"the image (shape {image.shape}, folding "
                       f"{','.join(f'{f.simd}:{f.pe}' for f in image.folds)}) does not match the "
                       f"core (shape {[mm.n_in] + [f.n_out for f in mm.folds]}, folding "
                       f"{','.join(f'{f.simd}:{f.pe}' for f in mm.folds)}); recompile with that folding")
    if image_last_thresholded(image) != mm.last_thresholded:
        has = "is thresholded (outputs bits)" if image_last_thresholded(image) else "outputs dots"
        core = "a thresholded output layer" if mm.last_thresholded else "an output layer of dots"
        raise EieError(f"the image's output layer {has} but the core was built with {core}; "
                       f"build the core from the image (`eie bnn generate IMAGE_DIR`)")
    bits = image_weight_bits(image)
    if tuple(bits) != tuple(mm.weight_bits):
        l = next(k for k, (a, b) in enumerate(zip(bits, mm.weight_bits)) if a != b)
        raise EieError(f"the image's layer {l} has {'ternary (W2)' if bits[l] == 2 else 'binary (W1)'} "
                       f"weights but the core was built with "
                       f"{'ternary (W2)' if mm.weight_bits[l] == 2 else 'binary (W1)'} weights "
                       f"there (image {weight_bits_text(bits)}, core "
                       f"{weight_bits_text(mm.weight_bits)}); build the core from the image "
                       f"(`eie bnn generate IMAGE_DIR`)")
    own = [f.out_bits for f in image.folds]
    if own != mm.act_bits:
        raise EieError(f"the image's activation precisions are {act_bits_text(own)} but the core "
                       f"was built for {act_bits_text(mm.act_bits)}; build the core from the "
                       f"image (`eie bnn generate IMAGE_DIR`)")
    for l, f in enumerate(mm.folds):
        per_kind = [(0, weight_words(f, image.weights[l]))]
        if mm.thresholded(l):
            per_kind.append((1, threshold_words(f, image.thresholds[l])))
        if mm.weight_bits[l] == 2:
            mask = image.masks[l]
            if mm.nonzero_counts(l):
                per_kind.append((1, threshold_words(f, nonzero_counts(mask))))
            per_kind.append((2, weight_words(f, mask)))
        for kind, mems in per_kind:
            for p, words in enumerate(mems):
                for e, word in enumerate(words):
                    for c in range(mm.chunks(l, kind)):
                        yield mm.mem_addr(l, kind, p, e, c), (word >> (32 * c)) & 0xFFFFFFFF


def sample_words(mm: BnnMemoryMap, x_row) -> list[int]:
    """The IN_DATA writes of one sample (bits, element ``k`` at bit ``k % 32`` of word ``k // 32``)."""
    bits = np.zeros(mm.in_words * 32, dtype=np.uint64)
    bits[:mm.n_in] = np.asarray(x_row, dtype=np.uint64)
    weights = np.uint64(1) << np.arange(32, dtype=np.uint64)
    return [int(v) for v in (bits.reshape(mm.in_words, 32) * weights).sum(axis=1)]


def decode_result(words: list[int]) -> np.ndarray:
    """OUT_DATA words -> int32 dots."""
    return np.array([w - (1 << 32) if w & 0x80000000 else w for w in words], dtype=np.int32)


def decode_bits(words: list[int], n: int) -> np.ndarray:
    """OUT_DATA words of a thresholded output layer -> ``n`` uint8 bits (output ``k`` at bit
    ``k % 32`` of word ``k // 32``)."""
    k = np.arange(n)
    w = np.array(words, dtype=np.uint64)[k // 32]
    return ((w >> (k % 32).astype(np.uint64)) & np.uint64(1)).astype(np.uint8)


def wait_bound(mm: BnnMemoryMap) -> int:
    """Clock cycles within which a healthy core shows progress to a host that keeps it fed and
    drained: an upper bound of a sample's trip through the network (each layer: filling its
    input buffer, waiting for the sample ahead and working on this one, ``sf + 2 * nf * sf``,
    plus its pipeline) with the input FIFO's other samples ahead of it, doubled. The host
    program's default for how long to poll without progress before it calls the core stopped."""
    trip = sum(f.sf + 2 * f.ii + 16 + 2 * f.simd.bit_length() for f in mm.folds)
    ahead = (mm.in_depth + 1) * max(f.ii for f in mm.folds) + mm.in_depth * mm.in_words
    return 2 * (trip + ahead) + 1000


async def check_config(bus: HostBus, mm: BnnMemoryMap) -> None:
    """Raise :class:`EieError` unless the core answers with this topology and folding."""
    ident = await bus.read(mm.reg("ID"))
    if ident != ID_VALUE:
        raise EieError(f"the core answered ID {ident:#010x}, not {ID_VALUE:#010x}: no BNN core there")
    crc = await bus.read(mm.reg("CONFIG_CRC"))
    want = config_crc(mm.folds, mm.last_thresholded, mm.weight_bits)
    if crc != want:
        raise EieError(f"the core was built for another topology, folding, weight or activation "
                       f"precision, bit-plane consumption or output layer (CONFIG_CRC {crc:#010x}, the image needs {want:#010x}); "
                       f"rebuild it with `eie bnn generate` for this image")


async def load_image(bus: HostBus, mm: BnnMemoryMap, image: BnnWeights) -> int:
    """Write every weight and threshold word; return the number of bus writes."""
    ops = [Write(addr, data) for addr, data in load_ops(mm, image)]
    await execute(bus, ops)
    return len(ops)


async def read_counters(bus: HostBus, mm: BnnMemoryMap) -> dict:
    """The counters by lower-case name, and ``layer_stall``: per layer stall cycles."""
    out: dict = {name.lower(): await bus.read(mm.reg(name)) for name in COUNTERS}
    out["layer_stall"] = [await bus.read(mm.reg(f"STALL_L{l}")) for l in range(mm.n_layers)]
    return out


def measured_ii(counters: dict) -> int | None:
    """The smallest interval between two results (``ii_min`` of :func:`read_counters`), or
    None when it was not measured: fewer than two results since CLEAR (II_MIN still holds
    :data:`II_NONE`), or no counters."""
    ii = counters.get("ii_min")
    if ii is None or counters.get("samples_out", 0) < 2 or ii == II_NONE:
        return None
    return int(ii)


async def run_samples(bus: HostBus, mm: BnnMemoryMap, x: np.ndarray, *, preload: bool = True,
                      read_gap: Callable[[], int] | None = None, poll_gap: int = 0,
                      max_polls: int | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Stream the bit rows of ``x`` through the core; return the results (int32 dots, or uint8
    bits from a thresholded output layer, ``(batch, n_classes)``) and the counters.

    ``preload``: hold the network (RUN=0) until the input FIFO is full (or all samples are in),
    so the first ``in_depth`` samples enter back to back. ``read_gap``: when given, a callable
    returning a number of idle cycles to wait before each result is read (random back-pressure
    on the output; needs ``bus.idle``). ``poll_gap``: idle cycles after a STATUS poll that found
    nothing to do (fewer bus reads on long runs; needs ``bus.idle``). ``max_polls``: STATUS
    polls in a row without progress (no sample taken, no result ready) before the core is taken
    for stopped; any progress starts the count again, so a run of any length is not cut short.
    Default: :func:`wait_bound` (a poll takes at least a cycle, so that many polls wait at least
    that many cycles, longer than a healthy core ever goes without progress)."""
    x = np.asarray(x)
    if max_polls is None:
        max_polls = wait_bound(mm)
    n = x.shape[0]
    results: list[np.ndarray] = []
    await bus.write(mm.reg("CTRL"), CTRL.pack(clear=1, run=not preload))
    sent = 0
    running = not preload
    polls = 0
    while len(results) < n:
        polls += 1
        if polls > max_polls:
            raise RuntimeError(f"BNN core stopped: {sent} samples sent, {len(results)} results, "
                               f"then {max_polls} status polls without progress")
        status = STATUS.unpack(await bus.read(mm.reg("STATUS")))
        free, ready = status["in_free"], status["out_count"]
        if ready or (free and sent < n):
            polls = 0                   # progress: count polls without progress only
        for _ in range(min(free, n - sent)):
            for word in sample_words(mm, x[sent]):
                await bus.write(mm.reg("IN_DATA"), word)
            sent += 1
        if not running and (sent == n or sent >= mm.in_depth):
            await bus.write(mm.reg("CTRL"), CTRL.pack(run=1))
            running = True
        if poll_gap and ready == 0 and (free == 0 or sent == n):
            await bus.idle(poll_gap)
        for _ in range(ready):
            if read_gap is not None:
                gap = read_gap()
                if gap:
                    await bus.idle(gap)
            words = [await bus.read(mm.reg("OUT_DATA")) for _ in range(mm.out_words)]
            results.append(decode_bits(words, mm.n_classes) if mm.last_thresholded
                           else decode_result(words))
    counters = await read_counters(bus, mm)
    errors = await bus.read(mm.reg("ERRORS"))
    if errors:
        raise RuntimeError(f"BNN core reported ERRORS={errors:#x} ({ERRORS.describe()})")
    y = np.stack(results) if results else np.zeros(
        (0, mm.n_classes), dtype=np.uint8 if mm.last_thresholded else np.int32)
    return y, counters


def random_gap(rng: random.Random, p_idle: float = 0.5, max_gap: int = 8) -> Callable[[], int]:
    """A ``read_gap`` that idles a random 0..max_gap cycles with probability ``p_idle``."""
    return lambda: rng.randint(1, max_gap) if rng.random() < p_idle else 0
