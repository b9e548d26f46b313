"""On the docker engine, containers that name no network get their stack's own network (as
compose's ``<project>_default``): they reach each other by name, plans never show it, and it goes
with the stack's last container. ``external: true`` joins another stack's network."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from reconciler import manifests, operations, planning
from reconciler.backends import docker as docker_backend


def test_a_stack_without_networks_resolves_its_names(
    engine: docker_backend.DockerEngine, client: docker.DockerClient, image: str, prefix: str, tmp_path: Path
) -> None:
    stack = f"{prefix}s"
    text = "".join(
        f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}{name}, stack: {stack}}}\n"
        f"spec: {{image: '{image}', command: [sleep, '3600'], stopTimeout: 1s}}\n"
        for name in ("a", "b")
    )
    desired = manifests.load_sources([("s.yaml", text)])
    applied = operations.apply_desired(engine, desired, planning.Options(), parallelism=2)
    assert applied.outcome.ok, applied.outcome.summary()
    network = client.api.inspect_network(f"{stack}_default")
    assert network["Labels"] == {docker_backend.stack_networks.LABEL: stack}
    looked_up = engine.exec(f"{prefix}a", ["ping", "-c", "1", "-W", "2", f"{prefix}b"], timeout=20)
    assert looked_up.exit_code == 0, looked_up
    assert operations.plan_desired(engine, desired, planning.Options())[0].converged, "no step for it"

    operations.delete_stacks(engine, [stack], prune_volumes=False, parallelism=2)
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_network(f"{stack}_default")
