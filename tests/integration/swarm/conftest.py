"""Fixtures for the swarm tests: one real two-node swarm for the session, and per-test cleanup.

``swarm`` builds the swarm once (``tests.support.swarm.running``: two dockerd in network
namespaces of their own, a manager and a worker linked by a veth pair, the test images loaded into
both) and takes it down when the session ends. ``manager``/``worker`` are docker SDK clients of the
two nodes; ``engine`` is the swarm engine on the manager and ``image`` busybox (what the
contract suite asks of them). This folder's ``prefix`` removes, when a test ends, every service, network, secret,
config and volume whose name starts with the test's prefix (unless ``KEEP_FAILED=1`` and the test
failed), so the tests share the swarm without sharing objects.

A missing prerequisite (root, dockerd, containerd, runc, ip, busybox-static) fails the session
naming it; nothing here skips.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from reconciler.backends.swarm import SwarmEngine
from tests.support import names
from tests.support import swarm as swarm_support


@pytest.fixture(scope="session")
def swarm() -> Iterator[swarm_support.Swarm]:
    with swarm_support.running() as built:
        yield built


@pytest.fixture(scope="session")
def manager(swarm: swarm_support.Swarm) -> Iterator[docker.DockerClient]:
    client = swarm.manager.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def worker(swarm: swarm_support.Swarm) -> Iterator[docker.DockerClient]:
    client = swarm.worker.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def image(swarm: swarm_support.Swarm) -> str:
    """busybox, held by both nodes and served by the manager's registry (``sleep``, ``sh`` inside)."""
    return swarm_support.BUSYBOX


@pytest.fixture
def engine(swarm: swarm_support.Swarm) -> Iterator[SwarmEngine]:
    """The swarm engine on a client of the manager (the CLI's way, ``--docker-host``, is the scenarios')."""
    made = SwarmEngine(swarm.manager.client())
    yield made
    made.close()


@pytest.fixture
def prefix(prefix: str, swarm: swarm_support.Swarm, request: pytest.FixtureRequest) -> Iterator[str]:
    """The root fixture's unique prefix; everything named with it is removed when the test ends."""
    yield prefix
    if not names.keep_after_failure(request.node):
        swarm_support.remove_named(swarm, prefix)
