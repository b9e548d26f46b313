"""Docker backend, long-lived responses: a multiplexed log stream cut into lines, an event stream closed on demand.

Where it sits: the engine's ``logs`` and ``events`` open the HTTP responses (translating errors)
and hand the reading to these helpers. Containers are never created with a TTY, so a log
response is a sequence of frames, each a header (stream id, 3 zero bytes, payload size) and a
payload; ``APIClient.logs`` drops which stream a frame came from, which is why frames are read
here. It must not know the Engine contract's types beyond bytes and callables.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

# Header of one frame of a multiplexed (non-TTY) log stream: stream id, 3 zero bytes, size.
_FRAME_HEADER = struct.Struct(">BxxxL")
STDOUT, STDERR = 1, 2


def _read_exactly(read: Callable[[int], bytes], size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def log_lines(read: Callable[[int], bytes]) -> Iterator[tuple[int, bytes]]:
    """``(stream id, line)`` for every line of a multiplexed log response, read with ``read(size)``.

    A line split across frames is joined; a last line without a newline is yielded at the end.
    """
    pending = {STDOUT: b"", STDERR: b""}
    while True:
        header = read(_FRAME_HEADER.size)
        if len(header) < _FRAME_HEADER.size:
            break
        stream_id, size = _FRAME_HEADER.unpack(header)
        payload = _read_exactly(read, size)
        key = STDERR if stream_id == STDERR else STDOUT
        pending[key] += payload
        *complete, pending[key] = pending[key].split(b"\n")
        for raw_line in complete:
            yield key, raw_line
    for key, rest in pending.items():
        if rest:
            yield key, rest


def exec_with_input(raw: Any, stdin: bytes) -> tuple[bytes, bytes]:
    """An exec started with ``socket=True`` (the raw socket, ``raw``): send ``stdin``, close our
    side (the command sees the end of its input), read the multiplexed frames to the end.

    Returns ``(stdout, stderr)``; the socket is closed.
    """
    with contextlib.closing(raw):
        return _exchange(raw, stdin)


def _exchange(raw: Any, stdin: bytes) -> tuple[bytes, bytes]:
    """Send ``stdin`` (then the end of input) while the output frames are read."""

    def send() -> None:
        with contextlib.suppress(OSError):  # the command ended without reading it all
            raw.sendall(stdin)
            raw.shutdown(socket.SHUT_WR)

    # Sent from a thread while the output is read: a command that writes as it reads (``cat``)
    # would otherwise fill the socket's buffers both ways and wait for us forever.
    sender = threading.Thread(target=send, name="docker-exec-stdin", daemon=True)
    sender.start()
    output = {STDOUT: b"", STDERR: b""}

    def read(size: int) -> bytes:
        return bytes(raw.recv(size))

    while len(header := _read_exactly(read, _FRAME_HEADER.size)) == _FRAME_HEADER.size:
        stream_id, size = _FRAME_HEADER.unpack(header)
        output[STDERR if stream_id == STDERR else STDOUT] += _read_exactly(read, size)
    sender.join()
    return output[STDOUT], output[STDERR]


def _close_when_set(stop: threading.Event, finished: threading.Event, stream: Any) -> None:
    """Close ``stream`` once ``stop`` is set; give up when the consumer has finished anyway."""
    while not stop.wait(0.2):
        if finished.is_set():
            return
    with contextlib.suppress(Exception):
        stream.close()


@contextlib.contextmanager
def closed_on(stop: threading.Event, stream: Any) -> Iterator[None]:
    """While the block runs, a watcher closes ``stream`` as soon as ``stop`` is set; closed after it too.

    An event stream blocks until the daemon sends something; closing it from another thread is
    how ``stop`` interrupts a quiet stream (the SDK's CancellableStream then ends cleanly).
    """
    finished = threading.Event()
    closer = threading.Thread(target=_close_when_set, args=(stop, finished, stream), daemon=True)
    closer.start()
    try:
        yield
    finally:
        finished.set()
        stream.close()
