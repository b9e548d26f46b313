"""The native engine's event stream: ``start`` and ``die`` of containers, read from their keepers.

There is no daemon to ask: the stream scans the container records and, for each run it finds
with a live keeper (conmon, the run's supervisor), opens a **pidfd** on it; the keeper exits right
after recording the run's exit (:func:`records.exit_of`), so a ``die`` arrives as soon as the
container's init has exited, not at a poll tick. A run that started and ended between two scans (a
crash at start) is found by its exit; it is reported as a ``start`` followed by its ``die``.

A scan looks only at what changed: every file that tells of a run (the record, the keeper's
``supervisor.pid.json``, the lasting exit file) is written into the container's directory by a
create, rename or unlink, which changes the directory's modification time; so a scan lists the
containers folder, ``stat``-s each directory, and reads only the records whose directory changed
since the last scan, plus the few runs it could not settle yet (a keeper gone with no exit recorded
yet; its exit may land on the tmpfs only). With every container running and watched, an idle scan
is one listing and one ``stat`` per container, no file read. A directory changed within
:data:`records.RACY_SECONDS` of its ``stat`` is looked at again on the next scan too (coarse
timestamps: a second change in the same tick would leave the time as it was).

A ``die`` is stamped with the exit's own time (when the keeper recorded it), not with its
delivery's: the controller counts restart backoffs from it. One run (one supervisor, known by pid
and start time) is reported once, whichever way a scan saw it. Exits older than the stream's
first scan are history, not events; :attr:`EventStream.first_scan_done` is set once that scan is
over, so that a reader can tell from when on an exit is news, and :attr:`EventStream.scans`
counts the scans done. Every event carries the container's stack (its owner label).

:func:`history` is what came before a stream: from the records alone, each container's creation,
the start of its last run and, once over, that run's end (``oom`` and ``die``), at their recorded
times. The records keep no more (a restart overwrites the previous run's times), and a removed
container's history goes with its directory.

This module only reads: it must not start, prepare or stop anything, or write any file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from typing import Any

from reconciler import engine, observed
from reconciler.backends.native import records

# How long one wait for exits lasts before the records are scanned again for new runs.
SCAN_INTERVAL = 0.25


def die_event(record: records.Record, exit_info: Mapping[str, Any]) -> engine.Event:
    """A ``die`` event stamped with the exit's own time (the supervisor's), not its delivery's."""
    code, finished = exit_info.get("exit_code"), exit_info.get("finished_at")
    return engine.Event(time=time.time() if finished is None else float(finished), action="die", name=record.name,
                        container_id=record.container_id, exit_code=None if code is None else int(code),
                        stack=stack_of(record))  # fmt: skip


def stack_of(record: records.Record) -> str:
    return record.labels.get(observed.LABEL_STACK, "")


def history(store: records.Records, *, since: float) -> list[engine.Event]:
    """What the records tell of the owned containers' lives from ``since`` on, oldest first."""
    found = [event for record in store.all() if observed.LABEL_KIND in record.labels
             for event in recorded(record) if event.time >= since]  # fmt: skip
    # Stable: a container's events of one moment keep their order (create, start, oom, die).
    return sorted(found, key=lambda event: event.time)


def recorded(record: records.Record) -> list[engine.Event]:
    """One container's creation, last start and last exit, from its files."""
    stack, data = stack_of(record), record.data
    created = float(data.get("created_at") or 0.0)
    found = [engine.Event(time=created, action="create", name=record.name, container_id=record.container_id,
                          stack=stack)]  # fmt: skip
    if data.get("started_at") is None:
        return found
    # The record notes a start only once ``runtime start`` has returned, which may be after a quick
    # exit's own stamp: a run's end is never shown before its start.
    started = max(created, float(data["started_at"]))
    found.append(engine.Event(time=started, action="start", name=record.name, container_id=record.container_id,
                              stack=stack))  # fmt: skip
    exit_info = records.exit_of(record)
    if exit_info is None:
        return found
    died = die_event(record, exit_info)
    died = dataclasses.replace(died, time=max(started, died.time))
    if exit_info.get("oom_killed"):
        found.append(dataclasses.replace(died, action="oom", exit_code=None))
    return [*found, died]


class EventStream:
    """One reader's stream over the containers in ``store``; :meth:`read` it once."""

    def __init__(self, store: records.Records) -> None:
        self.store = store
        self.first_scan_done = threading.Event()
        self.scans = 0
        self._watched: dict[str, tuple[int, records.Record]] = {}  # container id -> (pidfd, its record)
        # Runs already handled, by "<container id>:<started_at>": scanned again, they are skipped.
        self._seen: set[str] = set()
        # Supervisors already reported ("pid:start time"): a run seen while its start was being
        # recorded has an older key above, and its exit must not be reported a second time.
        self._reported: set[str] = set()
        # Each container directory's identity at the last scan (None: changed too recently to tell),
        # and the containers whose run was not settled: both say what the next scan reads.
        self._stamps: dict[str, tuple[int, ...] | None] = {}
        self._pending: set[str] = set()

    def read(self, *, stop: threading.Event) -> Iterator[engine.Event]:
        """Events until ``stop`` is set."""
        try:
            while not stop.is_set():
                yield from self._scan()
                self.scans += 1
                self.first_scan_done.set()
                yield from self._wait(stop)
        finally:
            for pidfd, _ in self._watched.values():
                os.close(pidfd)
            self._watched.clear()

    def _scan(self) -> Iterator[engine.Event]:
        """The runs started since the last scan: watched through a pidfd, or reported whole."""
        for container_id in self._changed():
            record = self.store.load(container_id)
            # No record (yet): its writing is a change of the directory, seen by a later scan.
            settled = record is None or (yield from self._look(record))
            if settled:
                self._pending.discard(container_id)
            else:
                self._pending.add(container_id)

    def _changed(self) -> list[str]:
        """The containers whose directory changed since the last scan, and the pending ones (all of
        them on the first scan)."""
        now = time.time_ns()
        stamps: dict[str, tuple[int, ...] | None] = {}
        with contextlib.suppress(OSError), os.scandir(self.store.base) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    status = entry.stat(follow_symlinks=False)
                    recent = status.st_mtime_ns >= now - int(records.RACY_SECONDS * 1e9)
                    stamps[entry.name] = None if recent else (status.st_ino, status.st_mtime_ns, status.st_ctime_ns)
        changed = {name for name, stamp in stamps.items() if stamp is None or self._stamps.get(name) != stamp}
        self._pending &= stamps.keys()  # a removed container has nothing left to settle
        self._stamps = stamps
        return sorted(changed | self._pending)

    def _look(self, record: records.Record) -> Generator[engine.Event, None, bool]:
        """The events of the container's current run, if any are new; whether its run is settled
        (watched, reported, or not started): nothing changes for it until its directory does."""
        key = f"{record.container_id}:{record.data.get('started_at')}"
        if record.container_id in self._watched or key in self._seen:
            return True
        info = records.read_json(record.directory / records.SUPERVISOR)
        if info is None:
            return True
        run = f"{info['pid']}:{info.get('start_time')}"
        if not records.supervisor_alive(record):
            yield from self._ended_between_scans(record, key, run)
            return key in self._seen
        if run in self._reported:
            self._seen.add(key)
            return True
        try:
            pidfd = os.pidfd_open(int(info["pid"]))
        except OSError:
            return False  # gone since: the next scan finds its exit
        self._watched[record.container_id] = (pidfd, record)
        self._seen.add(key)
        self._reported.add(run)
        yield engine.Event(time=time.time(), action="start", name=record.name, container_id=record.container_id,
                           stack=stack_of(record))  # fmt: skip
        return True

    def _ended_between_scans(self, record: records.Record, key: str, run: str) -> Iterator[engine.Event]:
        """A run whose supervisor is already gone: its exit file tells (nothing when it has none)."""
        exit_info = records.exit_of(record)
        if exit_info is None or record.data.get("started_at") is None:
            return
        self._seen.add(key)
        if self.first_scan_done.is_set() and run not in self._reported:
            self._reported.add(run)
            yield engine.Event(time=float(record.data["started_at"]), action="start", name=record.name,
                               container_id=record.container_id, stack=stack_of(record))  # fmt: skip
            yield die_event(record, exit_info)

    def _wait(self, stop: threading.Event) -> Iterator[engine.Event]:
        """The exits of watched runs within one scan interval, as ``die`` events."""
        fds = {pidfd: container_id for container_id, (pidfd, _) in self._watched.items()}
        if not fds:
            stop.wait(SCAN_INTERVAL)
            return
        ready, _, _ = select.select(list(fds), [], [], SCAN_INTERVAL)
        for fd in ready:
            container_id = fds[fd]
            _, record = self._watched.pop(container_id)
            os.close(fd)
            # Whatever changed in its directory while it was watched (a next run) was skipped then.
            self._pending.add(container_id)
            exit_info = records.exit_of(record) or {}
            yield die_event(record, exit_info)
