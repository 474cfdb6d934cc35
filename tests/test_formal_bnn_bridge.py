"""Formal proofs of the BNN's streams (eie.hw.bnn.formal) and of the UART bridge's frame layer
(eie.boards.formal), through the one runner (eie.sim.formal), and the broken designs that each
must fail.

Every proof prints its summary (each property and its result); ``make formal`` shows them
(``-rP``). docs/formal.md lists what is proved, for which configurations, and how long it takes.
"""

from __future__ import annotations

import numpy as np
import pytest

from eie.boards.formal import BridgeHarness
from eie.boards.protocol import Cmd, encode_open, encode_request
from eie.hw.bnn.folding import LayerFold
from eie.hw.bnn.formal import (BnnStreamHarness, TinyNet, WidthConverterHarness,
                               gearbox_states, reference_outputs, richest_seed)
from eie.sim.formal import prove

#: (n_bits, in_width, out_width): gearboxes (several input words a frame) and serializers (one)
GEARBOXES = [(8, 3, 2), (10, 4, 3)]
SERIALIZERS = [(6, 6, 2), (7, 8, 3)]
#: slow: more gearboxes (a wide one, one to a single output word, the TFC's 784-bit input in
#: 32-bit words), a pass-through
MORE_CONVERTERS = [(5, 2, 4), (100, 32, 8), (9, 3, 9), (784, 32, 32), (784, 32, 16), (4, 4, 4)]

#: a network that takes a sample a cycle (one word a sample, one fold a layer)
FAST = [LayerFold(3, 3, 3, 3), LayerFold(3, 2, 3, 2)]
#: a folded one: 3-bit input words into a gearbox (4 bits into 2-bit SIMD words), 2 synapse and
#: 2 neuron folds a layer (a padding neuron, a padding lane), a serializer between the layers
FOLDED = [LayerFold(4, 3, 2, 2), LayerFold(3, 2, 2, 1)]
FOLDED_IN_WIDTH = 3


def _check(result, status="PASS"):
    print(result.summary())
    assert result.status == status, result.summary()
    if status == "FAIL":
        assert result.failed, "a failure names the property"
        assert result.vcd is not None and result.vcd.is_file(), "a failure comes with its trace"
    return result


def _failed(result, *words):
    labels = [p.label for p in result.failed]
    assert any(all(w in label for w in words) for label in labels), labels


# ----------------------------------------------------------------------------- width converters

@pytest.mark.parametrize("n_bits,in_width,out_width", GEARBOXES + SERIALIZERS)
def test_a_width_converter_keeps_every_frame_bit_in_order(n_bits, in_width, out_width, tmp_path):
    result = _check(prove(WidthConverterHarness(n_bits, in_width, out_width), depth=2,
                          name=f"width converter {n_bits} bits {in_width}->{out_width}",
                          workdir=tmp_path))
    labels = " ".join(p.label for p in result.asserts)
    assert "in order" in labels and "stay until accepted" in labels and "deadlock" in labels


@pytest.mark.slow
@pytest.mark.parametrize("n_bits,in_width,out_width", MORE_CONVERTERS)
def test_more_width_converters(n_bits, in_width, out_width, tmp_path):
    _check(prove(WidthConverterHarness(n_bits, in_width, out_width), depth=2,
                 name=f"width converter {n_bits} bits {in_width}->{out_width}", workdir=tmp_path))


@pytest.mark.parametrize("n_bits,in_width,out_width", [(10, 4, 3), (6, 6, 2)])
def test_the_width_converter_proof_is_not_vacuous(n_bits, in_width, out_width, tmp_path):
    _check(prove(WidthConverterHarness(n_bits, in_width, out_width), mode="cover", depth=20,
                 name=f"width converter {n_bits} bits cover", workdir=tmp_path))


def test_gearbox_states_replay_the_rule():
    # 4 bits from 3-bit words into 2-bit words, (input word, output word, bits held), by hand:
    # take 3 bits; send 2 (1 left: take the last bit, or wait); send 2; ...
    assert gearbox_states(4, 3, 2) == {(0, 0, 0), (1, 0, 3), (1, 1, 1), (0, 1, 2)}


def test_a_gearbox_that_takes_words_early_fails(tmp_path):
    result = _check(prove(WidthConverterHarness(10, 4, 3, mutant="greedy", invariants=False),
                          mode="bmc", depth=10, name="greedy gearbox", workdir=tmp_path), "FAIL")
    assert min(p.step for p in result.failed) <= 4


def test_a_serializer_that_takes_its_word_with_the_first_slice_fails(tmp_path):
    result = _check(prove(WidthConverterHarness(6, 6, 2, mutant="early_take", invariants=False),
                          mode="bmc", depth=10, name="early serializer", workdir=tmp_path), "FAIL")
    assert min(p.step for p in result.failed) <= 4


# ----------------------------------------------------------------------------- the network

def test_the_reference_outputs_are_the_golden_models():
    from eie.sw.bnn.golden import golden_forward

    for folds, last in ((FOLDED, False), (FAST, False), (FAST, True)):
        net = TinyNet(folds, seed=richest_seed(folds, last_thresholded=last),
                      last_thresholded=last)
        n_in = folds[0].n_in
        x = np.array([[(v >> k) & 1 for k in range(n_in)] for v in range(1 << n_in)],
                     dtype=np.uint8)
        y = golden_forward(net, x)
        if last:
            want = [int(sum(int(b) << k for k, b in enumerate(row))) for row in y]
        else:
            d = folds[-1].n_in.bit_length() + 1
            want = [int(sum((int(v) & ((1 << d) - 1)) << (d * k) for k, v in enumerate(row)))
                    for row in y]
        assert reference_outputs(net) == want
        assert len(set(want)) > 2, "the scoreboard tells samples apart by their outputs"


@pytest.mark.parametrize("folds,in_width,name",
                         [(FAST, None, "fast"), (FOLDED, FOLDED_IN_WIDTH, "folded")])
def test_every_stream_of_the_network_holds_its_word_until_accepted(folds, in_width, name,
                                                                  tmp_path):
    result = _check(prove(BnnStreamHarness(folds, in_width=in_width, stability_only=True),
                          depth=2, name=f"bnn streams stable ({name})", workdir=tmp_path))
    assert sum("stay until accepted" in p.label for p in result.asserts) == 2 * len(folds)


@pytest.mark.parametrize("folds,in_width,depth,name",
                         [(FAST, None, 16, "fast"), (FOLDED, FOLDED_IN_WIDTH, 24, "folded")])
def test_the_network_loses_duplicates_and_reorders_no_sample(folds, in_width, depth, name,
                                                             tmp_path):
    _check(prove(BnnStreamHarness(folds, in_width=in_width), mode="bmc", depth=depth,
                 name=f"bnn scoreboard ({name})", workdir=tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("folds,in_width,depth,name",
                         [(FAST, None, 20, "fast"), (FOLDED, FOLDED_IN_WIDTH, 30, "folded")])
def test_the_network_scoreboard_deeper(folds, in_width, depth, name, tmp_path):
    _check(prove(BnnStreamHarness(folds, in_width=in_width), mode="bmc", depth=depth,
                 name=f"bnn scoreboard ({name}, {depth} cycles)", workdir=tmp_path))


@pytest.mark.slow
def test_a_network_with_a_thresholded_output_layer(tmp_path):
    net = TinyNet(FAST, seed=richest_seed(FAST, last_thresholded=True), last_thresholded=True)
    _check(prove(BnnStreamHarness(FAST, net), mode="bmc", depth=16,
                 name="bnn scoreboard (fast, thresholded output)", workdir=tmp_path))


def test_the_network_proof_is_not_vacuous(tmp_path):
    _check(prove(BnnStreamHarness(FOLDED, in_width=FOLDED_IN_WIDTH), mode="cover", depth=40,
                 name="bnn scoreboard cover", workdir=tmp_path))


@pytest.mark.parametrize("mutant,words", [
    ("ignore_ready", ("layer 1's MVTU", "stay until accepted")),
    ("threshold_gt", ("next sample",)),
    ("overwrite_bank", ("no more samples taken",)),
])
def test_a_broken_network_fails(mutant, words, tmp_path):
    result = _check(prove(BnnStreamHarness(FAST, mutant=mutant), mode="bmc", depth=16,
                          name=f"bnn {mutant}", workdir=tmp_path), "FAIL")
    if mutant != "ignore_ready":
        _failed(result, *words)
    else:
        _failed(result, "next sample")


# ----------------------------------------------------------------------------- the bridge

BRIDGES = [dict(), dict(max_burst=1)]


@pytest.mark.parametrize("kw", BRIDGES, ids=lambda kw: "-".join(f"{k}{v}" for k, v in kw.items())
                         or "default")
def test_the_bridge_carries_out_only_good_new_requests_once(kw, tmp_path):
    result = _check(prove(BridgeHarness(**kw), depth=2, name=f"bridge {kw or 'default'}",
                          workdir=tmp_path))
    labels = " ".join(p.label for p in result.asserts)
    assert "no bus write but for a good new WRITE frame" in labels
    assert "carried out in full" in labels


@pytest.mark.slow
@pytest.mark.parametrize("kw", [dict(addr_width=4, max_burst=3),
                                dict(addr_width=24, max_burst=4, read_latency=4),
                                dict(addr_width=32, max_burst=2, timeout=640 * 4)],
                         ids=["aw4-burst3", "aw24-burst4-latency4", "aw32-default-timeout"])
def test_more_bridges(kw, tmp_path):
    _check(prove(BridgeHarness(**kw), depth=2, name=f"bridge {kw}", workdir=tmp_path))


def test_the_bridge_proof_is_not_vacuous(tmp_path):
    # the solver finds a good READ and a good WRITE frame, CRC and all, by itself
    _check(prove(BridgeHarness(max_burst=1), mode="cover", depth=26, name="bridge cover",
                 workdir=tmp_path))


def _read(seq=5, addr=3):
    return encode_request(seq, Cmd.READ, addr, 1)


def test_the_bridge_recognises_retries_and_sessions(tmp_path):
    # deeper than a free search reaches in seconds: the frames are given (a READ, its retry, an
    # OPEN of a new session), the covers must be reached
    harness = BridgeHarness(max_burst=1, covers="deep",
                            prelude=_read() * 2 + encode_open(0, 0x1234))
    _check(prove(harness, mode="cover", depth=120, name="bridge cover: retry, session",
                 workdir=tmp_path))


@pytest.mark.parametrize("mutant", ["skip_crc", "no_count_check"])
def test_a_bridge_that_skips_a_check_fails(mutant, tmp_path):
    # found by the solver from reset, any bytes: a READ whose CRC fails, or whose count is 3
    result = _check(prove(BridgeHarness(mutant=mutant, invariants=False), mode="bmc", depth=14,
                          name=f"bridge {mutant}", workdir=tmp_path), "FAIL")
    _failed(result, "no bus")


@pytest.mark.parametrize("mutant,prelude,depth,words", [
    # a READ and its retry: read twice
    pytest.param("no_dedup", _read() * 2, 42, ("no bus read",), id="no_dedup"),
    # a READ, then another of the same seq at another address: taken for a retry, never read
    pytest.param("dedup_seq_only", _read() + _read(addr=4) + b"\0", 52, ("carried out in full",),
                 id="dedup_seq_only"),
    # a READ, a new session, the same READ again: the new session's request never runs (fails
    # at step 96: the OPEN's five-word answer waits two cycles a word for its registered word)
    pytest.param("keep_last_on_open", _read() + encode_open(0, 0x1234) + _read() + b"\0", 103,
                 ("carried out in full",), id="keep_last_on_open"),
])
def test_a_bridge_that_breaks_execute_once_fails(mutant, prelude, depth, words, tmp_path):
    """Execute-once needs two frames and a response between them (40 to 100 cycles), too deep for
    a free search in seconds: the bytes are given, the proof's properties must fail on them (and
    the real bridge's k-induction proves them for every byte sequence, these included)."""
    result = _check(prove(BridgeHarness(max_burst=1, mutant=mutant, invariants=False,
                                        prelude=prelude),
                          mode="bmc", depth=depth, name=f"bridge {mutant}", workdir=tmp_path),
                    "FAIL")
    _failed(result, *words)
