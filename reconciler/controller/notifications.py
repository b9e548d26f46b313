"""Events to a webhook: what the controller reports, POSTed as JSON to a URL the user names.

Where it sits: beside the restart driver, under the loop, which subscribes it to the event log
(``reconcile watch --notify-url URL``). :meth:`Notifier.offer` only puts an event in a bounded
queue and returns; one sender thread POSTs them in order. So a slow, failing or dead receiver
never holds a pass, and never costs more than :data:`QUEUE_SIZE` events of memory and one thread:
when the queue is full the oldest event is dropped, and the next message says how many were
(``"dropped"``).

Delivery: each event is tried up to ``attempts`` times, with exponential backoff (``backoff``,
doubled each time, at most :data:`MAX_BACKOFF`) after a connection error, a timeout, a 429 or a
5xx; any other answer ends its tries (a 4xx will not get better by sending it again). Each
attempt has :data:`TIMEOUT` seconds, and at most :data:`MAX_ANSWER` bytes of the answer are read.

The URL may carry a token (a chat service's webhook path, a query parameter): only its scheme and
host are ever logged or shown. With a secret, each body is signed as GitHub signs its webhooks:
``X-Reconciler-Signature-256: sha256=<hex HMAC-SHA256 of the body>``, so that the receiver can
tell these messages from anyone else's.

It must not act on an event, block its caller, or raise into the event log.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import http.client
import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from typing import Any

from reconciler import errors
from reconciler.controller import report

log = logging.getLogger("reconciler.notifications")

QUEUE_SIZE = 256
ATTEMPTS = 5
BACKOFF = 1.0
MAX_BACKOFF = 60.0
TIMEOUT = 10.0
MAX_ANSWER = 64 * 1024
SIGNATURE_HEADER = "X-Reconciler-Signature-256"

# What users subscribe to (``--notify-on``), and the event kinds each one covers.
CATEGORIES: Mapping[str, frozenset[str]] = {
    "applied": frozenset({"reconcile", "image-updated"}),
    "rollback": frozenset({"rollback"}),
    "failed": frozenset({"step-failed", "error", "manifest-error", "gave-up", "image-check-failed"}),
    "drift": frozenset({"drift"}),
}

# Sends one body; returns the HTTP status (raises OSError/HTTPException when nothing came back).
Send = Callable[[bytes, Mapping[str, str]], int]


def category_of(kind: str) -> str | None:
    """The subscription an event kind belongs to, or None for kinds never sent (exit, health …)."""
    return next((name for name, kinds in CATEGORIES.items() if kind in kinds), None)


def parse_categories(text: str) -> frozenset[str]:
    """``--notify-on applied,rollback``: the categories named, each checked."""
    chosen = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(chosen - CATEGORIES.keys())
    if unknown or not chosen:
        raise errors.ReconcilerError(f"--notify-on: {', '.join(unknown) or 'nothing'}: choose from "
                                     + ", ".join(CATEGORIES))  # fmt: skip
    return chosen


def shown(url: str) -> str:
    """The URL as logs and status may show it: scheme and host only (its path may be a token)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/…"


def http_sender(url: str, *, timeout: float = TIMEOUT) -> Send:
    """A :data:`Send` that POSTs to ``url`` (http or https), one connection per attempt."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.ReconcilerError(f"--notify-url: {shown(url)} is not an http(s) URL")
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    host, port = parts.hostname, parts.port

    def send(body: bytes, headers: Mapping[str, str]) -> int:
        connection = kind(host, port, timeout=timeout)
        try:
            connection.request("POST", target, body=body, headers=dict(headers))
            answer = connection.getresponse()
            answer.read(MAX_ANSWER)
            return answer.status
        finally:
            connection.close()

    return send


class Notifier:
    """A bounded queue of events and the one thread that delivers them."""

    def __init__(
        self,
        send: Send,
        *,
        where: str,
        categories: Collection[str] = tuple(CATEGORIES),
        secret: bytes | None = None,
        queue_size: int = QUEUE_SIZE,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
    ) -> None:
        self.where = where
        self._send = send
        self._kinds = frozenset().union(*(CATEGORIES[name] for name in categories))
        self._secret = secret
        self._attempts = attempts
        self._backoff = backoff
        self._queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=queue_size)
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._dropped_unreported = 0

    def offer(self, event: report.ControllerEvent) -> None:
        """Queue ``event`` if it is one the user subscribed to; never blocks, never raises."""
        if event.kind not in self._kinds:
            return
        message = {"source": "reconciler", "host": socket.gethostname(), "category": category_of(event.kind),
                   **event.to_json()}  # fmt: skip
        with self._wake:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
                self._dropped_unreported += 1
            self._queue.append(message)
            self._wake.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop sending; what is still queued after ``timeout`` is lost (logged with its count)."""
        self._stopping.set()
        with self._wake:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._queue:
            log.warning("notifications: %d event(s) not delivered to %s", len(self._queue), self.where)

    def stats(self) -> dict[str, Any]:
        with self._wake:
            return {"url": self.where, "sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                    "queued": len(self._queue)}  # fmt: skip

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                while not self._queue and not self._stopping.is_set():
                    self._wake.wait()
                if self._stopping.is_set():
                    return
                message = self._queue.popleft()
                message["dropped"], self._dropped_unreported = self._dropped_unreported, 0
            delivered = self._deliver(message)
            with self._wake:
                if delivered:
                    self.sent += 1
                else:
                    self.failed += 1

    def _deliver(self, message: dict[str, Any]) -> bool:
        body = json.dumps(message, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "reconciler"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        delay, why = self._backoff, ""
        for attempt in range(1, self._attempts + 1):
            try:
                status = self._send(body, headers)
            except (OSError, http.client.HTTPException) as exc:
                why = type(exc).__name__ if not str(exc) else str(exc)
            else:
                if 200 <= status < 300:
                    return True
                why = f"HTTP {status}"
                if status != 429 and status < 500:
                    break
            if attempt < self._attempts and self._stopping.wait(delay):
                return False
            delay = min(delay * 2, MAX_BACKOFF)
        log.warning("notifications: event %s (%s) not delivered to %s: %s", message["seq"], message["kind"],
                    self.where, why)  # fmt: skip
        return False
