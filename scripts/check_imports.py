"""Import checks run by CI: no import cycle in ``reconciler``, and no private name used across modules.

import-linter's layer contracts (pyproject.toml) stop imports that go upwards, but modules of one
layer may still import each other; this check closes that gap. It reads the graph with grimp (the
library import-linter is built on), counting every import: module level, inside functions (the
CLI's lazy imports) and under ``TYPE_CHECKING``. A package counts as the module of its
``__init__``, so ``reconciler.controller`` importing ``reconciler.controller.queue`` is no cycle by
itself, but ``queue`` importing the package back is.

A name that starts with one underscore is private to its module: another module of the package
must neither import it (``from reconciler.x import _y``, which ruff's PLC2701 also reports) nor
reach it through the module (``x._y``), which no linter sees; the second half of this check walks
each module's syntax tree for such attribute reads on an imported ``reconciler`` module.

    python scripts/check_imports.py        exit 1 and print each cycle and each private use found
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _module_aliases(tree: ast.Module, modules: set[str], package: str) -> dict[str, str]:
    """Local names bound to a module of the package: ``from reconciler import plans`` → plans."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            base = node.module if node.level == 0 else ".".join([*package.split(".")[: 1 - node.level], node.module])
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in modules:
                    aliases[alias.asname] = alias.name
    return aliases


def private_uses(modules: set[str]) -> list[str]:
    """``module._name`` reads of another module's private names, as ``file:line: module._name``."""
    found: list[tuple[str, int, str]] = []
    for path in sorted(Path("reconciler").rglob("*.py")):
        name = ".".join(path.with_suffix("").parts).removesuffix(".__init__")
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        aliases = _module_aliases(tree, modules, package)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and aliases[node.value.id] != name
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append((str(path), node.lineno, f"{aliases[node.value.id]}.{node.attr}"))
    return [f"{file}:{line}: {what}" for file, line, what in sorted(found)]


def main() -> int:
    graph = grimp.build_graph("reconciler")
    edges = {
        module: {imported for imported in graph.find_modules_directly_imported_by(module) if imported in graph.modules}
        for module in graph.modules
    }
    cycles = _cycles(edges)
    for cycle in cycles:
        print("import cycle: " + " ↔ ".join(cycle))
    private = private_uses(set(graph.modules))
    for use in private:
        print(f"private name used across modules: {use}")
    if cycles or private:
        return 1
    print(f"imports ok: {len(edges)} modules, no cycles, no private names across modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
