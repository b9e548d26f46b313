"""Moved tags, found while watching: ``pullPolicy: Always`` images checked every ``imageRefresh``.

Where it sits: a part of the loop beside health and restarts. The loop's timer enqueues
:data:`IMAGES_KEY` every ``interval`` seconds (``reconcile watch --image-refresh``, default an
hour); a worker runs :meth:`ImageRefresh.check`, which asks the registry about each ``Always``
image the folder declares (the engine's pull with policy ``Always``: a tag that did not move costs
one manifest request, a moved one transfers only the layers that changed) and answers the stacks
that run an image the tag no longer names. The loop gives those a full pass, whose plan says
"image changed" and replaces the containers through the same health gate as any other recreate.

It must not recreate or stop anything itself, and one image that cannot be checked (a registry
down) is an event, not a failure of the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from reconciler import engine, errors, manifests, observed
from reconciler.controller import report

log = logging.getLogger("reconciler.controller")

IMAGES_KEY = ":images"
DEFAULT_IMAGE_REFRESH = 3600.0


class ImageRefresh:
    """Checks the ``Always`` images; reports moved tags as events and answers the stacks to roll."""

    def __init__(self, target: engine.Engine, events: report.EventLog, *, interval: float, start: float) -> None:
        """``start``: the loop's monotonic time now; the first check is one ``interval`` later."""
        self.engine = target
        self.events = events
        self.interval = interval
        self._next = start + interval

    def due(self, now: float) -> bool:
        """Whether a check is due at ``now``."""
        if self.interval <= 0 or now < self._next:
            return False
        self._next = now + self.interval
        return True

    def next_in(self, now: float) -> float:
        """Seconds to the next check (the timer's horizon); an hour when checks are off."""
        if self.interval <= 0:
            return DEFAULT_IMAGE_REFRESH
        return max(0.0, self._next - now)

    def check(self, desired: manifests.Desired, actual: observed.Observed) -> set[str]:
        """Pull each ``Always`` image; the stacks whose containers run another id than the tag's now."""
        rolling: set[str] = set()
        for image in sorted({c.spec.image for c in desired.containers.values() if c.spec.pull_policy == "Always"}):
            users = [name for name, c in desired.containers.items() if c.spec.image == image]
            try:
                now_names = self.engine.pull_image(image, policy="Always")
            except errors.EngineError as exc:
                where = ",".join(sorted({desired.containers[name].stack for name in users}))
                self.events.add(
                    "image-check-failed", where, "", f"image {image}: could not check for a new version: {exc}"
                )
                continue
            behind = list(_behind(users, actual, now_names))
            if not behind:
                continue
            stacks = {desired.containers[name].stack for name in behind}
            olds = sorted({actual.containers[name].image_id[:19] for name in behind})
            self.events.add("image-updated", ",".join(sorted(stacks)), "",
                            f"image {image} now names {now_names[:19]} (running: {', '.join(olds)}); "
                            f"rolling {', '.join(sorted(behind))}")  # fmt: skip
            rolling |= stacks
        return rolling


def _behind(names: Iterable[str], actual: observed.Observed, image_id: str) -> Iterable[str]:
    """The containers among ``names`` that exist and run another image than ``image_id``."""
    for name in names:
        present = actual.containers.get(name)
        if present is not None and present.image_id != image_id:
            yield name
