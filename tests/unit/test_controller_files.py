"""The watched folder: last-good isolation, pruning of deleted files, editor artefacts, edits."""

from __future__ import annotations

from pathlib import Path

from reconciler import controller, errors, sources
from tests.unit.controller_support import Harness, container_yaml


def test_dropping_a_file_creates_and_deleting_it_prunes_its_stack(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    path = harness.write("shop.yaml", container_yaml("web") + "---\n" + container_yaml("db"))
    harness.settle()
    assert {n: c.state for n, c in harness.engine.containers.items()} == {"web": "running", "db": "running"}
    path.unlink()
    harness.settle()
    assert harness.engine.containers == {}


def test_editing_one_file_replaces_only_that_container(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("shop.yaml", container_yaml("web") + "---\n" + container_yaml("db"))
    harness.write("blog.yaml", container_yaml("blog"))
    harness.settle()
    ids = {name: c.container_id for name, c in harness.engine.containers.items()}
    before = len(harness.engine.mutating_calls())

    harness.write("shop.yaml", container_yaml("web", extra="env: {MODE: new}\n") + "---\n" + container_yaml("db"))
    harness.settle()

    after = {name: c.container_id for name, c in harness.engine.containers.items()}
    assert after["web"] != ids["web"]
    assert after["db"] == ids["db"] and after["blog"] == ids["blog"]
    touched = {name.removesuffix(".next") for _, name in harness.engine.mutating_calls()[before:]}
    assert touched == {"web"}


def test_editor_artefacts_and_dotfiles_are_not_manifests(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    for name in (".shop.yaml.swp", "shop.yaml~", "shop.yaml.swx", "4913", "shop.yaml.bak", "x.yaml.tmp",
                 "#shop.yaml#", ".hidden.yaml", "notes.txt"):  # fmt: skip
        harness.write(name, container_yaml("ghost"))
    harness.settle()
    assert harness.engine.containers == {}
    assert not sources.is_manifest_name("shop.yaml~")
    assert sources.is_manifest_name("shop.yml")


def test_invalid_yaml_over_a_good_file_keeps_the_last_good_version_in_force(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("shop.yaml", container_yaml("web"))
    harness.write("blog.yaml", container_yaml("blog"))
    harness.settle()
    web_id = harness.engine.containers["web"].container_id
    before = len(harness.engine.mutating_calls())

    harness.write("shop.yaml", "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: web\nspec: [\n")
    harness.write("blog.yaml", container_yaml("blog", extra="env: {A: b}\n"))  # other files still apply
    harness.settle()
    harness.advance(60)  # resyncs and re-lists change nothing either

    assert harness.engine.containers["web"].container_id == web_id
    assert all(name.removesuffix(".next") == "blog" for _, name in harness.engine.mutating_calls()[before:])
    files = {Path(f["path"]).name: f for f in harness.controller.status()["files"]}
    assert files["shop.yaml"]["state"] == "error" and files["shop.yaml"]["usingLastGood"] is True
    error = files["shop.yaml"]["errors"][0]
    assert error.startswith(f"{tmp_path / 'shop.yaml'}:4:5: YAML syntax error"), error  # file:line:col
    assert harness.events("manifest-error")

    harness.write("shop.yaml", container_yaml("web", extra="env: {FIXED: '1'}\n"))
    harness.settle()
    assert harness.engine.containers["web"].container_id != web_id
    files = {Path(f["path"]).name: f for f in harness.controller.status()["files"]}
    assert files["shop.yaml"]["state"] == "ok"


def test_a_validation_error_keeps_the_last_good_version_too(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("shop.yaml", container_yaml("web"))
    harness.settle()
    harness.write("shop.yaml", container_yaml("web", extra="restart: {policy: sometimes}\n"))
    harness.settle()
    assert harness.engine.containers["web"].state == "running"
    report = harness.controller.status()["files"][0]
    assert "spec.restart.policy" in report["errors"][0]


def test_a_file_that_never_parsed_freezes_its_stack_instead_of_pruning_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    folder = tmp_path / "manifests"
    folder.mkdir()
    first = Harness(folder, state_dir=state)
    first.write("shop.yaml", container_yaml("web"))
    first.settle()
    # The controller is down; the file is broken meanwhile; the persisted last good version is
    # lost too (the worst case): a new controller must not delete stack "shop".
    first.write("shop.yaml", "kind: Container\nmetadata: {name: web\n")
    for record in (state / "last-good").iterdir():
        record.unlink()
    second = Harness(folder, state_dir=state, target=first.engine)
    second.settle()
    second.advance(60)
    assert first.engine.containers["web"].state == "running"
    assert second.controller.status()["stacks"]["shop"]["frozen"] is True


def test_a_restarted_controller_keeps_the_persisted_last_good_version(tmp_path: Path) -> None:
    state = tmp_path / "state"
    folder = tmp_path / "manifests"
    folder.mkdir()
    first = Harness(folder, state_dir=state)
    first.write("shop.yaml", container_yaml("web"))
    first.settle()
    first.write("shop.yaml", "kind: [\n")
    first.settle()
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in (state / "last-good").iterdir())
    second = Harness(folder, state_dir=state, target=first.engine)
    second.settle()
    assert first.engine.containers["web"].state == "running"
    assert second.controller.status()["files"][0]["usingLastGood"] is True


def test_a_file_deleted_while_the_controller_was_down_still_prunes_its_stack(tmp_path: Path) -> None:
    state = tmp_path / "state"
    folder = tmp_path / "manifests"
    folder.mkdir()
    first = Harness(folder, state_dir=state)
    path = first.write("shop.yaml", container_yaml("web"))
    first.settle()
    path.unlink()
    second = Harness(folder, state_dir=state, target=first.engine)
    second.settle()
    assert first.engine.containers == {}


def test_objects_of_stacks_outside_the_folder_are_never_touched(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "m")
    (tmp_path / "m").mkdir()
    other = Harness(tmp_path / "other", target=harness.engine)
    (tmp_path / "other").mkdir()
    other.write("elsewhere.yaml", container_yaml("keep"))
    other.settle()
    harness.write("shop.yaml", container_yaml("web"))
    harness.settle()
    harness.advance(60)
    assert set(harness.engine.containers) == {"keep", "web"}


def test_the_periodic_relist_notices_a_change_without_any_file_event(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.controller.enqueue(controller.SCAN_KEY)
    harness.controller.run_ready()
    harness.write("shop.yaml", container_yaml("web"))  # no file_changed() call: the event was missed
    harness.advance(19.0)
    assert harness.engine.containers == {}
    harness.advance(1.0)
    harness.controller.run_ready()
    assert harness.engine.containers["web"].state == "running"


def test_a_failed_step_is_retried_with_the_per_key_backoff_and_the_error_shown_meanwhile(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.engine.fail("create_container", "web", errors.Unavailable("engine busy"))
    harness.engine.fail("create_container", "web", errors.Unavailable("engine busy"))
    harness.write("shop.yaml", container_yaml("web"))
    harness.settle()
    assert "web" not in harness.engine.containers
    status = harness.controller.status()
    assert "engine busy" in status["stacks"]["shop"]["error"]
    assert "engine busy" in str(harness.row("web")["lastError"])
    harness.advance(0.005)  # the first retry (5 ms) fails too
    assert "web" not in harness.engine.containers
    harness.advance(0.0099)
    assert "web" not in harness.engine.containers, "the second retry waits 10 ms"
    harness.advance(0.0001)
    assert harness.engine.containers["web"].state == "running"
    assert harness.controller.status()["stacks"]["shop"]["error"] is None
    assert harness.row("web")["lastError"] is None


def test_an_edited_env_file_is_noticed_by_the_relist(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    (tmp_path / "web.env").write_text("MODE=one\n")
    harness.write("shop.yaml", container_yaml("web", extra="envFiles: [web.env]\n"))
    harness.settle()
    before = harness.engine.containers["web"].container_id
    (tmp_path / "web.env").write_text("MODE=two, longer\n")  # no manifest event announces this
    harness.advance(20.0)
    harness.controller.run_ready()
    assert harness.engine.containers["web"].container_id != before
    assert harness.engine.containers["web"].request.env["MODE"] == "two, longer"


def _clash_reports(harness: Harness) -> dict[str, dict[str, object]]:
    return {Path(f["path"]).name: f for f in harness.controller.status()["files"]}


def test_a_new_file_declaring_an_object_another_file_holds_is_the_one_in_error(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("shop.yaml", container_yaml("shop-web"))
    harness.settle()
    web_id = harness.engine.containers["shop-web"].container_id
    before = len(harness.engine.mutating_calls())

    # "other.yaml" sorts before "shop.yaml": the newcomer is blamed all the same.
    harness.write("other.yaml", container_yaml("shop-web", stack="other") + "---\n" + container_yaml("other-db"))
    harness.settle()
    harness.advance(60)

    files = _clash_reports(harness)
    assert files["shop.yaml"]["state"] == "ok"
    assert files["other.yaml"]["state"] == "error"
    (error,) = files["other.yaml"]["errors"]
    assert isinstance(error, str) and error.startswith(f"{tmp_path / 'other.yaml'}:3:"), error  # file:line:col
    assert f"duplicate Container 'shop-web' (first declared at {tmp_path / 'shop.yaml'}:3:" in error
    assert harness.row("shop-web")["stack"] == "shop"
    assert harness.engine.containers["shop-web"].container_id == web_id
    assert harness.engine.mutating_calls()[before:] == []  # nothing recreated, other.yaml not applied


def test_after_a_restart_the_persisted_last_good_versions_decide_who_was_first(tmp_path: Path) -> None:
    state = tmp_path / "state"
    folder = tmp_path / "manifests"
    folder.mkdir()
    first = Harness(folder, state_dir=state)
    first.write("web.yaml", container_yaml("shop-web", stack="other"))
    first.settle()
    web_id = first.engine.containers["shop-web"].container_id
    before = len(first.engine.mutating_calls())

    # While the controller is down, "shop.yaml" (sorting first) claims the object for stack shop.
    first.write("shop.yaml", container_yaml("shop-web"))
    second = Harness(folder, state_dir=state, target=first.engine)
    second.settle()
    second.advance(60)

    files = _clash_reports(second)
    assert files["web.yaml"]["state"] == "ok"
    assert files["shop.yaml"]["state"] == "error"
    assert f"first declared at {folder / 'web.yaml'}:" in str(files["shop.yaml"]["errors"])
    assert second.row("shop-web")["stack"] == "other"
    assert first.engine.containers["shop-web"].container_id == web_id
    assert first.engine.mutating_calls()[before:] == []


def test_an_edit_that_claims_an_object_of_another_file_is_the_edit_in_error(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("shop.yaml", container_yaml("shop-web"))
    harness.write("other.yaml", container_yaml("other-db", stack="other"))
    harness.settle()
    before = len(harness.engine.mutating_calls())

    harness.write(
        "other.yaml", container_yaml("other-db", stack="other") + "---\n" + container_yaml("shop-web", stack="other")
    )
    harness.settle()

    files = _clash_reports(harness)
    assert files["shop.yaml"]["state"] == "ok"
    assert files["other.yaml"]["state"] == "error" and files["other.yaml"]["usingLastGood"] is True
    assert harness.row("shop-web")["stack"] == "shop"
    assert harness.engine.mutating_calls()[before:] == []
