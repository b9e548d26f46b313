"""The git plumbing of the git source (issue 14, points 1 and 3), against real git: a private
mirror fetched from a bare path, ``git http-backend`` with a token, a stand-in ``ssh`` that shows
what ssh is given; signatures made by ssh-keygen and gpg keys the test creates."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import gitrepo
from tests.support import git as git_support
from tests.support.polling import eventually

pytestmark = pytest.mark.usefixtures("_git")


@pytest.fixture
def _git() -> None:
    git_support.require_git()


@pytest.fixture
def upstream(tmp_path: Path) -> git_support.Upstream:
    return git_support.Upstream(tmp_path / "upstream")


@pytest.fixture
def gpg(tmp_path: Path) -> Iterator[git_support.GpgSigner]:
    signer = git_support.GpgSigner(tmp_path)
    yield signer
    signer.stop()


def mirror(tmp_path: Path, url: str, **options: object) -> gitrepo.Repository:
    remote = gitrepo.Remote(url, **options)  # type: ignore[arg-type]
    assert gitrepo.problems(remote) == []
    return gitrepo.Repository(tmp_path / "mirror", remote)


def test_the_tip_of_a_bare_path_is_fetched_and_its_folder_written_privately(
    tmp_path: Path, upstream: git_support.Upstream
) -> None:
    upstream.write("deploy/web.yaml", "kind: Container\n")
    upstream.write("deploy/nested/more.yaml", "kind: Network\n")
    upstream.write("elsewhere.yaml", "not: in the folder\n")
    os.symlink("/etc/shadow", upstream.work / "deploy" / "secret.yaml")
    sha = upstream.commit("first")
    repository = mirror(tmp_path, str(upstream.bare), path="deploy")

    assert repository.fetch() == sha
    assert repository.describe(sha).subject == "first"
    folder = repository.checkout(sha, tmp_path / "tree")

    assert folder == tmp_path / "tree" / "deploy"
    assert (folder / "web.yaml").read_text() == "kind: Container\n"
    assert (folder / "nested" / "more.yaml").exists()
    assert not (tmp_path / "tree" / "elsewhere.yaml").exists(), "only --path is written"
    # A committed symlink is written as a file holding the link's text: nothing is read through it.
    assert not (folder / "secret.yaml").is_symlink()
    assert (folder / "secret.yaml").read_text() == "/etc/shadow"
    for path in [tmp_path / "tree", folder, folder / "web.yaml", tmp_path / "mirror"]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is private"


def test_a_commit_without_the_folder_is_an_error_not_an_empty_folder(
    tmp_path: Path, upstream: git_support.Upstream
) -> None:
    upstream.write("other/web.yaml", "kind: Container\n")
    sha = upstream.commit("no deploy folder")
    repository = mirror(tmp_path, str(upstream.bare), path="deploy")
    repository.fetch()
    with pytest.raises(gitrepo.GitError, match=f"commit {sha[:12]} has no folder deploy"):
        repository.checkout(sha, tmp_path / "tree")


def test_a_branch_that_does_not_exist_fails_the_fetch_with_gits_reason(
    tmp_path: Path, upstream: git_support.Upstream
) -> None:
    upstream.commit("first")
    repository = mirror(tmp_path, str(upstream.bare), branch="release")
    with pytest.raises(gitrepo.GitError, match="git fetch failed: .*release"):
        repository.fetch()


@pytest.mark.parametrize(
    ("remote", "problem"),
    [
        (gitrepo.Remote("https://user:hunter2@example.test/app.git"), "holds a password"),
        (gitrepo.Remote("ext::sh -c touch% /tmp/owned"), "not a repository URL"),
        (gitrepo.Remote("ext::true"), "only https, http, ssh, git, file"),
        (gitrepo.Remote("-uhelp"), "not a repository URL"),
        (gitrepo.Remote("relative/app.git"), "relative path is ambiguous"),
        (gitrepo.Remote("http://example.test/app.git", token="t0ken"), "only sent over https"),
        (gitrepo.Remote("git://example.test/app.git", token="t0ken"), "only sent over https"),
        (gitrepo.Remote("/srv/app.git", branch="a..b"), "--branch 'a..b' is not a branch name"),
        (gitrepo.Remote("/srv/app.git", branch="-x"), "is not a branch name"),
        (gitrepo.Remote("/srv/app.git", path="../etc"), "must be a folder inside the repository"),
        (gitrepo.Remote("/srv/app.git", path="/etc"), "must be a folder inside the repository"),
        (gitrepo.Remote("/srv/app.git", ssh_key=Path("/nonexistent/key")), "no such file"),
    ],
)
def test_remotes_that_are_refused_say_why(remote: gitrepo.Remote, problem: str) -> None:
    found = gitrepo.problems(remote)
    assert any(problem in line for line in found), found
    assert not any("hunter2" in line for line in found), "a password is never echoed"


@pytest.mark.parametrize(
    "url",
    ["https://example.test/app.git", "ssh://git@example.test/app.git", "git@example.test:org/app.git",
     "git://127.0.0.1/app.git", "file:///srv/app.git", "/srv/app.git"],
)  # fmt: skip
def test_usual_remotes_are_accepted(url: str) -> None:
    assert gitrepo.problems(gitrepo.Remote(url)) == []


def test_ssh_signatures_count_only_for_allowed_keys(tmp_path: Path, upstream: git_support.Upstream) -> None:
    allowed_key, allowed = git_support.ssh_signer(tmp_path, "deployer")
    other_key, _ = git_support.ssh_signer(tmp_path, "stranger")
    signers = gitrepo.Signers("ssh", allowed)
    repository = mirror(tmp_path, str(upstream.bare))

    good = upstream.commit("signed by the deployer", sign=git_support.ssh_signing(allowed_key))
    assert repository.fetch() == good
    assert repository.unverified(good, signers) is None

    stranger = upstream.commit("signed by a stranger", sign=git_support.ssh_signing(other_key))
    repository.fetch()
    assert repository.unverified(stranger, signers) == f"signed by a key that is not in {allowed}"

    unsigned = upstream.commit("not signed")
    repository.fetch()
    assert repository.unverified(unsigned, signers) == "the commit is not signed"

    # The deployer's signature over another commit's content: a bad signature.
    forged = upstream.push_object(upstream.raw(good).replace(b"signed by the deployer", b"signed by the deployer!"))
    assert repository.fetch() == forged
    assert repository.unverified(forged, signers) == "the signature does not match the commit (bad signature)"


def test_gpg_signatures_count_only_for_keys_of_the_keyring(
    tmp_path: Path, upstream: git_support.Upstream, gpg: git_support.GpgSigner
) -> None:
    stranger = git_support.GpgSigner(tmp_path, "stranger")
    try:
        signers = gitrepo.Signers("gpg", gpg.keyring)
        repository = mirror(tmp_path, str(upstream.bare))
        good = upstream.commit("signed", sign=gpg.signing(), env=gpg.env)
        assert repository.fetch() == good
        assert repository.unverified(good, signers) is None
        other = upstream.commit("signed by a stranger", sign=stranger.signing(), env=stranger.env)
        repository.fetch()
        assert repository.unverified(other, signers) == f"signed by a key that is not in {gpg.keyring}"
        unsigned = upstream.commit("not signed")
        repository.fetch()
        assert repository.unverified(unsigned, signers) == "the commit is not signed"
        # An ssh-signed commit does not pass for a gpg one.
        ssh_key, _ = git_support.ssh_signer(tmp_path, "sshkey")
        ssh_signed = upstream.commit("ssh-signed", sign=git_support.ssh_signing(ssh_key))
        repository.fetch()
        assert repository.unverified(ssh_signed, signers) is not None
    finally:
        stranger.stop()


def test_a_token_goes_to_git_in_its_environment_and_to_the_server_as_basic_auth(
    tmp_path: Path, upstream: git_support.Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = upstream.commit("first")
    backend = git_support.HttpBackend(upstream.bare.parent, "x-access-token", "s3cr3t-t0ken")
    started: list[list[str]] = []
    real_popen = subprocess.Popen

    def recording(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        started.append(list(argv))
        return real_popen(argv, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(gitrepo.subprocess, "Popen", recording)
    # Inherited tracing would print the header: the environment is built from nothing.
    monkeypatch.setenv("GIT_TRACE_CURL", "1")
    monkeypatch.setenv("GIT_CURL_VERBOSE", "1")
    try:
        url = f"{backend.url_base}/app.git"
        repository = mirror(tmp_path, url, token="s3cr3t-t0ken")
        assert repository.fetch() == sha
        assert backend.requests()[-1] == backend.server.expected
        assert started and not any("s3cr3t-t0ken" in " ".join(argv) for argv in started), "never on a command line"
        environment = repository.environment()
        assert "GIT_TRACE_CURL" not in environment and "GIT_CURL_VERBOSE" not in environment
        # Scoped to the URL's host: a redirect or another host never gets it.
        assert environment["GIT_CONFIG_KEY_10"] == f"http.{backend.url_base}/.extraHeader"

        wrong = gitrepo.Repository(tmp_path / "wrong", gitrepo.Remote(url, token="wr0ng-t0ken"))
        with pytest.raises(gitrepo.GitError) as refused:
            wrong.fetch()
        assert "wr0ng-t0ken" not in str(refused.value)
        anonymous = gitrepo.Repository(tmp_path / "anonymous", gitrepo.Remote(url))
        with pytest.raises(gitrepo.GitError):
            anonymous.fetch()
    finally:
        backend.stop()


def test_a_deploy_key_reaches_ssh_by_its_path(tmp_path: Path, upstream: git_support.Upstream,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A stand-in ``ssh`` first on PATH records its arguments and runs the remote command here,
    as sshd would run it on the server: the fetch works, and the key's path reaches ssh through
    its environment only (the real server: tests/integration/controller/test_git_ssh.py)."""
    sha = upstream.commit("first")
    key, _ = git_support.ssh_signer(tmp_path, "deploykey")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorded = tmp_path / "ssh-args"
    (bin_dir / "ssh").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" "$RECONCILER_SSH_KEY" > {recorded}\nfor last; do :; done\nexec sh -c "$last"\n'
    )
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    repository = mirror(tmp_path, f"ssh://git@example.test{upstream.bare}", ssh_key=key)
    assert repository.fetch() == sha
    *arguments, key_in_environment = recorded.read_text().splitlines()
    assert key_in_environment == str(key) and "IdentityFile=${RECONCILER_SSH_KEY}" in arguments
    assert "IdentitiesOnly=yes" in arguments and "BatchMode=yes" in arguments
    assert "StrictHostKeyChecking=yes" in arguments and str(key) not in "\n".join(arguments)
    assert key.read_text().splitlines()[1] not in "\n".join(arguments)


def test_a_git_past_its_deadline_is_stopped_with_its_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(gitrepo.GitError, match="took longer than 0.5s"):
        gitrepo.run(["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], {"PATH": os.environ["PATH"]}, timeout=0.5)
    child = int(pid_file.read_text())

    def gone() -> bool:
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        return state == "Z"

    eventually(gone, timeout=10, what="the grandchild sleep to be killed")


def test_output_is_kept_to_its_tail(tmp_path: Path) -> None:
    code, out, _ = gitrepo.run(["sh", "-c", "yes | head -c 1000000"], {"PATH": os.environ["PATH"]}, timeout=30)
    assert code == 0 and len(out) == gitrepo.OUTPUT_LIMIT


def test_exchange_swaps_two_trees_in_one_step(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two").write_text("b")
    gitrepo.exchange(tmp_path / "a", tmp_path / "b")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["two"]
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["one"]


def test_repository_names_follow_git_clone() -> None:
    assert gitrepo.repository_name("git@example.test:org/app.git") == "app"
    assert gitrepo.repository_name("https://example.test/org/site/") == "site"
    assert gitrepo.repository_name("/srv/repos/app.git") == "app"
    assert gitrepo.repository_name("file:///") == "repository"


@pytest.mark.parametrize("path", [".", "deploy"])
def test_an_empty_commit_is_an_empty_folder(tmp_path: Path, upstream: git_support.Upstream, path: str) -> None:
    """A repository whose first commit holds no file at all (``git commit --allow-empty``): its
    folder is empty, not a failed checkout (found by the bench: such a start was refused)."""
    sha = upstream.commit("start")
    repository = mirror(tmp_path, str(upstream.bare), path=path)
    repository.fetch()
    if path == ".":
        folder = repository.checkout(sha, tmp_path / "tree")
        assert folder.is_dir() and list(folder.iterdir()) == []
    else:
        with pytest.raises(gitrepo.GitError, match="has no folder deploy"):
            repository.checkout(sha, tmp_path / "tree")
