"""``replicas`` on the native engine: NAME-1 … NAME-N run, the service name resolves to every
replica (declared network and the default one), and a scale-down removes only the extra ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.support import images
from tests.support.cli import reconcile

IMAGE = images.LOCAL_BUSYBOX


def manifest(prefix: str, count: int) -> str:
    sleeper = f"image: '{IMAGE}', command: [sleep, '3600'], stopTimeout: 1s"
    return (
        f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {prefix}net, stack: {prefix}s}}\n"
        "---\n"
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}web, stack: {prefix}s}}\n"
        f"spec: {{{sleeper}, replicas: {count}, networks: [{{name: {prefix}net}}], ports: ['127.0.0.1::80']}}\n---\n"
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}client, stack: {prefix}s}}\n"
        f"spec: {{{sleeper}, networks: [{{name: {prefix}net}}]}}\n"
    )


@pytest.mark.integration
def test_replicas_answer_the_service_name_and_scale(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(manifest(prefix, 3))
    applied = reconcile(loaded, "apply", "-f", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    replicas = [f"{prefix}web-{i}" for i in (1, 2, 3)]
    actual = engine.observe().containers
    assert all(actual[name].state == "running" for name in replicas)
    addresses = {engine.exec(name, ["hostname", "-i"]).stdout.decode().strip() for name in replicas}
    assert len(addresses) == 3
    answer = engine.exec(f"{prefix}client", ["nslookup", f"{prefix}web"], timeout=20).stdout.decode()
    assert all(address in answer for address in addresses), answer
    assert len({actual[name].published_ports for name in replicas}) == 3, "a random host port each"

    path.write_text(manifest(prefix, 2))
    scaled = reconcile(loaded, "apply", "-y", "-f", str(path))
    assert scaled.returncode == 0, scaled.stdout + scaled.stderr
    after = engine.observe().containers
    assert f"{prefix}web-3" not in after
    assert [after[name].container_id for name in replicas[:2]] == [actual[name].container_id for name in replicas[:2]]
