"""The native engine runs the compose stack of :mod:`.stack` as it is: ``reconcile apply -f compose.yaml``.

On a private root with busybox loaded (the native suite's ``loaded``), the same three-service file
the Docker test gives to ``docker compose up`` converges: apply waits for db to be healthy before
api starts, web answers on its published port with the page of its relative bind, a second plan has
nothing to do, and delete removes it all (the volume too, with ``--prune-volumes``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native
from tests.integration.compose import stack
from tests.integration.native.conftest import NO_UPSTREAM
from tests.support import cli, images, polling, registry

pytestmark = pytest.mark.integration


def test_the_native_engine_runs_the_compose_file(
    loaded: Path, native_engine: native.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    project, port = f"{prefix}stack", registry.free_port()
    path = stack.write(tmp_path / "stack", project=project, image=images.LOCAL_BUSYBOX, port=port)
    options = ("--dns-upstream", NO_UPSTREAM)
    try:
        applied = cli.reconcile(loaded, *options, "apply", "-f", str(path), "--wait", "-y", timeout=180)
        assert applied.returncode == 0, f"apply of the compose file failed:\n{applied.stdout}\n{applied.stderr}"
        page = polling.eventually(lambda: cli.fetch(f"http://127.0.0.1:{port}/"), timeout=30, what="web to answer")
        assert page == stack.PAGE.encode()
        planned = cli.reconcile(loaded, *options, "plan", "-f", str(path))
        assert planned.returncode == 0, f"a second plan has changes:\n{planned.stdout}\n{planned.stderr}"
        status = cli.reconcile(loaded, *options, "status", "-o", "json")
        rows = {row["name"]: row for row in json.loads(status.stdout)["objects"] if row.get("kind") == "Container"}
        for service in stack.SERVICES:
            name = f"{project}-{service}-1"
            assert rows.get(name, {}).get("state") == "running", f"{name} is not running: {rows.get(name)}"
    finally:
        deleted = cli.reconcile(loaded, *options, "delete", "-f", str(path), "--prune-volumes", timeout=180)
    assert deleted.returncode == 0, f"delete failed:\n{deleted.stderr}"
    assert not [name for name in native_engine.observe().containers if name.startswith(prefix)]


MIGRATED = """\
name: {project}
services:
  db:
    image: {image}
    command: ["sh", "-c", "test -f /data/state || echo first run > /data/state; exec sleep 3600"]
    volumes: ["data:/data"]
volumes:
  data: {{}}
"""


def test_a_volume_an_earlier_version_named_is_not_replaced_by_an_empty_one(
    loaded: Path, native_engine: native.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    """The project as an earlier version applied it (its volume ``<project>-data``, now compose's
    ``<project>_data``): plan and apply of the file refuse, naming both, and change nothing (even
    with --prune-volumes); naming the old volume in the file keeps its data in use."""
    project, options = f"{prefix}mig", ("--dns-upstream", NO_UPSTREAM)
    folder = tmp_path / "mig"
    folder.mkdir()
    path = folder / "compose.yaml"
    path.write_text(MIGRATED.format(project=project, image=images.LOCAL_BUSYBOX))
    converted = cli.reconcile(loaded, "convert", "-f", str(path), "-o", "yaml")
    assert converted.returncode == 0, converted.stderr
    earlier = folder / "earlier.yaml"  # what the earlier version made of the same file
    earlier.write_text(converted.stdout.replace(f"{project}_data", f"{project}-data"))
    container, old, new = f"{project}-db-1", f"{project}-data", f"{project}_data"

    def state() -> str:
        shown = cli.reconcile(loaded, "exec", container, "--", "cat", "/data/state")
        assert shown.returncode == 0, shown.stderr
        return shown.stdout

    try:
        first = cli.reconcile(loaded, *options, "apply", "-f", str(earlier), "--wait", "-y", timeout=180)
        assert first.returncode == 0, f"{first.stdout}\n{first.stderr}"
        cli.reconcile(loaded, "exec", container, "--", "sh", "-c", "echo written before > /data/state")
        assert state() == "written before\n"
        before = set(native_engine.observe().volumes)
        assert old in before and new not in before
        planned = cli.reconcile(loaded, *options, "plan", "-f", str(path))
        refused = cli.reconcile(loaded, *options, "apply", "-f", str(path), "--prune-volumes", "-y", timeout=180)
        for run in (planned, refused):
            assert run.returncode == 1, f"{run.stdout}\n{run.stderr}"
            assert f"volume {new} " in run.stderr and f"keeps its data in volume {old}" in run.stderr, run.stderr
            assert f"name: {old}" in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert set(native_engine.observe().volumes) == before
        assert state() == "written before\n"
        path.write_text(path.read_text().replace("  data: {}", f"  data: {{name: {old}}}"))
        kept = cli.reconcile(loaded, *options, "apply", "-f", str(path), "--prune-volumes", "--wait", "-y", timeout=180)
        assert kept.returncode == 0, f"{kept.stdout}\n{kept.stderr}"
        assert set(native_engine.observe().volumes) == before
        assert state() == "written before\n"
        again = cli.reconcile(loaded, *options, "plan", "-f", str(path))
        assert again.returncode == 0, f"a second plan has changes:\n{again.stdout}\n{again.stderr}"
    finally:
        deleted = cli.reconcile(loaded, *options, "delete", "--stack", project, "--prune-volumes", timeout=180)
    assert deleted.returncode == 0, f"delete failed:\n{deleted.stderr}"
    assert not [name for name in native_engine.observe().volumes if name.startswith(prefix)]
