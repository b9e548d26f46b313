"""The chaos suite's 16-container stack: writing it, killing a command at a point, checking convergence.

The probes (:func:`records`, :func:`half_created`, :func:`supervised`) read the state root and
/proc only, no engine object and no CLI: they run every few milliseconds while an ``apply`` or
``watch`` works and must not take the engine's lock. :func:`converged` asks the real ``status``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from reconciler import hashing, manifests
from tests.chaos import leftovers
from tests.chaos.conftest import REPO, cli, run
from tests.support import images
from tests.support.polling import eventually

CONTAINERS = 16
KEEPER = b"/conmon"  # the end of the keeper's program path, its first word


def trial_value(index: int, trial: int) -> str:
    """The ``TRIAL`` variable of container ``index`` in ``trial``: every trial changes half of the
    stack (alternately the even and the odd containers), so a recreate costs 8 containers, not 16."""
    return str(trial if index % 2 == trial % 2 else trial - 1)


def write_stack(path: Path, prefix: str, trial: int, image: str = images.LOCAL_BUSYBOX) -> Path:
    """16 containers of stack ``<prefix>s`` running ``sleep``, with ``TRIAL`` = :func:`trial_value`."""
    path.write_text("".join(
        f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}c{i}, stack: {prefix}s}}\n"
        f"spec: {{image: '{image}', command: [sleep, '3600'], stopTimeout: 0s,"
        f" env: {{TRIAL: '{trial_value(i, trial)}'}}}}\n"
        for i in range(CONTAINERS)
    ))  # fmt: skip
    return path


def records(root: Path) -> dict[str, str]:
    """Container id → the TRIAL of its recorded spec, for every record present now."""
    found = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir(root / "containers"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                data = json.loads((root / "containers" / entry / "container.json").read_bytes())
                env = data.get("env") or data["spec"]["env"]
                found[entry] = str(env["TRIAL"])
    return found


def half_created(root: Path) -> bool:
    with contextlib.suppress(OSError):
        return any(not (d / "container.json").exists() for d in (root / "containers").iterdir())
    return False


def supervised(root: Path) -> set[str]:
    """Ids of the containers whose keeper (conmon) runs."""
    needle = str(root / "containers").encode()
    found = set()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if command.split(b"\0", 1)[0].endswith(KEEPER) and needle in command:
                found.add(command.split(needle + b"/", 1)[1][:64].decode())
    return found


def kill_at(argv: list[str], reached: Callable[[], bool], traces: leftovers.Traces, log: Path) -> bool:
    """Run ``argv`` until ``reached()``, then SIGKILL it; whether it was still running then."""
    with log.open("ab") as out, subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=out,
                                                 start_new_session=True) as process:  # fmt: skip

        def point() -> bool:
            traces.note()
            return process.poll() is not None or reached()

        try:
            eventually(point, timeout=120, interval=0.02, what=f"the kill point of {argv[9:]}")
        finally:
            killed = process.poll() is None
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    traces.note()
    return killed


def expected_hashes(manifest: Path) -> dict[str, str]:
    """Each container's spec hash, as ``reconcile hash`` prints it (computed here: no process)."""
    desired = manifests.load([str(manifest)])
    return {name: hashing.container_hash(container) for name, container in desired.containers.items()}


def converged(root: Path, manifest: Path, prefix: str, trial: int) -> list[str]:
    """The 16 container ids if ``status`` shows them running with the new spec (else AssertionError)."""
    report = json.loads(run(cli(root, "status", "-f", str(manifest), "-o", "json")).stdout)
    want = expected_hashes(manifest)
    containers = {o["name"]: o for o in report["objects"] if o["kind"] == "Container"}
    assert set(containers) == {f"{prefix}c{i}" for i in range(CONTAINERS)} == set(want), sorted(containers)
    wrong = {n: (o["state"], o["specHash"][-8:], o["drift"]) for n, o in containers.items()
             if o["state"] != "running" or o["specHash"] != want[n] or o["drift"]}  # fmt: skip
    assert not wrong, f"trial {trial}: not converged: {wrong}"
    ids = set(records(root))
    assert len(ids) == CONTAINERS, f"trial {trial}: {len(ids)} container records, want {CONTAINERS}"
    return sorted(ids)
