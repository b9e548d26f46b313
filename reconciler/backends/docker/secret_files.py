"""Docker backend, secrets and configs: files on a root-only tmpfs of the host, bound read-only.

dockerd without swarm has no secrets API; as compose does, each secret or config is a file on the
host bind-mounted read-only at its path in the container. Here the files live on a tmpfs of our
own at :data:`BASE` (mounted once, mode 0700, root's), one folder per created container (a random
name: a container is renamed during a recreate), each file named by its position with the uid,
gid and mode its manifest asks. Nothing of a content is written to disk, to the container's
layer or to its labels; the folder is removed with the container.

A host reboot empties the tmpfs: a container whose files are gone cannot start, and
:func:`lost` tells the engine so, and it reports the container as needing a recreate
(:func:`mark_lost`), which writes the files again from the manifest.

This module does not speak to dockerd and must not put a content in a message.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import errors, files, manifests, observed

if TYPE_CHECKING:  # annotations only here
    from reconciler import plans

BASE = Path("/run/reconciler/docker-secrets")
# What observe reports instead of the digests of files that are gone.
LOST = "lost (the host rebooted?)"
# The tmpfs holds only secrets and configs (each at most a manifest's size); pages are used only
# as files fill them.
TMPFS_SIZE = "64m"


def _ensure_tmpfs(base: Path) -> None:
    """:data:`BASE` as a tmpfs of its own, root-only (a /run that is not a tmpfs is not trusted)."""
    files.make_private_dir(base)
    if os.path.ismount(base):
        return
    # Under a lock, looked at again: two creates at once would otherwise stack two tmpfs there,
    # and the first one's files would vanish under the second.
    with files.file_lock(base.parent / f".{base.name}.lock"):
        if not os.path.ismount(base):
            _mount_tmpfs(base)


def _mount_tmpfs(base: Path) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"mode=0700,uid=0,gid=0,nosuid,nodev,size={TMPFS_SIZE}",
         "reconciler-secrets", str(base)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise errors.RuntimeFailed(f"cannot mount a tmpfs for secrets at {base}: {done.stderr.strip()}")


def place(request: plans.ContainerRequest, base: Path = BASE) -> dict[str, str]:
    """The request's secrets and configs written to a fresh folder of the tmpfs; returns each
    one's path in the container → its file (empty when there is none)."""
    items = manifests.mounted_files(request.spec)
    if not items:
        return {}
    missing = [item.path for item in items if item.path not in request.files]
    if missing:
        raise errors.RuntimeFailed(f"no content for {', '.join(missing)} (secrets and configs come from the manifest)")
    _ensure_tmpfs(base)
    folder = base / secrets.token_hex(16)
    folder.mkdir(mode=0o700)
    try:
        for index, item in enumerate(items):
            data = request.files[item.path]
            files.write_owned(folder / str(index), data, uid=item.uid, gid=item.gid, mode=item.mode)
    except BaseException:
        remove([folder])
        raise
    return {item.path: str(folder / str(index)) for index, item in enumerate(items)}


def binds(placed: Mapping[str, str]) -> list[dict[str, Any]]:
    """``HostConfig.Mounts`` entries binding each placed file read-only at its path."""
    return [
        {"Type": "bind", "Source": source, "Target": target, "ReadOnly": True}
        for target, source in sorted(placed.items())
    ]


def folders(inspected: Mapping[str, Any], base: Path = BASE) -> list[Path]:
    """The folders of the tmpfs an inspected container's binds come from."""
    found = {
        Path(str(mount.get("Source"))).parent
        for mount in inspected.get("Mounts") or ()
        if mount.get("Type") == "bind" and Path(str(mount.get("Source"))).parent.parent == base
    }
    return sorted(found)


def lost(inspected: Mapping[str, Any], base: Path = BASE) -> bool:
    """Whether a file the container binds from the tmpfs is gone (the host rebooted)."""
    return any(
        mount.get("Type") == "bind"
        and Path(str(mount.get("Source"))).parent.parent == base
        and not os.path.exists(str(mount.get("Source")))
        for mount in inspected.get("Mounts") or ()
    )


def mark_lost(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels of a container whose files are :func:`lost`, as observe reports them: another
    hash (so the planner recreates it) and, in the spec label, each content's digest replaced by
    :data:`LOST` (so the plan says why)."""
    marked = {**labels, observed.LABEL_HASH: LOST}
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        document = json.loads(labels[observed.LABEL_SPEC])
        document["contents"] = dict.fromkeys(document.get("contents") or {}, LOST)
        marked[observed.LABEL_SPEC] = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return marked


def remove(found: list[Path]) -> None:
    """The folders, removed (a folder already gone is not an error)."""
    for folder in found:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(folder)
