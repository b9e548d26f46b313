"""The in-memory engine runs the same contract suite as the real engines.

It runs nothing, so its fixture tells it what the suite's scripts do (their output and exit
code, written next to their commands in the suite); everything else it must get right itself.
The ``prefix`` fixture is the root one: nothing outlives the engine, so there is nothing to clean.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.backends import memory
from tests.contract import suite

IMAGE = "127.0.0.1:5000/contract/busybox:1"


@pytest.fixture
def engine() -> Iterator[memory.MemoryEngine]:
    programs = {script.argv: memory.Program(script.output, script.exit_code) for script in suite.SCRIPTS}
    engine = memory.MemoryEngine(images={IMAGE: "sha256:" + "ab" * 32}, programs=programs)
    yield engine
    engine.close()


@pytest.fixture
def image() -> str:
    return IMAGE


class TestMemoryEngine(suite.EngineContract):
    pass
