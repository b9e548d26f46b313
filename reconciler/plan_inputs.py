"""What the planner is given besides the desired and the actual state: its :class:`Options`,
among them the :class:`RolledBack` replacements, and their :class:`Records` on disk.

Where it sits: below :mod:`reconciler.planning` (which plans with these options), :mod:`reconciler.rollouts`
(which writes the records) and :mod:`reconciler.operations`; above :mod:`reconciler.files`. The
CLI's remembered no-op (:mod:`reconciler.cli.remembered`) builds the options the planner would get
from here alone, without importing the planner, the plans or the executor (a third of a no-op
apply's time was importing them).

It must not import the planner, the models or an engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import files

if TYPE_CHECKING:
    from reconciler.holds import Holds

# The engines that let a replacement publish the host ports of the container it replaces, the
# old one serving them until it is removed (the native engine's published ports are DNAT rules,
# matched oldest first): a shared host port does not force a stop-first rollout there.
HANDS_OVER_PORTS = frozenset({"native"})


@dataclasses.dataclass(frozen=True, slots=True)
class RolledBack:
    """A replacement that was rolled back: its spec hash and image id, when (epoch seconds), why."""

    spec_hash: str
    image_id: str | None
    at: float
    reason: str

    def held_back(self) -> str:
        """How the plan's notes name it."""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.at))
        return f"held back: {self.spec_hash[:22]}… rolled back at {when}, {self.reason}"


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """What the caller decides about a plan, beyond the desired and the actual state.

    ``scope``: the stacks to act on; default the stacks the desired state declares (``reconcile
    delete --stack X`` passes an empty desired state with ``scope={"X"}``). Objects of other
    stacks are never touched. ``prune``/``prune_volumes``: remove owned objects of those stacks
    that no manifest declares (volumes only with ``prune_volumes``).

    The controller's two inputs: ``restarts_elsewhere`` names containers whose restarts the
    restart manager carries out (with its backoff and ``maxRetries``), so an exited one gets no
    start decision; ``gates`` maps a container to why it must not be created or started yet
    (a ``dependsOn`` condition ``healthy``/``completed`` not met): it gets no steps, and neither
    does any step that would wait for one of them.

    ``force_recreate`` (``apply --force-recreate NAME``) names declared containers to recreate
    even when nothing changed; naming a container no manifest declares is a ``PlanError``.
    ``held``: containers stopped on purpose (``reconcile stop``, see :mod:`reconciler.holds`) that
    the controller leaves stopped: an exited one gets no start decision.

    Rollouts: ``rolled_back`` maps a container to its last rolled-back replacement; a recreate to
    that same spec hash and image is held back (``--force-recreate`` tries it again).
    ``hand_over_ports``: the engine lets a replacement publish the host ports of the container it
    replaces, the old one serving them until it is removed (the native engine's DNAT rules), so
    a shared host port does not force stop-first. ``await_healthy``: a ``dependsOn: healthy``
    dependent's start waits for an await-healthy step (an apply; the controller gates instead).
    """

    prune: bool = True
    prune_volumes: bool = False
    scope: frozenset[str] | None = None
    restarts_elsewhere: frozenset[str] = frozenset()
    gates: Mapping[str, str] = dataclasses.field(default_factory=dict)
    force_recreate: frozenset[str] = frozenset()
    held: frozenset[str] = frozenset()
    rolled_back: Mapping[str, RolledBack] = dataclasses.field(default_factory=dict)
    hand_over_ports: bool = False
    await_healthy: bool = True


class Records:
    """The rolled-back replacements, one file per container name under ``directory`` (``None``:
    nothing is remembered, every recreate is tried)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    @classmethod
    def beside(cls, holds: Holds | None) -> Records:
        """The records of the root whose stopped-on-purpose records ``holds`` keeps."""
        directory = holds.directory if holds is not None else None
        return cls(directory.parent / "rollbacks" if directory is not None else None)

    def record(self, name: str, rolled_back: RolledBack) -> None:
        if self.directory is not None:
            files.write_json(self.directory / f"{name}.json", dataclasses.asdict(rolled_back))

    def forget(self, names: Iterable[str]) -> None:
        if self.directory is None:
            return
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / f"{name}.json")

    def shown(self, names: Iterable[str]) -> dict[str, dict[str, object]]:
        """How ``status`` shows each remembered rollback among ``names`` (its ``heldBack``): the
        spec hash and image held back, when and why, and the plan's note as ``text``."""
        return {
            name: {"specHash": rolled_back.spec_hash, "imageId": rolled_back.image_id, "at": rolled_back.at,
                   "reason": rolled_back.reason, "text": rolled_back.held_back()}
            for name, rolled_back in self.load(names).items()
        }  # fmt: skip

    def load(self, names: Iterable[str]) -> dict[str, RolledBack]:
        """The records of ``names`` that exist and read well (an unreadable one is ignored)."""
        found: dict[str, RolledBack] = {}
        try:
            present = set(os.listdir(self.directory)) if self.directory is not None else set()
        except (FileNotFoundError, NotADirectoryError):
            return found  # nothing was ever rolled back: one failed listing, no open per container
        for name in names:
            if f"{name}.json" not in present or self.directory is None:
                continue
            try:
                data = json.loads((self.directory / f"{name}.json").read_text())
                found[name] = RolledBack(
                    spec_hash=str(data["spec_hash"]), image_id=data["image_id"], at=float(data["at"]),
                    reason=str(data["reason"]),
                )  # fmt: skip
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return found


def for_engine(options: Options, engine_name: str, records: Records, names: Iterable[str]) -> Options:
    """``options`` with what rollouts need: the rollbacks remembered for the declared containers
    ``names``, and whether the engine named ``engine_name`` hands host ports over."""
    return dataclasses.replace(
        options, rolled_back=records.load(names), hand_over_ports=engine_name in HANDS_OVER_PORTS
    )
