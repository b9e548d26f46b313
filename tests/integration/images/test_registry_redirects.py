"""Registry credentials go to the registry and to the token realm it names, never to a host a redirect chose.

Three real HTTP servers on different loopback addresses: the registry (Basic auth) on 127.0.0.1
redirects a layer blob to a storage host on 127.0.0.2; when the storage host answers 401 with a
Bearer challenge whose realm is a third server on 127.0.0.3, the pull must fail with a clear error
and the third server must receive nothing (issue 10, finding 5).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.backends.native import images as native_images
from reconciler.backends.native import registry as native_registry
from tests.support import images
from tests.support.fake_registry import Answer, FakeRegistry, Seen

USER, SECRET = "puller", "s3cret-registry-password"
BASIC = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()


@pytest.fixture
def layout(tmp_path: Path) -> images.OciLayout:
    layout = images.OciLayout(tmp_path / "oci")
    images.busybox_image(layout, "latest")
    return layout


@pytest.fixture
def servers(layout: images.OciLayout) -> Iterator[tuple[FakeRegistry, FakeRegistry, FakeRegistry]]:
    with (
        FakeRegistry(layout, address="127.0.0.1") as registry,
        FakeRegistry(layout, address="127.0.0.2") as storage,
        FakeRegistry(address="127.0.0.3") as realm,
    ):
        yield registry, storage, realm


def _layer(layout: images.OciLayout) -> str:
    manifest = json.loads(layout.blob_path(str(layout.entries[0]["digest"])).read_bytes())
    return str(manifest["layers"][0]["digest"])


def _store(tmp_path: Path, registry: FakeRegistry) -> native_images.ImageStore:
    config = native_registry.RegistryConfig(
        credentials={registry.host: native_registry.Credentials(USER, SECRET)},
        docker_config=Path("/nonexistent/config.json"),
        retries=1,
        backoff=0.01,
    )
    return native_images.ImageStore(tmp_path / "store", registry_config=config)


def _script(registry: FakeRegistry, storage: FakeRegistry, layer: str) -> None:
    """The registry asks for Basic credentials and redirects ``layer`` to the storage host."""

    def answer(seen: Seen) -> Answer | None:
        if seen.headers.get("authorization") != BASIC:
            return Answer(401, {"WWW-Authenticate": 'Basic realm="fake registry"'})
        if seen.path.endswith(f"/blobs/{layer}"):
            return Answer(307, {"Location": f"{storage.url}/storage/{layer}?signature=abc"})
        return None

    registry.responder = answer


@pytest.mark.integration
def test_a_challenge_from_a_redirect_target_is_refused_and_gets_no_credentials(
    tmp_path: Path, layout: images.OciLayout, servers: tuple[FakeRegistry, FakeRegistry, FakeRegistry]
) -> None:
    registry, storage, realm = servers
    layer = _layer(layout)
    _script(registry, storage, layer)
    storage.responder = lambda seen: Answer(
        401, {"WWW-Authenticate": f'Bearer realm="{realm.url}/token",service="storage",scope="x"'}
    )
    realm.responder = lambda seen: Answer(200, {"Content-Type": "application/json"}, b'{"token": "stolen"}')
    store = _store(tmp_path, registry)

    with pytest.raises(errors.EngineError) as raised:
        store.pull(f"{registry.host}/test/busybox:latest")

    assert realm.seen == [], "the realm a redirect target named was contacted"
    message = str(raised.value)
    assert "127.0.0.2" in message and "redirect" in message, message
    assert SECRET not in message and "signature" not in message
    assert storage.seen, "the blob was never redirected (the test proves nothing)"
    assert all("authorization" not in seen.headers for seen in storage.seen)
    # The registry's own challenge is still Basic: later requests to it are not affected.
    assert all(seen.headers.get("authorization") in (None, BASIC) for seen in registry.seen)
    assert store.get(f"{registry.host}/test/busybox:latest") is None


@pytest.mark.integration
def test_a_redirected_blob_is_fetched_without_the_registrys_credentials(
    tmp_path: Path, layout: images.OciLayout, servers: tuple[FakeRegistry, FakeRegistry, FakeRegistry]
) -> None:
    registry, storage, realm = servers
    layer = _layer(layout)
    _script(registry, storage, layer)
    storage.responder = lambda seen: Answer(200, {}, layout.blob_path(layer).read_bytes())

    image = _store(tmp_path, registry).pull(f"{registry.host}/test/busybox:latest")

    assert image.layers[0].digest == layer
    assert len(storage.seen) == 1 and "authorization" not in storage.seen[0].headers
    assert realm.seen == []
