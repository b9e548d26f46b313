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
    for name in manifests.__all__:  # each is imported from its module on first use
        getattr(manifests, name)
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


def test_documents_round_trip_through_the_conversion_functions() -> None:
    spec = (
        manifests.load_text(
            "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: web}\n"
            "spec: {image: busybox, stopTimeout: 1m30s, resources: {memory: 64Mi}, ports: [{containerPort: 80}]}\n"
        )
        .containers["web"]
        .spec
    )
    document = manifests.to_document(spec)
    assert document["stopTimeout"] == 90.0 and document["resources"]["memory"] == 64 * 1024 * 1024
    assert manifests.to_document(spec, exclude_defaults=True, exclude={"ports"}) == {
        "image": "busybox",
        "stopTimeout": 90.0,
        "resources": {"memory": 64 * 1024 * 1024},
    }
    assert manifests.container_spec_from_document(document) == spec


def test_engines_add_mounts_without_touching_the_spec() -> None:
    spec = manifests.ContainerSpec(image="busybox", mounts=[manifests.TmpfsMount(type="tmpfs", target="/tmp")])
    extra = manifests.bind_mount("/var/lib/data", "/data")
    assert manifests.to_document(extra) == {
        "type": "bind",
        "source": "/var/lib/data",
        "target": "/data",
        "readOnly": False,
    }
    grown = manifests.with_mounts(spec, [extra])
    assert [mount.target for mount in grown.mounts] == ["/tmp", "/data"]
    assert [mount.target for mount in spec.mounts] == ["/tmp"]
