"""OCI bundles: Docker's defaults, manifest overrides, and every config.json valid per the OCI schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing

from reconciler import errors, manifests, plans
from reconciler.backends.native import bundles, images

SCHEMA_DIR = Path("/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    if not (SCHEMA_DIR / "config-schema.json").exists():
        pytest.fail(
            f"OCI runtime-spec JSON Schema missing at {SCHEMA_DIR}: apt-get install golang-github-opencontainers-specs-dev"
        )
    resources = []
    for path in SCHEMA_DIR.glob("*.json"):
        contents = json.loads(path.read_text())
        resources.append(
            (
                path.name,
                referencing.Resource.from_contents(contents, default_specification=referencing.jsonschema.DRAFT4),
            )
        )
        resources.append(
            (
                path.as_uri(),
                referencing.Resource.from_contents(contents, default_specification=referencing.jsonschema.DRAFT4),
            )
        )
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((SCHEMA_DIR / "config-schema.json").read_text())
    schema["$id"] = (SCHEMA_DIR / "config-schema.json").as_uri()
    return jsonschema.Draft4Validator(schema, registry=registry)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/home/web:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nweb:x:1000:\nwheel:x:10:web,other\n")
    return root


def request(**spec: Any) -> plans.ContainerRequest:
    model = manifests.ContainerSpec.model_validate({"image": "busybox", **spec})
    return plans.ContainerRequest(name="web", spec=model, env={"A": "manifest"}, labels={})


IMAGE = images.ImageConfig(env=("PATH=/image/bin", "A=image", "B=image"), cmd=("sh",), working_dir="/srv")


def environment(rootfs: Path, **extra: Any) -> bundles.Environment:
    return bundles.Environment(container_id="c" * 64, rootfs=str(rootfs), **extra)


def test_defaults_are_dockers(rootfs: Path, validator: jsonschema.Draft4Validator) -> None:
    config = bundles.build_config(request(), IMAGE, environment(rootfs))
    validator.validate(config)
    process = config["process"]
    assert process["args"] == ["sh"]
    assert process["env"][:2] == ["PATH=/image/bin", "HOSTNAME=cccccccccccc"]
    assert "A=manifest" in process["env"] and "B=image" in process["env"]
    assert process["cwd"] == "/srv"
    assert process["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert process["capabilities"]["bounding"] == list(bundles.DEFAULT_CAPABILITIES)
    assert "noNewPrivileges" not in process
    assert config["hostname"] == "cccccccccccc"
    assert [m["destination"] for m in config["mounts"]][:6] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/sys",
        "/dev/mqueue",
        "/dev/shm",
    ]
    assert config["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert config["linux"]["maskedPaths"] and config["linux"]["readonlyPaths"]


def test_manifest_overrides(rootfs: Path, validator: jsonschema.Draft4Validator) -> None:
    spec = request(
        entrypoint=["/bin/web"], user="web:wheel", workingDir="/app", hostname="front", readOnlyRootfs=True,
        capAdd=["NET_ADMIN"], capDrop=["MKNOD"], resources={"memory": "64Mi", "cpus": 1.5, "pids": 64},
        mounts=[{"type": "volume", "source": "data", "target": "/data/db", "readOnly": True},
                {"type": "bind", "source": "/srv/conf", "target": "/data"},
                {"type": "tmpfs", "target": "/tmp", "size": "16Mi", "mode": 0o1777}],
    )  # fmt: skip
    config = bundles.build_config(
        spec, IMAGE, environment(rootfs, volume_paths={"data": "/var/lib/reconciler/volumes/data/_data"},
                                 files={"/etc/hosts": "/run/c/hosts"}, netns_path="/run/netns/x"),
    )  # fmt: skip
    validator.validate(config)
    assert config["process"]["args"] == ["/bin/web"]  # an entrypoint drops the image's CMD
    assert config["process"]["user"] == {"uid": 1000, "gid": 10, "additionalGids": [10]}
    assert "HOME=/home/web" in config["process"]["env"]
    assert config["root"]["readonly"] is True
    assert "CAP_NET_ADMIN" in config["process"]["capabilities"]["effective"]
    assert "CAP_MKNOD" not in config["process"]["capabilities"]["effective"]
    assert config["linux"]["resources"]["memory"] == {"limit": 64 * 2**20, "swap": 64 * 2**20}
    assert config["linux"]["resources"]["cpu"] == {"quota": 150000, "period": 100000}
    assert config["linux"]["resources"]["pids"] == {"limit": 64}
    user_mounts = [(m["destination"], m["type"], m["options"]) for m in config["mounts"][6:]]
    assert user_mounts == [
        ("/data", "bind", ["rbind", "rprivate"]),
        ("/tmp", "tmpfs", ["noexec", "nosuid", "nodev", f"size={16 * 2**20}", "mode=1777"]),
        ("/data/db", "bind", ["rbind", "rprivate", "ro", "rro"]),  # parents before children; rro: Linux >= 5.12
        ("/etc/hosts", "bind", ["rbind", "rprivate"]),
    ]
    assert {"type": "network", "path": "/run/netns/x"} in config["linux"]["namespaces"]


def test_privileged_only_when_asked(rootfs: Path, validator: jsonschema.Draft4Validator) -> None:
    config = bundles.build_config(request(privileged=True), IMAGE, environment(rootfs))
    validator.validate(config)
    assert config["process"]["capabilities"]["bounding"] == list(bundles.ALL_CAPABILITIES)
    assert "maskedPaths" not in config["linux"]
    assert config["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_host_network_only_when_asked(rootfs: Path, validator: jsonschema.Draft4Validator) -> None:
    config = bundles.build_config(request(networkMode="host"), IMAGE, environment(rootfs))
    validator.validate(config)
    types = [n["type"] for n in config["linux"]["namespaces"]]
    assert "network" not in types and "uts" not in types


def test_user_lookup_stays_inside_the_rootfs(rootfs: Path, tmp_path: Path) -> None:
    # An image whose /etc/passwd is a symlink to an absolute path resolves it inside the rootfs.
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to("/etc/real-passwd")
    (rootfs / "etc" / "real-passwd").write_text("app:x:4242:4242::/nonexistent:/bin/false\n")
    assert bundles.resolve_user("app", rootfs).uid == 4242
    with pytest.raises(errors.RuntimeFailed, match="unable to find user root"):
        bundles.resolve_user("root", rootfs)  # the host's root entry is never read
    assert bundles.resolve_user("5000:5000", rootfs) == bundles.User(5000, 5000, (5000,), "/")


def test_no_command_is_an_error(rootfs: Path) -> None:
    with pytest.raises(errors.RuntimeFailed, match="no command specified"):
        bundles.build_config(request(), images.ImageConfig(), environment(rootfs))


def test_written_bundle_is_root_only(tmp_path: Path, rootfs: Path) -> None:
    path = bundles.write(tmp_path / "bundle", bundles.build_config(request(), IMAGE, environment(rootfs)))
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "bundle").stat().st_mode & 0o777 == 0o700
    assert json.loads(path.read_text())["ociVersion"] == bundles.OCI_VERSION


def test_default_seccomp_profile_follows_the_capabilities(rootfs: Path, validator: jsonschema.Draft4Validator) -> None:
    from reconciler.backends.native import seccomp

    config = bundles.build_config(request(), IMAGE, environment(rootfs))
    profile = config["linux"]["seccomp"]
    allowed = {name for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" for name in rule["names"]}
    assert "arch_prctl" in allowed  # amd64-only rule kept (the profile names Go's architectures)
    assert "bpf" not in allowed and "kexec_load" not in allowed  # bpf needs CAP_SYS_ADMIN
    admin = bundles.build_config(request(capAdd=["SYS_ADMIN"]), IMAGE, environment(rootfs))["linux"]["seccomp"]
    assert "bpf" in {n for rule in admin["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" for n in rule["names"]}
    assert "seccomp" not in bundles.build_config(request(privileged=True), IMAGE, environment(rootfs))["linux"]
    arm = seccomp.profile(bundles.DEFAULT_CAPABILITIES, machine="aarch64")
    assert "arch_prctl" not in {n for rule in arm["syscalls"] for n in rule["names"]}
