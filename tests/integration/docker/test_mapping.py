"""Every manifest field reaches Docker as written, and observe() reads the results back.

Engine-level tests: requests go straight to ``DockerEngine``; Docker's own inspect output is the
oracle (state first), then the ``Observed`` values the planner will see.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import docker
import pytest

from reconciler import engine as engine_mod
from reconciler import errors, manifests, observed, plans
from reconciler.backends import docker as docker_backend
from tests.contract.suite import labels
from tests.integration.docker import stacks
from tests.support import polling
from tests.support import registry as registries

pytestmark = pytest.mark.integration


def _request(
    name: str, stack: str, spec: dict[str, object], env: dict[str, str] | None = None
) -> plans.ContainerRequest:
    return plans.ContainerRequest(
        name=name,
        spec=manifests.container_spec_from_document(spec),
        env=env or {},
        labels={**labels(stack, "Container"), "tier": "front"},
    )


def _neighbours(engine: docker_backend.DockerEngine, prefix: str, image: str, third: int) -> None:
    """The networks, volume and ``volumesFrom`` source that :func:`_every_field` refers to."""
    engine.create_network(plans.NetworkRequest(f"{prefix}front", manifests.NetworkSpec(), labels("m", "Network")))
    engine.create_network(
        plans.NetworkRequest(
            f"{prefix}back",
            manifests.NetworkSpec(
                subnet=f"10.{third}.7.0/24",
                gateway=f"10.{third}.7.1",
                internal=True,
                options={"com.docker.network.bridge.enable_icc": "true"},
            ),
            labels("m", "Network"),
        )
    )
    engine.create_volume(
        plans.VolumeRequest(
            f"{prefix}data",
            manifests.VolumeSpec(labels={"backup": "daily"}),
            {**labels("m", "Volume"), "backup": "daily"},
        )
    )
    engine.create_container(_request(f"{prefix}seed", "m", {"image": image, "command": ["sleep", "3600"]}))


def _every_field(prefix: str, image: str, third: int, conf: Path) -> plans.ContainerRequest:
    """A request that sets every container field the manifest has."""
    return _request(f"{prefix}app", "m", {
        "image": image,
        "entrypoint": ["/bin/sh", "-c"],
        "command": ["exec sleep 3600"],
        "workingDir": "/tmp",
        "user": "65534:65534",
        "hostname": "apphost",
        "ports": [{"containerPort": 8080, "hostPort": registries.free_port(), "hostIP": "127.0.0.1"},
                  {"containerPort": 9090, "protocol": "udp"}],
        "networks": [{"name": f"{prefix}front", "aliases": ["app", "api"]},
                     {"name": f"{prefix}back", "ipv4Address": f"10.{third}.7.10"}],
        "mounts": [{"type": "volume", "source": f"{prefix}data", "target": "/data"},
                   {"type": "bind", "source": str(conf), "target": "/etc/app", "readOnly": True},
                   {"type": "tmpfs", "target": "/scratch", "size": "16Mi", "mode": 0o1777}],
        "volumesFrom": [f"{prefix}seed"],
        "logging": {"maxSize": "1Mi", "maxFiles": 3},
        "resources": {"memory": "48Mi", "cpus": 0.5, "pids": 64},
        "restart": {"policy": "on-failure", "maxRetries": 3},
        "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "timeout": "2s", "retries": 2, "startPeriod": "0s"},
        "stopSignal": "SIGINT",
        "stopTimeout": "3s",
        "readOnlyRootfs": True,
        "capAdd": ["NET_ADMIN"],
        "capDrop": ["MKNOD"],
    }, env={"A": "1", "B": "two words"})  # fmt: skip


def _assert_config(config: dict[str, Any], request: plans.ContainerRequest) -> None:
    assert config["Entrypoint"] == ["/bin/sh", "-c"] and config["Cmd"] == ["exec sleep 3600"]
    assert {"A=1", "B=two words"} <= set(config["Env"])
    assert (config["WorkingDir"], config["User"], config["Hostname"]) == ("/tmp", "65534:65534", "apphost")
    assert config["Labels"] == dict(request.labels)
    assert config["StopSignal"] == "SIGINT" and config["StopTimeout"] == 3
    assert config["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Timeout": 2_000_000_000,
                                     "Retries": 2}  # fmt: skip


def _assert_host_config(host: dict[str, Any], request: plans.ContainerRequest, prefix: str) -> None:
    port = request.spec.ports[0].host_port
    assert host["PortBindings"]["8080/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert "9090/udp" in host["PortBindings"]
    assert host["Memory"] == 48 * 1024 * 1024 == host["MemorySwap"]
    assert (host["CpuQuota"], host["CpuPeriod"], host["PidsLimit"]) == (50_000, 100_000, 64)
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert host["CapAdd"] == ["CAP_NET_ADMIN"] and host["CapDrop"] == ["CAP_MKNOD"]
    assert host["VolumesFrom"] == [f"{prefix}seed"]
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1048576", "max-file": "3"}}
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert mounts["/data"]["Source"] == f"{prefix}data" and mounts["/data"]["Type"] == "volume"
    assert mounts["/etc/app"]["ReadOnly"] is True and mounts["/etc/app"]["Type"] == "bind"
    assert mounts["/scratch"]["TmpfsOptions"] == {"SizeBytes": 16 * 1024 * 1024, "Mode": 0o1777}


def test_every_container_field_is_mapped(
    engine: docker_backend.DockerEngine, client: docker.DockerClient, image: str, prefix: str, tmp_path: Path
) -> None:
    image_id = engine.pull_image(image)
    third = random.randint(100, 250)  # a subnet of our own, unlikely to collide with a parallel run
    front, back, data = f"{prefix}front", f"{prefix}back", f"{prefix}data"
    _neighbours(engine, prefix, image, third)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.conf").write_text("setting=1\n")
    request = _every_field(prefix, image, third, tmp_path / "conf")
    container_id = engine.create_container(request)
    engine.start_container(request.name)

    inspected = client.api.inspect_container(container_id)
    _assert_config(inspected["Config"], request)
    _assert_host_config(inspected["HostConfig"], request, prefix)
    endpoints = inspected["NetworkSettings"]["Networks"]
    assert {"app", "api"} <= set(endpoints[front]["Aliases"])
    assert endpoints[back]["IPAddress"] == f"10.{third}.7.10"
    assert client.api.inspect_network(back)["Internal"] is True
    assert client.api.inspect_volume(data)["Labels"]["backup"] == "daily"
    # The process sees it all: the bind mount, the user, the read-only root.
    assert engine.exec(request.name, ["cat", "/etc/app/app.conf"]).stdout == b"setting=1\n"
    assert engine.exec(request.name, ["id", "-u"]).stdout == b"65534\n"
    assert engine.exec(request.name, ["touch", "/rootfs-is-read-only"]).exit_code != 0

    def healthy() -> observed.ObservedContainer | None:
        seen = engine.observe(images=[image]).containers[request.name]
        return seen if seen.health == "healthy" else None

    seen = polling.eventually(healthy)
    assert seen.container_id == container_id and seen.state == "running"
    assert seen.image == image and seen.image_id == image_id
    assert seen.networks == tuple(sorted((front, back)))
    assert seen.volumes == (data,)
    assert seen.resources == observed.ObservedResources(memory=48 * 1024 * 1024, cpus=0.5, pids=64)
    assert seen.started_at is not None and seen.finished_at is None and seen.exit_code is None
    network = engine.observe().networks[back]
    assert (network.subnet, network.gateway) == (f"10.{third}.7.0/24", f"10.{third}.7.1")


def test_controller_owned_restarts_leave_dockers_policy_off(
    engine: docker_backend.DockerEngine, client: docker.DockerClient, image: str, prefix: str
) -> None:
    engine.pull_image(image)
    for name, restart in (
        ("backoff", {"policy": "always", "backoff": {"initial": "1s"}}),
        ("unhealthy", {"policy": "on-failure", "onUnhealthy": True}),
        ("plain", {"policy": "unless-stopped"}),
    ):
        engine.create_container(_request(f"{prefix}{name}", "r", {"image": image, "restart": restart}))
    policy = {n: client.api.inspect_container(f"{prefix}{n}")["HostConfig"]["RestartPolicy"]["Name"]
              for n in ("backoff", "unhealthy", "plain")}  # fmt: skip
    assert policy == {"backoff": "no", "unhealthy": "no", "plain": "unless-stopped"}


def test_exit_code_restarts_and_oom_are_observed(engine: docker_backend.DockerEngine, image: str, prefix: str) -> None:
    engine.pull_image(image)
    engine.create_container(_request(f"{prefix}crash", "x", {
        "image": image, "command": ["sh", "-c", "exit 3"], "restart": {"policy": "on-failure", "maxRetries": 2},
    }))  # fmt: skip
    engine.create_container(_request(f"{prefix}hog", "x", {
        # `tail` of an endless line keeps allocating until the kernel's OOM killer ends it. The
        # pause first lets containerd register its OOM watcher: an OOM in the container's first
        # milliseconds can go unrecorded by dockerd (seen about one run in five).
        "image": image, "command": ["sh", "-c", "sleep 1; exec tail /dev/zero"], "resources": {"memory": "8Mi"},
    }))  # fmt: skip
    engine.start_container(f"{prefix}crash")
    engine.start_container(f"{prefix}hog")

    def settled() -> bool:
        containers = engine.observe().containers
        crash, hog = containers[f"{prefix}crash"], containers[f"{prefix}hog"]
        # dockerd records OOMKilled from the kernel's OOM event, which may land just after the exit.
        return crash.state == "exited" and crash.restart_count == 2 and hog.state == "exited" and hog.oom_killed

    polling.eventually(settled, timeout=60)
    containers = engine.observe().containers
    crash, hog = containers[f"{prefix}crash"], containers[f"{prefix}hog"]
    assert crash.exit_code == 3 and crash.finished_at is not None and crash.started_at is not None
    assert hog.oom_killed and hog.exit_code == 137, hog


def test_events_logs_and_limits_lifted(engine: docker_backend.DockerEngine, image: str, prefix: str) -> None:
    engine.pull_image(image)
    name = f"{prefix}ev"
    stop = threading.Event()
    seen: list[engine_mod.Event] = []

    def collect() -> None:
        seen.extend(engine.events(stop=stop))

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        engine.create_container(_request(name, "e", {
            "image": image, "command": ["sh", "-c", "echo one; sleep 0.2; echo two >&2; sleep 0.3; exit 4"],
            "resources": {"memory": "32Mi", "pids": 20},
        }))  # fmt: skip
        engine.update_container(name, manifests.Resources())  # lift every limit in place
        engine.start_container(name)
        polling.eventually(lambda: any(e.action == "die" and e.name == name for e in seen))
    finally:
        stop.set()
        collector.join(timeout=10)
    assert not collector.is_alive(), "events() did not return after stop was set"
    actions = [e.action for e in seen if e.name == name]
    assert actions[:3] == ["create", "start", "die"], actions
    assert next(e for e in seen if e.action == "die" and e.name == name).exit_code == 4

    lines = list(engine.logs(name))
    assert [(line.stream, line.text) for line in lines] == [("stdout", "one"), ("stderr", "two")]
    assert all(line.time > 0 for line in lines)
    assert [line.text for line in engine.logs(name, tail=1)] == ["two"]
    assert list(engine.logs(name, follow=True))[-1].text == "two"  # ends when the container has exited
    assert engine.observe().containers[name].resources == observed.ObservedResources()


def test_errors_are_translated(engine: docker_backend.DockerEngine, image: str, prefix: str) -> None:
    engine.pull_image(image)
    with pytest.raises(errors.NotFound):
        engine.create_container(_request(f"{prefix}novol", "x", {
            "image": image, "mounts": [{"type": "volume", "source": f"{prefix}nothing", "target": "/d"}],
        }))  # fmt: skip
    with pytest.raises(errors.NotFound):
        engine.create_container(_request(f"{prefix}noimg", "x", {"image": f"{image}-missing"}))
    with pytest.raises(errors.NotFound):
        engine.pull_image(f"{image}-missing", policy="Never")
    engine.create_container(_request(f"{prefix}idle", "x", {"image": image}))
    with pytest.raises(errors.RuntimeFailed, match="is not running"):
        engine.exec(f"{prefix}idle", ["true"])
    with pytest.raises(errors.NotFound):
        list(engine.logs(f"{prefix}absent"))
    engine.create_container(_request(f"{prefix}other", "x", {"image": image}))
    with pytest.raises(errors.Conflict):
        engine.rename_container(f"{prefix}idle", f"{prefix}other")


def test_unreachable_daemon_raises_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    with pytest.raises(errors.Unavailable, match="Docker daemon unreachable at unix://"):
        docker_backend.DockerEngine.from_env()


def test_exec_timeout_and_output(engine: docker_backend.DockerEngine, image: str, prefix: str) -> None:
    engine.pull_image(image)
    name = f"{prefix}busy"
    engine.create_container(_request(name, "x", {"image": image, "stopTimeout": "1s"}))
    engine.start_container(name)
    result = engine.exec(name, ["sh", "-c", "echo to-out; echo to-err >&2; exit 5"])
    assert (result.exit_code, result.stdout, result.stderr) == (5, b"to-out\n", b"to-err\n")
    with pytest.raises(errors.RuntimeFailed, match="did not finish within"):
        engine.exec(name, ["sleep", "5"], timeout=0.5)


def test_observe_scoped_to_stacks_inspects_only_those(
    engine: docker_backend.DockerEngine, image: str, prefix: str
) -> None:
    engine.pull_image(image)
    mine = engine.create_container(_request(f"{prefix}mine", f"{prefix}a", {"image": image, "resources": {"pids": 30}}))
    theirs = engine.create_container(
        _request(f"{prefix}theirs", f"{prefix}b", {"image": image, "resources": {"pids": 30}})
    )
    counter = stacks.CountingHTTP(engine)
    seen = engine.observe(stacks={f"{prefix}a"}).containers
    inspected = {path for method, path in counter.requests if method == "GET" and path.endswith("/json")}
    assert not any(theirs in path for path in inspected)
    assert any(mine in path for path in inspected)
    # Out of scope: ownership, identity and state still known (conflicts are still detected).
    other = seen[f"{prefix}theirs"]
    assert (other.container_id, other.stack, other.state, other.image) == (theirs, f"{prefix}b", "created", image)
    assert other.image_id.startswith("sha256:")
    assert seen[f"{prefix}mine"].resources.pids == 30


def test_inspects_are_cached_only_while_events_flow(
    engine: docker_backend.DockerEngine, client: docker.DockerClient, image: str, prefix: str
) -> None:
    """A daemon's observe reuses inspects while it consumes events; any event for the container
    (here a hand-made ``docker update``, which the container list does not show) makes it stale."""
    engine.pull_image(image)
    name = f"{prefix}cached"
    container_id = engine.create_container(_request(name, f"{prefix}s", {"image": image, "resources": {"pids": 30}}))
    counter = stacks.CountingHTTP(engine)

    def inspects() -> int:
        return sum(1 for method, path in counter.requests if method == "GET" and f"/containers/{container_id}/" in path)

    scope = {f"{prefix}s"}
    engine.observe(stacks=scope)
    engine.observe(stacks=scope)
    assert inspects() == 2, "without an event stream nothing may be cached"

    stop = threading.Event()
    seen: list[engine_mod.Event] = []
    collector = threading.Thread(target=lambda: seen.extend(engine.events(stop=stop)))
    collector.start()
    try:
        polling.eventually(lambda: engine.informer.live_streams == 1)
        counter.reset()
        engine.observe(stacks=scope)
        assert engine.observe(stacks=scope).containers[name].resources.pids == 30
        assert inspects() == 1, counter.requests

        def lists_in_two_observes() -> int:
            counter.reset()
            engine.observe(stacks=scope)
            engine.observe(stacks=scope)
            return sum(1 for _, path in counter.requests if path.startswith("/v") and "/containers/json" in path)

        # Without the cache every observe lists (2 a round). Any labelled container's event drops
        # the cached list (another test's container on a shared dockerd may send one), so some
        # round, not every one, must do with at most one list.
        rounds = [lists_in_two_observes() for _ in range(5)]
        assert min(rounds) <= 1, f"the container list is re-read while no event came: {rounds}"

        client.api.update_container(container_id, mem_limit="48m", memswap_limit=-1)  # by hand, not through us
        observed_memory = polling.eventually(
            lambda: engine.observe(stacks=scope).containers[name].resources.memory == 48 * 1024 * 1024
        )
        assert observed_memory
        engine.start_container(name)  # our own change forgets the cache too
        counter.reset()
        assert engine.observe(stacks=scope).containers[name].state == "running"
        assert inspects() == 1
    finally:
        stop.set()
        collector.join(timeout=10)
    assert not collector.is_alive()
    assert engine.informer.live_streams == 0 and not engine.informer.cached_inspects, (
        "a finished stream must leave no trusted cache"
    )
