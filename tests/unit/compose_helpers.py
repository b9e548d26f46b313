"""Helpers of the compose unit tests: write compose files into a folder, convert or load them."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler import errors
from reconciler.compose import loader


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def convert(*files: Path, warnings: list[str] | None = None, **options: Any) -> dict[str, dict[str, Any]]:
    """The converted documents by name."""
    texts = [(str(f), f.read_text()) for f in files]
    documents = loader.convert(
        texts, loader.Options(**options), warn=(warnings.append if warnings is not None else None)
    )
    return {d["metadata"]["name"]: d for d in documents}


def errors_of(*files: Path, **options: Any) -> list[str]:
    texts = [(str(f), f.read_text()) for f in files]
    with pytest.raises(errors.ManifestError) as caught:
        loader.convert(texts, loader.Options(**options))
    return [d.render() for d in caught.value.diagnostics]


def spec(documents: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    result: dict[str, Any] = documents[name].get("spec", {})
    return result
