"""Two pulls of one image at the same time, one of them failing midway (issue 10, finding 15).

A fake registry on 127.0.0.5 serves the same two-layer image as ``bad/app`` and ``good/app``. The
``bad`` pull stores the manifest, the config and the first layer, then gets wrong bytes for the
second layer (a digest mismatch: its rollback runs). The ``good`` pull started after the first
layer was stored, so it reused those blobs; it is held at its own second layer until the bad pull
has failed (or is waiting to roll back). The good image must come out complete: every blob it
records present and verified, every snapshot there.
"""

from __future__ import annotations

import os
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


class Pull(threading.Thread):
    """A pull in a thread of its own (each with its own store object, as two processes would)."""

    def __init__(self, root: Path, ref: str) -> None:
        super().__init__(daemon=True, name=f"pull {ref}")
        config = native_registry.RegistryConfig(docker_config=Path("/nonexistent/config.json"), retries=1,
                                                backoff=0.01)  # fmt: skip
        self.store = native_images.ImageStore(root, registry_config=config)
        self.ref = ref
        self.image: native_images.Image | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.image = self.store.pull(self.ref)
        except BaseException as exc:  # handed to the test to assert on
            self.error = exc


@pytest.fixture
def built(tmp_path: Path) -> tuple[images.OciLayout, images.BuiltImage]:
    layout = images.OciLayout(tmp_path / "oci")
    top = images.TarBuilder().dir("app").file("app/data.txt", b"the second layer\n" * 1000).build()
    image = layout.add_image([images.busybox_layer(), top])
    layout.tag("latest", image.descriptor)
    return layout, image


@pytest.fixture
def registry(built: tuple[images.OciLayout, images.BuiltImage]) -> Iterator[FakeRegistry]:
    with FakeRegistry(built[0], address="127.0.0.5") as server:
        yield server


def _waiting_for_lock(path: Path) -> bool:
    """Someone waits for an flock on ``path`` (``/proc/locks`` lists waiters with ``->``)."""
    if not path.exists():
        return False
    inode = os.stat(path).st_ino
    with open("/proc/locks", encoding="ascii") as locks:
        return any("->" in line and f":{inode} " in line for line in locks)


@pytest.mark.integration
def test_a_failed_pull_does_not_take_away_what_a_concurrent_pull_reused(
    tmp_path: Path, built: tuple[images.OciLayout, images.BuiltImage], registry: FakeRegistry
) -> None:
    layout, image = built
    first, second = image.layer_digests
    bad_may_fail, good_may_go = threading.Event(), threading.Event()

    def answer(seen: Seen) -> Answer | None:
        if seen.path == f"/v2/bad/app/blobs/{second}":
            bad_may_fail.wait(timeout=60)
            return Answer(200, {}, b"\0" * layout.blob_path(second).stat().st_size)  # wrong bytes
        if seen.path == f"/v2/good/app/blobs/{second}":
            good_may_go.wait(timeout=60)
        return None

    registry.responder = answer
    root = tmp_path / "store"
    bad = Pull(root, f"{registry.host}/bad/app:latest")
    good = Pull(root, f"{registry.host}/good/app:latest")
    try:
        bad.start()
        eventually(lambda: registry.requests_to(f"/bad/app/blobs/{second}"), what="the bad pull at its 2nd layer")
        eventually(lambda: bad.store.content.has(first), what="the bad pull to store the first layer")
        good.start()
        # The good pull waits for the bad one's download of the same layer (the ingest's lock).
        partial = bad.store.content.partial_path(second)
        eventually(lambda: _waiting_for_lock(partial), what="the good pull at its 2nd layer")
        assert not registry.requests_to(f"/good/app/blobs/{first}"), "the good pull should reuse the 1st layer"
        bad_may_fail.set()
        # The failed pull has rolled back, or waits to do so until no other pull is in flight.
        eventually(lambda: not bad.is_alive() or _waiting_for_lock(root / ".gc.lock"),
                   what="the bad pull to fail")  # fmt: skip
    finally:
        bad_may_fail.set()
        good_may_go.set()
    bad.join(timeout=60)
    good.join(timeout=60)

    assert isinstance(bad.error, errors.DigestMismatch), bad.error
    assert good.error is None, good.error
    store = native_images.ImageStore(root)
    pulled = store.get(f"{registry.host}/good/app:latest")
    assert pulled is not None and pulled.id == image.config_digest
    record = store.index.records()[pulled.id]
    for blob in record["blobs"]:
        assert store.content.has(blob), f"blob {blob} of the good image is gone"
        store.content.read(blob)  # re-verifies the digest
    assert all(store.snapshots.get(layer.chain_id) is not None for layer in pulled.layers)
    lowers = store.snapshots.lowers(pulled.layers[-1].chain_id)
    assert (lowers[0] / "app" / "data.txt").read_bytes() == b"the second layer\n" * 1000
    assert (lowers[1] / "bin" / "busybox").is_file()
    assert store.get(f"{registry.host}/bad/app:latest") is None
