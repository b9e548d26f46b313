"""Drift made by hand is reported and healed; bad input fails per object with one clear line."""

from __future__ import annotations

import socket
from pathlib import Path

import docker
import pytest

from tests.integration.docker import stacks

pytestmark = pytest.mark.integration


def _sleeper(folder: Path, prefix: str, name: str, image: str, **spec: object) -> None:
    stacks.write(folder, name, stacks.document("Container", f"{prefix}{name}", f"{prefix}s", {
        "image": image, "command": ["sleep", "3600"], "stopTimeout": "1s", **spec,
    }))  # fmt: skip


def test_removed_and_stopped_by_hand_is_drift_healed_by_apply(
    client: docker.DockerClient, image: str, prefix: str, tmp_path: Path
) -> None:
    _sleeper(tmp_path, prefix, "gone", image)
    _sleeper(tmp_path, prefix, "halted", image, restart={"policy": "always"})
    assert stacks.reconcile("apply", "-f", str(tmp_path)).code == 0
    client.api.remove_container(f"{prefix}gone", force=True)  # docker rm -f
    client.api.stop(f"{prefix}halted", timeout=1)  # docker stop

    planned = stacks.reconcile("plan", "-f", str(tmp_path))
    assert planned.code == 2, planned
    assert any("not found" in line for line in stacks.lines_mentioning(planned.stdout, f"{prefix}gone"))
    assert any("drift: exited" in line for line in stacks.lines_mentioning(planned.stdout, f"{prefix}halted"))

    healed = stacks.reconcile("apply", "-f", str(tmp_path))
    assert healed.code == 0, healed
    for name in ("gone", "halted"):
        assert client.api.inspect_container(f"{prefix}{name}")["State"]["Status"] == "running"
    assert stacks.reconcile("plan", "-f", str(tmp_path)).code == 0


def test_bad_objects_fail_alone_with_one_line_each(
    client: docker.DockerClient, image: str, registry: str, prefix: str, tmp_path: Path
) -> None:
    missing_image = f"{registry}/reconciler-test/no-such-image:1"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _sleeper(tmp_path, prefix, "good", image)
        _sleeper(tmp_path, prefix, "ghost", missing_image)
        _sleeper(tmp_path, prefix, "clash", image,
                 ports=[{"containerPort": 80, "hostPort": port, "hostIP": "127.0.0.1"}])  # fmt: skip

        run = stacks.reconcile("apply", "-f", str(tmp_path))

    assert run.code != 0, run
    # The independent object converged despite its neighbours.
    assert client.api.inspect_container(f"{prefix}good")["State"]["Status"] == "running"
    failures = [line for line in run.stdout.splitlines() if line.lstrip().startswith("✗")]
    assert len(failures) == 2, run
    ghost = [line for line in failures if missing_image in line]
    clash = [line for line in failures if f"{prefix}clash" in line]
    assert len(ghost) == 1 and ("not found" in ghost[0] or "manifest unknown" in ghost[0]), run
    assert len(clash) == 1 and "address already in use" in clash[0], run


def test_unreachable_daemon_is_one_clear_line(tmp_path: Path, prefix: str, image: str) -> None:
    _sleeper(tmp_path, prefix, "lonely", image)
    missing = tmp_path / "no-such-docker.sock"
    run = stacks.reconcile("plan", "-f", str(tmp_path), env={"DOCKER_HOST": f"unix://{missing}"})
    assert run.code == 1, run
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run
    assert "Docker daemon unreachable" in lines[0] and str(missing) in lines[0], run
