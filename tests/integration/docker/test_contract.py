"""The Docker backend passes the same engine contract suite as the in-memory fake."""

from __future__ import annotations

import pytest

from tests.contract.suite import EngineContract

pytestmark = pytest.mark.integration


class TestDockerEngine(EngineContract):
    """Fixtures ``engine``, ``image`` and ``prefix`` come from this folder's conftest."""
