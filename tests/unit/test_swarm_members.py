"""The swarm backend's members: which containers of the plan a service stands for, and its replica count."""

from __future__ import annotations

from reconciler.backends.swarm import members


def _states(found: members.Members) -> dict[str, str]:
    return {name: member.state for name, member in found.items()}


def test_the_record_reads_back_what_was_written() -> None:
    written = {"web-1": members.Member("h1", "running", "t1"), "web-2": members.Member("h2", "created", "t1")}
    assert members.read({members.LABEL: members.label(written)}) == written


def test_an_unreadable_record_reads_as_no_member() -> None:
    assert members.read({members.LABEL: "{not json"}) == {}
    assert members.read({members.LABEL: '{"web": ["h", "flying", "t"]}'}) == {}
    assert members.read(None) == {}


def test_replicas_count_running_and_handing_over_members() -> None:
    found = members.created({}, "web-1", "h", "t")
    assert members.replicas(found) == 0
    found = members.started(members.created(found, "web-2", "h", "t"), "web-1")
    assert _states(found) == {"web-1": "running", "web-2": "created"}
    assert members.replicas(found) == 1
    found = members.started(found, "web-2")
    assert members.replicas(found) == 2
    assert members.replicas(members.stopped(found, "web-1")) == 1
    assert members.replicas(members.removed(found, "web-2")) == 1


def test_creating_again_keeps_the_member_as_it_is() -> None:
    found = members.started(members.created({}, "web", "h1", "t1"), "web")
    assert members.created(found, "web", "h2", "t2") == found


def test_a_stop_first_replacement_hands_the_task_over_and_never_drops_a_replica() -> None:
    # create-new → stop-old → start-new → remove-old → rename-new, as the planner orders it.
    found = members.started(members.created({}, "web", "h1", "t1"), "web")
    found = members.created(found, "web.next", "h2", "t2")
    found = members.stopped(found, "web")
    assert _states(found) == {"web": "handover", "web.next": "created"}
    assert members.replicas(found) == 1
    found = members.started(found, "web.next")
    assert _states(found) == {"web": "stopped", "web.next": "running"}
    assert members.replicas(found) == 1
    found = members.renamed(members.removed(found, "web"), "web.next", "web")
    assert found == {"web": members.Member("h2", "running", "t2")}


def test_a_start_first_replacement_runs_one_more_task_until_the_old_stops() -> None:
    found = members.started(members.created({}, "web", "h1", "t1"), "web")
    found = members.started(members.created(found, "web.next", "h2", "t2"), "web.next")
    assert members.replicas(found) == 2
    found = members.stopped(found, "web")
    assert _states(found)["web"] == "stopped"
    assert members.replicas(found) == 1


def test_a_replacement_rolled_back_before_its_start_gives_the_old_member_its_task_again() -> None:
    found = members.started(members.created({}, "web", "h1", "t1"), "web")
    found = members.stopped(members.created(found, "web.next", "h2", "t2"), "web")
    found = members.started(members.removed(found, "web.next"), "web")
    assert _states(found) == {"web": "running"}
    assert members.replicas(found) == 1


def test_stopping_a_member_that_never_started_changes_nothing() -> None:
    found = members.created({}, "web", "h", "t")
    assert members.stopped(found, "web") == found
