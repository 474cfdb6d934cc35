"""A PE's pointer stage with its pointer queue (:class:`PtrReadHarness`, around the
configuration :func:`ptr_config`): the queue never overflows and holds exactly its columns, the
take's ``occupancy`` register equals the columns it counts, and ``idle_next`` tells the next
cycle's ``idle`` (proved by k-induction).

Gateware only (Amaranth and :mod:`eie.hw.eie`); the blocks are imported inside ``elaborate``.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Elaboratable, Module, Signal

from ..config import EIEConfig
from .common import free, internals

__all__ = ["ptr_config", "PtrReadHarness"]


def ptr_config(queue_depth: int, ptr_depth: int = 4) -> EIEConfig:
    """The smallest EIE configuration around a pointer stage with a ``queue_depth``-column
    pointer queue (``ptr_depth`` pointers: two banks of ``ptr_depth / 2`` words)."""
    return EIEConfig(n_pe=1, fifo_depth=1, ptr_depth=ptr_depth, spmat_depth=8, act_depth=2,
                     acc_depth=1, bias_depth=1, max_layers=1, ptr_queue_depth=queue_depth)


class PtrReadHarness(Elaboratable):
    """A PE's pointer stage (:class:`~eie.hw.eie.ptr_read.PtrRead`) with its pointer queue: the
    queue never overflows and holds exactly the columns stored in it, and the stage's
    ``occupancy`` register (the count its take compares with the limit, kept in a register of
    its own for timing) always equals what it stands for: the columns in the three stage
    registers plus those in the queue. And ``idle_next`` tells the next cycle's ``idle``.

    The properties: a column offered through the bypass (the queue empty) is finished at once
    or stored; no column is written into the queue's FIFO (``rest``) while it is full;
    the queue's level ``q_level`` is its head register's flag plus the FIFO's level, and the
    FIFO is empty whenever the head register is; ``occupancy == q_level + ptr0_valid +
    ptr1_valid + ptr2_valid``; if no column was taken in the last cycle, ``idle`` is what
    ``idle_next`` said.

    Free: when a column is offered and its index ``j`` (``col``), its value (``col_a``), the
    layer's ``ptr_base`` (fixed), the entry stage's ``q.ready`` in every
    cycle (it may finish the head column whenever it likes; a column offered through the
    bypass, the queue empty, it finishes exactly when the column is ``single`` and the host
    does not own the memories, as the entry stage issues at once outside host mode), host
    mode with any pointer writes and reads (the pointer banks' contents: the columns'
    ranges and flags, not necessarily consistent), the reset. The PE's contract is assumed:
    host mode only while the stage is idle and no column is offered (without it, a
    single-entry column pushed in host mode would be neither stored nor finished: the store
    decision leaves ``host.mode`` out for timing).

    ``mutant="limit_plus_one"``: the take allows one column more than the queue has room for;
    ``mutant="uncounted_drop"``: ``occupancy`` misses an empty column dropped at ``ptr2``.
    ``contract=False`` lets host mode come at any time, columns in the stage: a single-entry
    column pushed then is lost (the store decision leaves ``host.mode`` out).
    """

    #: the deliberately broken variants (``mutant=``)
    mutants = ("limit_plus_one", "uncounted_drop")

    def __init__(self, config: EIEConfig, *, mutant: str | None = None, contract: bool = True):
        if mutant not in (None, *self.mutants):
            raise ValueError(f"unknown mutant {mutant!r}")
        self.config = config
        self.mutant = mutant
        self.contract = contract

    def elaborate(self, platform):
        from ..ptr_read import PtrRead, column_layout

        m = Module()
        c = self.config
        ptr = PtrRead(c)
        stages = [f"ptr{k}_valid" for k in range(3)]
        frag, s = internals(ptr, ["occupancy", "q_level", "fanout_head_valid", "fanout_head_sel",
                                  "item", "ptr_take", "ptr2_push", "push", "q_w_en", "q_r_en",
                                  *stages], platform)
        rest = next((sub.origins[0] for sub, name, _ in frag.subfragments if name == "rest"),
                    None)
        if rest is None:
            raise LookupError("PtrRead has no pointer-queue FIFO named rest any more: the "
                              "formal harness reads its level; update it to the new design")
        s["head_valid"] = s["fanout_head_valid"]
        occ = s["occupancy"]
        item = column_layout(c)(s["item"])          # the column registered in ptr2
        if self.mutant == "limit_plus_one":
            # the last assignment wins: the take's limit one column higher
            frag.add_statements("comb", s["ptr_take"].eq(
                ptr.col.valid & (occ <= c.ptr_queue_depth + 2)))
        elif self.mutant == "uncounted_drop":
            frag.add_statements("sync", occ.eq(occ + s["ptr_take"] - (s["push"] & ~s["q_w_en"])
                                               - s["q_r_en"]))
        m.submodules.ptr = frag

        # the environment
        mode = ptr.host.mode
        m.d.comb += [
            ptr.col.valid.eq(free(m, 1, "col_valid")),
            ptr.col.payload.j.eq(free(m, len(ptr.col.payload.j), "col_j")),
            ptr.col_a.eq(free(m, 16, "col_a")),
            ptr.ptr_base.eq(free(m, len(ptr.ptr_base), "ptr_base", const=True)),
            ptr.q.ready.eq(free(m, 1, "q_ready")),
            mode.eq(free(m, 1, "host_mode")),
            ptr.host.w_en.eq(free(m, 1, "host_w_en")),
            ptr.host.w_addr.eq(free(m, len(ptr.host.w_addr), "host_w_addr")),
            ptr.host.w_data.eq(free(m, len(ptr.host.w_data), "host_w_data")),
            ptr.host.r_addr.eq(free(m, len(ptr.host.r_addr), "host_r_addr")),
            # the entry stage issues whenever a column is offered outside host mode, so one
            # offered through the bypass is finished at once exactly when it is single
            Assume(~(ptr.q.valid & ~s["head_valid"]) | (ptr.q.ready == (item.single & ~mode))),
        ]
        if self.contract:
            # the PE's contract: the host owns the memories only with the stage idle, nothing
            # offered
            m.d.comb += Assume(~mode | (ptr.idle & ~ptr.col.valid))

        # the properties
        in_stage = sum(s[name] for name in stages)
        said_idle, took = Signal(init=1), Signal()     # (the reset leaves the stage idle)
        m.d.sync += [said_idle.eq(ptr.idle_next), took.eq(ptr.col.ready)]
        m.d.comb += [
            Assert(~(ptr.q.valid & ~s["head_valid"]) | ptr.q.ready | s["q_w_en"],
                   "a column offered through the bypass is finished at once or stored (none "
                   "lost)"),
            Assert(~(rest.w_en & ~rest.w_rdy),
                   "no column is stored into a full pointer queue (overflow)"),
            Assert(s["q_level"] == s["head_valid"] + rest.level,
                   "the queue's level is its head register plus the columns behind it"),
            Assert(s["fanout_head_sel"] == s["head_valid"],
                   "the head's select copy equals its valid register"),
            Assert(~s["ptr2_push"] | s["ptr2_valid"], "ptr2 pushes only a column it holds"),
            Assert(s["head_valid"] | (rest.level == 0),
                   "no column waits behind an empty head register"),
            Assert(occ == s["q_level"] + in_stage,
                   "occupancy counts the columns in the stage and in the queue"),
            Assert(took | (ptr.idle == said_idle), "idle_next told the next cycle's idle"),
            Cover(s["q_level"] == c.ptr_queue_depth + 2, "the pointer queue is full"),
            Cover(s["push"] & ~s["head_valid"] & item.single,
                  "a column bypasses the queue and is finished as it is pushed"),
            Cover(s["ptr2_valid"] & ~s["ptr2_push"], "an empty column is dropped"),
        ]
        return m
