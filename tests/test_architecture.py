"""The layering of the packages, read from their source: import direction, no circles, NNI's private
API in ``nni_capsnas.nni_compat`` only, imports inside functions only where they buy start-up time.

Layers, each importing only those before it::

    hw_estimators  <-  nni_capsnas (plugin)  <-  search_spaces  <-  trials  <-  nni_capsnas.app
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hw_estimators", "nni_capsnas", "search_spaces", "trials")

#: Layer of a module -> top-level names (ours, or heavy third-party) it must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "hw_estimators": ("nni_capsnas", "search_spaces", "trials", "torch", "nni"),
    "nni_capsnas": ("search_spaces", "trials", "nni_capsnas.app"),
    "search_spaces": ("trials", "nni_capsnas.app"),
    "trials": ("nni_capsnas.app",),
    "nni_capsnas.app": (),
}

#: ``python -m nni_capsnas`` runs the command line (like the console script).
ENTRY_POINTS = ("nni_capsnas/__main__.py",)

#: Imports inside functions, each with the reason it is there (anything else is a violation).
LAZY_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {
    ("trials/datasets.py", "torchvision"): "optional 'vision' extra; 4 s to import",
    ("trials/datasets.py", "sklearn.datasets"): "1 s to import, only the digits loader needs it",
    ("hw_estimators/onnx_shapes.py", "onnxruntime.tools.symbolic_shape_infer"):
        "4 s to import (sympy); only graphs whose shapes ONNX's own inference cannot resolve need it",
}
#: Modules whose functions may import anything: the CLI's sub-commands import torch / NNI (2-7 s)
#: inside ``run`` so that ``--help`` and the light commands start at once.
LAZY_IMPORT_MODULES = ("nni_capsnas/app/commands/",)

#: NNI 3.0's private API that this project uses (only in nni_capsnas/nni_compat/): attributes read
#: as ``.name`` or ``"name"``, private modules, and NNI's database file.
NNI_PRIVATE_ATTRIBUTES = ("_arch_alpha", "_softmax", "_trial_command_params", "_stop_nni_manager",
                          "_checkpoint_directory", "_action", "_engine", "_channel", "_proc")
NNI_PRIVATE_PATTERNS = [rf"\.{name}\b|[\"']{name}[\"']" for name in NNI_PRIVATE_ATTRIBUTES] + [
    r"_expression_utils", r"nni\.sqlite"]


@dataclass(frozen=True)
class ImportEdge:
    source: str       # file, relative to the root
    module: str       # dotted module imported (absolute)
    in_function: bool
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, path: Path) -> str:
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    package = package[:len(package) - node.level + 1]
    return ".".join(package + ([node.module] if node.module else []))


def _edges(path: Path) -> list[ImportEdge]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(inner) for inner in ast.walk(node) if inner is not node)
    relative = str(path.relative_to(ROOT))
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, path)
            # "from package import module" imports the module
            modules = [f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base for alias in node.names]
        else:
            continue
        edges += [ImportEdge(relative, module, id(node) in inside, node.lineno) for module in modules]
    return edges


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _layer(module: str) -> str:
    return "nni_capsnas.app" if module == "nni_capsnas.app" or module.startswith("nni_capsnas.app.") \
        else module.split(".")[0]


SOURCES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
EDGES = [edge for path in SOURCES for edge in _edges(path)]


def _imports(module: str, target: str) -> bool:
    return module == target or module.startswith(target + ".")


def test_every_package_imports_only_the_layers_before_it() -> None:
    violations = [f"{edge.source}:{edge.line} imports {edge.module}" for edge in EDGES
                  for forbidden in FORBIDDEN[_layer(_module_name(ROOT / edge.source))]
                  if _imports(edge.module, forbidden) and edge.source not in ENTRY_POINTS]
    assert violations == []


def test_only_the_application_and_the_entry_point_import_the_application() -> None:
    outside = [f"{edge.source}:{edge.line}" for edge in EDGES if _imports(edge.module, "nni_capsnas.app")
               and not edge.source.startswith("nni_capsnas/app/") and edge.source not in ENTRY_POINTS]
    assert outside == []


def test_there_are_no_import_circles() -> None:
    graph: dict[str, set[str]] = {}
    for edge in EDGES:
        if edge.in_function or edge.module.split(".")[0] not in PACKAGES or not _is_module(edge.module):
            continue
        graph.setdefault(_module_name(ROOT / edge.source), set()).add(edge.module)
    circles = [cycle for cycle in _cycles(graph)]
    assert circles == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_imports_inside_functions_only_where_they_buy_start_up_time() -> None:
    lazy = [f"{edge.source}:{edge.line} imports {edge.module}" for edge in EDGES if edge.in_function
            and not edge.source.startswith(LAZY_IMPORT_MODULES)
            and not any(edge.source == source and _imports(edge.module, module)
                        for source, module in LAZY_IMPORTS_ALLOWED)]
    assert lazy == []


@pytest.mark.parametrize("pattern", NNI_PRIVATE_PATTERNS)
def test_nni_private_api_is_used_in_nni_compat_only(pattern: str) -> None:
    users = [str(path.relative_to(ROOT)) for path in SOURCES
             if re.search(pattern, path.read_text(encoding="utf-8")) and "nni_compat" not in path.parts]
    assert users == []


def test_the_walker_sees_violations() -> None:
    """The rules above are not vacuous: the walker finds imports of every kind it checks."""
    assert any(edge.in_function for edge in EDGES)
    assert any(_imports(edge.module, "nni_capsnas.app") for edge in EDGES)
    assert any(_imports(edge.module, "nni_capsnas") and edge.source.startswith("search_spaces/") for edge in EDGES)
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
