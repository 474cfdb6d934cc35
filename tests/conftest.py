"""What the tests share: the CLI harnesses, the Amaranth-simulator helper, the build cache.

Fixtures (ask for them by name in a test's arguments):

* ``cli(argv)`` -- runs ``eie.app.cli.main`` in this process on ``argv`` (paths and numbers are
  turned into strings) and returns a :class:`CliResult` ``(code, out, err)``; an ``argparse``
  error (``SystemExit``) gives its exit code like any other failure.
* ``console(argv)`` -- the same through the installed console script (``eie``, or
  ``python -m eie.app.cli``) in a child process: for the tests of the script itself.
* ``simulate(dut, *testbenches, background=(), period=1e-8, vcd=None)`` -- runs testbenches on
  ``dut`` in the Amaranth simulator (a clock of ``period`` seconds on the ``sync`` domain when
  the design has one); with ``EIE_VCD=1`` in the environment it writes ``<vcd>.vcd``.
* ``build_cache`` -- the one build cache of the session (a ``Path``).
* ``bnn_build_dir(*key)`` -- a context manager giving a BNN simulator build directory in that
  cache, one per key, held under a file lock while in use.
* ``activation_files(m, n, inputs, addr=, latency=, bank=None, into=None)`` -- a model of the
  EIE's activation files (memories read through a register pipeline) for the LNZD and CCU
  tests; with ``into`` connected to a reader's port as the PEs do, round slots included.
* ``rtl_designs`` -- the EIE designs the RTL tests share (``rtl_designs.config(n_pe, fifo)``),
  so that the cache holds one build per configuration, not one per test.
* ``small_eie_image(n_pe=3, seed=0)`` -- writes the small 14-11-6 EIE image of the CLI tests
  into the test's ``tmp_path`` and returns its directory.

The build cache: every simulator build of the session goes to one directory, the one
``eie.sim.eie_run.cache_dir()`` names (``$EIE_BUILD_DIR``, else ``$XDG_CACHE_HOME/eie``, else
``~/.cache/eie``). It is pinned in ``EIE_BUILD_DIR`` at start-up, so the xdist workers and every
child process (the CLI, the cocotb runners) agree on it. EIE builds are keyed by their Verilog
and locked by ``eie.sim.eie_run``; BNN builds (``eie.sim.bnn_run.run_rtl`` takes a plain
directory) get one directory per design from ``bnn_build_dir``. The cache outlives the session:
a second ``make test`` builds nothing.

Markers (``pyproject.toml``): ``rtl`` on every test that runs Verilator or Icarus, or a whole
core in the Amaranth simulator; ``slow`` on bitstream builds and long matrices (``make test``
leaves them out). ``tests/test_markers.py`` checks that the tests carry them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import pytest


# ----------------------------------------------------------------------------- build cache

def pytest_configure(config) -> None:
    from eie.sim.eie_run import cache_dir

    os.environ["EIE_BUILD_DIR"] = str(cache_dir())


@pytest.fixture(scope="session")
def build_cache() -> Path:
    path = Path(os.environ["EIE_BUILD_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked_dir(root: Path, key: tuple) -> Iterator[Path]:
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{digest}.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield root / digest
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def bnn_build_dir(build_cache) -> Callable[..., contextlib.AbstractContextManager[Path]]:
    """``with bnn_build_dir(simulator, folds, ...) as d:`` -- the build directory of the BNN
    design that ``key`` names (anything with a stable ``repr``), locked against other workers
    and sessions while the block runs (``run_rtl`` rebuilds a directory whose Verilog changed)."""
    return lambda *key: _locked_dir(build_cache / "bnn_tests", key)


# ----------------------------------------------------------------------------- the CLI

class CliResult(NamedTuple):
    code: int
    out: str
    err: str

    def assert_clean_error(self, message: str) -> None:
        """Exit code 2 and one line on stderr, ``eie: error: ...``, that contains ``message``."""
        assert self.code == 2, self
        assert self.err.startswith("eie: error: ") and message in self.err, self.err
        assert len(self.err.strip().splitlines()) == 1


BENCH = Path(__file__).resolve().parent.parent / "bench"


def load_bench_module(name: str):
    """``bench/<name>.py`` as a module (``bench/`` is not a package: loaded from its path once,
    and registered in ``sys.modules``, where its dataclasses look their module up)."""
    import importlib.util

    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def bench_module() -> Callable[[str], object]:
    """:func:`load_bench_module`: a test's way to a script of ``bench/``."""
    return load_bench_module


@pytest.fixture
def cli(capsys) -> Callable[[Sequence], CliResult]:
    from eie.app.cli import main

    def run(argv: Sequence) -> CliResult:
        capsys.readouterr()                     # what earlier steps printed is not ours
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:               # argparse: usage errors exit 2
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def console_argv() -> list[str]:
    exe = Path(sys.executable).parent / "eie"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "eie.app.cli"]


@pytest.fixture
def console() -> Callable[[Sequence], CliResult]:
    def run(argv: Sequence, timeout: float = 600) -> CliResult:
        r = subprocess.run(console_argv() + [str(a) for a in argv], capture_output=True,
                           text=True, timeout=timeout)
        return CliResult(r.returncode, r.stdout, r.stderr)

    return run


# ----------------------------------------------------------------------------- Amaranth simulator

def simulate(dut, *testbenches, background: Sequence = (), period: float | None = 1e-8,
             vcd: str | None = None) -> None:
    from amaranth.sim import Simulator

    sim = Simulator(dut)
    if period is not None:
        sim.add_clock(period, if_exists=True)      # a purely combinational design has none
    for bench in testbenches:
        sim.add_testbench(bench)
    for bench in background:
        sim.add_testbench(bench, background=True)
    if os.environ.get("EIE_VCD") == "1":
        with sim.write_vcd(f"{vcd or 'unit'}.vcd"):
            sim.run()
    else:
        sim.run()


@pytest.fixture(name="simulate")
def simulate_fixture() -> Callable[..., None]:
    return simulate


# ----------------------------------------------------------------------------- EIE models

def activation_files(m, n: int, inputs: Sequence, *, addr, latency: int, bank=None,
                     stale: int = 0x5A5A, into=None) -> list:
    """The PE array's activation files as the LNZD leaves see them, added to module ``m``: per
    PE ``k`` a memory per bank ``b`` holding ``inputs[b]`` (a layer input: element ``j`` in PE
    ``j % n`` at address ``j // n``; every other address ``stale``), read at ``addr``, bank
    ``bank`` (a signal; bank 0 when None), through ``latency`` registers that advance in every
    cycle (as the PE's accumulator file reads them). Returns the ``n`` 16-bit read values;
    with ``into`` (a reader's :class:`~eie.hw.eie.signatures.ActRead` port) they are also
    connected to it as the PEs connect them (:func:`lane_reads`)."""
    from amaranth.hdl import Mux, Signal
    from amaranth.lib.memory import Memory

    span = 1 << len(addr)                  # every address addr can show
    out = []
    for k in range(n):
        reads = []
        for b, x in enumerate(inputs):
            vals = [int(x[t * n + k]) if t * n + k < len(x) else stale for t in range(span)]
            mem = Memory(shape=16, depth=span, init=[v & 0xFFFF for v in vals])
            m.submodules[f"act{k}_{b}"] = mem
            rp = mem.read_port(domain="comb")
            m.d.comb += rp.addr.eq(addr)
            reads.append(rp.data)
        stage = reads[0] if bank is None else Mux(bank, reads[1], reads[0])
        for i in range(latency):
            reg = Signal(16, name=f"pipe{k}_{i}")
            m.d.sync += reg.eq(stage)
            stage = reg
        out.append(stage)
    if into is not None:
        lane_reads(m, into, out)
    return out


def lane_reads(m, rd, reads) -> None:
    """Connect ``reads`` (the PEs' activation reads, :func:`activation_files`) to the reader's
    :class:`~eie.hw.eie.signatures.ActRead` port ``rd`` as the PEs do: ``data`` and its ``nz``
    flag per lane, and, if ``rd`` has round slots, every lane's
    :class:`~eie.hw.eie.round_slots.RoundSlots` (the PE's own block) between them."""
    from eie.hw.eie.round_slots import RoundSlots

    m.d.comb += [rd.data[k].eq(r) for k, r in enumerate(reads)]
    m.d.comb += [rd.nz[k].eq(r != 0) for k, r in enumerate(reads)]
    if "held" in rd.signature.members:
        for k, r in enumerate(reads):
            slots = RoundSlots(len(rd.scan))
            m.submodules[f"round_slots{k}"] = slots
            m.d.comb += [slots.data.eq(r), slots.we.eq(rd.slot_we), slots.scan.eq(rd.scan),
                         rd.held[k].eq(slots.held)]


@pytest.fixture(name="activation_files")
def activation_files_fixture() -> Callable[..., list]:
    return activation_files


# ----------------------------------------------------------------------------- shared designs

class RtlDesigns:
    """The EIE designs the RTL tests share: one per (PE count, FIFO depth), each built once in
    the session's cache and used by every test that runs on that configuration (the matrix,
    the cycle-model comparison, the acceptance run, the backdoor load). A design holds every
    network of up to ``max_layers`` layers no wider than ``max_dim``: a column of a PE has at
    most as many entries as the PE has rows (padding included), so
    ``max_layers * max_dim * ceil(max_dim / N)`` entries plus word alignment always fit."""

    max_dim = 48            # widest layer of the test networks
    max_layers = 3

    @classmethod
    def config(cls, n_pe: int, fifo_depth: int):
        from eie.hw.eie.config import EIEConfig

        rows = -(-cls.max_dim // n_pe)
        return EIEConfig(n_pe=n_pe, fifo_depth=fifo_depth,
                         ptr_depth=cls.max_layers * (cls.max_dim + 1),
                         spmat_depth=-(-cls.max_layers * (cls.max_dim * rows + 8) // 8),
                         act_depth=rows, acc_depth=rows, bias_depth=cls.max_layers * rows,
                         max_layers=cls.max_layers)


@pytest.fixture(scope="session")
def rtl_designs() -> type[RtlDesigns]:
    return RtlDesigns


# ----------------------------------------------------------------------------- EIE images

@pytest.fixture
def small_eie_image(tmp_path) -> Callable[..., Path]:
    """The 14-11-6 EIE image (two layers, biases, ReLU on the first) of the CLI tests."""
    import numpy as np

    from eie.sw.encode import QuantLayer, build_image
    from eie.sw.image import write_image

    def make(n_pe: int = 3, seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        sizes = [14, 11, 6]
        layers = []
        for i in range(2):
            codes = (rng.integers(1, 16, (sizes[i + 1], sizes[i]))
                     * (rng.random((sizes[i + 1], sizes[i])) < 0.5)).astype(np.uint8)
            cb = np.concatenate([[0], rng.integers(-300, 301, 15)]).astype(np.int16)
            layers.append(QuantLayer(codes=codes, codebook=cb, w_frac=7,
                                     bias=rng.integers(-500, 501, sizes[i + 1]).astype(np.int16),
                                     relu=i == 0))
        write_image(build_image(layers, n_pe), tmp_path / "img")
        return tmp_path / "img"

    return make
