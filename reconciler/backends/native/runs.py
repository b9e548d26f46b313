"""A native container's runs: starting one, stopping it, waiting for its exit.

**Start** (the caller holds the engine's lock and has the rootfs mounted): a prepared next run,
when there is one, is started with ``runtime start`` alone (:mod:`prepared`). Otherwise a
keeper, conmon, is launched (:mod:`supervision`); a restart keeps what survives an exit (the
rootfs mount, the network namespace, veths, published ports, ``config.json``) and clears only the
previous run's runtime state and exit files, while conmon starts. Then ``runtime start`` lets the
init run, and the record notes the start (and counts a restart).

**Stop**: the ``stopping`` marker first (a stopped container's next run is not prepared: it stays
stopped until asked to start), then the stop signal, ``timeout`` seconds, then SIGKILL to every
process of the container. conmon records the exit; the engine waits for it, and for conmon's end
(its exit command has then run), also when the container had already exited.

This module must not decide whether a container should run: that is the controller's.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from reconciler import errors, files
from reconciler.backends.native import prepared, processes, records, runtime, supervision

# After SIGKILL, how long a container gets to be reported exited.
KILL_GRACE = 5.0


def start(record: records.Record, runner: runtime.Runtime) -> None:
    """Start the container's next run (see the module docstring); the caller holds the lock."""
    with contextlib.suppress(FileNotFoundError):
        (record.directory / records.STOPPING).unlink()
    if prepared.start(record, runner):
        return
    restart = record.data.get("started_at") is not None

    def clear() -> None:
        if restart:
            runner.delete(record.container_id, force=True)
        supervision.clear_exit(record)
        for leftover in (records.SUPERVISOR, "init.pid"):
            with contextlib.suppress(FileNotFoundError):
                (record.directory / leftover).unlink()

    supervision.launch(record, runner, clear=clear)
    if restart:
        record.data["restart_count"] = int(record.data.get("restart_count", 0)) + 1
    runner.start(record.container_id)
    record.data["started_at"] = time.time()
    record.save()


def mark_stopping(record: records.Record) -> None:
    """From now until the next start, no next run of the container is prepared.

    The marker names this process: a stop cut short (the command killed) leaves a marker whose
    writer is dead on a container that still runs, which the engine's remains collector removes,
    so that the container's restart policy holds again for its next exit.
    """
    stopper = {"pid": os.getpid(), "start_time": processes.start_time(os.getpid())}
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(record.directory / records.STOPPING, flags, 0o600)
    except FileNotFoundError:  # removed meanwhile: nothing left to prepare
        return
    try:
        # Written in place, not renamed into place: the marker itself needs no data block, so a
        # stop on a full disk still marks it (naming nobody, which the collector leaves alone).
        with contextlib.suppress(OSError):
            files.write_all(fd, json.dumps(stopper).encode())
    finally:
        os.close(fd)


def stop(record: records.Record, runner: runtime.Runtime, timeout: float) -> None:
    """Stop the running container: its stop signal, ``timeout`` seconds, then SIGKILL."""
    mark_stopping(record)
    if records.state_of(record)[0] == "running":
        runner.kill(record.container_id, str(record.data.get("stop_signal", "SIGTERM")))
        if not wait_exit(record, timeout):
            runner.kill(record.container_id, "SIGKILL", all_processes=True)
            if not wait_exit(record, KILL_GRACE):
                raise errors.RuntimeFailed(f"container {record.name} did not exit after SIGKILL")
    # The exit is recorded first, then conmon runs its exit command and ends: a removal that
    # followed at once would race the command (which moves the exit file and clears /run).
    supervision.wait_for_keeper(record)


def wait_exit(record: records.Record, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the current run's exit to be recorded; whether it is."""
    return supervision.wait_exit(record, timeout)
