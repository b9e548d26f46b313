"""Snapshots: one directory per unpacked layer, keyed by chain id and shared by every image using it.

Layout under ``<root>``::

    metadata.json        {"next": N, "snapshots": {chain_id: {id, parent, diff_id, size}}}
    <id>/fs              the layer's files in overlay format (whiteouts as 0/0 devices)
    tmp-<pid>-<random>/fs  a layer being applied by process <pid>; renamed to <id> by
                         :meth:`Snapshotter.commit`

Directory names are short numbers, not chain ids: an overlay mount's options (every lowerdir
path included) must fit in one page of mount data (4 KiB on common kernels), so short paths let
deep images mount. A snapshot is immutable once committed; its parent is the snapshot of the
layers below, so ``lowers(chain_id)`` walks to the bottom and returns overlay lowerdirs top first.

Reference counting is derived, not stored: an image holds a reference to each of its chain ids,
and :meth:`Snapshotter.refcounts` counts them from the image records the caller passes, so a
crash can never leave a counter out of step with the images. Metadata is committed atomically
(``files.write_json``: temp + fsync + rename, mode 0600; directories 0700, state is root-only).
A process killed half-way leaves a ``tmp-<pid>-*`` directory, or (in a commit or a removal) a
numbered directory the metadata does not know: :meth:`Snapshotter.remove_remains` takes them
away, the temporary ones only once their process is dead (a pull takes no lock while it applies).

What it must not do: parse layers (``layers`` does), know about registries or images, or remove a
snapshot that a kept image still references (the caller decides what is kept).
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from reconciler import errors, files


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """A committed layer directory: ``chain_id`` names the layer stack it completes."""

    chain_id: str
    id: str
    parent: str | None
    diff_id: str
    size: int


def disk_usage(path: Path) -> int:
    """Bytes on disk under ``path`` (hardlinked inodes counted once; symlinks never followed)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                info = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            key = (info.st_dev, info.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += info.st_blocks * 512
    return total


def of_root(root: Path) -> Snapshotter:
    """The snapshots of the engine's state root ``root`` (``<root>/snapshots``)."""
    return Snapshotter(root / "snapshots")


class Snapshotter:
    """The snapshot directories under ``root`` and their metadata."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._metadata = root / "metadata.json"
        self._lock_path = root / ".lock"

    def __repr__(self) -> str:
        return f"snapshots.Snapshotter({str(self.root)!r})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        files.make_private_dir(self.root)
        with files.file_lock(self._lock_path):
            yield

    def _load(self) -> dict[str, object]:
        try:
            data = json.loads(self._metadata.read_bytes())
        except FileNotFoundError:
            return {"next": 1, "snapshots": {}}
        if not isinstance(data, dict):
            raise errors.EngineError(f"snapshot metadata {self._metadata} is corrupt")
        return data

    def _snapshots(self, data: dict[str, object]) -> dict[str, dict[str, object]]:
        snaps = data.get("snapshots")
        if not isinstance(snaps, dict):
            raise errors.EngineError(f"snapshot metadata {self._metadata} is corrupt")
        return snaps

    def _save(self, data: dict[str, object]) -> None:
        files.write_json(self._metadata, data, indent=1)

    @staticmethod
    def _from(chain_id: str, entry: dict[str, object]) -> Snapshot:
        parent = entry.get("parent")
        return Snapshot(
            chain_id=chain_id,
            id=str(entry["id"]),
            parent=parent if isinstance(parent, str) else None,
            diff_id=str(entry["diff_id"]),
            size=int(str(entry.get("size", 0))),
        )

    def list(self) -> builtins.list[Snapshot]:
        snaps = self._snapshots(self._load())
        return sorted((self._from(k, v) for k, v in snaps.items()), key=lambda s: int(s.id))

    def get(self, chain_id: str) -> Snapshot | None:
        entry = self._snapshots(self._load()).get(chain_id)
        return self._from(chain_id, entry) if isinstance(entry, dict) else None

    def path(self, snapshot: Snapshot) -> Path:
        """The snapshot's ``fs`` directory (an overlay lowerdir)."""
        return self.root / snapshot.id / "fs"

    def lowers(self, chain_id: str) -> builtins.list[Path]:
        """The ``fs`` directories of the stack ending at ``chain_id``, top layer first."""
        snaps = self._snapshots(self._load())
        paths: builtins.list[Path] = []
        current: str | None = chain_id
        while current is not None:
            entry = snaps.get(current)
            if not isinstance(entry, dict):
                raise errors.NotFound(f"snapshot {current} is missing (run the pull again)")
            snapshot = self._from(current, entry)
            paths.append(self.path(snapshot))
            current = snapshot.parent
        return paths

    def prepare(self) -> Path:
        """A fresh private directory to apply a layer into; returns its ``fs`` subdirectory."""
        import tempfile  # here: the remains collector reads this module on every observe

        files.make_private_dir(self.root)
        # The pid in the name: the directory of a killed pull is told from one being applied.
        work = Path(tempfile.mkdtemp(prefix=f"tmp-{os.getpid()}-", dir=self.root))
        fs = work / "fs"
        # The root of the layer shows as the container's "/" when it is the top lower: 0755.
        fs.mkdir(mode=0o755)
        os.chmod(fs, 0o755)  # noqa: S103 - a container's / is world-readable by design
        return fs

    def discard(self, fs: Path) -> None:
        """Throw a prepared (uncommitted) directory away."""
        if fs.parent.parent == self.root and fs.parent.name.startswith("tmp-"):
            shutil.rmtree(fs.parent, ignore_errors=True)

    def commit(self, fs: Path, *, chain_id: str, parent: str | None, diff_id: str) -> Snapshot:
        """Turn a prepared directory into the snapshot ``chain_id``; first committer wins."""
        size = disk_usage(fs)
        with self._locked():
            data = self._load()
            snaps = self._snapshots(data)
            existing = snaps.get(chain_id)
            if isinstance(existing, dict):
                self.discard(fs)
                return self._from(chain_id, existing)
            if parent is not None and parent not in snaps:
                raise errors.NotFound(f"parent snapshot {parent} of {chain_id} is missing")
            next_id = int(str(data.get("next", 1)))
            os.rename(fs.parent, self.root / str(next_id))
            entry: dict[str, object] = {
                "id": str(next_id),
                "parent": parent,
                "diff_id": diff_id,
                "size": size,
            }
            snaps[chain_id] = entry
            data["next"] = next_id + 1
            self._save(data)
            return self._from(chain_id, entry)

    def refcounts(self, chains: Iterable[Iterable[str]]) -> collections.Counter[str]:
        """How many of the given images (each an iterable of chain ids) reference each snapshot."""
        counts: collections.Counter[str] = collections.Counter()
        for chain in chains:
            counts.update(set(chain))
        return counts

    def remove_unreferenced(self, referenced: collections.Counter[str]) -> int:
        """Remove every snapshot with no reference (and stale temporary dirs); returns bytes freed."""
        freed = 0
        with self._locked():
            data = self._load()
            snaps = self._snapshots(data)
            doomed = [c for c in snaps if referenced[c] <= 0]
            for chain_id in doomed:
                snapshot = self._from(chain_id, snaps[chain_id])
                directory = self.root / snapshot.id
                freed += disk_usage(directory)
                del snaps[chain_id]
                # Metadata first: a crash in between leaves an orphan dir, never a dangling record.
                self._save(data)
                shutil.rmtree(directory, ignore_errors=True)
            known = {str(v["id"]) for v in snaps.values() if isinstance(v, dict)}
            for child in self.root.iterdir():
                if child.name in (".lock", "metadata.json") or files.is_temporary(child.name):
                    continue
                if child.is_dir() and child.name not in known:
                    # tmp-* of a killed pull, or an orphan left by a crash during removal.
                    freed += disk_usage(child)
                    shutil.rmtree(child, ignore_errors=True)
        return freed

    def remove(self, chain_ids: Iterable[str]) -> int:
        """Remove specific snapshots (used to undo a failed pull); returns bytes freed."""
        freed = 0
        with self._locked():
            data = self._load()
            snaps = self._snapshots(data)
            for chain_id in chain_ids:
                entry = snaps.pop(chain_id, None)
                if not isinstance(entry, dict):
                    continue
                self._save(data)
                directory = self.root / str(entry["id"])
                freed += disk_usage(directory)
                shutil.rmtree(directory, ignore_errors=True)
        return freed

    def remove_remains(self, *, alive: Callable[[int], bool]) -> int:
        """Remove what killed processes left: ``tmp-<pid>-*`` directories of a process that is
        not ``alive``, and numbered directories the metadata does not know; returns bytes freed.
        Looks first without the lock (which a prune holds for long), and takes it only to remove."""
        if not self.root.is_dir() or not self._remains(alive):
            return 0
        freed = 0
        with self._locked():
            for child in self._remains(alive):
                freed += disk_usage(child)
                shutil.rmtree(child, ignore_errors=True)
        return freed

    def _remains(self, alive: Callable[[int], bool]) -> builtins.list[Path]:
        known = {str(v["id"]) for v in self._snapshots(self._load()).values() if isinstance(v, dict)}
        found = []
        for child in self.root.iterdir():
            owner = child.name.split("-")[1] if child.name.startswith("tmp-") else ""
            if (child.name.isdigit() and child.name not in known) or (owner.isdigit() and not alive(int(owner))):
                found.append(child)
        return found
