"""The house's layers (issue 28): the core names no study, no lower layer
imports the engine, and the parts import each other without a circle. Read
from the source (every import, lazy ones inside functions included)."""

import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "platform", "reconlab")
TOP = ("studies", "sweep", "cli", "dashboards")  # may import the engine; only studies/ may import a study


def modules() -> dict[str, str]:
    """module name -> path, for every module of the package."""
    out = {}
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), os.path.dirname(PKG))[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = os.path.join(d, f)
    return out


def imports(path: str, name: str) -> set[str]:
    """Every reconlab module ``path`` imports, at any depth of the file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                pkg = name.split(".")[:len(name.split(".")) - node.level + (path.endswith("__init__.py"))]
                base = ".".join(pkg + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m == "reconlab" or m.startswith("reconlab.")}


def part(module: str) -> str:
    """The part of the house a module belongs to: a study's folder, a
    subpackage, or a top-level module."""
    bits = module.split(".")
    if bits[1:2] == ["studies"] and len(bits) > 2:
        return ".".join(bits[:3])
    return ".".join(bits[:2])


@pytest.fixture(scope="module")
def graph():
    mods = modules()
    return {m: {i for i in imports(p, m) if i in mods} for m, p in mods.items()}


def test_the_scan_sees_the_imports(graph):
    """The scan is not vacuous: it sees the package, lazy imports included."""
    assert len(graph) > 60
    assert "reconlab.sweep.runner" in graph["reconlab.sweep.study"]  # imported inside a function
    assert "reconlab.studies.ct.trial" in graph["reconlab.studies.ct.study"]


def test_no_module_outside_studies_imports_a_study(graph):
    bad = [(m, i) for m, deps in graph.items() for i in deps
           if i.startswith("reconlab.studies.") and not m.startswith("reconlab.studies")]
    assert not bad, bad


def test_no_lower_layer_imports_the_engine(graph):
    bad = [(m, i) for m, deps in graph.items() for i in deps
           if i.startswith("reconlab.sweep") and m.split(".")[1] not in TOP]
    assert not bad, bad


def test_the_parts_of_the_house_have_no_circle(graph):
    """Between parts (subpackages, study folders, top-level modules) the
    imports form no cycle."""
    parts: dict[str, set[str]] = {}
    for m, deps in graph.items():
        parts.setdefault(part(m), set()).update(part(d) for d in deps if part(d) != part(m))
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(p):
        state[p] = 1
        path.append(p)
        for q in sorted(parts.get(p, ())):
            if state.get(q) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(q):] + [q]))
            if q not in state:
                visit(q)
        path.pop()
        state[p] = 2

    for p in sorted(parts):
        if p not in state:
            visit(p)
