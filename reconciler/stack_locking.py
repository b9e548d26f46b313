"""Stack locks: one ``flock``ed file per stack, so that the daemon's passes and an embedded
``apply``/``delete`` never reconcile the same stack at once.

Where it sits: below :mod:`reconciler.operations`, the controller, the API and the CLI, which
take these locks; above :mod:`reconciler.files`. The CLI's remembered no-op takes them without
importing the operations layer. It must not do anything under the locks itself.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from reconciler import files

# A stack's lock, for the ``with`` block: what the controller and the operations are given.
LockFactory = Callable[[str], contextlib.AbstractContextManager[object]]


def no_lock(stack: str) -> contextlib.AbstractContextManager[object]:
    """The lock factory of a caller that needs none (tests, a single process)."""
    del stack
    return contextlib.nullcontext()


_NOT_IN_A_LOCK_NAME = re.compile(r"[^a-z0-9-]")


@contextlib.contextmanager
def stack_lock(lock_dir: Path, stack: str) -> Iterator[None]:
    """Hold the cross-process lock of ``stack`` (blocking) for the ``with`` block.

    One ``flock``ed file per stack under ``lock_dir``: the daemon's passes and an embedded
    ``apply``/``delete`` never reconcile the same stack at once. ``flock`` locks die with their
    process, so a ``kill -9`` never leaves a stack locked.
    """
    with files.file_lock(lock_dir / f"{_NOT_IN_A_LOCK_NAME.sub('_', stack)}.lock"):
        yield


@contextlib.contextmanager
def hold_stacks(lock: LockFactory, stacks: Iterable[str]) -> Iterator[None]:
    """Hold the lock of every stack in ``stacks``, taken in sorted order (no deadlock between two
    holders of overlapping sets). A lock that cannot be taken releases those already held."""
    with contextlib.ExitStack() as held:
        for stack in sorted(set(stacks)):
            held.enter_context(lock(stack))
        yield
