"""A scriptable registry in the test's own process: the distribution API's read side over an OCI layout.

Where :mod:`tests.support.registry` runs the real ``docker-registry``, this one is for what a real
registry will not do: redirect a blob to a host that asks for credentials, answer with a hostile
``Retry-After``, fail one blob for one client only. It serves ``/v2/``,
``/v2/<repo>/manifests/<tag or digest>`` and ``/v2/<repo>/blobs/<digest>`` from an
:class:`~tests.support.images.OciLayout` (a tag is the layout's ``ref.name`` annotation), and a
test changes any answer with a ``responder``: given the :class:`Seen` request, it returns an
:class:`Answer` to send instead, or None for the default. Every request is recorded (method, path,
headers) in :attr:`FakeRegistry.seen`.

It listens on one 127.0.0.x address (the tests use several so that hosts differ) on a free port,
in a daemon thread, until :meth:`FakeRegistry.stop`; use it as a context manager.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from collections.abc import Callable, Mapping

from tests.support import images


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Answer:
    """What to send back: status, headers and body."""

    status: int
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b""


Responder = Callable[[Seen], Answer | None]


class FakeRegistry:
    """A registry on ``address`` (e.g. ``127.0.0.2``) serving ``layout``; see the module docstring."""

    def __init__(self, layout: images.OciLayout | None = None, *, address: str = "127.0.0.1") -> None:
        self.layout = layout
        self.responder: Responder | None = None
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer((address, 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-registry-{address}", daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        address, port = self._server.server_address[:2]
        name = address.decode() if isinstance(address, bytes) else address
        return f"{name}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def requests_to(self, fragment: str) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.seen if fragment in seen.path]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def default_answer(self, seen: Seen) -> Answer:
        """What a plain, anonymous registry holding ``layout`` answers."""
        path = seen.path.split("?", 1)[0]
        if path in ("/v2/", "/v2"):
            return Answer(200, {"Content-Type": "application/json"}, b"{}")
        if self.layout is None or ("/manifests/" not in path and "/blobs/" not in path):
            return Answer(404)
        kind, _, reference = path.rpartition("/")
        media_type = "application/octet-stream"
        digest = reference
        if kind.endswith("/manifests") and not reference.startswith("sha256:"):
            entry = _tagged(self.layout, reference)
            if entry is None:
                return Answer(404)
            digest = str(entry["digest"])
        blob = self.layout.blob_path(digest)
        if not blob.is_file():
            return Answer(404)
        data = blob.read_bytes()
        if kind.endswith("/manifests"):
            media_type = str(json.loads(data).get("mediaType") or images.MEDIA_MANIFEST)
        return Answer(200, {"Content-Type": media_type, "Docker-Content-Digest": digest}, data)

    def _answer(self, seen: Seen) -> Answer:
        with self._lock:
            self.seen.append(seen)
            responder = self.responder
        scripted = responder(seen) if responder is not None else None
        return scripted if scripted is not None else self.default_answer(seen)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _serve(self, with_body: bool) -> None:
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                answer = registry._answer(seen)
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(answer.body)

            def do_GET(self) -> None:
                self._serve(True)

            def do_HEAD(self) -> None:
                self._serve(False)

        return Handler


def _tagged(layout: images.OciLayout, tag: str) -> dict[str, object] | None:
    """The layout's index entry named ``tag``, if any."""
    for entry in layout.entries:
        annotations = entry.get("annotations")
        if isinstance(annotations, dict) and annotations.get(images.REF_NAME) == tag:
            return entry
    return None
