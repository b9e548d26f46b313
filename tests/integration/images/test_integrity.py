"""Tampered blobs are refused without leaving anything behind; interrupted pulls resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.backends.native import images as native_images
from tests.support import images, registry

pytestmark = pytest.mark.integration
StoreFactory = Callable[..., native_images.ImageStore]
BIG = 48 * 1024 * 1024


def _store_is_empty(store: native_images.ImageStore) -> None:
    assert store.list() == []
    assert store.content.digests() == []
    assert store.content.partials() == []
    assert store.snapshots.list() == []
    leftovers = [p.name for p in store.snapshots.root.iterdir() if p.is_dir()] if store.snapshots.root.exists() else []
    assert leftovers == []


@pytest.mark.parametrize("what", ["layer", "config", "truncated-layer"])
def test_tampered_blob_fails_with_digest_error_and_leaves_nothing(
    what: str, fresh_registry: registry.Registry, layout: images.OciLayout, store_for: StoreFactory
) -> None:
    fresh_registry.push(layout, "whiteout", "test/evil:1")
    manifest_digest = next(e["digest"] for e in layout.entries if e["annotations"][images.REF_NAME] == "whiteout")  # type: ignore[index]
    manifest = json.loads(layout.blob_path(str(manifest_digest)).read_bytes())
    if what == "config":
        victim = fresh_registry.blob_path(manifest["config"]["digest"])
    else:
        victim = fresh_registry.blob_path(manifest["layers"][-1]["digest"])
    data = bytearray(victim.read_bytes())
    if what == "truncated-layer":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))

    store = store_for(fresh_registry)
    expected = errors.DigestMismatch if what != "truncated-layer" else (errors.DigestMismatch, errors.Unavailable)
    with pytest.raises(expected):
        store.pull(fresh_registry.ref("test/evil:1"))
    if what == "truncated-layer":
        # A short body looks like an interrupted download: the verified lower layers and the
        # partial are kept for a resume, but no image, no tag and no blob of the short layer;
        # pruning removes the leftovers.
        assert store.list() == []
        assert manifest["layers"][-1]["digest"] not in store.content.digests()
        assert store.prune() > 0
    _store_is_empty(store)


def test_interrupted_pull_resumes_with_range(
    fresh_registry: registry.Registry, store_for: StoreFactory, tmp_path: Path
) -> None:
    layout = images.OciLayout(tmp_path / "big-oci")
    blob = images.random_file(tmp_path / "random.bin", BIG)
    layer = images.TarBuilder().big_file("random.bin", blob).build()
    built = layout.add_image([images.busybox_layer(), layer], compression="none")
    layout.tag("big", built.descriptor)
    fresh_registry.push(layout, "big", "test/big:1")
    store = store_for(fresh_registry)

    class Boom(Exception):
        pass

    seen = {"bytes": 0}

    def explode(event: native_images.PullProgress) -> None:
        if event.status == "downloading" and event.total > BIG:  # the big layer, not busybox
            seen["bytes"] = max(seen["bytes"], event.current)
            if event.current > BIG // 3:
                raise Boom("injected failure mid-download")

    with pytest.raises(Boom):
        store.pull(fresh_registry.ref("test/big:1"), progress=explode)
    partials = store.content.partials()
    assert partials and partials[0].stat().st_size > BIG // 3
    assert store.list() == []

    events: list[native_images.PullProgress] = []
    image = store.pull(fresh_registry.ref("test/big:1"), progress=events.append)
    resumed = [e.resumed_from for e in events if e.status == "downloading" and e.resumed_from]
    assert resumed and resumed[0] > BIG // 3
    top = store.snapshots.lowers(image.layers[-1].chain_id)[0]
    assert (top / "random.bin").read_bytes() == blob.read_bytes()
    assert store.content.partials() == []


def test_killed_pull_process_resumes(
    fresh_registry: registry.Registry, store_for: StoreFactory, tmp_path: Path
) -> None:
    layout = images.OciLayout(tmp_path / "big-oci")
    blob = images.random_file(tmp_path / "random.bin", BIG, seed=7)
    layer = images.TarBuilder().big_file("random.bin", blob).build()
    layout.tag("big", layout.add_image([layer], compression="none").descriptor)
    fresh_registry.push(layout, "big", "test/big:2")
    root = tmp_path / "store"
    midway = 4 * 1024 * 1024
    script = textwrap.dedent(
        f"""
        import threading
        from pathlib import Path
        from reconciler.backends.native import images, registry
        store = images.ImageStore(Path({str(root)!r}), registry_config=registry.RegistryConfig(
            docker_config=Path("/nonexistent/config.json")))
        def stop_midway(event):
            # Reported after the bytes are written: the partial file holds them. Say so, then
            # hold the download here until the parent kills the process.
            if event.status == "downloading" and event.current > {midway}:
                print("midway", flush=True)
                threading.Event().wait()
        store.pull({fresh_registry.ref("test/big:2")!r}, progress=stop_midway)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[3], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "midway\n", "the child finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    partials = list((root / "content" / "ingest").glob("*.partial"))
    assert len(partials) == 1 and partials[0].stat().st_size > midway
    store = native_images.ImageStore(root, registry_config=store_for(fresh_registry).registry_config)
    events: list[native_images.PullProgress] = []
    image = store.pull(fresh_registry.ref("test/big:2"), progress=events.append)
    assert max(e.resumed_from for e in events) > 0
    top = store.snapshots.lowers(image.layers[-1].chain_id)[0]
    assert (top / "random.bin").read_bytes() == blob.read_bytes()


class _RangeIgnoringProxy:
    """Forwards to a registry; cuts the first download of every blob after ``cut`` bytes, and
    ignores ``Range`` (answers 200 with the whole blob), like some CDNs do."""

    def __init__(self, upstream: str, cut: int) -> None:
        import http.server
        import threading
        import urllib.request

        proxy = self
        self.cut_done: set[str] = set()
        self.ranges: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _forward(self, method: str) -> None:
                if self.headers.get("Range"):
                    proxy.ranges.append(self.headers["Range"])
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization")}
                request = urllib.request.Request(f"http://{upstream}{self.path}", method=method, headers=headers)
                try:
                    with urllib.request.urlopen(request) as response:
                        status, reply_headers, body = response.status, response.headers, response.read()
                except urllib.error.HTTPError as exc:
                    status, reply_headers, body = exc.code, exc.headers, exc.read()
                self.send_response(status)
                for key, value in reply_headers.items():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method == "HEAD":
                    return
                if "/blobs/" in self.path and len(body) > cut and self.path not in proxy.cut_done:
                    proxy.cut_done.add(self.path)
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_HEAD(self) -> None:
                self._forward("HEAD")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", registry.free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_download_restarted_by_a_server_ignoring_range_still_unpacks_correctly(
    fresh_registry: registry.Registry, store_for: StoreFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.backends.native import layers

    fallbacks: list[Path] = []
    real_apply = layers.apply

    def counting_apply(blob: Path, root: Path, **kwargs: object) -> layers.Applied:
        fallbacks.append(blob)
        return real_apply(blob, root, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(layers, "apply", counting_apply)
    layout = images.OciLayout(tmp_path / "oci")
    blob = images.random_file(tmp_path / "random.bin", 8 * 1024 * 1024, seed=3)
    layer = images.TarBuilder().big_file("random.bin", blob).build()
    layout.tag("r", layout.add_image([layer], compression="gzip").descriptor)
    fresh_registry.push(layout, "r", "test/range:1")
    proxy = _RangeIgnoringProxy(fresh_registry.host, cut=3 * 1024 * 1024)
    try:
        store = store_for(fresh_registry)
        image = store.pull(f"{proxy.host}/test/range:1")
    finally:
        proxy.stop()
    assert proxy.ranges, "the client should have asked to resume"
    # The streamed unpack saw the restart and redid the layer from the verified blob.
    assert len(fallbacks) == 1
    top = store.snapshots.lowers(image.layers[-1].chain_id)[0]
    assert (top / "random.bin").read_bytes() == blob.read_bytes()
    assert store.content.partials() == []


def test_a_corrupt_partial_from_an_earlier_attempt_is_discarded_and_downloaded_again(
    fresh_registry: registry.Registry, layout: images.OciLayout, store_for: StoreFactory
) -> None:
    fresh_registry.push(layout, "latest", "test/partial:1")
    manifest_digest = next(e["digest"] for e in layout.entries if e["annotations"][images.REF_NAME] == "latest")  # type: ignore[index]
    layer = json.loads(layout.blob_path(str(manifest_digest)).read_bytes())["layers"][0]
    store = store_for(fresh_registry)
    partial = store.content.partial_path(layer["digest"])
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * (layer["size"] // 2))  # garbage that a resume would build on
    image = store.pull(fresh_registry.ref("test/partial:1"))
    assert (store.snapshots.lowers(image.layers[-1].chain_id)[0] / "bin/busybox").is_file()
    assert store.content.partials() == []
