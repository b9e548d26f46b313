"""A native container's logs: reading the json-file logs its supervisors write, and following them.

The supervisor appends one JSON object per line to ``container.log`` (``{"log", "stream",
"time"}``, Docker's json-file format). With a ``logging.maxSize``, it rotates as Docker's driver
does: ``container.log`` becomes ``container.log.1``, older files shift up, and the oldest beyond
``maxFiles`` goes (with one file only, the file is truncated in place). Reading therefore takes the
rotated files first, oldest first, then the current one; a follower that sees the file change
under it reads what it missed from the rotated files, found by the inode it was reading.

This module reads files only; the writing side is the supervisor's, and it must not know how a
container runs beyond the ``running`` probe it is given.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from reconciler import engine

LOG = "container.log"
# How often a follower looks for new lines.
FOLLOW_INTERVAL = 0.1


def rotation(spec: Mapping[str, Any]) -> dict[str, int | None]:
    """The json-file rotation the supervisor applies, from a stored spec document's ``logging``."""
    logging = spec.get("logging") or {}
    max_size = logging.get("maxSize")
    return {"max_size": int(max_size) if max_size else None, "max_files": int(logging.get("maxFiles") or 1)}


def read(directory: Path, *, running: Callable[[], bool], follow: bool = False,
         tail: int | None = None) -> Iterator[engine.LogLine]:  # fmt: skip
    """The container's log lines, oldest first (the last ``tail`` only, none for 0); with
    ``follow``, then every new line until the container is no longer ``running`` and all is read."""
    path = directory / LOG
    # The rotated files first, oldest first (container.log.N ... .1), then the current one.
    numbered = [p for p in directory.glob(f"{LOG}.*") if p.suffix[1:].isdigit()]
    raw = b"".join(older.read_bytes() for older in sorted(numbered, key=lambda p: -int(p.suffix[1:])))
    position, inode = 0, 0
    with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
        current = handle.read()
        current = current[: current.rfind(b"\n") + 1]  # a line being written is read when whole
        position, inode = len(current), os.fstat(handle.fileno()).st_ino
        raw += current
    lines = [log_line(line) for line in raw.splitlines() if line.strip()]
    yield from (lines if tail is None else lines[max(0, len(lines) - tail) :])
    if follow:
        yield from _follow(path, position, inode, running)


def _follow(path: Path, position: int, inode: int, running: Callable[[], bool]) -> Iterator[engine.LogLine]:
    while True:
        exited = not running()  # looked at before the last read
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            if exited:
                return
            time.sleep(FOLLOW_INTERVAL)
            continue
        with handle:
            # The inode of the file actually opened: a rotation between a stat and an open
            # would otherwise have us read the new file from the old one's position.
            info = os.fstat(handle.fileno())
            missed = b""
            if inode and info.st_ino != inode:
                missed, position = rotated_since(path, inode, position), 0
            elif info.st_size < position:  # truncated in place (one file only)
                position = 0
            inode = info.st_ino
            handle.seek(position)
            fresh = handle.read()
        complete = fresh[: fresh.rfind(b"\n") + 1]
        position += len(complete)
        for line in (missed + complete).splitlines():
            if line.strip():
                yield log_line(line)
        if exited and not missed and not complete:
            return
        time.sleep(FOLLOW_INTERVAL)


def rotated_since(path: Path, inode: int, position: int) -> bytes:
    """What a follower of ``path`` missed while the log rotated under it: the rest of the file it
    was reading (now ``container.log.N``, found by its inode), then the newer rotated files whole.
    Files rotated out of ``maxFiles`` meanwhile are gone, as with Docker's json-file driver; when
    the one being read is among them, every rotated file left is read whole."""
    rotated: list[tuple[int, Path]] = []
    for candidate in path.parent.glob(f"{path.name}.*"):
        with contextlib.suppress(FileNotFoundError):
            if candidate.suffix[1:].isdigit():
                rotated.append((candidate.stat().st_ino, candidate))
    rotated.sort(key=lambda item: -int(item[1].suffix[1:]))  # oldest first
    inodes = [number for number, _ in rotated]
    start = inodes.index(inode) if inode in inodes else 0
    missed: list[bytes] = []
    for number, older in rotated[start:]:
        with contextlib.suppress(FileNotFoundError), older.open("rb") as handle:
            if number == inode:
                handle.seek(position)  # what came before was read already
            missed.append(handle.read())
    return b"".join(missed)


def log_line(raw: bytes) -> engine.LogLine:
    """One json-file line; a line that is not one is shown as it is, on stdout."""
    try:
        entry = json.loads(raw)
        text = str(entry.get("log", "")).rstrip("\n")
        if entry.get("stream") == "stderr":
            return engine.LogLine(stream="stderr", time=0.0, text=text)
        return engine.LogLine(stream="stdout", time=0.0, text=text)
    except (ValueError, AttributeError):
        return engine.LogLine(stream="stdout", time=0.0, text=raw.decode(errors="replace"))
