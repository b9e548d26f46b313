"""The one way this project writes state files: root-only, atomic, and durable when asked.

Every state writer (the native engine's records, bundles, network allocations, the exit file of
a run that could not be created, the content store, the controller's persisted state and last good manifests) goes
through :func:`write_atomic` or :func:`write_json`, so that a reader — or the next run after a
``kill -9`` — sees either the old file or the new one, never a torn mix, and nothing in the state
tree is readable by other users (state can hold secrets: env values, registry tokens).

The sequence is: a temporary file beside the target (mode 0600, ``O_NOFOLLOW`` so a planted link
is not followed) → write → ``fsync`` → ``rename`` over the target → ``fsync`` of the directory.
The last step makes the rename itself survive a power cut; ``durable=False`` skips both fsyncs
for files that are rewritten often and are cheap to lose (the next run rebuilds them).

This module sits at the bottom with ``errors``: it imports only the standard library, and little
of it (paths are handled with ``os.path``, so callers may pass a ``Path`` or a string). It must not
log, print or import anything of the project.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator

# Paths are ``str | os.PathLike[str]`` (a ``Path`` or a string), spelled out in each annotation.

# Open flags of a file that must be new: never one that exists (``FileExistsError``), never through
# a link planted at its path.
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def make_private_dir(path: str | os.PathLike[str]) -> None:
    """Create ``path`` (and parents) as root-only directories (0700); state is not for others.

    Each directory made is made durable too (its parent is fsynced): a file written durably
    into a new directory must not vanish with the directory's own entry after a power cut."""
    missing = []
    current = os.path.abspath(os.fspath(path))
    while not os.path.exists(current):
        missing.append(current)
        current = os.path.dirname(current)
    for directory in reversed(missing):
        # mkdir's mode is filtered by the umask, and makedirs would not apply it to parents:
        # create each level and chmod it explicitly.
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        os.chmod(directory, 0o700)
        _fsync_directory(os.path.dirname(directory))


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to the descriptor ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix.

    The parent directories are created root-only when missing. ``durable`` fsyncs the file and,
    after the rename, its directory.
    """
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    make_private_dir(directory)
    # The pid keeps two processes that write the same file from sharing a temporary name.
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if durable:
        _fsync_directory(directory)


def write_json(path: str | os.PathLike[str], value: object, *, durable: bool = True, indent: int | None = None) -> None:
    """:func:`write_atomic` of ``value`` as JSON with sorted keys (stable bytes for equal values)."""
    write_atomic(path, json.dumps(value, sort_keys=True, indent=indent).encode(), durable=durable)


def write_owned(path: str | os.PathLike[str], data: bytes, *, uid: int, gid: int, mode: int) -> None:
    """A new file (never one that exists, never through a link) holding ``data``, with the owner
    and mode asked: a secret or config placed for a container on its tmpfs. Not durable: such a
    file lives in memory only."""
    fd = os.open(path, NEW_FILE, 0o600)
    try:
        write_all(fd, data)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)  # after the chown, which may clear mode bits
    finally:
        os.close(fd)


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of :func:`write_atomic`'s temporary files (left by a crash)."""
    return name.startswith(".") and name.endswith(".tmp")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, shared: bool = False) -> Iterator[None]:
    """An ``flock`` on ``path``: excludes other processes and other threads (each opens its own fd)."""
    make_private_dir(os.path.dirname(os.path.abspath(os.fspath(path))))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
