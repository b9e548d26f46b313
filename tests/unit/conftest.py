"""Unit tests never touch the host's default state root: each test gets a private one.

A CLI test on the memory engine still writes under the root (stack locks, stopped-on-purpose
records), and the root also decides which daemon socket the CLI asks; a private root per test
keeps both away from ``/var/lib/reconciler`` and from any daemon running on this machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path_factory.mktemp("root")
    monkeypatch.setenv("RECONCILER_ROOT", str(root))
    return root
