"""No input, however broken, gets a Python traceback: only ManifestError (property tests)."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import errors, manifests

EXAMPLES = sorted((Path(__file__).parents[2] / "manifests").glob("*.yaml"))
SEED_TEXT = "\n---\n".join(path.read_text() for path in EXAMPLES)


def load_or_manifest_error(text: str) -> None:
    try:
        manifests.load_text(text, "fuzz.yaml")
    except errors.ManifestError as exc:
        for diagnostic in exc.diagnostics:
            assert diagnostic.file == "fuzz.yaml"
            assert diagnostic.line >= 1 and diagnostic.column >= 1
            assert "\n" not in diagnostic.message or "Traceback" not in diagnostic.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    load_or_manifest_error(text)


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=20)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["image", "env", "ports", "mounts", "restart", "healthcheck", "resources", "dependsOn", "networks",
     "command", "stopTimeout", "user", "workingDir", "networkMode", "volumesFrom", "envFiles", "subnet"]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["Container", "Network", "Volume", "Other"]),
       spec=st.dictionaries(field_names, yaml_values, max_size=6))  # fmt: skip
def test_random_documents(kind: str, spec: dict[str, object]) -> None:
    import yaml

    document = {"apiVersion": "reconciler/v1", "kind": kind, "metadata": {"name": "fuzz"}, "spec": spec}
    load_or_manifest_error(yaml.safe_dump(document))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), edits=st.integers(1, 8))
def test_mutated_examples(seed: int, edits: int) -> None:
    rng = random.Random(seed)
    text = list(SEED_TEXT)
    alphabet = [*":-[]{}\n #'\"&*!|>%@`,", "  ", "\t", "0", "x"]
    for _ in range(edits):
        position = rng.randrange(len(text))
        match rng.randrange(3):
            case 0:
                del text[position : position + rng.randrange(1, 20)]
            case 1:
                text.insert(position, rng.choice(alphabet))
            case _:
                text[position] = rng.choice(alphabet)
    load_or_manifest_error("".join(text))
