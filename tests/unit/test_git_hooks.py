"""``POST /hooks/git`` (issue 14, point 2): GitHub's ``X-Hub-Signature-256`` HMAC and GitLab's
``X-Gitlab-Token`` make the git source fetch at once; anything else is 401, logged without the
payload, and triggers nothing. Served on the unix socket and on the TCP listener."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import api, webhooks
from tests.unit.controller_support import Harness, container_yaml

SECRET = b"a shared secret of the hook, 32 b"
PAYLOAD = b'{"ref": "refs/heads/main", "after": "PAYLOAD-MARKER"}'


class Served:
    def __init__(self, server: api.Server, triggered: list[int]) -> None:
        self.server = server
        self.triggered = triggered

    def post(self, where: str, headers: dict[str, str], body: bytes = PAYLOAD) -> tuple[int, bytes]:
        if where == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.server.socket_path)
            connection = http.client.HTTPConnection("localhost", timeout=10)
            connection.sock = sock
        else:
            host, _, port = (self.server.metrics_address or "").rpartition(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
        with contextlib.closing(connection):
            connection.request("POST", "/hooks/git", body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.read()


def serve(tmp_path: Path, hook: webhooks.GitHook | None, limits: api.Limits | None = None) -> api.Server:
    (tmp_path / "m").mkdir(exist_ok=True)
    harness = Harness(tmp_path / "m")
    harness.write("shop.yaml", container_yaml("web"))
    server = api.Server(harness.controller, socket_path=str(tmp_path / "run" / "api.sock"), metrics_addr="127.0.0.1:0",
                        poll_interval=0.05, git_hook=hook, limits=limits)  # fmt: skip
    server.start()
    return server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    triggered: list[int] = []
    server = serve(tmp_path, webhooks.GitHook(SECRET, lambda: triggered.append(1)))
    yield Served(server, triggered)
    server.stop()


def github(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {webhooks.GITHUB_HEADER: f"sha256={digest}", "X-GitHub-Event": "push", "Content-Type": "application/json"}


@pytest.mark.parametrize("where", ["unix", "tcp"])
def test_a_hook_signed_with_the_secret_fetches_at_once(served: Served, where: str) -> None:
    status, body = served.post(where, github(PAYLOAD))
    assert (status, served.triggered) == (202, [1]), body
    status, _ = served.post(where, {webhooks.GITLAB_HEADER: SECRET.decode()})
    assert (status, served.triggered) == (202, [1, 1])


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "neither X-Hub-Signature-256 nor X-Gitlab-Token"),
        (github(PAYLOAD, b"another secret"), "X-Hub-Signature-256 does not match"),
        (github(PAYLOAD + b" "), "X-Hub-Signature-256 does not match"),  # signed another body
        ({webhooks.GITHUB_HEADER: hashlib.sha256(PAYLOAD).hexdigest()}, "X-Hub-Signature-256 does not match"),
        ({webhooks.GITLAB_HEADER: "guess-LEAKED-TOKEN"}, "X-Gitlab-Token is not the secret"),
    ],
)
@pytest.mark.parametrize("where", ["unix", "tcp"])
def test_anything_else_is_401_logged_without_the_payload_and_fetches_nothing(
    served: Served, where: str, headers: dict[str, str], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="reconciler.api"):
        status, body = served.post(where, headers)
    assert status == 401, body
    assert served.triggered == []
    lines = [record.getMessage() for record in caplog.records if "hooks/git" in record.getMessage()]
    assert len(lines) == 1 and why in lines[0], lines
    assert f"({len(PAYLOAD)} bytes)" in lines[0]
    assert "PAYLOAD-MARKER" not in caplog.text and "LEAKED" not in caplog.text
    assert SECRET.decode() not in caplog.text


def test_without_a_secret_the_route_is_not_there(tmp_path: Path) -> None:
    server = serve(tmp_path, None)
    try:
        status, body = Served(server, []).post("unix", github(PAYLOAD))
        assert status == 404 and b"--webhook-secret-file" in body
    finally:
        server.stop()


def test_a_body_beyond_the_limit_is_413_unread_and_fetches_nothing(tmp_path: Path) -> None:
    triggered: list[int] = []
    server = serve(tmp_path, webhooks.GitHook(SECRET, lambda: triggered.append(1)), api.Limits(body_bytes=1024))
    try:
        big = b"x" * 4096
        status, _ = Served(server, triggered).post("tcp", github(big), big)
        assert status == 413 and triggered == []
    finally:
        server.stop()


def test_a_flood_of_refusals_costs_a_bounded_number_of_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    refusals = webhooks.Refusals(clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="reconciler.api"):
        for _ in range(500):
            refusals.refused("203.0.113.9", "neither header", 10)
        assert len(caplog.records) == webhooks.LOG_BURST
        now[0] = 61.0
        refusals.refused("203.0.113.9", "neither header", 10)
    messages = [record.getMessage() for record in caplog.records]
    assert messages[webhooks.LOG_BURST] == f"refused {500 - webhooks.LOG_BURST} more POST /hooks/git in the last minute"
    assert len(messages) == webhooks.LOG_BURST + 2


def test_authenticate_compares_the_whole_signature() -> None:
    good = github(PAYLOAD)[webhooks.GITHUB_HEADER]
    assert webhooks.authenticate(SECRET, {webhooks.GITHUB_HEADER: good}, PAYLOAD) == ("github", "")
    assert webhooks.authenticate(SECRET, {webhooks.GITHUB_HEADER: good[:-1]}, PAYLOAD)[0] is None
    assert webhooks.authenticate(SECRET, {webhooks.GITHUB_HEADER: good.removeprefix("sha256=")}, PAYLOAD)[0] is None
    assert webhooks.authenticate(SECRET, {webhooks.GITLAB_HEADER: SECRET.decode() + "x"}, PAYLOAD)[0] is None
    # A signature header that is present decides: a right GitLab token beside a wrong signature is refused.
    both = {webhooks.GITHUB_HEADER: "sha256=00", webhooks.GITLAB_HEADER: SECRET.decode()}
    assert webhooks.authenticate(SECRET, both, PAYLOAD)[0] is None
