"""A compose project applied by an earlier version, whose volumes were named ``<project>-<name>``
(compose, and now the loader, write ``<project>_<name>``): applying the same file again must not
silently give its containers an empty volume. The plan is refused with a reason naming both
volumes and what to do, nothing is deleted (not even with ``--prune-volumes``), and each way out
the reason gives works. The memory engine stands in for an engine here; the native engine runs
the same story in ``tests/integration/compose/test_native.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import errors, manifests, operations, planning
from reconciler.backends import memory
from reconciler.compose import loader, translating
from tests.unit.compose_helpers import convert, write
from tests.unit.helpers import IMAGE, new_engine

COMPOSE = """
services:
  db:
    image: IMAGE
    volumes: ["data:/var/lib/data", "cache:/cache"]
volumes:
  data: {}
  cache: {}
"""


def _earlier(documents: dict[str, dict[str, Any]]) -> str:
    """The manifests an earlier version made of the same file: every volume ``<stack>-<key>``."""
    renamed = {"app_data": "app-data", "app_cache": "app-cache"}
    text = yaml.safe_dump_all(list(documents.values()))
    for new, old in renamed.items():
        text = text.replace(new, old)
    return text


def _state(engine: memory.MemoryEngine) -> tuple[set[str], dict[str, tuple[str, ...]]]:
    seen = engine.observe()
    return set(seen.volumes), {name: tuple(c.volumes) for name, c in seen.containers.items()}


def _apply(engine: memory.MemoryEngine, desired: manifests.Desired, **options: Any) -> operations.Applied:
    return operations.apply_desired(engine, desired, planning.Options(**options), parallelism=2)


@pytest.fixture
def earlier(tmp_path: Path) -> tuple[memory.MemoryEngine, Path]:
    """An engine holding the project as an earlier version applied it, and the compose file."""
    path = write(tmp_path / "app", "compose.yaml", COMPOSE.replace("IMAGE", IMAGE))
    engine = new_engine()
    applied = _apply(engine, manifests.load_text(_earlier(convert(path)), "earlier.yaml"))
    assert applied.outcome.ok
    assert _state(engine)[0] == {"app-data", "app-cache"}
    return engine, path


def test_former_names_are_the_stack_and_the_key_as_dns_labels() -> None:
    assert translating.former_volume_names("app", "app_data") == {"app-data": "data"}
    assert translating.former_volume_names("my-shop", "My_Shop_db_data") == {"my-shop-db-data": "db_data"}
    assert translating.former_volume_names("app", "other_data") == {}
    assert translating.former_volume_names("app", "appdata") == {}


@pytest.mark.parametrize("prune_volumes", [False, True])
def test_the_plan_names_both_volumes_and_nothing_is_changed(
    earlier: tuple[memory.MemoryEngine, Path], prune_volumes: bool
) -> None:
    engine, path = earlier
    before = _state(engine)
    desired = loader.load_sources([(str(path), path.read_text())])
    with pytest.raises(errors.PlanError) as refused:
        _apply(engine, desired, prune_volumes=prune_volumes)
    lines = str(refused.value).splitlines()
    assert len(lines) == 2, lines  # one line per volume, each naming both names and what to do
    for new, old, key in (("app_cache", "app-cache", "cache"), ("app_data", "app-data", "data")):
        (line,) = [line for line in lines if line.startswith(f"volume {new} ")]
        assert f"would be created empty, but stack 'app' keeps its data in volume {old}" in line
        assert f"volumes: {{{key}: {{name: {old}}}}}" in line and f"remove volume {old} first" in line
        assert f"{path}:" in line  # where the volume is declared
    assert [file for file, _ in refused.value.blame] == [str(path), str(path)]
    assert _state(engine) == before  # nothing created, recreated or deleted


def test_naming_the_old_volume_keeps_its_data_in_use(earlier: tuple[memory.MemoryEngine, Path]) -> None:
    engine, path = earlier
    before = _state(engine)
    text = (
        path.read_text()
        .replace("  data: {}", "  data: {name: app-data}")
        .replace("  cache: {}", "  cache: {name: app-cache}")
    )
    path.write_text(text)
    desired = loader.load_sources([(str(path), path.read_text())])
    applied = _apply(engine, desired, prune_volumes=True)
    assert applied.outcome.ok
    assert _state(engine) == before
    assert not [change for change in applied.plan.changes if change.kind == "Volume"]


def test_once_the_old_volume_is_removed_the_compose_name_is_created(earlier: tuple[memory.MemoryEngine, Path]) -> None:
    engine, path = earlier
    removed = operations.delete_stacks(engine, ["app"], prune_volumes=True, parallelism=2)
    assert removed.outcome.ok and not _state(engine)[0]
    applied = _apply(engine, loader.load_sources([(str(path), path.read_text())]))
    assert applied.outcome.ok
    volumes, containers = _state(engine)
    assert volumes == {"app_data", "app_cache"}
    assert set(containers["app-db-1"]) == {"app_data", "app_cache"}


def test_a_new_project_is_not_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "app", "compose.yaml", COMPOSE.replace("IMAGE", IMAGE))
    engine = new_engine()
    assert _apply(engine, loader.load_sources([(str(path), path.read_text())])).outcome.ok
    assert _state(engine)[0] == {"app_data", "app_cache"}
