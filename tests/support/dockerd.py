"""A running dockerd for the Docker-backed integration tests (backend, controller).

:func:`ensure_running` returns when a daemon answers through ``docker.from_env()``; when none
does, it starts plain ``dockerd`` (default config, its own session, log in a temp file) and waits
for it. The daemon is left running afterwards: other suites and the benches share it. A missing
prerequisite fails the test with a message naming it, never skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
import docker.errors
import pytest

from reconciler.backends.docker import stack_networks
from tests.support import polling


def answers() -> bool:
    try:
        client = docker.from_env(version="auto", timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def ensure_running(purpose: str) -> None:
    """A dockerd answers, or the test fails naming what is missing; ``purpose`` says who asks."""
    if os.geteuid() != 0:
        pytest.fail(f"{purpose} need root (they drive dockerd)", pytrace=False)
    if answers():
        return
    if os.environ.get("DOCKER_HOST"):
        pytest.fail(f"DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer and is not ours to start", pytrace=False)
    binary = shutil.which("dockerd")
    if binary is None:
        pytest.fail("dockerd is not installed (Debian package docker.io) and no Docker daemon answers", pytrace=False)
    log = Path(tempfile.gettempdir()) / "reconciler-dockerd.log"
    with log.open("ab") as sink:
        process = subprocess.Popen([binary], stdout=sink, stderr=sink, stdin=subprocess.DEVNULL,
                                   start_new_session=True)  # fmt: skip

    def up() -> bool:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            pytest.fail(f"dockerd exited ({process.poll()}); its log ends with:\n{tail}", pytrace=False)
        return answers()

    try:
        polling.eventually(up, timeout=60, interval=0.2, what="dockerd to answer")
    except AssertionError as exc:
        pytest.fail(f"{exc}; its log ends with:\n{log.read_text(errors='replace')[-2000:]}", pytrace=False)


def remove_named(client: docker.DockerClient, prefix: str) -> None:
    """Remove every container, network and volume whose name starts with ``prefix`` (a test's
    own unique prefix: never anything else on the machine)."""
    api = client.api
    for container in api.containers(all=True, filters={"name": prefix}):
        if any(name.lstrip("/").startswith(prefix) for name in container.get("Names") or ()):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(container["Id"], force=True, v=True)
    for network in api.networks(names=[prefix]):
        if network["Name"].startswith(prefix):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_network(network["Id"])
    for volume in api.volumes(filters={"name": prefix}).get("Volumes") or ():
        if volume["Name"].startswith(prefix):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_volume(volume["Name"], force=True)
    # A stack's own network (``<stack>_default``) is named after the stack, which some tests name
    # without the prefix; once the test's containers are gone, the unused ones go (never through
    # Docker's prune: it takes a network that a stopped container of a test running meanwhile needs).
    with contextlib.suppress(docker.errors.APIError):
        stack_networks.prune(api)
