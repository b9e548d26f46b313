"""Swarm backend, the containers of a service: which of the plan's containers a service stands for.

Where it sits: under :mod:`.engine`, which reads and writes this record in a label of the service
(:data:`LABEL`) with every change it makes. Pure: no daemon, no docker SDK.

The planner plans containers: ``web`` alone, or the replicas ``web-1`` … ``web-N`` of ``replicas:
N`` (each labelled with its service, ``web``), and the staged ``web-1.next`` of a replacement. On
Swarm they are all *members* of the one service ``web``, each with the spec hash it was created
with and its state:

* ``created``: created, not started (no task runs for it);
* ``running``: started: one task of the service runs for it;
* ``handover``: stopped while a created member of the service waits to be started (a stop-first
  replacement): its task keeps running until that member starts and takes its place, so the
  service never drops to fewer tasks than its replicas during a replacement;
* ``stopped``: stopped (no task runs for it).

Each member also records the digest of the service spec it asks for (:data:`TEMPLATE_LABEL` holds
the digest of the one the service runs): the replicas of one service differ in their names, and
in their host ports where a range is published, yet ask for the same service; and when it was
created (epoch seconds, the engine's clock), which is its ``create`` in the engine's history.

The service's replica count is the number of ``running`` and ``handover`` members; its task
template is the spec of the member started last (Swarm rolls every task onto it, one at a time,
with the update config, and rolls back by itself when the new tasks fail).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Literal, TypeAlias

LABEL = "reconciler.swarm.members"
TEMPLATE_LABEL = "reconciler.swarm.template"

State: TypeAlias = Literal["created", "running", "handover", "stopped"]
_STATES: frozenset[str] = frozenset({"created", "running", "handover", "stopped"})


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    spec_hash: str
    state: State
    # The digest of the service spec the member asks for (see the module docstring).
    template: str = ""
    # When it was created (epoch seconds; 0.0 in a record written before this was kept).
    created: float = 0.0


Members: TypeAlias = dict[str, Member]


def read(labels: Mapping[str, str] | None) -> Members:
    """The members recorded in a service's labels (an unreadable record reads as none)."""
    raw = (labels or {}).get(LABEL)
    try:
        document = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    found: Members = {}
    if isinstance(document, dict):
        for name, entry in document.items():
            if isinstance(entry, list) and len(entry) in (3, 4) and entry[1] in _STATES:
                at = entry[3] if len(entry) == 4 and isinstance(entry[3], int | float) else 0.0
                found[str(name)] = Member(str(entry[0]), entry[1], str(entry[2]), float(at))
    return found


def label(members: Mapping[str, Member]) -> str:
    """The label's value: ``{name: [hash, state, template, created]}``, sorted, compact."""
    document = {name: [m.spec_hash, m.state, m.template, m.created] for name, m in sorted(members.items())}
    return json.dumps(document, separators=(",", ":"))


def replicas(members: Mapping[str, Member]) -> int:
    """How many tasks the service runs: one per running member, and per member handing over."""
    return sum(1 for m in members.values() if m.state in ("running", "handover"))


def created(members: Mapping[str, Member], name: str, spec_hash: str, template: str, at: float = 0.0) -> Members:
    """With ``name`` created at ``at`` (a member that exists keeps its state: creation is idempotent)."""
    result = dict(members)
    result.setdefault(name, Member(spec_hash, "created", template, at))
    return result


def started(members: Mapping[str, Member], name: str) -> Members:
    """With ``name`` running; when it was waiting to start, a member handing over gives it its task."""
    result = dict(members)
    member = result[name]
    if member.state in ("created", "stopped"):
        giving = next((n for n, m in sorted(result.items()) if m.state == "handover"), None)
        if giving is not None:
            result[giving] = dataclasses.replace(result[giving], state="stopped")
    result[name] = dataclasses.replace(member, state="running")
    return result


def stopped(members: Mapping[str, Member], name: str) -> Members:
    """With ``name`` stopped: handing over when a created member waits to take its place."""
    result = dict(members)
    member = result[name]
    if member.state != "running":
        return result
    waiting = any(m.state == "created" for m in result.values())
    result[name] = dataclasses.replace(member, state="handover" if waiting else "stopped")
    return result


def removed(members: Mapping[str, Member], name: str) -> Members:
    result = dict(members)
    result.pop(name, None)
    return result


def renamed(members: Mapping[str, Member], name: str, new_name: str) -> Members:
    result = dict(members)
    if name in result:
        result[new_name] = result.pop(name)
    return result
