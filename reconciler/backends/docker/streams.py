"""Docker backend, long-lived responses: a multiplexed log stream cut into lines, an event stream closed on demand.

Where it sits: below the docker and swarm engines. A logs endpoint is opened and read here
(inside the error translation the engine passes in); ``events`` opens its response itself and
hands it to :func:`closed_on`. Containers are never created with a TTY, so a log
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
from contextlib import AbstractContextManager
from typing import Any, cast

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


def logs_endpoint(
    api: Any,
    path: str,
    ident: str,
    *,
    follow: bool,
    tail: int | None,
    guard: Callable[[], AbstractContextManager[object]],
) -> Iterator[tuple[int, bytes]]:
    """The (stream id, line) pairs of a logs endpoint: a container's (``/containers/{0}/logs``)
    or a service's (``/services/{0}/logs``), ``ident`` quoted in by the SDK. The raw response,
    not ``APIClient.logs``, which drops the stream of each frame. Opening and every read run
    inside ``guard`` (the engine's error translation); the response is closed however the
    reader stops."""
    params = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": 1 if follow else 0,
              "tail": str(tail) if tail is not None else "all"}  # fmt: skip
    with guard():
        response = api._get(api._url(path, ident), params=params, stream=True)
        api._raise_for_status(response)
        if follow:  # a followed log may be quiet for hours: no read timeout
            api._disable_socket_timeout(api._get_raw_response_socket(response))

    def read(size: int) -> bytes:
        with guard():
            return cast(bytes, response.raw.read(size))

    try:
        yield from log_lines(read)
    finally:
        response.close()


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
