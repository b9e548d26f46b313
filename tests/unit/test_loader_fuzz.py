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


# Compose input: the compose loader gives ManifestError too, never a traceback (and positions
# that are inside the file it read).
compose_fields = st.sampled_from(
    ["image", "build", "command", "entrypoint", "environment", "env_file", "ports", "volumes", "networks",
     "depends_on", "healthcheck", "deploy", "restart", "labels", "logging", "extends", "profiles", "secrets",
     "configs", "tmpfs", "extra_hosts", "ulimits", "network_mode", "volumes_from", "container_name", "x-any",
     "expose", "sysctls", "dns", "user", "mem_limit", "cpus", "stop_grace_period", "pull_policy"]
)  # fmt: skip
compose_examples: list[object] = [
    "8080:80", "./d:/d:ro", "data:/data", "${X:-1}", "${X:?no}", "$$", "sh -c 'a b'", "'", "service:db", "web",
    ["web"], {"web": {"condition": "service_healthy"}}, {"test": "true"}, {"replicas": 2}, ["8000-8002:80"],
    {"service": "web"},
]  # fmt: skip
compose_values = st.one_of(yaml_values, st.sampled_from(compose_examples))


def convert_or_manifest_error(text: str, tmp: Path) -> None:
    from reconciler.compose import loader

    file = str(tmp / "compose.yaml")
    try:
        loader.convert([(file, text)])
    except errors.ManifestError as exc:
        for diagnostic in exc.diagnostics:
            assert diagnostic.line >= 1 and diagnostic.column >= 1
            assert diagnostic.file == file


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(services=st.dictionaries(st.sampled_from(["web", "db", "a_b", "X"]),
                                st.dictionaries(compose_fields, compose_values, max_size=6), max_size=3),
       top=st.dictionaries(st.sampled_from(["networks", "volumes", "secrets", "configs", "name", "x-a", "other"]),
                           yaml_values, max_size=3))  # fmt: skip
def test_random_compose_files(services: dict[str, object], top: dict[str, object], tmp_path: Path) -> None:
    import yaml

    convert_or_manifest_error(yaml.safe_dump({"services": services, **top}), tmp_path)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=300))
def test_random_compose_text(text: str, tmp_path: Path) -> None:
    convert_or_manifest_error("services:\n" + text, tmp_path)


def test_a_size_beyond_what_a_float_holds_is_an_error_not_a_traceback() -> None:
    load_or_manifest_error(
        "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: a}\nspec: {image: busybox, shmSize: "
        + "9" * 400
        + ".5m}\n"
    )
