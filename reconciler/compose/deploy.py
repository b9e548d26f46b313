"""Compose's ``deploy`` section and ``scale`` as manifest fields: replicas, resources, restart.

Sits above :mod:`.translating`, under :mod:`.services`. Only what a single host honours maps:
``replicas``, ``resources.limits`` (memory, cpus, pids), ``resources.reservations.memory`` and
``restart_policy``; swarm's placement, update and rollback settings are refused.
This module must not read files.
"""

from __future__ import annotations

from reconciler.compose import shorthands, translating
from reconciler.compose.translating import Context, ServiceDocument

_LIMITS = {"memory": "memory", "cpus": "cpus", "pids": "pids"}


def deploy(context: Context, current: ServiceDocument, value: object) -> None:
    here = (*current.path, "deploy")
    for field, item in value.items() if isinstance(value, dict) else []:
        path = (*here, field)
        if field == "replicas" or field.startswith("x-") or (field == "mode" and item == "replicated"):
            continue
        if field == "resources" and isinstance(item, dict):
            _resources(context, current, path, item)
        elif field == "restart_policy" and isinstance(item, dict):
            _restart_policy(context, current, path, item)
        else:
            context.refuse(path, path, f"deploy.{field} is swarm's; it has no meaning on one host here")


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


def replicas(context: Context, current: ServiceDocument, spec: dict[str, object]) -> None:
    """``deploy.replicas`` (or ``scale``) other than 1 as the manifest's ``replicas``."""
    deploy_section = spec.get("deploy")
    field: tuple[str, ...] = ("scale",)
    count = spec.get("scale", 1)
    if isinstance(deploy_section, dict) and "replicas" in deploy_section:
        field, count = ("deploy", "replicas"), deploy_section["replicas"]
    if count != 1:
        current.put(context, ("spec", "replicas"), count, field)
