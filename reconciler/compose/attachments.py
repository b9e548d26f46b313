"""What a compose service attaches and limits: networks, ports, volumes, tmpfs, secrets, configs,
``deploy``, logging and the namespaces it shares, as manifest spec fields.

Sits above :mod:`.translating`, under :mod:`.services` (which dispatches to :data:`HANDLERS`).
Names of other objects are the project's (``<project>_<name>``), via the context's tables.
This module must not read files.
"""

from __future__ import annotations

from collections.abc import Callable

from reconciler.compose import shorthands, translating
from reconciler.compose.translating import Context, ServiceDocument

Handler = Callable[[Context, ServiceDocument, object], None]
_PORT_FIELDS = {"target": "containerPort", "published": "hostPort", "host_ip": "hostIP", "protocol": "protocol",
                "mode": "mode"}  # fmt: skip


def attach_networks(context: Context, current: ServiceDocument, spec: dict[str, object]) -> None:
    """The service's networks (or the project's default one), each with the service name as alias."""
    if "network_mode" in spec:
        return
    networks = spec.get("networks") or {"default": None}
    attached: list[dict[str, object]] = []
    for key, options in networks.items() if isinstance(networks, dict) else []:
        here = (*current.path, "networks", key)
        name, external = context.network_names.get(key, (None, False))
        if name is None:
            context.refuse(here, here, f"network {key!r} is not declared under the top-level networks:")
            continue
        attachment: dict[str, object] = {"name": name, "aliases": [translating.label(current.name)]}
        if external:
            attachment["external"] = True
        for field, value in options.items() if isinstance(options, dict) else []:
            if field == "aliases" and isinstance(value, list):
                attachment["aliases"] = [*attachment["aliases"], *value]  # type: ignore[misc]
            elif field == "ipv4_address":
                attachment["ipv4Address"] = value
            elif not field.startswith("x-"):
                context.refuse(here, (*here, field), f"networks.{key}.{field} has no manifest field here")
        current.document.places.append((("spec", "networks", len(attached)), here, context.merged.at(here)))
        attached.append(attachment)
    current.document.spec["networks"] = attached


def _shared(field: str, compose_field: str) -> Handler:
    """``network_mode``, ``ipc`` or ``pid``: ``service:x`` is x's container (its first replica)."""

    def handle(context: Context, current: ServiceDocument, value: object) -> None:
        mode = str(value)
        if mode.startswith("service:"):
            other = mode.removeprefix("service:")
            mode = f"container:{context.single.get(other, other)}"
        current.put(context, ("spec", field), mode, compose_field)

    return handle


def _ports(context: Context, current: ServiceDocument, value: object) -> None:
    ports: list[object] = []
    for index, item in enumerate(value if isinstance(value, list) else []):
        here = (*current.path, "ports", index)
        if not isinstance(item, dict):
            ports.append(str(item))
        else:
            port: dict[str, object] = {}
            for field, option in item.items():
                if field in _PORT_FIELDS:
                    port[_PORT_FIELDS[field]] = (
                        int(option) if field in ("published",) and str(option).isdigit() else option
                    )
                elif not field.startswith("x-"):
                    context.refuse(here, (*here, field), f"ports: `{field}` has no manifest field here")
            first, dash, last = str(port.get("hostPort", "")).partition("-")
            if isinstance(port.get("hostPort"), str) and dash and first.isdigit() and last.isdigit():
                port["hostPort"], port["hostPortLast"] = int(first), int(last)
            ports.append(port)
        current.document.places.append((("spec", "ports", len(ports) - 1), here, context.merged.at(here)))
    current.put(context, ("spec", "ports"), ports, "ports")


def _volumes(context: Context, current: ServiceDocument, value: object) -> None:
    mounts: list[object] = current.document.spec.setdefault("mounts", [])  # type: ignore[assignment]
    for index, item in enumerate(value if isinstance(value, list) else []):
        here = (*current.path, "volumes", index)
        mount = _mount(context, here, item)
        if mount is not None:
            current.document.places.append((("spec", "mounts", len(mounts)), here, context.merged.at(here)))
            mounts.append(mount)


def _mount(context: Context, here: tuple[str | int, ...], item: object) -> dict[str, object] | None:
    if not isinstance(item, dict):
        context.refuse(here, here, "a volume is [SOURCE:]TARGET[:ro] or a mapping {type, source, target}")
        return None
    kind = item.get("type")
    mount: dict[str, object] = {"type": kind, "target": item.get("target")}
    if item.get("read_only"):
        mount["readOnly"] = True
    source = _MOUNT_SOURCES.get(str(kind))
    if source is None:
        context.refuse(here, (*here, "type"), f"volume type {kind!r}: volume, bind or tmpfs")
        return None
    if not source(context, here, item, mount):
        return None
    for field in item:
        known = field in ("type", "source", "target", "read_only", "tmpfs") or field.startswith("x-")
        if not known and not (field == "bind" and item[field] in ({}, {"create_host_path": True})):
            context.refuse(here, (*here, field), f"volumes: `{field}` has no manifest field here")
    return mount


Place = tuple[str | int, ...]


def _volume_source(context: Context, here: Place, item: dict[str, object], mount: dict[str, object]) -> bool:
    source = item.get("source")
    if source is None:
        return _anonymous(context, here, mount)
    name, external = context.volume_names.get(str(source), (None, False))
    if name is None:
        context.refuse(here, here, f"volume {source!r} is not declared under the top-level volumes:")
        return False
    mount["source"] = name
    if external:
        mount["external"] = True
    return True


def _anonymous(context: Context, here: Place, mount: dict[str, object]) -> bool:
    """An anonymous volume (``volumes: [/data]``) as a Volume of the stack (:meth:`Context.anonymous_volume`)."""
    service = str(here[1])
    if context.single.get(service) != context.names.get(service):
        context.refuse(here, here, "an anonymous volume of a replicated service (compose makes one per replica) "
                       "has no manifest form: name the volume, or use a tmpfs")  # fmt: skip
        return False
    if not isinstance(mount.get("target"), str):
        context.refuse(here, here, "an anonymous volume needs its target: an absolute path")
        return False
    mount["source"] = context.anonymous_volume(service, str(mount["target"]), here)
    return True


def _bind_source(context: Context, here: Place, item: dict[str, object], mount: dict[str, object]) -> bool:
    mount["source"] = translating.absolute(context.project.directory, str(item.get("source")))
    return True


def _tmpfs_options(context: Context, here: Place, item: dict[str, object], mount: dict[str, object]) -> bool:
    tmpfs = item.get("tmpfs")
    if isinstance(tmpfs, dict):
        if "size" in tmpfs:
            mount["size"] = shorthands.size(tmpfs["size"])
        if "mode" in tmpfs:
            mount["mode"] = shorthands.mode(tmpfs["mode"])
    return True


_MOUNT_SOURCES: dict[str, Callable[[Context, Place, dict[str, object], dict[str, object]], bool]] = {
    "volume": _volume_source,
    "bind": _bind_source,
    "tmpfs": _tmpfs_options,
}


def _tmpfs(context: Context, current: ServiceDocument, value: object) -> None:
    mounts: list[object] = current.document.spec.setdefault("mounts", [])  # type: ignore[assignment]
    for index, item in enumerate(value if isinstance(value, list) else []):
        here = (*current.path, "tmpfs", index)
        target, _, options = str(item).partition(":")
        mount: dict[str, object] = {"type": "tmpfs", "target": target}
        for option in filter(None, options.split(",")):
            key, _, setting = option.partition("=")
            if key == "size":
                mount["size"] = shorthands.size(setting)
            elif key == "mode":
                mount["mode"] = shorthands.mode(setting)
            else:
                context.refuse(here, here, f"tmpfs option {key!r}: size and mode are supported")
        current.document.places.append((("spec", "mounts", len(mounts)), here, context.merged.at(here)))
        mounts.append(mount)


def _volumes_from(context: Context, current: ServiceDocument, value: object) -> None:
    sources = []
    for index, item in enumerate(value if isinstance(value, list) else []):
        text = str(item)
        if text.endswith((":ro", ":rw")):
            here = (*current.path, "volumes_from", index)
            context.refuse(here, here, "volumes_from with :ro or :rw is not supported")
            text = text[:-3]
        sources.append(
            text.removeprefix("container:") if text.startswith("container:") else context.single.get(text, text)
        )
    current.put(context, ("spec", "volumesFrom"), sources, "volumes_from")


def _files(field: str) -> Handler:
    def handle(context: Context, current: ServiceDocument, value: object) -> None:
        declared = context.top.get(field) or {}
        items: list[dict[str, object]] = []
        for index, item in enumerate(value if isinstance(value, list) else []):
            here = (*current.path, field, index)
            source = item.get("source") if isinstance(item, dict) else None
            top = declared.get(source) if isinstance(declared, dict) else None
            if not isinstance(top, dict):
                context.refuse(here, here, f"{field[:-1]} {source!r} is not declared under the top-level {field}:")
                continue
            entry: dict[str, object] = {"name": str(source)}
            _file_source(context, (field, str(source)), top, entry)
            for option, setting in item.items():
                if option in ("target", "uid", "gid", "mode"):
                    entry[option] = setting
                elif option != "source" and not option.startswith("x-"):
                    context.refuse(here, (*here, option), f"{field}: `{option}` has no manifest field here")
            current.document.places.append((("spec", field, len(items)), here, context.merged.at(here)))
            items.append(entry)
        current.put(context, ("spec", field), items, field)

    return handle


def _file_source(context: Context, path: tuple[str, str], top: dict[str, object], entry: dict[str, object]) -> None:
    if "file" in top:
        entry["file"] = translating.absolute(context.project.directory, str(top["file"]))
    elif "environment" in top:
        entry["env"] = top["environment"]
    for field in top:
        if field not in ("file", "environment", "name") and not field.startswith("x-"):
            context.refuse(path, (*path, field), f"{path[0]}: `{field}` is not supported (file or environment only)")


def _logging(context: Context, current: ServiceDocument, value: object) -> None:
    here = (*current.path, "logging")
    settings = value if isinstance(value, dict) else {}
    if settings.get("driver", "json-file") != "json-file":
        context.refuse(here, (*here, "driver"), "logging: only the json-file log is kept (max-size, max-file)")
    for key in settings:
        if key not in ("driver", "options") and not key.startswith("x-"):
            context.refuse(here, (*here, key), f"logging: `{key}` has no manifest field here")
    options = settings.get("options") or {}
    logging: dict[str, object] = {}
    for key, option in options.items() if isinstance(options, dict) else []:
        if key == "max-size":
            logging["maxSize"] = shorthands.size(option)
        elif key == "max-file":
            logging["maxFiles"] = option
        else:
            context.refuse(
                here, (*here, "options", key), f"logging option {key!r}: max-size and max-file are supported"
            )
    current.put(context, ("spec", "logging"), logging, "logging")


HANDLERS: dict[str, Handler] = {
    "network_mode": _shared("networkMode", "network_mode"),
    "ipc": _shared("ipc", "ipc"),
    "pid": _shared("pid", "pid"),
    "ports": _ports,
    "volumes": _volumes,
    "tmpfs": _tmpfs,
    "volumes_from": _volumes_from,
    "secrets": _files("secrets"),
    "configs": _files("configs"),
    "logging": _logging,
    "networks": lambda context, current, value: None,  # attach_networks writes them
}
