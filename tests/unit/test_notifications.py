"""Events to a webhook: a real HTTP receiver on 127.0.0.1 gets the subscribed events as JSON,
signed when a secret is set; failures are retried with backoff, a 4xx is not; a receiver that
never answers costs a bounded queue and one thread; the URL's token never reaches a log."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.cli import daemon, entry
from reconciler.controller import notifications, report
from tests.support.polling import eventually
from tests.support.webhook import Receiver
from tests.unit.controller_support import Harness, container_yaml


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def event(kind: str, sequence: int = 1, message: str = "m") -> report.ControllerEvent:
    return report.ControllerEvent(sequence, 1000.0 + sequence, kind, "shop", "web", message)


def notifier(url: str, **options: object) -> notifications.Notifier:
    sender = notifications.http_sender(url, timeout=5.0)
    return notifications.Notifier(sender, where=notifications.shown(url), backoff=0.01, **options)  # type: ignore[arg-type]


def test_subscribed_events_arrive_as_signed_json(receiver: Receiver) -> None:
    sender = notifier(receiver.url, secret=b"hush", categories=["applied", "rollback"])
    sender.start()
    try:
        for number, kind in enumerate(["reconcile", "exit", "health", "rollback", "step-failed"], start=1):
            sender.offer(event(kind, number))
        eventually(lambda: len(receiver.bodies) == 2)
    finally:
        sender.stop()
    assert [body["kind"] for body in receiver.bodies] == ["reconcile", "rollback"]
    assert [body["category"] for body in receiver.bodies] == ["applied", "rollback"]
    first = receiver.bodies[0]
    assert first["stack"] == "shop" and first["name"] == "web" and first["source"] == "reconciler"
    assert first["dropped"] == 0
    assert receiver.paths[0] == "/hooks/T0KEN-s3cret?key=abc"
    signed = receiver.headers[0][notifications.SIGNATURE_HEADER]
    body = json.dumps(receiver.bodies[0], sort_keys=True).encode()
    assert signed == "sha256=" + hmac.new(b"hush", body, hashlib.sha256).hexdigest()
    assert sender.stats()["sent"] == 2


def test_server_errors_are_retried_and_a_4xx_is_not() -> None:
    flaky = Receiver([500, 503, 429, 200, 400])
    sender = notifier(flaky.url)
    sender.start()
    try:
        sender.offer(event("reconcile", 1))
        eventually(lambda: len(flaky.bodies) == 1)
        sender.offer(event("reconcile", 2))
        eventually(lambda: sender.stats()["failed"] == 1)
    finally:
        sender.stop()
        flaky.close()
    assert flaky.attempts == 5  # four for the first event, one for the second (a 400 is final)
    assert sender.stats() == {"url": notifications.shown(flaky.url), "sent": 1, "failed": 1, "dropped": 0,
                              "queued": 0}  # fmt: skip


def test_a_receiver_that_never_answers_costs_a_bounded_queue_and_one_thread() -> None:
    stuck = threading.Event()
    release = threading.Event()
    delivered: list[dict[str, object]] = []

    def send(body: bytes, headers: object) -> int:
        stuck.set()
        release.wait(30)
        delivered.append(json.loads(body))
        return 200

    threads_before = threading.active_count()
    sender = notifications.Notifier(send, where="test", queue_size=8)
    sender.start()
    try:
        sender.offer(event("reconcile", 1))
        eventually(stuck.is_set)
        for number in range(2, 1002):
            sender.offer(event("reconcile", number))
        assert threading.active_count() == threads_before + 1
        assert sender.stats()["queued"] == 8
        assert sender.stats()["dropped"] == 992
        release.set()
        eventually(lambda: len(delivered) == 9)
    finally:
        release.set()
        sender.stop()
    # The newest events are kept; the first message after the drops says how many were lost.
    assert [body["seq"] for body in delivered] == [1, *range(994, 1002)]
    assert delivered[1]["dropped"] == 992
    assert delivered[2]["dropped"] == 0


def test_the_urls_token_never_reaches_a_log(caplog: pytest.LogCaptureFixture) -> None:
    dead = Receiver([500] * 10)
    url = dead.url
    sender = notifier(url, attempts=2)
    caplog.set_level(logging.DEBUG)
    sender.start()
    try:
        sender.offer(event("reconcile"))
        eventually(lambda: sender.stats()["failed"] == 1)
    finally:
        sender.stop()
        dead.close()
    assert "not delivered" in caplog.text
    assert "T0KEN" not in caplog.text and "key=abc" not in caplog.text
    assert "T0KEN" not in json.dumps(sender.stats())


def test_categories_are_checked() -> None:
    assert notifications.parse_categories("failed, drift") == {"failed", "drift"}
    with pytest.raises(errors.ReconcilerError, match="--notify-on: sometimes: choose from applied"):
        notifications.parse_categories("failed,sometimes")
    with pytest.raises(errors.ReconcilerError, match="is not an http"):
        notifications.http_sender("ftp://example.invalid/x")


def test_the_controller_sends_what_it_reports(tmp_path: Path, receiver: Receiver) -> None:
    """Wired into the loop: a pass that applies something is an ``applied`` message; the status
    shows the notifier's counts without its URL's path."""
    folder = tmp_path / "m"
    folder.mkdir()
    harness = Harness(folder)
    sender = notifier(receiver.url)
    harness.controller.notifier = sender
    harness.controller.events.subscribe(sender.offer)
    sender.start()
    try:
        harness.write("web.yaml", container_yaml("web"))
        harness.settle()
        eventually(lambda: any(body["kind"] == "reconcile" for body in receiver.bodies))
    finally:
        sender.stop()
    applied = next(body for body in receiver.bodies if body["kind"] == "reconcile")
    assert applied["stack"] == "web"
    assert applied["category"] == "applied"
    assert applied["message"] == harness.controller.events_since(0)[0]["message"]
    assert str(applied["message"]).startswith("Plan: 1 to create")
    shown = harness.controller.status()["notifications"]
    assert shown["sent"] >= 1 and "T0KEN" not in shown["url"]


def test_the_watch_options_build_the_notifier(tmp_path: Path) -> None:
    """``--notify-url-file`` keeps a token off the command line; a missing file is named, its
    content never shown."""
    url_file = tmp_path / "url"
    url_file.write_text("https://hooks.example.invalid/services/T0KEN\n")
    secret = tmp_path / "secret"
    secret.write_text("hush\n")
    parser = entry.build_parser()
    args = parser.parse_args(["watch", str(tmp_path), "--notify-url-file", str(url_file),
                              "--notify-secret-file", str(secret), "--notify-on", "failed"])  # fmt: skip
    built = daemon.notifier_of(args)
    assert built is not None
    assert built.where == "https://hooks.example.invalid/…"
    assert daemon.notifier_of(parser.parse_args(["watch", str(tmp_path)])) is None
    args.notify_url_file = str(tmp_path / "missing")
    with pytest.raises(errors.ReconcilerError, match=r"--notify-url-file: .*missing: No such file"):
        daemon.notifier_of(args)
