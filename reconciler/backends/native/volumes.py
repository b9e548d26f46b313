"""Volumes of the native engine: named volumes, anonymous volumes, copy-up and ``volumesFrom``.

* **Named volumes** use the ``local`` driver: ``<root>/volumes/<name>/_data`` holds the data and
  ``volume.json`` the labels. They outlive every container; only ``remove_volume`` deletes one,
  and not while a container mounts it. A volume a manifest marks ``external`` is created, without
  labels, when a container first needs it.
* **Copy-up**, as Docker does at create: an empty volume mounted over a directory of the image
  gets that directory's content (modes, owners, times, xattrs; links as links).
* **Anonymous volumes**: each path of the image's ``Volumes`` that no mount covers gets a
  directory under the container's own (it goes with the container, as ``docker rm -v``), filled
  the same way, and enters the request as a bind mount of that directory.
* **volumesFrom**: the named-volume and bind mounts of each source container (what it inherited
  itself included) become the new container's own, so its record, ``observe`` and later
  ``volumesFrom`` of it see them; tmpfs mounts stay private.

Callers hold the engine's lock. This module must not mount, run or network anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from reconciler import errors, files, manifests, observed, plans
from reconciler.backends.native import images, layers, records

VOLUME_RECORD = "volume.json"
DATA = "_data"


class Volumes:
    """The named volumes under ``<root>/volumes``."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def create(self, name: str, labels: Mapping[str, str]) -> None:
        """Create the volume; a no-op when it exists with the same owner labels, else Conflict."""
        directory = self.base / name
        existing = records.read_json(directory / VOLUME_RECORD)
        if existing is not None:
            owner = existing.get("labels", {})
            if all(owner.get(k) == labels.get(k) for k in observed.OWNER_LABELS):
                return
            raise errors.Conflict(f"volume {name} exists and is owned by someone else")
        (directory / DATA).mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        files.write_json(directory / VOLUME_RECORD, {"name": name, "labels": dict(labels)})

    def remove(self, name: str, users: Sequence[str]) -> None:
        """Delete the volume and its data, unless ``users`` (containers mounting it) is not empty."""
        if users and (self.base / name).exists():
            raise errors.RuntimeFailed(f"volume {name} is in use by {', '.join(sorted(users))}")
        shutil.rmtree(self.base / name, ignore_errors=True)

    def observed(self) -> dict[str, observed.ObservedVolume]:
        """The volumes that carry the project's labels."""
        found: dict[str, observed.ObservedVolume] = {}
        if not self.base.is_dir():
            return found
        for entry in sorted(self.base.iterdir()):
            record = records.read_json(entry / VOLUME_RECORD)
            if record is None:
                continue
            labels = record.get("labels", {})
            if observed.LABEL_KIND in labels:
                found[entry.name] = observed.ObservedVolume(
                    name=entry.name, labels=labels, mountpoint=str(entry / DATA)
                )
        return found

    def paths_for(self, spec: manifests.ContainerSpec) -> dict[str, str]:
        """Volume name → its data directory, for each volume the spec mounts (external ones made)."""
        paths: dict[str, str] = {}
        for mount in spec.mounts:
            if isinstance(mount, manifests.VolumeMount):
                directory = self.base / mount.source
                if not (directory / VOLUME_RECORD).exists():
                    if not mount.external:
                        raise errors.NotFound(f"volume {mount.source} not found")
                    self.create(mount.source, {})
                paths[mount.source] = str(directory / DATA)
        return paths


def users(store: records.Records, name: str) -> list[str]:
    """The containers that mount volume ``name``."""
    return sorted(
        record.name
        for record in store.all()
        if any(isinstance(m, manifests.VolumeMount) and m.source == name for m in record.spec.mounts)
    )


def with_mounts(spec: manifests.ContainerSpec, extra: Sequence[manifests.Model]) -> manifests.ContainerSpec:
    """``spec`` with ``extra`` mounts after its own."""
    document = manifests.to_document(spec)
    document["mounts"] = [*document.get("mounts", []), *(manifests.to_document(mount) for mount in extra)]
    return manifests.container_spec_from_document(document)


def with_volumes_from(request: plans.ContainerRequest, store: records.Records) -> plans.ContainerRequest:
    """The request with what ``volumesFrom`` brings, as Docker does it: the named-volume and bind
    mounts of each source container, same targets and modes. The container's own mount of a path
    wins, then the first source naming it."""
    if not request.spec.volumes_from:
        return request
    taken = {mount.target for mount in request.spec.mounts}
    inherited: list[manifests.VolumeMount | manifests.BindMount] = []
    for source_name in request.spec.volumes_from:
        source = store.find(source_name)
        if source is None:
            raise errors.NotFound(f"container {request.name}: volumesFrom {source_name}: no such container")
        for mount in source.spec.mounts:
            if isinstance(mount, manifests.VolumeMount | manifests.BindMount) and mount.target not in taken:
                taken.add(mount.target)
                inherited.append(mount)
    return dataclasses.replace(request, spec=with_mounts(request.spec, inherited))


def with_image_volumes(
    request: plans.ContainerRequest,
    image: images.Image,
    directory: Path,
    rootfs: Path,
    volume_paths: Mapping[str, str],
) -> plans.ContainerRequest:
    """Copy-up into the empty named volumes, and the anonymous volumes of the image's ``Volumes``
    (module docstring), which the returned request mounts as binds."""
    spec = request.spec
    for mount in spec.mounts:
        if isinstance(mount, manifests.VolumeMount):
            copy_up(rootfs, mount.target, Path(volume_paths[mount.source]))
    taken = {mount.target for mount in spec.mounts}
    anonymous: list[manifests.BindMount] = []
    for declared in image.config.volumes:
        target = posixpath.normpath("/" + declared.lstrip("/"))
        if target == "/" or target in taken:
            continue
        taken.add(target)
        data = directory / "volumes" / hashlib.sha256(target.encode()).hexdigest()[:16]
        data.mkdir(mode=0o755, parents=True)
        copy_up(rootfs, target, data)
        anonymous.append(manifests.bind_mount(str(data), target))
    if not anonymous:
        return request
    return dataclasses.replace(request, spec=with_mounts(spec, anonymous))


def copy_up(rootfs: Path, target: str, volume: Path) -> None:
    """Copy the image's directory at ``target`` into ``volume`` if the volume is empty (Docker's
    copy-up): contents, modes, owners, times and xattrs; symlinks copied as links, never followed;
    device nodes, FIFOs and sockets skipped (reading one could block or never end)."""
    if any(volume.iterdir()):
        return
    try:
        # Resolved inside the rootfs: an image's symlink on the way cannot lead out of it.
        source = layers.resolve_in_root(rootfs, target.lstrip("/"))
    except layers.LayerError:
        return  # nothing at that path in the image
    if not source.is_dir() or source.is_symlink():
        return

    def special(folder: str, names: list[str]) -> set[str]:
        kinds = (stat.S_ISREG, stat.S_ISDIR, stat.S_ISLNK)
        return {n for n in names if not any(k(os.lstat(os.path.join(folder, n)).st_mode) for k in kinds)}

    shutil.copytree(source, volume, symlinks=True, ignore=special, dirs_exist_ok=True)
    _copy_owners(source, volume)


def _copy_owners(source: Path, volume: Path) -> None:
    """shutil keeps modes and times but not owners: a second walk (links not followed) sets them."""
    top = os.lstat(source)
    os.chown(volume, top.st_uid, top.st_gid)
    os.chmod(volume, stat.S_IMODE(top.st_mode))
    for folder, folders, names in os.walk(source):
        relative = os.path.relpath(folder, source)
        for name in [*folders, *names]:
            copied = volume / relative / name
            if os.path.lexists(copied):
                info = os.lstat(os.path.join(folder, name))
                os.lchown(copied, info.st_uid, info.st_gid)
                if not stat.S_ISLNK(info.st_mode):  # chown clears set-id bits: the mode again
                    os.chmod(copied, stat.S_IMODE(info.st_mode))
