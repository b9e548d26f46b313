"""kill -9 of ``reconcile apply`` on the native engine, through the installed command, at a few
seeded points of a 16-container apply: the re-apply converges, and after ``delete --stack``
nothing of those containers is left under the root or on the host (mounts, directories, runc
state, keepers, cgroups, veths, namespaces, firewall rules), because the engine collects the
remains of the creates and starts that the kill cut short.

The kill points come from a fixed seed, and there are only a few: the chaos suite does many more.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import mounts
from tests.support import images
from tests.support.polling import eventually

IMAGE = images.LOCAL_BUSYBOX
CONTAINERS = 16
SEED = 1016
# Where each trial kills: a create half-way, a start half-way.
PHASES = ("start", "start", "create")
TRIALS = len(PHASES)
REPOSITORY = Path(__file__).parents[3]


def stack_manifest(path: Path, prefix: str) -> Path:
    """16 containers of one stack on the implicit default network (veths, namespaces, DNS)."""
    path.write_text("".join(
        f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}c{i}, stack: {prefix}s}}\n"
        f"spec: {{image: '{IMAGE}', command: [sleep, '3600'], stopTimeout: 1s}}\n"
        for i in range(CONTAINERS)
    ))  # fmt: skip
    return path


def at_kill_point(root: Path, records: int, phase: str) -> bool:
    """Whether ``records`` containers have their record and one is caught half-way: a ``create``
    (its directory without its record yet) or a ``start`` (a keeper launched, not recorded: conmon
    makes its ``attach`` socket in the container's directory as it starts)."""
    if len(list(root.glob("containers/*/container.json"))) < records:
        return False
    for directory in root.glob("containers/*"):
        names = {entry.name for entry in directory.iterdir()}
        if phase == "create" and "container.json" not in names:
            return True
        if phase == "start" and "attach" in names and "supervisor.pid.json" not in names:
            return True
    return False


def ids_under(root: Path) -> set[str]:
    """Every container id the root knows of: directories (finished or not) and runc states."""
    found = set()
    for folder in (root / "containers", root / "runtime"):
        with contextlib.suppress(FileNotFoundError):
            found.update(entry.name for entry in folder.iterdir() if entry.is_dir())
    return found


def processes_of(root: Path) -> list[str]:
    """The command lines of live processes that name the root (keepers, DNS servers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(root).encode() in command and state != "Z":
            words = command.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {words}")
    return found


def remains(root: Path, ids: set[str]) -> list[str]:
    """What is left of the root's containers; empty when nothing is."""
    left: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        left += [f"mount {line.split()[4]}" for line in handle if str(root) in line.split()[4]]
    for folder in ("containers", "runtime"):
        with contextlib.suppress(FileNotFoundError):
            left += [f"{folder}/{entry.name}" for entry in (root / folder).iterdir() if entry.is_dir()]
    left += [f"process {line}" for line in processes_of(root)]
    for container_id in ids:
        left += [f"cgroup {path}" for path in Path("/sys/fs/cgroup").glob(f"*/reconciler/{container_id}")]
        left += [f"veth {path.name}" for path in Path("/sys/class/net").glob(f"rcv{container_id[:9]}*")]
        if Path(f"/run/netns/rc-{container_id[:12]}").exists():
            left.append(f"netns rc-{container_id[:12]}")
    rules = "".join(
        subprocess.run(["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True, check=True).stdout
        for table in ("filter", "nat")
    )
    left += [f"iptables rules of {container_id}" for container_id in ids if f"rc:{container_id}" in rules]
    return left


@pytest.fixture
def command(loaded: Path) -> Iterator[list[str]]:
    # The CLI of this work tree, as its own process (the kill must not hit the test).
    yield [sys.executable, "-m", "reconciler.cli", "--engine", "native", "--root", str(loaded), "--socket", "none"]
    # After a failure: what the engine did not clean up, by what names it.
    for line in processes_of(loaded):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
    for container_id in ids_under(loaded):
        subprocess.run(["runc", "--root", str(loaded / "runtime"), "delete", "--force", container_id],
                       capture_output=True, check=False)  # fmt: skip
        for path in Path("/sys/class/net").glob(f"rcv{container_id[:9]}*"):
            subprocess.run(["ip", "link", "del", path.name], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", f"rc-{container_id[:12]}"], capture_output=True, check=False)
        rootfs = loaded / "containers" / container_id / "rootfs"
        if mounts.is_mounted(rootfs):
            mounts.unmount(rootfs, detach=True)


@pytest.mark.integration
def test_kill_9_during_apply_leaves_nothing_after_reapply_and_delete(
    loaded: Path, engine: native_engine.NativeEngine, command: list[str], prefix: str, tmp_path: Path
) -> None:
    manifest = str(stack_manifest(tmp_path / "many.yaml", prefix))
    seen: set[str] = set()
    for kill_after, phase in zip(random.Random(SEED).sample(range(1, CONTAINERS - 2), TRIALS), PHASES, strict=True):
        # A session of its own, so that the SIGKILL hits the apply alone (as kill -9 <pid> does).
        output = tmp_path / f"apply-{kill_after}.out"
        with output.open("wb") as sink, subprocess.Popen([*command, "apply", "-f", manifest], cwd=REPOSITORY,
                                     stdout=sink, stderr=subprocess.STDOUT, start_new_session=True) as apply:  # fmt: skip
            eventually(lambda: still_running(apply, output) and at_kill_point(loaded, kill_after, phase),  # noqa: B023
                       interval=0.005, what=f"{kill_after} records and a {phase} in flight")  # fmt: skip
            apply.kill()
        seen |= ids_under(loaded)
        again = subprocess.run([*command, "apply", "-f", manifest], cwd=REPOSITORY, capture_output=True, text=True,
                               check=False, timeout=300)  # fmt: skip
        assert again.returncode == 0, (kill_after, again.stdout, again.stderr)
        running = {name for name, c in engine.observe().containers.items() if c.state == "running"}
        assert running == {f"{prefix}c{i}" for i in range(CONTAINERS)}, kill_after
        seen |= ids_under(loaded)
        deleted = subprocess.run([*command, "delete", "--stack", f"{prefix}s"], cwd=REPOSITORY, capture_output=True,
                                 text=True, check=False, timeout=300)  # fmt: skip
        assert deleted.returncode == 0, (kill_after, deleted.stdout, deleted.stderr)
        eventually(lambda: nothing_left(loaded, seen), what=f"nothing left after a kill at {kill_after} records")  # noqa: B023


def still_running(process: subprocess.Popen[bytes], output: Path) -> bool:
    assert process.poll() is None, f"the apply ended first: {output.read_text(errors='replace')[-2000:]}"
    return True


def nothing_left(root: Path, ids: set[str]) -> bool:
    left = remains(root, ids)
    assert not left, left
    return True


@pytest.mark.integration
def test_snapshot_directories_of_a_dead_pull_go_and_those_of_a_live_one_stay(loaded: Path) -> None:
    snapshots = loaded / "snapshots"
    dead = snapshots / f"tmp-{dead_pid()}-killed"
    live = snapshots / f"tmp-{os.getpid()}-applying"
    orphan = snapshots / "99999"  # a commit cut short: renamed, never recorded in the metadata
    for directory in (dead, live, orphan):
        (directory / "fs").mkdir(parents=True)
    native_engine.NativeEngine(loaded).observe()
    assert not dead.exists() and not orphan.exists()
    assert live.exists()
    assert native_engine.NativeEngine(loaded).image_store.get(IMAGE) is not None  # the committed ones stay


def dead_pid() -> int:
    """The pid of a process that ran and was reaped."""
    with subprocess.Popen(["true"]) as process:
        process.wait()
    return process.pid
