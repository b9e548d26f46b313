"""The work queue: client-go semantics (dedup, no two workers on one key, coalescing, backoff)."""

from __future__ import annotations

import threading
import time

import pytest

from reconciler.controller import queue as work
from tests.unit.controller_support import FakeClock


def test_adding_a_queued_key_again_is_a_no_op() -> None:
    queue = work.WorkQueue(FakeClock())
    queue.add("shop")
    queue.add("shop")
    queue.add("blog")
    assert queue.depth() == 2
    assert [queue.try_get(), queue.try_get(), queue.try_get()] == ["shop", "blog", None]


def test_a_key_being_processed_is_never_handed_out_again_until_done() -> None:
    queue = work.WorkQueue(FakeClock())
    queue.add("shop")
    assert queue.try_get() == "shop"
    queue.add("shop")  # a trigger while processing
    queue.add("shop")  # ... and another: coalesced
    assert queue.try_get() is None, "a second worker must not get a key in progress"
    queue.done("shop")
    assert queue.try_get() == "shop", "the re-add while processing gives exactly one more pass"
    queue.done("shop")
    assert queue.try_get() is None


def test_add_after_becomes_ready_when_the_clock_reaches_it() -> None:
    clock = FakeClock()
    queue = work.WorkQueue(clock)
    queue.add_after("shop", 0.5)
    assert queue.try_get() is None
    clock.advance(0.499)
    assert queue.try_get() is None
    clock.advance(0.001)
    assert queue.try_get() == "shop"


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.005), (1, 0.01), (2, 0.02), (10, 5.12), (17, 655.36), (18, 1000.0), (500, 1000.0)],
)
def test_requeue_backoff_is_5ms_doubling_capped_at_1000s(failures: int, delay: float) -> None:
    assert work.requeue_delay(failures) == pytest.approx(delay)


def test_rate_limited_requeues_grow_per_key_and_forget_resets() -> None:
    clock = FakeClock()
    queue = work.WorkQueue(clock)
    assert [queue.add_rate_limited("shop") for _ in range(4)] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert queue.add_rate_limited("blog") == pytest.approx(0.005), "backoff is per key"
    queue.forget("shop")
    assert queue.add_rate_limited("shop") == pytest.approx(0.005)


def test_blocking_get_wakes_for_a_delayed_key_and_on_shutdown() -> None:
    queue = work.WorkQueue(work.SystemClock())
    queue.add_after("shop", 0.05)
    started = time.monotonic()
    assert queue.get(timeout=1.0) == "shop", "woken for the delayed key, not at the timeout"
    assert time.monotonic() - started >= 0.04, "not before its delay (0.05 s from the add)"
    got: list[str | None] = []
    waiter = threading.Thread(target=lambda: got.append(queue.get()))
    waiter.start()
    queue.shutdown()
    waiter.join(2.0)
    assert got == [None]


def test_two_workers_never_process_one_key_at_once() -> None:
    queue = work.WorkQueue(work.SystemClock())
    active: dict[str, int] = {}
    overlaps: list[str] = []
    lock = threading.Lock()
    processed: list[str] = []

    def worker() -> None:
        while (key := queue.get(timeout=0.3)) is not None:
            with lock:
                active[key] = active.get(key, 0) + 1
                if active[key] > 1:
                    overlaps.append(key)
            time.sleep(0.002)
            with lock:
                active[key] -= 1
                processed.append(key)
            queue.done(key)

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for thread in workers:
        thread.start()
    for _ in range(200):
        queue.add("shop")
        queue.add("blog")
        time.sleep(0.0002)
    for thread in workers:
        thread.join(5.0)
    assert not overlaps
    assert {"shop", "blog"} <= set(processed)
    assert len(processed) < 400, "triggers during a pass are coalesced"
