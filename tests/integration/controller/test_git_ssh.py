"""The git source over real SSH with a deploy key (issue 14, point 1): ``reconcile --engine native
watch --once --git ssh://root@127.0.0.1:PORT/…/app.git --ssh-key KEY`` against Debian's sshd
(:mod:`tests.support.sshd`) serving a bare repository the test creates, with keys ``ssh-keygen``
makes here. The host key must be known (``--ssh-known-hosts FILE``, else the user's
known_hosts): an unknown or changed one is refused, as is a key the server does not accept,
and then nothing is applied. The key's path and contents appear in no output and no state file,
nor, with ``watch`` serving, in ``status``, the events or the log.

Real parts only: git, ssh, sshd, runc, overlayfs, busybox loaded into a private root; the
fixtures ``root`` and ``prefix`` are :mod:`test_git`'s (its containers removed by prefix at the
end). Each test stops the sshd it started, by pid.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from tests.integration.controller import test_git as git_watch
from tests.support import git as git_support
from tests.support import sshd as sshd_support
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

# test_git's fixtures: a private native root with busybox loaded, and a prefix cleaned up by name.
root = git_watch.root
prefix = git_watch.prefix


class Served:
    """A bare repository with one stack committed, served by sshd to the holder of ``key``."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.upstream = git_support.Upstream(folder / "upstream")
        self.key = sshd_support.key_pair(folder, "deploy_key")
        self.key.chmod(0o600)
        self.name = f"{prefix}web"
        self.upstream.write("deploy/shop.yaml", git_watch.manifest(self.name, f"{prefix}shop"))
        self.commit = self.upstream.commit("the shop")
        # Started last: nothing below can fail and leave it running.
        self.sshd = sshd_support.Sshd(folder / "sshd", self.key)
        self.url = self.sshd.url(self.upstream.bare)
        self.known_hosts = self.sshd.known_hosts(folder / "known_hosts")

    def secrets(self) -> list[str]:
        """What must never be shown: the key's path, its name, and each line of its contents."""
        body = [line for line in self.key.read_text().splitlines() if line and not line.startswith("-----")]
        return [str(self.key), self.key.name, *body]


@pytest.fixture
def served(root: Path, prefix: str, tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path, prefix)
    try:
        yield served
    finally:
        served.sshd.stop()


def watch_once(root: Path, tmp_path: Path, served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reconciler.cli", "--engine", "native", "--root", str(root), "--dns-upstream",
               "127.0.0.1:9", "watch", "--once", "--git", served.url, "--path", "deploy", "--state-dir",
               str(tmp_path / "state"), "--socket", str(tmp_path / "api.sock"), "--log-format", "json", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd="/")


def exists(root: Path, name: str) -> bool:
    engine = native_engine.NativeEngine(root)
    try:
        return name in engine.observe().containers
    finally:
        engine.close()


def state_files(tmp_path: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in (tmp_path / "state").rglob("*")
            if path.is_file() and path.stat().st_size < 1 << 20}  # fmt: skip


def assert_never_shown(served: Served, tmp_path: Path, done: subprocess.CompletedProcess[str]) -> None:
    said = done.stdout + done.stderr
    for secret in served.secrets():
        assert secret not in said, f"{secret!r} is in the output"
        for path, data in state_files(tmp_path).items():
            assert secret.encode() not in data, f"{secret!r} is written in {path}"


def last_tried(tmp_path: Path) -> dict[str, str] | None:
    """The git source's record of its last attempt (None: no commit was tried)."""
    record = tmp_path / "state" / "git" / "source.json"
    tried: dict[str, str] | None = json.loads(record.read_text())["lastTried"] if record.exists() else None
    return tried


def test_once_over_ssh_with_a_deploy_key_applies_the_commit(root: Path, tmp_path: Path, served: Served) -> None:
    done = watch_once(root, tmp_path, served, "--ssh-key", str(served.key), "--ssh-known-hosts",
                      str(served.known_hosts))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert git_watch.running(root, served.name)
    tried = last_tried(tmp_path)
    assert tried is not None and (tried["commit"], tried["state"]) == (served.commit, "applied")
    # Over the real server, with the deploy key (sshd logs the login).
    assert "Accepted publickey for root from 127.0.0.1" in served.sshd.log.read_text()
    assert_never_shown(served, tmp_path, done)


def test_a_key_the_server_does_not_accept_is_a_clear_error_and_nothing_is_applied(
    root: Path, tmp_path: Path, served: Served
) -> None:
    wrong = sshd_support.key_pair(tmp_path, "other_key")
    done = watch_once(root, tmp_path, served, "--ssh-key", str(wrong), "--ssh-known-hosts", str(served.known_hosts))
    assert done.returncode == 1, done.stderr
    assert "the ssh server refused the key given by --ssh-key" in done.stderr
    assert not exists(root, served.name)
    assert last_tried(tmp_path) is None
    assert str(wrong) not in done.stdout + done.stderr
    # The right key readable by others: ssh will not load it (and says so naming the file): refused too.
    served.key.chmod(0o644)
    done = watch_once(root, tmp_path, served, "--ssh-key", str(served.key), "--ssh-known-hosts",
                      str(served.known_hosts))  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "the ssh server refused the key given by --ssh-key" in done.stderr
    assert "--ssh-key: the file may be read by other users (mode 644)" in done.stderr
    assert not exists(root, served.name)
    assert_never_shown(served, tmp_path, done)


def test_an_unknown_or_changed_host_key_is_refused_and_nothing_is_applied(
    root: Path, tmp_path: Path, served: Served
) -> None:
    # A known_hosts that names another key for this host and port: a changed key (a man in the middle).
    impostor = sshd_support.key_pair(tmp_path, "impostor")
    changed = tmp_path / "changed_hosts"
    changed.write_text(f"[127.0.0.1]:{served.sshd.port} {sshd_support.public_key(impostor)}\n")
    done = watch_once(root, tmp_path, served, "--ssh-key", str(served.key), "--ssh-known-hosts", str(changed))
    assert done.returncode == 1, done.stderr
    assert f"the ssh host key of 127.0.0.1:{served.sshd.port} has changed (checked against {changed})" in done.stderr
    # A known_hosts without this host: not known.
    empty = tmp_path / "empty_hosts"
    empty.write_text("")
    done = watch_once(root, tmp_path, served, "--ssh-key", str(served.key), "--ssh-known-hosts", str(empty))
    assert done.returncode == 1, done.stderr
    assert f"the ssh host key of 127.0.0.1:{served.sshd.port} is not known (checked against {empty})" in done.stderr
    assert "--ssh-known-hosts" in done.stderr and "ssh-keyscan" in done.stderr
    assert not exists(root, served.name) and last_tried(tmp_path) is None
    assert "Accepted publickey" not in served.sshd.log.read_text(), "the key was offered to an unverified host"
    assert_never_shown(served, tmp_path, done)


def test_without_known_hosts_the_users_known_hosts_is_held_to(root: Path, tmp_path: Path, served: Served) -> None:
    """No trust on first use: a host that is not in the user's known_hosts is refused (ssh's own
    default files; this random port is in none of them). ssh makes ``~/.ssh`` when it is missing:
    removed again if this test's run made it."""
    home_ssh = Path("~root/.ssh").expanduser()
    there_before = home_ssh.exists()
    try:
        done = watch_once(root, tmp_path, served, "--ssh-key", str(served.key))
    finally:
        if not there_before and home_ssh.is_dir() and not any(home_ssh.iterdir()):
            home_ssh.rmdir()
    assert done.returncode == 1, done.stderr
    assert f"the ssh host key of 127.0.0.1:{served.sshd.port} is not known (checked against ~/.ssh/known_hosts" in (
        done.stderr
    )
    assert not exists(root, served.name)
    assert "Accepted publickey" not in served.sshd.log.read_text()
    # A later run with the host's key named fetches and applies: nothing was learnt or kept meanwhile.
    done = watch_once(root, tmp_path, served, "--ssh-key", str(served.key), "--ssh-known-hosts",
                      str(served.known_hosts))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert git_watch.running(root, served.name)
    assert_never_shown(served, tmp_path, done)


def test_the_daemon_reports_an_unknown_host_then_fetches_once_the_key_is_known(
    root: Path, tmp_path: Path, served: Served
) -> None:
    """``watch`` serving: the refusal is in ``status`` and the events; the operator adds the
    host's key to the file and a webhook fetches at once; the key is in no status, event or log."""
    known_hosts = tmp_path / "operator_hosts"
    known_hosts.write_text("")
    secret = tmp_path / "hook-secret"
    secret.write_bytes(git_watch.SECRET)
    secret.chmod(0o600)
    watch = git_watch.Watch(root, tmp_path, "--git", served.url, "--path", "deploy", "--ssh-key", str(served.key),
                            "--ssh-known-hosts", str(known_hosts), "--interval", "1h", "--webhook-secret-file",
                            str(secret))  # fmt: skip
    try:
        refused = eventually(lambda: watch.git()["lastFetch"]["error"], timeout=60, what="the first fetch refused")
        assert f"the ssh host key of 127.0.0.1:{served.sshd.port} is not known" in refused
        assert watch.git()["inForce"] is None and not exists(root, served.name)
        served.sshd.known_hosts(known_hosts)
        assert watch.hook(git_watch.signed(b"{}"), b"{}") == 202
        eventually(lambda: (watch.git()["inForce"] or {}).get("commit") == served.commit, timeout=60,
                   what=f"the commit in force (log: {watch.log})")  # fmt: skip
        eventually(lambda: git_watch.running(root, served.name), timeout=60, what=f"{served.name} running")
        assert watch.git()["lastFetch"]["error"] is None
        events = list(watch.client.events(follow=False))
        assert [e["kind"] for e in events if e["kind"] in ("fetch-failed", "commit-applied")] == [
            "fetch-failed", "commit-applied"]  # fmt: skip
        shown = json.dumps(watch.client.status()) + json.dumps(events) + watch.log.read_text()
        for secret_text in served.secrets():
            assert secret_text not in shown, f"{secret_text!r} is shown"
            for path, data in state_files(tmp_path).items():
                assert secret_text.encode() not in data, f"{secret_text!r} is written in {path}"
    finally:
        watch.stop()
