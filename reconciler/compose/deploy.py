"""Compose's ``deploy`` section and ``scale`` as manifest fields: replicas, resources, restart,
rollouts and placement.

Sits above :mod:`.translating`, under :mod:`.services`. What maps: ``replicas``,
``resources.limits`` (memory, cpus, pids), ``resources.reservations.memory``, ``restart_policy``,
``placement.constraints`` (the swarm engine's; the others run on their one host), and of
``update_config`` what means what the manifests' rollouts do: ``order`` is ``strategy``,
``monitor`` is ``minReadySeconds`` (the swarm engine passes it back as Swarm's monitor window),
``failure_action: rollback`` and ``max_failure_ratio: 0`` are what every replacement does here.
The rest (``parallelism``, ``delay``, the other failure actions, ``rollback_config``, placement
preferences ...) has no manifest field and is refused by name with its reason.
This module must not read files.
"""

from __future__ import annotations

from collections.abc import Callable

from reconciler.compose import shorthands, translating
from reconciler.compose.translating import Context, ServiceDocument

_LIMITS = {"memory": "memory", "cpus": "cpus", "pids": "pids"}
Place = tuple[str | int, ...]


def deploy(context: Context, current: ServiceDocument, value: object) -> None:
    here = (*current.path, "deploy")
    for field, item in value.items() if isinstance(value, dict) else []:
        path = (*here, field)
        if field == "replicas" or field.startswith("x-") or (field == "mode" and item == "replicated"):
            continue
        section = _SECTIONS.get(field)
        if section is not None and isinstance(item, dict):
            section(context, current, path, item)
        elif section is not None:
            context.refuse(path, path, f"deploy.{field} must be a mapping")
        elif field in _REFUSED:
            context.refuse(path, path, f"deploy.{field}: {_REFUSED[field]}")
        else:
            context.refuse(path, path, f"deploy.{field} has no manifest field here")


def _resources(
    context: Context, current: ServiceDocument, path: tuple[str | int, ...], item: dict[str, object]
) -> None:
    for kind, settings in item.items():
        for key, setting in settings.items() if isinstance(settings, dict) else []:
            where = (*path, kind, key)
            if kind == "limits" and key in _LIMITS:
                amount = shorthands.size(setting) if key == "memory" else _number(setting)
                current.put(context, ("spec", "resources", _LIMITS[key]), amount, where[len(current.path) :])
            elif kind == "reservations" and key == "memory":
                current.put(
                    context, ("spec", "memoryReservation"), shorthands.size(setting), where[len(current.path) :]
                )
            else:
                context.refuse(where, where, f"deploy.resources.{kind}.{key} has no manifest field here")


def _number(value: object) -> object:
    try:
        return float(value) if isinstance(value, str) and value.replace(".", "", 1).isdigit() else value
    except ValueError:
        return value


def _restart_policy(
    context: Context, current: ServiceDocument, path: tuple[str | int, ...], item: dict[str, object]
) -> None:
    spec = context.merged.value["services"][current.name]  # type: ignore[index]
    if "restart" in spec:
        return  # restart: wins, as in compose
    restart: dict[str, object] = {"policy": translating.RESTART_CONDITIONS.get(str(item.get("condition", "any")), "?")}
    for key, setting in item.items():
        if key == "max_attempts":
            restart["maxRetries"] = setting
        elif key == "delay":
            restart.setdefault("backoff", {})["initial"] = setting  # type: ignore[index]
        elif key == "window":
            restart.setdefault("backoff", {})["resetAfter"] = setting  # type: ignore[index]
        elif key != "condition":
            context.refuse(path, (*path, key), f"deploy.restart_policy.{key} has no manifest field here")
    current.put(context, ("spec", "restart"), restart, path[len(current.path) :])


# Settings whose value here is the one behaviour the rollouts have: accepted, nothing to write.
_SAME = {"failure_action": "rollback", "max_failure_ratio": 0}
_UPDATE_REFUSED = {
    "parallelism": "replicas are replaced together here, each old one serving until its own replacement "
    "is ready (the swarm engine: one task at a time); there is no setting, leave it out",
    "delay": "replacements follow each other without a pause here; leave it out",
    "failure_action": "a replacement that does not become ready is always rolled back here (the old "
    "container keeps serving); write rollback or leave it out",
    "max_failure_ratio": "any replacement that does not become ready is rolled back here; write 0 or leave it out",
}
_REFUSED = {
    "rollback_config": "a rollback here restores every replaced container at once, with no settings; leave it out",
    "endpoint_mode": "replicas answer by DNS round robin on their networks here; leave it out",
    "labels": "the service's labels are swarm's; put them in the service's labels:",
}


def _update_config(
    context: Context, current: ServiceDocument, path: tuple[str | int, ...], item: dict[str, object]
) -> None:
    """``order`` → ``strategy``, ``monitor`` → ``minReadySeconds``; the others refused unless
    they ask for what every replacement does here anyway (:data:`_SAME`)."""
    for key, setting in item.items():
        where = (*path, key)
        if key == "order" and setting in ("start-first", "stop-first"):
            current.put(context, ("spec", "strategy"), setting, where[len(current.path) :])
        elif key == "order":
            context.refuse(where, where, f"deploy.update_config.order {setting!r}: start-first or stop-first")
        elif key == "monitor" and not isinstance(setting, str):
            context.refuse(where, where, "deploy.update_config.monitor is a duration written as text, e.g. 10s")
        elif key == "monitor":
            current.put(context, ("spec", "minReadySeconds"), setting, where[len(current.path) :])
        elif key in _SAME and setting == _SAME[key]:
            continue
        elif key in _UPDATE_REFUSED:
            context.refuse(where, where, f"deploy.update_config.{key}: {_UPDATE_REFUSED[key]}")
        elif not key.startswith("x-"):
            context.refuse(where, where, f"deploy.update_config.{key} has no manifest field here")


def _placement(
    context: Context, current: ServiceDocument, path: tuple[str | int, ...], item: dict[str, object]
) -> None:
    for key, setting in item.items():
        where = (*path, key)
        if key == "constraints":
            current.put(context, ("spec", "placement", "constraints"), setting, where[len(current.path) :])
        elif not key.startswith("x-"):
            context.refuse(where, where, f"deploy.placement.{key} has no manifest field here (constraints only)")


def replicas(context: Context, current: ServiceDocument, spec: dict[str, object]) -> None:
    """``deploy.replicas`` (or ``scale``) other than 1 as the manifest's ``replicas``."""
    deploy_section = spec.get("deploy")
    field: tuple[str, ...] = ("scale",)
    count = spec.get("scale", 1)
    if isinstance(deploy_section, dict) and "replicas" in deploy_section:
        field, count = ("deploy", "replicas"), deploy_section["replicas"]
    if count != 1:
        current.put(context, ("spec", "replicas"), count, field)


Section = Callable[[Context, ServiceDocument, Place, dict[str, object]], None]
_SECTIONS: dict[str, Section] = {
    "resources": _resources,
    "restart_policy": _restart_policy,
    "update_config": _update_config,
    "placement": _placement,
}
