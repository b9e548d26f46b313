"""The JSON schema of the manifests, exported from the models for editors (``reconcile schema``).

Sits above :mod:`.models`, beside the loader: the committed files under ``schemas/`` are this
module's output and a test keeps them equal to it, so a change of the models shows there. The
descriptions come from the models' docstrings and field descriptions. This module must not
write files (the CLI does).
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
from pydantic import Field

from reconciler.manifests import models


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema per kind plus a combined one, as committed under ``schemas/``."""
    result: dict[str, dict[str, Any]] = {}
    for kind, model in models.DOCUMENT_MODELS.items():
        schema = model.model_json_schema(by_alias=True, mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = kind
        result[kind.lower()] = schema
    combined = pydantic.TypeAdapter(Annotated[models.Document, Field(discriminator="kind")]).json_schema(
        by_alias=True, mode="validation"
    )
    combined["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    combined["title"] = "reconciler manifest"
    result["reconciler"] = combined
    return result
