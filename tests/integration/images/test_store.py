"""Store life cycle: prune frees exactly what nothing references; load; the CLI sub-commands."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.backends.native import images as native_images
from reconciler.backends.native import mounts
from reconciler.cli import image as cli_image
from tests.support import images, registry

pytestmark = pytest.mark.integration
StoreFactory = Callable[..., native_images.ImageStore]


def _inventory(store: native_images.ImageStore) -> tuple[set[str], set[str]]:
    return set(store.content.digests()), {s.chain_id for s in store.snapshots.list()}


def _owned(store: native_images.ImageStore, image: native_images.Image) -> tuple[set[str], set[str]]:
    record = store.index.records()[image.id]
    return set(record["blobs"]), set(image.chain_ids)


def test_prune_frees_what_no_image_references_and_nothing_else(
    registries: dict[str, registry.Registry],
    store_for: StoreFactory,
    mounted: Callable[[mounts.Mount], Path],
    tmp_path: Path,
) -> None:
    reg = registries["plain"]
    store = store_for(reg)
    busybox = store.pull(reg.ref("test/busybox:latest"))
    whiteout = store.pull(reg.ref("test/busybox:whiteout"))
    assert busybox.chain_ids[0] == whiteout.chain_ids[0]  # the shared base snapshot
    assert store.prune() == 0  # everything is referenced

    busybox_blobs, busybox_chains = _owned(store, busybox)
    whiteout_blobs, whiteout_chains = _owned(store, whiteout)
    store.remove(reg.ref("test/busybox:whiteout"))
    assert store.get(whiteout.id) is not None  # dangling until pruned

    # A container still using the dangling image keeps it alive.
    assert store.prune(in_use={whiteout.id}) == 0
    freed = store.prune()
    assert freed > 0
    blobs, chains = _inventory(store)
    assert blobs == busybox_blobs
    assert chains == busybox_chains
    assert whiteout_blobs - busybox_blobs and not (whiteout_blobs - busybox_blobs) & blobs
    assert whiteout_chains - busybox_chains and not (whiteout_chains - busybox_chains) & chains
    assert store.get(whiteout.id) is None
    assert store.prune() == 0

    # The survivor is intact and usable.
    rootfs = mounted(store.rootfs_mount(store.get(reg.ref("test/busybox:latest")), tmp_path / "c"))  # type: ignore[arg-type]
    assert (rootfs / "bin/busybox").is_file()


def test_prune_removes_abandoned_partials_and_temp_snapshots(store_for: StoreFactory) -> None:
    store = store_for()
    partial = store.content.ingest_dir / ("ab" * 32 + ".partial")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * 1000)
    temp = store.snapshots.prepare()
    (temp / "file").write_bytes(b"y" * 5000)
    assert store.prune() >= 6000
    assert not partial.exists() and not temp.exists()


def test_load_oci_layout_and_docker_archive(layout: images.OciLayout, store_for: StoreFactory, tmp_path: Path) -> None:
    store = store_for()
    oci_tar = tmp_path / "oci.tar"
    named = images.OciLayout(tmp_path / "named")
    images.multiarch_image(named, "example.com/test/multi:1")
    images.whiteout_image(named, "example.com/test/whiteout:1", compression="zstd")
    named.tarball(oci_tar)
    loaded = store.load(oci_tar)
    assert sorted(ref for image in loaded for ref in image.references if "@" not in ref) == [
        "example.com/test/multi:1",
        "example.com/test/whiteout:1",
    ]
    multi = store.get("example.com/test/multi:1")
    assert multi is not None and multi.config.architecture == "amd64"

    archive, image_id = images.docker_archive(
        tmp_path / "docker.tar", [images.busybox_layer()], repo_tags=["local/bb:1"]
    )
    (from_docker,) = store.load(archive)
    assert from_docker.id == image_id
    assert "docker.io/local/bb:1" in from_docker.references
    top = store.snapshots.lowers(from_docker.layers[-1].chain_id)[0]
    assert (top / "bin/busybox").is_file()
    # Same layer as the OCI images' busybox layer: one shared snapshot.
    assert from_docker.chain_ids[0] == multi.chain_ids[0]


def test_load_refuses_a_tampered_archive(store_for: StoreFactory, tmp_path: Path) -> None:
    store = store_for()
    oci = images.OciLayout(tmp_path / "oci")
    built = images.busybox_image(oci, "example.com/test/bb:1")
    blob = oci.blob_path(built.layer_digests[0])
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(errors.DigestMismatch):
        store.load(oci.tarball(tmp_path / "bad.tar"))
    assert store.list() == [] and store.content.digests() == [] and store.snapshots.list() == []


# --- the CLI ---------------------------------------------------------------------------------


def _cli(root: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="reconcile")
    parser.add_argument("--root", type=Path, default=root)
    cli_image.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--root", str(root), *argv])
    return int(args.func(args))


def test_cli_pull_ls_rm_prune_load(
    registries: dict[str, registry.Registry], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registries["plain"]
    root = tmp_path / "root"
    assert _cli(root, "image", "pull", reg.ref("test/busybox:whiteout")) == 0
    out, err = capsys.readouterr()
    assert "pulled" in out and "extracting" in err and "done" in err  # plain lines: stderr is no tty
    assert "\x1b[" not in err

    assert _cli(root, "image", "ls") == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[0].split() == ["REFERENCE", "IMAGE", "ID", "LAYERS", "SIZE"]
    assert f"{reg.host}/test/busybox:whiteout" in out

    assert _cli(root, "image", "rm", reg.ref("test/busybox:whiteout")) == 0
    out, _ = capsys.readouterr()
    assert "untagged:" in out
    assert _cli(root, "image", "prune") == 0
    out, _ = capsys.readouterr()
    assert out.startswith("Total reclaimed space:") and "0B" not in out

    archive, _ = images.docker_archive(tmp_path / "d.tar", [images.busybox_layer()], repo_tags=["local/bb:2"])
    assert _cli(root, "image", "load", str(archive)) == 0
    out, _ = capsys.readouterr()
    assert "docker.io/local/bb:2" in out


def test_cli_ls_shows_each_image_once_with_the_ids_q_prints(
    registries: dict[str, registry.Registry], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registries["plain"]
    root = tmp_path / "root"
    assert _cli(root, "image", "ls") == 0
    assert capsys.readouterr().out == "No images.\n"
    # By tag (the store also records the digest it resolved to), then the same image pinned by digest.
    assert _cli(root, "image", "pull", "-q", reg.ref("test/busybox:latest")) == 0
    image = native_images.ImageStore(root).list()[0]
    assert _cli(root, "image", "pull", "-q", f"{reg.host}/test/busybox@{image.digest}") == 0
    assert _cli(root, "image", "pull", "-q", f"{reg.host}/test/busybox@{_digest_of(reg, 'whiteout', root)}") == 0
    capsys.readouterr()

    assert _cli(root, "image", "ls") == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["REFERENCE", "IMAGE", "ID", "LAYERS", "SIZE"]
    assert len(rows) == 2
    by_name = {row.split()[0]: row.split()[1] for row in rows}
    assert by_name[reg.ref("test/busybox:latest")] == image.short_id  # the tag, not its digest name
    (pinned,) = (name for name in by_name if "@sha256:" in name)  # an image pulled by digest only
    assert _cli(root, "image", "ls", "-q") == 0
    assert capsys.readouterr().out.split() == [by_name[name] for name in sorted(by_name)]
    assert all(len(short) == 12 for short in by_name.values())

    assert _cli(root, "image", "ls", "-o", "json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["shortId"] for entry in listed] == [by_name[name] for name in sorted(by_name)]
    first = listed[0]
    assert first["id"] == image.id and first["digest"] == image.digest and first["layers"] == len(image.layers)
    assert sorted(first["references"]) == sorted([reg.ref("test/busybox:latest"),
                                                   f"{reg.host}/test/busybox@{image.digest}"])  # fmt: skip
    assert listed[1]["references"] == [pinned] and first["size"] == image.size


def _digest_of(reg: registry.Registry, tag: str, root: Path) -> str:
    """The manifest digest ``tag`` has in ``reg``, found by pulling it into a scratch store."""
    scratch = native_images.ImageStore(root.parent / f"scratch-{tag}")
    return scratch.pull(reg.ref(f"test/busybox:{tag}")).digest


def test_cli_an_unreachable_registry_is_named_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as held:  # a port held but not listening: refused at once
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        assert _cli(tmp_path / "root", "image", "pull", f"127.0.0.1:{port}/test/busybox:latest") == 1
    _, err = capsys.readouterr()
    assert err.strip() == f"error: cannot reach registry 127.0.0.1:{port}: connection refused"


def test_cli_errors_are_one_line(
    registries: dict[str, registry.Registry], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registries["plain"]
    root = tmp_path / "root"
    assert _cli(root, "image", "pull", reg.ref("test/busybox:nope")) == 1
    assert _cli(root, "image", "pull", "UPPER/case") == 1
    assert _cli(root, "image", "rm", "nothing:here") == 1
    assert _cli(root, "image", "load", str(tmp_path / "missing.tar")) == 1
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines)
    assert "Traceback" not in err


def test_cli_progress_bars_on_a_terminal() -> None:
    import io

    stream = io.StringIO()
    progress = cli_image.Progress(stream, tty=True)
    progress(native_images.PullProgress("sha256:" + "a" * 64, 0, 2, "downloading", 50, 100))
    progress(native_images.PullProgress("sha256:" + "b" * 64, 1, 2, "waiting", 0, 100))
    progress(native_images.PullProgress("sha256:" + "a" * 64, 0, 2, "done", 100, 100))
    text = stream.getvalue()
    assert "\x1b[2F" in text and "aaaaaaaaaaaa: done" in text and "[===" in text
