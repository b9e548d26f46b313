"""The daemon half of the command line: ``reconcile watch DIR`` and ``reconcile events``.

(``watch`` itself runs in :mod:`reconciler.daemon`, imported only when it starts: this module is
imported on every CLI start and stays light.)

``watch`` (alias ``daemon --manifests DIR``) wires the pieces together and runs until SIGTERM:
the engine named by ``--engine``, a :class:`controller.Controller` on the folder, a
:class:`watching.FolderWatcher` feeding it, and the local API (:class:`api.Server`) on a
root-only unix socket, with ``/healthz`` and ``/metrics`` on an optional TCP address. SIGTERM or
SIGINT stop it gracefully: passes in flight finish, containers keep running. ``--once``
converges once and exits (cron, CI): 0 when every pass succeeded and every file parsed.

The helpers at the bottom (:func:`daemon_client`, :func:`status_via_daemon` ...) let the CLI's
``status``, ``logs``, ``plan`` and ``apply`` go through the daemon when its socket answers (and
it drives the same engine), and :func:`stack_locks` is the lock an embedded ``apply``/``delete``
takes so that it never races the watcher.

Logs go to stderr through ``logging``: ``--log-format text`` (default) or ``json`` (one object
per line, for journald and log shippers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from reconciler import cli, client, errors, sources

# The controller, the watcher and the manifest models are imported where they are used: a CLI
# command served by the daemon (``apply``, ``plan``, ``status``) must start without them.


def default_socket() -> str:
    """``RECONCILER_SOCKET``, else the default; ``none`` (or empty) means "never use a daemon"."""
    return os.environ.get("RECONCILER_SOCKET", client.DEFAULT_SOCKET)


def lock_dir(args: argparse.Namespace) -> Path:
    return Path(args.root) / "locks"


# ---------------------------------------------------------------------------------------------
# reconcile watch (in reconciler.daemon: logging, signals and the controller load only here)
# ---------------------------------------------------------------------------------------------


def cmd_watch(args: argparse.Namespace) -> int:
    from reconciler import daemon

    return daemon.cmd_watch(args)


# ---------------------------------------------------------------------------------------------
# reconcile events
# ---------------------------------------------------------------------------------------------


def _event_text(event: dict[str, Any]) -> str:
    import datetime

    moment = datetime.datetime.fromtimestamp(float(event.get("time", 0)), datetime.UTC)
    subject = "/".join(part for part in (event.get("stack"), event.get("name")) if part)
    stamp = moment.isoformat(timespec="milliseconds")
    return f"{stamp} {event.get('kind', '?'):<14} {subject or '-'}: {event.get('message', '')}"


def cmd_events(args: argparse.Namespace) -> int:
    daemon = daemon_client(args)
    if daemon is not None:
        for event in daemon.events(follow=not args.no_follow):
            cli._out(json.dumps(event) if args.output == "json" else _event_text(event))
        return cli.EXIT_OK
    # Embedded: the engine's own events (the controller's events need the daemon).
    cli._err("note: no daemon answers; showing the engine's events")
    stop = threading.Event()
    with cli.engine_session(args) as target:
        for item in target.events(stop=stop):
            message = f"exit code {item.exit_code}" if item.exit_code is not None else item.detail
            event = {"time": item.time, "kind": item.action, "stack": "", "name": item.name, "message": message}
            cli._out(json.dumps(event) if args.output == "json" else _event_text(event))
    return cli.EXIT_OK


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``watch`` (alias ``daemon``) and ``events`` on the CLI's subcommands."""
    for name in ("watch", "daemon"):
        help_text = (
            "run the controller on a folder of manifests (the daemon)"
            if name == "watch"
            else "alias of watch: reconcile daemon --manifests DIR"
        )
        p = commands.add_parser(name, help=help_text, description=help_text)
        if name == "watch":
            p.add_argument("dir", metavar="DIR", help="folder of *.yaml/*.yml manifests")
            p.set_defaults(manifests=None)
        else:
            p.add_argument("--manifests", required=True, metavar="DIR", help="folder of manifests")
            p.set_defaults(dir=None)
        p.add_argument("--socket", default=default_socket(), help=f"API socket (default {client.DEFAULT_SOCKET})")
        p.add_argument("--metrics-addr", default="", metavar="[HOST:]PORT",
                       help="serve /healthz and /metrics over TCP too (host default 127.0.0.1), "
                            f"e.g. {client.DEFAULT_METRICS_ADDR}")  # fmt: skip
        # Defaults are filled in by cmd_watch (None here): the parser is built on every CLI start.
        p.add_argument("--resync", type=float, default=None,
                       help="seconds between resyncs against the engine, drift healing (default 60)")  # fmt: skip
        p.add_argument("--relist", type=float, default=None,
                       help="seconds between re-lists of the folder, missed file events (default 20)")  # fmt: skip
        p.add_argument("--debounce", type=float, default=None, help="seconds of quiet per file (default 0.5)")
        p.add_argument(
            "--parallelism", type=int, default=None, help="steps run at once per pass (default as for apply)"
        )
        p.add_argument("--state-dir", default=None, help="controller state (default ROOT/controller)")
        p.add_argument("--once", action="store_true", help="converge once and exit (cron, CI)")
        p.add_argument("--log-format", choices=["text", "json"], default="text")
        p.set_defaults(func=cmd_watch)
    p = commands.add_parser("events", help="stream the controller's events (or the engine's, without daemon)")
    p.add_argument("--socket", default=default_socket())
    p.add_argument("--no-follow", action="store_true", help="print the recent events and exit")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_events)


# ---------------------------------------------------------------------------------------------
# The CLI through the daemon (used by cli.py's status, logs, plan and apply)
# ---------------------------------------------------------------------------------------------


def daemon_client(args: argparse.Namespace) -> client.Client | None:
    """A client of the running daemon when it answers and drives the engine this CLI would."""
    path = getattr(args, "socket", None) or default_socket()
    if path in ("", "none"):
        return None
    daemon = client.Client(path)
    answer = daemon.ping()
    if answer is None or answer.get("engine") != args.engine:
        return None
    return daemon


class _Sources:
    """The manifest texts as the daemon gets them: with absolute paths, so that it resolves env
    files as this CLI would; the daemon validates them, and its diagnostics are shown under the
    names the user typed (``display``), exactly as an embedded run prints them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.items: list[tuple[str, str]] = []
        self.display: dict[str, str] = {}
        for name, text in sources.read_sources(args.file):
            absolute = name if name.startswith("<") else str(Path(name).resolve())
            self.items.append((absolute, text))
            self.display[absolute] = name


def _raise_api_error(exc: client.ApiError, named: _Sources | None = None) -> None:
    """The daemon's error as the exception the embedded path would have raised (same messages)."""
    if exc.body.get("kind") == "manifest" and isinstance(exc.body.get("items"), list):
        display = named.display if named else {}
        diagnostics = [
            errors.Diagnostic(display.get(str(d["file"]), str(d["file"])), int(d["line"]), int(d["column"]),
                              str(d["field"]), str(d["message"]))
            for d in exc.body["items"]
        ]  # fmt: skip
        raise errors.ManifestError(diagnostics) from exc
    if exc.body.get("kind") == "plan":
        raise errors.PlanError(str(exc.body.get("error", ""))) from exc
    if exc.body.get("kind") == "not-found":
        raise errors.NotFound(str(exc.body.get("error", ""))) from exc
    raise errors.ReconcilerError(str(exc)) from exc


def _status_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The daemon's objects, plus one ``File`` row per manifest that does not parse."""
    rows = list(status.get("objects", []))
    for report in status.get("files", []):
        if report.get("state") == "error":
            kept = " (last good version in force)" if report.get("usingLastGood") else ""
            rows.append({"kind": "File", "name": report["path"], "stack": ",".join(report.get("stacks", [])),
                         "state": "error", "lastError": "; ".join(report.get("errors", [])) + kept,
                         "drift": ""})  # fmt: skip
    return rows


def _backoff_text(row: dict[str, Any]) -> str:
    backoff = row.get("backoff")
    if not backoff:
        return ""
    if backoff.get("gaveUp"):
        return "gave up"
    if backoff.get("nextRestartIn") is not None:
        return f"restart in {backoff['nextRestartIn']:g}s"
    return ""


def status_via_daemon(args: argparse.Namespace) -> int | None:
    """``reconcile status`` through the daemon: its view (backoff, errors, health) of every object."""
    daemon = daemon_client(args)
    if daemon is None:
        return None
    return cli.print_rows(
        _status_rows(daemon.status()), output=args.output, empty="No objects managed by reconciler.",
        header=("KIND", "NAME", "STACK", "STATE", "HEALTH", "EXIT", "RESTARTS", "BACKOFF", "DRIFT"),
        cells=lambda r: (r["kind"], r["name"], r.get("stack") or "", r["state"], r.get("health") or "",
                         "" if r.get("exitCode") is None else str(r["exitCode"]), str(r.get("restarts", "")),
                         _backoff_text(r), _status_detail(r)),
    )  # fmt: skip


def _status_detail(row: dict[str, Any]) -> str:
    """The DRIFT column: drift, else what a container waits for, else its last error."""
    return row.get("drift") or row.get("waiting") or (f"error: {row['lastError']}" if row.get("lastError") else "-")


def plan_via_daemon(args: argparse.Namespace) -> int | None:
    """``reconcile plan`` through the daemon (same output and exit codes as embedded)."""
    daemon = daemon_client(args)
    if daemon is None:
        return None
    named = _Sources(args)
    try:
        answer = daemon.plan(named.items, prune=args.prune, prune_volumes=args.prune_volumes)
    except client.ApiError as exc:
        _raise_api_error(exc, named)
        raise
    for warning in answer.get("warnings", []):
        cli._err(f"warning: {warning}")
    cli._out(json.dumps(answer["plan"], indent=2) if args.output == "json" else answer["text"])
    return cli.EXIT_OK if answer["converged"] else cli.EXIT_CHANGES


def apply_via_daemon(args: argparse.Namespace) -> int | None:
    """``reconcile apply`` through the daemon, which holds the stacks' locks while it applies."""
    daemon = daemon_client(args)
    if daemon is None:
        return None
    named = _Sources(args)
    try:
        parallelism = args.parallelism or cli.default_parallelism(args.engine)
        answer = daemon.apply(named.items, prune=args.prune, prune_volumes=args.prune_volumes, parallelism=parallelism)
    except client.ApiError as exc:
        _raise_api_error(exc, named)
        raise
    for warning in answer.get("warnings", []):
        cli._err(f"warning: {warning}")
    if args.output == "json":
        results = [{key: r[key] for key in ("number", "status", "seconds", "error")} for r in answer["results"]]
        cli._out(json.dumps({"plan": answer["plan"], "results": results, "ok": answer["ok"]}, indent=2))
    else:
        cli._out(answer["text"])
        if answer["results"]:
            cli._out("\nApplying:")
            for r in answer["results"]:
                mark = {"done": "✓", "failed": "✗"}.get(r["status"], "-")
                detail = f" ({r['seconds']:.2f}s)" if r["status"] == "done" else f": {r['error']}"
                cli._out(f"  {mark} {r['number']}. {r['verb']} {r['target']}{detail}")
            cli._out(f"\n{'Done' if answer['ok'] else 'Failed'}: {answer['summary']}.")
    code = cli.EXIT_OK if answer["ok"] else cli.EXIT_ERROR
    if code == cli.EXIT_OK and getattr(args, "wait", False):
        from reconciler import manifests

        with cli.engine_session(args) as target:
            code = cli.wait_ready(target, manifests.load(args.file), timeout=args.timeout)
    return code


def logs_via_daemon(args: argparse.Namespace) -> int | None:
    daemon = daemon_client(args)
    if daemon is None:
        return None
    try:
        for line in daemon.logs(args.name, follow=args.follow, tail=args.tail):
            stream = sys.stderr if line.get("stream") == "stderr" else sys.stdout
            print(line.get("text", ""), file=stream, flush=True)
    except client.ApiError as exc:
        _raise_api_error(exc)
    return cli.EXIT_OK


@contextlib.contextmanager
def stack_locks(args: argparse.Namespace, stacks: Iterable[str]) -> Iterator[None]:
    """The per-stack locks an embedded apply/delete holds (sorted: no deadlock between two CLIs).

    When the lock folder cannot be created (a user in the docker group, without write access to
    ``--root``), the command runs unlocked with a warning: it could not race a root daemon's
    lock anyway, and refusing would make the CLI unusable for that user.
    """
    from reconciler import api

    with contextlib.ExitStack() as held:
        try:
            for stack in sorted(set(stacks)):
                held.enter_context(api.stack_lock(lock_dir(args), stack))
        except OSError as exc:
            held.close()
            cli._err(f"warning: cannot take the stack locks under {lock_dir(args)} ({exc.strerror}); "
                     "running without them")  # fmt: skip
        yield


def main(argv: list[str] | None = None) -> int:
    """``python -m reconciler.cli_daemon watch DIR``: the daemon commands alone, same options."""
    parser = argparse.ArgumentParser(prog="reconcile")
    parser.add_argument("--engine", default=os.environ.get("RECONCILER_ENGINE", "native"), choices=["native", "docker"])
    parser.add_argument("--root", default=os.environ.get("RECONCILER_ROOT", cli.DEFAULT_ROOT))
    add_parser(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except errors.ReconcilerError as exc:
        cli._err(f"error: {exc}")
        return cli.EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
