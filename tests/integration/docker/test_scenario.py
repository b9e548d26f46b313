"""Issue 3's scenario on a real dockerd, driven through the CLI as a user would.

A three-container stack (``web`` serves HTTP on a port published on 127.0.0.1, ``db`` keeps data
in a named volume, ``worker`` idles), one network and one volume. Each step checks the daemon's
state first (ids, limits, files in the volume), then the CLI's output.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from reconciler import manifests, planning
from reconciler.backends import docker as docker_backend
from tests.integration.docker import stacks
from tests.support import polling
from tests.support import registry as registries

pytestmark = pytest.mark.integration


def _stack(folder: Path, prefix: str, image: str, port: int, *, db_env: str = "one", db_memory: str = "64Mi") -> None:
    stack = f"{prefix}shop"
    net, data = f"{prefix}net", f"{prefix}data"
    stacks.write(folder, "net", stacks.document("Network", net, stack, {"driver": "bridge"}))
    stacks.write(folder, "data", stacks.document("Volume", data, stack, {"labels": {"backup": "daily"}}))
    stacks.write(folder, "web", stacks.document("Container", f"{prefix}web", stack, {
        "image": image,
        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "ports": [{"containerPort": 8080, "hostPort": port, "hostIP": "127.0.0.1"}],
        "networks": [{"name": net, "aliases": ["www"]}],
        "restart": {"policy": "always"},
    }))  # fmt: skip
    stacks.write(folder, "db", stacks.document("Container", f"{prefix}db", stack, {
        "image": image,
        "command": ["sleep", "3600"],
        "env": {"DB_MODE": db_env},
        "networks": [{"name": net, "aliases": ["database"]}],
        "mounts": [{"type": "volume", "source": data, "target": "/data"}],
        "resources": {"memory": db_memory},
        "stopTimeout": "1s",
    }))  # fmt: skip
    stacks.write(folder, "worker", stacks.document("Container", f"{prefix}worker", stack, {
        "image": image,
        "command": ["sleep", "3600"],
        "networks": [{"name": net}],
        "stopTimeout": "1s",
    }))  # fmt: skip


def desired_image(desired: manifests.Desired) -> str:
    (image,) = planning.images_of(desired)
    return image


def _ids(client: docker.DockerClient, prefix: str) -> dict[str, str | None]:
    return {name: stacks.container_id(client, f"{prefix}{name}") for name in ("web", "db", "worker")}


def _db_env_changed(
    client: docker.DockerClient, prefix: str, image: str, port: int, tmp_path: Path, ids: dict[str, str | None]
) -> dict[str, str | None]:
    """Step 3 of the lifecycle: a changed env recreates exactly db, create-first, keeping its volume."""
    _stack(tmp_path, prefix, image, port, db_env="two")
    changed = stacks.reconcile("apply", "-f", str(tmp_path))
    assert changed.code == 0, changed
    now = _ids(client, prefix)
    assert now["db"] != ids["db"] and now["web"] == ids["web"] and now["worker"] == ids["worker"], (ids, now)
    env = client.api.inspect_container(f"{prefix}db")["Config"]["Env"]
    assert "DB_MODE=two" in env
    # Create-first recreate: the replacement exists before the old container is stopped.
    steps = changed.stdout.splitlines()
    created_at = next(i for i, line in enumerate(steps) if f"create container {prefix}db.next:" in line)
    stopped_at = next(i for i, line in enumerate(steps) if f"stop container {prefix}db:" in line)
    assert created_at < stopped_at, changed
    kept = stacks.reconcile("exec", f"{prefix}db", "--", "cat", "/data/file")
    assert kept.code == 0 and kept.stdout == "kept\n", kept
    return now


def test_stack_lifecycle(client: docker.DockerClient, image: str, prefix: str, tmp_path: Path) -> None:
    port = registries.free_port()
    _stack(tmp_path, prefix, image, port)

    # 1. apply → the service answers on the published port.
    first = stacks.reconcile("apply", "-f", str(tmp_path))
    assert first.code == 0, first
    assert "hello from reconciler" in polling.eventually(lambda: stacks.http_get(port))
    ids = _ids(client, prefix)
    assert all(ids.values()), ids
    written = stacks.reconcile("exec", f"{prefix}db", "--", "sh", "-c", "echo kept > /data/file")
    assert written.code == 0, written
    # web reaches db by its network alias (Docker's embedded DNS on the user network).
    ping = stacks.reconcile("exec", f"{prefix}web", "--", "ping", "-c", "1", "-W", "2", "database")
    assert ping.code == 0, ping

    # 2. apply again → plan empty, zero mutating API calls (the daemon records no event).
    planned = stacks.reconcile("plan", "-f", str(tmp_path))
    assert planned.code == 0, planned
    assert "No changes" in planned.stdout
    with stacks.DaemonEvents(client, prefix) as seen:
        again = stacks.reconcile("apply", "-f", str(tmp_path))
    assert again.code == 0, again
    assert seen.events == [], seen.events
    assert _ids(client, prefix) == ids

    # 3. change db's env → exactly db is recreated; the volume keeps its data.
    ids = _db_env_changed(client, prefix, image, port, tmp_path, ids)

    # 4. change db's memory limit → updated in place (same id).
    _stack(tmp_path, prefix, image, port, db_env="two", db_memory="96Mi")
    updated = stacks.reconcile("apply", "-f", str(tmp_path))
    assert updated.code == 0, updated
    assert _ids(client, prefix) == ids
    host = client.api.inspect_container(f"{prefix}db")["HostConfig"]
    assert host["Memory"] == 96 * 1024 * 1024 and host["MemorySwap"] == 96 * 1024 * 1024
    assert "update" in updated.stdout

    # 5. delete db's manifest (and the volume's) → db removed, the volume kept.
    (tmp_path / "db.yaml").unlink()
    (tmp_path / "data.yaml").unlink()
    removed = stacks.reconcile("apply", "-f", str(tmp_path))
    assert removed.code == 0, removed
    assert stacks.container_id(client, f"{prefix}db") is None
    assert client.api.inspect_volume(f"{prefix}data")["Name"] == f"{prefix}data"
    assert _ids(client, prefix)["web"] == ids["web"]

    # 6. --prune-volumes → the volume goes too.
    pruned = stacks.reconcile("apply", "-f", str(tmp_path), "--prune-volumes")
    assert pruned.code == 0, pruned
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_volume(f"{prefix}data")


def test_noop_apply_sends_no_mutating_request(image: str, prefix: str, tmp_path: Path) -> None:
    """The same promise at the API level: observe + plan + execute of a converged stack only GETs."""
    from reconciler import executing

    _stack(tmp_path, prefix, image, registries.free_port())
    assert stacks.reconcile("apply", "-f", str(tmp_path)).code == 0
    desired = manifests.load([str(tmp_path)])
    engine = docker_backend.DockerEngine.from_env()
    try:
        counter = stacks.CountingHTTP(engine)
        actual = engine.observe(images=planning.images_of(desired))
        plan = planning.plan(desired, actual)
        outcome = executing.execute(plan, engine)
        assert plan.converged, plan.render()
        assert outcome.results == ()
        assert counter.mutating() == []
        # One container list, one inspect per owned container (other tests' too: the daemon is
        # shared, and one removed between list and inspect still costs its GET), one network
        # list, one volume list, one image inspect.
        paths = [path.split("?")[0].split("/", 2)[-1] for _, path in counter.requests]
        inspects = [p for p in paths if p.startswith("containers/") and p != "containers/json"]
        others = sorted(p for p in paths if p not in inspects)
        assert others == ["containers/json", f"images/{desired_image(desired)}/json", "networks", "volumes"], paths
        assert len(inspects) >= len(actual.containers), paths
    finally:
        engine.close()


def test_status_logs_and_exec(client: docker.DockerClient, image: str, prefix: str, tmp_path: Path) -> None:
    stack = f"{prefix}ops"
    stacks.write(tmp_path, "job", stacks.document("Container", f"{prefix}job", stack, {
        "image": image,
        "command": ["sh", "-c", "echo out-line; echo err-line >&2; exec sleep 3600"],
        "stopTimeout": "1s",
    }))  # fmt: skip
    assert stacks.reconcile("apply", "-f", str(tmp_path)).code == 0

    status = stacks.reconcile("status", "-f", str(tmp_path), "-o", "json")
    assert status.code == 0, status
    import json

    rows = {row["name"]: row for row in json.loads(status.stdout)["objects"]}
    row = rows[f"{prefix}job"]
    assert row["state"] == "running" and row["restarts"] == 0 and row["drift"] == ""
    assert row["specHash"].startswith("v1:sha256:")

    def printed() -> stacks.Run | None:
        run = stacks.reconcile("logs", f"{prefix}job")
        return run if run.stdout else None

    logs = polling.eventually(printed, what="the job's log lines")
    assert logs.stdout == "out-line\n" and logs.stderr == "err-line\n", logs

    code = stacks.reconcile("exec", f"{prefix}job", "--", "sh", "-c", "echo hi; exit 7")
    assert code.code == 7 and code.stdout == "hi\n", code
