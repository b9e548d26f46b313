"""Hostile trees against the layer applier and the volume copy-up: symlinks that would lead a
metadata write or read out of the directory being filled (issue 10, findings 7 to 9).

Each test builds its tar (or source tree) here and puts a "host" directory next to the root,
with a known mode, owner, mtime and xattr; after the operation the host directory must be as it
was and nothing of it may have been copied in.
"""

from __future__ import annotations

import os
import resource
import stat
import tarfile
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.backends.native import layers, volumes
from tests.support import images

HOST_MTIME_NS = 1_234_567_890_000_000_000
MTIME_NS = images.MTIME * 1_000_000_000


def _apply(tmp_path: Path, tar: bytes, root: Path, parents: tuple[Path, ...] = ()) -> None:
    blob = tmp_path / f"blob-{len(list(tmp_path.glob('blob-*')))}"
    blob.write_bytes(tar)
    root.mkdir(exist_ok=True)
    layers.apply(blob, root, parents=parents)


def _host_dir(path: Path) -> os.stat_result:
    """A directory standing for the host's: mode 0700, owner 4321, an xattr, a known mtime."""
    path.mkdir(parents=True)
    os.chown(path, 4321, 4321)
    os.chmod(path, 0o700)
    os.setxattr(path, "user.host", b"secret")
    os.utime(path, ns=(HOST_MTIME_NS, HOST_MTIME_NS))
    return os.lstat(path)


def _same(before: os.stat_result, path: Path) -> None:
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode, after.st_uid, after.st_gid) == (
        before.st_ino, before.st_mode, before.st_uid, before.st_gid,
    )  # fmt: skip
    assert after.st_mtime_ns == before.st_mtime_ns == HOST_MTIME_NS


def test_directory_mtimes_never_follow_a_symlink_planted_later_in_the_layer(tmp_path: Path) -> None:
    host = tmp_path / "host"
    before = _host_dir(host / "b")
    os.utime(host, ns=(HOST_MTIME_NS, HOST_MTIME_NS))
    host_before = os.lstat(host)
    tar = images.TarBuilder().dir("a").dir("a/b").dir("kept").symlink("a", str(host)).build()
    root = tmp_path / "root"
    _apply(tmp_path, tar, root)
    _same(before, host / "b")
    _same(host_before, host)
    assert os.readlink(root / "a") == str(host)
    assert os.lstat(root / "kept").st_mtime_ns == MTIME_NS, "the other directories still get their times"


def test_directory_times_reach_any_depth_with_few_fds(tmp_path: Path) -> None:
    tar = images.TarBuilder()
    deep = "/".join(["d"] * 150)
    for depth in range(1, 151):
        tar.dir("/".join(["d"] * depth))
    for i in range(500):
        tar.dir(f"wide{i}").dir(f"wide{i}/in")
    root = tmp_path / "root"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # 128 fds more than this process holds already (a long test session holds some of its own).
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 128, hard))
    try:
        _apply(tmp_path, tar.build(), root)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert os.lstat(root / deep).st_mtime_ns == os.lstat(root / "d").st_mtime_ns == MTIME_NS
    assert os.lstat(root / "wide499/in").st_mtime_ns == os.lstat(root / "wide0").st_mtime_ns == MTIME_NS


def test_a_directory_replaced_in_the_same_layer_gets_the_later_entrys_time(tmp_path: Path) -> None:
    tar = images.TarBuilder().dir("d").file("d", b"now a file").raw(_dir_info("d", 1_000_000)).build()
    root = tmp_path / "root"
    _apply(tmp_path, tar, root)
    assert stat.S_ISDIR(os.lstat(root / "d").st_mode)
    assert os.lstat(root / "d").st_mtime_ns == 1_000_000 * 1_000_000_000, "the last entry wins, as in Docker"


def _dir_info(name: str, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = mtime
    return info


def test_a_new_parent_never_takes_metadata_through_a_lower_layers_symlink(tmp_path: Path) -> None:
    host = tmp_path / "host"
    before = _host_dir(host / "y")
    lower = tmp_path / "lower"
    _apply(tmp_path, images.TarBuilder().symlink("x", str(host)).build(), lower)
    upper = tmp_path / "upper"
    _apply(tmp_path, images.TarBuilder().file("x/y/file", b"f").build(), upper, parents=(lower,))
    made = os.lstat(upper / "x/y")
    assert (made.st_uid, stat.S_IMODE(made.st_mode)) == (0, 0o755), "not the host directory's owner and mode"
    assert "user.host" not in os.listxattr(upper / "x/y")
    assert (upper / "x/y/file").read_bytes() == b"f"
    _same(before, host / "y")


def test_a_new_parent_still_copies_a_real_lower_directory_below_a_lower_symlink_elsewhere(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    tar = images.TarBuilder().symlink("link", "real").dir("real", mode=0o700).dir("real/y", mode=0o711, uid=9, gid=9)
    _apply(tmp_path, tar.build(), lower)
    upper = tmp_path / "upper"
    _apply(tmp_path, images.TarBuilder().file("real/y/file", b"f").file("link/y/other", b"o").build(), upper,
           parents=(lower,))  # fmt: skip
    made = os.lstat(upper / "real/y")
    assert (made.st_uid, stat.S_IMODE(made.st_mode)) == (9, 0o711)
    assert stat.S_IMODE(os.lstat(upper / "real").st_mode) == 0o700
    # In the upper layer, "link" is not a link (the lower's link is not followed in this layer):
    # a new directory that overlay shows over the lower link, so nothing below it is copied.
    assert stat.S_IMODE(os.lstat(upper / "link/y").st_mode) == 0o755


def _source_tree(rootfs: Path) -> None:
    (rootfs / "data/sub/deeper").mkdir(parents=True)
    (rootfs / "data/sub/file").write_bytes(b"image content")
    (rootfs / "data/sub/deeper/file").write_bytes(b"deep")
    (rootfs / "data/top").write_bytes(b"top")


def test_copy_up_never_writes_through_a_symlink_another_user_of_the_volume_planted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rootfs, volume, outside = tmp_path / "rootfs", tmp_path / "volume", tmp_path / "outside"
    _source_tree(rootfs)
    volume.mkdir()
    before = _host_dir(outside)
    real_resolve = layers.resolve_in_root

    def racing_container(root: Path, relative: str, **kwargs: object) -> Path:
        # Another running container sharing the volume acts after the emptiness check.
        if not (volume / "sub").is_symlink():
            os.symlink(outside, volume / "sub")
        return real_resolve(root, relative, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(layers, "resolve_in_root", racing_container)
    volumes.copy_up(rootfs, "/data", volume)
    assert os.listdir(outside) == []
    _same(before, outside)
    assert os.readlink(volume / "sub") == str(outside), "what the other user made is left alone"
    assert (volume / "top").read_bytes() == b"top"


def test_copy_up_refuses_a_volume_directory_that_is_a_symlink(tmp_path: Path) -> None:
    rootfs, outside = tmp_path / "rootfs", tmp_path / "outside"
    _source_tree(rootfs)
    before = _host_dir(outside)
    (tmp_path / "volume").symlink_to(outside)
    with pytest.raises(errors.RuntimeFailed, match="not a directory"):
        volumes.copy_up(rootfs, "/data", tmp_path / "volume")
    assert os.listdir(outside) == []
    _same(before, outside)
