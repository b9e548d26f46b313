"""Copy-up into a named volume with the native engine, after it became fd-relative (issue 10,
finding 8): everything Docker's copy-up keeps is still kept.

The image is busybox plus a layer under ``/etc/app`` with owners, modes (set-id bits included),
a file capability, user xattrs, a relative and an absolute symlink, and an empty private
directory. A container mounting an empty named volume there fills it; the test reads the
volume's data directory on the host and checks each entry, then a second container reads the
copied content through the relative link.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest

from reconciler import manifests, plans
from reconciler.backends.native import engine as native_engine
from tests.contract import suite
from tests.integration.native.test_runtime import wait_exited
from tests.support import images

IMAGE = "127.0.0.1:5000/reconciler/copyup:1"
MTIME_NS = images.MTIME * 1_000_000_000
# VFS_CAP_REVISION_2 with CAP_NET_RAW (bit 13) permitted: every byte is ASCII, so the tar's PAX
# record carries it as is.
CAPABILITY = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)


@pytest.fixture
def copyup_image(engine: native_engine.NativeEngine, tmp_path: Path) -> str:
    extra = images.TarBuilder()
    extra.dir("etc/app", mode=0o750, uid=70, gid=71)
    extra.dir("etc/app/conf", mode=0o2775, uid=33, gid=33)
    extra.file("etc/app/conf/main.conf", b"level=debug\n", mode=0o640, uid=33, gid=34,
               xattrs={"user.origin": "image"})  # fmt: skip
    extra.file("etc/app/tool", b"#!/bin/sh\necho tool\n", mode=0o4755, uid=1000, gid=1000,
               xattrs={"security.capability": CAPABILITY.decode("ascii")})  # fmt: skip
    extra.symlink("etc/app/current", "conf", uid=33, gid=33)
    extra.symlink("etc/app/passwd", "/etc/passwd")
    extra.dir("etc/app/private", mode=0o700, uid=5, gid=5)
    layout = images.OciLayout(tmp_path / "oci")
    built = layout.add_image([images.busybox_layer(), extra.build()], config={"Env": ["PATH=/bin"], "Cmd": ["sh"]})
    layout.tag(IMAGE, built.descriptor)
    engine.image_store.load(layout.tarball(tmp_path / "copyup.tar"))
    return IMAGE


def _run(engine: native_engine.NativeEngine, name: str, command: str, mounts: list[dict[str, str]]) -> list[str]:
    engine.create_container(suite.container_request(name, IMAGE, command=["sh", "-c", command], mounts=mounts))
    engine.start_container(name)
    assert wait_exited(engine, name) == 0, [line.text for line in engine.logs(name)]
    return [line.text for line in engine.logs(name)]


def _owner_mode(path: Path) -> tuple[int, int, int]:
    info = os.lstat(path)
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


@pytest.mark.integration
def test_copy_up_into_a_named_volume_keeps_owners_modes_links_times_and_xattrs(
    engine: native_engine.NativeEngine, copyup_image: str, prefix: str
) -> None:
    volume = f"{prefix}app"
    engine.create_volume(plans.VolumeRequest(volume, manifests.VolumeSpec(), suite.labels("contract", "Volume")))
    mounts = [{"type": "volume", "source": volume, "target": "/etc/app"}]
    lines = _run(engine, f"{prefix}first", "cat /etc/app/current/main.conf; readlink /etc/app/passwd", mounts)
    assert lines == ["level=debug", "/etc/passwd"]

    mountpoint = engine.observe().volumes[volume].mountpoint
    assert mountpoint is not None
    data = Path(mountpoint)
    assert sorted(os.listdir(data)) == ["conf", "current", "passwd", "private", "tool"]
    assert _owner_mode(data) == (70, 71, 0o750), "the volume's root takes the image directory's owner and mode"
    assert _owner_mode(data / "conf") == (33, 33, 0o2775)
    assert _owner_mode(data / "conf/main.conf") == (33, 34, 0o640)
    assert (data / "conf/main.conf").read_bytes() == b"level=debug\n"
    assert os.getxattr(data / "conf/main.conf", "user.origin") == b"image"
    assert _owner_mode(data / "tool") == (1000, 1000, 0o4755), "set-id bits survive the chown"
    assert os.getxattr(data / "tool", "security.capability") == CAPABILITY, "so does the file capability"
    assert _owner_mode(data / "private") == (5, 5, 0o700)
    assert os.readlink(data / "current") == "conf" and os.lstat(data / "current").st_uid == 33
    assert os.readlink(data / "passwd") == "/etc/passwd", "an absolute link is copied as is, never followed"
    for entry in ("conf", "conf/main.conf", "tool", "private", "current"):
        assert os.lstat(data / entry).st_mtime_ns == MTIME_NS, entry

    again = _run(engine, f"{prefix}second", "ls /etc/app | wc -l; echo changed > /etc/app/conf/main.conf", mounts)
    assert again == ["5"]
    third = _run(engine, f"{prefix}third", "cat /etc/app/conf/main.conf", mounts)
    assert third == ["changed"], "a volume with content is never filled again"
