"""Where nextpnr's router2 finds the design congested: its heatmaps summed per block and signal.

nextpnr-ecp5 ``--router router2 --router2-heatmap PREFIX`` writes, every routing iteration,
``PREFIX_congestion_by_net_<iteration>.csv`` (one line per net: the net's name, the overused
wires it uses). A net's name is its hierarchical path in the flattened netlist followed by
Yosys/nextpnr suffixes (``core.pe1.arith.mul_w_TRELLIS_FF_Q_10_DI_LUT4_Z_D[3]``); this script
keeps the block path (PE indices folded: ``pe*.arith``) and the signal's own name (``mul_w``),
and prints both tables for one iteration (default: the last one written).

    python bench/eie_fmax.py --pes 16 --device 85k --router router2 \\
        --nextpnr-arg=--router2-heatmap=heat --keep build/fmax16
    python bench/congestion.py build/fmax16/heat            # the last iteration
    python bench/congestion.py build/fmax16/heat --iteration 20 --top 15
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import Counter
from pathlib import Path

#: where a cell or net suffix added by synthesis or packing starts in a net's last component
_SUFFIX = re.compile(r"(_(TRELLIS|LUT4|CCU2C|PFUMX|L6MUX21|DP16KD|DPR16X4|MULT18X18D)|\$|\[).*")
#: replicated instances: ``pe12`` -> ``pe*``
_INDEX = re.compile(r"^([a-z_]+?)\d+$")


def split_net(name: str) -> tuple[str, str]:
    """``(block, signal)`` of a net name: the block path with indices folded, the signal
    without synthesis suffixes (``"(top)"`` for nets outside any instance)."""
    parts = name.split(".")
    if parts and parts[0] == "core":
        parts = parts[1:]
    block = ".".join(_INDEX.sub(r"\1*", p) for p in parts[:-1]) or "(top)"
    signal = _SUFFIX.sub("", parts[-1]) or parts[-1]
    return block, signal


def heatmaps(prefix: Path) -> dict[int, Path]:
    """The by-net congestion files written under ``prefix``, by iteration."""
    found = {}
    for path in prefix.parent.glob(prefix.name + "_congestion_by_net_*.csv"):
        m = re.search(r"_(\d+)\.csv$", path.name)
        if m:
            found[int(m.group(1))] = path
    return found


def summarize(path: Path) -> tuple[Counter, Counter, int]:
    """Overused wires per block and per ``block.signal``, and their total, of one heatmap."""
    blocks, signals, total = Counter(), Counter(), 0
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 2 or not row[-1].strip().isdigit():
                continue
            count = int(row[-1])
            block, signal = split_net(",".join(row[:-1]))
            blocks[block] += count
            signals[f"{block}.{signal}"] += count
            total += count
    return blocks, signals, total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prefix", type=Path, help="the --router2-heatmap prefix (with its folder)")
    ap.add_argument("--iteration", type=int, help="router2 iteration (default: the last written)")
    ap.add_argument("--top", type=int, default=10, help="rows per table (default 10)")
    a = ap.parse_args(argv)
    if a.top < 1:
        ap.error(f"--top {a.top}: give at least 1 row per table")
    found = heatmaps(a.prefix)
    if not found:
        print(f"error: no {a.prefix.name}_congestion_by_net_<iteration>.csv in "
              f"{a.prefix.parent}; run nextpnr-ecp5 with --router router2 "
              f"--router2-heatmap {a.prefix.name}", file=sys.stderr)
        return 2
    it = a.iteration if a.iteration is not None else max(found)
    if it not in found:
        print(f"error: iteration {it} has no heatmap; written: {min(found)}..{max(found)}",
              file=sys.stderr)
        return 2
    blocks, signals, total = summarize(found[it])
    print(f"router2 iteration {it}: {total} overused wire uses ({found[it].name})")
    for title, table in (("block", blocks), ("signal", signals)):
        print(f"\n{title:<48} {'overused':>9} {'share':>6}")
        for key, count in table.most_common(a.top):
            print(f"{key:<48} {count:9d} {count / max(total, 1):6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
