"""``reconcile start``, ``stop`` and ``restart``: day-2 verbs on containers that already exist.

Where it sits: a command module of ``reconciler.cli``. Each command names owned containers
(``NAME...``) and/or whole stacks (``--stack``), and runs one use case of
:mod:`reconciler.operations` on the engine: ``stop`` keeps the container (its logs and exit code),
``start`` starts it, ``restart`` stops them all, then starts them all. Only owned containers: an
unknown or foreign name is an error naming it (exit 1) and nothing is touched.

``stop`` records each container as stopped on purpose (:mod:`reconciler.holds`): the daemon's
restart manager leaves it stopped whatever its restart policy, as Docker does after a manual
``docker stop``; ``start``, ``restart`` and an explicit ``reconcile apply`` of its files start it
again (as ``docker compose up`` does).

It must not import an engine at module level (the parser is built on every start), and it must
not decide anything itself: operations does.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from reconciler import errors
from reconciler.cli import console, options

if TYPE_CHECKING:
    from reconciler import engine
    from reconciler.holds import Holds

RESTART_POLICY_NOTE = """\
note: a container stopped with `reconcile stop` stays stopped whatever its restart policy: the
daemon (`reconcile watch`) leaves it alone until `reconcile start`/`restart` or an explicit
`reconcile apply` of its files."""


def add_parsers(commands: options.Commands, common: list[argparse.ArgumentParser]) -> None:
    verbs = (
        ("start", cmd_start, "start stopped containers (owned ones only)", "reconcile start web worker"),
        ("stop", cmd_stop, "stop containers, keeping them (their logs and exit code)", "reconcile stop --stack shop"),
        ("restart", cmd_restart, "stop, then start containers", "reconcile restart web"),
    )
    p = options.add_command(commands, "boot", cmd_boot,
                            "start what a host reboot stopped: always and unless-stopped containers",
                            example="reconcile boot", parents=common)  # fmt: skip
    p.epilog = (f"{p.epilog}\n\nRun at boot (scripts/install adds a systemd unit where systemd runs) and by the "
                "daemon when it starts. An unless-stopped container stopped with `reconcile stop` stays stopped; "
                "an always one comes back, as with Docker.")  # fmt: skip
    for name, handler, help_text, example in verbs:
        p = options.add_command(commands, name, handler, help_text, example=example, parents=common)
        p.epilog = f"{p.epilog}\n\n{RESTART_POLICY_NOTE}"
        p.add_argument("names", nargs="*", metavar="NAME", help="containers")
        p.add_argument("--stack", action="append", default=[], help="every container of this stack (repeatable)")
        if name != "start":
            p.add_argument("-t", "--timeout", type=float, default=None,
                           help="seconds between the stop signal and the kill (default: its stopTimeout)")  # fmt: skip


def chosen(args: argparse.Namespace) -> list[str]:
    if not args.names and not args.stack:
        raise errors.ReconcilerError(f"{args.command} needs NAME... or --stack NAME")
    return list(args.names)


def cmd_start(args: argparse.Namespace) -> int:
    from reconciler import operations

    return on_owned(args, "started", lambda target, names, holds, each: operations.start_containers(
        target, names, holds=holds))  # fmt: skip


def cmd_stop(args: argparse.Namespace) -> int:
    from reconciler import operations

    return on_owned(args, "stopped", lambda target, names, holds, each: operations.stop_containers(
        target, names, holds=holds, timeout=args.timeout, each=each))  # fmt: skip


def cmd_restart(args: argparse.Namespace) -> int:
    from reconciler import operations

    return on_owned(args, "restarted", lambda target, names, holds, each: operations.restart_containers(
        target, names, holds=holds, timeout=args.timeout, each=each))  # fmt: skip


Act = Callable[["engine.Engine", list[str], "Holds", Callable[[str], contextlib.AbstractContextManager[None]]], None]


def on_owned(args: argparse.Namespace, verb: str, act: Act) -> int:
    """``act`` on the owned containers the command names (unknown names refused before anything
    runs), each stop shown in flight on a terminal; one ``VERB NAME`` line per container."""
    from reconciler import operations

    chosen_options = options.of(args)
    names = chosen(args)
    with options.engine_session(chosen_options) as target:
        containers = operations.owned_containers(target, names, args.stack)
        with stopping() as status:
            act(target, containers, chosen_options.holds(), lambda name: status.step(name, f"stopping {name}"))
    return done(verb, containers)


def cmd_boot(args: argparse.Namespace) -> int:
    from reconciler import operations

    chosen = options.of(args)
    with options.engine_session(chosen) as target:
        started = operations.boot(target, chosen.holds())
    return done("started", started)


def stopping() -> console.InFlight:
    """On a terminal, the container being stopped and for how long (a stop may take its timeout)."""
    return console.InFlight(sys.stdout.isatty())


def done(verb: str, containers: list[str]) -> int:
    for name in containers:
        console.out(f"{verb} {name}")
    return console.EXIT_OK
