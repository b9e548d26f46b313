"""Reusable test helpers, shared by every test folder.

``polling`` (the one way to wait for a condition), ``names`` (the unique name prefix of a test's
objects), ``images`` (image builders), ``registry`` (the one local-registry launcher) and
``dockerd`` (a running Docker daemon). A missing prerequisite (a binary, root)
is a test *failure* naming what is missing (``require_binary``/``require_root``), never a skip:
CI must install everything the tests need.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str, package: str) -> str:
    """The path of ``name``; fails the test naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install -y {package}", pytrace=False)
    return path


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (mknod, overlay mounts, chown)", pytrace=False)
