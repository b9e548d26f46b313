"""``scripts/install`` on Debian's own python3, then the installed command on the native engine.

The README's first command must work on a stock Debian 12, whose python3 refuses ``pip install``
(PEP 668) and has neither pytest nor the package's dependencies. The script runs here as a user
would, with Debian's ``/usr/bin/python3`` (``PYTHON``) and a PATH without this test run's python,
but into a temporary virtualenv, link folder and engine root (``RECONCILER_PREFIX``,
``RECONCILER_BINDIR``, ``RECONCILER_ROOT``), so the developer's own ``reconcile`` and
``/opt/reconciler`` are left alone. It runs twice (it must be safe to run again). The installed
command, started from ``/`` so that nothing of the checkout can be imported, then applies a stack
of the example image with a port published on 127.0.0.1, which answers, and deletes it; the
container's supervisor runs on the virtualenv's python (the package is not editable there: the
helpers must find it in site-packages).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.backends.native import mounts
from tests import support
from tests.support import images
from tests.support.polling import eventually

ROOT = Path(__file__).parents[2]
DEBIAN_PYTHON = Path("/usr/bin/python3")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def place(tmp_path: Path) -> Iterator[Path]:
    """A temporary folder for the virtualenv, the link and the engine root; whatever the engine
    left mounted there is unmounted before it goes."""
    yield tmp_path
    for rootfs in sorted((tmp_path / "root").glob("containers/*/rootfs")):
        if mounts.is_mounted(rootfs):
            mounts.unmount(rootfs, detach=True)
    shutil.rmtree(tmp_path, ignore_errors=True)


def clean_environment(place: Path) -> dict[str, str]:
    """What a root shell on Debian has, plus the user's pip settings (an index mirror, a proxy):
    none of this test run's python, its packages or the checkout."""
    passed = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k.lower().endswith("_proxy")}
    return {
        **passed,
        "PATH": SYSTEM_PATH,
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHON": str(DEBIAN_PYTHON),
        "RECONCILER_PREFIX": str(place / "venv"),
        "RECONCILER_BINDIR": str(place / "bin"),
        "RECONCILER_ROOT": str(place / "root"),
    }


def install(environment: dict[str, str]) -> float:
    """Run ``bash scripts/install``; its duration in seconds (reported, not asserted)."""
    started = time.monotonic()
    done = subprocess.run(["bash", str(ROOT / "scripts" / "install")], env=environment, cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, f"scripts/install failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return time.monotonic() - started


def stack(prefix: str, port: int) -> str:
    return f"""\
apiVersion: reconciler/v1
kind: Network
metadata: {{name: {prefix}net, stack: {prefix}stack}}
spec: {{driver: bridge}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {prefix}web, stack: {prefix}stack}}
spec:
  image: {images.LOCAL_BUSYBOX}
  command: [sh, -c, "echo 'hello from the install' > index.html && exec httpd -f -p 8080 -h /srv"]
  workingDir: /srv
  ports: [{{containerPort: 8080, hostPort: {port}, hostIP: 127.0.0.1}}]
  networks: [{{name: {prefix}net}}]
  stopTimeout: 0s
"""


def get(url: str) -> bytes:
    def fetch() -> bytes:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bytes(response.read())

    return eventually(fetch, what=f"an answer from {url}")


def helper_interpreters(root: Path) -> set[str]:
    """The pythons (argv[0]) of live ``python ... -m reconciler...`` processes whose command line
    names ``root``: the engine's supervisors and DNS servers of that root."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        modules = [words[i + 1] for i, word in enumerate(words[:-1]) if word == b"-m"]
        if any(m.startswith(b"reconciler.") for m in modules) and any(str(root).encode() in w for w in words):
            found.add(words[0].decode())
    return found


def reconcile(place: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The installed command, started from ``/`` in the clean environment."""
    return subprocess.run([str(place / "bin" / "reconcile"), *arguments], env=clean_environment(place), cwd="/",
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


@pytest.mark.integration
def test_install_on_debians_python_then_apply_from_outside_the_checkout(place: Path, prefix: str) -> None:
    support.require_root()
    if not DEBIAN_PYTHON.exists():
        pytest.fail(f"{DEBIAN_PYTHON} is missing: apt-get install -y python3-venv", pytrace=False)
    environment = clean_environment(place)
    first = install(environment)
    again = install(environment)
    print(f"scripts/install: {first:.1f}s the first time, {again:.1f}s again")

    venv = place / "venv"
    assert (place / "bin" / "reconcile").resolve() == (venv / "bin" / "reconcile").resolve()
    # Debian's python3, not the one running this test (which has pytest and the dependencies).
    assert (venv / "bin" / "python").resolve() == DEBIAN_PYTHON.resolve()
    assert list(venv.glob("lib/python3*/site-packages/reconciler/__init__.py")), "the package is not in site-packages"
    assert not list(venv.glob("lib/python3*/site-packages/__editable__*")), "the install must not be editable"
    assert list(venv.glob("lib/python3*/site-packages/reconciler/cli/__pycache__/*.pyc")), "no bytecode was written"

    port = 21000 + int(prefix[1:5], 16) % 20000
    manifest = place / "stack.yaml"
    manifest.write_text(stack(prefix, port))
    applied = reconcile(place, "apply", "-f", str(manifest))
    try:
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert get(f"http://127.0.0.1:{port}/") == b"hello from the install\n"
        assert helper_interpreters(place / "root") == {str(venv / "bin" / "python")}
    finally:
        deleted = reconcile(place, "delete", "--stack", f"{prefix}stack")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert not helper_interpreters(place / "root")


@pytest.mark.integration
def test_the_example_image_is_built_by_the_standard_library_alone(tmp_path: Path) -> None:
    """``scripts/demo_image.py`` on Debian's python3 with no site-packages at all (-S) and no
    environment (-I): the image it writes holds the very layer the tests' busybox images use."""
    support.require_binary("busybox", "busybox-static")
    tarball = tmp_path / "demo.tar"
    done = subprocess.run([str(DEBIAN_PYTHON), "-I", "-S", str(ROOT / "scripts" / "demo_image.py"), str(tarball)],
                          cwd="/", capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with tarfile.open(tarball) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        (entry,) = index["manifests"]
        assert entry["annotations"][images.REF_NAME] == images.LOCAL_BUSYBOX
        manifest = json.loads(tar.extractfile(f"blobs/sha256/{entry['digest'].split(':')[1]}").read())  # type: ignore[union-attr]
        (layer,) = manifest["layers"]
        blob = tar.extractfile(f"blobs/sha256/{layer['digest'].split(':')[1]}").read()  # type: ignore[union-attr]
    assert gzip.decompress(blob) == images.busybox_layer()
