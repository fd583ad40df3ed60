"""The package's shape: no import circles, the core's layers, no Dagster in the core, no overlong module.

Every module of ``mmm_assets`` is parsed (not imported) with ``ast``; every import of ``mmm_assets.*`` counts,
function-level ones included, so a late import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import mmm_assets

PACKAGE = Path(mmm_assets.__file__).resolve().parent
#: Layers of ``mmm_assets.core``: a package imports only from its own layer or lower ones.
#: The core-level modules (errors, formatting, records, variables) are the lowest layer, shared by all.
LAYERS = {
    "errors": 0, "formatting": 0, "records": 0, "variables": 0,
    "config": 1,
    "data": 2, "stores": 2, "inference": 2, "synthetic": 2, "transforms": 2,
    "modelling": 3,
    "evaluation": 4,
    "decisions": 5,
    "presentation": 6,
}
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module that ``name`` (a module or a name inside one) is: the longest known prefix."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                if name == "mmm_assets" or name.startswith("mmm_assets."):
                    found = _resolve(name, modules)
                    if found and found != module:
                        targets.add(found)
        graph[module] = targets
    return graph


def _imports_module(path: Path, top: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == top]
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == top:
            found.append(node.module)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "core" else None


def test_no_import_cycle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_cycle_between_core_packages() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        if (own := _layer(module)) is not None:
            packages.setdefault(own, set()).update(t for t in map(_layer, targets) if t is not None and t != own)
    cycle = _cycle(packages)
    assert cycle is None, "cycle between core packages: " + " -> ".join(cycle)


def test_a_lower_core_package_never_imports_a_higher_one() -> None:
    assert set(filter(None, map(_layer, _modules()))) == set(LAYERS), "a core package without a layer in LAYERS"
    wrong = [
        f"{module} ({_layer(module)}) imports {target} ({_layer(target)})"
        for module, targets in sorted(_graph().items())
        if _layer(module) is not None
        for target in sorted(targets)
        if _layer(target) is not None and LAYERS[_layer(target)] > LAYERS[_layer(module)]
    ]
    assert wrong == []


def test_the_core_imports_no_dagster_and_nothing_outside_it() -> None:
    wrong = [
        f"{module}: {name}"
        for module, path in _modules().items()
        if _layer(module) is not None or module == "mmm_assets.core"
        for name in _imports_module(path, "dagster") + _imports_module(path, "dagster_mlflow")
    ]
    wrong += [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if module.startswith("mmm_assets.core")
        for target in targets
        if not target.startswith("mmm_assets.core")
    ]
    assert wrong == []


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        module: n for module, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"
