"""The knobs real images need (issue 11, item 2): how the manifest spells them, what is refused
(positioned, with what to write instead), what the engines are asked for, and that each enters
the spec hash (a change recreates the container)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler import errors, hashing, manifests, plans
from reconciler.backends.docker import configs
from reconciler.backends.native import bundles, images
from tests.unit import helpers
from tests.unit.test_planner_golden import STACK

HEAD = """\
apiVersion: reconciler/v1
kind: Container
metadata: {name: app}
spec:
  image: busybox
"""


def problems(spec: str) -> list[str]:
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load_text(HEAD + textwrap.indent(textwrap.dedent(spec), "  "), "knobs.yaml")
    return [d.render() for d in caught.value.diagnostics]


def spec_of(**fields: object) -> manifests.ContainerSpec:
    return manifests.container_spec_from_document({"image": "busybox", "command": ["sleep", "1"], **fields})


def test_each_mistake_is_positioned_with_what_to_write() -> None:
    found = problems("""\
        ulimits:
          nofiles: 1024
          nproc: {soft: 10, hard: 5}
        shmSize: 64 apples
        devices: [dev/fuse, "/dev/sda:/dev/xvda:rwx"]
        deviceCgroupRules: ["c 10-229 rwm"]
        securityOpt: [label=type:x, "seccomp=profile.json", "no-new-privileges:maybe"]
        oomScoreAdj: 2000
        ipc: shared
        pid: shareable
        cpuset: 3-1
        cpuShares: 1
        mounts:
          - {type: tmpfs, target: /scratch, options: [exec, noexec]}
        """)
    assert found == [
        "knobs.yaml:7:14: spec.ulimits.nofiles.[key]: 'nofiles' is not a ulimit; one of as, core, cpu, data, "
        "fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack",
        "knobs.yaml:8:12: spec.ulimits.nproc: the soft limit (10) must not exceed the hard limit (5)",
        "knobs.yaml:9:12: spec.shmSize: '64 apples' is not a size; use e.g. 64Mi, 512M, 1Gi or a number of bytes",
        "knobs.yaml:10:13: spec.devices[0].source: 'dev/fuse' must be an absolute path",
        "knobs.yaml:10:23: spec.devices[1].permissions: 'rwx': permissions are r, w and m (mknod), each at most once",
        "knobs.yaml:11:23: spec.deviceCgroupRules[0]: 'c 10-229 rwm' is not a device cgroup rule: "
        "write e.g. 'c 10:229 rwm' or 'b 8:* r'",
        "knobs.yaml:12:17: spec.securityOpt[0]: 'label=type:x' is not a security option: write "
        "no-new-privileges[:true|false], seccomp=unconfined|<profile file>, or apparmor=<profile>|unconfined",
        "knobs.yaml:12:31: spec.securityOpt[1]: 'seccomp=profile.json': write seccomp=unconfined or "
        "seccomp=<absolute path of a profile file>",
        "knobs.yaml:12:55: spec.securityOpt[2]: 'no-new-privileges:maybe': no-new-privileges takes true or false",
        "knobs.yaml:13:16: spec.oomScoreAdj: Input should be less than or equal to 1000",
        "knobs.yaml:14:8: spec.ipc: 'shared': ipc must be private, shareable, host or container:NAME",
        "knobs.yaml:15:8: spec.pid: 'shareable': pid must be private, host or container:NAME",
        "knobs.yaml:16:11: spec.cpuset: '3-1': the range 3-1 ends before it starts",
        "knobs.yaml:17:14: spec.cpuShares: Input should be greater than or equal to 2",
        "knobs.yaml:19:48: spec.mounts[0].options: exec and noexec contradict each other",
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sysctls: {kernel.panic: 1}", "sysctl kernel.panic is not namespaced"),
        ("sysctls: {vm.swappiness: 1}", "sysctl vm.swappiness is not namespaced"),
        ("networkMode: host\nsysctls: {net.core.somaxconn: 1024}", "cannot be set with networkMode host"),
        ("ipc: host\nsysctls: {kernel.shmmax: 1024}", "sysctl kernel.shmmax cannot be set with ipc host"),
        ("ipc: 'container:db'\nsysctls: {fs.mqueue.msg_max: 10}", "cannot be set with ipc container:db"),
        ("memoryReservation: 64Mi\nresources: {memory: 32Mi}", "memoryReservation must not exceed"),
        ("securityOpt: [no-new-privileges, 'no-new-privileges:false']", "no-new-privileges is given twice"),
    ],
)
def test_what_docker_refuses_is_refused_in_place(spec: str, message: str) -> None:
    (found,) = problems(spec)
    assert found.startswith("knobs.yaml:") and message in found, found


def test_a_namespace_of_an_undeclared_container_is_named() -> None:
    (found,) = problems("ipc: 'container:nowhere'")
    assert found == "knobs.yaml:6:8: spec.ipc: container 'nowhere' is not declared"


def test_short_forms_read_as_docker_reads_them() -> None:
    spec = spec_of(
        ulimits={"nofile": 65536, "nproc": {"soft": 10, "hard": 20}, "memlock": {"soft": -1, "hard": -1}},
        devices=["/dev/fuse", "/dev/sda:/dev/xvda:rwm", "/dev/sdb:r", "/dev/sdc:/dev/c"],
        securityOpt=["no-new-privileges", "seccomp:unconfined", "apparmor:unconfined"],
        sysctls={"net.core.somaxconn": 1024, "kernel.shmmax": "1000000"},
        groupAdd=["audio", 1234],
        shmSize="128m",
    )
    assert (spec.ulimits["nofile"].soft, spec.ulimits["nofile"].hard) == (65536, 65536)
    assert [(d.source, d.target, d.permissions) for d in spec.devices] == [
        ("/dev/fuse", None, "rwm"), ("/dev/sda", "/dev/xvda", "rwm"), ("/dev/sdb", None, "r"),
        ("/dev/sdc", "/dev/c", "rwm"),
    ]  # fmt: skip
    assert spec.security_opt == ["no-new-privileges:true", "seccomp=unconfined", "apparmor=unconfined"]
    assert spec.sysctls == {"net.core.somaxconn": "1024", "kernel.shmmax": "1000000"}
    assert spec.group_add == ["audio", "1234"]
    assert spec.shm_size == 128 * 1024 * 1024


@pytest.mark.parametrize(
    "change",
    [
        {"ulimits": {"nofile": 1024}},
        {"shmSize": "128Mi"},
        {"sysctls": {"net.core.somaxconn": "512"}},
        {"init": True},
        {"devices": ["/dev/fuse"]},
        {"deviceCgroupRules": ["c 10:229 rwm"]},
        {"securityOpt": ["no-new-privileges"]},
        {"oomScoreAdj": 100},
        {"groupAdd": ["audio"]},
        {"ipc": "shareable"},
        {"pid": "host"},
        {"cpuset": "0"},
        {"memoryReservation": "32Mi"},
        {"cpuShares": 512},
        {"mounts": [{"type": "tmpfs", "target": "/t", "options": ["exec"]}]},
    ],
)
def test_each_knob_changes_the_spec_hash(change: dict[str, Any]) -> None:
    def hashed(spec: dict[str, Any]) -> str:
        document = {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": "app"},
                    "spec": {"image": "busybox", "mounts": [{"type": "tmpfs", "target": "/t"}]} | spec}  # fmt: skip
        return hashing.container_hash(manifests.load_text(json.dumps(document)).containers["app"])

    assert hashed({}) != hashed(change)


# ---------------------------------------------------------------------------------------------
# What the engines are asked for
# ---------------------------------------------------------------------------------------------


def docker_host(spec: manifests.ContainerSpec) -> dict[str, Any]:
    request = plans.ContainerRequest(name="app", spec=spec, env={}, labels={})
    return configs.container_config(request)


def test_docker_gets_each_knob_in_its_host_config(tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    spec = spec_of(
        ulimits={"nofile": {"soft": 1024, "hard": 4096}}, shmSize="32Mi", sysctls={"net.core.somaxconn": "512"},
        init=True, devices=["/dev/fuse", "/dev/zero:/dev/myzero:r"], deviceCgroupRules=["c 10:229 rwm"],
        securityOpt=["no-new-privileges", f"seccomp={profile}", "apparmor=unconfined"], oomScoreAdj=-10,
        groupAdd=["audio"], ipc="shareable", pid="container:peer", cpuset="0", memoryReservation="16Mi",
        cpuShares=512, mounts=[{"type": "tmpfs", "target": "/t", "size": "1Mi", "mode": 0o1777,
                                "options": ["exec", "nosuid"]}],
    )  # fmt: skip
    config = docker_host(spec)
    host = config["HostConfig"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 4096}]
    assert host["ShmSize"] == 32 * 1024 * 1024
    assert host["Sysctls"] == {"net.core.somaxconn": "512"}
    assert host["Init"] is True
    assert host["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
        {"PathOnHost": "/dev/zero", "PathInContainer": "/dev/myzero", "CgroupPermissions": "r"},
    ]
    assert host["DeviceCgroupRules"] == ["c 10:229 rwm"]
    assert host["SecurityOpt"] == [
        "no-new-privileges:true", 'seccomp={"defaultAction": "SCMP_ACT_ALLOW"}', "apparmor=unconfined",
    ]  # fmt: skip
    assert (host["OomScoreAdj"], host["GroupAdd"], host["IpcMode"], host["PidMode"]) == (
        -10, ["audio"], "shareable", "container:peer",
    )  # fmt: skip
    assert (host["CpusetCpus"], host["MemoryReservation"], host["CpuShares"]) == ("0", 16 * 1024 * 1024, 512)
    assert host["Tmpfs"] == {"/t": "size=1048576,mode=1777,exec,nosuid"}
    assert all(mount["Target"] != "/t" for mount in host["Mounts"])


def test_docker_without_knobs_sends_none_of_them() -> None:
    host = docker_host(spec_of())["HostConfig"]
    for key in ("Ulimits", "ShmSize", "Sysctls", "Init", "Devices", "DeviceCgroupRules", "SecurityOpt",
                "OomScoreAdj", "GroupAdd", "IpcMode", "PidMode", "CpusetCpus", "MemoryReservation", "CpuShares",
                "Tmpfs"):  # fmt: skip
        assert key not in host, key


def test_docker_reads_a_missing_seccomp_profile_as_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(errors.RuntimeFailed, match="seccomp profile .*missing.json"):
        docker_host(spec_of(securityOpt=[f"seccomp={tmp_path}/missing.json"]))


ENVIRONMENT = bundles.Environment(container_id="0" * 64, rootfs="/nonexistent")


def native_config(spec: manifests.ContainerSpec, image: images.ImageConfig | None = None) -> dict[str, Any]:
    request = plans.ContainerRequest(name="app", spec=spec, env={}, labels={})
    return bundles.build_config(request, image or images.ImageConfig(), ENVIRONMENT)


def test_native_maps_each_knob_into_the_runtime_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundles, "apparmor_enabled", lambda: True)
    spec = spec_of(
        ulimits={"nofile": {"soft": 1024, "hard": 4096}, "memlock": -1}, shmSize="32Mi",
        sysctls={"net.core.somaxconn": "512"}, oomScoreAdj=-10, groupAdd=["7"], cpuset="0",
        memoryReservation="16Mi", cpuShares=512, deviceCgroupRules=["c 10:* rm"],
        securityOpt=["no-new-privileges", "apparmor=my-profile"],
        mounts=[{"type": "tmpfs", "target": "/t", "options": ["exec", "nodev"]}],
    )  # fmt: skip
    config = native_config(spec)
    process, linux = config["process"], config["linux"]
    assert process["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
        {"type": "RLIMIT_MEMLOCK", "soft": 2**64 - 1, "hard": 2**64 - 1},
    ]
    shm = next(m for m in config["mounts"] if m["destination"] == "/dev/shm")
    assert f"size={32 * 1024 * 1024}" in shm["options"]
    assert linux["sysctl"]["net.core.somaxconn"] == "512"
    assert process["oomScoreAdj"] == -10 and 7 in process["user"]["additionalGids"]
    assert process["noNewPrivileges"] is True and process["apparmorProfile"] == "my-profile"
    assert linux["resources"]["cpu"]["cpus"] == "0" and linux["resources"]["cpu"]["shares"] == 512
    assert linux["resources"]["memory"]["reservation"] == 16 * 1024 * 1024
    assert linux["resources"]["devices"][-1] == {"allow": True, "type": "c", "major": 10, "access": "rm"}
    tmpfs = next(m for m in config["mounts"] if m["destination"] == "/t")
    assert tmpfs["options"][:3] == ["exec", "nosuid", "nodev"]


def test_native_ignores_an_apparmor_profile_where_the_kernel_has_no_apparmor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundles, "APPARMOR", Path("/nonexistent/apparmor/enabled"))
    assert "apparmorProfile" not in native_config(spec_of(securityOpt=["apparmor=my-profile"]))["process"]


def test_native_seccomp_unconfined_drops_the_filter_and_a_profile_file_replaces_it(tmp_path: Path) -> None:
    assert "seccomp" in native_config(spec_of())["linux"]
    assert "seccomp" not in native_config(spec_of(securityOpt=["seccomp=unconfined"]))["linux"]
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        ],
    }))  # fmt: skip
    seccomp = native_config(spec_of(securityOpt=[f"seccomp={profile}"]))["linux"]["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO" and seccomp["defaultErrnoRet"] == 1
    assert [call["names"] for call in seccomp["syscalls"]] == [["read", "write"], ["ptrace"]]
    assert seccomp["architectures"][0] in ("SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64")
    admin = native_config(spec_of(securityOpt=[f"seccomp={profile}"], capAdd=["SYS_ADMIN"]))["linux"]["seccomp"]
    assert [call["names"] for call in admin["syscalls"]] == [["read", "write"], ["mount"]]


def test_native_refuses_a_profile_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(errors.RuntimeFailed, match="seccomp profile .*bad.json"):
        native_config(spec_of(securityOpt=[f"seccomp={tmp_path}/bad.json"]))


def test_native_ipc_and_pid_host_leave_those_namespaces_out() -> None:
    config = native_config(spec_of(ipc="host", pid="host"))
    kinds = [n["type"] for n in config["linux"]["namespaces"]]
    assert "ipc" not in kinds and "pid" not in kinds
    shm = next(m for m in config["mounts"] if m["destination"] == "/dev/shm")
    assert shm["type"] == "bind" and shm["source"] == "/dev/shm"


def test_native_init_runs_tini_as_docker_init() -> None:
    config = native_config(spec_of(init=True, command=["sleep", "5"]))
    assert config["process"]["args"] == ["/sbin/docker-init", "--", "sleep", "5"]
    init = next(m for m in config["mounts"] if m["destination"] == "/sbin/docker-init")
    assert init["source"] in ("/usr/bin/tini-static", "/usr/bin/tini") and "ro" in init["options"]


def test_native_init_without_tini_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundles, "INIT_BINARIES", ("/nonexistent/tini-static",))
    with pytest.raises(errors.RuntimeFailed, match="apt-get install tini"):
        native_config(spec_of(init=True))


def test_stop_signal_comes_from_the_image_when_the_manifest_has_none() -> None:
    image = images.ImageConfig(stop_signal="SIGQUIT")
    assert bundles.stop_signal(spec_of(), image) == "SIGQUIT"
    assert bundles.stop_signal(spec_of(stopSignal="INT"), image) == "SIGINT"
    # On docker the manifest's is sent only when given: dockerd falls back to the image's itself.
    assert docker_host(spec_of())["StopSignal"] is None


def test_a_container_in_another_containers_ipc_or_pid_namespace_is_recreated_with_it() -> None:
    engine = helpers.new_engine()
    text = STACK
    for name, field in (("shm", "ipc"), ("tracer", "pid")):
        text += f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: shop}}\n"
        text += f"spec: {{image: {helpers.IMAGE}, {field}: 'container:db'}}\n"
    desired = helpers.load(text)
    helpers.apply(engine, desired)
    plan = helpers.plan_for(engine, desired, force_recreate=frozenset({"db"}))
    assert {(c.name, c.reason) for c in plan.changes} == {
        ("db", "forced (--force-recreate)"), ("shm", "container db is recreated (ipc container:db)"),
        ("tracer", "container db is recreated (pid container:db)"),
    }  # fmt: skip
    # And each starts after it.
    assert manifests.container_dependencies(desired.containers["shm"]) == ["db"]


def test_a_namespace_of_a_replicated_service_must_name_one_replica() -> None:
    text = f"""\
apiVersion: reconciler/v1
kind: Container
metadata: {{name: db}}
spec: {{image: {helpers.IMAGE}, replicas: 2, ipc: shareable}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: shm}}
spec: {{image: {helpers.IMAGE}, ipc: 'container:db', pid: 'container:db'}}
"""
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load_text(text, "knobs.yaml")
    assert [d.render().split(": ", 1)[1] for d in caught.value.diagnostics] == [
        "spec.ipc: ipc container: needs one container, and 'db' has replicas; name one, e.g. db-1",
        "spec.pid: pid container: needs one container, and 'db' has replicas; name one, e.g. db-1",
    ]


def test_an_in_place_update_of_the_limits_keeps_cpuset_shares_and_reservation() -> None:
    config = native_config(spec_of(cpuset="0", cpuShares=512, memoryReservation="16Mi"))
    updated = bundles.with_resources(config, manifests.Resources(memory=64 * 1024 * 1024, cpus=0.5))
    resources = updated["linux"]["resources"]
    assert resources["cpu"] == {"quota": 50_000, "period": 100_000, "cpus": "0", "shares": 512}
    assert resources["memory"] == {"limit": 64 * 1024 * 1024, "swap": 64 * 1024 * 1024, "reservation": 16 * 1024 * 1024}
