"""The swarm backend's events and history: a task container's event as its member's (the service's id,
the member's name), and what the swarm kept of the members' lives (pure functions: no daemon)."""

from __future__ import annotations

from typing import Any

from reconciler import observed
from reconciler.backends.swarm import members, service_specs, service_states

MANAGER, WORKER = "node-m", "node-w"


def _service(record: dict[str, members.Member], *, service_id: str = "svc1", name: str = "web") -> dict[str, Any]:
    labels = {observed.LABEL_STACK: "shop", observed.LABEL_KIND: "Container", members.LABEL: members.label(record)}
    return {"ID": service_id, "CreatedAt": "2026-12-01T00:00:00Z", "Spec": {"Name": name, "Labels": labels}}


def _task(task_id: str, slot: int, state: str, *, node: str = MANAGER, created: str = "2026-12-01T00:00:01Z",
          desired: str = "running", at: str = "2026-12-01T00:00:02Z", exit_code: int = 0,
          container: str = "c") -> dict[str, Any]:  # fmt: skip
    status = {"State": state, "Timestamp": at, "ContainerStatus": {"ContainerID": container, "ExitCode": exit_code}}
    return {"ID": task_id, "ServiceID": "svc1", "Slot": slot, "NodeID": node, "DesiredState": desired,
            "CreatedAt": created, "Status": status}  # fmt: skip


def _docker_event(action: str, task_id: str, *, seconds: float, exit_code: int | None = None) -> dict[str, Any]:
    attributes = {"name": f"web.1.{task_id}", service_states.SERVICE_ID_LABEL: "svc1",
                  service_states.TASK_ID_LABEL: task_id, service_specs.TASK_LABEL: "web",
                  observed.LABEL_STACK: "shop"}  # fmt: skip
    if exit_code is not None:
        attributes["exitCode"] = str(exit_code)
    return {"Type": "container", "Action": action, "Actor": {"ID": f"container-of-{task_id}", "Attributes": attributes},
            "timeNano": int(seconds * 1e9)}  # fmt: skip


def test_the_member_record_keeps_when_each_member_was_created() -> None:
    found = members.created({}, "web-1", "h", "t", at=1796083200.5)
    assert members.read({members.LABEL: members.label(found)})["web-1"].created == 1796083200.5
    # A record written before creation times were kept reads as created at 0.0 (its service's time).
    assert members.read({members.LABEL: '{"web": ["h", "running", "t"]}'})["web"].created == 0.0
    assert members.created(found, "web-1", "h2", "t2", at=5.0) == found  # idempotent: the first time stays


def test_a_task_is_its_member_as_observe_deals_the_tasks_and_its_slot_when_not_dealt() -> None:
    record = {name: members.Member("h", "running", "t") for name in ("web-1", "web-2", "web-3")}
    service = _service(record)
    tasks = [_task("a", 1, "running", created="2026-12-01T00:00:01Z"),
             _task("b", 2, "running", created="2026-12-01T00:00:02Z"),
             _task("c", 3, "running", created="2026-12-01T00:00:03Z"),
             # Slot 2's next task, still starting: its events are slot 2's member's.
             _task("d", 2, "starting", created="2026-12-01T00:00:04Z", desired="shutdown")]  # fmt: skip
    observed_names = service_states.observed_members(service, tasks, {})
    assert {name: c.state for name, c in observed_names.items()} == dict.fromkeys(record, "running")
    assert [service_states.member_of_task(service, tasks, t) for t in "abcd"] == ["web-1", "web-2", "web-3", "web-2"]
    # A task no longer listed: the service's name (no member can be told).
    assert service_states.member_of_task(service, tasks, "gone") == "web"
    # A service of one member: that member, whatever the task (a staged NAME.next renamed is one).
    alone = _service({"job": members.Member("h", "running", "t")}, name="job")
    assert service_states.member_of_task(alone, [], "anything") == "job"


def test_a_task_container_event_is_its_members_with_the_services_id() -> None:
    record = {"job": members.Member("h", "running", "t")}
    died = service_states.member_event(
        _docker_event("die", "a", seconds=10.0, exit_code=3), _service(record, name="job"), [], service_specs.TASK_LABEL
    )
    assert died is not None
    assert (died.action, died.name, died.container_id, died.exit_code, died.stack) == ("die", "job", "svc1", 3, "shop")
    # Once the service is gone, the event still names it, by the task container's label.
    gone = service_states.member_event(_docker_event("start", "a", seconds=9.0), None, [], service_specs.TASK_LABEL)
    assert gone is not None and (gone.name, gone.container_id) == ("web", "svc1")
    assert service_states.member_event({"Action": "exec_start"}, None, [], service_specs.TASK_LABEL) is None


def test_history_has_each_members_create_the_local_tasks_events_and_the_remote_tasks_states() -> None:
    record = {"web-1": members.Member("h", "running", "t", 1796083201.0),
              "web-2": members.Member("h", "running", "t"),  # an older record: the service's time
              "web-3": members.Member("h", "created", "t", 1796083300.0)}  # fmt: skip
    service = _service(record)
    tasks = [
        _task("a", 1, "running", created="2026-12-01T00:00:01Z"),
        _task("b", 2, "running", node=WORKER, created="2026-12-01T00:00:02Z", at="2026-12-01T00:00:40Z"),
        # Slot 2's earlier task on the worker: it failed (exit 3), Swarm started b in its place.
        _task("e", 2, "failed", node=WORKER, created="2026-12-01T00:00:00Z", desired="shutdown",
              at="2026-12-01T00:00:30Z", exit_code=3),
        _task("r", 2, "rejected", node=WORKER, desired="shutdown", container=""),  # never ran
    ]  # fmt: skip
    local = [
        _docker_event("create", "a", seconds=1796083202.0),  # Swarm placing the task, not the member's create
        _docker_event("start", "a", seconds=1796083203.0),
        _docker_event("exec_start: true", "a", seconds=1796083204.0),
    ]
    found = service_states.history([service], tasks, local, MANAGER, service_specs.TASK_LABEL)
    assert [(e.time, e.action, e.name, e.exit_code) for e in found] == [
        (1796083200.0, "create", "web-2", None),
        (1796083201.0, "create", "web-1", None),
        (1796083203.0, "start", "web-1", None),
        (1796083230.0, "die", "web-2", 3),
        (1796083240.0, "start", "web-2", None),
        (1796083300.0, "create", "web-3", None),
    ]
    assert {e.container_id for e in found} == {"svc1"} and {e.stack for e in found} == {"shop"}
