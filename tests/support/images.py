"""Build small test images in Python: layer tars, OCI layouts, docker-archives, reference unpacks.

Everything is deterministic (fixed mtimes, sorted entries), so the same layer built twice has the
same digest and images share base layers the way real ones do. The busybox layer copies Debian's
``busybox-static`` binary (``/bin/busybox``) with one symlink per applet, which makes a runnable
image without any registry access; its recipe and image config are the example image's
(``scripts/demo_image.py``), so what the tests load as :data:`LOCAL_BUSYBOX` is what
``scripts/install`` loads.

Typical use::

    layout = OciLayout(tmp_path / "oci")
    image = busybox_image(layout, "latest")          # one gzip layer, tagged "latest" in index.json
    multi = multiarch_image(layout, "multi")         # index: linux/amd64 + linux/arm64
    skopeo push: registry.push(layout, "multi", "test/busybox:multi")
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import zstandard

from scripts import demo_image
from tests import support

# The reference scripts/demo_image.py writes, and the CLI tests load into their private roots.
LOCAL_BUSYBOX = demo_image.DEFAULT_REFERENCE

MTIME = 1_700_000_000
MEDIA_LAYER = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class TarBuilder:
    """An in-memory layer tar (PAX format) with helpers for every entry type a layer may hold."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        # Closed by build(): the builder is the tar's owner for its whole life.
        self._tar = tarfile.open(fileobj=self._buffer, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115

    def _info(self, name: str, kind: bytes, *, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.mtime = MTIME
        return info

    def dir(self, name: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> TarBuilder:
        self._tar.addfile(self._info(name, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid))
        return self

    def file(
        self,
        name: str,
        data: bytes = b"",
        *,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        xattrs: dict[str, str] | None = None,
    ) -> TarBuilder:
        info = self._info(name, tarfile.REGTYPE, mode=mode, uid=uid, gid=gid)
        info.size = len(data)
        if xattrs:
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        self._tar.addfile(info, io.BytesIO(data))
        return self

    def big_file(self, name: str, path: Path, *, mode: int = 0o644) -> TarBuilder:
        info = self._info(name, tarfile.REGTYPE, mode=mode)
        info.size = path.stat().st_size
        with path.open("rb") as handle:
            self._tar.addfile(info, handle)
        return self

    def symlink(self, name: str, target: str, *, uid: int = 0, gid: int = 0, mode: int = 0o777) -> TarBuilder:
        info = self._info(name, tarfile.SYMTYPE, mode=mode, uid=uid, gid=gid)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def hardlink(self, name: str, target: str, *, mode: int = 0o644, uid: int = 0, gid: int = 0) -> TarBuilder:
        info = self._info(name, tarfile.LNKTYPE, mode=mode, uid=uid, gid=gid)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def chardev(self, name: str, major: int, minor: int, *, mode: int = 0o666) -> TarBuilder:
        info = self._info(name, tarfile.CHRTYPE, mode=mode)
        info.devmajor, info.devminor = major, minor
        self._tar.addfile(info)
        return self

    def fifo(self, name: str, *, mode: int = 0o644) -> TarBuilder:
        self._tar.addfile(self._info(name, tarfile.FIFOTYPE, mode=mode))
        return self

    def whiteout(self, path: str) -> TarBuilder:
        parent, base = os.path.split(path)
        return self.file(os.path.join(parent, ".wh." + base), mode=0o600)

    def opaque(self, directory: str) -> TarBuilder:
        return self.file(os.path.join(directory, ".wh..wh..opq"), mode=0o600)

    def raw(self, info: tarfile.TarInfo, data: bytes | None = None) -> TarBuilder:
        """Add a hand-made header (malicious names, odd types) as is."""
        if data is not None:
            info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return self

    def build(self) -> bytes:
        self._tar.close()
        return self._buffer.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if kind == "none":
        return data
    raise ValueError(f"unknown compression {kind!r}")


def busybox_layer() -> bytes:
    """A runnable busybox root: the example image's layer (``scripts/demo_image.py``)."""
    support.require_binary("busybox", "busybox-static")
    return demo_image.busybox_layer()


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    """An image written into an OCI layout (not yet named: see ``OciLayout.tag``)."""

    manifest: dict[str, object]
    manifest_digest: str
    config_digest: str
    layer_tars: tuple[bytes, ...]
    diff_ids: tuple[str, ...]
    layer_digests: tuple[str, ...]
    architecture: str

    @property
    def descriptor(self) -> dict[str, object]:
        raw = json.dumps(self.manifest, sort_keys=True).encode()
        return {
            "mediaType": MEDIA_MANIFEST,
            "digest": self.manifest_digest,
            "size": len(raw),
            "platform": {"os": "linux", "architecture": self.architecture},
        }


def _annotations(entry: dict[str, object]) -> dict[str, object]:
    annotations = entry.get("annotations")
    return annotations if isinstance(annotations, dict) else {}


class OciLayout:
    """An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/sha256``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        self.entries: list[dict[str, object]] = []
        self._save()

    @classmethod
    def open(cls, path: Path) -> OciLayout:
        """An existing layout (keeps its index.json entries)."""
        layout = cls.__new__(cls)
        layout.path = path
        layout.entries = json.loads((path / "index.json").read_text())["manifests"]
        return layout

    def _save(self) -> None:
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": self.entries}
        (self.path / "index.json").write_text(json.dumps(index, sort_keys=True))

    def add_blob(self, data: bytes, media_type: str) -> dict[str, object]:
        digest = sha256(data)
        (self.path / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.split(":", 1)[1]

    def add_image(
        self,
        layer_tars: Sequence[bytes],
        *,
        compression: str = "gzip",
        architecture: str = "amd64",
        config: dict[str, object] | None = None,
    ) -> BuiltImage:
        layer_descriptors = [self.add_blob(compress(tar, compression), MEDIA_LAYER[compression]) for tar in layer_tars]
        diff_ids = [sha256(tar) for tar in layer_tars]
        image_config = {
            "architecture": architecture,
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": config
            or {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": "2023-11-14T22:13:20Z", "created_by": "tests/support/images.py"} for _ in layer_tars
            ],
        }
        config_descriptor = self.add_blob(json.dumps(image_config, sort_keys=True).encode(), MEDIA_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_descriptor,
            "layers": layer_descriptors,
        }
        manifest_descriptor = self.add_blob(json.dumps(manifest, sort_keys=True).encode(), MEDIA_MANIFEST)
        return BuiltImage(
            manifest=manifest,
            manifest_digest=str(manifest_descriptor["digest"]),
            config_digest=str(config_descriptor["digest"]),
            layer_tars=tuple(layer_tars),
            diff_ids=tuple(diff_ids),
            layer_digests=tuple(str(d["digest"]) for d in layer_descriptors),
            architecture=architecture,
        )

    def add_index(self, images: Iterable[BuiltImage]) -> dict[str, object]:
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [i.descriptor for i in images]}
        return self.add_blob(json.dumps(index, sort_keys=True).encode(), MEDIA_INDEX)

    def tag(self, name: str, descriptor: dict[str, object]) -> None:
        """Name a manifest or index in index.json (``oci:<dir>:<name>`` for skopeo)."""
        entry = {k: v for k, v in descriptor.items() if k != "platform"}
        entry["annotations"] = {REF_NAME: name}
        self.entries = [e for e in self.entries if _annotations(e).get(REF_NAME) != name]
        self.entries.append(entry)
        self._save()

    def tarball(self, dest: Path, *, only: str | None = None) -> Path:
        """The layout as a tar (``image load`` input); ``only`` keeps one index.json entry."""
        entries = [e for e in self.entries if only is None or e["annotations"][REF_NAME] == only]  # type: ignore[index]
        with tarfile.open(dest, "w") as tar:
            tar.add(self.path / "oci-layout", arcname="oci-layout")
            index = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}).encode()
            info = tarfile.TarInfo("index.json")
            info.size = len(index)
            tar.addfile(info, io.BytesIO(index))
            tar.add(self.path / "blobs", arcname="blobs")
        return dest


# --------------------------------------------------------------------------------------------------
# Recipes


def busybox_image(layout: OciLayout, tag: str, *, compression: str = "gzip") -> BuiltImage:
    image = layout.add_image(
        [busybox_layer()],
        compression=compression,
        config=demo_image.CONFIG,
    )
    layout.tag(tag, image.descriptor)
    return image


def whiteout_layers(*, cross_layer_hardlink: bool = False) -> list[bytes]:
    """Three layers exercising whiteouts, an opaque dir (marker after its new sibling), a dir
    replaced by a file, hardlinks, a setuid file, a fifo, a device and xattrs.

    ``cross_layer_hardlink`` adds ``hard/c`` in the top layer linking to ``hard/a`` of the
    middle one: the spec allows extractors to fail on it, and dockerd 20.10 does ("link
    /hard/a /hard/c: no such file or directory"), so it is off for images shared with docker.
    """
    base = busybox_layer()
    middle = (
        TarBuilder()
        .dir("etc")
        .file("etc/gone.txt", b"to be whited out\n")
        .file("etc/motd", b"welcome\n")
        .dir("data")
        .file("data/keep.txt", b"v1\n")
        .dir("opq")
        .file("opq/old1", b"old\n")
        .dir("opq/sub")
        .file("opq/sub/old2", b"old\n")
        .dir("dir2")
        .file("dir2/inner", b"inner\n")
        .dir("hard")
        .file("hard/a", b"linked\n", mode=0o640, uid=1000, gid=1000)
        .hardlink("hard/b", "hard/a")
        .file("bin/su-test", b"#!/bin/sh\n", mode=0o4755)
        .symlink("motd-link", "/etc/motd")
        .fifo("data/pipe")
        .chardev("data/null", 1, 3)
        .file("data/attr", b"x\n", xattrs={"user.test": "value"})
        .build()
    )
    top = (
        TarBuilder()
        .dir("etc")
        .whiteout("etc/gone.txt")
        .dir("opq")
        .file("opq/new", b"new\n")
        .opaque("opq")
        .whiteout("dir2")
        .file("dir2", b"now a file\n")
        .dir("data")
        .file("data/keep.txt", b"v2\n")
        .dir("newdir", mode=0o750, uid=1000, gid=1000)
        .file("newdir/file", b"fresh\n", uid=1000, gid=1000)
    )
    if cross_layer_hardlink:
        top.hardlink("hard/c", "hard/a")
    return [base, middle, top.build()]


def whiteout_image(
    layout: OciLayout, tag: str, *, compression: str = "gzip", cross_layer_hardlink: bool = False
) -> BuiltImage:
    image = layout.add_image(whiteout_layers(cross_layer_hardlink=cross_layer_hardlink), compression=compression)
    layout.tag(tag, image.descriptor)
    return image


def arm64_layer() -> bytes:
    return TarBuilder().file("arch.txt", b"arm64\n").build()


def multiarch_image(layout: OciLayout, tag: str) -> tuple[BuiltImage, BuiltImage]:
    """An index with linux/amd64 (busybox) and linux/arm64 (a marker file) entries."""
    amd64 = layout.add_image([busybox_layer()], architecture="amd64")
    arm64 = layout.add_image([arm64_layer()], architecture="arm64")
    layout.tag(tag, layout.add_index([arm64, amd64]))
    return amd64, arm64


def random_file(path: Path, size: int, *, seed: int = 0) -> Path:
    """Incompressible bytes (a sha256 counter stream: fast and reproducible)."""
    with path.open("wb") as handle:
        counter = 0
        block = bytearray()
        while size > 0:
            block.clear()
            for _ in range(2048):
                block += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
                counter += 1
            chunk = bytes(block[:size])
            handle.write(chunk)
            size -= len(chunk)
    return path


def docker_archive(dest: Path, layer_tars: Sequence[bytes], *, repo_tags: Sequence[str]) -> tuple[Path, str]:
    """A ``docker save``-style tarball (uncompressed layers); returns it and the image id."""
    diff_ids = [sha256(t) for t in layer_tars]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    config_id = sha256(config)
    with tarfile.open(dest, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = MTIME
            tar.addfile(info, io.BytesIO(data))

        add(f"{config_id.split(':')[1]}.json", config)
        layer_names = []
        for i, data in enumerate(layer_tars):
            name = f"layer{i}/layer.tar"
            add(name, data)
            layer_names.append(name)
        manifest = [{"Config": f"{config_id.split(':')[1]}.json", "RepoTags": list(repo_tags), "Layers": layer_names}]
        add("manifest.json", json.dumps(manifest).encode())
    return dest, config_id


def reference_unpack(layer_tars: Sequence[bytes], dest: Path) -> Path:
    """A flat unpack by an independent method (stdlib ``tarfile`` on trusted test layers).

    Per layer: first apply its whiteouts and opaque markers to what lower layers left, then
    extract its other entries. Used as the expected tree for the overlay mount.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for data in layer_tars:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = tar.getmembers()
            for member in members:
                directory, base = os.path.split(member.name)
                if base == ".wh..wh..opq":
                    target = dest / directory
                    for child in target.iterdir() if target.is_dir() else []:
                        if child.is_dir() and not child.is_symlink():
                            shutil.rmtree(child)
                        else:
                            child.unlink()
                elif base.startswith(".wh."):
                    victim = dest / directory / base[4:]
                    if victim.is_dir() and not victim.is_symlink():
                        shutil.rmtree(victim)
                    elif victim.exists() or victim.is_symlink():
                        victim.unlink()
            for member in members:
                if os.path.basename(member.name).startswith(".wh."):
                    continue
                target = dest / member.name
                if (target.exists() or target.is_symlink()) and not (member.isdir() and target.is_dir()):
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    else:
                        target.unlink()
                tar.extract(member, dest, filter="fully_trusted")
    return dest


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, *, linkname: str = "", mode: int = 0o644, uid: int = 0
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    info.uid = info.gid = uid
    info.mtime = MTIME
    return info


def malicious_layers(outside: Path) -> dict[str, bytes]:
    """Layer tars that try to write, link, delete or chmod/chown outside the unpack root.

    ``outside`` is an absolute directory holding a file ``victim`` (the caller creates it and
    checks afterwards that nothing under it changed). Keys name the attack: a path escaping the
    root (``..``, absolute), a symlink or hardlink pointing out, a whiteout of an outside path, and
    mode or owner changes through a link.
    """
    out = str(outside)
    rel_out = out.lstrip("/")
    payload = b"pwned\n"
    cases: dict[str, TarBuilder] = {
        "dotdot": TarBuilder().raw(_entry("../../../../../../../../" + rel_out + "/pwned"), payload),
        "dotdot-middle": TarBuilder().raw(_entry("a/../../../../../../../../../" + rel_out + "/pwned"), payload),
        "absolute": TarBuilder().raw(_entry(out + "/pwned"), payload),
        "symlink-then-file": TarBuilder().symlink("evil", out).raw(_entry("evil/pwned"), payload),
        "relative-symlink-then-file": TarBuilder()
        .symlink("evil", "../../../../../../../../../..")
        .raw(_entry("evil/" + rel_out + "/pwned"), payload),
        "symlink-chain-parent": TarBuilder().symlink("b", out).symlink("a", "b").raw(_entry("a/sub/pwned"), payload),
        "symlinked-parent-dir": TarBuilder()
        .symlink("d", out)
        .raw(_entry("d/newdir", tarfile.DIRTYPE, mode=0o777, uid=1234))
        .raw(_entry("d/newdir/pwned"), payload),
        "file-over-symlink": TarBuilder().symlink("x", out + "/victim").raw(_entry("x", mode=0o777, uid=1234), payload),
        "hardlink-absolute": TarBuilder().raw(_entry("hl", tarfile.LNKTYPE, linkname=out + "/victim")),
        "hardlink-dotdot": TarBuilder().raw(
            _entry("hl", tarfile.LNKTYPE, linkname="../../../../../../../../" + rel_out + "/victim")
        ),
        "hardlink-through-symlink": TarBuilder()
        .symlink("evil", out)
        .raw(_entry("hl", tarfile.LNKTYPE, linkname="evil/victim")),
        "hardlink-then-write": TarBuilder()
        .symlink("evil", out)
        .raw(_entry("hl", tarfile.LNKTYPE, linkname="evil/victim"))
        .raw(_entry("hl", mode=0o777), payload),
        "whiteout-through-symlink": TarBuilder().symlink("evil", out).raw(_entry("evil/.wh.victim")),
        "opaque-through-symlink": TarBuilder().symlink("evil", out).raw(_entry("evil/.wh..wh..opq")),
        "whiteout-dotdot": TarBuilder().raw(_entry("../../../../../../../../" + rel_out + "/.wh.victim")),
        "chmod-chown-symlink": TarBuilder().raw(
            _entry("link", tarfile.SYMTYPE, linkname=out + "/victim", mode=0o777, uid=1234)
        ),
        "chmod-through-symlinked-dir": TarBuilder()
        .symlink("dirlink", out)
        .raw(_entry("dirlink", tarfile.DIRTYPE, mode=0o777, uid=1234))
        .raw(_entry("dirlink/victim", mode=0o777, uid=1234), payload),
        "invalid-whiteout": TarBuilder().raw(_entry(".wh..wh.evil")),
        "xattr-overlay-forgery": TarBuilder().file("forged", b"x", xattrs={"trusted.overlay.redirect": out}),
    }
    return {name: builder.build() for name, builder in cases.items()}


def tree_state(root: Path, *, exclude: Path | None = None) -> dict[str, tuple[object, ...]]:
    """Type, mode, owner, size, mtime, link count, content hash or link target of everything
    under ``root`` (``exclude`` skipped): compare two calls to prove nothing changed."""
    state: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if exclude is not None and Path(dirpath) == exclude.parent:
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != exclude]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if exclude is not None and path == exclude:
                continue
            info = os.lstat(path)
            digest: str = ""
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                digest = os.readlink(path)
            state[str(path.relative_to(root))] = (
                stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid,
                info.st_size, info.st_mtime_ns, info.st_nlink, digest,
            )  # fmt: skip
    return state
