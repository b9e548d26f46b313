"""Issue 12's last gaps: names as compose writes them (``<project>_<name>``), env files
interpolated, ``include`` with ``project_directory``/``env_file``, a replicated service named by
``network_mode: service:x``/``volumes_from``, and anonymous volumes."""

from __future__ import annotations

from pathlib import Path

from reconciler import manifests
from tests.unit.compose_helpers import convert, spec, write


def test_a_replica_named_by_volumes_from_or_network_mode_is_declared() -> None:
    """The manifests' own advice ("name one, e.g. web-1") must be accepted."""
    text = """\
apiVersion: reconciler/v1
kind: Container
metadata: {name: web}
spec: {image: busybox, replicas: 2}
---
apiVersion: reconciler/v1
kind: Container
metadata: {name: side}
spec: {image: busybox, networkMode: "container:web-1", volumesFrom: [web-2], ipc: "container:web-1"}
"""
    desired = manifests.load_sources([("m.yaml", text)])
    side = desired.containers["side"]
    assert side.spec.network_mode == "container:web-1"
    assert side.spec.volumes_from == ["web-2"]
    assert sorted(desired.containers) == ["side", "web-1", "web-2"]


def test_service_modes_and_volumes_from_name_the_first_replica(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p",
        "compose.yaml",
        """
        services:
          web: {image: busybox, deploy: {replicas: 3}}
          side: {image: busybox, network_mode: "service:web", volumes_from: [web], ipc: "service:web"}
        """,
    )
    side = spec(convert(path), "p-side-1")
    assert side["networkMode"] == "container:p-web-1"
    assert side["ipc"] == "container:p-web-1"
    assert side["volumesFrom"] == ["p-web-1"]
