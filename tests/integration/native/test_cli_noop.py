"""A repeated embedded ``apply``/``plan`` on the native engine, answered from a remembered verdict
(reconciler.verdicts): the same output as a plan made anew, without importing pydantic or YAML;
and any change (an env file, a container stopped behind the engine's back) plans and acts again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.support import images

IMAGE = images.LOCAL_BUSYBOX


def stack(prefix: str) -> str:
    return "".join(
        f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}{name}, stack: {prefix}s}}\n"
        f"spec: {{image: '{IMAGE}', command: [sleep, '600'], networkMode: none, envFiles: [app.env],"
        f" stopTimeout: 1s, restart: {{policy: always}}}}\n"
        for name in ("one", "two")
    )


def reconcile(root: Path, cache: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a new process, as a user runs it; stderr carries ``-X importtime``'s report."""
    argv = [sys.executable, "-X", "importtime", "-m", "reconciler.cli", "--engine", "native", "--root", str(root),
            "--socket", "none", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "RECONCILER_CACHE_DIR": str(cache)})  # fmt: skip


def imported(done: subprocess.CompletedProcess[str], module: str) -> bool:
    return any(line.rstrip().endswith(f"| {module}") or line.rstrip().endswith(f"|   {module}")
               for line in done.stderr.splitlines())  # fmt: skip


@pytest.mark.integration
def test_a_repeated_apply_is_answered_as_before_and_any_change_acts_again(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    manifest = tmp_path / "app.yaml"
    manifest.write_text(stack(prefix))
    (tmp_path / "app.env").write_text("LEVEL=info\n")
    apply = ["apply", "-f", str(manifest)]

    first = reconcile(loaded, cache, *apply)  # creates, then plans again and remembers "converged"
    assert first.returncode == 0, first.stderr[-2000:]
    answered = reconcile(loaded, cache, *apply)
    assert answered.returncode == 0
    assert answered.stdout == "No changes: everything is as the manifests say.\n"
    assert not imported(answered, "pydantic") and not imported(answered, "yaml")

    # The same answer, in every output form, as with no cache at all.
    for command in (["plan", "-f", str(manifest)], ["plan", "-f", str(manifest), "-o", "json"],
                    ["apply", "-f", str(manifest), "-o", "json"]):  # fmt: skip
        uncached = reconcile(loaded, "", *command)
        cached = reconcile(loaded, cache, *command)
        assert (cached.returncode, cached.stdout) == (uncached.returncode, uncached.stdout) == (0, uncached.stdout)
        assert not imported(cached, "pydantic")

    # An edited env file recreates both containers.
    before = engine.observe().containers
    (tmp_path / "app.env").write_text("LEVEL=debug\n")
    changed = reconcile(loaded, cache, *apply)
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "recreate" in changed.stdout
    after = engine.observe().containers
    assert all(after[name].container_id != before[name].container_id for name in (f"{prefix}one", f"{prefix}two"))

    # Remembered again by that apply, then a container stopped behind the engine's back is started.
    again = reconcile(loaded, cache, *apply)
    assert again.stdout == answered.stdout and not imported(again, "pydantic")
    engine.stop_container(f"{prefix}one", timeout=1)
    restarted = reconcile(loaded, cache, *apply)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert imported(restarted, "pydantic")  # planned anew
    assert f"start container {prefix}one" in restarted.stdout
    assert engine.observe().containers[f"{prefix}one"].state == "running"
