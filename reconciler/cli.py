"""The ``reconcile`` command line: the user's contract, and the only module that prints.

Every subcommand follows one path: load and validate manifests → observe the engine once → plan
(pure) → print → execute (``apply``/``delete`` only). Exit codes are documented for CI:

* ``validate``: 0 valid, 1 any error (each as ``file:line:col: field: message``);
* ``plan``: 0 converged, 2 changes pending, 1 error;
* ``apply``/``delete``: 0 every step succeeded, 1 otherwise;
* ``exec``: the command's own exit code (125 when the engine itself failed, as ``docker exec``).

Bad input never produces a Python traceback: project errors become one clear message each, and
anything unexpected is reported as an internal error (set ``RECONCILER_DEBUG=1`` for the trace).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from reconciler import errors

if TYPE_CHECKING:
    from reconciler import engine as engine_mod
    from reconciler import executing, manifests, observed, plans

# The heavy modules (pydantic models, the planner, the engines) are imported by the functions that
# use them: a command served by the daemon never loads them, and its start-up is measured.

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
DEFAULT_ROOT = "/var/lib/reconciler"

EXAMPLES = """\
examples:
  reconcile validate -f manifests/                 check every manifest, list every mistake
  reconcile plan -f stack.yaml                     show what would change and why (exit 2 if anything)
  reconcile plan -f stack.yaml -o json             the same, for scripts
  reconcile apply -f stack.yaml --parallelism 8    converge, then print what was done
  reconcile delete --stack shop                    remove a stack's containers and networks
  reconcile delete --stack shop --prune-volumes    ... and its volumes (their data is lost)
  reconcile status -f stack.yaml                   state, health, restarts and drift per object
  reconcile exec web -- cat /etc/hostname          run a command in a container
  reconcile stats                                  CPU time, memory and processes of each container
  reconcile schema --out schemas/                  write the JSON Schemas for editors
"""


def _out(text: str = "", stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------


def open_engine(args: argparse.Namespace, *, controller: bool = False) -> engine_mod.Engine:
    """Construct the engine named by ``--engine`` (backends are imported lazily: start-up speed).

    ``controller``: the engine serves ``reconcile watch``, which carries out restart policies; the
    native engine then prepares a restarting container's next run during its backoff."""
    name = args.engine
    if name == "docker":
        from reconciler.backends import docker as docker_backend

        return docker_backend.DockerEngine.from_env()
    if name == "native":
        from reconciler.backends.native import engine as native_engine

        return native_engine.NativeEngine(Path(args.root), prepare_restarts=controller)
    raise errors.ReconcilerError(f"unknown engine {name!r}; choose native or docker")


@contextlib.contextmanager
def engine_session(args: argparse.Namespace) -> Iterator[engine_mod.Engine]:
    target = open_engine(args)
    try:
        yield target
    finally:
        target.close()


# ---------------------------------------------------------------------------------------------
# Shared steps
# ---------------------------------------------------------------------------------------------


def refresh_images(target: engine_mod.Engine, desired: manifests.Desired) -> list[str]:
    """Ask the registry about ``pullPolicy: Always`` images before observing, so that a moved tag
    shows up as "image changed". Returns one message per image that could not be refreshed."""
    problems = []
    for image in sorted({c.spec.image for c in desired.containers.values() if c.spec.pull_policy == "Always"}):
        try:
            target.pull_image(image, policy="Always")
        except errors.EngineError as exc:
            problems.append(f"image {image}: {exc}")
    return problems


def make_plan(
    target: engine_mod.Engine,
    desired: manifests.Desired,
    *,
    prune: bool,
    prune_volumes: bool,
    scope: frozenset[str] | None = None,
) -> tuple[plans.Plan, observed.Observed]:
    from reconciler import planning

    stacks = desired.stacks if scope is None else scope
    actual = target.observe(images=planning.images_of(desired), stacks=stacks)
    options = planning.Options(prune=prune, prune_volumes=prune_volumes, scope=scope)
    return planning.plan(desired, actual, options), actual


def print_rows(
    rows: list[dict[str, Any]],
    *,
    output: str,
    empty: str,
    header: tuple[str, ...],
    cells: Callable[..., tuple[str, ...]],
) -> int:
    """``-o json``: the rows as a JSON list; text: a table, columns padded to their widest cell."""
    if output == "json":
        _out(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        _out(empty)
        return EXIT_OK
    table = [header] + [cells(row) for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        _out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def print_result(result: executing.StepResult) -> None:
    from reconciler import plans

    verb, target = plans.describe(result.step.action)
    if result.status == "done":
        _out(f"  ✓ {result.step.number}. {verb} {target} ({result.seconds:.2f}s)")
    elif result.status == "failed":
        _out(f"  ✗ {result.step.number}. {verb} {target}: {result.error}")
    else:
        _out(f"  - {result.step.number}. {verb} {target}: {result.error}")


def default_parallelism(engine_name: str) -> int:
    """dockerd starts containers concurrently (measured: 16 brings a 50-container cold apply from
    1.3x to 1.0x compose's time); the native engine serialises its own state changes."""
    return 16 if engine_name == "docker" else 4


def run_plan(plan: plans.Plan, target: engine_mod.Engine, *, parallelism: int | None, output: str) -> int:
    from reconciler import executing

    parallelism = parallelism or default_parallelism(target.name)
    if output == "json":
        outcome = executing.execute(plan, target, parallelism=parallelism)
        _out(json.dumps({
            "plan": plan.to_json(),
            "results": [
                {"number": r.step.number, "status": r.status, "seconds": round(r.seconds, 3), "error": r.error}
                for r in outcome.results
            ],
            "ok": outcome.ok,
        }, indent=2))  # fmt: skip
        return EXIT_OK if outcome.ok else EXIT_ERROR
    _out(plan.render())
    if plan.converged:
        return EXIT_OK
    _out("\nApplying:")
    outcome = executing.execute(plan, target, parallelism=parallelism, on_result=print_result)
    _out(f"\n{'Done' if outcome.ok else 'Failed'}: {outcome.summary()}.")
    return EXIT_OK if outcome.ok else EXIT_ERROR


def _via_daemon(command: str, args: argparse.Namespace) -> int | None:
    """Run ``command`` through the daemon when its socket answers and it drives this engine.

    ``None`` means "no daemon": the command runs embedded, as before.
    """
    try:
        from reconciler import cli_daemon
    except ImportError:
        return None
    handler: Callable[[argparse.Namespace], int | None] = getattr(cli_daemon, f"{command}_via_daemon")
    return handler(args)


@contextlib.contextmanager
def _stack_locks(args: argparse.Namespace, stacks: Iterable[str]) -> Iterator[None]:
    """The per-stack locks shared with the daemon, so that an embedded apply never races it."""
    try:
        from reconciler import cli_daemon
    except ImportError:
        yield
        return
    with cli_daemon.stack_locks(args, stacks):
        yield


# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from reconciler import manifests

    desired = manifests.load(args.file)
    total = len(desired.containers) + len(desired.networks) + len(desired.volumes)
    _out(
        f"valid: {total} objects ({len(desired.containers)} containers, {len(desired.networks)} networks, "
        f"{len(desired.volumes)} volumes) in stacks {', '.join(sorted(desired.stacks)) or '-'}"
    )
    return EXIT_OK


def plan_desired(target: engine_mod.Engine, desired: manifests.Desired, args: argparse.Namespace) -> plans.Plan:
    """``plan`` and ``apply`` share this: refresh ``Always`` images, observe once, plan."""
    for problem in refresh_images(target, desired):
        _err(f"warning: {problem}")
    plan, _ = make_plan(target, desired, prune=args.prune, prune_volumes=args.prune_volumes)
    return plan


def cmd_plan(args: argparse.Namespace) -> int:
    if (code := _via_daemon("plan", args)) is not None:
        return code
    from reconciler import manifests

    desired = manifests.load(args.file)
    with engine_session(args) as target:
        plan = plan_desired(target, desired, args)
    if args.output == "json":
        _out(json.dumps(plan.to_json(), indent=2))
    else:
        _out(plan.render())
    return EXIT_OK if plan.converged else EXIT_CHANGES


def cmd_apply(args: argparse.Namespace) -> int:
    if (code := _via_daemon("apply", args)) is not None:
        return code
    from reconciler import manifests

    desired = manifests.load(args.file)
    with engine_session(args) as target:
        with _stack_locks(args, desired.stacks):
            plan = plan_desired(target, desired, args)
            code = run_plan(plan, target, parallelism=args.parallelism, output=args.output)
        if code == EXIT_OK and args.wait:
            code = wait_ready(target, desired, timeout=args.timeout)
    if args.engine == "native" and desired.containers:
        _err("warning: restart policies on the native engine are carried out by the controller "
             "(`reconcile watch`); without it, exited containers stay exited until the next apply")  # fmt: skip
    return code


def wait_ready(target: engine_mod.Engine, desired: manifests.Desired, *, timeout: float) -> int:
    """``apply --wait``: until every container runs (and is healthy where it has a health check)."""
    deadline = time.monotonic() + timeout
    pending: list[str] = []
    while time.monotonic() < deadline:
        actual = target.observe()
        pending = []
        for name, container in sorted(desired.containers.items()):
            present = actual.containers.get(name)
            if present is None:
                pending.append(f"{name} (absent)")
            elif container.spec.restart.policy == "no" and present.state == "exited" and present.exit_code == 0:
                continue  # a completed one-shot job is ready
            elif present.state != "running":
                pending.append(f"{name} ({present.state})")
            elif container.spec.healthcheck is not None and present.health not in ("healthy", None):
                pending.append(f"{name} ({present.health})")
        if not pending:
            _out("All containers are ready.")
            return EXIT_OK
        time.sleep(0.2)
    _err(f"error: not ready after {timeout:g}s: {', '.join(pending)}")
    return EXIT_ERROR


def cmd_delete(args: argparse.Namespace) -> int:
    from reconciler import manifests

    if not args.file and not args.stack:
        raise errors.ReconcilerError("delete needs -f PATH or --stack NAME")
    stacks = set(args.stack or [])
    if args.file:
        stacks |= manifests.load(args.file).stacks
    with engine_session(args) as target, _stack_locks(args, stacks):
        plan, _ = make_plan(
            target, manifests.Desired.empty(stacks), prune=True, prune_volumes=args.prune_volumes,
            scope=frozenset(stacks),
        )  # fmt: skip
        return run_plan(plan, target, parallelism=args.parallelism, output=args.output)


def status_rows(actual: observed.Observed, desired: manifests.Desired | None) -> list[dict[str, Any]]:
    """One row per owned object: state, health, exit code, restarts, spec hash and drift."""
    from reconciler import planning

    rows: list[dict[str, Any]] = []
    drift: dict[tuple[str, str], str] = {}
    if desired is not None:
        plan = planning.plan(desired, actual)
        for change in plan.changes:
            drift[(change.kind, change.name)] = f"{change.change}: {change.reason}"
        for name in sorted(set(desired.containers) - set(actual.containers)):
            rows.append({"kind": "Container", "name": name, "stack": desired.containers[name].stack,
                         "state": "absent", "drift": drift.get(("Container", name), "")})  # fmt: skip
    for name, container in sorted(actual.containers.items()):
        rows.append({
            "kind": "Container", "name": name, "stack": container.stack, "state": container.state,
            "health": container.health, "exitCode": container.exit_code, "restarts": container.restart_count,
            "id": container.container_id[:12], "specHash": container.spec_hash,
            "drift": drift.get(("Container", name), ""),
        })  # fmt: skip
    for name, network in sorted(actual.networks.items()):
        rows.append({"kind": "Network", "name": name, "stack": network.stack, "state": "present",
                     "specHash": network.spec_hash, "drift": drift.get(("Network", name), "")})  # fmt: skip
    for name, volume in sorted(actual.volumes.items()):
        rows.append({"kind": "Volume", "name": name, "stack": volume.stack, "state": "present",
                     "specHash": volume.spec_hash, "drift": drift.get(("Volume", name), "")})  # fmt: skip
    return rows


def cmd_status(args: argparse.Namespace) -> int:
    if (code := _via_daemon("status", args)) is not None:
        return code
    from reconciler import manifests, planning

    desired = manifests.load(args.file) if args.file else None
    with engine_session(args) as target:
        actual = target.observe(images=planning.images_of(desired) if desired else [])
    return print_rows(
        status_rows(actual, desired), output=args.output, empty="No objects managed by reconciler.",
        header=("KIND", "NAME", "STACK", "STATE", "HEALTH", "EXIT", "RESTARTS", "DRIFT"),
        cells=lambda r: (r["kind"], r["name"], r["stack"] or "", r["state"], r.get("health") or "",
                         "" if r.get("exitCode") is None else str(r["exitCode"]), str(r.get("restarts", "")),
                         r["drift"] or "-"),
    )  # fmt: skip


def cmd_logs(args: argparse.Namespace) -> int:
    if (code := _via_daemon("logs", args)) is not None:
        return code
    with engine_session(args) as target:
        for line in target.logs(args.name, follow=args.follow, tail=args.tail):
            stream = sys.stderr if line.stream == "stderr" else sys.stdout
            print(line.text, file=stream, flush=True)
    return EXIT_OK


def cmd_exec(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise errors.ReconcilerError("exec needs a command: reconcile exec NAME -- CMD [ARG...]")
    try:
        with engine_session(args) as target:
            result = target.exec(args.name, argv)
    except errors.EngineError as exc:
        _err(f"error: {exc}")
        return 125
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.flush()
    return result.exit_code


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.1f}{unit}"
    return f"{value}B"


def cmd_stats(args: argparse.Namespace) -> int:
    """``reconcile stats [NAME...]``: one reading per running container (all owned ones by default)."""
    with engine_session(args) as target:
        names = list(args.names) or [n for n, c in sorted(target.observe().containers.items()) if c.state == "running"]
        rows: list[dict[str, Any]] = []
        for name in names:
            reading = target.stats(name)
            rows.append({"name": name, "cpuSeconds": round(reading.cpu_seconds, 3), "memoryBytes": reading.memory_bytes,
                         "memoryLimit": reading.memory_limit, "pids": reading.pids})  # fmt: skip
    return print_rows(
        rows, output=args.output, empty="No running containers managed by reconciler.",
        header=("NAME", "CPU TIME", "MEMORY", "LIMIT", "PIDS"),
        cells=lambda r: (r["name"], f"{r['cpuSeconds']:.2f}s", _size(r["memoryBytes"]), _size(r["memoryLimit"]),
                         str(r["pids"])),
    )  # fmt: skip


def cmd_schema(args: argparse.Namespace) -> int:
    from reconciler import manifests

    schemas = manifests.json_schemas()
    if args.out is None:
        _out(json.dumps(schemas["reconciler"], indent=2, sort_keys=True))
        return EXIT_OK
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in sorted(schemas.items()):
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _out(f"wrote {path}")
    return EXIT_OK


def cmd_hash(args: argparse.Namespace) -> int:
    """``reconcile hash -f PATH``: the spec hash of each object (debugging recreations)."""
    from reconciler import hashing, manifests

    desired = manifests.load(args.file)
    for name, container in sorted(desired.containers.items()):
        _out(f"container {name}  {hashing.container_hash(container)}")
    for name, network in sorted(desired.networks.items()):
        _out(f"network {name}  {hashing.network_hash(network)}")
    for name, volume in sorted(desired.volumes.items()):
        _out(f"volume {name}  {hashing.volume_hash(volume)}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconcile",
        description="Declarative containers: YAML manifests in, a plan with reasons, an idempotent apply.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--engine",
        default=os.environ.get("RECONCILER_ENGINE", "native"),
        choices=["native", "docker"],
        help="engine to drive (env RECONCILER_ENGINE; default native)",
    )
    parser.add_argument(
        "--root",
        default=os.environ.get("RECONCILER_ROOT", DEFAULT_ROOT),
        help=f"native engine state directory (env RECONCILER_ROOT; default {DEFAULT_ROOT})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def files(p: argparse.ArgumentParser, *, required: bool = True) -> None:
        p.add_argument("-f", "--file", action="append", required=required, metavar="PATH",
                       help="manifest file, folder or - for stdin (repeatable)")  # fmt: skip

    def output(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    def pruning(p: argparse.ArgumentParser) -> None:
        p.add_argument("--prune", action=argparse.BooleanOptionalAction, default=True,
                       help="remove objects of the applied stacks that the manifests no longer declare")  # fmt: skip
        p.add_argument("--prune-volumes", action="store_true",
                       help="also remove such volumes (their data is lost)")  # fmt: skip

    def sub(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str, example: str
    ) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help_text, description=help_text, epilog=f"example:\n  {example}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        p.set_defaults(func=handler)
        return p

    p = sub(
        "validate",
        cmd_validate,
        "check manifests; every error with file:line:col",
        "reconcile validate -f manifests/",
    )
    files(p)
    p = sub("plan", cmd_plan, "show the changes apply would make (exit 0 none, 2 some, 1 error)",
            "reconcile plan -f stack.yaml -o json")  # fmt: skip
    files(p)
    output(p)
    pruning(p)
    p = sub("apply", cmd_apply, "converge the engine to the manifests", "reconcile apply -f stack.yaml --wait")
    files(p)
    output(p)
    pruning(p)
    p.add_argument("--parallelism", type=int, default=None, help="steps run at once (default: 16 docker, 4 native)")
    p.add_argument("--wait", action="store_true", help="return when every container runs and is healthy")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits (default 120)")
    p = sub("delete", cmd_delete, "remove a stack's objects (volumes only with --prune-volumes)",
            "reconcile delete --stack shop")  # fmt: skip
    files(p, required=False)
    output(p)
    p.add_argument("--stack", action="append", help="stack name (repeatable)")
    p.add_argument("--prune-volumes", action="store_true", help="also remove the stack's volumes")
    p.add_argument("--parallelism", type=int, default=None, help="steps run at once (default as for apply)")
    p = sub("status", cmd_status, "state, health, exit code, restarts and drift of every object",
            "reconcile status -f stack.yaml -o json")  # fmt: skip
    files(p, required=False)
    output(p)
    p = sub("logs", cmd_logs, "print a container's logs", "reconcile logs web -f")
    p.add_argument("name")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", type=int, default=None)
    p = sub("stats", cmd_stats, "CPU time, memory and processes of running containers (one reading)",
            "reconcile stats web -o json")  # fmt: skip
    p.add_argument("names", nargs="*", metavar="NAME", help="containers (default: every running one)")
    output(p)
    p = sub("exec", cmd_exec, "run a command in a running container; its exit code is passed through",
            "reconcile exec web -- ls /")  # fmt: skip
    p.add_argument("name")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p = sub(
        "schema",
        cmd_schema,
        "print or write the JSON Schemas of the manifest kinds",
        "reconcile schema --out schemas/",
    )
    p.add_argument("--out", help="folder to write <kind>.schema.json files into")
    p = sub("hash", cmd_hash, "print each object's spec hash", "reconcile hash -f stack.yaml")
    files(p)
    _add_optional_commands(commands)
    return parser


def _add_optional_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Subcommands that live in their own modules (image store, controller)."""
    with contextlib.suppress(ImportError):
        from reconciler import cli_image

        cli_image.add_parser(commands)
    with contextlib.suppress(ImportError):
        from reconciler import cli_daemon

        cli_daemon.add_parser(commands)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except errors.ManifestError as exc:
        for diagnostic in exc.diagnostics:
            _err(diagnostic.render())
        _err(f"{len(exc.diagnostics)} error{'s' if len(exc.diagnostics) != 1 else ''}; nothing was changed.")
        return EXIT_ERROR
    except errors.PlanError as exc:
        _err(f"error: cannot plan: {exc}\nnothing was changed.")
        return EXIT_ERROR
    except errors.ReconcilerError as exc:
        _err(f"error: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("RECONCILER_DEBUG"):
            raise
        _err(f"internal error: {type(exc).__name__}: {exc} (set RECONCILER_DEBUG=1 for a traceback)")
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
