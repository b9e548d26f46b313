"""The daemon's API over a unix socket, /metrics over TCP, and the cross-process stack lock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import api, stack_locking
from tests.unit.controller_support import Harness, container_yaml


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Harness, api.Client, api.Server]]:
    (tmp_path / "m").mkdir()
    harness = Harness(tmp_path / "m")
    harness.write("shop.yaml", container_yaml("web", extra="restart: {policy: always}\n"))
    harness.settle()
    server = api.Server(
        harness.controller,
        socket_path=str(tmp_path / "run" / "api.sock"),
        metrics_addr="127.0.0.1:0",
        poll_interval=0.05,
    )
    server.start()
    yield harness, api.Client(server.socket_path, timeout=10), server
    server.stop()


def test_the_socket_is_root_only(served: tuple[Harness, api.Client, api.Server]) -> None:
    _, client, server = served
    mode = os.stat(server.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(Path(server.socket_path).parent).st_mode) == 0o700
    assert client.ping() == {"ok": True, "engine": "memory", "root": None}


def test_status_lists_every_object_with_its_fields(served: tuple[Harness, api.Client, api.Server]) -> None:
    _, client, _ = served
    status = client.status()
    row = next(r for r in status["objects"] if r["name"] == "web")
    for field in ("state", "health", "exitCode", "restarts", "backoff", "lastError", "drift", "specHash"):
        assert field in row
    assert row["state"] == "running" and row["specHash"].startswith("v1:sha256:")
    assert status["files"][0]["state"] == "ok"


def test_plan_and_apply_through_the_daemon(served: tuple[Harness, api.Client, api.Server], tmp_path: Path) -> None:
    harness, client, _ = served
    sources = [(str(tmp_path / "blog.yaml"), container_yaml("blog"))]
    planned = client.plan(sources, prune=True, prune_volumes=False)
    assert planned["converged"] is False and "blog" in planned["text"]
    applied = client.apply(sources, prune=True, prune_volumes=False, parallelism=2)
    assert applied["ok"] is True
    assert harness.engine.containers["blog"].state == "running"
    assert client.plan(sources, prune=True, prune_volumes=False)["converged"] is True
    with pytest.raises(api.ApiError) as caught:
        client.plan([("bad.yaml", "kind: [\n")], prune=True, prune_volumes=False)
    assert caught.value.status == 422 and caught.value.body["diagnostics"][0].startswith("bad.yaml:")


def test_events_are_streamed_as_they_happen(served: tuple[Harness, api.Client, api.Server]) -> None:
    harness, client, _ = served
    recent = list(client.events(follow=False))
    assert recent and recent[0]["kind"] == "reconcile"
    received: list[dict[str, object]] = []

    def follow() -> None:
        for event in client.events(follow=True, since=recent[-1]["seq"]):
            received.append(event)
            return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    # No wait for the reader to subscribe: it asks for every event after ``since``, so an exit
    # reported before its request arrives is streamed all the same.
    harness.exit("web", 3)
    reader.join(5.0)
    assert received and received[0]["kind"] == "exit" and received[0]["name"] == "web"


def test_metrics_and_healthz_over_tcp_only(served: tuple[Harness, api.Client, api.Server]) -> None:
    harness, _, server = served
    harness.exit("web", 1)
    harness.advance(0.1)
    base = f"http://{server.metrics_address}"
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "# TYPE reconciler_reconcile_duration_seconds summary" in text
    assert 'reconciler_reconcile_duration_seconds_count{key="shop"}' in text
    assert "reconciler_queue_depth 0" in text
    assert 'reconciler_restarts_total{object="container/web"} 1' in text
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{base}/status", timeout=5)
    assert caught.value.code == 404, "status, plan and apply are for the root-only socket"
    caught.value.close()


def test_the_stack_lock_is_shared_across_processes(tmp_path: Path) -> None:
    """A second process waits for the holder of a stack's lock, and only for that stack's."""
    released = tmp_path / "released"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from reconciler import stack_locking
            with stack_locking.stack_lock(Path({str(tmp_path)!r}), "shop"):
                print("held", flush=True)
                sys.stdin.readline()
                Path({str(released)!r}).touch()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    acquired = threading.Event()
    seen_released: list[bool] = []

    def second_holder() -> None:
        with stack_locking.stack_lock(tmp_path, "shop"):
            seen_released.append(released.exists())
            acquired.set()

    try:
        assert holder.stdin is not None and holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        waiter = threading.Thread(target=second_holder, daemon=True)
        waiter.start()
        with stack_locking.stack_lock(tmp_path, "blog"):
            pass  # another stack is not blocked
        assert not acquired.is_set()
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert acquired.wait(10), "the second holder got the lock once the first let go"
        waiter.join(10)
    finally:
        holder.wait(10)
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()
    assert seen_released == [True], "the second holder waited for the first"
    assert stat.S_IMODE(os.stat(tmp_path / "shop.lock").st_mode) == 0o600
