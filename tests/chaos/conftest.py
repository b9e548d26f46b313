"""Fixtures of the chaos suite: a fixed seed, the real CLI on a private root, and leak sweeping.

The suite breaks the native engine on purpose (kill -9 of ``apply`` and ``watch``, registry
faults, a full filesystem) and checks that it converges afterwards and leaks nothing. Every
random choice comes from one ``random.Random`` seeded with :data:`DEFAULT_SEED` (or ``CHAOS_SEED``
from the environment, to replay another run); the seed is printed at the end of the run and in
every failure message. Real parts only, as the native integration tests: runc, overlayfs,
netns, iptables, Debian's docker-registry. Each test works in its own root, and its
:class:`leftovers.Traces` sweeps whatever the engine left, by name and id, when the test ends.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests import support
from tests.chaos import leftovers
from tests.support import images

REPO = Path(__file__).parents[2]
DEFAULT_SEED = 1010
CLI_TIMEOUT = 180.0


def chaos_seed() -> int:
    return int(os.environ.get("CHAOS_SEED", DEFAULT_SEED))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(f"chaos suite seed: {chaos_seed()} (replay with CHAOS_SEED={chaos_seed()})")


@pytest.fixture(scope="session", autouse=True)
def _prerequisites() -> None:
    support.require_root()
    for binary, package in (("runc", "runc"), ("conmon", "conmon"), ("docker-registry", "docker-registry"),
                            ("skopeo", "skopeo"), ("busybox", "busybox-static"), ("iptables", "iptables"),
                            ("ip", "iproute2")):  # fmt: skip
        support.require_binary(binary, package)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """This test's random source: the suite's seed and the test's name, so tests don't share a stream."""
    seed = chaos_seed()
    print(f"chaos seed {seed} for {request.node.name}")
    return random.Random(f"{seed}:{request.node.name}")


def cli(root: Path, *args: str, socket: str = "none") -> list[str]:
    """The real CLI (as the console script runs it) on the private ``root``."""
    return [sys.executable, "-m", "reconciler.cli", "--engine", "native", "--root", str(root), "--socket", socket,
            *args]  # fmt: skip


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), cwd=REPO, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv[3:])} exited {done.returncode} (chaos seed {chaos_seed()}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def load_busybox(root: Path, scratch: Path) -> None:
    """Busybox as :data:`images.LOCAL_BUSYBOX` in ``root``: no registry needed."""
    layout = images.OciLayout(scratch / "oci")
    images.busybox_image(layout, images.LOCAL_BUSYBOX)
    native_engine.NativeEngine(root).image_store.load(layout.tarball(scratch / "image.tar"))


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A private state root (removed at the end, after :func:`traces` swept what it left)."""
    state = tmp_path / "root"
    yield state
    leftovers.remove_tree(state)


@pytest.fixture
def traces(root: Path) -> Iterator[leftovers.Traces]:
    """What the test's root put on the host; swept by name and id when the test ends, whatever
    the engine left (the test notes ids while it runs, so even removed records are covered)."""
    found = leftovers.Traces(root)
    yield found
    found.sweep()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path, for unix sockets (at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rcchaos-", dir="/tmp"))
    yield path
    leftovers.remove_tree(path)
