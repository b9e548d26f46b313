"""The committed JSON Schemas are current, and every example stack validates, loads and plans."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from reconciler import manifests, planning
from tests.unit.helpers import new_engine

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "manifests").glob("*.yaml"))


def test_committed_schemas_match_the_models() -> None:
    generated = manifests.json_schemas()
    committed = {
        path.name.removesuffix(".schema.json"): json.loads(path.read_text())
        for path in (ROOT / "schemas").glob("*.schema.json")
    }
    assert committed == generated, "schemas/ is stale: run `reconcile schema --out schemas/` and commit"


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_the_schema_and_loads_and_plans(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=../schemas/reconciler.schema.json")
    schema = json.loads((ROOT / "schemas" / "reconciler.schema.json").read_text())
    for document in yaml.safe_load_all(text):
        jsonschema.validate(document, schema)
    desired = manifests.load([str(path)])
    engine = new_engine()
    plan = planning.plan(desired, engine.observe(images=planning.images_of(desired)))
    assert not plan.converged


def test_schema_rejects_what_the_loader_rejects() -> None:
    schema = json.loads((ROOT / "schemas" / "container.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": "x"},
             "spec": {"image": "busybox", "workdir": "/srv"}}, schema)  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [{"restart": "always"}, {"restart": "on-failure:3"}, {"healthcheck": {"test": "curl -f http://localhost/"}},
     {"resources": {"memory": "64m"}}],
    ids=["restart-always", "restart-on-failure-n", "string-test", "lowercase-size"],
)  # fmt: skip
def test_schema_accepts_the_short_forms_the_loader_accepts(spec: dict[str, object]) -> None:
    document = {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": "x"},
                "spec": {"image": "busybox", **spec}}  # fmt: skip
    jsonschema.validate(document, json.loads((ROOT / "schemas" / "container.schema.json").read_text()))
    manifests.load_text(yaml.safe_dump(document))
