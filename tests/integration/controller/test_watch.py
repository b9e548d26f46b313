"""Acceptance of the controller (issue 4) against a real dockerd: the watched folder."""

from __future__ import annotations

import contextlib
import itertools
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from reconciler import api
from tests.integration.controller.conftest import Daemon
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


# PID 1 ignores SIGTERM unless it handles it: trap it, so that stops (recreate, prune) are quick.
SERVICE = """[sh, -c, 'trap "exit 0" TERM; sleep 3600 & wait']"""


def manifest(name: str, image: str, *, extra: str = "", command: str = SERVICE) -> str:
    return (
        "apiVersion: reconciler/v1\nkind: Container\n"
        f"metadata: {{name: {name}}}\n"
        f"spec:\n  image: {image}\n  pullPolicy: Never\n  command: {command}\n  stopTimeout: 1s\n"
        + "".join(f"  {line}\n" for line in extra.splitlines())
    )


def write_atomically(path: Path, text: str) -> None:
    """As editors and config tools do: a temporary dotfile renamed over the target."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.rename(path)


def state(client: docker.DockerClient, name: str) -> tuple[str, str] | None:
    try:
        inspected = client.api.inspect_container(name)
    except docker.errors.NotFound:
        return None
    return inspected["State"]["Status"], inspected["Id"]


def passes(ctl: Daemon, key: str) -> int:
    """How many passes of ``key`` (a stack, ``:scan``, ``:resync``) the daemon finished (``/metrics``)."""
    prefix = f'reconciler_reconcile_duration_seconds_count{{key="{key}"}} '
    for line in ctl.client.text("/metrics").splitlines():
        if line.startswith(prefix):
            return int(float(line.removeprefix(prefix)))
    return 0


def wait_for_passes(ctl: Daemon, key: str, count: int, *, what: str) -> None:
    """Until ``count`` more passes of ``key`` have finished (a pass under way counts as one: ask
    for one more than the passes that must have started after now)."""
    start = passes(ctl, key)
    eventually(lambda: passes(ctl, key) >= start + count, timeout=count * ctl.resync + 20.0, what=what)


def idle(ctl: Daemon) -> bool:
    status = ctl.status()
    return bool(status["queueDepth"] == 0 and status["passesInProgress"] == 0)


def named(client: docker.DockerClient, prefix: str) -> list[str]:
    return sorted(
        name.lstrip("/")
        for c in client.api.containers(all=True, filters={"name": prefix})
        for name in c["Names"]
        if name.lstrip("/").startswith(prefix)
    )


def test_drop_edit_delete_and_editor_artefacts(
    daemon: Callable[..., Daemon], client: docker.DockerClient, image: str, prefix: str, tmp_path: Path
) -> None:
    ctl = daemon()
    folder = ctl.folder
    stack = folder / f"{prefix}-shop.yaml"

    # Dropping a manifest into the folder starts its containers (how fast is bench/controller.py's
    # "folder latency", not a timed test).
    write_atomically(stack, manifest(f"{prefix}-web", image) + "---\n" + manifest(f"{prefix}-db", image))
    eventually(lambda: (state(client, f"{prefix}-web") or ("",))[0] == "running", what="web running")
    eventually(lambda: (state(client, f"{prefix}-db") or ("",))[0] == "running", what="db running")
    before = {name: state(client, name) for name in (f"{prefix}-web", f"{prefix}-db")}

    # Editor artefacts: nothing happens.
    for junk in (f".{prefix}-shop.yaml.swp", f"{prefix}-shop.yaml~", "4913", f"#{prefix}-shop.yaml#",
                 f"{prefix}-x.yaml.bak"):  # fmt: skip
        (folder / junk).write_text(manifest(f"{prefix}-ghost", image))
    # The same manifest saved again: a scan that reads the folder, artefacts included, and
    # would enqueue a ghost stack if it took any of them for a manifest.
    scans = passes(ctl, ":scan")
    write_atomically(stack, manifest(f"{prefix}-web", image) + "---\n" + manifest(f"{prefix}-db", image))
    eventually(lambda: passes(ctl, ":scan") > scans, timeout=10.0, what="a scan after the artefacts")
    eventually(lambda: idle(ctl), timeout=10.0, what="every pass it caused done")
    assert named(client, prefix) == sorted(before)
    assert {name: state(client, name) for name in before} == before

    # Editing: only the edited container is replaced.
    write_atomically(stack, manifest(f"{prefix}-web", image, extra="env: {MODE: edited}")
                     + "---\n" + manifest(f"{prefix}-db", image))  # fmt: skip

    def web_replaced() -> bool:
        now = state(client, f"{prefix}-web")
        return now is not None and now[0] == "running" and now[1] != before[f"{prefix}-web"][1]

    eventually(web_replaced, timeout=5.0, what="web replaced")
    assert state(client, f"{prefix}-db") == before[f"{prefix}-db"], "db was not touched"
    eventually(lambda: named(client, prefix) == sorted(before), timeout=5.0, what="no .next left over")

    # Deleting: removed.
    stack.unlink()
    eventually(lambda: named(client, prefix) == [], timeout=5.0, what="the stack's containers removed")


def test_invalid_yaml_keeps_the_last_good_version_and_reports_file_line_col(
    daemon: Callable[..., Daemon], client: docker.DockerClient, image: str, prefix: str
) -> None:
    ctl = daemon()
    stack = ctl.folder / f"{prefix}-app.yaml"
    write_atomically(stack, manifest(f"{prefix}-app", image))
    eventually(lambda: (state(client, f"{prefix}-app") or ("",))[0] == "running", what="app running")
    good = state(client, f"{prefix}-app")

    write_atomically(stack, "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: oops\nspec: [\n")

    def file_error() -> str:
        for report in ctl.status()["files"]:
            if report["path"] == str(stack) and report["state"] == "error":
                return str(report["errors"][0])
        return ""

    error = eventually(file_error, timeout=5.0, what="the file's error in status")
    assert error.startswith(f"{stack}:4:"), error  # file:line:col
    assert ctl.status()["files"][0]["usingLastGood"] is True
    wait_for_passes(ctl, ":resync", 2, what="a resync after the broken save")  # still untouched after it
    assert state(client, f"{prefix}-app") == good
    assert any(str(stack) in e["name"] for e in ctl.events("manifest-error"))

    write_atomically(stack, manifest(f"{prefix}-app", image, extra="env: {FIXED: 'yes'}"))
    eventually(lambda: (state(client, f"{prefix}-app") or ("", ""))[1] not in ("", good[1] if good else ""),
               timeout=5.0, what="converged after the fix")  # fmt: skip
    eventually(lambda: not file_error(), timeout=5.0, what="the error cleared")


class DockerEvents:
    """Docker's own ``die``/``start`` events of one container, read live on a thread."""

    def __init__(self, client: docker.DockerClient, name: str) -> None:
        self.timeline: list[tuple[float, str]] = []
        self.stream = client.api.events(decode=True, filters={"container": name, "event": ["die", "start"]})
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):
            for item in self.stream:
                self.timeline.append((item["timeNano"] / 1e9, str(item["Action"])))

    def gaps(self) -> list[float]:
        """Seconds from each ``die`` to the next ``start`` (Docker's timestamps)."""
        return [b[0] - a[0] for a, b in itertools.pairwise(self.timeline) if a[1] == "die" and b[1] == "start"]

    def close(self) -> None:
        self.stream.close()


def test_on_failure_max_retries_3_restarts_exactly_3_times_with_the_configured_backoff(
    daemon: Callable[..., Daemon], client: docker.DockerClient, image: str, prefix: str
) -> None:
    ctl = daemon(resync=1.0)
    name = f"{prefix}-job"
    docker_events = DockerEvents(client, name)
    restart = "restart: {policy: on-failure, maxRetries: 3, backoff: {initial: 500ms, factor: 2, max: 10s}}"
    write_atomically(ctl.folder / f"{prefix}-job.yaml", manifest(name, image, extra=restart,
                                                                 command='[sh, -c, "sleep 0.3; exit 1"]'))  # fmt: skip

    gave_up = eventually(lambda: [e for e in ctl.events("gave-up") if e["name"] == name], timeout=60.0,
                         what="the controller to give up")  # fmt: skip
    assert gave_up
    wait_for_passes(ctl, ":resync", 3, what="resyncs after it gave up")  # they do not restart it again
    inspected = client.api.inspect_container(name)
    assert inspected["State"]["Status"] == "exited" and inspected["State"]["ExitCode"] == 1

    restarts = [e for e in ctl.events("restart") if e["name"] == name]
    assert len(restarts) == 3
    exits = [e for e in ctl.events("exit") if e["name"] == name]
    assert len(exits) == 4
    # The controller's delays (exit seen → start requested) follow the backoff within 20 %.
    delays = [restart["time"] - exit_["time"] for exit_, restart in zip(exits, restarts, strict=False)]
    for measured, configured in zip(delays, [0.5, 1.0, 2.0], strict=True):
        assert abs(measured - configured) <= 0.2 * configured, (delays, configured)
    # As Docker saw them (die → start): never shorter than the backoff; longer by the engine's
    # start latency, which a loaded dockerd makes vary by seconds, so no upper bound here.
    gaps = docker_events.gaps()
    docker_events.close()
    assert len(gaps) == 3, gaps
    for measured, configured in zip(gaps, [0.5, 1.0, 2.0], strict=True):
        assert measured >= 0.8 * configured, (gaps, configured)
    row = ctl.row(name)
    assert row is not None and row["restarts"] == 3 and row["backoff"]["gaveUp"] is True


def test_always_keeps_restarting(
    daemon: Callable[..., Daemon], client: docker.DockerClient, image: str, prefix: str
) -> None:
    ctl = daemon()
    name = f"{prefix}-loop"
    restart = "restart: {policy: always, backoff: {initial: 100ms, factor: 1.5, max: 300ms}}"
    write_atomically(ctl.folder / f"{prefix}-loop.yaml", manifest(name, image, extra=restart,
                                                                  command='[sh, -c, "sleep 0.1; exit 0"]'))  # fmt: skip
    eventually(lambda: len([e for e in ctl.events("restart") if e["name"] == name]) >= 6, timeout=40.0,
               what="six restarts")  # fmt: skip
    row = ctl.row(name)
    assert row is not None and row["restarts"] >= 6 and row["backoff"]["gaveUp"] is False


@pytest.mark.parametrize("how", ["stop", "rm"])
def test_docker_stop_or_rm_is_healed_at_the_next_resync_and_reported_as_drift(
    daemon: Callable[..., Daemon], client: docker.DockerClient, image: str, prefix: str, how: str
) -> None:
    ctl = daemon(resync=2.0)
    name = f"{prefix}-svc"
    write_atomically(ctl.folder / f"{prefix}-svc.yaml", manifest(name, image, extra="restart: {policy: always}"))
    eventually(lambda: (state(client, name) or ("",))[0] == "running", what="svc running")
    if how == "stop":
        client.api.stop(name, timeout=1)
    else:
        client.api.remove_container(name, force=True)
    assert (state(client, name) or ("exited",))[0] != "running"
    # The stop/destroy event brings the resync forward; the margin is for a loaded dockerd.
    eventually(lambda: (state(client, name) or ("",))[0] == "running", timeout=ctl.resync + 10.0,
               what="healed at the next resync")  # fmt: skip
    drift = [e for e in ctl.events("drift") if name in e["message"]]
    assert drift, ctl.events()


def test_kill_9_during_a_reconcile_then_restart_converges_without_duplicates(
    daemon: Callable[..., Daemon], client: docker.DockerClient, image: str, prefix: str
) -> None:
    ctl = daemon(extra=("--parallelism", "2"))  # a pass of many steps, to kill it in the middle
    names = [f"{prefix}-n{index}" for index in range(12)]
    text = "---\n".join(manifest(name, image) for name in names)
    write_atomically(ctl.folder / f"{prefix}-many.yaml", text)
    # Kill as soon as the first container exists: the pass is in the middle of its steps.
    eventually(lambda: named(client, prefix), timeout=5.0, interval=0.005, what="the first container")
    assert ctl.process is not None
    ctl.process.kill()
    ctl.process.wait(10)
    running = [n for n in names if (state(client, n) or ("",))[0] == "running"]
    assert len(running) < len(names), "killed mid-reconcile"

    again = Daemon(ctl.folder, ctl.root, resync=ctl.resync).start()
    try:

        def converged() -> bool:
            return named(client, prefix) == sorted(names) and all(
                (state(client, n) or ("",))[0] == "running" for n in names
            )

        eventually(converged, timeout=15.0, what="every container running once")
        wait_for_passes(again, ":resync", 2, what="a resync after converging")
        assert named(client, prefix) == sorted(names), "nothing duplicated, no .next left"
    finally:
        again.stop()


def test_sigterm_stops_the_daemon_and_leaves_containers_running(
    daemon: Callable[..., Daemon], client: docker.DockerClient, image: str, prefix: str
) -> None:
    ctl = daemon()
    name = f"{prefix}-keep"
    write_atomically(ctl.folder / f"{prefix}-keep.yaml", manifest(name, image))
    eventually(lambda: (state(client, name) or ("",))[0] == "running", what="keep running")
    before = state(client, name)
    assert ctl.signal(signal.SIGTERM) == 0
    assert state(client, name) == before
    assert not Path(ctl.socket).exists()


def test_the_watcher_waits_for_the_stack_lock_that_a_cli_apply_holds(
    daemon: Callable[..., Daemon], client: docker.DockerClient, image: str, prefix: str
) -> None:
    ctl = daemon()
    stack = f"{prefix}-locked"
    # What an embedded `reconcile apply` holds while it applies this stack (another process here
    # would behave the same: flock locks are per open file).
    with api.stack_lock(ctl.root / "locks", stack):
        scans = passes(ctl, ":scan")
        write_atomically(ctl.folder / f"{stack}.yaml", manifest(f"{prefix}-held", image))
        # The scan saw the file and the stack's pass started: it waits for the lock.
        eventually(lambda: passes(ctl, ":scan") > scans and ctl.status()["passesInProgress"] > 0, timeout=10.0,
                   what="the stack's pass waiting for the lock")  # fmt: skip
        assert passes(ctl, stack) == 0
        assert state(client, f"{prefix}-held") is None, "the watcher must not reconcile a locked stack"
    eventually(lambda: (state(client, f"{prefix}-held") or ("",))[0] == "running", timeout=5.0,
               what="reconciled once the lock is released")  # fmt: skip
