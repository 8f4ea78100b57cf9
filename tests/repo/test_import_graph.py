"""The program's layout: its modules import each other without a cycle, and none is too big.

The graph comes from the source (``ast``), not from running it: every ``import`` and
``from ... import`` of the program packages, at module level, under ``if TYPE_CHECKING``
and inside functions alike, so a cycle cannot hide behind a deferred import. Importing
``a.b.c`` first runs ``a/__init__.py`` and ``a/b/__init__.py``; those count as edges too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("components", "rke", "rke2", "scripts")
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300


def program_modules() -> dict[str, Path]:
    """Dotted module name -> file, for the program packages and the root modules
    (``__main__.py``, ``engines.py``)."""
    modules = {path.stem: path for path in sorted(ROOT.glob("*.py"))}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imported_names(module: str, path: Path, tree: ast.AST) -> Iterator[str]:
    """Every dotted name an import statement of ``module`` names, anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up from this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the program modules it imports (with the packages that import runs)."""

    def known(name: str) -> str | None:  # `a.b.Name` -> `a.b`, if that is a program module
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        for name in _imported_names(module, path, ast.parse(path.read_text())):
            target = known(name)
            if target is None or target == module:
                continue
            edges.add(target)
            parts = target.split(".")
            for i in range(1, len(parts)):  # its packages, unless already running (ours)
                parent = ".".join(parts[:i])
                if parent in modules and not module.startswith(parent + "."):
                    edges.add(parent)
        graph[module] = edges
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """A cycle held by a deferred, a TYPE_CHECKING or a package-level import is a cycle."""
    files = {
        "a/__init__.py": "from a.b import B\n",
        "a/b.py": "def f():\n    from c import C\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from d import D\n",
        "d.py": "from a.e import E\n",  # runs a/__init__.py first: back to a.b
        "a/e.py": "",
        "a/g.py": "from . import e\n",  # relative: a, then a.e
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = {"a": tmp_path / "a/__init__.py", "a.b": tmp_path / "a/b.py"}
    modules |= {n: tmp_path / f"{n.replace('.', '/')}.py" for n in ("c", "d", "a.e", "a.g")}
    graph = import_graph(modules)
    assert graph["d"] == {"a", "a.e"} and graph["a.g"] == {"a", "a.e"}
    assert cycles(graph) == [["a", "a.b", "c", "d"]]


def test_no_import_cycle_between_the_programs_modules() -> None:
    found = cycles(import_graph(program_modules()))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_module_over_500_lines_and_no_class_over_300() -> None:
    too_big = []
    for module, path in program_modules().items():
        text = path.read_text()
        if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
            too_big.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                if (span := node.end_lineno - node.lineno + 1) > MAX_CLASS_LINES:
                    too_big.append(f"{module}.{node.name}: class of {span} lines")
    assert not too_big, "\n".join(too_big)


def test_the_generic_layer_imports_no_engine() -> None:
    """``components`` reads an engine through its data (``components/engine.py``,
    ``EngineFacts``), and no engine imports another: only ``engines.py``, ``__main__.py``
    and the scripts import them (a third engine is one new folder)."""
    graph = import_graph(program_modules())
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.split(".")[0] in ("components", "rke", "rke2")
        for target in targets
        if target.split(".")[0] in ("rke", "rke2") and target.split(".")[0] != module.split(".")[0]
    )
    assert not wrong, "\n".join(wrong)
