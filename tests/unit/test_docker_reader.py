"""The docker engine's read path without the SDK: ``SocketReader``'s GETs on a unix socket, its
answers and its errors, against small servers on real sockets (no dockerd needed)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.backends.docker import engine as docker_engine
from reconciler.backends.docker import translating


def answer(status: int, body: bytes, *, extra: str = "") -> bytes:
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}[status]
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


@contextlib.contextmanager
def server(path: Path, respond: Callable[[str, int], bytes], *, close_after: int = 0) -> Iterator[list[str]]:
    """A unix socket server: each request line is recorded and answered by ``respond(target, n)``;
    with ``close_after``, a connection is dropped (without a word) after that many answers."""
    seen: list[str] = []
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    stop = threading.Event()

    def serve(connection: socket.socket) -> None:
        answered = 0
        with connection:
            buffer = b""
            while not stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                target = head.split(b"\r\n")[0].split(b" ")[1].decode()
                seen.append(target)
                connection.sendall(respond(target, len(seen)))
                answered += 1
                if close_after and answered >= close_after:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_answers_are_decoded_and_queries_encoded(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"

    def respond(target: str, count: int) -> bytes:
        if target.startswith("/containers/json"):
            return answer(200, json.dumps([{"Id": "abc"}]).encode())
        if target.startswith("/images/"):
            return answer(404, b'{"message": "No such image"}')
        return answer(500, b'{"message": "the daemon broke"}')

    with server(path, respond) as seen:
        reader = docker_engine.SocketReader(str(path), timeout=5)
        try:
            assert reader.get("/containers/json", all=1, filters='{"label": ["k"]}') == [{"Id": "abc"}]
            assert reader.get("/images/a%2Fb%3A1/json") is None
            with pytest.raises(errors.RuntimeFailed) as refused:
                reader.get("/volumes")
        finally:
            reader.close()
    assert refused.value.stderr == "the daemon broke"
    assert "Docker refused GET /volumes (500)" in str(refused.value)
    assert seen == [
        "/containers/json?all=1&filters=%7B%22label%22%3A+%5B%22k%22%5D%7D",
        "/images/a%2Fb%3A1/json",
        "/volumes",
    ]


def test_paths_are_asked_in_the_version_the_daemon_names(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"

    def respond(target: str, count: int) -> bytes:
        if target == "/_ping":
            return answer(200, b"OK", extra="Api-Version: 1.41\r\n")
        return answer(200, b"[]")

    with server(path, respond) as seen:
        reader = docker_engine.SocketReader(str(path), timeout=5)
        heard: list[tuple[str, str]] = []
        reader.hooks.append(lambda method, target: heard.append((method, target)))
        try:
            reader.ping()
            assert reader.get("/networks", filters="{}") == []
        finally:
            reader.close()
    assert seen == ["/_ping", "/v1.41/networks?filters=%7B%7D"]
    assert heard == [("GET", "/_ping"), ("GET", "/v1.41/networks?filters=%7B%7D")]


def test_a_connection_the_daemon_dropped_is_opened_again(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    with server(path, lambda target, count: answer(200, str(count).encode()), close_after=1) as seen:
        reader = docker_engine.SocketReader(str(path), timeout=5)
        try:
            assert [reader.get("/_ping") for _ in range(3)] == [1, 2, 3]
        finally:
            reader.close()
    assert seen == ["/_ping"] * 3


def test_no_daemon_behind_the_socket_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the file stays; nobody listens: connection refused
    reader = docker_engine.SocketReader(str(path), timeout=5)
    with pytest.raises(ConnectionError) as failed:
        reader.get("/containers/json")
    translated = translating.translate(failed.value, "observe", where=f"unix://{path}")
    assert isinstance(translated, errors.Unavailable)
    assert str(translated) == f"observe: Docker daemon unreachable at unix://{path}: Connection refused"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    with pytest.raises(errors.Unavailable, match=f"unreachable at unix://{path}: Connection refused"):
        docker_engine.DockerEngine.from_env()
