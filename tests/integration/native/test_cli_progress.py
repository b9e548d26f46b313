"""A long step shows on a terminal while it runs: ``reconcile delete`` of a container that ignores
its stop signal (its full ``stopTimeout``) draws ``stop container NAME… 1.2s`` under the printed
steps, and ``reconcile stop`` draws ``stopping NAME… 1.2s``, through the installed command in a
pty; piped, the same delete prints no status line."""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.support import images

IMAGE = images.LOCAL_BUSYBOX


def run_in_pty(command: list[str]) -> tuple[int, str]:
    """Run ``command`` with a pty as stdin, stdout and stderr; everything it wrote, and its code."""
    controller, terminal = pty.openpty()
    with subprocess.Popen(command, cwd="/", stdin=terminal, stdout=terminal, stderr=terminal) as process:
        os.close(terminal)
        seen = bytearray()
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen.extend(chunk)
        code = process.wait(timeout=120)
    os.close(controller)
    return code, seen.decode(errors="replace")


@pytest.mark.integration
def test_a_stop_that_takes_its_full_timeout_shows_its_elapsed_time(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    binary = shutil.which("reconcile")
    if binary is None:
        pytest.fail("the reconcile console script is not installed: pip install -e .", pytrace=False)
    name, stack = f"{prefix}slow", f"{prefix}s"
    manifest = tmp_path / "slow.yaml"
    # ``sleep`` as the container's first process ignores SIGTERM (pid 1 has no default action),
    # so the stop waits its whole stopTimeout before the kill.
    manifest.write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {stack}}}\n"
        f"spec: {{image: '{IMAGE}', command: [sleep, '3600'], networkMode: none, stopTimeout: 2s}}\n"
    )
    base = [binary, "--engine", "native", "--root", str(loaded), "--socket", "none"]
    subprocess.run([*base, "apply", "-f", str(manifest)], cwd="/", check=True, capture_output=True)

    code, text = run_in_pty([*base, "delete", "--stack", stack])
    assert code == 0, text
    assert re.search(rf"stop container {name}… [0-9]+\.[0-9]s", text), text
    assert "\r\x1b[2K" in text, "the status line is erased before the step's own line"
    assert re.search(rf"✓.* 1\. stop container {name} \([0-9.]+s\)", text), text
    assert name not in engine.observe().containers

    subprocess.run([*base, "apply", "-f", str(manifest)], cwd="/", check=True, capture_output=True)
    code, text = run_in_pty([*base, "stop", name])
    assert code == 0, text
    assert re.search(rf"stopping {name}… [0-9]+\.[0-9]s", text), text
    assert text.endswith(f"stopped {name}\r\n"), text
    piped = subprocess.run([*base, "delete", "--stack", stack], cwd="/", capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, check=True, timeout=120)  # fmt: skip
    assert "…" not in piped.stdout and "\x1b" not in piped.stdout, piped.stdout
