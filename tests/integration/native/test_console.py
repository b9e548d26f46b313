"""The installed ``reconcile`` command on the native engine, run as a user runs it.

Run from outside the checkout, so that the supervisor and DNS helper processes must find the
package the way an installed program does (an editable install's import hook is not on
``sys.path`` for ``python -S``): the bug this guards against only showed outside pytest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from reconciler import client
from reconciler.backends.native import engine as native_engine
from tests.support import images
from tests.support.polling import eventually

IMAGE = images.LOCAL_BUSYBOX


def reconcile(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("reconcile")
    if binary is None:
        pytest.fail("the reconcile console script is not installed: pip install -e .", pytrace=False)
    return subprocess.run([binary, "--engine", "native", "--root", str(root), *args], cwd="/", capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


@pytest.mark.integration
def test_apply_and_status_from_the_console_script(loaded: Path, engine: native_engine.NativeEngine, prefix: str,
                                                  tmp_path: Path) -> None:  # fmt: skip
    manifest = tmp_path / "one.yaml"
    manifest.write_text(f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}one, stack: {prefix}s}}\n"
                        f"spec: {{image: '{IMAGE}', command: [sleep, '60'], ports: [{{containerPort: 8080}}]}}\n")  # fmt: skip
    applied = reconcile(loaded, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    status = reconcile(loaded, "status", "-o", "json")
    rows = {row["name"]: row for row in json.loads(status.stdout)["objects"]}
    one = rows[f"{prefix}one"]
    assert one["state"] == "running"
    assert one["image"] == IMAGE and one["startedAt"] is not None
    assert len(one["ports"]) == 1 and re.fullmatch(r"0\.0\.0\.0:\d+->8080/tcp", one["ports"][0]), "a random host port"
    assert one["createdAt"] is not None and one["createdAt"] <= one["startedAt"]
    table = reconcile(loaded, "status").stdout.splitlines()
    assert table[0].split()[7:10] == ["IMAGE", "PORTS", "AGE"]
    line = next(line for line in table if f"{prefix}one" in line)
    assert line.split()[4] == "none", "no health check says so"
    assert IMAGE in line and "8080/tcp" in line, line


@pytest.mark.integration
def test_the_controller_restarts_on_failure_exactly_max_retries_times(loaded: Path, engine: native_engine.NativeEngine,
                                                                      prefix: str, tmp_path: Path) -> None:  # fmt: skip
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "job.yaml").write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}job, stack: {prefix}s}}\n"
        f"spec:\n  image: '{IMAGE}'\n  command: [sh, -c, 'sleep 0.3; exit 1']\n  networkMode: none\n"
        "  restart: {policy: on-failure, maxRetries: 3, backoff: {initial: 200ms, factor: 2}}\n"
    )
    binary = shutil.which("reconcile")
    assert binary is not None
    log_file = (tmp_path / "watch.log").open("w")
    daemon = subprocess.Popen(
        [binary, "--engine", "native", "--root", str(loaded), "watch", str(folder), "--socket", str(tmp_path / "api.sock"),
         "--state-dir", str(tmp_path / "state"), "--log-format", "json"],
        cwd="/", stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True,
    )  # fmt: skip
    try:
        watch_log = tmp_path / "watch.log"
        container = eventually(
            lambda: (
                (c := engine.observe().containers.get(f"{prefix}job")) is not None
                and c.restart_count == 3
                and c.state == "exited"
                and c
            ),
            timeout=60,
            what=f"three restarts of {prefix}job (log: {watch_log})",
        )
        assert container.restart_count == 3
        # No fourth restart comes: the controller says it gave up once it has handled the exit
        # after the third restart (a moment after the engine shows it), and from then on a
        # container that gave up is not restarted. Its word names the restarts it counted.
        gave_up = eventually(
            lambda: [line for line in watch_log.read_text().splitlines() if "maxRetries reached" in line],
            what="the controller giving up",
        )
        assert "exit 1 after 3 restarts: maxRetries reached" in gave_up[0], gave_up
        assert engine.observe().containers[f"{prefix}job"].restart_count == 3
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=30)
        log_file.close()


@pytest.mark.integration
def test_another_root_never_talks_to_this_roots_daemon(loaded: Path, engine: native_engine.NativeEngine,
                                                      prefix: str, tmp_path: Path) -> None:  # fmt: skip
    """``--root`` scopes the daemon: its socket derives from the root, so a command on an empty root
    plans against that root (not "No changes" from the daemon of another); pointed at the other
    root's socket, it is refused with both roots named; status names the root and engine."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    manifest = folder / "one.yaml"
    manifest.write_text(f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}one, stack: {prefix}s}}\n"
                        f"spec: {{image: '{IMAGE}', command: [sleep, '60'], networkMode: none}}\n")  # fmt: skip
    binary = shutil.which("reconcile")
    assert binary is not None
    environment = {key: value for key, value in os.environ.items() if key != "RECONCILER_SOCKET"}
    log_file = (tmp_path / "watch.log").open("w")
    daemon = subprocess.Popen([binary, "--engine", "native", "--root", str(loaded), "watch", str(folder)], cwd="/",
                              stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True, env=environment)  # fmt: skip
    socket_path = client.socket_for_root(loaded)
    empty = tmp_path / "empty-root"
    try:
        assert eventually(lambda: client.Client(socket_path).ping(), what="the daemon on its root's socket") == {
            "ok": True, "engine": "native", "root": str(loaded.resolve())
        }  # fmt: skip
        eventually(lambda: (c := engine.observe().containers.get(f"{prefix}one")) is not None and c.state == "running",
                   what="the daemon's container running")  # fmt: skip
        assert reconcile(loaded, "plan", "-f", str(manifest)).returncode == 0, "the daemon's own root: no changes"
        elsewhere = reconcile(empty, "plan", "-f", str(manifest))
        assert elsewhere.returncode == 2 and "1 to create" in elsewhere.stdout, elsewhere
        refused = reconcile(empty, "--socket", socket_path, "plan", "-f", str(manifest))
        assert refused.returncode == 1 and str(loaded.resolve()) in refused.stderr, refused
        assert str(empty.resolve()) in refused.stderr
        status = reconcile(loaded, "status", "-o", "json")
        document = json.loads(status.stdout)
        assert (document["root"], document["engine"]) == (str(loaded.resolve()), "native")
        assert {row["name"] for row in document["objects"]} == {f"{prefix}one"}
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=30)
        log_file.close()
    assert not Path(socket_path).exists(), "the daemon removed its socket"
