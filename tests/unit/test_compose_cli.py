"""Compose files wherever -f takes manifests: convert, validate, the daemon's texts, a watched folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from reconciler import manifests, sources
from reconciler.cli import entry, remote
from reconciler.controller import folder
from tests.unit.compose_helpers import write

STACK = """
services:
  web:
    image: busybox
    command: sh -c 'httpd -f -p "$${PORT}"'
    environment: {PORT: "${PORT:-80}"}
    ports: ["8080:80"]
    depends_on: [db]
  db:
    image: busybox
    build: .
"""


def test_convert_prints_the_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    compose = write(tmp_path / "shop", "compose.yaml", STACK)
    assert entry.main(["convert", "-f", str(compose), "-o", "json"]) == 0
    captured = capsys.readouterr()
    documents = json.loads(captured.out)
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("Network", "shop_default"), ("Container", "shop-web-1"), ("Container", "shop-db-1"),
    ]  # fmt: skip
    assert list(documents[1]) == ["apiVersion", "kind", "metadata", "spec"]
    assert documents[1]["spec"]["command"] == ["sh", "-c", 'httpd -f -p "${PORT}"']
    assert "warning:" in captured.err and "services.db.build" in captured.err
    assert entry.main(["convert", "-f", str(compose)]) == 0
    assert "kind: Container" in capsys.readouterr().out


def test_convert_refuses_a_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write(tmp_path, "m.yaml", "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: v}\n")
    assert entry.main(["convert", "-f", str(manifest)]) == 1
    assert "not a compose file" in capsys.readouterr().err


def test_validate_takes_compose_files_with_the_compose_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compose = write(tmp_path / "shop", "docker-compose.yml", STACK + "  debug: {image: busybox, profiles: [debug]}\n")
    assert entry.main(["validate", "-f", str(compose), "-p", "other", "--profile", "debug"]) == 0
    assert "valid: 4 objects (3 containers, 1 network, 0 volumes) in stack other" in capsys.readouterr().out


def test_validate_prints_every_error_with_its_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    compose = write(tmp_path / "bad", "compose.yaml", "services:\n  web:\n    build: .\n    tty: true\n")
    assert entry.main(["validate", "-f", str(compose)]) == 1
    err = capsys.readouterr().err
    assert f"{compose}:3:5: services.web.build:" in err and f"{compose}:4:5: services.web.tty:" in err
    assert "2 errors; nothing was changed." in err


def test_the_daemon_is_sent_the_converted_manifests(tmp_path: Path) -> None:
    compose = write(tmp_path / "shop", "compose.yaml", STACK)
    args = argparse.Namespace(project_name=None, env_file=[], profile=[])
    named = remote.NamedSources([str(compose)], args)
    ((name, text),) = named.items
    assert not sources.is_compose(name, text)  # the daemon reads plain manifests
    assert named.display[name] == str(compose)  # its errors are shown under the compose file's name
    loaded = manifests.load_sources(named.items)
    assert set(loaded.containers) == {"shop-web-1", "shop-db-1"} and loaded.stacks == {"shop"}


def test_a_watched_folder_takes_a_compose_file_and_keeps_its_last_good_version(tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    compose = write(watched, "compose.yaml", "name: shop\nservices:\n  web: {image: busybox}\n")
    write(watched, "other.yaml", "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: v, stack: other}\n")
    manifest_folder = folder.ManifestFolder(watched)
    snapshot = manifest_folder.load()
    assert set(snapshot.desired.containers) == {"shop-web-1"} and "v" in snapshot.desired.volumes
    compose.write_text("name: shop\nservices:\n  web: {image: busybox, tty: true}\n")
    snapshot = manifest_folder.load()
    assert set(snapshot.desired.containers) == {"shop-web-1"}  # the last good version stays in force
    assert any("services.web.tty" in line for line in snapshot.files[str(compose)].errors)
    assert "shop" in sources.declared_stacks(str(compose), compose.read_text())
