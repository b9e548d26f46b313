"""Secrets and configs on the native engine (issue 11, item 4), through the ``reconcile`` command.

A secret from a file and one from a variable, and a config at its own target: the app reads them
with the owner and mode asked, nobody (root included) can write them, their content is nowhere
under the state root but in the root-only record (not in the rootfs's upper dir, the bundle, a
label), a changed secret recreates the container, a lost tmpfs (a host reboot) is made again at
start, and removal leaves no tmpfs mounted.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import mounts, records, secret_files
from tests.support import images
from tests.support.cli import reconcile

IMAGE = images.LOCAL_BUSYBOX


def _manifest(prefix: str) -> str:
    sleeper = f"image: '{IMAGE}', command: [sleep, '3600'], stopTimeout: 1s"
    files = (
        "secrets: [{name: db-password, file: db.txt, uid: 1000, gid: 1000, mode: '0400'},"
        " {name: api-key, env: SECRETS_TEST_API_KEY}],"
        " configs: [{name: app-conf, file: app.conf, target: /etc/app/app.conf, gid: 1000, mode: '0440'}]"
    )
    return (
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}app, stack: {prefix}s}}\n"
        f"spec: {{{sleeper}, user: '1000:1000', readOnlyRootfs: true, {files}}}\n---\n"
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}root, stack: {prefix}s}}\n"
        f"spec: {{{sleeper}, secrets: [{{name: db-password, file: db.txt}}]}}\n"
    )


def _holders(root: Path, value: bytes) -> list[str]:
    """Files under ``root`` holding ``value``, tmpfs folders excluded (they are in memory)."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not (d == secret_files.FOLDER and mounts.is_mounted(Path(folder, d)))]
        for name in names:
            path = Path(folder, name)
            if path.is_symlink() or not path.is_file():
                continue
            try:
                if value in path.read_bytes():
                    found.append(str(path.relative_to(root)))
            except OSError:
                continue
    return found


def _tmpfs_mounts(root: Path) -> list[str]:
    return [p for p in mounts.mount_points() if p.startswith(str(root)) and p.endswith(f"/{secret_files.FOLDER}")]


def _run(engine: native_engine.NativeEngine, name: str, script: str) -> tuple[int, str]:
    done = engine.exec(name, ["sh", "-c", script], timeout=20)
    return done.exit_code, (done.stdout + done.stderr).decode(errors="replace")


@pytest.mark.integration
def test_secrets_are_read_only_files_with_their_owner_and_mode_and_nowhere_on_disk(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password, api_key, conf = (f"{what}-{secrets.token_hex(8)}" for what in ("pw", "key", "conf"))
    (tmp_path / "db.txt").write_text(password)
    (tmp_path / "app.conf").write_text(conf)
    monkeypatch.setenv("SECRETS_TEST_API_KEY", api_key)
    manifest = tmp_path / "stack.yaml"
    manifest.write_text(_manifest(prefix))
    app, as_root = f"{prefix}app", f"{prefix}root"
    try:
        done = reconcile(loaded, "apply", "-f", str(manifest))
        assert done.returncode == 0, done.stdout + done.stderr
        assert password not in done.stdout + done.stderr

        code, out = _run(engine, app, "cat /run/secrets/db-password /run/secrets/api-key /etc/app/app.conf")
        assert (code, out) == (0, password + api_key + conf), out
        code, out = _run(engine, app, "stat -c '%u:%g %a' /run/secrets/db-password /run/secrets/api-key "
                                      "/etc/app/app.conf; id -u")  # fmt: skip
        assert out.split() == ["1000:1000", "400", "0:0", "444", "0:1000", "440", "1000"], out
        code, out = _run(engine, as_root, "echo changed > /run/secrets/db-password")
        assert code != 0 and "Read-only file system" in out, out
        assert _run(engine, as_root, "rm /run/secrets/db-password 2>/dev/null || cat /run/secrets/db-password") == (
            0,
            password,
        )

        record = engine.records.get(app)
        assert (record.directory / records.RECORD).stat().st_mode & 0o777 == 0o600
        assert record.directory.stat().st_mode & 0o777 == 0o700
        for value in (password.encode(), api_key.encode(), conf.encode()):
            assert _holders(loaded, value) == [], value
        labels = engine.observe().containers[app].labels
        assert password not in json.dumps(labels) and api_key not in json.dumps(labels)
        status = reconcile(loaded, "status", "-f", str(manifest), "-o", "json")
        assert password not in status.stdout + status.stderr

        # A host reboot loses the tmpfs: the next start makes it again from the record.
        engine.stop_container(app, timeout=1)
        secret_files.unmount(record.directory)
        engine.start_container(app)
        assert _run(engine, app, "cat /run/secrets/db-password") == (0, password)

        # A changed secret recreates the containers that use it; the old ones' tmpfs are gone.
        before = {name: c.container_id for name, c in engine.observe().containers.items()}
        (tmp_path / "db.txt").write_text(password + "-new")
        done = reconcile(loaded, "apply", "-f", str(manifest))
        assert done.returncode == 0 and password not in done.stdout + done.stderr, done.stdout + done.stderr
        after = {name: c.container_id for name, c in engine.observe().containers.items()}
        assert after[app] != before[app] and after[as_root] != before[as_root]
        assert _run(engine, as_root, "cat /run/secrets/db-password") == (0, password + "-new")
        assert len(_tmpfs_mounts(loaded)) == 2, _tmpfs_mounts(loaded)

        deleted = reconcile(loaded, "delete", "--stack", f"{prefix}s")
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        assert _tmpfs_mounts(loaded) == []
    finally:
        for point in _tmpfs_mounts(loaded):  # the engine fixture removes the containers first
            mounts.unmount(point, detach=True)
