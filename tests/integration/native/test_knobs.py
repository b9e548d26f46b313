"""The knobs real images need on the native engine (issue 11, item 2), seen from inside real
containers: ulimits, /dev/shm's size, a sysctl, tini as pid 1, devices, extra groups, the OOM score,
a tmpfs that allows exec, cpuset/shares/reservation in the cgroup, no-new-privileges, seccomp
unconfined or from a file, shared IPC and pid namespaces, the host's pid namespace, and the
image's stop signal. Real runc, overlayfs and busybox; the engine fixture removes every container."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler import errors, manifests, plans
from reconciler.backends.native import engine as native_engine
from tests.contract import suite
from tests.support import images
from tests.support.polling import eventually

IMAGE = images.LOCAL_BUSYBOX
CGROUP = Path("/sys/fs/cgroup")

# The main process writes its limits down, then sleeps.
LIMITS = "ulimit -n > /tmp/limits.new; ulimit -Hn >> /tmp/limits.new; mv /tmp/limits.new /tmp/limits; exec sleep 300"


def create(engine: native_engine.NativeEngine, name: str, *, start: bool = True, **spec: object) -> None:
    document = {"image": IMAGE, "command": ["sleep", "300"], **spec}
    request = plans.ContainerRequest(name=name, spec=manifests.container_spec_from_document(document), env={},
                                     labels=suite.labels("knobs", "Container"))  # fmt: skip
    engine.create_container(request)
    if start:
        engine.start_container(name)


def run(engine: native_engine.NativeEngine, name: str, script: str) -> str:
    result = engine.exec(name, ["sh", "-c", script])
    assert result.exit_code == 0, (script, result)
    return result.stdout.decode()


def cgroup_value(engine: native_engine.NativeEngine, name: str, v1: tuple[str, str], v2: str) -> str:
    """A cgroup file of the container, on the host (cgroup v2's name, or v1's controller and name)."""
    path = str(engine.records.get(name).data["cgroups_path"]).lstrip("/")
    unified = (CGROUP / "cgroup.controllers").exists()
    return (CGROUP / path / v2 if unified else CGROUP / v1[0] / path / v1[1]).read_text().strip()


@pytest.mark.integration
def test_limits_devices_groups_and_init_are_seen_inside(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str
) -> None:
    name = f"{prefix}knobs"
    create(engine, name, command=["sh", "-c", LIMITS], ulimits={"nofile": {"soft": 1024, "hard": 4096}},
           shmSize="32Mi",
           sysctls={"net.core.somaxconn": "1234"}, init=True, oomScoreAdj=123, groupAdd=["nogroup", "1234"],
           devices=["/dev/zero:/dev/myzero:r"], securityOpt=["no-new-privileges"], cpuset="0",
           cpuShares=512, memoryReservation="32Mi",
           mounts=[{"type": "tmpfs", "target": "/scratch", "options": ["exec"]}])  # fmt: skip
    # The container's own processes (runc 1.1's exec raises its soft RLIMIT_NOFILE to the hard one,
    # so an exec's `ulimit -n` is not what the container runs with, with Docker too).
    eventually(lambda: engine.exec(name, ["test", "-s", "/tmp/limits"]).exit_code == 0, what="the limits written")
    assert run(engine, name, "cat /tmp/limits") == "1024\n4096\n"
    assert run(engine, name, "grep 'open files' /proc/1/limits").split()[3:5] == ["1024", "4096"]
    assert run(engine, name, "df -k /dev/shm | tail -n1").split()[1] == "32768"
    assert run(engine, name, "cat /proc/sys/net/core/somaxconn") == "1234\n"
    assert run(engine, name, "tr '\\0' ' ' < /proc/1/cmdline").startswith("/sbin/docker-init -- sh -c ")
    assert "/sbin/docker-init" in run(engine, name, "ps -o pid,args | awk '$1 == 1'")
    assert run(engine, name, "cat /proc/1/oom_score_adj") == "123\n"
    groups = run(engine, name, "grep ^Groups: /proc/1/status").split()[1:]
    assert {"65534", "1234"} <= set(groups), groups
    assert run(engine, name, "grep ^NoNewPrivs: /proc/1/status").split()[1] == "1"
    assert run(engine, name, "grep ^Cpus_allowed_list: /proc/1/status").split()[1] == "0"
    assert run(engine, name, "head -c 3 /dev/myzero | wc -c").strip() == "3"
    assert run(engine, name, "printf '#!/bin/sh\\necho ran\\n' > /scratch/x && chmod +x /scratch/x && /scratch/x") == (
        "ran\n"
    )
    assert cgroup_value(engine, name, ("cpuset", "cpuset.cpus"), "cpuset.cpus") == "0"
    assert cgroup_value(engine, name, ("cpu", "cpu.shares"), "cpu.weight") in ("512", "20")
    reservation = cgroup_value(engine, name, ("memory", "memory.soft_limit_in_bytes"), "memory.low")
    assert reservation == str(32 * 1024 * 1024)
    # An in-place update of the limits keeps them, running and in the bundle of the next run.
    engine.update_container(name, manifests.Resources(memory=128 * 1024 * 1024))
    engine.stop_container(name, timeout=0)
    engine.start_container(name)
    assert cgroup_value(engine, name, ("cpuset", "cpuset.cpus"), "cpuset.cpus") == "0"
    assert cgroup_value(engine, name, ("memory", "memory.soft_limit_in_bytes"), "memory.low") == reservation


@pytest.mark.integration
def test_devices_and_device_cgroup_rules(loaded: Path, engine: native_engine.NativeEngine, prefix: str) -> None:
    if not Path("/dev/fuse").exists():
        pytest.fail("/dev/fuse is missing on this host (the fuse kernel module)")
    # 10:229 (fuse) is denied by default, as by Docker: neither the node nor a new one can be used.
    make_and_open = "mknod /tmp/f c 10 229 && exec 3<>/tmp/f && echo opened"
    create(engine, f"{prefix}plain")
    assert engine.exec(f"{prefix}plain", ["test", "-e", "/dev/fuse"]).exit_code != 0
    refused = engine.exec(f"{prefix}plain", ["sh", "-c", make_and_open])
    assert refused.exit_code != 0 and b"Operation not permitted" in refused.stderr, refused
    create(engine, f"{prefix}fuse", devices=["/dev/fuse"])
    assert run(engine, f"{prefix}fuse", "exec 3<>/dev/fuse && echo opened") == "opened\n"
    create(engine, f"{prefix}rule", deviceCgroupRules=["c 10:229 rwm"])
    assert run(engine, f"{prefix}rule", make_and_open) == "opened\n"
    with pytest.raises(errors.RuntimeFailed, match="device /dev/no-such-device"):
        create(engine, f"{prefix}nodev", devices=["/dev/no-such-device"])


@pytest.mark.integration
def test_seccomp_unconfined_and_a_profile_file(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    create(engine, f"{prefix}default")
    create(engine, f"{prefix}unconfined", securityOpt=["seccomp=unconfined"])
    # A user namespace needs no capability, only a filter that lets unshare through.
    refused = engine.exec(f"{prefix}default", ["unshare", "-U", "-r", "true"])
    assert refused.exit_code != 0 and b"Operation not permitted" in refused.stderr, refused
    assert engine.exec(f"{prefix}unconfined", ["unshare", "-U", "-r", "true"]).exit_code == 0
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }))  # fmt: skip
    create(engine, f"{prefix}profiled", securityOpt=[f"seccomp={profile}"])
    made = engine.exec(f"{prefix}profiled", ["mkdir", "/tmp/d"])
    assert made.exit_code != 0 and b"Operation not permitted" in made.stderr, made
    assert run(engine, f"{prefix}profiled", "touch /tmp/f && echo ok") == "ok\n"


@pytest.mark.integration
def test_ipc_and_pid_of_another_container(loaded: Path, engine: native_engine.NativeEngine, prefix: str) -> None:
    peer, joiner = f"{prefix}peer", f"{prefix}joiner"
    create(engine, peer, ipc="shareable", shmSize="16Mi", command=["sleep", "301"])
    create(engine, joiner, ipc=f"container:{peer}", pid=f"container:{peer}")
    namespace = "readlink /proc/self/ns/ipc"
    assert run(engine, joiner, namespace) == run(engine, peer, namespace)
    assert "sleep 301" in run(engine, joiner, "ps -o args")  # the peer's init, in the shared pid namespace
    # POSIX shared memory too: the joiner's /dev/shm is the peer's (shmSize its size), as with Docker.
    run(engine, peer, "echo shared > /dev/shm/segment")
    assert run(engine, joiner, "cat /dev/shm/segment") == "shared\n"
    assert run(engine, joiner, "df -k /dev/shm | tail -n1").split()[1] == "16384"
    # As Docker: only a shareable IPC namespace is joined, and only of a running container.
    create(engine, f"{prefix}private")
    with pytest.raises(errors.RuntimeFailed, match="not shareable"):
        create(engine, f"{prefix}joiner2", ipc=f"container:{prefix}private")
    engine.stop_container(peer, timeout=0)
    engine.stop_container(joiner, timeout=0)
    with pytest.raises(errors.RuntimeFailed, match=f"needs {peer} running"):
        engine.start_container(joiner)
    # Started again, the peer has a new init: the joiner follows it.
    engine.start_container(peer)
    engine.start_container(joiner)
    assert run(engine, joiner, namespace) == run(engine, peer, namespace)
    assert run(engine, joiner, "cat /dev/shm/segment") == "shared\n"  # the tmpfs outlives a stop
    # Removed, the peer's shared /dev/shm is unmounted with it.
    shm = engine.records.get(peer).directory / "shm"
    engine.remove_container(joiner)
    engine.remove_container(peer)
    assert not shm.exists()


@pytest.mark.integration
def test_host_pid_and_ipc_namespaces(loaded: Path, engine: native_engine.NativeEngine, prefix: str) -> None:
    create(engine, f"{prefix}hostpid", pid="host", ipc="host")
    assert run(engine, f"{prefix}hostpid", f"test -d /proc/{os.getpid()} && echo seen") == "seen\n"
    host_ipc = os.readlink("/proc/self/ns/ipc")
    assert run(engine, f"{prefix}hostpid", "readlink /proc/self/ns/ipc") == f"{host_ipc}\n"
    # A container may join one with the host's IPC namespace (as with Docker): the host's it is.
    create(engine, f"{prefix}viahost", ipc=f"container:{prefix}hostpid")
    assert run(engine, f"{prefix}viahost", "readlink /proc/self/ns/ipc") == f"{host_ipc}\n"


@pytest.mark.integration
def test_the_image_stop_signal_is_used_when_the_manifest_has_none(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str
) -> None:
    name = f"{prefix}stopsig"  # the test image's STOPSIGNAL is SIGQUIT
    create(engine, name, command=["sh", "-c", "trap 'exit 7' QUIT; touch /tmp/ready; while :; do sleep 0.1; done"])
    eventually(lambda: engine.exec(name, ["test", "-e", "/tmp/ready"]).exit_code == 0, what="the trap set")
    engine.stop_container(name, timeout=10)
    assert engine.observe().containers[name].exit_code == 7
