"""A manifest of the watched folder that declares an object another stack already owns (made by
an ``apply`` of other files) is itself marked in error in status, with the clash and its position,
not only its stack; the mark goes once the clash is resolved (memory engine, fake clock)."""

from __future__ import annotations

from pathlib import Path

from reconciler import manifests, operations, planning
from reconciler.cli import status
from tests.unit.controller_support import Harness, container_yaml


def file_report(harness: Harness, name: str) -> dict[str, object]:
    files = {Path(str(f["path"])).name: f for f in harness.controller.status()["files"]}
    return files[name]


def test_a_file_declaring_an_object_another_stack_owns_is_in_error(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    theirs = manifests.load_sources([("elsewhere.yaml", container_yaml("web", stack="other"))])
    operations.apply_desired(harness.engine, theirs, planning.Options(), parallelism=1)
    harness.write("shop.yaml", container_yaml("db", stack="shop") + "---\n" + container_yaml("web", stack="shop"))
    harness.write("fine.yaml", container_yaml("cache", stack="cache"))
    harness.settle()

    shop = file_report(harness, "shop.yaml")
    assert shop["state"] == "error"
    (message,) = shop["errors"]  # type: ignore[misc]
    assert f"{tmp_path / 'shop.yaml'}:7:1" in message, message
    assert "container web is declared in stack 'shop'" in message and "belongs to stack 'other'" in message
    assert file_report(harness, "fine.yaml")["state"] == "ok"
    rows = status.daemon_rows(harness.controller.status())
    assert [row["name"] for row in rows if row["kind"] == "File"] == [str(tmp_path / "shop.yaml")]
    assert harness.engine.containers["web"].request.labels["reconciler.stack"] == "other", "theirs untouched"
    assert "db" not in harness.engine.containers, "nothing of the blocked stack was applied"

    operations.delete_stacks(harness.engine, ["other"], prune_volumes=False, parallelism=1)
    harness.advance(30)  # the next resync finds the name free
    assert file_report(harness, "shop.yaml")["state"] == "ok"
    assert harness.engine.containers["web"].request.labels["reconciler.stack"] == "shop"
