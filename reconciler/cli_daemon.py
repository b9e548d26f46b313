"""The daemon half of the command line: ``reconcile watch DIR`` and ``reconcile events``.

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
import ctypes
import datetime
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from reconciler import api, cli, controller, errors, manifests, watching

_LOG_FIELDS = ("stack", "container", "event")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the controller's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in _LOG_FIELDS:
            value = getattr(record, field, None)
            if value:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = " ".join(f"{f}={getattr(record, f)}" for f in _LOG_FIELDS if getattr(record, f, None))
        return f"{text} {fields}" if fields else text


def setup_logging(log_format: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("reconciler")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def default_socket() -> str:
    """``RECONCILER_SOCKET``, else the default; ``none`` (or empty) means "never use a daemon"."""
    return os.environ.get("RECONCILER_SOCKET", api.DEFAULT_SOCKET)


def lock_dir(args: argparse.Namespace) -> Path:
    return Path(args.root) / "locks"


# ---------------------------------------------------------------------------------------------
# reconcile watch
# ---------------------------------------------------------------------------------------------


def _limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas at two before any thread starts.

    Each thread that allocates under contention gets its own arena (up to 8 per CPU), and freed
    memory stays in it: a daemon with worker, probe, API and engine-client threads then holds
    tens of MiB it does not use. Two arenas keep the RSS target (80 MiB) with 100 containers.
    ``MALLOC_ARENA_MAX`` in the environment still wins; non-glibc systems are left alone.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        m_arena_max = -8  # from glibc's malloc.h
        libc.mallopt(m_arena_max, 2)


def _trim_malloc() -> None:
    """Hand freed heap pages back to the kernel (a resync decodes every inspect's JSON, and glibc
    keeps the freed memory otherwise): the idle RSS then reflects what the daemon holds."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cmd_watch(args: argparse.Namespace) -> int:
    folder = Path(args.manifests or args.dir).resolve()
    if not folder.is_dir():
        raise errors.ReconcilerError(f"{folder} is not a folder")
    _limit_malloc_arenas()
    setup_logging(args.log_format, "DEBUG" if os.environ.get("RECONCILER_DEBUG") else "INFO")
    log = logging.getLogger("reconciler.daemon")
    if not args.once and api.Client(args.socket).ping() is not None:
        raise errors.ReconcilerError(f"a daemon already answers on {args.socket}; stop it first")
    target = cli.open_engine(args)
    locks = lock_dir(args)
    state_dir = Path(args.state_dir) if args.state_dir else Path(args.root) / "controller"
    ctl = controller.Controller(
        target,
        folder,
        state_dir=state_dir,
        # Docker restarts containers itself unless the manifest asks for the controller's backoff.
        engine_restarts=target.name == "docker",
        relist_interval=args.relist,
        resync_interval=args.resync,
        parallelism=args.parallelism or cli.default_parallelism(target.name),
        stack_lock=lambda stack: api.stack_lock(locks, stack),
        threaded_probes=True,
    )
    if args.once:
        try:
            ok = ctl.converge_once()
        finally:
            target.close()
        for report in ctl.status()["files"]:
            for message in report["errors"]:
                cli._err(message)
        return cli.EXIT_OK if ok else cli.EXIT_ERROR

    stopping = threading.Event()

    def on_signal(number: int, frame: object) -> None:
        del frame
        log.info("signal %s: shutting down (containers keep running)", signal.Signals(number).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # ``kill -USR1`` dumps every thread's stack to the log: how a stuck pass is diagnosed.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    server = api.Server(ctl, socket_path=args.socket, metrics_addr=args.metrics_addr or None)
    watcher = watching.FolderWatcher(folder, ctl.file_changed, debounce=args.debounce)
    # Watching first, then the first scan, then the API: once the socket answers, a file written
    # into the folder is never missed (the readiness a test or a service manager waits for).
    watcher.start()
    ctl.start()
    server.start()
    log.info("watching %s with the %s engine; API on %s%s", folder, target.name, args.socket,
             f", metrics on {server.metrics_address}" if server.metrics_address else "")  # fmt: skip
    try:
        ticks = 0
        while not stopping.wait(1.0):
            ticks += 1
            if ticks % 30 == 0:
                _trim_malloc()
    finally:
        watcher.stop()
        ctl.stop()
        server.stop()
        target.close()
        log.info("stopped")
    return cli.EXIT_OK


# ---------------------------------------------------------------------------------------------
# reconcile events
# ---------------------------------------------------------------------------------------------


def _event_text(event: dict[str, Any]) -> str:
    moment = datetime.datetime.fromtimestamp(float(event.get("time", 0)), datetime.UTC)
    subject = "/".join(part for part in (event.get("stack"), event.get("name")) if part)
    stamp = moment.isoformat(timespec="milliseconds")
    return f"{stamp} {event.get('kind', '?'):<14} {subject or '-'}: {event.get('message', '')}"


def cmd_events(args: argparse.Namespace) -> int:
    client = daemon_client(args)
    if client is not None:
        for event in client.events(follow=not args.no_follow):
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
        p.add_argument("--socket", default=default_socket(), help=f"API socket (default {api.DEFAULT_SOCKET})")
        p.add_argument("--metrics-addr", default="", metavar="[HOST:]PORT",
                       help="serve /healthz and /metrics over TCP too (host default 127.0.0.1), "
                            f"e.g. {api.DEFAULT_METRICS_ADDR}")  # fmt: skip
        p.add_argument("--resync", type=float, default=controller.DEFAULT_RESYNC,
                       help="seconds between resyncs against the engine (drift healing)")  # fmt: skip
        p.add_argument("--relist", type=float, default=controller.DEFAULT_RELIST,
                       help="seconds between re-lists of the folder (missed file events)")  # fmt: skip
        p.add_argument("--debounce", type=float, default=watching.DEFAULT_DEBOUNCE, help="seconds of quiet per file")
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


def daemon_client(args: argparse.Namespace) -> api.Client | None:
    """A client of the running daemon when it answers and drives the engine this CLI would."""
    path = getattr(args, "socket", None) or default_socket()
    if path in ("", "none"):
        return None
    client = api.Client(path)
    answer = client.ping()
    if answer is None or answer.get("engine") != args.engine:
        return None
    return client


def _sources(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The manifest texts, validated here first (so that errors print exactly as embedded), with
    absolute paths so that the daemon resolves env files the same way."""
    sources = [
        (name if name.startswith("<") else str(Path(name).resolve()), text)
        for name, text in manifests.read_sources(args.file)
    ]
    manifests.load_sources(sources)
    return sources


def _raise_api_error(exc: api.ApiError) -> None:
    """The daemon's error as the exception the embedded path would have raised (same messages)."""
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
    client = daemon_client(args)
    if client is None:
        return None
    rows = _status_rows(client.status())
    if args.output == "json":
        cli._out(json.dumps(rows, indent=2))
        return cli.EXIT_OK
    if not rows:
        cli._out("No objects managed by reconciler.")
        return cli.EXIT_OK
    header = ("KIND", "NAME", "STACK", "STATE", "HEALTH", "EXIT", "RESTARTS", "BACKOFF", "DRIFT")
    table = [header] + [
        (r["kind"], r["name"], r.get("stack") or "", r["state"], r.get("health") or "",
         "" if r.get("exitCode") is None else str(r["exitCode"]), str(r.get("restarts", "")), _backoff_text(r),
         r.get("drift") or r.get("waiting") or (f"error: {r['lastError']}" if r.get("lastError") else "-"))
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cli._out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return cli.EXIT_OK


def plan_via_daemon(args: argparse.Namespace) -> int | None:
    """``reconcile plan`` through the daemon (same output and exit codes as embedded)."""
    client = daemon_client(args)
    if client is None:
        return None
    try:
        answer = client.plan(_sources(args), prune=args.prune, prune_volumes=args.prune_volumes)
    except api.ApiError as exc:
        _raise_api_error(exc)
        raise
    for warning in answer.get("warnings", []):
        cli._err(f"warning: {warning}")
    cli._out(json.dumps(answer["plan"], indent=2) if args.output == "json" else answer["text"])
    return cli.EXIT_OK if answer["converged"] else cli.EXIT_CHANGES


def apply_via_daemon(args: argparse.Namespace) -> int | None:
    """``reconcile apply`` through the daemon, which holds the stacks' locks while it applies."""
    client = daemon_client(args)
    if client is None:
        return None
    try:
        parallelism = args.parallelism or cli.default_parallelism(args.engine)
        answer = client.apply(
            _sources(args), prune=args.prune, prune_volumes=args.prune_volumes, parallelism=parallelism
        )
    except api.ApiError as exc:
        _raise_api_error(exc)
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
        with cli.engine_session(args) as target:
            code = cli.wait_ready(target, manifests.load(args.file), timeout=args.timeout)
    return code


def logs_via_daemon(args: argparse.Namespace) -> int | None:
    client = daemon_client(args)
    if client is None:
        return None
    try:
        for line in client.logs(args.name, follow=args.follow, tail=args.tail):
            stream = sys.stderr if line.get("stream") == "stderr" else sys.stdout
            print(line.get("text", ""), file=stream, flush=True)
    except api.ApiError as exc:
        _raise_api_error(exc)
    return cli.EXIT_OK


@contextlib.contextmanager
def stack_locks(args: argparse.Namespace, stacks: Iterable[str]) -> Iterator[None]:
    """The per-stack locks an embedded apply/delete holds (sorted: no deadlock between two CLIs).

    When the lock folder cannot be created (a user in the docker group, without write access to
    ``--root``), the command runs unlocked with a warning: it could not race a root daemon's
    lock anyway, and refusing would make the CLI unusable for that user.
    """
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
