"""Ports as compose users write them, on the docker engine: a short form with a random host port,
which ``status`` shows as dockerd bound it (the same manifest as on the native engine)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler.backends import docker as docker_backend
from tests.support.cli import fetch, reconcile
from tests.support.polling import eventually


@pytest.mark.integration
def test_a_random_host_port_is_shown_as_bound(
    engine: docker_backend.DockerEngine, image: str, prefix: str, tmp_path: Path
) -> None:
    name = f"{prefix}web"
    manifest = tmp_path / "web.yaml"
    manifest.write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {prefix}s}}\nspec:\n"
        f"  image: '{image}'\n  stopTimeout: 1s\n"
        "  command: [sh, -c, 'mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www']\n"
        "  ports: ['127.0.0.1::8080']\n"
    )
    root = tmp_path / "root"
    applied = reconcile(root, "apply", "-f", str(manifest), engine="docker")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    status = reconcile(root, "status", "-o", "json", engine="docker")
    (ports,) = [row["ports"] for row in json.loads(status.stdout)["objects"] if row["name"] == name]
    match = re.fullmatch(r"127\.0\.0\.1:(\d+)->8080/tcp", ports[0]) if len(ports) == 1 else None
    assert match, ports
    assert eventually(lambda: fetch(f"http://127.0.0.1:{match[1]}/"), what="the random port") == b"hello\n"
