"""Every deliberately broken variant of every formal harness (the ``MUTANTS`` dicts of
``eie.hw.eie.formal``, ``eie.hw.bnn.formal`` and ``eie.boards.formal``) is killed: a test in
``tests/test_formal*.py`` builds that harness with that mutant and requires its proof to FAIL
(``_check(..., "FAIL")``), and the mutation table of docs/formal.md has its row naming that
test. A mutant added to a ``MUTANTS`` dict without such a test, or without its row, fails here.

The scan reads the test files with :mod:`ast` (no proof runs here; ``make formal`` and
``make test`` run the killing tests themselves).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from eie.boards import formal as boards_formal
from eie.hw.bnn import formal as bnn_formal
from eie.hw.eie import formal as eie_formal

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DOC = ROOT / "docs" / "formal.md"
HARNESS_MODULES = (eie_formal, bnn_formal, boards_formal)


def all_mutants() -> set[tuple[str, str]]:
    """``{(harness class, mutant)}`` over every ``MUTANTS`` dict."""
    return {(h, m) for mod in HARNESS_MODULES for h, ms in mod.MUTANTS.items() for m in ms}


def _name(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _strings(nodes) -> set[str]:
    return {n.value for node in nodes for n in ast.walk(node)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _expects_fail(func: ast.FunctionDef) -> bool:
    """The test requires a proof to fail: ``_check(result, "FAIL")`` (or ``status="FAIL"``)."""
    for n in ast.walk(func):
        if isinstance(n, ast.Call) and _name(n.func) == "_check":
            args = n.args[1:2] + [k.value for k in n.keywords if k.arg == "status"]
            if any(isinstance(a, ast.Constant) and a.value == "FAIL" for a in args):
                return True
    return False


def killers(source: str, mutants: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """The test functions of ``source`` that kill each of ``mutants``: a ``test_*`` function
    that requires a FAIL and builds harness ``H`` with ``mutant=`` the mutant's name, given as
    a string or as an argument whose ``parametrize`` values include it."""
    harnesses = {h for h, _ in mutants}
    found: dict[tuple[str, str], list[str]] = {}
    for func in ast.parse(source).body:
        if not (isinstance(func, ast.FunctionDef) and func.name.startswith("test_")
                and _expects_fail(func)):
            continue
        params = _strings(func.decorator_list)
        for n in ast.walk(func):
            if not (isinstance(n, ast.Call) and _name(n.func) in harnesses):
                continue
            for kw in n.keywords:
                if kw.arg != "mutant":
                    continue
                if isinstance(kw.value, ast.Constant):
                    names = {kw.value.value}
                elif isinstance(kw.value, ast.Name):
                    names = params
                else:
                    names = set()
                for m in names:
                    if (_name(n.func), m) in mutants:
                        found.setdefault((_name(n.func), m), []).append(func.name)
    return found


def _scan() -> dict[tuple[str, str], list[str]]:
    mutants = all_mutants()
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(TESTS.glob("test_formal*.py")):
        for key, tests in killers(path.read_text(), mutants).items():
            found.setdefault(key, []).extend(tests)
    return found


def test_every_harness_module_with_mutants_is_scanned():
    """A new harness module with its own ``MUTANTS`` joins :data:`HARNESS_MODULES`."""
    pattern = re.compile(r"^MUTANTS\s*=", re.M)
    defining = set()
    for sub in ("app", "boards", "common", "hw", "sim", "sw"):
        for path in (ROOT / sub).rglob("*.py"):
            if pattern.search(path.read_text()):
                defining.add(path.resolve())
    assert defining == {Path(m.__file__).resolve() for m in HARNESS_MODULES}
    assert len(all_mutants()) >= 15


def test_every_mutant_has_a_test_that_requires_its_proof_to_fail():
    found = _scan()
    missing = sorted(all_mutants() - found.keys())
    assert not missing, (f"mutants with no test that requires their proof to FAIL: {missing}; "
                         "add one to tests/test_formal*.py (and its row to docs/formal.md)")


def test_the_scan_finds_a_missing_mutant():
    """The scan itself: a mutant built only in a test that expects a PASS, or in a function
    that is not a test, is not killed; a literal and a parametrized one are."""
    mutants = {("H", "a"), ("H", "b"), ("H", "c"), ("H", "d")}
    source = '''
@pytest.mark.parametrize("mutant", ["b", "x"])
def test_b(mutant):
    _check(prove(H(mutant=mutant)), "FAIL")

def test_a():
    _check(prove(H(2, mutant="a")), status="FAIL")

def test_c_passes():
    _check(prove(H(mutant="c")))

def helper_d():
    _check(prove(H(mutant="d")), "FAIL")
'''
    assert killers(source, mutants) == {("H", "a"): ["test_a"], ("H", "b"): ["test_b"]}


def _table_rows() -> list[str]:
    text = DOC.read_text()
    start = text.index("## The mutation table")
    end = text.index("\n## ", start + 1)
    return [line for line in text[start:end].splitlines() if line.startswith("| ")]


def test_the_mutation_table_has_a_row_for_every_mutant():
    """docs/formal.md's table: a row per mutant, with its harness and a test that kills it."""
    rows = _table_rows()
    found = _scan()
    for (harness, mutant), tests in sorted(found.items()):
        mine = [r for r in rows if f"`{mutant}`" in r]
        assert len(mine) == 1, f"{harness} {mutant}: {len(mine)} rows in docs/formal.md"
        assert harness in mine[0], f"{mutant}: the row does not name {harness}"
        assert any(t in mine[0] for t in tests), f"{mutant}: the row names none of {tests}"
    # and the five named bugs are there
    for bug in ("LNZD skips a leaf", "bypass off by one cycle", "FIFO-full off by one",
                "threshold compare", "CRC check skipped"):
        assert any(bug in r for r in rows), bug


@pytest.mark.parametrize("module", HARNESS_MODULES, ids=lambda m: m.__name__)
def test_a_harness_refuses_an_unknown_mutant(module):
    """The names the tests pass are the names the harnesses know: a typo is an error, not the
    real design proved under a mutant's name. (Each harness checks ``mutant`` first, so the
    other arguments may be placeholders.)"""
    import inspect

    for harness in module.MUTANTS:
        cls = getattr(module, harness)
        required = [p for p in list(inspect.signature(cls).parameters.values())
                    if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
        with pytest.raises(ValueError, match="unknown mutant 'no_such_mutant'"):
            cls(*[None] * len(required), mutant="no_such_mutant")
