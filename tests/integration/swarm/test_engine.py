"""The swarm engine on the real two-node swarm, through the operations the CLI runs (apply, status,
delete): a container of the manifests is a member of one service, replicas are one service's
tasks, a change is Swarm's rolling update (rolled back by Swarm when the new tasks fail), secrets
are Swarm secrets named by their content, volumes are made on the node that runs a task.

Fixtures (``swarm``, ``manager``, ``worker``, ``prefix``) come from this folder's conftest;
everything a test makes is named with its prefix and removed when it ends.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from reconciler import errors, manifests, operations, planning
from reconciler.backends.swarm import SwarmEngine, members
from tests.contract import suite
from tests.support import polling
from tests.support import swarm as swarm_support

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(swarm: swarm_support.Swarm) -> Iterator[SwarmEngine]:
    """The swarm engine on a client of the manager."""
    made = SwarmEngine(swarm.manager.client())
    yield made
    made.close()


def _stack(prefix: str, *, replicas: int = 3, image: str = swarm_support.HEALTHY) -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Network
        metadata: {{name: {prefix}net, stack: {prefix}s}}
        ---
        apiVersion: reconciler/v1
        kind: Volume
        metadata: {{name: {prefix}data, stack: {prefix}s, labels: {{purpose: test}}}}
        ---
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: {prefix}web, stack: {prefix}s}}
        spec:
          image: {image}
          replicas: {replicas}
          command: [sh, -c, "cat /run/secrets/token; echo; exec sleep 100000"]
          restart: always
          stopTimeout: 1s
          healthcheck: {{test: [CMD, test, -e, /healthy], interval: 1s, timeout: 1s, retries: 2}}
          networks: [{{name: {prefix}net}}]
          mounts: [{{type: volume, source: {prefix}data, target: /data}}]
          secrets: [{{name: token, env: {prefix.upper().replace("-", "_")}TOKEN}}]
        """)


def _apply(engine: SwarmEngine, text: str, monkeypatch: pytest.MonkeyPatch, prefix: str, secret: str) -> Any:
    monkeypatch.setenv(f"{prefix.upper().replace('-', '_')}TOKEN", secret)
    desired = manifests.load_sources([("stack.yaml", text)])
    return operations.apply_desired(engine, desired, planning.Options(), parallelism=8)


def _service(manager: docker.DockerClient, name: str) -> dict[str, Any]:
    return dict(manager.api.inspect_service(name))


def _running_tasks(manager: docker.DockerClient, service: str) -> list[dict[str, Any]]:
    tasks = manager.api.tasks(filters={"service": service, "desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def test_replicas_are_one_service_spread_over_both_nodes_and_scaling_touches_no_running_task(
    engine: SwarmEngine, manager: docker.DockerClient, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied = _apply(engine, _stack(prefix, replicas=3), monkeypatch, prefix, "one")
    assert applied.outcome.ok, applied.outcome.summary()
    service = _service(manager, f"{prefix}web")
    assert service["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
    assert [s["Spec"]["Name"] for s in manager.api.services(filters={"name": prefix})] == [f"{prefix}web"]
    tasks = _running_tasks(manager, f"{prefix}web")
    assert len(tasks) == 3
    assert len({t["NodeID"] for t in tasks}) == 2, "the replicas run on both nodes"
    actual = engine.observe()
    assert {n for n in actual.containers if n.startswith(prefix)} == {f"{prefix}web-{i}" for i in (1, 2, 3)}
    assert all(actual.containers[f"{prefix}web-{i}"].health == "healthy" for i in (1, 2, 3))

    before = {t["ID"] for t in tasks}
    applied = _apply(engine, _stack(prefix, replicas=4), monkeypatch, prefix, "one")
    assert [c.change for c in applied.plan.changes] == ["create"], applied.plan.render()
    polling.eventually(lambda: len(_running_tasks(manager, f"{prefix}web")) == 4, timeout=60, what="4 tasks")
    assert before <= {t["ID"] for t in _running_tasks(manager, f"{prefix}web")}, "no running task was replaced"

    applied = _apply(engine, _stack(prefix, replicas=2), monkeypatch, prefix, "one")
    assert applied.outcome.ok, applied.outcome.summary()
    assert sorted(c.name for c in applied.plan.changes) == [f"{prefix}web-3", f"{prefix}web-4"]
    assert _service(manager, f"{prefix}web")["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
    polling.eventually(lambda: len(_running_tasks(manager, f"{prefix}web")) == 2, timeout=60, what="2 tasks")
    assert operations.refresh_and_plan(engine, manifests.load_sources([("s.yaml", _stack(prefix, replicas=2))]),
                                       planning.Options())[0].converged  # fmt: skip


def test_a_change_is_a_rolling_update_and_a_failing_one_is_rolled_back_by_swarm(
    engine: SwarmEngine, manager: docker.DockerClient, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _apply(engine, _stack(prefix, replicas=2), monkeypatch, prefix, "one").outcome.ok
    service_id = _service(manager, f"{prefix}web")["ID"]
    serving = {t["ID"] for t in _running_tasks(manager, f"{prefix}web")}

    failed = _apply(engine, _stack(prefix, replicas=2, image=swarm_support.UNHEALTHY), monkeypatch, prefix, "one")
    assert not failed.outcome.ok
    errors_seen = " ".join(r.error or "" for r in failed.outcome.results)
    assert "Swarm rolled the update of service" in errors_seen, errors_seen
    after = _service(manager, f"{prefix}web")
    assert after["ID"] == service_id
    assert after["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == swarm_support.HEALTHY
    assert serving == {t["ID"] for t in _running_tasks(manager, f"{prefix}web")}, "the old tasks kept serving"
    assert sorted(members.read(after["Spec"]["Labels"])) == [f"{prefix}web-1", f"{prefix}web-2"]

    # A good change (the secret's content) rolls forward: new tasks of the same service.
    rolled = _apply(engine, _stack(prefix, replicas=2), monkeypatch, prefix, "two")
    assert rolled.outcome.ok, [r.error for r in rolled.outcome.results if r.error]
    assert _service(manager, f"{prefix}web")["ID"] == service_id
    assert not serving & {t["ID"] for t in _running_tasks(manager, f"{prefix}web")}


def test_a_secret_is_a_swarm_secret_named_by_its_content_and_the_old_one_goes(
    engine: SwarmEngine, manager: docker.DockerClient, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _apply(engine, _stack(prefix, replicas=1), monkeypatch, prefix, "first-value").outcome.ok
    first = [s["Spec"]["Name"] for s in manager.api.secrets(filters={"name": f"{prefix}s_secret_token"})]
    assert len(first) == 1
    assert "first-value" in "".join(line.text for line in engine.logs(f"{prefix}web"))

    assert _apply(engine, _stack(prefix, replicas=1), monkeypatch, prefix, "second-value").outcome.ok
    second = [s["Spec"]["Name"] for s in manager.api.secrets(filters={"name": f"{prefix}s_secret_token"})]
    assert len(second) == 1 and second != first, "a new content is a new secret, the old one is removed"
    template = _service(manager, f"{prefix}web")["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert [s["SecretName"] for s in template["Secrets"]] == second
    assert "second-value" not in str(_service(manager, f"{prefix}web")), "the value is in no label or spec"


def test_a_volume_is_made_with_its_labels_on_each_node_that_runs_a_task(
    engine: SwarmEngine,
    manager: docker.DockerClient,
    worker: docker.DockerClient,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _apply(engine, _stack(prefix, replicas=2), monkeypatch, prefix, "one").outcome.ok
    for client in (manager, worker):
        volume = client.api.inspect_volume(f"{prefix}data")
        assert volume["Labels"]["purpose"] == "test" and volume["Labels"]["reconciler.stack"] == f"{prefix}s"


def test_delete_removes_the_services_networks_and_secrets(
    engine: SwarmEngine, manager: docker.DockerClient, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _apply(engine, _stack(prefix, replicas=2), monkeypatch, prefix, "one").outcome.ok
    deleted = operations.delete_stacks(engine, [f"{prefix}s"], prune_volumes=True, parallelism=8)
    assert deleted.outcome.ok, [r.error for r in deleted.outcome.results if r.error]
    assert manager.api.services(filters={"name": prefix}) == []
    assert manager.api.secrets(filters={"name": f"{prefix}s_"}) == []
    polling.eventually(
        lambda: not [n for n in manager.api.networks() if n["Name"].startswith(prefix)], timeout=30,
        what="the stack's networks to go",
    )  # fmt: skip
    with pytest.raises(errors.NothingNamed):
        operations.delete_stacks(engine, [f"{prefix}s"], prune_volumes=True, parallelism=8)


def test_what_swarm_cannot_do_is_refused_and_nothing_is_made(
    engine: SwarmEngine, manager: docker.DockerClient, prefix: str
) -> None:
    text = textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: {prefix}priv, stack: {prefix}s}}
        spec: {{image: {swarm_support.BUSYBOX}, privileged: true, ports: ["127.0.0.1:8080:80"]}}
        """)
    applied = operations.apply_desired(engine, manifests.load_sources([("s.yaml", text)]), planning.Options(),
                                       parallelism=4)  # fmt: skip
    error = next(r.error for r in applied.outcome.results if r.error)
    assert "no Swarm equivalent: privileged" in error and "127.0.0.1" in error
    assert manager.api.services(filters={"name": prefix}) == []


def test_a_service_of_another_stack_is_a_conflict(
    engine: SwarmEngine, manager: docker.DockerClient, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _apply(engine, _stack(prefix, replicas=1), monkeypatch, prefix, "one").outcome.ok
    other = _stack(prefix, replicas=1).replace(f"stack: {prefix}s", f"stack: {prefix}o")
    with pytest.raises(errors.PlanError, match="belongs to stack"):
        _apply(engine, other, monkeypatch, prefix, "one")


def test_exec_and_stats_reach_a_task_on_a_worker_through_its_labelled_dockerd(
    engine: SwarmEngine, swarm: swarm_support.Swarm, manager: docker.DockerClient, worker: docker.DockerClient,
    prefix: str,
) -> None:  # fmt: skip
    name = f"{prefix}far"
    request = suite.container_request(
        name, swarm_support.BUSYBOX, resources={"memory": "64Mi"},
        placement={"constraints": [f"node.hostname=={swarm.worker.netns}"]},
    )  # fmt: skip
    engine.pull_image(swarm_support.BUSYBOX)
    engine.create_container(request)
    engine.start_container(name)
    (task,) = manager.api.tasks(filters={"service": name, "desired-state": "running"})
    assert task["NodeID"] == worker.info()["Swarm"]["NodeID"]
    # A container's hostname is its id's first 12 digits: the exec ran in the worker's container.
    (container,) = swarm_support.task_containers(worker, name)
    assert not swarm_support.task_containers(manager, name)
    ran = engine.exec(name, ["hostname"])
    assert (ran.exit_code, ran.stdout.decode().strip()) == (0, container[:12])
    reading = engine.stats(name)
    assert reading.pids >= 1 and reading.memory_limit == 64 * 1024 * 1024
    swarm_support.set_daemon_label(manager, swarm.worker, None)
    try:
        with pytest.raises(errors.RuntimeFailed, match="reconciler.docker-host"):
            engine.exec(name, ["true"])
    finally:
        swarm_support.set_daemon_label(manager, swarm.worker, swarm.worker.url)
