"""The docker engine's read path on a local socket: what ``observe`` sees through the standard
library's HTTP client is exactly what it sees through the SDK, and a no-op ``reconcile apply``
runs without loading the SDK at all (it is made only to write)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import docker

from reconciler import manifests, operations, planning
from reconciler.backends import docker as docker_backend

ROOT = Path(__file__).resolve().parents[3]


def stack_text(prefix: str, image: str) -> str:
    documents = [
        f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {prefix}net, stack: {prefix}s}}\n",
        f"apiVersion: reconciler/v1\nkind: Volume\nmetadata: {{name: {prefix}vol, stack: {prefix}s}}\n",
    ]
    for name in ("a", "b"):
        documents.append(
            f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}{name}, stack: {prefix}s}}\n"
            f"spec: {{image: '{image}', command: [sleep, '3600'], stopTimeout: 1s, networks: [{{name: {prefix}net}}],"
            f" mounts: [{{type: volume, source: {prefix}vol, target: /data}}],"
            f" resources: {{memory: 64Mi, cpus: 0.5}}, ports: [{{containerPort: 80}}]}}\n"
        )
    return "---\n".join(documents)


def test_observe_reads_the_same_without_the_sdk(
    engine: docker_backend.DockerEngine, client: docker.DockerClient, image: str, prefix: str
) -> None:
    desired = manifests.load_sources([("s.yaml", stack_text(prefix, image))])
    applied = operations.apply_desired(engine, desired, planning.Options(), parallelism=2)
    assert applied.outcome.ok, applied.outcome.summary()
    client.api.stop(f"{prefix}b", timeout=1)
    assert engine.reader is not None, "a local dockerd is read through the socket reader"
    through_sdk = docker_backend.DockerEngine(client)
    asked = [image, f"{image}-absent"]
    for stacks in (desired.stacks, None):
        seen = engine.observe(images=asked, stacks=stacks)
        assert seen == through_sdk.observe(images=asked, stacks=stacks)
    mine = {name: seen.containers[name] for name in (f"{prefix}a", f"{prefix}b")}
    assert (mine[f"{prefix}a"].state, mine[f"{prefix}b"].state) == ("running", "exited")
    assert mine[f"{prefix}a"].ports and mine[f"{prefix}a"].resources.memory == 64 * 2**20
    assert seen.images[f"{image}-absent"] is None and seen.images[image]
    assert f"{prefix}vol" in seen.volumes and f"{prefix}net" in seen.networks


def test_a_no_op_apply_never_loads_the_sdk(
    engine: docker_backend.DockerEngine, image: str, prefix: str, tmp_path: Path
) -> None:
    file = tmp_path / "stack.yaml"
    file.write_text(stack_text(prefix, image))
    applied = operations.apply_desired(engine, manifests.load([str(file)]), planning.Options(), parallelism=2)
    assert applied.outcome.ok, applied.outcome.summary()
    probe = (
        "import sys\n"
        "from reconciler.cli import entry\n"
        "code = entry.main(['--engine', 'docker', '--socket', 'none', 'apply', '-f', sys.argv[1]])\n"
        "loaded = sorted(name for name in ('docker', 'requests', 'urllib3') if name in sys.modules)\n"
        "print('loaded:', loaded, 'exit:', code)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(file)], cwd=ROOT, capture_output=True, text=True,
                          check=False, env={**os.environ, "RECONCILER_DEBUG": "1"}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "No changes" in done.stdout
    assert "loaded: [] exit: 0" in done.stdout, done.stdout
