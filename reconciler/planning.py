"""The planner: desired × observed → a :class:`plans.Plan`. A pure function: no I/O, no engine.

It sits above ``plans``, ``hashing``, ``restarts``, ``manifests`` and ``observed`` and below the
executor, the operations and the controller; it never imports an engine or anything above it.

Decisions, per object (the reason each step carries is in quotes):

* **Networks and volumes** are created when absent ("not found"). A network whose spec hash
  changed is recreated, and so is every container attached to it (stop-first, since a container
  cannot move to a network that does not exist yet). A volume whose spec changed is a
  :class:`errors.PlanError`: volumes hold data, so the user decides.
* **Containers** get one :class:`Decision` each: created and started when absent ("not found");
  recreated when their spec hash changed ("spec changed: env.FOO, ports[0].hostPort", with a
  field-level diff) or their image moved ("image changed"); updated in place when only resource
  limits differ; started when their restart policy says they should be running and they are not
  ("drift: exited (137)"), unless the caller's restart manager restarts them; else kept.
* **Recreate order** (a rollout) is start-first: create-new → start-new → await-ready → stop-old →
  remove-old → rename-new, so the old container serves until the new one is ready (healthy if it
  has a health check, else running for ``minReadySeconds``). Where the two cannot run at once
  (``strategy: stop-first``, a named volume mounted read-write, or the same published host port
  on an engine that cannot hand a port over, :attr:`Options.hand_over_ports`) it is create-new →
  stop-old → start-new →
  await-ready → remove-old → rename-new. A replacement that is not ready is rolled back by
  :mod:`reconciler.rollouts` (the old one kept, or started again), and its spec hash and image
  are held back (:attr:`Options.rolled_back`): that recreate is not planned again, and the
  plan's notes say so ("held back: ..."), until the manifest (or the image) changes.
  The new container is created under a staging name, ``<name>.next``, that no manifest can declare
  (dots are not allowed in DNS labels), so it can never collide with a user's container;
  :func:`container_of` is the one place that maps it back.
* **dependsOn healthy**: with :attr:`Options.await_healthy` (an apply; the controller gates
  instead), a dependent's start waits for an await-healthy step of its dependency.
* **Pruning** removes owned objects of the stacks in scope that no manifest declares any more
  ("orphan (not in the files given: removed)"). Volumes are never removed unless ``prune_volumes`` is set; a kept
  volume is mentioned in the plan's notes.
* **Ownership**: an object of the same name owned by another stack is a ``PlanError`` naming both.
  Of other stacks' objects the planner reads only those that bear a declared name: whatever else
  they are, add or do, the plan is the same (:mod:`reconciler.verdicts` relies on it).
* **Gates** (:class:`Options`): a gated container gets no steps, and neither does any step that
  would wait for a step left out; the plan's notes say what was held and why.

Ordering (the DAG): networks, volumes and image pulls before the containers that use them;
``dependsOn``/``volumesFrom``/``container:`` peers started before their dependents; removals of
containers before the networks and volumes they used; any create of a name after the removal of
the same name.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection, Iterable, Mapping
from typing import Literal, assert_never

from reconciler import errors, hashing, manifests, observed, plan_inputs, plans, restarts
from reconciler.compose import translating as compose_names

_STAGED_SUFFIX = ".next"
# Docker's stop timeout, for an orphan whose recorded spec does not say its own.
_DOCKER_STOP_TIMEOUT = 10.0
# How many changed fields a recreate's reason names before it says "and N more".
_FIELDS_IN_REASON = 6


# ---------------------------------------------------------------------------------------------
# Requests: what the engine is asked to create, with the owner labels
# ---------------------------------------------------------------------------------------------


def _owner_labels(stack: str, kind: str, spec_hash: str) -> dict[str, str]:
    return {observed.LABEL_STACK: stack, observed.LABEL_KIND: kind, observed.LABEL_HASH: spec_hash}


def container_request(container: manifests.DesiredContainer, *, name: str | None = None) -> plans.ContainerRequest:
    """The engine request for a desired container: owner labels, the spec document, user labels."""
    labels = dict(container.labels)
    labels.update(_owner_labels(container.stack, "Container", hashing.container_hash(container)))
    labels[observed.LABEL_SPEC] = hashing.canonical_json(hashing.label_document(container))
    return plans.ContainerRequest(
        name=name or container.name,
        spec=container.spec,
        env=dict(container.effective_env),
        labels=labels,
        files=dict(container.contents),
    )


def _network_request(network: manifests.DesiredNetwork) -> plans.NetworkRequest:
    labels = dict(network.labels)
    labels.update(_owner_labels(network.stack, "Network", hashing.network_hash(network)))
    return plans.NetworkRequest(name=network.name, spec=network.spec, labels=labels)


def _volume_request(volume: manifests.DesiredVolume) -> plans.VolumeRequest:
    labels = dict(volume.spec.labels)
    labels.update(volume.labels)
    labels.update(_owner_labels(volume.stack, "Volume", hashing.volume_hash(volume)))
    return plans.VolumeRequest(name=volume.name, spec=volume.spec, labels=labels)


def images_of(desired: manifests.Desired) -> list[str]:
    """The image references the planner wants the engine to resolve locally (for ``observe``)."""
    return sorted({c.spec.image for c in desired.containers.values()})


def staged(name: str) -> str:
    """The staging name of ``name``'s replacement during a start-first recreate."""
    return f"{name}{_STAGED_SUFFIX}"


def container_of(action: plans.Action) -> str | None:
    """The manifest name of the container an action touches (``web.next`` counts as ``web``)."""
    name: str | None
    match action:
        case plans.CreateContainer(request=request):
            name = request.name
        case plans.StartContainer(name=n) | plans.StopContainer(name=n) | plans.RemoveContainer(name=n):
            name = n
        case plans.RenameContainer(new_name=n) | plans.UpdateContainer(name=n) | plans.AwaitReady(name=n):
            name = n
        case _:
            name = None
    return name.removesuffix(_STAGED_SUFFIX) if name is not None else None


# ---------------------------------------------------------------------------------------------
# Options and decisions
# ---------------------------------------------------------------------------------------------


# The planner's options and the rolled-back replacements among them live in plan_inputs, which the
# CLI's remembered no-op reads without importing the planner: these are the same classes.
RolledBack = plan_inputs.RolledBack
Options = plan_inputs.Options


class Verdict(enum.Enum):
    """What happens to one declared container."""

    KEEP = "keep"  # as declared, or its restart is the restart manager's
    CREATE = "create"
    RECREATE = "recreate"  # create-first, through the staging name
    RECREATE_STOP_FIRST = "recreate stop-first"  # its network is recreated: the old one goes first
    UPDATE = "update"  # resource limits, in place
    START = "start"
    HELD_BACK = "held back"  # its recreate was rolled back before: not tried again as it is


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """A container's verdict, the reason its steps and its change carry, and the field diff."""

    verdict: Verdict
    reason: str = ""
    diff: tuple[plans.FieldChange, ...] = ()
    # A RECREATE's order: the old one stops only once the new one is ready, or stops first.
    order: Literal["start-first", "stop-first"] = "start-first"


def _change_kind(verdict: Verdict) -> plans.ChangeKind | None:
    """How a verdict reads in the plan's changes (a kept container is no change)."""
    match verdict:
        case Verdict.KEEP | Verdict.HELD_BACK:
            return None
        case Verdict.CREATE:
            return "create"
        case Verdict.RECREATE | Verdict.RECREATE_STOP_FIRST:
            return "recreate"
        case Verdict.UPDATE:
            return "update"
        case Verdict.START:
            return "start"
        case _:
            assert_never(verdict)


def decide(
    desired: manifests.Desired, actual: observed.Observed, options: Options | None = None
) -> dict[str, Decision]:
    """The decision for every declared container, by name (see the module docstring)."""
    options = options or Options()
    recreated = _recreated_networks(desired, actual)
    decisions = {
        name: _decide(container, actual.containers.get(name), actual.images, recreated)
        for name, container in sorted(desired.containers.items())
    }
    _force_recreate(actual, decisions, options.force_recreate, recreated)
    _hold_back(desired, actual, decisions, options)
    _follow_namespace_peers(desired, actual, decisions, recreated)
    _order_recreates(desired, actual, decisions, hand_over_ports=options.hand_over_ports)
    for name in sorted(options.held & decisions.keys()):
        decision = decisions[name]
        if decision.verdict is Verdict.START:
            decisions[name] = Decision(
                Verdict.KEEP, f"stopped on purpose (reconcile stop); `reconcile start {name}` starts it"
            )
    for name in sorted(options.restarts_elsewhere & decisions.keys()):
        decision = decisions[name]
        if decision.verdict is Verdict.START:
            decisions[name] = Decision(Verdict.KEEP, f"{decision.reason}; the restart manager restarts it")
    return decisions


def _force_recreate(
    actual: observed.Observed,
    decisions: dict[str, Decision],
    forced: frozenset[str],
    recreated_networks: frozenset[str],
) -> None:
    """``--force-recreate``: an existing container is recreated whatever its verdict (one that is
    absent is created anyway); a name no manifest declares is refused before anything runs."""
    if unknown := sorted(forced - decisions.keys()):
        raise errors.PlanError(f"--force-recreate {', '.join(unknown)}: no manifest declares such a container")
    for name in sorted(forced):
        present = actual.containers.get(name)
        if present is not None and decisions[name].verdict not in _RECREATES:
            decisions[name] = _recreation(present, recreated_networks, "forced (--force-recreate)")


def _hold_back(
    desired: manifests.Desired, actual: observed.Observed, decisions: dict[str, Decision], options: Options
) -> None:
    """A recreate to the spec hash and image of a replacement that was rolled back is held back."""
    for name, record in sorted(options.rolled_back.items()):
        decision = decisions.get(name)
        if decision is None or decision.verdict is not Verdict.RECREATE or name in options.force_recreate:
            continue
        container = desired.containers[name]
        if record.spec_hash != hashing.container_hash(container):
            continue  # the manifest changed since: try it
        if record.image_id is not None and record.image_id != actual.images.get(container.spec.image):
            continue  # the image moved since: try it
        decisions[name] = Decision(Verdict.HELD_BACK, record.held_back())


def _order_recreates(
    desired: manifests.Desired, actual: observed.Observed, decisions: dict[str, Decision], *, hand_over_ports: bool
) -> None:
    """Stop-first where the old and the new container cannot run at once: the manifest says so,
    both publish a host port the engine cannot hand over, or it writes to a named volume (two
    writers of one data folder, such as two postgres on one cluster, must never overlap)."""
    for name, decision in decisions.items():
        if decision.verdict is not Verdict.RECREATE:
            continue
        spec = desired.containers[name].spec
        shared = not hand_over_ports and _host_ports(spec) & _recorded_host_ports(actual.containers[name])
        writes = any(isinstance(m, manifests.VolumeMount) and not m.read_only for m in spec.mounts)
        if spec.strategy == "stop-first" or shared or writes:
            decisions[name] = dataclasses.replace(decision, order="stop-first")


def _host_ports(spec: manifests.ContainerSpec) -> set[tuple[int, str]]:
    """``(hostPort, protocol)`` of the fixed host ports a spec publishes."""
    return {(port.host_port, port.protocol) for port in spec.ports if port.host_port}


def _recorded_host_ports(present: observed.ObservedContainer) -> set[tuple[int, str]]:
    """The same, of the spec an existing container recorded when it was created."""
    spec = (present.spec_json or {}).get("spec")
    ports = spec.get("ports") if isinstance(spec, dict) else None
    found = set()
    for port in ports if isinstance(ports, list) else ():
        if isinstance(port, dict) and isinstance(port.get("hostPort"), int) and port["hostPort"]:
            found.add((port["hostPort"], str(port.get("protocol") or "tcp")))
    return found


def _recreated_networks(desired: manifests.Desired, actual: observed.Observed) -> frozenset[str]:
    return frozenset(
        name
        for name, network in desired.networks.items()
        if name in actual.networks and actual.networks[name].spec_hash != hashing.network_hash(network)
    )


def _decide(
    container: manifests.DesiredContainer,
    present: observed.ObservedContainer | None,
    images: Mapping[str, str | None],
    recreated_networks: frozenset[str],
) -> Decision:
    if present is None:
        return Decision(Verdict.CREATE, "not found")
    local_image = images.get(container.spec.image)
    if present.spec_hash != hashing.container_hash(container):
        diff = _spec_diff(container, present)
        fields = ", ".join(change.path for change in diff[:_FIELDS_IN_REASON])
        more = f" and {len(diff) - _FIELDS_IN_REASON} more" if len(diff) > _FIELDS_IN_REASON else ""
        reason = f"spec changed: {fields}{more}" if fields else "spec changed (hash scheme or labels)"
        return _recreation(present, recreated_networks, reason, diff)
    if local_image is not None and present.image_id and present.image_id != local_image:
        reason = f"image changed: {container.spec.image} is now {local_image[:19]}, was {present.image_id[:19]}"
        diff = (plans.FieldChange("image id", present.image_id, local_image),)
        return _recreation(present, recreated_networks, reason, diff)
    if networks := sorted(set(present.networks) & recreated_networks):
        return _recreation(present, recreated_networks, f"network {', '.join(networks)} is recreated")
    if resource_diff := _resources_differ(container.spec.resources, present.resources):
        return Decision(Verdict.UPDATE, "resources changed: update in place", resource_diff)
    if restarts.should_run(container.spec, present):
        exit_text = f" ({present.exit_code})" if present.exit_code is not None else ""
        policy = container.spec.restart.policy
        return Decision(Verdict.START, f"drift: {present.state}{exit_text}, restart policy {policy}")
    return Decision(Verdict.KEEP, _gave_up(container, present))


def _gave_up(container: manifests.DesiredContainer, present: observed.ObservedContainer) -> str:
    """Why a kept container is not running, when its restart policy gave up on it ("" otherwise):
    without this an apply would say "No changes" about a container that is down for good."""
    restart = container.spec.restart
    if present.state not in ("exited", "dead") or restart.policy != "on-failure" or present.exit_code in (0, None):
        return ""
    return (
        f"it exited ({present.exit_code}) and its restart policy gave up after {present.restart_count} "
        f"restarts (maxRetries {restart.max_retries}); `reconcile restart {container.name}` starts it again"
    )


def _recreation(
    present: observed.ObservedContainer,
    recreated_networks: frozenset[str],
    reason: str,
    diff: tuple[plans.FieldChange, ...] = (),
) -> Decision:
    """A recreate: stop-first when the old container is on a network that is recreated."""
    stop_first = bool(set(present.networks) & recreated_networks)
    return Decision(Verdict.RECREATE_STOP_FIRST if stop_first else Verdict.RECREATE, reason, diff)


def _spec_diff(
    container: manifests.DesiredContainer, present: observed.ObservedContainer
) -> tuple[plans.FieldChange, ...]:
    """What changed since the container was created, from the spec it recorded (if readable)."""
    old_document = present.spec_json
    if not old_document:
        return ()
    return tuple(plans.diff_specs(old_document, hashing.label_document(container)))


def _resources_differ(wanted: manifests.Resources, actual: observed.ObservedResources) -> tuple[plans.FieldChange, ...]:
    changes = []
    for field, show in (("memory", manifests.format_size), ("cpus", str), ("pids", str)):
        new, old = getattr(wanted, field), getattr(actual, field)
        if (new or None) != (old or None):
            changes.append(
                plans.FieldChange(
                    f"resources.{field}",
                    show(old) if old else "unlimited",
                    show(new) if new else "unlimited",
                )
            )
    return tuple(changes)


_RECREATES = frozenset({Verdict.RECREATE, Verdict.RECREATE_STOP_FIRST})
_REPLACES = _RECREATES | {Verdict.CREATE}


def _follow_namespace_peers(
    desired: manifests.Desired,
    actual: observed.Observed,
    decisions: dict[str, Decision],
    recreated_networks: frozenset[str],
) -> None:
    """A container in another's network, IPC or pid namespace is recreated with it (until nothing
    changes).

    A kept container follows a peer that is created or recreated; one that would only be updated
    or started follows a peer that is recreated.
    """
    changed = True
    while changed:
        changed = False
        for name, container in sorted(desired.containers.items()):
            present = actual.containers.get(name)
            if present is None:
                continue
            for field, mode in _namespace_modes(container.spec):
                peer = decisions.get(mode.removeprefix("container:"))
                own = decisions[name].verdict
                if peer is not None and (
                    (own is Verdict.KEEP and peer.verdict in _REPLACES)
                    or (own in (Verdict.UPDATE, Verdict.START) and peer.verdict in _RECREATES)
                ):
                    reason = f"container {mode.removeprefix('container:')} is recreated ({field} {mode})"
                    decisions[name] = _recreation(present, recreated_networks, reason)
                    changed = True
                    break


def _namespace_modes(spec: manifests.ContainerSpec) -> list[tuple[str, str]]:
    """The spec's ``container:NAME`` modes (networkMode, ipc, pid), each with its field's name."""
    modes = (("networkMode", spec.network_mode), ("ipc", spec.ipc or ""), ("pid", spec.pid or ""))
    return [(field, mode) for field, mode in modes if mode.startswith("container:")]


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


def plan(desired: manifests.Desired, actual: observed.Observed, options: Options | None = None) -> plans.Plan:
    """Plan the steps that turn ``actual`` into ``desired``, as ``options`` say (see :class:`Options`)."""
    options = options or Options()
    _refuse_conflicts(desired, actual)
    stacks = desired.stacks if options.scope is None else options.scope
    decisions = decide(desired, actual, options)
    build = _Builder(_gates_with_dependents(desired, decisions, options.gates), options.await_healthy)
    _remove_orphan_containers(build, desired, actual, stacks, prune=options.prune)
    _remove_before_network_recreation(build, desired, decisions)
    _create_networks(build, desired, actual)
    _create_volumes(build, desired, actual)
    pulls = _pull_images(build, desired, actual, decisions)
    for name in _dependency_order(desired):
        _container_steps(build, desired, name, decisions[name], pulls)
    _remove_orphan_networks(build, desired, actual, stacks, prune=options.prune)
    _remove_orphan_volumes(build, desired, actual, stacks, prune_volumes=options.prune_volumes)
    return build.plan()


def _gates_with_dependents(
    desired: manifests.Desired, decisions: Mapping[str, Decision], gates: Mapping[str, str]
) -> Mapping[str, str]:
    """``gates``, plus every container to be recreated that depends (transitively) on a held one.

    Other steps of a held container's dependents are left out one by one (a start waits for the
    dependency's start), but a recreate is held as a whole: otherwise the new container would be
    created and the old one stopped while the new one's start waits for the gate, and the service
    would be down until the gate opens.
    """
    if not gates:
        return gates
    held = dict(gates)
    blocked = set(gates)
    for name in _dependency_order(desired):
        waits_for = [dep for dep in manifests.container_dependencies(desired.containers[name]) if dep in blocked]
        if name in blocked or not waits_for:
            continue
        blocked.add(name)
        if decisions[name].verdict in (Verdict.RECREATE, Verdict.RECREATE_STOP_FIRST):
            held[name] = f"waiting for {waits_for[0]}, which is held"
    return held


_NOTHING = 0  # a reference to no step: nothing to wait for
_HELD = -1  # a reference to a step left out of the plan: whatever waits for it is left out too


@dataclasses.dataclass(slots=True)
class _Builder:
    """The steps, changes and notes of a plan being built, and what later steps wait for.

    Step references are step numbers, :data:`_NOTHING` or :data:`_HELD`. A step for a gated
    container, or one that waits for a held step, is held: it is not added, its reference is
    :data:`_HELD`, and the plan's notes say what was held and why. A container's change is listed
    only when one of its steps is in the plan; a network's or a volume's always (the notes say
    which of its steps are held).
    """

    gates: Mapping[str, str]
    await_healthy: bool = True
    steps: list[plans.Step] = dataclasses.field(default_factory=list)
    changes: list[plans.Change] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    # What was held, e.g. "container web" → (why, if it is gated; the verbs of its held steps)
    held: dict[str, tuple[str | None, list[str]]] = dataclasses.field(default_factory=dict)
    networks: dict[str, int] = dataclasses.field(default_factory=dict)  # step after which it exists
    volumes: dict[str, int] = dataclasses.field(default_factory=dict)
    containers: dict[str, int] = dataclasses.field(default_factory=dict)  # step after which it runs
    gone: dict[str, int] = dataclasses.field(default_factory=dict)  # old container → step removing it
    awaits: dict[str, int] = dataclasses.field(default_factory=dict)  # container → step awaiting its health

    def add(self, action: plans.Action, reason: str, after: Iterable[int] = ()) -> int:
        waits = set(after)
        container = container_of(action)
        if _HELD in waits or (container is not None and container in self.gates):
            verb, target = plans.describe(action)
            subject = f"container {container}" if container is not None else target
            why = self.gates.get(container) if container is not None else None
            self.held.setdefault(subject, (why, []))[1].append(verb)
            return _HELD
        number = len(self.steps) + 1
        self.steps.append(plans.Step(number, action, reason, tuple(sorted(waits - {_NOTHING}))))
        return number

    def container_change(self, change: plans.Change, *refs: int) -> None:
        """List a container's ``change`` if one of its steps (``refs``) is in the plan, not held."""
        if any(ref != _HELD for ref in refs):
            self.changes.append(change)

    def plan(self) -> plans.Plan:
        notes = list(self.notes)
        for subject, (why, verbs) in self.held.items():
            steps = ", ".join(dict.fromkeys(verbs))
            if why:
                notes.append(f"{subject} is held ({why}): {steps} left for a later pass")
            else:
                notes.append(f"{subject}: {steps} held, it waits for a held step")
        return plans.Plan(tuple(self.steps), tuple(self.changes), tuple(notes))


def _refuse_conflicts(desired: manifests.Desired, actual: observed.Observed) -> None:
    """A :class:`errors.PlanError` for objects owned by another stack and for changed volumes."""
    problems: list[tuple[str, str]] = []  # (the file at fault, the message)
    pairs: list[tuple[str, Mapping[str, object], Mapping[str, observed.Owned]]] = [
        ("container", desired.containers, actual.containers),
        ("network", desired.networks, actual.networks),
        ("volume", desired.volumes, actual.volumes),
    ]
    for kind, wanted, present in pairs:
        for name in sorted(wanted):
            item = wanted[name]
            stack = getattr(item, "stack", None)
            source = getattr(item, "source", None)
            other = present.get(name)
            if other is not None and other.stack != stack:
                problems.append((
                    source.file if source is not None else "",
                    f"{kind} {name} is declared in stack {stack!r} ({source or '?'}) but the "
                    f"existing {kind} {name} belongs to stack {other.stack!r}; delete it from stack "
                    f"{other.stack!r} first, or rename one of them",
                ))  # fmt: skip
    for name in sorted(desired.volumes):
        volume = desired.volumes[name]
        existing = actual.volumes.get(name)
        if (
            existing is not None
            and existing.stack == volume.stack
            and existing.spec_hash != hashing.volume_hash(volume)
        ):
            problems.append((
                volume.source.file,
                f"volume {name}: its spec changed ({volume.source}), and volumes hold data, so it is not "
                "recreated; restore the old spec, or remove the volume explicitly with "
                f"`reconcile delete --stack {volume.stack} --prune-volumes` and apply again",
            ))  # fmt: skip
    problems += _renamed_volumes(desired, actual)
    if problems:
        blame = tuple((file, message) for file, message in problems if file)
        raise errors.PlanError("\n".join(message for _, message in problems), blame=blame)


def _renamed_volumes(desired: manifests.Desired, actual: observed.Observed) -> list[tuple[str, str]]:
    """A compose volume to be created while its stack still holds it under the name earlier
    versions wrote (``<project>-<key>``, now compose's ``<project>_<key>``): its data would be
    left behind and the containers given an empty volume, so nothing is planned until the user
    says which volume to use (nothing is deleted either way)."""
    problems: list[tuple[str, str]] = []
    for name in sorted(set(desired.volumes) - set(actual.volumes)):
        volume = desired.volumes[name]
        for former, key in sorted(compose_names.former_volume_names(volume.stack, name).items()):
            old = actual.volumes.get(former)
            if old is None or old.stack != volume.stack or former in desired.volumes:
                continue
            problems.append((
                volume.source.file,
                f"volume {name} ({volume.source}) would be created empty, but stack {volume.stack!r} keeps "
                f"its data in volume {former}: the name earlier versions gave compose volume {key!r} "
                f"(<project>-<name>; compose writes <project>_<name>). Nothing was changed. To keep "
                f"the data, name the volume in the compose file (volumes: {{{key}: {{name: {former}}}}}); "
                f"to start empty instead, remove volume {former} first (see the README, Compose files)",
            ))  # fmt: skip
    return problems


def _remove_orphan_containers(
    build: _Builder, desired: manifests.Desired, actual: observed.Observed, stacks: Collection[str], *, prune: bool
) -> None:
    """Orphans in scope go first: they may hold networks, volumes and names the rest needs."""
    reason = "orphan (not in the files given: removed)"
    for name in sorted(actual.containers):
        present = actual.containers[name]
        if present.stack not in stacks or name in desired.containers:
            continue
        if not prune:
            build.notes.append(f"container {name} is not in the manifests; kept because of --no-prune")
            continue
        stop = build.add(plans.StopContainer(name, _recorded_stop_timeout(present)), reason)
        build.gone[name] = build.add(plans.RemoveContainer(name), reason, {stop})
        build.container_change(plans.Change("Container", name, present.stack or "", "remove", reason), build.gone[name])


def _remove_before_network_recreation(
    build: _Builder, desired: manifests.Desired, decisions: Mapping[str, Decision]
) -> None:
    """Stop-first recreates: the old container goes before its network is recreated."""
    for name in sorted(decisions):
        decision = decisions[name]
        if decision.verdict is Verdict.RECREATE_STOP_FIRST:
            stop = build.add(plans.StopContainer(name, desired.containers[name].spec.stop_timeout), decision.reason)
            build.gone[name] = build.add(plans.RemoveContainer(name), decision.reason, {stop})


def _create_networks(build: _Builder, desired: manifests.Desired, actual: observed.Observed) -> None:
    """Absent networks are created; a changed one is removed after its containers, then created."""
    for name in sorted(desired.networks):
        network = desired.networks[name]
        present = actual.networks.get(name)
        if present is None:
            build.networks[name] = build.add(plans.CreateNetwork(_network_request(network)), "not found")
            build.changes.append(plans.Change("Network", name, network.stack, "create", "not found"))
        elif present.spec_hash != hashing.network_hash(network):
            users = {step for c, step in build.gone.items() if name in actual.containers[c].networks}
            removal = build.add(plans.RemoveNetwork(name), "spec changed", users)
            build.networks[name] = build.add(plans.CreateNetwork(_network_request(network)), "spec changed", {removal})
            diff = tuple(plans.diff_documents({}, hashing.network_document(network)))
            change = plans.Change("Network", name, network.stack, "recreate", "spec changed", diff)
            build.changes.append(change)


def _create_volumes(build: _Builder, desired: manifests.Desired, actual: observed.Observed) -> None:
    for name in sorted(desired.volumes):
        volume = desired.volumes[name]
        if name not in actual.volumes:
            build.volumes[name] = build.add(plans.CreateVolume(_volume_request(volume)), "not found")
            build.changes.append(plans.Change("Volume", name, volume.stack, "create", "not found"))


def _pull_images(
    build: _Builder, desired: manifests.Desired, actual: observed.Observed, decisions: Mapping[str, Decision]
) -> dict[str, int]:
    """One pull per image a created container needs and the engine does not have: image → step."""
    pulls: dict[str, int] = {}
    for name in sorted(decisions):
        spec = desired.containers[name].spec
        if _change_kind(decisions[name].verdict) not in ("create", "recreate") or spec.image in pulls:
            continue
        if actual.images.get(spec.image) is None:
            if spec.pull_policy == "Never":
                raise errors.PlanError(f"container {name}: image {spec.image} is not present and pullPolicy is Never")
            pulls[spec.image] = build.add(plans.PullImage(spec.image, spec.pull_policy), "not present locally")
    return pulls


def _container_steps(
    build: _Builder, desired: manifests.Desired, name: str, decision: Decision, pulls: Mapping[str, int]
) -> None:
    """The steps of one container's decision, after what it needs and the containers it depends on."""
    container = desired.containers[name]
    spec, reason = container.spec, decision.reason
    needs = {pulls.get(spec.image, _NOTHING)}
    needs |= {build.networks.get(network.name, _NOTHING) for network in spec.networks}
    needs |= {build.volumes.get(m.source, _NOTHING) for m in spec.mounts if isinstance(m, manifests.VolumeMount)}
    refs: tuple[int, ...]
    match decision.verdict:
        case Verdict.KEEP:
            if reason:
                build.notes.append(f"container {name} is not started: {reason}")
            return
        case Verdict.HELD_BACK:
            build.notes.append(f"container {name}: {reason}")
            return
        case Verdict.UPDATE:
            refs = (build.add(plans.UpdateContainer(name, spec.resources), reason),)
        case Verdict.START:
            refs = (build.add(plans.StartContainer(name), reason, _peers(build, desired, container)),)
        case Verdict.CREATE:
            refs = _create_and_start(build, container, reason, needs, _peers(build, desired, container))
        case Verdict.RECREATE_STOP_FIRST:
            # Its old self went before the network was recreated; its removal is this change's too.
            peers = _peers(build, desired, container)
            refs = (build.gone[name], *_create_and_start(build, container, reason, needs, peers))
        case Verdict.RECREATE:
            refs = _create_first(build, container, decision, needs, _peers(build, desired, container))
        case _:
            assert_never(decision.verdict)
    build.containers[name] = refs[-1]
    change = _change_kind(decision.verdict)
    assert change is not None
    build.container_change(plans.Change("Container", name, container.stack, change, reason, decision.diff), *refs)


def _peers(build: _Builder, desired: manifests.Desired, container: manifests.DesiredContainer) -> set[int]:
    """What a container's start waits for: its peers' starts, and with ``await_healthy`` the
    await-healthy step of each ``dependsOn: {condition: healthy}`` that has a health check."""
    peers = {build.containers.get(peer, _NOTHING) for peer in manifests.container_dependencies(container)}
    if not build.await_healthy:
        return peers
    for dependency in container.spec.depends_on:
        other = desired.containers.get(dependency.name)
        check = other.spec.healthcheck if other is not None else None
        if dependency.condition != "healthy" or other is None or check is None or check.test[0] == "NONE":
            continue
        if dependency.name not in build.awaits:
            wait = plans.AwaitReady(dependency.name, other.stack, check, 0.0, other.spec.ready_deadline, "healthy")
            started = build.containers.get(dependency.name, _NOTHING)
            build.awaits[dependency.name] = build.add(wait, f"{container.name} depends on it being healthy", {started})
        peers.add(build.awaits[dependency.name])
    return peers


def _create_and_start(
    build: _Builder, container: manifests.DesiredContainer, reason: str, needs: set[int], peers: set[int]
) -> tuple[int, int]:
    """Create the container under its own name (once any old one of that name is gone), start it."""
    name = container.name
    created = build.add(
        plans.CreateContainer(container_request(container)), reason, needs | {build.gone.get(name, _NOTHING)}
    )
    return created, build.add(plans.StartContainer(name), reason, {created} | peers)


def _create_first(
    build: _Builder, container: manifests.DesiredContainer, decision: Decision, needs: set[int], peers: set[int]
) -> tuple[int, ...]:
    """A rollout through ``<name>.next``: start-first (create, start, await ready, stop the old,
    remove it, rename the new) or stop-first (create, stop the old, start, await ready, remove,
    rename). A failed await leaves the old container in place (see :mod:`reconciler.rollouts`)."""
    name, spec, reason = container.name, container.spec, decision.reason
    staging = staged(name)
    gate = plans.AwaitReady(staging, container.stack, spec.healthcheck, spec.min_ready_seconds, spec.ready_deadline,
                            exit_zero_ok=spec.restart.policy == "no")  # fmt: skip
    request = container_request(container, name=staging)
    created = build.add(plans.CreateContainer(request), reason, needs | {build.gone.get(staging, _NOTHING)})
    steps: tuple[int, ...]
    if decision.order == "stop-first":
        stopped = build.add(plans.StopContainer(name, spec.stop_timeout), reason, {created})
        started = build.add(plans.StartContainer(staging), reason, {stopped} | peers)
        ready = build.add(gate, reason, {started})
        removed = build.add(plans.RemoveContainer(name), reason, {ready})
        steps = (created, stopped, started, ready, removed)
    else:
        started = build.add(plans.StartContainer(staging), reason, {created} | peers)
        ready = build.add(gate, reason, {started})
        stopped = build.add(plans.StopContainer(name, spec.stop_timeout), reason, {ready})
        removed = build.add(plans.RemoveContainer(name), reason, {stopped})
        steps = (created, started, ready, stopped, removed)
    build.gone[name] = removed  # the networks and volumes it used may go after this
    return *steps, build.add(plans.RenameContainer(staging, name), reason, {removed})


def _remove_orphan_networks(
    build: _Builder, desired: manifests.Desired, actual: observed.Observed, stacks: Collection[str], *, prune: bool
) -> None:
    """Orphan networks go after every container that used them is gone."""
    reason = "orphan (not in the files given: removed)"
    for name in sorted(actual.networks):
        present = actual.networks[name]
        if present.stack not in stacks or name in desired.networks:
            continue
        if not prune:
            build.notes.append(f"network {name} is not in the manifests; kept because of --no-prune")
            continue
        users = {step for c, step in build.gone.items() if name in actual.containers[c].networks}
        build.add(plans.RemoveNetwork(name), reason, users)
        build.changes.append(plans.Change("Network", name, present.stack or "", "remove", reason))


def _remove_orphan_volumes(
    build: _Builder,
    desired: manifests.Desired,
    actual: observed.Observed,
    stacks: Collection[str],
    *,
    prune_volumes: bool,
) -> None:
    """Orphan volumes are kept (they hold data) unless ``prune_volumes``; then they go after their users."""
    reason = "orphan (not in the files given: removed, --prune-volumes)"
    for name in sorted(actual.volumes):
        present = actual.volumes[name]
        if present.stack not in stacks or name in desired.volumes:
            continue
        if not prune_volumes:
            build.notes.append(
                f"volume {name} (stack {present.stack}) is not in the manifests and is kept: volumes "
                "hold data; pass --prune-volumes to remove it"
            )
            continue
        users = {step for c, step in build.gone.items() if name in actual.containers[c].volumes}
        build.add(plans.RemoveVolume(name), reason, users)
        build.changes.append(plans.Change("Volume", name, present.stack or "", "remove", reason))


def _recorded_stop_timeout(container: observed.ObservedContainer) -> float:
    """The stopTimeout the container was created with (from its spec label), else Docker's 10 s."""
    document = container.spec_json or {}
    spec = document.get("spec")
    value = spec.get("stopTimeout") if isinstance(spec, dict) else None
    return float(value) if isinstance(value, int | float) else _DOCKER_STOP_TIMEOUT


def _dependency_order(desired: manifests.Desired) -> list[str]:
    """Container names, dependencies first, ties broken by name (the loader rejected cycles)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in desired.containers:
            return
        seen.add(name)
        for dependency in manifests.container_dependencies(desired.containers[name]):
            visit(dependency)
        order.append(name)

    for name in sorted(desired.containers):
        visit(name)
    return order
