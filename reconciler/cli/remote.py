"""The command line's side of a running daemon: find it, send it manifests, read its errors.

Where it sits: under the command modules of ``reconciler.cli`` that a daemon can serve
(``plan``, ``apply``, ``status``, ``logs``, ``events``); over :mod:`reconciler.client` and
:mod:`reconciler.sources`. A command asks :func:`daemon_client` first: ``None`` means "no daemon
answers for this engine", and the command runs embedded.

It must stay light (standard library, the client, the sources' reader): a command served by the
daemon starts through it, without the models, the planner or an engine's client. It must not print.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NoReturn

from reconciler import client, errors, sources
from reconciler.cli import options


def daemon_client(chosen: options.GlobalOptions) -> client.Client | None:
    """A client of the running daemon when it answers and drives the engine this CLI would.

    A daemon of another root on the socket (``--socket`` pointing at it) is an error, not a
    fallback: the user named that socket, and running embedded instead would hide the mistake.
    Every request names this CLI's root and engine, so the daemon refuses it too (409)."""
    if not chosen.uses_daemon:
        return None
    daemon = client.Client(chosen.socket, root=chosen.target_root, engine=chosen.engine)
    answer = daemon.ping()
    if answer is None or answer.get("engine") != chosen.engine:
        return None
    served = answer.get("root")
    if isinstance(served, str) and served != chosen.target_root:
        why = client.target_mismatch((served, chosen.engine), (chosen.target_root, chosen.engine))
        raise errors.ReconcilerError(f"the daemon on {chosen.socket}: {why}")
    return daemon


class NamedSources:
    """The manifest texts as the daemon gets them: with absolute paths, so that it resolves env
    files as this CLI would; the daemon validates them, and its diagnostics are shown under the
    names the user typed (``display``), exactly as an embedded run prints them."""

    def __init__(self, paths: list[str], args: argparse.Namespace | None = None) -> None:
        self.paths = list(paths)  # as typed: "no manifests found in …" names them so
        self.items: list[tuple[str, str]] = []
        self.display: dict[str, str] = {}
        texts = sources.read_sources(paths)
        compose = [(name, text) for name, text in texts if sources.is_compose(name, text)]
        for name, text in texts if not compose else self._converted(texts, compose, args):
            absolute = name if name.startswith("<") else str(Path(name).resolve())
            self.items.append((absolute, text))
            self.display.setdefault(absolute, name)

    def _converted(
        self, texts: list[tuple[str, str]], compose: list[tuple[str, str]], args: argparse.Namespace | None
    ) -> list[tuple[str, str]]:
        """Compose files are converted here, where ``-p``, ``--env-file`` and ``--profile`` and the
        ``.env`` files are (their errors at their place in the compose file), and sent as the
        manifests they mean: JSON documents, which are YAML, with absolute paths."""
        from reconciler.cli import console
        from reconciler.compose import loader

        chosen = options.compose_options(args) if args is not None else loader.Options()
        documents = loader.convert(compose, chosen, warn=console.warn)
        first = compose[0][0]
        name = f"{first}.converted.yaml" if not first.startswith("<") else "<stdin>.converted"
        absolute = name if name.startswith("<") else str(Path(name).resolve())
        self.display[absolute] = first
        converted = "\n---\n".join(json.dumps(document) for document in documents)
        return [*(item for item in texts if item not in compose), (name, converted)]


def raise_api_error(exc: client.ApiError, named: NamedSources | None = None) -> NoReturn:
    """The daemon's error as the exception the embedded path would have raised (same messages)."""
    if exc.body.get("kind") == "manifest" and isinstance(exc.body.get("items"), list):
        display = named.display if named else {}
        diagnostics = [
            errors.Diagnostic(display.get(str(d["file"]), str(d["file"])), int(d["line"]), int(d["column"]),
                              str(d["field"]), str(d["message"]))
            for d in exc.body["items"]
        ]  # fmt: skip
        raise errors.ManifestError(diagnostics) from exc
    if exc.body.get("kind") == "no-manifests":
        raise errors.NoManifests(named.paths if named else []) from exc
    if exc.body.get("kind") == "plan":
        raise errors.PlanError(str(exc.body.get("error", ""))) from exc
    if exc.body.get("kind") == "not-found":
        raise errors.NotFound(str(exc.body.get("error", ""))) from exc
    raise errors.ReconcilerError(str(exc)) from exc
