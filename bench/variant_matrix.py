"""What each microarchitecture change buys on EIE's Table III layers: efficiency (bound / cycles,
cycle model) per layer over a grid of activation-FIFO depths and pointer-queue depths, 64 PEs.

    .venv/bin/python bench/variant_matrix.py                          # FIFO 8,16,32 x queue 4..32
    .venv/bin/python bench/variant_matrix.py --fifo 8,64 --queue 4,16,32 --pes 64 --scale 1

Prints a Markdown table (one row per configuration, the minimum over the layers last; rows of
the named variants marked) and writes it with the raw figures to ``--json`` (default
``bench/out/variant_matrix.json``). The cycle model equals the RTL counter for counter
(tests/test_cycle_model.py, ``eie bench table3 --sim verilator``), so this is what the RTL counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eie.hw.eie.variants import VARIANTS
from eie.app.bench_layers import parse_layers
from eie.app.bench_setup import BenchSetup, check_int, config_range
from eie.app.bench_table3 import table3
from eie.app.cmd_bench import parse_int_list
from eie.common import outputs
from eie.common.errors import EieError


def matrix(fifos: list[int], queues: list[int], *, n_pe: int, scale: float, seed: int,
           layers: str | None) -> dict:
    specs = parse_layers([layers] if layers else None)
    rows = []
    for f in fifos:
        for q in queues:
            setup = BenchSetup(n_pe=n_pe, fifo_depth=f, overrides={"ptr_queue_depth": q},
                               seed=seed, scale=scale)
            doc = table3(specs, setup, "model", progress=False, compare_paper=False)
            named = [n for n, v in VARIANTS.items()
                     if v.fields == {"fifo_depth": f, "ptr_queue_depth": q}]
            rows.append({"fifo_depth": f, "ptr_queue_depth": q, "variant": named[0] if named else None,
                         "efficiency": {r["name"]: r["efficiency"] for r in doc["layers"]},
                         "cycles": {r["name"]: r["cycles"] for r in doc["layers"]},
                         "min_efficiency": doc["min_efficiency"]})
            print(f"  FIFO {f:3d}, queue {q:3d}: min {doc['min_efficiency']:.3f}", file=sys.stderr)
    return {"n_pe": n_pe, "scale": scale, "seed": seed,
            "layers": [s.name for s in specs], "rows": rows}


def markdown(doc: dict) -> str:
    names = doc["layers"]
    out = ["| FIFO | ptr queue | " + " | ".join(names) + " | min |",
           "|---|---|" + "---|" * (len(names) + 1)]
    for r in doc["rows"]:
        label = f" ({r['variant']})" if r["variant"] else ""
        cells = [f"{r['efficiency'][n]:.3f}" for n in names]
        out.append(f"| {r['fifo_depth']} | {r['ptr_queue_depth']}{label} | " + " | ".join(cells)
                   + f" | {r['min_efficiency']:.3f} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fifo", default="8,16,32", help="activation-FIFO depths (default 8,16,32)")
    p.add_argument("--queue", default="4,8,16,32", help="pointer-queue depths (default 4,8,16,32)")
    p.add_argument("--pes", type=int, default=64)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", help="comma-separated Table III names (default all nine)")
    p.add_argument("--json", type=Path,
                   default=Path(__file__).resolve().parent / "out" / "variant_matrix.json")
    a = p.parse_args(argv)
    try:
        # every point and the output checked before the first point runs
        fifos = parse_int_list(a.fifo, "--fifo")
        queues = parse_int_list(a.queue, "--queue")
        for opt, text, values, field, what in (
                ("--fifo", a.fifo, fifos, "fifo_depth", "activation-FIFO entries"),
                ("--queue", a.queue, queues, "ptr_queue_depth", "pointer-queue entries")):
            if not values:
                raise EieError(f"{opt} {text!r} names no depth; give one or more, e.g. 8,16")
            for v in values:
                check_int(opt, v, *config_range(field), what)
        outputs.Plan().file(a.json, "--json", create_parents=True)
        doc = matrix(fifos, queues, n_pe=a.pes, scale=a.scale, seed=a.seed, layers=a.layers)
    except EieError as exc:
        print(f"variant_matrix: error: {exc}", file=sys.stderr)
        return 2
    text = markdown(doc)
    print(text)
    from eie.common.atomic import atomic_file

    a.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(a.json) as f:
        json.dump(dict(doc, markdown=text), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
