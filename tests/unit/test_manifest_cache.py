"""The loader's disk cache: a valid text's parse result is read back by a new process, never stale,
never from a folder another user could write, and bounded in size."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reconciler import errors, manifests
from reconciler.manifests import loader, positions

TEXT = textwrap.dedent("""\
    apiVersion: reconciler/v1
    kind: Container
    metadata: {name: web, stack: shop}
    spec:
      image: busybox
      command: [sleep, "3600"]
      env: {MODE: one}
    """)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache folder, and an empty in-memory cache (as in a new process)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(folder))
    loader.forget_parsed()
    return folder


def parses_counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each text the loader reads as YAML itself (a cache miss)."""
    calls: list[str] = []
    real = positions.documents

    def counting(text: str, file: str, diagnostics: list[errors.Diagnostic]) -> object:
        calls.append(file)
        return real(text, file, diagnostics)

    monkeypatch.setattr(positions, "documents", counting)
    return calls


def test_a_new_process_reads_a_valid_text_back_from_disk(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = manifests.load_text(TEXT, "/srv/shop.yaml")
    entries = list(cache.iterdir())
    assert len(entries) == 1
    assert (cache.stat().st_mode & 0o777, entries[0].stat().st_mode & 0o777) == (0o700, 0o600)
    loader.forget_parsed()
    calls = parses_counted(monkeypatch)
    again = manifests.load_text(TEXT, "/srv/shop.yaml")
    assert calls == []
    assert again.containers["web"].spec == first.containers["web"].spec
    assert again.containers["web"].source == first.containers["web"].source
    assert again.stacks == first.stacks == frozenset({"shop"})


def test_the_cache_is_read_by_another_process(cache: Path, tmp_path: Path) -> None:
    file = tmp_path / "shop.yaml"
    file.write_text(TEXT)
    manifests.load([str(file)])
    probe = (
        "import sys; from reconciler import manifests; from reconciler.manifests import positions\n"
        "def refuse(*args): raise SystemExit('parsed again')\n"
        "positions.documents = refuse\n"
        "print(manifests.load([sys.argv[1]]).containers['web'].spec.env['MODE'])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(file)], capture_output=True, text=True, check=False,
                          env={**os.environ, "RECONCILER_CACHE_DIR": str(cache)})  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "one"), done.stderr


def test_a_changed_text_or_file_name_is_parsed_again(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifests.load_text(TEXT, "/srv/shop.yaml")
    loader.forget_parsed()
    calls = parses_counted(monkeypatch)
    changed = manifests.load_text(TEXT.replace("MODE: one", "MODE: two"), "/srv/shop.yaml")
    moved = manifests.load_text(TEXT, "/srv/other.yaml")
    assert calls == ["/srv/shop.yaml", "/srv/other.yaml"]
    assert changed.containers["web"].spec.env == {"MODE": "two"}
    assert moved.containers["web"].source.file == "/srv/other.yaml"
    assert len(list(cache.iterdir())) == 3


def test_new_validating_code_never_reads_an_old_entry(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifests.load_text(TEXT, "/srv/shop.yaml")
    loader.forget_parsed()
    monkeypatch.setattr(loader, "code_fingerprint", lambda: b"another version of the models")
    calls = parses_counted(monkeypatch)
    manifests.load_text(TEXT, "/srv/shop.yaml")
    assert calls == ["/srv/shop.yaml"]


def test_a_text_with_mistakes_is_not_cached_and_is_reported_each_time(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = TEXT.replace("image: busybox", "image: ''")
    for _ in range(2):
        loader.forget_parsed()
        with pytest.raises(errors.ManifestError) as caught:
            manifests.load_text(broken, "/srv/shop.yaml")
        assert caught.value.diagnostics[0].file == "/srv/shop.yaml"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_folder_others_can_write_is_never_read(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifests.load_text(TEXT, "/srv/shop.yaml")
    cache.chmod(0o777)
    loader.forget_parsed()
    calls = parses_counted(monkeypatch)
    manifests.load_text(TEXT, "/srv/shop.yaml")
    assert calls == ["/srv/shop.yaml"]


def test_a_torn_or_planted_entry_is_a_miss_not_an_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifests.load_text(TEXT, "/srv/shop.yaml")
    (entry,) = cache.iterdir()
    entry.write_bytes(entry.read_bytes()[:100])
    loader.forget_parsed()
    assert manifests.load_text(TEXT, "/srv/shop.yaml").containers["web"].spec.env == {"MODE": "one"}
    target = cache.parent / "elsewhere"
    target.write_bytes(b"not a pickle")
    entry.unlink()
    entry.symlink_to(target)
    loader.forget_parsed()
    calls = parses_counted(monkeypatch)
    assert manifests.load_text(TEXT, "/srv/shop.yaml").containers["web"].spec.env == {"MODE": "one"}
    assert calls == ["/srv/shop.yaml"]


def test_the_oldest_entries_go_beyond_the_limit(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader.DiskCache, "MAX_ENTRIES", 3)
    for index in range(6):
        manifests.load_text(TEXT.replace("MODE: one", f"MODE: m{index}"), "/srv/shop.yaml")
        os.utime(max(cache.iterdir(), key=lambda p: p.stat().st_mtime_ns), ns=(index, index))
    assert len(list(cache.iterdir())) == 3
    loader.forget_parsed()
    calls = parses_counted(monkeypatch)
    manifests.load_text(TEXT.replace("MODE: one", "MODE: m5"), "/srv/shop.yaml")
    manifests.load_text(TEXT.replace("MODE: one", "MODE: m0"), "/srv/shop.yaml")
    assert calls == ["/srv/shop.yaml"]  # m5 is kept, m0 was the oldest


def test_an_empty_setting_turns_the_cache_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CACHE_DIR", "")
    assert loader.DiskCache.default() is None
    monkeypatch.delenv("RECONCILER_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    expected = (
        Path("/var/cache/reconciler/manifests") if os.geteuid() == 0 else tmp_path / ".cache/reconciler/manifests"
    )
    chosen = loader.DiskCache.default()
    assert chosen is not None and chosen.directory == expected
