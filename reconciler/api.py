"""The daemon's local API: HTTP/1.1 on a root-only unix socket, plus ``/healthz`` and ``/metrics``.

Where it sits: ``reconcile watch`` serves a :class:`Backend` (the controller, wired by
:mod:`reconciler.cli.daemon`) on a unix socket (default ``/run/reconciler/api.sock``, mode 0600 in a 0700
folder: whoever can talk to it can run containers, so only root may). The CLI's ``status``,
``events``, ``logs``, ``plan`` and ``apply`` use :class:`Client` when the socket answers and run
embedded otherwise. ``/healthz`` and Prometheus ``/metrics`` are also served on an optional TCP
address (127.0.0.1 by default) for scrapers; nothing else is served there.

Routes (JSON unless said otherwise)::

    GET  /healthz                        {"ok": true, "engine": "docker", "root": "/var/lib/reconciler"}
    GET  /status                         every object, file and stack (see Controller.status)
    GET  /events?follow=1&since=N        newline-delimited JSON events (streams while follow=1)
    GET  /logs?name=web&follow=1&tail=N  newline-delimited JSON log lines
    POST /plan   {"sources": [[file, text]...], "prune": true, "pruneVolumes": false}
                 → {"plan": <plan JSON>, "text", "converged", "warnings": [...]}
    POST /apply  {... same, "parallelism": 4, "forceRecreate": [names], "id": "a1b2…"}
                 → {"plan", "text", "results", "summary", "ok", "interrupted", "recovered", "warnings"}
    POST /apply/cancel {"id": "a1b2…"}   → {"cancelled": true}: the apply of that id starts no
                 new step (the client's Ctrl-C); its answer then says what was done and not
    GET  /metrics                        Prometheus text exposition format 0.0.4
    POST /hooks/git                      a forge's push hook (GitHub's X-Hub-Signature-256 or GitLab's
                 X-Gitlab-Token, see :mod:`reconciler.webhooks`) → 202 and the git source fetches at
                 once; 401 (logged without the payload) otherwise; 404 without ``--webhook-secret-file``.
                 Served on the TCP listener too, where a forge can reach it.

Every other route refuses (409, ``kind: target``) a request whose ``X-Reconciler-Root`` or
``X-Reconciler-Engine`` names another root or engine than the daemon's: the second safety behind
each root's own socket, so that a CLI pointed at the wrong daemon never plans or applies against
another root's state.

The client of these routes is :mod:`reconciler.client` (standard library only, so that the CLI
starts fast); ``Client`` and ``ApiError`` are re-exported here, beside the routes they call, and
so is :func:`stack_locking.stack_lock`, the cross-process lock that keeps a CLI ``apply`` and the
watcher from reconciling the same stack at once.

Both listeners bound what one client may hold (:class:`Limits`): a request (headers and body)
must arrive whole within a deadline, or its connection is dropped (a timeout per read alone would
let a client keep a thread by sending a byte now and then); each listener handles a bounded number
of connections at once, each on its own thread, and answers one more with 503 at once; headers
beyond a size get 431, a body beyond one 413 without being read. Docker's API server has a
header timeout of minutes and no bound on connections; these are tighter, for a root daemon.

The server is ``http.server`` over ``socketserver``. This module must not import the controller
(it serves any :class:`Backend`), a backend, or the CLI, and must not plan: a :class:`Backend`
does (the controller, through :mod:`reconciler.operations`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import io
import json
import os
import socket
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from reconciler import client, errors, operations, stack_locking, webhooks

if TYPE_CHECKING:
    from reconciler import plans

# Re-exported (see the module docstring): one implementation each, in its own module.
Client = client.Client
ApiError = client.ApiError
stack_lock = stack_locking.stack_lock


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """What one client of a listener may hold (see the module docstring)."""

    timeout: float = 10.0  # seconds to send a whole request; and for each write of an answer
    connections: int = 64  # handled at once per listener; one more is answered 503
    header_bytes: int = 64 * 1024  # the request line and headers
    body_bytes: int = 8 * 1024 * 1024  # a POST's body: the manifests of a plan or an apply


class MetricSample(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def help(self) -> str: ...

    @property
    def labels(self) -> tuple[tuple[str, str], ...]: ...

    @property
    def value(self) -> float: ...


class Backend(Protocol):
    """What the API serves; the controller implements it."""

    @property
    def engine_name(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    def events_since(self, sequence: int = 0) -> list[dict[str, Any]]: ...

    def follow_events(self, stop: threading.Event, *, since: int = 0) -> Iterator[dict[str, Any]]: ...

    def log_lines(self, name: str, *, follow: bool, tail: int | None) -> Iterator[dict[str, Any]]: ...

    def plan_sources(
        self, sources: Sequence[tuple[str, str]], *, prune: bool = True, prune_volumes: bool = False
    ) -> tuple[plans.Plan, list[str]]: ...

    def apply_sources(
        self,
        sources: Sequence[tuple[str, str]],
        *,
        prune: bool = True,
        prune_volumes: bool = False,
        parallelism: int = 4,
        force_recreate: Sequence[str] = (),
        cancel: threading.Event | None = None,
    ) -> operations.Applied: ...

    def metric_samples(self) -> Sequence[MetricSample]: ...


# ---------------------------------------------------------------------------------------------
# Prometheus text
# ---------------------------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(samples: Sequence[MetricSample]) -> str:
    """The text exposition format: one ``# HELP``/``# TYPE`` per family, then its samples."""
    lines: list[str] = []
    described: set[str] = set()
    for sample in samples:
        family = sample.name.removesuffix("_count").removesuffix("_sum") if sample.kind == "summary" else sample.name
        if family not in described:
            described.add(family)
            lines.append(f"# HELP {family} {sample.help}")
            lines.append(f"# TYPE {family} {sample.kind}")
        name = sample.name
        if sample.kind == "summary" and not name.endswith(("_count", "_sum")):
            name += "_sum"
        labels = ",".join(f'{key}="{_escape(value)}"' for key, value in sample.labels)
        lines.append(f"{name}{{{labels}}} {sample.value:g}" if labels else f"{name} {sample.value:g}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


def _error_json(exc: BaseException) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, errors.ManifestError):
        return 422, {
            "error": str(exc),
            "kind": "manifest",
            "diagnostics": [d.render() for d in exc.diagnostics],
            "items": [d._asdict() for d in exc.diagnostics],
        }
    if isinstance(exc, errors.PlanError):
        return 409, {"error": str(exc), "kind": "plan"}
    if isinstance(exc, errors.NoManifests):  # the client names the paths as its user typed them
        return 422, {"error": str(exc), "kind": "no-manifests"}
    if isinstance(exc, errors.NotFound):
        return 404, {"error": str(exc), "kind": "not-found"}
    if isinstance(exc, errors.ReconcilerError):
        return 500, {"error": str(exc), "kind": "engine"}
    return 500, {"error": f"internal error: {type(exc).__name__}: {exc}", "kind": "internal"}


class _TooLarge(Exception):
    """The request's headers went beyond their budget."""


class _Reader(io.RawIOBase):
    """A connection's reads, within the current request's deadline and byte budget."""

    def __init__(self, connection: socket.socket, timeout: float) -> None:
        super().__init__()
        self.connection, self.timeout = connection, timeout
        self.deadline, self.budget = time.monotonic() + timeout, 0

    def readable(self) -> bool:
        return True

    def begin(self, budget: int) -> None:
        """A new request: the whole of it must arrive within the timeout from now."""
        self.deadline, self.budget = time.monotonic() + self.timeout, budget

    def readinto(self, buffer: Any) -> int:
        if self.budget <= 0:
            raise _TooLarge
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.connection.settimeout(remaining)
        with memoryview(buffer) as view:
            received = self.connection.recv_into(view[: self.budget])
        self.budget -= received
        return received


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server | _UnixServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain reader; requests are read through a _Reader instead
        self.reader = _Reader(self.connection, self.server.limits.timeout)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        """One request; past its deadline the connection is dropped (http.server closes on TimeoutError)."""
        self.reader.begin(self.server.limits.header_bytes)
        try:
            super().handle_one_request()
        except _TooLarge:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._answering()
                self.send_error(431, "request headers too large")

    def _answering(self) -> None:
        """The request is read: writes of the answer get the timeout, not what is left of the deadline."""
        self.connection.settimeout(self.server.limits.timeout)

    def _refused_target(self) -> bool:
        """Answer 409 (and say so) when the client targets another root or engine than this daemon."""
        wanted_root, wanted_engine = (self.headers.get(name) for name in (client.ROOT_HEADER, client.ENGINE_HEADER))
        served = (self.server.root or "", self.server.backend.engine_name)
        wanted = (urllib.parse.unquote(wanted_root) if wanted_root and self.server.root else None, wanted_engine)
        why = client.target_mismatch(served, wanted)
        if why is not None:
            self._json(409, {"error": why, "kind": "target"})
        return why is not None

    # Unix-socket peers have no address; the default log line would index an empty string.
    def address_string(self) -> str:
        return "local"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, value: object) -> None:
        self._send(code, json.dumps(value).encode() + b"\n")

    def _stream(self, items: Iterator[dict[str, Any]]) -> None:
        """Newline-delimited JSON with chunked encoding, until the iterator or the peer ends."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for item in items:
                data = json.dumps(item).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the peer left, or stopped reading for longer than the timeout
            self.close_connection = True

    def do_GET(self) -> None:
        self._answering()
        url = urllib.parse.urlsplit(self.path)
        query = {key: values[-1] for key, values in urllib.parse.parse_qs(url.query).items()}
        backend = self.server.backend
        try:
            if url.path == "/healthz":
                self._json(200, {"ok": True, "engine": backend.engine_name, "root": self.server.root})
            elif url.path == "/metrics":
                self._send(200, render_metrics(backend.metric_samples()).encode(), "text/plain; version=0.0.4")
            elif self.server.metrics_only:
                self._json(404, {"error": f"no route {url.path} here (only /healthz and /metrics)"})
            elif self._refused_target():
                pass
            elif url.path == "/status":
                self._json(200, backend.status())
            elif url.path == "/events":
                since = int(query.get("since", "0"))
                if query.get("follow") in ("1", "true"):
                    self._stream(backend.follow_events(self.server.stopping, since=since))
                else:
                    self._stream(iter(backend.events_since(since)))
            elif url.path == "/logs":
                tail = int(query["tail"]) if query.get("tail") else None
                lines = backend.log_lines(query.get("name", ""), follow=query.get("follow") in ("1", "true"), tail=tail)
                first = next(lines, None)  # errors (unknown container) become a status code here

                def chained() -> Iterator[dict[str, Any]]:
                    if first is not None:
                        yield first
                    yield from lines

                self._stream(chained())
            else:
                self._json(404, {"error": f"no route {url.path}"})
        except Exception as exc:  # a request must never take the daemon down
            code, body = _error_json(exc)
            with contextlib.suppress(OSError):
                self._json(code, body)

    def _body(self) -> bytes | None:
        """The request's body, or None once a 4xx was answered (the connection then closes)."""
        length_text = self.headers.get("Content-Length") or "0"
        length = int(length_text) if length_text.isdigit() else -1
        limit = self.server.limits.body_bytes
        if not 0 <= length <= limit:
            self.close_connection = True  # the body is not read: nothing after it can be
            self._answering()
            if length < 0:
                self._json(400, {"error": "a POST needs a Content-Length"})
            else:
                self._json(413, {"error": f"request body larger than {limit} bytes"})
            return None
        self.reader.budget = length + io.DEFAULT_BUFFER_SIZE  # some of it may be buffered already
        body = self.rfile.read(length)
        self._answering()
        return body

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        backend = self.server.backend
        received = self._body()
        if received is None:
            return
        if url.path == "/hooks/git":
            self._git_hook(received)
            return
        if self.server.metrics_only:
            self._json(404, {"error": "no POST routes here"})
            return
        if self._refused_target():
            return
        try:
            request = json.loads(received or b"{}")
            sources = [(str(file), str(text)) for file, text in request.get("sources", [])]
            prune = bool(request.get("prune", True))
            prune_volumes = bool(request.get("pruneVolumes", False))
            if url.path == "/plan":
                plan, warnings = backend.plan_sources(sources, prune=prune, prune_volumes=prune_volumes)
                body = {
                    "plan": plan.to_json(),
                    "text": plan.render(),
                    "converged": plan.converged,
                    "warnings": warnings,
                }
                self._json(200, body)
            elif url.path == "/apply":
                self._apply(request, sources, prune=prune, prune_volumes=prune_volumes)
            elif url.path == "/apply/cancel":
                self._json(200, {"cancelled": self.server.cancels.cancel(str(request.get("id") or ""))})
            else:
                self._json(404, {"error": f"no route {url.path}"})
        except Exception as exc:  # reported to the client, never raised in the daemon
            code, body = _error_json(exc)
            self._json(code, body)

    def _apply(self, request: dict[str, Any], sources: list[tuple[str, str]], *, prune: bool,
               prune_volumes: bool) -> None:  # fmt: skip
        parallelism = int(request.get("parallelism") or 4)
        forced = [str(name) for name in request.get("forceRecreate") or ()]
        with self.server.cancels.registered(str(request.get("id") or "")) as cancel:
            applied = self.server.backend.apply_sources(
                sources, prune=prune, prune_volumes=prune_volumes, parallelism=parallelism,
                force_recreate=forced, cancel=cancel,
            )  # fmt: skip
        body = operations.outcome_json(applied.plan, applied.outcome)
        self._json(200, {**body, "recovered": applied.recovered, "warnings": applied.warnings})

    def _git_hook(self, body: bytes) -> None:
        """A forge's hook: authenticated by the shared secret, it makes the git source fetch now."""
        hook = self.server.git_hook
        if hook is None:
            self._json(404, {"error": "no git webhook here (reconcile watch --git URL --webhook-secret-file FILE)"})
            return
        headers = {name: value for name in webhooks.HEADERS if (value := self.headers.get(name)) is not None}
        scheme, why = webhooks.authenticate(hook.secret, headers, body)
        if scheme is None:
            self.server.refusals.refused(str(self.client_address[0]), why, len(body))
            self._json(401, {"error": "the hook is not signed with the shared secret"})
            return
        hook.trigger()
        self._json(202, {"fetching": True, "scheme": scheme})


class Cancels:
    """The applies in progress by their client-chosen id, so that ``/apply/cancel`` (a client's
    Ctrl-C, on another connection) can stop one from starting new steps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}

    @contextlib.contextmanager
    def registered(self, apply_id: str) -> Iterator[threading.Event]:
        event = threading.Event()
        if not apply_id:
            yield event
            return
        with self._lock:
            self._events[apply_id] = event
        try:
            yield event
        finally:
            with self._lock:
                self._events.pop(apply_id, None)

    def cancel(self, apply_id: str) -> bool:
        """Whether an apply of that id was running (it is now told to start no new step)."""
        with self._lock:
            event = self._events.get(apply_id)
        if event is not None:
            event.set()
        return event is not None


_BUSY = b'{"error": "the daemon has too many connections open; try again", "kind": "busy"}\n'


class _Bounded(socketserver.ThreadingMixIn, socketserver.BaseServer):
    """A thread per connection, at most ``limits.connections`` at once: one more is answered
    503 on the accepting thread and closed, so that it costs no thread and the accept loop never
    waits (a client retries, as after any 503)."""

    daemon_threads = True
    request_queue_size = 128
    backend: Backend
    metrics_only: bool
    stopping: threading.Event
    root: str | None
    cancels: Cancels
    limits: Limits
    slots: threading.BoundedSemaphore
    git_hook: webhooks.GitHook | None
    refusals: webhooks.Refusals

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def _refuse(self, connection: socket.socket) -> None:
        head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(_BUSY)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")  # fmt: skip
        with contextlib.suppress(OSError):
            connection.setblocking(False)  # a fresh socket's buffer takes it; never wait for a peer here
            with contextlib.suppress(BlockingIOError):
                connection.recv(65536)  # what was sent already: closing with it unread would reset
            connection.send(head.encode() + _BUSY)
        self.shutdown_request(connection)


class _Server(_Bounded, http.server.HTTPServer):
    pass


class _UnixServer(_Bounded, socketserver.UnixStreamServer):
    def get_request(self) -> tuple[socket.socket, Any]:
        connection, _ = self.socket.accept()
        # BaseHTTPRequestHandler expects an (address, port) pair; a unix peer has none.
        return connection, ("local", 0)


class Server:
    """The unix-socket API server, and the optional TCP server for ``/healthz`` and ``/metrics``."""

    def __init__(
        self,
        backend: Backend,
        *,
        socket_path: str = client.DEFAULT_SOCKET,
        root: str | None = None,
        metrics_addr: str | None = None,
        poll_interval: float = 2.0,
        limits: Limits | None = None,
        git_hook: webhooks.GitHook | None = None,
    ) -> None:
        """``root``: the state folder the backend's engine works on, named by ``/healthz`` and
        compared with each client's (None: a backend without one, e.g. in tests; then only the
        engine is compared). ``limits``: what one client may hold, per listener. ``git_hook``:
        the secret and trigger of ``POST /hooks/git`` (None: the route answers 404)."""
        self.backend = backend
        self.root = root
        self.limits = limits or Limits()
        self.git_hook = git_hook
        self.refusals = webhooks.Refusals()
        # How often the accept loops look at a shutdown request: slow polling is idle CPU saved,
        # paid for once, at shutdown.
        self.poll_interval = poll_interval
        self.socket_path = socket_path
        self.stopping = threading.Event()
        self._servers: list[socketserver.BaseServer] = []
        self.metrics_address: str | None = None
        self._threads: list[threading.Thread] = []
        self._unix = self._bind_unix(socket_path)
        self._servers.append(self._unix)
        if metrics_addr:
            host, _, port = metrics_addr.rpartition(":")  # "9469" and ":9469" mean 127.0.0.1:9469
            tcp = _Server((host or "127.0.0.1", int(port)), _Handler)
            tcp.backend, tcp.metrics_only, tcp.stopping = backend, True, self.stopping
            tcp.root = root
            tcp.cancels = Cancels()
            self._limit(tcp)
            self._servers.append(tcp)
            bound_host, bound_port = tcp.server_address[:2]
            self.metrics_address = f"{bound_host!s}:{bound_port}"

    def _bind_unix(self, path: str) -> _UnixServer:
        folder = Path(path).parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if Path(path).is_socket():
                Path(path).unlink()  # a stale socket of a dead daemon (a live one was checked by the caller)
        # The umask makes the socket 0600 from its first moment: no window for another user.
        previous = os.umask(0o177)
        try:
            server = _UnixServer(path, _Handler, bind_and_activate=True)
        finally:
            os.umask(previous)
        os.chmod(path, 0o600)
        server.backend, server.metrics_only, server.stopping = self.backend, False, self.stopping
        server.root = self.root
        server.cancels = Cancels()
        self._limit(server)
        return server

    def _limit(self, server: _Bounded) -> None:
        server.limits = self.limits
        server.git_hook, server.refusals = self.git_hook, self.refusals
        server.slots = threading.BoundedSemaphore(self.limits.connections)

    def start(self) -> None:
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": self.poll_interval},
                                      name="api", daemon=True)  # fmt: skip
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        with contextlib.suppress(FileNotFoundError):
            Path(self.socket_path).unlink()
