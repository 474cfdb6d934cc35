"""The layering of docs/layout.md holds: every import of a project module points down, and no
two project modules import each other at module level (directly or through a chain).

The scan reads the source with :mod:`ast` (every ``import`` and ``from ... import``, at module
level or inside a function), so it needs no import of the modules themselves.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: folder -> import package, lowest layer first
PACKAGES = {"common": "eie.common", "hw": "eie.hw", "sw": "eie.sw", "sim": "eie.sim",
            "boards": "eie.boards", "app": "eie.app"}

#: which packages each one may import (besides itself); docs/layout.md draws the same picture
ALLOWED = {
    "common": set(),
    "hw": {"common"},
    "sw": {"common", "hw"},
    "sim": {"common", "hw", "sw"},
    "boards": {"common", "hw", "sw"},
    "app": {"common", "hw", "sw", "sim", "boards"},
}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, pkg in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = path
    return mods


MODULES = _modules()


def _targets(module: str, path: Path, node: ast.AST) -> list[str]:
    """The project modules an import statement names (a name imported from a package counts as
    the sub-module when there is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        if path.name != "__init__.py":
            parts = parts[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _imports() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(every import, module-level imports): module -> project modules it imports."""
    every, top = defaultdict(set), defaultdict(set)
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        body = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(module, path, node):
                if not target.startswith("eie."):
                    continue
                every[module].add(target)
                if id(node) in body:
                    top[module].add(target)
    return every, top


EVERY, TOP = _imports()


def _layer(module: str) -> str:
    pkg = ".".join(module.split(".")[:2])
    return next(folder for folder, p in PACKAGES.items() if p == pkg)


def test_the_scan_sees_the_project():
    # a scan that found nothing would pass everything below
    assert len(MODULES) > 80
    assert "eie.sw.golden" in EVERY["eie.sw.cycle_model"]
    assert "eie.hw.eie.memory_map" in TOP["eie.sw.cycle_model"]
    assert "eie.sim.eie_run" in EVERY["eie.app.cmd_rtl"]


def test_every_import_points_down():
    wrong = sorted(f"{m} imports {t}" for m, ts in EVERY.items() for t in ts
                   if _layer(t) != _layer(m) and _layer(t) not in ALLOWED[_layer(m)])
    assert not wrong, "imports against docs/layout.md's layering:\n" + "\n".join(wrong)


@pytest.mark.parametrize("layer", ["hw", "common"])
def test_gateware_and_common_import_no_library_above(layer):
    above = {"sw", "sim", "boards", "app"} | ({"hw"} if layer == "common" else set())
    wrong = sorted(f"{m} imports {t}" for m, ts in EVERY.items() if _layer(m) == layer
                   for t in ts if _layer(t) in above)
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return out


def test_no_module_level_import_cycle():
    assert not _cycles(TOP), f"module-level import cycles: {_cycles(TOP)}"


def test_the_cycle_check_can_fail():
    graph = {"eie.sw.encode": {"eie.sw.image"}, "eie.sw.image": {"eie.sw.encode"}}
    assert _cycles(graph) == [["eie.sw.encode", "eie.sw.image"]]


def test_pyproject_lists_every_package():
    text = (ROOT / "pyproject.toml").read_text()
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            assert f'"{module}"' in text, f"{module} is missing from pyproject.toml's packages"
