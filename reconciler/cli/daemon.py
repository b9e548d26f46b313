"""The daemon process of ``reconcile watch``: the engine, the controller, the folder watcher, the
local API, logging and signals, run until SIGTERM or SIGINT.

Where it sits: in ``reconciler.cli``, imported only by :mod:`reconciler.cli.watch` when the
command runs, so that the commands that merely talk to a running daemon do not import
logging, ctypes, the controller or the server at start-up.

What it does: a :class:`controller.Controller` on the folder, a :class:`watching.FolderWatcher`
feeding it, and the API (:class:`api.Server`) on a root-only unix socket (the root's own unless
``--socket`` says otherwise, see :func:`reconciler.client.socket_for_root`), with ``/healthz`` and
``/metrics`` on an optional TCP address. SIGTERM or SIGINT stop it gracefully: passes in flight
finish, containers keep running. ``--once`` converges once and exits (cron, CI): 0 when every
pass succeeded and every file parsed, each file's errors printed on stderr.

Everything else it reports goes to stderr through ``logging``: ``--log-format text`` (default) or
``json`` (one object per line, for journald and log shippers). It must not print anything but
``--once``'s file errors.
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
from pathlib import Path
from typing import Any

from reconciler import api, controller, engine, errors, operations, presence, stack_locking, watching
from reconciler.cli import console, gitops, options
from reconciler.controller import git_source, images, notifications, state
from reconciler.manifests import units

LOG_FIELDS = ("stack", "container", "event")
# How often the idle main thread hands freed heap pages back to the kernel (seconds).
TRIM_INTERVAL = 30


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the controller's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in LOG_FIELDS:
            value = getattr(record, field, None)
            if value:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = " ".join(f"{f}={getattr(record, f)}" for f in LOG_FIELDS if getattr(record, f, None))
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


def limit_malloc_arenas() -> None:
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


def trim_malloc() -> None:
    """Hand freed heap pages back to the kernel (a resync decodes every inspect's JSON, and glibc
    keeps the freed memory otherwise): the idle RSS then reflects what the daemon holds."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def run(args: argparse.Namespace) -> int:
    """``reconcile watch``: serve until a signal, or converge once with ``--once``."""
    limit_malloc_arenas()
    setup_logging(args.log_format, "DEBUG" if os.environ.get("RECONCILER_DEBUG") else "INFO")
    chosen = options.of(args)
    # DIR, or with --git the folder of a git source (its state under the controller's).
    folder, source = gitops.folder_and_source(args, state_dir(args, chosen))
    if not args.once and api.Client(chosen.socket).ping() is not None:
        raise errors.ReconcilerError(f"a daemon already answers on {chosen.socket}; stop it first")
    target = options.open_engine(chosen)
    if target.name == "native":
        # The native engine has no daemon of its own to bring containers back after a reboot.
        for name in operations.boot(target, chosen.holds()):
            logging.getLogger("reconciler.daemon").info("boot: started %s", name)
    ctl = build_controller(args, chosen, target, folder, source)
    if args.once:
        return converge_once(ctl, target)
    try:
        # The native engine's restarters stand aside for a controller that manages their stack.
        with presence.announced(chosen.root, state_dir(args, chosen) / state.STACKS_FILE):
            return serve(args, ctl, target, folder)
    except BlockingIOError:
        raise errors.ReconcilerError(f"another controller already runs for root {chosen.root}; stop it first") from None


def state_dir(args: argparse.Namespace, chosen: options.GlobalOptions) -> Path:
    """Where the controller keeps what it must remember (``--state-dir``, else the root's ``controller/``)."""
    return Path(args.state_dir) if args.state_dir else chosen.root / "controller"


def build_controller(
    args: argparse.Namespace,
    chosen: options.GlobalOptions,
    target: engine.Engine,
    folder: Path,
    source: git_source.GitSource | None = None,
) -> controller.Controller:
    locks = chosen.lock_dir
    return controller.Controller(
        target,
        folder,
        state_dir=state_dir(args, chosen),
        # Docker restarts containers itself unless the manifest asks for the controller's backoff.
        engine_restarts=target.name in ("docker", "swarm"),
        relist_interval=controller.DEFAULT_RELIST if args.relist is None else args.relist,
        resync_interval=controller.DEFAULT_RESYNC if args.resync is None else args.resync,
        parallelism=args.parallelism or options.default_parallelism(target.name),
        stack_lock=lambda stack: stack_locking.stack_lock(locks, stack),
        threaded_probes=True,
        holds=chosen.holds(),
        image_refresh=image_refresh_of(args),
        notifier=notifier_of(args),
        git=source,
    )


def image_refresh_of(args: argparse.Namespace) -> float:
    """``--image-refresh``: seconds between checks of ``Always`` images (a duration or a number)."""
    text = getattr(args, "image_refresh", None)
    if text is None:
        return images.DEFAULT_IMAGE_REFRESH
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else units.parse_duration(text)
    except ValueError as exc:
        raise errors.ReconcilerError(f"--image-refresh: {exc}") from None


def notifier_of(args: argparse.Namespace) -> notifications.Notifier | None:
    """The webhook notifier that ``--notify-url`` or ``--notify-url-file`` asks for, if any."""
    url = getattr(args, "notify_url", None)
    if getattr(args, "notify_url_file", None):
        url = small_file(args.notify_url_file, "--notify-url-file").decode().strip()
    if not url:
        return None
    secret = None
    if args.notify_secret_file:
        secret = small_file(args.notify_secret_file, "--notify-secret-file").strip()
    return notifications.Notifier(
        notifications.http_sender(url), where=notifications.shown(url),
        categories=notifications.parse_categories(args.notify_on), secret=secret,
    )  # fmt: skip


def small_file(path: str, option: str) -> bytes:
    """A file holding a secret or a URL: at most 64 KiB, never echoed in an error."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(65537)
    except OSError as exc:
        raise errors.ReconcilerError(f"{option}: {path}: {exc.strerror}") from None
    if len(data) > 65536:
        raise errors.ReconcilerError(f"{option}: {path} is larger than 64 KiB")
    return data


def converge_once(ctl: controller.Controller, target: engine.Engine) -> int:
    """``--once``: one pass of everything, then each file's errors on stderr."""
    try:
        ok = ctl.converge_once()
    finally:
        target.close()
    for report in ctl.status()["files"]:
        for message in report["errors"]:
            console.err(message)
    return console.EXIT_OK if ok else console.EXIT_ERROR


def serve(args: argparse.Namespace, ctl: controller.Controller, target: engine.Engine, folder: Path) -> int:
    log = logging.getLogger("reconciler.daemon")
    stopping = threading.Event()

    def on_signal(number: int, frame: object) -> None:
        del frame
        log.info("signal %s: shutting down (containers keep running)", signal.Signals(number).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # ``kill -USR1`` dumps every thread's stack to the log: how a stuck pass is diagnosed.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    chosen = options.of(args)
    server = api.Server(ctl, socket_path=chosen.socket, root=chosen.target_root, metrics_addr=args.metrics_addr or None,
                        git_hook=gitops.hook(args, ctl.git))  # fmt: skip
    debounce = watching.DEFAULT_DEBOUNCE if args.debounce is None else args.debounce
    # A git source's folder changes only by its switches, which rescan themselves.
    watcher = watching.FolderWatcher(folder, ctl.file_changed, debounce=debounce) if ctl.git is None else None
    # Watching first, then the first scan, then the API: once the socket answers, a file written
    # into the folder is never missed (the readiness a test or a service manager waits for).
    if watcher is not None:
        watcher.start()
    ctl.start()
    server.start()
    log.info("watching %s with the %s engine on root %s; API on %s%s", folder, target.name, chosen.target_root,
             chosen.socket,
             f", metrics on {server.metrics_address}" if server.metrics_address else "")  # fmt: skip
    try:
        seconds = 0
        while not stopping.wait(1.0):
            seconds += 1
            if seconds % TRIM_INTERVAL == 0:
                trim_malloc()
    finally:
        if watcher is not None:
            watcher.stop()
        ctl.stop()
        server.stop()
        target.close()
        log.info("stopped")
    return console.EXIT_OK
