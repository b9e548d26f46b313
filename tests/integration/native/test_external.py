"""The reverse-proxy pattern on the native engine: a proxy stack owns a network, an app stack
joins it with ``external: true``; the proxy reaches the app by its alias, deleting the app stack
leaves the network, and an app stack applied before its network exists fails naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.support import images
from tests.support.cli import reconcile

IMAGE = images.LOCAL_BUSYBOX


@pytest.mark.integration
def test_an_app_stack_joins_the_proxy_stacks_network(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    edge, proxy, app = f"{prefix}edge", f"{prefix}proxy", f"{prefix}app"
    sleeper = f"image: '{IMAGE}', command: [sleep, '3600'], stopTimeout: 1s"
    (tmp_path / "proxy.yaml").write_text(
        f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {edge}, stack: {proxy}}}\n"
        "---\n"
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {proxy}, stack: {proxy}}}\n"
        f"spec: {{{sleeper}, networks: [{{name: {edge}}}]}}\n"
    )
    (tmp_path / "app.yaml").write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {app}, stack: {app}}}\n"
        f"spec: {{{sleeper}, networks: [{{name: {edge}, external: true, aliases: [backend]}}]}}\n"
    )
    early = reconcile(loaded, "apply", "-f", str(tmp_path / "app.yaml"))
    assert early.returncode == 1 and f"external network {edge} not found" in early.stdout + early.stderr, early

    for stack in ("proxy", "app"):
        done = reconcile(loaded, "apply", "-f", str(tmp_path / f"{stack}.yaml"))
        assert done.returncode == 0, done.stdout + done.stderr
    looked_up = engine.exec(proxy, ["nslookup", "backend"], timeout=20)
    app_address = engine.exec(app, ["hostname", "-i"]).stdout.decode().strip()
    assert looked_up.exit_code == 0 and app_address.encode() in looked_up.stdout, looked_up

    deleted = reconcile(loaded, "delete", "--stack", app)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    actual = engine.observe()
    assert edge in actual.networks and actual.networks[edge].stack == proxy
    assert actual.containers[proxy].state == "running"
