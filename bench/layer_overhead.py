"""Where a real layer's cycles go: the bound, the busiest PE, and the fixed cost of a layer.

`python bench/layer_overhead.py [--networks lenet300,mlp1024] [--pes 16,64] [--variant deep]`

For the trained networks of `bench/real_layers.py` (same models, cache, test digits and
calibration; calibrated placement), per layer, averaged over the test digits, from the cycle
model (which equals the RTL's counters): the contract's bound, the busiest PE's work (the
ceiling placement leaves), and the layer's cycles split into `LSTART` + read-pipeline fill
(`START_CYCLES`), `BCAST` and `DRAIN`. "no fixed" is the efficiency the layer would reach if the
start and the shortest possible drain (the PE pipeline's depth: the drain of a layer whose last
broadcast finds every PE idle, asked of the cycle model) cost nothing: what placement alone can still win is the gap
between "efficiency" and "no fixed"; the rest is the fixed cost of a layer.

"over" is the layer's cycles minus its busiest PE's work on each digit (min / mean / max over
the digits): what the layer costs beyond the work of its busiest PE. "balanced" is the
efficiency the layer would reach if placement left no PE busier than the bound on any digit and
that overhead stayed: bound / (bound + over), the most any placement or pruning can give it on
this hardware. `--pruning columns` measures the load-balance-aware models of
`bench/real_layers.py --pruning columns` (pruned for each PE count).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_layers as R  # noqa: E402  (the trained networks and their data)

from eie.hw.eie.variants import VARIANTS  # noqa: E402
from eie.sw.compress import CompressConfig, compress_model  # noqa: E402
from eie.sw.cycle_model import START_CYCLES, predict_counters, predict_layer  # noqa: E402
from eie.sw.golden import golden_forward  # noqa: E402


def pipeline_drain(fifo_depth: int, queue: int) -> int:
    """DRAIN cycles of a layer whose last broadcast finds every PE idle: one input, one entry in
    one PE (the cycle model's own answer: the PE pipeline's depth behind the broadcast)."""
    return predict_layer(np.array([[1, 0]]), np.array([1]), 2, fifo_depth=fifo_depth,
                         ptr_queue_depth=queue).drain_cycles


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default="lenet300,mlp1024")
    ap.add_argument("--pes", default="16,64")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--variant", default="deep", choices=sorted(VARIANTS))
    ap.add_argument("--pruning", default="plain", choices=("plain", "columns"),
                    help="plain magnitude pruning (default), or load-balance-aware for each PE "
                         "count (bench/real_layers.py's models)")
    args = ap.parse_args(argv)
    networks, pe_counts = R.check_options(ap, args.networks, args.pes, args.samples, args.pruning,
                                          allowed=tuple(R.NETWORKS))
    fifo = VARIANTS[args.variant].fields["fifo_depth"]
    queue = VARIANTS[args.variant].fields["ptr_queue_depth"]
    data = R.load_mnist()
    xq = R.quantize(R.scale_pixels(data.x_test[:args.samples]), 8).astype(np.int16)
    calib = R.scale_pixels(data.x_train[:1000])
    cache = R._cache_dir(None)
    pipe = pipeline_drain(fifo, queue)
    print(f"cycle model, {args.variant} variant (FIFO {fifo}, pointer queue {queue}), calibrated "
          f"placement, {args.samples} test digits; per-sample means; fixed cost of a layer: "
          f"start {START_CYCLES} + the shortest drain {pipe} cycles; {args.pruning} pruning")
    print(f"{'network':9} {'N':>3} {'layer':>5} {'bound':>7} {'busiest':>8} {'cycles':>7} = "
          f"{'start':>5} + {'bcast':>6} + {'drain':>6}  {'efficiency':>10} {'no fixed':>9} "
          f"{'over (min/mean/max)':>19} {'balanced':>8}")
    models = {}         # (network, PEs pruned for): its float model, loaded once
    for name in networks:
        for n_pe in pe_counts:
            key = (name, n_pe if args.pruning == "columns" else None)
            if key not in models:
                models[key] = R.trained_model(
                    name, data, cache, log=lambda s: print(s, file=sys.stderr),
                    balance_pes=key[1])[0].float_model("real")
            fm = models[key]
            img = compress_model(fm, CompressConfig(n_pe=n_pe, balance=True,
                                                    calibration=calib)).image
            g = golden_forward(img, xq)
            inputs = [a.astype(np.int64) for a in g.layer_inputs]
            pred = predict_counters(img, xq, fifo_depth=fifo, ptr_queue_depth=queue,
                                    layer_inputs=inputs)
            for l in range(len(img.layers)):
                p = [s[l] for s in pred]
                cycles = np.array([q.cycles for q in p], float)
                bcast = np.array([q.bcast_cycles for q in p], float)
                drain = np.array([q.drain_cycles for q in p], float)
                bound = g.stats[l].bound.astype(float)
                busiest = np.maximum(g.stats[l].work_per_pe.max(axis=1), g.stats[l].nonzero_inputs)
                over = cycles - busiest
                print(f"{name:9} {n_pe:3d} {l:5d} {bound.mean():7.1f} {busiest.mean():8.1f} "
                      f"{cycles.mean():7.1f} = {START_CYCLES:5d} + {bcast.mean():6.1f} + "
                      f"{drain.mean():6.1f}  {bound.sum() / cycles.sum():10.4f} "
                      f"{bound.sum() / (cycles - START_CYCLES - pipe).sum():9.4f} "
                      f"{f'{over.min():.0f} / {over.mean():.2f} / {over.max():.0f}':>19} "
                      f"{bound.sum() / (bound + over).sum():8.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
