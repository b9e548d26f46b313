"""A native container on disk: its directory, its record (``container.json``) and its state.

Each container lives in ``<root>/containers/<id>/`` (root-only, 0700). What the engine keeps there:

* ``container.json``, the **record**: the name, labels, spec and env asked for (and the contents
  of its secrets and configs, for :mod:`secret_files` to put on a tmpfs again), the image id, the
  bookkeeping of its runs (``started_at``, ``restart_count``), its stop signal, resource limits,
  cgroup path and network attachments. Written atomically and durably: it is the container.
* ``supervisor.pid.json``: the current run's keeper, conmon (pid and start time), and init pid;
  how the last run ended: the file conmon names after the container id (its exit code, written
  when the init exits; ``oom`` beside it after an OOM kill), or, for a run that could not be
  created, ``exit.json`` (the engine's); ``prepared.json``: a prepared next run (see
  :mod:`prepared`); ``stopping``: a stop is under way; ``launching``: a keeper is being started
  and no pid file names it yet (left behind only by a process killed in between).
* the bundle (``config.json``, ``rootfs/``, ``hostname``, ``hosts``, ``resolv.conf``) and the logs.

conmon writes the exit code first to ``/run/reconciler/exits/<id>/exit`` (a tmpfs: a full disk
cannot leave an exit unrecorded), then beside the record; the copy on the tmpfs is read when the
other could not be written (:func:`exit_of`).

The **state** is derived from these files, never stored: ``exited`` when an exit is recorded,
``created`` before the first start, ``running`` while the recorded supervisor lives, and ``dead``
when it is gone without an exit file (killed, or the host crashed): what Docker calls dead.

**Reading**: :class:`Records` keeps each record it parsed with the identity of the file it read
(inode, size, change and modification times), and parses a record again only when that file was
replaced: the writer (:mod:`reconciler.files`) always writes a new file and renames it over the
old, so an unchanged identity is unchanged bytes. Listing a stack of N containers is then N
``stat`` calls, not N reads and parses, whichever command or thread asks, however often; a lookup
by name goes through a name index. Another process's writes are seen at once (the identity
changes). A file modified within :data:`RACY_SECONDS` of its reading is not trusted (parsed again
next time): timestamps are coarse, and a freed inode number can come back at the same size.

This module reads and writes records; it must not start, stop or signal anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from reconciler import errors, files, manifests, observed
from reconciler.backends.native import processes

RECORD = "container.json"
SUPERVISOR = "supervisor.pid.json"
EXIT = "exit.json"
PREPARED = "prepared.json"
STOPPING = "stopping"
LAUNCHING = "launching"
# conmon's exit files on a tmpfs, one folder per container id (see the module docstring).
KEEPER_EXITS = Path("/run/reconciler/exits")
# A record file changed less than this before it was read is parsed again on its next reading (the
# module docstring): well above the kernel's timestamp granularity (one scheduler tick).
RACY_SECONDS = 0.1


def read_json(path: Path | str) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as handle:  # open(): read per container on every observe
            value = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


@dataclasses.dataclass(slots=True)
class Record:
    """``container.json``: what was asked for, and the engine's bookkeeping."""

    container_id: str
    directory: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.data.get("labels", {}))

    @property
    def spec(self) -> manifests.ContainerSpec:
        return manifests.container_spec_from_document(self.data["spec"])

    @property
    def networks(self) -> list[str]:
        """The networks the container is attached to."""
        return [attachment["network"] for attachment in self.data.get("attachments", [])]

    def save(self) -> None:
        files.write_json(self.directory / RECORD, self.data)


class Records:
    """The containers under ``<root>/containers``: each call sees the files as they are now (another
    engine process may have changed them), each record parsed once per change (module docstring).

    A returned :class:`Record`'s ``data`` is its own dict, but the values in it are shared with the
    cache: assign a key (as every writer does, then :meth:`Record.save`), never change a value in place.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        # container id -> (the identity of the record file read, its data); see the module docstring.
        self._parsed: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {}
        self._by_name: dict[str, str] = {}  # name -> container id, as last seen (checked on use)
        self._lock = threading.Lock()

    def all(self) -> list[Record]:
        try:
            with os.scandir(self.base) as entries:
                ids = sorted(entry.name for entry in entries)
        except OSError:  # no containers yet
            return []
        found = []
        for container_id in ids:
            record = self.load(container_id)
            if record is not None:
                found.append(record)
        with self._lock:
            for gone in self._parsed.keys() - set(ids):
                del self._parsed[gone]
            # The first of a name wins, as in a listing (names are unique; a half-done rename aside).
            self._by_name = {record.name: record.container_id for record in reversed(found)}
        return found

    def load(self, container_id: str) -> Record | None:
        directory = self.base / container_id
        data = self._data(container_id, directory / RECORD)
        if data is None or "name" not in data:
            return None
        return Record(container_id, directory, dict(data))

    def _data(self, container_id: str, path: Path) -> dict[str, Any] | None:
        """The record file's data: the parsed copy while the file is the one parsed, else read afresh."""
        try:
            identity = _identity(os.stat(path))
        except OSError:
            with self._lock:
                self._parsed.pop(container_id, None)  # removed: nothing of it is kept
            return None
        cached = self._parsed.get(container_id)
        if cached is not None and cached[0] == identity:
            return cached[1]
        try:
            with path.open("rb") as handle:
                status, text = os.fstat(handle.fileno()), handle.read()
            data = json.loads(text)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        if status.st_mtime_ns < time.time_ns() - int(RACY_SECONDS * 1e9):
            with self._lock:
                self._parsed[container_id] = (_identity(status), data)
        return data

    def find(self, name: str) -> Record | None:
        container_id = self._by_name.get(name)
        if container_id is not None:
            record = self.load(container_id)
            if record is not None and record.name == name:
                return record
        # Not indexed, or renamed or removed since: the index is rebuilt from a listing.
        return next((record for record in self.all() if record.name == name), None)

    def get(self, name: str) -> Record:
        record = self.find(name)
        if record is None:
            raise errors.NotFound(f"container {name} not found")
        return record


def _identity(status: os.stat_result) -> tuple[int, ...]:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def keeper_folder(container_id: str) -> Path:
    """Where conmon writes a run's exit on the tmpfs (its ``--persist-dir``)."""
    return KEEPER_EXITS / container_id


def exit_of(record: Record) -> dict[str, Any] | None:
    """How the container's last run ended (``exit_code``, ``finished_at``, ``oom_killed``), or None."""
    directory = str(record.directory)  # strings: this runs per container on every observe
    info = read_json(f"{directory}/{EXIT}")
    if info is not None:
        return info
    # The tmpfs copy first: the exit command gives the lasting one its time, then removes it.
    for path in (f"{keeper_folder(record.container_id)}/exit", f"{directory}/{record.container_id}"):
        try:
            with open(path, encoding="ascii") as handle:
                code = int(handle.read().strip())
                finished_at = os.fstat(handle.fileno()).st_mtime
        except (OSError, ValueError):
            continue
        # conmon reports signal N as 128+N, as Docker does; ``oom``: its cgroup saw an OOM kill.
        oom_killed = code == 137 and (record.directory / "oom").exists()
        return {"exit_code": code, "finished_at": finished_at, "oom_killed": oom_killed}
    return None


def supervisor_alive(record: Record) -> bool:
    """Whether the supervisor of the container's current run is alive (pid and start time)."""
    info = read_json(f"{record.directory}/{SUPERVISOR}")
    if info is None:
        return False
    return processes.is_running(int(info["pid"]), info.get("start_time"))


def state_of(record: Record) -> tuple[observed.ContainerState, dict[str, Any] | None]:
    """The container's state (module docstring) and, once exited, how it ended (:func:`exit_of`)."""
    exit_info = exit_of(record)
    if exit_info is not None:
        return "exited", exit_info
    if record.data.get("started_at") is None:
        return "created", None
    if supervisor_alive(record):
        return "running", None
    # The keeper died without writing an exit status (killed, host crash): dead, as Docker says.
    return "dead", None


def is_running(record: Record) -> bool:
    return state_of(record)[0] == "running"


def new_container_id() -> str:
    # As Docker: 32 random bytes, never an all-digit short id (it is the default hostname).
    import secrets  # here: reading records, all a no-op does, makes no id

    while True:
        container_id = secrets.token_hex(32)
        if not container_id[:12].isdigit():
            return container_id
