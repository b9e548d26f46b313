"""The API's unix socket and its metrics port hold no thread for a slow or stuck client (issue 10,
finding 13): a request must arrive whole within a deadline, a listener handles a bounded number of
connections at once (one more gets 503 at once), and headers and bodies have a size limit.

The deadline is made short here (``api.Limits``); every wait polls, nothing sleeps.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import api
from tests.support.polling import eventually
from tests.unit.controller_support import Harness, container_yaml

LIMITS = api.Limits(timeout=0.5, connections=8)
HALF_SENT = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "  # never ends


@pytest.fixture
def served(tmp_path: Path) -> Iterator[api.Server]:
    (tmp_path / "m").mkdir()
    harness = Harness(tmp_path / "m")
    harness.write("shop.yaml", container_yaml("web"))
    harness.settle()
    server = api.Server(harness.controller, socket_path=str(tmp_path / "run" / "api.sock"),
                        metrics_addr="127.0.0.1:0", poll_interval=0.05, limits=LIMITS)  # fmt: skip
    server.start()
    yield server
    server.stop()


def connect(server: api.Server, where: str) -> socket.socket:
    if where == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(server.socket_path)  # blocking: with a timeout, a full backlog is EAGAIN at once
        except OSError:
            sock.close()
            raise
        sock.settimeout(10)
    else:
        host, _, port = (server.metrics_address or "").rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def exchange(server: api.Server, where: str, request: bytes) -> bytes:
    """Send ``request`` and read the whole answer (the server closes after it)."""
    with connect(server, where) as sock:
        sock.sendall(request)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def healthz(server: api.Server, where: str) -> bytes:
    return exchange(server, where, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")


def closed_by_server(sock: socket.socket) -> bool:
    """The server answered (503) or dropped the connection: it holds nothing for it any more."""
    sock.setblocking(False)
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 503")


@pytest.mark.parametrize("where", ["unix", "tcp"])
def test_half_sent_requests_hold_a_bounded_number_of_threads(served: api.Server, where: str) -> None:
    baseline = threading.active_count()
    bound = baseline + LIMITS.connections + 2  # the handlers, and room for a thread starting or ending
    peak = 0
    sockets: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = connect(served, where)
            sockets.append(sock)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # already answered 503
                sock.sendall(HALF_SENT)
            peak = max(peak, threading.active_count())
        assert peak <= bound, (peak, bound)

        def served_normally() -> bool:
            nonlocal peak
            peak = max(peak, threading.active_count())
            return healthz(served, where).startswith(b"HTTP/1.1 200")

        eventually(served_normally, timeout=20, what=f"a normal request on {where} served beside 200 stuck ones")
        eventually(
            lambda: all(closed_by_server(s) for s in sockets), timeout=20, what="every half-sent request dropped"
        )
        assert peak <= bound, (peak, bound)
    finally:
        for sock in sockets:
            sock.close()


def test_a_request_trickled_byte_by_byte_is_dropped_at_its_deadline(served: api.Server) -> None:
    """A timeout per read alone would let a client keep a thread forever by sending a byte now
    and then; the deadline is for the whole request."""
    with connect(served, "unix") as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")

        def dropped() -> bool:
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                return True
            return closed_by_server(sock)

        eventually(dropped, timeout=20, interval=0.02, what="the trickling request dropped")


@pytest.mark.parametrize("where", ["unix"])
def test_an_oversized_body_gets_413_without_being_read(served: api.Server, where: str) -> None:
    length = LIMITS.body_bytes + 1
    answer = exchange(
        served, where, f"POST /plan HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert LIMITS.body_bytes == 8 * 1024 * 1024


@pytest.mark.parametrize("where", ["unix", "tcp"])
def test_oversized_headers_get_431(served: api.Server, where: str) -> None:
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"x" * 1000) for n in range(90))  # 90 kB, under 100 lines
    answer = exchange(served, where, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert healthz(served, where).startswith(b"HTTP/1.1 200")
