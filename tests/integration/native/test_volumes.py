"""Volumes as Docker fills them: copy-up into an empty named volume, anonymous volumes for an
image's ``Volumes``, and what copy-up must never do (follow a link out, read a device or FIFO).

The image is built here: busybox plus a layer holding ``/seed`` (declared a volume) and
``/etc/app`` (a named volume's target), with owners, modes, a symlink to ``/``, a FIFO and a
character device, and is loaded straight into the engine's store.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler import manifests, plans
from reconciler.backends.native import engine as native_engine
from tests.contract import suite
from tests.integration.native.test_runtime import wait_exited
from tests.support import images

IMAGE = "127.0.0.1:5000/reconciler/seeded:1"


@pytest.fixture
def seeded(engine: native_engine.NativeEngine, tmp_path: Path) -> str:
    extra = images.TarBuilder()
    extra.dir("seed", mode=0o750, uid=1000, gid=1000)
    extra.file("seed/hello", b"hello from the image\n", mode=0o640, uid=1000, gid=1000)
    extra.dir("seed/sub").file("seed/sub/deep", b"deep\n")
    extra.symlink("seed/root-link", "/")
    extra.fifo("seed/pipe")
    extra.chardev("seed/zero", 1, 5)
    extra.dir("etc/app").file("etc/app/defaults.conf", b"level=info\n", mode=0o600, uid=33, gid=33)
    layout = images.OciLayout(tmp_path / "oci")
    built = layout.add_image([images.busybox_layer(), extra.build()], config={
        "Env": ["PATH=/bin"], "Cmd": ["sh"], "Volumes": {"/seed": {}},
    })  # fmt: skip
    layout.tag(IMAGE, built.descriptor)
    engine.image_store.load(layout.tarball(tmp_path / "seeded.tar"))
    return IMAGE


def run(engine: native_engine.NativeEngine, name: str, command: str, **spec: object) -> list[str]:
    engine.create_container(suite.container_request(name, IMAGE, command=["sh", "-c", command], **spec))
    engine.start_container(name)
    assert wait_exited(engine, name) == 0, [line.text for line in engine.logs(name)]
    return [line.text for line in engine.logs(name)]


@pytest.mark.integration
def test_an_image_volume_is_anonymous_filled_and_goes_with_the_container(
    engine: native_engine.NativeEngine, seeded: str, prefix: str, root: Path
) -> None:
    name = f"{prefix}anon"
    lines = run(engine, name, (
        "cat /seed/hello /seed/sub/deep; stat -c '%u:%g %a' /seed /seed/hello; "
        "[ -L /seed/root-link ] && echo link; [ -e /seed/pipe ] || echo no-fifo; [ -e /seed/zero ] || echo no-dev; "
        "echo written > /seed/new"
    ))  # fmt: skip
    assert lines == ["hello from the image", "deep", "1000:1000 750", "1000:1000 640", "link", "no-fifo", "no-dev"]
    container_id = engine.observe().containers[name].container_id
    volumes = root / "containers" / container_id / "volumes"
    (data,) = volumes.iterdir()
    assert (data / "new").read_text() == "written\n"
    assert os.readlink(data / "root-link") == "/", "a link is copied as a link, never followed"
    assert sorted(os.listdir(data)) == ["hello", "new", "root-link", "sub"]
    assert engine.observe().containers[name].volumes == (), "anonymous volumes are not named volumes"

    shared = run(engine, f"{prefix}peer", "cat /seed/new", volumesFrom=[name])
    assert shared == ["written"], "volumesFrom shares anonymous volumes, as Docker does"
    engine.remove_container(f"{prefix}peer")
    engine.remove_container(name)
    assert not volumes.exists()

    covered = run(engine, f"{prefix}own", "ls /seed | wc -l", mounts=[{"type": "tmpfs", "target": "/seed"}])
    assert covered == ["0"], "a mount of the path replaces the anonymous volume"


@pytest.mark.integration
def test_an_empty_named_volume_gets_the_image_content_once(
    engine: native_engine.NativeEngine, seeded: str, prefix: str
) -> None:
    volume = f"{prefix}conf"
    engine.create_volume(plans.VolumeRequest(volume, manifests.VolumeSpec(), suite.labels("contract", "Volume")))
    mount = [{"type": "volume", "source": volume, "target": "/etc/app"}]
    first = run(engine, f"{prefix}first", "cat /etc/app/defaults.conf; stat -c '%u %a' /etc/app/defaults.conf; "
                "rm /etc/app/defaults.conf; echo mine > /etc/app/marker", mounts=mount)  # fmt: skip
    assert first == ["level=info", "33 600"]
    # Not empty any more: the next container sees the volume's data, not the image's again.
    second = run(engine, f"{prefix}second", "ls /etc/app", mounts=mount)
    assert second == ["marker"]
