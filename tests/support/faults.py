"""A fault-injecting HTTP proxy in front of a test registry: 5xx, truncated, altered, stalled, reset.

The chaos suite puts it between the native engine's registry client and the real registry
(:mod:`tests.support.registry`): a small threaded HTTP server on a loopback address of its own
(``127.0.0.2`` by default, so that its ``host:port`` differs from the registry's) that forwards
``GET`` and ``HEAD`` requests to the registry and, for requests whose path contains a chosen
string, answers wrongly instead:

- ``status``: an error status (503 unless told) with a distribution-style JSON error;
- ``truncate``: the full ``Content-Length`` promised, half of the body sent, then the connection closed;
- ``corrupt``: the whole body with one byte altered (length and ``Docker-Content-Digest`` unchanged);
- ``stall``: the headers and a quarter of the body, then silence until :meth:`FaultProxy.release`
  or ``stall_limit`` seconds (a bound, so a client without a read timeout cannot hang the test);
- ``reset``: the headers and a quarter of the body, then a TCP reset (``SO_LINGER`` 0).

A fault applies to its next ``times`` matching requests, then the proxy forwards faithfully.
Every request is recorded in :attr:`FaultProxy.seen` (method, path, fault applied or ``""``).
It only ever listens on and connects to 127.0.0.0/8, and it must not know the engine.
"""

from __future__ import annotations

import dataclasses
import email.message
import http.client
import http.server
import json
import socket
import struct
import threading
from typing import Any

KINDS = ("status", "truncate", "corrupt", "stall", "reset")
# Hop-by-hop headers (and the length, which the proxy sets itself) are not copied from upstream.
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"})


@dataclasses.dataclass
class Fault:
    """What to do to requests whose path contains ``match``, for the next ``times`` of them."""

    kind: str
    match: str
    times: int = 1_000_000
    status: int = 503

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r} (one of {', '.join(KINDS)})")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up on a stalled or broken answer is what these tests provoke.
        return


class FaultProxy:
    """The proxy, started at construction; :meth:`stop` (or the context manager) ends it."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.2", stall_limit: float = 10.0) -> None:
        self.upstream = upstream
        self.stall_limit = stall_limit
        self.seen: list[tuple[str, str, str]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = _Server((host, 0), self._handler())
        self.host = f"{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)
        self._released.clear()

    def clear(self) -> None:
        """No more faults: forward everything (stalled answers are released too)."""
        with self._lock:
            self._faults.clear()
        self.release()

    def release(self) -> None:
        self._released.set()

    def applied(self, kind: str) -> int:
        """How many requests got fault ``kind`` so far."""
        with self._lock:
            return sum(1 for _, _, applied in self.seen if applied == kind)

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.match in path and fault.times > 0:
                    fault.times -= 1
                    self.seen.append((method, path, fault.kind))
                    return fault
            self.seen.append((method, path, ""))
            return None

    def _forward(
        self, method: str, path: str, headers: email.message.Message
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        host, _, port = self.upstream.rpartition(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _HOP and k.lower() != "host"}
            connection.request(method, path, headers=sent)
            response = connection.getresponse()
            body = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP]
            if method == "HEAD":
                kept.append(("Content-Length", response.getheader("Content-Length", "0")))
            return response.status, kept, body
        finally:
            connection.close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_HEAD(self) -> None:
                self._answer("HEAD")

            def do_GET(self) -> None:
                self._answer("GET")

            def _answer(self, method: str) -> None:
                fault = proxy._take(method, self.path)
                if fault is not None and fault.kind == "status":
                    self._error(fault.status)
                    return
                status, headers, body = proxy._forward(method, self.path, self.headers)
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                if method == "GET":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method == "HEAD":
                    return
                if fault is None or not body:
                    self.wfile.write(body)
                elif fault.kind == "corrupt":
                    middle = len(body) // 2
                    self.wfile.write(body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :])
                elif fault.kind == "truncate":
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                else:
                    self.wfile.write(body[: len(body) // 4])
                    self.wfile.flush()
                    if fault.kind == "stall":
                        proxy._released.wait(proxy.stall_limit)
                    else:
                        self._reset()
                    self.close_connection = True

            def _error(self, status: int) -> None:
                text = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "injected fault"}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def _reset(self) -> None:
                # Linger 0, then close every reference to the socket: the kernel sends a RST.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.wfile.close()
                self.rfile.close()
                self.connection.close()

        return Handler
