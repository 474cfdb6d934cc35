"""The host-bus memory map of the BNN top (:mod:`eie.hw.bnn.top`), as plain, JSON-able Python.

Word addresses on a 32-bit bus (:class:`eie.hw.common.bus.BusSignature`). Two spaces, told apart
by the top address bit ``mem_bit``:

Registers (``addr < 2**mem_bit``); reads of unlisted addresses answer 0:

====  ============  ===  ================================================================
addr  name          r/w  meaning
====  ============  ===  ================================================================
0     ID            r    ``0x424E4E31`` ("BNN1")
1     CTRL          rw   bit 0 RUN (reset 1): the network takes samples from the input FIFO;
                         bit 1 CLEAR (write 1, reads 0): zero the counters and ERRORS
2     STATUS        r    bits 15..0: free sample slots in the input FIFO;
                         bits 31..16: complete results waiting in the output FIFO
3     IN_DATA       w    next 32 input bits of the sample being written (``in_words`` writes
                         a sample, element ``k`` at bit ``k % 32`` of write ``k // 32``); the
                         first write takes a free sample slot of the input FIFO (none free:
                         the whole sample is dropped, ERRORS bit 0)
4     OUT_DATA      r    next 32-bit word of the oldest result; the last read pops it.
                         Output layer without thresholds: ``out_words`` = n_classes reads,
                         class order, signed ``dot``. Thresholded output layer (built with
                         ``last_thresholded``): ``out_words = ceil(n_classes / 32)`` reads,
                         output ``k`` at bit ``k % 32`` of read ``k // 32`` (as IN_DATA)
5     ERRORS        r    bit 0: a sample was written into a full input FIFO (dropped);
                         bit 1: OUT_DATA was read with no result waiting (answered 0)
8     CYCLES        r    clock cycles since CLEAR
9     SAMPLES_IN    r    samples the network started taking (first input word) since CLEAR
10    SAMPLES_OUT   r    results the network delivered since CLEAR
11    LATENCY       r    cycles per sample: first input word taken to result delivered,
                         measured on the last sample that entered an empty network
12    II_LAST       r    cycles between the last two results delivered
13    II_MIN        r    smallest interval between two results since CLEAR (0xFFFFFFFF: none)
14    STALL         r    cycles the network's output was held up by a full output FIFO
15    T_FIRST_OUT   r    CYCLES when the first result since CLEAR was delivered
16    T_LAST_OUT    r    CYCLES when the last result was delivered
24    N_IN          r    input bits per sample
25    N_CLASSES     r    outputs per sample
26    N_LAYERS      r    layers
27    II_ANALYTIC   r    ``max(nf * sf)`` of the folding built in (``nf * sf * k`` for a layer
                         that takes k-bit inputs bit-serially)
28    IN_DEPTH      r    input FIFO depth (samples)
29    OUT_DEPTH     r    output FIFO depth (results)
30    CONFIG_CRC    r    CRC-32 of the topology text (``shape`` and ``folding``): a host checks it
                         before loading an image into this bitstream
32+l  STALL_L{l}    r    cycles layer ``l``'s pipeline held because its output register was
                         full and not read (back-pressure inside the network), since CLEAR
====  ============  ===  ================================================================

The bit fields of CTRL, STATUS and ERRORS are declared once, below, as
:class:`eie.hw.common.regs.RegisterLayout` (:data:`CTRL`, :data:`STATUS`, :data:`ERRORS`): the
top decodes and builds them through their ``StructLayout`` views, the host program packs and
unpacks them, and :meth:`BnnMemoryMap.to_json` lists them (``fields``). Reads answer with
``r_ack`` :data:`READ_LATENCY` (1) cycle after ``r_stb``.

Memories (``addr >= 2**mem_bit``, write-only, reads answer 0): the address is the bit fields
``1 @ mem_bit | layer @ layer_shift | kind @ kind_shift | pe @ pe_shift | entry @ entry_shift |
chunk``. ``kind`` 0 is weights, 1 thresholds; ``entry`` is the word's line in the image file; a
word wider than 32 bits is written as ``chunks`` writes, lowest 32 bits first (chunk 0), and
takes effect with its last chunk.

Ternary (W2) layers (``weight_bits``, docs/ARCHITECTURE.md): a core with at least one W2 layer
has a 2-bit ``kind`` field and kind 2, the nonzero masks of its W2 layers (laid out as the
weights, which then hold the signs); a W2 output layer of dots has kind 1 words too, each
neuron's nonzero count ``K'``. CONFIG_CRC's text gets ``"|weights W1,W2,..."`` appended. A core
without a W2 layer has exactly the map above.

k-bit activations: CONFIG_CRC's text gets ``"|acts A2,A2,A1"`` appended, and
``"|consume serial,parallel,serial"`` (every layer's mode) when a layer takes its input bit
planes in parallel (``LayerFold.consume``); the JSON map's layer entries say ``"consume":
"parallel"`` for those layers. II_ANALYTIC counts the planes of serial layers only.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Sequence

from .folding import LayerFold, consume_text, fold_consume, folding_text
from .words import WEIGHT_BITS, act_bits_text, any_ternary, weight_bits_text
from ..common.regs import RegisterLayout, fields_json
from ...common.errors import EieError

__all__ = ["BnnMemoryMap", "REGISTERS", "REG_FIELDS", "ID_VALUE", "READ_LATENCY", "CTRL", "STATUS",
           "ERRORS", "CTRL_RUN", "CTRL_CLEAR", "config_crc"]

ID_VALUE = 0x424E4E31
#: Host bus read latency (``r_stb`` to ``r_ack``), the same for every address.
READ_LATENCY = 1

#: CTRL: ``run`` (reset 1) lets the network take samples from the input FIFO; writing ``clear``
#: 1 zeroes the counters and ERRORS (it reads 0).
CTRL = RegisterLayout(run=1, clear=1)
#: STATUS: free sample slots in the input FIFO, complete results waiting in the output FIFO.
STATUS = RegisterLayout(in_free=16, out_count=16)
#: ERRORS (sticky until CLEAR): a sample written into a full input FIFO (dropped); OUT_DATA read
#: with no result waiting (answered 0).
ERRORS = RegisterLayout(overflow=(1, "input overflow"), underflow=(1, "output underflow"))
#: The registers that are packed words, by name.
REG_FIELDS: dict[str, RegisterLayout] = {"CTRL": CTRL, "STATUS": STATUS, "ERRORS": ERRORS}

CTRL_RUN = CTRL.mask("run")
CTRL_CLEAR = CTRL.mask("clear")

REGISTERS: dict[str, int] = {
    "ID": 0, "CTRL": 1, "STATUS": 2, "IN_DATA": 3, "OUT_DATA": 4, "ERRORS": 5,
    "CYCLES": 8, "SAMPLES_IN": 9, "SAMPLES_OUT": 10, "LATENCY": 11, "II_LAST": 12,
    "II_MIN": 13, "STALL": 14, "T_FIRST_OUT": 15, "T_LAST_OUT": 16,
    "N_IN": 24, "N_CLASSES": 25, "N_LAYERS": 26, "II_ANALYTIC": 27, "IN_DEPTH": 28,
    "OUT_DEPTH": 29, "CONFIG_CRC": 30,
}

#: The counters, in the order a host reads them for ``--stats``.
COUNTERS = ["CYCLES", "SAMPLES_IN", "SAMPLES_OUT", "LATENCY", "II_LAST", "II_MIN", "STALL",
            "T_FIRST_OUT", "T_LAST_OUT"]


def _bits(n: int) -> int:
    """Bits to index ``n`` things (0 for one)."""
    return max(n - 1, 0).bit_length()


def config_crc(folds: Sequence[LayerFold], last_thresholded: bool = False,
               weight_bits: Sequence[int] | None = None) -> int:
    """CRC-32 of ``"shape|folding"`` (``"|bits"`` appended when the output layer is
    thresholded, then ``"|weights W1,W2,..."`` when a layer is ternary, ``"|acts A2,A1,..."``
    when a layer has k-bit activations, ``"|consume serial,parallel,..."`` when a layer takes
    its bit planes in parallel)."""
    shape = [folds[0].n_in] + [f.n_out for f in folds]
    text = f"{','.join(map(str, shape))}|{folding_text(folds)}"
    text += "|bits" if last_thresholded else ""
    if weight_bits is not None and any(b != 1 for b in weight_bits):
        text += f"|weights {weight_bits_text(weight_bits)}"
    acts = [f.out_bits for f in folds]
    if any(b != 1 for b in acts):
        text += f"|acts {act_bits_text(acts)}"
    modes = fold_consume(folds)
    if any(c != "serial" for c in modes):
        text += f"|consume {consume_text(modes)}"
    return zlib.crc32(text.encode())


@dataclass
class BnnMemoryMap:
    """Address layout of a BNN top for a given folding and FIFO depths; ``last_thresholded``:
    the output layer compares with thresholds and outputs bits instead of dots;
    ``weight_bits``: per layer 1 (binary) or 2 (ternary); empty: all 1."""

    folds: list[LayerFold]
    in_depth: int = 4
    out_depth: int = 4
    last_thresholded: bool = False
    registers: dict = field(default_factory=lambda: dict(REGISTERS))
    weight_bits: tuple = ()

    def __post_init__(self):
        self.folds = list(self.folds)
        if not self.weight_bits:
            self.weight_bits = (1,) * len(self.folds)
        self.weight_bits = tuple(int(b) for b in self.weight_bits)
        if len(self.weight_bits) != len(self.folds) or \
                any(b not in WEIGHT_BITS for b in self.weight_bits):
            raise EieError(f"weight precisions {list(self.weight_bits)} for {len(self.folds)} "
                           f"layers; give 1 (binary) or 2 (ternary) per layer")
        if len(self.folds) > 32:
            raise EieError(f"the network has {len(self.folds)} layers; the BNN top supports up to 32")
        for l in range(len(self.folds)):
            self.registers[f"STALL_L{l}"] = 32 + l
        for name, v in (("input FIFO depth", self.in_depth), ("output FIFO depth", self.out_depth)):
            if not 1 <= v <= 0xFFFF:
                raise EieError(f"{name} is {v}; choose 1..65535")
        self.chunk_bits = _bits(max(self.chunks(l, k) for l in range(self.n_layers)
                                    for k in self.kinds))
        self.entry_shift = self.chunk_bits
        self.pe_shift = self.entry_shift + _bits(max(f.nf * f.sf for f in self.folds))
        self.kind_shift = self.pe_shift + _bits(max(f.pe for f in self.folds))
        self.layer_shift = self.kind_shift + self.kind_bits
        self.mem_bit = max(self.layer_shift + _bits(self.n_layers), 6)
        self.addr_width = self.mem_bit + 1
        if self.addr_width > 32:
            raise EieError(f"the folding {folding_text(self.folds)} needs a {self.addr_width}-bit bus "
                           f"address, more than 32; use more SIMD or PE per layer")

    @property
    def n_layers(self) -> int:
        return len(self.folds)

    @property
    def n_in(self) -> int:
        return self.folds[0].n_in

    @property
    def n_classes(self) -> int:
        return self.folds[-1].n_out

    @property
    def in_words(self) -> int:
        return -(-self.n_in // 32)

    @property
    def out_words(self) -> int:
        """OUT_DATA reads a result: one signed dot a class, or 32 output bits a read."""
        return -(-self.n_classes // 32) if self.last_thresholded else self.n_classes

    @property
    def ternary(self) -> bool:
        """Whether any layer has ternary (W2) weights: then there is a mask kind (2)."""
        return any_ternary(self.weight_bits)

    @property
    def act_bits(self) -> list[int]:
        """Per layer the output activation precision (the folds carry it)."""
        return [f.out_bits for f in self.folds]

    @property
    def quantized(self) -> bool:
        """Whether some layer has k-bit (k >= 2) activations."""
        return any(b != 1 for b in self.act_bits)

    @property
    def kinds(self) -> tuple[int, ...]:
        """The memory kinds: 0 weights, 1 thresholds, and 2 masks on a core with a W2 layer."""
        return (0, 1, 2) if self.ternary else (0, 1)

    @property
    def kind_bits(self) -> int:
        return 2 if self.ternary else 1

    def nonzero_counts(self, layer: int) -> bool:
        """Whether ``layer``'s kind-1 memory holds nonzero counts ``K'`` instead of thresholds
        (a W2 output layer of dots)."""
        return (self.weight_bits[layer] == 2 and not self.thresholded(layer)
                and self.folds[layer].in_bits == 1)

    def thresholded(self, layer: int) -> bool:
        """Whether ``layer`` has a threshold memory (every hidden layer; the output layer when
        ``last_thresholded``)."""
        return layer < self.n_layers - 1 or self.last_thresholded

    def width(self, layer: int, kind: int) -> int:
        f = self.folds[layer]
        if kind == 0:
            return f.simd
        if kind == 2:
            return f.simd if self.weight_bits[layer] == 2 else 0
        if self.thresholded(layer):
            return f.threshold_width if f.out_bits == 1 else f.threshold_word_width
        return f.threshold_width if self.nonzero_counts(layer) else 0

    def depth(self, layer: int, kind: int) -> int:
        f = self.folds[layer]
        if kind == 0:
            return f.nf * f.sf
        if kind == 2:
            return f.nf * f.sf if self.weight_bits[layer] == 2 else 0
        return f.nf if self.thresholded(layer) or self.nonzero_counts(layer) else 0

    def chunks(self, layer: int, kind: int) -> int:
        return max(1, -(-self.width(layer, kind) // 32))

    def mem_addr(self, layer: int, kind: int, pe: int, entry: int, chunk: int = 0) -> int:
        """Bus address of one chunk of one memory word."""
        f = self.folds[layer]
        if not (0 <= pe < f.pe and 0 <= entry < self.depth(layer, kind)
                and 0 <= chunk < self.chunks(layer, kind)):
            raise ValueError(f"no memory word at layer {layer} kind {kind} pe {pe} entry {entry} "
                             f"chunk {chunk}")
        return ((1 << self.mem_bit) | (layer << self.layer_shift) | (kind << self.kind_shift)
                | (pe << self.pe_shift) | (entry << self.entry_shift) | chunk)

    def reg(self, name: str) -> int:
        return self.registers[name]

    def to_json(self) -> dict:
        """A self-contained description a host driver (or a person) can use."""
        doc = {
            "bus": {"addr_width": self.addr_width, "data_width": 32, "read_latency": READ_LATENCY},
            "registers": dict(self.registers),
            "fields": fields_json(REG_FIELDS),
            "id": ID_VALUE,
            "ctrl_bits": {"RUN": CTRL_RUN, "CLEAR": CTRL_CLEAR},
            "config_crc": config_crc(self.folds, self.last_thresholded, self.weight_bits),
            "in_words": self.in_words, "out_words": self.out_words,
            "in_depth": self.in_depth, "out_depth": self.out_depth,
            "memory": {
                "mem_bit": self.mem_bit, "layer_shift": self.layer_shift,
                "kind_shift": self.kind_shift, "pe_shift": self.pe_shift,
                "entry_shift": self.entry_shift, "chunk_bits": self.chunk_bits,
                "kinds": {"weights": 0, "thresholds": 1},
                "layers": [{"layer": l, **f.to_json(),
                            "weights": {"width": self.width(l, 0), "depth": self.depth(l, 0),
                                        "chunks": self.chunks(l, 0)},
                            "thresholds": {"width": self.width(l, 1), "depth": self.depth(l, 1),
                                           "chunks": self.chunks(l, 1)}}
                           for l, f in enumerate(self.folds)],
            },
        }
        if self.last_thresholded:       # absent otherwise: a dot core's map as it always was
            doc["last_thresholded"] = True
        if self.quantized:              # absent otherwise: an A1 core's map as it always was
            doc["act_bits"] = self.act_bits
        if self.ternary:                # absent otherwise: a W1 core's map as it always was
            doc["weight_bits"] = list(self.weight_bits)
            doc["memory"]["kinds"]["masks"] = 2
            for l, entry in enumerate(doc["memory"]["layers"]):
                entry["masks"] = {"width": self.width(l, 2), "depth": self.depth(l, 2),
                                  "chunks": self.chunks(l, 2)}
                if self.nonzero_counts(l):
                    entry["thresholds"]["holds"] = "nonzero counts"
        return doc

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=1)
