"""``reconcile --engine docker exec -t``: a terminal through Docker's own command line, with the
user's window size and the command's exit code (the installed command, in a pty)."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from reconciler.backends import docker as docker_backend
from tests.support import cli
from tests.support.polling import eventually


@pytest.mark.integration
def test_exec_t_on_the_docker_engine(
    engine: docker_backend.DockerEngine, image: str, prefix: str, tmp_path: Path
) -> None:
    name = f"{prefix}shell"
    manifest = tmp_path / "shell.yaml"
    manifest.write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {prefix}s}}\n"
        f"spec: {{image: '{image}', command: [sleep, '3600'], networkMode: none, stopTimeout: 1s}}\n"
    )
    base = cli.base(tmp_path / "root", engine="docker")
    subprocess.run([*base, "apply", "-f", str(manifest)], cwd="/", check=True, capture_output=True)

    def resize(terminal: int) -> None:
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))

    def talk(controller: int, seen: bytearray) -> None:
        eventually(lambda: cli.shows(controller, seen, b"# "), what="the shell's prompt")
        os.write(controller, b"stty size; tty; exit 3\r")
        eventually(lambda: cli.shows(controller, seen, b"/dev/pts/"), what="the commands' output")

    code, text = cli.in_pty([*base, "exec", "-t", name, "--", "sh"], setup=resize, talk=talk)
    assert code == 3, text
    assert "33 101" in text, text
