"""Compose's short syntaxes as their long forms, one service at a time, before files are merged.

Sits above :mod:`.located`. Each function takes what a user may write and returns the long form
compose's own loader makes of it (``environment: [A=1]`` → ``{A: "1"}``, ``volumes: ["./d:/d:ro"]``
→ ``[{type: bind, source: ./d, target: /d, read_only: true}]``, a ``command`` string split as a
shell would, ...); a form that cannot be read raises :class:`ShortFormError`, which the loader
reports at the value's position. Paths stay as written: :mod:`.translating` resolves them.
This module must not read files.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

ShortForm = Callable[[object], object]


class ShortFormError(ValueError):
    """A value written in no form compose reads."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def size(value: object) -> object:
    """A size as compose (Docker's ``RAMInBytes``) reads it: every unit a power of 1024, whatever
    its case (``128M`` = 128 MiB, unlike the manifests' ``128M`` = 128 000 000); bytes as an int.
    Anything else is left for the models to refuse."""
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    number, power = match[1], 1024 ** _POWERS[match[2].lower()]
    if "." not in number:
        return int(number) * power
    try:
        return int(float(number) * power)
    except OverflowError:
        return value


def mode(value: object) -> object:
    """A file mode as text (``"0o1777"``, ``"1777"``: YAML 1.1 reads neither as a number) as an int."""
    if isinstance(value, str) and re.fullmatch(r"(0o|0)?[0-7]{1,4}", value.strip().lower()):
        return int(value.strip().lower().removeprefix("0o"), 8)
    return value


def key_values(value: object) -> object:
    """``[A=1, B]`` → ``{A: "1", B: None}`` (environment, labels, sysctls, build args)."""
    if not isinstance(value, list):
        return value
    result: dict[str, object] = {}
    for item in value:
        if not isinstance(item, str):
            raise ShortFormError("each item must be a KEY=VALUE string")
        key, sep, rest = item.partition("=")
        result[key] = rest if sep else None
    return result


def argv(value: object) -> object:
    """A ``command``/``entrypoint`` string split as a shell would split it (quotes, escapes)."""
    if not isinstance(value, str):
        return value
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise ShortFormError(f"cannot split {value!r} as a shell would: {exc}") from None


def string_list(value: object) -> object:
    """One string for a list of one (``dns``, ``dns_search``, ``tmpfs``, ``profiles`` ...)."""
    return [value] if isinstance(value, str) else value


def extra_hosts(value: object) -> object:
    """``{name: ip}`` or ``[name=ip]`` / ``[name:ip]`` → ``[name:ip]``; an ip list gives one entry each."""
    if isinstance(value, dict):
        entries: list[str] = []
        for name, address in value.items():
            for one in address if isinstance(address, list) else [address]:
                entries.append(f"{name}:{one}")
        return entries
    if isinstance(value, list):
        result = []
        for item in value:
            text = str(item)
            name, sep, address = text.partition("=")
            result.append(f"{name}:{address}" if sep else text)
        return result
    return value


def depends_on(value: object) -> object:
    """``[db]`` → ``{db: {condition: service_started}}``."""
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise ShortFormError("depends_on lists service names")
        return {str(item): {"condition": "service_started"} for item in value}
    return value


def networks(value: object) -> object:
    """``[front, back]`` → ``{front: None, back: None}``."""
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise ShortFormError("networks lists network names")
        return {str(item): None for item in value}
    return value


def file_references(value: object) -> object:
    """Secrets and configs: ``[name]`` → ``[{source: name}]``."""
    if isinstance(value, list):
        return [{"source": item} if isinstance(item, str) else item for item in value]
    return value


def env_files(value: object) -> object:
    """``.env`` or ``[a.env, {path: b.env, required: false}]`` → ``[{path, required}]``."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return value
    return [{"path": item, "required": True} if isinstance(item, str) else item for item in items]


def healthcheck(value: object) -> object:
    """``test: "curl -f x"`` → ``test: [CMD-SHELL, "curl -f x"]``."""
    if isinstance(value, dict) and isinstance(value.get("test"), str):
        return {**value, "test": ["CMD-SHELL", value["test"]]}
    return value


def volume(value: object) -> object:
    """``[SOURCE:]TARGET[:MODE]`` → ``{type, source, target, read_only}`` (a source starting with
    ``.``, ``/`` or ``~`` is a bind, any other a named volume; no source: an anonymous volume)."""
    if not isinstance(value, str):
        return value
    parts = value.split(":")
    mode = ""
    if len(parts) > 1 and set(parts[-1].split(",")) <= {"ro", "rw", "z", "Z", "nocopy", "cached", "delegated",
                                                         "consistent", "rprivate", "private", "rshared",
                                                         "shared", "rslave", "slave"}:  # fmt: skip
        mode = parts.pop()
    if len(parts) == 1:
        long: dict[str, object] = {"type": "volume", "target": parts[0]}
    elif len(parts) == 2:
        source = parts[0]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        long = {"type": kind, "source": source, "target": parts[1]}
    else:
        raise ShortFormError(f"{value!r} is not a volume: write [SOURCE:]TARGET[:ro]")
    options = [option for option in mode.split(",") if option]
    if "ro" in options:
        long["read_only"] = True
    unknown = [option for option in options if option not in ("ro", "rw")]
    if unknown:
        long["x-options"] = unknown  # refused, with its reason, by the translation
    return long


def volumes(value: object) -> object:
    if isinstance(value, list):
        return [volume(item) for item in value]
    return value


SERVICE: dict[str, ShortForm] = {
    "environment": key_values,
    "labels": key_values,
    "sysctls": key_values,
    "command": argv,
    "entrypoint": argv,
    "dns": string_list,
    "dns_search": string_list,
    "dns_opt": string_list,
    "tmpfs": string_list,
    "profiles": string_list,
    "extra_hosts": extra_hosts,
    "depends_on": depends_on,
    "networks": networks,
    "secrets": file_references,
    "configs": file_references,
    "env_file": env_files,
    "healthcheck": healthcheck,
    "volumes": volumes,
}
"""Each service field with a short form, and the function that gives its long form."""
