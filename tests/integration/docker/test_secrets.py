"""Secrets and configs on the docker engine (issue 11, item 4): the manifests of the native test.

dockerd without swarm has no secrets: each file is bound read-only from a root-only tmpfs of the
host. The app reads them with the owner and mode asked, nobody can write them, their content is
neither in the container's layer nor in what ``docker inspect`` shows, a changed secret
recreates, files lost with a reboot make the next apply recreate, and removal removes them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import docker
import pytest

from reconciler import manifests, operations, planning
from reconciler.backends import docker as docker_backend
from reconciler.backends.docker import secret_files


def _manifest(prefix: str, image: str) -> str:
    sleeper = f"image: '{image}', command: [sleep, '3600'], stopTimeout: 1s"
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


def _run(engine: docker_backend.DockerEngine, name: str, script: str) -> tuple[int, str]:
    done = engine.exec(name, ["sh", "-c", script], timeout=20)
    return done.exit_code, (done.stdout + done.stderr).decode(errors="replace")


def _folders(client: docker.DockerClient, name: str) -> list[Path]:
    return secret_files.folders(client.api.inspect_container(name))


def _apply(engine: docker_backend.DockerEngine, manifest: Path) -> None:
    applied = operations.apply_desired(engine, manifests.load([str(manifest)]), planning.Options(), parallelism=2)
    assert applied.outcome.ok, applied.outcome.summary()


def _holders(top: Path, value: bytes) -> list[str]:
    found = []
    for folder, _dirs, names in os.walk(top):
        for name in names:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink() and value in path.read_bytes():
                found.append(str(path))
    return found


def test_secrets_are_read_only_binds_from_a_root_only_tmpfs(
    engine: docker_backend.DockerEngine,
    client: docker.DockerClient,
    image: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password, api_key, conf = (f"{what}-{secrets.token_hex(8)}" for what in ("pw", "key", "conf"))
    (tmp_path / "db.txt").write_text(password)
    (tmp_path / "app.conf").write_text(conf)
    monkeypatch.setenv("SECRETS_TEST_API_KEY", api_key)
    manifest = tmp_path / "stack.yaml"
    manifest.write_text(_manifest(prefix, image))
    app, as_root = f"{prefix}app", f"{prefix}root"
    try:
        _apply(engine, manifest)

        assert _run(engine, app, "cat /run/secrets/db-password /run/secrets/api-key /etc/app/app.conf") == (
            0,
            password + api_key + conf,
        )
        code, out = _run(engine, app, "stat -c '%u:%g %a' /run/secrets/db-password /run/secrets/api-key "
                                      "/etc/app/app.conf; id -u")  # fmt: skip
        assert out.split() == ["1000:1000", "400", "0:0", "444", "0:1000", "440", "1000"], out
        code, out = _run(engine, as_root, "echo changed > /run/secrets/db-password")
        assert code != 0 and "Read-only file system" in out, out

        # The files: on our own tmpfs, in a root-only folder per container; nowhere else.
        assert os.path.ismount(secret_files.BASE)
        with open("/proc/self/mounts", encoding="utf-8") as table:
            assert any(line.split()[1:3] == [str(secret_files.BASE), "tmpfs"] for line in table)
        [folder] = _folders(client, app)
        assert folder.stat().st_mode & 0o777 == 0o700 and secret_files.BASE.stat().st_mode & 0o777 == 0o700
        inspected = client.api.inspect_container(app)
        assert password not in json.dumps(inspected) and api_key not in json.dumps(inspected)
        upper = inspected["GraphDriver"]["Data"].get("UpperDir")
        assert upper, inspected["GraphDriver"]
        assert _holders(Path(upper), password.encode()) == [] and _holders(Path(upper), conf.encode()) == []

        # A changed secret recreates both containers; the old folders go with the old containers.
        old = {name: _folders(client, name) for name in (app, as_root)}
        (tmp_path / "db.txt").write_text(password + "-new")
        _apply(engine, manifest)
        assert _run(engine, as_root, "cat /run/secrets/db-password") == (0, password + "-new")
        assert not any(f.exists() for folders in old.values() for f in folders)

        # A reboot empties the tmpfs: the next apply sees it and recreates the container.
        engine.stop_container(app, timeout=1)
        for folder in _folders(client, app):
            shutil.rmtree(folder)
        plan = operations.plan_desired(engine, manifests.load([str(manifest)]), planning.Options())[0]
        assert f'contents./run/secrets/db-password: "{secret_files.LOST}" → "sha256:' in plan.render(), plan.render()
        assert password not in plan.render()
        _apply(engine, manifest)
        assert _run(engine, app, "cat /run/secrets/db-password") == (0, password + "-new")

        remaining = [f for name in (app, as_root) for f in _folders(client, name)]
        operations.delete_stacks(engine, [f"{prefix}s"], prune_volumes=False, parallelism=2)
        assert remaining and not any(f.exists() for f in remaining)
    finally:  # the prefix fixture removes the containers by name, not through the engine
        for listed in client.api.containers(all=True, filters={"name": prefix}):
            secret_files.remove(secret_files.folders(client.api.inspect_container(listed["Id"])))
