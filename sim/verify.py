"""The randomized regression of both cores (``eie verify``, issue 19): draw random
configurations, run them on Verilator or Icarus, and check every one against the golden model
and the cycle model.

**Drawing.** Everything is a pure function of the seed ``S`` (and the pool options,
``designs``, ``min_pes`` and ``max_pes``): the pool of designs (the build parameters) and configuration
``i`` (the run-time data) come from their own NumPy streams,
``SeedSequence(S, spawn_key=(engine, kind, i))``, so configuration ``i`` is the same whether a
run draws 1,000 configurations or only that one (``eie verify --only I``), on either simulator.
Configuration ``i`` runs on design ``i % len(pool)``.

* EIE (:func:`eie_design`, :func:`draw_eie`): a design fixes what needs a build -- the PE count
  (the pool's PE counts are spread on a log scale over ``min_pes..max_pes``, default 1..64, one
  per stratum, so the small counts, the odd ones and one count near ``max_pes`` are all there),
  the FIFO depth
  (1..32), the pointer-queue depth (2..32), the accumulator width (16..48 bits) and memories
  that hold every network of up to ``max_layers`` layers no wider than ``max_dim`` (as the RTL
  tests' designs do). A configuration is the run-time data: layer count and widths (down to 1,
  ``n_out % N != 0``, fewer rows than PEs), per-layer weight densities 1-100% (rows uneven as
  trained layers have them, forced empty rows and columns), codebooks and weight shifts
  (saturating ones too), bias and ReLU per layer, balanced or interleaved placement (with or
  without calibration), and 1-3 input samples of any density.
* BNN (:func:`bnn_design`, :func:`draw_bnn`): a design is the topology (1-4 layers, widths 1..96,
  so multi-word inputs and outputs), its folding (SIMD and PE from 1 up to the padded width),
  the FIFO depths, whether the output layer is thresholded (bits out), the weight precision
  of every layer (:data:`BNN_PRECISIONS`: all binary W1, all ternary W2, or mixed) and its
  activation precision (:data:`BNN_ACTIVATIONS`: every hidden layer A1, A2, A3 or A4, or
  mixed; the output layer A1). A configuration is the network loaded at run time (random bits
  and thresholds; an integer network under the ``ge`` or ``gt`` rule with thresholds inside
  and far outside ``0..K``; a float model with batch norm, compiled; W2 layers with a random
  share of zero weights, a neuron without any now and then, thresholds beyond ``K'``, TWN
  layers in a float model; k-bit layers with ``2**k - 1`` thresholds a neuron from the
  accumulator's values on probe inputs, equal ones, beyond the reachable values and at the
  extremes, DoReFa layers in a float model), 1-16 input samples, and how the host streams them
  (input FIFO preloaded or not, random pauses before reading results, polling gaps). An all-A1
  design draws what it drew before k-bit layers were drawn, an all-W1A1 design what it drew
  before W2 layers were.

**Running** (:func:`verify`): the configurations of a design share its build (the hashed cache
of :mod:`eie.sim.runner`) and run ``chunk`` at a time in one simulator process
(:func:`eie.sim.runner.run_core_jobs`), smallest designs first. A chunk whose simulation fails
(a hang, an error in the testbench) is run again one configuration at a time to find the one.

**Checking**: EIE -- the outputs equal the golden model of the image bit for bit (and that equals
the golden model of the layers before encoding and placement), and per sample and layer every
counter (``cycles``, ``broadcasts``, per-PE ``busy`` and ``stall``) equals the cycle model
(:func:`eie.sw.cycle_model.predict_counters`); ``CYCLES`` is the layers' sum. BNN -- the outputs
equal the golden model (and a compiled float model's own forward pass), every sample went in and
came out, and a preloaded stream without pauses has its results exactly one analytic initiation
interval apart (``II_MIN``; ``max(nf * sf * in_bits)``, a k-bit-fed layer's bit planes counted).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..common import outputs
from ..common.atomic import atomic_dir
from ..common.errors import EieError

__all__ = ["ENGINES", "DEFAULT_DESIGNS", "DEFAULT_MAX_PES", "DEFAULT_MIN_PES", "DEFAULT_CHUNK", "EieDesign",
           "BnnDesign", "Case", "CaseResult", "Report", "pe_strata", "eie_design", "bnn_design",
           "design_pool", "draw_case", "draw_eie", "draw_bnn", "check_case", "verify",
           "coverage", "save_case", "case_paths"]

ENGINES = ("eie", "bnn")
#: Designs (builds) in a run's pool: configuration ``i`` runs on design ``i % designs``.
DEFAULT_DESIGNS = {"eie": 10, "bnn": 16}
#: The largest PE count an EIE design of the pool may have (the issue's range, 1..64).
DEFAULT_MAX_PES = 64
#: The smallest (a larger one runs only the big designs, e.g. Icarus above 16 PEs).
DEFAULT_MIN_PES = 1
#: Configurations per simulator process.
DEFAULT_CHUNK = 25
_TAG = {"eie": 0, "bnn": 1}
_POOL, _CASE, _PERM = 0, 1, 2
#: The stream of a design's "mixed" activation precisions (its own: the pool stream's draws
#: stay those before k-bit layers were drawn).
_ACTS = 3


def _rng(seed: int, engine: str, kind: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_TAG[engine], kind,
                                                                         index)))


def _pick(rng: np.random.Generator, values: Sequence, p: Sequence[float]):
    return values[int(rng.choice(len(values), p=np.asarray(p) / np.sum(p)))]


# ----------------------------------------------------------------------------- designs

@dataclass(frozen=True)
class EieDesign:
    """One EIE build of the pool: ``config`` holds every network of up to ``config.max_layers``
    layers no wider than ``max_dim``."""

    index: int
    config: Any                     # EIEConfig
    max_dim: int

    def describe(self) -> str:
        c = self.config
        return (f"{c.n_pe} PE{'s' if c.n_pe > 1 else ''}, FIFO {c.fifo_depth}, pointer queue {c.ptr_queue_depth}, "
                f"acc {c.acc_bits} bits, <= {c.max_layers} layer{'s' if c.max_layers > 1 else ''} of "
                f"<= {self.max_dim}")

    def to_json(self) -> dict:
        return {"index": self.index, "max_dim": self.max_dim, "config": self.config.to_json()}

    @property
    def cost(self) -> int:
        return self.config.n_pe


@dataclass(frozen=True)
class BnnDesign:
    """One BNN build of the pool: topology and folding, FIFO depths, output kind, the weight
    precision of every layer (``weight_bits``: 1 binary, 2 ternary; empty: all 1) and its
    activation precision (``act_bits``: 1..4, the output layer's 1; empty: all 1). The folds
    carry the activation precisions, so :attr:`ii` counts a k-bit-fed layer's bit planes."""

    index: int
    folds: tuple
    in_depth: int
    out_depth: int
    last_thresholded: bool
    weight_bits: tuple = ()
    act_bits: tuple = ()

    @property
    def shape(self) -> list[int]:
        return [self.folds[0].n_in] + [f.n_out for f in self.folds]

    @property
    def ii(self) -> int:
        return max(f.ii for f in self.folds)

    @property
    def layer_bits(self) -> tuple[int, ...]:
        """Per layer 1 (W1) or 2 (W2)."""
        return tuple(self.weight_bits) or (1,) * len(self.folds)

    @property
    def layer_acts(self) -> tuple[int, ...]:
        """Per layer its output activation precision 1..4 (the output layer's 1)."""
        return tuple(self.act_bits) or (1,) * len(self.folds)

    @property
    def quantized(self) -> bool:
        """Whether some layer has k-bit (k >= 2) activations."""
        return any(a != 1 for a in self.layer_acts)

    @property
    def weights(self) -> str:
        """The precisions as docs and errors name them: ``"W1,W2,W1"``."""
        from ..hw.bnn.words import weight_bits_text

        return weight_bits_text(self.layer_bits)

    @property
    def activations(self) -> str:
        """The activation precisions as docs and errors name them: ``"A2,A3,A1"``."""
        from ..hw.bnn.words import act_bits_text

        return act_bits_text(self.layer_acts)

    @property
    def precision(self) -> str:
        """``"W1"`` (every layer binary), ``"W2"`` (every layer ternary) or ``"mixed"``."""
        kinds = set(self.layer_bits)
        return "mixed" if len(kinds) > 1 else f"W{kinds.pop()}"

    @property
    def activation(self) -> str:
        """``"A1"`` .. ``"A4"`` (every hidden layer of that precision; ``"A1"`` for a one-layer
        design, whose only layer is the output layer) or ``"mixed"``."""
        kinds = set(self.layer_acts[:-1]) or {1}
        return "mixed" if len(kinds) > 1 else f"A{kinds.pop()}"

    def describe(self) -> str:
        from ..hw.bnn.folding import folding_text

        return (f"shape {','.join(map(str, self.shape))}, folding {folding_text(self.folds)}, "
                f"II {self.ii}, FIFOs {self.in_depth}/{self.out_depth}, "
                f"{'bits' if self.last_thresholded else 'dots'} out, weights {self.weights}, "
                f"activations {self.activations}")

    def to_json(self) -> dict:
        return {"index": self.index, "shape": self.shape,
                "folding": [[f.simd, f.pe] for f in self.folds], "ii": self.ii,
                "in_depth": self.in_depth, "out_depth": self.out_depth,
                "last_thresholded": self.last_thresholded,
                "weight_bits": list(self.layer_bits), "weights": self.weights,
                "act_bits": list(self.layer_acts), "activations": self.activations}

    @property
    def cost(self) -> int:
        return sum(f.simd * f.pe for f in self.folds)


def pe_strata(designs: int, max_pes: int,
              min_pes: int = DEFAULT_MIN_PES) -> list[tuple[int, int]]:
    """The PE-count ranges of the pool's designs: ``min_pes..max_pes`` cut on a log scale into
    ``designs`` ranges of at least one count each (fewer when there are fewer counts); design
    ``d`` draws its count from range ``d % len(ranges)``."""
    if not 1 <= min_pes <= max_pes:
        raise EieError(f"PE counts {min_pes}..{max_pes}: the smallest must be 1 or more and at "
                       "most the largest")
    k = max(1, min(designs, max_pes - min_pes + 1))
    geo = np.geomspace(min_pes, max_pes + 1, k + 1)
    edges = [min_pes]
    for j in range(1, k):
        edges.append(min(max(edges[-1] + 1, int(round(geo[j]))), max_pes + 1 - (k - j)))
    edges.append(max_pes + 1)
    return [(lo, hi - 1) for lo, hi in zip(edges[:-1], edges[1:])]


def _spread(seed: int, engine: str, knob: int, values: Sequence, d: int):
    """Design ``d``'s value of a build parameter: ``values`` in an order drawn once per seed,
    design ``d`` taking entry ``d % len(values)``, so that a pool of ``len(values)`` designs
    or more has every value (a Latin-hypercube-like pool; the other parameters are paired with
    it at random)."""
    perm = _rng(seed, engine, _PERM, knob).permutation(len(values))
    return values[int(perm[d % len(values)])]


#: The EIE build parameters every pool of enough designs covers (:func:`_spread`): FIFO
#: depths, pointer-queue depths, accumulator widths (32 twice as often), layer-table sizes.
EIE_KNOBS = ((1, 2, 3, 4, 8, 16, 32), (2, 3, 4, 8, 32), (32, 16, 20, 32, 24, 48), (1, 2, 3, 4))


def eie_design(seed: int, d: int, *, designs: int, max_pes: int = DEFAULT_MAX_PES,
               min_pes: int = DEFAULT_MIN_PES) -> EieDesign:
    """Design ``d`` of the EIE pool of seed ``seed``."""
    from ..hw.eie.config import EIEConfig

    rng = _rng(seed, "eie", _POOL, d)
    strata = pe_strata(designs, max_pes, min_pes)
    lo, hi = strata[d % len(strata)]
    n_pe = int(rng.integers(lo, hi + 1))
    fifo, queue, acc_bits, layers = (_spread(seed, "eie", k, values, d)
                                     for k, values in enumerate(EIE_KNOBS))
    dim = max(int(rng.integers(8, 49)), n_pe * int(rng.integers(1, 4)))
    rows = -(-dim // n_pe)
    config = EIEConfig(n_pe=n_pe, fifo_depth=fifo, ptr_depth=layers * (dim + 1),
                       spmat_depth=-(-layers * (dim * rows + 8) // 8), act_depth=rows,
                       acc_depth=rows, bias_depth=layers * rows, max_layers=layers,
                       acc_bits=acc_bits, ptr_queue_depth=queue)
    return EieDesign(d, config, dim)


def _bnn_width(rng: np.random.Generator) -> int:
    u = rng.random()
    if u < 0.2:
        return int(rng.integers(1, 9))
    if u < 0.75:
        return int(rng.integers(9, 41))
    return int(rng.integers(41, 97))


def _fold_lanes(rng: np.random.Generator, n: int) -> int:
    """SIMD or PE for ``n`` inputs or neurons: 1..n, or up to the padded power of two."""
    pow2 = 1 << max(n - 1, 0).bit_length()
    u = rng.random()
    if u < 0.15:
        return n
    if u < 0.25:
        return pow2
    if u < 0.35:
        return 1
    return int(rng.integers(1, n + 1))


#: The largest analytic II of a BNN design (cycles a sample): keeps the simulations short.
BNN_MAX_II = 96


def _bnn_folds(shape: list[int], fold: list[tuple[int, int]], acts: Sequence[int]) -> list:
    """The folds of ``shape`` under ``fold`` with activation precisions ``acts``, the slowest
    layer widened (``fold`` updated) until the analytic II, bit planes counted, is at most
    :data:`BNN_MAX_II` (all A1: the folds the pool always had)."""
    from ..hw.bnn.folding import make_folding, with_act_bits

    folds = with_act_bits(make_folding(shape, fold), acts)
    while max(f.ii for f in folds) > BNN_MAX_II:      # widen the slowest layer
        k = max(range(len(folds)), key=lambda i: folds[i].ii)
        f = folds[k]
        fold[k] = (min(f.n_in, f.simd * 2), min(f.n_out, f.pe + 1 + f.pe // 2))
        folds = with_act_bits(make_folding(shape, fold), acts)
    return folds


def _bnn_act_bits(seed: int, d: int, depth: int) -> tuple[int, ...]:
    """Design ``d``'s activation precision per layer: its entry of :data:`BNN_ACTIVATIONS`
    for the hidden layers, the output layer A1. "mixed": each hidden layer A1..A4, at least one
    k-bit and, with two hidden layers or more, two precisions (one hidden layer: A2..A4). Drawn
    from a stream of its own, so that the pool's other draws are those before k-bit layers."""
    kind = _spread(seed, "bnn", _ACT_KNOB, BNN_ACTIVATIONS, d)
    hidden = depth - 1
    if kind == "A1" or hidden == 0:
        return (1,) * depth
    if kind != "mixed":
        return (int(kind[1:]),) * hidden + (1,)
    rng = _rng(seed, "bnn", _ACTS, d)
    if hidden == 1:
        return (int(rng.integers(2, 5)), 1)
    while True:
        bits = tuple(int(b) for b in rng.integers(1, 5, size=hidden))
        if len(set(bits)) > 1:
            return bits + (1,)


def bnn_design(seed: int, d: int) -> BnnDesign:
    """Design ``d`` of the BNN pool of seed ``seed``."""
    rng = _rng(seed, "bnn", _POOL, d)
    depth = _spread(seed, "bnn", _DEPTH_KNOB, (1, 2, 3, 4), d)
    shape = [_bnn_width(rng) for _ in range(depth + 1)]
    fold = [(_fold_lanes(rng, a), _fold_lanes(rng, b)) for a, b in zip(shape[:-1], shape[1:])]
    acts = _bnn_act_bits(seed, d, depth)
    folds = _bnn_folds(shape, fold, acts)
    in_depth, out_depth, thr = (_spread(seed, "bnn", k, values, d)
                                for k, values in enumerate(BNN_KNOBS))
    kind = _spread(seed, "bnn", _PRECISION_KNOB, BNN_PRECISIONS, d)
    # drawn after everything else from the pool stream: the other parameters are those of the
    # pool before W2 layers were drawn
    if kind == "W1":
        bits = (1,) * depth
    elif kind == "W2":
        bits = (2,) * depth
    elif depth == 1:                # one layer cannot mix: either precision
        bits = (int(rng.integers(1, 3)),)
    else:
        bits = tuple(int(b) for b in rng.integers(1, 3, size=depth))
        if len(set(bits)) == 1:
            k = int(rng.integers(0, depth))
            bits = bits[:k] + (3 - bits[k],) + bits[k + 1:]
    return BnnDesign(d, tuple(folds), in_depth, out_depth, thr, bits,
                     acts if any(a != 1 for a in acts) else ())


#: The BNN build parameters every pool of enough designs covers (:func:`_spread`): input and
#: output FIFO depths, a thresholded output layer (one design in three).
BNN_KNOBS = ((1, 2, 3, 4, 6), (1, 2, 3, 4), (False, True, False))
#: The weight precisions of a BNN design's layers (a build parameter: the mask memories and
#: ``CONFIG_CRC`` depend on it), spread as :data:`BNN_KNOBS` are: every layer binary (W1),
#: every layer ternary (W2), or each layer either, both present ("mixed"; a one-layer design
#: drawn "mixed" gets either). Five entries, a length prime to the layer count's 4 and the
#: output kind's 3: any 15 consecutive designs give each entry three designs of three layer
#: counts, bits and dots out both, so a pool of 16 has all-W1 and all-W2 designs of both
#: output kinds and at least four mixed ones (at most one of each entry's three has one layer).
BNN_PRECISIONS = ("W1", "W2", "mixed", "W2", "mixed")
#: The activation precisions of a BNN design's hidden layers (a build parameter: a k-bit layer
#: has its own datapath, threshold memories and ``CONFIG_CRC``; the output layer is always A1),
#: spread as :data:`BNN_KNOBS` are: every hidden layer A1, A2, A3 or A4, or "mixed"
#: (:func:`_bnn_act_bits`). Seven entries, a length prime to the layer count's 4, the output
#: kind's 3 and the weight precisions' 5: in a pool of 16 every entry has two designs or three,
#: ``d`` and ``d + 7`` (and ``d + 14``) of different layer counts, so at least one of them has
#: a hidden layer: every pool of 16 has A2, A3, A4 and mixed designs, and all-A1 ones (the
#: "A1" entry and the one-layer designs).
BNN_ACTIVATIONS = ("A1", "A2", "mixed", "A3", "A4", "mixed", "A2")
#: The :func:`_spread` knob numbers of the layer count (``len(BNN_KNOBS)``, as before W2
#: layers were drawn), of the weight precisions and of the activation precisions.
_DEPTH_KNOB, _PRECISION_KNOB, _ACT_KNOB = 3, 4, 5


def design_pool(engine: str, seed: int, designs: int | None = None,
                max_pes: int = DEFAULT_MAX_PES, min_pes: int = DEFAULT_MIN_PES) -> list:
    """Every design of the pool of ``engine`` and ``seed``."""
    designs = DEFAULT_DESIGNS[engine] if designs is None else designs
    if engine == "eie":
        return [eie_design(seed, d, designs=designs, max_pes=max_pes, min_pes=min_pes)
                for d in range(designs)]
    return [bnn_design(seed, d) for d in range(designs)]


# ----------------------------------------------------------------------------- configurations

@dataclass
class Case:
    """Configuration ``index``: its design, the image and inputs, what else the job needs, and
    ``info`` (what was drawn, for the coverage and the JSON report)."""

    engine: str
    index: int
    design: Any
    image: Any
    x: np.ndarray
    info: dict
    job_options: dict = field(default_factory=dict)     # BNN: how the host streams
    reference: Any = None           # EIE: the layers; BNN float: the float model

    def job(self):
        if self.engine == "eie":
            from .eie_run import EieJob

            return EieJob(self.image, self.x)
        from .bnn_run import BnnJob

        return BnnJob(self.image, self.x, **self.job_options)


def _density(rng: np.random.Generator) -> float:
    u = rng.random()
    if u < 0.1:
        return 1.0
    if u < 0.55:
        return float(10 ** rng.uniform(-2, 0))      # 1%..100%, sparse ones well covered
    return float(rng.uniform(0.01, 1.0))


def _eie_width(rng: np.random.Generator, n_pe: int, dim: int) -> int:
    u = rng.random()
    if u < 0.15:
        return int(rng.integers(1, min(n_pe, dim) + 1))     # at most one row a PE
    if u < 0.25:
        return dim
    return int(rng.integers(1, dim + 1))


def _eie_layer(rng: np.random.Generator, n_out: int, n_in: int, *, density: float, bias: bool,
               relu: bool, saturate: bool, uneven: bool, info: dict):
    from ..sw.encode import QuantLayer

    if uneven:      # rows as a trained layer has them: per-row densities spread over ~10x
        row_d = np.clip(density * rng.lognormal(0.0, 0.9, n_out), 0.0, 1.0)
        mask = rng.random((n_out, n_in)) < row_d[:, None]
    else:
        mask = rng.random((n_out, n_in)) < density
    if density >= 1.0:
        mask[:] = True
    empty_rows = empty_cols = 0
    if n_out > 1 and rng.random() < 0.3:
        rows = rng.choice(n_out, size=int(rng.integers(1, min(3, n_out - 1) + 1)), replace=False)
        mask[rows] = False
    if n_in > 1 and rng.random() < 0.3:
        cols = rng.choice(n_in, size=int(rng.integers(1, min(3, n_in - 1) + 1)), replace=False)
        mask[:, cols] = False
    empty_rows = int(np.sum(~mask.any(axis=1)))
    empty_cols = int(np.sum(~mask.any(axis=0)))
    codes = (rng.integers(1, 16, (n_out, n_in)) * mask).astype(np.uint8)
    if saturate:        # full-scale weights, a small shift: sums far beyond int16
        cb = np.concatenate([[0], rng.choice([-32768, -20000, 20000, 32767], 15)])
        w_frac = int(rng.integers(0, 3))
    elif rng.random() < 0.2:
        cb = np.concatenate([[0], rng.integers(-32768, 32768, 15)])
        w_frac = int(rng.integers(8, 31))
    else:
        cb = np.concatenate([[0], rng.integers(-400, 401, 15)])
        w_frac = int(rng.integers(4, 11))
    b = None
    if bias:
        b = (rng.integers(-32768, 32768, n_out) if saturate
             else rng.integers(-2000, 2001, n_out)).astype(np.int16)
    info["layers"].append({"n_in": n_in, "n_out": n_out, "density": round(density, 4),
                           "nonzeros": int(mask.sum()), "bias": bias, "relu": relu,
                           "uneven": uneven, "w_frac": w_frac, "empty_rows": empty_rows,
                           "empty_cols": empty_cols})
    return QuantLayer(codes=codes, codebook=cb.astype(np.int16), w_frac=w_frac, bias=b, relu=relu)


def _activations(rng: np.random.Generator, batch: int, n: int, scale: int) -> tuple[np.ndarray, float]:
    d = 0.0 if rng.random() < 0.04 else _density(rng)
    x = rng.integers(-scale, scale + 1, (batch, n)) * (rng.random((batch, n)) < d)
    return x.astype(np.int16), d


def draw_eie(seed: int, index: int, pool: Sequence[EieDesign]) -> Case:
    """EIE configuration ``index`` of seed ``seed`` on ``pool[index % len(pool)]``."""
    from ..sw.encode import build_image

    design = pool[index % len(pool)]
    cfg = design.config
    n_pe, dim = cfg.n_pe, design.max_dim
    rng = _rng(seed, "eie", _CASE, index)
    depth = cfg.max_layers if rng.random() < 0.4 else int(rng.integers(1, cfg.max_layers + 1))
    widths = [_eie_width(rng, n_pe, dim) for _ in range(depth + 1)]
    saturate = bool(rng.random() < 0.15)
    uneven = bool(rng.random() < 0.2)
    bias_p = _pick(rng, (0.0, 0.5, 1.0), (1, 1, 1))
    info: dict = {"n_pe": n_pe, "fifo_depth": cfg.fifo_depth,
                  "ptr_queue_depth": cfg.ptr_queue_depth, "acc_bits": cfg.acc_bits,
                  "saturate": saturate, "layers": []}
    layers = []
    for l in range(depth):
        last = l == depth - 1
        relu = bool(rng.random() < (0.3 if last else 0.8))
        layers.append(_eie_layer(rng, widths[l + 1], widths[l], density=_density(rng),
                                 bias=bool(rng.random() < bias_p), relu=relu,
                                 saturate=saturate, uneven=uneven, info=info))
    scale = 32767 if saturate else _pick(rng, (800, 4000, 32767), (6, 2, 1))
    batch = int(rng.integers(1, 4))
    x, in_density = _activations(rng, batch, widths[0], scale)
    balance = bool(rng.random() < 0.5)
    calibration = None
    if balance and rng.random() < 0.4:
        calibration, _ = _activations(rng, 4, widths[0], scale)
    image = build_image(layers, n_pe, acc_bits=cfg.acc_bits, balance=balance,
                        calibration=calibration)
    cfg.check_image(image)
    info.update(batch=batch, input_density=round(in_density, 4), input_scale=scale,
                placement="balanced" if balance else "interleaved",
                calibrated=calibration is not None)
    return Case("eie", index, design, image, x, info, reference=layers)


def _nonzero_density(rng: np.random.Generator) -> float:
    """The share of nonzero weights of a ternary layer: all nonzero now and then, sparse ones
    (down to ~3%) well covered."""
    u = rng.random()
    if u < 0.1:
        return 1.0
    if u < 0.5:
        return float(10 ** rng.uniform(-1.5, 0))
    return float(rng.uniform(0.05, 1.0))


def _ternary_thresholds(rng: np.random.Generator, nz: np.ndarray, n_in: int, *,
                        integer: bool) -> np.ndarray:
    """Thresholds on the masked match count of a W2 layer whose neurons have ``nz`` (``K'``)
    nonzero weights: mostly near ``K' / 2``; some always firing, some beyond ``K'`` (never
    firing, below ``K + 1`` or at it), and for an integer network some far outside ``0..K``
    (negative, beyond ``K + 1``, 32767) for the compiler to clip."""
    n_out = len(nz)
    t = np.round(nz / 2 + rng.normal(size=n_out) * np.sqrt(np.maximum(nz, 1)) / 3)
    u = rng.random(n_out)
    t[u < 0.05] = 0
    beyond = (u > 0.9) & (u < 0.95)             # K' < T <= K + 1: never fires
    t[beyond] = nz[beyond] + 1 + np.floor(rng.random(int(beyond.sum()))
                                           * (n_in + 1 - nz[beyond]))
    t[u > 0.95] = n_in + 1
    if integer:
        t[u < 0.02] = rng.integers(-40, 0, int(np.sum(u < 0.02)))
        t[u > 0.98] = rng.integers(n_in + 1, n_in + 40, int(np.sum(u > 0.98)))
        t[(u > 0.5) & (u < 0.52)] = 32767
        return t.astype(np.int64)
    return np.clip(t, 0, n_in + 1).astype(np.int64)


def _ternary_mask(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    """A W2 layer's nonzero mask (bool ``(n_out, n_in)``): a random density, rows spread around
    it half the time, sometimes a neuron without any nonzero weight (``K' = 0``) or with all."""
    density = _nonzero_density(rng)
    if rng.random() < 0.8:              # mostly a couple of nonzero weights a neuron at least
        density = min(1.0, max(density, 2.5 / n_in))
    if density < 1.0 and rng.random() < 0.5:
        row_d = np.clip(density * rng.lognormal(0.0, 0.8, n_out), 0.0, 1.0)
    else:
        row_d = np.full(n_out, density)
    mask = rng.random((n_out, n_in)) < row_d[:, None]
    if rng.random() < (0.5 if n_out > 2 else 0.1):
        mask[rng.integers(0, n_out)] = False
    if n_out > 1 and rng.random() < 0.3:
        mask[rng.integers(0, n_out)] = True
    return mask


def _random_ternary_image(folds, rng: np.random.Generator, last_thresholded: bool,
                          bits: Sequence[int]):
    """Random sign bits, masks (:func:`_ternary_mask`) and thresholds for a network with W2
    layers (W1 layers as :func:`eie.sw.bnn.image.random_image` draws them)."""
    from ..sw.bnn.image import BnnImage

    weights, thresholds, masks = [], [], []
    for l, f in enumerate(folds):
        w = rng.integers(0, 2, size=(f.n_out, f.n_in), dtype=np.uint8)
        mask = None
        nz = np.full(f.n_out, f.n_in)
        if bits[l] == 2:
            m = _ternary_mask(rng, f.n_out, f.n_in)
            mask, nz = m.astype(np.uint8), m.sum(axis=1)
        weights.append(w)
        masks.append(mask)
        if l < len(folds) - 1 or last_thresholded:
            if mask is None:
                t = np.round(f.n_in / 2 + rng.normal(size=f.n_out) * np.sqrt(f.n_in) / 4)
                special = rng.random(f.n_out)
                t[special < 0.05] = 0
                t[special > 0.95] = f.n_in + 1
                thresholds.append(np.clip(t, 0, f.n_in + 1).astype(np.int64))
            else:
                thresholds.append(_ternary_thresholds(rng, nz, f.n_in, integer=False))
    return BnnImage(list(folds), weights, thresholds, [{} for _ in folds], masks)


def _ternary_float_model(shape, bits: Sequence[int], rng: np.random.Generator):
    """A random float model with TWN layers where ``bits`` says 2
    (:func:`eie.sw.bnn.float_model.random_model`: a neuron without nonzero weights, negative and
    zero batch-norm scales, thresholds exactly on reachable values). Most W2 layers are then made
    sparser than TWN's ~58% nonzero: latent weights zeroed at random, rows scaled over ~10x (so
    the layer's one ``delta`` zeroes some rows entirely and keeps others whole); a hidden layer
    so changed gets batch-norm statistics drawn again on its new ``a * dot``."""
    from ..sw.bnn.float_model import random_model, ternarize

    model = random_model(shape, rng, weight_bits=list(bits))
    last = len(shape) - 2
    for l, w in enumerate(model.weights):
        if bits[l] != 2 or rng.random() < 0.25:
            continue
        n_out = w.shape[0]
        keep = rng.random(w.shape) < float(10 ** rng.uniform(-1.5, 0))
        rows = rng.lognormal(0.0, 1.0, n_out) if rng.random() < 0.5 else np.ones(n_out)
        w = w * keep * rows[:, None]
        if n_out > 2 and rng.random() < 0.3:
            w[rng.integers(1, n_out)] = 0.0
        model.weights[l] = w
        if l == last:
            break
        t, a = ternarize(w)
        nz = np.abs(t).sum(axis=1)
        model.var[l] = rng.uniform(0.1, 4.0, size=n_out) * np.maximum(nz, 1) * a * a
        mean = rng.normal(size=n_out) * np.sqrt(np.maximum(nz, 1)) * a
        on = rng.random(n_out) < 0.4        # a * dot == mean exactly at a reachable dot
        m0 = np.clip(np.round(nz[on] / 2 + rng.normal(size=int(on.sum())) * np.sqrt(nz[on]) / 2),
                     0, nz[on])
        mean[on] = a * (2 * m0 - nz[on])
        model.mean[l] = mean
        model.beta[l] = np.where(on, 0.0, model.beta[l])
    return model


def _integer_layer(rng: np.random.Generator, f, bits: int, thresholded: bool):
    """An integer layer's weights (``-1/+1``, or ``-1/0/+1`` for W2: a random density of zeros,
    :func:`_ternary_mask`) and thresholds (``None`` unless ``thresholded``) under ``ge`` or
    ``gt``, with thresholds inside and far outside ``0..K`` (W2: around ``K' / 2`` and beyond
    ``K'``)."""
    if bits == 2:
        mask = _ternary_mask(rng, f.n_out, f.n_in)
        w = np.where(rng.random((f.n_out, f.n_in)) < 0.5, -1, 1) * mask
        t = (_ternary_thresholds(rng, mask.sum(axis=1), f.n_in, integer=True)
             if thresholded else None)
        return w.astype(np.int8), t
    w = rng.choice(np.array([-1, 1], dtype=np.int8), size=(f.n_out, f.n_in))
    if not thresholded:
        return w, None
    t = np.round(f.n_in / 2 + rng.normal(size=f.n_out) * np.sqrt(f.n_in) / 3)
    u = rng.random(f.n_out)      # some beyond 0..K: constant neurons
    t[u < 0.05] = rng.integers(-40, 1, int(np.sum(u < 0.05)))
    t[u > 0.95] = rng.integers(f.n_in, f.n_in + 40, int(np.sum(u > 0.95)))
    t[(u > 0.5) & (u < 0.52)] = 32767
    return w, t.astype(np.int64)


def _ternary_info(image) -> list[dict]:
    """Per W2 layer of ``image``: its share of nonzero weights, neurons without any (``K' = 0``)
    and thresholds beyond ``K'`` (a neuron that never fires; of a k-bit-fed layer, beyond the
    highest reachable dot), for the coverage."""
    out = []
    for l, (f, mask) in enumerate(zip(image.folds, image.masks)):
        if mask is None:
            continue
        nz = np.asarray(mask, dtype=np.int64).sum(axis=1)
        entry = {"layer": l, "nonzero": round(float(nz.sum()) / (f.n_in * f.n_out), 4),
                 "zero_neurons": int(np.sum(nz == 0)), "full_neurons": int(np.sum(nz == f.n_in)),
                 "thresholded": l < len(image.thresholds)}
        if entry["thresholded"]:        # a threshold beyond K' (k-bit: beyond the reach)
            reach_hi = _accumulator_range(f, image.weights[l], mask)[3]
            t = np.asarray(image.thresholds[l]).reshape(f.n_out, -1)
            entry["beyond"] = int(np.sum(np.any(t > reach_hi[:, None], axis=1)))
        out.append(entry)
    return out


def _accumulator(a: np.ndarray, w: np.ndarray, mask: np.ndarray | None, in_bits: int) -> np.ndarray:
    """What a layer compares with its thresholds, for inputs ``a`` (batch, n_in): the match
    count (masked for W2) of 1-bit inputs, the integer dot of k-bit ones (the golden model's
    functions)."""
    from ..sw.bnn.golden import masked_matches, matches, plane_dot

    if in_bits > 1:
        return plane_dot(a, w, mask)
    return matches(a, w) if mask is None else masked_matches(a, w, mask)


def _accumulator_range(f, w: np.ndarray, mask: np.ndarray | None) -> tuple[int, int, np.ndarray,
                                                                           np.ndarray]:
    """``(lo, hi, reach_lo, reach_hi)``: the accumulator's range ``lo..hi`` for layer ``f``
    (``0..K``, or ``-K*L..K*L`` for k-bit inputs: thresholds are clipped to ``lo..hi+1``) and
    per neuron the values it can reach (``0..K'``; ``-L * #(-1 weights) .. L * #(+1
    weights)``) for sign bits ``w`` and mask bits ``mask`` (None: all nonzero)."""
    z = np.ones_like(w) if mask is None else np.asarray(mask)
    nz = z.sum(axis=1, dtype=np.int64)
    if f.in_bits == 1:
        return 0, f.n_in, np.zeros_like(nz), nz
    pos = (np.asarray(w) & z).sum(axis=1, dtype=np.int64)
    return -f.threshold_bias, f.threshold_bias, -f.levels * (nz - pos), f.levels * pos


def _multi_thresholds(rng: np.random.Generator, acc: np.ndarray, f, w: np.ndarray,
                      mask: np.ndarray | None, *, integer: bool) -> np.ndarray:
    """``2**k - 1`` thresholds a neuron (``(n_out, n_thr)``, ``acc >= T_j``) of layer ``f``
    whose accumulators on probe inputs are ``acc`` (probes, n_out): sorted quantiles of each
    neuron's probe values (so random inputs reach every level), one threshold in eight at an
    extreme (``lo``, the lowest and highest reachable value, one beyond the highest, ``hi + 1``),
    a fifth of the neurons with two thresholds equal. In ``lo..hi + 1``, or, ``integer``
    (for :func:`~eie.sw.bnn.compile.compile_integer` to clip), also far outside it, 32767 too,
    and a neuron's thresholds shuffled now and then (an integer network's need no order)."""
    n_out, n_thr = acc.shape[1], f.n_thresholds
    lo, hi, reach_lo, reach_hi = _accumulator_range(f, w, mask)
    ranked = np.sort(acc, axis=0)
    pos = np.sort(rng.random((n_out, n_thr)), axis=1)
    idx = np.minimum((pos * ranked.shape[0]).astype(np.int64), ranked.shape[0] - 1)
    t = ranked[idx, np.arange(n_out)[:, None]] + rng.integers(-1, 2, (n_out, n_thr))
    u = rng.random((n_out, n_thr))
    for (a, b), value in zip(((0, .025), (.025, .05), (.05, .075), (.075, .1), (.1, .125)),
                             (lo, reach_lo[:, None], reach_hi[:, None], reach_hi[:, None] + 1,
                              hi + 1)):
        t = np.where((u >= a) & (u < b), value, t)
    t = np.sort(np.clip(t, lo, hi + 1), axis=1)
    if n_thr > 1:
        same = np.flatnonzero(rng.random(n_out) < 0.2)
        j = rng.integers(0, n_thr - 1, same.size)
        t[same, j + 1] = t[same, j]
    if integer:
        v = rng.random((n_out, n_thr))
        t = np.where(v < 0.02, lo - rng.integers(1, 40, t.shape), t)
        t = np.where(v > 0.98, hi + 1 + rng.integers(1, 40, t.shape), t)
        t = np.where((v > 0.5) & (v < 0.51), 32767, t)
        for n in np.flatnonzero(rng.random(n_out) < 0.3):
            t[n] = rng.permutation(t[n])
    return t.astype(np.int64)


def _qnn_layers(folds, rng: np.random.Generator, last_thresholded: bool, bits: Sequence[int], *,
                integer: bool) -> tuple[list, list, list]:
    """Sign bits, masks (None for W1; :func:`_ternary_mask` for W2) and thresholds
    (:func:`_multi_thresholds`; ``(n_out,)`` for an A1 output) of a network with k-bit layers
    (``folds`` carry the precisions). The thresholds come from 64 probe inputs (each with its
    own share of ones) run through the layers drawn so far."""
    from ..sw.bnn.golden import multi_threshold

    a = (rng.random((64, folds[0].n_in)) < rng.uniform(0.1, 0.9, (64, 1))).astype(np.uint8)
    weights, masks, thresholds = [], [], []
    for l, f in enumerate(folds):
        w = rng.integers(0, 2, size=(f.n_out, f.n_in), dtype=np.uint8)
        mask = _ternary_mask(rng, f.n_out, f.n_in).astype(np.uint8) if bits[l] == 2 else None
        if mask is not None:
            w &= mask
        weights.append(w)
        masks.append(mask)
        if l == len(folds) - 1 and not last_thresholded:
            break
        acc = _accumulator(a, w, mask, f.in_bits)
        t = _multi_thresholds(rng, acc, f, w, mask, integer=integer)
        a = multi_threshold(acc, np.sort(t, axis=1))
        thresholds.append(t if f.out_bits > 1 else t[:, 0])
    return weights, masks, thresholds


def _qnn_network(kind: str, design: BnnDesign, rng: np.random.Generator):
    """``(image, float model or None)`` of source ``kind`` for a design with k-bit layers:
    random bits and multi-thresholds, an integer network under ``ge`` or ``gt`` (its
    thresholds shifted by one for ``gt``, so that the same values are reached), or a DoReFa
    float model (:func:`eie.sw.bnn.float_model.random_model` with ``act_bits``), compiled."""
    from ..sw.bnn.compile import compile_integer, compile_model
    from ..sw.bnn.float_model import random_model
    from ..sw.bnn.image import BnnImage
    from ..sw.bnn.params import IntegerBnn

    folds, bits, acts = list(design.folds), list(design.layer_bits), list(design.layer_acts)
    fold = [(f.simd, f.pe) for f in folds]
    if kind == "float":
        model = random_model(design.shape, rng, weight_bits=bits, act_bits=acts)
        return compile_model(model, fold), model
    weights, masks, thresholds = _qnn_layers(folds, rng, design.last_thresholded, bits,
                                             integer=kind != "random")
    if kind == "random":
        return BnnImage(folds, weights, thresholds, [{} for _ in folds], masks), None
    rule = kind.split("-")[1]
    signed = [np.where(w == 1, 1, -1).astype(np.int8) * (1 if m is None else m.astype(np.int8))
              for w, m in zip(weights, masks)]
    shift = 1 if rule == "gt" else 0
    thr = [t - shift for t in thresholds] + [None] * (len(folds) - len(thresholds))
    net = IntegerBnn(signed, thr, rule, bits, acts)
    return compile_integer(net, fold), None


def _kbit_info(image, x: np.ndarray) -> list[dict]:
    """Per layer of ``image`` with k-bit inputs or outputs, for the coverage: its precisions,
    and when thresholded the neurons with two equal thresholds, with one beyond the highest
    reachable accumulator (never crossed) and with one at or below the lowest (always
    crossed); for a k-bit output, the levels its outputs reached on ``x`` (of ``2**k``)."""
    from ..sw.bnn.golden import golden_layers

    outs = golden_layers(image, x)
    info = []
    for l, f in enumerate(image.folds):
        if f.in_bits == 1 and f.out_bits == 1:
            continue
        entry = {"layer": l, "in_bits": f.in_bits, "out_bits": f.out_bits,
                 "thresholded": l < len(image.thresholds)}
        if entry["thresholded"]:
            _, _, reach_lo, reach_hi = _accumulator_range(f, image.weights[l], image.masks[l])
            t = np.asarray(image.thresholds[l]).reshape(f.n_out, -1)
            entry.update(equal=int(np.sum(np.any(np.diff(np.sort(t, axis=1), axis=1) == 0,
                                                  axis=1))),
                         beyond=int(np.sum(np.any(t > reach_hi[:, None], axis=1))),
                         always=int(np.sum(np.any(t <= reach_lo[:, None], axis=1))))
        if f.out_bits > 1:
            entry.update(levels=1 << f.out_bits,
                         levels_reached=int(np.unique(outs[l]).size))
        info.append(entry)
    return info


def draw_bnn(seed: int, index: int, pool: Sequence[BnnDesign]) -> Case:
    """BNN configuration ``index`` of seed ``seed`` on ``pool[index % len(pool)]``. The layers
    of a W2 design's network are ternary where the design's are, those of a k-bit design have
    its activation precisions (any source, :func:`_qnn_network`); an all-A1 design's
    configuration is drawn exactly as before k-bit layers were drawn, an all-W1A1 one as before
    W2 layers were."""
    from ..sw.bnn.compile import compile_integer, compile_model
    from ..sw.bnn.float_model import random_model
    from ..sw.bnn.image import random_image
    from ..sw.bnn.params import IntegerBnn

    design = pool[index % len(pool)]
    folds = list(design.folds)
    shape = design.shape
    bits = design.layer_bits
    ternary = 2 in bits
    rng = _rng(seed, "bnn", _CASE, index)
    kinds = ("random", "integer-ge", "integer-gt") + (() if design.last_thresholded else ("float",))
    kind = _pick(rng, kinds, (3, 2, 2, 3)[:len(kinds)])
    reference = None
    fold = [(f.simd, f.pe) for f in folds]
    if design.quantized:
        image, reference = _qnn_network(kind, design, rng)
    elif kind == "random":
        image = (_random_ternary_image(folds, rng, design.last_thresholded, bits) if ternary
                 else random_image(folds, rng, last_thresholded=design.last_thresholded))
    elif kind == "float":
        reference = (_ternary_float_model(shape, bits, rng) if ternary
                     else random_model(shape, rng))
        image = compile_model(reference, fold)
    else:
        weights, thresholds = [], []
        for l, f in enumerate(folds):
            w, t = _integer_layer(rng, f, bits[l], l < len(folds) - 1 or design.last_thresholded)
            weights.append(w)
            thresholds.append(t)
        image = compile_integer(IntegerBnn(weights, thresholds, kind.split("-")[1],
                                           list(bits) if ternary else []), fold)
    if tuple(image.weight_bits) != bits or tuple(image.act_bits) != design.layer_acts:
        raise EieError(f"BNN configuration {index}: the drawn image's precisions are "
                       f"{image.weight_bits} {image.act_bits}, its design's {list(bits)} "
                       f"{list(design.layer_acts)}")
    n = int(rng.integers(1, 17))
    p1 = float(rng.uniform(0.1, 0.9))
    x = (rng.random((n, shape[0])) < p1).astype(np.uint8)
    ii = design.ii
    preload = bool(rng.random() < 0.7)
    backpressure = 0.0 if rng.random() < 0.6 else float(rng.uniform(0.2, 0.9))
    opts = {"preload": preload, "backpressure": round(backpressure, 3),
            "max_gap": int(rng.integers(1, 3 * ii + 9)),
            "poll_gap": 0 if rng.random() < 0.5 else ii // 4,
            "seed": int(rng.integers(0, 1 << 31))}
    info = {"shape": shape, "folding": [[f.simd, f.pe] for f in folds], "ii": ii,
            "in_depth": design.in_depth, "out_depth": design.out_depth,
            "outputs": "bits" if design.last_thresholded else "dots",
            "weights": design.weights, "precision": design.precision,
            "ternary_layers": _ternary_info(image), "source": kind,
            "batch": n, "input_ones": round(p1, 3), **opts,
            "design": design.index, "activations": design.activations,
            "activation": design.activation, "kbit_layers": _kbit_info(image, x)}
    return Case("bnn", index, design, image, x, info, job_options=opts, reference=reference)


def draw_case(engine: str, seed: int, index: int, pool: Sequence) -> Case:
    """Configuration ``index`` of ``engine`` and ``seed`` on its design of ``pool``."""
    return (draw_eie if engine == "eie" else draw_bnn)(seed, index, pool)


# ----------------------------------------------------------------------------- checking

def _first_difference(got: np.ndarray, want: np.ndarray) -> str:
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    bad = np.argwhere(got != want)
    pos = tuple(int(v) for v in bad[0])
    return (f"{len(bad)} of {got.size} differ, first at sample {pos[0]}, output {pos[1]}: "
            f"{got[pos].item()} (expected {want[pos].item()})")


def _check_eie(case: Case, result) -> str | None:
    from ..sw.cycle_model import predict_counters
    from ..sw.golden import golden_forward, golden_forward_layers

    img, x, cfg = case.image, case.x, case.design.config
    g = golden_forward(img, x)
    model = golden_forward_layers(case.reference, x, img.acc_bits)
    if not np.array_equal(g.outputs, model):
        return ("golden model of the image differs from the golden model of its layers "
                f"(encoding or placement): {_first_difference(np.asarray(g.outputs), model)}")
    y = np.asarray(result.outputs)
    if y.shape != g.outputs.shape or not np.array_equal(y, g.outputs):
        return f"outputs differ from the golden model: {_first_difference(y, g.outputs)}"
    inputs = g.layer_inputs
    pred = predict_counters(img, x, fifo_depth=cfg.fifo_depth,
                            ptr_queue_depth=cfg.ptr_queue_depth, layer_inputs=inputs)
    for s in range(x.shape[0]):
        got = result.counters[s]
        if len(got) != len(img.layers):
            return f"sample {s}: {len(got)} layers of counters, expected {len(img.layers)}"
        for l, c in enumerate(got):
            p = pred[s][l].counters()
            if p != c:
                keys = [k for k in p if p[k] != c.get(k)]
                return (f"sample {s}, layer {l}: counters differ from the cycle model in "
                        f"{', '.join(keys)}: RTL {c}, cycle model {p}")
        total = sum(c["cycles"] for c in got)
        if int(result.run_cycles[s]) != total:
            return (f"sample {s}: CYCLES reads {result.run_cycles[s]}, the layers' cycles add up "
                    f"to {total}")
    return None


def _check_bnn(case: Case, result) -> str | None:
    from ..sw.bnn.float_model import float_forward
    from ..sw.bnn.golden import golden_forward

    gold = golden_forward(case.image, case.x)
    if case.reference is not None:
        ref = float_forward(case.reference, case.x)
        if not np.array_equal(gold, ref):
            return ("golden model of the compiled image differs from the float model: "
                    f"{_first_difference(gold, ref)}")
    y = np.asarray(result.outputs)
    if y.dtype != gold.dtype:
        return f"outputs are {y.dtype}, the golden model's {gold.dtype}"
    if y.shape != gold.shape or not np.array_equal(y, gold):
        return f"outputs differ from the golden model: {_first_difference(y, gold)}"
    c = result.counters
    n = case.x.shape[0]
    if c.get("samples_in") != n or c.get("samples_out") != n:
        return (f"{n} samples streamed but the core counted {c.get('samples_in')} in, "
                f"{c.get('samples_out')} out")
    ii = case.design.ii
    o = case.job_options
    # The first two results are one II apart when the first two samples were in the input
    # FIFO before the start (preloaded), the host never paused, and the second result found
    # room in the output FIFO: two places, or the host drained it in time (no STALL at all).
    # With one place, a host slower than the core (reading many classes in a short II) holds
    # the network back: an II above the analytic one is then the host's, not the core's.
    if o["preload"] and not o["backpressure"] and min(n, case.design.in_depth) >= 2 \
            and (case.design.out_depth >= 2 or c.get("stall") == 0) and c.get("ii_min") != ii:
        return (f"preloaded samples without pauses: smallest interval between results "
                f"{c.get('ii_min')} cycles, the analytic II is {ii} (output stalls "
                f"{c.get('stall')} cycles)")
    return None


def check_case(case: Case, result) -> str | None:
    """None when ``result`` (the job's :class:`eie.sim.runner.SimResult`) passes every check of
    ``case``, else what failed first."""
    return (_check_eie if case.engine == "eie" else _check_bnn)(case, result)


# ----------------------------------------------------------------------------- running

@dataclass
class CaseResult:
    index: int
    design: int
    passed: bool
    message: str | None
    info: dict
    sim_cycles: int = 0
    measured: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"index": self.index, "design": self.design, "passed": self.passed,
                "message": self.message, "sim_cycles": self.sim_cycles, **self.measured,
                **self.info}


@dataclass
class Report:
    """What :func:`verify` did: the results in the order run, per design the build and
    simulation times, and the wall time."""

    engine: str
    sim: str
    seed: int
    designs: list
    results: list[CaseResult] = field(default_factory=list)
    design_times: dict = field(default_factory=dict)    # index -> {"build_s", "sim_s", "configs"}
    seconds: float = 0.0
    stopped: bool = False           # a failure ended the run early

    @property
    def failures(self) -> list[CaseResult]:
        return sorted((r for r in self.results if not r.passed), key=lambda r: r.index)

    @property
    def builds(self) -> int:
        return len(self.design_times)

    @property
    def built(self) -> int:
        """Designs built by this run (the others came from the cache)."""
        return sum(t["build_s"] > 0 for t in self.design_times.values())

    @property
    def build_seconds(self) -> float:
        return sum(t["build_s"] for t in self.design_times.values())

    @property
    def sim_seconds(self) -> float:
        return sum(t["sim_s"] for t in self.design_times.values())


def _run_jobs(engine: str, design, cases: Sequence[Case], *, sim: str, build_dir, load: str,
              on_progress: Callable[[int], Any] | None) -> list:
    """Run ``cases`` (one design) in one simulator process; return their jobs, results filled."""
    from .runner import run_core_jobs

    jobs = [c.job() for c in cases]
    if engine == "eie":
        from .eie_run import EieCore, check_inputs

        for j in jobs:
            j.x = check_inputs(j.image, j.x)
        core = EieCore(design.config, load)
        env = {"COCOTB_LOG_LEVEL": "WARNING"}
    else:
        from .bnn_run import BnnCore, check_jobs, core_folds, core_weight_bits

        thr = check_jobs(jobs, design.last_thresholded)
        bits = core_weight_bits(jobs, design.layer_bits)
        core = BnnCore(core_folds(design.folds, jobs), design.in_depth, design.out_depth, None,
                       thr, bits if 2 in bits else ())      # all W1: the W1A1 core's key, as before
        env = {"COCOTB_LOG_LEVEL": "WARNING"}
    run_core_jobs(core, jobs, sim=sim, build_dir=build_dir, env=env, quiet=True,
                  on_progress=on_progress)
    return jobs


def verify(engine: str, *, sim: str, seed: int, indices: Sequence[int],
           designs: int | None = None, max_pes: int = DEFAULT_MAX_PES,
           min_pes: int = DEFAULT_MIN_PES, build_dir=None, chunk: int = DEFAULT_CHUNK, keep_going: bool = False,
           load: str = "bus", on_advance: Callable[[float], Any] | None = None,
           on_note: Callable[[str], Any] | None = None,
           on_failure: Callable[[Case, CaseResult], Any] | None = None) -> Report:
    """Run configurations ``indices`` of ``engine`` and ``seed`` on ``sim``, grouped by design
    (smallest first), ``chunk`` a simulator process; stop at the first failure unless
    ``keep_going``. ``on_advance(n)``: ``n`` more configurations done (fractions while a chunk
    runs); ``on_note(text)``: a line about a design; ``on_failure(case, result)``: a failed
    configuration, while its case is at hand (to save it)."""
    if engine not in ENGINES:
        raise EieError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    t_start = time.perf_counter()
    pool = design_pool(engine, seed, designs, max_pes, min_pes)
    report = Report(engine, sim, seed, pool)
    groups: dict[int, list[int]] = {}
    for i in sorted(set(indices)):
        groups.setdefault(i % len(pool), []).append(i)
    order = sorted(groups, key=lambda d: (pool[d].cost, d))
    advance = on_advance or (lambda n: None)
    note = on_note or (lambda text: None)
    for gi, d in enumerate(order):
        design = pool[d]
        times = report.design_times.setdefault(d, {"build_s": 0.0, "sim_s": 0.0, "configs": 0})
        note(f"design {d} ({gi + 1}/{len(order)}): {design.describe()}: "
             f"{len(groups[d])} configuration{'s' if len(groups[d]) != 1 else ''}")
        members = groups[d]
        for k in range(0, len(members), chunk):
            cases = [draw_case(engine, seed, i, pool) for i in members[k:k + chunk]]
            results = _run_chunk(engine, design, cases, sim=sim, build_dir=build_dir,
                                 load=load, times=times, advance=advance)
            for case, res in zip(cases, results):
                report.results.append(res)
                if not res.passed and on_failure is not None:
                    on_failure(case, res)
            if not keep_going and any(not r.passed for r in results):
                report.stopped = True
                report.seconds = time.perf_counter() - t_start
                return report
        done = [r for r in report.results if r.design == d]
        bad = sum(not r.passed for r in done)
        note(f"design {d}: {len(done) - bad} of {len(done)} passed; build "
             f"{times['build_s']:.0f} s, simulation {times['sim_s']:.0f} s")
    report.seconds = time.perf_counter() - t_start
    return report


def _run_chunk(engine, design, cases, *, sim, build_dir, load, times, advance) -> list[CaseResult]:
    """Run one chunk; a chunk whose simulation fails is run again one configuration at a time,
    so that the failure lands on its configuration."""
    weights = [c.x.shape[0] if engine == "eie" else 1 for c in cases]
    per_unit = [1.0 / w for w in weights for _ in range(w)]
    state = {"units": 0, "credited": 0.0}

    def on_progress(n: int) -> None:
        start = state["units"]
        state["units"] = min(len(per_unit), start + n)
        step = sum(per_unit[start:state["units"]])
        state["credited"] += step
        advance(step)

    t0 = time.perf_counter()
    try:
        jobs = _run_jobs(engine, design, cases, sim=sim, build_dir=build_dir, load=load,
                         on_progress=on_progress)
    except (RuntimeError, EieError) as exc:
        advance(-state["credited"])
        times["sim_s"] += time.perf_counter() - t0
        if len(cases) > 1:
            out = []
            for c in cases:
                out += _run_chunk(engine, design, [c], sim=sim, build_dir=build_dir, load=load,
                                  times=times, advance=advance)
            return out
        advance(1)
        times["configs"] += 1
        lines = [l.strip() for l in str(exc).splitlines() if l.strip()] or [repr(exc)]
        short = lines[0][:300] + ("" if len(lines) == 1 else
                                  " ... " + " | ".join(l[:200] for l in lines[-3:]))
        return [CaseResult(cases[0].index, design.index, False,
                           f"the simulation failed: {short}", cases[0].info)]
    build = float(jobs[0].result.build_seconds)
    times["build_s"] += build
    times["sim_s"] += time.perf_counter() - t0 - build
    times["configs"] += len(cases)
    advance(len(cases) - state["credited"])
    out = []
    for case, job in zip(cases, jobs):
        msg = check_case(case, job.result)
        out.append(CaseResult(case.index, design.index, msg is None, msg, case.info,
                              int(job.result.sim_cycles), _measured(engine, job.result)))
    return out


def _measured(engine: str, result) -> dict:
    """What the report keeps of a run besides pass or fail."""
    try:
        if engine == "eie":
            return {"run_cycles": [int(c) for c in result.run_cycles]}
        c = result.counters
        return {k: c.get(k) for k in ("cycles", "ii_min", "latency", "stall")}
    except (AttributeError, TypeError):
        return {}


# ----------------------------------------------------------------------------- coverage

def _bins(values, edges: Sequence[float], labels: Sequence[str]) -> list[list]:
    counts = Counter()
    for v in values:
        for k in range(len(edges) - 1):
            if edges[k] <= v < edges[k + 1] or (k == len(edges) - 2 and v == edges[-1]):
                counts[k] += 1
                break
    return [[labels[k], counts[k]] for k in range(len(labels))]


def _counts(values, order: Sequence | None = None) -> list[list]:
    c = Counter(values)
    keys = list(order) if order is not None else sorted(c, key=lambda v: (isinstance(v, str), v))
    return [[str(k), c[k]] for k in keys]


_PCT = [0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 0.9999, 1.0]
_PCT_LABELS = ["<2%", "2-5%", "5-10%", "10-20%", "20-35%", "35-50%", "50-75%", "75-99%", "100%"]


def coverage(engine: str, infos: Sequence[dict]) -> dict[str, list[list]]:
    """Histograms of what the configurations ``infos`` (``CaseResult.info``) covered: name ->
    ``[[label, count], ...]``."""
    infos = list(infos)
    if not infos:
        return {}
    if engine == "eie":
        layers = [l for i in infos for l in i["layers"]]
        n_pe = [i["n_pe"] for i in infos]
        widths = [w for i in infos for w in [i["layers"][0]["n_in"]]
                  + [l["n_out"] for l in i["layers"]]]
        return {
            "PE count (configurations)": _counts(n_pe),
            "FIFO depth": _counts([i["fifo_depth"] for i in infos]),
            "pointer-queue depth": _counts([i["ptr_queue_depth"] for i in infos]),
            "accumulator bits": _counts([i["acc_bits"] for i in infos]),
            "layers a network": _counts([len(i["layers"]) for i in infos]),
            "layer width (n_in, n_out)": _bins(widths, [1, 2, 5, 9, 17, 33, 65, 129, 1 << 30],
                                               ["1", "2-4", "5-8", "9-16", "17-32", "33-64",
                                                "65-128", ">128"]),
            "weight density (layers)": _bins([l["density"] for l in layers], _PCT, _PCT_LABELS),
            "input density (configurations)": _bins([i["input_density"] for i in infos],
                                                    [0, 1e-9] + _PCT[1:],
                                                    ["0"] + _PCT_LABELS),
            "layers with n_out % N != 0": _counts(
                [l["n_out"] % i["n_pe"] != 0 for i in infos for l in i["layers"]], [True, False]),
            "layers with n_out < N": _counts(
                [l["n_out"] < i["n_pe"] for i in infos for l in i["layers"]], [True, False]),
            "layers with an empty row": _counts([l["empty_rows"] > 0 for l in layers],
                                                [True, False]),
            "layers with an empty column": _counts([l["empty_cols"] > 0 for l in layers],
                                                   [True, False]),
            "bias (layers)": _counts([l["bias"] for l in layers], [True, False]),
            "ReLU (layers)": _counts([l["relu"] for l in layers], [True, False]),
            "uneven rows (layers)": _counts([l["uneven"] for l in layers], [True, False]),
            "saturating values (configurations)": _counts([i["saturate"] for i in infos],
                                                          [True, False]),
            "placement": _counts([i["placement"] + (" + calibration" if i["calibrated"] else "")
                                  for i in infos]),
            "samples a configuration": _counts([i["batch"] for i in infos]),
        }
    fold_ratio = [f[0] / n_in for i in infos
                  for f, n_in in zip(i["folding"], i["shape"][:-1])]
    w2 = [t for i in infos for t in i["ternary_layers"]]
    return {
        "layers a network": _counts([len(i["shape"]) - 1 for i in infos]),
        "layer width (inputs and neurons)": _bins(
            [w for i in infos for w in i["shape"]], [1, 2, 9, 17, 33, 65, 1 << 30],
            ["1", "2-8", "9-16", "17-32", "33-64", ">64"]),
        "SIMD / fan-in (layers)": _bins(fold_ratio, [0, 0.1, 0.25, 0.5, 0.999, 1.001, 1e9],
                                        ["<0.1", "0.1-0.25", "0.25-0.5", "0.5-1", "1 (full)",
                                         ">1 (padded)"]),
        "analytic II (cycles)": _bins([i["ii"] for i in infos], [1, 2, 5, 17, 49, 1 << 30],
                                      ["1", "2-4", "5-16", "17-48", ">48"]),
        "input FIFO depth": _counts([i["in_depth"] for i in infos]),
        "output FIFO depth": _counts([i["out_depth"] for i in infos]),
        "outputs": _counts([i["outputs"] for i in infos]),
        "network source": _counts([i["source"] for i in infos]),
        "samples a configuration": _bins([i["batch"] for i in infos], [1, 2, 5, 9, 17],
                                         ["1", "2-4", "5-8", "9-16"]),
        "input FIFO preloaded": _counts([i["preload"] for i in infos], [True, False]),
        "host pauses before reads": _counts([i["backpressure"] > 0 for i in infos],
                                            [True, False]),
        "weights (configurations)": _counts([_PRECISION_LABEL[i["precision"]] for i in infos],
                                            list(_PRECISION_LABEL.values())),
        "weights per layer": _counts([w for i in infos for w in i["weights"].split(",")],
                                     ["W1", "W2"]),
        "output layer": _counts([f"{i['weights'].split(',')[-1]} {i['outputs']}"
                                 for i in infos], ["W1 dots", "W1 bits", "W2 dots", "W2 bits"]),
        "W2 layers: nonzero weights": _bins([t["nonzero"] for t in w2], _PCT, _PCT_LABELS),
        "W2 layers with a K' = 0 neuron": _counts([t["zero_neurons"] > 0 for t in w2],
                                                  [True, False]),
        "W2 thresholded layers, T > K'": _counts([t["beyond"] > 0 for t in w2
                                                  if t["thresholded"]], [True, False]),
        **_activation_coverage(infos),
    }


_PRECISION_LABEL = {"W1": "all W1", "W2": "all W2", "mixed": "mixed"}
_ACTIVATION_LABEL = {"A1": "all A1", "A2": "all A2", "A3": "all A3", "A4": "all A4",
                     "mixed": "mixed"}


def _activation_coverage(infos: Sequence[dict]) -> dict[str, list[list]]:
    """The BNN histograms of the activation precisions: per design (each counted once) and per
    configuration, per layer (with its weight precision), the output layer's input, and of the
    k-bit layers their thresholds and the output levels their inputs reached."""
    designs = list({i["design"]: i for i in infos}.values())
    layers = [(w, int(a[1:])) for i in infos
              for w, a in zip(i["weights"].split(","), i["activations"].split(","))]
    kbit = [t for i in infos for t in i["kbit_layers"]]
    multi = [t for t in kbit if t["thresholded"] and t["out_bits"] > 1]
    thresholded = [t for t in kbit if t["thresholded"]]
    labels = list(_ACTIVATION_LABEL.values())
    return {
        "activations (designs)": _counts([_ACTIVATION_LABEL[i["activation"]] for i in designs],
                                         labels),
        "activations (configurations)": _counts([_ACTIVATION_LABEL[i["activation"]]
                                                 for i in infos], labels),
        "activations per layer": _counts([f"A{a}" for _, a in layers], ["A1", "A2", "A3", "A4"]),
        "weights and activations per layer": _counts(
            [f"{w}A{a}" for w, a in layers], [f"W{w}A{a}" for w in (1, 2) for a in (1, 2, 3, 4)]),
        "output layer input": _counts(
            [f"A{_output_input_bits(i)} {i['outputs']}" for i in infos],
            [f"A{a} {o}" for a in (1, 2, 3, 4) for o in ("dots", "bits")]),
        "k-bit layers with two equal thresholds": _counts([t["equal"] > 0 for t in multi],
                                                          [True, False]),
        "k-bit layers, a threshold beyond reach": _counts([t["beyond"] > 0 for t in thresholded],
                                                          [True, False]),
        "k-bit layers, a threshold always crossed": _counts(
            [t["always"] > 0 for t in thresholded], [True, False]),
        "k-bit outputs: levels reached (layers)": _bins(
            [t["levels_reached"] / t["levels"] for t in kbit if "levels" in t],
            [0, 0.5, 0.75, 0.9999, 1.0], ["<50%", "50-75%", "75-99%", "all"]),
    }


def _output_input_bits(info: dict) -> int:
    """The activation precision feeding the output layer of configuration ``info``."""
    acts = info["activations"].split(",")
    return int(acts[-2][1:]) if len(acts) > 1 else 1


# ----------------------------------------------------------------------------- reproducing

#: The file that describes a saved case (:func:`save_case`) and lists every other file in its
#: directory: what lets a later save replace the directory, and nothing else.
CASE_FILE = "case.json"


def _case_files(data: dict) -> list[str] | None:
    if not isinstance(data, dict) or data.get("engine") not in ("eie", "bnn") \
            or not isinstance(data.get("files"), list):
        return None
    return data["files"]


#: Recognises a directory :func:`save_case` wrote: the only kind of non-empty directory it
#: replaces (:func:`eie.common.outputs.check_replaceable`).
CASE_OWNER = outputs.manifest_owner(CASE_FILE, _case_files)


def case_paths(directory: str | Path) -> dict[str, Path]:
    """Where :func:`save_case` puts a case's image, inputs and description in ``directory``."""
    d = Path(directory)
    return {"image": d / "image", "x": d / "x.npy", "case": d / CASE_FILE}


def save_case(case: Case, directory: str | Path,
              notes: dict[str, str] | None = None) -> dict[str, Path]:
    """Write ``case``'s image, inputs and description into ``directory``: ``image/``, ``x.npy``
    (EIE: int16 fixed point, ``eie run --raw``; BNN: bits), ``case.json`` (which lists every
    file) and each text file of ``notes`` (name: text, e.g. the reproducer). Atomically: on any
    error or signal the directory holds the earlier case or this one, nothing else. An
    existing directory is replaced only when it is empty or a case saved here before with
    nothing else in it; anything else raises :class:`EieError` and is left alone. Returns
    :func:`case_paths`."""
    d = Path(directory)
    outputs.check_replaceable(d, "the case directory", owner=CASE_OWNER,
                              kind="a failing case saved by eie verify")
    if case.engine == "eie":
        from ..sw.image import write_image
    else:
        from ..sw.bnn.image import write_image
    with atomic_dir(d) as tmp:
        write_image(case.image, tmp / "image")
        np.save(tmp / "x.npy", case.x)
        for name, text in (notes or {}).items():
            if not outputs.safe_name(name) or name == CASE_FILE:
                raise EieError(f"cannot save a note named {name!r} with a case")
            (tmp / name).write_text(text)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        desc = {"engine": case.engine, "index": case.index, "design": case.design.to_json(),
                "info": case.info, "files": files}
        (tmp / CASE_FILE).write_text(json.dumps(desc, indent=1, default=str) + "\n")
    return case_paths(d)
