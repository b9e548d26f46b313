"""Docker backend, the informer-style cache: container list and inspects kept between observes.

Where it sits: the engine's ``observe`` reads the owned containers through :class:`Informer`,
its ``events`` tells it when a subscription begins and ends and which container an event named,
and every method that changes a container tells it to forget.

While someone consumes the engine's events (the controller always does), the container list and
the inspects are kept: an inspect stays valid until dockerd reports an event for that container,
its listed state changes, or this engine changes a container itself; the list until any
container event, or for :data:`LIST_MAX_AGE` seconds at most (the informer's re-list). A
long-running daemon's no-op apply then costs a network list, a volume list and the image
inspects. Without a live event stream (the embedded CLI) nothing is cached: there would be no
one to say when an inspect went stale (a hand-made ``docker update`` changes nothing the list
shows).

It must not call the daemon itself: the engine passes the calls that fetch.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# Longest time a cached container list is trusted, events or not.
LIST_MAX_AGE = 30.0


class Informer:
    """The cache; thread-safe. ``epoch`` counts invalidations, so a fetch racing an event is not stored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # container id -> (its state in the list when inspected, the inspect)
        self._inspected: dict[str, tuple[str, dict[str, Any]]] = {}
        self._listed: list[dict[str, Any]] | None = None
        self._listed_at = 0.0
        self._streams = 0
        self._epoch = 0

    @property
    def live_streams(self) -> int:
        """How many event subscriptions are being consumed (the cache is trusted while above 0)."""
        with self._lock:
            return self._streams

    @property
    def cached_inspects(self) -> int:
        with self._lock:
            return len(self._inspected)

    @contextlib.contextmanager
    def subscribed(self) -> Iterator[None]:
        """Around an event subscription: what was cached before it, or after it ends, may have missed events."""
        with self._lock:
            self._streams += 1
        self.forget()
        try:
            yield
        finally:
            with self._lock:
                self._streams -= 1
            self.forget()

    def forget(self, container_id: str | None = None) -> None:
        """Drop cached inspects: one container's (an event named it) or all (we changed something)."""
        with self._lock:
            self._epoch += 1
            self._listed = None
            if container_id is None:
                self._inspected.clear()
            else:
                self._inspected.pop(container_id, None)

    def list_owned(self, fetch: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The owned containers: the cached list while it is valid, else ``fetch()`` (kept if still valid)."""
        now = time.monotonic()
        with self._lock:
            fresh = self._streams and self._listed is not None and now - self._listed_at < LIST_MAX_AGE
            cached = self._listed if fresh else None
            epoch = self._epoch
        if cached is not None:
            return cached
        listed = fetch()
        with self._lock:
            if self._streams and self._epoch == epoch:
                self._listed, self._listed_at = listed, now
        return listed

    def inspect_listed(
        self, listed: Mapping[str, Any], fetch: Callable[[str], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """The inspect of a listed container: the cached one while it is still valid, else ``fetch(id)``."""
        container_id, state = str(listed["Id"]), str(listed.get("State", ""))
        with self._lock:
            cached = self._inspected.get(container_id) if self._streams else None
            epoch = self._epoch
        if cached is not None and cached[0] == state:
            return cached[1]
        inspected = fetch(container_id)
        with self._lock:
            if inspected is not None and self._streams and self._epoch == epoch:
                self._inspected[container_id] = (state, inspected)
        return inspected

    def keep_only(self, container_ids: set[str]) -> None:
        """Containers removed since they were cached: their inspects are of no more use."""
        with self._lock:
            for gone in set(self._inspected) - container_ids:
                del self._inspected[gone]
