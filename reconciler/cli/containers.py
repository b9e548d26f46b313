"""``reconcile logs``, ``exec`` and ``stats``: look into running containers.

Where it sits: a command module of ``reconciler.cli``. ``logs`` goes through the daemon when one
answers (:mod:`reconciler.cli.remote`), else reads the engine; ``exec`` and ``stats`` always ask
the engine. Exit codes: 0 ok, 1 error; ``exec`` passes the command's own exit code through (125
when the engine itself failed, as ``docker exec``).

It must not import an engine at module level (the parser is built on every start).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reconciler import client, errors
from reconciler.cli import console, options, remote


def add_parsers(commands: options.Commands, common: list[argparse.ArgumentParser]) -> None:
    p = options.add_command(
        commands, "logs", cmd_logs, "print a container's logs", example="reconcile logs web -f", parents=common
    )
    p.add_argument("name")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", type=int, default=None)
    p = options.add_command(
        commands,
        "stats",
        cmd_stats,
        "CPU time, memory and processes of running containers (one reading)",
        example="reconcile stats web -o json",
        parents=common,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="containers (default: every running one)")
    options.add_output(p)
    p = options.add_command(
        commands,
        "exec",
        cmd_exec,
        "run a command in a running container; its exit code is passed through",
        example="echo 'echo hi' | reconcile exec -i web -- sh",
        parents=common,
    )
    p.add_argument("-i", "--interactive", action="store_true",
                   help="pass this command's stdin to the command (read to its end first)")  # fmt: skip
    p.add_argument("-t", "--tty", action="store_true",
                   help="run it on a terminal attached to yours (as docker exec -it; stdin must be one)")  # fmt: skip
    p.add_argument("name")
    p.add_argument("argv", nargs=argparse.REMAINDER)


def cmd_logs(args: argparse.Namespace) -> int:
    if (code := logs_via_daemon(args)) is not None:
        return code
    with options.engine_session(options.of(args)) as target:
        for line in target.logs(args.name, follow=args.follow, tail=args.tail):
            console.out(line.text, console.stream_named(line.stream))
    return console.EXIT_OK


def logs_via_daemon(args: argparse.Namespace) -> int | None:
    """``reconcile logs`` through the daemon; ``None`` when no daemon answers (run embedded)."""
    daemon = remote.daemon_client(options.of(args))
    if daemon is None:
        return None
    try:
        for line in daemon.logs(args.name, follow=args.follow, tail=args.tail):
            console.out(line.get("text", ""), console.stream_named(line.get("stream")))
    except client.ApiError as exc:
        remote.raise_api_error(exc)
    return console.EXIT_OK


def cmd_exec(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise errors.ReconcilerError("exec needs a command: reconcile exec NAME -- CMD [ARG...]")
    if args.tty:
        return exec_on_terminal(args, argv)
    # Without -i the command reads an empty input, as with ``docker exec`` without -i.
    stdin = sys.stdin.buffer.read() if args.interactive else None
    try:
        with options.engine_session(options.of(args)) as target:
            result = target.exec(args.name, argv, stdin=stdin)
    except errors.EngineError as exc:
        console.err(f"error: {exc}")
        return console.EXIT_ENGINE_FAILED
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.flush()
    return result.exit_code


def exec_on_terminal(args: argparse.Namespace, argv: list[str]) -> int:
    """``exec -t``: the command on a terminal of its own, relayed to ours by the engine."""
    from reconciler import engine

    if not sys.stdin.isatty():
        # Docker's words: a terminal needs one to relay.
        raise errors.ReconcilerError("the input device is not a TTY: exec -t needs a terminal (use -i for a pipe)")
    try:
        with options.engine_session(options.of(args)) as target:
            if not isinstance(target, engine.AttachesTerminals):
                raise errors.ReconcilerError(f"the {target.name} engine cannot open a terminal; use -i")
            return target.exec_attached(args.name, argv)
    except errors.EngineError as exc:
        console.err(f"error: {exc}")
        return console.EXIT_ENGINE_FAILED


def cmd_stats(args: argparse.Namespace) -> int:
    """``reconcile stats [NAME...]``: one reading per running container (all owned ones by default)."""
    with options.engine_session(options.of(args)) as target:
        names = list(args.names) or [n for n, c in sorted(target.observe().containers.items()) if c.state == "running"]
        rows: list[dict[str, Any]] = []
        for name in names:
            reading = target.stats(name)
            rows.append({"name": name, "cpuSeconds": round(reading.cpu_seconds, 3), "memoryBytes": reading.memory_bytes,
                         "memoryLimit": reading.memory_limit, "pids": reading.pids})  # fmt: skip
    return console.print_rows(
        rows, output=args.output, empty="No running containers managed by reconciler.",
        header=("NAME", "CPU TIME", "MEMORY", "LIMIT", "PIDS"),
        cells=lambda r: (r["name"], f"{r['cpuSeconds']:.2f}s", console.size(r["memoryBytes"]),
                         console.size(r["memoryLimit"]), str(r["pids"])),
    )  # fmt: skip
