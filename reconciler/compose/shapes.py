"""The shape of a compose file's values (a mapping, a list, a string ...), checked before translating.

Sits above :mod:`.located`, beside :mod:`.shorthands` (it checks their long forms). A field whose
value has the wrong shape is reported at its place and removed, so that the translation only ever
meets the shapes it reads; what a value means (a port, a size) is checked later, by the manifest
models. This module must not read files.
"""

from __future__ import annotations

from reconciler.compose.located import Located, Path

_SCALAR = (str, int, float)
_STRING = (str,)
_LIST = (list,)
_MAPPING = (dict,)
_NAMES = {str: "a string", int: "a number", float: "a number", bool: "true or false", list: "a list",
          dict: "a mapping", type(None): "empty"}  # fmt: skip

SERVICE: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("image", "container_name", "working_dir", "user", "hostname", "domainname", "stop_signal",
                     "network_mode", "ipc", "pid", "cpuset", "pull_policy", "platform"), _STRING),
    "build": (str, dict), "restart": (str, bool), "extends": (str, dict),
    "command": (list, type(None)), "entrypoint": (list, type(None)),
    **dict.fromkeys(("dns", "dns_search", "dns_opt", "tmpfs", "profiles", "extra_hosts", "ports", "volumes",
                     "volumes_from", "cap_add", "cap_drop", "devices", "device_cgroup_rules", "security_opt",
                     "group_add", "secrets", "configs", "env_file", "expose", "links", "external_links"), _LIST),
    **dict.fromkeys(("environment", "labels", "sysctls", "depends_on", "networks", "healthcheck", "deploy",
                     "logging", "ulimits"), _MAPPING),
    **dict.fromkeys(("mem_limit", "cpus", "pids_limit", "shm_size", "stop_grace_period", "mem_reservation",
                     "cpu_shares", "oom_score_adj", "scale"), _SCALAR),
    **dict.fromkeys(("read_only", "privileged", "init", "tty", "stdin_open"), (bool,)),
}  # fmt: skip
# The items of a list field, or the values of a mapping field.
ITEMS: dict[str, tuple[type, ...]] = {
    "ports": (str, int, dict), "volumes": _MAPPING, "secrets": _MAPPING, "configs": _MAPPING, "env_file": _MAPPING,
    "depends_on": (dict, type(None)), "networks": (dict, type(None)), "command": _SCALAR, "entrypoint": _SCALAR,
    **dict.fromkeys(("dns", "dns_search", "dns_opt", "tmpfs", "profiles", "volumes_from", "cap_add", "cap_drop",
                     "device_cgroup_rules", "security_opt", "extra_hosts"), _STRING),
}  # fmt: skip
TOP: dict[str, tuple[type, ...]] = {
    "services": (dict, type(None)), "networks": (dict, type(None)), "volumes": (dict, type(None)),
    "secrets": (dict, type(None)), "configs": (dict, type(None)), "name": _STRING, "include": _LIST,
}  # fmt: skip


def _shape(value: object) -> str:
    return _NAMES.get(type(value), type(value).__name__)


def _fits(value: object, allowed: tuple[type, ...]) -> bool:
    # YAML's true is an int to Python; a number field is not a boolean one, and the reverse.
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, allowed)


def check(located: Located) -> list[tuple[Path, str]]:
    """Every value of the wrong shape (removed from ``located``), as ``(path, message)``."""
    top = located.value
    assert isinstance(top, dict)
    found: list[tuple[Path, str]] = []
    _fields(top, (), TOP, {}, found)
    for group in ("services", "networks", "volumes", "secrets", "configs"):
        members = top.get(group)
        if not isinstance(members, dict):
            continue
        for name, member in list(members.items()):
            if not isinstance(member, dict) and not (member is None and group != "services"):
                found.append(((group, name), f"{group[:-1]} {name}: expected a mapping, found {_shape(member)}"))
                del members[name]
            elif group == "services" and isinstance(member, dict):
                _fields(member, (group, name), SERVICE, ITEMS, found)
    return found


def _fields(
    value: dict[str, object],
    path: Path,
    fields: dict[str, tuple[type, ...]],
    items: dict[str, tuple[type, ...]],
    found: list[tuple[Path, str]],
) -> None:
    for field in list(value):
        allowed = fields.get(field)
        if allowed is not None and not _fits(value[field], allowed):
            wanted = " or ".join(dict.fromkeys(_NAMES.get(t, t.__name__) for t in allowed))
            found.append(((*path, field), f"expected {wanted}, found {_shape(value[field])}"))
            del value[field]
            continue
        kinds = items.get(field)
        inner = value.get(field)
        entries = inner.items() if isinstance(inner, dict) else enumerate(inner) if isinstance(inner, list) else []
        for key, entry in list(entries) if kinds else []:
            if not _fits(entry, kinds or ()):
                wanted = " or ".join(dict.fromkeys(_NAMES.get(t, t.__name__) for t in kinds or ()))
                found.append(((*path, field, key), f"expected {wanted}, found {_shape(entry)}"))
                value[field] = None  # the whole field: its other items would shift
        if value.get(field, 0) is None and field in items:
            del value[field]
