"""The watched manifest folder: loads with per-file error isolation, and what each load changed.

Where it sits: the controller's loop asks :class:`DesiredFolder` for the desired state; it reads
files through :mod:`reconciler.sources`' naming rules, parses through :mod:`reconciler.manifests`
and keeps its last good versions through :mod:`reconciler.controller.state`. It must not observe
or touch an engine, plan, or report events (it returns what changed; the loop reports).

Per-file error isolation (:class:`ManifestFolder`): a file that stops parsing keeps its last good
version in force (persisted, so a restarted controller keeps it too) and its diagnostics
(``file:line:col``) are shown in status; a file that never parsed freezes the stacks it may
declare, so an error can never turn into a mass deletion. A deleted file prunes its stack. When
two files declare one object, the newcomer (or the edited file) is in error, not the file that
held it: the object stays in its old stack.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler import errors, hashing, manifests, sources
from reconciler.compose import loader as compose_loader
from reconciler.controller import state


@dataclasses.dataclass(frozen=True, slots=True)
class FileReport:
    """One manifest file's state in status: ``ok``, or ``error`` with every diagnostic."""

    path: str
    ok: bool
    errors: tuple[str, ...] = ()
    using_last_good: bool = False
    stacks: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "state": "ok" if self.ok else "error", "errors": list(self.errors),
                "usingLastGood": self.using_last_good, "stacks": list(self.stacks)}  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """One load of the folder: the desired state in force, and what is frozen or broken."""

    desired: manifests.Desired
    files: Mapping[str, FileReport]
    # Stacks a never-valid file may declare: never planned (no pruning) until it parses.
    frozen: frozenset[str]
    # Per stack, a digest of its declared objects: a changed digest means "reconcile it".
    digests: Mapping[str, str]


@dataclasses.dataclass(slots=True)
class _Load:
    """The working set of one load: texts on disk, texts in force, and what is wrong with which."""

    current: dict[str, str]  # path → text on disk (or its last good text when unreadable)
    problems: dict[str, list[str]]  # path → diagnostics
    texts: dict[str, str] = dataclasses.field(default_factory=dict)  # path → text in force
    stale: set[str] = dataclasses.field(default_factory=set)  # in force with its last good text
    excluded: set[str] = dataclasses.field(default_factory=set)  # not in force at all


class ManifestFolder:
    """Loads a folder's manifests so that one broken file never breaks (or empties) the others."""

    def __init__(self, folder: Path, *, records: state.ControllerState | None = None) -> None:
        self.folder = folder
        self._records = records or state.ControllerState(None)
        self._last_good: dict[str, str] = self._records.load_last_good()
        self._lock = threading.Lock()

    def exclusive(self) -> threading.Lock:
        """The lock every load holds: whoever replaces the folder's files at once (the git source,
        switching commits) holds it too, so that no load reads half of each."""
        return self._lock

    def paths(self) -> list[Path]:
        try:
            return sources.manifest_files(self.folder)
        except OSError:
            return []

    def fingerprint(self) -> dict[str, tuple[int, int]]:
        """``path → (mtime_ns, size)``: what the periodic re-list compares to notice missed events."""
        result: dict[str, tuple[int, int]] = {}
        for path in self.paths():
            with contextlib.suppress(OSError):
                info = path.stat()
                result[str(path)] = (info.st_mtime_ns, info.st_size)
        return result

    def load(self) -> Snapshot:
        with self._lock:
            load = self._read()
            desired = self._parse(load)
            self._remember(load)
            return _snapshot(desired, load)

    def _read(self) -> _Load:
        load = _Load(current={}, problems={})
        for path in self.paths():
            try:
                load.current[str(path)] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                load.problems[str(path)] = [f"{path}:1:1: cannot read: {exc}"]
                if str(path) in self._last_good:
                    load.current[str(path)] = self._last_good[str(path)]
        load.texts = dict(load.current)
        load.stale = {p for p in load.problems if p in load.current}
        load.excluded = set(load.problems) - set(load.current)
        return load

    def _parse(self, load: _Load) -> manifests.Desired:
        """Parse what is in force, replacing each failing file by its last good text, else dropping it.

        Each round replaces (or drops) the files that failed; it ends because each round changes
        at least one file, and a file is replaced at most once and dropped at most once.
        """
        for _ in range(2 * len(load.texts) + 2):
            try:
                texts = sorted(load.texts.items(), key=self._seniority)
                return compose_loader.load_sources(texts, each_file=True)
            except errors.ManifestError as exc:
                for diagnostic in exc.diagnostics:
                    if diagnostic.file in load.current and diagnostic.file not in load.stale:
                        load.problems.setdefault(diagnostic.file, []).append(diagnostic.render())
                if not self._fall_back(load, sorted({d.file for d in exc.diagnostics})):
                    break
        return manifests.Desired.empty()

    def _seniority(self, item: tuple[str, str]) -> tuple[int, str]:
        """Files in force unchanged first, then edited ones, then newcomers (each by name).

        A duplicate is blamed on its second declaration, so the file that introduced a clash (a
        new file, or an edit) is the one in error and the object stays with the file that held it.
        """
        file, text = item
        good = self._last_good.get(file)
        return (0 if good == text else 1 if good is not None else 2, file)

    def _fall_back(self, load: _Load, bad: list[str]) -> bool:
        """Replace each failing file by its last good text, or drop it; whether anything changed."""
        progress = False
        for file in bad:
            if file not in load.texts:
                continue
            good = self._last_good.get(file)
            if file not in load.stale and good is not None and good != load.texts[file]:
                load.texts[file] = good
                load.stale.add(file)
            else:
                del load.texts[file]
                load.excluded.add(file)
                load.stale.discard(file)
            progress = True
        return progress

    def _remember(self, load: _Load) -> None:
        """The texts now in force as they are on disk are the new last good ones."""
        for file, text in load.current.items():
            if file not in load.stale and file not in load.excluded and self._last_good.get(file) != text:
                self._last_good[file] = text
                self._records.save_last_good(file, text)
        for file in sorted(set(self._last_good) - set(load.current)):
            del self._last_good[file]  # deleted: its stacks are pruned
            self._records.forget_last_good(file)


def _snapshot(desired: manifests.Desired, load: _Load) -> Snapshot:
    stacks_of: dict[str, set[str]] = {}
    declared: list[manifests.DesiredContainer | manifests.DesiredNetwork | manifests.DesiredVolume] = [
        *desired.containers.values(),
        *desired.networks.values(),
        *desired.volumes.values(),
    ]
    for item in declared:
        stacks_of.setdefault(item.source.file, set()).add(item.stack)
    frozen: set[str] = set()
    for file in load.excluded:
        frozen |= sources.declared_stacks(file, load.current.get(file, ""))
    files = {
        file: FileReport(
            path=file,
            ok=file not in load.problems,
            errors=tuple(load.problems.get(file, ())),
            using_last_good=file in load.stale,
            stacks=tuple(sorted(stacks_of.get(file) or sources.declared_stacks(file, load.current.get(file, "")))),
        )
        for file in sorted(set(load.current) | set(load.problems))
    }
    return Snapshot(desired=desired, files=files, frozen=frozenset(frozen), digests=stack_digests(desired))


def stack_digests(desired: manifests.Desired) -> dict[str, str]:
    """A digest per stack of everything it declares (names and spec hashes)."""
    parts: dict[str, list[str]] = {}
    for name, container in desired.containers.items():
        # The spec itself too: a restart-policy or healthcheck edit changes no hash but matters here.
        spec = hashing.canonical_json(manifests.to_document(container.spec))
        parts.setdefault(container.stack, []).append(f"c/{name}/{hashing.container_hash(container)}/{spec}")
    for name, network in desired.networks.items():
        parts.setdefault(network.stack, []).append(f"n/{name}/{hashing.network_hash(network)}")
    for name, volume in desired.volumes.items():
        parts.setdefault(volume.stack, []).append(f"v/{name}/{hashing.volume_hash(volume)}")
    return {stack: hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest() for stack, items in parts.items()}


def only_stack(desired: manifests.Desired, stack: str) -> manifests.Desired:
    """The part of ``desired`` that belongs to ``stack`` (the planner plans one stack per pass)."""
    return manifests.Desired(
        containers={n: c for n, c in desired.containers.items() if c.stack == stack},
        networks={n: v for n, v in desired.networks.items() if v.stack == stack},
        volumes={n: v for n, v in desired.volumes.items() if v.stack == stack},
        stacks=frozenset({stack}),
    )


def declares_anything(desired: manifests.Desired) -> bool:
    return bool(desired.containers or desired.networks or desired.volumes)


@dataclasses.dataclass(frozen=True, slots=True)
class Scan:
    """What one rescan of the folder found: the new snapshot, and what changed since the last."""

    snapshot: Snapshot
    changed: frozenset[str]  # stacks whose declared content changed
    first: bool  # the first scan of this controller
    new_errors: tuple[FileReport, ...]  # broken files whose diagnostics are new


class DesiredFolder:
    """The folder's desired state as last loaded, the stacks it manages, and what each scan changed.

    The managed stacks (declared at some point, and not yet pruned away) are persisted: a file
    deleted while the controller was down still prunes its stack at the first scan.
    """

    def __init__(self, folder: Path, records: state.ControllerState) -> None:
        self.manifests = ManifestFolder(folder, records=records)
        self._records = records
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._managed: set[str] = records.load_managed()
        self._digests: dict[str, str] = {}
        self._scanned = False
        self._reported_errors: dict[str, tuple[str, ...]] = {}
        self._fingerprint: dict[str, tuple[int, int]] = {}

    @property
    def path(self) -> Path:
        return self.manifests.folder

    def last(self) -> Snapshot | None:
        """The last snapshot loaded, if any (status shows what the controller works with)."""
        with self._lock:
            return self._snapshot

    def current(self) -> Snapshot:
        """The last snapshot, loading one if there is none yet."""
        snapshot = self.last()
        if snapshot is None:
            snapshot = self.reload()
        return snapshot

    def reload(self) -> Snapshot:
        snapshot = self.manifests.load()
        with self._lock:
            self._snapshot = snapshot
        return snapshot

    def rescan(self) -> Scan:
        """Reload; the stacks whose digest changed (every managed one too, the first time)."""
        snapshot = self.manifests.load()
        with self._lock:
            self._snapshot = snapshot
            first = not self._scanned
            self._scanned = True
            old, self._digests = self._digests, dict(snapshot.digests)
            reported, self._reported_errors = (
                self._reported_errors,
                {path: report.errors for path, report in snapshot.files.items() if not report.ok},
            )
            changed = {s for s in set(old) | set(snapshot.digests) if old.get(s) != snapshot.digests.get(s)}
            if first:
                changed |= self._managed
        self._fingerprint = self.fingerprint()
        fresh = tuple(r for p, r in snapshot.files.items() if not r.ok and reported.get(p) != r.errors)
        return Scan(snapshot, frozenset(changed), first, fresh)

    def changed_on_disk(self) -> bool:
        """Whether a file changed since the last scan without an event saying so (the re-list)."""
        return self.fingerprint() != self._fingerprint

    def fingerprint(self) -> dict[str, tuple[int, int]]:
        """The manifests' and their env, secret and config files' ``(mtime, size)``: the re-list
        compares these, so an edit of such a file (which no manifest event announces) is picked up too."""
        fingerprint = self.manifests.fingerprint()
        snapshot = self.last()
        for container in snapshot.desired.containers.values() if snapshot else ():
            named = [item.file for item in manifests.mounted_files(container.spec) if item.file is not None]
            for env_file in [*container.spec.env_files, *named]:
                path = Path(container.source.file).parent / env_file
                with contextlib.suppress(OSError):
                    info = path.stat()
                    fingerprint[str(path)] = (info.st_mtime_ns, info.st_size)
        return fingerprint

    def container(self, name: str) -> manifests.DesiredContainer | None:
        """The declared container ``name`` in the last snapshot (None before the first load)."""
        snapshot = self.last()
        return snapshot.desired.containers.get(name) if snapshot is not None else None

    def has_dependents(self, name: str, condition: str) -> bool:
        return any(
            dependency.name == name and dependency.condition == condition
            for container in self.current().desired.containers.values()
            for dependency in container.spec.depends_on
        )

    def known_stacks(self) -> set[str]:
        """Declared stacks and managed ones (a deleted file's stack until it is pruned)."""
        with self._lock:
            declared = set(self._snapshot.desired.stacks) if self._snapshot else set()
            return declared | self._managed

    def manage(self, stack: str) -> None:
        with self._lock:
            if stack in self._managed:
                return
            self._managed.add(stack)
            # Written under the lock: two writers must not leave the older set on disk.
            self._records.save_managed(self.path, self._managed)

    def forget(self, stack: str) -> None:
        """``stack`` was pruned and declares nothing: no longer this folder's to manage."""
        with self._lock:
            if stack not in self._managed:
                return
            self._managed.discard(stack)
            self._records.save_managed(self.path, self._managed)
