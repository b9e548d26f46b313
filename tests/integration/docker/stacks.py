"""Helpers shared by the Docker scenario tests: manifests on disk, the CLI, polling, counting.

Scenario tests speak to the product the way a user does (``python -m reconciler.cli --engine
docker``), and check the daemon's state with the docker SDK directly, state before output.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
import yaml

from reconciler.backends import docker as docker_backend

_T = TypeVar("_T")
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


def eventually(check: Callable[[], _T], *, timeout: float = 20.0, interval: float = 0.1) -> _T:
    """Poll ``check`` until it returns a truthy value (or raise its last AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
            last: BaseException = AssertionError(f"{check} stayed falsy for {timeout}s")
        except (AssertionError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise last
        time.sleep(interval)


def http_get(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def container_id(client: docker.DockerClient, name: str) -> str | None:
    try:
        return str(client.api.inspect_container(name)["Id"])
    except docker.errors.NotFound:
        return None


class DaemonEvents:
    """Every Docker event (any object type) seen while the ``with`` block ran.

    This is the daemon's own record of mutations: a no-op apply must leave it empty.
    """

    def __init__(self, client: docker.DockerClient, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> DaemonEvents:
        # Same host, same clock: events are kept from this nanosecond on.
        self.started_ns = time.time_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        until = time.time() + 1
        time.sleep(1.1)  # the events endpoint filters by whole seconds; ``until`` must have passed
        since = self.started_ns // 1_000_000_000
        for event in self.client.api.events(since=since, until=until, decode=True):
            attributes = (event.get("Actor") or {}).get("Attributes") or {}
            if int(event.get("timeNano", 0)) < self.started_ns:
                continue
            if str(attributes.get("name", "")).startswith(self.prefix):
                self.events.append(event)


class CountingHTTP:
    """Counts the Engine API requests an engine sends, by HTTP method (mutations are not GETs)."""

    def __init__(self, engine: docker_backend.DockerEngine) -> None:
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        engine.api.hooks["response"].append(self._seen)

    def _seen(self, response: Any, *args: object, **kwargs: object) -> None:
        with self._lock:
            self.requests.append((response.request.method, response.request.path_url))

    def mutating(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(m, p) for m, p in self.requests if m not in ("GET", "HEAD")]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()


def lines_mentioning(text: str, needle: str) -> Iterator[str]:
    return (line for line in text.splitlines() if needle in line)
