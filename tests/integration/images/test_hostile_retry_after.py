"""A hostile ``Retry-After`` neither stalls nor crashes a pull (issue 10, finding 11).

A fake registry on 127.0.0.4 answers a layer blob with 503 and ``Retry-After: 31536000`` (a year)
or with a date that does not parse. The pull must come back with the engine's ``Unavailable``
(a clear error, the rollback done) instead of sleeping a year or raising a bare ``ValueError``.
How long the client would wait is asserted through the function that computes it, never on a clock.
"""

from __future__ import annotations

import email.utils
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.backends.native import images as native_images
from reconciler.backends.native import registry as native_registry
from tests.support import images
from tests.support.fake_registry import Answer, FakeRegistry, Seen
from tests.support.polling import eventually

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 1.5),
        ("7", 7.0),
        ("31536000", 60.0),
        (email.utils.formatdate(NOW + 12, usegmt=True), 12.0),
        (email.utils.formatdate(NOW + 86400 * 365, usegmt=True), 60.0),
        (email.utils.formatdate(NOW - 50, usegmt=True), 0.0),
        ("Wed, 99 Foo 2024 25:61:61 GMT", 1.5),
        ("soon", 1.5),
        ("-5", 1.5),
        ("nan", 1.5),
        ("1e400", 1.5),
    ],
)
def test_the_wait_a_registry_asks_for_is_parsed_and_capped(header: str | None, expected: float) -> None:
    assert native_registry.retry_delay(header, 1.5, now=NOW) == expected


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FakeRegistry, str]]:
    layout = images.OciLayout(tmp_path / "oci")
    images.busybox_image(layout, "latest")
    manifest = json.loads(layout.blob_path(str(layout.entries[0]["digest"])).read_bytes())
    with FakeRegistry(layout, address="127.0.0.4") as registry:
        yield registry, str(manifest["layers"][0]["digest"])


def _pull_in_thread(store: native_images.ImageStore, ref: str) -> list[BaseException]:
    """Run the pull in a thread; a pull that sleeps a year must fail the test, not hang it."""
    outcome: list[BaseException] = []

    def pull() -> None:
        try:
            store.pull(ref)
        except BaseException as exc:  # handed to the test to assert on
            outcome.append(exc)

    thread = threading.Thread(target=pull, daemon=True)
    thread.start()
    eventually(lambda: not thread.is_alive(), timeout=30, what="the pull to come back")
    return outcome


@pytest.mark.integration
@pytest.mark.parametrize("retry_after", ["31536000", "Wed, 99 Foo 2024 25:61:61 GMT"])
def test_a_hostile_retry_after_ends_the_pull_promptly_with_a_clear_error(
    tmp_path: Path, served: tuple[FakeRegistry, str], retry_after: str
) -> None:
    registry, layer = served

    def busy(seen: Seen) -> Answer | None:
        return Answer(503, {"Retry-After": retry_after}) if seen.path.endswith(layer) else None

    registry.responder = busy
    # The pull may wait 2 s in all: the year-long ask is capped, then refused by this budget.
    config = native_registry.RegistryConfig(docker_config=Path("/nonexistent/config.json"), retries=2,
                                            backoff=0.01, max_wait=2.0)  # fmt: skip
    store = native_images.ImageStore(tmp_path / "store", registry_config=config)

    outcome = _pull_in_thread(store, f"{registry.host}/test/busybox:latest")

    assert len(outcome) == 1 and isinstance(outcome[0], errors.Unavailable), outcome
    assert "503" in str(outcome[0]) or "wait" in str(outcome[0])
    assert outcome[0].retry_after <= native_registry.MAX_RETRY_AFTER
    assert store.get(f"{registry.host}/test/busybox:latest") is None
    assert len(registry.requests_to(layer)) >= 1


@pytest.mark.integration
@pytest.mark.parametrize("config", [b"not json at all", b"[1, 2, 3]"])
def test_a_malformed_answer_is_rolled_back_and_reported_as_the_engines_error(tmp_path: Path, config: bytes) -> None:
    layout = images.OciLayout(tmp_path / "oci")
    layer = layout.add_blob(images.compress(images.busybox_layer(), "gzip"), images.MEDIA_LAYER["gzip"])
    manifest = {"schemaVersion": 2, "mediaType": images.MEDIA_MANIFEST, "layers": [layer],
                "config": layout.add_blob(config, images.MEDIA_CONFIG)}  # fmt: skip
    layout.tag("odd", layout.add_blob(json.dumps(manifest).encode(), images.MEDIA_MANIFEST))
    config_ = native_registry.RegistryConfig(docker_config=Path("/nonexistent/config.json"), retries=1, backoff=0.01)
    store = native_images.ImageStore(tmp_path / "store", registry_config=config_)

    with FakeRegistry(layout, address="127.0.0.4") as registry, pytest.raises(errors.EngineError) as raised:
        store.pull(f"{registry.host}/test/odd:odd")

    assert "test/odd:odd" in str(raised.value)
    assert store.list() == []
    assert store.content.digests() == [], "the rollback should have taken back the manifest and config"
    assert store.content.partials() == []
