"""A controller announces itself for its root (``presence``): the native engine's restarters ask
it whether a live controller manages a stack; a second controller of the root is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler import presence


def test_a_live_controller_manages_its_stacks_only(tmp_path: Path) -> None:
    stacks = tmp_path / "state" / "stacks.json"
    stacks.parent.mkdir()
    stacks.write_text(json.dumps({"folder": "/srv", "stacks": ["shop"]}))
    assert not presence.manages(tmp_path, "shop"), "nobody announced"
    with presence.announced(tmp_path, stacks):
        assert presence.manages(tmp_path, "shop")
        assert not presence.manages(tmp_path, "other")
        with pytest.raises(BlockingIOError), presence.announced(tmp_path, stacks):
            pass
    assert not presence.manages(tmp_path, "shop"), "gone with its process's lock"


def test_unsure_means_it_manages(tmp_path: Path) -> None:
    with presence.announced(tmp_path, tmp_path / "missing.json"):
        assert presence.manages(tmp_path, "shop")
