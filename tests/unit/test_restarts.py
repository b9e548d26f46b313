"""The one restart policy: who restarts, whether an exit restarts, how long to wait, what apply starts."""

from __future__ import annotations

import random
from typing import Any

import pytest

from reconciler import manifests, observed, restarts


def spec(**fields: Any) -> manifests.ContainerSpec:
    return manifests.container_spec_from_document({"image": "busybox", **fields})


def container(
    state: observed.ContainerState, exit_code: int | None = None, made: int = 0
) -> observed.ObservedContainer:
    return observed.ObservedContainer(
        name="job", labels={}, container_id="c1", image="busybox", image_id="sha256:1",
        state=state, exit_code=exit_code, restart_count=made,
    )  # fmt: skip


def test_the_default_backoff_is_the_manifests_default() -> None:
    assert manifests.Backoff() == restarts.DEFAULT_BACKOFF


@pytest.mark.parametrize(("attempt", "delay"), [(0, 0.1), (1, 0.2), (2, 0.4), (9, 51.2), (10, 60.0), (500, 60.0)])
def test_default_backoff_is_dockers_100ms_doubling_capped_at_a_minute(attempt: int, delay: float) -> None:
    assert restarts.restart_delay(restarts.DEFAULT_BACKOFF, attempt) == pytest.approx(delay)


def test_jitter_spreads_each_delay_around_its_capped_value() -> None:
    backoff = spec(
        restart={"policy": "always", "backoff": {"initial": "1s", "max": "5s", "factor": 3.0, "jitter": 0.2}}
    )
    assert backoff.restart.backoff is not None
    rng = random.Random(7)
    for attempt, base in enumerate([1.0, 3.0, 5.0, 5.0]):
        delays = [restarts.restart_delay(backoff.restart.backoff, attempt, rng=rng) for _ in range(200)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
        assert max(delays) - min(delays) > base * 0.2, "jitter spreads the delays"
    assert restarts.restart_delay(backoff.restart.backoff, 1) == 3.0, "no randomness given: no jitter"


def test_the_same_seed_gives_the_same_delays() -> None:
    backoff = spec(restart={"policy": "always", "backoff": {"jitter": 0.5}}).restart.backoff
    assert backoff is not None
    first = [restarts.restart_delay(backoff, n, rng=random.Random(3)) for n in range(5)]
    assert first == [restarts.restart_delay(backoff, n, rng=random.Random(3)) for n in range(5)]


@pytest.mark.parametrize(
    ("policy", "retries", "exit_code", "made", "expected"),
    [
        ("no", None, 1, 0, False),
        ("always", None, 0, 50, True),
        ("unless-stopped", None, 137, 5, True),
        ("on-failure", None, 0, 0, False),
        ("on-failure", None, None, 0, False),
        ("on-failure", None, 1, 100, True),
        ("on-failure", 3, 1, 2, True),
        ("on-failure", 3, 1, 3, False),
    ],
)
def test_wants_restart(policy: str, retries: int | None, exit_code: int | None, made: int, expected: bool) -> None:
    restart = spec(restart={"policy": policy, "maxRetries": retries}).restart
    assert restarts.wants_restart(restart, exit_code, restarts=made) is expected


def test_docker_keeps_its_own_restarts_unless_backoff_or_on_unhealthy_is_set() -> None:
    def owns(restart: dict[str, object], *, engine_restarts: bool) -> bool:
        return restarts.controller_owns_restarts(spec(restart=restart), engine_restarts=engine_restarts)

    assert owns({"policy": "always"}, engine_restarts=False)
    assert not owns({"policy": "always"}, engine_restarts=True)
    assert owns({"policy": "always", "backoff": {"initial": "1s"}}, engine_restarts=True)
    assert owns({"onUnhealthy": True}, engine_restarts=True)
    assert owns({"policy": "no", "onUnhealthy": True}, engine_restarts=False)
    assert not owns({"policy": "no"}, engine_restarts=False)


@pytest.mark.parametrize("state", ["running", "restarting", "paused"])
def test_apply_leaves_a_live_container_alone(state: observed.ContainerState) -> None:
    assert not restarts.should_run(spec(restart={"policy": "always"}), container(state))


def test_apply_starts_a_created_container_whatever_its_policy() -> None:
    assert restarts.should_run(spec(), container("created"))


@pytest.mark.parametrize(
    ("restart", "exit_code", "made", "expected"),
    [
        ({"policy": "always"}, 0, 0, True),
        ({"policy": "unless-stopped"}, 137, 3, True),
        ({"policy": "no"}, 0, 0, False),  # a one-shot job that completed stays completed
        ({"policy": "no"}, 1, 0, False),
        ({"policy": "on-failure"}, 0, 0, False),
        ({"policy": "on-failure", "maxRetries": 2}, 1, 1, True),
        ({"policy": "on-failure", "maxRetries": 2}, 1, 2, False),
    ],
)
def test_apply_restarts_an_exited_container_as_its_policy_says(
    restart: dict[str, object], exit_code: int, made: int, expected: bool
) -> None:
    assert restarts.should_run(spec(restart=restart), container("exited", exit_code, made)) is expected
