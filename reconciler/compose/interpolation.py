"""Compose's variable interpolation, and the ``.env`` files its variables come from.

Sits above :mod:`.located`. Every string value of a compose file (never a key) is interpolated
before files are merged, as compose does: ``$VAR`` and ``${VAR}``; ``${VAR:-default}`` (unset or
empty) and ``${VAR-default}`` (unset); ``${VAR:?message}`` and ``${VAR?message}`` (an error);
``${VAR:+other}`` and ``${VAR+other}`` (a replacement when set); ``$$`` for a literal ``$``.
Defaults may hold variables themselves. An unset variable without a default is blank, with a
warning, as compose. This module reads only the env files it is given.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """A template that cannot be read, or a ``${VAR:?message}`` whose variable is missing."""


class MissingVariable(InterpolationError):
    """A ``${VAR:?message}`` whose variable is missing: the message names the variable, not the text."""


Warn = Callable[[str], None]


def interpolate(text: str, env: Mapping[str, str], warn: Warn) -> str:
    """``text`` with its variables replaced (:class:`InterpolationError` for a bad template)."""
    result, end = _expand(text, 0, env, warn, closing=False)
    assert end == len(text)
    return result


def _expand(text: str, start: int, env: Mapping[str, str], warn: Warn, *, closing: bool) -> tuple[str, int]:
    """Expand from ``start`` to the end (or, inside a default, to its unmatched ``}``)."""
    out: list[str] = []
    index = start
    while index < len(text):
        char = text[index]
        if closing and char == "}":
            return "".join(out), index
        if char != "$":
            out.append(char)
            index += 1
            continue
        following = text[index + 1 : index + 2]
        if following == "$":
            out.append("$")
            index += 2
        elif following == "{":
            value, index = _braced(text, index + 2, env, warn)
            out.append(value)
        elif match := _NAME.match(text, index + 1):
            out.append(_lookup(match.group(), env, warn))
            index = match.end()
        else:
            out.append("$")
            index += 1
    if closing:
        raise InterpolationError(f"invalid template {text!r}: a ${{ is not closed")
    return "".join(out), index


def _braced(text: str, start: int, env: Mapping[str, str], warn: Warn) -> tuple[str, int]:
    match = _NAME.match(text, start)
    if match is None:
        raise InterpolationError(f"invalid template {text!r}: ${{ must be followed by a variable name")
    name, index = match.group(), match.end()
    if text[index : index + 1] == "}":
        return _lookup(name, env, warn), index + 1
    operator = next((op for op in _OPERATORS if text.startswith(op, index)), None)
    if index == len(text):
        raise InterpolationError(f"invalid template {text!r}: a ${{ is not closed")
    if operator is None:
        raise InterpolationError(f"invalid template {text!r}: unexpected {text[index : index + 1]!r} after ${{{name}")
    argument, end = _expand(text, index + len(operator), env, warn, closing=True)
    value = env.get(name)
    present = value is not None and (value != "" or ":" not in operator)
    if operator.endswith("-"):
        return (value if present and value is not None else argument), end + 1
    if operator.endswith("+"):
        return (argument if present else ""), end + 1
    if not present:
        raise MissingVariable(f"required variable {name} is missing a value: {argument}".rstrip(": "))
    return str(value), end + 1


def _lookup(name: str, env: Mapping[str, str], warn: Warn) -> str:
    value = env.get(name)
    if value is None:
        warn(f'the "{name}" variable is not set; defaulting to a blank string')
        return ""
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class EnvEntry:
    """One variable of an env file as compose reads it."""

    key: str
    value: str | None  # None: a KEY line alone whose variable is not set (left out, as compose)
    literal: bool  # the value is the text as written, its quotes removed (no variable, escape or comment)
    bare: bool = False  # a KEY line alone (compose takes the variable from the environment)


def env_file_entries(path: Path, env: Mapping[str, str], warn: Warn) -> list[EnvEntry]:
    """An env file's variables, as compose reads them: ``KEY=VALUE`` lines, ``#`` comments,
    ``export`` allowed, quotes removed (single quotes: taken literally; otherwise the value is
    interpolated, ``env`` first, then the variables of the file above it), a ``KEY`` line alone
    taking the variable from there. A bad line raises ValueError naming its line number, never
    its text (it may hold a secret). OSError when the file cannot be read."""
    entries: list[EnvEntry] = []
    variables: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not _NAME.fullmatch(key):
            raise ValueError(f"{path}:{number}: expected KEY=VALUE (the line is not shown: it may hold a secret)")
        if not sep:
            found = {**variables, **env}.get(key)
            entries.append(EnvEntry(key, found, literal=False, bare=True))
            if found is not None:
                variables[key] = found
            continue
        entry = _entry(key, value.strip(), {**variables, **env}, warn, f"{path}:{number}")
        variables[key] = str(entry.value)
        entries.append(entry)
    return entries


def _entry(key: str, value: str, env: Mapping[str, str], warn: Warn, where: str) -> EnvEntry:
    quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
    written = value[1:-1] if quoted else value
    if quoted and value[0] == "'":
        return EnvEntry(key, written, literal=True)
    text = written.replace("\\n", "\n") if quoted else written.split(" #", 1)[0].rstrip()
    try:
        found = interpolate(text, env, warn)
    except MissingVariable as exc:
        raise ValueError(f"{where}: {exc}") from None
    except InterpolationError:
        raise ValueError(f"{where}: a ${{ is not closed or names no variable (the line is not shown: it may hold "
                         "a secret)") from None  # fmt: skip
    return EnvEntry(key, found, literal=found == written)


def read_env_file(path: Path, env: Mapping[str, str], warn: Warn) -> dict[str, str]:
    """An env file's variables (:func:`env_file_entries`), by name."""
    return {e.key: e.value for e in env_file_entries(path, env, warn) if e.value is not None}
