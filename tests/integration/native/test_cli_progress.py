"""A long step shows on a terminal while it runs: ``reconcile delete`` of a container that ignores
its stop signal (its full ``stopTimeout``) draws ``stop container NAME… 1.2s`` under the printed
steps, and ``reconcile stop`` draws ``stopping NAME… 1.2s``, through the installed command in a
pty; piped, the same delete prints no status line."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.support import cli, images

IMAGE = images.LOCAL_BUSYBOX


@pytest.mark.integration
def test_a_stop_that_takes_its_full_timeout_shows_its_elapsed_time(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    name, stack = f"{prefix}slow", f"{prefix}s"
    manifest = tmp_path / "slow.yaml"
    # ``sleep`` as the container's first process ignores SIGTERM (pid 1 has no default action),
    # so the stop waits its whole stopTimeout before the kill.
    manifest.write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {stack}}}\n"
        f"spec: {{image: '{IMAGE}', command: [sleep, '3600'], networkMode: none, stopTimeout: 2s}}\n"
    )
    base = cli.base(loaded)
    subprocess.run([*base, "apply", "-f", str(manifest)], cwd="/", check=True, capture_output=True)

    code, text = cli.in_pty([*base, "delete", "--stack", stack])
    assert code == 0, text
    assert re.search(rf"stop container {name}… [0-9]+\.[0-9]s", text), text
    assert "\r\x1b[2K" in text, "the status line is erased before the step's own line"
    assert re.search(rf"✓.* 1\. stop container {name} \([0-9.]+s\)", text), text
    assert name not in engine.observe().containers

    subprocess.run([*base, "apply", "-f", str(manifest)], cwd="/", check=True, capture_output=True)
    code, text = cli.in_pty([*base, "stop", name])
    assert code == 0, text
    assert re.search(rf"stopping {name}… [0-9]+\.[0-9]s", text), text
    assert text.endswith(f"stopped {name}\r\n"), text
    piped = subprocess.run([*base, "delete", "--stack", stack], cwd="/", capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, check=True, timeout=120)  # fmt: skip
    assert "…" not in piped.stdout and "\x1b" not in piped.stdout, piped.stdout
