"""``reconcile --engine docker exec -t``: a terminal through Docker's own command line, with the
user's window size and the command's exit code (the installed command, in a pty)."""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from reconciler.backends import docker as docker_backend
from tests.support.polling import eventually


@pytest.mark.integration
def test_exec_t_on_the_docker_engine(
    engine: docker_backend.DockerEngine, image: str, prefix: str, tmp_path: Path
) -> None:
    binary = shutil.which("reconcile")
    if binary is None:
        pytest.fail("the reconcile console script is not installed: pip install -e .", pytrace=False)
    name = f"{prefix}shell"
    manifest = tmp_path / "shell.yaml"
    manifest.write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {prefix}s}}\n"
        f"spec: {{image: '{image}', command: [sleep, '3600'], networkMode: none, stopTimeout: 1s}}\n"
    )
    base = [binary, "--engine", "docker", "--root", str(tmp_path / "root"), "--socket", "none"]
    subprocess.run([*base, "apply", "-f", str(manifest)], cwd="/", check=True, capture_output=True)

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    with subprocess.Popen([*base, "exec", "-t", name, "--", "sh"], cwd="/", stdin=terminal, stdout=terminal,
                          stderr=terminal) as process:  # fmt: skip
        os.close(terminal)
        seen = bytearray()

        def shows(text: bytes) -> bool:
            seen.extend(os.read(controller, 4096))
            return text in seen

        eventually(lambda: shows(b"# "), what="the shell's prompt")
        os.write(controller, b"stty size; tty; exit 3\r")
        eventually(lambda: shows(b"/dev/pts/"), what="the commands' output")
        code = process.wait(timeout=60)
    os.close(controller)
    text = seen.decode(errors="replace")
    assert code == 3, text
    assert "33 101" in text, text
