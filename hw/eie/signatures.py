"""The EIE's port groups, as :class:`amaranth.lib.wiring.Signature` classes.

Each group is declared once, from the side that drives its main direction (``Out`` members), and
used with ``In(...)`` by the other side; the flattened member names (``group__member``, nested
groups ``group__sub__member``) are the Verilog port names.

===================  =========================================================================
signature            used by
===================  =========================================================================
:class:`Broadcast`   CCU (``Out``, one ``full`` bit per PE) -> every PE (``In``, its own bit)
:class:`LayerParams` CCU (``Out``) -> every PE (``In``); its ``src`` is a :class:`SourceParams`,
                     which the PE passes on to its :class:`~eie.hw.eie.accum.Accumulator`
:class:`ActRead`     the activation read stream: LNZD and CCU (``Out``, one ``data`` lane per
                     PE) -> every PE and its Accumulator (``In``)
:class:`HostPort`    the host's access to memories: top -> PE (with regions), PE -> PtrRead,
                     SpmatRead, Accumulator; top -> CCU (the global region, no ``mode``)
===================  =========================================================================

Where there is a ready/valid handshake inside a PE and between the LNZD and the CCU, the port is
an :class:`amaranth.lib.stream.Signature` (payloads :func:`nonzero_layout` and
:func:`~eie.hw.eie.ptr_read.column_layout`). The broadcast is not a stream (see
:class:`Broadcast`).
"""

from __future__ import annotations

from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import W_FRAC_BITS, EIEConfig
from .memory_map import BCAST_IN_FLIGHT, REGION_BITS

__all__ = ["Broadcast", "LayerParams", "SourceParams", "ActRead", "HostPort", "nonzero_layout",
           "broadcast_copy_layout", "source_copy_layout", "connect_lane"]


def nonzero_layout(j_bits: int) -> data.StructLayout:
    """A nonzero input activation's column ``j``: the payload of the streams that carry
    nonzeros (LNZD -> CCU, FIFO -> pointer stage). Its value ``a`` (int16) follows a cycle
    later on a port of its own beside each stream (``a``, ``col_a``): it is needed only at the
    multiplier, stages later, and picking it a cycle after the decision keeps it off the
    decision's path."""
    return data.StructLayout({"j": j_bits})


class _Group(wiring.Signature):
    """A signature defined by its class and parameters (two with equal ones are equal)."""

    def __init__(self, members, *params):
        self._params = params
        super().__init__(members)

    def __eq__(self, other):
        if type(other) is wiring.FlippedSignature:
            return False
        return type(other) is type(self) and other._params == self._params

    def __hash__(self):
        return hash((type(self), self._params))

    def __repr__(self):
        return f"{type(self).__name__}{self._params!r}"


class Broadcast(_Group):
    """The controller's broadcast of the next nonzero ``(j, a_j)`` to every PE's FIFO, seen from
    the controller; every member is a register on its side (:mod:`eie.hw.eie.act_fifo`).

    Members (out): ``valid``: the nonzero ``j`` is written into every PE's FIFO in this
    cycle (the controller decided it in the previous one); ``a``: the value of the nonzero
    ``valid`` showed in the previous cycle (a cycle behind its ``j``: the controller picks it
    a cycle after the decision; the FIFO stores it a cycle late); ``stall``: in the previous cycle a
    nonzero was offered but held back, because some PE's ``fill[in_flight]`` was set;
    ``in_flight``: the broadcasts the controller counted in flight for that decision (0 ..
    :data:`~eie.hw.eie.memory_map.BCAST_IN_FLIGHT`). In: ``fill`` (``BCAST_IN_FLIGHT + 1``
    bits per PE, ``lanes`` of them; a PE's own ``In(Broadcast(j_bits))`` has one set): bit ``i``
    = the PE's FIFO holds at least ``fifo_depth - i`` entries, registered.

    Not an :class:`amaranth.lib.stream.Signature`: the transfer is all-or-none across the PEs,
    decided without a ready from them: the controller raises ``valid`` only when every FIFO has
    room for it and for the broadcasts still in flight, so each PE writes its FIFO on ``valid``
    alone.
    """

    def __init__(self, j_bits: int, lanes: int | None = None):
        fill = BCAST_IN_FLIGHT + 1
        super().__init__({
            "valid": Out(1),
            "stall": Out(1),
            "in_flight": Out(range(BCAST_IN_FLIGHT + 1)),
            "j": Out(j_bits),
            "a": Out(signed(16)),
            "fill": In(fill if lanes is None else data.ArrayLayout(fill, lanes)),
        }, j_bits, lanes)


def broadcast_copy_layout(j_bits: int) -> data.StructLayout:
    """The members a :class:`Broadcast` carries to the PEs (``valid``, ``stall``,
    ``in_flight``, ``j``, ``a``), as one value: a copy of the controller's broadcast registers
    that feeds a group of PEs (``CCU.bcast_copies``)."""
    members = Broadcast(j_bits).members
    return data.StructLayout({name: members[name].shape for name in
                              ("valid", "stall", "in_flight", "j", "a")})


def source_copy_layout(config: EIEConfig) -> data.StructLayout:
    """The members of :class:`SourceParams` but ``bank``, as one value: a copy of the
    controller's registers of them that feeds a group of PEs (``CCU.src_copies``)."""
    members = SourceParams(config).members
    return data.StructLayout({name: members[name].shape for name in
                              ("bias_base", "has_bias", "w_frac", "relu")})


class SourceParams(_Group):
    """The source activation file of the layer running, seen from the controller: ``bank``
    (which of the two files), and the write-back of the layer that produced it, applied when a
    row is read: ``bias_base`` (its first bias slot), ``has_bias``, ``w_frac``, ``relu`` (all
    out; for the host-written inputs the identity: no bias, ``w_frac`` 0, no ReLU). The
    controller changes ``bias_base`` as the producing layer enters ``DRAIN``, the others at
    its end."""

    def __init__(self, config: EIEConfig):
        super().__init__({
            "bank": Out(1),
            "bias_base": Out(config.bias_base_bits),
            "has_bias": Out(1),
            "w_frac": Out(W_FRAC_BITS),
            "relu": Out(1),
        }, config)


class LayerParams(_Group):
    """What the controller tells every PE about the layer, seen from the controller (all out):
    ``start`` (one cycle, ``LSTART``: per-layer counters and the destination's valid bits
    clear), ``end`` (one cycle, the layer's last: its counters are stored at ``idx``), ``idx``
    (the layer's number; with it each PE reads its own copy of the layer's codebook), the
    layer's ``ptr_base`` (not its ``entry_base``: the pointer memory holds absolute entry
    addresses, :func:`eie.hw.eie.memory_map.pointer_words`), ``last`` (the running layer is the
    run's last: its PEs drain the entry stage before it ends), the host's codebook writes for
    those copies (``cbk_w_en``, one cycle after the layer table's: entry ``c`` of layer ``l``
    at ``cbk_w_addr = 16 * l + c``, ``cbk_w_data`` the int16 weight), and ``src``
    (:class:`SourceParams`)."""

    def __init__(self, config: EIEConfig):
        c = config
        super().__init__({
            "start": Out(1),
            "end": Out(1),
            "idx": Out(c.layer_bits),
            "ptr_base": Out(c.ptr_base_bits),
            "last": Out(1),
            "cbk_w_en": Out(1),
            "cbk_w_addr": Out(range(16 * c.max_layers)),
            "cbk_w_data": Out(signed(16)),
            "src": Out(SourceParams(c)),
        }, c)


class ActRead(_Group):
    """The activation read stream, seen from the reader (the LNZD): the read pipeline advances
    in every cycle (the reader buffers what arrives); ``addr`` (out) is the row that enters it;
    ``data`` (in) shows the int16 activation of the row that entered ``ACT_READ_LATENCY``
    cycles earlier, one
    lane per PE (``lanes`` of them: an :class:`~amaranth.lib.data.ArrayLayout`; a PE's own
    ``In(ActRead(addr_bits))`` has one value); ``nz`` (in, a bit per lane) is ``data != 0``,
    computed where ``data`` is registered, so that the reader's nonzero flags start from
    flip-flops. No handshake: the file answers every cycle.

    With ``slots`` (the LNZD's round slots, :class:`~eie.hw.eie.round_slots.RoundSlots` in
    every PE; the interface between the LNZD and the PEs): ``addr_next`` (out, the reader's
    side only, with ``lanes``): what ``addr`` shows in the next cycle, so that the top can show
    each group of PEs ``addr`` from a register of the group's own (equal to the reader's in
    every cycle), not from the reader's register across the chip; ``scan_next`` (out, the reader's
    side only, with ``lanes``): likewise what ``scan`` shows in the next cycle; ``slot_we``
    (out, ``slots`` bits, one-hot or zero): the value arriving on
    ``data`` in the next cycle goes into that slot; ``scan`` (out, one-hot): the slot of the
    round the reader scans; ``held`` (in, int16 a lane): the lane's value in the slot ``scan``
    showed in the previous cycle (the LNZD reads its values only through ``held``; ``data``
    is the host's read of a row)."""

    def __init__(self, addr_bits: int, lanes: int | None = None, slots: int | None = None):
        lane = signed(16)
        members = {
            "addr": Out(addr_bits),
            "data": In(lane if lanes is None else data.ArrayLayout(lane, lanes)),
            "nz": In(1 if lanes is None else lanes),
        }
        if slots is not None:
            if lanes is not None:
                members["addr_next"] = Out(addr_bits)
                members["scan_next"] = Out(slots)
            members["slot_we"] = Out(slots)
            members["scan"] = Out(slots)
            members["held"] = In(lane if lanes is None else data.ArrayLayout(lane, lanes))
        super().__init__(members, addr_bits, lanes, slots)


class HostPort(_Group):
    """The host's access to memories, seen from the host (the top level's bus decode).

    Members: ``mode`` (out; without it when ``mode=False``): the host owns the memories (the
    controller is idle), the datapath leaves them alone; a write: ``w_en``, ``w_addr``,
    ``w_data`` (32 bits); a read: ``r_addr`` in one cycle, ``r_data`` (in, 32 bits) in a later
    one (each block says how many). With ``regions=True`` the address is an offset inside the
    region ``w_region``/``r_region`` (:class:`~eie.hw.eie.memory_map.Region`, out) and the
    block decodes which of its memories is meant.
    """

    def __init__(self, addr_bits: int, *, mode: bool = True, regions: bool = False):
        members = {}
        if mode:
            members["mode"] = Out(1)
        members["w_en"] = Out(1)
        if regions:
            members["w_region"] = Out(REGION_BITS)
        members.update(w_addr=Out(addr_bits), w_data=Out(32))
        if regions:
            members["r_region"] = Out(REGION_BITS)
        members.update(r_addr=Out(addr_bits), r_data=In(32))
        super().__init__(members, addr_bits, mode, regions)


def connect_lane(m, bus, port, lane: int, *, source=None):
    """Connect ``port`` (a consumer's interface, e.g. ``pe.bcast``) to lane ``lane`` of ``bus``
    (the producer's interface with ``lanes``, e.g. ``ccu.bcast``): every member that flows into
    the consumer is driven from the producer's member of the same name (or from ``source``'s,
    e.g. one of ``ccu.bcast_copies``, when given); every member that flows out of it drives
    element ``lane`` of the producer's (a vector or an array). The statements go into
    ``m.d.comb``."""
    for path, member, value in port.signature.flatten(port):
        src = bus if source is None or member.flow != In else source
        for name in path:
            src = src[name] if isinstance(name, int) else getattr(src, name)
        if member.flow == In:
            m.d.comb += value.eq(src)
        else:
            m.d.comb += src[lane].eq(value)
