"""Helper processes of the native engine, told apart from whatever else reuses their pids.

The engine starts two kinds of long-lived helpers, both detached so that they outlive it: a
keeper (conmon) per container run and a DNS server per network. Later, possibly from another engine
process, it must know whether the process a pid file names is still *that* process: a pid alone
may have been reused, so every pid is recorded with the process's start time (field 22 of
``/proc/<pid>/stat``, in clock ticks since boot), and the pair identifies it.

This module knows processes only: it must not know containers, networks or the files that name
the pids.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: with the pid, it identifies a process across pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after its closing ")".
    fields = text[text.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def is_running(pid: int, started: object) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (zombies included)."""
    return start_time(pid) == started


def kill_and_wait(pid: int, started: object, *, grace: float) -> None:
    """SIGKILL the process (if it is still the one recorded) and wait up to ``grace`` for its end."""
    if not is_running(pid, started):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_for_end(pid, started, timeout=grace)


def wait_for_end(pid: int, started: object, *, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the process to end (or to be a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        # Gone, or a zombie of ours (the thread that waits for it reaps it).
        if fields[0] == "Z" or fields[19] != started:
            return
        time.sleep(0.005)


def helper_environment() -> dict[str, str]:
    """The environment of the keepers (and, through them, the restarters they start) and of the DNS
    processes, started with ``python -S``.

    -S skips the site-packages scan at start (tens of ms per container), so .pth files are not
    read either: an editable install's import hook would be missing. The folder holding this
    package therefore goes first on PYTHONPATH, then everything this process can import from.
    """
    package_parent = str(Path(__file__).resolve().parents[3])
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join([package_parent, *sys.path])}


def reap_in_background(process: subprocess.Popen[bytes]) -> None:
    """A helper lives on after this process exits; while we live, a thread reaps it if it ends
    first, so that it never lingers as a zombie of ours."""
    threading.Thread(target=process.wait, daemon=True).start()


def keepers() -> list[tuple[int, str, str]]:
    """Live conmon processes: (pid, start time, the bundle they keep). A scan of /proc: for the
    rare look for keepers that nothing names any more."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if not argv or os.path.basename(argv[0]) != b"conmon" or b"--bundle" not in argv[:-1]:
            continue
        bundle = os.fsdecode(argv[argv.index(b"--bundle") + 1])
        started = start_time(int(entry.name))
        if started is not None:
            found.append((int(entry.name), started, bundle))
    return found
