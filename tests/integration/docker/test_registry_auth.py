"""Registry credentials come from the Docker config file, and never show up in errors.

A second Debian ``docker-registry`` on 127.0.0.1 with htpasswd (bcrypt) authentication
(``tests.support.registry.start_basic``) holds the test image; ``DOCKER_CONFIG`` points the
engine at a config file with (or without) credentials.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from reconciler import errors
from reconciler.backends import docker as docker_backend
from tests.support import registry as registries

pytestmark = pytest.mark.integration

USER = registries.USERNAME


@pytest.fixture(scope="module")
def password() -> str:
    return registries.PASSWORD


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with registries.start_basic(tmp_path_factory.mktemp("auth-registry")) as started:
        yield started.host


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
