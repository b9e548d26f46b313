"""An embedded ``plan``/``apply`` that changes nothing, answered from a remembered verdict.

Where it sits: in ``reconciler.cli``, above ``console`` and ``options``, below the ``apply``
commands, which ask :func:`answered` before loading any manifest and remember each converged plan
they make through a :class:`Recorder`. The verdicts themselves, and why an answer is as good as a
new plan, are :mod:`reconciler.verdicts`'; this module observes the engine as the planner would
(the same images and stacks, under the same stack locks, with the same options) and prints the
remembered plan as the commands print a new one.

It must not import the models, YAML or the planner at module level, nor the planner, the plans
or the executor on the way to an answer (:mod:`reconciler.plan_inputs` has the planner's options).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from reconciler import caches, sources, verdicts
from reconciler.cli import options

if TYPE_CHECKING:
    from reconciler import engine, manifests, observed, planning, plans
    from reconciler.holds import Holds

Locks = Callable[[Iterable[str]], contextlib.AbstractContextManager[None]]


def eligible(args: argparse.Namespace, texts: Sequence[tuple[str, str]]) -> bool:
    """Whether these texts may be answered from (and remembered as) a verdict: manifests, not
    compose files, and no ``--wait`` or ``--force-recreate``, which need the manifests anyway."""
    if getattr(args, "wait", False) or getattr(args, "force_recreate", None):
        return False
    return not any(sources.is_compose(file, text) for file, text in texts)


def context(args: argparse.Namespace, chosen: options.GlobalOptions) -> verdicts.Context:
    host = chosen.docker_host or os.environ.get("DOCKER_HOST", "")
    return verdicts.Context(chosen.engine, f"{chosen.root.absolute()}\0{host}", args.prune, args.prune_volumes)


def answered(
    args: argparse.Namespace,
    chosen: options.GlobalOptions,
    texts: Sequence[tuple[str, str]],
    target: Callable[[], engine.Engine],
    *,
    locks: Locks | None,
) -> verdicts.Answer | None:
    """The remembered converged plan of these inputs as ``target()`` is now, or None (plan as
    usual, with the same engine: :class:`options.EngineOnce`).

    ``locks`` (``apply``): the stack locks, held while the engine is observed; on an answer the
    declared containers' stopped-on-purpose records are released, as an apply does before it
    plans (``plan`` passes None: it takes no lock and releases nothing)."""
    folder = caches.CacheFolder.default()
    if folder is None or not eligible(args, texts):
        return None
    question = verdicts.ask(folder, texts, context(args, chosen))
    if question is None:
        return None
    from reconciler import plan_inputs

    holds = chosen.holds()
    looked_at = target()
    with locks(question.stacks) if locks is not None else contextlib.nullcontext():
        actual = looked_at.observe(images=list(question.images), stacks=question.stacks)
        asked = plan_inputs.Options(prune=args.prune, prune_volumes=args.prune_volumes)
        records = plan_inputs.Records.beside(holds)
        planner = plan_inputs.for_engine(asked, looked_at.name, records, question.containers)
        found = verdicts.answer(folder, question, actual, planner)
        if found is not None and locks is not None:
            holds.release(question.containers)
    return found


class Recorder:
    """What the planner of an embedded ``plan``/``apply`` was given (``on_inputs``), to remember
    its plan when it is converged (:func:`verdicts.remember`)."""

    def __init__(self, args: argparse.Namespace, chosen: options.GlobalOptions, texts: Sequence[tuple[str, str]]):
        self.folder = caches.CacheFolder.default() if eligible(args, texts) else None
        self.texts = texts
        self.context = context(args, chosen)
        self.seen: tuple[planning.Options, observed.Observed] | None = None

    def inputs(self, planner: planning.Options, actual: observed.Observed) -> None:
        self.seen = (planner, actual)

    def planned(self, desired: manifests.Desired, plan: plans.Plan, warnings: Sequence[str]) -> None:
        if self.folder is None or self.seen is None or warnings:
            return
        planner, actual = self.seen
        verdicts.remember(self.folder, self.texts, self.context, desired=desired, actual=actual, options=planner,
                          plan=plan)  # fmt: skip

    def applied(self, target: engine.Engine, desired: manifests.Desired, holds: Holds | None) -> None:
        """After an apply whose every step went through: plan again on the engine as it is now and
        remember that plan when it is converged, so that the next apply of the same inputs is an
        answer (the apply's own plan had steps: it is never one). One more observe and plan (a
        few tens of milliseconds) after the minutes' or seconds' work of the apply."""
        if self.folder is None or self.seen is None:
            return
        from reconciler import operations, rollouts

        planner = operations.rollout_options(target, self.seen[0], rollouts.Records.beside(holds), desired)
        plan, actual = operations.plan_desired(target, desired, planner)
        self.seen = (planner, actual)
        self.planned(desired, plan, ())
