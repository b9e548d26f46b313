"""Registry faults during a pull: 5xx, a truncated body, altered bytes, a stalled server, a reset
connection, and kill -9 of ``reconcile image pull`` while a layer downloads.

Debian's docker-registry holds busybox; :class:`faults.FaultProxy` on 127.0.0.2 sits in front of
it. The store's client gets a 1 s read timeout and two retries (``RegistryConfig``), so a stall
costs seconds. After each fault the pull either fails with an error that names the problem or
succeeds through its retries; either way the store verifies (every blob hashes to its name,
every partial download is a prefix of the true blob, no image is recorded half), and a clean
pull afterwards succeeds.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.backends.native import images as native_images
from reconciler.backends.native import registry_settings
from tests.chaos import leftovers, stacks
from tests.chaos.conftest import REPO, chaos_seed, cli, run
from tests.support import faults, images, registry
from tests.support.polling import eventually

REPOSITORY = "chaos/busybox"
CONFIG = registry_settings.RegistryConfig(timeout=1.0, retries=2, backoff=0.01)


@dataclasses.dataclass(frozen=True)
class Served:
    """The registry and what it serves: the image's manifest, config and layer, with their bytes."""

    registry: registry.Registry
    manifest: str
    config: str
    layer: str
    blobs: dict[str, bytes]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    layout = images.OciLayout(tmp_path_factory.mktemp("chaos-layout") / "oci")
    image = images.busybox_image(layout, "latest")
    started = registry.start_plain(tmp_path_factory.mktemp("chaos-registry"))
    try:
        started.push(layout, "latest", f"{REPOSITORY}:1")
        digests = [image.manifest_digest, image.config_digest, *image.layer_digests]
        blobs = {d: layout.blob_path(d).read_bytes() for d in digests}
        yield Served(started, image.manifest_digest, image.config_digest, image.layer_digests[0], blobs)
    finally:
        started.stop()


@pytest.fixture
def proxy(served: Served) -> Iterator[faults.FaultProxy]:
    with faults.FaultProxy(served.registry.host) as started:
        yield started


def verified(root: Path, served: Served) -> list[str]:
    return leftovers.store_problems(root) + leftovers.partial_problems(root, served.blobs)


# (fault, which request, how many times, what the error must say; "" = the pull must succeed)
CASES = {
    "5xx-manifest": ("status", "/manifests/", 1_000_000, r"503"),
    "5xx-layer-once": ("status", "layer", 1, ""),
    "5xx-layer": ("status", "layer", 1_000_000, r"503"),
    "truncated-layer-once": ("truncate", "layer", 1, ""),
    "truncated-layer": ("truncate", "layer", 1_000_000, r"(?i)incomplete|truncat|ended|short|eof|closed|\d+ of \d+"),
    "altered-layer": ("corrupt", "layer", 1_000_000, r"(?i)digest|hash|match"),
    "altered-manifest": ("corrupt", "/manifests/", 1_000_000, r"(?i)digest|hash|json|match"),
    "stalled-layer": ("stall", "layer", 1_000_000, r"(?i)time"),
    "reset-layer": ("reset", "layer", 1_000_000, r"(?i)reset|abort|closed|eof"),
    "reset-config-once": ("reset", "config", 1, ""),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_registry_fault_fails_clearly_or_is_retried_and_the_store_stays_whole(
    case: str, served: Served, proxy: faults.FaultProxy, root: Path
) -> None:
    kind, target, times, says = CASES[case]
    match = {"layer": served.layer, "config": served.config}.get(target, target)
    proxy.inject(faults.Fault(kind, match, times=times))
    store = native_images.ImageStore(root, registry_config=CONFIG)
    reference = f"{proxy.host}/{REPOSITORY}:1"
    seed = chaos_seed()
    if says:
        with pytest.raises(errors.EngineError) as failure:
            store.pull(reference)
        message = str(failure.value)
        assert re.search(says, message), (
            f"{case}: the pull's error does not say what went wrong (it should match {says!r}, as Docker's"
            f" 'unexpected EOF' or 'connection reset by peer' do): {message!r}"
        )
        assert store.get(reference) is None, f"{case}: a failed pull left an image recorded (seed {seed})"
    else:
        store.pull(reference)
    assert proxy.applied(kind) >= 1, f"{case}: the fault was never applied: {proxy.seen}"
    assert not verified(root, served), f"{case}: the store does not verify after the fault: {verified(root, served)}"
    proxy.clear()
    image = store.pull(reference)
    assert image.digest == served.manifest
    assert not verified(root, served), f"{case}: the store does not verify after a clean pull: {verified(root, served)}"


@pytest.mark.integration
def test_kill_9_of_image_pull_during_a_layer_download_leaves_a_store_that_resumes(
    served: Served, proxy: faults.FaultProxy, root: Path, tmp_path: Path
) -> None:
    proxy.inject(faults.Fault("stall", served.layer))
    reference = f"{proxy.host}/{REPOSITORY}:1"
    log = tmp_path / "pull.log"
    with log.open("wb") as out, subprocess.Popen(cli(root, "image", "pull", reference), cwd=REPO, stdout=out,
                                                 stderr=out, start_new_session=True) as pull:  # fmt: skip
        try:
            eventually(lambda: proxy.applied("stall") >= 1 or pull.poll() is not None, timeout=60,
                       what="the layer download to stall")  # fmt: skip
            assert pull.poll() is None, f"the pull ended before the kill: {log.read_text()}"
        finally:
            pull.kill()
            pull.wait(timeout=30)
    assert native_images.ImageStore(root).get(reference) is None
    assert not verified(root, served), f"after kill -9 of a pull: {verified(root, served)}"
    proxy.clear()
    run(cli(root, "image", "pull", reference))
    image = native_images.ImageStore(root).get(reference)
    assert image is not None and image.digest == served.manifest
    assert not verified(root, served), f"after the clean pull: {verified(root, served)}"


@pytest.mark.integration
def test_kill_9_of_apply_during_its_image_pull_then_re_apply_converges_and_delete_leaves_nothing(
    served: Served, proxy: faults.FaultProxy, root: Path, traces: leftovers.Traces, prefix: str, tmp_path: Path
) -> None:
    proxy.inject(faults.Fault("stall", served.layer))
    manifest = stacks.write_stack(tmp_path / "stack.yaml", prefix, 1, image=f"{proxy.host}/{REPOSITORY}:1")
    argv = cli(root, "apply", "-f", str(manifest))
    assert stacks.kill_at(argv, lambda: proxy.applied("stall") >= 1, traces, tmp_path / "apply.log"), (
        f"the apply ended before its image pull stalled: {(tmp_path / 'apply.log').read_text()[-2000:]}"
    )
    assert not verified(root, served), f"after kill -9 of an apply mid-pull: {verified(root, served)}"
    proxy.clear()
    run(argv)
    stacks.converged(root, manifest, prefix, 1)
    run(cli(root, "delete", "--stack", f"{prefix}s"))
    left = traces.settled()
    assert not left, f"after delete --stack, left on the host (seed {chaos_seed()}): {leftovers.describe(left)}"
    assert not verified(root, served), f"after the re-apply: {verified(root, served)}"
