"""The installed ``reconcile`` command's conventions on the native engine, as a script sees them:
usage errors exit 1 (2 is only ``plan``'s "changes pending"), empty input and an unknown stack
are errors (embedded and through the daemon), no restart-policy warning without restart
policies, no colour in a pipe, ``--version``."""

from __future__ import annotations

import os
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


def reconcile(root: Path, *args: str, socket: str = "none") -> subprocess.CompletedProcess[str]:
    binary = shutil.which("reconcile")
    if binary is None:
        pytest.fail("the reconcile console script is not installed: pip install -e .", pytrace=False)
    return subprocess.run([binary, "--engine", "native", "--root", str(root), "--socket", socket, *args], cwd="/",
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def container(prefix: str, restart: str = "no") -> str:
    return (f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}one, stack: {prefix}s}}\n"
            f"spec: {{image: '{IMAGE}', command: [sleep, '60'], networkMode: none, restart: {{policy: '{restart}'}}}}\n")  # fmt: skip


@pytest.mark.integration
def test_exit_codes_and_messages_for_scripts(loaded: Path, engine: native_engine.NativeEngine, prefix: str,
                                            tmp_path: Path) -> None:  # fmt: skip
    empty_dir = tmp_path / "emptydir"
    empty_dir.mkdir()
    empty_file = tmp_path / "empty.yaml"
    empty_file.write_text("# nothing yet\n")
    manifest = tmp_path / "one.yaml"
    manifest.write_text(container(prefix))

    typo = reconcile(loaded, "plan", "-f", str(manifest), "--prunee")
    assert typo.returncode == 1 and "unrecognized arguments: --prunee" in typo.stderr, typo
    assert reconcile(loaded, "apply").returncode == 1
    pending = reconcile(loaded, "plan", "-f", str(manifest))
    assert pending.returncode == 2 and "(2 steps)" in pending.stdout and "\033[" not in pending.stdout, pending

    for path in (empty_dir, empty_file):
        for command in ("validate", "plan", "apply"):
            ran = reconcile(loaded, command, "-f", str(path))
            assert (ran.returncode, ran.stderr) == (1, f"error: no manifests found in {path}\n"), ran
    assert not engine.observe().containers

    applied = reconcile(loaded, "apply", "-f", str(manifest))
    assert applied.returncode == 0 and "of 2 steps" in applied.stdout, applied
    assert "restart policies" not in applied.stderr and "\033[" not in applied.stdout
    assert "no changes" in reconcile(loaded, "plan", "-f", str(manifest)).stdout.lower()

    nosuch = reconcile(loaded, "delete", "--stack", "nosuch")
    assert (nosuch.returncode, nosuch.stderr) == (1, "error: no stack named nosuch; nothing was changed\n"), nosuch
    assert engine.observe().containers[f"{prefix}one"].state == "running"
    assert reconcile(loaded, "delete", "--stack", f"{prefix}s").returncode == 0
    again = reconcile(loaded, "delete", "--stack", f"{prefix}s")
    assert again.returncode == 1 and f"no stack named {prefix}s" in again.stderr, again

    manifest.write_text(container(prefix, restart="always"))
    quiet = reconcile(loaded, "apply", "-f", str(manifest))
    assert quiet.returncode == 0 and "restart polic" not in quiet.stderr, quiet  # kept without a daemon

    version = reconcile(loaded, "--version")
    assert version.returncode == 0 and version.stdout.startswith("reconcile "), version


@pytest.mark.integration
def test_empty_input_through_the_daemon(loaded: Path, engine: native_engine.NativeEngine, prefix: str,
                                        tmp_path: Path) -> None:  # fmt: skip
    """The daemon refuses an empty file as the embedded CLI does, and the CLI names the path typed."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "one.yaml").write_text(container(prefix))
    empty_file = tmp_path / "empty.yaml"
    empty_file.write_text("")
    binary = shutil.which("reconcile")
    assert binary is not None
    environment = {key: value for key, value in os.environ.items() if key != "RECONCILER_SOCKET"}
    log_file = (tmp_path / "watch.log").open("w")
    daemon = subprocess.Popen([binary, "--engine", "native", "--root", str(loaded), "watch", str(folder)], cwd="/",
                              stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True, env=environment)  # fmt: skip
    socket_path = client.socket_for_root(loaded)
    try:
        eventually(lambda: client.Client(socket_path).ping(), what="the daemon on its root's socket")
        for command in ("plan", "apply"):
            ran = reconcile(loaded, command, "-f", str(empty_file), socket=socket_path)
            assert (ran.returncode, ran.stderr) == (1, f"error: no manifests found in {empty_file}\n"), ran
        eventually(lambda: (c := engine.observe().containers.get(f"{prefix}one")) is not None and c.state == "running",
                   what="the daemon's container running, not pruned by the empty apply")  # fmt: skip
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=30)
        log_file.close()
