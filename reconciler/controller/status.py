"""The controller's status document: every owned object (its own and other folders'), its files and its stacks.

Where it sits: the loop's ``status`` (what ``GET /status`` and ``reconcile status`` through the
daemon show) calls :func:`render` with its parts; this module reads them and builds plain JSON.
It must not change any of them, observe the engine or plan: status shows what the controller last
saw and decided. Health comes from :meth:`Health.health_of` and waiting from :meth:`Health.gate`,
the same answers the ``dependsOn`` gate acts on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler import hashing, manifests, observed
from reconciler.controller import folder, health, queue, report, restarting


def render(
    *,
    engine_name: str,
    desired: folder.DesiredFolder,
    actual: observed.Observed,
    checks: health.Health,
    driver: restarting.RestartDriver,
    problems: report.Problems,
    work: queue.WorkQueue,
    now: float,
    held_back: Mapping[str, dict[str, object]] | None = None,
) -> dict[str, Any]:
    """Every object (state, health, exit code, restarts, backoff, last error, drift, hash), and
    for a container whose replacement was rolled back, the spec held back (``held_back``, from
    :meth:`rollouts.Records.shown`)."""
    held_back = held_back or {}
    snapshot = desired.last()
    wanted = snapshot.desired if snapshot else manifests.Desired.empty()
    known = desired.known_stacks()
    drift = problems.drift()
    # Every owned object, whichever folder declares it: the same list ``status`` shows without
    # the daemon (the controller observes them all; only its own stacks in detail).
    names = sorted(set(wanted.containers) | set(actual.containers))
    rows = [
        _container_row(name, wanted.containers.get(name), actual=actual, checks=checks, driver=driver,
                       problems=problems, drift=drift, now=now, held_back=held_back.get(name))
        for name in names
    ]  # fmt: skip
    for kind, wanted_map, present_map in (
        ("Network", wanted.networks, actual.networks),
        ("Volume", wanted.volumes, actual.volumes),
    ):
        for name in sorted(set(wanted_map) | set(present_map)):
            present = present_map.get(name)
            rows.append({
                "kind": kind, "name": name,
                "stack": present.stack if present else wanted_map[name].stack,
                "state": "present" if present else "absent",
                "lastError": problems.object_error(f"{kind.lower()}/{name}"),
                "drift": drift.get(f"{kind.lower()}/{name}", ""),
                "specHash": present.spec_hash if present else None,
            })  # fmt: skip
    return {
        "engine": engine_name,
        "folder": str(desired.path),
        "objects": rows,
        "files": [_file_json(file, problems) for file in (snapshot.files.values() if snapshot else ())],
        "stacks": {
            stack: {"error": problems.stack_error(stack), "frozen": bool(snapshot and stack in snapshot.frozen)}
            for stack in sorted(known)
        },
        "queueDepth": work.depth(),
        "passesInProgress": work.processing(),
    }


def _file_json(file: folder.FileReport, problems: report.Problems) -> dict[str, Any]:
    """A file's report, with what keeps it from being applied although it parses (an object of
    it that another stack owns): such a file is in error too, and says why."""
    document = file.to_json()
    if blocked := problems.file_errors(file.path):
        document.update(state="error", errors=[*document["errors"], *blocked])
    return document


def _container_row(
    name: str,
    wanted: manifests.DesiredContainer | None,
    *,
    actual: observed.Observed,
    checks: health.Health,
    driver: restarting.RestartDriver,
    problems: report.Problems,
    drift: dict[str, str],
    now: float,
    held_back: dict[str, object] | None,
) -> dict[str, Any]:
    present = actual.containers.get(name)
    made, backoff = driver.status_of(name, now)
    # Restarts the engine made itself count too (Docker's policy; never both at once).
    if present is not None and not (wanted is not None and driver.owns(wanted)):
        made += present.restart_count
    running = present is not None and present.state == "running"
    return {
        "kind": "Container", "name": name,
        "stack": wanted.stack if wanted else (present.stack if present else None),
        "state": present.state if present else "absent",
        "health": (checks.health_of(present) or present.unprobed_health) if present else None,
        "exitCode": present.exit_code if present else None,
        "restarts": made,
        "backoff": backoff,
        "lastError": problems.object_error(f"container/{name}"),
        "drift": drift.get(f"container/{name}", ""),
        "specHash": present.spec_hash if present else (hashing.container_hash(wanted) if wanted else None),
        "id": present.container_id[:12] if present else None,
        "waiting": checks.gate(wanted, actual) if wanted and not running else "",
        "image": present.image if present else (wanted.spec.image if wanted else None),
        "ports": list(present.published_ports) if present else [],
        "startedAt": present.started_at if present else None,
        "createdAt": present.created_at if present else None,
        "heldBack": held_back,
    }  # fmt: skip
