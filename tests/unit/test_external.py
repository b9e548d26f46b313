"""``external: true`` on a network attachment or a volume mount: another stack's object (or one
made outside reconciler) is used, never created, changed or removed by the stack that says so;
a missing one is an error naming it (memory engine)."""

from __future__ import annotations

import pytest

from reconciler import errors, manifests, operations, planning
from tests.unit.helpers import IMAGE, new_engine

PROXY = f"""\
apiVersion: reconciler/v1
kind: Network
metadata: {{name: edge, stack: proxy}}
---
apiVersion: reconciler/v1
kind: Volume
metadata: {{name: certs, stack: proxy}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: proxy, stack: proxy}}
spec: {{image: {IMAGE}, networks: [{{name: edge}}], mounts: [{{type: volume, source: certs, target: /certs}}]}}
"""

APP = f"""\
apiVersion: reconciler/v1
kind: Container
metadata: {{name: app, stack: app}}
spec:
  image: {IMAGE}
  networks: [{{name: edge, external: true, aliases: [api]}}]
  mounts: [{{type: volume, source: certs, target: /certs, readOnly: true, external: true}}]
"""


def apply(engine: object, text: str, file: str) -> operations.Applied:
    desired = manifests.load_sources([(file, text)])
    return operations.apply_desired(engine, desired, planning.Options(), parallelism=2)  # type: ignore[arg-type]


def test_another_stacks_network_and_volume_are_used_never_owned() -> None:
    engine = new_engine()
    assert apply(engine, PROXY, "proxy.yaml").outcome.ok
    applied = apply(engine, APP, "app.yaml")
    assert applied.outcome.ok
    assert [(c.kind, c.name) for c in applied.plan.changes] == [("Container", "app")], "no step for edge or certs"
    assert engine.observe().networks["edge"].stack == "proxy"
    # Deleting the app stack leaves the proxy's network and volume alone.
    operations.delete_stacks(engine, ["app"], prune_volumes=True, parallelism=2)
    actual = engine.observe()
    assert "edge" in actual.networks and "certs" in actual.volumes and "app" not in actual.containers


def test_a_missing_external_object_is_an_error_naming_it() -> None:
    engine = new_engine()
    applied = apply(engine, APP, "app.yaml")
    assert not applied.outcome.ok
    (failed,) = [r for r in applied.outcome.results if r.status == "failed"]
    assert failed.error is not None and "external network edge not found" in failed.error
    assert "app" not in engine.observe().containers


def test_an_undeclared_network_without_external_points_at_it() -> None:
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load_sources([("app.yaml", APP.replace("external: true, aliases", "aliases"))])
    assert "mark the attachment external: true" in str(caught.value)
