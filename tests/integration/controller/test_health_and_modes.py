"""Health checks through docker exec, dependsOn gating, onUnhealthy, --once and the daemon alias."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from tests.integration.controller.conftest import ENTRY, Daemon
from tests.integration.controller.test_watch import manifest, named, state, write_atomically
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


def test_depends_on_healthy_waits_for_the_probe_then_starts_the_dependent(
    daemon: Callable[..., Daemon], client: docker.DockerClient, image: str, prefix: str
) -> None:
    ctl = daemon()
    check = "healthcheck: {test: [CMD-SHELL, 'test -e /tmp/ready'], interval: 300ms, timeout: 2s, retries: 1}"
    db = manifest(f"{prefix}-db", image, extra=check)
    web = manifest(f"{prefix}-web", image, extra=f"dependsOn: [{{name: {prefix}-db, condition: healthy}}]")
    write_atomically(ctl.folder / f"{prefix}-app.yaml", db + "---\n" + web)
    eventually(lambda: (state(client, f"{prefix}-db") or ("",))[0] == "running", what="db running")
    eventually(lambda: (ctl.row(f"{prefix}-db") or {}).get("health") == "unhealthy", timeout=20, what="db unhealthy")
    assert state(client, f"{prefix}-web") is None, "web waits for a healthy db"
    row = ctl.row(f"{prefix}-web")
    assert row is not None and row["state"] == "absent" and "healthy" in row["waiting"]

    client.api.exec_start(client.api.exec_create(f"{prefix}-db", ["touch", "/tmp/ready"])["Id"])
    eventually(lambda: (state(client, f"{prefix}-web") or ("",))[0] == "running", timeout=20, what="web started")
    assert (ctl.row(f"{prefix}-db") or {}).get("health") == "healthy"


def test_on_unhealthy_restarts_the_container(
    daemon: Callable[..., Daemon], client: docker.DockerClient, image: str, prefix: str
) -> None:
    ctl = daemon()
    name = f"{prefix}-sick"
    extra = (
        "healthcheck: {test: [CMD, 'false'], interval: 300ms, timeout: 2s, retries: 2}\n"
        "restart: {policy: always, onUnhealthy: true, backoff: {initial: 200ms}}"
    )
    write_atomically(ctl.folder / f"{name}.yaml", manifest(name, image, extra=extra))
    eventually(lambda: [e for e in ctl.events("restart") if e["name"] == name and "unhealthy" in e["message"]],
               timeout=30, what="a restart because unhealthy")  # fmt: skip
    assert [e for e in ctl.events("health") if e["name"] == name and e["message"].startswith("unhealthy")]


def test_once_converges_and_exits_and_daemon_manifests_is_an_alias(
    client: docker.DockerClient, image: str, prefix: str, tmp_path: Path, dockerd: None
) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    write_atomically(folder / f"{prefix}-one.yaml", manifest(f"{prefix}-one", image))
    (folder / f"{prefix}-broken.yaml").write_text("kind: [\n")
    base = [sys.executable, "-m", ENTRY, "--engine", "docker", "--root", str(tmp_path / "root")]
    run = subprocess.run([*base, "watch", str(folder), "--once"], check=False, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 1, "a file that does not parse makes --once fail"
    assert f"{prefix}-broken.yaml:2:1: YAML syntax error" in run.stderr
    assert named(client, prefix) == [f"{prefix}-one"]
    (folder / f"{prefix}-broken.yaml").unlink()
    run = subprocess.run([*base, "daemon", "--manifests", str(folder), "--once"], check=False,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (state(client, f"{prefix}-one") or ("",))[0] == "running"
