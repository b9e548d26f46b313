"""How manifest problems are worded: field paths as users write them, did-you-mean hints, pydantic's errors.

Sits below the loader and the cross checks, which both word their problems with it; it is handed
the model classes and imports none. Every message a user reads about a manifest ends up as
``file:line:col: field.path: message``; this module writes the ``field.path`` and ``message``
parts, and must not position them (the loader does) nor read files.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pydantic


def field_text(path: Sequence[str | int]) -> str:
    """``("spec", "ports", 0, "hostPort")`` → ``spec.ports[0].hostPort``."""
    text = ""
    for element in path:
        text += f"[{element}]" if isinstance(element, int) else (f".{element}" if text else element)
    return text


def did_you_mean(unknown: str, options: Iterable[str]) -> str:
    """``"; did you mean `x`?"`` for the option closest to ``unknown``, or ``""`` when none is close."""
    close = difflib.get_close_matches(unknown, list(options), n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        if unknown.lower().replace("_", "").replace("-", "") in lowered:
            close = [lowered[unknown.lower().replace("_", "").replace("-", "")]]
    return f"; did you mean `{close[0]}`?" if close else ""


# Compose's names for what a container spec spells otherwise, too far apart for difflib to pair
# (``environment`` is not close to ``env``; ``volumes`` is closest to ``volumesFrom``, which is
# not what a compose user means): the unknown name → (a field proving we are in a container
# spec, the hint).
_COMPOSE_HABITS = {
    "environment": ("env", "; did you mean `env`?"),
    "volumes": ("mounts", "; did you mean `mounts`? A volume mount: "
                          "`mounts: [{type: volume, source: data, target: /var/lib/data}]`"),
    "tmpfs": ("mounts", "; did you mean `mounts`? A tmpfs mount: `mounts: [{type: tmpfs, target: /tmp}]`"),
    "mem_limit": ("resources", "; did you mean `resources.memory`?"),
    "cpus": ("resources", "; did you mean `resources.cpus`?"),
    "stop_grace_period": ("stopTimeout", "; did you mean `stopTimeout`?"),
    "container_name": ("image", "; the container's name is `metadata.name`"),
    "labels": ("image", "; did you mean `metadata.labels`?"),
}  # fmt: skip


def _unknown_field_hint(unknown: str, options: Sequence[str]) -> str:
    """The hint after "unknown field `x`": a compose habit's right field, else the closest option."""
    anchor, hint = _COMPOSE_HABITS.get(unknown, ("", ""))
    return hint if anchor in options else did_you_mean(unknown, options)


def pydantic_message(error: Mapping[str, Any], model: type[pydantic.BaseModel]) -> str:
    """One of pydantic's errors for a document of ``model``, reworded for people writing YAML."""
    kind = error["type"]
    loc = [e for e in error["loc"] if isinstance(e, str | int)]
    if kind == "extra_forbidden":
        unknown = str(loc[-1])
        options = sorted({f for m in _model_at(loc[:-1], model) for f in _model_fields(m)})
        return f"unknown field `{unknown}`{_unknown_field_hint(unknown, options)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}, got {error.get('input')!r}"
    if kind == "union_tag_invalid":
        expected = error.get("ctx", {}).get("expected_tags", "")
        return f"unknown type {error.get('input')!r}; expected one of {expected}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _model_fields(model: type[pydantic.BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(path: Sequence[str | int], root: type[pydantic.BaseModel]) -> list[type[pydantic.BaseModel]]:
    """The model classes that may sit at ``path`` (for did-you-mean hints on unknown fields)."""
    candidates: list[type[pydantic.BaseModel]] = [root]
    for element in path:
        if isinstance(element, int):
            continue
        following: list[type[pydantic.BaseModel]] = []
        for model in candidates:
            for name, info in model.model_fields.items():
                if element in (name, info.alias):
                    following.extend(_models_in(info.annotation))
        candidates = following
    return candidates


def _models_in(annotation: object) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    found: list[type[pydantic.BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_models_in(arg))
    metadata_origin = getattr(annotation, "__origin__", None)
    if metadata_origin is not None and not found:
        found.extend(_models_in(metadata_origin))
    return found
