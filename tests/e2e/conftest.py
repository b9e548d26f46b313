"""Fixtures of the end-to-end tests: a Debian image of real server software in each engine, a stack
folder rendered for the test, the fake upstream resolver, and the timings of each phase.

The image comes from ``tests.support.debian_images`` (built with mmdebstrap at the first run,
cached afterwards). The native engine gets it with ``reconcile image load`` into the test's own
root; dockerd gets it with ``docker load`` of a docker-archive that skopeo makes from the cached
layout, under a name of the cache key (kept in dockerd's store: it is the same cache). The test
drives the installed ``reconcile`` command (``tests.support.cli``) with ``--engine`` and a
private ``--root``, never a daemon.

Cleanup is by name: the stack is deleted with its volumes through the CLI, then whatever still
carries the test's prefix is removed through the engine (containers, networks, volumes), mounts
under the private root are undone, and the fake resolvers are stopped by their pid. A missing
prerequisite (root, mmdebstrap, skopeo, nsenter, dockerd) fails naming it, never skips.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from tests import support
from tests.e2e import fake_upstream
from tests.support import cli, debian_images, names
from tests.support import dockerd as dockerd_support

REPOSITORY = Path(__file__).resolve().parents[2]
STACK = Path(__file__).parent / "stack"
# The name both engines know the image by: no registry is involved (pullPolicy IfNotPresent).
IMAGE = f"reconciler-e2e.test/debian-stack:{debian_images.cache_key()}"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session", autouse=True)
def _prerequisites() -> None:
    support.require_root()
    for binary, package in (("mmdebstrap", "mmdebstrap"), ("skopeo", "skopeo"), ("nsenter", "util-linux"),
                            ("runc", "runc")):  # fmt: skip
        support.require_binary(binary, package)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The seconds each phase took (the image build is 0 when it came from the cache)."""
    if TIMINGS:
        terminalreporter.section("end-to-end timings (s)")
        for phase, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{phase:40} {seconds:7.1f}")


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        TIMINGS[phase] = time.monotonic() - started


@pytest.fixture(scope="session")
def debian_layout() -> Path:
    """The cached OCI layout of the Debian image (built now if this is the first run)."""
    layout, seconds = debian_images.cached_layout()
    TIMINGS["image build (0: cached)"] = seconds
    return layout


@dataclasses.dataclass
class Stack:
    """One engine's view of the test's stack: how to drive the CLI and what the stack is named."""

    engine: str
    workdir: Path  # the test's files: the native root, the rendered stack, the image archive
    prefix: str

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def name(self) -> str:
        return f"{self.prefix}stack"

    def reconcile(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return cli.reconcile(self.root, *args, engine=self.engine, timeout=timeout)

    def exec(self, container: str, script: str) -> subprocess.CompletedProcess[str]:
        """``reconcile exec PREFIXcontainer sh -c SCRIPT``."""
        return self.reconcile("exec", f"{self.prefix}{container}", "sh", "-c", script)


def render(directory: Path, *, prefix: str, dns: str, generation: int, password: str) -> Path:
    """The stack folder with its placeholders filled in, and the secret's file beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    values = {"PREFIX": prefix, "IMAGE": IMAGE, "DNS": dns, "GENERATION": str(generation)}
    for template in sorted(STACK.glob("*.yaml")):
        (directory / template.name).write_text(string.Template(template.read_text()).substitute(values))
    (directory / "secrets").mkdir(exist_ok=True)
    (directory / "secrets" / "db-password").write_text(password + "\n")
    return directory


def upstream_address(prefix: str) -> str:
    """A loopback address of the test's own (from its prefix's hex digits), never 127.0.0.11 (Docker's)."""
    digits = bytes.fromhex(prefix[1:7])
    return f"127.{digits[0]}.{digits[1]}.{min(max(digits[2], 20), 250)}"


@pytest.fixture
def host_upstream(prefix: str) -> Iterator[tuple[str, fake_upstream.Resolver]]:
    """The fake upstream in this process, on the test's loopback address (the host's namespace)."""
    address = upstream_address(prefix)
    server, resolver = fake_upstream.serve(address)
    yield address, resolver
    fake_upstream.stop(server)


def process_in_netns(netns: str) -> int:
    """The pid of a process in the network namespace ``net:[INODE]`` (as a container's exec saw it)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "net") == netns:
                    return int(entry.name)
    raise AssertionError(f"no process of this host is in {netns}")


@contextlib.contextmanager
def upstream_in(netns: str, address: str) -> Iterator[None]:
    """The fake upstream, run in the network namespace ``netns`` on ``address`` (stopped by its pid)."""
    pid = process_in_netns(netns)
    argv = ["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-m", "tests.e2e.fake_upstream", address]
    process = subprocess.Popen(argv, cwd=REPOSITORY, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise AssertionError(f"the fake upstream in {netns} did not start: {process.communicate()[1][-2000:]}")
        yield
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=10)


# ---------------------------------------------------------------------------------------------
# The engines


def _load_native(root: Path, layout: Path, workdir: Path) -> None:
    archive = debian_images.archive(layout, IMAGE, workdir / "debian-stack.tar")
    loaded = cli.reconcile(root, "image", "load", str(archive), timeout=600)
    archive.unlink()
    assert loaded.returncode == 0, f"reconcile image load failed: {loaded.stderr}"


def _cleanup_native(root: Path, prefix: str) -> None:
    from reconciler.backends.native import engine as native_engine
    from reconciler.backends.native import mounts

    engine = native_engine.NativeEngine(root)
    try:
        for name in sorted(engine.observe().containers):
            if name.startswith(prefix):
                engine.remove_container(name)
        for network in engine.networks.all():
            if network.name.startswith(prefix) or network.name == native_engine.DEFAULT_NETWORK:
                engine.remove_network(network.name)
        for name in sorted(engine.observe().volumes):
            if name.startswith(prefix):
                engine.remove_volume(name)
    finally:
        engine.close()
    for rootfs in sorted(root.glob("containers/*/rootfs")):
        if mounts.is_mounted(rootfs):
            mounts.unmount(rootfs, detach=True)
    shutil.rmtree(root, ignore_errors=True)


def _load_docker(client: docker.DockerClient, layout: Path, workdir: Path) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(IMAGE)
        return
    archive = workdir / "debian-stack.docker.tar"
    skopeo = support.require_binary("skopeo", "skopeo")
    copied = subprocess.run([skopeo, "--insecure-policy", "copy", "--quiet", f"oci:{layout}:{debian_images.TAG}",
                             f"docker-archive:{archive}:{IMAGE}"], capture_output=True, text=True, timeout=600,
                            check=False)  # fmt: skip
    assert copied.returncode == 0, f"skopeo copy to a docker-archive failed: {copied.stderr}"
    with archive.open("rb") as data:
        for _ in client.api.load_image(data):
            pass
    archive.unlink()
    client.images.get(IMAGE)
    # Images of older recipes are the cache's past: dockerd keeps only the current one (unless in use).
    repository = IMAGE.rsplit(":", 1)[0]
    for image in client.images.list(name=repository):
        for tag in image.tags:
            if tag != IMAGE:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag)


@pytest.fixture(params=["native", "docker"])
def stack(request: pytest.FixtureRequest, debian_layout: Path, prefix: str) -> Iterator[Stack]:
    """The engine (native or docker) with the Debian image in it; the stack is removed afterwards.

    Its files are not under pytest's ``tmp_path``: a concurrent pytest session prunes other
    sessions' old base directories, which would take a running engine's state away.
    """
    engine = str(request.param)
    made = Stack(engine, Path(tempfile.mkdtemp(prefix=f"reconciler-e2e-{prefix}", dir="/var/tmp")), prefix)
    client: docker.DockerClient | None = None
    with timed(f"{engine}: image into the engine"):
        if engine == "docker":
            dockerd_support.ensure_running("the end-to-end tests")
            client = docker.from_env(version="auto", timeout=300)
            _load_docker(client, debian_layout, made.workdir)
        else:
            _load_native(made.root, debian_layout, made.workdir)
    yield made
    if names.keep_after_failure(request.node):
        return
    with timed(f"{engine}: delete"):
        made.reconcile("delete", "--stack", made.name, "--prune-volumes")
        if client is not None:
            dockerd_support.remove_named(client, prefix)
            client.close()
        else:
            _cleanup_native(made.root, prefix)
    shutil.rmtree(made.workdir, ignore_errors=True)
