"""Fixtures for the Docker backend's integration tests: a real dockerd, a local registry, an image.

Everything here is real: ``dockerd`` (started if it is not running), Debian's ``docker-registry``
on 127.0.0.1 (started by ``tests.support.registry``, storage in a temporary folder) and a
busybox-static image built in the test session (``docker import`` of a rootfs made from
``/bin/busybox``) and pushed to that registry, so ``pullPolicy: Always`` and "unknown image" are
exercised without the internet.

A missing prerequisite (not root, no dockerd binary, no busybox-static, no docker-registry) fails
the session with a message naming it: these tests never skip silently.

Every test gets a unique name prefix (the root ``prefix`` fixture); this folder's ``prefix``
removes the containers, networks and volumes whose names start with it when the test ends, so
tests can run in parallel and leave nothing behind (unless ``KEEP_FAILED=1`` and the test failed).
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from reconciler.backends import docker as docker_backend
from tests.support import dockerd as dockerd_support
from tests.support import names
from tests.support import registry as registries

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


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a plain-HTTP registry serving from a temporary folder.

    dockerd treats registries on 127.0.0.0/8 as insecure (plain HTTP) by default.
    """
    with registries.start_plain(tmp_path_factory.mktemp("registry")) as started:
        yield started.host


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
def image(client: docker.DockerClient, registry: str) -> Iterator[str]:
    """A pullable busybox image on the local registry (``sleep`` and ``httpd`` inside); dockerd's
    copy goes at the end of the session (the registry's port, hence the name, is new each run)."""
    reference = f"{registry}/reconciler-test/busybox:1"
    repository, tag = reference.rsplit(":", 1)
    client.api.import_image_from_data(
        busybox_rootfs(), repository=repository, tag=tag,
        changes=['ENV PATH=/bin', 'CMD ["sleep", "3600"]'],
    )  # fmt: skip
    for progress in client.api.push(repository, tag=tag, stream=True, decode=True):
        if progress.get("error"):
            _fail(f"pushing the test image to {registry} failed: {progress['error']}")
    yield reference
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(reference, force=True)


@pytest.fixture
def engine(dockerd: None) -> Iterator[docker_backend.DockerEngine]:
    engine = docker_backend.DockerEngine.from_env()
    yield engine
    engine.close()


@pytest.fixture
def prefix(prefix: str, client: docker.DockerClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """The root fixture's unique prefix; everything named with it is removed when the test ends."""
    yield prefix
    if not names.keep_after_failure(request.node):
        dockerd_support.remove_named(client, prefix)
