"""``reconcile watch DIR`` (alias ``reconcile daemon --manifests DIR``): start the daemon.

Where it sits: a command module of ``reconciler.cli``. This module only declares the command;
the daemon process itself (logging, signals, the controller, the watcher, the API server) is in
:mod:`reconciler.cli.daemon`, imported when the command runs, so that every other command starts
without them.

The parser repeats the controller's and the watcher's defaults in its help instead of importing
them (a unit test keeps them equal). It must not import the controller, the API server or logging.
"""

from __future__ import annotations

import argparse

from reconciler import client
from reconciler.cli import options

# The defaults the help states; the controller and the watcher own them (see the module docstring).
RESYNC_HELP = "seconds between resyncs against the engine, drift healing (default 60)"
RELIST_HELP = "seconds between re-lists of the folder, missed file events (default 20)"
DEBOUNCE_HELP = "seconds of quiet per file (default 0.5)"
IMAGE_REFRESH_HELP = "how often pullPolicy: Always images are checked for a moved tag, e.g. 30m (default 1h; 0: never)"


def add_parsers(commands: options.Commands, common: list[argparse.ArgumentParser]) -> None:
    """Register ``watch`` and its alias ``daemon``."""
    p = options.add_command(
        commands, "watch", cmd_watch, "run the controller on a folder of manifests (the daemon)", parents=common
    )
    p.add_argument("dir", metavar="DIR", nargs="?", help="folder of *.yaml/*.yml manifests (or --git URL)")
    p.set_defaults(manifests=None)
    add_daemon_options(p)
    p = options.add_command(
        commands, "daemon", cmd_watch, "alias of watch: reconcile daemon --manifests DIR", parents=common
    )
    p.add_argument("--manifests", metavar="DIR", help="folder of manifests (or --git URL)")
    p.set_defaults(dir=None)
    add_daemon_options(p)


def add_daemon_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-addr", default="", metavar="[HOST:]PORT",
                   help="serve /healthz and /metrics over TCP too (host default 127.0.0.1), "
                        f"e.g. {client.DEFAULT_METRICS_ADDR}")  # fmt: skip
    # None means "the controller's default": the parser is built on every CLI start.
    p.add_argument("--resync", type=float, default=None, help=RESYNC_HELP)
    p.add_argument("--relist", type=float, default=None, help=RELIST_HELP)
    p.add_argument("--debounce", type=float, default=None, help=DEBOUNCE_HELP)
    p.add_argument("--parallelism", type=int, default=None, help="steps run at once per pass (default as for apply)")
    p.add_argument("--state-dir", default=None, help="controller state (default ROOT/controller)")
    p.add_argument("--once", action="store_true", help="converge once and exit (cron, CI)")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--image-refresh", default=None, metavar="DURATION", help=IMAGE_REFRESH_HELP)
    add_notify_options(p)
    add_git_options(p)


def add_git_options(p: argparse.ArgumentParser) -> None:
    """A branch of a repository instead of a folder (the daemon's ``gitops`` checks them together)."""
    g = p.add_argument_group("git source (instead of DIR)")
    g.add_argument("--git", default=None, metavar="URL",
                   help="converge on a repository: https://, ssh://, git://, host:path or a path")  # fmt: skip
    g.add_argument("--branch", default=None, help="the branch to follow (default main)")
    g.add_argument("--path", default=None, metavar="DIR", help="the folder of manifests in it (default .)")
    g.add_argument("--interval", default=None, metavar="DURATION", help="how often to fetch (default 30s)")
    g.add_argument("--ssh-key", default=None, metavar="FILE", help="a deploy key for ssh URLs")
    g.add_argument("--ssh-known-hosts", default=None, metavar="FILE",
                   help="the ssh host keys to trust (default ~/.ssh/known_hosts)")  # fmt: skip
    g.add_argument("--token-file", default=None, metavar="FILE",
                   help="an HTTPS token (TOKEN or USER:TOKEN), sent as HTTP basic auth")  # fmt: skip
    g.add_argument("--webhook-secret-file", default=None, metavar="FILE",
                   help="enable POST /hooks/git (GitHub's HMAC or GitLab's token) with this secret; "
                        "served on the socket and on --metrics-addr")  # fmt: skip
    g.add_argument("--require-signed", action="store_true",
                   help="apply only commits signed by a key of --allowed-signers or --gpg-keyring")  # fmt: skip
    g.add_argument("--allowed-signers", default=None, metavar="FILE", help="an ssh allowed-signers file")
    g.add_argument("--gpg-keyring", default=None, metavar="FILE", help="exported public gpg keys that may sign")


def add_notify_options(p: argparse.ArgumentParser) -> None:
    """Events to a webhook (applied, rollback, failed, drift)."""
    p.add_argument("--notify-url", default=None, metavar="URL", help="POST events as JSON (retried; bounded queue)")
    p.add_argument("--notify-url-file", default=None, metavar="FILE",
                   help="read the URL from FILE (for URLs that carry a token: not on the command line)")  # fmt: skip
    p.add_argument("--notify-on", default="applied,rollback,failed,drift", metavar="LIST",
                   help="which events: applied, rollback, failed, drift (default all)")  # fmt: skip
    p.add_argument("--notify-secret-file", default=None, metavar="FILE",
                   help="sign each body with this secret (X-Reconciler-Signature-256: sha256=HMAC)")  # fmt: skip


def cmd_watch(args: argparse.Namespace) -> int:
    from reconciler.cli import daemon

    return daemon.run(args)
