"""Ports as compose users write them, on the native engine: the short form, a random host port
(chosen at creation, kept across a restart, shown in ``status``), and a range."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.support import images
from tests.support.cli import fetch, reconcile
from tests.support.polling import eventually

IMAGE = images.LOCAL_BUSYBOX


@pytest.mark.integration
def test_short_forms_random_host_ports_and_ranges(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    name = f"{prefix}web"
    manifest = tmp_path / "web.yaml"
    manifest.write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {prefix}s}}\nspec:\n"
        f"  image: '{IMAGE}'\n"
        "  command: [sh, -c, 'mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www']\n"
        "  ports: ['127.0.0.1::8080', '127.0.0.1::9000-9001/udp']\n  stopTimeout: 1s\n"
    )
    applied = reconcile(loaded, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    def ports() -> list[str]:
        rows = json.loads(reconcile(loaded, "status", "-o", "json").stdout)["objects"]
        return next(row["ports"] for row in rows if row["name"] == name)

    shown = ports()
    assert len(shown) == 3, shown
    tcp = next(text for text in shown if text.endswith("->8080/tcp"))
    match = re.fullmatch(r"127\.0\.0\.1:(\d+)->8080/tcp", tcp)
    assert match, shown
    assert sorted(re.sub(r":\d+->", ":N->", text) for text in shown if "udp" in text) == [
        "127.0.0.1:N->9000/udp", "127.0.0.1:N->9001/udp",
    ]  # fmt: skip
    assert eventually(lambda: fetch(f"http://127.0.0.1:{match[1]}/"), what="the random port") == b"hello\n"

    assert reconcile(loaded, "restart", name).returncode == 0
    assert ports() == shown, "a restart keeps the ports chosen at creation"
    assert eventually(lambda: fetch(f"http://127.0.0.1:{match[1]}/"), what="after the restart") == b"hello\n"
    assert reconcile(loaded, "plan", "-f", str(manifest)).returncode == 0, "no change: nothing to recreate"
