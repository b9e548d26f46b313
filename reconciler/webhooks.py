"""Who may ring the git source's bell: ``POST /hooks/git`` authenticated by a shared secret.

Where it sits: at the bottom (the standard library only); :mod:`reconciler.api` asks
:func:`authenticate` about each ``POST /hooks/git`` and calls the :class:`GitHook`'s trigger when
it says yes. Two schemes, as the forges send them:

* GitHub (and Gitea, Forgejo): ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``;
* GitLab: ``X-Gitlab-Token: <the secret itself>``.

Comparisons take constant time. A request that passes neither is refused (401) and logged by
:class:`Refusals` with the peer and the reason, never the payload or a header's value; a flood
of them costs at most :data:`LOG_BURST` log lines a minute. This module must not act on the
payload: a valid hook only says "fetch now", and what is fetched is the configured branch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("reconciler.api")

GITHUB_HEADER = "X-Hub-Signature-256"
GITLAB_HEADER = "X-Gitlab-Token"
HEADERS = (GITHUB_HEADER, GITLAB_HEADER)
LOG_BURST = 10  # refusals logged one by one per minute; the rest are counted


@dataclasses.dataclass(frozen=True, slots=True)
class GitHook:
    """The shared secret and what a hook that proves it triggers (a fetch, at once)."""

    secret: bytes = dataclasses.field(repr=False)
    trigger: Callable[[], None]


def authenticate(secret: bytes, headers: Mapping[str, str], body: bytes) -> tuple[str | None, str]:
    """``(scheme, "")`` when the request proves the secret (``github`` or ``gitlab``), else
    ``(None, why)``; ``why`` names no value of the request."""
    signature = headers.get(GITHUB_HEADER)
    if signature is not None:
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected.encode(), signature.strip().encode("latin-1", "replace")):
            return "github", ""
        return None, f"{GITHUB_HEADER} does not match the body signed with the secret"
    token = headers.get(GITLAB_HEADER)
    if token is not None:
        if hmac.compare_digest(secret, token.strip().encode("latin-1", "replace")):
            return "gitlab", ""
        return None, f"{GITLAB_HEADER} is not the secret"
    return None, f"neither {GITHUB_HEADER} nor {GITLAB_HEADER}"


class Refusals:
    """Logs refused hooks: each of the first :data:`LOG_BURST` of a minute, then one count."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._window = -60.0
        self._logged = 0
        self._quiet = 0

    def refused(self, peer: str, why: str, size: int) -> None:
        now = self.clock()
        with self._lock:
            if now - self._window >= 60.0:
                if self._quiet:
                    log.warning("refused %d more POST /hooks/git in the last minute", self._quiet)
                self._window, self._logged, self._quiet = now, 0, 0
            if self._logged >= LOG_BURST:
                self._quiet += 1
                return
            self._logged += 1
        log.warning("refused POST /hooks/git from %s (%d bytes): %s", peer, size, why)
