"""Issue 15's scenarios on the real two-node swarm, driven through the CLI as a user would.

``reconcile --engine swarm --docker-host unix://<the manager's socket>``: a three-service stack
whose replicas spread over both nodes, scaled up and down, an update to an image whose health
check fails that Swarm rolls back by itself, the worker drained (its tasks move to the manager and
the stack stays converged), and ``delete`` leaving nothing on either node. Each step checks the
swarm's state first (services, tasks, the nodes they run on), then what the CLI said.

The stack reaches its tasks by ``dnsrr`` names (no IPVS on this kernel: see ``tests.support.swarm``),
and the one published port is published in ``mode: host``, so nothing here depends on the routing mesh.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from tests.support import polling
from tests.support import swarm as swarm_support

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[3]
SERVICES = ("web", "api", "db")


def reconcile(swarm: swarm_support.Swarm, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on the swarm's manager; a private root and no daemon (nothing else is shared)."""
    command = [sys.executable, "-m", "reconciler.cli", "--engine", "swarm", "--docker-host", swarm.manager.url,
               "--root", str(root), "--socket", "none", *args]  # fmt: skip
    environment = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    return subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, env=environment,
                          timeout=600, check=False)  # fmt: skip


def document(kind: str, name: str, stack: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": kind, "metadata": {"name": name, "stack": stack}, "spec": spec}


def write_stack(
    folder: Path, prefix: str, *, web: int = 4, api_image: str = swarm_support.HEALTHY, db_on: str = ""
) -> Path:
    """web (``web`` replicas), api (two replicas, a health check that needs /healthy) and db (a
    volume; on nodes of role ``db_on`` when given), on one network; one manifest file."""
    stack, net = f"{prefix}shop", f"{prefix}net"
    # restart: always, as services run: Swarm replaces a drained node's tasks only under a restart
    # policy that allows it (condition none leaves the slot empty, as Docker does).
    common = {"networks": [{"name": net}], "stopTimeout": "1s", "restart": "always"}
    documents = [
        document("Network", net, stack, {}),
        document("Volume", f"{prefix}data", stack, {}),
        document("Container", f"{prefix}web", stack, {
            "image": swarm_support.BUSYBOX, "command": ["sleep", "3600"], "replicas": web, **common,
        }),
        document("Container", f"{prefix}api", stack, {
            "image": api_image, "command": ["sleep", "3600"], "replicas": 2, **common,
            "healthcheck": {"test": "test -e /healthy", "interval": "1s", "timeout": "2s", "retries": 1},
            "minReadySeconds": "2s", "progressDeadline": "60s",
        }),
        document("Container", f"{prefix}db", stack, {
            "image": swarm_support.BUSYBOX, "command": ["sleep", "3600"], **common,
            "mounts": [{"type": "volume", "source": f"{prefix}data", "target": "/data"}],
            "placement": {"constraints": [f"node.role=={db_on}"] if db_on else []},
        }),
    ]  # fmt: skip
    path = folder / "shop.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def running_tasks(manager: docker.DockerClient, service: str) -> list[dict[str, Any]]:
    """The service's tasks that run and are meant to."""
    tasks = manager.api.tasks(filters={"service": service, "desired-state": "running"})
    return [task for task in tasks if task["Status"]["State"] == "running"]


def settled(manager: docker.DockerClient, prefix: str, counts: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Poll until each service runs exactly its count of tasks; their tasks by service name."""

    def probe() -> dict[str, list[dict[str, Any]]] | None:
        found = {name: running_tasks(manager, f"{prefix}{name}") for name in counts}
        return found if all(len(found[name]) == count for name, count in counts.items()) else None

    return polling.eventually(probe, timeout=180, interval=0.5, what=f"tasks running as {counts}")


def volumes_named(client: docker.DockerClient, prefix: str) -> list[str]:
    return [
        v["Name"]
        for v in client.api.volumes(filters={"name": prefix}).get("Volumes") or ()
        if v["Name"].startswith(prefix)
    ]


def service_ids(manager: docker.DockerClient, prefix: str) -> dict[str, str]:
    return {s["Spec"]["Name"]: s["ID"] for s in manager.api.services(filters={"name": prefix})}


@pytest.fixture
def drained_later(swarm: swarm_support.Swarm, manager: docker.DockerClient) -> Iterator[str]:
    """The worker's node id; the worker is made active again when the test ends (the swarm is shared)."""
    worker_id = next(n.id for n in manager.nodes.list() if n.attrs["Description"]["Hostname"] == swarm.worker.netns)
    yield worker_id
    node = manager.nodes.get(worker_id)
    node.update({**node.attrs["Spec"], "Availability": "active"})


def _deployed_spread(swarm: swarm_support.Swarm, manager: docker.DockerClient, prefix: str, folder: Path) -> None:
    applied = reconcile(swarm, folder / "root", "apply", "-f", str(write_stack(folder, prefix)))
    assert applied.returncode == 0, applied
    tasks = settled(manager, prefix, {"web": 4, "api": 2, "db": 1})
    nodes = {node.id for node in manager.nodes.list()}
    assert {task["NodeID"] for task in tasks["web"]} == nodes, tasks["web"]
    assert {task["NodeID"] for task in tasks["web"] + tasks["api"] + tasks["db"]} == nodes
    network = manager.networks.get(f"{prefix}net")
    assert network.attrs["Driver"] == "overlay" and network.attrs["Attachable"] is True
    for name in SERVICES:
        assert f"{prefix}{name}" in applied.stdout, applied
    again = reconcile(swarm, folder / "root", "plan", "-f", str(folder / "shop.yaml"))
    assert again.returncode == 0, again  # converged: nothing left to do


def _scaled(swarm: swarm_support.Swarm, manager: docker.DockerClient, prefix: str, folder: Path) -> None:
    before = service_ids(manager, prefix)
    for replicas in (6, 2):
        scaled = reconcile(swarm, folder / "root", "apply", "-f", str(write_stack(folder, prefix, web=replicas)))
        assert scaled.returncode == 0, scaled
        settled(manager, prefix, {"web": replicas, "api": 2, "db": 1})
        assert service_ids(manager, prefix) == before  # scaled in place, not recreated
        spec = manager.api.inspect_service(f"{prefix}web")["Spec"]
        assert spec["Mode"]["Replicated"]["Replicas"] == replicas


def _drained(
    swarm: swarm_support.Swarm, manager: docker.DockerClient, prefix: str, folder: Path, worker_id: str
) -> None:
    node = manager.nodes.get(worker_id)
    assert node.update({**node.attrs["Spec"], "Availability": "drain"})

    counts = {"web": 2, "api": 2, "db": 1}

    def moved() -> dict[str, list[dict[str, Any]]] | None:
        found = {name: running_tasks(manager, f"{prefix}{name}") for name in counts}
        if any(len(found[name]) != count for name, count in counts.items()):
            return None
        return None if any(task["NodeID"] == worker_id for group in found.values() for task in group) else found

    tasks = polling.eventually(moved, timeout=180, interval=0.5, what="every task moved off the drained worker")
    assert {task["NodeID"] for group in tasks.values() for task in group} == {manager.info()["Swarm"]["NodeID"]}
    planned = reconcile(swarm, folder / "root", "plan", "-f", str(folder / "shop.yaml"))
    assert planned.returncode == 0, planned  # tasks that moved are no drift


def _deleted(swarm: swarm_support.Swarm, manager: docker.DockerClient, worker: docker.DockerClient, prefix: str,
             folder: Path) -> None:  # fmt: skip
    deleted = reconcile(swarm, folder / "root", "delete", "--stack", f"{prefix}shop", "--prune-volumes")
    assert deleted.returncode == 0, deleted
    assert manager.api.services(filters={"name": prefix}) == []
    assert [n["Name"] for n in manager.api.networks(names=[prefix]) if n["Name"].startswith(prefix)] == []
    polling.eventually(
        lambda: not any(swarm_support.task_containers(client, prefix) for client in (manager, worker)),
        timeout=120, interval=0.5, what="the stack's task containers to go",
    )  # fmt: skip
    assert volumes_named(manager, prefix) == []  # a worker's copies: see the delete test below


def test_a_stack_spreads_over_both_nodes_scales_survives_a_drain_and_is_deleted(
    swarm: swarm_support.Swarm,
    manager: docker.DockerClient,
    worker: docker.DockerClient,
    prefix: str,
    tmp_path: Path,
    drained_later: str,
) -> None:
    _deployed_spread(swarm, manager, prefix, tmp_path)
    _scaled(swarm, manager, prefix, tmp_path)
    _drained(swarm, manager, prefix, tmp_path, drained_later)
    _deleted(swarm, manager, worker, prefix, tmp_path)


def _images_of(tasks: list[dict[str, Any]]) -> set[str]:
    return {str(task["Spec"]["ContainerSpec"]["Image"]).split("@", 1)[0] for task in tasks}


def test_an_update_to_an_image_whose_health_check_fails_is_rolled_back_by_swarm(
    swarm: swarm_support.Swarm, manager: docker.DockerClient, prefix: str, tmp_path: Path
) -> None:
    first = reconcile(swarm, tmp_path / "root", "apply", "-f", str(write_stack(tmp_path, prefix, web=1)))
    assert first.returncode == 0, first
    settled(manager, prefix, {"web": 1, "api": 2, "db": 1})
    service_id = service_ids(manager, prefix)[f"{prefix}api"]

    bad = write_stack(tmp_path, prefix, web=1, api_image=swarm_support.UNHEALTHY)
    updated = reconcile(swarm, tmp_path / "root", "apply", "-f", str(bad))

    status = manager.api.inspect_service(f"{prefix}api")
    assert status["ID"] == service_id
    assert status["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@", 1)[0] == swarm_support.HEALTHY
    # Swarm tried the new image (its tasks exist) and took it back itself: none of them is meant to run.
    history = manager.api.tasks(filters={"service": f"{prefix}api"})
    tried = [task for task in history if _images_of([task]) == {swarm_support.UNHEALTHY}]
    assert tried and all(task["DesiredState"] != "running" for task in tried), tried
    tasks = settled(manager, prefix, {"api": 2})["api"]
    assert _images_of(tasks) == {swarm_support.HEALTHY}
    assert updated.returncode != 0, updated  # the apply says it did not get there
    assert f"Swarm rolled the update of service {prefix}api back" in updated.stdout, updated


def _stack_with_db_on_the_worker(
    swarm: swarm_support.Swarm, manager: docker.DockerClient, worker: docker.DockerClient, prefix: str, folder: Path
) -> None:
    applied = reconcile(swarm, folder / "root", "apply", "-f", str(write_stack(folder, prefix, web=1, db_on="worker")))
    assert applied.returncode == 0, applied
    (db,) = settled(manager, prefix, {"web": 1, "api": 2, "db": 1})["db"]
    assert db["NodeID"] == worker.info()["Swarm"]["NodeID"]
    assert f"{prefix}data" in volumes_named(worker, prefix)


def test_delete_prune_volumes_removes_the_volume_a_task_made_on_the_worker(
    swarm: swarm_support.Swarm, manager: docker.DockerClient, worker: docker.DockerClient, prefix: str, tmp_path: Path
) -> None:
    """The worker is labelled with its dockerd's address (the fixture does it): its copy goes too."""
    _stack_with_db_on_the_worker(swarm, manager, worker, prefix, tmp_path)
    deleted = reconcile(swarm, tmp_path / "root", "delete", "--stack", f"{prefix}shop", "--prune-volumes")
    assert deleted.returncode == 0, deleted
    assert volumes_named(worker, prefix) == [] and volumes_named(manager, prefix) == []
    # Swarm removes a deleted service's task containers on the worker after the delete returns.
    polling.eventually(lambda: not swarm_support.task_containers(worker, prefix), timeout=60,
               what="the worker's task containers to go")  # fmt: skip


def test_delete_prune_volumes_says_which_node_keeps_a_copy_it_cannot_reach(
    swarm: swarm_support.Swarm, manager: docker.DockerClient, worker: docker.DockerClient, prefix: str, tmp_path: Path
) -> None:
    """Without the label, the worker's dockerd is out of the engine's reach: the delete fails
    naming the node and the command to run there, and removes everything else."""
    _stack_with_db_on_the_worker(swarm, manager, worker, prefix, tmp_path)
    swarm_support.set_daemon_label(manager, swarm.worker, None)
    try:
        deleted = reconcile(swarm, tmp_path / "root", "delete", "--stack", f"{prefix}shop", "--prune-volumes")
    finally:
        swarm_support.set_daemon_label(manager, swarm.worker, swarm.worker.url)
    assert deleted.returncode != 0, deleted
    message = f"the copies on node {swarm.worker.netns} stay"
    assert message in deleted.stdout + deleted.stderr, deleted
    assert f"docker volume rm {prefix}data there" in deleted.stdout + deleted.stderr, deleted
    assert manager.api.services(filters={"name": prefix}) == [] and volumes_named(manager, prefix) == []
    assert volumes_named(worker, prefix) == [f"{prefix}data"]  # the prefix fixture removes it


# The host port of the host-mode test: in the swarm's own namespaces, where nothing else listens.
HOST_MODE_PORT = 18080
_FETCH = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())"


def fetched(node: swarm_support.Node, url: str) -> str | None:
    """The body at ``url`` asked from inside ``node``'s network namespace; None when it does not answer."""
    probe = swarm_support.in_namespace(node, sys.executable, "-c", _FETCH, url, timeout=30)
    return probe.stdout if probe.returncode == 0 else None


def test_a_host_mode_port_answers_on_the_node_of_its_task_only(
    swarm: swarm_support.Swarm, manager: docker.DockerClient, worker: docker.DockerClient, prefix: str, tmp_path: Path
) -> None:
    page = f"{prefix}page"
    serve = f"mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 8080 -h /www"
    edge = document("Container", f"{prefix}edge", f"{prefix}edge", {
        "image": swarm_support.BUSYBOX, "command": ["sh", "-c", serve], "restart": "always", "stopTimeout": "1s",
        "ports": [{"containerPort": 8080, "hostPort": HOST_MODE_PORT, "mode": "host"}],
        "placement": {"constraints": [f"node.hostname=={swarm.worker.netns}"]},
    })  # fmt: skip
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(edge, sort_keys=False))
    applied = reconcile(swarm, tmp_path / "root", "apply", "-f", str(path))
    assert applied.returncode == 0, applied
    (task,) = settled(manager, prefix, {"edge": 1})["edge"]
    assert task["NodeID"] == worker.info()["Swarm"]["NodeID"]
    on_worker = f"http://{swarm.worker.address}:{HOST_MODE_PORT}/index.html"
    body = polling.eventually(lambda: fetched(swarm.manager, on_worker), timeout=60, interval=0.5,
                              what=f"{on_worker} to answer from the manager's namespace")  # fmt: skip
    assert body.strip() == page
    assert (fetched(swarm.worker, on_worker) or "").strip() == page
    # mode: host binds the port on the task's node alone (the routing mesh would bind it on every node).
    assert fetched(swarm.manager, f"http://{swarm.manager.address}:{HOST_MODE_PORT}/index.html") is None
    planned = reconcile(swarm, tmp_path / "root", "plan", "-f", str(path))
    assert planned.returncode == 0, planned
    assert "No changes" in planned.stdout, planned.stdout  # the bound port reads back as asked
