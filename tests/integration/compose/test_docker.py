"""``docker compose up`` and ``reconcile --engine docker apply`` of one compose file: same containers.

The stack of :mod:`.stack` is brought up by compose v2 (against the suite's dockerd), inspected,
taken down (``down -v``), then applied by ``reconcile --engine docker`` and inspected again. Each
container's ``docker inspect`` must mean the same, field by field (:func:`meaning`), except the
ownership labels (compose's ``com.docker.compose.*``, ours ``reconciler.*``). Networks and volumes
have compose's names, ``<project>_<key>``, on both sides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.compose import stack
from tests.support import cli, compose, polling, registry

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


def test_compose_up_and_reconcile_apply_make_the_same_containers(
    client: docker.DockerClient, image: str, prefix: str, tmp_path: Path
) -> None:
    project, port = f"{prefix}stack", registry.free_port()
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
