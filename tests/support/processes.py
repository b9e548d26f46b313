"""Ending the helper processes a test started (a registry, git daemon, sshd): by their own handle.

SIGTERM first, SIGKILL when it has not ended within ``grace`` seconds; a process already gone is
left as it is. Never by name: another test's process of the same program is not ours.
"""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str], *, grace: float = 10.0) -> None:
    """End ``process`` and reap it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)
