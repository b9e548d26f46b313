"""The field types of the manifest models: scalars with their validation and their JSON schema spelling.

Sits above :mod:`.units` and below :mod:`.models`: each type here is an ``Annotated`` alias that
the models use for a field (a duration, a size, a DNS label, an image reference, ...), carrying the
validator that turns what users write into the stored value and, where the accepted spellings are
wider than the stored type, the JSON schema that lists them, so that editors accept what the
loader accepts. This module must not read files or know about documents or the loader.
"""

from __future__ import annotations

import re
from typing import Annotated, TypeAlias

import pydantic
from pydantic import BeforeValidator, Field, WithJsonSchema

from reconciler import references
from reconciler.manifests import units

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# A network's or volume's name: Docker's rule, so that compose's ``<project>_<name>`` is one.
OBJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# An environment variable's name, in ``env`` and in env files alike.
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _check_dns_label(value: str) -> str:
    if not DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS label: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _check_object_name(value: str) -> str:
    if not OBJECT_NAME.match(value):
        raise ValueError(f"{value!r} is not a network or volume name: use 1-128 letters, digits, '_', '.' and '-', "
                         "starting with a letter or digit")  # fmt: skip
    return value


def _check_image(value: str) -> str:
    try:
        references.parse(value)
    except references.InvalidReference as exc:
        raise ValueError(f"invalid image reference {value!r}: {exc}") from None
    return value


def _check_absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path")
    return value


def _env_to_map(value: object) -> object:
    """``env`` is a map or a list of ``K=V`` strings (compose users write both).

    A value may be a secret, so a wrong entry's message never quotes it: only its place."""
    if isinstance(value, list):
        result: dict[str, object] = {}
        for index, item in enumerate(value):
            if not isinstance(item, str) or "=" not in item or item.startswith("="):
                raise ValueError(f"env[{index}] must be a KEY=VALUE string (its text is not shown: it may be a secret)")
            key, _, val = item.partition("=")
            result[key] = val
        return result
    if isinstance(value, dict):
        # YAML turns `DEBUG: true` and `PORT: 8080` into bool/int; env values are strings.
        return {k: _scalar_text(v) for k, v in value.items()}
    return value


def _scalar_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _string_list(value: object) -> object:
    """A command may be written as one string; it is split on whitespace, never run by a shell."""
    if isinstance(value, str):
        return value.split()
    return value


# Each accepted spelling is in the JSON schema too, so that editors accept what the loader accepts.
_DURATION_SCHEMA = WithJsonSchema(
    {"anyOf": [{"type": "string", "pattern": r"^(0|(\d+(\.\d+)?(ms|us|µs|ns|h|m|s))+)$"},
               {"type": "number", "minimum": 0}],
     "description": "A duration: 100ms, 10s, 1m30s, or a number of seconds."}
)  # fmt: skip
_SIZE_SCHEMA = WithJsonSchema(
    {"anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?\s*([KMGTP]i?|[kmgtp]|[KMGTP]?B|b)?$"},
               {"type": "integer", "minimum": 0}],
     "description": "A size: 64Mi, 1G, 64m, or a number of bytes. Ki, Mi, Gi, Ti, Pi and Docker's lowercase "
                    "k, m, g, t, p are powers of 1024 (64m = 64Mi, as in docker run -m 64m); K, M, G, T, P "
                    "(and KB, MB, ...) are powers of 1000."}
)  # fmt: skip
_ENV_SCHEMA = WithJsonSchema(
    {"anyOf": [{"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
               {"type": "array", "items": {"type": "string", "pattern": "^[^=]+=.*$"}}]}
)  # fmt: skip
_ARGV_SCHEMA = WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]})
_SIGNAL_SCHEMA = WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1, "maximum": 31}]})

Duration: TypeAlias = Annotated[float, BeforeValidator(units.parse_duration), Field(ge=0), _DURATION_SCHEMA]
Size: TypeAlias = Annotated[int, BeforeValidator(units.parse_size), Field(ge=0), _SIZE_SCHEMA]
DnsLabel: TypeAlias = Annotated[str, pydantic.AfterValidator(_check_dns_label), Field(pattern=DNS_LABEL.pattern)]
ObjectName: TypeAlias = Annotated[str, pydantic.AfterValidator(_check_object_name), Field(pattern=OBJECT_NAME.pattern)]
ImageRef: TypeAlias = Annotated[str, pydantic.AfterValidator(_check_image)]
AbsolutePath: TypeAlias = Annotated[str, pydantic.AfterValidator(_check_absolute), Field(pattern="^/")]
Signal: TypeAlias = Annotated[str, BeforeValidator(units.parse_signal), _SIGNAL_SCHEMA]
EnvMap: TypeAlias = Annotated[dict[str, str], BeforeValidator(_env_to_map), _ENV_SCHEMA]
Argv: TypeAlias = Annotated[list[str], BeforeValidator(_string_list), _ARGV_SCHEMA]
PortNumber: TypeAlias = Annotated[int, Field(ge=1, le=65535)]
