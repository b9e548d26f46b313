"""Registry credentials come from the Docker config file, and never show up in errors.

A second Debian ``docker-registry`` on 127.0.0.1 with htpasswd (bcrypt) authentication holds the
test image; ``DOCKER_CONFIG`` points the engine at a config file with (or without) credentials.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import docker
import pytest

from reconciler import errors
from reconciler.backends import docker as docker_backend
from tests.integration.docker import stacks

pytestmark = pytest.mark.integration

USER = "robot"


@pytest.fixture(scope="module")
def password() -> str:
    return "pw-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory, password: str) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed (Debian package docker-registry)", pytrace=False)
    root = tmp_path_factory.mktemp("auth-registry")
    (root / "htpasswd").write_bytes(USER.encode() + b":" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)))
    port = stacks.free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: test, path: {root / 'htpasswd'}}}}}\n"
    )
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                break
        except urllib.error.HTTPError as exc:
            exc.close()
            break  # 401: up, and asking for credentials
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()[-1000:]}")
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def private_image(client: docker.DockerClient, image: str, auth_registry: str, password: str) -> str:
    """The test image pushed to the authenticated registry, and absent locally under that name."""
    reference = f"{auth_registry}/private/busybox:1"
    repository, tag = reference.rsplit(":", 1)
    client.api.tag(image, repository, tag)
    for progress in client.api.push(
        repository, tag=tag, stream=True, decode=True, auth_config={"username": USER, "password": password}
    ):
        if progress.get("error"):
            pytest.fail(f"push to the authenticated registry failed: {progress['error']}")
    client.api.remove_image(reference)
    return reference


def _config(folder: Path, registry: str, secret: str | None) -> Path:
    folder.mkdir()
    auths = {}
    if secret is not None:
        auths[registry] = {"auth": base64.b64encode(f"{USER}:{secret}".encode()).decode()}
    (folder / "config.json").write_text(json.dumps({"auths": auths}))
    return folder


def test_pull_uses_credentials_from_the_docker_config(
    client: docker.DockerClient,
    private_image: str,
    auth_registry: str,
    password: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(_config(tmp_path / "cfg", auth_registry, password)))
    engine = docker_backend.DockerEngine.from_env()
    try:
        image_id = engine.pull_image(private_image, policy="Always")
        assert engine.observe(images=[private_image]).images[private_image] == image_id
    finally:
        engine.close()
        client.api.remove_image(private_image)


@pytest.mark.parametrize("secret", [None, "wrong-password"])
def test_pull_without_valid_credentials_fails_without_leaking_them(
    private_image: str, auth_registry: str, password: str, secret: str | None,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("DOCKER_CONFIG", str(_config(tmp_path / "cfg", auth_registry, secret)))
    engine = docker_backend.DockerEngine.from_env()
    try:
        with pytest.raises(errors.EngineError) as caught:
            engine.pull_image(private_image, policy="Always")
    finally:
        engine.close()
    text = str(caught.value)
    assert private_image in text and "\n" not in text
    for leaked in (password, "wrong-password", base64.b64encode(f"{USER}:wrong-password".encode()).decode()):
        assert leaked not in text
