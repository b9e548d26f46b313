"""The folder watcher: editor artefacts ignored, per-path debounce (leading edge, rate-limited)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import sources, watching
from tests.support.polling import eventually


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("name", "wanted"),
    [
        ("shop.yaml", True), ("shop.yml", True), (".shop.yaml", False), ("shop.yaml~", False),
        (".shop.yaml.swp", False), ("shop.yaml.swx", False), ("4913", False), ("shop.yaml.bak", False),
        ("shop.yaml.tmp", False), ("#shop.yaml#", False), ("shop.json", False), ("x.tmp.yaml", True),
    ],
)  # fmt: skip
def test_manifest_names(name: str, wanted: bool) -> None:
    assert sources.is_manifest_name(name) is wanted


def test_a_burst_is_one_callback_after_it_settles_then_rate_limited_per_path() -> None:
    clock = _Clock()
    calls: list[tuple[float, str]] = []
    debouncer = watching.Debouncer(lambda key: calls.append((clock.now, key)), delay=0.5, settle=0.05, clock=clock)
    for step in range(5):  # an editor's write, rename, chmod ... 10 ms apart
        clock.now = step * 0.01
        debouncer.touch("a.yaml")
    clock.now = 0.08
    debouncer.poll()
    assert calls == []
    clock.now = 0.09
    debouncer.poll()
    assert calls == [(0.09, "a.yaml")], "the first save is seen ~50 ms after the burst"
    clock.now = 0.2
    debouncer.touch("a.yaml")
    debouncer.touch("b.yaml")
    clock.now = 0.3
    debouncer.poll()
    assert calls[-1] == (0.3, "b.yaml"), "debounce is per path"
    clock.now = 0.58
    debouncer.poll()
    assert len(calls) == 2
    clock.now = 0.59
    debouncer.poll()
    assert calls[-1] == (0.59, "a.yaml"), "a second burst waits for the 500 ms interval"


def test_the_watcher_calls_back_for_manifests_only(tmp_path: Path) -> None:
    seen: list[str] = []

    def callback(path: str) -> None:
        seen.append(Path(path).name)

    watcher = watching.FolderWatcher(tmp_path, callback, debounce=0.1)
    watcher.start()
    try:
        for name in (".shop.yaml.swp", "shop.yaml~", "4913", "#shop.yaml#", "notes.txt"):
            (tmp_path / name).write_text("x")
        temporary = tmp_path / ".shop.yaml.tmp"
        temporary.write_text("kind: Container\n")
        temporary.rename(tmp_path / "shop.yaml")  # an atomic save
        eventually(lambda: "shop.yaml" in seen, timeout=5.0, what="the save's callback")
        # A manifest written after everything else: its callback comes after any the artefacts
        # could have caused (events arrive in order, and each path settles equally long).
        (tmp_path / "zz-last.yaml").write_text("kind: Container\n")
        eventually(lambda: "zz-last.yaml" in seen, timeout=5.0, what="the last file's callback")
    finally:
        watcher.stop()
    assert seen == ["shop.yaml", "zz-last.yaml"]
