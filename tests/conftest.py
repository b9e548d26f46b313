"""Fixtures and hooks every test folder shares: the unique name prefix and each phase's report.

Engine-specific folders override ``prefix`` with a fixture of the same name that asks for this
one and removes, when the test ends, whatever the test created under it (through the engine's
own client). This file must not know any engine.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.support import names


@pytest.fixture
def prefix() -> str:
    """A unique name prefix for the objects this test creates (see ``tests.support.names``)."""
    return names.unique_prefix()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Record each phase's report on the item, so a cleanup fixture can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
