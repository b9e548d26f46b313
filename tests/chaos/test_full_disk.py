"""The state root, and with it the containers' logs, on a small tmpfs that fills up during an apply.

A 64 MiB tmpfs (``mount -t tmpfs -o size=64m``, unmounted at the end) holds the whole root:
images, container directories, ``container.log`` files, named volumes. A first apply starts a
container that writes a file into a named volume and one that logs a line every 50 ms; then a
file fills the filesystem to the last byte and a bigger apply (four more containers) runs out of
space. It must fail with an error that says so, and leave what ran before running (the logger
too, whose log can no longer grow). After the filler is removed, a re-apply converges, the
logger's log grows again, and the file in the volume is intact.
"""

from __future__ import annotations

import contextlib
import errno
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import leftovers
from tests.chaos.conftest import chaos_seed, cli, load_busybox, run
from tests.support import images
from tests.support.polling import eventually

SIZE = "64m"
# Lines of 8000 bytes: each needs a fresh page of the log file, so the first line after the disk
# filled up meets ENOSPC (short lines would fill the last page for a while).
LOGGER = "line=$(head -c 8000 /dev/zero | tr \\\\0 x); while :; do echo $line; sleep 0.05; done"


@pytest.fixture
def small(tmp_path: Path) -> Iterator[leftovers.Traces]:
    """A root on its own size-limited tmpfs (``traces.root``); swept by name and id, then unmounted."""
    point = tmp_path / "small"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(point)], check=True)
    traces = leftovers.Traces(point / "root")
    try:
        yield traces
    finally:
        traces.sweep()
        subprocess.run(["umount", "-l", str(point)], check=False)


def stack(path: Path, prefix: str, extra: int) -> Path:
    image = images.LOCAL_BUSYBOX
    documents = [
        f"kind: Volume\nmetadata: {{name: {prefix}data, stack: {prefix}s}}\nspec: {{}}\n",
        f"kind: Container\nmetadata: {{name: {prefix}keeper, stack: {prefix}s}}\n"
        f"spec: {{image: '{image}', command: [sh, -c, 'exec sleep 3600'],"
        f" mounts: [{{type: volume, source: {prefix}data, target: /data}}], stopTimeout: 0s}}\n",
        f"kind: Container\nmetadata: {{name: {prefix}logger, stack: {prefix}s}}\n"
        f"spec: {{image: '{image}', command: [sh, -c, '{LOGGER}'], stopTimeout: 0s}}\n",
        *(
            f"kind: Container\nmetadata: {{name: {prefix}more{i}, stack: {prefix}s}}\n"
            f"spec: {{image: '{image}', command: [sleep, '3600'], stopTimeout: 0s}}\n"
            for i in range(extra)
        ),
    ]
    path.write_text("".join(f"---\napiVersion: reconciler/v1\n{d}" for d in documents))
    return path


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as handle:
        while chunk:
            try:
                written += handle.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2]
    return written


def states(root: Path, manifest: Path) -> dict[str, str]:
    report = json.loads(run(cli(root, "status", "-f", str(manifest), "-o", "json")).stdout)
    return {o["name"]: o["state"] for o in report["objects"] if o["kind"] == "Container"}


def log_size(root: Path, prefix: str) -> int:
    for record in root.glob("containers/*/container.json"):
        with contextlib.suppress(OSError, ValueError):
            if json.loads(record.read_text())["name"] == f"{prefix}logger":
                return (record.parent / "container.log").stat().st_size
    return -1


@pytest.mark.integration
def test_a_full_state_filesystem_fails_the_apply_clearly_and_keeps_what_ran(
    small: leftovers.Traces, prefix: str, tmp_path: Path
) -> None:
    root = small.root
    load_busybox(root, tmp_path)
    before = stack(tmp_path / "before.yaml", prefix, 0)
    run(cli(root, "apply", "-f", str(before)))
    run(cli(root, "exec", f"{prefix}keeper", "--", "sh", "-c", f"echo {prefix} > /data/keep.txt"))
    small.note()
    eventually(lambda: log_size(root, prefix) > 0, what="the logger's first line")
    filler = root.parent / "filler"
    fill(filler)
    bigger = stack(tmp_path / "bigger.yaml", prefix, 4)
    seed = chaos_seed()
    try:
        failed = run(cli(root, "apply", "-f", str(bigger)), check=False)
        output = failed.stdout + failed.stderr
        assert failed.returncode != 0, f"an apply on a full filesystem succeeded (seed {seed}): {output[-2000:]}"
        assert "No space left on device" in output or "no space" in output.lower(), (
            f"the failed apply does not say the disk is full: {output[-2000:]}"
        )
        running = states(root, before)
        assert running == {f"{prefix}keeper": "running", f"{prefix}logger": "running"}, (
            f"what ran before the full filesystem no longer runs (seed {seed}): {running}"
        )
    finally:
        small.note()
        filler.unlink()
    grown = log_size(root, prefix)
    eventually(lambda: log_size(root, prefix) > grown,
               what="the logger's log to grow again once space was freed (its keeper, conmon, must outlive a full disk)")  # fmt: skip
    run(cli(root, "apply", "-f", str(bigger)))
    small.note()
    assert set(states(root, bigger).values()) == {"running"}, states(root, bigger)
    kept = run(cli(root, "exec", f"{prefix}keeper", "--", "cat", "/data/keep.txt")).stdout
    assert kept == f"{prefix}\n", f"the named volume lost its data: {kept!r}"
    run(cli(root, "delete", "--stack", f"{prefix}s", "--prune-volumes"))
    left = small.settled()
    assert not left, f"after delete --stack, left on the host: {leftovers.describe(left)}"
