"""``reconcile image pull|ls|rm|prune|load``: the native engine's image store on the command line.

Where it sits: a command module of ``reconciler.cli``; the entry point calls :func:`add_parser`
with its subparsers and owns the global options (``--root``: the native engine's state
directory). Each handler takes the parsed arguments and returns an exit code: 0 on success, 1 on
any error, reported as one line on stderr (never a traceback). Pull progress goes to stderr: one
redrawn bar per layer on a terminal, plain lines otherwise (CI logs, pipes).

What it must not do: reach into the store's files (it only uses ``images.ImageStore``), or print
anything a registry would consider secret (errors from the store never contain credentials).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import typing
from pathlib import Path

from reconciler import errors, files, vocabulary
from reconciler.cli import console, options

if typing.TYPE_CHECKING:
    from reconciler.backends.native import images

# The image store (and requests, under it) is imported by the commands that use it: the parser is
# built on every CLI start, ``reconcile apply`` through the daemon included.


def add_parser(commands: options.Commands, common: typing.Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register ``image`` and its sub-commands on the main parser's ``commands``; ``common``: the
    parents that give each of them the global options."""
    parser = commands.add_parser("image", help="manage the native engine's images", parents=list(common))
    verbs = parser.add_subparsers(dest="image_command", metavar="COMMAND", required=True)

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=help_text, parents=list(common))

    pull = verb("pull", "pull an image from a registry")
    pull.add_argument("reference", help="image reference, e.g. 127.0.0.1:5000/app:1 or busybox@sha256:…")
    pull.add_argument(
        "--policy", choices=vocabulary.PULL_POLICIES, default="Always", help="pull policy (default: Always)"
    )
    pull.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="allow plain HTTP for this registry (loopback registries always are); repeatable",
    )
    pull.add_argument(
        "--certs-dir", type=Path, default=Path("/etc/docker/certs.d"), help="per-registry CA dirs (<dir>/<host>/*.crt)"
    )
    pull.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    pull.set_defaults(func=cmd_pull)

    ls = verb("ls", "list images, one row each")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only image ids (12 characters, as the table)")
    options.add_output(ls)
    ls.set_defaults(func=cmd_ls)

    rm = verb("rm", "remove image references (the content goes with the next prune)")
    rm.add_argument("references", nargs="+", metavar="REF", help="image reference or id")
    rm.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="untag even an image a container uses (its content stays while the container does)",
    )
    rm.set_defaults(func=cmd_rm)

    prune = verb("prune", "delete images, blobs and snapshots that no image name and no container uses")
    prune.set_defaults(func=cmd_prune)

    load = verb("load", "load an OCI-layout or docker-archive tarball")
    load.add_argument("file", type=Path, help="the tarball (docker save / skopeo copy oci-archive:)")
    load.set_defaults(func=cmd_load)


def _store(args: argparse.Namespace) -> images.ImageStore:
    from reconciler.backends.native import images, registry

    config = registry.RegistryConfig(
        insecure=frozenset(getattr(args, "insecure_registry", []) or []),
        certs_dir=getattr(args, "certs_dir", None) or Path("/etc/docker/certs.d"),
    )
    return images.ImageStore(Path(args.root), registry_config=config)


def _fail(message: str) -> int:
    console.err(f"error: {message}")
    return console.EXIT_ERROR


def _guarded(handler: typing.Callable[[argparse.Namespace], int]) -> typing.Callable[[argparse.Namespace], int]:
    """Turn every expected failure into one line on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except errors.ReconcilerError as exc:
            return _fail(str(exc))
        except PermissionError as exc:
            return _fail(f"permission denied: {exc.filename or exc} (the image store is root-only)")
        except OSError as exc:
            return _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        except KeyboardInterrupt:
            return _fail("interrupted (run the same command again to resume)")

    run.__doc__ = handler.__doc__
    return run


class Progress:
    """Per-layer pull progress on stderr: redrawn bars on a terminal, plain lines otherwise."""

    WIDTH = 30

    def __init__(self, stream: typing.TextIO, *, tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self.lock = threading.Lock()
        self.rows: dict[str, images.PullProgress] = {}
        self.drawn = 0
        self.reported: set[tuple[str, str]] = set()

    def __call__(self, event: images.PullProgress) -> None:
        with self.lock:
            if self.tty:
                self.rows[event.layer] = event
                self._redraw()
            else:
                self._line(event)

    def _line(self, event: images.PullProgress) -> None:
        # Plain mode: one line per state change (bytes flowing is not a state change).
        key = (event.layer, event.status)
        if key in self.reported:
            return
        self.reported.add(key)
        short = event.layer.removeprefix("sha256:")[:12]
        extra = f" (resuming at {console.size(event.resumed_from)})" if event.resumed_from else ""
        size = f" {console.size(event.total)}" if event.status in ("waiting", "exists") else ""
        self.stream.write(f"{short}: {event.status}{size}{extra}\n")
        self.stream.flush()

    def _redraw(self) -> None:
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F")
        rows = sorted(self.rows.values(), key=lambda e: e.index)
        for event in rows:
            short = event.layer.removeprefix("sha256:")[:12]
            fraction = event.current / event.total if event.total else 1.0
            if event.status in ("done", "exists", "downloaded", "extracting"):
                fraction = 1.0
            filled = int(self.WIDTH * min(fraction, 1.0))
            bar = "=" * filled + (">" if filled < self.WIDTH else "") + " " * max(self.WIDTH - filled - 1, 0)
            amount = (
                f"{console.size(event.current)}/{console.size(event.total)}" if event.status == "downloading" else ""
            )
            self.stream.write(f"\x1b[2K{short}: {event.status:<11} [{bar}] {amount}\n")
        self.drawn = len(rows)
        self.stream.flush()


@_guarded
def cmd_pull(args: argparse.Namespace) -> int:
    """Pull ``args.reference``; prints the image id and the references it now has."""
    store = _store(args)
    progress = None if args.quiet else Progress(sys.stderr, tty=sys.stderr.isatty())
    image = store.pull(args.reference, policy=args.policy, progress=progress)
    if args.quiet:
        console.out(image.id)
    else:
        count = len(image.layers)
        layers = f"{count} layer{'' if count == 1 else 's'}"
        console.out(f"pulled {args.reference}: {image.id} ({layers}, {console.size(image.size)})")
    return console.EXIT_OK


@_guarded
def cmd_ls(args: argparse.Namespace) -> int:
    """List images, one row per image: its tags (its digest names when it has no tag, ``<none>``
    when dangling), the same 12-character id ``-q`` prints; ``-o json``: every name and full ids."""
    found = _store(args).list()
    if args.quiet:
        for image in found:
            console.out(image.short_id)
        return console.EXIT_OK
    rows = [
        {"id": image.id, "shortId": image.short_id, "digest": image.digest, "references": list(image.references),
         "layers": len(image.layers), "size": image.size}
        for image in found
    ]  # fmt: skip
    return console.print_rows(
        rows, output=args.output, empty="No images.", header=("REFERENCE", "IMAGE ID", "LAYERS", "SIZE"),
        cells=lambda row: (_names(row["references"]), row["shortId"], str(row["layers"]), console.size(row["size"])),
    )  # fmt: skip


def _names(references: typing.Sequence[str]) -> str:
    """An image's names for the table: a pull by tag also records the digest it resolved to
    (``repo@sha256:…``); that second name is the same image, so it shows only when there is no tag."""
    tags = [name for name in references if "@" not in name]
    return ", ".join(tags or references) or "<none>"


def _containers_still(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """The native engine's lock: no container is created or removed while the store decides which
    images are in use (a container's record is written after its rootfs is mounted)."""
    from reconciler.backends.native import engine

    return files.file_lock(engine.NativeEngine(Path(args.root)).lock_path)


@_guarded
def cmd_rm(args: argparse.Namespace) -> int:
    """Remove references; the content is freed by ``image prune``. An image a container uses
    keeps its last tag unless ``--force`` (Docker's conflict), and its content in any case."""
    store = _store(args)
    status = console.EXIT_OK
    with _containers_still(args):
        for ref in args.references:
            try:
                for name in store.remove(ref, force=args.force):
                    console.out(f"untagged: {name}")
            except (errors.NotFound, errors.Conflict) as exc:
                status = _fail(str(exc))
    return status


@_guarded
def cmd_prune(args: argparse.Namespace) -> int:
    """Delete what no image and no container uses; prints the space reclaimed."""
    store = _store(args)
    with _containers_still(args):
        freed = store.prune()
    console.out(f"Total reclaimed space: {console.size(freed)}")
    return console.EXIT_OK


@_guarded
def cmd_load(args: argparse.Namespace) -> int:
    """Load a tarball; prints each image loaded."""
    store = _store(args)
    progress = Progress(sys.stderr, tty=sys.stderr.isatty())
    for image in store.load(args.file, progress=progress):
        names = ", ".join(image.references) or "<none> (the archive names no image)"
        console.out(f"loaded {image.id}: {names}")
    return console.EXIT_OK
