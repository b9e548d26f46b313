"""A shareable native container's ``/dev/shm``: a tmpfs on the host that its IPC peers bind too.

Sits beside :mod:`secret_files` (below :mod:`assembly` and the engine, above :mod:`mounts`). A
container's own ``/dev/shm`` is a tmpfs the runtime mounts inside it, which no other container can
reach. One with ``ipc: shareable`` gets its ``/dev/shm`` from ``<container dir>/shm`` instead, a
tmpfs mounted on the host (Docker's default size, 64Mi, or ``shmSize``; mode 1777; its binds are
``nosuid``, ``nodev``, ``noexec``, see :mod:`bundles`), which a container with
``ipc: container:NAME`` binds at its own ``/dev/shm`` too: POSIX shared memory is shared with the
IPC namespace, as with Docker.

The tmpfs does not outlive a host reboot: :func:`ensure` mounts it again at start. It is unmounted
when the container is taken apart (:func:`unmount`). This module must not start or stop anything.
"""

from __future__ import annotations

from pathlib import Path

from reconciler import manifests
from reconciler.backends.native import mounts

FOLDER = "shm"
# Docker's default size of /dev/shm.
DEFAULT_SIZE = 64 * 1024 * 1024


def folder(directory: Path) -> Path:
    """The shared ``/dev/shm`` of the container whose directory is ``directory``."""
    return directory / FOLDER


def ensure(directory: Path, spec: manifests.ContainerSpec) -> str | None:
    """The container's shared ``/dev/shm``, mounted unless it already is; its path on the host,
    or None for a container that does not share its IPC namespace."""
    if spec.ipc != "shareable":
        return None
    tmpfs = folder(directory)
    if not mounts.is_mounted(tmpfs):
        tmpfs.mkdir(mode=0o700, exist_ok=True)
        options = ("mode=1777", f"size={spec.shm_size or DEFAULT_SIZE}")
        mounts.mount(mounts.Mount(type="tmpfs", source="shm", target=str(tmpfs), options=options))
    return str(tmpfs)


def unmount(directory: Path) -> None:
    """The container's shared ``/dev/shm``, unmounted (its contents gone) and its mount point removed."""
    mounts.unmount_folder(folder(directory))
