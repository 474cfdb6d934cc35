"""Backdoor load of an EIE image: deposit the pointer and sparse-matrix SRAM words straight
into the simulated memories instead of writing them one bus cycle at a time.

The front-door load (:meth:`eie.hw.eie.host_program.HostProgram.load`) writes every pointer
and every 32-bit half of every sparse-matrix word through the host bus, one word a cycle. At
64 PEs and the paper's layer sizes that is millions of cycles of a large design (about 1,300
words a second on Verilator here), while the layer itself runs in tens of thousands. A
backdoor load keeps the same program and splits it:

* the writes to the pointer and sparse-matrix regions (the bulk) are decoded, with the memory
  map, into the words they would leave in each PE's memories: pointer ``p`` in the even bank
  (``p`` even) or the odd bank at ``p >> 1``, truncated to ``ptr_word_bits`` as the write port does;
  half ``h`` of sparse-matrix word ``w`` in ``mem[2w + h]`` (the SRAM keeps 32-bit halves);
* every other write (layer table, codebooks, ``N_LAYERS``, biases) stays on the bus, in order.

The EIE job of the cocotb testbench (:class:`eie.sim.eie_run.EieCore`, run by
:mod:`eie.sim.cocotb_tb`) deposits the words through the simulator's VPI
(no-delay ``vpi_put_value`` on the words of ``pe<k>.ptr.even``, ``pe<k>.ptr.odd`` and
``pe<k>.spm.mem``; :class:`Vpi`; the Verilator build makes every memory public, and little else:
:func:`eie.sim.verilog.verilator_source`), then reads a sample of them back through the host bus
(:attr:`BackdoorLoad.checks`: in each PE's pointer and sparse-matrix regions, the first and the
last word the program writes and evenly spaced ones between, expected as the program wrote them)
and stops with an error if one differs, so a decode that went wrong cannot pass unseen. The
run itself, and everything it measures, is the same as after a front-door load; the tests
(`tests/test_backdoor.py`) compare the two on both simulators.
"""

from __future__ import annotations

import ctypes
from array import array
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..hw.eie.config import EIEConfig
from ..hw.eie.host_program import Op, Write
from ..hw.eie.memory_map import MemoryMap, Region

__all__ = ["LOADS", "BackdoorLoad", "split_load", "memory_paths", "deposit", "verify_reads",
           "Vpi", "CHECKS_PER_MEMORY"]

#: How an image gets into the design: ``bus`` (the host program, every word a bus write) or
#: ``backdoor`` (bulk memories deposited through the simulator, the rest on the bus).
LOADS = ("bus", "backdoor")
#: Bus words of each PE's pointer and sparse-matrix regions read back after a backdoor load,
#: twice this many a region (the first and last written and evenly spaced ones between).
CHECKS_PER_MEMORY = 6


def memory_paths(pe: int) -> dict[str, str]:
    """Hierarchical names (below the top level) of PE ``pe``'s bulk memories in the Verilog."""
    return {"ptr_even": f"pe{pe}.ptr.even", "ptr_odd": f"pe{pe}.ptr.odd",
            "spmat": f"pe{pe}.spm.mem"}


@dataclass
class BackdoorLoad:
    """A load program split for a backdoor load.

    ``front``: the writes that stay on the bus, in program order. ``memories``: hierarchical
    memory name -> (indices, words), the words the bulk writes leave there (each index once, in
    increasing order). ``checks``: ``(bus address, value a read returns)`` pairs to verify the
    deposit through the front door.
    """

    front: list[Op]
    memories: dict[str, tuple[np.ndarray, list[int]]] = field(default_factory=dict)
    checks: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n_words(self) -> int:
        """Memory words deposited (a sparse-matrix word's two 32-bit halves count as two)."""
        return sum(len(idx) for idx, _ in self.memories.values())


def split_load(config: EIEConfig, ops: Sequence[Op]) -> BackdoorLoad:
    """Split the load program ``ops`` for ``config`` into bus writes and memory deposits.

    Raises :class:`ValueError` for an operation in a bulk region that is not a write (a load
    program only writes).
    """
    mm = MemoryMap(config)
    shift = mm.pe_bits + mm.off_bits
    off_mask = (1 << mm.off_bits) - 1
    pe_mask = (1 << mm.pe_bits) - 1
    ptr_mask = (1 << config.ptr_word_bits) - 1
    front: list[Op] = []
    # per PE: pointer banks {index: value}, sparse-matrix halves {index: value}
    ptr_banks: list[tuple[dict[int, int], dict[int, int]]] = [({}, {}) for _ in range(config.n_pe)]
    spmat: list[dict[int, int]] = [{} for _ in range(config.n_pe)]
    # positions in ``ops`` of the bulk writes of each (PE, region), for the read-back sample
    bulk: dict[tuple[int, int], array] = {}
    for n, op in enumerate(ops):
        region = op.addr >> shift
        if region not in (Region.PTR, Region.SPMAT):
            front.append(op)
            continue
        if not isinstance(op, Write):
            raise ValueError(f"{op!r} reads a bulk memory region inside a load program")
        pe, off = (op.addr >> mm.off_bits) & pe_mask, op.addr & off_mask
        bulk.setdefault((pe, region), array("q")).append(n)
        if region == Region.PTR:
            ptr_banks[pe][off & 1][off >> 1] = op.data & ptr_mask
        else:
            spmat[pe][off] = op.data & 0xFFFF_FFFF     # the SRAM keeps 32-bit halves
    out = BackdoorLoad(front=front)
    for pe in range(config.n_pe):
        paths = memory_paths(pe)
        for bank, name in ((0, "ptr_even"), (1, "ptr_odd")):
            words = ptr_banks[pe][bank]
            if words:
                idx = np.array(sorted(words), dtype=np.int64)
                out.memories[paths[name]] = (idx, [words[i] for i in idx.tolist()])
        if spmat[pe]:
            idx = np.array(sorted(spmat[pe]), dtype=np.int64)
            out.memories[paths["spmat"]] = (idx, [spmat[pe][i] for i in idx.tolist()])
    # The read-back sample comes from the program's own writes (address, data as the memory
    # keeps it), not from the decoded words, so a wrong decode cannot agree with itself.
    for (pe, region), positions in sorted(bulk.items()):
        mask = ptr_mask if region == Region.PTR else 0xFFFF_FFFF
        for n in _sample(np.frombuffer(positions, dtype=np.int64), 2 * CHECKS_PER_MEMORY):
            out.checks.append((ops[n].addr, ops[n].data & mask))
    return out


def _sample(items: np.ndarray, n: int) -> list[int]:
    """The first, the last and evenly spaced elements of ``items`` (at most ``n``)."""
    if len(items) <= n:
        return items.tolist()
    picks = np.linspace(0, len(items) - 1, n).round().astype(np.int64)
    return sorted(set(items[picks].tolist()))


def deposit(load: BackdoorLoad, top: str = "eie_top") -> None:
    """Write every word of ``load.memories`` into the simulated design whose top-level instance
    is ``top``, with no-delay VPI puts (:class:`Vpi`). Call it from a cocotb test while the
    design is idle and out of reset."""
    vpi = Vpi()
    for path, (idx, words) in load.memories.items():
        vpi.write_words(f"{top}.{path}", idx, words)


class _VecVal(ctypes.Structure):       # IEEE 1364 s_vpi_vecval
    _fields_ = [("aval", ctypes.c_int32), ("bval", ctypes.c_int32)]


class _ValueUnion(ctypes.Union):
    _fields_ = [("str", ctypes.c_char_p), ("integer", ctypes.c_int32),
                ("real", ctypes.c_double), ("vector", ctypes.POINTER(_VecVal))]


class _Value(ctypes.Structure):        # IEEE 1364 s_vpi_value
    _fields_ = [("format", ctypes.c_int32), ("value", _ValueUnion)]


class Vpi:
    """The IEEE 1364 VPI calls a deposit needs, called through :mod:`ctypes` inside the
    simulator process that runs the cocotb test (Verilator and Icarus both export them).

    cocotb's own handles do the same job, but each memory word then becomes a Python object and
    a GPI object that is never freed (about 2 KB a word: gigabytes at 64 PEs and full-size
    layers) and costs tens of microseconds; here a word is three C calls (about 3 us) and its
    handle is released at once.
    """

    VPI_SIZE = 4            # vpiSize
    VPI_VECTOR_VAL = 9      # vpiVectorVal
    VPI_NO_DELAY = 1        # vpiNoDelay

    def __init__(self) -> None:
        lib = ctypes.CDLL(None)
        try:
            self._by_name = lib.vpi_handle_by_name
            self._by_index = lib.vpi_handle_by_index
            self._put = lib.vpi_put_value
            self._get = lib.vpi_get
            self._free = lib.vpi_free_object
        except AttributeError as exc:
            raise AssertionError(f"this simulator does not export a VPI call ({exc}): the "
                                 "backdoor load cannot run here (use --load bus)") from None
        vp = ctypes.c_void_p
        self._by_name.restype, self._by_name.argtypes = vp, [ctypes.c_char_p, vp]
        self._by_index.restype, self._by_index.argtypes = vp, [vp, ctypes.c_int32]
        self._put.restype = vp
        self._put.argtypes = [vp, ctypes.POINTER(_Value), vp, ctypes.c_int32]
        self._get.restype, self._get.argtypes = ctypes.c_int32, [ctypes.c_int32, vp]
        self._free.argtypes = [vp]

    def write_words(self, name: str, idx: np.ndarray, words: Sequence[int]) -> None:
        """``name[i] = word`` for each pair, at once (nothing else may write ``name`` in this
        time step)."""
        mem = self._by_name(name.encode(), None)
        if not mem:
            raise AssertionError(f"no memory {name!r} in the simulated design: the Verilog "
                                 "hierarchy is not the one the backdoor load expects "
                                 "(eie.sim.backdoor.memory_paths; use --load bus)")
        first = self._by_index(mem, 0)
        if not first:
            raise AssertionError(f"{name!r} is not an indexable memory")
        width = self._get(self.VPI_SIZE, first)
        self._free(first)
        chunks = max(1, -(-width // 32))
        vec = (_VecVal * chunks)()
        value = _Value(format=self.VPI_VECTOR_VAL)
        value.value.vector = ctypes.cast(vec, ctypes.POINTER(_VecVal))
        by_index, put, free, ref = self._by_index, self._put, self._free, ctypes.byref(value)
        for i, w in zip(idx.tolist(), words):
            if w >> width:
                raise ValueError(f"word {w:#x} for {name}[{i}] is wider than {width} bits")
            for c in range(chunks):
                part = (w >> (32 * c)) & 0xFFFF_FFFF
                vec[c].aval = part - (1 << 32) if part >> 31 else part
            e = by_index(mem, i)
            if not e:
                raise AssertionError(f"{name} has no word {i}: the design is too small for "
                                     "the image")
            put(e, ref, None, self.VPI_NO_DELAY)
            free(e)
        self._free(mem)


def verify_reads(checks: Sequence[tuple[int, int]], values: Sequence[int]) -> None:
    """Raise :class:`AssertionError` naming the first read-back that differs."""
    for (addr, want), got in zip(checks, values):
        if got != want:
            raise AssertionError(f"backdoor load check: bus read at {addr:#x} gives {got:#x}, "
                                 f"the image has {want:#x}; the deposit went to the wrong place "
                                 "(use --load bus, and report it)")
