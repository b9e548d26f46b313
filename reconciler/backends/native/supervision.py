"""The engine's side of a container's supervisor: launching one for a run, and ending one.

A run starts with a :mod:`supervisor` process spawned detached (own session, ``python -S``). The
engine first writes ``supervisor.json`` (the ``runtime create`` command line, the cgroup, the log
rotation and, for a prepared run, its time to live and the engine's lock), then spawns the
process with two pipes: the supervisor waits for a line on the *go* pipe before ``runtime
create`` — meanwhile the engine clears what the previous run left (its runtime state, its exit
file), overlapping that with the interpreter's start — and answers on the *sync* pipe with
``created <init pid>`` (the init then waits for ``runtime start``) or ``error <message>``. Closing
the go pipe without a line tells the supervisor to exit without a trace.

This module must not decide when a container runs: the callers (:mod:`runs`, :mod:`prepared`)
hold the engine's lock and say what to clear.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from reconciler import errors, files
from reconciler.backends.native import logs, processes, records, runtime

SUPERVISOR_START_TIMEOUT = 30.0
# After SIGKILL, how long a supervisor gets to be gone.
KILL_GRACE = 5.0


def launch(
    record: records.Record,
    runner: runtime.Runtime,
    *,
    clear: Callable[[], None],
    prepared: Mapping[str, object] | None = None,
) -> int:
    """A supervisor for the container's next run, up to ``runtime create``; returns the init pid.

    ``clear`` runs while the supervisor's interpreter starts, before the go. ``prepared`` (its
    ``ttl`` and the engine's ``lock``) makes it a prepared run, which writes ``prepared.json``
    itself; an ordinary run's ``supervisor.pid.json`` is written here.
    """
    process, sync, go = _spawn(record, runner, prepared)
    try:
        clear()
        os.write(go, b"go\n")
    except BaseException:
        os.close(go)  # end of file: the supervisor exits without a trace
        os.close(sync)
        process.wait(timeout=SUPERVISOR_START_TIMEOUT)
        raise
    os.close(go)
    init_pid = _await_report(record, process, sync)
    if prepared is None:
        # Not fsynced: it describes a process, which a host crash takes with it anyway.
        files.write_json(record.directory / records.SUPERVISOR, {
            "pid": process.pid, "start_time": processes.start_time(process.pid), "init_pid": init_pid,
        }, durable=False)  # fmt: skip
    processes.reap_in_background(process)
    return init_pid


def _spawn(
    record: records.Record, runner: runtime.Runtime, prepared: Mapping[str, object] | None
) -> tuple[subprocess.Popen[bytes], int, int]:
    """The supervisor, started: its process, the read end of its report pipe, and the write end
    of the pipe it waits on for the go."""
    runtime_log = record.directory / "runtime.log"
    files.write_json(record.directory / "supervisor.json", {
        "create": runner.create_argv(
            record.container_id, bundle=record.directory, pid_file=record.directory / "init.pid",
            log_file=runtime_log,
        ),
        "cgroups_path": record.data.get("cgroups_path", ""),
        "runtime_log": str(runtime_log),
        "log": logs.rotation(record.data.get("spec") or {}),
        # The restart policy when no controller runs (see ``restarter``): decided after each exit.
        "exit_command": [
            sys.executable, "-m", "reconciler.backends.native.restarter",
            str(record.directory.parents[1]), record.name, record.container_id,
        ],
        **({"prepared": dict(prepared)} if prepared is not None else {}),
    }, durable=False)  # fmt: skip
    sync_read, sync_write = os.pipe()
    go_read, go_write = os.pipe()
    try:
        process = subprocess.Popen(
            # -S: no site-packages scan at start (the package comes in through PYTHONPATH).
            [sys.executable, "-S", "-m", "reconciler.backends.native.supervisor", "--sync-fd", str(sync_write),
             "--go-fd", str(go_read), str(record.directory)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(sync_write, go_read), start_new_session=True, close_fds=True,
            cwd="/", env=processes.helper_environment(),
        )  # fmt: skip
    except BaseException:
        for fd in (sync_read, go_write):
            os.close(fd)
        raise
    finally:
        os.close(sync_write)
        os.close(go_read)
    return process, sync_read, go_write


def _await_report(record: records.Record, process: subprocess.Popen[bytes], sync_read: int) -> int:
    """Its report: ``created <init pid>`` (the init waits for ``runtime start``) or the error."""
    with os.fdopen(sync_read, "r", encoding="utf-8") as sync:
        ready, _, _ = select.select([sync], [], [], SUPERVISOR_START_TIMEOUT)
        line = sync.readline().strip() if ready else ""
    if not line.startswith("created "):
        with contextlib.suppress(ProcessLookupError):
            if not line:
                process.kill()
        process.wait(timeout=5)
        message = line.removeprefix("error ").strip() or "the supervisor did not report in time"
        raise errors.RuntimeFailed(f"starting container {record.name}", stderr=message)
    return int(line.split()[1])


def kill(pid_file: Path) -> None:
    """SIGKILL the supervisor a pid file names (if it is still that process) and wait for its end."""
    info = records.read_json(pid_file)
    if info is not None:
        processes.kill_and_wait(int(info["pid"]), info.get("start_time"), grace=KILL_GRACE)
