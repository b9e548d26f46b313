"""Import-graph check run by CI: no module of ``reconciler`` takes part in an import cycle.

import-linter's layer contracts (pyproject.toml) stop imports that go upwards, but modules of one
layer may still import each other; this check closes that gap. It reads the graph with grimp (the
library import-linter is built on), counting every import: module level, inside functions (the
CLI's lazy imports) and under ``TYPE_CHECKING``. A package counts as the module of its
``__init__``, so ``reconciler.controller`` importing ``reconciler.controller.queue`` is no cycle by
itself, but ``queue`` importing the package back is.

    python scripts/check_imports.py        exit 1 and print each cycle found
"""

from __future__ import annotations

import sys

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


def main() -> int:
    graph = grimp.build_graph("reconciler")
    edges = {
        module: {imported for imported in graph.find_modules_directly_imported_by(module) if imported in graph.modules}
        for module in graph.modules
    }
    cycles = _cycles(edges)
    for cycle in cycles:
        print("import cycle: " + " ↔ ".join(cycle))
    if cycles:
        return 1
    print(f"imports ok: {len(edges)} modules, no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
