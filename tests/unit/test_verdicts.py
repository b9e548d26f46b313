"""Remembered no-op verdicts: a converged plan is answered again only for the very same inputs
(texts, files and variables they name, the engine as observed, the planner's options, the code),
and a no-op answered that way imports neither pydantic nor YAML."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from reconciler import caches, executing, manifests, observed, operations, plan_inputs, planning, rollouts, verdicts
from reconciler.backends import memory
from reconciler.manifests import loader

IMAGE = "registry.test/web:1"


def stack_text(mode: str = "one") -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: web, stack: shop}}
        spec:
          image: {IMAGE}
          command: [sleep, "3600"]
          env: {{MODE: {mode}}}
          envFiles: [web.env]
          secrets: [{{name: token, env: VERDICT_TEST_TOKEN}}]
        """)


@dataclasses.dataclass
class Setup:
    folder: caches.CacheFolder
    target: memory.MemoryEngine
    manifest: Path
    context: verdicts.Context

    def texts(self) -> list[tuple[str, str]]:
        return [(str(self.manifest), self.manifest.read_text())]

    def plan(self) -> tuple[manifests.Desired, planning.Options, observed.Observed, planning.plans.Plan]:
        """Load, observe and plan as ``reconcile plan`` does."""
        desired = manifests.load_sources(self.texts())
        seen: list[tuple[planning.Options, observed.Observed]] = []
        plan, _ = operations.refresh_and_plan(self.target, desired, planning.Options(),
                                              on_inputs=lambda o, a: seen.append((o, a)))  # fmt: skip
        return desired, seen[0][0], seen[0][1], plan

    def remember(self) -> planning.plans.Plan:
        desired, options, actual, plan = self.plan()
        verdicts.remember(self.folder, self.texts(), self.context, desired=desired, actual=actual, options=options,
                          plan=plan)  # fmt: skip
        return plan

    def answer(self, texts: Sequence[tuple[str, str]] | None = None) -> verdicts.Answer | None:
        """What a later run asks: the question of the texts, then the engine as it is now."""
        question = verdicts.ask(self.folder, texts if texts is not None else self.texts(), self.context)
        if question is None:
            return None
        actual = self.target.observe(images=list(question.images), stacks=question.stacks)
        options = plan_inputs.for_engine(planning.Options(), self.target.name, rollouts.Records(None),
                                         question.containers)  # fmt: skip
        return verdicts.answer(self.folder, question, actual, options)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VERDICT_TEST_TOKEN", "s3cret")
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    loader.forget_parsed()
    (tmp_path / "web.env").write_text("LEVEL=info\n")
    manifest = tmp_path / "shop.yaml"
    manifest.write_text(stack_text())
    target = memory.MemoryEngine(images={IMAGE: "sha256:" + "ab" * 32})
    folder = caches.CacheFolder(tmp_path / "cache")
    result = Setup(folder, target, manifest, verdicts.Context("memory", "here", prune=True, prune_volumes=False))
    *_, plan = result.plan()
    executing.execute(plan, target, parallelism=1)
    return result


def test_a_converged_plan_is_answered_again_with_its_text_and_json(setup: Setup) -> None:
    plan = setup.remember()
    assert plan.converged
    found = setup.answer()
    assert found is not None
    assert found.text == plan.render() == "No changes: everything is as the manifests say."
    assert found.plan == json.loads(json.dumps(plan.to_json()))


def test_a_plan_with_steps_is_never_remembered(setup: Setup) -> None:
    setup.manifest.write_text(stack_text("two"))
    assert not setup.remember().converged
    assert verdicts.ask(setup.folder, setup.texts(), setup.context) is None


def test_another_text_is_another_question(setup: Setup) -> None:
    setup.remember()
    assert setup.answer([(str(setup.manifest), stack_text("two"))]) is None
    assert setup.answer([(str(setup.manifest) + ".other.yaml", stack_text())]) is None


def test_an_edited_env_file_is_a_miss(setup: Setup) -> None:
    setup.remember()
    (setup.manifest.parent / "web.env").write_text("LEVEL=debug\n")
    assert setup.answer() is None
    (setup.manifest.parent / "web.env").unlink()
    assert setup.answer() is None


def test_a_changed_secret_variable_is_a_miss(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    setup.remember()
    monkeypatch.setenv("VERDICT_TEST_TOKEN", "another")
    assert setup.answer() is None
    monkeypatch.delenv("VERDICT_TEST_TOKEN")
    assert setup.answer() is None


def test_any_change_on_the_engine_is_a_miss(setup: Setup) -> None:
    setup.remember()
    assert setup.answer() is not None
    setup.target.exit("web", 1)
    assert setup.answer() is None


def test_other_options_or_another_context_are_misses(setup: Setup) -> None:
    setup.remember()
    question = verdicts.ask(setup.folder, setup.texts(), setup.context)
    assert question is not None
    actual = setup.target.observe(images=list(question.images), stacks=question.stacks)
    pruning_volumes = plan_inputs.for_engine(planning.Options(prune_volumes=True), setup.target.name,
                                             rollouts.Records(None), question.containers)  # fmt: skip
    assert verdicts.answer(setup.folder, question, actual, pruning_volumes) is None
    rolled_back = dataclasses.replace(
        plan_inputs.for_engine(planning.Options(), setup.target.name, rollouts.Records(None), question.containers),
        rolled_back={"web": planning.RolledBack("v1:sha256:" + "0" * 64, None, 1.0, "not ready")},
    )
    assert verdicts.answer(setup.folder, question, actual, rolled_back) is None
    other = dataclasses.replace(setup.context, prune=False)
    assert verdicts.ask(setup.folder, setup.texts(), other) is None


def test_new_code_never_reads_an_old_verdict(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    setup.remember()
    monkeypatch.setattr(verdicts, "code_stamp", lambda: "another version")
    assert setup.answer() is None


def test_pull_always_images_are_never_remembered(setup: Setup) -> None:
    setup.manifest.write_text(stack_text().replace("  command:", "  pullPolicy: Always\n  command:"))
    *_, plan = setup.plan()
    executing.execute(plan, setup.target, parallelism=1)
    assert setup.remember().converged
    assert verdicts.ask(setup.folder, setup.texts(), setup.context) is None


def test_a_folder_others_can_write_is_never_read(setup: Setup) -> None:
    setup.remember()
    os.chmod(setup.folder.directory, 0o777)
    try:
        assert setup.answer() is None
    finally:
        os.chmod(setup.folder.directory, 0o700)
    assert setup.answer() is not None


def test_read_inputs_names_the_files_and_variables_a_load_read(setup: Setup) -> None:
    paths, variables = manifests.read_inputs(manifests.load_sources(setup.texts()))
    assert paths == [str(setup.manifest.parent / "web.env")]
    assert variables == ["VERDICT_TEST_TOKEN"]


def test_the_answering_path_imports_neither_pydantic_nor_yaml() -> None:
    """What a remembered no-op imports: the engine, the operations and the verdicts, without the
    models (the manifests package names them lazily)."""
    code = ("import sys, reconciler.cli.entry, reconciler.cli.remembered, reconciler.operations, reconciler.rollouts, "
            "reconciler.backends.native.engine, reconciler.backends.docker; "
            "print(sorted(m for m in ('pydantic', 'yaml', 'pyroute2', 'docker') if m in sys.modules))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


OTHER = textwrap.dedent(f"""\
    apiVersion: reconciler/v1
    kind: Network
    metadata: {{name: other-net, stack: other}}
    ---
    apiVersion: reconciler/v1
    kind: Volume
    metadata: {{name: other-data, stack: other}}
    ---
    apiVersion: reconciler/v1
    kind: Container
    metadata: {{name: o1, stack: other}}
    spec: {{image: {IMAGE}, networks: [{{name: other-net}}], mounts: [{{type: volume, source: other-data, target: /d}}]}}
    ---
    apiVersion: reconciler/v1
    kind: Container
    metadata: {{name: o2, stack: other}}
    spec: {{image: {IMAGE}, restart: always}}
    """)


def without_other_stacks(actual: observed.Observed, desired: manifests.Desired) -> observed.Observed:
    """``actual`` with only the objects of ``desired``'s stacks and of its names."""
    names = {*desired.containers, *desired.networks, *desired.volumes}

    def kept(objects: dict[str, observed.Owned]) -> dict[str, observed.Owned]:
        return {name: item for name, item in objects.items() if item.stack in desired.stacks or name in names}

    return dataclasses.replace(actual, containers=kept(dict(actual.containers)), networks=kept(dict(actual.networks)),
                               volumes=kept(dict(actual.volumes)))  # fmt: skip


def test_objects_of_other_stacks_change_no_plan(setup: Setup) -> None:
    """What verdicts rely on (planning's docstring): whatever other stacks hold, in whatever state,
    the plan of these manifests is the same, converged or not."""
    other = manifests.load_text(OTHER, "other.yaml")
    executing.execute(planning.plan(other, setup.target.observe(images=[IMAGE])), setup.target, parallelism=1)
    setup.target.exit("o2", 3)
    for mode in ("one", "two"):  # converged, then a recreate
        setup.manifest.write_text(stack_text(mode))
        desired = manifests.load_sources(setup.texts())
        actual = setup.target.observe(images=[IMAGE], stacks=desired.stacks)
        assert {"o1", "o2"} <= set(actual.containers)
        with_others = planning.plan(desired, actual)
        alone = planning.plan(desired, without_other_stacks(actual, desired))
        assert with_others.to_json() == alone.to_json() and with_others.render() == alone.render()
    setup.target.exit("web", 1)
    desired = manifests.load_sources(setup.texts())
    actual = setup.target.observe(images=[IMAGE], stacks=desired.stacks)
    assert (
        planning.plan(desired, actual).to_json()
        == planning.plan(desired, without_other_stacks(actual, desired)).to_json()
    )


def test_other_stacks_changing_is_still_answered(setup: Setup) -> None:
    setup.remember()
    other = manifests.load_text(OTHER, "other.yaml")
    executing.execute(planning.plan(other, setup.target.observe(images=[IMAGE])), setup.target, parallelism=1)
    assert setup.answer() is not None
    setup.target.exit("o2", 3)
    assert setup.answer() is not None


def test_a_current_folder_that_is_gone_asks_and_remembers_nothing(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desired, options, actual, plan = setup.plan()
    entries = sorted(setup.folder.directory.iterdir())  # the loader's parse results
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    verdicts.remember(setup.folder, setup.texts(), setup.context, desired=desired, actual=actual, options=options,
                      plan=plan)  # fmt: skip
    assert verdicts.ask(setup.folder, setup.texts(), setup.context) is None
    assert sorted(setup.folder.directory.iterdir()) == entries
