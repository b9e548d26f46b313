"""Whether a controller (``reconcile watch``) runs for a state root, and which stacks it manages.

The native engine's per-container restarter (the restart policy when no controller runs) must
stand aside for a controller that manages the container's stack: two deciders would restart a
container twice. The daemon announces itself for its whole life with :func:`announced`: an
exclusive ``flock`` on ``<root>/controller.lock`` (the kernel drops it when the process dies, even
by ``kill -9``, so a dead controller is never taken for a live one), and in the file the path of
its ``stacks.json``. :func:`manages` answers the restarter.

Where it sits: at the bottom, beside ``files``; standard library only. It must not import the
controller or an engine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from reconciler import files

LOCK = "controller.lock"


@contextlib.contextmanager
def announced(root: Path, stacks_file: Path | None) -> Iterator[None]:
    """While the block runs, this process is the root's controller, managing ``stacks_file``'s stacks."""
    files.make_private_dir(root)
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"stacks": str(stacks_file) if stacks_file else None}).encode())
        yield
    finally:
        os.close(fd)


def manages(root: Path, stack: str | None) -> bool:
    """Whether a live controller of ``root`` manages ``stack`` (unsure: it does)."""
    try:
        fd = os.open(root / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: a controller runs
        else:
            return False  # nobody holds it: the last controller is gone
        try:
            where = json.loads(os.read(fd, 4096) or b"{}").get("stacks")
            managed = json.loads(Path(where).read_text()).get("stacks") if where else None
        except (OSError, ValueError, AttributeError, TypeError):
            return True
        return stack in managed if isinstance(managed, list) else True
    finally:
        os.close(fd)
