"""Registry settings and the host's platform: plain values, without the HTTP client.

Where it sits: under :mod:`registry` (the distribution-protocol client, which imports
``requests``) and :mod:`images`. The image store holds a :class:`RegistryConfig` and the host's
:class:`Platform` from its construction on, but talks HTTP only when it pulls; keeping these values
here lets a store that only reads its index (every ``observe``) skip importing the HTTP stack,
about a tenth of a second of every CLI start. This module must not import ``requests`` or do I/O.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Mapping
from pathlib import Path

from reconciler.backends.native import registry_auth

_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm"}
_GO_VARIANT = {"aarch64": "v8", "arm64": "v8", "armv7l": "v7"}


@dataclasses.dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform, in Go's names (``linux``/``amd64``/``v8``)."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


@dataclasses.dataclass(frozen=True, slots=True)
class RegistryConfig:
    """How to reach registries: TLS material, insecure hosts, credentials file, timeouts."""

    # Hosts (``host[:port]``) allowed plain HTTP; loopback hosts always are.
    insecure: frozenset[str] = frozenset()
    # ``<certs_dir>/<host[:port]>/*.crt`` are extra CAs for that host (Docker's certs.d layout);
    # ``*.cert`` + ``*.key`` there are a client certificate.
    certs_dir: Path = Path("/etc/docker/certs.d")
    # The Docker config file; None means ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``.
    docker_config: Path | None = None
    # Explicit credentials per registry host, taking precedence over the Docker config file.
    credentials: Mapping[str, registry_auth.Credentials] = dataclasses.field(default_factory=dict, repr=False)
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.25
    # The most one pull sleeps before retries in all (backoff and ``Retry-After``), in seconds.
    max_wait: float = 120.0


def host_platform(machine: str | None = None) -> Platform:
    """This host's platform in Go's names (x86_64 → linux/amd64, aarch64 → linux/arm64/v8)."""
    machine = machine or platform.machine()
    return Platform(os="linux", architecture=_GO_ARCH.get(machine, machine), variant=_GO_VARIANT.get(machine, ""))
