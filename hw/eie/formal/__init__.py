"""Formal harnesses of the EIE's control: the properties, the free environment around each block,
and the strengthening invariants that make the properties inductive.

Each harness is an Amaranth elaboratable with no ports: its block(s), free inputs
(``AnyConst``/``AnySeq``: the solver picks them, every cycle for ``AnySeq``), ``Assume``
statements for the block's input contract, ``Assert`` statements (the properties, then the
invariants) and ``Cover`` statements (to show the properties are not vacuous). The runner,
:func:`eie.sim.formal.prove`, hands one to SymbiYosys; docs/formal.md says what is proved for
which configurations, and how long it takes.

One harness a module of this package, each importable from the package itself:

* :class:`BroadcastFifoHarness` (``broadcast_fifo.py``, with :func:`ccu_config`) -- the CCU
  with one activation FIFO per PE, the PEs' consumption free: no FIFO ever overflows or
  underflows.
* :class:`LNZDHarness` (``lnzd.py``) -- the LNZD over a model of the activation files: every
  nonzero activation goes out exactly once, in increasing index, and nothing else does.
* :class:`AccumulatorHarness` (``accumulator.py``) -- the accumulator with its bypass: every
  write and every read of a row gives the sum of every product accumulated into it (bounded).
* :class:`PtrReadHarness` (``ptr_read.py``, with :func:`ptr_config`) -- a PE's pointer stage
  with its queue: the queue never overflows, holds exactly its columns, and the take's
  ``occupancy`` register equals the columns it counts.

What they share is in ``common.py``: :func:`internals`, :data:`PORTS` and :func:`port`,
:func:`free`, and :func:`fifo_properties` (the FIFO properties, at any FIFO's ports).
This module collects :data:`MUTANTS` from the harnesses' ``mutants``.

Every harness takes ``mutant=`` (a deliberately broken variant, :data:`MUTANTS`, for the tests
that show the proof can fail); the two proved by induction take ``invariants=`` (``False``
leaves out the strengthening invariants: enough for a bounded check, and then a broken variant
fails on the property itself rather than on an invariant).

Gateware only (Amaranth and :mod:`eie.hw.eie`); the blocks are imported inside ``elaborate``.
The invariants read internal signals of a block (its registers), found by name in its
elaborated fragment (:func:`internals`); a block that renames one makes the harness raise a
``LookupError`` naming it, rather than prove something else. The ports are found through
:data:`PORTS`.
"""

from .accumulator import AccumulatorHarness
from .broadcast_fifo import BroadcastFifoHarness, ccu_config
from .common import PORTS, fifo_properties, free, internals, port
from .lnzd import LNZDHarness
from .ptr_read import PtrReadHarness, ptr_config

__all__ = ["PORTS", "port", "internals", "free", "fifo_properties", "BroadcastFifoHarness",
           "LNZDHarness", "AccumulatorHarness", "PtrReadHarness", "ccu_config", "ptr_config",
           "MUTANTS"]

#: the deliberately broken variants of each harness (each harness's ``mutants``)
MUTANTS = {h.__name__: h.mutants
           for h in (BroadcastFifoHarness, LNZDHarness, AccumulatorHarness, PtrReadHarness)}
