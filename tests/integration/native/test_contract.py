"""The native engine runs the same engine contract suite as the docker and in-memory engines."""

from __future__ import annotations

from tests.contract import suite


class TestNativeEngine(suite.EngineContract):
    pass
