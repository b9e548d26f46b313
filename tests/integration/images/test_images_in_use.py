"""``image rm`` and ``image prune`` leave alone the images containers use (issue 10, finding 6).

Real parts: busybox loaded into a private root, a running container of it (runc, overlayfs, the
project's supervisor), and the real command line. As Docker: removing the last name of an image a
container uses is a conflict unless forced (``--force`` only untags: the content stays while a
container holds it), removing it by id is refused outright while the container runs, and prune
keeps the image, its blobs and its snapshots.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import cli
from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import mounts, records
from tests import support
from tests.contract import suite
from tests.support import images
from tests.support.polling import eventually

BUSYBOX = Path("/bin/busybox")


@pytest.fixture
def engine(tmp_path: Path, prefix: str) -> Iterator[native_engine.NativeEngine]:
    support.require_binary("runc", "runc")
    root = tmp_path / "root"
    layout = images.OciLayout(tmp_path / "oci")
    images.busybox_image(layout, images.LOCAL_BUSYBOX)
    engine = native_engine.NativeEngine(root)
    engine.image_store.load(layout.tarball(tmp_path / "image.tar"))
    try:
        yield engine
    finally:
        for name in sorted(engine.observe().containers):
            if name.startswith(prefix):
                engine.remove_container(name)
        engine.close()
        for rootfs in sorted(root.glob("containers/*/rootfs")):
            if mounts.is_mounted(rootfs):
                mounts.unmount(rootfs, detach=True)
        shutil.rmtree(root, ignore_errors=True)


def _reconcile(root: Path, *argv: str) -> int:
    return cli.main(["--root", str(root), *argv])


@pytest.mark.integration
def test_images_used_by_containers_are_neither_removed_nor_pruned(
    engine: native_engine.NativeEngine, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, name = engine.root, f"{prefix}user"
    engine.create_container(suite.container_request(name, images.LOCAL_BUSYBOX, networkMode="none",
                                                    command=["sleep", "3600"]))  # fmt: skip
    engine.start_container(name)
    eventually(lambda: engine.observe().containers[name].state == "running", what=f"{name} running")
    image = engine.image_store.get(images.LOCAL_BUSYBOX)
    assert image is not None
    rootfs = engine.records.get(name).directory / "rootfs"
    capsys.readouterr()

    # By name: the image's last tag, and a container uses it.
    assert _reconcile(root, "image", "rm", images.LOCAL_BUSYBOX) == 1
    err = capsys.readouterr().err
    assert f'conflict: unable to remove repository reference "{images.LOCAL_BUSYBOX}" (must force)' in err, err
    assert f"container {engine.records.get(name).container_id[:12]}" in err and image.short_id in err
    # By id, while the container runs: not even --force.
    assert _reconcile(root, "image", "rm", "--force", image.short_id) == 1
    err = capsys.readouterr().err
    assert "(cannot be forced) - image is being used by running container" in err, err
    assert engine.image_store.get(images.LOCAL_BUSYBOX) is not None

    # Prune keeps the image, its blobs and snapshots: the container's / stays readable.
    assert _reconcile(root, "image", "prune") == 0
    assert (rootfs / "bin" / "busybox").read_bytes() == BUSYBOX.read_bytes()
    assert engine.image_store.get(image.id) is not None

    # --force by name only untags; prune still keeps what the container uses.
    assert _reconcile(root, "image", "rm", "--force", images.LOCAL_BUSYBOX) == 0
    assert engine.image_store.get(images.LOCAL_BUSYBOX) is None
    assert _reconcile(root, "image", "prune") == 0
    kept = engine.image_store.get(image.id)
    assert kept is not None and kept.references == ()
    assert all(engine.image_store.snapshots.get(layer.chain_id) is not None for layer in kept.layers)
    assert (rootfs / "bin" / "busybox").read_bytes() == BUSYBOX.read_bytes()
    result = engine.exec(name, ["ls", "/bin/busybox"])
    assert result.exit_code == 0, result

    # A stopped container holds its image too (a forced removal by id untags it, as Docker's).
    engine.stop_container(name, timeout=1)
    assert records.state_of(engine.records.get(name))[0] != "running"
    assert _reconcile(root, "image", "rm", image.short_id) == 1
    assert "(must be forced) - image is being used by stopped container" in capsys.readouterr().err

    # Once the container is gone, prune frees the image.
    engine.remove_container(name)
    assert _reconcile(root, "image", "prune") == 0
    assert engine.image_store.get(image.id) is None
