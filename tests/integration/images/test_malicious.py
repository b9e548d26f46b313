"""Malicious layers: every escape attempt fails or stays inside the unpack root, and a full
scan proves that no file outside the store changed. The cases are the known ways out of an
unpacker: ``..`` and absolute names, symlinked parents (direct, relative, chained), files written
over a planted symlink, hardlinks to host files, and whiteouts aimed through a symlink."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.backends.native import images as native_images
from reconciler.backends.native import layers
from tests.support import images

pytestmark = pytest.mark.integration
CASES = sorted(images.malicious_layers(Path("/x")))


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious\n")
    os.chmod(outside / "victim", 0o600)
    (outside / "keep").mkdir()
    return outside


def _confined(root: Path) -> None:
    """Everything the layer created is inside ``root`` (resolving symlinks stays under it too)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            assert os.path.commonpath([os.path.abspath(path), str(root)]) == str(root)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", [layers.OVERLAY, layers.FLAT])
def test_malicious_layer_stays_confined(case: str, mode: layers.Mode, tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    store = tmp_path / "store"
    root = store / "fs"
    root.mkdir(parents=True)
    blob = store / "layer.tar"
    blob.write_bytes(images.malicious_layers(outside)[case])
    before = images.tree_state(tmp_path, exclude=store)

    # Refusing is fine; what matters is that nothing outside changed.
    with contextlib.suppress(errors.EngineError):
        layers.apply(blob, root, mode=mode)

    assert images.tree_state(tmp_path, exclude=store) == before
    _confined(root)
    assert not list(Path("/").glob("pwned"))


def test_malicious_image_loaded_through_the_store(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    layout = images.OciLayout(tmp_path / "oci")
    malicious = images.malicious_layers(outside)
    image = layout.add_image([images.busybox_layer(), malicious["symlink-then-file"], malicious["file-over-symlink"]])
    layout.tag("docker.io/evil/image:1", image.descriptor)
    tarball = layout.tarball(tmp_path / "evil.tar", only="docker.io/evil/image:1")
    layout.tag("docker.io/evil/hardlink:1", layout.add_image([malicious["hardlink-absolute"]]).descriptor)
    hardlink_tarball = layout.tarball(tmp_path / "evil2.tar", only="docker.io/evil/hardlink:1")
    store_root = tmp_path / "store"
    before = images.tree_state(tmp_path, exclude=store_root)

    store = native_images.ImageStore(store_root)
    (loaded,) = store.load(tarball)
    assert loaded.references[0].startswith("docker.io/evil/image")
    assert images.tree_state(tmp_path, exclude=store_root) == before
    top, middle = store.snapshots.lowers(loaded.layers[-1].chain_id)[:2]
    # The payload landed inside the snapshot, under the re-rooted symlink target.
    assert (middle / str(outside).lstrip("/") / "pwned").read_text() == "pwned\n"
    assert (top / "x").read_text() == "pwned\n"

    with pytest.raises(errors.EngineError, match="hardlink"):
        store.load(hardlink_tarball)
    assert store.get("docker.io/evil/hardlink:1") is None
    assert images.tree_state(tmp_path, exclude=store_root) == before
    assert (outside / "victim").read_text() == "precious\n"
    assert os.stat(outside / "victim").st_nlink == 1
