"""Shared helpers for the unit tests: a memory engine with a known image, apply in one call."""

from __future__ import annotations

import textwrap

from reconciler import executing, manifests, planning, plans
from reconciler.backends import memory

IMAGE = "127.0.0.1:5000/test/busybox:1"
IMAGE_ID = "sha256:" + "1" * 64


def new_engine() -> memory.MemoryEngine:
    return memory.MemoryEngine(images={IMAGE: IMAGE_ID, "127.0.0.1:5000/test/busybox:2": "sha256:" + "2" * 64})


def load(text: str, file: str = "shop.yaml") -> manifests.Desired:
    return manifests.load_text(textwrap.dedent(text), file)


def plan_for(engine: memory.MemoryEngine, desired: manifests.Desired, **options: object) -> plans.Plan:
    return planning.plan(desired, engine.observe(images=planning.images_of(desired)), planning.Options(**options))  # type: ignore[arg-type]


def apply(engine: memory.MemoryEngine, desired: manifests.Desired, **options: object) -> executing.Outcome:
    outcome = executing.execute(plan_for(engine, desired, **options), engine)
    assert outcome.ok, [r.error for r in outcome.results if r.error]
    return outcome
