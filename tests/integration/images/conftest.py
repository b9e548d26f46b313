"""Fixtures for the image-store integration tests: built images, three live registries, stores.

The registries (plain HTTP, TLS + htpasswd, token auth) are started once per session on free
127.0.0.1 ports and stopped by pid at the end; tests that damage a registry (tampering) get a
fresh one of their own. Every test gets its own store directory, and every overlay mount a
test makes through ``mounted`` is unmounted afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.backends.native import images as native_images
from reconciler.backends.native import mounts
from reconciler.backends.native import registry as native_registry
from tests import support
from tests.support import images, registry

TAGS = ("latest", "whiteout", "multi")


@pytest.fixture(scope="session", autouse=True)
def _prerequisites() -> None:
    support.require_root()
    for binary, package in (("docker-registry", "docker-registry"), ("skopeo", "skopeo"), ("openssl", "openssl"),
                            ("busybox", "busybox-static")):  # fmt: skip
        support.require_binary(binary, package)


@pytest.fixture(scope="session")
def layout(tmp_path_factory: pytest.TempPathFactory) -> images.OciLayout:
    oci = images.OciLayout(tmp_path_factory.mktemp("layout") / "oci")
    images.busybox_image(oci, "latest")
    images.busybox_image(oci, "zstd", compression="zstd")
    images.busybox_image(oci, "plain", compression="none")
    # Our applier copies up hardlink targets from lower layers, so our image has one.
    images.whiteout_image(oci, "whiteout", cross_layer_hardlink=True)
    images.multiarch_image(oci, "multi")
    return oci


@pytest.fixture(scope="session")
def registries(
    tmp_path_factory: pytest.TempPathFactory, layout: images.OciLayout
) -> Iterator[dict[str, registry.Registry]]:
    base = tmp_path_factory.mktemp("registries")
    started: dict[str, registry.Registry] = {}
    try:
        started["plain"] = registry.start_plain(base / "plain")
        started["tls-basic"] = registry.start_tls_basic(base / "tls")
        started["token"] = registry.start_token(base / "token")
        for reg in started.values():
            for tag in TAGS:
                reg.push(layout, tag, f"test/busybox:{tag}")
        plain = started["plain"]
        plain.push(layout, "zstd", "test/busybox:zstd")
        plain.push(layout, "plain", "test/busybox:plain")
        plain.push(layout, "latest", "test/busybox:v2s2", fmt="v2s2")
        yield started
    finally:
        for reg in started.values():
            reg.stop()


def registry_config(reg: registry.Registry, *, with_credentials: bool = True) -> native_registry.RegistryConfig:
    credentials = {}
    if with_credentials and reg.username and reg.password:
        credentials[reg.host] = native_registry.Credentials(reg.username, reg.password)
    return native_registry.RegistryConfig(
        certs_dir=reg.cert_dir or Path("/nonexistent-certs.d"),
        credentials=credentials,
        # Nothing from the host's ~/.docker may leak into a test.
        docker_config=Path("/nonexistent/config.json"),
        retries=1,
        backoff=0.01,
    )


@pytest.fixture
def store_for(tmp_path: Path) -> Callable[..., native_images.ImageStore]:
    def make(reg: registry.Registry | None = None, *, name: str = "store", **kwargs: bool) -> native_images.ImageStore:
        config = registry_config(reg, **kwargs) if reg is not None else None
        return native_images.ImageStore(tmp_path / name, registry_config=config)

    return make


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[registry.Registry]:
    reg = registry.start_plain(tmp_path / "fresh-registry")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def mounted() -> Iterator[Callable[[mounts.Mount], Path]]:
    """Mount a ``Mount`` for the test; everything mounted is unmounted (by path) afterwards."""
    done: list[str] = []

    def mount(m: mounts.Mount) -> Path:
        mounts.mount(m)
        done.append(m.target)
        return Path(m.target)

    yield mount
    for target in reversed(done):
        mounts.unmount(target)
