"""The engine's side of a container's keeper: conmon, launched for a run, and ended.

Each run is kept by a **conmon** process (Debian's ``conmon``, the monitor Podman uses: a few
hundred KiB of C where a Python keeper took 4.6 MiB of memory and an interpreter start). conmon
runs ``runtime create`` with the container's stdout and stderr as its pipes, makes itself a child
subreaper, copies the output into ``container.log`` (the k8s-file format, read by :mod:`logs`),
reaps the init and records its exit code (signal N as 128+N), runs the *exit command* and ends.

The engine writes nothing for conmon but its command line (:func:`keeper_argv`); it spawns it with
two pipes, as Podman does: conmon waits for a line on the *start* pipe (``_OCI_STARTPIPE``) before
``runtime create`` — meanwhile the engine clears what the previous run left (its runtime state, its
exit files), overlapping that with conmon's start — and answers on the *sync* pipe
(``_OCI_SYNCPIPE``) with ``{"data": <init pid>}`` (the init then waits for ``runtime start``) or
``{"data": -1, "message": ...}``. The engine then writes ``supervisor.pid.json`` (or, for a
prepared run, ``prepared.json``): conmon's pid and start time, and the init's pid.

Where conmon writes: its exit code to ``/run/reconciler/exits/<id>/exit`` (``--persist-dir``, a
tmpfs: a full disk cannot leave the exit unrecorded) and then to ``<container dir>/<id>``
(``--exit-dir``, the lasting copy); ``oom`` into its working directory, the container's. The exit
command, a few lines of ``sh``, gives the lasting copy the time of the first (the exit's time, read
from the file's mtime) and removes the tmpfs copy once the lasting one is there, and starts
:mod:`restarter` detached (the restart policy when no controller runs), unless the engine stopped
the container (its ``stopping`` marker) or nothing ran.

This module must not decide when a container runs: the callers (:mod:`runs`, :mod:`prepared`)
hold the engine's lock and say what to clear.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from reconciler import errors, files
from reconciler.backends.native import logs, processes, records, runtime

KEEPER = "conmon"
KEEPER_START_TIMEOUT = 30.0
# After SIGKILL, how long a keeper gets to be gone.
KILL_GRACE = 5.0
# The exit command: $1 container directory, $2 id, $3 conmon's tmpfs folder, $4 python, $5 root,
# $6 name. Nothing here may block conmon's end (its ``die``): the restarter runs in the background.
# A container directory gone means the container was removed: its tmpfs folder goes too.
EXIT_COMMAND = """cd "$1" || { rm -rf "$3"; exit 0; }
if [ -e "$2" ]; then touch -r "$3/exit" "$2"; rm -rf "$3"; elif [ ! -e "$3/exit" ]; then exit 0; fi
[ -e stopping ] && exit 0
"$4" -m reconciler.backends.native.restarter "$5" "$6" "$2" </dev/null >/dev/null 2>&1 &
"""


def keeper_binary() -> str:
    path = shutil.which(KEEPER)
    if path is None:
        raise errors.Unavailable(
            "conmon, the native engine's container monitor, is not installed (apt-get install conmon)"
        )
    return path


def keeper_argv(record: records.Record, runner: runtime.Runtime) -> list[str]:
    """conmon's command line for the container's next run (see the module docstring)."""
    directory, container_id = record.directory, record.container_id
    argv = [
        keeper_binary(), "--api-version", "1", "--sync", "--full-attach", "--no-sync-log",
        "--cid", container_id, "--cuuid", container_id, "--runtime", runner.binary,
        *_runtime_args(runner, directory / "runtime.log"),
        "--bundle", str(directory), "--container-pidfile", str(directory / "init.pid"),
        "--log-path", f"k8s-file:{directory / logs.LOG}",
        "--exit-dir", str(directory), "--persist-dir", str(records.keeper_folder(container_id)),
        "--exit-command", "/bin/sh",
    ]  # fmt: skip
    # The restart policy when no controller runs (see ``restarter``): decided after each exit.
    for arg in ("-c", EXIT_COMMAND, "sh", str(directory), container_id, str(records.keeper_folder(container_id)),
                sys.executable, str(directory.parents[1]), record.name):  # fmt: skip
        argv += ["--exit-command-arg", arg]
    size = logs.size_limit(record.data.get("spec") or {})
    return argv + (["--log-size-max", str(size)] if size else [])


def _runtime_args(runner: runtime.Runtime, log_file: Path) -> list[str]:
    args = []
    for arg in (*runner.base()[1:], "--log", str(log_file), "--log-format", "json"):
        args += ["--runtime-arg", arg]
    return args


def launch(
    record: records.Record, runner: runtime.Runtime, *, clear: Callable[[], None], prepared: bool = False
) -> int:
    """A keeper for the container's next run, up to ``runtime create``; returns the init pid.

    ``clear`` runs while conmon starts, before the go. The pid file written is ``prepared.json``
    for a prepared run (see :mod:`prepared`), else ``supervisor.pid.json``. A run that could not
    be created gets its ``exit.json`` (with the runtime's error), unless prepared: a prepared run
    that fails leaves the previous run's exit as the container's state.
    """
    previous = records.read_json(record.directory / records.SUPERVISOR)
    if previous is not None:  # its exit command may still be at work in the folder below
        processes.wait_for_end(int(previous["pid"]), previous.get("start_time"), timeout=KILL_GRACE)
    folder = records.keeper_folder(record.container_id)
    records.KEEPER_EXITS.mkdir(mode=0o700, parents=True, exist_ok=True)  # root's only, as the state root
    folder.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # tells a later sweep whose folder this is (remains)
        (folder / "bundle").symlink_to(record.directory)
    # Until a pid file names the keeper, this marker tells the remains collector that one may be
    # running unnamed (a kill -9 here), so that it scans /proc for it, which it otherwise skips.
    (record.directory / records.LAUNCHING).touch(mode=0o600)
    process, sync, start = _spawn(record, runner)
    try:
        clear()
        os.write(start, b"go\n")
    except BaseException:
        process.kill()  # it waits on the start pipe: nothing started yet
        process.wait(timeout=KEEPER_START_TIMEOUT)
        os.close(sync)
        raise
    finally:
        os.close(start)
    try:
        init_pid = _await_report(record, process, sync)
    except errors.RuntimeFailed as failure:
        if not prepared:
            files.write_json(record.directory / records.EXIT, {
                "exit_code": runtime.exec_failure_code(failure.stderr), "finished_at": time.time(),
                "oom_killed": False, "error": failure.stderr,
            })  # fmt: skip
        raise
    # Not fsynced: it describes a process, which a host crash takes with it anyway.
    files.write_json(record.directory / (records.PREPARED if prepared else records.SUPERVISOR), {
        "pid": process.pid, "start_time": processes.start_time(process.pid), "init_pid": init_pid,
    }, durable=False)  # fmt: skip
    (record.directory / records.LAUNCHING).unlink(missing_ok=True)
    processes.reap_in_background(process)
    return init_pid


def _spawn(record: records.Record, runner: runtime.Runtime) -> tuple[subprocess.Popen[bytes], int, int]:
    """conmon, started and waiting for the go: its process, the read end of its sync pipe, and
    the write end of its start pipe."""
    argv = keeper_argv(record, runner)
    sync_read, sync_write = os.pipe()
    start_read, start_write = os.pipe()
    environment = {**processes.helper_environment(), "_OCI_SYNCPIPE": str(sync_write),
                   "_OCI_STARTPIPE": str(start_read)}  # fmt: skip
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(sync_write, start_read), start_new_session=True, close_fds=True,
            cwd=record.directory, env=environment,
        )  # fmt: skip
    except BaseException:
        for fd in (sync_read, start_write):
            os.close(fd)
        raise
    finally:
        os.close(sync_write)
        os.close(start_read)
    return process, sync_read, start_write


def _await_report(record: records.Record, process: subprocess.Popen[bytes], sync_read: int) -> int:
    """conmon's report: the init's pid (it waits for ``runtime start``), or the error raised."""
    with os.fdopen(sync_read, "rb") as sync:
        ready, _, _ = select.select([sync], [], [], KEEPER_START_TIMEOUT)
        line = sync.readline() if ready else b""
    report: dict[str, object] = {}
    with contextlib.suppress(ValueError):
        report = json.loads(line) if line else {}
    pid = report.get("data") if isinstance(report, dict) else None
    if isinstance(pid, int) and pid > 0:
        assert process.stderr is not None
        process.stderr.close()  # conmon has put /dev/null in its place by now
        return pid
    if not line:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    _, stderr = process.communicate(timeout=KILL_GRACE)
    message = (
        runtime.last_error(record.directory / "runtime.log")
        or str(report.get("message") or "").strip()
        or stderr.decode(errors="replace").strip()
        or "the container's keeper (conmon) did not report in time"
    )
    forget_exits(record.container_id)
    raise errors.RuntimeFailed(f"starting container {record.name}", stderr=message)


def clear_exit(record: records.Record) -> None:
    """The previous run's exit, wherever it was recorded (see :func:`records.exit_of`)."""
    folder = records.keeper_folder(record.container_id)
    for leftover in (record.directory / records.EXIT, record.directory / record.container_id,
                     record.directory / "oom", folder / "exit", folder / "oom"):  # fmt: skip
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def forget_exits(container_id: str) -> None:
    """conmon's folder on the tmpfs, unless it holds an exit that has no lasting copy."""
    folder = records.keeper_folder(container_id)
    if not (folder / "exit").exists():
        shutil.rmtree(folder, ignore_errors=True)


def wait_exit(record: records.Record, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the current run's exit to be recorded; whether it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if records.exit_of(record) is not None:
            return True
        if not records.supervisor_alive(record):
            break
        time.sleep(0.02)
    return records.exit_of(record) is not None


def start_restarter(directory: Path, name: str, container_id: str) -> None:
    """The restarter, detached, as the exit command starts it: for an exit the keeper could not
    record (it was killed; see :mod:`remains`)."""
    argv = [sys.executable, "-m", "reconciler.backends.native.restarter", str(directory.parents[1]), name, container_id]
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, env=processes.helper_environment(),
    )  # fmt: skip
    processes.reap_in_background(process)


def wait_for_keeper(record: records.Record) -> None:
    """Wait (up to ``KILL_GRACE``) for the end of the current run's keeper, which comes once its
    exit command has run: after it, nothing writes into the container's folders."""
    info = records.read_json(record.directory / records.SUPERVISOR)
    if info is not None:
        processes.wait_for_end(int(info["pid"]), info.get("start_time"), timeout=KILL_GRACE)


def kill(pid_file: Path) -> None:
    """SIGKILL the keeper a pid file names (if it is still that process) and wait for its end."""
    info = records.read_json(pid_file)
    if info is not None:
        processes.kill_and_wait(int(info["pid"]), info.get("start_time"), grace=KILL_GRACE)
