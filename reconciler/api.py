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

Every other route refuses (409, ``kind: target``) a request whose ``X-Reconciler-Root`` or
``X-Reconciler-Engine`` names another root or engine than the daemon's: the second safety behind
each root's own socket, so that a CLI pointed at the wrong daemon never plans or applies against
another root's state.

The client of these routes is :mod:`reconciler.client` (standard library only, so that the CLI
starts fast); ``Client`` and ``ApiError`` are re-exported here, beside the routes they call, and
so is :func:`operations.stack_lock`, the cross-process lock that keeps a CLI ``apply`` and the
watcher from reconciling the same stack at once.

The server is ``http.server`` over ``socketserver``. This module must not import the controller
(it serves any :class:`Backend`), a backend, or the CLI, and must not plan: a :class:`Backend`
does (the controller, through :mod:`reconciler.operations`).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import socketserver
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from reconciler import client, errors, operations

if TYPE_CHECKING:
    from reconciler import plans

# Re-exported (see the module docstring): one implementation each, in its own module.
Client = client.Client
ApiError = client.ApiError
stack_lock = operations.stack_lock

_MAX_BODY = 64 * 1024 * 1024


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


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

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
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
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

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        backend = self.server.backend
        if self.server.metrics_only:
            self._json(404, {"error": "no POST routes here"})
            return
        if self._refused_target():
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                self._json(413, {"error": "request too large"})
                return
            request = json.loads(self.rfile.read(length) or b"{}")
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


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    backend: Backend
    metrics_only: bool
    stopping: threading.Event
    root: str | None
    cancels: Cancels


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    backend: Backend
    metrics_only: bool
    stopping: threading.Event
    root: str | None
    cancels: Cancels

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
    ) -> None:
        """``root``: the state folder the backend's engine works on, named by ``/healthz`` and
        compared with each client's (None: a backend without one, e.g. in tests; then only the
        engine is compared)."""
        self.backend = backend
        self.root = root
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
        return server

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
