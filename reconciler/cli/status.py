"""``reconcile status``: every owned object's state, health, exit code, restarts and drift.

Where it sits: a command module of ``reconciler.cli``. Through the daemon it shows the
controller's view (with each container's restart backoff, and one ``File`` row per manifest
that does not parse); embedded, it observes the engine once and asks
:func:`reconciler.operations.status` (drift against ``-f`` manifests when given). Both print
through one table description here, with the same columns and the same keys in every object
either way (:data:`ROW_DEFAULTS` fills what one side does not know: no backoff embedded). Both
name the state they show, the root and the engine: on stderr before the table (stdout stays the
table), and as ``root`` and ``engine`` in the ``-o json`` document (``{"version": 1, "root",
"engine", "objects": [...]}``, the same shape either way).

It must not import the models, the planner or an engine at module level, nor build rows itself
beyond turning the daemon's file reports into rows.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from reconciler.cli import console, options, remote

HEADER = ("KIND", "NAME", "STACK", "STATE", "HEALTH", "EXIT", "RESTARTS", "IMAGE", "PORTS", "AGE", "BACKOFF", "DRIFT")
EMPTY = "No objects managed by reconciler."
# Every object's keys, daemon or not; a key one side does not know gets its empty value.
ROW_DEFAULTS: dict[str, Any] = {
    "kind": "", "name": "", "stack": None, "state": "", "health": None, "exitCode": None, "restarts": None,
    "image": None, "ports": [], "startedAt": None, "createdAt": None, "id": None, "specHash": None, "backoff": None,
    "lastError": None, "waiting": "", "drift": "", "heldBack": None,
}  # fmt: skip
# HEALTH of a container without a health check (blank would read as "not known yet").
NO_HEALTH_CHECK = "none"


def add_parsers(commands: options.Commands, common: list[argparse.ArgumentParser]) -> None:
    p = options.add_command(
        commands,
        "status",
        cmd_status,
        "state, health, exit code, restarts and drift of every object",
        example="reconcile status -f stack.yaml -o json",
        parents=common,
    )
    options.add_files(p, required=False)
    options.add_output(p)


def cmd_status(args: argparse.Namespace) -> int:
    if (code := status_via_daemon(args)) is not None:
        return code
    from reconciler import operations, rollouts

    desired = options.load_files(args) if args.file else None
    chosen = options.of(args)
    with options.engine_session(chosen) as target:
        rows = operations.status(target, desired)
    # The rollbacks this root remembers (an embedded apply and a daemon share them).
    held_back = rollouts.Records.beside(chosen.holds()).shown(r["name"] for r in rows if r["kind"] == "Container")
    return show(args, [{**row, "heldBack": held_back.get(row["name"])} if row["kind"] == "Container" else row
                       for row in rows], daemon=False)  # fmt: skip


def status_via_daemon(args: argparse.Namespace) -> int | None:
    """``reconcile status`` through the daemon: its view (backoff, errors, health) of every object;
    ``None`` when no daemon answers (run embedded)."""
    daemon = remote.daemon_client(options.of(args))
    if daemon is None:
        return None
    document = daemon.status()
    if args.output != "json" and document.get("git"):
        console.err(git_text(document["git"]))
    return show(args, daemon_rows(document), daemon=True)


def git_text(git: dict[str, Any]) -> str:
    """A git source's line (``watch --git``): the commit in force, and the last one tried when another."""
    in_force = (git.get("inForce") or {}).get("commit") or ""
    line = f"git {git['url']} {git['branch']}: commit {in_force[:12] or 'none yet'} in force"
    tried = git.get("lastTried") or {}
    if tried and tried.get("commit") != in_force:
        line += f"; last tried {tried['commit'][:12]}: {tried['state']}"
    if (git.get("lastFetch") or {}).get("error"):
        line += f"; fetch failed: {git['lastFetch']['error']}"
    return line


def show(args: argparse.Namespace, rows: list[dict[str, Any]], *, daemon: bool) -> int:
    """The rows, named by the root and engine they belong to (a daemon answers only for its own)."""
    chosen = options.of(args)
    rows = [{**ROW_DEFAULTS, **row} for row in rows]
    if args.output == "json":
        document = {"version": 1, "root": chosen.target_root, "engine": chosen.engine, "objects": rows}
        console.out(json.dumps(document, indent=2))
        return console.EXIT_OK
    through = f", through the daemon on {chosen.socket}" if daemon else ""
    console.err(f"root {chosen.target_root}, engine {chosen.engine}{through}")
    now = time.time()
    return console.print_rows(rows, output="text", empty=EMPTY, header=HEADER, cells=lambda r: cells(r, now))


def cells(row: dict[str, Any], now: float) -> tuple[str, ...]:
    """One row's cells, in :data:`HEADER`'s order."""
    exit_code = "" if row["exitCode"] is None else str(row["exitCode"])
    restarts = "" if row["restarts"] is None else str(row["restarts"])
    container = row["kind"] == "Container"
    health = row["health"] or (NO_HEALTH_CHECK if container and row["state"] != "absent" else "")
    # Since its creation, as ``docker ps`` (CREATED) and ``kubectl get`` (AGE) count it.
    born = row["createdAt"] if row["createdAt"] is not None else row["startedAt"]
    age = age_text(now - born) if born is not None else ""
    return (row["kind"], row["name"], row["stack"] or "", row["state"], health, exit_code, restarts,
            row["image"] or "", ",".join(row["ports"]), age, backoff_text(row), detail_text(row))  # fmt: skip


def age_text(seconds: float) -> str:
    """How long ago, as kubectl prints it: ``45s``, ``5m``, ``2h``, ``3d``."""
    whole = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def daemon_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The daemon's objects, plus one ``File`` row per manifest that does not parse."""
    rows = list(status.get("objects", []))
    for report in status.get("files", []):
        if report.get("state") == "error":
            kept = " (last good version in force)" if report.get("usingLastGood") else ""
            rows.append({"kind": "File", "name": report["path"], "stack": ",".join(report.get("stacks", [])),
                         "state": "error", "lastError": "; ".join(report.get("errors", [])) + kept,
                         "drift": ""})  # fmt: skip
    return rows


def backoff_text(row: dict[str, Any]) -> str:
    backoff = row.get("backoff")
    if not backoff:
        return ""
    if backoff.get("gaveUp"):
        return "gave up"
    if backoff.get("nextRestartIn") is not None:
        return f"restart in {backoff['nextRestartIn']:g}s"
    return ""


def detail_text(row: dict[str, Any]) -> str:
    """The DRIFT column: a rolled-back spec held back (the old container serves: that is what
    stands, whatever a plan without the rollbacks calls drift), else drift, else what a container
    waits for, else its last error."""
    if row.get("heldBack"):
        return str(row["heldBack"]["text"])
    return row.get("drift") or row.get("waiting") or (f"error: {row['lastError']}" if row.get("lastError") else "-")
