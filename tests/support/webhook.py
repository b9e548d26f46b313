"""A webhook receiver for tests: an HTTP server on 127.0.0.1 that records each POST's JSON body,
headers and path, and answers with the statuses a test scripts (200 once the script is used up).

Used by the notification tests (unit and integration). Close it with :meth:`Receiver.close`.
"""

from __future__ import annotations

import http.server
import json
import threading


class Receiver:
    """Records what is POSTed; ``statuses`` are the answers to the first attempts, in order."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[dict[str, object]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.statuses = list(statuses or [])
        self.attempts = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.received(self)

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self, request: http.server.BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(min(int(request.headers.get("Content-Length", "0")), 1 << 20))
        with self._lock:
            self.attempts += 1
            status = self.statuses.pop(0) if self.statuses else 200
            if status == 200:
                self.bodies.append(json.loads(body))
                self.headers.append(dict(request.headers))
                self.paths.append(request.path)
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    @property
    def url(self) -> str:
        """This receiver's URL, with a token-like path and query (which must never be logged)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0KEN-s3cret?key=abc"

    def kinds(self) -> list[str]:
        with self._lock:
            return [str(body["kind"]) for body in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
