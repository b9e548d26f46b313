"""The layer applier on crafted tars in temporary directories (no registry, no mounts)."""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import errors
from reconciler.backends.native import layers
from tests.support import images

MTIME_NS = images.MTIME * 1_000_000_000


def _apply(tmp_path: Path, tar: bytes, *, compression: str = "none", mode: layers.Mode = layers.OVERLAY,
           root: Path | None = None, parents: tuple[Path, ...] = (), expected: str | None = None) -> layers.Applied:  # fmt: skip
    blob = tmp_path / f"blob-{len(list(tmp_path.glob('blob-*')))}"
    blob.write_bytes(images.compress(tar, compression))
    root = root or tmp_path / "root"
    root.mkdir(exist_ok=True)
    return layers.apply(blob, root, mode=mode, parents=parents, expected_diff_id=expected)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_compressions_are_detected_and_diff_id_is_of_the_uncompressed_stream(tmp_path: Path, compression: str) -> None:
    tar = images.TarBuilder().dir("etc").file("etc/hostname", b"box\n").build()
    applied = _apply(tmp_path, tar, compression=compression, expected=images.sha256(tar))
    assert applied.diff_id == images.sha256(tar) and applied.uncompressed_size == len(tar)
    assert (tmp_path / "root/etc/hostname").read_bytes() == b"box\n"


def test_diff_id_mismatch_is_a_digest_error(tmp_path: Path) -> None:
    tar = images.TarBuilder().file("a", b"1").build()
    with pytest.raises(errors.DigestMismatch, match="diff_id"):
        _apply(tmp_path, tar, compression="gzip", expected="sha256:" + "0" * 64)


def test_trailing_padding_is_part_of_the_diff_id(tmp_path: Path) -> None:
    tar = images.TarBuilder().file("a", b"1").build() + b"\0" * 4096
    assert _apply(tmp_path, tar).diff_id == images.sha256(tar)


def test_concatenated_gzip_members_are_one_stream(tmp_path: Path) -> None:
    tar = images.TarBuilder().file("a", b"1" * 10000).file("b", b"2").build()
    blob = tmp_path / "blob"
    blob.write_bytes(images.compress(tar[:5120], "gzip") + images.compress(tar[5120:], "gzip"))
    (tmp_path / "root").mkdir()
    assert layers.apply(blob, tmp_path / "root").diff_id == images.sha256(tar)
    assert (tmp_path / "root/b").read_bytes() == b"2"


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    tar = images.TarBuilder().file("a", os.urandom(100000)).build()
    blob = tmp_path / "blob"
    blob.write_bytes(images.compress(tar, "gzip")[:-1000])
    (tmp_path / "root").mkdir()
    with pytest.raises(errors.EngineError):
        layers.apply(blob, tmp_path / "root")


@pytest.mark.parametrize("where", ["deflate data", "gzip checksum"])
def test_corrupt_gzip_is_a_layer_error_that_names_the_layer(tmp_path: Path, where: str) -> None:
    tar = images.TarBuilder().file("a", b"text " * 20000).build()
    compressed = bytearray(images.compress(tar, "gzip"))
    compressed[20 if where == "deflate data" else -6] ^= 0xFF  # the trailer: CRC-32, then size
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(compressed))
    (tmp_path / "root").mkdir()
    with pytest.raises(layers.LayerError, match="layer blob does not decompress"):
        layers.apply(blob, tmp_path / "root")


def test_overlay_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    tar = (
        images.TarBuilder()
        .whiteout("etc/gone")
        .dir("opq")
        .file("opq/new", b"n")
        .opaque("opq")
        .file("same", b"kept")
        .whiteout("same")  # a whiteout never hides an entry of its own layer
        .build()
    )
    _apply(tmp_path, tar)
    root = tmp_path / "root"
    marker = os.lstat(root / "etc/gone")
    assert stat.S_ISCHR(marker.st_mode) and marker.st_rdev == os.makedev(0, 0)
    assert os.getxattr(root / "opq", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(root / "opq")) == ["new"]
    assert (root / "same").read_bytes() == b"kept"
    assert not any(name.startswith(".wh.") for _, dirs, files in os.walk(root) for name in dirs + files)


def test_flat_mode_deletes_lower_entries_but_not_this_layers(tmp_path: Path) -> None:
    lower = images.TarBuilder().dir("opq").file("opq/old", b"o").dir("d").file("d/x", b"x").file("gone", b"g").build()
    upper = images.TarBuilder().dir("opq").file("opq/new", b"n").opaque("opq").whiteout("gone").whiteout("d").build()
    _apply(tmp_path, lower, mode=layers.FLAT)
    _apply(tmp_path, upper, mode=layers.FLAT)
    root = tmp_path / "root"
    assert sorted(os.listdir(root)) == ["opq"]
    assert sorted(os.listdir(root / "opq")) == ["new"]


def test_metadata_owner_then_mode_then_dir_mtimes_last(tmp_path: Path) -> None:
    tar = (
        images.TarBuilder()
        .dir("d", mode=0o750, uid=1000, gid=1001)
        .file("d/suid", b"#!", mode=0o4755, uid=1000, gid=1000)
        .file("d/later", b"created after the dir entry")
        .symlink("d/link", "/etc/passwd", uid=7, gid=7)
        .build()
    )
    _apply(tmp_path, tar)
    root = tmp_path / "root"
    info = os.lstat(root / "d")
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1000, 1001, 0o750)
    assert info.st_mtime_ns == MTIME_NS  # not bumped by the files created inside it afterwards
    suid = os.lstat(root / "d/suid")
    assert stat.S_IMODE(suid.st_mode) == 0o4755 and suid.st_uid == 1000
    link = os.lstat(root / "d/link")
    assert link.st_uid == 7 and os.readlink(root / "d/link") == "/etc/passwd"


def test_replacing_entries(tmp_path: Path) -> None:
    lower = images.TarBuilder().dir("a").file("a/f", b"1").file("b", b"file").symlink("c", "/x").build()
    upper = images.TarBuilder().file("a", b"now a file").dir("b").file("c", b"not a link").dir("a2").build()
    _apply(tmp_path, lower, mode=layers.FLAT)
    _apply(tmp_path, upper, mode=layers.FLAT)
    root = tmp_path / "root"
    assert (root / "a").read_bytes() == b"now a file"
    assert (root / "b").is_dir() and not (root / "c").is_symlink()


def test_new_parent_dirs_copy_metadata_from_lower_snapshots(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    _apply(tmp_path, images.TarBuilder().dir("srv", mode=0o711, uid=33, gid=33).build(), root=lower)
    _apply(tmp_path, images.TarBuilder().file("srv/new", b"n").build(), root=tmp_path / "upper", parents=(lower,))
    info = os.lstat(tmp_path / "upper/srv")
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o711, 33)


def test_hardlink_to_a_lower_layer_file_is_copied_up(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    _apply(tmp_path, images.TarBuilder().dir("bin").file("bin/tool", b"binary", mode=0o755).build(), root=lower)
    _apply(
        tmp_path,
        images.TarBuilder().hardlink("bin/alias", "bin/tool").build(),
        root=tmp_path / "upper",
        parents=(lower,),
    )
    upper = tmp_path / "upper"
    assert os.stat(upper / "bin/alias").st_ino == os.stat(upper / "bin/tool").st_ino
    assert (upper / "bin/alias").read_bytes() == b"binary"


def test_hardlinks_to_directories_and_missing_targets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(layers.LayerError, match="directory"):
        _apply(tmp_path, images.TarBuilder().dir("d").hardlink("h", "d").build(), root=tmp_path / "r1")
    with pytest.raises(layers.LayerError, match="does not exist"):
        _apply(tmp_path, images.TarBuilder().hardlink("h", "nowhere").build(), root=tmp_path / "r2")


def test_trusted_overlay_xattrs_from_the_tar_are_dropped(tmp_path: Path) -> None:
    tar = images.TarBuilder().file("f", b"x", xattrs={"trusted.overlay.opaque": "y", "user.kept": "1"}).build()
    _apply(tmp_path, tar)
    assert os.listxattr(tmp_path / "root/f") == ["user.kept"]


def test_chain_ids() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    chain = layers.chain_ids([a, b])
    assert chain[0] == a
    assert chain[1] == images.sha256(f"{a} {b}".encode())


def test_resolve_in_root_clamps_and_reroots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    os.symlink("/real", root / "abs")
    os.symlink("../../../../real", root / "rel")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    assert layers.resolve_in_root(root, "abs") == root / "real"
    assert layers.resolve_in_root(root, "rel") == root / "real"
    assert layers.resolve_in_root(root, "../../..") == root
    with pytest.raises(layers.LayerError, match="too many levels"):
        layers.resolve_in_root(root, "loop1")


_COMPONENTS = st.sampled_from(["..", ".", "a", "b", "evil", "up", "abs", ""])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.lists(_COMPONENTS, min_size=1, max_size=6).map("/".join), min_size=1, max_size=6))
def test_random_names_never_escape(tmp_path_factory: pytest.TempPathFactory, names: list[str]) -> None:
    base = tmp_path_factory.mktemp("prop")
    outside = base / "outside"
    outside.mkdir()
    builder = images.TarBuilder().symlink("evil", str(outside)).symlink("up", "../../..").symlink("abs", "/")
    for name in names:
        info = tarfile.TarInfo(name or ".")
        info.mtime = images.MTIME
        builder.raw(info, b"x")
    root = base / "root"
    root.mkdir()
    blob = base / "blob"
    blob.write_bytes(builder.build())
    with contextlib.suppress(errors.EngineError):
        layers.apply(blob, root)
    assert os.listdir(outside) == []
    assert sorted(os.listdir(base)) == ["blob", "outside", "root"]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_in_every_tar_format(tmp_path: Path, fmt: int) -> None:
    import io

    long_dir = "d" * 90
    name = f"{long_dir}/{'n' * (99 if fmt == tarfile.USTAR_FORMAT else 150)}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        info = tarfile.TarInfo(name)
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/" + "t" * (99 if fmt == tarfile.USTAR_FORMAT else 300)
        tar.addfile(link)
    data = buffer.getvalue()
    applied = _apply(tmp_path, data, compression="gzip", expected=images.sha256(data))
    assert applied.entries == 2
    assert (tmp_path / "root" / name).read_bytes() == b"hello"
    assert os.readlink(tmp_path / "root/link") == link.linkname


def test_a_pax_header_claiming_gigabytes_is_refused_without_reading_it(tmp_path: Path) -> None:
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 8 * 1024**3
    raw = header.tobuf(format=tarfile.GNU_FORMAT)  # base-256 size field
    data = raw + b"\0" * 1024
    with pytest.raises(errors.EngineError, match="absurd size"):
        _apply(tmp_path, data)


def _gnu_sparse_member(name: str, segments: list[tuple[int, bytes]], real_size: int) -> bytes:
    """An old-GNU sparse entry (type ``S``): the header's map says where each stored segment goes.

    tarfile reads such entries but cannot write them, so the header is patched here: up to four
    (offset, size) pairs of 12 octal digits from byte 386, the real size from byte 483.
    """
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = tarfile.GNUTYPE_SPARSE, sum(len(d) for _, d in segments), images.MTIME
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    for i, (offset, data) in enumerate(segments):
        header[386 + 24 * i : 410 + 24 * i] = b"%011o\0%011o\0" % (offset, len(data))
    header[483:495] = b"%011o\0" % real_size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    stored = b"".join(d for _, d in segments)
    return bytes(header) + stored + b"\0" * (-len(stored) % 512)


def test_a_sparse_file_is_written_with_its_holes_as_zeros(tmp_path: Path) -> None:
    member = _gnu_sparse_member("sparse", [(4096, b"a" * 4096), (3 * 4096, b"b" * 100)], 4 * 4096)
    after = images.TarBuilder().file("after", b"next entry").build()
    _apply(tmp_path, member + after, compression="gzip")
    expected = b"\0" * 4096 + b"a" * 4096 + b"\0" * 4096 + b"b" * 100 + b"\0" * (4096 - 100)
    assert (tmp_path / "root/sparse").read_bytes() == expected
    assert (tmp_path / "root/after").read_bytes() == b"next entry"
