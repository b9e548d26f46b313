"""A native container's secrets and configs: their files on a root-only tmpfs of its own.

Sits beside :mod:`mounts` (which it uses) and below :mod:`assembly` and the engine. A container
that has secrets or configs gets a small tmpfs at ``<container dir>/files`` (mode 0700, root's):
each file is written there with the uid, gid and mode its manifest asks, named by its position
(never by its name), and the runtime spec binds it read-only at its path in the container
(:mod:`bundles`). So nothing of a content is written to the container's layer or its bundle.

The tmpfs does not outlive a host reboot, so the contents are also kept in the container's record
(``container.json``: 0600 in a 0700 directory under the root-only state, where env values already
are), base64-encoded; :func:`materialise` makes the tmpfs again at start when it is gone. The tmpfs
is unmounted when the container is taken apart (:func:`unmount`).

This module must not start, stop or signal anything, and must not put a content in a message.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler import errors, files, manifests
from reconciler.backends.native import mounts

FOLDER = "files"
# The record's key for the contents (path in the container → base64 of the bytes).
RECORD_KEY = "files"
PAGE = 4096


def folder(directory: Path) -> Path:
    """The tmpfs of the container whose directory is ``directory``."""
    return directory / FOLDER


def to_record(contents: Mapping[str, bytes]) -> dict[str, str]:
    """The contents as the record keeps them."""
    return {path: base64.b64encode(data).decode("ascii") for path, data in contents.items()}


def from_record(data: Mapping[str, Any]) -> dict[str, bytes]:
    """The contents a record keeps (none for a record without secrets or configs)."""
    return {str(path): base64.b64decode(text) for path, text in (data.get(RECORD_KEY) or {}).items()}


def materialise(directory: Path, spec: manifests.ContainerSpec, contents: Mapping[str, bytes]) -> dict[str, str]:
    """The container's tmpfs, mounted and filled unless it already is; returns each file's path in
    the container → its file on the tmpfs (empty when the spec has no secrets or configs)."""
    items = manifests.mounted_files(spec)
    if not items:
        return {}
    tmpfs = folder(directory)
    placed = {item.path: str(tmpfs / str(index)) for index, item in enumerate(items)}
    if mounts.is_mounted(tmpfs):
        return placed
    missing = [item.path for item in items if item.path not in contents]
    if missing:
        raise errors.RuntimeFailed(f"no content for {', '.join(missing)} (secrets and configs come from the manifest)")
    tmpfs.mkdir(mode=0o700, exist_ok=True)
    # Room for each file in whole pages, plus a page of slack each: nothing else is ever written.
    size = sum((len(contents[item.path]) // PAGE + 2) * PAGE for item in items)
    options = ("mode=0700", "uid=0", "gid=0", f"size={size}", f"nr_inodes={len(items) + 16}")
    mounts.mount(mounts.Mount(type="tmpfs", source="reconciler-files", target=str(tmpfs), options=options))
    try:
        for index, item in enumerate(items):
            files.write_owned(tmpfs / str(index), contents[item.path], uid=item.uid, gid=item.gid, mode=item.mode)
    except BaseException:
        unmount(directory)
        raise
    return placed


def unmount(directory: Path) -> None:
    """The container's tmpfs, unmounted (its contents gone with it) and its mount point removed."""
    mounts.unmount_folder(folder(directory))
