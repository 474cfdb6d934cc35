"""Parameters of one EIE accelerator instance, checked, with the memory sizes they imply.

Every memory of the design is sized from an :class:`EIEConfig`:

* per PE: pointer SRAM (``ptr_depth`` pointers, split in even/odd banks), sparse-matrix SRAM
  (``spmat_depth`` 64-bit words, 8 entries each), bias SRAM (``bias_depth`` int16 slots), two
  activation/accumulator files (``act_depth`` rows of ``acc_bits`` each, source and destination,
  swapped between layers; outputs are limited to ``acc_depth`` rows), the activation FIFO
  (``fifo_depth``) and the pointer queue (``ptr_queue_depth``) between the pointer and the entry
  stages;
* shared: the layer table (``max_layers`` descriptors with their codebooks) and the counters.

:meth:`EIEConfig.for_image` sizes a configuration to fit an image (the smallest depths that hold
it), :meth:`EIEConfig.check_image` says why an image does not fit (as :class:`EieError`).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["EIEConfig", "MAX_PE", "MAX_LAYERS", "W_FRAC_BITS", "DEFAULT_PTR_QUEUE_DEPTH",
           "VERILOG_IDENTIFIER", "index_bits"]

#: A plain Verilog identifier (ASCII letters, digits, ``_``; not starting with a digit): module
#: names ``eie generate --name`` and ``EIETop(pe_module=...)`` take.
VERILOG_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_PE = 256
MAX_LAYERS = 64
W_FRAC_BITS = 5          # w_frac 0..30 (eie.sw.fixedpoint.MAX_W_FRAC)
#: The pointer queue's default depth: 15 columns, so the queue's memory (``ptr_queue_depth + 1``
#: entries) fills one 16-deep LUT RAM, as the paper's 4 did; on trained networks the queue is
#: what absorbs a run of columns one PE holds more of (``bench/real_layers.py``, calibrated
#: placement: LeNet-300-100 at 16 PEs 0.896 -> 0.913, the 784-1024-1024-10 MLP at 64 PEs
#: 0.909 -> 0.946; docs/performance.md, "The default pointer queue")
DEFAULT_PTR_QUEUE_DEPTH = 15


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def index_bits(n: int) -> int:
    """Bits of an index into ``n`` items (0 .. n - 1), at least 1: the width of an address port
    or register (the :class:`EIEConfig` ``*_bits`` properties are made of it)."""
    return max(1, (n - 1).bit_length())


@dataclass(frozen=True)
class EIEConfig:
    """One accelerator instance.

    ``n_pe`` processing elements (1..256, any count); ``fifo_depth`` activation-FIFO entries per
    PE; ``ptr_depth`` pointers per PE (all layers: ``sum(n_in + 1)``); ``spmat_depth`` 64-bit
    sparse-matrix words per PE; ``act_depth`` activations per PE and per activation file
    (``max ceil(n / n_pe)`` over every layer's inputs and outputs); ``acc_depth`` accumulator rows
    per PE (``max ceil(n_out / n_pe)``); ``bias_depth`` bias slots per PE; ``max_layers`` layer
    descriptors; ``acc_bits`` accumulator width; ``act_frac`` activation fraction bits (recorded
    for the host; the datapath only uses each layer's ``w_frac``); ``ptr_queue_depth`` columns
    the pointer stage may run ahead of the entry stage.
    """

    n_pe: int = 4
    fifo_depth: int = 8
    ptr_depth: int = 1024
    spmat_depth: int = 1024
    act_depth: int = 64
    acc_depth: int = 64
    bias_depth: int = 64
    max_layers: int = 4
    acc_bits: int = 32
    act_frac: int = 8
    ptr_queue_depth: int = DEFAULT_PTR_QUEUE_DEPTH

    _LIMITS = {
        "n_pe": (1, MAX_PE, "processing elements"),
        "fifo_depth": (1, 4096, "activation-FIFO entries"),
        "ptr_depth": (2, 1 << 20, "pointers per PE"),
        "spmat_depth": (1, 1 << 20, "sparse-matrix words per PE"),
        "act_depth": (1, 1 << 16, "activations per PE and file"),
        "acc_depth": (1, 1 << 16, "accumulator rows per PE"),
        "bias_depth": (1, 1 << 16, "bias slots per PE"),
        "max_layers": (1, MAX_LAYERS, "layers"),
        "acc_bits": (16, 64, "accumulator bits"),
        "act_frac": (0, 15, "activation fraction bits"),
        "ptr_queue_depth": (2, 64, "pointer-queue entries"),
    }

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            lo, hi, what = self._LIMITS[f.name]
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"{f.name} must be an integer ({what}), not {v!r}")
            if not lo <= v <= hi:
                raise ValueError(f"{f.name} = {v} is out of range: {what} must be from {lo} to {hi}")
        if self.acc_depth > self.act_depth:
            raise ValueError(f"acc_depth = {self.acc_depth} exceeds act_depth = {self.act_depth}: "
                             "every accumulator row is written back into the activation file")

    @classmethod
    def in_range(cls, name: str, value: Any) -> bool:
        """``value`` is an integer (not a bool) within the limits of field ``name``."""
        lo, hi, _ = cls._LIMITS[name]
        return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi

    # -- derived sizes ---------------------------------------------------------------------
    @property
    def entry_depth(self) -> int:
        """Sparse-matrix entries per PE (8 per word)."""
        return self.spmat_depth * 8

    @property
    def ptr_bits(self) -> int:
        """Width of a pointer: it may equal ``entry_depth`` (the end of the last column)."""
        return self.entry_depth.bit_length()

    @property
    def ptr_word_bits(self) -> int:
        """Width of a pointer memory word: an absolute entry address and three flags of the
        column starting there (``eie.hw.eie.ptr_read.ptr_word_layout``)."""
        return self.ptr_bits + 3

    @property
    def max_n_in(self) -> int:
        """The widest layer input the activation files hold."""
        return self.act_depth * self.n_pe

    @property
    def max_n_out(self) -> int:
        """The widest layer output the accumulator files hold."""
        return self.acc_depth * self.n_pe

    # -- widths of the datapath's ports and registers ------------------------------------
    # A width of an index into ``n`` items is ``index_bits(n)``: at least 1, so a port or a
    # register exists even for one item. ``*_base_bits`` are one bit wider than the index (the
    # layer table's base fields, kept as wide as the hardware has always taken them).

    @property
    def j_bits(self) -> int:
        """Width of a column index ``j`` (0 .. max_n_in - 1): the broadcast's ``j``."""
        return index_bits(self.max_n_in)

    @property
    def size_bits(self) -> int:
        """Width of a layer's ``n_in`` or ``n_out`` (0 .. max_n_in; ``j_bits + 1``)."""
        return self.j_bits + 1

    @property
    def ptr_index_bits(self) -> int:
        """Width of a pointer's index in the pointer SRAM (0 .. ptr_depth - 1)."""
        return index_bits(self.ptr_depth)

    @property
    def ptr_base_bits(self) -> int:
        """Width of a layer's ``ptr_base`` (its first pointer; ``ptr_index_bits + 1``)."""
        return self.ptr_index_bits + 1

    @property
    def spmat_word_bits(self) -> int:
        """Width of a sparse-matrix word's index (0 .. spmat_depth - 1)."""
        return index_bits(self.spmat_depth)

    @property
    def spmat_half_bits(self) -> int:
        """Width of a host offset into the sparse-matrix SRAM, ``2 * word + half``."""
        return self.spmat_word_bits + 1

    @property
    def bias_slot_bits(self) -> int:
        """Width of a bias slot's index (0 .. bias_depth - 1)."""
        return index_bits(self.bias_depth)

    @property
    def bias_base_bits(self) -> int:
        """Width of a layer's ``bias_base`` (its first bias slot; ``bias_slot_bits + 1``)."""
        return self.bias_slot_bits + 1

    @property
    def row_bits(self) -> int:
        """Width of an accumulator row (0 .. acc_depth - 1): the row stages' counters."""
        return index_bits(self.acc_depth)

    @property
    def act_index_bits(self) -> int:
        """Index bits of one activation file, 0 for a file of one row (the bank bit sits above
        them: ``MemoryMap.act_bits``)."""
        return (self.act_depth - 1).bit_length()

    @property
    def act_addr_bits(self) -> int:
        """Width of the activation read stream's address (a row of the source file; at least
        1)."""
        return max(1, self.act_index_bits)

    @property
    def act_file_bits(self) -> int:
        """Width of a row of either activation file, ``bank << act_index_bits | row``."""
        return self.act_index_bits + 1

    @property
    def layer_bits(self) -> int:
        """Width of a layer's index in the layer table (0 .. max_layers - 1)."""
        return index_bits(self.max_layers)

    @property
    def pe_index_bits(self) -> int:
        """Width of a PE's number (0 .. n_pe - 1; at least 1)."""
        return index_bits(self.n_pe)

    def to_json(self) -> dict[str, Any]:
        """Parameters (and derived sizes) as a JSON-serialisable dict."""
        d = asdict(self)
        d.update(entry_depth=self.entry_depth, ptr_bits=self.ptr_bits,
                 max_n_in=self.max_n_in, max_n_out=self.max_n_out)
        return d

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    # -- images ----------------------------------------------------------------------------
    @classmethod
    def for_image(cls, image, **overrides) -> "EIEConfig":
        """The smallest configuration that holds ``image`` (an :class:`eie.sw.image.Image`);
        ``overrides`` (e.g. ``fifo_depth=2``) replace any field; depths given in ``overrides``
        are checked against the image."""
        n = image.n_pe
        sizes = dict(
            n_pe=n,
            ptr_depth=max(2, image.ptr_words),
            spmat_depth=max(1, image.spmat_words),
            act_depth=cls._act_need(image)[0],
            acc_depth=max(_ceil_div(d.n_out, n) for d in image.layers),
            bias_depth=max(1, image.bias_words if image.bias is not None else 0),
            max_layers=len(image.layers),
            acc_bits=image.acc_bits,
            act_frac=image.act_frac,
        )
        cls.check_depths_for_image(image, act_depth=overrides.get("act_depth"),
                                   acc_depth=overrides.get("acc_depth"))
        sizes.update(overrides)
        cfg = cls(**sizes)
        cfg.check_image(image)
        return cfg

    @staticmethod
    def _act_need(image) -> tuple[int, int, str, int]:
        """The activation rows a PE needs for ``image`` (the widest input or output of any
        layer, over its PEs), and which: ``(rows, layer, "inputs"|"outputs", count)``."""
        n = image.n_pe
        need = (0, 0, "inputs", 0)
        for l, d in enumerate(image.layers):
            for what, count in (("inputs", d.n_in), ("outputs", d.n_out)):
                if _ceil_div(count, n) > need[0]:
                    need = (_ceil_div(count, n), l, what, count)
        return need

    @classmethod
    def check_depths_for_image(cls, image, *, act_depth=None, acc_depth=None) -> None:
        """Depths given for ``image`` (None: sized to it), checked against it before the fields
        are checked against each other: an act_depth below the image's need would otherwise be
        reported as the accumulator rows derived from the image (acc_depth) exceeding it. An
        :class:`eie.common.errors.EieError` naming the option given; values out of range are
        left to the fields' own check."""
        from eie.common.errors import EieError

        act_need, act_layer, act_what, act_n = cls._act_need(image)
        n = image.n_pe
        if cls.in_range("act_depth", act_depth) and act_depth < act_need:
            pes = f"{n} PE{'' if n == 1 else 's'}"
            raise EieError(f"--act-depth {act_depth} is too small for the image: it needs "
                           f"--act-depth >= {act_need} (layer {act_layer} has {act_n} "
                           f"{act_what}, {act_need} per PE on {pes})")
        if cls.in_range("acc_depth", acc_depth) and act_depth is None and acc_depth > act_need:
            raise EieError(f"--acc-depth {acc_depth} exceeds the {act_need} activation rows per "
                           f"PE the image needs (act_depth, sized to the image): every "
                           f"accumulator row is written back into the activation file, so give "
                           f"--act-depth {acc_depth} too, or an --acc-depth of at most "
                           f"{act_need}")

    def check_image(self, image) -> None:
        """Raise :class:`eie.common.errors.EieError` if ``image`` does not fit this configuration."""
        from eie.common.errors import EieError

        if image.n_pe != self.n_pe:
            raise EieError(f"the image is for {image.n_pe} PEs but the accelerator has "
                           f"{self.n_pe} (re-encode with --pes {self.n_pe})")
        if image.acc_bits != self.acc_bits:
            raise EieError(f"the image uses acc_bits = {image.acc_bits} but the accelerator has "
                           f"{self.acc_bits} (regenerate with --acc-bits {image.acc_bits})")
        if len(image.layers) > self.max_layers:
            raise EieError(f"the image has {len(image.layers)} layers but the layer table holds "
                           f"{self.max_layers} (raise --max-layers)")
        if image.ptr_words > self.ptr_depth:
            raise EieError(f"the image needs {image.ptr_words} pointers per PE but the pointer "
                           f"SRAM holds {self.ptr_depth} (raise --ptr-depth)")
        if image.spmat_words > self.spmat_depth:
            raise EieError(f"the image needs {image.spmat_words} sparse-matrix words per PE but "
                           f"the SRAM holds {self.spmat_depth} (raise --spmat-depth or add PEs)")
        if image.bias is not None and image.bias_words > self.bias_depth:
            raise EieError(f"the image needs {image.bias_words} bias slots per PE but the bias "
                           f"SRAM holds {self.bias_depth} (raise --bias-depth)")
        for l, d in enumerate(image.layers):
            if d.n_in > self.max_n_in:
                raise EieError(f"layer {l} has {d.n_in} inputs but the activation files hold "
                               f"{self.max_n_in} ({self.act_depth} per PE; raise --act-depth)")
            if d.n_out > self.max_n_out:
                raise EieError(f"layer {l} has {d.n_out} outputs but the accumulators hold "
                               f"{self.max_n_out} ({self.acc_depth} per PE; raise --acc-depth)")
            if not 0 <= d.w_frac < (1 << W_FRAC_BITS) - 1:
                raise EieError(f"layer {l} has w_frac = {d.w_frac}; the hardware takes 0..30")
