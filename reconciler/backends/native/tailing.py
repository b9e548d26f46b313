"""Reading a layer's ingest file while it downloads, so that unpacking overlaps the download.

A download writes into the content store's ingest file through a :class:`TeeSink`, which nudges
the :class:`Tail` after every chunk; the unpacker reads the :class:`Tail` like a file. ``read``
blocks until more bytes are there, returns ``b""`` only at the end of a finished download,
raises :class:`Cancelled` when the download failed (the download reports its own error), and
:class:`Restarted` when the server ignored a resume request and the bytes start over from 0 (the
unpacker then starts again from the verified blob).

This module sits under the pull pipeline (``layer_pipeline``) and above ``content``. What it
must not do: verify, keep or delete anything (the ingest verifies the digest, the pipeline decides
what the unpacked bytes are worth), or read a byte the download has not written yet.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from reconciler.backends.native import content


class Restarted(Exception):
    """The server ignored a resume request and the download started over from byte 0."""


class Cancelled(Exception):
    """A worker stopped because another layer of the same pull failed."""


class Tail:
    """The growing ingest file of a download, read while it is written (see the module docstring).

    The download side calls :meth:`opened`, :meth:`wrote` (via :class:`TeeSink`), :meth:`restarted`
    and :meth:`finish`; the unpack side calls :meth:`read` inside ``with tail:``.
    """

    def __init__(self, partial: Path, final: Path) -> None:
        self._partial, self._final = partial, final
        self._cond = threading.Condition()
        self._opened = self._finished = self._failed = self._restarted = False
        self._fd = -1

    def opened(self) -> None:
        with self._cond:
            self._opened = True
            self._cond.notify_all()

    def wrote(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def restarted(self) -> None:
        with self._cond:
            self._restarted = True
            self._cond.notify_all()

    def finish(self, *, ok: bool) -> None:
        with self._cond:
            if not self._finished:
                self._finished, self._failed = True, not ok
            self._cond.notify_all()

    def __enter__(self) -> Tail:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._opened or self._finished)
            if self._failed:
                raise Cancelled
            use_partial = not self._finished
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
        if use_partial:
            try:
                self._fd = os.open(self._partial, flags)
                return
            except FileNotFoundError:
                pass  # committed (renamed into blobs/) in the meantime
        self._fd = os.open(self._final, flags)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 20
        if self._fd < 0:
            self._open()
        while True:
            if self._restarted:
                raise Restarted
            data = os.read(self._fd, size)
            if data:
                return data
            with self._cond:
                if self._failed:
                    raise Cancelled
                if self._finished:
                    return os.read(self._fd, size)
                self._cond.wait(0.05)


class TeeSink:
    """The registry client's sink: the ingest, plus a nudge to the unpacker for every chunk."""

    def __init__(self, ingest: content.Ingest, tail: Tail) -> None:
        self._ingest = ingest
        self._tail = tail

    @property
    def offset(self) -> int:
        return self._ingest.offset

    def write(self, data: bytes) -> None:
        self._ingest.write(data)
        self._tail.wrote()

    def restart(self) -> None:
        self._tail.restarted()  # before truncating, so the reader never reads the new bytes as old
        self._ingest.restart()
