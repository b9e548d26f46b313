"""Env values are secrets: no plan, label or error shows one (issue 10, finding 10).

A changed value shows in a plan as the start of its SHA-256 (old → new), so a change is still
visible; the ``reconciler.spec`` label keeps a digest per key instead of the value; errors about
env entries or env files name the file, the line and the key, never the content. Containers that
carry the older label (values in clear) are not recreated by an upgrade.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from reconciler import cli, errors, hashing, manifests, observed, planning
from reconciler.backends import memory
from reconciler.cli import options
from tests.unit.helpers import IMAGE, apply, load, new_engine, plan_for

OLD_SECRET = "hunter2-old-Pa55"
NEW_SECRET = "hunter2-new-Pa55"

STACK = f"""\
apiVersion: reconciler/v1
kind: Container
metadata: {{name: web, stack: shop}}
spec:
  image: {IMAGE}
  env: {{DB_PASSWORD: {OLD_SECRET}, MODE: plain}}
"""


def short(value: str) -> str:
    return f"(sha256:{hashlib.sha256(value.encode()).hexdigest()[:8]}…)"


def test_a_changed_env_value_shows_as_hashes_in_plan_text_and_json() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    plan = plan_for(engine, load(STACK.replace(OLD_SECRET, NEW_SECRET).replace("MODE: plain", "EXTRA: s3cr3t-added")))
    text, document = plan.render(), json.dumps(plan.to_json(), ensure_ascii=False)
    assert f"~ env.DB_PASSWORD: {short(OLD_SECRET)} → {short(NEW_SECRET)}" in text
    assert f"+ env.EXTRA: {short('s3cr3t-added')}" in text and f"- env.MODE: {short('plain')}" in text
    assert "recreate, spec changed: env.DB_PASSWORD, env.EXTRA, env.MODE" in text
    diff = plan.to_json()["changes"][0]["diff"]
    assert {"path": "env.DB_PASSWORD", "old": short(OLD_SECRET), "new": short(NEW_SECRET)} in diff
    for secret in ("hunter2", "s3cr3t", '"plain"'):
        assert secret not in text and secret not in document


def test_plan_json_through_the_cli_shows_no_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = new_engine()
    monkeypatch.setattr(options, "open_engine", lambda chosen: shared)
    stack = tmp_path / "shop.yaml"
    stack.write_text(STACK)
    assert cli.main(["apply", "-f", str(stack)]) == 0
    stack.write_text(STACK.replace(OLD_SECRET, NEW_SECRET))
    capsys.readouterr()
    assert cli.main(["plan", "-f", str(stack), "-o", "json"]) == 2
    assert cli.main(["plan", "-f", str(stack)]) == 2
    out = capsys.readouterr().out
    assert "env.DB_PASSWORD" in out and short(NEW_SECRET) in out and "hunter2" not in out


def test_the_spec_label_of_a_created_container_holds_no_env_value() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    labels = engine.observe(images=[IMAGE]).containers["web"].labels
    assert not any("hunter2" in value or "plain" in value for value in labels.values())
    recorded = json.loads(labels[observed.LABEL_SPEC])
    assert set(recorded["spec"]["env"]) == {"DB_PASSWORD", "MODE"}
    # The recreate hash is the one computed before the label changed format: nothing is recreated.
    assert labels[observed.LABEL_HASH] == hashing.container_hash(load(STACK).containers["web"])


def test_a_container_with_the_older_label_is_kept_and_its_diff_is_hashed() -> None:
    """Labels written before this change carry the values in clear: such a container is not
    recreated by the upgrade, and a later change still names the key without showing a value."""
    engine = new_engine()
    engine.pull_image(IMAGE)
    container = load(STACK).containers["web"]
    request = planning.container_request(container)
    old_label = hashing.canonical_json(hashing.container_document(container))  # the older format
    engine.create_container(
        type(request)(name="web", spec=request.spec, env=request.env,
                      labels={**request.labels, observed.LABEL_SPEC: old_label})
    )  # fmt: skip
    engine.start_container("web")
    assert plan_for(engine, load(STACK)).converged
    changed = plan_for(engine, load(STACK.replace(OLD_SECRET, NEW_SECRET))).render()
    assert f"~ env.DB_PASSWORD: {short(OLD_SECRET)} → {short(NEW_SECRET)}" in changed
    assert "hunter2" not in changed


def test_an_env_file_error_names_file_and_line_not_the_content(tmp_path: Path) -> None:
    (tmp_path / "web.env").write_text("GOOD=1\n# a comment\nhunter2-no-equals-sign\n=s3cr3t-no-key\n")
    manifest = tmp_path / "web.yaml"
    manifest.write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: web}}\n"
        f"spec: {{image: {IMAGE}, envFiles: [web.env]}}\n"
    )
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load([str(manifest)])
    message = str(caught.value)
    assert f"{tmp_path / 'web.env'}:3:" in message and "KEY=VALUE" in message
    assert "hunter2" not in message and "s3cr3t" not in message


@pytest.mark.parametrize(
    "env",
    [
        "[hunter2-forgot-the-key]",
        '["=hunter2-empty-key"]',
        "{DB_PASSWORD: [hunter2-in-a-list]}",
        "{DB_PASSWORD: {nested: hunter2-in-a-map}}",
        '{"BAD KEY": hunter2-bad-key}',
        '["BAD KEY=hunter2-bad-key"]',
    ],
)
def test_a_validation_error_on_an_env_entry_shows_no_value(env: str) -> None:
    text = (
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: web}}\nspec: {{image: {IMAGE}, env: {env}}}\n"
    )
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load_text(text, "web.yaml")
    message = str(caught.value)
    assert message.startswith("web.yaml:4:") and "spec.env" in message, message
    assert "hunter2" not in message, message


def test_memory_engine_keeps_requests_as_given() -> None:
    """The engine itself must run the container with the real values (only outputs hide them)."""
    engine = new_engine()
    apply(engine, load(STACK))
    container = engine.containers["web"]
    assert isinstance(engine, memory.MemoryEngine) and container.request.env["DB_PASSWORD"] == OLD_SECRET
