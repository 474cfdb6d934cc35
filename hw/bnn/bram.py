"""Block-RAM reads without collision logic, for memories whose users never read a word in the
cycle it is written (the BNN's weight, threshold and input-buffer memories).

An Amaranth synchronous read port promises the old word when the same word is written in the
same cycle; an iCE40 block RAM does not, so Yosys adds bypass flip-flops and multiplexers
(about 25 FFs and 18 LUTs a memory). :func:`bram_memory` marks the memory ``no_rw_check`` and
:func:`bram_read` reads it through an asynchronous port into a reset-less register with an
enable, which Yosys folds back into the block RAM's own read register: per cycle with ``en``
high the word at ``addr`` is on the returned signal the next cycle (with ``en`` low it holds),
exactly like a synchronous read port, with no logic around the RAM.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value
from amaranth.lib.memory import Memory

__all__ = ["bram_memory", "bram_read"]


def bram_memory(*, shape, depth: int, init=()) -> Memory:
    """A :class:`Memory` whose reads and writes never meet at one address in one cycle."""
    return Memory(shape=shape, depth=depth, init=list(init), attrs={"no_rw_check": 1})


def bram_read(m: Module, mem: Memory, *, addr: Value, en: Value, name: str) -> Signal:
    """Synchronous read of ``mem`` at ``addr`` when ``en``; the word is on the result a cycle later."""
    port = mem.read_port(domain="comb")
    data = Signal(port.data.shape(), reset_less=True, name=name)
    m.d.comb += port.addr.eq(addr)
    with m.If(en):
        m.d.sync += data.eq(port.data)
    return data
