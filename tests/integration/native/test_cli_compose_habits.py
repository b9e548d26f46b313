"""Manifests written with compose habits, through the installed ``reconcile`` command on the native
engine: the short forms that mean one thing are accepted and end up in the container (``restart:
always``, a string health-check ``test``, Docker's ``64m``); the others are errors that name the
right field, positioned."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import manifests
from reconciler.backends.native import engine as native_engine
from reconciler.controller import health
from tests.support import images
from tests.support.cli import reconcile

IMAGE = images.LOCAL_BUSYBOX


@pytest.mark.integration
def test_compose_short_forms_on_the_native_engine(loaded: Path, engine: native_engine.NativeEngine, prefix: str,
                                                  tmp_path: Path) -> None:  # fmt: skip
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}web}}\nspec:\n"
        f"  image: '{IMAGE}'\n  environment: {{A: b}}\n  volumes: ['data:/data']\n  ports: ['8080:80']\n"
    )
    refused = reconcile(loaded, "apply", "-f", str(wrong))
    assert refused.returncode == 1, refused
    assert f"{wrong}:6:3: spec.environment: unknown field `environment`; did you mean `env`?" in refused.stderr
    assert f"{wrong}:7:3: spec.volumes: unknown field `volumes`; did you mean `mounts`?" in refused.stderr
    assert "spec.ports" not in refused.stderr, "compose's short port form is accepted"
    assert not engine.observe().containers

    right = tmp_path / "right.yaml"
    right.write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}web, stack: {prefix}s}}\nspec:\n"
        f"  image: '{IMAGE}'\n  command: [sleep, '3600']\n  networkMode: none\n  restart: always\n"
        "  healthcheck: {test: 'test -d /proc && test -n \"$HOME\"'}\n  resources: {memory: 64m}\n"
    )
    applied = reconcile(loaded, "apply", "-f", str(right))
    assert applied.returncode == 0, applied
    container = engine.observe().containers[f"{prefix}web"]
    assert container.state == "running"
    assert container.resources.memory == 64 * 2**20  # Docker's 64m, not 64 000 000
    spec = manifests.container_spec_from_document((container.spec_json or {})["spec"])  # type: ignore[arg-type]
    assert spec.restart.policy == "always"
    assert spec.healthcheck is not None
    assert spec.healthcheck.test == ["CMD-SHELL", 'test -d /proc && test -n "$HOME"']
    argv = health.probe_argv(spec.healthcheck)
    assert argv is not None and engine.exec(f"{prefix}web", argv).exit_code == 0  # the shell ran the string
    assert "no changes" in reconcile(loaded, "plan", "-f", str(right)).stdout.lower()
