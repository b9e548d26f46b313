"""A thin typed wrapper over the OCI runtime's command line (runc by default; crun where it works).

One method per verb, as containerd's go-runc does; every failure raises
:class:`errors.RuntimeFailed` carrying the runtime's own words (its ``--log`` JSON file or stderr).
The runtime's stdio never goes to a pipe we read to EOF: ``runc init`` inherits it and holds it
until the container exits (a read to EOF would block that long), so ``create`` is run by the
container's keeper, conmon, with the container's pipes (:mod:`supervision` gives it this module's
binary and global options), and every other verb here gets files or ``/dev/null``.

This module runs the runtime binary and nothing else: no bundles, no mounts, no bookkeeping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler import errors, files

# subprocess, tempfile and secrets are imported in the functions that run the runtime: the engine
# imports this module on every command, and observing runs none.

DEFAULT_RUNTIME = "runc"

# runc's exit code for a process it could not exec (not found, not executable); its error
# message says which, and exec_failure_code maps that to Docker's 127 or 126.
RUNC_EXEC_FAILED = 255

# Seconds after which an exec's process file is a leftover (see Runtime.remove_stale_process_files).
STALE_PROCESS_FILE = 600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes


def exec_failure_code(message: str) -> int:
    """Docker's mapping of an exec failure to an exit code: 127 not found, 126 not executable."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return 127
    if "permission denied" in lowered or "is a directory" in lowered or "not a directory" in lowered:
        return 126
    return 128


class Runtime:
    """``runc --root <state>`` with one method per verb."""

    def __init__(self, state: Path, *, binary: str = DEFAULT_RUNTIME) -> None:
        path = shutil.which(binary)
        if path is None:
            raise errors.Unavailable(f"OCI runtime {binary!r} is not installed (apt-get install {binary})")
        self.binary = path
        self.state_dir = state
        self.remove_stale_process_files()

    def base(self) -> list[str]:
        return [self.binary, "--root", str(self.state_dir)]

    def _run(self, args: Sequence[str], *, what: str, timeout: float = 60.0, ok: Sequence[int] = (0,)) -> Completed:
        # The runtime's own error log goes to a file: its stderr stays free of container output.
        import subprocess
        import tempfile

        with tempfile.NamedTemporaryFile(prefix="runc-log-", suffix=".json") as log:
            argv = [*self.base(), "--log", log.name, "--log-format", "json", *args]
            try:
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                raise errors.RuntimeFailed(f"{what}: the runtime did not answer within {timeout:g}s") from None
            if done.returncode not in ok:
                message = last_error(Path(log.name)) or done.stderr.decode(errors="replace")
                raise errors.RuntimeFailed(what, stderr=message)
        return Completed(done.returncode, done.stdout, done.stderr)

    def start(self, container_id: str) -> None:
        self._run(["start", container_id], what=f"starting container {container_id[:12]}")

    def state(self, container_id: str) -> dict[str, Any] | None:
        """``runc state``, or None when the runtime does not know the container."""
        try:
            done = self._run(["state", container_id], what="state")
        except errors.RuntimeFailed as exc:
            if "does not exist" in str(exc) or "not exist" in exc.stderr:
                return None
            raise
        value = json.loads(done.stdout)
        return value if isinstance(value, dict) else None

    def kill(self, container_id: str, signal: str = "SIGTERM", *, all_processes: bool = False) -> None:
        args = ["kill", *(["--all"] if all_processes else []), container_id, signal]
        try:
            self._run(args, what=f"signalling container {container_id[:12]}")
        except errors.RuntimeFailed as exc:
            # Killing a container that already stopped (or is gone) is not an error for a stop.
            if "not running" in str(exc) or "does not exist" in str(exc) or "process already finished" in str(exc):
                return
            raise

    def delete(self, container_id: str, *, force: bool = True) -> None:
        try:
            self._run(["delete", *(["--force"] if force else []), container_id], what="delete")
        except errors.RuntimeFailed as exc:
            if "does not exist" in str(exc):
                return
            raise

    def stats(self, container_id: str) -> dict[str, Any]:
        """``runc events --stats``: one reading of the container's cgroup (cpu, memory, pids)."""
        done = self._run(["events", "--stats", container_id], what=f"reading the stats of {container_id[:12]}")
        value = json.loads(done.stdout)
        data = value.get("data") if isinstance(value, dict) else None
        return data if isinstance(data, dict) else {}

    def update(self, container_id: str, resources: Mapping[str, Any]) -> None:
        """``runc update -r -`` with an OCI ``linux.resources`` document (live, no restart)."""
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as spec:
            json.dump(resources, spec)
            spec.flush()
            self._run(["update", "--resources", spec.name, container_id], what=f"updating {container_id[:12]}")

    def remove_stale_process_files(self, *, now: float | None = None) -> None:
        """Remove the process files of execs killed before their clean-up (they hold env values).

        runc reads its ``--process`` file as it starts, so a file older than a few minutes is
        nobody's any more, even if its exec still runs."""
        cutoff = (time.time() if now is None else now) - STALE_PROCESS_FILE
        for path in [*self.state_dir.glob("exec-*.json"), *self.state_dir.glob(".exec-*.tmp")]:
            with contextlib.suppress(OSError):
                if path.lstat().st_mtime < cutoff:
                    path.unlink()

    @contextlib.contextmanager
    def _process_file(self, process: Mapping[str, Any]) -> Iterator[Path]:
        """``process`` in a root-only file (0600 in the 0700 state directory) for ``--process``.

        Passing the env as ``--env KEY=VALUE`` would put every secret on a command line, which any
        local user can read in ``/proc/<pid>/cmdline``; a file only root can open keeps them. The
        file goes as soon as the exec ends, however it ends; runc ignores files in its root."""
        import secrets

        path = self.state_dir / f"exec-{secrets.token_hex(16)}.json"
        try:
            files.write_json(path, process, durable=False)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def exec(
        self,
        container_id: str,
        process: Mapping[str, Any],
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> Completed:
        """Run ``process`` (an OCI process object: args, env, cwd, user, capabilities...) inside the
        container; the process's exit code is returned, not raised.

        ``stdin``: the process's whole standard input (``None``: an empty one).

        runc exits 255 when it could not exec at all; that is mapped to Docker's 126/127.
        """
        import subprocess

        with self._process_file(process) as spec:
            argv = [*self.base(), "exec", "--process", str(spec), container_id]
            try:
                done = subprocess.run(argv, input=stdin or b"", capture_output=True, timeout=timeout, check=False)
            except subprocess.TimeoutExpired as exc:
                stdout = exc.stdout if isinstance(exc.stdout, bytes) else b""
                return Completed(-1, stdout, f"exec exceeded timeout ({timeout:g}s)".encode())
        if done.returncode == RUNC_EXEC_FAILED and b"exec failed" in done.stderr:
            return Completed(exec_failure_code(done.stderr.decode(errors="replace")), done.stdout, done.stderr)
        return Completed(done.returncode, done.stdout, done.stderr)

    def exec_attached(self, container_id: str, process: Mapping[str, Any]) -> int:
        """Run ``process`` (``terminal: true``) on a new pty, attached to this process's own
        terminal; its exit code. The runtime itself relays the terminal: it puts ours in raw
        mode, copies both ways and passes window-size changes on (SIGWINCH), as ``runc exec -t``
        does for a user at a shell."""
        import subprocess

        with self._process_file(process) as spec:
            argv = [*self.base(), "exec", "--tty", "--process", str(spec), container_id]
            code = subprocess.run(argv, check=False).returncode
        return exec_failure_code("") if code == RUNC_EXEC_FAILED else code


def last_error(log_file: Path) -> str:
    """The last ``error``-level message of a runtime's JSON log (what the user needs to read)."""
    try:
        lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            return str(entry.get("msg", ""))
    return ""


def ensure_state_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
