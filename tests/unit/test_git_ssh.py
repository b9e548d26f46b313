"""``reconcile watch --git ssh://…``'s ssh options (issue 14, point 1): ``--ssh-known-hosts`` and
``--ssh-key`` parsed by the real parser and checked by ``cli.gitops``; the deploy key's path is
shown in no error and no log line. The fetch over a real sshd: tests/integration/controller/test_git_ssh.py."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from reconciler import errors, gitrepo
from reconciler.cli import entry, gitops
from tests.support import git as git_support
from tests.support import sshd as sshd_support

URL = "ssh://git@example.test/app.git"


def parsed(*argv: str) -> argparse.Namespace:
    words = ["--root", "/tmp/unused-root", "watch", *argv]
    return entry.build_parser(words).parse_args(words)


def test_known_hosts_is_passed_to_ssh_and_checked_strictly(tmp_path: Path) -> None:
    known = tmp_path / "known hosts"  # a space: one file still (ssh expands the variable after splitting)
    known.write_text("")
    _, source = gitops.folder_and_source(parsed("--git", URL, "--ssh-known-hosts", str(known)), tmp_path / "state")
    assert source is not None and source.settings.remote.known_hosts == known
    environment = source.repository.environment()
    command = environment["GIT_SSH_COMMAND"]
    assert "StrictHostKeyChecking=yes" in command and "accept-new" not in command
    assert "'UserKnownHostsFile=${RECONCILER_SSH_KNOWN_HOSTS}'" in command
    assert environment["RECONCILER_SSH_KNOWN_HOSTS"] == str(known)
    # Without it: ssh's own files (the user's known_hosts), strictly too.
    _, source = gitops.folder_and_source(parsed("--git", URL), tmp_path / "other-state")
    assert source is not None
    command = source.repository.environment()["GIT_SSH_COMMAND"]
    assert "StrictHostKeyChecking=yes" in command and "KnownHostsFile" not in command


def test_known_hosts_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(errors.ReconcilerError, match="--ssh-known-hosts /nonexistent/hosts: no such file"):
        gitops.folder_and_source(parsed("--git", URL, "--ssh-known-hosts", "/nonexistent/hosts"), tmp_path / "state")
    with pytest.raises(errors.ReconcilerError, match="--ssh-known-hosts: only with --git URL"):
        gitops.folder_and_source(parsed(str(tmp_path), "--ssh-known-hosts", "/etc/hostname"), tmp_path / "state")


def test_the_deploy_keys_path_is_never_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "secret-deploy-key-name"
    with pytest.raises(errors.ReconcilerError) as raised:
        gitops.folder_and_source(parsed("--git", URL, "--ssh-key", str(missing)), tmp_path / "state")
    assert "--ssh-key" in str(raised.value) and "secret-deploy-key-name" not in str(raised.value)
    key = sshd_support.key_pair(tmp_path, "readable-deploy-key")
    key.chmod(0o644)
    _, source = gitops.folder_and_source(parsed("--git", URL, "--ssh-key", str(key)), tmp_path / "state")
    assert "--ssh-key: the file may be read by other users (mode 644)" in caplog.text
    assert "readable-deploy-key" not in caplog.text
    assert source is not None and "readable-deploy-key" not in repr(source.settings)
    assert "readable-deploy-key" not in source.repository.environment()["GIT_SSH_COMMAND"]
    assert "readable-deploy-key" not in repr(gitrepo.Remote(URL, ssh_key=key))


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("git@example.test:org/app.git", "example.test"),
        ("ssh://git@example.test:2222/org/app.git", "example.test:2222"),
    ],
)
def test_ssh_refusals_name_the_host_and_never_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, host: str
) -> None:
    """A stand-in ``ssh`` first on PATH says what OpenSSH says (naming the key file, as it does
    when it cannot load it) and fails as it does (exit 255); real git runs it."""
    key = sshd_support.key_pair(tmp_path, "hidden-deploy-key")
    said = tmp_path / "said"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(f"#!/bin/sh\ncat {said} >&2\nexit 255\n")
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    repository = gitrepo.Repository(tmp_path / "mirror", gitrepo.Remote(url, ssh_key=key))
    said.write_text(f"No ED25519 host key is known for {host} and you have requested strict checking.\n"
                    "Host key verification failed.\n")  # fmt: skip
    with pytest.raises(gitrepo.GitError) as raised:
        repository.fetch()
    assert str(raised.value).startswith(f"git fetch failed: the ssh host key of {host} is not known (checked "
                                        "against ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts)")  # fmt: skip
    said.write_text(f'Load key "{key}": bad permissions\ngit@{host}: Permission denied (publickey).\n')
    with pytest.raises(gitrepo.GitError, match="the ssh server refused the key given by --ssh-key") as raised:
        repository.fetch()
    said.write_text(f'Load key "{key}": invalid format\nConnection closed by remote host\n')
    with pytest.raises(gitrepo.GitError) as other:
        repository.fetch()
    assert (
        str(other.value)
        == 'git fetch failed: Load key "the --ssh-key file": invalid format; Connection closed by remote host'
    )
    assert "hidden-deploy-key" not in str(raised.value) + str(other.value)


def test_an_ssh_failure_says_what_ssh_said(tmp_path: Path) -> None:
    """Real ssh to a port of 127.0.0.1 where nothing listens: its own words, not git's closing lines."""
    port = git_support.free_port()
    repository = gitrepo.Repository(tmp_path / "mirror", gitrepo.Remote(f"ssh://root@127.0.0.1:{port}/srv/app.git"))
    with pytest.raises(gitrepo.GitError) as raised:
        repository.fetch()
    assert str(raised.value) == f"git fetch failed: ssh: connect to host 127.0.0.1 port {port}: Connection refused"
