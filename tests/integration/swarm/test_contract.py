"""The swarm engine runs the engine contract suite on the real two-node swarm.

Where the contract applies: a container of the contract is a member of a service on the manager,
and the suite's events must come from where its tasks run: the engine's live events are the
manager node's (a worker's dockerd is the worker's own; exec and stats reach a labelled worker
too, see ``test_engine``). So while this class runs, the worker is drained and every task lands
on the manager; the tasks spread over both nodes are the scenarios' business (``test_scenario``).
The worker is made active again afterwards.

Every test of the suite runs and passes here: none is marked or left out.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from tests.contract import suite
from tests.support import polling
from tests.support import swarm as swarm_support

pytestmark = pytest.mark.integration


def _availability(manager: docker.DockerClient, hostname: str, availability: str) -> None:
    node = next(n for n in manager.nodes.list() if n.attrs["Description"]["Hostname"] == hostname)
    node.update({**node.attrs["Spec"], "Availability": availability})
    polling.eventually(
        lambda: manager.nodes.get(node.id).attrs["Spec"]["Availability"] == availability,
        what=f"{hostname} to be {availability}",
    )


@pytest.fixture(scope="class", autouse=True)
def manager_only(swarm: swarm_support.Swarm, manager: docker.DockerClient) -> Iterator[None]:
    _availability(manager, swarm.worker.netns, "drain")
    yield
    _availability(manager, swarm.worker.netns, "active")


class TestSwarmEngine(suite.EngineContract):
    """Fixtures ``engine``, ``image`` and ``prefix`` come from this folder's conftest."""
