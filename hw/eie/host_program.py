"""The host's bus transactions, independent of any simulator or board: the single source of
truth for "what to write where" to load an image, run a sample, and read results back.

A program is a list of the host-bus operations every core shares (:mod:`eie.hw.common.host`):

* :class:`Write` ``(addr, data)`` -- one bus write;
* :class:`Poll` ``(addr, mask, value, max_polls)`` -- read ``addr`` until ``data & mask == value``
  (at most ``max_polls`` reads, then :class:`TimeoutError`);
* :class:`Read` ``(addr, key)`` -- one bus read whose result is stored under ``key``.

:class:`HostProgram` builds them for an :class:`~eie.hw.eie.config.EIEConfig` and an
:class:`~eie.sw.image.Image`; the one executor, ``await execute(bus, ops)``, runs a list of them
on any host-bus driver (``run_sync(execute(bus, ops))`` from plain code over a blocking one), so
an Amaranth testbench, a cocotb testbench and the UART host driver all issue the very same
sequence. :func:`check_config` checks, before a load, that the core is an EIE built with this
configuration.

Sequence: ``load()`` once (layer table, ``N_LAYERS``, pointers, sparse-matrix words low half
first, biases); then per sample ``run(x)`` (inputs into activation bank 0, ``CTRL`` start, poll
``STATUS.done``) and ``collect()`` (outputs from the result bank, per-layer and per-PE
counters), decoded with :meth:`HostProgram.decode`. The packed words (``flags``, ``CTRL``,
``STATUS``, ``CONFIG0``) are packed and unpacked with the memory map's register layouts.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...common.errors import EieError
from ..common.host import HostBus, Op, Poll, Read, Write, execute
from .config import EIEConfig
from .memory_map import CONFIG0, CTRL, EIE_ID, LAYER_FLAGS, STATUS, MemoryMap, pointer_words

__all__ = ["Write", "Read", "Poll", "Op", "HostProgram", "execute", "check_config",
           "STATUS_BUSY", "STATUS_DONE", "STATUS_BANK", "STATUS_ERROR"]

STATUS_BUSY = STATUS.mask("busy")
STATUS_DONE = STATUS.mask("done")
STATUS_BANK = STATUS.mask("bank")
STATUS_ERROR = STATUS.mask("error")


def _u32(v: int) -> int:
    return int(v) & 0xFFFF_FFFF


def _s16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


class HostProgram:
    """Bus programs for one configuration and one image (checked to fit)."""

    def __init__(self, config: EIEConfig, image):
        config.check_image(image)
        self.config = config
        self.image = image
        self.map = MemoryMap(config)

    @property
    def n_layers(self) -> int:
        return len(self.image.layers)

    @property
    def result_bank(self) -> int:
        """The activation file that holds the output (banks swap after every layer)."""
        return self.n_layers & 1

    def load(self) -> list[Op]:
        """Writes that load the whole image (the accelerator must be idle)."""
        mm, img = self.map, self.image
        ops: list[Op] = []
        for l, d in enumerate(img.layers):
            flags = LAYER_FLAGS.pack(w_frac=d.w_frac, relu=bool(d.relu), has_bias=bool(d.has_bias))
            for name, v in (("n_in", d.n_in), ("n_out", d.n_out), ("ptr_base", d.ptr_base),
                            ("entry_base", d.entry_base), ("bias_base", d.bias_base),
                            ("flags", flags)):
                ops.append(Write(mm.layer_field(l, name), _u32(v)))
            for i, w in enumerate(d.codebook):
                ops.append(Write(mm.codebook(l, i), int(w) & 0xFFFF))
        ops.append(Write(mm.reg("N_LAYERS"), self.n_layers))
        for k in range(img.n_pe):
            # the pointer memory's words: absolute entry addresses with their columns' flags
            for p, v in enumerate(pointer_words(self.config, img.layers, np.asarray(img.ptr[k]))):
                ops.append(Write(mm.ptr(k, p), _u32(v)))
            for w, v in enumerate(np.asarray(img.spmat[k], dtype=np.uint64)):
                v = int(v)
                ops.append(Write(mm.spmat(k, w, 0), v & 0xFFFF_FFFF))
                ops.append(Write(mm.spmat(k, w, 1), v >> 32))
            if img.bias is not None:
                for s, v in enumerate(np.asarray(img.bias[k])):
                    ops.append(Write(mm.bias(k, s), int(v) & 0xFFFF))
        return ops

    def run(self, x: Sequence[int]) -> list[Op]:
        """Write one input vector into bank 0, start, and wait for done."""
        mm, n = self.map, self.config.n_pe
        x = np.asarray(x).reshape(-1)
        if x.size != self.image.n_in:
            raise ValueError(f"input has {x.size} values but the first layer takes {self.image.n_in}")
        # input position q holds model input order[q] (the image's input placement)
        ops: list[Op] = [Write(mm.act(q % n, 0, q // n), int(v) & 0xFFFF)
                         for q, v in enumerate(self.image.to_positions(x).tolist())]
        ops.append(Write(mm.reg("CTRL"), CTRL.pack(start=1)))
        ops.append(Poll(mm.reg("STATUS"), STATUS.mask("busy", "done"), STATUS.pack(done=1),
                        fail_mask=STATUS.mask("error"),
                        fail_why=f"STATUS.error: {STATUS.doc('error')}"))
        return ops

    def collect(self) -> list[Op]:
        """Reads of the outputs (in the model's order) and of every counter of the last run."""
        mm, n = self.map, self.config.n_pe
        bank = self.result_bank
        # model output i sits at position pos[i] of the last layer (the image's row placement)
        ops: list[Op] = [Read(mm.act(p % n, bank, p // n), ("y", i))
                         for i, p in enumerate(self.image.output_positions().tolist())]
        for l in range(self.n_layers):
            ops.append(Read(mm.layer_counter(l, "cycles"), ("cycles", l)))
            ops.append(Read(mm.layer_counter(l, "broadcasts"), ("broadcasts", l)))
            for k in range(n):
                ops.append(Read(mm.pe_counter(k, l, "busy"), ("busy", l, k)))
                ops.append(Read(mm.pe_counter(k, l, "stall"), ("stall", l, k)))
        ops.append(Read(mm.reg("CYCLES"), ("run_cycles",)))
        return ops

    def decode(self, values: dict) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Outputs (int16 ``(n_out,)``) and per-layer counters from :meth:`collect`'s reads:
        ``[{"cycles", "broadcasts", "busy": [per PE], "stall": [per PE]}, ...]``."""
        y = np.array([_s16(values[("y", i)]) for i in range(self.image.n_out)], dtype=np.int16)
        n = self.config.n_pe
        counters = [{
            "cycles": int(values[("cycles", l)]),
            "broadcasts": int(values[("broadcasts", l)]),
            "busy": [int(values[("busy", l, k)]) for k in range(n)],
            "stall": [int(values[("stall", l, k)]) for k in range(n)],
        } for l in range(self.n_layers)]
        return y, counters


async def check_config(bus: HostBus, config: EIEConfig, *,
                       hint: str = "the design was built for another configuration") -> None:
    """Raise :class:`EieError` unless the core behind ``bus`` answers with the EIE's ID and
    ``config``'s PE count and FIFO depth (``CONFIG0``); ``hint`` ends the second message."""
    mm = MemoryMap(config)
    ident = await bus.read(mm.reg("ID"))
    if ident != EIE_ID:
        raise EieError(f"the core answered ID {ident:#010x}, not the EIE's {EIE_ID:#010x}: is "
                       f"this an EIE bitstream?")
    cfg = CONFIG0.unpack(await bus.read(mm.reg("CONFIG0")))
    if (cfg["n_pe"], cfg["fifo_depth"]) != (config.n_pe, config.fifo_depth):
        raise EieError(f"the core has {cfg['n_pe']} PEs and FIFO depth {cfg['fifo_depth']}, but "
                       f"the configuration says {config.n_pe} and {config.fifo_depth}: {hint}")
