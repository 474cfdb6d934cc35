"""``eie verify``: the randomized regression of both cores (issue 19).

``eie verify --engine eie|bnn --configs N --sim verilator|icarus --seed S [--json OUT]`` draws N
random configurations (:mod:`eie.sim.verify`: a pool of designs, each a build, and per
configuration the networks, inputs and options that vary at run time), runs them grouped by
design, checks each against the golden model and the cycle model, prints a summary with the
coverage, and exits 1 with a reproducer command (``--only I``) when a configuration fails. The
failing configuration's image and inputs are saved (``--keep``) so that ``eie run`` or
``eie bnn run`` can run it too.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from ..common import outputs
from ..common.errors import EieError
from ..common.progress import progress_bar
from ..hw.eie.config import MAX_PE
from ..sim.runner import ALL_SIMULATORS, CACHE_DIR_DEFAULT

__all__ = ["register", "cmd_verify", "reproducer", "run_command", "parse_only"]

#: eie.sim.verify's (the PE range eie.sim.verify_eie's, which eie.sim.verify imports), spelled
#: out so that `eie --help` imports no NumPy
_ENGINES = ("eie", "bnn")
_DEFAULT_DESIGNS = {"eie": 10, "bnn": 16}
_DEFAULT_MAX_PES = 64
_DEFAULT_MIN_PES = 1
_DEFAULT_CHUNK = 25
_LOADS = ("bus", "backdoor")
MAX_CONFIGS = 1_000_000


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify", help="randomized regression: random configurations on a simulator against "
                       "the golden and cycle models",
        description="Draw random configurations of a core (EIE: PE counts, FIFO and "
                    "pointer-queue depths, accumulator widths, layer counts and shapes, "
                    "densities, bias, ReLU, placement, saturating values; BNN: shapes, "
                    "foldings, FIFO depths, thresholded or dot outputs, integer, float and "
                    "random networks, streaming with and without pauses), run them on a "
                    "simulator grouped so that configurations of one design share its build, "
                    "and check each against the golden model (outputs bit for bit) and the "
                    "cycle model (EIE: every counter of every layer; BNN: the initiation "
                    "interval). Configuration I of seed S is the same in every run: a failure "
                    "prints the command that runs it alone (--only I), exit status 1. "
                    "docs/eie-verification.md, 'Randomized regression'.")
    p.add_argument("--engine", choices=_ENGINES, default="eie", help="the core (default eie)")
    p.add_argument("--configs", type=int, default=100, metavar="N",
                   help="configurations to draw and run: 0..N-1 (default 100)")
    p.add_argument("--sim", choices=ALL_SIMULATORS, default="verilator",
                   help="simulator (default verilator)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the designs and configurations (default 0)")
    p.add_argument("--only", metavar="I[,J...]",
                   help="run only these configurations (what a reproducer does); --configs is "
                        "then ignored")
    p.add_argument("--designs", type=int, default=None, metavar="K",
                   help=f"designs (builds) in the pool; configuration i runs on design i %% K "
                        f"(default {_DEFAULT_DESIGNS['eie']} EIE, {_DEFAULT_DESIGNS['bnn']} BNN)")
    p.add_argument("--max-pes", type=int, default=None, metavar="M",
                   help=f"EIE: the largest PE count of the pool (default {_DEFAULT_MAX_PES}; "
                        "Icarus simulates a 50-PE design at tens of cycles a second: 16 suits "
                        "long Icarus runs)")
    p.add_argument("--min-pes", type=int, default=None, metavar="M",
                   help=f"EIE: the smallest PE count of the pool (default {_DEFAULT_MIN_PES}); "
                        "e.g. --min-pes 17 runs only designs above 16 PEs")
    p.add_argument("--load", choices=_LOADS, default=None,
                   help="EIE: how images go in: bus (default, as a host does) or backdoor "
                        "(pointer and sparse-matrix words deposited; Verilator and Icarus)")
    p.add_argument("--chunk", type=int, default=_DEFAULT_CHUNK, metavar="C",
                   help=f"configurations a simulator process runs (default {_DEFAULT_CHUNK})")
    p.add_argument("--keep-going", action="store_true",
                   help="run every configuration even after a failure (default: stop at the "
                        "first)")
    p.add_argument("--json", type=Path, metavar="OUT.json",
                   help="write the summary, the coverage and every configuration's result")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="where failing configurations are saved (image, inputs, description; "
                        "default <build cache>/verify)")
    p.add_argument("--build-dir", type=Path, metavar="DIR",
                   help=f"build cache (default {CACHE_DIR_DEFAULT})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="draw the configurations and print the pool of designs and the "
                        "coverage; build and simulate nothing")
    p.set_defaults(func=cmd_verify)


def parse_only(text: str) -> list[int]:
    """``"3,17"`` -> ``[3, 17]``; :class:`EieError` for anything but non-negative integers, each
    named once (a duplicate would be counted, and run, twice)."""
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit():
            raise EieError(f"--only {text!r}: give configuration numbers separated by commas, "
                           "e.g. --only 17 or --only 3,17")
        if int(part) in out:
            raise EieError(f"--only {text!r} names configuration {int(part)} twice; give each "
                           "configuration once")
        out.append(int(part))
    if not out:
        raise EieError(f"--only {text!r} names no configuration; e.g. --only 17")
    return out


def reproducer(args: argparse.Namespace, index: int) -> str:
    """The command that runs configuration ``index`` alone, with every option that changes it."""
    cmd = ["eie", "verify", "--engine", args.engine, "--sim", args.sim, "--seed",
           str(args.seed), "--only", str(index)]
    if args.designs is not None and args.designs != _DEFAULT_DESIGNS[args.engine]:
        cmd += ["--designs", str(args.designs)]
    if args.max_pes is not None and args.max_pes != _DEFAULT_MAX_PES:
        cmd += ["--max-pes", str(args.max_pes)]
    if args.min_pes is not None and args.min_pes != _DEFAULT_MIN_PES:
        cmd += ["--min-pes", str(args.min_pes)]
    if args.load not in (None, "bus"):
        cmd += ["--load", args.load]
    if args.build_dir is not None:
        cmd += ["--build-dir", str(args.build_dir)]
    return shlex.join(cmd)


def run_command(args: argparse.Namespace) -> str:
    """The command that repeats this run (every option that changes what runs)."""
    cmd = ["eie", "verify", "--engine", args.engine, "--sim", args.sim, "--seed", str(args.seed)]
    cmd += ["--only", args.only] if args.only is not None else ["--configs", str(args.configs)]
    for opt, value in (("--designs", args.designs), ("--max-pes", args.max_pes),
                       ("--min-pes", args.min_pes), ("--load", args.load),
                       ("--chunk", args.chunk)):
        if value is not None and not (opt == "--chunk" and value == _DEFAULT_CHUNK):
            cmd += [opt, str(value)]
    if args.keep_going:
        cmd.append("--keep-going")
    if args.dry_run:
        cmd.append("--dry-run")
    return shlex.join(cmd)


def _check_args(args: argparse.Namespace) -> None:
    if not 1 <= args.configs <= MAX_CONFIGS:
        raise EieError(f"--configs {args.configs}: choose 1..{MAX_CONFIGS:,}")
    if args.seed < 0:
        raise EieError(f"--seed {args.seed}: choose a non-negative integer")
    if args.designs is not None and not 1 <= args.designs <= 1000:
        raise EieError(f"--designs {args.designs}: choose 1..1000")
    if args.chunk < 1:
        raise EieError(f"--chunk {args.chunk}: choose 1 or more")
    if args.engine == "bnn":
        for opt, value in (("--max-pes", args.max_pes), ("--min-pes", args.min_pes),
                           ("--load", args.load)):
            if value is not None:
                raise EieError(f"{opt} is for --engine eie; the BNN core has neither PEs to "
                               "count nor a backdoor load: leave it out")
    if args.max_pes is not None and not 1 <= args.max_pes <= MAX_PE:
        raise EieError(f"--max-pes {args.max_pes}: choose 1..{MAX_PE}")
    if args.min_pes is not None:
        top = args.max_pes if args.max_pes is not None else _DEFAULT_MAX_PES
        if not 1 <= args.min_pes <= top:
            raise EieError(f"--min-pes {args.min_pes}: choose 1..{top} (at most --max-pes, "
                           f"{top})")
    if args.load == "backdoor" and args.sim == "amaranth":
        raise EieError("--load backdoor deposits words through a Verilog simulator's VPI: use "
                       "--sim verilator or icarus, or --load bus with amaranth")


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _eie_run_command(case, paths: dict, sim: str) -> str:
    c = case.design.config
    opts = [("--fifo-depth", c.fifo_depth), ("--ptr-queue-depth", c.ptr_queue_depth),
            ("--acc-bits", c.acc_bits),
            ("--ptr-depth", c.ptr_depth), ("--spmat-depth", c.spmat_depth),
            ("--act-depth", c.act_depth), ("--acc-depth", c.acc_depth),
            ("--bias-depth", c.bias_depth), ("--max-layers", c.max_layers)]
    cmd = ["eie", "run", str(paths["image"]), "--input", str(paths["x"]), "--raw", "-o",
           str(paths["x"].with_name("y.npy")), "--sim", sim,
           "--stats", str(paths["x"].with_name("stats.json"))]
    for opt, v in opts:
        cmd += [opt, str(v)]
    return shlex.join(cmd)


def _bnn_run_command(case, paths: dict, sim: str) -> str:
    d = case.design
    cmd = ["eie", "bnn", "run", str(paths["image"]), "--input", str(paths["x"]), "-o",
           str(paths["x"].with_name("y.npy")), "--sim", sim, "--in-depth", str(d.in_depth),
           "--out-depth", str(d.out_depth), "--stats", str(paths["x"].with_name("stats.json"))]
    if case.job_options.get("backpressure"):
        cmd += ["--backpressure", str(case.job_options["backpressure"]), "--seed",
                str(case.job_options["seed"])]
    return shlex.join(cmd)


def _print_coverage(cov: dict[str, list[list]], out) -> None:
    print("coverage:", file=out)
    width = max((len(k) for k in cov), default=0)
    for name, hist in cov.items():
        items = "  ".join(f"{label}: {n}" for label, n in hist)
        print(f"  {name:<{width}}  {items}", file=out)


def _dry_run(args, v, indices, designs: int, max_pes: int, min_pes: int) -> int:
    """``--dry-run``: the pool, how many configurations each design gets, the coverage."""
    from ..sw.imagefile import plural

    pool = v.design_pool(args.engine, args.seed, designs, max_pes, min_pes)
    per = {d.index: 0 for d in pool}
    infos = []
    for i in indices:
        infos.append(v.draw_case(args.engine, args.seed, i, pool).info)
        per[i % len(pool)] += 1
    print("designs (one build each):")
    for d in sorted(pool, key=lambda d: (d.cost, d.index)):
        print(f"  design {d.index}: {d.describe()}: {plural(per[d.index], 'configuration')}")
    _print_coverage(v.coverage(args.engine, infos), sys.stdout)
    if args.json is not None:
        from ..common.atomic import atomic_file

        doc = {"command": run_command(args), "engine": args.engine, "seed": args.seed,
               "dry_run": True, "pool": [d.to_json() for d in pool],
               "coverage": {k: dict((label, n) for label, n in h)
                            for k, h in v.coverage(args.engine, infos).items()},
               "configs": [{"index": i, **info} for i, info in zip(indices, infos)]}
        with atomic_file(args.json) as f:
            f.write(json.dumps(doc, indent=1, default=str) + "\n")
        print(f"report: {args.json}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    _check_args(args)
    paths = outputs.plan()
    for check, path, opt in ((paths.file, args.json, "--json"),
                             (paths.cache, args.build_dir, "--build-dir"),
                             (paths.cache, args.keep, "--keep")):
        if path is not None:
            check(path, opt)
    indices = parse_only(args.only) if args.only is not None else list(range(args.configs))
    if args.sim != "amaranth" and not args.dry_run:
        from ..sim.runner import check_simulator

        check_simulator(args.sim)

    from ..sim.runner import cache_dir
    from ..sim import verify as v
    from ..sw.imagefile import plural

    designs = args.designs if args.designs is not None else v.DEFAULT_DESIGNS[args.engine]
    max_pes = args.max_pes if args.max_pes is not None else v.DEFAULT_MAX_PES
    min_pes = args.min_pes if args.min_pes is not None else v.DEFAULT_MIN_PES
    keep = args.keep if args.keep is not None else cache_dir(args.build_dir) / "verify"
    pool_text = (plural(designs, "design")
                 + (f" of {min_pes}..{max_pes} PEs" if args.engine == "eie" else ""))
    what = (("configuration " if len(indices) == 1 else "configurations ")
            + ",".join(map(str, indices)) if args.only is not None
            else plural(len(indices), "configuration"))
    print(f"eie verify: {args.engine.upper()} {what}, seed {args.seed}, {args.sim}, "
          f"{pool_text}", flush=True)

    if args.dry_run:
        return _dry_run(args, v, indices, designs, max_pes, min_pes)

    bar = None
    if not args.no_progress:
        # on a terminal only (nothing drawn into a file or a pipe): common.progress's rule
        bar = progress_bar(len(indices), desc=f"verify {args.engine} ({args.sim})", unit="config",
                           bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}]")

    def note(text: str) -> None:
        if bar is not None:
            bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    saved: dict[int, dict] = {}

    def on_failure(case, res) -> None:
        note(f"FAIL configuration {case.index} (design {res.design}): {res.message}")
        d = Path(keep) / f"{args.engine}-seed{args.seed}-config{case.index}"
        try:
            run = (_eie_run_command if args.engine == "eie" else _bnn_run_command)(
                case, v.case_paths(d), args.sim)
            v.save_case(case, d, notes={"reproduce.txt": f"{reproducer(args, case.index)}\n"
                                                         f"{run}\n"})
        except (OSError, EieError) as exc:      # saving is a convenience: the run goes on
            note(f"  (could not save configuration {case.index} into {d}: {exc})")
            return
        saved[case.index] = {"directory": str(d), "run": run}

    try:
        report = v.verify(args.engine, sim=args.sim, seed=args.seed, indices=indices,
                          designs=designs, max_pes=max_pes, min_pes=min_pes,
                          build_dir=args.build_dir,
                          chunk=args.chunk, keep_going=args.keep_going, load=args.load or "bus",
                          on_advance=None if bar is None else bar.update, on_note=note,
                          on_failure=on_failure)
    finally:
        if bar is not None:
            bar.close()

    results = report.results
    failures = report.failures
    passed = len(results) - len(failures)
    cov = v.coverage(args.engine, [r.info for r in results])
    out = sys.stdout
    print("-" * 78, file=out)
    print(f"configurations  {len(results)} run of {len(indices)}, {passed} passed, "
          f"{len(failures)} failed" + ("  (stopped at the first failure)" if report.stopped
                                       else ""), file=out)
    print(f"designs         {report.builds}: {report.built} built now "
          f"({_fmt_seconds(report.build_seconds)}), {report.builds - report.built} from the "
          f"cache; simulation {_fmt_seconds(report.sim_seconds)}", file=out)
    print(f"wall time       {_fmt_seconds(report.seconds)}", file=out)
    _print_coverage(cov, out)
    if args.json is not None:
        from ..common.atomic import atomic_file

        doc: dict[str, Any] = {
            "command": run_command(args),
            "engine": args.engine, "sim": args.sim, "seed": args.seed,
            "designs": designs, "max_pes": max_pes if args.engine == "eie" else None,
            "min_pes": min_pes if args.engine == "eie" else None,
            "load": args.load or "bus" if args.engine == "eie" else None,
            "summary": {"configs": len(indices), "run": len(results), "passed": passed,
                        "failed": len(failures), "stopped": report.stopped,
                        "builds": report.builds, "built": report.built,
                        "build_seconds": round(report.build_seconds, 2),
                        "sim_seconds": round(report.sim_seconds, 2),
                        "seconds": round(report.seconds, 2)},
            "pool": [d.to_json() for d in report.designs],
            "design_times": {str(k): {kk: round(vv, 2) if isinstance(vv, float) else vv
                                      for kk, vv in t.items()}
                             for k, t in report.design_times.items()},
            "coverage": {k: dict((label, n) for label, n in h) for k, h in cov.items()},
            "failures": [{"index": r.index, "design": r.design, "message": r.message,
                          "reproducer": reproducer(args, r.index), **saved.get(r.index, {})}
                         for r in failures],
            "configs": [r.to_json() for r in sorted(results, key=lambda r: r.index)],
        }
        with atomic_file(args.json) as f:
            f.write(json.dumps(doc, indent=1, default=str) + "\n")
        print(f"report: {args.json}", file=out)
    if not failures:
        n = len(results)
        print(f"all {n} configurations equal the golden and cycle models" if n != 1 else
              "the configuration equals the golden and cycle models", file=out)
        return 0
    first = failures[0]
    print(f"FAILED: {len(failures)} configuration{'s' if len(failures) > 1 else ''}; first: "
          f"configuration {first.index} (design {first.design}): {first.message}",
          file=sys.stderr)
    print(f"reproduce: {reproducer(args, first.index)}", file=sys.stderr)
    if first.index in saved:
        print(f"saved in {saved[first.index]['directory']}; or run it with: "
              f"{saved[first.index]['run']}", file=sys.stderr)
    return 1
