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
