"""The command line's options: the global ones (typed), the shared ones, and the engine they name.

Where it sits: under the command modules of ``reconciler.cli``, over :mod:`reconciler.client`.
Global options (``--engine``, ``--root``, ``--dns-upstream``, ``--socket``) are accepted before the command and
after it, with the same result: the top-level parser holds their defaults (from the environment),
and every command's parser repeats them with ``argparse.SUPPRESS`` as default, so that they only
override the top-level value when they are given after the command. The socket, when neither
``--socket`` nor ``RECONCILER_SOCKET`` names one, is the one of the root's daemon
(:func:`client.socket_for_root`): a command on another ``--root`` never reaches the daemon of the
default one.

It must not import an engine, the models or the planner at module level: the parser is built on
every start, and a command the daemon serves must start without them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from reconciler import client, errors

if TYPE_CHECKING:
    from reconciler import engine, manifests
    from reconciler.compose import loader as compose_loader
    from reconciler.holds import Holds

DEFAULT_ROOT = client.DEFAULT_ROOT
ENGINES = ("native", "docker", "swarm")

Handler = Callable[[argparse.Namespace], int]


class GlobalOptions(NamedTuple):
    """What every command may be told: the engine to drive, its state folder, the daemon's socket.

    (A named tuple, not a dataclass: ``dataclasses`` imports ``inspect``, a cost on every start.)"""

    engine: str
    root: Path
    socket: str
    # The native networks' upstream resolvers, ``HOST[:PORT],...``; empty: the host's.
    dns_upstream: str = ""
    # The dockerd (docker) or swarm manager (swarm) to drive, as DOCKER_HOST; empty: the local one.
    docker_host: str = ""

    @property
    def lock_dir(self) -> Path:
        """Where the per-stack locks shared with the daemon live."""
        return self.root / "locks"

    @property
    def holds_dir(self) -> Path:
        """Where ``reconcile stop`` records the containers it stopped on purpose (shared with the
        daemon, whose restart manager leaves them stopped; see :mod:`reconciler.holds`)."""
        return self.root / "stopped"

    def holds(self) -> Holds:
        """The stopped-on-purpose records of this root."""
        from reconciler.holds import Holds

        return Holds(self.holds_dir)

    @property
    def uses_daemon(self) -> bool:
        """``--socket none`` (or empty) means: never use a daemon."""
        return self.socket not in ("", "none")

    @property
    def target_root(self) -> str:
        """The root as the daemon is told it and compares it: absolute, symlinks resolved."""
        return str(self.root.resolve())


def of(args: argparse.Namespace) -> GlobalOptions:
    """The global options of parsed arguments (the socket derived from the root unless given)."""
    root = Path(args.root)
    socket = args.socket if args.socket is not None else client.socket_for_root(root)
    upstream = getattr(args, "dns_upstream", None) or ""
    docker_host = getattr(args, "docker_host", None) or ""
    return GlobalOptions(engine=args.engine, root=root, socket=socket, dns_upstream=upstream, docker_host=docker_host)


def default_socket() -> str | None:
    """``RECONCILER_SOCKET``, else None: the root's daemon (see :func:`of`); ``none`` (or empty)
    means "never use a daemon"."""
    return os.environ.get("RECONCILER_SOCKET")


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The global options on ``parser``: with their defaults on the top-level parser (``top``),
    without (``SUPPRESS``) on a command's parser, so that only a value given there overrides."""

    def default(value: str | None) -> str | None:
        return value if top else argparse.SUPPRESS

    parser.add_argument("--engine", default=default(os.environ.get("RECONCILER_ENGINE", "native")), choices=ENGINES,
                        help="engine to drive (env RECONCILER_ENGINE; default native)")  # fmt: skip
    parser.add_argument(
        "--root",
        default=default(os.environ.get("RECONCILER_ROOT", DEFAULT_ROOT)),
        help=f"native engine state directory (env RECONCILER_ROOT; default {DEFAULT_ROOT})",
    )
    parser.add_argument(
        "--dns-upstream",
        default=default(os.environ.get("RECONCILER_DNS_UPSTREAM", "")),
        metavar="HOST[:PORT],...",
        help="native engine: where the networks' DNS servers forward names outside the stack, unless a "
        "container's dns: names its own (env RECONCILER_DNS_UPSTREAM; default: the host's resolv.conf)",
    )
    parser.add_argument("--docker-host", default=default(os.environ.get("DOCKER_HOST", "")), metavar="URL",
                        help="docker and swarm engines: the dockerd, or the swarm manager, to drive, e.g. "
                             "unix:///run/manager.sock (env DOCKER_HOST; default: the local socket)")  # fmt: skip
    parser.add_argument("--socket", default=default(default_socket()),
                        help=f"the daemon's API socket (env RECONCILER_SOCKET; default: the root's, "
                             f"{client.DEFAULT_SOCKET} for {DEFAULT_ROOT}; none: never use a daemon)")  # fmt: skip


def global_parent() -> argparse.ArgumentParser:
    """A parent parser that gives a command's parser the global options (see the module docstring)."""
    parent = argparse.ArgumentParser(add_help=False)
    add_global_options(parent, top=False)
    return parent


# ---------------------------------------------------------------------------------------------
# Commands and the options several of them share
# ---------------------------------------------------------------------------------------------


class Commands(Protocol):
    """The object ``add_subparsers`` returns (argparse gives its type no public name)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def add_command(
    commands: Commands,
    name: str,
    handler: Handler,
    help_text: str,
    *,
    example: str | None = None,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    """A command's parser: its help, its example (shown under ``--help``) and its handler."""
    extra = {"epilog": f"example:\n  {example}", "formatter_class": argparse.RawDescriptionHelpFormatter}
    parser = commands.add_parser(name, help=help_text, description=help_text, parents=list(parents),
                                 **(extra if example else {}))  # fmt: skip
    parser.set_defaults(func=handler)
    return parser


def add_files(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("-f", "--file", action="append", required=required, metavar="PATH",
                        help="manifest or compose file, folder or - for stdin (repeatable)")  # fmt: skip
    compose = parser.add_argument_group("compose files (compose.yaml, docker-compose.yml, any YAML with services:)")
    compose.add_argument("-p", "--project-name", metavar="NAME",
                         help="the project's name (default: its name:, else the first file's folder)")  # fmt: skip
    compose.add_argument("--env-file", action="append", default=[], metavar="PATH",
                         help="variables to interpolate, instead of the .env beside the file (repeatable)")  # fmt: skip
    compose.add_argument("--profile", action="append", default=[], metavar="NAME",
                         help="also run the services of this profile (repeatable; * for all)")  # fmt: skip


def compose_options(args: argparse.Namespace) -> compose_loader.Options:
    """``-p``, ``--env-file`` and ``--profile`` as the compose loader takes them."""
    from reconciler.compose import loader

    return loader.Options(getattr(args, "project_name", None), tuple(getattr(args, "env_file", None) or ()),
                          tuple(getattr(args, "profile", None) or ()))  # fmt: skip


def load_files(args: argparse.Namespace, texts: Sequence[tuple[str, str]] | None = None) -> manifests.Desired:
    """The desired state ``-f`` names (its ``texts`` when already read: stdin reads only once),
    compose files among them read as compose reads them (the compose package is imported only
    when there is one: the CLI's start stays light)."""
    from reconciler import manifests, sources

    texts = sources.read_sources(args.file) if texts is None else texts
    if any(sources.is_compose(file, text) for file, text in texts):
        from reconciler.cli import console
        from reconciler.compose import loader

        result = loader.load_sources(texts, compose_options(args), warn=console.warn)
    else:
        result = manifests.load_sources(texts)
    manifests.require_objects(result, args.file)
    return result


def add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")


def add_pruning(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prune", action=argparse.BooleanOptionalAction, default=True,
                        help="remove objects of the applied stacks that the manifests no longer declare")  # fmt: skip
    parser.add_argument("--prune-volumes", action="store_true",
                        help="also remove such volumes (their data is lost)")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


def default_parallelism(engine_name: str) -> int:
    """dockerd starts containers concurrently (measured: 16 brings a 50-container cold apply from
    1.3x to 1.0x compose's time); the native engine serialises its own state changes."""
    return 16 if engine_name in ("docker", "swarm") else 4


def open_engine(chosen: GlobalOptions) -> engine.Engine:
    """Construct the engine named by ``--engine`` (backends are imported here: start-up speed)."""
    if chosen.engine in ("docker", "swarm") and chosen.docker_host:
        # Where the SDK, and the docker command exec -t runs, look for the daemon.
        os.environ["DOCKER_HOST"] = chosen.docker_host
    if chosen.engine == "docker":
        from reconciler.backends import docker as docker_backend

        return docker_backend.DockerEngine.from_env()
    if chosen.engine == "swarm":
        from reconciler.backends import swarm as swarm_backend

        return swarm_backend.SwarmEngine.from_env()
    if chosen.engine == "native":
        from reconciler.backends.native import engine as native_engine

        return native_engine.NativeEngine(chosen.root, dns_upstream=chosen.dns_upstream.split(","))
    raise errors.ReconcilerError(f"unknown engine {chosen.engine!r}; choose native, docker or swarm")


class EngineOnce:
    """The engine of a command that may not need one (a no-op answered without it may, or may not,
    observe it first): opened on the first call, the same one after, closed when the ``with``
    block ends."""

    def __init__(self, chosen: GlobalOptions) -> None:
        self.chosen = chosen
        self._target: engine.Engine | None = None

    def __call__(self) -> engine.Engine:
        if self._target is None:
            self._target = open_engine(self.chosen)
        return self._target

    def __enter__(self) -> EngineOnce:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._target is not None:
            self._target.close()


@contextlib.contextmanager
def engine_session(chosen: GlobalOptions) -> Iterator[engine.Engine]:
    """The engine, closed when the ``with`` block ends."""
    target = open_engine(chosen)
    try:
        yield target
    finally:
        target.close()
