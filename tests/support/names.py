"""Unique names for the objects a test creates, and whether to keep them after a failure.

Every test that creates containers, networks or volumes names them with a prefix of its own
(``t`` + 6 hex digits + ``-``), so that tests running at the same time, or after an aborted run,
never share an object, and a cleanup fixture can remove exactly what one test made. The prefix is
a valid start of a DNS label, and ``prefix[1:5]`` is hex (some tests derive a port from it).

This module only makes names; removing objects is the job of each engine's cleanup fixture.
"""

from __future__ import annotations

import os
import secrets

import pytest


def unique_prefix() -> str:
    """A fresh name prefix, e.g. ``t3fa9c1-``."""
    return f"t{secrets.token_hex(3)}-"


def keep_after_failure(node: pytest.Item) -> bool:
    """Whether a test's objects stay for a post-mortem: it failed and ``KEEP_FAILED=1`` is set.

    Reads the call phase's report that the root ``conftest`` records on each item.
    """
    report = getattr(node, "rep_call", None)
    return report is not None and bool(report.failed) and os.environ.get("KEEP_FAILED") == "1"
