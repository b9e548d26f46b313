"""The one state writer makes new directories durable: each directory it creates has its parent
fsynced, so a durably written file never vanishes with its directory's entry after a power cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import files


def test_new_directories_are_fsynced_into_their_parents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = files._fsync_directory
    monkeypatch.setattr(files, "_fsync_directory", lambda directory: (synced.append(directory), real(directory)))
    files.write_json(tmp_path / "a" / "b" / "state.json", {"ok": True})
    assert synced == [str(tmp_path), str(tmp_path / "a"), str(tmp_path / "a" / "b")]
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700
