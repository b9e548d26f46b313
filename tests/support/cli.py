"""Running the installed ``reconcile`` command as a user does: piped, or on a terminal (a pty).

Scenario tests drive the real console script from outside the checkout (``cwd=/``), so that what
they test is what users run; these are the one way they do it. A missing console script fails
the test with its name, never skips it.
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest


def binary() -> str:
    """The installed ``reconcile`` console script."""
    found = shutil.which("reconcile")
    if found is None:
        pytest.fail("the reconcile console script is not installed: pip install -e .", pytrace=False)
    return found


def base(root: Path, *, engine: str = "native") -> list[str]:
    """The command line's start: the engine, a private root, and no daemon."""
    return [binary(), "--engine", engine, "--root", str(root), "--socket", "none"]


def reconcile(root: Path, *args: str, engine: str = "native", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``reconcile ARGS`` on ``root``, piped: its code, stdout and stderr."""
    return subprocess.run([*base(root, engine=engine), *args], cwd="/", capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def in_pty(command: list[str], *, setup: Callable[[int], None] | None = None,
           talk: Callable[[int, bytearray], None] | None = None) -> tuple[int, str]:  # fmt: skip
    """Run ``command`` with a pty as its stdin, stdout and stderr; its code and all it wrote.

    ``setup(terminal)`` runs on the terminal's fd before the command starts (e.g. its size);
    ``talk(controller, seen)`` may read and answer while it runs (``seen`` collects the output).
    """
    controller, terminal = pty.openpty()
    if setup is not None:
        setup(terminal)
    seen = bytearray()
    with subprocess.Popen(command, cwd="/", stdin=terminal, stdout=terminal, stderr=terminal) as process:
        os.close(terminal)
        if talk is not None:
            talk(controller, seen)
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


def shows(controller: int, seen: bytearray, text: bytes) -> bool:
    """Read what the terminal has now into ``seen``; whether ``text`` has appeared (for polling)."""
    seen.extend(os.read(controller, 4096))
    return text in seen


def fetch(url: str) -> bytes | None:
    """The body at ``url``, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bytes(response.read())
    except OSError:
        return None
