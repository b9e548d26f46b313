"""Remains: what an engine process killed half-way left behind, found and taken away.

The native engine's garbage collector, as containerd's garbage collector and dockerd's clean-up
at start are: the engine runs :meth:`Collector.collect` on every observe, so the ``apply``, the
``delete`` or the controller's loop that follows a ``kill -9`` finds what the dead process left.

**Why it never takes what someone is making**: every step that makes something of a container
(a create, a start, a prepared run) runs under the engine's lock (``<root>/.engine.lock``, an
flock, which the kernel releases when its holder dies). The collector takes that lock without
waiting; while it holds it, nothing is half-made by a live process, so what is half-made belongs
to a dead one. A busy lock means someone is at work: the next observe collects. Pulls do not
take the engine's lock: their snapshot directories carry their process's pid, and only those of
a dead process go (:meth:`snapshots.Snapshotter.remove_remains`).

**Remains**, checked cheaply on every call (two directory listings, two file tests per container,
and per started one its keeper's pid file, its ``/proc`` entry and two file tests; runc only when
something looks wrong). ``/proc`` is scanned for keepers only when one may run that no pid file
names: a keeper is launched after a ``launching`` marker is written in its container's directory,
and the marker goes once its pid file is written, so only a process killed in between (or a
failed launch) leaves one; the scan clears them.

* a container directory without its record (``container.json`` is written last: the create's
  completion mark): a create cut short, taken apart as a failed create is (its keeper, runtime
  state, veths, namespace, rules, rootfs mount, directory and cgroup);
* runc state (``runc --root <root>/runtime``) of an id without a directory: the same;
* a record never started that has runc state, or a keeper (conmon) no pid file names (looked
  for when a ``launching`` marker, a half-made container or stray runc state is found): a start
  cut short. The keeper is killed and the runtime state deleted; the container is ``created``
  again, as its record says, and the next start starts it afresh;
* a started record's run created and never started (its keeper lives, the runtime's ``exec.fifo``
  is still there: a restart killed before ``runtime start``): its init is killed, so that its
  keeper records the exit (137) and runs its exit command, the restart policy, as for any exit;
* a started record's run whose keeper (conmon) was killed while the run lives (no exit recorded,
  the runtime says the init lives): as containerd does when a shim dies, the run is killed and
  its exit recorded as 137 (``exit.json``, with the reason), and the restarter is started as the
  keeper's exit command would have started it;
* a ``stopping`` marker on a run that lives, whose writer (the process it names) is gone: a stop
  cut short, which would keep the restart policy off for the run's next exit;
* a prepared next run (``prepared.json``) whose keeper is dead, or that nobody started within
  ``prepared.PREPARED_TTL`` seconds;
* folders of conmon's exit files on the tmpfs (``/run/reconciler/exits``) whose container
  directory is gone, whatever its root;
* snapshot directories of a pull whose process is dead, or of a commit cut short.

What it must not do: touch volumes (``<root>/volumes`` is never read; a container's directory is
removed without following links), change a container that has its record and was started beyond
ending a run nothing keeps (above: its record, spec and files are the user's), or wait for the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import errors, files
from reconciler.backends.native import processes, records, snapshots

# prepared, runtime and supervision are imported where something is found to undo: the collector
# runs on every observe, and all is well nearly always.
if TYPE_CHECKING:
    from reconciler.backends.native import runtime

# What a keeper of a start cut short leaves in the container's directory.
START_FILES = (records.SUPERVISOR, "init.pid")
# In the runtime's state folder of a container created and not started yet (runc removes it at the start).
EXEC_FIFO = "exec.fifo"


@contextlib.contextmanager
def _lock_if_free(lock: threading.RLock, lock_path: Path) -> Iterator[bool]:
    """The engine's lock (its thread lock, then its flock) if both are free now; never waits."""
    if not lock.acquire(blocking=False):
        yield False
        return
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            yield True
        finally:
            os.close(fd)
    finally:
        lock.release()


class Collector:
    """The remains of one state root (module docstring); one per engine object."""

    def __init__(
        self,
        containers: records.Records,
        runtime_state: Path,
        *,
        runner: Callable[[], runtime.Runtime],
        discard: Callable[[Path, str], None],
        snapshotter: snapshots.Snapshotter,
    ) -> None:
        self.containers = containers
        self.runtime_state = runtime_state
        self._runner, self._discard, self._snapshots = runner, discard, snapshotter

    def collect(self, lock: threading.RLock, lock_path: Path) -> None:
        """Take the remains away if the engine's lock is free now; best effort, never raises."""
        if not lock_path.parent.is_dir():
            return  # a root never used: nothing to collect, and nothing to create
        with _lock_if_free(lock, lock_path) as held:
            if held:
                with contextlib.suppress(errors.EngineError, OSError):
                    self._collect()
        if self._snapshots.root.is_dir():
            with contextlib.suppress(errors.EngineError, OSError):
                self._snapshots.remove_remains(alive=lambda pid: Path(f"/proc/{pid}").exists())

    def _collect(self) -> None:
        base = str(self.containers.base)  # string paths: these checks run per container on every observe
        known = _directories(self.containers.base)
        half_made = {i for i in known if not os.path.exists(f"{base}/{i}/{records.RECORD}")}
        states = _directories(self.runtime_state)
        unstarted = {i for i in states & (known - half_made) if _never_started(self.containers.load(i))}
        launching = {i for i in known - half_made if os.path.exists(f"{base}/{i}/{records.LAUNCHING}")}
        for container_id in known - half_made:
            self._drop_dead_prepared(container_id)
        if half_made or states - known or unstarted or launching:
            unstarted |= self._kill_unowned_keepers(known, half_made)
            for container_id in launching:  # no launch is under way while the lock is held
                (self.containers.base / container_id / records.LAUNCHING).unlink(missing_ok=True)
        _sweep_exit_folders()
        for container_id in sorted(half_made | (states - known)):
            self._discard(self.containers.base / container_id, container_id)
        for container_id in sorted(unstarted):
            self._undo_start(container_id)
        for container_id in sorted(states & (known - half_made) - unstarted):
            self._check_run(container_id)

    def _drop_dead_prepared(self, container_id: str) -> None:
        info = records.read_json(f"{self.containers.base}/{container_id}/{records.PREPARED}")
        if info is None:
            return
        from reconciler.backends.native import prepared

        directory = self.containers.base / container_id

        if prepared.expired(directory) or not processes.is_running(int(info["pid"]), info.get("start_time")):
            prepared.drop(directory, container_id, self._runner())

    def _kill_unowned_keepers(self, known: set[str], half_made: set[str]) -> set[str]:
        """SIGKILL every keeper of this root that no pid file names; returns the ids of records
        never started whose keeper that was (their start was cut short)."""
        base = os.path.abspath(self.containers.base)
        cut_short = set()
        for pid, started, bundle in processes.keepers():
            if os.path.dirname(os.path.abspath(bundle)) != base:
                continue  # another root's
            container_id = os.path.basename(bundle)
            if container_id in known and container_id not in half_made:
                if (pid, started) in _named_keepers(self.containers.base / container_id):
                    continue
                if _never_started(self.containers.load(container_id)):
                    cut_short.add(container_id)
            processes.kill_and_wait(pid, started, grace=5.0)
        return cut_short

    def _check_run(self, container_id: str) -> None:
        """A started container's run, when its keeper was killed or its start cut short (module
        docstring). Cheap when all is well: its pid file, ``/proc`` and two file tests."""
        directory = self.containers.base / container_id
        keeper = records.read_json(f"{directory}/{records.SUPERVISOR}")
        if keeper is None:
            return
        if processes.is_running(int(keeper["pid"]), keeper.get("start_time")):
            # The runtime's state is the container's, not the run's: a prepared next run has its fifo.
            created = os.path.exists(f"{self.runtime_state}/{container_id}/{EXEC_FIFO}")
            if created and not os.path.exists(f"{directory}/{records.PREPARED}"):
                self._end_unstarted_run(container_id)
            _drop_abandoned_stop(f"{directory}/{records.STOPPING}")
            return
        if any(path.exists() for path in _exit_files(directory, container_id)):
            return
        state = self._runner().state(container_id) or {}
        if state.get("status") in ("created", "running", "paused"):
            self._end_keeperless_run(directory, container_id)

    def _end_unstarted_run(self, container_id: str) -> None:
        """A run created and never started (a restart killed before ``runtime start``): its init is
        killed, so its keeper records the exit (137) and runs the exit command (the restart policy),
        as for any exit. Waited for, so that this observe sees the container exited."""
        from reconciler.backends.native import supervision

        self._runner().delete(container_id, force=True)
        record = self.containers.load(container_id)
        if record is not None:
            supervision.wait_exit(record, supervision.KILL_GRACE)

    def _end_keeperless_run(self, directory: Path, container_id: str) -> None:
        """A run whose keeper was killed: nothing would record its exit, keep its logs or apply its
        restart policy, so it is killed and its exit recorded as 137 (as containerd does when a
        shim dies), and the restarter is started as the keeper's exit command would have."""
        from reconciler.backends.native import supervision

        self._runner().delete(container_id, force=True)
        files.write_json(directory / records.EXIT, {
            "exit_code": 137, "finished_at": time.time(), "oom_killed": False,
            "error": "its keeper (conmon) was killed: the run was killed with it",
        })  # fmt: skip
        supervision.forget_exits(container_id)  # its folder on /run, which no keeper will clear now
        record = self.containers.load(container_id)
        if record is not None and not (directory / records.STOPPING).exists():
            supervision.start_restarter(directory, record.name, container_id)

    def _undo_start(self, container_id: str) -> None:
        """A start cut short: its runtime state (the init and its cgroup) and its files go; the
        record, never marked started, says ``created``."""
        directory = self.containers.base / container_id
        for name in (records.SUPERVISOR, records.PREPARED):
            info = records.read_json(directory / name)
            if info is not None:
                processes.kill_and_wait(int(info["pid"]), info.get("start_time"), grace=5.0)
        self._runner().delete(container_id, force=True)
        for leftover in START_FILES:
            with contextlib.suppress(FileNotFoundError):
                (directory / leftover).unlink()


def _drop_abandoned_stop(marker: str) -> None:
    """A ``stopping`` marker on a run that lives, written by a process that is gone: a stop cut
    short. While it stays, the keeper starts no restarter when the run exits, so it goes.

    A marker that names no process (written on a full disk, or before markers named their
    writer) is left alone.
    """
    stopper = records.read_json(marker)
    if stopper is None or not isinstance(stopper.get("pid"), int):
        return
    if not processes.is_running(stopper["pid"], stopper.get("start_time")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)


def _directories(folder: Path) -> set[str]:
    try:
        return {entry.name for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False)}
    except FileNotFoundError:
        return set()


def _never_started(record: records.Record | None) -> bool:
    return record is not None and record.data.get("started_at") is None


def _exit_files(directory: Path, container_id: str) -> tuple[Path, ...]:
    """Where a run's exit may be recorded (see :func:`records.exit_of`)."""
    return directory / records.EXIT, directory / container_id, records.keeper_folder(container_id) / "exit"


def _named_keepers(directory: Path) -> set[tuple[int, str]]:
    """The keepers the container's pid files name: its current run's and a prepared run's."""
    named = set()
    for name in (records.SUPERVISOR, records.PREPARED):
        info = records.read_json(directory / name)
        if info is not None:
            named.add((int(info["pid"]), str(info.get("start_time"))))
    return named


def _sweep_exit_folders() -> None:
    """conmon's folders on the tmpfs whose container directory is gone (see the module docstring)."""
    with contextlib.suppress(FileNotFoundError), os.scandir(records.KEEPER_EXITS) as entries:
        for entry in entries:
            link = os.path.join(entry.path, "bundle")
            # One stat while the link points at its container (nearly always): lstat only if not.
            if not os.path.exists(link) and os.path.islink(link):
                shutil.rmtree(entry.path, ignore_errors=True)
