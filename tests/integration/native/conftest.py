"""Fixtures for the native engine's runtime tests: a local registry holding busybox, fresh engines.

Real parts only: Debian's docker-registry on 127.0.0.1, runc, overlayfs, conmon as each run's
keeper. Each test gets its own state root and name prefix (the root ``prefix`` fixture); at
the end every container the test created is removed through the engine (which kills, deletes
the runtime state, unmounts the rootfs), and anything left is unmounted and deleted by path.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import mounts
from tests import support
from tests.support import images, registry


@pytest.fixture(scope="session", autouse=True)
def _prerequisites() -> None:
    support.require_root()
    for binary, package in (("runc", "runc"), ("conmon", "conmon"), ("docker-registry", "docker-registry"),
                            ("skopeo", "skopeo"), ("busybox", "busybox-static")):  # fmt: skip
        support.require_binary(binary, package)


@pytest.fixture(scope="session")
def native_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registry.Registry]:
    layout = images.OciLayout(tmp_path_factory.mktemp("native-layout") / "oci")
    images.busybox_image(layout, "latest")
    started = registry.start_plain(tmp_path_factory.mktemp("native-registry"))
    try:
        started.push(layout, "latest", "native/busybox:1")
        yield started
    finally:
        started.stop()


@pytest.fixture
def image(native_registry: registry.Registry) -> str:
    return f"{native_registry.host}/native/busybox:1"


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "root"
    yield state
    # Belt and braces after the engine's own cleanup: nothing mounted may outlive the test.
    for rootfs in sorted(state.glob("containers/*/rootfs")):
        if mounts.is_mounted(rootfs):
            mounts.unmount(rootfs, detach=True)
    shutil.rmtree(state, ignore_errors=True)


# No test may query the host's nameservers: names outside a test's networks go to this loopback
# port instead, where nothing listens (the containers get SERVFAIL).
NO_UPSTREAM = "127.0.0.1:9"


@pytest.fixture
def engine(root: Path, prefix: str) -> Iterator[native_engine.NativeEngine]:
    engine = native_engine.NativeEngine(root, dns_upstream=[NO_UPSTREAM])
    yield engine
    actual = engine.observe()
    for name in sorted(actual.containers):
        if name.startswith(prefix):
            engine.remove_container(name)
    # Networks (with the implicit default one, which carries no owner labels) and volumes.
    for network in engine.networks.all():
        if network.name.startswith(prefix) or network.name == native_engine.DEFAULT_NETWORK:
            engine.remove_network(network.name)
    for name in sorted(engine.observe().volumes):
        if name.startswith(prefix):
            engine.remove_volume(name)
    engine.close()


@pytest.fixture
def loaded(root: Path, tmp_path: Path) -> Path:
    """The private ``root`` with busybox loaded as :data:`images.LOCAL_BUSYBOX` (no registry needed)."""
    layout = images.OciLayout(tmp_path / "oci")
    images.busybox_image(layout, images.LOCAL_BUSYBOX)
    native_engine.NativeEngine(root).image_store.load(layout.tarball(tmp_path / "image.tar"))
    return root
