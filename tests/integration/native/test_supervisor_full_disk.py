"""A full disk does not kill a container's keeper (conmon): with the state root on a small tmpfs
filled to the last block, a container printing as fast as it can keeps running, its output is
drained (and dropped, as Docker's json-file driver drops it), the log grows again once space
returns, and a stop on a full disk still records the exit (conmon's copy on ``/run``)."""

from __future__ import annotations

import contextlib
import errno
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import mounts, processes, records
from tests.contract import suite
from tests.support import images
from tests.support.polling import eventually

PRINTER = 'i=0; while true; do echo "line $i"; i=$((i+1)); done'
# More than a pipe holds (64 KiB): written while the disk is full, so the keeper drained it.
DRAINED = 1024 * 1024


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """The state root on a tmpfs of its own, small enough to fill (overrides conftest's)."""
    state = tmp_path / "root"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(state)], check=True)
    yield state
    for rootfs in sorted(state.glob("containers/*/rootfs")):
        if mounts.is_mounted(rootfs):
            mounts.unmount(rootfs, detach=True)
    subprocess.run(["umount", "--lazy", str(state)], check=True)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no block left."""
    with path.open("wb", buffering=0) as handle:
        chunk = b"\0" * (1024 * 1024)
        while True:
            try:
                handle.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        with contextlib.suppress(OSError):  # the last blocks, smaller than a chunk
            while handle.write(b"\0" * 4096):
                pass


def written_by(pid: int) -> int:
    """Bytes the process wrote so far (its output included), from /proc/<pid>/io."""
    text = Path(f"/proc/{pid}/io").read_text()
    return int(re.search(r"^wchar: (\d+)$", text, re.MULTILINE)[1])  # type: ignore[index]


@pytest.mark.integration
def test_a_full_disk_keeps_the_container_and_its_keeper_and_records_the_exit(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str
) -> None:
    name = f"{prefix}printer"
    engine.create_container(
        suite.container_request(name, images.LOCAL_BUSYBOX, command=["sh", "-c", PRINTER], networkMode="none")
    )
    engine.start_container(name)
    record = engine.records.get(name)
    keeper = records.read_json(record.directory / records.SUPERVISOR)
    assert keeper is not None
    init_pid = int(keeper["init_pid"])
    filler = loaded / "filler"
    fill(filler)
    before = written_by(init_pid)
    eventually(lambda: written_by(init_pid) > before + DRAINED, what="the container writing on a full disk")
    assert processes.is_running(int(keeper["pid"]), keeper["start_time"]), "the keeper died"
    assert engine.observe().containers[name].state == "running"

    filler.unlink()
    log = record.directory / "container.log"
    grown = log.stat().st_size
    eventually(lambda: log.stat().st_size != grown, what="the log written again once space returned")

    fill(filler)  # full again: the exit must be recorded all the same
    engine.stop_container(name, timeout=1)
    stopped = engine.observe().containers[name]
    assert stopped.state == "exited" and stopped.exit_code in (137, 143), stopped
    filler.unlink()
