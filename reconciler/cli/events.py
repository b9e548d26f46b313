"""``reconcile events``: the controller's events from the daemon, or the engine's without one.

Where it sits: a command module of ``reconciler.cli``. Through the daemon it streams the
controller's events (reconcile passes, exits, restarts, health, errors); without a daemon it
shows the engine's own events, in the same shape, and says so on stderr.

It must not import an engine at module level (the parser is built on every start).
"""

from __future__ import annotations

import argparse
import json
import threading
from typing import Any

from reconciler.cli import console, options, remote


def add_parsers(commands: options.Commands, common: list[argparse.ArgumentParser]) -> None:
    p = options.add_command(
        commands,
        "events",
        cmd_events,
        "stream the controller's events (or the engine's, without daemon)",
        parents=common,
    )
    p.add_argument("--no-follow", action="store_true", help="print the recent events and exit")
    options.add_output(p)


def event_text(event: dict[str, Any]) -> str:
    import datetime  # here, not at start-up: most commands never print an event

    moment = datetime.datetime.fromtimestamp(float(event.get("time", 0)), datetime.UTC)
    subject = "/".join(part for part in (event.get("stack"), event.get("name")) if part)
    stamp = moment.isoformat(timespec="milliseconds")
    return f"{stamp} {event.get('kind', '?'):<14} {subject or '-'}: {event.get('message', '')}"


def print_event(event: dict[str, Any], output: str) -> None:
    console.out(json.dumps(event) if output == "json" else event_text(event))


def cmd_events(args: argparse.Namespace) -> int:
    chosen = options.of(args)
    daemon = remote.daemon_client(chosen)
    if daemon is not None:
        for event in daemon.events(follow=not args.no_follow):
            print_event(event, args.output)
        return console.EXIT_OK
    # Embedded: the engine's own events (the controller's events need the daemon).
    console.err("note: no daemon answers; showing the engine's events")
    stop = threading.Event()
    with options.engine_session(chosen) as target:
        for item in target.events(stop=stop):
            message = f"exit code {item.exit_code}" if item.exit_code is not None else item.detail
            print_event({"time": item.time, "kind": item.action, "stack": "", "name": item.name, "message": message},
                        args.output)  # fmt: skip
    return console.EXIT_OK
