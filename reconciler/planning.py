"""The planner: desired × observed → a :class:`plans.Plan`. A pure function: no I/O, no engine.

Decisions, per object (the reason each step carries is in quotes):

* **Networks and volumes** are created when absent ("not found"). A network whose spec hash
  changed is recreated, and so is every container attached to it (stop-first, since a container
  cannot move to a network that does not exist yet). A volume whose spec changed is a
  :class:`errors.PlanError`: volumes hold data, so the user decides.
* **Containers** are created and started when absent ("not found"); recreated when their spec
  hash changed ("spec changed: env.FOO, ports[0].hostPort", with a field-level diff) or their image
  moved ("image changed"); updated in place when only resource limits differ; started when their
  restart policy says they should be running and they are not ("drift: exited (137)").
* **Recreate order** is create-new → stop-old → start-new → remove-old → rename-new: the old
  container keeps serving while the new one is created, and the downtime is the stop-to-start gap.
  The new container is created as ``<name>.next``, a name no manifest can declare (dots are not
  allowed in DNS labels), so it can never collide with a user's container.
* **Pruning** removes owned objects of the stacks in scope that no manifest declares any more
  ("orphan: not in manifests"). Volumes are never removed unless ``prune_volumes`` is set; a kept
  volume is mentioned in the plan's notes.
* **Ownership**: an object of the same name owned by another stack is a ``PlanError`` naming both.

Ordering (the DAG): networks, volumes and image pulls before the containers that use them;
``dependsOn``/``volumesFrom``/``container:`` peers started before their dependents; removals of
containers before the networks and volumes they used; any create of a name after the removal of
the same name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from reconciler import errors, hashing, manifests, observed, plans, restarts

NEXT_SUFFIX = ".next"
DEFAULT_STOP_TIMEOUT = 10.0


def owner_labels(stack: str, kind: str, spec_hash: str) -> dict[str, str]:
    return {observed.LABEL_STACK: stack, observed.LABEL_KIND: kind, observed.LABEL_HASH: spec_hash}


def container_request(container: manifests.DesiredContainer, *, name: str | None = None) -> plans.ContainerRequest:
    """The engine request for a desired container: owner labels, the spec document, user labels."""
    document = hashing.container_document(container)
    labels = dict(container.labels)
    labels.update(owner_labels(container.stack, "Container", hashing.container_hash(container)))
    labels[observed.LABEL_SPEC] = hashing.canonical_json(document)
    return plans.ContainerRequest(
        name=name or container.name, spec=container.spec, env=dict(container.effective_env), labels=labels
    )


def network_request(network: manifests.DesiredNetwork) -> plans.NetworkRequest:
    labels = dict(network.labels)
    labels.update(owner_labels(network.stack, "Network", hashing.network_hash(network)))
    return plans.NetworkRequest(name=network.name, spec=network.spec, labels=labels)


def volume_request(volume: manifests.DesiredVolume) -> plans.VolumeRequest:
    labels = dict(volume.spec.labels)
    labels.update(volume.labels)
    labels.update(owner_labels(volume.stack, "Volume", hashing.volume_hash(volume)))
    return plans.VolumeRequest(name=volume.name, spec=volume.spec, labels=labels)


def images_of(desired: manifests.Desired) -> list[str]:
    """The image references the planner wants the engine to resolve locally (for ``observe``)."""
    return sorted({c.spec.image for c in desired.containers.values()})


def _resources_differ(wanted: manifests.Resources, actual: observed.ObservedResources) -> list[plans.FieldChange]:
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
    return changes


@dataclasses.dataclass(slots=True)
class _Builder:
    steps: list[plans.Step] = dataclasses.field(default_factory=list)
    changes: list[plans.Change] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, action: plans.Action, reason: str, after: set[int] | None = None) -> int:
        number = len(self.steps) + 1
        self.steps.append(plans.Step(number, action, reason, tuple(sorted(a for a in (after or ()) if a))))
        return number

    def plan(self) -> plans.Plan:
        return plans.Plan(tuple(self.steps), tuple(self.changes), tuple(self.notes))


def _conflicts(desired: manifests.Desired, actual: observed.Observed) -> list[str]:
    problems = []
    pairs: list[tuple[str, Mapping[str, object], Mapping[str, observed.Owned]]] = [
        ("container", desired.containers, actual.containers),
        ("network", desired.networks, actual.networks),
        ("volume", desired.volumes, actual.volumes),
    ]
    for kind, wanted, present in pairs:
        for name in sorted(wanted):
            item = wanted[name]
            stack = getattr(item, "stack", None)
            other = present.get(name)
            if other is not None and other.stack != stack:
                problems.append(
                    f"{kind} {name} is declared in stack {stack!r} ({getattr(item, 'source', '?')}) but the "
                    f"existing {kind} {name} belongs to stack {other.stack!r}; delete it from stack "
                    f"{other.stack!r} first, or rename one of them"
                )
    return problems


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """What the caller decides about a plan, beyond the desired and the actual state.

    ``scope``: the stacks to act on; default the stacks the desired state declares (``reconcile
    delete --stack X`` passes an empty desired state with ``scope={"X"}``). Objects of other
    stacks are never touched. ``prune``/``prune_volumes``: remove owned objects of those stacks
    that no manifest declares (volumes only with ``prune_volumes``).

    The controller's two inputs: ``restarts_elsewhere`` names containers whose restarts the
    restart manager carries out (with its backoff and ``maxRetries``), so an exited one gets no
    immediate start step; ``gates`` maps a container to why it must not be created or started yet
    (a ``dependsOn`` condition ``healthy``/``completed`` not met): its steps, and the steps that
    depend on them, are left out of the plan.
    """

    prune: bool = True
    prune_volumes: bool = False
    scope: frozenset[str] | None = None
    restarts_elsewhere: frozenset[str] = frozenset()
    gates: Mapping[str, str] = dataclasses.field(default_factory=dict)


def plan(desired: manifests.Desired, actual: observed.Observed, options: Options | None = None) -> plans.Plan:
    """Plan the steps that turn ``actual`` into ``desired``, as ``options`` say (see :class:`Options`)."""
    options = options or Options()
    return _held(_plan(desired, actual, prune=options.prune, prune_volumes=options.prune_volumes,
                       scope=options.scope), options)  # fmt: skip


def container_of(action: plans.Action) -> str | None:
    """The manifest name of the container an action touches (``web.next`` counts as ``web``)."""
    name: str | None
    match action:
        case plans.CreateContainer(request=request):
            name = request.name
        case plans.StartContainer(name=n) | plans.StopContainer(name=n) | plans.RemoveContainer(name=n):
            name = n
        case plans.RenameContainer(new_name=n) | plans.UpdateContainer(name=n):
            name = n
        case _:
            name = None
    return name.removesuffix(NEXT_SUFFIX) if name is not None else None


def _held(plan: plans.Plan, options: Options) -> plans.Plan:
    """``plan`` without the starts the restart manager owns and the gated containers' steps."""
    starts = {c.name for c in plan.changes if c.kind == "Container" and c.change == "start"}
    owned = options.restarts_elsewhere & starts
    plan = _without(
        plan, lambda step: isinstance(step.action, plans.StartContainer) and step.action.name in owned, cascade=False
    )
    if options.gates:
        plan = _without(plan, lambda step: container_of(step.action) in options.gates, cascade=True)
    return plan


def _without(plan: plans.Plan, doomed: Callable[[plans.Step], bool], *, cascade: bool) -> plans.Plan:
    """``plan`` without the steps ``doomed`` selects; with ``cascade``, without their dependents too.

    Without ``cascade`` the dropped steps are only removed from the ``after`` lists of the rest
    (a dependent waits for nothing that will not run).
    """
    dropped = {step.number for step in plan.steps if doomed(step)}
    if cascade:
        changed = True
        while changed:
            changed = False
            for step in plan.steps:
                if step.number not in dropped and dropped & set(step.after):
                    dropped.add(step.number)
                    changed = True
    if not dropped:
        return plan
    steps = tuple(
        dataclasses.replace(step, after=tuple(a for a in step.after if a not in dropped))
        for step in plan.steps
        if step.number not in dropped
    )
    touched = {container_of(step.action) for step in steps}
    changes = tuple(c for c in plan.changes if c.kind != "Container" or c.name in touched)
    return plans.Plan(steps, changes, plan.notes)


def _plan(
    desired: manifests.Desired,
    actual: observed.Observed,
    *,
    prune: bool = True,
    prune_volumes: bool = False,
    scope: frozenset[str] | None = None,
) -> plans.Plan:
    stacks = desired.stacks if scope is None else scope
    problems = _conflicts(desired, actual)
    for name in sorted(desired.volumes):
        volume = desired.volumes[name]
        existing_volume = actual.volumes.get(name)
        if (
            existing_volume is not None
            and existing_volume.stack == volume.stack
            and existing_volume.spec_hash != hashing.volume_hash(volume)
        ):
            problems.append(
                f"volume {name}: its spec changed ({volume.source}), and volumes hold data, so it is not "
                "recreated; restore the old spec, or remove the volume explicitly with "
                f"`reconcile delete --stack {volume.stack} --prune-volumes` and apply again"
            )
    if problems:
        raise errors.PlanError("\n".join(problems))

    build = _Builder()
    removed_step: dict[tuple[str, str], int] = {}  # (kind, name) -> step that removed it
    ready: dict[tuple[str, str], int] = {}  # (kind, name) -> step after which it exists/runs
    container_gone: dict[str, int] = {}  # old container name -> step after which it no longer exists

    # -- decide containers first: network recreation and image pulls depend on it -------------
    network_recreated = {
        name
        for name, network in desired.networks.items()
        if name in actual.networks and actual.networks[name].spec_hash != hashing.network_hash(network)
    }
    decisions: dict[str, tuple[str, str, tuple[plans.FieldChange, ...]]] = {}
    for name in sorted(desired.containers):
        container = desired.containers[name]
        present = actual.containers.get(name)
        if present is None:
            decisions[name] = ("create", "not found", ())
            continue
        new_document = hashing.container_document(container)
        local_image = actual.images.get(container.spec.image)
        if present.spec_hash != hashing.container_hash(container):
            old_document = present.spec_json
            diff = tuple(
                dataclasses.replace(change, path=change.path.removeprefix("spec."))
                for change in (plans.diff_documents(old_document, new_document) if old_document else [])
            )
            fields = ", ".join(change.path for change in diff[:6])
            more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
            reason = f"spec changed: {fields}{more}" if fields else "spec changed (hash scheme or labels)"
            decisions[name] = ("recreate", reason, diff)
        elif local_image is not None and present.image_id and present.image_id != local_image:
            decisions[name] = (
                "recreate",
                f"image changed: {container.spec.image} is now {local_image[:19]}, was {present.image_id[:19]}",
                (plans.FieldChange("image id", present.image_id, local_image),),
            )
        elif set(present.networks) & network_recreated:
            nets = ", ".join(sorted(set(present.networks) & network_recreated))
            decisions[name] = ("recreate", f"network {nets} is recreated", ())
        elif resource_diff := _resources_differ(container.spec.resources, present.resources):
            decisions[name] = ("update", "resources changed: update in place", tuple(resource_diff))
        elif restarts.should_run(container.spec, present):
            exit_text = f" ({present.exit_code})" if present.exit_code is not None else ""
            decisions[name] = ("start", f"drift: {present.state}{exit_text}, restart policy "
                               f"{container.spec.restart.policy}", ())  # fmt: skip
    # A container sharing another's network namespace must follow it when that one is recreated.
    changed = True
    while changed:
        changed = False
        for name, container in sorted(desired.containers.items()):
            mode = container.spec.network_mode
            peer = mode.removeprefix("container:") if mode.startswith("container:") else None
            if (peer and decisions.get(peer, ("",))[0] in ("recreate", "create") and name not in decisions) or (
                peer and decisions.get(peer, ("",))[0] == "recreate" and decisions[name][0] in ("update", "start")
            ):
                decisions[name] = ("recreate", f"container {peer} is recreated (networkMode {mode})", ())
                changed = True

    # -- orphans in scope: containers first (they hold networks and volumes) --------------------
    for name in sorted(actual.containers):
        present = actual.containers[name]
        if present.stack not in stacks or name in desired.containers:
            continue
        if not prune:
            build.notes.append(f"container {name} is not in the manifests; kept because of --no-prune")
            continue
        stop = build.add(plans.StopContainer(name, _recorded_stop_timeout(present)), "orphan: not in manifests")
        gone = build.add(plans.RemoveContainer(name), "orphan: not in manifests", {stop})
        removed_step[("container", name)] = gone
        container_gone[name] = gone
        build.changes.append(plans.Change("Container", name, present.stack or "", "remove", "orphan: not in manifests"))

    # Old containers that must disappear before their network is recreated (stop-first recreate).
    for name in sorted(decisions):
        verb, reason, diff = decisions[name]
        present = actual.containers.get(name)
        if verb == "recreate" and present is not None and set(present.networks) & network_recreated:
            container = desired.containers[name]
            stop = build.add(plans.StopContainer(name, container.spec.stop_timeout), reason)
            gone = build.add(plans.RemoveContainer(name), reason, {stop})
            container_gone[name] = gone
            removed_step[("container", name)] = gone

    # -- networks -------------------------------------------------------------------------------
    for name in sorted(desired.networks):
        network = desired.networks[name]
        if name not in actual.networks:
            ready[("network", name)] = build.add(plans.CreateNetwork(network_request(network)), "not found")
            build.changes.append(plans.Change("Network", name, network.stack, "create", "not found"))
        elif name in network_recreated:
            users = {
                container_gone[c]
                for c, present in actual.containers.items()
                if name in present.networks and c in container_gone
            }
            diff = tuple(plans.diff_documents({}, hashing.network_document(network)))
            removal = build.add(plans.RemoveNetwork(name), "spec changed", users)
            ready[("network", name)] = build.add(
                plans.CreateNetwork(network_request(network)), "spec changed", {removal}
            )
            build.changes.append(plans.Change("Network", name, network.stack, "recreate", "spec changed", diff))

    # -- volumes --------------------------------------------------------------------------------
    for name in sorted(desired.volumes):
        volume = desired.volumes[name]
        if name not in actual.volumes:
            ready[("volume", name)] = build.add(plans.CreateVolume(volume_request(volume)), "not found")
            build.changes.append(plans.Change("Volume", name, volume.stack, "create", "not found"))

    # -- image pulls for containers that will be created ----------------------------------------
    pulls: dict[str, int] = {}
    for name in sorted(decisions):
        verb = decisions[name][0]
        spec = desired.containers[name].spec
        if verb not in ("create", "recreate") or spec.image in pulls:
            continue
        if actual.images.get(spec.image) is None:
            if spec.pull_policy == "Never":
                raise errors.PlanError(f"container {name}: image {spec.image} is not present and pullPolicy is Never")
            pulls[spec.image] = build.add(plans.PullImage(spec.image, spec.pull_policy), "not present locally")

    # -- containers, in dependency order ----------------------------------------------------------
    for name in _dependency_order(desired):
        if name not in decisions:
            continue
        container = desired.containers[name]
        verb, reason, diff = decisions[name]
        present = actual.containers.get(name)
        needs: set[int] = {pulls.get(container.spec.image, 0)}
        needs |= {ready.get(("network", n.name), 0) for n in container.spec.networks}
        needs |= {
            ready.get(("volume", m.source), 0) for m in container.spec.mounts if isinstance(m, manifests.VolumeMount)
        }
        dependencies = {ready.get(("container", dep), 0) for dep in manifests.container_dependencies(container)}
        build.changes.append(plans.Change("Container", name, container.stack, verb,  # type: ignore[arg-type]
                                          reason, diff))  # fmt: skip
        if verb == "update":
            ready[("container", name)] = build.add(plans.UpdateContainer(name, container.spec.resources), reason)
        elif verb == "start":
            ready[("container", name)] = build.add(plans.StartContainer(name), reason, dependencies)
        elif verb == "create" or name in container_gone:
            needs.add(removed_step.get(("container", name), 0))
            created = build.add(plans.CreateContainer(container_request(container)), reason, needs)
            ready[("container", name)] = build.add(plans.StartContainer(name), reason, {created} | dependencies)
        else:
            assert present is not None
            staged = f"{name}{NEXT_SUFFIX}"
            needs.add(removed_step.get(("container", staged), 0))
            created = build.add(plans.CreateContainer(container_request(container, name=staged)), reason, needs)
            stopped = build.add(plans.StopContainer(name, container.spec.stop_timeout), reason, {created})
            started = build.add(plans.StartContainer(staged), reason, {stopped} | dependencies)
            removed = build.add(plans.RemoveContainer(name), reason, {started})
            container_gone[name] = removed  # orphan networks/volumes it used may go after this
            ready[("container", name)] = build.add(plans.RenameContainer(staged, name), reason, {removed})

    # -- orphan networks and volumes, after every container that used them is gone ----------------
    for name in sorted(actual.networks):
        present_network = actual.networks[name]
        if present_network.stack not in stacks or name in desired.networks:
            continue
        users = {step for c, step in container_gone.items() if name in actual.containers[c].networks}
        if not prune:
            build.notes.append(f"network {name} is not in the manifests; kept because of --no-prune")
            continue
        build.add(plans.RemoveNetwork(name), "orphan: not in manifests", users)
        build.changes.append(
            plans.Change("Network", name, present_network.stack or "", "remove", "orphan: not in manifests")
        )
    for name in sorted(actual.volumes):
        present_volume = actual.volumes[name]
        if present_volume.stack not in stacks or name in desired.volumes:
            continue
        if not prune_volumes:
            build.notes.append(
                f"volume {name} (stack {present_volume.stack}) is not in the manifests and is kept: volumes "
                "hold data; pass --prune-volumes to remove it"
            )
            continue
        users = {step for c, step in container_gone.items() if name in actual.containers[c].volumes}
        build.add(plans.RemoveVolume(name), "orphan: not in manifests (--prune-volumes)", users)
        build.changes.append(
            plans.Change(
                "Volume",
                name,
                present_volume.stack or "",
                "remove",
                "orphan: not in manifests (--prune-volumes)",
            )
        )
    return build.plan()


def _recorded_stop_timeout(container: observed.ObservedContainer) -> float:
    """The stopTimeout the container was created with (from its spec label), else Docker's 10 s."""
    document = container.spec_json or {}
    spec = document.get("spec")
    value = spec.get("stopTimeout") if isinstance(spec, dict) else None
    return float(value) if isinstance(value, int | float) else DEFAULT_STOP_TIMEOUT


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
