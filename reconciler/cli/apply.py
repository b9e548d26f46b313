"""``reconcile plan``, ``apply`` and ``delete``: through the daemon when one answers, else embedded.

Where it sits: a command module of ``reconciler.cli``. Embedded, each runs one use case of
:mod:`reconciler.operations` (refresh images → observe once → plan → execute) and prints as it
goes; through the daemon (:mod:`reconciler.cli.remote`), the daemon runs the same use case and
this module prints its answer the same way: same text, same JSON, same exit codes.

It must not import the models, the planner or an engine at module level (a command the daemon
serves starts without them), and it must not plan or execute by itself: operations does.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from reconciler import client, errors, sources
from reconciler.cli import console, options, remote

if TYPE_CHECKING:
    from collections.abc import Sequence

    from reconciler import engine, executing, manifests, operations, plans


def add_parsers(commands: options.Commands, common: list[argparse.ArgumentParser]) -> None:
    p = options.add_command(
        commands,
        "plan",
        cmd_plan,
        "show the changes apply would make (exit 0 none, 2 some, 1 error)",
        example="reconcile plan -f stack.yaml -o json",
        parents=common,
    )
    options.add_files(p)
    options.add_output(p)
    options.add_pruning(p)
    p = options.add_command(
        commands,
        "apply",
        cmd_apply,
        "converge the engine to the manifests",
        example="reconcile apply -f stack.yaml --wait",
        parents=common,
    )
    options.add_files(p)
    options.add_output(p)
    options.add_pruning(p)
    p.add_argument("--parallelism", type=int, default=None, help="steps run at once (default: 16 docker, 4 native)")
    p.add_argument(
        "--wait", action="store_true", help="return when every container runs and is healthy (probed here if need be)"
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits (default 120)")
    p.add_argument("-y", "--yes", action="store_true",
                   help="apply without asking (a terminal asks before removing or recreating containers)")  # fmt: skip
    p.add_argument(
        "--force-recreate", action="append", default=[], metavar="NAME",
        help="recreate NAME even when its spec is unchanged (repeatable; runs embedded, under the stack locks)",
    )  # fmt: skip
    p = options.add_command(
        commands,
        "delete",
        cmd_delete,
        "remove a stack's objects (volumes only with --prune-volumes)",
        example="reconcile delete --stack shop",
        parents=common,
    )
    options.add_files(p, required=False)
    options.add_output(p)
    p.add_argument("--stack", action="append", help="stack name (repeatable)")
    p.add_argument("--prune-volumes", action="store_true", help="also remove the stack's volumes")
    p.add_argument("--parallelism", type=int, default=None, help="steps run at once (default as for apply)")


# ---------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------


def cmd_plan(args: argparse.Namespace) -> int:
    if (code := plan_via_daemon(args)) is not None:
        return code
    from reconciler.cli import remembered  # here: a command the daemon answers needs no verdicts

    chosen = options.of(args)
    texts = sources.read_sources(args.file)
    with options.EngineOnce(chosen) as engine_once:
        if (answer := remembered.answered(args, chosen, texts, engine_once, locks=None)) is not None:
            console.out(json.dumps(answer.plan, indent=2) if args.output == "json" else console.plan_text(answer.text))
            return console.EXIT_OK
        from reconciler import operations, planning

        desired = options.load_files(args, texts)
        recorder = remembered.Recorder(args, chosen, texts)
        plan, warnings = operations.refresh_and_plan(
            engine_once(), desired, planning.Options(prune=args.prune, prune_volumes=args.prune_volumes),
            holds=chosen.holds(), on_inputs=recorder.inputs,
        )  # fmt: skip
    recorder.planned(desired, plan, warnings)
    print_warnings(warnings)
    console.out(json.dumps(plan.to_json(), indent=2) if args.output == "json" else console.plan_text(plan.render()))
    return console.EXIT_OK if plan.converged else console.EXIT_CHANGES


def plan_via_daemon(args: argparse.Namespace) -> int | None:
    """``reconcile plan`` through the daemon; ``None`` when no daemon answers (run embedded)."""
    daemon = remote.daemon_client(options.of(args))
    if daemon is None:
        return None
    named = remote.NamedSources(args.file, args)
    try:
        answer = daemon.plan(named.items, prune=args.prune, prune_volumes=args.prune_volumes)
    except client.ApiError as exc:
        remote.raise_api_error(exc, named)
    print_warnings(answer.get("warnings", []))
    console.out(json.dumps(answer["plan"], indent=2) if args.output == "json" else console.plan_text(answer["text"]))
    return console.EXIT_OK if answer["converged"] else console.EXIT_CHANGES


def print_warnings(warnings: Iterable[str]) -> None:
    for warning in warnings:
        console.warn(warning)


# ---------------------------------------------------------------------------------------------
# apply and delete
# ---------------------------------------------------------------------------------------------


def cmd_apply(args: argparse.Namespace) -> int:
    if (code := apply_via_daemon(args)) is not None:
        return code
    from reconciler.cli import remembered  # here: a command the daemon answers needs no verdicts

    chosen = options.of(args)
    texts = sources.read_sources(args.file)
    locks = functools.partial(stack_locks, chosen)
    with options.EngineOnce(chosen) as engine_once:
        if (answer := remembered.answered(args, chosen, texts, engine_once, locks=locks)) is not None:
            print_outcome({"plan": answer.plan, "text": answer.text, "results": [], "ok": True}, args.output,
                          steps_printed=False)  # fmt: skip
            return console.EXIT_OK
        from reconciler import operations, planning

        desired = options.load_files(args, texts)
        recorder = remembered.Recorder(args, chosen, texts)
        printer = StepPrinter(args.output, ask=asks_confirmation(args))
        target = engine_once()
        with stack_locks(chosen, desired.stacks), interruptible() as cancel, printer:
            try:
                applied = operations.apply_desired(
                    target, desired, planning.Options(prune=args.prune, prune_volumes=args.prune_volumes,
                                                      force_recreate=frozenset(args.force_recreate)),
                    parallelism=args.parallelism or options.default_parallelism(target.name),
                    on_planned=printer.planned, on_result=printer.result, cancel=cancel,
                    holds=chosen.holds(), on_start=printer.started, on_inputs=recorder.inputs,
                )  # fmt: skip
            except ApplyCancelled:
                console.err(CANCELLED)
                return console.EXIT_ERROR
        code = printer.finished(applied)
        recorder.planned(desired, applied.plan, applied.warnings)
        if code == console.EXIT_OK and not applied.plan.converged:
            recorder.applied(target, desired, chosen.holds())
        if code == console.EXIT_OK and args.wait:
            code = wait_ready(target, desired, timeout=args.timeout)
    return code


def apply_via_daemon(args: argparse.Namespace) -> int | None:
    """``reconcile apply`` through the daemon, which holds the stacks' locks while it applies;
    ``None`` when no daemon answers (run embedded)."""
    chosen = options.of(args)
    daemon = remote.daemon_client(chosen)
    if daemon is None:
        return None
    named = remote.NamedSources(args.file, args)
    parallelism = args.parallelism or options.default_parallelism(chosen.engine)
    try:
        # The daemon plans again when it applies; asking first on its plan is what terraform does
        # without a saved plan: the answer covers the changes shown, re-checked under its locks.
        asked = asks_confirmation(args)
        if asked:
            planned = daemon.plan(named.items, prune=args.prune, prune_volumes=args.prune_volumes)
            print_warnings(planned.get("warnings", []))
            if args.output != "json":
                console.out(console.plan_text(planned["text"]))
            if not confirmed(planned["plan"]):
                console.err(CANCELLED)
                return console.EXIT_ERROR
        # Ctrl-C tells the daemon to start no new step; its answer then says what was done.
        apply_id = os.urandom(8).hex()
        with interruptible(on_first=lambda: daemon.cancel(apply_id)):
            answer = daemon.apply(
                named.items, prune=args.prune, prune_volumes=args.prune_volumes, parallelism=parallelism,
                force_recreate=args.force_recreate, apply_id=apply_id,
            )  # fmt: skip
    except client.ApiError as exc:
        remote.raise_api_error(exc, named)
    print_warnings(answer.get("warnings", []))
    for line in answer.get("recovered", []):
        console.err(line)
    print_outcome(answer, args.output, steps_printed=False, plan_printed=asked)
    if answer.get("interrupted"):
        return console.EXIT_INTERRUPTED
    code = console.EXIT_OK if answer["ok"] else console.EXIT_ERROR
    if code == console.EXIT_OK and args.wait:
        with options.engine_session(chosen) as target:
            code = wait_ready(target, options.load_files(args), timeout=args.timeout)
    return code


def cmd_delete(args: argparse.Namespace) -> int:
    from reconciler import operations

    if not args.file and not args.stack:
        raise errors.ReconcilerError("delete needs -f PATH or --stack NAME")
    chosen = options.of(args)
    stacks = set(args.stack or [])
    if args.file:
        stacks |= options.load_files(args).stacks
    printer = StepPrinter(args.output)
    with options.engine_session(chosen) as target, stack_locks(chosen, stacks), interruptible() as cancel, printer:
        applied = operations.delete_stacks(
            target, stacks, prune_volumes=args.prune_volumes,
            parallelism=args.parallelism or options.default_parallelism(target.name),
            on_planned=printer.planned, on_result=printer.result, cancel=cancel, on_start=printer.started,
        )  # fmt: skip
    return printer.finished(applied)


CONFIRM_PROMPT = "Apply these changes? Only 'yes' is accepted: "
CANCELLED = "Apply cancelled; nothing was changed."


class ApplyCancelled(Exception):
    """The user did not answer ``yes``: raised before the first step, so nothing has changed."""


def asks_confirmation(args: argparse.Namespace) -> bool:
    """On a terminal only, as terraform: ``--yes`` and scripts (stdin or stdout not a TTY) never
    wait for an answer nobody can give."""
    return not args.yes and sys.stdin.isatty() and sys.stdout.isatty()


def confirmed(plan: dict[str, Any]) -> bool:
    """Whether a plan (its JSON shape) may run: one that removes or recreates no container
    destroys nothing a user could miss and runs at once; otherwise only ``yes`` lets it run."""
    destructive = any(c["kind"] == "Container" and c["change"] in ("remove", "recreate") for c in plan["changes"])
    if not destructive:
        return True
    sys.stdout.write("\n" + CONFIRM_PROMPT)
    sys.stdout.flush()
    return sys.stdin.readline().strip() == "yes"


@contextlib.contextmanager
def interruptible(on_first: Callable[[], object] | None = None) -> Iterator[threading.Event]:
    """Ctrl-C as terraform handles it, for the ``with`` block: the first SIGINT sets the event the
    executor checks before each step (the steps in flight finish and are reported, none starts)
    and calls ``on_first`` (through the daemon: tell it the same); a second one exits at once with
    130, saying what it may leave behind.

    Only the main thread can take signals; elsewhere (a test's thread) the event is never set."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def on_interrupt(signum: int, frame: object) -> None:
        del signum, frame
        if not cancel.is_set():
            cancel.set()
            console.err("Interrupt received, finishing the steps in flight… (press Ctrl-C again to exit at once)")
            if on_first is not None:
                on_first()
            return
        console.err("Second interrupt: exiting now; the steps in flight may be left half done (run apply again)")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(console.EXIT_INTERRUPTED)  # at once: the executor's threads would otherwise be waited for

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


class StepPrinter:
    """An embedded apply's output: the plan, then each step as it ends, then the summary (text);
    or one JSON document at the end (``-o json``). Warnings go to stderr as they come."""

    def __init__(self, output: str, *, ask: bool = False) -> None:
        self.output = output
        self.ask = ask
        # On a terminal, the step that runs the longest is shown with its elapsed time.
        self.in_flight = console.InFlight(output != "json" and sys.stdout.isatty())

    def __enter__(self) -> StepPrinter:
        self.in_flight.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.in_flight.__exit__(*exc)

    def started(self, step: plans.Step) -> None:
        from reconciler import plans

        verb, subject = plans.describe(step.action)
        self.in_flight.started(step.number, f"{verb} {subject}")

    def planned(self, plan: plans.Plan, warnings: Sequence[str]) -> None:
        print_warnings(warnings)
        if self.output != "json":
            console.out(console.plan_text(plan.render()))
        if self.ask and not confirmed(plan.to_json()):
            raise ApplyCancelled
        if self.output == "json":
            return
        if not plan.converged:
            console.out("\nApplying:")

    def result(self, result: executing.StepResult) -> None:
        if self.output == "json":
            return
        from reconciler import plans

        verb, subject = plans.describe(result.step.action)
        self.in_flight.ended(result.step.number)
        self.in_flight.line(
            console.step_line(
                result.step.number, result.status, verb, subject, seconds=result.seconds, error=result.error
            )
        )

    def finished(self, applied: operations.Applied) -> int:
        from reconciler import operations

        for line in applied.recovered:
            console.err(line)
        print_outcome(operations.outcome_json(applied.plan, applied.outcome), self.output, steps_printed=True)
        if applied.outcome.interrupted:
            return console.EXIT_INTERRUPTED
        return console.EXIT_OK if applied.outcome.ok else console.EXIT_ERROR


def print_outcome(answer: dict[str, Any], output: str, *, steps_printed: bool, plan_printed: bool = False) -> None:
    """An apply's outcome (the API's JSON shape, :func:`operations.outcome_json`): the JSON
    document, or the text (the plan and each step, unless already printed as they ran)."""
    if output == "json":
        results = [{key: r[key] for key in ("number", "status", "seconds", "error")} for r in answer["results"]]
        console.out(json.dumps({"plan": answer["plan"], "results": results, "ok": answer["ok"]}, indent=2))
        return
    if not steps_printed:
        if not plan_printed:  # shown already when the user was asked to confirm it
            console.out(console.plan_text(answer["text"]))
        if answer["results"]:
            console.out("\nApplying:")
        for r in answer["results"]:
            console.out(
                console.step_line(
                    r["number"], r["status"], r["verb"], r["target"], seconds=r["seconds"], error=r["error"]
                )
            )
    if answer["results"] or answer.get("interrupted"):
        console.out(console.summary_line(ok=answer["ok"], summary=answer["summary"],
                                         interrupted=bool(answer.get("interrupted"))))  # fmt: skip


def wait_ready(target: engine.Engine, desired: manifests.Desired, *, timeout: float) -> int:
    """``apply --wait``: until every container runs (and is healthy where it has a health check)."""
    from reconciler import operations

    pending = operations.wait_ready(target, desired, timeout=timeout)
    if pending:
        console.err(f"error: not ready after {timeout:g}s: {', '.join(pending)}")
        return console.EXIT_ERROR
    console.out("All containers are ready.")
    return console.EXIT_OK


@contextlib.contextmanager
def stack_locks(chosen: options.GlobalOptions, stacks: Iterable[str]) -> Iterator[None]:
    """The per-stack locks shared with the daemon, so that an embedded apply never races it.

    When the lock folder cannot be created (a user in the docker group, without write access to
    ``--root``), the command runs unlocked with a warning: it could not race a root daemon's
    lock anyway, and refusing would make the CLI unusable for that user.
    """
    from reconciler import stack_locking

    with contextlib.ExitStack() as held:
        try:
            held.enter_context(
                stack_locking.hold_stacks(lambda stack: stack_locking.stack_lock(chosen.lock_dir, stack), stacks)
            )
        except OSError as exc:
            console.warn(f"cannot take the stack locks under {chosen.lock_dir} ({exc.strerror}); running without them")
        yield
