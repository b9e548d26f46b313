"""The plan as data: what will be done, in which order, and why.

A :class:`Plan` is a DAG of :class:`Step` values. Each step holds exactly one :data:`Action` (one
engine call), the *reason* it is needed, and the numbers of the steps it must wait for. Object-level
:class:`Change` values summarise the plan for people (and carry field-level diffs); the executor
only reads the steps. Rendering is deterministic, so planner tests compare text (golden tests),
and ``to_json`` has a documented, stable shape (``version`` 1)::

    {"version": 1, "converged": false,
     "changes": [{"kind", "name", "stack", "change", "reason", "diff": [{"path", "old", "new"}]}],
     "steps":   [{"number", "action", "target", "reason", "after": [numbers]}],
     "notes":   ["volume data is kept: ..."]}

``change`` is one of ``create``, ``recreate``, ``update``, ``start``, ``remove``. An env value
may be a secret: a diff shows it as the start of its SHA-256, ``(sha256:1a2b3c4d…)`` (in text and
JSON alike), so that a change is visible and the value is not.

The request types (what to create) live here too, because actions carry them; engines consume them.
This module sits below the planner and the executor (and the engines, which read the requests),
above ``manifests``: it is data and its rendering only, so it does no I/O and decides nothing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias, assert_never

from reconciler import manifests, vocabulary

# ---------------------------------------------------------------------------------------------
# Requests: everything an engine needs to create one object
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerRequest:
    name: str
    spec: manifests.ContainerSpec
    # The environment the process sees (env files resolved, then ``env`` on top).
    env: Mapping[str, str]
    # Owner labels (reconciler.*) plus the manifest's own labels.
    labels: Mapping[str, str]
    # The content of each secret and config, by its path in the container: mounted read-only
    # from a root-only tmpfs, never shown (see ``manifests.DesiredContainer.contents``).
    files: Mapping[str, bytes] = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class NetworkRequest:
    name: str
    spec: manifests.NetworkSpec
    labels: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class VolumeRequest:
    name: str
    spec: manifests.VolumeSpec
    labels: Mapping[str, str]


# ---------------------------------------------------------------------------------------------
# Actions: one engine call each
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PullImage:
    image: str
    policy: vocabulary.PullPolicy


@dataclasses.dataclass(frozen=True, slots=True)
class CreateNetwork:
    request: NetworkRequest


@dataclasses.dataclass(frozen=True, slots=True)
class RemoveNetwork:
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class CreateVolume:
    request: VolumeRequest


@dataclasses.dataclass(frozen=True, slots=True)
class RemoveVolume:
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class CreateContainer:
    request: ContainerRequest


@dataclasses.dataclass(frozen=True, slots=True)
class StartContainer:
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class StopContainer:
    name: str
    timeout: float


@dataclasses.dataclass(frozen=True, slots=True)
class RemoveContainer:
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class RenameContainer:
    name: str
    new_name: str


@dataclasses.dataclass(frozen=True, slots=True)
class UpdateContainer:
    name: str
    resources: manifests.Resources


@dataclasses.dataclass(frozen=True, slots=True)
class AwaitReady:
    """Watch a started container until it is ready (see :mod:`reconciler.rollouts`): healthy when it
    has a health check, else running for ``min_ready`` seconds without exiting or restarting. It
    fails when the container exits, restarts or turns unhealthy, or ``deadline`` seconds pass.

    ``purpose``: ``rollout`` gates a replacement (the old container is switched off only after it
    succeeds); ``healthy`` is a ``dependsOn: {condition: healthy}`` that its dependents wait for.
    ``exit_zero_ok``: a one-shot job (restart ``no``), which is done, not failed, when it exits 0."""

    name: str
    stack: str
    healthcheck: manifests.Healthcheck | None
    min_ready: float
    deadline: float
    purpose: Literal["rollout", "healthy"] = "rollout"
    exit_zero_ok: bool = False


Action: TypeAlias = (
    PullImage
    | CreateNetwork
    | RemoveNetwork
    | CreateVolume
    | RemoveVolume
    | CreateContainer
    | StartContainer
    | StopContainer
    | RemoveContainer
    | RenameContainer
    | UpdateContainer
    | AwaitReady
)


_CONTAINER_VERBS: Final[dict[type, str]] = {StartContainer: "start", StopContainer: "stop", RemoveContainer: "remove"}


def describe(action: Action) -> tuple[str, str]:
    """``(verb, target)`` of an action, e.g. ``("create", "container web")``."""
    match action:
        case PullImage(image=image):
            return "pull", f"image {image}"
        case CreateNetwork(request=request):
            return "create", f"network {request.name}"
        case RemoveNetwork(name=name):
            return "remove", f"network {name}"
        case CreateVolume(request=request):
            return "create", f"volume {request.name}"
        case RemoveVolume(name=name):
            return "remove", f"volume {name}"
        case CreateContainer(request=request):
            return "create", f"container {request.name}"
        case StartContainer(name=name) | StopContainer(name=name) | RemoveContainer(name=name):
            return _CONTAINER_VERBS[type(action)], f"container {name}"
        case RenameContainer(name=name, new_name=new_name):
            return "rename", f"container {name} → {new_name}"
        case UpdateContainer(name=name):
            return "update", f"container {name}"
        case AwaitReady(name=name, purpose=purpose):
            return "await", f"container {name} {'ready' if purpose == 'rollout' else 'healthy'}"
        case _:
            assert_never(action)


# ---------------------------------------------------------------------------------------------
# Steps, changes, the plan
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    old: object
    new: object

    def render(self) -> str:
        if self.old is _ABSENT:
            return f"+ {self.path}: {_value(self.new)}"
        if self.new is _ABSENT:
            return f"- {self.path}: {_value(self.old)}"
        return f"~ {self.path}: {_value(self.old)} → {_value(self.new)}"


@dataclasses.dataclass(frozen=True, slots=True)
class Concealed:
    """A side of a field change that must not be shown: the start of its value's digest."""

    digest: str  # "sha256:<hex>"

    def __str__(self) -> str:
        algorithm, _, hex_digits = self.digest.partition(":")
        return f"({algorithm}:{hex_digits[:8]}…)"


class _Absent:
    """Marks a side of a field change where the field is not set."""

    def __repr__(self) -> str:
        return "(unset)"


_ABSENT: Final = _Absent()


def _value(value: object) -> str:
    if isinstance(value, Concealed):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


ChangeKind: TypeAlias = Literal["create", "recreate", "update", "start", "remove"]


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    kind: str  # Container | Network | Volume | Image
    name: str
    stack: str
    change: ChangeKind
    reason: str
    diff: tuple[FieldChange, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    number: int
    action: Action
    reason: str
    after: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...] = ()
    changes: tuple[Change, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def converged(self) -> bool:
        """Nothing to do (notes may still say what was deliberately left alone)."""
        return not self.steps

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.change] = counts.get(change.change, 0) + 1
        if not counts:
            return "No changes: everything is as the manifests say."
        order = ("create", "recreate", "update", "start", "remove")
        words = {"create": "to create", "recreate": "to recreate", "update": "to update in place",
                 "start": "to start", "remove": "to remove"}  # fmt: skip
        parts = [f"{counts[k]} {words[k]}" for k in order if k in counts]
        steps = len(self.steps)
        return "Plan: " + ", ".join(parts) + f" ({vocabulary.counted(steps, 'step')})."

    def render(self) -> str:
        """The text shown by ``reconcile plan``: changes with diffs, then the ordered steps."""
        lines = [self.summary()]
        symbols = {"create": "+", "recreate": "±", "update": "~", "start": ">", "remove": "-"}
        if self.changes:
            lines.append("")
            for change in self.changes:
                lines.append(
                    f"  {symbols[change.change]} {change.kind.lower()} {change.name}"
                    f" ({change.stack}): {change.change}, {change.reason}"
                )
                lines.extend(f"      {field.render()}" for field in change.diff)
        if self.steps:
            lines.append("")
            lines.append("Steps:")
            width = len(str(len(self.steps)))
            for step in self.steps:
                verb, target = describe(step.action)
                after = f"  (after {', '.join(map(str, step.after))})" if step.after else ""
                lines.append(f"  {step.number:>{width}}. {verb} {target}: {step.reason}{after}")
        if self.notes:
            lines.append("")
            lines.extend(f"Note: {note}" for note in self.notes)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        def side(value: object) -> object:
            return None if value is _ABSENT else str(value) if isinstance(value, Concealed) else value

        return {
            "version": 1,
            "converged": self.converged,
            "changes": [
                {
                    "kind": c.kind,
                    "name": c.name,
                    "stack": c.stack,
                    "change": c.change,
                    "reason": c.reason,
                    "diff": [{"path": f.path, "old": side(f.old), "new": side(f.new)} for f in c.diff],
                }
                for c in self.changes
            ],
            "steps": [
                {
                    "number": s.number,
                    "action": describe(s.action)[0],
                    "target": describe(s.action)[1],
                    "reason": s.reason,
                    "after": list(s.after),
                }
                for s in self.steps
            ],
            "notes": list(self.notes),
        }


def diff_documents(old: object, new: object, path: str = "") -> list[FieldChange]:
    """Field-level differences between two canonical JSON documents, paths like ``env.FOO``."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[FieldChange] = []
        for key in sorted(set(old) | set(new)):
            child = f"{path}.{key}" if path else str(key)
            changes.extend(diff_documents(old.get(key, _ABSENT), new.get(key, _ABSENT), child))
        return changes
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        changes = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            changes.extend(diff_documents(a, b, f"{path}[{index}]"))
        return changes
    if old == new:
        return []
    return [FieldChange(path, old, new)]


def diff_specs(old: dict[str, object], new: dict[str, object]) -> list[FieldChange]:
    """Field-level differences between two containers' spec label documents (each ``spec.env``
    value a digest there): paths without the ``spec.`` prefix, env values :class:`Concealed`."""
    changes = []
    for found in diff_documents(old, new):
        change = FieldChange(found.path.removeprefix("spec."), found.old, found.new)
        if found.path.startswith("spec.env."):
            old_side, new_side = (v if v is _ABSENT else Concealed(str(v)) for v in (found.old, found.new))
            change = FieldChange(change.path, old_side, new_side)
        changes.append(change)
    return changes
