"""The two-node swarm fixture itself: both nodes Ready, a service spread over both whose tasks
talk across the overlay network, and a killed run's swarm removed by the next start.

These go through the raw docker SDK, not the swarm engine: they hold the fixture to what the
engine's tests assume of it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.types import EndpointSpec, ServiceMode

from tests.support import polling
from tests.support import swarm as swarm_support

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[3]


def test_the_two_nodes_see_each_other_as_ready(
    swarm: swarm_support.Swarm, manager: docker.DockerClient, worker: docker.DockerClient
) -> None:
    nodes = {node.attrs["Description"]["Hostname"]: node.attrs for node in manager.nodes.list()}
    assert sorted(nodes) == sorted(node.netns for node in swarm.nodes)
    assert {attrs["Status"]["State"] for attrs in nodes.values()} == {"ready"}
    assert nodes[swarm.manager.netns]["Spec"]["Role"] == "manager"
    assert nodes[swarm.manager.netns]["ManagerStatus"]["Leader"] is True
    assert nodes[swarm.worker.netns]["Spec"]["Role"] == "worker"
    assert nodes[swarm.worker.netns]["Status"]["Addr"] == swarm.worker.address
    info = worker.info()["Swarm"]
    assert info["LocalNodeState"] == "active"
    assert info["ControlAvailable"] is False
    assert [m["Addr"] for m in info["RemoteManagers"]] == [f"{swarm.manager.address}:2377"]
    # Two daemons, not one answering twice.
    assert manager.info()["Swarm"]["NodeID"] != info["NodeID"]


def _running_tasks(manager: docker.DockerClient, service: str, count: int) -> list[dict[str, Any]]:
    tasks = manager.services.get(service).tasks(filters={"desired-state": "running"})
    running = [task for task in tasks if task["Status"]["State"] == "running"]
    return running if len(running) == count else []


def test_a_service_spreads_over_both_nodes_and_its_tasks_meet_across_them(
    swarm: swarm_support.Swarm, manager: docker.DockerClient, worker: docker.DockerClient, prefix: str
) -> None:
    network = manager.networks.create(f"{prefix}net", driver="overlay", attachable=True)
    manager.services.create(
        swarm_support.BUSYBOX, ["sleep", "300"], name=f"{prefix}sleep", networks=[network.id],
        mode=ServiceMode("replicated", replicas=4), endpoint_spec=EndpointSpec(mode="dnsrr"),
    )  # fmt: skip
    tasks = polling.eventually(
        lambda: _running_tasks(manager, f"{prefix}sleep", 4), timeout=120, interval=0.5, what="4 running tasks"
    )
    node_ids = {node.id for node in manager.nodes.list()}
    assert {task["NodeID"] for task in tasks} == node_ids
    worker_id = worker.info()["Swarm"]["NodeID"]
    on_worker = [task for task in tasks if task["NodeID"] == worker_id]
    worker_containers = {
        c.id for c in worker.containers.list(filters={"label": f"com.docker.swarm.service.name={prefix}sleep"})
    }
    assert {task["Status"]["ContainerStatus"]["ContainerID"] for task in on_worker} == worker_containers
    # A task on the manager reaches one on the worker over the overlay (VXLAN over the veth pair).
    on_manager = next(task for task in tasks if task["NodeID"] != worker_id)
    target = on_worker[0]["NetworksAttachments"][0]["Addresses"][0].split("/")[0]
    container = manager.containers.get(on_manager["Status"]["ContainerStatus"]["ContainerID"])
    result = container.exec_run(["ping", "-c", "1", "-W", "5", target])
    assert result.exit_code == 0, result.output
    # The manager's DNS learns the worker's task through the overlay's gossip, which may come
    # after the ping already works: poll for it.

    def resolved() -> str | None:
        answer = container.exec_run(["nslookup", f"{prefix}sleep"]).output.decode()
        assert target in answer, answer
        return answer

    polling.eventually(resolved, timeout=60, interval=0.5, what=f"{prefix}sleep to resolve to {target} on the manager")


def _swarm_in_a_child() -> tuple[subprocess.Popen[str], str]:
    """A second test session (a child interpreter) that builds a swarm and then waits."""
    script = (
        "import sys\n"
        "from tests.support import swarm\n"
        "with swarm.running() as built:\n"
        "    print(built.name, flush=True)\n"
        "    sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPOSITORY, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    name = child.stdout.readline().strip()
    assert swarm_support.NAME_PATTERN.match(name), f"the child built no swarm (said {name!r})"
    return child, name


def test_a_killed_runs_swarm_is_removed_by_the_next_start_and_a_live_one_is_not(
    swarm: swarm_support.Swarm, manager: docker.DockerClient
) -> None:
    child, name = _swarm_in_a_child()
    nodes = [swarm_support.Node(name, role, "") for role in swarm_support.ROLES]
    daemons = [int(node.pidfile.read_text()) for node in nodes]
    child.send_signal(signal.SIGKILL)  # no teardown: the daemons, namespaces and folders stay
    child.wait()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            pipe.close()
    assert all(os.path.exists(f"/proc/{pid}") for pid in daemons)

    removed = swarm_support.remove_leftovers()

    assert name in removed
    assert swarm.name not in removed
    assert manager.ping()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(node.netns in netns for node in nodes)
    assert not any(swarm_support.alive(pid) for pid in daemons)
    assert not (swarm_support.RUN_BASE / name).exists()
    assert not (swarm_support.STATE_BASE / name).exists()
    assert name not in Path("/proc/self/mountinfo").read_text()
    assert not any(
        (swarm_support.CGROUP_BASE / h / node.netns).exists()
        for h in os.listdir(swarm_support.CGROUP_BASE)
        for node in nodes
    )


def test_the_manager_pulls_busybox_from_its_registry_and_an_unknown_tag_is_not_found(
    manager: docker.DockerClient,
) -> None:
    repository, tag = swarm_support.BUSYBOX.rsplit(":", 1)
    pulled = manager.images.pull(repository, tag=tag)
    assert swarm_support.BUSYBOX in pulled.tags
    with pytest.raises(docker.errors.NotFound):
        manager.images.pull(repository, tag="does-not-exist")
