"""Cycle model of the EIE RTL (``eie.hw.eie``): predicts its counters from an image and an input.

For every layer and sample it returns what the hardware counts (see ``docs/eie-hardware.md``):
``cycles`` (the layer's total, ``LSTART`` to the end of ``DRAIN``), ``broadcasts`` (nonzero
inputs), ``busy`` (per PE: entries issued) and ``stall`` (per PE: cycles the controller held a
nonzero because this PE's FIFO fill flag was set).

It steps the same registers the RTL has, cycle by cycle, vectorised over the PEs with NumPy:
the LNZD rounds, each PE's FIFO level, pointer stage (three registers: the column taken, the
RAM read, the registered pair of words with the start's flags), pointer queue (non-empty
columns only), entry stage and the pipeline registers behind it (the RAM read, the word registered behind it,
``mul_``, ``acc_``), the registered broadcast (the controller decides from every FIFO's level of the cycle before and the broadcasts it
decided in the two cycles before, and the FIFOs take a broadcast a cycle after its decision:
``eie.hw.eie.act_fifo``), and the controller's states
(``LSTART``, 1 cycle; ``BCAST``, whose first :data:`ACT_READ_LATENCY` cycles fill the PEs'
activation read pipelines before the LNZD loads round 0; ``DRAIN``). ``n_out`` does not change
the count: the bias and the write-back are applied in the read pipeline when the next layer
reads its inputs, at no cycle cost beyond that fill. A layer's
cost depends only on its own input (at a layer boundary the PEs' FIFOs, pointer and entry stages
are empty; the last entries in ``mul_``/``acc_`` land their writes within 2 cycles, long before
the next layer's first entry gets there, and the read pipelines forward those writes), so layers
are modelled one at a time; the hidden layers' inputs come from the golden model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# the cycles the PEs' activation read pipelines take to fill at every layer start (memory read,
# bias addition, two write-back stages): the hardware's own constant (plain Python, no Amaranth)
from ..hw.eie.memory_map import ACT_READ_LATENCY
# the design's default pointer-queue depth, the default here too (plain Python, no Amaranth)
from ..hw.eie.config import DEFAULT_PTR_QUEUE_DEPTH, EIEConfig
from ..common.errors import EieError
# the column entries a layer's work is counted in, and the contract's efficiency: eie.sw.bound's
from .bound import efficiency, layer_column_entries

__all__ = ["layer_column_entries", "predict_layer", "predict_layer_batch", "predict_counters",
           "LayerPrediction", "efficiency", "ACT_READ_LATENCY", "START_CYCLES"]

#: Cycles of a layer outside the modelled BCAST/DRAIN steps: ``LSTART`` and the fill.
START_CYCLES = 1 + ACT_READ_LATENCY


@dataclass
class LayerPrediction:
    cycles: int
    broadcasts: int
    busy: list[int]
    stall: list[int]
    bcast_cycles: int       # cycles in BCAST after the read-pipeline fill (incl. the LNZD's done cycle)
    drain_cycles: int       # cycles in DRAIN (incl. the layer's last cycle)

    def counters(self) -> dict[str, Any]:
        """The RTL's counter dict (as :class:`eie.sim.eie_amaranth.RunResult` reports it)."""
        return {"cycles": self.cycles, "broadcasts": self.broadcasts, "busy": list(self.busy),
                "stall": list(self.stall)}


def predict_layer(col_entries: np.ndarray, x: np.ndarray, n_out: int, *, fifo_depth: int,
                  ptr_queue_depth: int = DEFAULT_PTR_QUEUE_DEPTH,
                  last_layer: bool = True) -> LayerPrediction:
    """One layer for one input vector ``x`` (``n_in``,) given ``col_entries`` (``n_in``, N);
    ``last_layer``: the run's last layer (it drains the entry stage: no early end); a layer
    modelled alone is a whole run, so this is the default, and :func:`predict_counters` passes
    ``False`` for every layer but a run's last."""
    col_entries = np.asarray(col_entries, dtype=np.int64)
    n_in, N = col_entries.shape
    x = np.asarray(x).reshape(-1)
    nzj = np.flatnonzero(x != 0)
    C = nzj.size
    W = np.zeros((C + 1, N), dtype=np.int64)        # entries of broadcast column c in PE k
    W[:C] = col_entries[nzj]
    # nxt[c, k]: the first column >= c with entries in PE k (C if none)
    nxt = np.full((C + 2, N), C, dtype=np.int64)
    idx = np.where(W[:C] > 0, np.arange(C)[:, None], C)
    if C:
        nxt[:C] = np.minimum.accumulate(idx[::-1], axis=0)[::-1]
    # LNZD rounds: nonzeros per round of N inputs
    R_in = -(-n_in // N)
    round_nnz = np.bincount(nzj // N, minlength=R_in) if R_in else np.zeros(0, np.int64)
    D, Q = fifo_depth, ptr_queue_depth
    ar = np.arange(N)

    popped = np.zeros(N, np.int64)       # FIFO read pointer (columns taken by the ptr stage)
    p0_valid = np.zeros(N, bool)          # the column taken, registered (ptr0)
    p0_col = np.zeros(N, np.int64)
    p1_valid = np.zeros(N, bool)          # the pointer banks' read
    p1_col = np.zeros(N, np.int64)
    p2_valid = np.zeros(N, bool)          # the pointer words registered behind the RAMs (ptr2)
    p2_col = np.zeros(N, np.int64)
    q_level = np.zeros(N, np.int64)
    head_c = np.zeros(N, np.int64)
    head_rem = np.zeros(N, np.int64)
    s1 = np.zeros(N, bool)                # entry stage: RAM word
    s2 = np.zeros(N, bool)                # entry stage: registered word (spm_ outputs)
    s1f = np.zeros(N, bool)               # ... the entry there is its column's first
    s2f = np.zeros(N, bool)
    m1 = np.zeros(N, bool)                # mul_
    a1 = np.zeros(N, bool)                # acc_ (DRAIN does not wait for mul_, acc_, wr_)
    stall = np.zeros(N, np.int64)
    busy = np.zeros(N, np.int64)
    nb = 0                                # broadcasts decided so far
    q1 = q2 = 0                           # broadcasts decided 1 and 2 cycles ago (in flight)
    lev_prev = np.zeros(N, np.int64)      # FIFO levels at the start of the previous cycle
    rnd, pos = (0 if R_in else -1), 0     # loaded LNZD round (round 0 loads before BCAST steps)
    state = "BCAST"
    bcast_cycles = drain_cycles = 0

    def step(fire: bool) -> None:
        nonlocal p0_valid, p0_col
        nonlocal nb, p1_valid, p1_col, p2_valid, p2_col, q_level, head_c
        nonlocal head_rem, s1, s2, m1, s1f, s2f
        nonlocal a1, popped, q1, q2, lev_prev
        level = nb - q1 - popped              # the last cycle's decision lands at this one's end
        # ... or is taken in this cycle from an empty FIFO (the bypass): what the ptr stage sees
        # (the queue stores Q + 2: the columns taken while Q + 1 are in the stage)
        take = ((nb - popped > 0)
                & (q_level + p0_valid + p1_valid + p2_valid <= Q + 1))
        # ptr2's column is pushed if it has entries in the PE (an empty one is dropped)
        push = p2_valid & (W[p2_col, ar] > 0)
        # an empty pointer queue hands the column being pushed to the entry stage (bypass)
        byp = (q_level == 0) & push
        hc = np.where(byp, p2_col, head_c)
        hr = np.where(byp, W[p2_col, ar], head_rem)
        issue = (q_level > 0) | byp
        first = issue & (hr == W[np.minimum(hc, C), ar])
        last = issue & (hr == 1)
        new_q = q_level + push - last
        # head of the pointer queue
        new_head_c = hc.copy()
        new_head_rem = hr - issue
        pop_next = last & (new_q > 0)
        if pop_next.any():
            nc = nxt[hc[pop_next] + 1, ar[pop_next]]
            new_head_c[pop_next] = nc
            new_head_rem[pop_next] = W[nc, ar[pop_next]]
        busy[:] += issue
        a1, m1, s2, s1 = m1, s2, s1, issue
        s2f, s1f = s1f, first
        p2_valid, p2_col = p1_valid, p1_col
        p1_valid, p1_col = p0_valid, p0_col
        p0_col = np.where(take, popped, p0_col)
        p0_valid = take
        popped = popped + take
        q_level, head_c, head_rem = new_q, new_head_c, new_head_rem
        lev_prev = level
        q2, q1 = q1, int(fire)
        nb += int(fire)

    while True:
        if state == "BCAST":
            bcast_cycles += 1
            pending = rnd >= 0 and pos < round_nnz[rnd]
            fire = False
            done = False
            if pending:
                # the controller sees every FIFO's level of the previous cycle and counts its
                # own broadcasts that may not be in it yet (decided 1 and 2 cycles ago)
                i = q1 + q2
                full = lev_prev >= D - i
                if full.any():
                    stall += lev_prev >= max(D - i, 1)      # (an empty FIFO is not blamed)
                else:
                    fire = True
                    pos += 1
                    if pos == round_nnz[rnd] and rnd + 1 < R_in:
                        rnd, pos = rnd + 1, 0
            elif rnd + 1 < R_in:
                rnd, pos = rnd + 1, 0
            else:
                done = True
            step(fire)
            if done:
                state = "DRAIN"
        else:
            drain_cycles += 1
            # idle: nothing left before the mul_ stage (its writes are forwarded)
            idle = (((nb - popped) == 0) & ~p0_valid & ~p1_valid & ~p2_valid
                    & (q_level == 0) & ~s1 & ~(s2 & (s2f | last_layer)))
            if idle.all():
                break
            step(False)
    return LayerPrediction(cycles=START_CYCLES + bcast_cycles + drain_cycles, broadcasts=int(nb),
                           busy=[int(v) for v in busy], stall=[int(v) for v in stall],
                           bcast_cycles=bcast_cycles, drain_cycles=drain_cycles)


def predict_layer_batch(col_entries: np.ndarray, X: np.ndarray, n_out: int, *, fifo_depth: int,
                        ptr_queue_depth: int = DEFAULT_PTR_QUEUE_DEPTH,
                        last_layer: bool = True) -> list[LayerPrediction]:
    """:func:`predict_layer` for every row of ``X`` (``batch``, ``n_in``) at once: the same
    per-cycle registers with a leading batch axis (the same counts, several times faster for
    batches). A finished sample's PEs are idle, so stepping them changes nothing."""
    col_entries = np.asarray(col_entries, dtype=np.int64)
    n_in, N = col_entries.shape
    X = np.asarray(X).reshape(-1, n_in)
    S = X.shape[0]
    if S == 0:
        return []
    nz = X != 0
    C = nz.sum(axis=1)                               # broadcasts per sample
    Cm = int(C.max()) if S else 0
    # W[s, c, k]: entries of sample s's c-th nonzero column in PE k (0 past the end)
    W = np.zeros((S, Cm + 1, N), dtype=np.int64)
    for s_ in range(S):
        W[s_, :C[s_]] = col_entries[np.flatnonzero(nz[s_])]
    # nxt[s, c, k]: first column >= c of sample s with entries in PE k (Cm if none)
    cidx = np.arange(Cm + 1)[None, :, None]
    idx = np.where(W > 0, cidx, Cm)
    nxt = np.full((S, Cm + 2, N), Cm, dtype=np.int64)
    nxt[:, :Cm + 1] = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]
    R_in = -(-n_in // N)
    pad = R_in * N - n_in
    rnz = np.pad(nz, ((0, 0), (0, pad))).reshape(S, R_in, N).sum(axis=2)   # (S, R_in)
    rnz = np.concatenate([rnz, np.zeros((S, 1), np.int64)], axis=1)        # sentinel round
    D, Q = fifo_depth, ptr_queue_depth
    Wf, nxtf = W.ravel(), nxt.ravel()
    base_w = (np.arange(S) * (Cm + 1) * N)[:, None] + np.arange(N)[None, :]
    base_n = (np.arange(S) * (Cm + 2) * N)[:, None] + np.arange(N)[None, :]

    shape = (S, N)
    popped = np.zeros(shape, np.int64)
    p0_valid = np.zeros(shape, bool)
    p0_col = np.zeros(shape, np.int64)
    p1_valid = np.zeros(shape, bool)
    p1_col = np.zeros(shape, np.int64)
    p2_valid = np.zeros(shape, bool)
    p2_col = np.zeros(shape, np.int64)
    q_level = np.zeros(shape, np.int64)
    head_c = np.zeros(shape, np.int64)
    head_rem = np.zeros(shape, np.int64)
    s1 = np.zeros(shape, bool)
    s2 = np.zeros(shape, bool)
    s1f = np.zeros(shape, bool)
    s2f = np.zeros(shape, bool)
    m1 = np.zeros(shape, bool)
    a1 = np.zeros(shape, bool)
    stall = np.zeros(shape, np.int64)
    busy = np.zeros(shape, np.int64)
    nb = np.zeros(S, np.int64)                       # broadcasts decided
    q1 = np.zeros(S, np.int64)                       # ... 1 and 2 cycles ago (in flight)
    q2 = np.zeros(S, np.int64)
    lev_prev = np.zeros(shape, np.int64)             # FIFO levels at the previous cycle's start
    rnd = np.full(S, 0 if R_in else -1, np.int64)
    pos = np.zeros(S, np.int64)
    in_b = np.ones(S, bool)          # BCAST
    in_d = np.zeros(S, bool)         # DRAIN
    bcast_cycles = np.zeros(S, np.int64)
    drain_cycles = np.zeros(S, np.int64)
    rows = np.arange(S)

    while in_b.any() or in_d.any():
        bcast_cycles += in_b
        drain_cycles += in_d
        idle = (((nb[:, None] - popped) == 0) & ~p0_valid & ~p1_valid & ~p2_valid
                & (q_level == 0) & ~s1 & ~(s2 & (s2f | last_layer)))
        in_d &= ~idle.all(axis=1)                    # a drained sample ends in this cycle
        # LNZD and broadcast (samples in BCAST)
        cur = rnz[rows, np.maximum(rnd, 0)]
        pending = in_b & (rnd >= 0) & (pos < cur)
        i = (q1 + q2)[:, None]
        full = lev_prev >= D - i
        anyfull = full.any(axis=1)
        stall += (lev_prev >= np.maximum(D - i, 1)) & (pending & anyfull)[:, None]
        fire = pending & ~anyfull
        pos = pos + fire
        more = rnd + 1 < R_in
        adv = (fire & (pos == cur) & more) | (in_b & ~pending & more)
        rnd = np.where(adv, rnd + 1, rnd)
        pos = np.where(adv, 0, pos)
        done = in_b & ~pending & ~more
        # PE step
        level = (nb - q1)[:, None] - popped          # the last decision lands at this cycle's end
        # ... or is taken in this cycle from an empty FIFO (the bypass)
        take = (((nb[:, None] - popped) > 0)
                & (q_level + p0_valid + p1_valid + p2_valid <= Q + 1))
        push = p2_valid & (Wf[base_w + p2_col * N] > 0)
        # an empty pointer queue hands the column being pushed to the entry stage (bypass)
        byp = (q_level == 0) & push
        hc = np.where(byp, p2_col, head_c)
        hr = np.where(byp, Wf[base_w + p2_col * N], head_rem)
        issue = (q_level > 0) | byp
        first = issue & (hr == Wf[base_w + np.minimum(hc, Cm) * N])
        last = issue & (hr == 1)
        new_q = q_level + push - last
        pop_next = last & (new_q > 0)
        nc = nxtf[base_n + (hc + 1) * N]
        head_c = np.where(pop_next, nc, hc)
        head_rem = np.where(pop_next, Wf[base_w + np.minimum(nc, Cm) * N], hr - issue)
        busy += issue
        a1, m1, s2, s1 = m1, s2, s1, issue
        s2f, s1f = s1f, first
        p2_valid, p2_col = p1_valid, p1_col
        p1_valid, p1_col = p0_valid, p0_col
        p0_col = np.where(take, popped, p0_col)
        p0_valid = take
        popped = popped + take
        q_level = new_q
        lev_prev = level
        q2, q1 = q1, fire.astype(np.int64)
        nb = nb + fire
        in_d |= done
        in_b &= ~done
    return [LayerPrediction(cycles=int(START_CYCLES + bcast_cycles[s_] + drain_cycles[s_]),
                            broadcasts=int(nb[s_]), busy=[int(v) for v in busy[s_]],
                            stall=[int(v) for v in stall[s_]],
                            bcast_cycles=int(bcast_cycles[s_]),
                            drain_cycles=int(drain_cycles[s_])) for s_ in range(S)]


def predict_counters(image, x: np.ndarray, *, fifo_depth: int,
                     ptr_queue_depth: int = DEFAULT_PTR_QUEUE_DEPTH,
                     layer_inputs: list[np.ndarray] | None = None) -> list[list[LayerPrediction]]:
    """Per sample, per layer predictions for ``x`` (int16 ``(batch, n_in)`` or ``(n_in,)``, the
    model's order). ``layer_inputs`` (each layer's input in hardware positions, ``(batch,
    n_in_l)``) defaults to the golden model's (:attr:`GoldenResult.layer_inputs`)."""
    from .golden import check_image_object, golden_forward

    check_image_object(image)
    for name, value in (("fifo_depth", fifo_depth), ("ptr_queue_depth", ptr_queue_depth)):
        if not EIEConfig.in_range(name, value):
            lo, hi, what = EIEConfig._LIMITS[name]
            raise EieError(f"{name} {value!r} is out of range: the hardware takes an integer "
                           f"from {lo} to {hi} ({what})")
    xa = np.asarray(x)
    if xa.ndim == 1:
        xa = xa[None, :]
    if layer_inputs is None:
        layer_inputs = golden_forward(image, xa).layer_inputs
    L = len(image.layers)
    if len(layer_inputs) != L:
        raise EieError(f"layer_inputs has {len(layer_inputs)} arrays but the image has {L} "
                       "layers (one input per layer, in hardware positions; or leave it out)")
    per_layer = [predict_layer_batch(layer_column_entries(image, l), layer_inputs[l], d.n_out,
                                     fifo_depth=fifo_depth, ptr_queue_depth=ptr_queue_depth,
                                     last_layer=l == L - 1)
                 for l, d in enumerate(image.layers)]
    return [[per_layer[l][s] for l in range(len(image.layers))] for s in range(xa.shape[0])]

