"""The per-container supervisor: a small process that outlives the engine and owns one container.

It is what conmon and containerd-shim are to Podman and containerd: started detached
(own session, stdio on /dev/null), it makes itself a *child subreaper* so that the container's init
is re-parented to it and not to the host's PID 1 (which reaps lazily and would swallow the exit
code); it runs ``runtime create`` with the container's stdout and stderr as pipes it holds; it
tells the engine "created <pid>" (or the runtime's error) on a sync pipe; then it

* copies the container's output into ``container.log`` in Docker's json-file format (on a full
  disk it drains and drops the output, counting the lines, and says how many in the log once
  space returns: the container never blocks on its output, and this process never dies of it),
* reaps **every** process re-parented to it (exec'd processes too),
* when the init exits, waits for the pipes to drain and writes ``exit.json`` atomically:
  ``{"exit_code", "finished_at", "oom_killed"}``, with signal N reported as 128+N as Docker does
  (into blocks set aside at the start, ``exit.reserve``, if the disk is full by then),
* starts the *exit command* of ``supervisor.json``, if any, detached (the restart policy when no
  controller runs: :mod:`reconciler.backends.native.restarter`), and exits. The engine sees the
  exit through a pidfd on this process, or through ``exit.json`` after an engine restart.

**Prepared runs** (``"prepared"`` in ``supervisor.json``): the engine prepares the next run of a
container that exited and will be restarted, during the restart's backoff, so that the restart
itself is only ``runtime start``. The supervisor then runs ``create`` as above but writes
``prepared.json`` (its pid, start time and the init's pid) instead of anything on a failure, and
waits. The engine starts the run by renaming ``prepared.json`` to ``supervisor.pid.json`` under its
lock, then ``runtime start``: from there on this is an ordinary supervisor. If the run is not
started within ``ttl`` seconds (or its init dies first), it takes the engine's lock, and if
``prepared.json`` is still there, kills the init, removes the file and exits without writing
``exit.json``: the previous run's exit stays the container's state.

Run as ``python -m reconciler.backends.native.supervisor --sync-fd N [--go-fd M] <container dir>``
with the runtime command line in ``<container dir>/supervisor.json``. With ``--go-fd`` it waits for
a line on that pipe before ``runtime create`` (the engine meanwhile clears the previous run's
runtime state); end of file instead means "give up", and it exits without a trace. It imports
nothing from the engine's decision layers and must stay small: it lives as long as the container,
and its start-up is on every (re)start's path, so it imports only what it uses: of the project,
:mod:`reconciler.files` (the atomic writer, standard library only); no argparse, subprocess,
datetime, pathlib or typing (tens of milliseconds of a restart, and about 1 MiB of memory per
container, otherwise).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import select
import signal
import sys
import time

from reconciler import files

TYPE_CHECKING = False  # typing itself is not imported: the supervisor's start is on the restart path
if TYPE_CHECKING:
    from typing import Any

PR_SET_CHILD_SUBREAPER = 36
# The engine's marker of a stop it asked for (``records.STOPPING``; not imported: see above).
STOPPING = "stopping"
# A line longer than this is split into partial entries, as Docker's copier does (16 KiB).
MAX_LINE = 16 * 1024
# After the init exits, exec'd processes may still hold the pipes; don't wait for them forever.
DRAIN_SECONDS = 2.0
# Set aside at the start of a run for exit.json (see _write_exit); retried at most this far apart.
EXIT_RESERVE = "exit.reserve"
EXIT_RESERVE_BYTES = 16 * 1024
EXIT_RETRY_MAX = 1.0


def _timestamp(now: float) -> str:
    """Go's RFC3339Nano in UTC with trailing zeros trimmed, as in Docker's json-file lines."""
    fraction = f"{int(now * 1e9) % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + (f".{fraction}" if fraction else "") + "Z"


class _LogWriter:
    """Splits a stream into lines and appends json-file entries.

    With ``max_size``, the file is rotated as Docker's json-file driver does it: once it reaches
    the size, ``container.log`` becomes ``container.log.1`` (older ones shift up, the oldest of
    ``max_files`` goes); with one file only, it is truncated.

    A full disk (or any failing write) must not stop the container: a line that cannot be written
    is dropped and counted (a part written is cut off again, so the file stays whole lines), the
    pipes go on being drained, and the first line written once space returns is the entry
    ``reconciler: N lines dropped``. (Docker's json-file driver drops and logs the error in
    dockerd's own log instead; here the count is where the reader of the container's log sees it.)"""

    def __init__(self, path: str, *, max_size: int | None = None, max_files: int = 1) -> None:
        self.path, self.max_size, self.max_files = path, max_size, max_files
        self.fd = -1
        self.size = 0
        self.dropped = 0
        self.pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        with contextlib.suppress(OSError):
            self._open()

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def _rotate(self) -> None:
        os.close(self.fd)
        self.fd = -1
        if self.max_files > 1:
            for index in range(self.max_files - 1, 0, -1):
                older = f"{self.path}.{index - 1}" if index > 1 else self.path
                with contextlib.suppress(FileNotFoundError):
                    os.replace(older, f"{self.path}.{index}")
        else:
            os.truncate(self.path, 0)
        self._open()

    def feed(self, stream: str, data: bytes) -> None:
        buffer = self.pending[stream] + data
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                break
            self._write(stream, buffer[: newline + 1])
            buffer = buffer[newline + 1 :]
        while len(buffer) >= MAX_LINE:
            self._write(stream, buffer[:MAX_LINE])
            buffer = buffer[MAX_LINE:]
        self.pending[stream] = buffer

    def flush(self) -> None:
        for stream, rest in self.pending.items():
            if rest:
                self._write(stream, rest)
            self.pending[stream] = b""

    def _write(self, stream: str, chunk: bytes) -> None:
        if self.dropped:
            if not self._append(_entry("stderr", f"reconciler: {self.dropped} lines dropped\n")):
                self.dropped += 1
                return
            self.dropped = 0
        if not self._append(_entry(stream, chunk.decode("utf-8", errors="replace"))):
            self.dropped += 1

    def _append(self, line: bytes) -> bool:
        """Whether the whole entry was written; a part written is cut off again."""
        try:
            if self.fd < 0:
                self._open()
            if self.max_size and self.size and self.size + len(line) > self.max_size:
                self._rotate()
            written = os.write(self.fd, line)
        except OSError:
            written = -1
        if written == len(line):
            self.size += written
            return True
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
        return False


def _entry(stream: str, text: str) -> bytes:
    entry = {"log": text, "stream": stream, "time": _timestamp(time.time())}
    return json.dumps(entry, ensure_ascii=False).encode() + b"\n"


def _oom_killed(cgroups_path: str, before: int) -> bool:
    """Whether the kernel OOM-killed something in the container's memory cgroup (v1, then v2)."""
    return _oom_kills(cgroups_path) > before


def _oom_kills(cgroups_path: str) -> int:
    relative = cgroups_path.lstrip("/")
    for path, key in (
        (os.path.join("/sys/fs/cgroup/memory", relative, "memory.oom_control"), "oom_kill"),
        (os.path.join("/sys/fs/cgroup", relative, "memory.events"), "oom_kill"),
    ):
        with contextlib.suppress(OSError), open(path, encoding="utf-8") as handle:
            for line in handle.read().splitlines():
                name, _, value = line.partition(" ")
                if name == key and value.strip().isdigit():
                    return int(value)
    return 0


def supervise(directory: str, sync_fd: int, go_fd: int | None = None) -> int:
    """The supervisor's whole life; returns its own exit status."""
    # Nothing of ours may reach the runtime (and so the container): the sync pipe was inherited.
    os.set_inheritable(sync_fd, False)
    with open(os.path.join(directory, "supervisor.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    prepared: dict[str, object] | None = config.get("prepared")
    _reserve_exit_space(directory)
    wake_r = _become_subreaper()
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid_file = os.path.join(directory, "init.pid")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pid_file)
    if go_fd is not None:
        # The engine clears the previous run's runtime state meanwhile; EOF means it gave up.
        with os.fdopen(go_fd, "rb") as go:
            if not go.readline():
                return 1
    create_status = _run_create(config["create"], out_w, err_w)
    sync = os.fdopen(sync_fd, "w", encoding="utf-8")
    if create_status != 0 or not os.path.exists(pid_file):
        message = _runtime_error(config["runtime_log"]) or f"runtime create exited {create_status}"
        sync.write(f"error {message}\n")
        sync.close()
        if prepared is None:  # a prepared run leaves the previous run's exit.json: nothing started
            _write_exit(directory, {"exit_code": _create_failure_code(message), "finished_at": time.time(),
                                    "oom_killed": False, "error": message})  # fmt: skip
        return 1
    with open(pid_file, encoding="utf-8") as handle:
        init_pid = int(handle.read().strip())
    run = _Run(directory, config, init_pid, {out_r: "stdout", err_r: "stderr"}, wake_r)
    if prepared is not None:
        run.wait_as_prepared(float(str(prepared["ttl"])), str(prepared["lock"]))
    sync.write(f"created {init_pid}\n")
    sync.close()
    status = run.follow()
    # A stop by the engine (a stop, a recreate, a removal) marks the directory first: the exit
    # command would only decide "stopped by the engine", after a whole interpreter start.
    stopped = os.path.exists(os.path.join(directory, STOPPING))
    if run.recorded and config.get("exit_command") and not stopped:
        _exit_command([str(arg) for arg in config["exit_command"]])
    return status


def _exit_command(argv: list[str]) -> None:
    """Start the exit command (the restart policy without a controller: ``restarter``), detached:
    its own session, stdio on /dev/null; it outlives this process, which ends now."""
    if os.fork() != 0:
        return
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execv(argv[0], argv)  # noqa: S606 (our own argv, written by the engine; no shell)
    finally:
        os._exit(127)


def _become_subreaper() -> int:
    """Exited descendants become our children, and SIGCHLD wakes the loop through the returned
    pipe, so that exits are seen at once, not at a poll tick."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    return wake_r


def _run_create(create_argv: list[str], out_w: int, err_w: int) -> int:
    """``runtime create`` with the container's output on our pipes; its exit status."""
    # posix_spawn, not subprocess (an import that costs a restart ~5 ms): stdin from /dev/null, the
    # output to our pipes, SIGPIPE back to its default; every other fd of ours is close-on-exec.
    create_pid = os.posix_spawn(create_argv[0], create_argv, dict(os.environ), file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ], setsigdef=(signal.SIGPIPE,))  # fmt: skip
    os.close(out_w)
    os.close(err_w)
    # Wait for `create` itself only (not for the init, which is blocked on runc's exec fifo).
    return os.waitstatus_to_exitcode(os.waitpid(create_pid, 0)[1])


def _reserve_exit_space(directory: str) -> None:
    """Blocks set aside for ``exit.json``, so that a full disk cannot keep the exit unrecorded."""
    with contextlib.suppress(OSError):
        fd = os.open(os.path.join(directory, EXIT_RESERVE), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, EXIT_RESERVE_BYTES)
        finally:
            os.close(fd)


def _write_exit(directory: str, value: dict[str, object]) -> None:
    """``exit.json``, however full the disk: the reserved blocks are freed for it, and while there
    is still no space it is retried (this process stays, so the engine sees the run as not yet
    ended rather than as dead, and reads the exit once it is written). Given up only when the
    container's directory is gone (removed: nobody will read it)."""
    reserve = os.path.join(directory, EXIT_RESERVE)
    delay = 0.05
    while os.path.isdir(directory):
        try:
            files.write_json(os.path.join(directory, "exit.json"), value)
        except OSError:
            if os.path.exists(reserve):
                with contextlib.suppress(OSError):
                    os.unlink(reserve)
                continue
            time.sleep(delay)  # no event tells that space returned: retry, less and less often
            delay = min(delay * 2, EXIT_RETRY_MAX)
            continue
        with contextlib.suppress(OSError):
            os.unlink(reserve)
        return


class _Run:
    """One run after ``runtime create``: its output copied to the log, its processes reaped, its
    exit recorded; or, prepared and never started, given up."""

    def __init__(self, directory: str, config: dict[str, Any], init_pid: int, streams: dict[int, str],
                 wake_r: int) -> None:  # fmt: skip
        self.directory, self.config, self.init_pid = directory, config, init_pid
        self.streams, self.wake_r = streams, wake_r
        self.cgroups_path: str = config.get("cgroups_path", "")
        self.oom_before = _oom_kills(self.cgroups_path)
        self.exit_code: int | None = None
        self.recorded = False  # exit.json written (a prepared run given up writes none)
        self.finished_at = 0.0
        self.drain_deadline = 0.0
        self.prepared_file = os.path.join(directory, "prepared.json")
        self.prepared_until: float | None = None
        self.lock_path = ""

    def wait_as_prepared(self, ttl: float, lock_path: str) -> None:
        """A prepared run: ``prepared.json`` tells the engine; given up after ``ttl`` seconds."""
        self.prepared_until = time.monotonic() + ttl
        self.lock_path = lock_path
        with open("/proc/self/stat", encoding="utf-8") as handle:
            start_time = handle.read().rsplit(")", 1)[1].split()[19]
        files.write_json(self.prepared_file, {"pid": os.getpid(), "start_time": start_time,
                                                    "init_pid": self.init_pid}, durable=False)  # fmt: skip

    def follow(self) -> int:
        """Until the init has exited and its output is drained; then ``exit.json``."""
        rotation = self.config.get("log") or {}
        log = _LogWriter(os.path.join(self.directory, "container.log"), max_size=rotation.get("max_size"),
                         max_files=int(rotation.get("max_files") or 1))  # fmt: skip
        poller = select.poll()
        for fd in (*self.streams, self.wake_r):
            poller.register(fd, select.POLLIN)
        while self.streams and (self.exit_code is None or time.monotonic() < self.drain_deadline):
            self._copy_output(poller, log)
            self._reap()
            if self.prepared_until is not None and self._gave_up():
                return 0
        if self.exit_code is None:
            # The pipes closed first (the process closed its stdio); wait for the init itself.
            self.exit_code = _wait_for(self.init_pid)
            self.finished_at = time.time()
        log.flush()
        # finished_at is when the init was reaped (its exit), not when the output was drained.
        oom_killed = _oom_killed(self.cgroups_path, self.oom_before) if self.exit_code == 137 else False
        _write_exit(self.directory, {"exit_code": self.exit_code, "finished_at": self.finished_at,
                                     "oom_killed": oom_killed})  # fmt: skip
        self.recorded = True
        return 0

    def _copy_output(self, poller: select.poll, log: _LogWriter) -> None:
        """What the container wrote, into the log, waiting at most until the next thing to check."""
        timeout = 1.0 if self.exit_code is None else max(0.0, self.drain_deadline - time.monotonic())
        if self.prepared_until is not None:
            timeout = min(timeout, max(0.0, self.prepared_until - time.monotonic()))
        for fd, _ in poller.poll(timeout * 1000):
            if fd == self.wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
                continue
            data = os.read(fd, 65536)
            if not data:
                poller.unregister(fd)
                os.close(fd)
                del self.streams[fd]
            else:
                log.feed(self.streams[fd], data)

    def _reap(self) -> None:
        """Reap everything that was re-parented to us; remember the init's status."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.init_pid:
                self.finished_at = time.time()
                code = os.waitstatus_to_exitcode(status)
                self.exit_code = 128 - code if code < 0 else code
                self.drain_deadline = time.monotonic() + DRAIN_SECONDS

    def _gave_up(self) -> bool:
        """For a prepared run: whether it was given up (then the supervisor ends without a trace)."""
        if self.prepared_until is None or not os.path.exists(self.prepared_file):
            self.prepared_until = None  # started: an ordinary supervisor from here on
            return False
        if self.exit_code is None and time.monotonic() < self.prepared_until:
            return False
        if _give_up(self.lock_path, self.prepared_file, self.init_pid, exited=self.exit_code is not None):
            return True
        self.prepared_until = None  # started just before the lock was ours
        return False


def _give_up(lock_path: str, prepared_file: str, init_pid: int, *, exited: bool) -> bool:
    """A prepared run nobody started: kill its init and leave no trace, unless it was started."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the engine renames the file and starts under this lock
        if not os.path.exists(prepared_file):
            return False
        if not exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init_pid, signal.SIGKILL)
            _wait_for(init_pid)
        os.unlink(prepared_file)
        return True
    finally:
        os.close(fd)


def _wait_for(init_pid: int) -> int:
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 128  # reaped elsewhere: the status is lost (should not happen as a subreaper)
        if pid == init_pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def _runtime_error(log_file: str) -> str:
    with contextlib.suppress(OSError), open(log_file, encoding="utf-8", errors="replace") as handle:
        for line in reversed(handle.read().splitlines()):
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    return str(entry.get("msg", ""))
    return ""


def _create_failure_code(message: str) -> int:
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return 127
    if "permission denied" in lowered:
        return 126
    return 128


def main(argv: list[str] | None = None) -> int:
    """``--sync-fd N [--go-fd M] DIRECTORY``: parsed by hand, argparse alone costs ~15 ms of a start."""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: reconciler-supervisor --sync-fd N [--go-fd M] DIRECTORY"
    options: dict[str, int] = {}
    while len(args) > 1 and args[0] in ("--sync-fd", "--go-fd"):
        if not args[1].isdigit():
            print(usage, file=sys.stderr)
            return 2
        options[args[0]] = int(args[1])
        del args[:2]
    if len(args) != 1 or "--sync-fd" not in options:
        print(usage, file=sys.stderr)
        return 2
    return supervise(args[0], options["--sync-fd"], options.get("--go-fd"))


if __name__ == "__main__":
    sys.exit(main())
