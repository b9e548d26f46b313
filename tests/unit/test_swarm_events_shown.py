"""``reconcile events`` without a daemon on swarm: the replicas of one service share its id (the id
the swarm engine gives each member), so a run already shown is told by container id *and* name."""

from __future__ import annotations

from reconciler import engine
from reconciler.cli import events


def _event(action: engine.EventAction, name: str, at: float) -> engine.Event:
    return engine.Event(time=at, action=action, name=name, container_id="service-id", stack="shop")


def test_the_start_of_each_replica_of_one_service_is_news_once() -> None:
    shown = events.Shown()
    assert shown.news(_event("start", "web-1", 1.0))
    assert shown.news(_event("start", "web-2", 2.0))  # another replica: not the same run
    assert not shown.news(_event("start", "web-2", 3.0))  # the live stream telling the same run again
    assert shown.news(_event("die", "web-2", 4.0))
    assert shown.news(_event("start", "web-2", 5.0))  # a new run after the die
