"""The spec hash: stable under noise, sensitive to meaning (including referenced files)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from reconciler import hashing, manifests

BASE = """\
apiVersion: reconciler/v1
kind: Container
metadata: {name: web, stack: shop}
spec:
  image: busybox
  env: {A: "1", B: "2"}
  command: [sleep, "10"]
"""


def container_hash(text: str) -> str:
    return hashing.container_hash(manifests.load_text(textwrap.dedent(text)).containers["web"])


def test_versioned_format() -> None:
    assert container_hash(BASE).startswith("v1:sha256:") and len(container_hash(BASE)) == len("v1:sha256:") + 64


def test_key_order_changes_nothing() -> None:
    reordered = BASE.replace('env: {A: "1", B: "2"}', 'env: {B: "2", A: "1"}')
    moved = BASE.replace('  env: {A: "1", B: "2"}\n', "").replace("spec:\n", 'spec:\n  env: {B: "2", A: "1"}\n')
    assert container_hash(reordered) == container_hash(BASE) == container_hash(moved)


def test_an_optional_field_at_its_default_changes_nothing() -> None:
    explicit = BASE + "  pullPolicy: IfNotPresent\n  readOnlyRootfs: false\n  stopTimeout: 10s\n  capAdd: []\n"
    assert container_hash(explicit) == container_hash(BASE)


def test_equivalent_spellings_hash_the_same() -> None:
    assert container_hash(BASE + "  stopTimeout: 1m\n") == container_hash(BASE + "  stopTimeout: 60s\n")
    assert container_hash(BASE.replace('env: {A: "1", B: "2"}', "env: [A=1, B=2]")) == container_hash(BASE)


def test_ordering_and_in_place_fields_are_excluded() -> None:
    two = (
        BASE
        + "---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {name: db, stack: shop}\nspec: {image: busybox}\n"
    )
    assert container_hash(two + "") == container_hash(two.replace("  command:", "  dependsOn: [db]\n  command:"))
    assert container_hash(BASE + "  resources: {memory: 64Mi}\n") == container_hash(BASE)


def test_meaningful_changes_change_the_hash() -> None:
    assert container_hash(BASE.replace('A: "1"', 'A: "9"')) != container_hash(BASE)
    assert container_hash(BASE.replace("busybox", "busybox:1.36")) != container_hash(BASE)
    assert container_hash(BASE.replace("stack: shop}", "stack: shop, labels: {x: y}}")) != container_hash(BASE)


def test_an_edit_inside_an_env_file_changes_the_hash(tmp_path: Path) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(BASE + "  envFiles: [web.env]\n")
    env_file = tmp_path / "web.env"
    env_file.write_text("TOKEN=one\n")
    before = hashing.container_hash(manifests.load([str(manifest)]).containers["web"])
    env_file.write_text("TOKEN=two\n")
    after = hashing.container_hash(manifests.load([str(manifest)]).containers["web"])
    assert before != after


def test_network_and_volume_hashes() -> None:
    desired = manifests.load_text(
        "apiVersion: reconciler/v1\nkind: Network\nmetadata: {name: n}\nspec: {subnet: 10.231.9.0/24}\n---\n"
        "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: v}\n"
    )
    network_hash = hashing.network_hash(desired.networks["n"])
    assert network_hash.startswith("v1:sha256:")
    assert hashing.volume_hash(desired.volumes["v"]) != network_hash
