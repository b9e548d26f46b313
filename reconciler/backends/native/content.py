"""Content store: immutable, content-addressed blobs under ``<root>/blobs/sha256/<hex>``.

Every blob enters through an :class:`Ingest`: bytes are appended to ``<root>/ingest/<hex>.partial``
(under an ``flock``, so two pulls sharing a layer take turns) while a sha256 runs over them, the
size promised by the descriptor is enforced on every write, and only a complete, verified file is
linked into place through the descriptor that wrote it (atomic, and never a file that someone
swapped in at the path meanwhile; a blob a concurrent writer committed first is as good). A
killed download leaves only its ``.partial`` file, which the next attempt resumes (the hash is
rebuilt from the bytes already there). A digest mismatch deletes the partial file and raises
``errors.DigestMismatch``: a wrong blob is never stored and never retried silently.

Its directories are created root-only (``files.make_private_dir``), like all of the state tree.

What it must not do: interpret blobs (manifests, configs and layers are other modules' business),
talk to the network, or delete a blob it was not asked to delete (garbage collection decides that
from image references in ``images``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import typing
from pathlib import Path

from reconciler import errors, files

_DIGEST_RE = re.compile(r"^sha256:([a-f0-9]{64})$")
_CHUNK = 1024 * 1024


def hex_of(digest: str) -> str:
    """The hex part of a ``sha256:<hex>`` digest; anything else is refused (no path tricks)."""
    match = _DIGEST_RE.match(digest)
    if match is None:
        raise errors.EngineError(f"unsupported or malformed digest {digest!r} (only sha256 is supported)")
    return match.group(1)


class Store:
    """The blob store rooted at ``root`` (``<root>/blobs/sha256``, ``<root>/ingest``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.ingest_dir = root / "ingest"

    def __repr__(self) -> str:
        return f"content.Store({str(self.root)!r})"

    def path(self, digest: str) -> Path:
        return self.blobs / hex_of(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def read(self, digest: str) -> bytes:
        """A stored blob's bytes, re-verified (small blobs only: manifests and configs)."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise errors.NotFound(f"blob {digest} is not in the content store") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise errors.DigestMismatch(f"stored blob {digest} is corrupt")
        return data

    def write(self, digest: str, data: bytes) -> bool:
        """Store verified bytes; True when the blob was new."""
        if self.has(digest):
            return False
        with self.ingest(digest, len(data)) as ingest:
            if ingest.complete:
                return False  # committed by a concurrent writer while we waited for the lock
            ingest.restart()  # we have every byte: a leftover partial must not be appended to
            ingest.write(data)
            ingest.commit()
        return True

    def ingest(self, digest: str, size: int) -> Ingest:
        """Start (or resume) writing the blob ``digest`` of ``size`` bytes."""
        files.make_private_dir(self.blobs)
        files.make_private_dir(self.ingest_dir)
        return Ingest(self, digest, size)

    def partial_path(self, digest: str) -> Path:
        return self.ingest_dir / f"{hex_of(digest)}.partial"

    def digests(self) -> list[str]:
        try:
            return sorted("sha256:" + p.name for p in self.blobs.iterdir() if _DIGEST_RE.match("sha256:" + p.name))
        except FileNotFoundError:
            return []

    def delete(self, digest: str) -> int:
        """Remove a blob; returns the bytes freed (0 when it was absent)."""
        return _unlink_counting(self.path(digest))

    def discard_partial(self, digest: str) -> int:
        """Remove an interrupted download; returns the bytes freed (0 when there was none)."""
        return _unlink_counting(self.partial_path(digest))

    def partials(self) -> list[Path]:
        try:
            return sorted(self.ingest_dir.glob("*.partial"))
        except FileNotFoundError:
            return []


class Ingest:
    """One blob being written: append-only, size-capped, hashed as it goes, resumable.

    Use as a context manager; leaving it without :meth:`commit` keeps the partial file (a later
    attempt resumes it) unless :meth:`abort` was called. Concurrent ingests of the same digest
    (two pulls sharing a layer) are serialised by an ``flock`` on the partial file.
    """

    def __init__(self, store: Store, digest: str, size: int) -> None:
        self.store = store
        self.digest = digest
        self.size = size
        self.partial = store.partial_path(digest)
        self._hasher = hashlib.sha256()
        self._offset = 0
        self._fd = -1
        self.resumed_from = 0

    def __repr__(self) -> str:
        return f"Ingest({self.digest!r}, {self._offset}/{self.size})"

    def __enter__(self) -> Ingest:
        self._fd = self._open_locked()
        existing = os.fstat(self._fd).st_size
        if existing > self.size:
            os.ftruncate(self._fd, 0)
            existing = 0
        # Rebuild the running hash from the bytes a previous attempt already wrote.
        os.lseek(self._fd, 0, os.SEEK_SET)
        remaining = existing
        while remaining:
            chunk = os.read(self._fd, min(_CHUNK, remaining))
            if not chunk:
                break
            self._hasher.update(chunk)
            remaining -= len(chunk)
        self._offset = existing - remaining
        self.resumed_from = self._offset
        os.lseek(self._fd, self._offset, os.SEEK_SET)
        return self

    def _open_locked(self) -> int:
        """The partial file, opened and locked; the file the lock is on is still the partial.

        While we waited for the lock, the holder may have committed the file (it is a blob now) or
        a rollback may have unlinked it: writing through that descriptor would change a stored
        blob or write into nothing. So the open is retried until the locked file is the one at
        the path (the lock-file protocol: compare device and inode after locking).
        """
        while True:
            fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if _same_file(os.fstat(fd), self.partial):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            if self.complete:
                self._unlink_partial()  # the blob is stored: nothing left to resume
            os.close(self._fd)
            self._fd = -1

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def complete(self) -> bool:
        """The blob is already in the store (another pull committed it meanwhile)."""
        return self.store.has(self.digest)

    def write(self, data: bytes) -> None:
        if self._offset + len(data) > self.size:
            self.abort()
            raise errors.DigestMismatch(
                f"blob {self.digest} is larger than the {self.size} bytes its descriptor promised"
            )
        files.write_all(self._fd, data)
        self._hasher.update(data)
        self._offset += len(data)

    def restart(self) -> None:
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._hasher = hashlib.sha256()
        self._offset = 0

    def abort(self) -> None:
        """Throw the partial file away (its bytes are wrong, resuming would be pointless)."""
        self._unlink_partial()
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)
        self._offset = 0
        self._hasher = hashlib.sha256()

    def _unlink_partial(self) -> None:
        """Unlink the partial path if it still is our file (we hold its lock, so nobody swaps it)."""
        if self._fd >= 0 and _same_file(os.fstat(self._fd), self.partial):
            with contextlib.suppress(FileNotFoundError):
                self.partial.unlink()

    def commit(self) -> Path:
        """Verify size and digest, then link the verified file into ``blobs/``; a mismatch leaves
        nothing behind.

        The file is linked through our descriptor (``/proc/self/fd``), never renamed by path:
        what goes into ``blobs/`` is exactly the inode whose bytes were hashed. A blob already
        there (a concurrent commit of the same digest) is as good as ours.
        """
        if self._offset != self.size:
            self.abort()
            raise errors.DigestMismatch(
                f"blob {self.digest} has {self._offset} bytes, its descriptor promised {self.size}"
            )
        actual = "sha256:" + self._hasher.hexdigest()
        if actual != self.digest:
            self.abort()
            raise errors.DigestMismatch(f"blob {self.digest} hashed to {actual}")
        os.fchmod(self._fd, 0o600)
        os.fsync(self._fd)
        target = self.store.path(self.digest)
        try:
            _link_fd(self._fd, target)
        except FileNotFoundError:
            # Our file was unlinked meanwhile (it can no longer be linked): store a private copy,
            # verified again from the bytes copied.
            self._commit_copy(target)
        self._unlink_partial()
        return target

    def _commit_copy(self, target: Path) -> None:
        # In the ingest directory with the .partial suffix: ``prune`` collects it after a crash.
        descriptor, name = tempfile.mkstemp(prefix=f"{target.name}.", suffix=".copy.partial", dir=self.partial.parent)
        try:
            hasher = hashlib.sha256()
            offset = 0
            while chunk := os.pread(self._fd, _CHUNK, offset):
                hasher.update(chunk)
                files.write_all(descriptor, chunk)
                offset += len(chunk)
            if offset != self.size or "sha256:" + hasher.hexdigest() != self.digest:
                raise errors.DigestMismatch(f"blob {self.digest} changed while it was being stored")
            os.fsync(descriptor)
            _link_fd(descriptor, target)
        finally:
            os.close(descriptor)
            os.unlink(name)


def _link_fd(fd: int, target: Path) -> None:
    """Give the file open as ``fd`` the name ``target``; an existing blob there wins (same bytes)."""
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # A directory fd makes Python call linkat(AT_SYMLINK_FOLLOW): it links the inode behind
        # the descriptor, where plain link() would try to link the /proc symlink itself.
        with contextlib.suppress(FileExistsError):
            os.link(f"/proc/self/fd/{fd}", target.name, dst_dir_fd=directory, follow_symlinks=True)
    finally:
        os.close(directory)


def _same_file(info: os.stat_result, path: Path) -> bool:
    try:
        current = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (current.st_dev, current.st_ino) == (info.st_dev, info.st_ino)


def _unlink_counting(path: Path) -> int:
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def copy_verified(store: Store, digest: str, size: int, reader: typing.BinaryIO) -> bool:
    """Ingest a blob from a local file-like object (``image load``); True when it was new."""
    if store.has(digest):
        return False
    with store.ingest(digest, size) as ingest:
        if ingest.complete:
            return False
        ingest.restart()
        while block := reader.read(_CHUNK):
            ingest.write(block)
        ingest.commit()
    return True
