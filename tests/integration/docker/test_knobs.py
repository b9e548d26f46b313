"""The knobs real images need on Docker (issue 11, item 2): the same manifest fields as on the
native engine reach dockerd's HostConfig (its inspect is the oracle), and a few are checked from
inside the container: ulimits, /dev/shm's size, a sysctl, docker-init as pid 1, a device, extra
groups, the OOM score, a tmpfs that allows exec, shared IPC and pid, the image's stop signal."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import docker
import docker.errors
import pytest

from reconciler import manifests, plans
from reconciler.backends import docker as docker_backend
from tests.contract.suite import labels
from tests.support import polling

pytestmark = pytest.mark.integration

# The main process writes its limits down, then sleeps.
LIMITS = "ulimit -n > /tmp/limits.new; ulimit -Hn >> /tmp/limits.new; mv /tmp/limits.new /tmp/limits; exec sleep 300"


def create(engine: docker_backend.DockerEngine, image: str, name: str, **spec: object) -> None:
    document = {"image": image, "command": ["sleep", "300"], **spec}
    engine.pull_image(image)
    request = plans.ContainerRequest(name=name, spec=manifests.container_spec_from_document(document), env={},
                                     labels=labels("knobs", "Container"))  # fmt: skip
    engine.create_container(request)
    engine.start_container(name)


def run(engine: docker_backend.DockerEngine, name: str, script: str) -> str:
    result = engine.exec(name, ["sh", "-c", script])
    assert result.exit_code == 0, (script, result)
    return result.stdout.decode()


def test_knobs_reach_the_host_config_and_the_container(
    engine: docker_backend.DockerEngine, client: docker.DockerClient, image: str, prefix: str, tmp_path: Path
) -> None:
    name = f"{prefix}knobs"
    profile = tmp_path / "allow.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    create(engine, image, name, command=["sh", "-c", LIMITS], ulimits={"nofile": {"soft": 1024, "hard": 4096}},
           shmSize="32Mi",
           sysctls={"net.core.somaxconn": "1234"}, init=True, oomScoreAdj=123, groupAdd=["nogroup", "1234"],
           devices=["/dev/zero:/dev/myzero:r"], deviceCgroupRules=["c 1:9 rwm"],
           securityOpt=["no-new-privileges", f"seccomp={profile}", "apparmor=unconfined"], cpuset="0",
           cpuShares=512, memoryReservation="32Mi", ipc="shareable",
           mounts=[{"type": "tmpfs", "target": "/scratch", "options": ["exec"]}])  # fmt: skip
    host = client.api.inspect_container(name)["HostConfig"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 4096}]
    assert (host["ShmSize"], host["Sysctls"], host["Init"]) == (32 * 1024 * 1024, {"net.core.somaxconn": "1234"}, True)
    assert host["Devices"] == [{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/myzero", "CgroupPermissions": "r"}]
    assert host["DeviceCgroupRules"] == ["c 1:9 rwm"]
    assert host["SecurityOpt"][0] == "no-new-privileges:true" and host["SecurityOpt"][2] == "apparmor=unconfined"
    assert json.loads(host["SecurityOpt"][1].removeprefix("seccomp=")) == {"defaultAction": "SCMP_ACT_ALLOW"}
    assert (host["OomScoreAdj"], host["GroupAdd"], host["IpcMode"]) == (123, ["nogroup", "1234"], "shareable")
    assert (host["CpusetCpus"], host["CpuShares"], host["MemoryReservation"]) == ("0", 512, 32 * 1024 * 1024)
    assert host["Tmpfs"] == {"/scratch": "exec"}
    # Inside, as on the native engine.
    # The container's own processes (runc 1.1's exec raises its soft RLIMIT_NOFILE to the hard one,
    # so an exec's `ulimit -n` is not what the container runs with, with Docker too).
    polling.eventually(
        lambda: engine.exec(name, ["test", "-s", "/tmp/limits"]).exit_code == 0, what="the limits written"
    )
    assert run(engine, name, "cat /tmp/limits") == "1024\n4096\n"
    assert run(engine, name, "grep 'open files' /proc/1/limits").split()[3:5] == ["1024", "4096"]
    assert run(engine, name, "df -k /dev/shm | tail -n1").split()[1] == "32768"
    assert run(engine, name, "cat /proc/sys/net/core/somaxconn") == "1234\n"
    assert run(engine, name, "tr '\\0' ' ' < /proc/1/cmdline").startswith("/sbin/docker-init -- sh -c ")
    assert run(engine, name, "cat /proc/1/oom_score_adj") == "123\n"
    assert {"65534", "1234"} <= set(run(engine, name, "grep ^Groups: /proc/1/status").split()[1:])
    assert run(engine, name, "grep ^NoNewPrivs: /proc/1/status").split()[1] == "1"
    assert run(engine, name, "head -c 3 /dev/myzero | wc -c").strip() == "3"
    assert run(engine, name, "printf '#!/bin/sh\\necho ran\\n' > /scratch/x && chmod +x /scratch/x && /scratch/x") == (
        "ran\n"
    )
    # Another container in its IPC and pid namespaces.
    joiner = f"{prefix}joiner"
    create(engine, image, joiner, ipc=f"container:{name}", pid=f"container:{name}", command=["sleep", "301"])
    namespace = "readlink /proc/self/ns/ipc"
    assert run(engine, joiner, namespace) == run(engine, name, namespace)
    assert "sleep 300" in run(engine, joiner, "ps -o args")
    run(engine, name, "echo shared > /dev/shm/segment")
    assert run(engine, joiner, "cat /dev/shm/segment") == "shared\n"


def test_the_image_stop_signal_is_used_when_the_manifest_has_none(
    engine: docker_backend.DockerEngine, client: docker.DockerClient, image: str, prefix: str
) -> None:
    reference = f"reconciler-test/stopsignal:{prefix.rstrip('-')}"
    dockerfile = f"FROM {image}\nSTOPSIGNAL SIGQUIT\n".encode()
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=reference, rm=True, forcerm=True)
    try:
        name = f"{prefix}stopsig"
        script = "trap 'exit 7' QUIT; touch /tmp/ready; while :; do sleep 0.1; done"
        create(engine, reference, name, command=["sh", "-c", script])
        polling.eventually(lambda: engine.exec(name, ["test", "-e", "/tmp/ready"]).exit_code == 0, what="the trap")
        engine.stop_container(name, timeout=10)
        assert client.api.inspect_container(name)["State"]["ExitCode"] == 7
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(f"{prefix}stopsig", force=True)
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_image(reference, force=True)
