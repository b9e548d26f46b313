"""Build the example stacks' image offline: busybox (from Debian's busybox-static) as an OCI tarball.

``python3 scripts/demo_image.py OUT.tar [REFERENCE]`` writes an OCI image layout, as one tar, whose
single image is named ``127.0.0.1:5000/reconciler/busybox:1`` (the reference ``manifests/`` use),
so that ``reconcile image load OUT.tar`` makes it available with no registry and no network.

Standard library only, and nothing from the project: ``scripts/install`` runs it with Debian's own
python3, where neither pytest nor the package's dependencies need be importable. The tests' image
builders (``tests/support/images.py``) take the busybox layer and the image config from here, so
the example's image and the one the tests load are built by one recipe. Everything is
deterministic (fixed mtimes, sorted applets, gzip without a timestamp): the same busybox binary
always gives the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import subprocess
import sys
import tarfile
from pathlib import Path

DEFAULT_REFERENCE = "127.0.0.1:5000/reconciler/busybox:1"
BUSYBOX = Path("/bin/busybox")
MTIME = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"

# The image's run configuration: a shell by default, and one of each field a container inherits
# (env, working dir, user, exposed port, volume, label, stop signal) for the tests to check.
CONFIG: dict[str, object] = {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello"],
    "Cmd": ["sh"],
    "WorkingDir": "/root",
    "User": "0:0",
    "ExposedPorts": {"8080/tcp": {}},
    "Volumes": {"/data": {}},
    "Labels": {"org.example.test": "busybox"},
    "StopSignal": "SIGQUIT",
}

# The OCI architecture names of the machines Debian's busybox-static is built for; the binary
# copied is this machine's, so the image is of this machine's architecture.
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
                  "s390x": "s390x", "riscv64": "riscv64"}  # fmt: skip


class MissingBusybox(Exception):
    """Debian's busybox-static is not installed (``/bin/busybox`` is missing)."""

    def __init__(self) -> None:
        super().__init__(f"{BUSYBOX} is missing: apt-get install -y busybox-static")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def architecture() -> str:
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


def busybox_applets() -> list[str]:
    """The applet names ``/bin/busybox --list`` prints, sorted."""
    if not BUSYBOX.exists():
        raise MissingBusybox
    out = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True).stdout
    return sorted({line.strip() for line in out.splitlines() if line.strip() and "/" not in line})


def _entry(
    tar: tarfile.TarFile, name: str, kind: bytes, mode: int, *, data: bytes | None = None, link: str = ""
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.linkname = kind, mode, MTIME, link
    info.uid = info.gid = 0
    if data is not None:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def busybox_layer() -> bytes:
    """A runnable busybox root as an uncompressed layer tar: /bin/busybox, one symlink per applet,
    /etc/passwd and /etc/group (root, nobody), /root, /tmp and /var/empty."""
    applets = busybox_applets()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _entry(tar, "bin", tarfile.DIRTYPE, 0o755)
        _entry(tar, "bin/busybox", tarfile.REGTYPE, 0o755, data=BUSYBOX.read_bytes())
        for applet in applets:
            if applet != "busybox":
                _entry(tar, f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        _entry(tar, "etc", tarfile.DIRTYPE, 0o755)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        _entry(tar, "etc/passwd", tarfile.REGTYPE, 0o644, data=passwd)
        _entry(tar, "etc/group", tarfile.REGTYPE, 0o644, data=b"root:x:0:\nnogroup:x:65534:\n")
        for name, mode in (("root", 0o700), ("tmp", 0o1777), ("var", 0o755), ("var/empty", 0o555)):
            _entry(tar, name, tarfile.DIRTYPE, mode)
    return buffer.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict[str, object]:
    digest = sha256(data)
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def image_blobs(reference: str) -> tuple[dict[str, bytes], dict[str, object]]:
    """The busybox image's blobs by digest (layer, config, manifest) and its index.json."""
    blobs: dict[str, bytes] = {}
    layer = busybox_layer()
    config = {
        "architecture": architecture(),
        "os": "linux",
        "created": CREATED,
        "config": CONFIG,
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
        "history": [{"created": CREATED, "created_by": "scripts/demo_image.py"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": _blob(blobs, json.dumps(config, sort_keys=True).encode(), MEDIA_CONFIG),
        "layers": [_blob(blobs, gzip.compress(layer, compresslevel=6, mtime=0), MEDIA_LAYER)],
    }
    entry = _blob(blobs, json.dumps(manifest, sort_keys=True).encode(), MEDIA_MANIFEST)
    entry["annotations"] = {REF_NAME: reference}
    return blobs, {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [entry]}


def write_tarball(dest: Path, reference: str = DEFAULT_REFERENCE) -> Path:
    """The image as an OCI layout tar at ``dest`` (what ``reconcile image load`` reads)."""
    blobs, index = image_blobs(reference)
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
    }
    files.update({f"blobs/sha256/{digest.split(':', 1)[1]}": data for digest, data in blobs.items()})
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            _entry(tar, directory, tarfile.DIRTYPE, 0o755)
        for name, data in files.items():
            _entry(tar, name, tarfile.REGTYPE, 0o644, data=data)
    return dest


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    reference = argv[1] if len(argv) == 2 else DEFAULT_REFERENCE
    try:
        write_tarball(Path(argv[0]), reference)
    except MissingBusybox as error:
        print(f"demo_image: {error}", file=sys.stderr)
        return 1
    print(f"wrote {argv[0]} with image {reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
