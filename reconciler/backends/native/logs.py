"""A native container's logs: reading what its keeper (conmon) writes, and following it.

conmon appends to ``container.log`` in the **k8s-file** format, one entry per line:
``<RFC 3339 time> <stdout|stderr> <F|P> <text>``, where ``P`` marks a part of a line longer than
conmon's buffer (the parts and the ``F`` that ends them make one line). ``reconcile logs`` shows the
lines as it showed Docker's json-file entries: each line's text on its stream, with its time (the
API's ``time``, as Docker's logs give it). Lines in Docker's json-file format (``{"log", "stream",
"time"}``, what the engine's keeper wrote before conmon, in ``container.log`` and its rotated
``container.log.N``) are read too, oldest file first.

Rotation: with ``logging.maxSize``, conmon starts ``container.log`` afresh once it would grow past
its limit (a new file renamed over the old one). conmon keeps one file only, so the limit given to
it is ``maxSize × maxFiles``: the disk a container's log may take is the one asked for (what
Docker's json-file driver keeps in ``maxFiles`` files of ``maxSize``), but what was written before
a rotation goes at once rather than one file at a time. A follower keeps the file it reads open, so
it reads the old file to its end before going on with the new one.

This module reads files only; the writing side is conmon's, and it must not know how a
container runs beyond the ``running`` probe it is given.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Literal

from reconciler import engine

LOG = "container.log"
# How often a follower looks for new lines.
FOLLOW_INTERVAL = 0.1
STREAMS: dict[bytes, Literal["stdout", "stderr"]] = {b"stdout": "stdout", b"stderr": "stderr"}


def size_limit(spec: Mapping[str, Any]) -> int | None:
    """conmon's ``--log-size-max`` from a stored spec document's ``logging`` (module docstring)."""
    logging = spec.get("logging") or {}
    max_size = logging.get("maxSize")
    return int(max_size) * int(logging.get("maxFiles") or 1) if max_size else None


def stamp(text: bytes | str) -> float:
    """An entry's RFC 3339 time as seconds since the epoch (0.0 when it is not one)."""
    import datetime  # here: the keeper's module imports this one, and observing reads no log

    try:
        value = text.decode("ascii") if isinstance(text, bytes) else text
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, UnicodeDecodeError):
        return 0.0


class Lines:
    """Raw lines of the log, in order, into :class:`engine.LogLine`: ``P`` parts are held until the
    ``F`` that ends their line (per stream); a line has the time of its first part."""

    def __init__(self) -> None:
        self.parts: dict[Literal["stdout", "stderr"], tuple[float, bytes]] = {}

    def take(self, raw_lines: Iterable[bytes]) -> Iterator[engine.LogLine]:
        for raw in raw_lines:
            if raw.strip():
                yield from self._one(raw)

    def _one(self, raw: bytes) -> Iterator[engine.LogLine]:
        if raw.startswith(b"{"):
            yield json_file_line(raw)
            return
        fields = raw.split(b" ", 3)
        stream = STREAMS.get(fields[1]) if len(fields) > 2 else None
        if stream is None or fields[2] not in (b"F", b"P"):
            # Not an entry (cut short on a full disk, say): shown as it is, on stdout.
            yield engine.LogLine(stream="stdout", time=0.0, text=raw.decode(errors="replace"))
            return
        held = self.parts.pop(stream, None)
        time_, text = held if held is not None else (stamp(fields[0]), b"")
        text += fields[3] if len(fields) == 4 else b""
        if fields[2] == b"P":
            self.parts[stream] = (time_, text)
            return
        yield engine.LogLine(stream=stream, time=time_, text=text.decode(errors="replace"))


def json_file_line(raw: bytes) -> engine.LogLine:
    """One json-file entry; a line that is not one is shown as it is, on stdout."""
    try:
        entry = json.loads(raw)
        text = str(entry.get("log", "")).rstrip("\n")
        time_ = stamp(str(entry.get("time", "")))
        if entry.get("stream") == "stderr":
            return engine.LogLine(stream="stderr", time=time_, text=text)
        return engine.LogLine(stream="stdout", time=time_, text=text)
    except (ValueError, AttributeError):
        return engine.LogLine(stream="stdout", time=0.0, text=raw.decode(errors="replace"))


def read(directory: Path, *, running: Callable[[], bool], follow: bool = False,
         tail: int | None = None) -> Iterator[engine.LogLine]:  # fmt: skip
    """The container's log lines, oldest first (the last ``tail`` only, none for 0); with
    ``follow``, then every new line until the container is no longer ``running`` and all is read."""
    path = directory / LOG
    # Files a json-file keeper rotated (container.log.N ... .1), oldest first, then the current one.
    numbered = [p for p in directory.glob(f"{LOG}.*") if p.suffix[1:].isdigit()]
    raw = b"".join(older.read_bytes() for older in sorted(numbered, key=lambda p: -int(p.suffix[1:])))
    handle: BinaryIO | None = None
    with contextlib.suppress(FileNotFoundError):
        handle = path.open("rb")
    current = handle.read() if handle else b""
    complete = current[: current.rfind(b"\n") + 1]  # a line being written is read when whole
    lines = Lines()
    found = list(lines.take((raw + complete).splitlines()))
    try:
        yield from (found if tail is None else found[max(0, len(found) - tail) :])
        if follow:
            if handle is not None:
                handle.seek(len(complete))
            yield from _follow(path, handle, lines, running)
            handle = None  # closed by the follower
    finally:
        if handle is not None:
            handle.close()


def _follow(path: Path, handle: BinaryIO | None, lines: Lines, running: Callable[[], bool]) -> Iterator[engine.LogLine]:
    """New lines as they come; the file read stays open, so a rotation (a new file renamed over
    it) loses nothing written before it: the old file is read to its end, then the new one."""
    try:
        while True:
            exited = not running()  # looked at before the last read
            fresh = _new_lines(handle) if handle else b""
            yield from lines.take(fresh.splitlines())
            newer = _newer(path, handle)
            if newer is not None:
                if handle is not None:
                    yield from lines.take(_new_lines(handle, rest=True).splitlines())
                    handle.close()
                handle = newer
                continue
            if exited and not fresh:
                return
            time.sleep(FOLLOW_INTERVAL)
    finally:
        if handle is not None:
            handle.close()


def _new_lines(handle: BinaryIO, *, rest: bool = False) -> bytes:
    """The whole lines written since the last read (with ``rest``, a last part line too)."""
    fresh = handle.read()
    if rest:
        return fresh
    complete = fresh[: fresh.rfind(b"\n") + 1]
    handle.seek(len(complete) - len(fresh), os.SEEK_CUR)
    return complete


def _newer(path: Path, handle: BinaryIO | None) -> BinaryIO | None:
    """The log file now at ``path``, opened, if it is not the one ``handle`` reads."""
    try:
        newer = path.open("rb")
    except FileNotFoundError:
        return None
    if handle is not None and os.fstat(newer.fileno()).st_ino == os.fstat(handle.fileno()).st_ino:
        newer.close()
        return None
    return newer
