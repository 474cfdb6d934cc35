"""The randomized regression of both cores (``eie verify``, issue 19): draw random
configurations, run them on Verilator or Icarus, and check every one against the golden model
and the cycle model.

**Drawing.** Everything is a pure function of the seed ``S`` (and the pool options,
``designs``, ``min_pes`` and ``max_pes``): the pool of designs (the build parameters) and configuration
``i`` (the run-time data) come from their own NumPy streams,
``SeedSequence(S, spawn_key=(engine, kind, i))``, so configuration ``i`` is the same whether a
run draws 1,000 configurations or only that one (``eie verify --only I``), on either simulator.
Configuration ``i`` runs on design ``i % len(pool)``.

What an engine's designs and configurations are, and how its runs are checked, is in its own
module: :mod:`eie.sim.verify_eie` (:func:`~eie.sim.verify_eie.eie_design`,
:func:`~eie.sim.verify_eie.draw_eie`) and :mod:`eie.sim.verify_bnn`
(:func:`~eie.sim.verify_bnn.bnn_design`, :func:`~eie.sim.verify_bnn.draw_bnn`); what both draw
with (the streams, :class:`~eie.sim.verify_case.Case`) is in :mod:`eie.sim.verify_case`. This
module holds the rest: the dispatch to the engine's module (:func:`design_pool`,
:func:`draw_case`, :func:`check_case`), running, the report, the coverage of both engines
(:func:`coverage`) and reproducing (:func:`save_case`).

**Running** (:func:`verify`): the configurations of a design share its build (the hashed cache
of :mod:`eie.sim.runner`) and run ``chunk`` at a time in one simulator process
(:func:`eie.sim.runner.run_core_jobs`), smallest designs first. A chunk whose simulation fails
(a hang, an error in the testbench) is run again one configuration at a time to find the one.

**Checking** (:func:`check_case`): EIE -- the outputs equal the golden model bit for bit and
every counter the cycle model; BNN -- the outputs equal the golden model (and a compiled float
model's), every sample went in and came out, and a preloaded stream without pauses has its
results one analytic initiation interval apart. The details are in the engines' modules.
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
from .verify_bnn import check_bnn, bnn_design, draw_bnn
from .verify_case import Case
from .verify_eie import DEFAULT_MAX_PES, DEFAULT_MIN_PES, check_eie, draw_eie, eie_design

# DEFAULT_MAX_PES and DEFAULT_MIN_PES are eie.sim.verify_eie's (the EIE pool's PE range) and
# the defaults of design_pool and verify: this module's options too.
__all__ = ["ENGINES", "DEFAULT_DESIGNS", "DEFAULT_MAX_PES", "DEFAULT_MIN_PES", "DEFAULT_CHUNK",
           "CaseResult", "Report", "design_pool", "draw_case", "check_case", "verify",
           "coverage", "save_case", "case_paths"]

ENGINES = ("eie", "bnn")
#: Designs (builds) in a run's pool: configuration ``i`` runs on design ``i % designs``.
DEFAULT_DESIGNS = {"eie": 10, "bnn": 16}
#: Configurations per simulator process.
DEFAULT_CHUNK = 25


# ----------------------------------------------------------------------------- dispatch

def design_pool(engine: str, seed: int, designs: int | None = None,
                max_pes: int = DEFAULT_MAX_PES, min_pes: int = DEFAULT_MIN_PES) -> list:
    """Every design of the pool of ``engine`` and ``seed``."""
    designs = DEFAULT_DESIGNS[engine] if designs is None else designs
    if engine == "eie":
        return [eie_design(seed, d, designs=designs, max_pes=max_pes, min_pes=min_pes)
                for d in range(designs)]
    return [bnn_design(seed, d) for d in range(designs)]


def draw_case(engine: str, seed: int, index: int, pool: Sequence) -> Case:
    """Configuration ``index`` of ``engine`` and ``seed`` on its design of ``pool``."""
    return (draw_eie if engine == "eie" else draw_bnn)(seed, index, pool)


def check_case(case: Case, result) -> str | None:
    """None when ``result`` (the job's :class:`eie.sim.runner.SimResult`) passes every check of
    ``case``, else what failed first."""
    return (check_eie if case.engine == "eie" else check_bnn)(case, result)


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
