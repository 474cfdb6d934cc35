"""Write the bundled example model ``sw/data/example_mlp.npz`` (seeded, reproducible).

A 3-layer fully connected ReLU network 64 -> 48 -> 32 -> 10 with biases, He-initialised
(``W{l}`` of shape ``(n_out, n_in)``), small enough for tests and ``make demo``'s fallback, large
enough that pruning, weight sharing and interleaving over several PEs all do something.

    python bench/make_example_model.py [-o sw/data/example_mlp.npz] [--seed 2016]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from eie.sw.model_io import FloatLayer, save_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_options as check  # noqa: E402  (the option checks bench/ shares)

SIZES = (64, 48, 32, 10)


def make_model(seed: int = 2016, sizes: tuple[int, ...] = SIZES) -> list[FloatLayer]:
    rng = np.random.default_rng(seed)
    layers = []
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = (rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)).astype(np.float32)
        b = (0.05 * rng.standard_normal(n_out)).astype(np.float32)
        layers.append(FloatLayer(weight=w, bias=b, relu=l < len(sizes) - 2))
    return layers


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path,
                    default=Path(__file__).resolve().parent.parent / "sw" / "data" / "example_mlp.npz")
    ap.add_argument("--seed", type=int, default=2016)
    args = ap.parse_args(argv)
    if args.seed < 0:
        ap.error(f"--seed {args.seed}: give a seed >= 0")
    check.output_file(ap, "--output", args.output, create_parents=True)
    save_model(make_model(args.seed), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
