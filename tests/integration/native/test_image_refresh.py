"""Watch mode follows a moved tag: a real registry, a real ``reconcile watch`` on the native
engine with ``--image-refresh 1s``; pushing another image under the same tag replaces the
``pullPolicy: Always`` container with one of the new image, and the webhook hears of it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import client
from reconciler.backends.native import engine as native_engine
from scripts import demo_image
from tests.support import images, registry
from tests.support.polling import eventually
from tests.support.webhook import Receiver

from .conftest import NO_UPSTREAM


def version(layout: images.OciLayout, tag: str, number: int) -> images.BuiltImage:
    """busybox with ``VERSION=<number>`` in its environment: another config, another image id."""
    env = [*demo_image.CONFIG["Env"], f"VERSION={number}"]  # type: ignore[misc]
    built = layout.add_image([images.busybox_layer()], config={**demo_image.CONFIG, "Env": env})
    layout.tag(tag, built.descriptor)
    return built


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def test_a_pushed_tag_rolls_the_container_and_notifies(
    tmp_path: Path, root: Path, prefix: str, engine: native_engine.NativeEngine, receiver: Receiver
) -> None:
    layout = images.OciLayout(tmp_path / "oci")
    first, second = version(layout, "v1", 1), version(layout, "v2", 2)
    served = registry.start_plain(tmp_path / "registry")
    try:
        served.push(layout, "v1", "refresh/app:live")
        reference = f"{served.host}/refresh/app:live"
        folder = tmp_path / "manifests"
        folder.mkdir()
        (folder / "app.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {prefix}app}}\n"
            f"spec:\n  image: {reference}\n  pullPolicy: Always\n  command: [sleep, '3600']\n"
        )
        binary = shutil.which("reconcile")
        assert binary is not None, "the reconcile console script is not installed"
        environment = {key: value for key, value in os.environ.items() if key != "RECONCILER_SOCKET"}
        environment["RECONCILER_DNS_UPSTREAM"] = NO_UPSTREAM
        log_path = tmp_path / "watch.log"
        with log_path.open("w") as log_file:
            daemon = subprocess.Popen(
                [binary, "--engine", "native", "--root", str(root), "watch", str(folder), "--image-refresh", "1s",
                 "--notify-url", receiver.url, "--notify-on", "applied"],
                cwd="/", stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True, env=environment,
            )  # fmt: skip
        try:
            eventually(lambda: client.Client(client.socket_for_root(root)).ping(), what="the daemon's socket")

            def running_image() -> str | None:
                present = engine.observe().containers.get(f"{prefix}app")
                return present.image_id if present is not None and present.state == "running" else None

            eventually(lambda: running_image() == first.config_digest, timeout=60, what="v1 running")
            served.push(layout, "v2", "refresh/app:live")
            eventually(lambda: running_image() == second.config_digest, timeout=60, what="v2 running after the push")
            eventually(lambda: "image-updated" in receiver.kinds(), what="the webhook told of the moved tag")
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=30)
        updated = next(body for body in receiver.bodies if body["kind"] == "image-updated")
        assert f"image {reference} now names {second.config_digest[:19]}" in str(updated["message"])
        log_text = log_path.read_text()
        assert "T0KEN" not in log_text, log_text
    finally:
        served.stop()
