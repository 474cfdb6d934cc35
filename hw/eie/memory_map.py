"""The host memory map of the EIE accelerator (word addresses, 32-bit words).

An address splits into ``region | pe | offset`` (most to least significant): ``REGION_BITS``
region bits, ``pe_bits`` PE bits (0 for one PE) and ``off_bits`` offset bits. Per-PE regions
address PE ``pe``'s memory at ``offset``; the global region (0) ignores the split and uses the
``pe | offset`` bits as one offset. See ``docs/eie-hardware.md`` for the table.

======  =========  ==============================================================================
region  name       content (per PE unless global)
======  =========  ==============================================================================
0       global     control/status registers, per-layer counters, the layer table
1       ptr        pointer word ``P`` (all layers back to back): the column's absolute entry
                   address and three flags (:func:`pointer_words`)
2       spmat      sparse-matrix word ``w``: offset ``2w`` low half, ``2w + 1`` high half
3       bias       bias slot ``s``, int16 in the low half (sign-extended on read)
4       act        activation file ``bank`` index ``i``: offset ``bank << act_bits | i``; a write
                   stores a raw int16 input, a read returns the int16 activation (through the
                   write-back of the layer that produced the bank)
5       pecnt      per layer ``l``: offset ``2l`` busy cycles, ``2l + 1`` FIFO-full stall cycles
======  =========  ==============================================================================

The host may access memories and the layer table only while the accelerator is idle
(``STATUS.busy == 0``); writes while busy are ignored, reads while busy return undefined data.
Registers (control, status, counters) are always readable.

Packed words (``CTRL``, ``CONFIG0``, ``CONFIG1``, ``STATUS``, the layer table's ``flags``) are
declared once here as :class:`eie.hw.common.regs.RegisterLayout` (:data:`CTRL`,
:data:`CONFIG0`, :data:`CONFIG1`, :data:`STATUS`, :data:`LAYER_FLAGS`): the CCU decodes and
builds them through their ``StructLayout`` views, the host program packs and unpacks them, and
the register tables below take their text from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..common.regs import RegisterLayout
from .config import W_FRAC_BITS, EIEConfig

__all__ = ["MemoryMap", "Region", "pointer_words", "PTR_FLAGS", "REGION_BITS",
           "ACT_READ_LATENCY", "ROUND_SLOTS",
           "BCAST_IN_FLIGHT", "READ_LATENCY", "EIE_ID", "REGS", "REG_FIELDS", "LAYER_FIELDS",
           "LAYER_STRIDE", "CODEBOOK_OFFSET", "LAYER_COUNTERS", "PE_COUNTERS", "CTRL", "CONFIG0",
           "CONFIG1", "STATUS", "LAYER_FLAGS", "HOST_WRITTEN"]

REGION_BITS = 3
#: Attributes of a PE memory that only the host writes (pointers, sparse matrix, bias): a read
#: of it never meets a write of the same cycle whose result is used (the bus never strobes a
#: read and a write together, a PE delays both alike, the datapath reads only outside host mode
#: and the host writes only in it; a read the port makes in a write's cycle is dropped), so
#: Yosys need not build the read-before-write result of a collision (``no_rw_check``; it
#: otherwise adds flip-flops and multiplexers behind such a memory: 6 FF and 5 LUT4 fewer at
#: 1 PE, ``bench/eie_fmax.py --pes 1``). Simulation is unchanged.
HOST_WRITTEN = {"no_rw_check": 1}
#: Cycles from an activation read address to its int16 value (the PE's activation read
#: pipeline: memory read, a register, bias addition, two write-back stages; see ``accum.py``).
ACT_READ_LATENCY = 5
#: The LNZD's round slots (its buffer of ``ACT_READ_LATENCY + 1`` rounds read ahead and the
#: scanned round; ``LNZD.slots``); every PE keeps its lane's values of them (``round_slots.py``).
ROUND_SLOTS = ACT_READ_LATENCY + 2
#: Broadcasts the controller may have decided that a PE's registered FIFO fill does not show yet
#: (the fill registered in the PE, its OR over the PEs registered in the controller, the
#: broadcast registered before it reaches the FIFOs: see :mod:`eie.hw.eie.act_fifo`).
BCAST_IN_FLIGHT = 2
#: Host bus read latency (``r_stb`` to ``r_ack``), the same for every address: the registered
#: request, the request registered again in every PE, the activation read pipeline, the
#: addressed PE's activation registered, the registered answer.
READ_LATENCY = ACT_READ_LATENCY + 4
EIE_ID = 0x45494531      # "EIE1"


class Region:
    GLOBAL = 0
    PTR = 1
    SPMAT = 2
    BIAS = 3
    ACT = 4
    PECNT = 5


# Packed registers: their fields, least significant first (``_`` names: reserved, read 0).
#: ``CTRL`` (write): ``start`` = 1 while idle starts a run of ``N_LAYERS`` layers on bank 0.
CTRL = RegisterLayout(start=1)
#: ``CONFIG0``: the PE count and the activation-FIFO depth the design was built with.
CONFIG0 = RegisterLayout(n_pe=9, _reserved=7, fifo_depth=16)
#: ``CONFIG1``: layer-table entries, accumulator bits, activation fraction bits.
CONFIG1 = RegisterLayout(max_layers=8, acc_bits=8, act_frac=4)
#: ``STATUS``: ``done`` is sticky until the next start; ``bank`` is the activation file that
#: holds the output; ``error``: the last start was refused (``N_LAYERS`` 0 or above max_layers).
STATUS = RegisterLayout(busy=1, done=(1, "sticky until the next start"),
                        bank=(1, "the activation file that holds the output"),
                        error=(1, "N_LAYERS was 0 or above max_layers at start"))
#: A layer descriptor's ``flags`` word.
LAYER_FLAGS = RegisterLayout(w_frac=W_FRAC_BITS, _reserved=8 - W_FRAC_BITS, relu=1, has_bias=1)

#: The registers that are packed words, by name.
REG_FIELDS: dict[str, RegisterLayout] = {"CONFIG0": CONFIG0, "CONFIG1": CONFIG1, "CTRL": CTRL,
                                         "STATUS": STATUS}

# Global registers: name -> (offset, access, description)
REGS: dict[str, tuple[int, str, str]] = {
    "ID": (0x0, "r", "constant 0x45494531 ('EIE1')"),
    "CONFIG0": (0x1, "r", CONFIG0.describe()),
    "CONFIG1": (0x2, "r", CONFIG1.describe()),
    "CTRL": (0x3, "w", f"write {CTRL.describe()} = 1 while idle: start a run of N_LAYERS "
                       "layers on bank 0"),
    "N_LAYERS": (0x4, "rw", "number of layers to run (1..max_layers)"),
    "STATUS": (0x5, "r", STATUS.describe()),
    "CYCLES": (0x6, "r", "cycles of the last run, from start to done"),
}

LAYER_COUNTERS = ("cycles", "broadcasts")
PE_COUNTERS = ("busy", "stall")

# Layer table: descriptor l at layer_base + LAYER_STRIDE * l
LAYER_FIELDS: dict[str, tuple[int, str]] = {
    "n_in": (0, "inputs"),
    "n_out": (1, "outputs"),
    "ptr_base": (2, "first pointer"),
    "entry_base": (3, "first entry (an entry index, a multiple of 8)"),
    "bias_base": (4, "first bias slot"),
    "flags": (5, LAYER_FLAGS.describe()),
}
LAYER_STRIDE = 32
CODEBOOK_OFFSET = 16     # codebook entry c at descriptor offset 16 + c (int16, low half)


def _bits(n: int) -> int:
    """Bits to address ``n`` items (0 for one)."""
    return max(0, (n - 1).bit_length())


#: The flags of a pointer memory word, from bit ``ptr_bits`` up, in this order (the word's layout
#: is :func:`eie.hw.eie.ptr_read.ptr_word_layout`).
PTR_FLAGS = ("nonempty", "single", "two")


def pointer_words(config: EIEConfig, layers, ptr) -> list[int]:
    """The pointer memory's words for one PE's pointers
    ``ptr`` (the image's, every layer's back to back) and the image's ``layers`` (each with
    ``n_in``, ``ptr_base``, ``entry_base``): pointer ``q`` of a layer becomes ``entry_base +
    p[q]``, with the flags of column ``q`` for ``q < n_in`` (none on the layer's last pointer,
    which only ends a column); a pointer outside every layer is kept as it is, without flags.
    A word is ``addr | nonempty << ptr_bits | single << ptr_bits + 1 | two << ptr_bits + 2``
    (``addr`` the absolute entry address; the flags say whether the column starting at the
    pointer has entries in this PE, one, two): the host computes them as it loads, so the
    pointer stage takes a column's range and flags straight from the block RAM's word, with no
    adder, span or comparison between the RAM and the pointer queue (a column costs a cycle
    less than with issue 18's fourth register of the stage, which computed them). The hardware
    trusts the flags: words not made here give undefined results.
    Raises :class:`ValueError` when an address does not fit ``config.ptr_bits``."""
    c = config
    words = np.asarray(ptr, dtype=np.int64).reshape(-1)
    out = words.copy()
    lim = 1 << c.ptr_bits
    for l, d in enumerate(layers):
        base, n_in, eb = int(d.ptr_base), int(d.n_in), int(d.entry_base)
        seg = words[base:base + n_in + 1]
        addr = eb + seg
        bad = np.flatnonzero((addr < 0) | (addr >= lim))
        if bad.size:
            q = int(bad[0])
            raise ValueError(f"layer {l} pointer {q}: entry address {eb} + {int(seg[q])} = "
                             f"{int(addr[q])} does not fit the pointer memory's {c.ptr_bits} "
                             f"bits (entries 0..{lim - 1}); build the core with a larger "
                             f"spmat_depth")
        span = np.diff(seg)                         # column q's entries, q < n_in
        flag = {"nonempty": span != 0, "single": span == 1, "two": span == 2}
        flags = sum(flag[name].astype(np.int64) << i for i, name in enumerate(PTR_FLAGS))
        out[base:base + n_in + 1] = addr
        out[base:base + n_in] |= flags << c.ptr_bits
    return [int(v) for v in out]


@dataclass(frozen=True)
class MemoryMap:
    """Addresses of everything the host reaches, for one :class:`EIEConfig`."""

    config: EIEConfig

    # -- geometry --------------------------------------------------------------------------
    @property
    def pe_bits(self) -> int:
        return _bits(self.config.n_pe)

    @property
    def act_bits(self) -> int:
        """Index bits of one activation file (the bank bit sits above them)."""
        return _bits(self.config.act_depth)

    @property
    def counter_base(self) -> int:
        """Global offset of layer 0's counters (2 words a layer)."""
        return 0x10

    @property
    def layer_base(self) -> int:
        """Global offset of layer 0's descriptor: a power of two above the counters."""
        end = self.counter_base + len(LAYER_COUNTERS) * self.config.max_layers
        return 1 << max(5, _bits(end))

    @property
    def global_span(self) -> int:
        return self.layer_base + LAYER_STRIDE * self.config.max_layers

    @property
    def off_bits(self) -> int:
        c = self.config
        need = max(_bits(c.ptr_depth), _bits(2 * c.spmat_depth), _bits(c.bias_depth),
                   self.act_bits + 1, _bits(len(PE_COUNTERS) * c.max_layers), 1)
        return max(need, _bits(self.global_span) - self.pe_bits)

    @property
    def addr_width(self) -> int:
        return REGION_BITS + self.pe_bits + self.off_bits

    # -- addresses -------------------------------------------------------------------------
    def _pe_addr(self, region: int, pe: int, offset: int) -> int:
        if not 0 <= pe < self.config.n_pe:
            raise IndexError(f"PE {pe} out of range (0..{self.config.n_pe - 1})")
        if not 0 <= offset < (1 << self.off_bits):
            raise IndexError(f"offset {offset} out of range for region {region}")
        return (region << (self.pe_bits + self.off_bits)) | (pe << self.off_bits) | offset

    def _global_addr(self, offset: int) -> int:
        return offset

    def reg(self, name: str) -> int:
        return self._global_addr(REGS[name][0])

    def layer_counter(self, layer: int, name: str) -> int:
        self._check_layer(layer)
        return self._global_addr(self.counter_base + len(LAYER_COUNTERS) * layer
                                 + LAYER_COUNTERS.index(name))

    def layer_field(self, layer: int, name: str) -> int:
        self._check_layer(layer)
        return self._global_addr(self.layer_base + LAYER_STRIDE * layer + LAYER_FIELDS[name][0])

    def codebook(self, layer: int, index: int) -> int:
        self._check_layer(layer)
        if not 0 <= index < 16:
            raise IndexError(f"codebook index {index} out of range (0..15)")
        return self._global_addr(self.layer_base + LAYER_STRIDE * layer + CODEBOOK_OFFSET + index)

    def ptr(self, pe: int, index: int) -> int:
        if not 0 <= index < self.config.ptr_depth:
            raise IndexError(f"pointer {index} out of range (0..{self.config.ptr_depth - 1})")
        return self._pe_addr(Region.PTR, pe, index)

    def spmat(self, pe: int, word: int, half: int) -> int:
        if not 0 <= word < self.config.spmat_depth:
            raise IndexError(f"sparse-matrix word {word} out of range (0..{self.config.spmat_depth - 1})")
        return self._pe_addr(Region.SPMAT, pe, 2 * word + (half & 1))

    def bias(self, pe: int, slot: int) -> int:
        if not 0 <= slot < self.config.bias_depth:
            raise IndexError(f"bias slot {slot} out of range (0..{self.config.bias_depth - 1})")
        return self._pe_addr(Region.BIAS, pe, slot)

    def act(self, pe: int, bank: int, index: int) -> int:
        if not 0 <= index < self.config.act_depth:
            raise IndexError(f"activation index {index} out of range (0..{self.config.act_depth - 1})")
        return self._pe_addr(Region.ACT, pe, ((bank & 1) << self.act_bits) | index)

    def pe_counter(self, pe: int, layer: int, name: str) -> int:
        self._check_layer(layer)
        return self._pe_addr(Region.PECNT, pe, len(PE_COUNTERS) * layer + PE_COUNTERS.index(name))

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.config.max_layers:
            raise IndexError(f"layer {layer} out of range (0..{self.config.max_layers - 1})")

    # -- description -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The whole map (for ``eie.json``): geometry, regions, registers, layer table."""
        c = self.config
        shift = self.pe_bits + self.off_bits
        return {
            "word_bits": 32,
            "addr_width": self.addr_width,
            "region_bits": REGION_BITS,
            "pe_bits": self.pe_bits,
            "off_bits": self.off_bits,
            "address": "region << (pe_bits + off_bits) | pe << off_bits | offset",
            "read_latency": READ_LATENCY,
            "access_rule": "memories and the layer table only while STATUS.busy == 0",
            "regions": {
                "global": {"region": Region.GLOBAL, "base": 0,
                           "content": "registers, layer counters, layer table"},
                "ptr": {"region": Region.PTR, "base": Region.PTR << shift, "depth": c.ptr_depth,
                        "bits": c.ptr_word_bits, "offset": "pointer index",
                        "word": "addr (ptr_bits: layer entry_base + pointer), nonempty, single, "
                                "two (flags of the column starting here)",
                        "fields": self._ptr_fields(),
                        "flags_rule": "a layer's last pointer (index n_in) carries no flags; the "
                                      "hardware trusts them: a wrong flag gives wrong results "
                                      "or a run that never ends"},
                "spmat": {"region": Region.SPMAT, "base": Region.SPMAT << shift,
                          "depth": c.spmat_depth, "bits": 64,
                          "offset": "2 * word + half (0 = bits 31:0, 1 = bits 63:32)"},
                "bias": {"region": Region.BIAS, "base": Region.BIAS << shift,
                         "depth": c.bias_depth, "bits": 16, "offset": "bias slot",
                         "read": "int16, sign-extended to 32 bits"},
                "act": {"region": Region.ACT, "base": Region.ACT << shift, "depth": c.act_depth,
                        "bits": 16, "offset": f"bank << {self.act_bits} | index",
                        "index_bits": self.act_bits, "input_bank": 0,
                        "read": "int16 through the write-back of the layer that produced the "
                                "bank, sign-extended to 32 bits"},
                "pecnt": {"region": Region.PECNT, "base": Region.PECNT << shift,
                          "offset": "2 * layer + (0 busy, 1 stall)", "counters": list(PE_COUNTERS)},
            },
            "registers": {k: {"addr": v[0], "access": v[1], "doc": v[2],
                              **({"fields": REG_FIELDS[k].to_json()} if k in REG_FIELDS else {})}
                          for k, v in REGS.items()},
            "layer_counters": {"base": self.counter_base, "stride": len(LAYER_COUNTERS),
                               "fields": list(LAYER_COUNTERS)},
            "layer_table": {"base": self.layer_base, "stride": LAYER_STRIDE,
                            "fields": {k: {"offset": v[0], "doc": v[1],
                                           **({"fields": LAYER_FLAGS.to_json()}
                                              if k == "flags" else {})}
                                       for k, v in LAYER_FIELDS.items()},
                            "codebook_offset": CODEBOOK_OFFSET},
        }

    def _ptr_fields(self) -> dict[str, dict[str, Any]]:
        """The pointer word's fields (``lsb``, ``width``, ``doc``), from the layout the pointer
        stage reads the word with (:func:`eie.hw.eie.ptr_read.ptr_word_layout`)."""
        from .ptr_read import ptr_word_layout

        docs = {"addr": "absolute entry address: the layer's entry_base + the image's pointer",
                "nonempty": "the column starting here has entries in this PE (next pointer != "
                            "this one)",
                "single": "exactly one entry (next pointer - this one == 1)",
                "two": "exactly two entries (next pointer - this one == 2)"}
        return {name: {"lsb": f.offset, "width": f.width, "doc": docs[name]}
                for name, f in ptr_word_layout(self.config)}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def describe(self) -> dict[str, Any]:
        """Parameters and memory map together (the content of ``eie.json``)."""
        return {"core": "eie", "params": self.config.to_json(), "memory_map": self.to_json()}
