"""Health-gated replacement with rollback on the docker engine (issue 14, point 4): Docker runs the
health check itself and the rollout reads its verdict; a replacement that turns unhealthy is
removed and the old container keeps its id and keeps running (start-first: no fixed host port is
shared), a shared fixed host port makes the rollout stop-first (dockerd cannot publish one port
twice) and the old container is started again; the held-back spec shows in the next plan."""

from __future__ import annotations

import datetime
import socket
from pathlib import Path

import docker
import pytest

from reconciler import manifests, observed, plans
from reconciler.backends import docker as docker_backend
from reconciler.backends.docker import stack_networks
from tests.integration.docker import stacks

pytestmark = pytest.mark.integration


def _web(folder: Path, prefix: str, image: str, version: str, check: str, **spec: object) -> None:
    stacks.write(folder, "web", stacks.document("Container", f"{prefix}web", f"{prefix}s", {
        "image": image, "command": ["sleep", "3600"], "stopTimeout": "1s", "env": {"VERSION": version},
        "minReadySeconds": "500ms", "restart": "always",
        "healthcheck": {"test": ["CMD", check], "interval": "300ms", "timeout": "2s", "retries": 2},
        **spec,
    }))  # fmt: skip


@pytest.mark.parametrize("ports", [[], ["127.0.0.1:0:8080"]], ids=["start-first", "stop-first"])
def test_an_unhealthy_replacement_is_rolled_back_and_held_back(
    client: docker.DockerClient, image: str, prefix: str, tmp_path: Path, ports: list[str]
) -> None:
    # A root of the test's own: the rollback is remembered there, and no daemon answers for it.
    root, folder = ("--root", str(tmp_path / "root")), tmp_path / "folder"
    folder.mkdir()
    spec: dict[str, object] = {"ports": [port.replace(":0:", f":{_free_port()}:") for port in ports]} if ports else {}
    _web(folder, prefix, image, "v1", "true", **spec)
    first = stacks.reconcile(*root, "apply", "-f", str(folder), "--wait", "--timeout", "60")
    assert first.code == 0, first
    old_id = stacks.container_id(client, f"{prefix}web")

    _web(folder, prefix, image, "v2", "false", **spec)
    broken = stacks.reconcile(*root, "apply", "-f", str(folder))
    assert broken.code == 1, broken
    assert f"rollback of container {prefix}web: container {prefix}web.next turned unhealthy" in broken.stderr
    assert ("(started again)" if ports else "(kept running)") in broken.stderr
    assert stacks.container_id(client, f"{prefix}web") == old_id
    assert client.api.inspect_container(old_id)["State"]["Running"]
    assert stacks.container_id(client, f"{prefix}web.next") is None

    planned = stacks.reconcile(*root, "plan", "-f", str(folder))
    assert planned.code == 0, planned
    assert f"Note: container {prefix}web: held back: v1:sha256:" in planned.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_stopped_containers_stack_network_survives_another_stacks_prune(
    engine: docker_backend.DockerEngine,
    client: docker.DockerClient,
    image: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Docker counts only running containers as a network's users: the old container of a
    # stop-first rollout, stopped while its replacement is tried, must find its network again.
    monkeypatch.setattr(stack_networks, "PRUNE_AFTER", datetime.timedelta(0))  # every unused one is old enough
    old = _container(f"{prefix}old", f"{prefix}a", image)
    engine.create_container(old)
    engine.start_container(old.name)
    engine.stop_container(old.name, timeout=1)
    # Another stack's first container prunes the unused stack networks...
    engine.create_container(_container(f"{prefix}other", f"{prefix}b", image))
    assert client.api.inspect_network(f"{prefix}a_default")["Labels"] == {stack_networks.LABEL: f"{prefix}a"}
    # ...and the last container of a stack going does not take a network a stopped one names.
    staged = _container(f"{prefix}old.next", f"{prefix}a", image)
    engine.create_container(staged)
    engine.remove_container(staged.name)
    engine.start_container(old.name)
    assert client.api.inspect_container(old.name)["State"]["Running"]
    engine.remove_container(old.name)
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_network(f"{prefix}a_default")


def _container(name: str, stack: str, image: str) -> plans.ContainerRequest:
    spec = manifests.container_spec_from_document({"image": image, "command": ["sleep", "3600"], "stopTimeout": "1s"})
    return plans.ContainerRequest(name=name, spec=spec, env={}, labels={observed.LABEL_STACK: stack})
