"""The EIE side of ``eie verify`` (:mod:`eie.sim.verify`): the designs of the pool, the
configurations drawn on them and the checks of a run.

**Drawing** (:func:`eie_design`, :func:`draw_eie`): a design fixes what needs a build -- the PE
count (the pool's PE counts are spread on a log scale over ``min_pes..max_pes``, default 1..64,
one per stratum (:func:`pe_strata`), so the small counts, the odd ones and one count near
``max_pes`` are all there), the FIFO depth (1..32), the pointer-queue depth (2..32), the
accumulator width (16..48 bits) and memories that hold every network of up to ``max_layers``
layers no wider than ``max_dim`` (as the RTL tests' designs do). A configuration is the
run-time data: layer count and widths (down to 1, ``n_out % N != 0``, fewer rows than PEs),
per-layer weight densities 1-100% (rows uneven as trained layers have them, forced empty rows
and columns), codebooks and weight shifts (saturating ones too), bias and ReLU per layer,
balanced or interleaved placement (with or without calibration), and 1-3 input samples of any
density.

**Checking** (:func:`check_eie`): the outputs equal the golden model of the image bit for bit
(and that equals the golden model of the layers before encoding and placement), and per sample
and layer every counter (``cycles``, ``broadcasts``, per-PE ``busy`` and ``stall``) equals the
cycle model (:func:`eie.sw.cycle_model.predict_counters`); ``CYCLES`` is the layers' sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..common.errors import EieError
from .verify_case import _CASE, _POOL, Case, _first_difference, _pick, _rng, _spread

__all__ = ["DEFAULT_MAX_PES", "DEFAULT_MIN_PES", "EieDesign", "pe_strata", "eie_design",
           "draw_eie", "check_eie"]

#: The largest PE count an EIE design of the pool may have (the issue's range, 1..64).
DEFAULT_MAX_PES = 64
#: The smallest (a larger one runs only the big designs, e.g. Icarus above 16 PEs).
DEFAULT_MIN_PES = 1


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


# ----------------------------------------------------------------------------- configurations

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


# ----------------------------------------------------------------------------- checking

def check_eie(case: Case, result) -> str | None:
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
