"""Pulling from live registries: the three auth set-ups, platforms, compressions, policies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.backends.native import images as native_images
from tests.support import images, registry

pytestmark = pytest.mark.integration
StoreFactory = Callable[..., native_images.ImageStore]


@pytest.mark.parametrize("kind", ["plain", "tls-basic", "token"])
def test_pull_from_each_registry_setup(
    kind: str, registries: dict[str, registry.Registry], store_for: StoreFactory, layout: images.OciLayout
) -> None:
    reg = registries[kind]
    store = store_for(reg)
    image = store.pull(reg.ref("test/busybox:latest"), policy="Always")
    expected = json.loads(layout.blob_path(image.id).read_bytes())
    assert image.id == store.get(reg.ref("test/busybox:latest")).id  # type: ignore[union-attr]
    assert [layer.diff_id for layer in image.layers] == expected["rootfs"]["diff_ids"]
    assert image.config.cmd == ("sh",)
    assert image.config.working_dir == "/root"
    assert image.config.user == "0:0"
    assert "GREETING=hello" in image.config.env
    assert image.config.exposed_ports == ("8080/tcp",)
    assert image.config.volumes == ("/data",)
    assert image.config.labels == {"org.example.test": "busybox"}
    assert image.config.stop_signal == "SIGQUIT"
    assert f"{reg.host}/test/busybox:latest" in image.references
    lowers = store.snapshots.lowers(image.layers[-1].chain_id)
    assert (lowers[0] / "bin" / "busybox").is_file()
    if kind == "token":
        assert reg.token_server is not None
        assert ("repository:test/busybox:pull", registry.USERNAME) in reg.token_server.requests


def test_tls_registry_without_its_ca_is_refused(
    registries: dict[str, registry.Registry], store_for: StoreFactory
) -> None:
    reg = registries["tls-basic"]
    store = store_for(reg)
    store.registry_config = type(store.registry_config)(docker_config=store.registry_config.docker_config, retries=0)
    with pytest.raises(errors.EngineError, match="TLS"):
        store.pull(reg.ref("test/busybox:latest"))
    assert store.list() == []


@pytest.mark.parametrize("kind", ["tls-basic", "token"])
def test_auth_without_credentials_is_refused(
    kind: str, registries: dict[str, registry.Registry], store_for: StoreFactory
) -> None:
    reg = registries[kind]
    store = store_for(reg, with_credentials=False)
    if kind == "token":
        # Anonymous tokens only carry "pull" for repositories the server allows; ours does, so
        # test a wrong password instead, which the token service refuses.
        from reconciler.backends.native import registry as native_registry

        store.registry_config = native_registry.RegistryConfig(
            credentials={reg.host: native_registry.Credentials(registry.USERNAME, "wrong")},
            docker_config=store.registry_config.docker_config,
        )
    with pytest.raises(errors.EngineError, match="unauthorized") as caught:
        store.pull(reg.ref("test/busybox:latest"))
    assert "wrong" not in str(caught.value) and registry.PASSWORD not in str(caught.value)


def test_multi_arch_selects_linux_amd64(registries: dict[str, registry.Registry], store_for: StoreFactory) -> None:
    reg = registries["plain"]
    store = store_for(reg)
    image = store.pull(reg.ref("test/busybox:multi"))
    assert image.config.architecture == "amd64"
    top = store.snapshots.lowers(image.layers[-1].chain_id)[0]
    assert (top / "bin" / "busybox").is_file()
    assert not (top / "arch.txt").exists()


@pytest.mark.parametrize("tag", ["zstd", "plain", "v2s2"])
def test_compressions_and_docker_schema2(
    tag: str, registries: dict[str, registry.Registry], store_for: StoreFactory
) -> None:
    reg = registries["plain"]
    store = store_for(reg)
    image = store.pull(reg.ref(f"test/busybox:{tag}"))
    assert (store.snapshots.lowers(image.layers[-1].chain_id)[0] / "bin" / "busybox").is_file()
    if tag == "v2s2":
        assert image.layers[0].media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"


def test_if_not_present_with_digest_never_touches_the_network(
    fresh_registry: registry.Registry, layout: images.OciLayout, store_for: StoreFactory
) -> None:
    fresh_registry.push(layout, "latest", "test/busybox:latest")
    store = store_for(fresh_registry)
    first = store.pull(fresh_registry.ref("test/busybox:latest"))
    pinned = f"{fresh_registry.host}/test/busybox@{first.digest}"
    fresh_registry.stop()
    again = store.pull(pinned, policy="IfNotPresent")
    assert again.id == first.id
    assert store.pull(pinned, policy="Always").id == first.id  # a digest cannot move
    assert store.pull(fresh_registry.ref("test/busybox:latest"), policy="IfNotPresent").id == first.id
    with pytest.raises(errors.Unavailable):
        store.pull(fresh_registry.ref("test/busybox:latest"), policy="Always")
    with pytest.raises(errors.NotFound):
        store.pull(fresh_registry.ref("test/busybox:other"), policy="Never")


def test_always_follows_a_moved_tag(
    fresh_registry: registry.Registry, layout: images.OciLayout, store_for: StoreFactory
) -> None:
    fresh_registry.push(layout, "latest", "test/app:1")
    store = store_for(fresh_registry)
    first = store.pull(fresh_registry.ref("test/app:1"), policy="Always")
    assert store.pull(fresh_registry.ref("test/app:1"), policy="Always").id == first.id
    fresh_registry.push(layout, "whiteout", "test/app:1")
    moved = store.pull(fresh_registry.ref("test/app:1"), policy="Always")
    assert moved.id != first.id
    assert store.get(first.id) is not None  # still there, but dangling
    assert store.get(first.id).references == ()  # type: ignore[union-attr]


def test_unknown_tag_is_not_found(registries: dict[str, registry.Registry], store_for: StoreFactory) -> None:
    reg = registries["plain"]
    store = store_for(reg)
    with pytest.raises(errors.NotFound, match="MANIFEST_UNKNOWN"):
        store.pull(reg.ref("test/busybox:nope"))


def test_layers_shared_between_images_are_unpacked_once(
    registries: dict[str, registry.Registry], store_for: StoreFactory
) -> None:
    reg = registries["plain"]
    store = store_for(reg)
    events: list[native_images.PullProgress] = []
    store.pull(reg.ref("test/busybox:latest"))
    store.pull(reg.ref("test/busybox:whiteout"), progress=events.append)
    assert [e.index for e in events if e.status == "exists"] == [0]
    assert len(store.snapshots.list()) == 3


def test_credentials_from_the_docker_config_file(
    registries: dict[str, registry.Registry], store_for: StoreFactory, tmp_path: Path
) -> None:
    import base64

    from reconciler.backends.native import registry as native_registry

    reg = registries["tls-basic"]
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    config.write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
    store = store_for(reg, with_credentials=False)
    store.registry_config = native_registry.RegistryConfig(certs_dir=reg.cert_dir or Path("/x"), docker_config=config)
    assert store.pull(reg.ref("test/busybox:latest")).config.cmd == ("sh",)


def test_token_registry_allows_anonymous_pull(
    registries: dict[str, registry.Registry], store_for: StoreFactory
) -> None:
    reg = registries["token"]
    store = store_for(reg, with_credentials=False)
    store.pull(reg.ref("test/busybox:multi"))
    assert reg.token_server is not None
    assert ("repository:test/busybox:pull", "") in reg.token_server.requests
