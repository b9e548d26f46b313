"""Benchmark: a cold pull of a ~300 MB three-layer image from a local registry.

    python bench/pull.py [--size-mb 300] [--workdir DIR] [--keep]

Builds (and caches) a three-layer OCI image: incompressible random bytes, compressible text, and
a mix of many small files; pushes it to a fresh plain-HTTP ``docker-registry`` on 127.0.0.1; then
measures, in the same run:

- ``ImageStore.pull`` into an empty store (download + verify + unpack into snapshots);
- ``skopeo copy docker://… dir:…`` (download + verify only: a lower bound on work);
- ``docker pull`` when a dockerd is running (says so when not);
- the machine's limit: sha256 of the compressed bytes + gunzip + sha256 of the uncompressed
  bytes, single-threaded in this process, on the same layer files.

Throughput is compressed bytes pulled per second of wall time; ratios compare with ours.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.backends.native import images as native_images  # noqa: E402
from reconciler.backends.native import registry as native_registry  # noqa: E402
from tests.support import images, registry  # noqa: E402

MB = 1_000_000


def _text_file(path: Path, size: int) -> Path:
    """Compressible text (log-like lines with varying numbers), about 6:1 with gzip."""
    words = [b"GET", b"POST", b"/api/v1/items", b"/static/app.js", b"200", b"404", b"user-agent", b"curl/8.0"]
    with path.open("wb") as handle:
        written, n = 0, 0
        while written < size:
            lines = []
            for _ in range(4096):
                n += 1
                lines.append(b"%d %s %s %d %s\n" % (n, words[n % 8], words[(n * 7) % 8], n * 31 % 100000, words[(n * 3) % 8]))
            block = b"".join(lines)[: size - written]
            handle.write(block)
            written += len(block)
    return path


def build(workdir: Path, size_mb: int) -> tuple[images.OciLayout, int, int]:
    """The bench image (cached by size); returns the layout and compressed/uncompressed bytes."""
    layout_dir = workdir / f"oci-{size_mb}"
    marker = layout_dir / "built.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        return images.OciLayout.open(layout_dir), info["compressed"], info["uncompressed"]
    shutil.rmtree(layout_dir, ignore_errors=True)
    scratch = workdir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    total = size_mb * MB
    random_part = images.random_file(scratch / "random.bin", int(total * 0.4))
    text_part = _text_file(scratch / "text.log", int(total * 0.4))
    small = images.TarBuilder().dir("usr").dir("usr/share")
    remaining, i = int(total * 0.2), 0
    while remaining > 0:
        size = min(remaining, 4096 + (i * 7919) % 60000)
        data = (hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1))[:size] if i % 2 else os.urandom(size)
        small.file(f"usr/share/f{i:06d}", data)
        remaining -= size
        i += 1
    tars = [
        images.TarBuilder().dir("data").big_file("data/random.bin", random_part).build(),
        images.TarBuilder().dir("var").dir("var/log").big_file("var/log/text.log", text_part).build(),
        small.build(),
    ]
    layout = images.OciLayout(layout_dir)
    built = layout.add_image(tars, compression="gzip")
    layout.tag("bench", built.descriptor)
    compressed = sum(layout.blob_path(d).stat().st_size for d in built.layer_digests)
    uncompressed = sum(len(t) for t in tars)
    marker.write_text(json.dumps({"compressed": compressed, "uncompressed": uncompressed, "layers": list(built.layer_digests)}))
    shutil.rmtree(scratch)
    return layout, compressed, uncompressed


def machine_limit(layout_dir: Path) -> tuple[float, int]:
    """Seconds for sha256(compressed) + gunzip + sha256(uncompressed) of every layer, one thread."""
    layer_digests = json.loads((layout_dir / "built.json").read_text())["layers"]
    start = time.perf_counter()
    compressed = 0
    for digest in layer_digests:
        outer, inner = hashlib.sha256(), hashlib.sha256()
        decompressor = zlib.decompressobj(wbits=31)
        with (layout_dir / "blobs/sha256" / digest.split(":")[1]).open("rb") as handle:
            while chunk := handle.read(1 << 20):
                compressed += len(chunk)
                outer.update(chunk)
                inner.update(decompressor.decompress(chunk))
        inner.update(decompressor.flush())
    return time.perf_counter() - start, compressed


def drop_caches_note() -> str:
    return "page cache not dropped: the registry's files are warm for every contender alike"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "reconciler-bench")
    parser.add_argument("--keep", action="store_true", help="keep the registry data and stores")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/pull.py needs root (snapshots keep owners and device nodes)", file=sys.stderr)
        return 1
    for binary, package in (("docker-registry", "docker-registry"), ("skopeo", "skopeo")):
        if shutil.which(binary) is None:
            print(f"{binary} is not installed: apt-get install -y {package}", file=sys.stderr)
            return 1
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    layout, compressed, uncompressed = build(args.workdir, args.size_mb)
    layout_dir = layout.path
    print(f"image: 3 layers, {uncompressed / MB:.0f} MB uncompressed, {compressed / MB:.0f} MB gzip "
          f"(built/cached in {time.perf_counter() - t0:.1f}s)")  # fmt: skip

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=args.workdir))
    results: dict[str, float] = {}
    reg = registry.start_plain(run_dir / "registry")
    try:
        reg.push(layout, "bench", "bench/big:1", all_platforms=False)
        ref = reg.ref("bench/big:1")

        store = native_images.ImageStore(
            run_dir / "store", registry_config=native_registry.RegistryConfig(docker_config=Path("/nonexistent"))
        )
        start = time.perf_counter()
        store.pull(ref, policy="Always")
        results["reconciler ImageStore.pull (download+verify+unpack)"] = time.perf_counter() - start

        start = time.perf_counter()
        subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                        f"docker://{ref}", f"dir:{run_dir / 'skopeo'}"], check=True)  # fmt: skip
        results["skopeo copy to dir: (download+verify only)"] = time.perf_counter() - start

        docker = shutil.which("docker")
        alive = docker is not None and subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0
        if alive:
            assert docker is not None
            subprocess.run([docker, "rmi", "-f", ref], capture_output=True, check=False)
            start = time.perf_counter()
            subprocess.run([docker, "pull", "-q", ref], check=True, capture_output=True)
            results["docker pull (download+verify+unpack)"] = time.perf_counter() - start
            subprocess.run([docker, "rmi", "-f", ref], capture_output=True, check=False)
        else:
            print("docker pull: skipped, dockerd is not running (start it to compare against docker)")

        limit_seconds, _ = machine_limit(layout_dir)
        results["machine limit: sha256 + gunzip + sha256, 1 thread"] = limit_seconds
    finally:
        reg.stop()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)

    ours = results["reconciler ImageStore.pull (download+verify+unpack)"]
    print(f"\n{'contender':<55} {'seconds':>8} {'MB/s':>8} {'ours vs':>8}")
    for name, seconds in results.items():
        rate = compressed / MB / seconds
        print(f"{name:<55} {seconds:8.2f} {rate:8.1f} {seconds / ours:7.2f}x")
    docker_name = "docker pull (download+verify+unpack)"
    if docker_name in results:
        verdict = "met" if results[docker_name] / ours >= 2 else "NOT met"
        print(f"\ntarget >= 2x docker pull throughput: {verdict} ({results[docker_name] / ours:.2f}x)")
    print(f"MB/s = compressed MB / wall seconds; uncompressed MB/s for ours: {uncompressed / MB / ours:.1f}")
    print(drop_caches_note())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
