"""The example stack, end to end on the embedded default engine, through the command line.

Mirrors the docker backend's scenario: apply → the service answers; apply again → nothing to do;
an env change recreates exactly one container and the volume keeps its data; a memory change is
applied in place; removing a container from the manifests removes it and keeps the volume;
``--prune-volumes`` removes the volume.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from reconciler import cli
from reconciler.backends.native import engine as native_engine
from tests.support.polling import eventually

ROOT = Path(__file__).parents[3]


def stack_text(prefix: str, port: int, *, level: str = "info", memory: str = "64Mi", with_api: bool = True) -> str:
    text = (ROOT / "manifests" / "shop.yaml").read_text()
    text = text.replace("shop-", f"{prefix}").replace("stack: shop", f"stack: {prefix}stack")
    text = text.replace("10.231.5.", "10.231.81.").replace("18080", str(port))
    text = text.replace("LOG_LEVEL: info", f"LOG_LEVEL: {level}").replace("memory: 64Mi", f"memory: {memory}")
    if not with_api:
        documents = text.split("\n---\n")
        text = "\n---\n".join(d for d in documents if f"name: {prefix}api" not in d)
        text = text.replace(f"  dependsOn: [{prefix}api]\n", "")
    return text


def get(url: str) -> bytes:
    """The body at ``url``, once the server answers."""

    def fetch() -> bytes:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bytes(response.read())

    return eventually(fetch, what=f"an answer from {url}")


@pytest.mark.integration
def test_example_stack_on_the_native_engine(loaded: Path, engine: native_engine.NativeEngine, prefix: str,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    port = 21000 + int(prefix[1:5], 16) % 20000
    manifest = tmp_path / "stack.yaml"
    base = ["--engine", "native", "--root", str(loaded)]
    manifest.write_text(stack_text(prefix, port))
    assert cli.main([*base, "apply", "-f", str(manifest)]) == 0
    assert get(f"http://127.0.0.1:{port}/") == b"hello from the shop\n"
    first = engine.observe().containers
    assert {c.state for c in first.values()} == {"running"}

    capsys.readouterr()
    assert cli.main([*base, "plan", "-f", str(manifest)]) == 0
    assert "No changes" in capsys.readouterr().out

    manifest.write_text(stack_text(prefix, port, level="debug"))
    assert cli.main([*base, "apply", "-f", str(manifest)]) == 0
    second = engine.observe().containers
    changed = {name for name in first if first[name].container_id != second[name].container_id}
    assert changed == {f"{prefix}api"}
    assert engine.exec(f"{prefix}db", ["cat", "/data/state"]).stdout == b"ready\n"

    manifest.write_text(stack_text(prefix, port, level="debug", memory="128Mi"))
    assert cli.main([*base, "apply", "-f", str(manifest)]) == 0
    third = engine.observe().containers
    assert third[f"{prefix}db"].container_id == second[f"{prefix}db"].container_id
    assert third[f"{prefix}db"].resources.memory == 128 * 2**20

    manifest.write_text(stack_text(prefix, port, level="debug", memory="128Mi", with_api=False))
    assert cli.main([*base, "apply", "-f", str(manifest)]) == 0
    assert set(engine.observe().containers) == {f"{prefix}db", f"{prefix}web"}

    assert cli.main([*base, "delete", "--stack", f"{prefix}stack"]) == 0
    after = engine.observe()
    assert not after.containers and not after.networks
    assert set(after.volumes) == {f"{prefix}data"}
    assert cli.main([*base, "delete", "--stack", f"{prefix}stack", "--prune-volumes"]) == 0
    assert not engine.observe().volumes


def catalog_text(prefix: str, port: int) -> str:
    text = (ROOT / "manifests" / "catalog.yaml").read_text()
    text = text.replace("shop-net", f"{prefix}net").replace("stack: catalog", f"stack: {prefix}catalog")
    return text.replace("name: catalog,", f"name: {prefix}catalog,").replace("18081-18083", f"{port}-{port + 2}")


@pytest.mark.integration
def test_the_catalog_example_joins_the_shop(loaded: Path, engine: native_engine.NativeEngine, prefix: str,
                                            tmp_path: Path) -> None:  # fmt: skip
    """``manifests/catalog.yaml``: replicas, a secret and another stack's (external) network."""
    port = 21000 + int(prefix[1:5], 16) % 20000
    base = ["--engine", "native", "--root", str(loaded)]
    (tmp_path / "shop.yaml").write_text(stack_text(prefix, port))
    (tmp_path / "catalog.yaml").write_text(catalog_text(prefix, port + 1))
    (tmp_path / "catalog-token.txt").write_text((ROOT / "manifests" / "catalog-token.txt").read_text())
    assert cli.main([*base, "apply", "-f", str(tmp_path / "shop.yaml")]) == 0
    assert cli.main([*base, "apply", "-f", str(tmp_path / "catalog.yaml")]) == 0
    actual = engine.observe().containers
    assert all(actual[f"{prefix}catalog-{i}"].state == "running" for i in (1, 2, 3))
    # Each replica answers on its own port of the range (the page names its host: the short id).
    pages = {get(f"http://127.0.0.1:{port + offset}/") for offset in (1, 2, 3)}
    assert len(pages) == 3 and all(page.startswith(b"catalog ") for page in pages), pages
    answer = engine.exec(f"{prefix}web", ["wget", "-qO-", f"http://{prefix}catalog:8080/"], timeout=20)
    assert answer.stdout in pages, answer
    assert cli.main([*base, "delete", "--stack", f"{prefix}catalog"]) == 0
    assert f"{prefix}net" in engine.observe().networks, "the shop's network stays"
