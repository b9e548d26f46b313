"""``reconcile events``: the controller's events from the daemon, or the engine's without one.

Where it sits: a command module of ``reconciler.cli``. Through the daemon it streams the
controller's events (reconcile passes, exits, restarts, health, errors); without a daemon it
shows the engine's own events, in the same shape, and says so on stderr: first what the engine
has kept (its history, oldest first: :class:`reconciler.engine.RecordsHistory`), then, unless
``--no-follow``, what happens from then on. A live stream may report the runs it finds going as
started (the native engine does): :class:`Shown` keeps such a run from being printed twice.

It must not import an engine at module level (the parser is built on every start).
"""

from __future__ import annotations

import argparse
import json
import threading
from typing import TYPE_CHECKING, Any

from reconciler.cli import console, options, remote

if TYPE_CHECKING:
    from reconciler import engine


def add_parsers(commands: options.Commands, common: list[argparse.ArgumentParser]) -> None:
    p = options.add_command(
        commands,
        "events",
        cmd_events,
        "stream the controller's events (or the engine's, without daemon)",
        parents=common,
    )
    p.add_argument(
        "--no-follow", action="store_true", help="print the recent (without daemon: recorded) events and exit"
    )
    options.add_output(p)


def event_text(event: dict[str, Any]) -> str:
    import datetime  # here, not at start-up: most commands never print an event

    moment = datetime.datetime.fromtimestamp(float(event.get("time", 0)), datetime.UTC)
    subject = "/".join(part for part in (event.get("stack"), event.get("name")) if part)
    stamp = moment.isoformat(timespec="milliseconds")
    text = f"{stamp} {event.get('kind', '?'):<14} {subject or '-'}"
    return f"{text}: {event['message']}" if event.get("message") else text


def print_event(event: dict[str, Any], output: str) -> None:
    console.out(json.dumps(event) if output == "json" else event_text(event))


def engine_event(item: engine.Event) -> dict[str, Any]:
    """An engine's event in the shape of the controller's."""
    if item.exit_code is not None:
        message = f"exit code {item.exit_code}"
    else:
        message = "out of memory" if item.action == "oom" else item.detail
    return {"time": item.time, "kind": item.action, "stack": item.stack, "name": item.name, "message": message}


class Shown:
    """Which containers the events printed so far leave running.

    A run has one start: a ``start`` of a container already shown running is that same run,
    reported again by a live stream that has just subscribed, and is not news. A container is its
    id and name (the swarm engine's replicas share their service's id).
    """

    def __init__(self) -> None:
        self.running: set[tuple[str, str]] = set()

    def news(self, item: engine.Event) -> bool:
        """Whether ``item`` tells something not shown yet; notes what it tells."""
        container = (item.container_id, item.name)
        if item.action == "start":
            if container in self.running:
                return False
            self.running.add(container)
        elif item.action in ("die", "destroy"):
            self.running.discard(container)
        return True


def cmd_events(args: argparse.Namespace) -> int:
    chosen = options.of(args)
    daemon = remote.daemon_client(chosen)
    if daemon is not None:
        for event in daemon.events(follow=not args.no_follow):
            print_event(event, args.output)
        return console.EXIT_OK
    # Embedded: the engine's own events (the controller's events need the daemon).
    from reconciler import engine as contract  # here, not at start-up: see the module docstring

    console.err("note: no daemon answers; showing the engine's events")
    shown = Shown()
    with options.engine_session(chosen) as target:
        if isinstance(target, contract.RecordsHistory):
            for item in target.history():
                shown.news(item)
                print_event(engine_event(item), args.output)
        else:
            console.err(f"note: the {target.name} engine keeps no history; only new events are shown")
        if args.no_follow:
            return console.EXIT_OK
        for item in target.events(stop=threading.Event()):
            if shown.news(item):
                print_event(engine_event(item), args.output)
    return console.EXIT_OK
