"""Restart policies with no controller running: what a container's keeper runs when it exits.

Docker restarts containers with nothing but dockerd; the native engine has no daemon, so each
container's keeper (conmon), once it has recorded the exit, runs its *exit command* (as Podman's
do), which starts this module in the background (:mod:`supervision`: not after a stop by the
engine, nor when nothing ran), and ends. This process then decides with the one
restart policy (:mod:`reconciler.restarts`: whether to restart, and the backoff) and, after the
backoff, starts the container again through the engine, under the engine's lock.

It does nothing when someone else decides:

* the container was stopped by the engine (``stop``, a recreate, a removal: the ``stopping``
  marker) or on purpose (``reconcile stop``: :mod:`reconciler.holds`);
* a controller (``reconcile watch``) runs for this root and manages the container's stack
  (:mod:`reconciler.presence`): its
  restart manager is faster (it prepares the next run during the backoff) and counts restarts its
  own way, and two deciders would restart twice;
* the container was replaced, removed or started meanwhile (checked again after the backoff).

The backoff counts as the controller's does: the attempt number goes back to 0 once a run lasted
``resetAfter``; it is kept in the container's record between exits. Errors go to
``restarter.log`` in the container's directory (nobody reads this process's stderr).
Run as ``python -m reconciler.backends.native.restarter ROOT NAME CONTAINER_ID``.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from reconciler import holds, observed, presence, restarts
from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import records

ATTEMPT = "backoff_attempt"
LOG = "restarter.log"
LOG_LIMIT = 64 * 1024


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: python -m reconciler.backends.native.restarter ROOT NAME CONTAINER_ID", file=sys.stderr)
        return 2
    root, name, container_id = Path(args[0]), args[1], args[2]
    try:
        restart_after_exit(root, name, container_id)
    except Exception as exc:  # nobody reads our stderr: the record's folder keeps the reason
        note(root / "containers" / container_id, f"{type(exc).__name__}: {exc}")
        return 1
    return 0


def restart_after_exit(root: Path, name: str, container_id: str, *, rng: random.Random | None = None) -> bool:
    """Restart ``name`` if its policy says so and nobody else decides; whether it was started.
    Each decision is a line in the container's ``restarter.log``."""
    engine = native_engine.NativeEngine(root)
    record = engine.records.find(name)
    if record is None or record.container_id != container_id:
        return False
    if (why := _not_ours(root, record)) or (why := _no_restart(record)):
        note(record.directory, f"not restarted: {why}")
        return False
    backoff = record.spec.restart.backoff or restarts.DEFAULT_BACKOFF
    _, exit_info = records.state_of(record)
    finished = float(exit_info["finished_at"]) if exit_info else time.time()
    ran = finished - float(record.data.get("started_at") or finished)
    attempt = 0 if ran >= backoff.reset_after else int(record.data.get(ATTEMPT, -1)) + 1
    delay = restarts.restart_delay(backoff, attempt, rng=rng or random.Random())  # noqa: S311 (jitter)
    time.sleep(max(0.0, finished + delay - time.time()))
    # Looked at again after the wait: a stop, a removal or a start may have come meanwhile.
    record = engine.records.find(name)
    if record is None or record.container_id != container_id:
        return False
    if (why := _not_ours(root, record)) or records.state_of(record)[0] not in ("exited", "dead"):
        note(record.directory, f"not restarted: {why or 'started meanwhile'}")
        return False
    record.data[ATTEMPT] = attempt
    record.save()
    engine.start_container(name)
    note(record.directory, f"restarted after {delay:.3f}s (attempt {attempt})")
    return True


def _no_restart(record: records.Record) -> str:
    """Why the policy does not restart this exit ("" when it does)."""
    state, exit_info = records.state_of(record)
    if state not in ("exited", "dead"):
        return f"it is {state}"
    exit_code = int(exit_info["exit_code"]) if exit_info else None
    count = int(record.data.get("restart_count", 0))
    if not restarts.wants_restart(record.spec.restart, exit_code, restarts=count):
        return f"restart policy {record.spec.restart.policy}, exit {exit_code}, {count} restarts"
    return ""


def _not_ours(root: Path, record: records.Record) -> str:
    """Why someone else decides ("" when this process does): stopped by the engine or on purpose,
    or a controller of this root manages the container's stack."""
    if (record.directory / records.STOPPING).exists():
        return "stopped by the engine"
    if holds.Holds(root / "stopped").is_held(record.name, record.container_id):
        return "stopped on purpose (reconcile stop)"
    if presence.manages(root, record.labels.get(observed.LABEL_STACK)):
        return "the controller of this root decides"
    return ""


def note(directory: Path, message: str) -> None:
    """One line in the container's ``restarter.log`` (started again when it grows too large)."""
    path = directory / LOG
    try:
        mode = "w" if path.exists() and path.stat().st_size > LOG_LIMIT else "a"
        with path.open(mode, encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}\n")
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
