"""Helpers shared by the Docker scenario tests: manifests on disk, the CLI, counting.

Scenario tests speak to the product the way a user does (``python -m reconciler.cli --engine
docker``), and check the daemon's state with the docker SDK directly, state before output. Waiting is
``tests.support.polling.eventually``'s job; a free port is ``tests.support.registry.free_port``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import yaml

from reconciler.backends import docker as docker_backend

ROOT = Path(__file__).resolve().parents[3]


@dataclasses.dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def reconcile(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Run:
    """Run the CLI with the docker engine; returns exit code and both outputs."""
    environment = {**os.environ, "RECONCILER_ENGINE": "docker", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "--engine", "docker", *args],
        capture_output=True, text=True, env=environment, cwd=ROOT, timeout=timeout, check=False,
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr)


def document(kind: str, name: str, stack: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "reconciler/v1",
        "kind": kind,
        "metadata": {"name": name, "stack": stack},
        "spec": spec,
    }


def write(folder: Path, name: str, *documents: dict[str, Any]) -> Path:
    """One manifest file per object (so a test can "delete its manifest" by deleting the file)."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def http_get(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def container_id(client: docker.DockerClient, name: str) -> str | None:
    try:
        return str(client.api.inspect_container(name)["Id"])
    except docker.errors.NotFound:
        return None


class DaemonEvents:
    """Every Docker event (any object type) of objects named with ``prefix`` while the block ran.

    This is the daemon's own record of mutations: a no-op apply must leave it empty. The event
    stream is read live from before the block starts; at its end a marker volume is created and
    removed, and the events are complete once the stream has delivered the marker's ``create``
    (dockerd sends events in the order it logs them, and every mutation of the block was logged
    before the marker was made).
    """

    def __init__(self, client: docker.DockerClient, prefix: str, *, timeout: float = 30.0) -> None:
        self.client = client
        self.prefix = prefix
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self.marker = f"reconciler-events-marker-{secrets.token_hex(4)}"
        self._marker_seen = threading.Event()
        self._reader: threading.Thread | None = None
        self._stream: Any = None

    def __enter__(self) -> DaemonEvents:
        # dockerd answers an events request before it subscribes, so a live stream alone could
        # miss what happens at once; ``since`` replays from the daemon's buffer, and events from
        # before this nanosecond are dropped by their own timestamps.
        self.started_ns = time.time_ns()
        self._stream = self.client.api.events(since=self.started_ns // 1_000_000_000, decode=True)
        self._reader = threading.Thread(target=self._read, name="daemon-events", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends with an error when it is closed
            for event in self._stream:
                actor = event.get("Actor") or {}
                if event.get("Type") == "volume" and actor.get("ID") == self.marker:
                    self._marker_seen.set()
                    return
                name = str((actor.get("Attributes") or {}).get("name", ""))
                if int(event.get("timeNano", 0)) >= self.started_ns and name.startswith(self.prefix):
                    self.events.append(event)

    def __exit__(self, *exc: object) -> None:
        assert self._reader is not None
        try:
            self.client.api.create_volume(self.marker)
            self.client.api.remove_volume(self.marker)
            seen = self._marker_seen.wait(self.timeout)
        finally:
            self._stream.close()
            self._reader.join(self.timeout)
        assert seen, f"the event stream did not deliver the marker volume {self.marker} within {self.timeout}s"


class CountingHTTP:
    """Counts the Engine API requests an engine sends, by HTTP method (mutations are not GETs)."""

    def __init__(self, engine: docker_backend.DockerEngine) -> None:
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        engine.api.hooks["response"].append(self._seen)
        if engine.reader is not None:  # the read path's GETs, which go around the SDK
            engine.reader.hooks.append(self._record)

    def _seen(self, response: Any, *args: object, **kwargs: object) -> None:
        self._record(response.request.method, response.request.path_url)

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def mutating(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(m, p) for m, p in self.requests if m not in ("GET", "HEAD")]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()


def lines_mentioning(text: str, needle: str) -> Iterator[str]:
    return (line for line in text.splitlines() if needle in line)
