"""Fixtures for the Docker backend's integration tests: a real dockerd, a local registry, an image.

Everything here is real: ``dockerd`` (started if it is not running), Debian's ``docker-registry``
on 127.0.0.1 (a free port, storage in a temporary folder) and a busybox-static image built in the
test session (``docker import`` of a rootfs made from ``/bin/busybox``) and pushed to that
registry, so ``pullPolicy: Always`` and "unknown image" are exercised without the internet.

A missing prerequisite (not root, no dockerd binary, no busybox-static, no docker-registry) fails
the session with a message naming it: these tests never skip silently.

Every test gets a unique name prefix (``t<6 random>-``); objects whose names start with it are
removed when the test ends, so tests can run in parallel and leave nothing behind (unless
``KEEP_FAILED=1`` and the test failed).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from reconciler.backends import docker as docker_backend
from tests.support import dockerd as dockerd_support

DOCKER_SOCKET = Path("/var/run/docker.sock")
BUSYBOX = Path("/bin/busybox")


def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[None]:
    """A running dockerd (see ``tests.support.dockerd``)."""
    dockerd_support.ensure_running("the Docker integration tests")
    yield


@pytest.fixture(scope="session")
def client(dockerd: None) -> Iterator[docker.DockerClient]:
    client = docker.from_env(version="auto", timeout=120)
    yield client
    client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a Debian ``docker-registry`` serving from a temporary folder.

    dockerd treats registries on 127.0.0.0/8 as insecure (plain HTTP) by default.
    """
    binary = shutil.which("docker-registry")
    if binary is None:
        _fail("docker-registry is not installed (Debian package docker-registry)")
        return
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log,
                               stdin=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                _fail(f"docker-registry did not start: {(root / 'registry.log').read_text()[-1000:]}")
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    log.close()


def busybox_rootfs() -> bytes:
    """A tar of a minimal root filesystem: busybox-static and one symlink per applet."""
    if not BUSYBOX.exists():
        _fail("/bin/busybox is missing (Debian package busybox-static)")
    listing = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True)
    applets = listing.stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for directory in ("bin", "etc", "www", "data", "proc", "sys", "dev", "root"):
            add_dir(directory)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        add_file("www/index.html", b"hello from reconciler\n")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def image(client: docker.DockerClient, registry: str) -> str:
    """A pullable busybox image on the local registry (``sleep`` and ``httpd`` inside)."""
    reference = f"{registry}/reconciler-test/busybox:1"
    repository, tag = reference.rsplit(":", 1)
    client.api.import_image_from_data(
        busybox_rootfs(), repository=repository, tag=tag,
        changes=['ENV PATH=/bin', 'CMD ["sleep", "3600"]'],
    )  # fmt: skip
    for progress in client.api.push(repository, tag=tag, stream=True, decode=True):
        if progress.get("error"):
            _fail(f"pushing the test image to {registry} failed: {progress['error']}")
    return reference


@pytest.fixture
def engine(dockerd: None) -> Iterator[docker_backend.DockerEngine]:
    engine = docker_backend.DockerEngine.from_env()
    yield engine
    engine.close()


def remove_everything_named(client: docker.DockerClient, prefix: str) -> None:
    """Remove every container, network and volume whose name starts with ``prefix``."""
    api = client.api
    for container in api.containers(all=True, filters={"name": prefix}):
        if any(name.lstrip("/").startswith(prefix) for name in container.get("Names") or ()):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container["Id"], force=True, v=True)
    for network in api.networks(names=[prefix]):
        if network["Name"].startswith(prefix):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_network(network["Id"])
    for volume in api.volumes(filters={"name": prefix}).get("Volumes") or ():
        if volume["Name"].startswith(prefix):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_volume(volume["Name"], force=True)


@pytest.fixture
def prefix(client: docker.DockerClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique name prefix; everything named with it is removed when the test ends."""
    value = f"t{secrets.token_hex(3)}-"
    yield value
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed and os.environ.get("KEEP_FAILED") == "1":
        return
    remove_everything_named(client, value)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Record each phase's report on the item, so ``prefix`` can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
