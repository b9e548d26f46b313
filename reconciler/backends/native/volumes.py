"""Volumes of the native engine: named volumes, anonymous volumes, copy-up and ``volumesFrom``.

* **Named volumes** use the ``local`` driver: ``<root>/volumes/<name>/_data`` holds the data and
  ``volume.json`` the labels. They outlive every container; only ``remove_volume`` deletes one,
  and not while a container mounts it. A volume a mount marks ``external`` must exist already (another
  stack's Volume): it is never created here, and a missing one is an error naming it.
* **Copy-up**, as Docker does at create: an empty volume mounted over a directory of the image
  gets that directory's content (modes, owners, times, xattrs; links as links), copied through
  fds with ``O_NOFOLLOW``: another container sharing the volume may swap a directory for a link.
* **Anonymous volumes**: each path of the image's ``Volumes`` that no mount covers gets a
  directory under the container's own (it goes with the container, as ``docker rm -v``), filled
  the same way, and enters the request as a bind mount of that directory.
* **volumesFrom**: the named-volume and bind mounts of each source container (what it inherited
  itself included) become the new container's own, so its record, ``observe`` and later
  ``volumesFrom`` of it see them; tmpfs mounts stay private.

Callers hold the engine's lock. This module must not mount, run or network anything, nor touch a
volume's content by path (anything inside may be a link planted by a container).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import posixpath
import shutil
import stat
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from reconciler import errors, files, manifests, observed
from reconciler.backends.native import records

if typing.TYPE_CHECKING:  # plans, images and layers (tarfile, zstandard) are not needed to observe volumes
    from reconciler import plans
    from reconciler.backends.native import images

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
        """Volume name → its data directory, for each volume the spec mounts (an external one must
        exist already: another stack's, or one made outside the manifests)."""
        paths: dict[str, str] = {}
        for mount in spec.mounts:
            if isinstance(mount, manifests.VolumeMount):
                directory = self.base / mount.source
                if not (directory / VOLUME_RECORD).exists():
                    what = "external volume" if mount.external else "volume"
                    raise errors.NotFound(f"{what} {mount.source} not found")
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
    device nodes, FIFOs and sockets skipped (reading one could block or never end).

    A named volume may be shared with a running container, which can create entries or swap a
    directory for a symlink while the copy runs (the CVE-2018-15664 pattern). So the copy works on
    fds only: every entry is made with ``mkdirat``/``openat``/``symlinkat`` under an fd of its
    directory, opened with ``O_NOFOLLOW``, and owners, modes and times are set on fds; an entry
    that already exists is someone else's and is left as it is, subtree and all.
    """
    from reconciler.backends.native import layers  # only here: observing volumes needs no tar reader

    destination = _open_volume(volume)
    try:
        if os.listdir(destination):
            return
        try:
            # Resolved inside the rootfs: an image's symlink on the way cannot lead out of it.
            source_path = layers.resolve_in_root(rootfs, target.lstrip("/"))
        except layers.LayerError:
            return  # nothing at that path in the image
        source = _open_directory(source_path)
        if source is None:
            return
        try:
            _copy_tree(source, destination)
        finally:
            os.close(source)
    finally:
        os.close(destination)


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the type check must not hang the open.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_XATTR_UNSUPPORTED = (errno.ENOTSUP, errno.EPERM, errno.ENODATA, errno.EINVAL)


def _open_volume(volume: Path) -> int:
    try:
        return os.open(volume, _DIRECTORY)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise errors.RuntimeFailed(f"volume directory {volume} is not a directory (a symlink?)") from None
        raise


def _open_directory(name: str | Path, directory: int | None = None) -> int | None:
    """An fd of the directory ``name`` (relative to ``directory``), never through a final symlink;
    None when it is missing or anything but a directory."""
    try:
        return os.open(name, _DIRECTORY, dir_fd=directory)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return None
        raise


@dataclasses.dataclass(slots=True)
class _Level:
    """A directory being copied: both fds, the names left to copy, the source's metadata."""

    source: int
    destination: int
    names: Iterator[str]
    info: os.stat_result


def _copy_tree(source: int, destination: int) -> None:
    """Copy the directory ``source`` into the empty ``destination`` (both fds, kept open by the
    caller). Depth first without recursion; the fds of each level's ancestors stay open."""
    top = os.fstat(source)
    _set_metadata(destination, source, top)
    levels = [_Level(source, destination, iter(sorted(os.listdir(source))), top)]
    try:
        while levels:
            level = levels[-1]
            name = next(level.names, None)
            if name is not None:
                below = _copy_entry(level, name)
                if below is not None:
                    levels.append(below)
                continue
            levels.pop()
            try:
                # Times last: the entries just made inside bumped the directory's mtime.
                os.utime(level.destination, ns=(level.info.st_atime_ns, level.info.st_mtime_ns))
            finally:
                if levels:  # the top level's fds are the caller's
                    os.close(level.source)
                    os.close(level.destination)
    finally:
        for level in levels[1:]:
            os.close(level.source)
            os.close(level.destination)


def _copy_entry(level: _Level, name: str) -> _Level | None:
    """Copy entry ``name`` of ``level``; a directory is only made here and returned as the next level."""
    info = os.stat(name, dir_fd=level.source, follow_symlinks=False)
    try:
        if stat.S_ISDIR(info.st_mode):
            return _copy_directory(level, name, info)
        if stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(name, dir_fd=level.source), name, dir_fd=level.destination)
            os.chown(name, info.st_uid, info.st_gid, dir_fd=level.destination, follow_symlinks=False)
            times = (info.st_atime_ns, info.st_mtime_ns)
            os.utime(name, ns=times, dir_fd=level.destination, follow_symlinks=False)
        elif stat.S_ISREG(info.st_mode):
            _copy_file(level, name)
    except FileExistsError:
        pass  # made by another user of the volume meanwhile: theirs, left as it is
    return None


def _copy_directory(level: _Level, name: str, info: os.stat_result) -> _Level | None:
    source = _open_directory(name, level.source)
    if source is None:
        return None
    made: int | None = None
    try:
        os.mkdir(name, 0o700, dir_fd=level.destination)
        made = _open_directory(name, level.destination)
        if made is None:
            os.close(source)
            return None  # swapped for something else right after the mkdir: not ours any more
        _set_metadata(made, source, info)
        return _Level(source, made, iter(sorted(os.listdir(source))), info)
    except BaseException:
        os.close(source)
        if made is not None:
            os.close(made)
        raise


def _copy_file(level: _Level, name: str) -> None:
    source = os.open(name, _READ, dir_fd=level.source)
    try:
        info = os.fstat(source)
        if not stat.S_ISREG(info.st_mode):
            return
        target = os.open(name, files.NEW_FILE, 0o600, dir_fd=level.destination)
        try:
            while os.sendfile(target, source, None, 1 << 30):
                pass
            _set_metadata(target, source, info)
            os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
        finally:
            os.close(target)
    finally:
        os.close(source)


def _set_metadata(target: int, source: int, info: os.stat_result) -> None:
    """Owner, then mode (a chown clears set-id bits), then xattrs (a chown clears file capabilities)."""
    os.fchown(target, info.st_uid, info.st_gid)
    os.fchmod(target, stat.S_IMODE(info.st_mode))
    try:
        names = os.listxattr(source)
    except OSError as exc:
        if exc.errno in _XATTR_UNSUPPORTED:
            return
        raise
    for name in names:
        if name.startswith("trusted.overlay."):
            continue  # overlayfs' own bookkeeping, never content
        try:
            os.setxattr(target, name, os.getxattr(source, name))
        except OSError as exc:
            if exc.errno not in _XATTR_UNSUPPORTED:
                raise
