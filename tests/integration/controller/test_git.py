"""Acceptance of the git source (issue 14, points 1-3) on the native engine: ``reconcile watch
--git`` as a separate process against a repository the test creates and serves with ``git daemon``
(and ``git http-backend`` with a token), real commits and pushes, webhooks signed and not.

Real parts only: git, git daemon, runc, overlayfs, the project's supervisor; busybox loaded into
a private root (no registry). Containers use ``networkMode: none`` (no bridge, DNS or firewall
needed). Each test removes its containers by name through the engine and stops every process it
started, by pid. Waiting is ``eventually``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import api
from reconciler.backends.native import engine as native_engine
from tests import support
from tests.support import git as git_support
from tests.support import images, names
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

IMAGE = images.LOCAL_BUSYBOX
SECRET = b"the-webhook-secret-of-this-test"
SERVICE = """[sh, -c, 'trap "exit 0" TERM; sleep 3600 & wait']"""


def manifest(name: str, stack: str, *, extra: str = "") -> str:
    return (f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {stack}}}\n"
            f"spec:\n  image: '{IMAGE}'\n  command: {SERVICE}\n  networkMode: none\n  stopTimeout: 1s\n{extra}")  # fmt: skip


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    support.require_root()
    git_support.require_git()
    for binary, package in (("runc", "runc"), ("busybox", "busybox-static")):
        support.require_binary(binary, package)
    state = tmp_path / "root"
    layout = images.OciLayout(tmp_path / "oci")
    images.busybox_image(layout, IMAGE)
    native_engine.NativeEngine(state).image_store.load(layout.tarball(tmp_path / "image.tar"))
    yield state


@pytest.fixture
def prefix(root: Path) -> Iterator[str]:
    """A unique name prefix; the test's containers are removed by it through the engine at the end."""
    chosen = names.unique_prefix()
    yield chosen
    engine = native_engine.NativeEngine(root)
    try:
        for name in sorted(engine.observe().containers):
            if name.startswith(chosen):
                engine.remove_container(name)
    finally:
        engine.close()


class Watch:
    """``reconcile --engine native watch --git …`` as a child process, with its API client."""

    def __init__(self, root: Path, work: Path, *args: str) -> None:
        self.socket = str(work / "api.sock")
        self.port = git_support.free_port()
        self.log = work / "watch.log"
        self.command = [sys.executable, "-m", "reconciler.cli", "--engine", "native", "--root", str(root),
                        "--dns-upstream", "127.0.0.1:9", "watch", "--socket", self.socket, "--state-dir",
                        str(work / "state"), "--metrics-addr", f"127.0.0.1:{self.port}", "--log-format", "json", *args]  # fmt: skip
        sink = self.log.open("ab")
        self.process = subprocess.Popen(self.command, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL, cwd="/",
                                        start_new_session=True)  # fmt: skip
        sink.close()
        self.client = api.Client(self.socket, timeout=30)
        eventually(self.client.ping, timeout=30, what=f"the daemon to answer (log: {self.log})")

    def git(self) -> dict[str, Any]:
        return self.client.status()["git"]  # type: ignore[no-any-return]

    def hook(self, headers: dict[str, str], body: bytes) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("POST", "/hooks/git", body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            return answer.status
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def signed(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
            "X-GitHub-Event": "push", "Content-Type": "application/json"}  # fmt: skip


def running(root: Path, name: str) -> bool:
    engine = native_engine.NativeEngine(root)
    try:
        container = engine.observe().containers.get(name)
        return container is not None and container.state == "running"
    finally:
        engine.close()


def test_commit_runs_invalid_commit_keeps_the_last_good_webhooks_fetch_or_are_refused(
    root: Path, prefix: str, tmp_path: Path
) -> None:
    upstream = git_support.Upstream(tmp_path / "upstream")
    daemon_of_git = git_support.GitDaemon(upstream.bare.parent, tmp_path / "git-daemon.log")
    secret = tmp_path / "hook-secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    stack = f"{prefix}shop"
    upstream.write("deploy/shop.yaml", manifest(f"{prefix}web", stack))
    first = upstream.commit("the shop")
    watch = Watch(root, tmp_path, "--git", f"{daemon_of_git.url_base}/app.git", "--path", "deploy",
                  "--interval", "1h", "--webhook-secret-file", str(secret))  # fmt: skip
    try:
        # Commit a stack: it runs (the first fetch is at start).
        eventually(lambda: running(root, f"{prefix}web"), timeout=60, what=f"{prefix}web running (log: {watch.log})")
        assert watch.git()["inForce"]["commit"] == first

        # Commit an invalid manifest: the webhook fetches it at once; the last good commit stays.
        upstream.write("deploy/shop.yaml", manifest(f"{prefix}web", stack, extra="  restart: sometimes\n"))
        upstream.write("deploy/db.yaml", manifest(f"{prefix}db", stack))
        bad = upstream.commit("restart: sometimes")
        fetches = watch.git()["lastFetch"]["count"]
        assert watch.hook(signed(b'{"after": "x"}'), b'{"after": "x"}') == 202
        tried = eventually(lambda: (git := watch.git())["lastTried"]["commit"] == bad and git["lastTried"],
                           timeout=30, what="the bad commit tried")  # fmt: skip
        assert tried["state"] == "refused"
        assert watch.git()["lastFetch"]["count"] == fetches + 1
        assert len(tried["errors"]) == 1 and tried["errors"][0].startswith(f"commit {bad[:12]}: deploy/shop.yaml:9:")
        assert "restart" in tried["errors"][0]
        assert watch.git()["inForce"]["commit"] == first
        assert running(root, f"{prefix}web") and not running(root, f"{prefix}db")
        table = subprocess.run([sys.executable, "-m", "reconciler.cli", "--engine", "native", "--root", str(root),
                                "--socket", watch.socket, "status"], capture_output=True, text=True, timeout=60,
                               check=False, cwd="/")  # fmt: skip
        line = next(line for line in table.stdout.splitlines() if line.startswith("File"))
        assert "deploy/shop.yaml" in line and "deploy/shop.yaml:9:" in line and "last good version in force" in line

        # A webhook with a wrong signature: 401, nothing fetched.
        upstream.write("deploy/shop.yaml", manifest(f"{prefix}web", stack, extra="  env: {GREETING: hello}\n"))
        fixed = upstream.commit("the fix")
        fetches = watch.git()["lastFetch"]["count"]
        assert watch.hook(signed(b'{"after": "y"}', b"not-the-secret"), b'{"after": "y"}') == 401
        assert watch.hook({"X-Gitlab-Token": "not-the-secret"}, b"{}") == 401
        assert watch.hook({}, b"{}") == 401
        assert watch.git()["lastFetch"]["count"] == fetches, "a refused hook fetches nothing"
        assert watch.git()["inForce"]["commit"] == first

        # The right one: fetched at once, and the fix rolls forward.
        assert watch.hook({"X-Gitlab-Token": SECRET.decode()}, b"{}") == 202
        eventually(lambda: watch.git()["inForce"]["commit"] == fixed, timeout=30, what="the fix in force")
        eventually(lambda: running(root, f"{prefix}db"), timeout=60, what=f"{prefix}db running")
        # Every pass's plan is in the events, with the commit in force.
        eventually(lambda: [e for e in watch.client.events(follow=False) if e["kind"] == "reconcile"
                            and e.get("commit") == fixed and "1 to recreate" in e["message"]],
                   timeout=60, what="the fix's pass in the events")  # fmt: skip
        events = list(watch.client.events(follow=False))
        reconciled = [e for e in events if e["kind"] == "reconcile"]
        assert [e.get("commit") for e in reconciled] == [first, fixed], reconciled
        assert [e["kind"] for e in events if e["kind"].startswith("commit-")] == [
            "commit-applied", "commit-refused", "commit-applied"]  # fmt: skip
        log = watch.log.read_text()
        assert "refused POST /hooks/git from 127.0.0.1" in log and '"after": "y"' not in log
        assert SECRET.decode() not in log
    finally:
        watch.stop()
        daemon_of_git.stop()


def test_once_over_http_with_a_token_that_is_never_shown(root: Path, prefix: str, tmp_path: Path) -> None:
    upstream = git_support.Upstream(tmp_path / "upstream")
    token = "glpat-" + os.urandom(8).hex()
    backend = git_support.HttpBackend(upstream.bare.parent, "deployer", token)
    token_file = tmp_path / "token"
    token_file.write_text(f"deployer:{token}\n")
    token_file.chmod(0o600)
    upstream.write("shop.yaml", manifest(f"{prefix}web", f"{prefix}shop"))
    upstream.commit("the shop")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler.cli", "--engine", "native", "--root", str(root), "--dns-upstream",
             "127.0.0.1:9", "watch", "--once", "--git", f"{backend.url_base}/app.git", "--token-file", str(token_file),
             "--state-dir", str(tmp_path / "state"), "--socket", str(tmp_path / "api.sock"), "--log-format", "json"],
            capture_output=True, text=True, timeout=300, check=False, cwd="/",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert running(root, f"{prefix}web")
        assert backend.requests() and all(seen == backend.server.expected for seen in backend.requests()[-2:])
        assert token not in done.stdout + done.stderr
        record = json.loads((tmp_path / "state" / "git" / "source.json").read_text())
        assert record["lastTried"]["state"] == "applied" and token not in json.dumps(record)
        for path in (tmp_path / "state").rglob("*"):
            if path.is_file() and path.stat().st_size < 1 << 20:
                assert token.encode() not in path.read_bytes(), f"the token is written in {path}"
    finally:
        backend.stop()


def test_once_with_required_signatures_applies_only_a_signed_commit(root: Path, prefix: str, tmp_path: Path) -> None:
    upstream = git_support.Upstream(tmp_path / "upstream")
    key, allowed = git_support.ssh_signer(tmp_path, "deployer")
    upstream.write("shop.yaml", manifest(f"{prefix}web", f"{prefix}shop"))
    unsigned = upstream.commit("unsigned")
    command = [sys.executable, "-m", "reconciler.cli", "--engine", "native", "--root", str(root), "--dns-upstream",
               "127.0.0.1:9", "watch", "--once", "--git", str(upstream.bare), "--require-signed", "--allowed-signers",
               str(allowed), "--state-dir", str(tmp_path / "state"), "--socket", str(tmp_path / "api.sock")]  # fmt: skip
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd="/")
    assert refused.returncode == 1, refused.stderr
    assert f"commit {unsigned[:12]}: the commit is not signed" in refused.stderr
    assert not running(root, f"{prefix}web")
    upstream.commit("signed", sign=git_support.ssh_signing(key))
    applied = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd="/")
    assert applied.returncode == 0, applied.stderr
    assert running(root, f"{prefix}web")
