"""The user's cache folder: files that only make a command faster, never decide what it does.

Where it sits: at the bottom of the project, beside :mod:`reconciler.files` (through which it
writes). Two users: the manifests' parse results (:class:`reconciler.manifests.loader.DiskCache`)
and the remembered no-op verdicts (:mod:`reconciler.verdicts`). An entry is a file named by the
SHA-256 of everything its content depends on, so a changed input is a new name, never a stale hit.

The folder is trusted only when it is this user's own and closed to every other (0700, checked
before each read); entries are opened without following links and must be owned by this user;
anything else, or an entry that cannot be read, is a miss. Entries are written atomically, not
durably (a lost entry is computed again), and the oldest beyond :attr:`CacheFolder.MAX_ENTRIES`
are removed after each write. The folder: ``$RECONCILER_CACHE_DIR``; else
``/var/cache/reconciler/manifests`` for root and ``$XDG_CACHE_HOME/reconciler/manifests``
(``~/.cache``) for others; an empty ``RECONCILER_CACHE_DIR`` turns caching off.

This module must not import pydantic, YAML or an engine: a no-op apply reads its entries before
deciding whether it needs any of them.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path
from typing import Self

from reconciler import files

CACHE_ENV = "RECONCILER_CACHE_DIR"


class CacheFolder:
    """Entries (bytes) by name in the user's cache folder; see the module docstring."""

    MAX_ENTRIES = 256

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._write_lock = threading.Lock()  # files.write_atomic's temporary name is per process

    @classmethod
    def default(cls) -> Self | None:
        chosen = os.environ.get(CACHE_ENV)
        if chosen is not None:
            return cls(Path(chosen)) if chosen else None
        if os.geteuid() == 0:
            return cls(Path("/var/cache/reconciler/manifests"))
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return cls(Path(base) / "reconciler" / "manifests")

    def read(self, name: str) -> bytes | None:
        """The entry's bytes, or None (absent, untrusted folder, foreign or unreadable file)."""
        if not self._trusted():
            return None
        try:
            fd = os.open(self.directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            with os.fdopen(fd, "rb") as handle:
                if os.fstat(handle.fileno()).st_uid != os.geteuid():
                    return None
                return handle.read()
        except OSError:
            return None

    def write(self, name: str, data: bytes) -> None:
        """Store an entry (the folder is made private when missing); a failure is only slower."""
        try:
            with self._write_lock:
                files.write_atomic(self.directory / name, data, durable=False)
                self._prune()
        except OSError:
            return

    def _trusted(self) -> bool:
        try:
            info = os.lstat(self.directory)
        except OSError:
            return False
        return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077

    def _prune(self) -> None:
        entries = []
        with os.scandir(self.directory) as listing:
            for entry in listing:
                if not files.is_temporary(entry.name):
                    with contextlib.suppress(OSError):
                        entries.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name))
        for _, name in sorted(entries)[: max(0, len(entries) - self.MAX_ENTRIES)]:
            with contextlib.suppress(OSError):
                os.unlink(self.directory / name)
