"""``runc exec`` gets its process in a root-only file, never env values on its command line
(issue 10, finding 2). A stand-in ``runc`` script records what it was given."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler.backends.native import bundles, runtime

FAKE_RUNC = """#!/bin/sh
# Record the argv, and the --process file's mode and content, as the real runc would read them.
printf '%s\\n' "$@" > "{out}/argv"
while [ $# -gt 0 ]; do
  if [ "$1" = --process ]; then stat -c %a "$2" > "{out}/mode"; stat -c %a "$(dirname "$2")" > "{out}/dirmode";
    cp "$2" "{out}/process.json"; echo "$2" > "{out}/path"; fi
  shift
done
[ -n "$SLOW" ] && exec sleep 30
echo ran
"""

PROCESS = {
    "args": ["sh"],
    "env": ["PATH=/bin", "DB_PASSWORD=s3cret-value"],
    "cwd": "/srv",
    "user": {"uid": 1000, "gid": 1000, "additionalGids": [1000, 27]},
    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
    "noNewPrivileges": True,
    "terminal": True,
}


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[runtime.Runtime, Path]:
    out = tmp_path / "out"
    out.mkdir()
    binary = tmp_path / "bin" / "runc"
    binary.parent.mkdir()
    binary.write_text(FAKE_RUNC.format(out=out))
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", f"{binary.parent}:/usr/bin:/bin")
    return runtime.Runtime(runtime.ensure_state_dir(tmp_path / "state"), binary="runc"), out


def test_exec_passes_the_process_in_a_private_file(fake: tuple[runtime.Runtime, Path]) -> None:
    engine_runtime, out = fake
    done = engine_runtime.exec("c1", bundles.exec_process(PROCESS, ["cat", "/etc/motd"]))
    assert done.stdout == b"ran\n"
    argv = (out / "argv").read_text()
    assert "s3cret" not in argv and "--env" not in argv and argv.endswith("c1\n")
    assert (out / "mode").read_text() == "600\n" and (out / "dirmode").read_text() == "700\n"
    # The container's process, with the exec's argv and no terminal.
    assert json.loads((out / "process.json").read_text()) == {
        **PROCESS,
        "args": ["cat", "/etc/motd"],
        "terminal": False,
    }
    assert not Path((out / "path").read_text().strip()).exists()
    assert list(engine_runtime.state_dir.iterdir()) == []


def test_process_file_is_removed_after_a_timeout(
    fake: tuple[runtime.Runtime, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine_runtime, _ = fake
    monkeypatch.setenv("SLOW", "1")
    done = engine_runtime.exec("c1", bundles.exec_process(PROCESS, ["true"]), timeout=0.5)
    assert done.returncode == -1 and b"timeout" in done.stderr
    assert list(engine_runtime.state_dir.iterdir()) == []


def test_process_files_left_by_a_killed_exec_are_removed(fake: tuple[runtime.Runtime, Path]) -> None:
    engine_runtime, _ = fake
    state = engine_runtime.state_dir
    old, torn, fresh = state / "exec-old.json", state / ".exec-x.json.7.tmp", state / "exec-new.json"
    for path in (old, torn, fresh):
        path.write_text("{}")
    for path in (old, torn):
        os.utime(path, (1000.0, 1000.0))
    (state / "container").mkdir()
    runtime.Runtime(state, binary="runc")  # opening the runtime sweeps
    assert sorted(path.name for path in state.iterdir()) == ["container", "exec-new.json"]
