"""The closed sets of words that every layer shares: pull policies and restart policies, the label
that names a replica's service; and :func:`counted`, the one way a count and its noun are written
("1 step", "2 steps").

The manifests validate them, the planner and the engines act on them, and the CLI offers them as
choices; each set is written here once, as a ``Literal`` type for mypy and a tuple for run time
(argparse choices, messages). This module sits at the bottom with ``errors`` and imports only
``typing``: the CLI builds its parser from it without loading pydantic.
"""

from __future__ import annotations

import typing

PullPolicy: typing.TypeAlias = typing.Literal["Always", "IfNotPresent", "Never"]
PULL_POLICIES: tuple[PullPolicy, ...] = typing.get_args(PullPolicy)

RestartPolicy: typing.TypeAlias = typing.Literal["no", "always", "on-failure", "unless-stopped"]
RESTART_POLICIES: tuple[RestartPolicy, ...] = typing.get_args(RestartPolicy)

# On each replica of ``replicas: N`` (NAME-1 … NAME-N): NAME, which every engine also makes the
# replica answer to on its default network, as the manifests' aliases do on declared ones.
SERVICE_LABEL = "reconciler.service"


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless there is exactly one: ``1 network``, ``0 networks``.

    Every noun the summaries count takes a plain ``s`` (step, container, network, volume, object)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
