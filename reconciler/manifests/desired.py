"""The loaded desired state: what the manifests ask for, by kind and name, as frozen dataclasses.

Sits above :mod:`.models`: each ``Desired*`` value wraps one validated document's spec with what
the loader adds (its stack, its labels, where it was declared, the environment its env files
resolve to). The planner, the hash and the controller read these values; only the loader builds
them from files. This module holds data only: no I/O, no YAML, no validation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from reconciler.manifests import models


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """Where an object was declared: for messages and for ``file:line:col``."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclasses.dataclass(frozen=True, slots=True)
class DesiredContainer:
    name: str
    stack: str
    spec: models.ContainerSpec
    labels: Mapping[str, str]
    source: Source
    # The environment as the container will see it: env files first, then ``env`` overriding.
    effective_env: Mapping[str, str]
    # sha256 of each env file's contents, by the path written in the manifest (feeds the hash).
    file_digests: Mapping[str, str]
    # The content of each secret and config, by its path in the container (its digest feeds the
    # hash; the content itself goes only to the engine, never into a label, plan or message).
    contents: Mapping[str, bytes] = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class DesiredNetwork:
    name: str
    stack: str
    spec: models.NetworkSpec
    labels: Mapping[str, str]
    source: Source


@dataclasses.dataclass(frozen=True, slots=True)
class DesiredVolume:
    name: str
    stack: str
    spec: models.VolumeSpec
    labels: Mapping[str, str]
    source: Source


@dataclasses.dataclass(frozen=True, slots=True)
class Desired:
    """Everything the loaded manifests ask for, by name, plus the stacks they cover."""

    containers: Mapping[str, DesiredContainer]
    networks: Mapping[str, DesiredNetwork]
    volumes: Mapping[str, DesiredVolume]
    stacks: frozenset[str]

    @staticmethod
    def empty(stacks: Iterable[str] = ()) -> Desired:
        """The desired state of a deleted stack: nothing, so that pruning removes everything."""
        return Desired(containers={}, networks={}, volumes={}, stacks=frozenset(stacks))
