"""The git source: a branch of a repository as the controller's folder of manifests.

Where it sits: under the loop, beside the folder. ``reconcile watch --git URL`` builds a
:class:`GitSource`; the loop points its :class:`~reconciler.controller.folder.DesiredFolder` at
:attr:`GitSource.folder` and :meth:`GitSource.connect`\\ s it to its events, the folder's load lock
and its scan. Git itself is :mod:`reconciler.gitrepo`'s (the ``git`` program).

What one :meth:`GitSource.sync` does (on a timer every ``interval``, at once on a webhook): fetch
the branch's tip into a private mirror; a tip not seen before is *tried*: its signature checked
when signatures are required, its folder written into a private ``staged`` tree, and every
manifest of it loaded as the controller would load it. A commit that passes replaces the ``live``
tree in one step (``renameat2`` exchange, under the folder's load lock: no load reads half of
each) and the loop rescans; a commit that fails changes nothing: the last good commit stays in
force, and each reason (``commit <id>: file:line:col: …``, or the signature's) is in the events
and in ``status`` until a later commit passes. The commit in force is written beside its tree, so
that a restarted controller knows it without fetching.

The tree's path is the same for every commit (``live/<repository>/<path>``): manifests keep their
file names across commits (an object moved between commits is not pruned and created again), and
a compose file's project and relative paths do not change with the commit.

It must not plan, observe or touch an engine: it changes the folder and says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import Any

from reconciler import errors, files, gitrepo, sources
from reconciler.compose import loader as compose_loader
from reconciler.controller import queue, report

log = logging.getLogger("reconciler.controller")

DEFAULT_INTERVAL = 30.0
COMMIT_FILE = ".reconciler-commit.json"  # beside the repository's folder in a tree, never inside it
RECORD_FILE = "source.json"
# A manifest larger than this is refused whole (it would be read into memory to be validated),
# and so is a folder of more manifests than this.
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
MAX_MANIFESTS = 1000
# The reasons an event spells out (status keeps them all, up to MAX_REASONS).
EVENT_REASONS = 10
MAX_REASONS = 200


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    remote: gitrepo.Remote
    interval: float = DEFAULT_INTERVAL
    signers: gitrepo.Signers | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """The last commit tried: applied, or refused with every reason (each naming the commit)."""

    commit: gitrepo.Commit
    at: float
    applied: bool
    errors: tuple[str, ...] = ()
    # Per file of the repository, its reasons; the signature's and the checkout's have none.
    files: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**commit_json(self.commit), "at": round(self.at, 3), "state": "applied" if self.applied else "refused",
                "errors": list(self.errors)}  # fmt: skip


def commit_json(commit: gitrepo.Commit) -> dict[str, Any]:
    return {"commit": commit.sha, "subject": commit.subject, "time": commit.time}


def _commit_of(value: object) -> gitrepo.Commit | None:
    if not isinstance(value, dict) or not isinstance(value.get("commit"), str):
        return None
    return gitrepo.Commit(value["commit"], str(value.get("subject", "")), int(value.get("time", 0) or 0))


def _silent() -> None:
    return None


class GitSource:
    """A branch's folder of manifests, kept in ``directory`` (root-only): fetched, tried, switched."""

    def __init__(self, settings: Settings, directory: Path, *, clock: queue.Clock | None = None) -> None:
        self.settings = settings
        self.clock: queue.Clock = clock or queue.SystemClock()
        self.repository = gitrepo.Repository(directory, settings.remote)
        self.directory = directory
        self.live = directory / "live"
        self.staged = directory / "staged"
        self.name = gitrepo.repository_name(settings.remote.url)
        self.folder = self.live / self.name / PurePosixPath(settings.remote.path)
        files.make_private_dir(self.folder)  # the first time: an empty folder until a commit is in force
        self._lock = threading.Lock()  # the state below
        self._syncing = threading.Lock()  # one sync at a time
        self._in_force = _commit_of(self._read(self.live / COMMIT_FILE))
        self._tried: Attempt | None = None
        self._refused: str | None = None  # the refused tip, not tried again until the branch moves
        self._fetch: dict[str, Any] = {"at": None, "error": None, "count": 0}
        self._events: report.EventLog | None = None
        self._exclusive: AbstractContextManager[object] = contextlib.nullcontext()
        self._changed: Callable[[], None] = _silent
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self, path: Path) -> object:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(path.read_text(encoding="utf-8"))
        return None

    def connect(
        self, *, events: report.EventLog, exclusive: AbstractContextManager[object], changed: Callable[[], None]
    ) -> None:
        """The loop's parts: its events, its folder's load lock, and how to ask for a rescan."""
        self._events, self._exclusive, self._changed = events, exclusive, changed

    def commit_in_force(self) -> str:
        """The commit whose manifests are in force (its id), or ``""`` before the first."""
        with self._lock:
            return self._in_force.sha if self._in_force else ""

    def healthy(self) -> bool:
        """The last fetch worked and the last commit tried is in force."""
        with self._lock:
            return self._fetch["error"] is None and (self._tried is None or self._tried.applied)

    # -- one sync -------------------------------------------------------------------------------

    def sync(self) -> bool:
        """Fetch; try a tip not seen before. Whether the folder now holds another commit."""
        with self._syncing:
            try:
                sha = self.repository.fetch()
            except gitrepo.GitError as exc:
                self._fetch_failed(str(exc))
                return False
            with self._lock:
                failed_before = self._fetch["error"] is not None
                self._fetch.update(at=self.clock.wall(), error=None, count=self._fetch["count"] + 1, commit=sha)
                current = self._in_force.sha if self._in_force else None
            if failed_before:
                log.info("git: fetching %s works again", gitrepo.display_url(self.settings.remote.url))
            if sha in (current, self._refused):
                return False
            return self._try(self.repository.describe(sha))

    def _fetch_failed(self, message: str) -> None:
        with self._lock:
            repeated = self._fetch["error"] == message
            self._fetch.update(at=self.clock.wall(), error=message, count=self._fetch["count"] + 1)
        if not repeated:  # once per distinct error: a remote that is down must not flood the events
            self._event("fetch-failed", message)

    def _try(self, commit: gitrepo.Commit) -> bool:
        reasons: list[str] = []
        per_file: dict[str, list[str]] = {}
        signers = self.settings.signers
        why = self.repository.unverified(commit.sha, signers) if signers is not None else None
        if why is not None:
            reasons.append(f"commit {commit.short}: {why}")
        else:
            shutil.rmtree(self.staged, ignore_errors=True)
            try:
                folder = self.repository.checkout(commit.sha, self.staged / self.name)
                per_file = validate(folder, self.staged / self.name)
            except (gitrepo.GitError, OSError) as exc:
                reasons.append(f"commit {commit.short}: {exc}")
            reasons += [f"commit {commit.short}: {line}" for lines in per_file.values() for line in lines]
        if reasons:
            self._refuse(commit, reasons[:MAX_REASONS], per_file)
            return False
        self._switch(commit)
        return True

    def _refuse(self, commit: gitrepo.Commit, reasons: list[str], per_file: dict[str, list[str]]) -> None:
        shutil.rmtree(self.staged, ignore_errors=True)
        listed = tuple((file, tuple(f"commit {commit.short}: {line}" for line in lines))
                       for file, lines in sorted(per_file.items()))  # fmt: skip
        attempt = Attempt(commit, self.clock.wall(), False, tuple(reasons), listed)
        with self._lock:
            self._tried, self._refused = attempt, commit.sha
            kept = f"; commit {self._in_force.short} stays in force" if self._in_force else "; nothing in force yet"
        self._remember()
        more = f"; and {len(reasons) - EVENT_REASONS} more (see status)" if len(reasons) > EVENT_REASONS else ""
        said = "; ".join(reasons[:EVENT_REASONS]) + more
        self._event("commit-refused", f"commit {commit.short} ({commit.subject}) refused{kept}: {said}")

    def _switch(self, commit: gitrepo.Commit) -> None:
        files.write_json(self.staged / COMMIT_FILE, commit_json(commit))
        with self._exclusive:
            if self.live.is_dir():
                try:
                    gitrepo.exchange(self.staged, self.live)
                except OSError:  # a file system without renameat2's exchange: two renames, locked
                    shutil.rmtree(self.directory / "retired", ignore_errors=True)
                    self.live.rename(self.directory / "retired")
                    self.staged.rename(self.live)
                    self.directory.joinpath("retired").rename(self.staged)
            else:
                self.staged.rename(self.live)
        shutil.rmtree(self.staged, ignore_errors=True)
        with self._lock:
            before, self._in_force = self._in_force, commit
            self._tried, self._refused = Attempt(commit, self.clock.wall(), True), None
        self._remember()
        was = f" (was {before.short})" if before else ""
        self._event("commit-applied", f"commit {commit.short} ({commit.subject}) in force{was}")
        self._changed()
        self.repository.tidy()

    def _remember(self) -> None:
        """The last attempt, for status after a restart (the commit in force lives beside its tree)."""
        with self._lock:
            value = {"lastTried": self._tried.to_json() if self._tried else None}
        with contextlib.suppress(OSError):
            files.write_json(self.directory / RECORD_FILE, value, durable=False)

    def _event(self, kind: str, message: str) -> None:
        if self._events is not None:
            self._events.add(kind, "", gitrepo.display_url(self.settings.remote.url), message)
        else:
            log.warning("%s: %s", kind, message)

    # -- the thread -----------------------------------------------------------------------------

    def trigger(self) -> None:
        """Fetch now (a webhook): the thread wakes, or syncs again as soon as its sync ends."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="git-source", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.sync()
            except Exception:  # the source must outlive any one sync
                log.exception("git: internal error in a sync")
            self._wake.wait(self.settings.interval)

    # -- what status shows ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        remote, signers = self.settings.remote, self.settings.signers
        with self._lock:
            tried = self._tried
            return {
                "url": gitrepo.display_url(remote.url), "branch": remote.branch, "path": remote.path,
                "interval": self.settings.interval, "requireSigned": signers.kind if signers else None,
                "inForce": commit_json(self._in_force) if self._in_force else None,
                "lastTried": tried.to_json() if tried else None,
                "lastFetch": dict(self._fetch),
            }  # fmt: skip

    def file_reports(self) -> list[dict[str, Any]]:
        """The refused commit's reasons as ``status`` file reports (``reconcile status`` shows a
        ``File`` row for each), the last good commit being in force meanwhile."""
        with self._lock:
            tried, kept = self._tried, self._in_force is not None
        if tried is None or tried.applied:
            return []
        listed = tried.files or ((f"commit {tried.commit.short}", tried.errors),)
        return [{"path": file, "state": "error", "errors": list(lines), "usingLastGood": kept, "stacks": [],
                 "commit": tried.commit.sha} for file, lines in listed]  # fmt: skip


def validate(folder: Path, top: Path) -> dict[str, list[str]]:
    """Every problem of the folder's manifests, loaded as the controller loads them, per file
    (its path in the repository, relative to ``top``); empty when they all load."""
    found: dict[str, list[str]] = {}
    texts: list[tuple[str, str]] = []
    paths = sources.manifest_files(folder)
    if len(paths) > MAX_MANIFESTS:
        name = _relative(str(folder), top)
        return {name: [f"{name}: {len(paths)} manifests, more than the {MAX_MANIFESTS} a folder may hold"]}
    for path in paths:
        name = _relative(str(path), top)
        try:
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                raise ValueError(f"larger than {MAX_MANIFEST_BYTES >> 20} MiB")
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            found.setdefault(name, []).append(f"{name}:1:1: cannot read: {exc}")
    try:
        compose_loader.load_sources(texts, each_file=True)
    except errors.ManifestError as exc:
        for diagnostic in exc.diagnostics:
            name = _relative(diagnostic.file, top)
            found.setdefault(name, []).append(errors.Diagnostic(name, *diagnostic[1:]).render())
    return found


def _relative(file: str, top: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(file).relative_to(top))
    return file
