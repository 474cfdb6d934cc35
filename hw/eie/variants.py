"""Named EIE microarchitecture variants: the behavioural parameters that set the cycle count.

A variant fixes the fields of :class:`~eie.hw.eie.config.EIEConfig` that change how many cycles a
layer takes (the activation-FIFO depth and the pointer-queue depth); memory sizes stay free.
Without a variant the accelerator has an 8-entry FIFO and a 15-column pointer queue
(:data:`~eie.hw.eie.config.DEFAULT_PTR_QUEUE_DEPTH`: as cheap as the paper's 4, one 16-deep LUT
RAM; on trained networks up to 4.5 points of efficiency above the paper's queue,
docs/performance.md): the ``standard``
variant. All variants are the same RTL with different parameters, so their outputs are identical
bit for bit and the cycle model (:mod:`eie.sw.cycle_model`) predicts each.

``paper``
    EIE as published: an 8-entry activation FIFO per PE (the depth the paper chose from its
    Fig. 8) and a 4-entry pointer queue (the pointer stage runs at most 4 non-empty columns ahead
    of the entry stage). On the Table III layers at 64 PEs it reaches 0.82-0.98 of the bound.
``standard``
    What the accelerator has without a variant: the paper's FIFO and a 15-column pointer queue
    (its memory then fills one 16-deep LUT RAM, as the paper's 4 did: no more LUTs). The queue,
    not the FIFO, is what absorbs a run of columns one PE holds more of on trained layers
    (``bench/real_layers.py --variant standard``).
``balanced``
    The same FIFO, a 32-entry pointer queue. Dense-activation layers with under one entry per
    column per PE (NeuralTalk's NT-We) are limited by the pointer stage taking one column a
    cycle: a run of columns with several entries stops it, its FIFO fills and the broadcast
    waits; a deeper queue lets it absorb the run. Cost: 28 more queue entries per PE (a column
    index and two pointers each). Efficiency >= 0.95 on all nine Table III layers at 64 PEs
    (docs/performance.md).
``deep``
    A 32-entry activation FIFO and a 32-entry pointer queue. On trained layers a PE's entries in
    a run of columns can exceed the others' by more than an 8-entry FIFO absorbs even after
    balanced placement; with 32 entries the busiest PE is rarely left waiting
    (``bench/real_layers.py``). Cost: 24 more FIFO entries (activation and index) per PE.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import EIEConfig

__all__ = ["Variant", "VARIANTS", "DEFAULT_VARIANT", "variant", "variants_help"]


@dataclass(frozen=True)
class Variant:
    """A name, the EIEConfig fields it sets and a one-line summary."""

    name: str
    fields: dict
    summary: str


VARIANTS: dict[str, Variant] = {
    "paper": Variant("paper", {"fifo_depth": 8, "ptr_queue_depth": 4},
                     "EIE as published: FIFO depth 8, pointer queue 4"),
    # the accelerator's defaults, taken from EIEConfig so that the two cannot differ
    "standard": Variant("standard", {"fifo_depth": EIEConfig.fifo_depth,
                                     "ptr_queue_depth": EIEConfig.ptr_queue_depth},
                        f"the accelerator's defaults: FIFO depth {EIEConfig.fifo_depth}, "
                        f"pointer queue {EIEConfig.ptr_queue_depth}"),
    "balanced": Variant("balanced", {"fifo_depth": 8, "ptr_queue_depth": 32},
                        "FIFO depth 8, pointer queue 32: >= 0.95 of the bound on Table III"),
    "deep": Variant("deep", {"fifo_depth": 32, "ptr_queue_depth": 32},
                    "FIFO depth 32, pointer queue 32: for trained layers whose columns are "
                    "uneven (bench/real_layers.py)"),
}

#: What ``eie bench table3`` measures unless told otherwise.
DEFAULT_VARIANT = "balanced"


def variant(name: str) -> Variant:
    """The variant called ``name``; :class:`~eie.common.errors.EieError` naming the choices if none is."""
    try:
        return VARIANTS[name]
    except KeyError:
        from eie.common.errors import EieError

        raise EieError(f"unknown variant {name!r}: choose one of {', '.join(VARIANTS)}") from None


def variants_help() -> str:
    """Every variant with its summary, for a command's ``--variant`` help: ``paper (EIE as
    published: ...); standard (...); ...``."""
    return "; ".join(f"{v.name} ({v.summary})" for v in VARIANTS.values())
