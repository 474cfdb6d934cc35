"""Matrix-vector-threshold unit (MVTU): one BNN layer, folded FINN-style.

``pe`` neurons and ``simd`` input bits per cycle. A sample (the ``n_in``-bit input vector) arrives
on stream ``i`` as ``sf`` words of ``simd`` bits (word ``s`` holds inputs ``s*simd ..``; padding
lanes of the last word are ignored) into the double-buffered :class:`InputBuffer` (block RAM,
no full-width register); the unit then spends ``nf * sf`` cycles on it, one (neuron fold,
synapse fold) pair a cycle, neuron folds outer, reading the sample's word ``sf_i`` from the
buffer each cycle, so every neuron fold reuses it. The next sample is written into the other
bank meanwhile (``sf`` cycles, while its producer keeps up) and starts in the cycle after the
current one's last fold, so back-to-back samples leave no bubble.

Pipeline, one item per cycle while ``en``:

- ``iss_``  issue: fold counters; weight address ``nf_i * sf + sf_i`` to every PE's memory and
  word ``sf_i`` of the current bank to the input buffer's (synchronous) read port;
- ``xn_``   weight word and input slice: ``XNOR``, padding lanes of the last synapse fold masked
  to 0; into each PE's popcount tree (:class:`PopCount`, ``latency`` stages);
- ``acc_``  :class:`AccThreshold`: accumulate over synapse folds, compare with the threshold
  read from the PE's threshold memory (hidden layer) or form ``dot`` (output layer);
- ``col_``  the ``pe`` results of each neuron fold shift into a collect register; after the last
  neuron fold the vector moves to the output register (stream ``o``).

The only stall: a finished vector meets a full output register that is not being read
(``o.valid & ~o.ready``); then the whole pipeline holds (``en`` low) for that cycle.

Memories: per PE, weights (``nf * sf`` words of ``simd`` bits) and, for hidden layers,
thresholds (``nf`` words). They are written through the ``ld_`` port (one word per cycle with
``ld_w_en``/``ld_t_en``, ``ld_pe`` selecting the PE) and may start from ``init`` values.

Ternary weights (``ternary``, a W2 layer): a second plane per PE, the nonzero masks (``nf * sf``
words laid out as the weights, which then hold the signs; loaded with ``ld_m_en``), read at the
same address in the same cycle; the ``xn_`` stage ANDs the mask word into the XNOR, so the
popcount counts ``matches = popcount(mask & XNOR(x, sign))``. Same pipeline, same II. An output
layer of dots then needs each neuron's nonzero count ``K'`` (``dot = 2 * matches - K'``): it
has a threshold memory holding ``K'`` (loaded with ``ld_t_en``). Without ``ternary`` the unit
is exactly the binary one.

k-bit activations (``fold.in_bits``/``fold.out_bits``, docs/ARCHITECTURE.md): a layer fed by
``k``-bit activations takes ``sf`` words of ``simd * k`` bits (element ``i`` at bits
``[k*i + k - 1 : k*i]``) and works bit-serially: per neuron fold, plane ``b = 0..k-1`` walks the
synapse folds over the same weight (and mask) words, so the layer spends ``nf * sf * k`` cycles
on a sample. Per PE two popcount trees count ``x_b & s (& z)`` and ``x_b (& z)``; the plane dot
``2P - Q`` is shifted by ``b`` and accumulated into the signed dot (:class:`AccThreshold` with
``in_bits``). A layer with ``k``-bit outputs reads each neuron's ``2**k - 1`` thresholds in one
threshold word and outputs the number crossed, ``k`` bits a neuron (``n_out * k`` bits out).
With both precisions 1 the unit is exactly the A1 one.

Bit-parallel consumption (``fold.consume == "parallel"``, a k-bit-fed layer): the same input
words, but every (neuron fold, synapse fold) pair is issued once, ``nf * sf`` cycles a sample.
The ``xn_`` stage takes all ``k`` planes of the SIMD group at once: per PE one adder tree sums
the ``k``-bit elements under a +1 weight (``P = sum x_i & s & z``, a popcount over the planes
with plane ``b`` weighted ``2**b``) and one sums the elements under a nonzero weight
(``Q = sum x_i & z``; a W1 layer has no masks, so all PEs share one ``Q`` tree); the
synapse fold's dot ``2P - Q`` goes to the accumulator unshifted (no plane counter, no shifter:
the accumulate stage's path is the serial one's minus the shift).
"""

from __future__ import annotations

from typing import Sequence

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .folding import LayerFold
from .bram import bram_memory, bram_read
from .input_buffer import InputBuffer
from .popcount import PopCount
from .threshold import AccThreshold, dot_width

__all__ = ["Mvtu"]


class Mvtu(wiring.Component):
    """One folded BNN layer with stream input (``sf`` words of ``simd`` bits a sample) and stream
    output (``n_out`` bits for a hidden layer, ``n_out`` signed dots of
    :func:`~eie.hw.bnn.threshold.dot_width` bits for the output layer). ``hidden`` means "has
    thresholds, outputs bits": every hidden layer, and a thresholded output layer too."""

    def __init__(self, fold: LayerFold, *, hidden: bool = True,
                 weight_init: Sequence[Sequence[int]] | None = None,
                 threshold_init: Sequence[Sequence[int]] | None = None,
                 levels_per_stage: int = 2, ld_data_width: int | None = None,
                 ternary: bool = False, mask_init: Sequence[Sequence[int]] | None = None):
        if not isinstance(fold, LayerFold):
            raise TypeError(f"fold must be a LayerFold, not {fold!r}")
        if weight_init is not None and len(weight_init) != fold.pe:
            raise ValueError(f"weight_init has {len(weight_init)} memories, expected {fold.pe}")
        if threshold_init is not None and len(threshold_init) != fold.pe:
            raise ValueError(f"threshold_init has {len(threshold_init)} memories, expected {fold.pe}")
        if mask_init is not None and (not ternary or len(mask_init) != fold.pe):
            raise ValueError(f"mask_init needs ternary=True and {fold.pe} memories")
        self._fold, self._hidden, self._ternary = fold, hidden, bool(ternary)
        self._mask_init = mask_init
        if not hidden and fold.out_bits != 1:
            raise ValueError(f"an output layer of dots has out_bits 1, not {fold.out_bits}")
        # a threshold memory: thresholds (hidden), or the nonzero counts of a ternary dot layer
        # fed by 1-bit activations (a k-bit-fed one forms its dot without them)
        self._has_tmem = hidden or (self._ternary and fold.in_bits == 1)
        self._weight_init, self._threshold_init = weight_init, threshold_init
        self._levels_per_stage = levels_per_stage
        self._thr_width = fold.threshold_width if fold.out_bits == 1 else fold.threshold_word_width
        width = max(fold.simd, self._thr_width if self._has_tmem else 0)
        self._ld_data_width = ld_data_width or width
        if self._ld_data_width < width:
            raise ValueError(f"ld_data_width {ld_data_width} is narrower than a memory word ({width})")
        out_shape = (unsigned(fold.n_out * fold.out_bits) if hidden
                     else data.ArrayLayout(signed(fold.dot_width), fold.n_out))
        members = {
            "i": In(stream.Signature(unsigned(fold.simd * fold.in_bits))),
            "o": Out(stream.Signature(out_shape)),
            "ld_w_en": In(1),
            "ld_t_en": In(1),
            "ld_pe": In(range(fold.pe)),
            "ld_addr": In(range(max(fold.nf * fold.sf, 2))),
            "ld_data": In(self._ld_data_width),
            "stall": Out(1),
            "active": Out(1),
        }
        if self._ternary:
            members["ld_m_en"] = In(1)
        super().__init__(members)

    @property
    def fold(self) -> LayerFold:
        return self._fold

    @property
    def hidden(self) -> bool:
        return self._hidden

    @property
    def ternary(self) -> bool:
        return self._ternary

    @property
    def latency(self) -> int:
        """Cycles from issuing a fold to its result in the ``col_`` stage."""
        return 2 + PopCount(self._fold.simd, levels_per_stage=self._levels_per_stage).latency

    def elaborate(self, platform):
        m = Module()
        f = self._fold
        NF, SF, SIMD, PE = f.nf, f.sf, f.simd, f.pe
        bw = f.out_bits if self._hidden else f.dot_width
        KIN = f.in_bits
        PASSES = f.passes          # bit planes walked one after the other (serial), else 1

        en = Signal()
        m.d.comb += self.stall.eq(~en)

        # --- memories -----------------------------------------------------------------------
        # Weights and thresholds are read through bram_read (a block RAM without collision
        # logic): they are loaded before samples stream, never read and written in one cycle.
        w_addr = Signal(range(max(NF * SF, 2)))   # read address, all PEs (the issue stage's)
        t_addr = Signal(range(max(NF, 2)))        # threshold read address (a neuron fold)
        w_rd, t_rd, m_rd = [], [], []

        def plane(p, mem_name, width, depth, init, w_en, addr, rd_name):
            """PE ``p``'s memory ``mem_name`` (``width`` bits x ``depth``), written by the
            loader when ``w_en`` and ``ld_pe == p``, read at ``addr`` through ``bram_read``."""
            mem = bram_memory(shape=unsigned(width), depth=depth, init=init[p] if init else ())
            m.submodules[f"{mem_name}{p}"] = mem
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(self.ld_addr), wp.data.eq(self.ld_data[:width]),
                         wp.en.eq(w_en & (self.ld_pe == p))]
            return bram_read(m, mem, addr=addr, en=en, name=f"{rd_name}{p}")

        for p in range(PE):
            w_rd.append(plane(p, "wmem", SIMD, NF * SF, self._weight_init, self.ld_w_en, w_addr,
                              "w_word"))
            if self._ternary:
                m_rd.append(plane(p, "mmem", SIMD, NF * SF, self._mask_init, self.ld_m_en,
                                  w_addr, "m_word"))
            if self._has_tmem:
                t_rd.append(plane(p, "tmem", self._thr_width, NF, self._threshold_init,
                                  self.ld_t_en, t_addr, "thr"))

        # --- issue stage: the input buffer holds this sample and takes the next one ----------
        inbuf = m.submodules.inbuf = InputBuffer(SF, SIMD * KIN)
        wiring.connect(m, wiring.flipped(self.i), inbuf.i)
        active = Signal()
        iss_nf = Signal(range(max(NF, 2)))
        iss_sf = Signal(range(max(SF, 2)))
        iss_addr = Signal(range(max(NF * SF, 2)))
        last_sf = iss_sf == SF - 1
        last_nf = iss_nf == NF - 1
        if PASSES > 1:
            # bit planes: per neuron fold, every plane walks the synapse folds (same weights)
            iss_b = Signal(range(KIN))
            last_b = iss_b == KIN - 1
            last_acc = last_sf & last_b
        else:
            last_acc = last_sf
        last_fold = last_acc & last_nf
        m.d.comb += [self.active.eq(active), inbuf.rd_en.eq(en), inbuf.rd_index.eq(iss_sf),
                     inbuf.release.eq(en & active & last_fold)]
        m.d.comb += w_addr.eq(iss_addr)
        with m.If(en):
            with m.If(active):
                with m.If(last_fold):
                    m.d.sync += [iss_sf.eq(0), iss_nf.eq(0), iss_addr.eq(0),
                                 active.eq(inbuf.valid_other)]
                    if PASSES > 1:
                        m.d.sync += iss_b.eq(0)
                with m.Elif(last_acc):
                    m.d.sync += [iss_sf.eq(0), iss_nf.eq(iss_nf + 1), iss_addr.eq(iss_addr + 1)]
                    if PASSES > 1:
                        m.d.sync += iss_b.eq(0)
                if PASSES > 1:
                    with m.Elif(last_sf):           # next plane: the same weight words again
                        m.d.sync += [iss_sf.eq(0), iss_b.eq(iss_b + 1),
                                     iss_addr.eq(iss_addr - (SF - 1))]
                with m.Else():
                    m.d.sync += [iss_sf.eq(iss_sf + 1), iss_addr.eq(iss_addr + 1)]
            with m.Elif(inbuf.valid):
                m.d.sync += active.eq(1)

        # Tags travel with each item: valid, first/last synapse fold, neuron fold, last neuron fold.
        def tag(name):
            t = {"valid": Signal(name=f"{name}_valid"), "first": Signal(name=f"{name}_first"),
                 "last": Signal(name=f"{name}_last"), "last_nf": Signal(name=f"{name}_last_nf"),
                 "nf": Signal(range(max(NF, 2)), name=f"{name}_nf")}
            if PASSES > 1:
                t["plane"] = Signal(range(KIN), name=f"{name}_plane")
            return t

        tags = [tag("iss")]
        if PASSES > 1:
            m.d.comb += [tags[0]["valid"].eq(active), tags[0]["first"].eq((iss_sf == 0) & (iss_b == 0)),
                         tags[0]["last"].eq(last_acc), tags[0]["last_nf"].eq(last_nf),
                         tags[0]["nf"].eq(iss_nf), tags[0]["plane"].eq(iss_b)]
        else:
            m.d.comb += [tags[0]["valid"].eq(active), tags[0]["first"].eq(iss_sf == 0),
                         tags[0]["last"].eq(last_sf), tags[0]["last_nf"].eq(last_nf),
                         tags[0]["nf"].eq(iss_nf)]

        def advance(prev, name):
            t = tag(name)
            with m.If(en):
                m.d.sync += [t[k].eq(prev[k]) for k in t]
            return t

        # --- xnor stage ---------------------------------------------------------------------
        tags.append(advance(tags[0], "xn"))
        xn_x = inbuf.rd_data                      # word iss_sf of the sample, read at issue
        tail = f.n_in - (SF - 1) * SIMD           # real lanes of the last synapse fold
        full = Const((1 << SIMD) - 1, SIMD)
        if PASSES > 1:
            xn_last_sf = Signal()                  # the item is of the last synapse fold
            with m.If(en):
                m.d.sync += xn_last_sf.eq(last_sf)
            mask = Mux(xn_last_sf, Const((1 << tail) - 1, SIMD), full) if tail < SIMD else full
        else:
            mask = Mux(tags[1]["last"], Const((1 << tail) - 1, SIMD), full) if tail < SIMD else full

        def trees(*named_values, elem_bits=1):
            """One popcount tree per ``(name, value)``: each enabled cycle it takes ``value``
            (``SIMD`` elements of ``elem_bits`` bits) and gives their sum ``latency`` cycles
            later. (A PE's trees get their inputs, then their enables, in this order, so an A1
            or serial core's Verilog is the text it was before the helper.)"""
            ts = []
            for name, _ in named_values:
                ts.append(PopCount(SIMD, levels_per_stage=self._levels_per_stage,
                                   elem_bits=elem_bits))
                m.submodules[name] = ts[-1]
            m.d.comb += [t.i.eq(v) for t, (_, v) in zip(ts, named_values)]
            m.d.comb += [t.en.eq(en) for t in ts]
            return ts

        pcs, pcq = [], []       # per PE: matches (A1) or P; Q (k-bit inputs)
        if KIN > 1 and PASSES == 1:
            # all k planes at once: the k-bit element of each real lane, summed per PE under
            # +1 weights (P) and under nonzero weights (Q)
            lanes = [xn_x[i * KIN:(i + 1) * KIN] for i in range(SIMD)]

            def elements(keep):
                """The lanes' elements where ``keep`` (SIMD bits) is 1, else 0."""
                return Cat(*[lanes[i] & keep[i].replicate(KIN) for i in range(SIMD)])

            if not self._ternary:                         # no masks: one Q for every PE
                shared, = trees(("popcount_all", elements(mask)), elem_bits=KIN)
            for p in range(PE):
                if self._ternary:
                    live = mask & m_rd[p]
                    pos, alls = trees((f"popcount{p}", elements(live & w_rd[p])),
                                      (f"popcount_all{p}", elements(live)), elem_bits=KIN)
                else:
                    pos, = trees((f"popcount{p}", elements(mask & w_rd[p])), elem_bits=KIN)
                    alls = shared
                pcs.append(pos)
                pcq.append(alls)
        elif KIN > 1:
            # plane b of the sample word: bit b of every k-bit element, lanes in order
            planes = Cat(*[Cat(*[xn_x[i * KIN + b] for i in range(SIMD)]) for b in range(KIN)])
            xn_plane = Signal(SIMD)
            m.d.comb += xn_plane.eq(planes.word_select(tags[1]["plane"], SIMD))
            for p in range(PE):
                terms = xn_plane & mask                   # inputs with bit b set
                if self._ternary:
                    terms = terms & m_rd[p]               # zero weights add nothing
                pos, alls = trees((f"popcount{p}", terms & w_rd[p]), (f"popcount_all{p}", terms))
                pcs.append(pos)
                pcq.append(alls)
        else:
            for p in range(PE):
                hits = ~(w_rd[p] ^ xn_x) & mask
                if self._ternary:
                    hits = hits & m_rd[p]                 # zero weights never match
                pcs += trees((f"popcount{p}", hits))
        for k in range(pcs[0].latency):
            tags.append(advance(tags[-1], f"pc{k}"))

        # --- accumulate / threshold stage ---------------------------------------------------
        acc = AccThreshold(PE, f.n_in, pcs[0].o.shape().width, hidden=self._hidden,
                           offsets=self._ternary and not self._hidden and KIN == 1,
                           in_bits=KIN, out_bits=f.out_bits, bit_serial=PASSES > 1)
        m.submodules.acc = acc
        tp = tags[-1]
        m.d.comb += [acc.en.eq(en), acc.i_valid.eq(tp["valid"]), acc.i_first.eq(tp["first"]),
                     acc.i_last.eq(tp["last"])]
        if PASSES > 1:
            m.d.comb += acc.i_plane.eq(tp["plane"])
        for p in range(PE):
            if KIN > 1:
                m.d.comb += acc.i_count[p].eq(pcs[p].o * 2 - pcq[p].o)   # plane dot 2P - Q
            else:
                m.d.comb += acc.i_count[p].eq(pcs[p].o)
            if self._hidden:
                # Read the threshold one stage ahead so it arrives with the item.
                m.d.comb += acc.i_thr[p].eq(t_rd[p])
            elif self._ternary and KIN == 1:
                m.d.comb += acc.i_off[p].eq(t_rd[p])      # nonzero count K', read likewise
        if self._has_tmem:
            m.d.comb += t_addr.eq(tags[-2]["nf"])
        col_last_nf = Signal()
        with m.If(en):
            m.d.sync += col_last_nf.eq(tp["last_nf"])

        # --- collect / output stage ---------------------------------------------------------
        results = acc.o_bits if self._hidden else Cat(*[acc.o_dots[p] for p in range(PE)])
        complete = acc.o_valid & col_last_nf
        m.d.comb += en.eq(~(complete & self.o.valid & ~self.o.ready))
        if NF > 1:
            col = Signal((NF - 1) * PE * bw)
            vector = Cat(col, results)
            with m.If(en & acc.o_valid):
                m.d.sync += col.eq(vector[PE * bw:])
        else:
            vector = results
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(en & complete):
            m.d.sync += [self.o.payload.eq(vector[:f.n_out * bw]), self.o.valid.eq(1)]
        return m
