"""Ctrl-C during ``reconcile apply --parallelism 1`` on the native engine, through the installed
command: a real SIGINT once the first container exists makes it say so, finish the step in
flight, start no other, print what was done and what was not, and exit 130; the engine holds
exactly the containers the printed steps created and started."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.support import images
from tests.support.polling import eventually

IMAGE = images.LOCAL_BUSYBOX


@pytest.mark.integration
def test_sigint_during_apply_finishes_the_step_in_flight_and_exits_130(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    binary = shutil.which("reconcile")
    if binary is None:
        pytest.fail("the reconcile console script is not installed: pip install -e .", pytrace=False)
    manifest = tmp_path / "many.yaml"
    manifest.write_text("".join(
        f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}c{i}, stack: {prefix}s}}\n"
        f"spec: {{image: '{IMAGE}', command: [sleep, '3600'], networkMode: none, stopTimeout: 1s}}\n"
        for i in range(8)
    ))  # fmt: skip
    command = [binary, "--engine", "native", "--root", str(loaded), "--socket", "none",
               "apply", "-f", str(manifest), "--parallelism", "1"]  # fmt: skip
    # A session of its own: the SIGINT goes to this process alone, as the test sends it.
    with subprocess.Popen(command, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:  # fmt: skip
        eventually(lambda: engine.observe().containers, what="the first container created")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (out, err)
    assert "Interrupt received, finishing the steps in flight" in err
    summary = re.search(r"Interrupted: (\d+) done, 0 failed, 0 skipped, (\d+) not started of (\d+) steps\.", out)
    assert summary is not None, out
    assert int(summary[2]) > 0
    created = set(re.findall(r"✓ \d+\. create container (\S+)", out))
    started = set(re.findall(r"✓ \d+\. start container (\S+)", out))
    actual = engine.observe().containers
    assert set(actual) == created
    assert {name for name, c in actual.items() if c.state == "running"} == started
