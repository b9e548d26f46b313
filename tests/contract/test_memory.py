"""The in-memory engine runs the same contract suite as the real engines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.backends import memory
from tests.contract.suite import EngineContract

IMAGE = "127.0.0.1:5000/contract/busybox:1"


@pytest.fixture
def engine() -> Iterator[memory.MemoryEngine]:
    engine = memory.MemoryEngine(images={IMAGE: "sha256:" + "ab" * 32})
    yield engine
    engine.close()


@pytest.fixture
def image() -> str:
    return IMAGE


@pytest.fixture
def prefix() -> str:
    return "mem-"


class TestMemoryEngine(EngineContract):
    pass
