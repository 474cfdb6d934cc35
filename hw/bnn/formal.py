"""Formal harnesses of the BNN's streams: no sample (no frame bit) is lost, duplicated or
reordered under any back-pressure, and every stream output keeps ``valid`` and its payload
until they are accepted.

Each harness is an Amaranth elaboratable with no ports, in the style of
:mod:`eie.hw.eie.formal`: the real block(s), free inputs (``AnyConst``/``AnySeq``), ``Assume``
for the input contract (the stream rule at the producer: once offered, a word stays offered,
unchanged, until it is taken), ``Assert`` for the properties (then the strengthening
invariants), ``Cover`` to show the properties are not vacuous. :func:`eie.sim.formal.prove` runs
them; docs/formal.md says what is proved for which configurations.

* :class:`WidthConverterHarness` -- a :class:`~eie.hw.bnn.width_converter.WidthConverter`
  (either implementation: the serializer of one input word a frame, the gearbox of several)
  against a bit-queue model of the frames: every output word is the next ``out_width`` frame
  bits of the words offered so far, in order; k-induction.
* :class:`BnnStreamHarness` -- a whole small :class:`~eie.hw.bnn.network.BnnNetwork` (input
  gearbox, MVTUs with their double-buffered input buffers, the serializer between layers)
  against a scoreboard: every output is the network's function of the next sample taken, in
  order, none made up; bounded. With ``stability_only`` the stream rule at every stream output
  inside and at the edge of the network, by k-induction.

``mutant=`` (:data:`MUTANTS`): a deliberately broken variant, for the tests that show each proof
can fail. Gateware only; the blocks are imported inside ``elaborate``.
"""

from __future__ import annotations

from amaranth.hdl import (Array, Assert, Assume, Cat, Const, Cover, Elaboratable, Module, Mux,
                          Signal, Value)

from ..common.formal import elaborate, free, signals, stable_until_accepted, subfragment

__all__ = ["WidthConverterHarness", "BnnStreamHarness", "gearbox_states", "reference_outputs",
           "TinyNet", "richest_seed", "MUTANTS"]

#: the deliberately broken variants of each harness
MUTANTS = {
    "WidthConverterHarness": ("greedy", "early_take"),
    "BnnStreamHarness": ("ignore_ready", "threshold_gt", "overwrite_bank"),
}


def _free_streams(m, i, o, width: int):
    """Drive a block's input stream ``i`` (``width`` bits) from a free producer that keeps the
    stream rule (assumed: a word once offered stays offered, unchanged, until taken) and its
    output stream ``o``'s ``ready`` from a free consumer. Returns ``(pend, held, i_fire,
    o_fire)``: ``pend`` a word offered in an earlier cycle and not yet taken, ``held`` that
    word, and the two handshakes."""
    pend = Signal(name="pend")          # a word offered in an earlier cycle, not yet taken
    held = Signal(width, name="held")   # that word
    m.d.comb += [i.valid.eq(free(m, 1, "i_valid")), i.payload.eq(free(m, width, "i_payload")),
                 o.ready.eq(free(m, 1, "o_ready"))]
    m.d.comb += Assume(~pend | (i.valid & (i.payload == held)))
    m.d.sync += [pend.eq(i.valid & ~i.ready), held.eq(i.payload)]
    return pend, held, i.valid & i.ready, o.valid & o.ready


def _mask_bits(value, n):
    return value[:n] if n else Const(0, 1)


def gearbox_states(n_bits: int, in_width: int, out_width: int) -> set[tuple[int, int, int]]:
    """Every ``(j, k, count)`` the gearbox can reach (input word, output word, bits held), under
    any pattern of handshakes its rule allows (an output word whenever ``count`` covers it, an
    input word whenever what remains after this cycle's output does not cover the next one):
    the strengthening invariant of :class:`WidthConverterHarness`."""
    n_in = -(-n_bits // in_width)
    n_out = -(-n_bits // out_width)
    bits_in = [min(in_width, n_bits - x * in_width) for x in range(n_in)]
    bits_out = [min(out_width, n_bits - x * out_width) for x in range(n_out)]
    seen, todo = set(), [(0, 0, 0)]
    while todo:
        st = todo.pop()
        if st in seen:
            continue
        seen.add(st)
        j, k, count = st
        need = bits_out[k]
        for o in ((False, True) if count >= need else (False,)):
            rest = count - need if o else count
            k2 = (k + 1) % n_out if o else k
            ready = rest < bits_out[k2]
            for i in ((False, True) if ready else (False,)):
                todo.append(((j + 1) % n_in if i else j, k2, rest + bits_in[j] if i else rest))
    return seen


class WidthConverterHarness(Elaboratable):
    """A :class:`~eie.hw.bnn.width_converter.WidthConverter` of ``n_bits``-bit frames from
    ``in_width``-bit to ``out_width``-bit words, against a model of what it must do: a queue of
    frame bits. A word offered on ``i`` (``valid``; the producer keeps it, unchanged, until
    ``ready``: the stream rule, assumed) adds its frame bits to the queue (the first ``n_bits -
    j * in_width`` of word ``j`` of a frame, at most ``in_width``); a word on ``o`` must be the
    queue's next ``out_width`` bits (a frame's last word: its remaining bits, zero above), and a
    handshake on ``o`` takes them off. Asserted:

    * every offered output word is the next frame bits, in order: none lost, duplicated or
      reordered, and none made up (the queue holds the bits of the word);
    * ``o``'s valid and payload stay until accepted;
    * no deadlock: when ``i`` offers and ``o`` is ready, a word moves on one side;
    * the converter holds at most what its register holds (the queue stays bounded).

    Free: ``i``'s valid and words (within the stream rule), ``o.ready`` in every cycle, the
    reset. k-induction with invariants tying the model to the converter's registers (gearbox:
    ``buf``, ``count``, ``j``, ``k``, and :func:`gearbox_states`; serializer: ``k``).

    ``mutant="greedy"`` (a gearbox): ``i.ready`` always high, so the gearbox takes words it has
    no room for yet. ``"early_take"`` (a serializer): the input word is taken with its first
    slice instead of its last.
    """

    def __init__(self, n_bits: int, in_width: int, out_width: int, *, mutant: str | None = None,
                 invariants: bool = True):
        if mutant not in (None, *MUTANTS["WidthConverterHarness"]):
            raise ValueError(f"unknown mutant {mutant!r}")
        self.n_bits, self.in_width, self.out_width = n_bits, in_width, out_width
        self.mutant = mutant
        self.invariants = invariants

    def elaborate(self, platform):
        from .width_converter import WidthConverter

        m = Module()
        N, I, O = self.n_bits, self.in_width, self.out_width
        dut = WidthConverter(N, I, O)
        n_in, n_out = dut.in_words, dut.out_words
        gear = n_in > 1
        if self.mutant == "greedy" and not gear:
            raise ValueError("mutant 'greedy' needs a gearbox (several input words a frame)")
        if self.mutant == "early_take" and (gear or n_out < 2):
            raise ValueError("mutant 'early_take' needs a serializer of two or more slices")
        frag = elaborate(dut, platform)
        s = signals(frag, ["k", "buf", "count", "j"] if gear else ["k"], where="WidthConverter")
        if self.mutant == "greedy":
            frag.add_statements("comb", dut.i.ready.eq(1))
        elif self.mutant == "early_take":
            frag.add_statements("comb", dut.i.ready.eq(dut.o.ready))
        m.submodules.conv = frag
        i, o = dut.i, dut.o

        # ---- the producer (the stream rule, assumed) and the consumer (free)
        pend, held, i_fire, o_fire = _free_streams(m, i, o, I)

        # ---- the model: a queue of the frame bits offered and not yet sent
        bits_in = [min(I, N - x * I) for x in range(n_in)]
        bits_out = [min(O, N - x * O) for x in range(n_out)]
        if gear:
            states = gearbox_states(N, I, O)
            cap = max(c for _, _, c in states) + I
        else:
            cap = N
        q = Signal(cap, name="q")                       # bit 0 is the next to go out
        qn = Signal(range(cap + 1), name="qn")          # how many
        mj = Signal(range(max(n_in, 2)), name="mj")     # the next offered word's index
        mk = Signal(range(max(n_out, 2)), name="mk")    # the next output word's index
        new = Signal()
        m.d.comb += new.eq(i.valid & ~pend)
        nb = Array(Const(b, range(I + 1)) for b in bits_in)[mj]
        offer = Array(i.payload[:b] for b in bits_in)[mj]
        q_now = Signal(cap + I, name="q_now")
        qn_now = Signal(range(cap + I + 1), name="qn_now")
        m.d.comb += [q_now.eq(Mux(new, q | (offer << qn), q)), qn_now.eq(qn + Mux(new, nb, 0))]
        need = Array(Const(b, range(O + 1)) for b in bits_out)[mk]
        head = Array(q_now[:b] for b in bits_out)[mk]
        m.d.comb += [
            Assert(~o.valid | (qn_now >= need),
                   "nothing made up: an output word only once its frame bits were offered"),
            Assert(~o.valid | (o.payload == head),
                   "every output word is the next frame bits, in order (none lost, duplicated "
                   "or reordered)"),
            Assert(~(i.valid & o.ready) | i_fire | o_fire,
                   "no deadlock: with a word offered and the output ready, a word moves"),
            Assert(qn_now <= cap, f"no word taken before the bits ahead of it went out (at most "
                   f"{cap} frame bits in flight)"),
        ]
        stable_until_accepted(m, o, "o")
        with m.If(o_fire):
            m.d.sync += [q.eq(Array(q_now[b:b + cap] for b in bits_out)[mk]),
                         qn.eq(qn_now - need),
                         mk.eq(Mux(mk == n_out - 1, 0, mk + 1))]
        with m.Else():
            m.d.sync += [q.eq(q_now[:cap]), qn.eq(qn_now)]
        with m.If(new):
            m.d.sync += mj.eq(Mux(mj == n_in - 1, 0, mj + 1))

        if self.invariants:
            ok = [(mk == s["k"], "the output word index is the model's"),
                  ((mj < n_in) & (mk < n_out), "the word indices are in their frames")]
            if gear:
                buf, count, j = s["buf"], s["count"], s["j"]
                held_bits = Array(held[:b] for b in bits_in)[j]
                nb_j = Array(Const(b, range(I + 1)) for b in bits_in)[j]
                ok += [
                    (mj == Mux(pend, Mux(j == n_in - 1, 0, j + 1), j),
                     "the model's next word follows the gearbox's"),
                    (qn == count + Mux(pend, nb_j, 0),
                     "the queue is the bits held and the word offered"),
                    ((buf >> count) == 0, "nothing above the bits held"),
                    (q == (buf | Mux(pend, held_bits << count, 0)),
                     "the queue is the bits held, then the word offered"),
                    (Cat(*((j == jj) & (s["k"] == kk) & (count == cc)
                           for jj, kk, cc in sorted(states))).any(),
                     "the gearbox's state is one its rule reaches"),
                ]
            else:
                sent = Array(Const(sum(bits_out[:x]), range(N + 1)) for x in range(n_out))[s["k"]]
                ok += [
                    (~pend | ((qn == N - sent) & (q == (held[:N] >> sent))),
                     "the queue is the word offered, less the slices sent"),
                    (pend | ((qn == 0) & (q == 0) & (s["k"] == 0)),
                     "nothing offered: nothing queued, at a frame's start"),
                ]
            ok.append(((q >> qn) == 0, "nothing queued above the queue's bits"))
            for inv, text in ok:
                m.d.comb += Assert(inv, f"invariant: {text}")

        # not vacuous: a frame goes out whole; the output is held back with a word waiting
        frames = Signal(2)
        with m.If(o_fire & (mk == n_out - 1) & (frames < 3)):
            m.d.sync += frames.eq(frames + 1)
        m.d.comb += [
            Cover(frames == 2, "two whole frames go out"),
            Cover(o.valid & ~o.ready & i.valid, "the output is held back with a word offered"),
        ]
        return m


# ----------------------------------------------------------------------------- the network

class TinyNet:
    """A small network's weights (the :class:`~eie.hw.bnn.words.BnnWeights` protocol): weight
    bits ``(n_out, n_in)`` and thresholds a layer, random from ``seed``, thresholds in
    ``1 .. n_in`` (so that ``matches == threshold`` happens, which tells ``>=`` from ``>``)."""

    def __init__(self, folds, *, seed: int = 1, last_thresholded: bool = False):
        import numpy as np

        rng = np.random.default_rng(seed)
        self.folds = list(folds)
        self.weights = [rng.integers(0, 2, (f.n_out, f.n_in), dtype=np.uint8) for f in self.folds]
        n_thr = len(self.folds) if last_thresholded else len(self.folds) - 1
        self.thresholds = [rng.integers(1, f.n_in + 1, f.n_out).astype(np.int64)
                           for f in self.folds[:n_thr]]
        self.last_thresholded = last_thresholded

    @property
    def shape(self) -> list[int]:
        return [self.folds[0].n_in] + [f.n_out for f in self.folds]


def reference_outputs(net: TinyNet) -> list[int]:
    """The network's output word for every input sample (sample ``x``: input ``k`` is bit ``k``
    of ``x``), as the network's stream ``o`` carries it: output bits (bit ``k``: neuron ``k``),
    or the output layer's ``dot = 2 * matches - n_in`` per class, ``D = dot_width(n_in)`` bits
    each, class ``k`` at bits ``D*k ..``. Plain Python, from the definitions in
    docs/bnn.md (``matches = popcount(XNOR(x, w))``, a neuron fires when ``matches >= T``)."""
    from .threshold import dot_width

    n_in = net.folds[0].n_in
    out = []
    for x in range(1 << n_in):
        a = [(x >> k) & 1 for k in range(n_in)]
        word = 0
        for l, w in enumerate(net.weights):
            matches = [sum(int(wi == ai) for wi, ai in zip(row, a)) for row in w]
            if l < len(net.thresholds):
                a = [int(mt >= int(t)) for mt, t in zip(matches, net.thresholds[l])]
                word = sum(b << k for k, b in enumerate(a))
            else:
                d = dot_width(len(a))
                word = sum(((2 * mt - len(a)) & ((1 << d) - 1)) << (d * k)
                           for k, mt in enumerate(matches))
        out.append(word)
    return out


def richest_seed(folds, seeds=range(16), last_thresholded=False) -> int:
    """The seed (of ``seeds``) whose :class:`TinyNet` has the most distinct outputs (a
    scoreboard tells two samples apart only by their outputs)."""
    return max(seeds, key=lambda s: (len(set(reference_outputs(
        TinyNet(folds, seed=s, last_thresholded=last_thresholded)))), -s))


class BnnStreamHarness(Elaboratable):
    """A whole :class:`~eie.hw.bnn.network.BnnNetwork` of small layers (``folds``, weights baked
    in from ``net``, input words of ``in_width`` bits): the input gearbox, each layer's MVTU
    with its double-buffered input buffer and pipeline, the serializer between layers.

    Against a scoreboard: the harness collects each sample from the input words the network
    takes (``i.valid & i.ready``) and queues the network's output for it
    (:func:`reference_outputs`); asserted:

    * every offered output is the queue's head: the output of the next sample taken, in order
      (none lost, duplicated or reordered), and none is made up (the queue is not empty);
    * every stream output keeps ``valid`` and its payload until accepted: the input gearbox's,
      each MVTU's, each serializer's, the network's;
    * at most ``max_in_flight`` samples are inside (default: :meth:`capacity`).

    Free: the input words and when they are offered (within the stream rule, assumed), the
    consumer's ``o.ready`` in every cycle, the reset. The weights are fixed (the stream
    properties do not depend on them; the solver picks the samples). Bounded: the input buffers
    and the weights live in memories, which an invariant cannot name.

    ``stability_only=True`` leaves out the scoreboard: the stream rule at every output is then
    proved by k-induction (it depends on no memory word, and closes at depth 2 without the
    gearbox's invariants of :class:`WidthConverterHarness`).

    ``mutant="ignore_ready"``: the last layer's MVTU never stalls (its output register is
    overwritten while the network's output waits); ``"threshold_gt"``: layer 0's threshold
    compares ``matches > T`` instead of ``>=``; ``"overwrite_bank"``: layer 0's input buffer
    takes words into a full bank.
    """

    def __init__(self, folds, net: TinyNet | None = None, *, in_width: int | None = None,
                 mutant: str | None = None, stability_only: bool = False,
                 max_in_flight: int | None = None):
        if mutant not in (None, *MUTANTS["BnnStreamHarness"]):
            raise ValueError(f"unknown mutant {mutant!r}")
        self.folds = list(folds)
        self.net = net or TinyNet(self.folds, seed=richest_seed(self.folds))
        self.in_width = in_width or self.folds[0].n_in
        self.mutant = mutant
        self.stability_only = stability_only
        self.max_in_flight = max_in_flight

    def capacity(self, frag) -> int:
        """How many samples the elaborated network ``frag`` can hold: a layer, its input
        buffer's two banks, one sample an item in its pipeline
        (:attr:`~eie.hw.bnn.mvtu.Mvtu.latency` stages) and its output register; the input
        gearbox, part of one more."""
        # Mvtu.latency is 2 + its popcount trees' latency (read off the elaborated trees)
        return 1 + sum(5 + subfragment(frag, f"layer{l}.popcount0")[1].latency
                       for l in range(len(self.folds)))

    def _patch(self, frag):
        if self.mutant == "ignore_ready":
            mv, _ = subfragment(frag, f"layer{len(self.folds) - 1}")
            en = signals(mv, ["en"], where="Mvtu")["en"]
            mv.add_statements("comb", en.eq(1))
        elif self.mutant == "overwrite_bank":
            ib, inbuf = subfragment(frag, "layer0.inbuf")
            ib.add_statements("comb", inbuf.i.ready.eq(1))
        elif self.mutant == "threshold_gt":
            af, acc = subfragment(frag, "layer0.acc")
            nxt = signals(af, [f"acc_next{p}" for p in range(acc.pe)], where="AccThreshold")
            patch = Module()
            with patch.If(acc.en & acc.i_valid & acc.i_last):
                for p in range(acc.pe):
                    patch.d.sync += acc.o_bits[p].eq(nxt[f"acc_next{p}"] > acc.i_thr[p])
            for domain, stmts in elaborate(patch).statements.items():
                af.add_statements(domain, stmts)

    def elaborate(self, platform):
        from .network import BnnNetwork

        m = Module()
        folds, net, IW = self.folds, self.net, self.in_width
        dut = BnnNetwork(folds, image=net, in_width=IW)
        frag = elaborate(dut, platform)
        self._patch(frag)
        m.submodules.net = frag
        i, o = dut.i, dut.o
        for name in ("ld_en", "ld_layer", "ld_kind", "ld_pe", "ld_addr", "ld_data"):
            m.d.comb += getattr(dut, name).eq(0)     # load first, then stream: baked weights

        # ---- the producer (the stream rule, assumed) and the consumer (free)
        pend, held, i_fire, o_fire = _free_streams(m, i, o, IW)

        # ---- every stream output inside and at the edge
        streams = [("in_conv", "input gearbox"), *((f"layer{l}", f"layer {l}'s MVTU")
                                                   for l in range(len(folds)))]
        streams += [(f"conv{l}", f"serializer into layer {l}") for l in range(1, len(folds))]
        for path, label in streams:
            _, block = subfragment(frag, path)
            stable_until_accepted(m, block.o, label)
        if self.stability_only:
            m.d.comb += Cover(o_fire, "an output is taken")
            return m

        # ---- the scoreboard
        n_in = folds[0].n_in
        words = -(-n_in // IW)
        table = reference_outputs(net)
        assert len(set(table)) > 1, "a network with one output cannot show a lost sample"
        out_bits = len(Value.cast(o.payload))
        sample = Signal(n_in, name="sample")        # the words taken so far
        wi = Signal(range(max(words, 2)), name="word_index")
        full = Signal(n_in, name="sample_full")     # with this cycle's word
        m.d.comb += full.eq(sample)
        for w in range(words):
            lo, hi = w * IW, min(n_in, (w + 1) * IW)
            with m.If(i_fire & (wi == w)):
                m.d.comb += full[lo:hi].eq(i.payload[:hi - lo])
        done = Signal()
        m.d.comb += done.eq(i_fire & (wi == words - 1))
        with m.If(i_fire):
            m.d.sync += [sample.eq(full), wi.eq(Mux(wi == words - 1, 0, wi + 1))]
        depth = self.max_in_flight or self.capacity(frag)
        fifo = Array(Signal(out_bits, name=f"expect{e}") for e in range(depth))
        count = Signal(range(depth + 2), name="in_flight")
        expect = Signal(out_bits, name="expected")
        m.d.comb += expect.eq(Array(Const(v, out_bits) for v in table)[full])
        m.d.comb += [
            Assert(~o.valid | (count != 0), "nothing made up: an output only for a sample taken"),
            Assert(~o.valid | (Value.cast(o.payload) == fifo[0]),
                   "every output is the network's output for the next sample taken (none lost, "
                   "duplicated or reordered)"),
            Assert(count <= depth, f"no more samples taken than the network holds (at most "
                   f"{depth} inside)"),
        ]
        # the queue: pop the head on an output taken, push the sample's output at its last word
        pos = Signal(range(depth + 2))
        m.d.comb += pos.eq(count - o_fire)
        for e in range(depth):
            nxt = fifo[e + 1] if e + 1 < depth else Const(0, out_bits)
            with m.If(done & (pos == e)):
                m.d.sync += fifo[e].eq(expect)
            with m.Elif(o_fire):
                m.d.sync += fifo[e].eq(nxt)
        with m.If(count <= depth):
            m.d.sync += count.eq(pos + done)
        m.d.comb += [
            Cover(o_fire & (count == 1) & done, "a sample goes out as another is taken"),
            Cover(o.valid & ~o.ready & (count >= 2), "the output waits with two samples inside"),
        ]
        return m
