"""Prepared next runs: the slow part of a restart done during the restart's backoff.

Only the controller decides that an exited container will be started again (its restart policy).
Right after it schedules such a restart it asks the engine to prepare the next run
(``NativeEngine.prepare_next_run``); in the background, under the engine's lock, the previous
run's runtime state is deleted and a new keeper (conmon) runs ``runtime create``, so that the init
waits for ``runtime start`` and the later start is only that. Nothing of the container runs
before the start: the previous run's exit stays its state until then.

The files: the engine writes ``prepared.json`` (the keeper's pid and start time, the init's pid).
Starting the run renames it to ``supervisor.pid.json`` under the engine's lock, then runs
``runtime start``; from the rename on, the keeper is the run's ordinary one. A prepared run nobody
starts within ``PREPARED_TTL`` seconds is discarded by the engine's collector of remains (under
the engine's lock, on the next observe: :mod:`remains`), as is one whose keeper died. A stop, an
update (the run was made with the old limits) or a remove discards a prepared run first.

Everything here is best effort: a run that cannot be prepared leaves the container as it was, and
the start takes the ordinary path. Callers hold the engine's lock; this module must not decide
*whether* a container restarts.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from reconciler import errors
from reconciler.backends.native import processes, records, runtime, supervision

# A prepared next run that nobody starts within this many seconds goes away; the backoffs it
# serves are the first ones (100 ms, 200 ms, ... as Docker's), long ones need no help.
PREPARED_TTL = 3.0


def thread_name(name: str) -> str:
    """The name of the background thread that prepares the next run of container ``name``."""
    return f"prepare next run of {name}"


def prepare(record: records.Record, runner: runtime.Runtime) -> bool:
    """Prepare the container's next run up to ``runtime create``; False when it is not for one
    (not exited, already prepared, being stopped, or its rootfs is not mounted)."""
    from reconciler.backends.native import mounts  # here: the remains collector reads this module on every observe

    directory = record.directory
    if records.state_of(record)[0] != "exited" or (directory / records.PREPARED).exists():
        return False
    if (directory / records.STOPPING).exists() or not mounts.is_mounted(directory / "rootfs"):
        return False
    supervision.launch(record, runner, clear=lambda: runner.delete(record.container_id, force=True), prepared=True)
    return True


def expired(directory: Path, *, now: float | None = None) -> bool:
    """Whether the container has a prepared run older than ``PREPARED_TTL`` seconds."""
    try:
        made = (directory / records.PREPARED).stat().st_mtime
    except FileNotFoundError:
        return False
    return (time.time() if now is None else now) - made > PREPARED_TTL


def drop(directory: Path, container_id: str, runner: runtime.Runtime) -> None:
    """Discard a prepared next run: its keeper first (else it would record the init's end as an
    exit), then its init with the runtime state."""
    if not (directory / records.PREPARED).exists():
        return
    supervision.kill(directory / records.PREPARED)
    with contextlib.suppress(FileNotFoundError):
        (directory / records.PREPARED).unlink()
    with contextlib.suppress(errors.EngineError):
        runner.delete(container_id, force=True)
    supervision.forget_exits(container_id)


def start(record: records.Record, runner: runtime.Runtime) -> bool:
    """Start the prepared next run, if there is one: ``runtime start``. False: none to start."""
    directory = record.directory
    info = records.read_json(directory / records.PREPARED)
    if info is None:
        return False
    if not processes.is_running(int(info["pid"]), info.get("start_time")):
        drop(directory, record.container_id, runner)
        return False
    # The old exit goes first: once started, an exit at once writes the new one.
    supervision.clear_exit(record)
    with contextlib.suppress(FileNotFoundError):
        (directory / records.SUPERVISOR).unlink()
    # From this rename on, the keeper is the run's ordinary one (only a prepared run is discarded).
    os.replace(directory / records.PREPARED, directory / records.SUPERVISOR)
    try:
        runner.start(record.container_id)
    except errors.RuntimeFailed:
        supervision.kill(directory / records.SUPERVISOR)
        with contextlib.suppress(FileNotFoundError):
            (directory / records.SUPERVISOR).unlink()
        return False  # the ordinary path deletes the runtime state and creates the run anew
    record.data["restart_count"] = int(record.data.get("restart_count", 0)) + 1
    record.data["started_at"] = time.time()
    record.save()
    return True
