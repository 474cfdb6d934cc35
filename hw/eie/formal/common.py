"""What the formal harnesses of the EIE's control share: finding a block's internal signals
(:func:`internals`) and its ports (:data:`PORTS`, :func:`port`), free values (:func:`free`),
and the FIFO properties (:func:`fifo_properties`: no overflow, no underflow, at a FIFO's
ports whatever drives them).

Gateware only (Amaranth).
"""

from __future__ import annotations

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Fragment, Mux, Signal

__all__ = ["PORTS", "port", "internals", "free", "fifo_properties"]


def internals(block, names, platform="formal"):
    """Elaborate ``block`` and find its internal signals ``names`` (signals its own module
    assigns, not its sub-modules'). Returns ``(fragment, {name: Signal})``; add the fragment as
    the submodule in place of the block. Raises ``LookupError`` naming the missing ones."""
    frag = Fragment.get(block, platform)
    found = {}
    for stmts in frag.statements.values():
        for stmt in stmts:
            for sig in stmt._lhs_signals():
                found.setdefault(sig.name, sig)
    missing = [n for n in names if n not in found]
    if missing:
        raise LookupError(f"{type(block).__name__} has no internal signal {', '.join(missing)} any "
                          f"more: the formal invariants of eie.hw.eie.formal read it; update "
                          f"them to the new design")
    return frag, {n: found[n] for n in names}


#: where each port the harnesses use lives in the blocks' signatures
#: (:mod:`eie.hw.eie.signatures`)
PORTS = {
    "rd.addr": "rd.addr",
    "rd.addr_next": "rd.addr_next",
    "rd.data": "rd.data",
    "rd.nz": "rd.nz",
    "rd.slot_we": "rd.slot_we",
    "rd.scan": "rd.scan",
    "rd.scan_next": "rd.scan_next",
    "rd.held": "rd.held",
    "o.valid": "o.valid",
    "o.ready": "o.ready",
    "o.j": "o.payload.j",
    "a": "a",
    "bcast.valid": "bcast.valid",
    "bcast": "bcast",
    "bcast.fill": "bcast.fill",
    "bcast.stall": "bcast.stall",
    "bcast_copies": "bcast_copies",
    "bank_copies": "bank_copies",
    "src_copies": "src_copies",
    "layer.src": "layer.src",
    "layer.src.bank": "layer.src.bank",
    "idle_all": "idle_all",
}


def port(block, what):
    """``block``'s port ``what`` (a key of :data:`PORTS`)."""
    obj = block
    try:
        for name in PORTS[what].split("."):
            obj = getattr(obj, name)
    except AttributeError:
        raise AttributeError(f"{type(block).__name__} has no port {PORTS[what]}: update "
                             f"eie.hw.eie.formal.PORTS") from None
    return obj


def free(m, shape, name, const=False):
    """A named signal driven by a free value (``AnyConst`` if ``const``, else ``AnySeq``)."""
    s = Signal(shape, name=name)
    m.d.comb += s.eq(AnyConst(shape) if const else AnySeq(shape))
    return s


# ----------------------------------------------------------------------------- FIFOs

def fifo_properties(m, fifo, depth, label):
    """The FIFO properties at ``fifo``'s ports (``w_en``/``w_rdy``, ``r_en``/``r_rdy``,
    ``level``), whatever drives them. ``owed`` counts the entries the PE is owed: every write
    presented (accepted or not) minus every entry it took (``r_en & r_rdy``); it saturates one
    above ``depth``, so an overflow stays visible.

    * overflow: no write is presented while the FIFO is full, and the PE is never owed more
      than the FIFO holds;
    * underflow: the FIFO offers an entry (``r_rdy``) only when the PE is owed one, and holds
      exactly the entries the PE is owed (none lost, none made up).

    Returns ``owed``."""
    owed = Signal(range(depth + 2), name=f"owed_{label.replace(' ', '')}")
    push = fifo.w_en
    pop = fifo.r_en & fifo.r_rdy
    nxt = Signal(range(-1, depth + 3), name=f"owed_next_{label.replace(' ', '')}")
    m.d.comb += nxt.eq(owed + push - pop)
    m.d.sync += owed.eq(Mux(nxt > depth + 1, depth + 1, Mux(nxt < 0, 0, nxt)))
    m.d.comb += [
        Assert(~(fifo.w_en & ~fifo.w_rdy), f"{label}: no broadcast reaches a full FIFO (overflow)"),
        Assert(owed <= depth, f"{label}: never owed more than the FIFO holds (overflow)"),
        Assert(~fifo.r_rdy | (owed != 0), f"{label}: no entry offered from an empty FIFO "
               f"(underflow)"),
        Assert(fifo.level == owed, f"{label}: the FIFO holds exactly the broadcasts not yet "
               f"taken"),
    ]
    return owed
