"""The CLI talks to the daemon when its socket answers (status, plan, apply, logs, events)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from tests.integration.controller.conftest import Daemon
from tests.integration.controller.test_watch import manifest, state, write_atomically
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


def reconcile(ctl: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "RECONCILER_SOCKET": ctl.socket}
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "--engine", "docker", "--root", str(ctl.root), *args],
        capture_output=True, text=True, env=environment, timeout=120, check=False,
    )  # fmt: skip


def test_status_plan_apply_logs_and_events_go_through_the_daemon(
    daemon: Callable[..., Daemon], client: docker.DockerClient, image: str, prefix: str, tmp_path: Path
) -> None:
    ctl = daemon()
    write_atomically(
        ctl.folder / f"{prefix}-w.yaml", manifest(f"{prefix}-w", image, command="[sh, -c, 'echo hello; sleep 3600']")
    )
    eventually(lambda: (state(client, f"{prefix}-w") or ("",))[0] == "running", what="w running")
    (ctl.folder / f"{prefix}-bad.yaml").write_text("kind: [\n")

    def broken_file_listed() -> bool:
        run = reconcile(ctl, "status")
        return run.returncode == 0 and f"{prefix}-bad.yaml:2:1: YAML syntax error" in run.stdout

    eventually(broken_file_listed, timeout=5, what="status through the daemon lists the broken file")
    rows = json.loads(reconcile(ctl, "status", "-o", "json").stdout)["objects"]
    row = next(r for r in rows if r["name"] == f"{prefix}-w")
    assert row["state"] == "running" and "backoff" in row and "lastError" in row

    other = tmp_path / f"{prefix}-other.yaml"
    other.write_text(manifest(f"{prefix}-other", image))
    planned = reconcile(ctl, "plan", "-f", str(other))
    assert planned.returncode == 2 and "1 to create" in planned.stdout
    applied = reconcile(ctl, "apply", "-f", str(other))
    assert applied.returncode == 0, applied.stderr
    assert "Applying:" in applied.stdout and "Done:" in applied.stdout
    assert (state(client, f"{prefix}-other") or ("",))[0] == "running"
    assert reconcile(ctl, "plan", "-f", str(other)).returncode == 0

    logs = reconcile(ctl, "logs", f"{prefix}-w")
    assert logs.returncode == 0 and "hello" in logs.stdout
    events = reconcile(ctl, "events", "--no-follow", "-o", "json")
    assert events.returncode == 0 and any(
        json.loads(line)["kind"] == "reconcile" for line in events.stdout.splitlines()
    )
    reconcile(ctl, "delete", "--stack", f"{prefix}-other")


def test_without_a_daemon_the_cli_runs_embedded(client: docker.DockerClient, image: str, prefix: str,
                                                tmp_path: Path, dockerd: None) -> None:  # fmt: skip
    """Also: the global options work after the command (``apply -f X --engine docker``) as before it."""
    path = tmp_path / f"{prefix}-solo.yaml"
    path.write_text(manifest(f"{prefix}-solo", image))
    environment = {**os.environ, "RECONCILER_SOCKET": str(tmp_path / "nobody.sock")}
    entry = [sys.executable, "-m", "reconciler.cli"]
    engine = ["--engine", "docker", "--root", str(tmp_path / "root")]
    applied = subprocess.run([*entry, "apply", "-f", str(path), *engine], capture_output=True, text=True,
                             env=environment, timeout=120, check=False)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert (state(client, f"{prefix}-solo") or ("",))[0] == "running"
    assert (tmp_path / "root" / "locks" / f"{prefix}-solo.lock").exists(), "the embedded apply took the stack lock"
    deleted = subprocess.run([*entry, *engine, "delete", "--stack", f"{prefix}-solo"], capture_output=True, text=True,
                             env=environment, timeout=120, check=False)  # fmt: skip
    assert deleted.returncode == 0, deleted.stderr
    assert state(client, f"{prefix}-solo") is None
