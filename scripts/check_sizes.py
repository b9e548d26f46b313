"""Size check run by CI: no function over 60 lines and no class over 400 lines in ``reconciler/``.

A function or class may be longer only when the line just above its ``def``/``class`` (or above its
first decorator) is a comment starting ``# size:`` that says why. Lengths count every line from
the first decorator to the last line of the body, docstring included.

    python scripts/check_sizes.py [PATH...]     (default: reconciler/)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_FUNCTION = 60
MAX_CLASS = 400


def _excused(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> bool:
    first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
    above = lines[first - 2].strip() if first >= 2 else ""
    return above.startswith("# size:")


def check(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    problems = []
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            limit, what = MAX_FUNCTION, "function"
        elif isinstance(node, ast.ClassDef):
            limit, what = MAX_CLASS, "class"
        else:
            continue
        first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
        length = (node.end_lineno or node.lineno) - first + 1
        if length > limit and not _excused(lines, node):
            problems.append(f"{path}:{node.lineno}: {what} {node.name} is {length} lines (limit {limit})")
    return problems


def main(argv: list[str]) -> int:
    roots = [Path(arg) for arg in argv] or [Path("reconciler")]
    files = sorted(p for root in roots for p in ([root] if root.is_file() else root.rglob("*.py")))
    problems = [problem for file in files for problem in check(file)]
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} over the size limits; shorten them or say why in a '# size:' comment above")
        return 1
    print(f"sizes ok: {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
