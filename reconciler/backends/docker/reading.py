"""Docker backend, Engine API answers → the project's values: what Docker says, as ``observed`` sees it.

Where it sits: the engine hands the daemon's decoded JSON (an inspect, a list entry, a log frame's
line, an event) to these functions and gets ``observed`` / ``engine`` values back. They are pure:
no daemon, no docker SDK. A container's limits, times and restart count are only in its inspect;
a list entry gives who owns it and what it holds, which is all ``observe(stacks=...)`` needs for
the containers of other stacks.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from reconciler import observed
from reconciler.backends.docker import configs

if TYPE_CHECKING:  # annotations only here
    from reconciler import engine

# Docker's zero time, used for "never started" / "never finished".
_ZERO_TIME_PREFIX = "0001-01-01"
# Events of labelled containers that the Engine contract names; others (exec_*, kill ...) are noise.
EVENT_ACTIONS: frozenset[str] = frozenset({"create", "start", "die", "stop", "destroy", "oom", "health_status"})
# What the event subscription asks dockerd for: the contract's actions, plus the ones that make a
# cached inspect stale. Filtering on the daemon's side matters: each Docker health check is two
# exec_* events, which would otherwise be sent, decoded and dropped (dockerd matches
# ``health_status`` as a prefix of ``health_status: healthy``).
SUBSCRIBED_ACTIONS: tuple[str, ...] = (
    *sorted(EVENT_ACTIONS), "kill", "pause", "rename", "restart", "unpause", "update",
)  # fmt: skip


def timestamp(text: str | None) -> float | None:
    """RFC 3339 with nanoseconds (``2026-11-28T05:31:31.159706382Z``) → epoch seconds."""
    if not text or text.startswith(_ZERO_TIME_PREFIX):
        return None
    head, _, rest = text.partition(".")
    fraction = ""
    zone = "+00:00"
    if rest:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        fraction, zone_text = rest[:digits], rest[digits:]
        zone = "+00:00" if zone_text in ("Z", "") else zone_text
    elif head.endswith("Z"):
        head = head[:-1]
    else:
        # "2026-11-28T05:31:31+02:00": the zone follows the seconds directly.
        for sign in ("+", "-"):
            position = head.rfind(sign, 11)
            if position > 0:
                head, zone = head[:position], head[position:]
                break
    moment = datetime.datetime.fromisoformat(head + zone)
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


STATES: dict[str, observed.ContainerState] = {
    "created": "created",
    "running": "running",
    "paused": "paused",
    "restarting": "restarting",
    "exited": "exited",
    "dead": "dead",
    # A container being removed is on its way out; the planner treats it as not running.
    "removing": "exited",
}


def bound_ports(settings: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The host ports dockerd bound for a running container (random ones resolved), as ``docker
    ps`` prints them; IPv6 twins of an IPv4 binding are left out. None when nothing is bound (a
    stopped container): then the recorded spec says what it publishes."""
    texts = []
    for inside, bindings in sorted((settings.get("Ports") or {}).items()):
        container_port, _, protocol = str(inside).partition("/")
        for binding in bindings or ():
            if binding.get("HostIp") == "::":
                continue
            texts.append(observed.port_text({"containerPort": container_port, "protocol": protocol,
                                             "hostIP": binding.get("HostIp") or None,
                                             "hostPort": binding.get("HostPort")}))  # fmt: skip
    return tuple(texts) or None


def observed_container(inspected: Mapping[str, Any]) -> observed.ObservedContainer:
    """An ``ObservedContainer`` from ``GET /containers/{id}/json``."""
    state = inspected.get("State") or {}
    config = inspected.get("Config") or {}
    host = inspected.get("HostConfig") or {}
    settings = inspected.get("NetworkSettings") or {}
    status = STATES.get(str(state.get("Status", "")), "dead")
    finished_at = timestamp(state.get("FinishedAt"))
    exit_code: int | None = None
    if status in ("exited", "dead") and finished_at is not None:
        exit_code = int(state.get("ExitCode", 0))
    health = (state.get("Health") or {}).get("Status")
    memory = host.get("Memory") or 0
    nano_cpus = host.get("NanoCpus") or 0
    cpu_quota = host.get("CpuQuota") or 0
    cpu_period = host.get("CpuPeriod") or 0
    # Containers made by others (or older versions) may carry NanoCpus; ours carry a quota.
    cpus: float | None = nano_cpus / 1e9 if nano_cpus > 0 else None
    if cpus is None and cpu_quota > 0:
        cpus = cpu_quota / (cpu_period or configs.CPU_PERIOD)
    pids = host.get("PidsLimit") or 0
    volumes = sorted(
        str(mount["Source"])
        for mount in host.get("Mounts") or ()
        if mount.get("Type") == "volume" and mount.get("Source")
    )
    return observed.ObservedContainer(
        name=str(inspected.get("Name", "")).lstrip("/"),
        labels=dict(config.get("Labels") or {}),
        container_id=str(inspected["Id"]),
        image=str(config.get("Image", "")),
        image_id=str(inspected.get("Image", "")),
        state=status,
        exit_code=exit_code,
        created_at=timestamp(inspected.get("Created")),
        started_at=timestamp(state.get("StartedAt")),
        finished_at=finished_at,
        restart_count=int(inspected.get("RestartCount") or 0),
        health=str(health) if health and health != "none" else None,
        oom_killed=bool(state.get("OOMKilled")),
        resources=observed.ObservedResources(
            memory=memory if 0 < memory < configs.UNLIMITED_MEMORY else None,
            cpus=cpus,
            pids=pids if pids > 0 else None,
        ),
        networks=tuple(sorted((settings.get("Networks") or {}).keys())),
        volumes=tuple(volumes),
        ports=bound_ports(settings),
    )


def listed_container(listed: Mapping[str, Any]) -> observed.ObservedContainer:
    """An ``ObservedContainer`` from one entry of ``GET /containers/json`` (no inspect): enough to
    know who owns it and what it holds, not its limits, times or restart count."""
    names = [str(name).lstrip("/") for name in listed.get("Names") or ()]
    # Links add "other/alias" names; the container's own name has no slash.
    name = next((n for n in names if "/" not in n), names[0] if names else str(listed["Id"]))
    settings = listed.get("NetworkSettings") or {}
    return observed.ObservedContainer(
        name=name,
        labels=dict(listed.get("Labels") or {}),
        container_id=str(listed["Id"]),
        image=str(listed.get("Image", "")),
        image_id=str(listed.get("ImageID", "")),
        state=STATES.get(str(listed.get("State", "")), "dead"),
        networks=tuple(sorted((settings.get("Networks") or {}).keys())),
        volumes=tuple(
            sorted(
                str(mount["Name"])
                for mount in listed.get("Mounts") or ()
                if mount.get("Type") == "volume" and mount.get("Name")
            )
        ),
    )


def observed_network(listed: Mapping[str, Any]) -> observed.ObservedNetwork:
    ipam = (listed.get("IPAM") or {}).get("Config") or []
    first = ipam[0] if ipam else {}
    return observed.ObservedNetwork(
        name=str(listed["Name"]),
        labels=dict(listed.get("Labels") or {}),
        network_id=str(listed["Id"]),
        subnet=first.get("Subnet") or None,
        gateway=first.get("Gateway") or None,
    )


def observed_volume(listed: Mapping[str, Any]) -> observed.ObservedVolume:
    return observed.ObservedVolume(
        name=str(listed["Name"]),
        labels=dict(listed.get("Labels") or {}),
        mountpoint=listed.get("Mountpoint") or None,
    )


def same_owner(existing: Mapping[str, str] | None, wanted: Mapping[str, str]) -> bool:
    existing = existing or {}
    return all(existing.get(key) == wanted.get(key) for key in observed.OWNER_LABELS)


def owner_text(labels: Mapping[str, str] | None) -> str:
    stack = (labels or {}).get(observed.LABEL_STACK)
    return f"stack {stack!r}" if stack else "no reconciler stack (created outside reconciler)"


def log_line(stream_id: int, raw_line: bytes) -> engine.LogLine:
    from reconciler import engine

    text = raw_line.decode("utf-8", "replace").rstrip("\r")
    stamp, _, message = text.partition(" ")
    moment = timestamp(stamp)
    if moment is None:
        moment, message = 0.0, text
    return engine.LogLine(stream="stderr" if stream_id == 2 else "stdout", time=moment, text=message)


_EVENT_HEALTH_PREFIX = "health_status: "


def event(item: Mapping[str, Any]) -> engine.Event | None:
    """An ``engine.Event`` from one decoded Docker event, or None for actions we do not report."""
    from reconciler import engine

    action = str(item.get("Action") or item.get("status") or "")
    detail = ""
    if action.startswith(_EVENT_HEALTH_PREFIX):
        action, detail = "health_status", action.removeprefix(_EVENT_HEALTH_PREFIX)
    if action not in EVENT_ACTIONS:
        return None
    actor = item.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    exit_code = attributes.get("exitCode")
    nanoseconds = item.get("timeNano")
    moment = nanoseconds / 1e9 if isinstance(nanoseconds, int) else float(item.get("time") or 0)
    return engine.Event(
        time=moment,
        action=cast(engine.EventAction, action),
        name=str(attributes.get("name", "")),
        container_id=str(actor.get("ID") or item.get("id") or ""),
        exit_code=int(exit_code) if exit_code is not None else None,
        detail=detail,
        # A container event's attributes carry the container's labels.
        stack=str(attributes.get(observed.LABEL_STACK, "")),
    )


def stats(raw: Mapping[str, Any], inspected: Mapping[str, Any]) -> engine.Stats:
    """One reading from a one-shot ``GET /containers/{id}/stats``, with the limit from the inspect."""
    from reconciler import engine

    memory = raw.get("memory_stats") or {}
    details = memory.get("stats") or {}
    # Page cache is not "in use" (docker stats: cache on cgroup v1, inactive_file on v2).
    cache = details.get("total_inactive_file", details.get("inactive_file", details.get("cache", 0)))
    limit = (inspected.get("HostConfig") or {}).get("Memory") or 0
    return engine.Stats(
        cpu_seconds=int(((raw.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0) / 1e9,
        memory_bytes=max(0, int(memory.get("usage") or 0) - int(cache or 0)),
        memory_limit=limit if 0 < limit < configs.UNLIMITED_MEMORY else None,
        pids=int((raw.get("pids_stats") or {}).get("current") or 0),
    )
