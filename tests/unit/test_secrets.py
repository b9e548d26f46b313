"""Secrets and configs (issue 11, item 4): read from a file or a variable, never shown.

The loader reads a secret's file (relative to the manifest) or variable; the content travels in
the engine request only. Labels, plans (text and JSON) and status show its digest; a changed
content changes the spec hash, so the container that uses it is recreated. A missing file or
variable is an error at the secret's place in the manifest, naming the file, never a content.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler import cli, errors, hashing, manifests, observed, planning
from reconciler.backends.docker import secret_files as docker_secret_files
from reconciler.backends.native import bundles
from reconciler.cli import options
from tests.unit.controller_support import Harness, container_yaml
from tests.unit.helpers import IMAGE, apply, new_engine, plan_for

OLD = "s3cr3t-old-Pa55"
NEW = "s3cr3t-new-Pa55"
CONFIG = "worker_processes 1; # c0nfig-text"

STACK = f"""\
apiVersion: reconciler/v1
kind: Container
metadata: {{name: web, stack: shop}}
spec:
  image: {IMAGE}
  secrets:
    - {{name: db-password, file: db-password.txt, uid: 1000, mode: "0400"}}
    - {{name: api-key, env: SHOP_API_KEY}}
  configs:
    - {{name: nginx-conf, file: conf/nginx.conf, target: /etc/nginx/nginx.conf}}
"""


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "nginx.conf").write_text(CONFIG)
    (tmp_path / "db-password.txt").write_text(OLD)
    monkeypatch.setenv("SHOP_API_KEY", "k3y-from-env")
    manifest = tmp_path / "shop.yaml"
    manifest.write_text(STACK)
    return manifest


def load(path: Path) -> manifests.Desired:
    return manifests.load([str(path)])


def test_the_request_carries_each_content_by_its_path_in_the_container(stack: Path) -> None:
    container = load(stack).containers["web"]
    request = planning.container_request(container)
    assert request.files == {
        "/run/secrets/db-password": OLD.encode(),
        "/run/secrets/api-key": b"k3y-from-env",
        "/etc/nginx/nginx.conf": CONFIG.encode(),
    }
    secret = container.spec.secrets[0]
    assert (secret.uid, secret.gid, secret.mode) == (1000, 0, 0o400)
    assert container.spec.secrets[1].mode == 0o444  # Docker's default
    assert OLD not in repr(request) and OLD not in repr(container)


def test_a_changed_secret_recreates_the_container_and_the_plan_shows_digests_only(stack: Path) -> None:
    engine = new_engine()
    apply(engine, load(stack))
    assert plan_for(engine, load(stack)).converged
    (stack.parent / "db-password.txt").write_text(NEW)
    plan = plan_for(engine, load(stack))
    text, document = plan.render(), json.dumps(plan.to_json(), ensure_ascii=False)
    assert "recreate" in text and "contents./run/secrets/db-password" in text, text
    old_digest, new_digest = hashing.content_digest(OLD.encode()), hashing.content_digest(NEW.encode())
    assert f'"{old_digest}" → "{new_digest}"' in text
    for content in ("s3cr3t", "k3y-from-env", "c0nfig"):
        assert content not in text and content not in document
    apply(engine, load(stack))
    assert engine.containers["web"].request.files["/run/secrets/db-password"] == NEW.encode()


def test_a_changed_variable_recreates_too(stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = new_engine()
    apply(engine, load(stack))
    monkeypatch.setenv("SHOP_API_KEY", "k3y-changed")
    text = plan_for(engine, load(stack)).render()
    assert "contents./run/secrets/api-key" in text and "k3y" not in text


def test_labels_and_status_hold_no_content(
    stack: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = new_engine()
    monkeypatch.setattr(options, "open_engine", lambda chosen: shared)
    assert cli.main(["apply", "-f", str(stack)]) == 0
    labels = shared.observe(images=[IMAGE]).containers["web"].labels
    assert not any(c in value for value in labels.values() for c in ("s3cr3t", "k3y-from-env", "c0nfig"))
    recorded = json.loads(labels[observed.LABEL_SPEC])
    assert recorded["spec"]["secrets"][0] == {"name": "db-password", "file": "db-password.txt", "uid": 1000,
                                              "mode": 0o400}  # fmt: skip
    assert recorded["contents"]["/run/secrets/db-password"] == hashing.content_digest(OLD.encode())
    for arguments in (["status", "-f", str(stack)], ["status", "-f", str(stack), "-o", "json"],
                      ["plan", "-f", str(stack), "-o", "json"]):  # fmt: skip
        cli.main(arguments)
    out = capsys.readouterr()
    assert "web" in out.out
    for content in ("s3cr3t", "k3y-from-env", "c0nfig"):
        assert content not in out.out and content not in out.err


def test_a_missing_file_or_variable_is_an_error_at_its_place(stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (stack.parent / "db-password.txt").unlink()
    monkeypatch.delenv("SHOP_API_KEY")
    with pytest.raises(errors.ManifestError) as caught:
        load(stack)
    message = str(caught.value)
    assert f"{stack}:7:" in message and "spec.secrets[0].file: cannot read" in message, message
    assert str(stack.parent / "db-password.txt") in message
    assert f"{stack}:8:" in message and "spec.secrets[1].env: environment variable SHOP_API_KEY is not set" in message


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ("secrets: [{name: a, file: a, env: A}]", "exactly one of file"),
        ("secrets: [{name: a}]", "exactly one of file"),
        ("secrets: [{name: a, file: a}, {name: a, file: b}]", "secret a is listed twice"),
        ("secrets: [{name: a, file: a, target: /x}]\n  configs: [{name: b, file: b, target: /x}]", "target /x"),
        ("secrets: [{name: a, file: a, target: ../etc/passwd}]", "without '..'"),
        ('secrets: [{name: a, file: a, mode: "0999"}]', "octal file mode"),
        ("secrets: [{name: a, file: a, mode: 0o1777}]", "less than or equal to 511"),
    ],
)
def test_invalid_secrets_are_refused(entries: str, expected: str) -> None:
    text = (
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: web}}\nspec:\n  image: {IMAGE}\n  {entries}\n"
    )
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load_text(text, "web.yaml")
    assert expected in str(caught.value), str(caught.value)


def test_a_relative_target_goes_under_the_default_folder() -> None:
    spec = manifests.container_spec_from_document(
        {"image": IMAGE, "secrets": [{"name": "a", "env": "A", "target": "key.pem"}],
         "configs": [{"name": "app.ini", "env": "B"}]}
    )  # fmt: skip
    assert [item.path for item in manifests.mounted_files(spec)] == ["/run/secrets/key.pem", "/app.ini"]


def test_an_edited_secret_file_is_noticed_by_the_controllers_relist(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    (tmp_path / "db.txt").write_text(OLD)
    harness.write("shop.yaml", container_yaml("web", extra="secrets: [{name: db, file: db.txt}]\n"))
    harness.settle()
    before = harness.engine.containers["web"].container_id
    (tmp_path / "db.txt").write_text(NEW + " longer")  # no manifest event announces this
    harness.advance(20.0)
    harness.controller.run_ready()
    assert harness.engine.containers["web"].container_id != before
    assert harness.engine.containers["web"].request.files["/run/secrets/db"] == (NEW + " longer").encode()


def test_native_binds_each_file_read_only_at_its_path() -> None:
    spec = manifests.container_spec_from_document({"image": IMAGE, "mounts": [{"type": "tmpfs", "target": "/run"}]})
    environment = bundles.Environment(
        container_id="c" * 64, rootfs="/r", secret_files={"/run/secrets/db": "/state/c/files/0"}
    )
    found = bundles.user_mounts(spec, environment, kernel="6.1.0")
    assert [m["destination"] for m in found] == ["/run", "/run/secrets/db"]  # the tmpfs first, then the file on it
    assert found[1] == {"destination": "/run/secrets/db", "type": "bind", "source": "/state/c/files/0",
                        "options": ["bind", "rprivate", "ro", "nosuid", "nodev"]}  # fmt: skip


def test_docker_sees_files_gone_and_marks_the_container_for_a_recreate(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "f1").mkdir(parents=True)
    (base / "f1" / "0").write_text(OLD)
    inspected = {"Mounts": [*docker_secret_files.binds({"/run/secrets/db": str(base / "f1" / "0")}),
                            {"Type": "bind", "Source": "/etc/hosts", "Target": "/etc/hosts"}]}  # fmt: skip
    assert docker_secret_files.folders(inspected, base) == [base / "f1"]
    assert not docker_secret_files.lost(inspected, base)
    docker_secret_files.remove([base / "f1"])
    assert docker_secret_files.lost(inspected, base)
    label = json.dumps(
        {"spec": {"image": IMAGE}, "contents": {"/run/secrets/db": hashing.content_digest(OLD.encode())}}
    )
    marked = docker_secret_files.mark_lost({observed.LABEL_HASH: "v1:sha256:0", observed.LABEL_SPEC: label})
    assert marked[observed.LABEL_HASH] != "v1:sha256:0"
    assert json.loads(marked[observed.LABEL_SPEC])["contents"] == {"/run/secrets/db": docker_secret_files.LOST}
