"""The overlay rootfs of a pulled image, mounted for real, equals a flat reference unpack."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.backends.native import images as native_images
from reconciler.backends.native import mounts
from tests.support import images, registry

pytestmark = pytest.mark.integration


def test_mounted_whiteout_image_equals_flat_reference(
    registries: dict[str, registry.Registry],
    store_for: Callable[..., native_images.ImageStore],
    mounted: Callable[[mounts.Mount], Path],
    tmp_path: Path,
) -> None:
    reg = registries["plain"]
    store = store_for(reg)
    image = store.pull(reg.ref("test/busybox:whiteout"))
    rootfs = mounted(store.rootfs_mount(image, tmp_path / "container"))
    reference = images.reference_unpack(images.whiteout_layers(cross_layer_hardlink=True), tmp_path / "reference")

    # GNU diff cannot compare fifos and device nodes (it reports them as different even when
    # equal), so those two are excluded here and checked explicitly below.
    diff = subprocess.run(
        ["diff", "-r", "--no-dereference", "--exclude=pipe", "--exclude=null", str(reference), str(rootfs)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert diff.returncode == 0, diff.stdout + diff.stderr

    # The interesting cases, stated explicitly as well.
    assert not (rootfs / "etc/gone.txt").exists()
    assert sorted(os.listdir(rootfs / "opq")) == ["new"]
    assert (rootfs / "dir2").read_text() == "now a file\n"
    assert (rootfs / "data/keep.txt").read_text() == "v2\n"
    assert stat.S_IMODE(os.lstat(rootfs / "bin/su-test").st_mode) == 0o4755
    assert os.lstat(rootfs / "newdir").st_uid == 1000
    # hard/c links to hard/a of a lower layer: a is copied up into the top layer and linked
    # there (lower snapshots are immutable), so b keeps the old inode with the same content.
    assert os.stat(rootfs / "hard/a").st_ino == os.stat(rootfs / "hard/c").st_ino
    assert (rootfs / "hard/b").read_text() == (rootfs / "hard/c").read_text() == "linked\n"
    bottom_middle = store.snapshots.lowers(image.layers[1].chain_id)[0]
    assert os.stat(bottom_middle / "hard/a").st_ino == os.stat(bottom_middle / "hard/b").st_ino
    assert stat.S_ISFIFO(os.lstat(rootfs / "data/pipe").st_mode)
    assert os.lstat(rootfs / "data/null").st_rdev == os.makedev(1, 3)
    assert os.getxattr(rootfs / "data/attr", "user.test") == b"value"
    assert os.readlink(rootfs / "motd-link") == "/etc/motd"

    # In the snapshot itself the whiteouts are overlay markers.
    top = store.snapshots.lowers(image.layers[-1].chain_id)[0]
    marker = os.lstat(top / "etc/gone.txt")
    assert stat.S_ISCHR(marker.st_mode) and marker.st_rdev == 0
    assert os.getxattr(top / "opq", "trusted.overlay.opaque") == b"y"

    # Writes go to the container's upper dir, never into a shared snapshot.
    (rootfs / "written").write_text("x")
    assert (tmp_path / "container/fs/written").exists()
    assert not (top / "written").exists()


def test_busybox_rootfs_runs(
    registries: dict[str, registry.Registry],
    store_for: Callable[..., native_images.ImageStore],
    mounted: Callable[[mounts.Mount], Path],
    tmp_path: Path,
) -> None:
    reg = registries["plain"]
    store = store_for(reg)
    image = store.pull(reg.ref("test/busybox:latest"))
    rootfs = mounted(store.rootfs_mount(image, tmp_path / "c"))
    out = subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", "echo hi from $(cat /etc/passwd | head -1 | cut -d: -f1)"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "hi from root"


def test_mount_data_over_one_page_uses_relative_lowerdirs(
    tmp_path: Path, mounted: Callable[[mounts.Mount], Path]
) -> None:
    # 150 lowerdirs with long absolute names: ~9 KB of options, far over the 4096-byte page.
    base = tmp_path / ("snapshots-with-a-rather-long-directory-name-" + "x" * 40)
    lowers = []
    for i in range(150):
        layer = base / f"{i:04d}" / "fs"
        layer.mkdir(parents=True)
        (layer / f"file{i}").write_text(str(i))
        lowers.append(layer)
    lowers.reverse()  # top first
    for name in ("upper", "work", "rootfs"):
        (tmp_path / name).mkdir()
    m = mounts.overlay(lowers, upper=tmp_path / "upper", work=tmp_path / "work", target=tmp_path / "rootfs")
    assert len(m.data) > mounts.PAGE_LIMIT
    rootfs = mounted(m)
    assert len(os.listdir(rootfs)) == 150
    assert (rootfs / "file0").read_text() == "0" and (rootfs / "file149").read_text() == "149"
    assert mounts.is_mounted(rootfs)
