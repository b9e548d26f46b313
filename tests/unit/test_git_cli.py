"""``reconcile watch --git``'s options (issue 14, points 1-3): parsed by the real parser, checked
together by ``cli.gitops``; a secret's file is never echoed in an error."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.cli import entry, gitops
from tests.support import git as git_support


def parsed(*argv: str) -> argparse.Namespace:
    words = ["--root", "/tmp/unused-root", "watch", *argv]
    return entry.build_parser(words).parse_args(words)


def secret_file(tmp_path: Path, name: str, data: bytes, mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    path.chmod(mode)
    return str(path)


@pytest.fixture
def bare(tmp_path: Path) -> str:
    git_support.require_git()
    return str(git_support.Upstream(tmp_path / "upstream").bare)


def test_a_git_source_is_built_under_the_state_folder(tmp_path: Path, bare: str) -> None:
    secret = secret_file(tmp_path, "hook", b"0123456789abcdef0123\n")
    args = parsed("--git", bare, "--branch", "prod", "--path", "deploy/site", "--interval", "1m30s",
                  "--webhook-secret-file", secret)  # fmt: skip
    folder, source = gitops.folder_and_source(args, tmp_path / "state")
    assert source is not None
    assert folder == tmp_path / "state" / "git" / "live" / "app" / "deploy" / "site"
    assert folder.is_dir()
    settings = source.settings
    assert (settings.remote.branch, settings.remote.path, settings.interval) == ("prod", "deploy/site", 90.0)
    hook = gitops.hook(args, source)
    assert hook is not None and hook.secret == b"0123456789abcdef0123"


def test_a_folder_still_works_and_git_options_need_git(tmp_path: Path) -> None:
    folder, source = gitops.folder_and_source(parsed(str(tmp_path)), tmp_path / "state")
    assert (folder, source) == (tmp_path.resolve(), None)
    with pytest.raises(errors.ReconcilerError, match="--branch, --require-signed: only with --git URL"):
        gitops.folder_and_source(parsed(str(tmp_path), "--branch", "x", "--require-signed"), tmp_path / "state")
    with pytest.raises(errors.ReconcilerError, match="a folder .DIR. or a repository"):
        gitops.folder_and_source(parsed(), tmp_path / "state")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--require-signed",), "--require-signed needs one of --allowed-signers FILE"),
        (("--allowed-signers", "/etc/hostname"), "only with --require-signed"),
        (("--require-signed", "--allowed-signers", "/nonexistent"), "--allowed-signers /nonexistent: no such file"),
        (("--interval", "soon"), "--interval: 'soon' is not a duration"),
        (("--interval", "100ms"), "--interval: at least 1s"),
        (("--branch", "a b"), "is not a branch name"),
    ],
)
def test_option_problems_are_named(tmp_path: Path, bare: str, extra: tuple[str, ...], message: str) -> None:
    with pytest.raises(errors.ReconcilerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        gitops.folder_and_source(parsed("--git", bare, *extra), tmp_path / "state")


def test_a_folder_and_git_at_once_is_refused(tmp_path: Path, bare: str) -> None:
    with pytest.raises(errors.ReconcilerError, match="not both"):
        gitops.folder_and_source(parsed(str(tmp_path), "--git", bare), tmp_path / "state")


def test_secret_files_are_checked_and_never_echoed(tmp_path: Path, bare: str, caplog: pytest.LogCaptureFixture) -> None:
    two_lines = secret_file(tmp_path, "token", b"first-SECRET\nsecond-SECRET\n")
    with pytest.raises(errors.ReconcilerError) as raised:
        gitops.folder_and_source(parsed("--git", "https://example.test/app.git", "--token-file", two_lines),
                                 tmp_path / "state")  # fmt: skip
    assert "must hold one line" in str(raised.value) and "SECRET" not in str(raised.value)
    short = secret_file(tmp_path, "hook", b"short-SECRET")
    with pytest.raises(errors.ReconcilerError) as raised:
        gitops.folder_and_source(parsed("--git", bare, "--webhook-secret-file", short), tmp_path / "state")
    assert "fewer than 16 bytes" in str(raised.value) and "SECRET" not in str(raised.value)
    readable = secret_file(tmp_path, "readable", b"a-token-that-others-can-read", mode=0o644)
    gitops.folder_and_source(parsed("--git", "https://example.test/app.git", "--token-file", readable),
                             tmp_path / "state")  # fmt: skip
    assert "may be read by other users (mode 644)" in caplog.text and "others-can-read" not in caplog.text
    with pytest.raises(errors.ReconcilerError, match="only sent over https"):
        gitops.folder_and_source(parsed("--git", "http://example.test/app.git", "--token-file", readable),
                                 tmp_path / "state")  # fmt: skip
