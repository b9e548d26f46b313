"""The ``reconcile`` entry point: the parser of every command, and errors turned into messages.

Where it sits: the top of ``reconciler.cli`` under its ``__init__``. It builds one parser from the
command modules (each registers its own commands), runs the chosen handler, and maps the project's
errors to one clear message and an exit code each: bad input never produces a Python traceback,
and anything unexpected is reported as an internal error (``RECONCILER_DEBUG=1`` shows the trace).
A usage error exits 1 (:class:`Parser`), as every other error: 2 is only ``plan``'s answer.

It must not import the models, the planner or an engine: a command the daemon serves starts
through it, and its start-up is measured.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from reconciler import errors, vocabulary
from reconciler.cli import (
    apply,
    console,
    containers,
    events,
    image,
    lifecycle,
    manifest_commands,
    options,
    render,
    status,
    watch,
)

EXAMPLES = """\
examples:
  reconcile validate -f manifests/                 check every manifest, list every mistake
  reconcile plan -f stack.yaml                     show what would change and why (exit 2 if anything)
  reconcile plan -f stack.yaml -o json             the same, for scripts
  reconcile apply -f stack.yaml --parallelism 8    converge, then print what was done
  reconcile delete --stack shop                    remove a stack's containers and networks
  reconcile delete --stack shop --prune-volumes    ... and its volumes (their data is lost)
  reconcile status -f stack.yaml                   state, health, restarts and drift per object
  reconcile restart web                            stop, then start a container (--stack for all)
  reconcile exec web -- cat /etc/hostname          run a command in a container
  reconcile stats                                  CPU time, memory and processes of each container
  reconcile schema --out schemas/                  write the JSON Schemas for editors
  reconcile render --to kubernetes -f stack.yaml   the same manifests as objects for kubectl apply
"""


class Parser(argparse.ArgumentParser):
    """argparse's parser, but a usage error (an unknown option, a missing argument) exits 1, not 2:
    2 is ``plan``'s "changes pending", and CI must not read a typo as a change. Every command's
    parser is one too (``add_subparsers`` makes its parsers of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(console.EXIT_ERROR, f"{self.prog}: error: {message}\n")


class VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked (importlib.metadata costs a start-up)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        console.out(f"reconcile {package_version()}")
        parser.exit(console.EXIT_OK)


def package_version() -> str:
    """The installed package's version; in a source tree run without installing, pyproject's."""
    import importlib.metadata

    try:
        return importlib.metadata.version("reconciler")
    except importlib.metadata.PackageNotFoundError:
        import tomllib

        try:
            pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text("utf-8"))
            return str(pyproject["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


# Each command group's registration and the commands it registers. A run builds the parsers of
# its own command's group only (about 2.5 ms of every start, measured, when all 17 commands with
# their repeated global options are built); help, a bare ``reconcile`` or an unknown word get all.
_GROUPS: tuple[tuple[Callable[[options.Commands, list[argparse.ArgumentParser]], None], frozenset[str]], ...] = (
    (manifest_commands.add_validate, frozenset({"validate"})),
    (apply.add_parsers, frozenset({"plan", "apply", "delete"})),
    (status.add_parsers, frozenset({"status"})),
    (containers.add_parsers, frozenset({"logs", "stats", "exec"})),
    (lifecycle.add_parsers, frozenset({"start", "stop", "restart", "boot"})),
    (manifest_commands.add_parsers, frozenset({"schema", "hash", "convert"})),
    (image.add_parser, frozenset({"image"})),
    (watch.add_parsers, frozenset({"watch", "daemon"})),
    (events.add_parsers, frozenset({"events"})),
    (render.add_parsers, frozenset({"render"})),
)
_VALUED_GLOBALS = frozenset({"--engine", "--root", "--socket"})


def command_word(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (the first word that is no global option or its value), or None
    when help or the version is asked for before any command."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in ("-h", "--help", "--version"):
            return None
        elif token in _VALUED_GLOBALS:
            skip = True
        elif not token.startswith("-"):
            return token
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv`` whose command is known, with that command's group only."""
    parser = Parser(
        prog="reconcile",
        description="Declarative containers: YAML manifests in, a plan with reasons, an idempotent apply.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction, help="print the version and exit")
    options.add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [options.global_parent()]
    word = command_word(argv) if argv is not None else None
    chosen = [register for register, names in _GROUPS if word in names]
    for register in chosen or [register for register, _ in _GROUPS]:
        register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        code: int = args.func(args)
    except errors.ManifestError as exc:
        for diagnostic in exc.diagnostics:
            console.err(diagnostic.render())
        console.err(f"{vocabulary.counted(len(exc.diagnostics), 'error')}; nothing was changed.")
        return console.EXIT_ERROR
    except errors.PlanError as exc:
        console.err(f"error: cannot plan: {exc}\nnothing was changed.")
        return console.EXIT_ERROR
    except errors.ReconcilerError as exc:
        console.err(f"error: {exc}")
        return console.EXIT_ERROR
    except KeyboardInterrupt:
        console.err("interrupted")
        return console.EXIT_INTERRUPTED
    except BrokenPipeError:
        return console.EXIT_OK
    except Exception as exc:
        if os.environ.get("RECONCILER_DEBUG"):
            raise
        console.err(f"internal error: {type(exc).__name__}: {exc} (set RECONCILER_DEBUG=1 for a traceback)")
        return console.EXIT_ERROR
    return code
