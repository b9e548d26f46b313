"""``reconcile validate``, ``hash`` and ``schema``: the manifests alone, no engine.

Where it sits: a command module of ``reconciler.cli``. ``validate`` exits 0 when every manifest is
valid and 1 otherwise (each error as ``file:line:col: field: message``, printed by the entry point;
with ``-o json``, one document either way: the objects, or the errors); ``hash`` prints each
object's spec hash (debugging recreations); ``schema`` prints or writes the JSON Schemas that
editors validate manifests with.

It must not import the models at module level (the parser is built on every start), nor an engine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reconciler import errors, vocabulary
from reconciler.cli import console, options


def add_validate(commands: options.Commands, common: list[argparse.ArgumentParser]) -> None:
    """``validate`` comes first in the help, the other two after the engine's commands."""
    p = options.add_command(
        commands,
        "validate",
        cmd_validate,
        "check manifests; every error with file:line:col",
        example="reconcile validate -f manifests/",
        parents=common,
    )
    options.add_files(p)
    options.add_output(p)


def add_parsers(commands: options.Commands, common: list[argparse.ArgumentParser]) -> None:
    p = options.add_command(
        commands,
        "schema",
        cmd_schema,
        "print or write the JSON Schemas of the manifest kinds",
        example="reconcile schema --out schemas/",
        parents=common,
    )
    p.add_argument("--out", help="folder to write <kind>.schema.json files into")
    p = options.add_command(
        commands,
        "hash",
        cmd_hash,
        "print each object's spec hash",
        example="reconcile hash -f stack.yaml",
        parents=common,
    )
    options.add_files(p)
    p = options.add_command(
        commands,
        "convert",
        cmd_convert,
        "print the manifests a compose file means (to move over for good)",
        example="reconcile convert -f compose.yaml -o json",
        parents=common,
    )
    options.add_files(p)
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")


def cmd_convert(args: argparse.Namespace) -> int:
    """``reconcile convert -f compose.yaml``: the documents, validated, defaults left out; errors
    (every one, at its place in the compose file) and warnings on stderr."""
    from reconciler import manifests, sources
    from reconciler.compose import loader

    texts = sources.read_sources(args.file)
    plain = [file for file, text in texts if not sources.is_compose(file, text)]
    if plain or not texts:
        why = f"{', '.join(plain)}: not a compose file (no top-level services:)" if plain else "no compose file given"
        raise errors.ReconcilerError(why)
    documents = loader.convert(texts, options.compose_options(args), warn=console.warn)
    console.out(json.dumps(documents, indent=2) if args.output == "json" else manifests.yaml_text(documents).rstrip())
    return console.EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:

    try:
        desired = options.load_files(args)
    except errors.ManifestError as exc:
        if args.output != "json":
            raise  # the entry point prints each as file:line:col
        problems = [diagnostic._asdict() for diagnostic in exc.diagnostics]
        console.out(json.dumps({"valid": False, "errors": problems}, indent=2))
        return console.EXIT_ERROR
    counts = {"container": len(desired.containers), "network": len(desired.networks), "volume": len(desired.volumes)}
    if args.output == "json":
        document = {"valid": True, "stacks": sorted(desired.stacks),
                    **{f"{noun}s": sorted(getattr(desired, f"{noun}s")) for noun in counts}}  # fmt: skip
        console.out(json.dumps(document, indent=2))
        return console.EXIT_OK
    parts = ", ".join(vocabulary.counted(count, noun) for noun, count in counts.items())
    stacks = ", ".join(sorted(desired.stacks)) or "-"
    label = "stack" if len(desired.stacks) == 1 else "stacks"
    console.out(f"valid: {vocabulary.counted(sum(counts.values()), 'object')} ({parts}) in {label} {stacks}")
    return console.EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from reconciler import manifests

    schemas = manifests.json_schemas()
    if args.out is None:
        console.out(json.dumps(schemas["reconciler"], indent=2, sort_keys=True))
        return console.EXIT_OK
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in sorted(schemas.items()):
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        console.out(f"wrote {path}")
    return console.EXIT_OK


def cmd_hash(args: argparse.Namespace) -> int:
    """``reconcile hash -f PATH``: the spec hash of each object (debugging recreations)."""
    from reconciler import hashing

    desired = options.load_files(args)
    for name, container in sorted(desired.containers.items()):
        console.out(f"container {name}  {hashing.container_hash(container)}")
    for name, network in sorted(desired.networks.items()):
        console.out(f"network {name}  {hashing.network_hash(network)}")
    for name, volume in sorted(desired.volumes.items()):
        console.out(f"volume {name}  {hashing.volume_hash(volume)}")
    return console.EXIT_OK
