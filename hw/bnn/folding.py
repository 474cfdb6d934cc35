"""Shapes and foldings of a BNN: how many input bits (SIMD) and output neurons (PE) a layer's
matrix-vector-threshold unit handles per cycle.

A layer with fan-in ``n_in`` and ``n_out`` neurons under folding ``SIMD:PE`` has
``sf = ceil(n_in / SIMD)`` synapse folds and ``nf = ceil(n_out / PE)`` neuron folds; it spends
``nf * sf`` cycles on a sample, and a streaming network of such layers accepts one sample every
``max(nf * sf)`` cycles (the analytic initiation interval).

A layer fed by ``k``-bit activations (``in_bits = k >= 2``) consumes its input's ``k`` bit
planes in one of two ways (``consume``): ``serial`` (one plane a pass, ``nf * sf * k`` cycles a
sample) or ``parallel`` (all ``k`` planes of a SIMD group in the same cycle, ``nf * sf``). The
request ``auto`` (the default) picks, for the whole network's folding, serial for a layer whose
serial cycles ``nf * sf * k`` do not exceed the largest ``nf * sf`` of any layer, parallel
otherwise (:func:`resolve_consume`): every layer then keeps up with the folding's II, and a layer
that can afford the slower, smaller serial structure gets it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from ...common.errors import EieError

__all__ = [
    "LayerFold", "parse_shape", "parse_folding", "make_folding", "default_folding",
    "analytic_ii", "folding_text", "ACT_BITS", "with_act_bits", "fold_act_bits",
    "CONSUME_MODES", "CONSUME_REQUESTS", "resolve_consume", "fold_consume", "consume_text",
    "with_consume", "carry_precisions", "carries_act_bits",
]

#: The default folding's resources for the first layer; other layers get the cheapest folding
#: that keeps up with it.
DEFAULT_SIMD = 32
DEFAULT_PE = 16


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class LayerFold:
    """One layer's shape and folding."""

    n_in: int
    n_out: int
    simd: int
    pe: int
    #: precision of the layer's inputs: 1 (bipolar, XNOR) or 2..4 (unsigned, bit-serial planes)
    in_bits: int = 1
    #: precision of the layer's outputs: 1 (a bit, or a dot for the output layer) or 2..4
    #: (``2**out_bits - 1`` thresholds a neuron)
    out_bits: int = 1
    #: how a layer fed by k-bit activations takes their bit planes: ``"serial"`` (one a pass)
    #: or ``"parallel"`` (all in one pass); a layer fed by 1-bit activations is ``"serial"``
    consume: str = "serial"

    def __post_init__(self):
        if self.consume not in CONSUME_MODES:
            raise ValueError(f"consume {self.consume!r} is not one of {', '.join(CONSUME_MODES)}")
        if self.consume == "parallel" and self.in_bits == 1:
            raise ValueError("consume 'parallel' is for a layer fed by k-bit activations "
                             "(in_bits >= 2); this layer's inputs are 1 bit")

    @property
    def planes_per_pass(self) -> int:
        """Input bit planes the layer takes in one pass over its folds: ``in_bits`` when it
        consumes them in parallel, else 1."""
        return self.in_bits if self.consume == "parallel" else 1

    @property
    def passes(self) -> int:
        """Passes over the ``nf * sf`` folds a sample: ``in_bits`` (serial), else 1."""
        return self.in_bits // self.planes_per_pass

    @property
    def sf(self) -> int:
        """Synapse folds: cycles per neuron fold."""
        return _ceil_div(self.n_in, self.simd)

    @property
    def nf(self) -> int:
        """Neuron folds: how many groups of ``pe`` neurons."""
        return _ceil_div(self.n_out, self.pe)

    @property
    def ii(self) -> int:
        """Cycles this layer spends on one sample: ``nf * sf`` for each pass (``in_bits``
        passes when it consumes k-bit inputs serially, else one)."""
        return self.nf * self.sf * self.passes

    @property
    def levels(self) -> int:
        """``L = 2**in_bits - 1``: the largest k-bit input (1 for bipolar inputs)."""
        return (1 << self.in_bits) - 1

    @property
    def threshold_bias(self) -> int:
        """What is added to a threshold before it is stored: ``K * L`` for k-bit inputs (the
        accumulator is a signed dot), 0 for 1-bit inputs (it is a match count)."""
        return self.n_in * self.levels if self.in_bits > 1 else 0

    @property
    def threshold_max(self) -> int:
        """The largest stored threshold: ``n_in + 1`` (1-bit inputs) or ``2 * K * L + 1``."""
        return 2 * self.threshold_bias + 1 if self.in_bits > 1 else self.n_in + 1

    @property
    def n_thresholds(self) -> int:
        """Thresholds a neuron: ``2**out_bits - 1``."""
        return (1 << self.out_bits) - 1

    @property
    def threshold_width(self) -> int:
        """Bits of a threshold: thresholds range over 0..n_in+1 (n_in+1 = never fires); with
        k-bit inputs the biased ``0 .. 2*K*L + 1``."""
        return self.threshold_max.bit_length()

    @property
    def threshold_word_width(self) -> int:
        """Bits of a neuron's threshold word: its ``n_thresholds`` thresholds side by side."""
        return self.threshold_width * self.n_thresholds

    @property
    def dot_width(self) -> int:
        """Bits of a signed dot of this layer: ``-K .. K`` (1-bit inputs) or ``-K*L .. K*L``."""
        return (self.n_in * self.levels).bit_length() + 1

    @property
    def count_width(self) -> int:
        """Bits of a match count 0..n_in."""
        return self.n_in.bit_length() or 1

    def to_json(self) -> dict:
        doc = {"n_in": self.n_in, "n_out": self.n_out, "simd": self.simd, "pe": self.pe,
               "sf": self.sf, "nf": self.nf, "ii": self.ii}
        if self.in_bits != 1 or self.out_bits != 1:     # an A1 layer's entry as it always was
            doc.update({"in_bits": self.in_bits, "out_bits": self.out_bits})
        if self.consume != "serial":                     # a serial layer's as it always was
            doc["consume"] = self.consume
        return doc


def parse_shape(text: str | Sequence[int]) -> list[int]:
    """``"784,64,64,10"`` (or a sequence) -> a validated list of layer widths."""
    if isinstance(text, str):
        try:
            shape = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
        except ValueError:
            raise EieError(f"shape {text!r} is not a comma-separated list of integers "
                           f"(e.g. 784,64,64,10)") from None
    else:
        shape = [int(t) for t in text]
    if len(shape) < 2:
        raise EieError(f"shape {text!r} has {len(shape)} width(s); a network needs at least 2 "
                       f"(inputs and classes)")
    for k, n in enumerate(shape):
        if n < 1:
            raise EieError(f"shape {text!r}: width {k} is {n}; every width must be >= 1")
    return shape


def parse_folding(text: str) -> list[tuple[int, int]]:
    """``"64:32,32:64"`` -> ``[(64, 32), (32, 64)]`` (SIMD, PE) pairs."""
    pairs = []
    for k, item in enumerate(t for t in text.replace(" ", "").split(",") if t != ""):
        parts = item.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            simd, pe = int(parts[0]), int(parts[1])
        except ValueError:
            raise EieError(f"folding entry {k} is {item!r}; write SIMD:PE per layer, e.g. "
                           f"--fold 64:32,32:64,64:32,8:16") from None
        pairs.append((simd, pe))
    if not pairs:
        raise EieError(f"folding {text!r} is empty; write SIMD:PE per layer")
    return pairs


def make_folding(shape: Sequence[int],
                 fold: Sequence[tuple[int, int]] | str | None = None,
                 act_bits: Sequence[int] | None = None,
                 consume: Sequence[str] | None = None) -> list[LayerFold]:
    """Validate ``fold`` against ``shape`` (or choose :func:`default_folding`); with
    ``act_bits`` the folds carry those activation precisions (and the default folding counts
    the bit planes) and the consumption modes ``consume`` asks for (default ``auto``)."""
    shape = parse_shape(shape)
    if act_bits is not None and any(b != 1 for b in act_bits):
        base = make_folding(shape, fold) if fold is not None else \
            default_folding(shape, act_bits)
        return with_act_bits(base, act_bits, consume)
    if fold is None:
        return default_folding(shape)
    if isinstance(fold, str):
        fold = parse_folding(fold)
    n_layers = len(shape) - 1
    if len(fold) != n_layers:
        raise EieError(f"the folding has {len(fold)} SIMD:PE entries but the network has "
                       f"{n_layers} layers (shape {','.join(map(str, shape))}); give one per layer")
    folds = []
    for layer, (simd, pe) in enumerate(fold):
        n_in, n_out = shape[layer], shape[layer + 1]
        if not 1 <= simd <= _pow2_ceil(n_in):
            raise EieError(f"layer {layer}: SIMD {simd} does not fit a fan-in of {n_in} "
                           f"(choose 1..{_pow2_ceil(n_in)}; beyond {n_in} lanes idle as padding)")
        if not 1 <= pe <= _pow2_ceil(n_out):
            raise EieError(f"layer {layer}: PE {pe} does not fit {n_out} output neurons "
                           f"(choose 1..{_pow2_ceil(n_out)}; beyond {n_out} lanes idle as padding)")
        folds.append(LayerFold(n_in, n_out, simd, pe))
    return folds


def _pow2_ceil(n: int) -> int:
    """The smallest power of two >= n: a folding may pad a layer up to it (FINN's LFC folding
    puts 16 PEs on 10 classes)."""
    return 1 << max(n - 1, 0).bit_length()


def _candidates(n: int) -> list[int]:
    out, v = [], 1
    while v < n:
        out.append(v)
        v *= 2
    out.append(n)
    return out


def default_folding(shape: Sequence[int], act_bits: Sequence[int] | None = None) -> list[LayerFold]:
    """A balanced folding: the first layer gets ``SIMD=min(32, n_in)``, ``PE=min(16, n_out)``;
    every other layer the cheapest power-of-two folding (fewest SIMD*PE lanes, then fewest
    cycles) whose cycles per sample do not exceed the first layer's, so no layer is the
    bottleneck by more than it has to be (``act_bits``: counting a k-bit-fed layer's ``k``
    bit planes; the folds returned carry no precisions)."""
    shape = parse_shape(shape)
    planes = [1] + [int(b) for b in act_bits[:-1]] if act_bits is not None else [1] * len(shape)
    first = LayerFold(shape[0], shape[1], min(DEFAULT_SIMD, shape[0]), min(DEFAULT_PE, shape[1]))
    target = first.ii
    folds = [first]
    for l, (n_in, n_out) in enumerate(zip(shape[1:-1], shape[2:]), start=1):
        best = None
        for simd in _candidates(n_in):
            for pe in _candidates(n_out):
                f = LayerFold(n_in, n_out, simd, pe)
                if f.ii * planes[l] > target:
                    continue
                key = (simd * pe, f.ii, -simd)
                if best is None or key < best[0]:
                    best = (key, f)
        folds.append(best[1] if best else LayerFold(n_in, n_out, n_in, n_out))
    return folds


def analytic_ii(folds: Sequence[LayerFold]) -> int:
    """Steady-state initiation interval of the streaming network: ``max(nf * sf * passes)``
    (``passes = in_bits`` for a layer that takes its k bit planes one after the other, 1 for
    a 1-bit-fed layer or one that takes them in parallel)."""
    return max(f.ii for f in folds)


#: The activation precisions a layer may have (bits; 1 is the bipolar +-1 of W1A1).
ACT_BITS = (1, 2, 3, 4)


def with_act_bits(folds: Sequence[LayerFold], act_bits: Sequence[int] | None,
                  consume: Sequence[str] | None = None) -> list[LayerFold]:
    """``folds`` with each layer's output precision ``act_bits[l]`` and input precision
    ``act_bits[l - 1]`` (1 for layer 0); ``None`` or empty: all 1 (A1). ``consume`` (per layer
    ``serial``, ``parallel`` or ``auto``; see :func:`with_consume`) sets how k-bit-fed layers
    take their bit planes; without it, folds that already carry these precisions keep their
    modes, and folds given new precisions get ``auto``."""
    folds = list(folds)
    bits = list(act_bits) if act_bits is not None and len(act_bits) else [1] * len(folds)
    if len(bits) != len(folds):
        raise EieError(f"act_bits {bits} has {len(bits)} entries for {len(folds)} layers")
    if consume is None and carries_act_bits(folds, bits):
        return folds
    ins = [1] + [int(b) for b in bits[:-1]]
    plain = [replace(f, in_bits=i, out_bits=int(o), consume="serial")
             for f, i, o in zip(folds, ins, bits)]
    return with_consume(plain, consume)


def carries_act_bits(folds: Sequence[LayerFold], act_bits: Sequence[int]) -> bool:
    """Whether ``folds`` already have the precisions ``act_bits`` (outputs ``act_bits[l]``,
    inputs ``act_bits[l - 1]``, 1 for layer 0)."""
    ins = [1] + [int(b) for b in act_bits[:-1]]
    return len(folds) == len(act_bits) and all(
        (f.in_bits, f.out_bits) == (i, int(o)) for f, i, o in zip(folds, ins, act_bits))


#: How a layer fed by k-bit activations takes their bit planes (``LayerFold.consume``).
CONSUME_MODES = ("serial", "parallel")
#: What a user may ask for per layer: a mode, or ``auto`` (:func:`resolve_consume`'s rule).
CONSUME_REQUESTS = ("serial", "parallel", "auto")


def resolve_consume(folds: Sequence[LayerFold], requests: Sequence[str] | None = None) -> list[str]:
    """Per layer the consumption mode: a 1-bit-fed layer is ``serial`` (asking ``parallel`` for
    it is an error); a k-bit-fed layer gets its request (``serial``, ``parallel``; ``None``
    means ``auto`` everywhere), and ``auto`` is
    the rule "serial when ``nf * sf * k`` does not exceed the folding's bottleneck
    ``max(nf * sf)`` over all layers, else parallel": the network's II is then that bottleneck,
    and serial, the smaller structure at a given folding (docs/bnn.md, "Bit-serial or
    bit-parallel"), is used wherever it costs no throughput."""
    folds = list(folds)
    requests = ["auto"] * len(folds) if requests is None else list(requests)
    if len(requests) != len(folds):
        raise EieError(f"consume {','.join(requests)} gives {len(requests)} modes for "
                       f"{len(folds)} layers; give one per layer")
    bad = [r for r in requests if r not in CONSUME_REQUESTS]
    if bad:
        raise EieError(f"consume mode {bad[0]!r} is not one of {', '.join(CONSUME_REQUESTS)}")
    bottleneck = max(f.nf * f.sf for f in folds)
    modes = []
    for l, (f, r) in enumerate(zip(folds, requests)):
        if f.in_bits == 1 and r == "parallel":
            raise EieError(f"consume 'parallel' for layer {l}, which is fed by 1-bit "
                           f"activations (one bit plane); ask serial or auto there")
        if f.in_bits == 1:
            modes.append("serial")
        elif r == "auto":
            modes.append("serial" if f.nf * f.sf * f.in_bits <= bottleneck else "parallel")
        else:
            modes.append(r)
    return modes


def with_consume(folds: Sequence[LayerFold], requests: Sequence[str] | None = None) -> list[LayerFold]:
    """``folds`` (carrying their precisions) with the modes :func:`resolve_consume` gives."""
    folds = list(folds)
    return [replace(f, consume=m) for f, m in zip(folds, resolve_consume(folds, requests))]


def fold_consume(folds: Sequence[LayerFold]) -> list[str]:
    """Each layer's consumption mode."""
    return [f.consume for f in folds]


def consume_text(modes: Sequence[str]) -> str:
    """``"serial,parallel,..."``: how CONFIG_CRC, docs, errors and the CLI name the modes."""
    return ",".join(modes)


def fold_act_bits(folds: Sequence[LayerFold]) -> list[int]:
    """Each layer's output precision."""
    return [f.out_bits for f in folds]


def folding_text(folds: Sequence[LayerFold]) -> str:
    return ",".join(f"{f.simd}:{f.pe}" for f in folds)


def carry_precisions(folds: Sequence[LayerFold], bits: Sequence[int],
                     source: Sequence[LayerFold] | None = None) -> list[LayerFold]:
    """``folds`` with the activation precisions ``bits``: folds that already carry them are
    kept as they are (their modes too); otherwise the modes are ``source``'s (an image's folds)
    when it has the same folding, else ``auto``."""
    folds = list(folds)
    same = source is not None and [(f.simd, f.pe) for f in source] == \
        [(f.simd, f.pe) for f in folds]
    if carries_act_bits(folds, bits) or not same:
        return with_act_bits(folds, bits)
    return with_act_bits(folds, bits, fold_consume(source))
