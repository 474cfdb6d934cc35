"""What the EIE and BNN sides of ``eie verify`` (:mod:`eie.sim.verify_eie`,
:mod:`eie.sim.verify_bnn`) share: the NumPy streams everything is drawn from (:func:`_rng`,
``SeedSequence(S, spawn_key=(engine, kind, i))``: an engine, a kind -- the pool, a
configuration, a build parameter's order, a BNN design's activation precisions -- and an
index), the draws both make from them (:func:`_pick`; :func:`_spread`, a build parameter
spread over the pool), the :class:`Case` a draw returns, and :func:`_first_difference` for the
checks' messages. It imports neither engine's module; both of them and :mod:`eie.sim.verify`
import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["Case"]

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


def _spread(seed: int, engine: str, knob: int, values: Sequence, d: int):
    """Design ``d``'s value of a build parameter: ``values`` in an order drawn once per seed,
    design ``d`` taking entry ``d % len(values)``, so that a pool of ``len(values)`` designs
    or more has every value (a Latin-hypercube-like pool; the other parameters are paired with
    it at random)."""
    perm = _rng(seed, engine, _PERM, knob).permutation(len(values))
    return values[int(perm[d % len(values)])]


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


def _first_difference(got: np.ndarray, want: np.ndarray) -> str:
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    bad = np.argwhere(got != want)
    pos = tuple(int(v) for v in bad[0])
    return (f"{len(bad)} of {got.size} differ, first at sample {pos[0]}, output {pos[1]}: "
            f"{got[pos].item()} (expected {want[pos].item()})")
