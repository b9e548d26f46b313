"""A Debian 12 image of real server software for the end-to-end tests, built once and cached.

One root filesystem made by ``mmdebstrap`` (Debian's own bootstrapper, from the Debian mirror this
machine's apt uses) holds postgres, redis and nginx as Debian packages them, plus the clients the
tests drive (``pgbench``, ``psql``, ``redis-benchmark``, ``redis-cli``); each service's container
picks its command in the manifest (one image, several containers, as a Debian host runs them).
The rootfs tar becomes a single gzip layer of an OCI image layout, tagged :data:`TAG`.

The layout is cached in :data:`CACHE` (env ``RECONCILER_TEST_IMAGE_CACHE``) under a key made of
everything that decides its content (builder version, suite, packages, dpkg options, the apt
sources, the baked-in scripts, the image config): a second run reuses it, a change to the
recipe builds a new one. A build goes to a temporary directory and is renamed into place, under a
lock, so concurrent sessions build it once and never see half an image.

This module builds and caches; loading the image into an engine (``reconcile image load``, a
registry push) is the tests' business. A missing ``mmdebstrap`` fails naming the package.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests import support
from tests.support import images

BUILDER_VERSION = "1"
SUITE = "bookworm"
TAG = "stack"
CACHE = Path(os.environ.get("RECONCILER_TEST_IMAGE_CACHE", "/var/cache/reconciler-tests/images"))
# The server packages and their clients: postgresql brings pgbench, psql and pg_isready,
# redis-tools redis-benchmark and redis-cli; getent, df and sh come with the essential set.
PACKAGES = ("postgresql", "redis-server", "redis-tools", "nginx-light")
# Documentation, manuals and translations are no use in a container (Debian's own slim images
# drop them the same way); copyright files stay.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
FALLBACK_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main\n"
    "deb http://deb.debian.org/debian bookworm-updates main\n"
    "deb http://deb.debian.org/debian-security bookworm-security main\n"
)
PGDATA = "/var/lib/postgresql/data"

# The postgres container's command (run as user postgres): on a first start, initdb with the
# superuser's password from the secret file POSTGRES_PASSWORD_FILE names (password logins from
# the network, as the official image does), then postgres in the foreground so signals reach it.
POSTGRES_ENTRY = f"""#!/bin/sh
set -eu
PGDATA="${{PGDATA:-{PGDATA}}}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \\
        --pwfile="$POSTGRES_PASSWORD_FILE" >/dev/null
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp "$@"
"""

# The customisation, run by mmdebstrap with the new root as $1: the cluster Debian's postinst made
# is not wanted (postgres runs from its volume), the volume's mount point is the postgres user's
# (a new volume takes its owner and mode from it), and the entry script is baked in.
CUSTOMIZE = (
    'rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15"',
    f'chroot "$1" install -d -o postgres -g postgres -m 0700 {PGDATA}',
    'install -m 0755 "$RECONCILER_E2E_SCRIPTS/e2e-postgres" "$1/usr/local/bin/e2e-postgres"',
)

CONFIG: dict[str, object] = {
    "Env": [
        "PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
    ],
    "Cmd": ["sleep", "infinity"],
    "WorkingDir": "/",
}


def sources() -> str:
    """The apt sources the image is built from: this machine's Debian ones, else deb.debian.org."""
    return DEBIAN_SOURCES.read_text() if DEBIAN_SOURCES.exists() else FALLBACK_SOURCES


def cache_key() -> str:
    """A digest of everything that decides the image's content."""
    recipe = {
        "builder": BUILDER_VERSION,
        "suite": SUITE,
        "packages": PACKAGES,
        "dpkg": DPKG_OPTIONS,
        "sources": sources(),
        "entry": POSTGRES_ENTRY,
        "customize": CUSTOMIZE,
        "config": CONFIG,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_layout() -> tuple[Path, float]:
    """The cached OCI layout (built now if missing) and the seconds spent building (0: cached)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / cache_key()
    with _locked(CACHE / f"{target.name}.lock"):
        if (target / "index.json").exists():
            os.utime(target)  # in use: not pruned for another day
            return target, 0.0
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=CACHE))
        try:
            _build(work)
            (work / "rootfs.tar").unlink()
            (work / "scripts").rename(work / "recipe")  # kept: what the image was made from
            work.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        seconds = time.monotonic() - started
    _prune(keep=target)
    return target, seconds


def _prune(*, keep: Path, age: float = 86400.0) -> None:
    """Remove other recipes' images and builds a killed session left, once a day old (another
    checkout may still use a recent one; a build in progress is younger)."""
    for entry in CACHE.iterdir():
        if entry != keep and entry.is_dir() and time.time() - entry.stat().st_mtime > age:
            shutil.rmtree(entry, ignore_errors=True)
            Path(f"{entry}.lock").unlink(missing_ok=True)


def _mmdebstrap(work: Path) -> Path:
    binary = support.require_binary("mmdebstrap", "mmdebstrap")
    scripts = work / "scripts"
    scripts.mkdir()
    (scripts / "e2e-postgres").write_text(POSTGRES_ENTRY)
    (scripts / "sources").write_text(sources())
    rootfs = work / "rootfs.tar"
    argv = [binary, "--mode=root", "--variant=essential", "--quiet", f"--include={','.join(PACKAGES)}"]
    argv += [f"--dpkgopt={option}" for option in DPKG_OPTIONS]
    argv += ['--aptopt=Acquire::Retries "3"']
    argv += [f"--customize-hook={hook}" for hook in CUSTOMIZE]
    argv += [SUITE, str(rootfs), str(scripts / "sources")]
    env = {**os.environ, "RECONCILER_E2E_SCRIPTS": str(scripts)}
    built = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
    if built.returncode != 0:
        raise AssertionError(f"mmdebstrap failed ({built.returncode}): {built.stderr[-3000:]}")
    return rootfs


def _gzip_layer(rootfs: Path, layout: Path) -> tuple[dict[str, object], str]:
    """The rootfs tar as a gzip blob of ``layout``: its descriptor and its diff id."""
    compressed, uncompressed = hashlib.sha256(), hashlib.sha256()
    partial = layout / "blobs" / "sha256" / "layer.partial"

    class Hashing(io.RawIOBase):
        def __init__(self, sink: io.BufferedWriter) -> None:
            self.sink = sink

        def writable(self) -> bool:
            return True

        def write(self, data: object) -> int:
            chunk = bytes(data)  # type: ignore[call-overload]
            compressed.update(chunk)
            return self.sink.write(chunk)

    # Level 1: the layer is built once per cache key and read locally; speed beats size here.
    with (
        rootfs.open("rb") as source,
        partial.open("wb") as sink,
        gzip.GzipFile(fileobj=Hashing(sink), mode="wb", compresslevel=1, mtime=0) as layer,
    ):
        while chunk := source.read(1 << 20):
            uncompressed.update(chunk)
            layer.write(chunk)
    size = partial.stat().st_size
    partial.rename(layout / "blobs" / "sha256" / compressed.hexdigest())
    descriptor = {"mediaType": images.MEDIA_LAYER["gzip"], "digest": "sha256:" + compressed.hexdigest(), "size": size}
    return descriptor, "sha256:" + uncompressed.hexdigest()


def _build(work: Path) -> None:
    rootfs = _mmdebstrap(work)
    layout = images.OciLayout(work)
    layer, diff_id = _gzip_layer(rootfs, work)
    config = {
        "architecture": _architecture(),
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": CONFIG,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": f"mmdebstrap {SUITE} {' '.join(PACKAGES)}"}],
    }
    config_descriptor = layout.add_blob(json.dumps(config, sort_keys=True).encode(), images.MEDIA_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": images.MEDIA_MANIFEST, "config": config_descriptor, "layers": [layer]}
    layout.tag(TAG, layout.add_blob(json.dumps(manifest, sort_keys=True).encode(), images.MEDIA_MANIFEST))


def _architecture() -> str:
    dpkg = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
    return dpkg.stdout.strip()


def archive(layout: Path, reference: str, dest: Path) -> Path:
    """The cached image as an OCI-layout tar whose one entry is named ``reference`` (``image load``)."""
    entry = dict(json.loads((layout / "index.json").read_text())["manifests"][0])
    entry["annotations"] = {images.REF_NAME: reference}
    index = json.dumps({"schemaVersion": 2, "mediaType": images.MEDIA_INDEX, "manifests": [entry]}).encode()
    with tarfile.open(dest, "w") as tar:
        tar.add(layout / "oci-layout", arcname="oci-layout")
        info = tarfile.TarInfo("index.json")
        info.size = len(index)
        tar.addfile(info, io.BytesIO(index))
        tar.add(layout / "blobs", arcname="blobs")
    return dest
