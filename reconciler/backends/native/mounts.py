"""Mounts: the value that describes a container's root filesystem, and mounting/unmounting it.

The filesystem layer (snapshots) produces a :class:`Mount`; the execution layer (bundles, the
runtime) consumes it, either by calling :func:`mount` or by putting it in an OCI runtime spec
(:meth:`Mount.to_oci`). For an image's rootfs the mount is overlayfs: the image's snapshot
directories as ``lowerdir`` (top layer first) plus a per-container ``upperdir`` and ``workdir``.

mount(2) accepts one page (4096 bytes) of option data. When the absolute lowerdir paths do not
fit, :func:`mount` forks a child that ``chdir``s into the lowerdirs' common parent and mounts
with relative paths (the kernel resolves them against the caller's cwd), the trick Docker's
overlay2 driver uses; the parent process's cwd never changes (threads share it).

What it must not do: decide which layers make an image (that is ``images``/``snapshots``), or
unmount anything it is not given (no globbing of /proc/mounts by name).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import errno
import os
import re
from collections.abc import Sequence
from pathlib import Path

from reconciler import errors

PAGE_LIMIT = 4096
MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


@dataclasses.dataclass(frozen=True, slots=True)
class Mount:
    """A mount to perform: ``mount -t <type> -o <options> <source> <target>``."""

    type: str
    source: str
    target: str
    options: tuple[str, ...]

    @property
    def data(self) -> str:
        return ",".join(self.options)

    def to_oci(self) -> dict[str, object]:
        """The mount as an OCI runtime-spec ``mounts`` entry (``destination`` is the target)."""
        return {
            "destination": self.target,
            "type": self.type,
            "source": self.source,
            "options": list(self.options),
        }


def _escape(path: Path | str) -> str:
    # overlayfs splits lowerdir on ':' and options on ','; both must be escaped in paths.
    return str(path).replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def overlay(lowerdirs: Sequence[Path], *, upper: Path, work: Path, target: Path) -> Mount:
    """The overlay mount of ``lowerdirs`` (top first) with a writable ``upper``/``work`` pair."""
    if not lowerdirs:
        raise errors.EngineError("an overlay rootfs needs at least one layer")
    if len(lowerdirs) > 500:
        raise errors.EngineError(f"{len(lowerdirs)} layers exceed overlayfs' stacking limit of 500")
    options = (
        "index=off",
        "lowerdir=" + ":".join(_escape(p) for p in lowerdirs),
        f"upperdir={_escape(upper)}",
        f"workdir={_escape(work)}",
    )
    return Mount(type="overlay", source="overlay", target=str(target), options=options)


def _relative_form(m: Mount) -> tuple[str, str] | None:
    """(cwd, data) with lowerdirs relative to their common parent, or None if that doesn't help."""
    lower_option = next((o for o in m.options if o.startswith("lowerdir=")), None)
    if lower_option is None:
        return None
    lowers = [p.replace("\\:", ":") for p in _split_lowers(lower_option[len("lowerdir=") :])]
    common = os.path.commonpath(lowers)
    if not common or common == "/":
        return None
    relative = ":".join(_escape(os.path.relpath(p, common)) for p in lowers)
    options = [f"lowerdir={relative}" if o is lower_option else o for o in m.options]
    return common, ",".join(options)


def _split_lowers(text: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _mount_call(m: Mount, data: str) -> int:
    result = _libc.mount(m.source.encode(), m.target.encode(), m.type.encode(), 0, data.encode())
    return 0 if result == 0 else ctypes.get_errno()


def mount(m: Mount) -> None:
    """Perform ``m``; the target directory must exist. Raises ``errors.RuntimeFailed``."""
    data = m.data
    if len(data.encode()) < PAGE_LIMIT:
        code = _mount_call(m, data)
    else:
        relative = _relative_form(m)
        if relative is None or len(relative[1].encode()) >= PAGE_LIMIT:
            raise errors.RuntimeFailed(f"mount options for {m.target} exceed one page even with relative paths")
        cwd, short = relative
        code = _mount_in_child(m, cwd, short)
    if code:
        raise errors.RuntimeFailed(f"mounting {m.type} on {m.target} failed: {os.strerror(code)}")


def _mount_in_child(m: Mount, cwd: str, data: str) -> int:
    """chdir + mount in a forked child so this (threaded) process keeps its cwd."""
    # Everything the child needs is prepared before fork: it only calls chdir, mount and _exit.
    source, target, fstype, payload = m.source.encode(), m.target.encode(), m.type.encode(), data.encode()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.chdir(cwd)
            result = _libc.mount(source, target, fstype, 0, payload)
            os._exit(0 if result == 0 else min(ctypes.get_errno(), 255))
        except BaseException:
            os._exit(255)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return errno.EIO if code == 255 else code


def unmount(target: Path | str, *, detach: bool = False) -> None:
    """Unmount ``target``; a target that is not mounted is not an error."""
    result = _libc.umount2(str(target).encode(), MNT_DETACH if detach else 0)
    if result != 0:
        code = ctypes.get_errno()
        if code == errno.EINVAL:
            return  # not a mount point (already unmounted)
        raise errors.RuntimeFailed(f"unmounting {target} failed: {os.strerror(code)}")


def mount_points() -> list[str]:
    """Every mount point of this process's mount namespace (from /proc/self/mountinfo)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        # mountinfo escapes space, tab, newline and backslash as \ooo octal.
        return [
            re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            for fields in (line.split() for line in handle)
            if len(fields) > 4
        ]


def is_mounted(target: Path | str) -> bool:
    """True when ``target`` is a mount point (compared by /proc/self/mountinfo, exact path). A
    mount of another file system than its parent's (an overlay rootfs, a tmpfs) is seen from its
    device number first: the table, read and parsed whole, grows with every container."""
    return os.path.ismount(target) or os.path.realpath(target) in mount_points()


def unmount_folder(path: Path) -> None:
    """A folder a tmpfs was mounted on: unmounted (lazily, its contents gone with it) and removed."""
    if is_mounted(path):
        unmount(path, detach=True)
    with contextlib.suppress(OSError):
        path.rmdir()
