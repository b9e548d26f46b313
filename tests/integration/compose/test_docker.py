"""``docker compose up`` and ``reconcile --engine docker apply`` of one compose file: same containers.

The stack of :mod:`.stack` is brought up by compose v2 (against the suite's dockerd), inspected,
taken down (``down -v``), then applied by ``reconcile --engine docker`` and inspected again. Each
container's ``docker inspect`` must mean the same, field by field (:func:`meaning`), except the
ownership labels (compose's ``com.docker.compose.*``, ours ``reconciler.*``). Networks and volumes
have compose's names, ``<project>_<key>``, on both sides.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from tests.integration.compose import stack
from tests.support import cli, compose, names, polling, registry

pytestmark = pytest.mark.integration

OWNERSHIP = ("com.docker.compose.", "reconciler.")


def meaning(info: dict[str, Any]) -> dict[str, Any]:
    """What a container's ``docker inspect`` says it runs, in a form both creators can be compared in.

    Representation differences compared by meaning: mounts as inspect resolves them (compose sends
    HostConfig.Mounts, a creator may send Binds: the same mount either way), CPUs as NanoCpus or
    CpuQuota/CpuPeriod, a port bound on "" or 0.0.0.0; no StopTimeout is Docker's 10 s; the container's own name and short id among its
    aliases (compose adds the name, Docker the id: Docker's DNS answers both on every user network
    the container joins, alias or not).
    """
    config, host = info["Config"], info["HostConfig"]
    quota, period = host.get("CpuQuota") or 0, host.get("CpuPeriod") or 100000
    cpus = (host.get("NanoCpus") or 0) / 1e9 or quota / period
    networks = {name: sorted(set(settings.get("Aliases") or ()) - {info["Id"][:12], info["Name"].lstrip("/")})
                for name, settings in info["NetworkSettings"]["Networks"].items()}  # fmt: skip
    mounts = sorted((m["Type"], m["Name"] if m["Type"] == "volume" else m["Source"], m["Destination"], m["RW"])
                    for m in info.get("Mounts") or ())  # fmt: skip
    ports = {port: sorted((b.get("HostIp") or "0.0.0.0", b.get("HostPort") or "") for b in bindings or ())
             for port, bindings in (host.get("PortBindings") or {}).items()}  # fmt: skip
    restart = host.get("RestartPolicy") or {}
    return {
        "Image": config["Image"], "Cmd": config.get("Cmd"), "Entrypoint": config.get("Entrypoint"),
        "Env": sorted(config.get("Env") or ()), "ExposedPorts": sorted(config.get("ExposedPorts") or ()),
        "Healthcheck": {k: v for k, v in (config.get("Healthcheck") or {}).items() if v},
        "WorkingDir": config.get("WorkingDir"), "User": config.get("User"),
        "StopSignal": config.get("StopSignal"), "StopTimeout": config.get("StopTimeout") or 10,
        "Labels": {k: v for k, v in (config.get("Labels") or {}).items() if not k.startswith(OWNERSHIP)},
        "Mounts": mounts, "PortBindings": ports,
        "RestartPolicy": (restart.get("Name") or "no", restart.get("MaximumRetryCount") or 0),
        "Memory": host.get("Memory") or 0, "Cpus": cpus, "Networks": networks,
    }  # fmt: skip


def inspect_stack(client: docker.DockerClient, project: str) -> dict[str, dict[str, Any]]:
    return {service: meaning(client.api.inspect_container(f"{project}-{service}-1")) for service in stack.SERVICES}


def docker_environment() -> dict[str, str]:
    return {"DOCKER_HOST": os.environ["DOCKER_HOST"]} if os.environ.get("DOCKER_HOST") else {}


def compose_up(folder: Path, project: str, client: docker.DockerClient) -> dict[str, dict[str, Any]]:
    """``docker compose up -d --wait`` (db healthy, then api, then web), the inspection, ``down -v``."""
    invocation = compose.Invocation(environment=docker_environment())
    try:
        up = compose.run_compose(folder, invocation, "up", "-d", "--wait", "--wait-timeout", "120", timeout=180)
        assert up.returncode == 0, f"docker compose up failed:\n{up.stderr}"
        return inspect_stack(client, project)
    finally:
        down = compose.run_compose(folder, invocation, "down", "-v", "--timeout", "5", timeout=120)
        assert down.returncode == 0, f"docker compose down -v failed:\n{down.stderr}"


_REMOVALS: dict[str, Callable[[Any, str], None]] = {
    "container": lambda api, name: api.remove_container(name, force=True, v=True),
    "network": lambda api, name: api.remove_network(name),
    "volume": lambda api, name: api.remove_volume(name, force=True),
}


def remove_stack(api: Any, project: str) -> None:
    """Every container, network and volume the stack's file names, removed by name whatever happened
    before (compose's ``down`` or ``reconcile delete`` may not have run, or not to their end): each
    removal is asked again until the daemon says it is gone (a ReadTimeout or a 409 from a busy
    daemon is an ``OSError``, "not yet" to :func:`polling.eventually`; a 404 is gone)."""
    containers = [f"{project}-{service}-1" for service in stack.SERVICES]
    left = [("container", name) for name in containers + [f"{name}.next" for name in containers]]
    left += [("network", f"{project}_{key}") for key in (*stack.NETWORKS, "default")]
    left += [("volume", f"{project}_{key}") for key in stack.VOLUMES]

    def removed() -> bool:
        while left:  # in order: containers before the networks and volumes they use
            kind, name = left[0]
            with contextlib.suppress(docker.errors.NotFound):
                _REMOVALS[kind](api, name)
            left.pop(0)
        return True

    polling.eventually(
        removed, timeout=600, interval=0.5, what=f"the containers, networks and volumes of {project} removed"
    )


@pytest.fixture
def project(client: docker.DockerClient, prefix: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The stack's project name; at teardown its objects are removed by name (:func:`remove_stack`)."""
    name = f"{prefix}stack"
    yield name
    if not names.keep_after_failure(request.node):
        remove_stack(client.api, name)


class TimingOut:
    """A Docker API client whose removals each time out twice: first before the daemon is asked,
    then after it has done the work (the answer is what times out), as a loaded daemon does."""

    def __init__(self, api: docker.APIClient) -> None:
        self.api = api
        self.timeouts: dict[str, int] = {}

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            count = self.timeouts.get(method, 0)
            self.timeouts[method] = count + 1
            if count == 0:
                raise requests.exceptions.ReadTimeout(f"{method}: read timed out (injected, before)")
            answer = getattr(self.api, method)(*args, **kwargs)
            if count == 1:
                raise requests.exceptions.ReadTimeout(f"{method}: read timed out (injected, after)")
            return answer

        return call


def test_the_teardown_removes_the_stack_when_the_daemon_times_out(
    client: docker.DockerClient, image: str, prefix: str
) -> None:
    api, name = client.api, f"{prefix}down"
    api.create_volume(f"{name}_data")
    api.create_network(f"{name}_back")
    created = api.create_container(
        image, ["sleep", "3600"], name=f"{name}-db-1",
        host_config=api.create_host_config(binds=[f"{name}_data:/data"]),
        networking_config=api.create_networking_config({f"{name}_back": api.create_endpoint_config()}),
    )  # fmt: skip
    api.start(created["Id"])
    flaky = TimingOut(api)
    remove_stack(flaky, name)
    assert flaky.timeouts["remove_container"] >= 3 and flaky.timeouts["remove_volume"] >= 3, flaky.timeouts
    assert not [c for c in api.containers(all=True, filters={"name": name}) if f"/{name}-db-1" in c["Names"]]
    assert not [n for n in api.networks(names=[f"{name}_back"]) if n["Name"] == f"{name}_back"]
    assert not [v for v in api.volumes(filters={"name": name}).get("Volumes") or () if v["Name"] == f"{name}_data"]


def test_compose_up_and_reconcile_apply_make_the_same_containers(
    client: docker.DockerClient, image: str, project: str, tmp_path: Path
) -> None:
    port = registry.free_port()
    path = stack.write(tmp_path / "stack", project=project, image=image, port=port)
    by_compose = compose_up(path.parent, project, client)
    root = tmp_path / "root"
    applied = cli.reconcile(root, "apply", "-f", str(path), "--wait", "-y", engine="docker", timeout=180)
    try:
        assert applied.returncode == 0, (
            f"reconcile apply of the compose file failed:\n{applied.stdout}\n{applied.stderr}"
        )
        ours = inspect_stack(client, project)
        assert (
            polling.eventually(lambda: cli.fetch(f"http://127.0.0.1:{port}/"), timeout=30, what="web to answer")
            == stack.PAGE.encode()
        )
    finally:
        deleted = cli.reconcile(root, "delete", "-f", str(path), "--prune-volumes", engine="docker", timeout=180)
    assert deleted.returncode == 0, f"reconcile delete failed:\n{deleted.stderr}"
    problems = [f"{service}: {field}: compose → {value!r}, reconcile → {ours[service][field]!r}"
                for service in stack.SERVICES for field, value in by_compose[service].items()
                if ours[service][field] != value]  # fmt: skip
    assert not problems, "docker inspect differs:\n" + "\n".join(problems)
