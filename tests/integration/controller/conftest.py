"""Fixtures of the controller's integration tests: a real dockerd, a busybox image, a daemon.

Real parts only: dockerd (started here when none answers; left running for other sessions), an
image imported from Debian's busybox-static (``docker import`` of a rootfs, a unique tag per
session, ``pullPolicy: Never`` so no registry is involved), and ``reconcile watch`` run as a
separate process (``python -m reconciler.cli --engine docker --root TMP watch DIR``) with its API
socket, state and locks in the test's temporary folder.

A missing prerequisite (not root, no dockerd, no busybox-static) FAILS with a message naming it.
Every test gets a unique name prefix (the root ``prefix`` fixture); this folder's ``prefix``
removes the test's containers by name at the end (kept when ``KEEP_FAILED=1`` and the test
failed). Waiting is ``tests.support.polling.eventually``.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from reconciler import api
from tests.support import dockerd as dockerd_support
from tests.support import images, names, polling

# The module run as ``reconcile``: the CLI (``watch`` is one of its subcommands).
ENTRY = "reconciler.cli"


@pytest.fixture(scope="session")
def dockerd() -> None:
    """A running dockerd (see ``tests.support.dockerd``)."""
    dockerd_support.ensure_running("the controller integration tests")


@pytest.fixture(scope="session")
def client(dockerd: None) -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def image(client: docker.DockerClient) -> Iterator[str]:
    """A local busybox image with a unique tag (``sleep``, ``sh`` inside); removed at the end."""
    reference = f"reconciler-ctl-test/busybox:{secrets.token_hex(4)}"
    repository, tag = reference.rsplit(":", 1)
    client.api.import_image_from_data(images.busybox_layer(), repository=repository, tag=tag,
                                      changes=["ENV PATH=/bin", 'CMD ["sleep", "3600"]'])  # fmt: skip
    yield reference
    with contextlib.suppress(docker.errors.APIError):
        client.api.remove_image(reference, force=True)


@pytest.fixture
def prefix(prefix: str, request: pytest.FixtureRequest, client: docker.DockerClient) -> Iterator[str]:
    """The root fixture's unique prefix; the test's containers are removed by it at the end."""
    yield prefix
    if not names.keep_after_failure(request.node):
        dockerd_support.remove_named(client, prefix)


class Daemon:
    """``reconcile watch`` as a child process, with its API client."""

    def __init__(self, folder: Path, root: Path, *, resync: float = 2.0, extra: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.root = root
        self.socket = str(root / "api.sock")
        self.log = root / "daemon.log"
        self.resync = resync
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.client = api.Client(self.socket, timeout=30)

    def command(self) -> list[str]:
        return [sys.executable, "-m", ENTRY, "--engine", "docker", "--root", str(self.root),
                "watch", str(self.folder), "--socket", self.socket, "--resync", str(self.resync),
                "--log-format", "json", *self.extra]  # fmt: skip

    def start(self) -> Daemon:
        self.root.mkdir(parents=True, exist_ok=True)
        sink = self.log.open("ab")
        self.process = subprocess.Popen(self.command(), stdout=sink, stderr=sink, stdin=subprocess.DEVNULL)
        sink.close()
        polling.eventually(self.client.ping, timeout=20, what=f"the daemon to answer (log: {self.log})")
        return self

    def signal(self, number: int) -> int | None:
        assert self.process is not None
        self.process.send_signal(number)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            return None

    def dump_threads(self) -> None:
        """Thread stacks into the log (SIGUSR1), for post-mortems; waits until the log has grown."""
        assert self.process is not None
        size = self.log.stat().st_size
        self.process.send_signal(signal.SIGUSR1)
        # Best effort: a daemon too wedged to write its stacks is still stopped afterwards.
        with contextlib.suppress(AssertionError):
            polling.eventually(lambda: self.log.stat().st_size > size, timeout=2, what="the thread dump")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None and self.signal(signal.SIGTERM) is None:
            self.process.kill()
            self.process.wait(10)

    def status(self) -> dict[str, Any]:
        return self.client.status()

    def row(self, name: str) -> dict[str, Any] | None:
        return next((r for r in self.status()["objects"] if r["name"] == name), None)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.client.events(follow=False) if kind is None or e["kind"] == kind]


@pytest.fixture
def daemon(tmp_path: Path, dockerd: None, prefix: str) -> Iterator[Callable[..., Daemon]]:
    # Depending on ``prefix`` orders the teardowns: the daemons stop first, then the test's
    # containers are removed (a running daemon would heal their removal).
    del prefix
    started: list[Daemon] = []

    def start(folder: Path | None = None, **options: Any) -> Daemon:
        folder = folder or tmp_path / "manifests"
        folder.mkdir(exist_ok=True)
        instance = Daemon(folder, tmp_path / f"root{len(started)}", **options).start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        if instance.process is not None and instance.process.poll() is None:
            instance.dump_threads()
        instance.stop()
