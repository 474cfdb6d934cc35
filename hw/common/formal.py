"""What the formal harnesses of the BNN streams (:mod:`eie.hw.bnn.formal`) and of the UART bridge
(:mod:`eie.boards.formal`) share: free values, reaching a block's internal signals and
sub-blocks in its elaborated fragment, and the stream properties.

Gateware only (Amaranth); the runner is :func:`eie.sim.formal.prove`, docs/formal.md says what
is proved. A harness elaborates the real block (:func:`elaborate`), reads the registers its
strengthening invariants need by name (:func:`signals`), and may patch a sub-block's fragment
(:func:`subfragment`) for a broken variant: a statement added at the end of a fragment's
``comb`` or ``sync`` list wins over the block's own (the last assignment wins), so a mutant is a
few added statements, not a copy of the block. A block that renames a signal or a sub-block
makes the harness raise a ``LookupError`` naming it, rather than prove something else.
"""

from __future__ import annotations

import re

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Fragment, Signal, Value

__all__ = ["free", "elaborate", "signals", "subfragment", "remove_subfragment", "fsm_state",
           "stable_until_accepted"]


def free(m, shape, name, const=False):
    """A named signal driven by a free value (``AnyConst`` if ``const``, else ``AnySeq``)."""
    s = Signal(shape, name=name)
    m.d.comb += s.eq(AnyConst(shape) if const else AnySeq(shape))
    return s


def elaborate(block, platform="formal") -> Fragment:
    """``block``'s fragment (its whole tree elaborated); add it as the submodule in place of
    the block."""
    return Fragment.get(block, platform)


def _sub_ports(frag: Fragment) -> set[int]:
    """The ids of the port signals of ``frag``'s sub-blocks (which its own statements drive,
    e.g. a sub-block's ``en``)."""
    from amaranth.lib import wiring

    ids = set()
    for sub, *_ in frag.subfragments:
        for block in getattr(sub, "origins", None) or ():
            if isinstance(block, wiring.Component):
                for _, _, value in block.signature.flatten(block):
                    ids.add(id(value))
    return ids


def signals(frag: Fragment, names, *, where: str = "") -> dict:
    """The signals ``names`` that ``frag``'s own statements assign (not its sub-fragments', and
    not its sub-blocks' ports): ``{name: Signal}``. Raises ``LookupError`` naming the missing
    (or ambiguous) ones."""
    ports = _sub_ports(frag)
    found: dict[str, dict[int, Signal]] = {}
    for stmts in frag.statements.values():
        for stmt in stmts:
            for sig in stmt._lhs_signals():
                if id(sig) not in ports:
                    found.setdefault(sig.name, {})[id(sig)] = sig
    bad = [n for n in names if len(found.get(n, ())) != 1]
    if bad:
        raise LookupError(f"{where or 'the block'} has no internal signal {', '.join(bad)} "
                          f"(or more than one) any more: the formal harness reads it; update it "
                          f"to the new design")
    return {n: next(iter(found[n].values())) for n in names}


def subfragment(frag: Fragment, path: str) -> tuple[Fragment, object]:
    """The sub-fragment at ``path`` (submodule names, dotted: ``"layer0.acc"``) and the block it
    was elaborated from."""
    here = frag
    for name in path.split("."):
        for sub, sub_name, *_ in here.subfragments:
            if sub_name == name:
                here = sub
                break
        else:
            raise LookupError(f"no sub-block {name!r} (of {path!r}) any more: update the formal "
                              f"harness to the new design")
    origins = getattr(here, "origins", None) or (None,)
    return here, origins[0]


def remove_subfragment(frag: Fragment, name: str):
    """Take the sub-block ``name`` out of ``frag`` (the harness then drives the signals it
    drove); returns the block it was elaborated from."""
    _, block = subfragment(frag, name)
    frag.subfragments[:] = [s for s in frag.subfragments if s[1] != name]
    return block


def fsm_state(state: Signal, name: str) -> int:
    """The encoding of state ``name`` of the FSM whose state register is ``state`` (read from
    the register's decoder, which Amaranth gives it)."""
    decoder = getattr(state, "decoder", None)
    if decoder is None:
        raise LookupError(f"{state.name} is not an FSM state register")
    for value in range(1 << len(state)):
        try:
            text = decoder(value)
        except (KeyError, IndexError):
            continue
        if text.split("/")[0] == name:
            return value
    raise LookupError(f"the FSM {state.name} has no state {name!r} any more: update the formal "
                      f"harness to the new design")


def stable_until_accepted(m, stream, label: str):
    """The stream rule at ``stream``'s transmitter: once ``valid`` is offered and not taken
    (``~ready``), the next cycle offers it again with the same ``payload``. Asserted every
    cycle (a reset clears the history)."""
    tag = re.sub(r"[^A-Za-z0-9_]", "_", label)
    stalled = Signal(name=f"stalled_{tag}")
    payload = Signal(len(Value.cast(stream.payload)), name=f"last_payload_{tag}")
    m.d.sync += [stalled.eq(stream.valid & ~stream.ready), payload.eq(stream.payload)]
    m.d.comb += Assert(~stalled | (stream.valid & (Value.cast(stream.payload) == payload)),
                       f"{label}: valid and payload stay until accepted")
