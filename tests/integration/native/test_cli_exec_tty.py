"""``reconcile exec -t`` on the native engine: the command gets a terminal of its own, relayed to
the user's (a pty here) with its window size, and the exit code comes back; through the installed
command, as a user at a shell runs it."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.support import cli, images
from tests.support.polling import eventually

IMAGE = images.LOCAL_BUSYBOX


@pytest.mark.integration
def test_exec_t_gives_the_command_a_terminal_of_the_users_size(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    name = f"{prefix}shell"
    manifest = tmp_path / "shell.yaml"
    manifest.write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {prefix}s}}\n"
        f"spec: {{image: '{IMAGE}', command: [sleep, '3600'], networkMode: none, stopTimeout: 1s}}\n"
    )
    base = cli.base(loaded)
    subprocess.run([*base, "apply", "-f", str(manifest)], cwd="/", check=True, capture_output=True)

    def resize(terminal: int) -> None:
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))

    def talk(controller: int, seen: bytearray) -> None:
        eventually(lambda: cli.shows(controller, seen, b"# "), what="the shell's prompt")
        os.write(controller, b"stty size; tty; echo $TERM; exit 3\r")
        eventually(lambda: cli.shows(controller, seen, b"xterm"), what="the commands' output")

    code, text = cli.in_pty([*base, "exec", "-t", name, "--", "sh"], setup=resize, talk=talk)
    assert code == 3, text
    assert "33 101" in text, text
    assert "/dev/pts/" in text, text
