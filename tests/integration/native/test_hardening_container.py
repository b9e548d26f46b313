"""What a native container cannot do to its host (issue 10): make namespaces or mounts without
``CAP_SYS_ADMIN``, read the container's secrets from host command lines, write under a read-only
bind's submounts. Real runc, overlayfs and busybox; every mount the tests make is unmounted."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import engine as contract
from reconciler import manifests, plans, probing
from reconciler.backends.native import bundles, mounts
from reconciler.backends.native import engine as native_engine
from tests.contract import suite
from tests.support.polling import eventually

ENVIRONMENT = bundles.Environment(container_id="0" * 64, rootfs="/nonexistent")


def start(engine: native_engine.NativeEngine, image: str, name: str, env: dict[str, str] | None = None,
          **spec: object) -> None:  # fmt: skip
    engine.pull_image(image)
    spec_model = manifests.container_spec_from_document({"image": image, "command": ["sleep", "300"], **spec})
    request = plans.ContainerRequest(name=name, spec=spec_model, env=env or {},
                                     labels=suite.labels("contract", "Container"))  # fmt: skip
    engine.create_container(request)
    engine.start_container(name)


# ---------------------------------------------------------------------------------------------
# Seccomp: namespaces and mounts need CAP_SYS_ADMIN, as with Docker's default profile
# ---------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_default_container_cannot_make_namespaces_or_mount(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    start(engine, image, f"{prefix}plain")
    userns = engine.exec(f"{prefix}plain", ["unshare", "-U", "-r", "true"])
    assert userns.exit_code != 0 and b"Operation not permitted" in userns.stderr, userns
    # The CVE-2022-0185 path: a user namespace gives "root" that may mount a filesystem.
    escape = engine.exec(f"{prefix}plain", ["unshare", "-U", "-r", "-m", "mount", "-t", "tmpfs", "t", "/tmp"])
    assert escape.exit_code != 0 and b"Operation not permitted" in escape.stderr, escape
    for argv in (["unshare", "-m", "true"], ["unshare", "-n", "true"], ["unshare", "-p", "-f", "true"]):
        denied = engine.exec(f"{prefix}plain", argv)
        assert denied.exit_code != 0 and b"Operation not permitted" in denied.stderr, (argv, denied)
    mount = engine.exec(f"{prefix}plain", ["mount", "-t", "tmpfs", "t", "/tmp"])  # busybox's words for EPERM
    assert mount.exit_code != 0 and b"permission denied" in mount.stderr, mount
    # Ordinary process creation (clone without namespace flags) still works.
    assert engine.exec(f"{prefix}plain", ["sh", "-c", "echo $(echo nested)"]).stdout == b"nested\n"


@pytest.mark.integration
def test_sys_admin_container_may_make_namespaces(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    start(engine, image, f"{prefix}admin", capAdd=["SYS_ADMIN"])
    userns = engine.exec(f"{prefix}admin", ["unshare", "-U", "-r", "true"])
    assert userns.exit_code == 0, userns
    mounted = engine.exec(f"{prefix}admin", ["unshare", "-m", "sh", "-c", "mount -t tmpfs t /tmp && echo ok"])
    assert mounted.exit_code == 0 and mounted.stdout == b"ok\n", mounted


# ---------------------------------------------------------------------------------------------
# Secrets: no env value on any host command line during an exec (health checks use the same call)
# ---------------------------------------------------------------------------------------------


def command_lines() -> Iterator[bytes]:
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            yield path.read_bytes()


def watch_command_lines(engine: native_engine.NativeEngine, name: str, secret: str, marker: str,
                        run: Callable[[], object]) -> list[bytes]:  # fmt: skip
    """Run ``run`` (an exec that waits for /tmp/stop and carries ``marker`` in its argv) in a
    thread; while it runs, the host's command lines that held ``secret``."""
    leaks: list[bytes] = []

    def running_exec_seen() -> bool:
        lines = list(command_lines())
        leaks.extend(line for line in lines if secret.encode() in line)
        # Both the runtime's exec command and the process inside the container carry the marker.
        return sum(marker.encode() in line for line in lines) >= 2

    worker = threading.Thread(target=run)
    worker.start()
    try:
        eventually(running_exec_seen, what="the exec running (runc exec and the process inside)")
        for _ in range(20):
            running_exec_seen()
    finally:
        engine.exec(name, ["touch", "/tmp/stop"])
        worker.join(timeout=30)
    return leaks


# The exec waits for a file the test creates (it runs for as long as the test scans), then says
# how long the secret it sees is.
WAIT_THEN_MEASURE = "while [ ! -e /tmp/stop ]; do usleep 20000; done; echo ${#DB_PASSWORD}"


@pytest.mark.integration
def test_exec_keeps_env_values_off_host_command_lines(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    secret, marker = f"pw-{secrets.token_hex(12)}", f"marker-{secrets.token_hex(6)}"
    start(engine, image, f"{prefix}sec", env={"DB_PASSWORD": secret})
    results: list[contract.ExecResult] = []
    argv = ["sh", "-c", WAIT_THEN_MEASURE, marker]
    leaks = watch_command_lines(engine, f"{prefix}sec", secret, marker,
                                lambda: results.append(engine.exec(f"{prefix}sec", argv)))  # fmt: skip
    assert not leaks, f"{len(leaks)} host command lines held the secret"
    # The exec still sees the container's environment, and leaves no process file behind.
    assert len(results) == 1 and results[0].stdout == f"{len(secret)}\n".encode(), results
    assert [path for path in (engine.root / "runtime").iterdir() if not path.is_dir()] == []


@pytest.mark.integration
def test_health_probe_keeps_env_values_off_host_command_lines(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    secret, marker = f"pw-{secrets.token_hex(12)}", f"marker-{secrets.token_hex(6)}"
    check = {"test": ["CMD-SHELL", f": {marker}; {WAIT_THEN_MEASURE}"], "interval": "1h", "timeout": "60s"}
    start(engine, image, f"{prefix}hc", env={"DB_PASSWORD": secret}, healthcheck=check)
    spec = manifests.container_spec_from_document({"image": image, "healthcheck": check})
    probed = spec.healthcheck
    assert probed is not None
    # The probe the controller, `apply --wait` and the rollouts' readiness all run (through engine.exec).
    results: list[tuple[int, str]] = []
    leaks = watch_command_lines(engine, f"{prefix}hc", secret, marker,
                                lambda: results.append(probing.probe(engine, f"{prefix}hc", probed)))  # fmt: skip
    assert not leaks, f"{len(leaks)} host command lines held the secret"
    assert results == [(0, f"{len(secret)}\n")]


@pytest.mark.integration
def test_exec_runs_as_the_container_process(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    start(engine, image, f"{prefix}who", user="1000:1000", workingDir="/srv", capDrop=["ALL"])
    done = engine.exec(f"{prefix}who", ["sh", "-c", "id -u; id -g; pwd; grep -E '^(CapEff|NoNewPrivs|Seccomp):' "
                                                     "/proc/self/status"])  # fmt: skip
    lines = done.stdout.decode().split("\n")
    assert lines[:3] == ["1000", "1000", "/srv"], done
    fields = dict(line.split(":\t") for line in lines[3:] if line)
    assert fields["CapEff"] == "0000000000000000" and fields["Seccomp"] == "2", fields


# ---------------------------------------------------------------------------------------------
# Read-only binds are read-only all the way down
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def source_with_submount(tmp_path: Path) -> Iterator[Path]:
    source = tmp_path / "bind-source"
    (source / "sub").mkdir(parents=True)
    mounts.mount(mounts.Mount("tmpfs", "tmpfs", str(source / "sub"), ("size=1m",)))
    try:
        yield source
    finally:
        mounts.unmount(source / "sub", detach=True)
        assert not mounts.is_mounted(source / "sub")


@pytest.mark.integration
def test_read_only_bind_is_read_only_in_its_submounts(
    engine: native_engine.NativeEngine, image: str, prefix: str, source_with_submount: Path
) -> None:
    start(engine, image, f"{prefix}ro", mounts=[
        {"type": "bind", "source": str(source_with_submount), "target": "/data", "readOnly": True},
    ])  # fmt: skip
    top = engine.exec(f"{prefix}ro", ["touch", "/data/top"])
    sub = engine.exec(f"{prefix}ro", ["touch", "/data/sub/inner"])
    assert top.exit_code != 0 and b"Read-only file system" in top.stderr, top
    assert sub.exit_code != 0 and b"Read-only file system" in sub.stderr, sub
    assert not (source_with_submount / "sub" / "inner").exists()


@pytest.mark.integration
def test_read_only_bind_without_mount_setattr_covers_each_submount(
    engine: native_engine.NativeEngine,
    image: str,
    prefix: str,
    source_with_submount: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on a kernel before 5.12: no "rro", one read-only bind per submount instead.
    monkeypatch.setattr(bundles, "RECURSIVE_READ_ONLY_SINCE", (999,))
    spec = manifests.container_spec_from_document({"image": image, "mounts": [
        {"type": "bind", "source": str(source_with_submount), "target": "/data/", "readOnly": True},
    ]})  # fmt: skip
    assert [(m["destination"], m["source"], m["options"]) for m in bundles.user_mounts(spec, ENVIRONMENT)] == [
        ("/data/", str(source_with_submount), ["rbind", "rprivate", "ro"]),
        ("/data/sub", str(source_with_submount / "sub"), ["rbind", "rprivate", "ro"]),
    ]
    start(engine, image, f"{prefix}ro", mounts=[
        {"type": "bind", "source": str(source_with_submount), "target": "/data", "readOnly": True},
    ])  # fmt: skip
    sub = engine.exec(f"{prefix}ro", ["touch", "/data/sub/inner"])
    assert sub.exit_code != 0 and b"Read-only file system" in sub.stderr, sub
