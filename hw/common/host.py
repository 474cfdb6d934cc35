"""The host's side of the host bus (:mod:`eie.hw.common.bus`), the same for every core.

* :class:`HostBus`: what a host program needs of a bus driver. One driver a transport serves
  both cores: the Amaranth simulator (:class:`eie.sim.bus_driver.AmaranthBus`), cocotb
  (:class:`eie.sim.cocotb_tb.CocotbBus`) and the UART bridge (:class:`eie.app.host.BridgeBus`).
* :class:`Write`, :class:`Read`, :class:`Poll`: the operations a host program may be written
  as (the EIE's :class:`~eie.hw.eie.host_program.HostProgram` is lists of them; the BNN's
  coroutines write their loads as them).
* :func:`execute`: the one executor, ``await execute(bus, ops)`` on any :class:`HostBus`;
  :func:`run_sync` runs any host coroutine (an ``execute`` or a BNN program) to its end over a
  blocking bus (the UART bridge's), from plain code.

The read rule, the same for every core and driver: a read pulses ``r_stb`` and waits for
``r_ack``; it never counts cycles. A core's memory map states its read latency
(:data:`eie.hw.eie.memory_map.READ_LATENCY`, :data:`eie.hw.bnn.memory_map.READ_LATENCY`); a
simulated master gives up after :data:`READ_TIMEOUT` cycles without ``r_ack``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Hashable, Iterable, Protocol, Sequence, TypeVar, Union

__all__ = ["HostBus", "Write", "Read", "Poll", "Op", "execute", "run_sync", "READ_TIMEOUT"]

#: Cycles a simulated master waits for ``r_ack`` before it reports a hung read (every core's
#: read latency is far below it).
READ_TIMEOUT = 64


class HostBus(Protocol):
    """A bus driver. ``write`` issues one write; ``read`` one read and returns its word once
    ``r_ack`` came. Optional methods, used when a driver has them:

    * ``async idle(cycles)``: let the clock run (a simulator; the BNN's back-pressure tests);
    * ``async read_many(addrs) -> list[int]``: the reads of ``addrs`` in this order, in any
      grouping (the UART bridge merges consecutive addresses into bursts);
    * ``cycles``: clock cycles simulated so far (the simulators; the runners time jobs by it).
    """

    async def write(self, addr: int, data: int) -> None: ...

    async def read(self, addr: int) -> int: ...


@dataclass(frozen=True)
class Write:
    """One bus write."""
    addr: int
    data: int


@dataclass(frozen=True)
class Read:
    """One bus read; :func:`execute` returns its word under ``key``."""
    addr: int
    key: Hashable


@dataclass(frozen=True)
class Poll:
    """Read ``addr`` until ``data & mask == value`` (at most ``max_polls`` reads, then
    :class:`TimeoutError`); any bit of ``fail_mask`` set raises :class:`RuntimeError` (the core
    refused the request; ``fail_why`` says why, in the message)."""
    addr: int
    mask: int
    value: int
    max_polls: int = 1_000_000
    fail_mask: int = 0
    fail_why: str = ""


Op = Union[Write, Read, Poll]


async def _poll(bus: HostBus, op: Poll) -> int:
    v = 0
    for _ in range(op.max_polls):
        v = await bus.read(op.addr)
        if v & op.fail_mask:
            raise RuntimeError(f"address {op.addr:#x} reads {v:#x}: error bits "
                               f"{v & op.fail_mask:#x} set"
                               + (f" ({op.fail_why})" if op.fail_why else ""))
        if v & op.mask == op.value:
            return v
    raise TimeoutError(f"address {op.addr:#x} did not reach {op.value:#x} (mask {op.mask:#x}) "
                       f"in {op.max_polls} reads; last {v:#x}")


async def execute(bus: HostBus, ops: Iterable[Op]) -> dict:
    """Run ``ops`` in order over ``bus``; return ``{key: word}`` of the :class:`Read` ops.

    Consecutive reads go to ``bus.read_many`` when the driver has it (the words are the same;
    a bridge sends fewer frames)."""
    ops = list(ops)
    out: dict = {}
    many = getattr(bus, "read_many", None)
    i = 0
    while i < len(ops):
        op = ops[i]
        if isinstance(op, Write):
            await bus.write(op.addr, op.data)
        elif isinstance(op, Read):
            j = i + 1
            while j < len(ops) and isinstance(ops[j], Read):
                j += 1
            reads: Sequence[Read] = ops[i:j]
            if many is not None:
                words = await many([r.addr for r in reads])
            else:
                words = [await bus.read(r.addr) for r in reads]
            out.update((r.key, w) for r, w in zip(reads, words))
            i = j
            continue
        elif isinstance(op, Poll):
            await _poll(bus, op)
        else:
            raise TypeError(f"not a host operation: {op!r}")
        i += 1
    return out


T = TypeVar("T")


def run_sync(program: Awaitable[T]) -> T:
    """Run a host coroutine to its end over a blocking bus (one whose methods never suspend:
    the UART bridge's), from plain code, and return its result."""
    coro: Any = program.__await__()
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("the host program suspended: run_sync needs a bus whose methods "
                       "complete without waiting on an event loop")
