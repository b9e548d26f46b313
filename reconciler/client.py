"""The client of the daemon's local API (see :mod:`reconciler.api` for the routes).

The CLI's ``apply``, ``plan``, ``status``, ``logs`` and ``events`` talk to a running daemon
through :class:`Client`. It is its own module, standard library only, because every such command
starts by importing it: the server side (``http.server``) and the models stay unloaded.

Which daemon: one per ``--root``. :func:`socket_for_root` says where the daemon of a root listens,
and every request carries the root and engine the CLI targets (``X-Reconciler-Root``,
``X-Reconciler-Engine``), so that a daemon of another root or engine refuses it (409) instead of
answering for the wrong state, should a ``--socket`` point at the wrong one.

This module must not import anything of the project but :mod:`reconciler.errors`.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import errors

if TYPE_CHECKING:  # imported when a daemon is asked: an embedded command needs no socket module
    import socket

DEFAULT_ROOT = "/var/lib/reconciler"
DEFAULT_SOCKET = "/run/reconciler/api.sock"
ROOT_HEADER = "X-Reconciler-Root"
ENGINE_HEADER = "X-Reconciler-Engine"
# Where ``--metrics-addr`` suggests serving /healthz and /metrics (loopback only by default).
DEFAULT_METRICS_ADDR = "127.0.0.1:9469"


def socket_for_root(root: str | Path) -> str:
    """The socket of the daemon that serves ``root``: :data:`DEFAULT_SOCKET` for the default root
    (as before roots scoped daemons), ``/run/reconciler/api-<12 hex of the root's path>.sock`` for
    any other.

    Why a hash under ``/run/reconciler`` and not ``<root>/api.sock``: a unix socket's path has at
    most 107 bytes, which a deep root (a test's temporary folder) would exceed; ``/run`` is a tmpfs,
    so a reboot leaves no stale socket; and the folder is already the root-only one (0700) the
    default socket lives in. The daemon logs its socket and ``/healthz`` names its root.
    """
    resolved = str(Path(root).resolve())
    if resolved == str(Path(DEFAULT_ROOT).resolve()):
        return DEFAULT_SOCKET
    import hashlib  # only for a non-default root: the common start stays without it

    digest = hashlib.sha256(resolved.encode()).hexdigest()[:12]
    return str(Path(DEFAULT_SOCKET).parent / f"api-{digest}.sock")


def target_mismatch(served: tuple[str, str], wanted: tuple[str | None, str | None]) -> str | None:
    """Why a daemon serving ``(root, engine)`` must refuse a client that targets ``wanted``, or None
    when it may serve it (a client that names no root or engine accepts any)."""
    (root, engine), (wanted_root, wanted_engine) = served, wanted
    if (wanted_root is None or wanted_root == root) and (wanted_engine is None or wanted_engine == engine):
        return None
    return (
        f"this daemon serves root {root} with the {engine} engine, but the client targets root "
        f"{wanted_root or root} with the {wanted_engine or engine} engine; use that root's daemon "
        "(--socket), or --socket none to run without one"
    )


def _connect(path: str, timeout: float | None) -> socket.socket:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def _exchange(
    path: str, timeout: float | None, method: str, target: str, body: bytes | None, *, headers: Mapping[str, str]
) -> tuple[int, bytes]:
    """One request and its whole answer: ``(status, body)``.

    Why not ``http.client`` here: importing it (with ``email`` and ``ssl``) costs about 25 ms,
    which is a fifth of a no-op ``apply`` through the daemon. One request with
    ``Connection: close`` needs no header parsing beyond the status line: the daemon (this
    project's :mod:`reconciler.api`) answers JSON routes with a plain body and then closes, so
    the body is everything after the blank line. Streams use ``http.client`` (:meth:`Client.stream`).
    """
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    with _connect(path, timeout) as sock:
        sock.sendall(head.encode("ascii") + b"\r\n" + (body or b""))
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    answer = b"".join(chunks)
    header, separator, payload = answer.partition(b"\r\n\r\n")
    status_line = header.split(b"\r\n", 1)[0].split()
    if not separator or len(status_line) < 2 or not status_line[0].startswith(b"HTTP/") or not status_line[1].isdigit():
        raise ValueError(f"not an HTTP answer: {answer[:80]!r}")
    return int(status_line[1]), payload


class ApiError(errors.ReconcilerError):
    """The daemon answered with an error; ``body`` is its JSON answer."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(str(body.get("error", f"HTTP {status}")))
        self.status = status
        self.body = body


class Client:
    """A tiny client of the daemon's API over its unix socket."""

    def __init__(
        self,
        socket_path: str = DEFAULT_SOCKET,
        *,
        timeout: float | None = 600.0,
        root: str | None = None,
        engine: str | None = None,
    ) -> None:
        """``root`` and ``engine``: what this client targets, sent with every request so that a
        daemon serving another one refuses it (None: any)."""
        self.socket_path = socket_path
        self.timeout = timeout
        # Latin-1 is what an HTTP header carries; a root path outside it is sent percent-encoded.
        self.headers = {
            header: urllib.parse.quote(value, safe="/")
            for header, value in ((ROOT_HEADER, root), (ENGINE_HEADER, engine))
            if value is not None
        }

    def ping(self) -> dict[str, Any] | None:
        """The daemon's ``/healthz`` answer, or None when nothing answers on the socket."""
        if not Path(self.socket_path).is_socket():
            return None
        try:
            status, payload = _exchange(self.socket_path, 2.0, "GET", "/healthz", None, headers=self.headers)
            body = json.loads(payload or b"{}")
        except (OSError, ValueError):
            return None
        return body if status == 200 and isinstance(body, dict) else None

    def text(self, path: str) -> str:
        """A plain-text route's answer (``/metrics``)."""
        try:
            status, payload = _exchange(self.socket_path, self.timeout, "GET", path, None, headers=self.headers)
        except (OSError, ValueError) as exc:
            raise errors.Unavailable(f"daemon at {self.socket_path}: {exc}") from exc
        if status >= 400:
            raise ApiError(status, {"error": payload.decode("utf-8", "replace").strip()})
        return payload.decode("utf-8", "replace")

    def _call(self, method: str, path: str, body: object | None = None) -> dict[str, Any]:
        try:
            payload = json.dumps(body).encode() if body is not None else None
            status, answer = _exchange(self.socket_path, self.timeout, method, path, payload, headers=self.headers)
            data = json.loads(answer or b"{}")
        except (OSError, ValueError) as exc:
            raise errors.Unavailable(f"daemon at {self.socket_path}: {exc}") from exc
        if status >= 400:
            raise ApiError(status, data if isinstance(data, dict) else {"error": str(data)})
        return data if isinstance(data, dict) else {"value": data}

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def plan(self, sources: Sequence[tuple[str, str]], *, prune: bool, prune_volumes: bool) -> dict[str, Any]:
        return self._call("POST", "/plan", {"sources": list(sources), "prune": prune, "pruneVolumes": prune_volumes})

    def apply(
        self,
        sources: Sequence[tuple[str, str]],
        *,
        prune: bool,
        prune_volumes: bool,
        parallelism: int,
        force_recreate: Sequence[str] = (),
        apply_id: str = "",
    ) -> dict[str, Any]:
        """Apply through the daemon; ``apply_id`` names it for :meth:`cancel`."""
        body = {"sources": list(sources), "prune": prune, "pruneVolumes": prune_volumes, "parallelism": parallelism,
                "forceRecreate": list(force_recreate), "id": apply_id}  # fmt: skip
        return self._call("POST", "/apply", body)

    def cancel(self, apply_id: str) -> bool:
        """Tell the daemon's apply ``apply_id`` to start no new step (Ctrl-C); whether it ran."""
        return bool(self._call("POST", "/apply/cancel", {"id": apply_id}).get("cancelled"))

    def stream(self, path: str) -> Iterator[dict[str, Any]]:
        """Newline-delimited JSON from a streaming route, as it arrives (chunked: ``http.client``)."""
        import http.client

        class UnixConnection(http.client.HTTPConnection):
            def __init__(self, path: str) -> None:
                super().__init__("localhost")
                self._path = path

            def connect(self) -> None:
                self.sock = _connect(self._path, None)

        connection = UnixConnection(self.socket_path)
        try:
            connection.request("GET", path, headers=self.headers)
            response = connection.getresponse()
            if response.status >= 400:
                raise ApiError(response.status, json.loads(response.read() or b"{}"))
            while True:
                line = response.readline()
                if not line:
                    break
                if line.strip():
                    yield json.loads(line)
        except (OSError, http.client.HTTPException) as exc:
            raise errors.Unavailable(f"daemon at {self.socket_path}: {exc}") from exc
        finally:
            connection.close()

    def events(self, *, follow: bool = True, since: int = 0) -> Iterator[dict[str, Any]]:
        return self.stream(f"/events?follow={int(follow)}&since={since}")

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[dict[str, Any]]:
        query = urllib.parse.urlencode({"name": name, "follow": int(follow), **({"tail": tail} if tail else {})})
        return self.stream(f"/logs?{query}")
