"""Health-gated replacement with rollback on the native engine, through the CLI (no daemon).

The acceptance's rollback scenario with ``apply -f``: a stack serves on a fixed host port; a new
version whose health check fails is started beside it and rolled back, and a probe loop from
the host on 127.0.0.1:PORT sees no failure meanwhile (the old container never stopped serving);
the same spec is then held back by the next plan (the rollback is remembered in the root); a fix
rolls forward. ``apply --wait`` sees health on native (the CLI probes through exec).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.support import images
from tests.support.cli import fetch, reconcile
from tests.support.polling import eventually

IMAGE = images.LOCAL_BUSYBOX
SERVES = "wget -q -O- http://127.0.0.1:8080/"
BROKEN = "test -f /www/missing"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def web(name: str, stack: str, port: int, version: str, check: str, stop_timeout: str = "1s") -> str:
    return (
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {stack}}}\nspec:\n"
        f"  image: '{IMAGE}'\n  env: {{VERSION: {version}}}\n"
        "  command: [sh, -c, 'mkdir -p /www && echo $VERSION > /www/index.html && exec httpd -f -p 8080 -h /www']\n"
        f"  ports: ['127.0.0.1:{port}:8080']\n  stopTimeout: {stop_timeout}\n  minReadySeconds: 1\n"
        f"  healthcheck: {{test: '{check}', interval: 200ms, timeout: 2s, retries: 2}}\n"
    )


class ProbeLoop:
    """GET http://127.0.0.1:PORT/ from the host, again and again, on a thread: every answer kept."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/"
        self.answers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    self.answers.append(response.read().decode().strip())
            except OSError as exc:
                self.answers.append(f"failed: {exc}")
            self._stop.wait(0.02)

    def __enter__(self) -> ProbeLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def failures(self) -> list[str]:
        return [answer for answer in self.answers if answer.startswith("failed")]


@pytest.mark.integration
def test_a_failing_replacement_rolls_back_while_the_old_one_serves_and_a_fix_rolls_forward(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    name, stack, port = f"{prefix}web", f"{prefix}s", free_port()
    manifest = tmp_path / "web.yaml"
    manifest.write_text(web(name, stack, port, "v1", SERVES))
    applied = reconcile(loaded, "apply", "-f", str(manifest), "--wait", "--timeout", "60")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "All containers are ready." in applied.stdout
    assert eventually(lambda: fetch(f"http://127.0.0.1:{port}/"), what="v1 serving") == b"v1\n"
    first_id = engine.observe().containers[name].container_id

    manifest.write_text(web(name, stack, port, "v2", BROKEN))
    with ProbeLoop(port) as loop:
        broken = reconcile(loaded, "apply", "-f", str(manifest))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"rollback of container {name}: container {name}.next turned unhealthy" in broken.stderr
    assert len(loop.answers) > 10, "the loop probed while the replacement was tried"
    assert loop.failures() == [] and set(loop.answers) == {"v1"}
    actual = engine.observe().containers
    assert actual[name].container_id == first_id and actual[name].state == "running"
    assert f"{name}.next" not in actual

    # Another process plans: the rollback is remembered, that spec is held back.
    planned = reconcile(loaded, "plan", "-f", str(manifest))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert f"Note: container {name}: held back: v1:sha256:" in planned.stdout
    assert "turned unhealthy" in planned.stdout
    # And status says it, on the container's row (no daemon: read from the root).
    shown = reconcile(loaded, "status")
    [row] = [line for line in shown.stdout.splitlines() if line.split()[:2] == ["Container", name]]
    assert "held back: v1:sha256:" in row and f"UTC, container {name}.next turned unhealthy" in row, row
    [held] = [o["heldBack"] for o in json.loads(reconcile(loaded, "status", "-o", "json").stdout)["objects"]
              if o["name"] == name]  # fmt: skip
    assert held["reason"].startswith(f"container {name}.next turned unhealthy") and held["specHash"].startswith("v1:")

    manifest.write_text(web(name, stack, port, "v3", SERVES))
    with ProbeLoop(port) as loop:
        fixed = reconcile(loaded, "apply", "-f", str(manifest))
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        eventually(lambda: loop.answers and loop.answers[-1] == "v3", what="v3 answering the loop")
    assert engine.observe().containers[name].container_id != first_id
    print(f"roll forward: {len(loop.failures())} failed of {len(loop.answers)} probes")  # measured, for the report
    # The old one's DNAT rules went before its stop: until then it answered, after it the new one.
    assert loop.failures() == [] and set(loop.answers) == {"v1", "v3"}


@pytest.mark.integration
def test_a_connection_in_flight_at_the_switch_ends_on_the_old_container(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    # The stop timeout bounds how long the old one waits for its connections: ample here.
    name, stack, port = f"{prefix}web", f"{prefix}s", free_port()
    manifest = tmp_path / "web.yaml"
    manifest.write_text(web(name, stack, port, "v1", SERVES, stop_timeout="30s"))
    applied = reconcile(loaded, "apply", "-f", str(manifest), "--wait", "--timeout", "60")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert eventually(lambda: fetch(f"http://127.0.0.1:{port}/"), what="v1 serving") == b"v1\n"
    first_id = engine.observe().containers[name].container_id

    manifest.write_text(web(name, stack, port, "v2", SERVES, stop_timeout="30s"))
    done: list[subprocess.CompletedProcess[str]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as held:  # in flight: no request yet
        rollout = threading.Thread(target=lambda: done.append(reconcile(loaded, "apply", "-f", str(manifest))))
        rollout.start()
        try:
            # New connections reach the new container: the old one's rules are gone, and it waits.
            eventually(lambda: fetch(f"http://127.0.0.1:{port}/") == b"v2\n", timeout=60, what="v2 serving")
            old = engine.observe().containers[name]
            assert (old.container_id, old.state) == (first_id, "running"), "the old one still serves"
            held.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = b"".join(iter(lambda: held.recv(4096), b""))
        finally:
            rollout.join(timeout=120)
    assert answer.startswith(b"HTTP/1.") and answer.endswith(b"\r\n\r\nv1\n"), answer
    assert done and done[0].returncode == 0, done
    assert f"{name}.next" not in engine.observe().containers


@pytest.mark.integration
def test_apply_wait_sees_a_failing_health_check_on_native(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(web(f"{prefix}web", f"{prefix}s", free_port(), "v1", BROKEN))
    applied = reconcile(loaded, "apply", "-f", str(manifest), "--wait", "--timeout", "5")
    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert f"not ready after 5s: {prefix}web (unhealthy)" in applied.stderr
    assert engine.observe().containers[f"{prefix}web"].state == "running"
