"""The manifests package's public surface: ``__all__`` is exactly what it offers and what others use."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from reconciler import manifests

ROOT = Path(__file__).parents[2]
# ``manifests.X`` read through the package (not ``self.manifests.X``, another object's attribute).
_USE = re.compile(r"(?<![\w.])manifests\.([A-Za-z_]\w*)")


def test_all_names_exactly_the_public_names() -> None:
    public = {
        name for name, value in vars(manifests).items() if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert sorted(manifests.__all__) == sorted(public)
    assert len(set(manifests.__all__)) == len(manifests.__all__)
    assert all(not name.startswith("_") for name in manifests.__all__)


def test_star_import_gives_every_name_of_all() -> None:
    namespace: dict[str, object] = {}
    exec("from reconciler.manifests import *", namespace)
    assert sorted(name for name in namespace if name != "__builtins__") == sorted(manifests.__all__)
    for name in manifests.__all__:
        assert namespace[name] is getattr(importlib.import_module("reconciler.manifests"), name)


def test_every_name_the_project_uses_is_in_all() -> None:
    used: dict[str, str] = {}
    for folder in ("reconciler", "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "manifests" in path.relative_to(ROOT).parts[:2] or path == Path(__file__):
                continue
            for match in _USE.finditer(path.read_text(encoding="utf-8")):
                used.setdefault(match.group(1), str(path.relative_to(ROOT)))
    assert used, "the scan found no use of the package at all"
    outside = {name: where for name, where in used.items() if name not in manifests.__all__}
    assert outside == {}
