"""Who the native engine is to a registry: credentials, ``WWW-Authenticate`` challenges, tokens.

Credentials come from :class:`registry.RegistryConfig` first, then from the Docker config file
(``credHelpers``, ``auths``, ``credsStore``, as the docker CLI reads it); a credential helper is
``docker-credential-<name> get`` fed the server URL on stdin. A registry says how it wants to be
authenticated in a challenge (``Basic`` or ``Bearer realm=… service=…``); for ``Bearer`` the
:class:`Authenticator` asks the realm for a token per repository scope and caches it until a
little before it expires.

This module sits under ``registry`` (the protocol client) and does no HTTP itself: the token
request goes through the :data:`TokenRequest` the client hands in, so ``requests`` stays in one
module. What it must not do: let a secret out (passwords and tokens never appear in reprs,
errors or logs; a helper's output is never quoted), or send credentials anywhere but the
registry host and its token realm, and the realm only over HTTPS unless the host is insecure.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shutil
import subprocess
import threading
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from reconciler import errors

DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", DOCKER_HUB_ENDPOINT)
# key="quoted, value" or key=token; quoted values may hold commas and spaces (scope lists).
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')

# GET the token realm: (url, headers, query parameters) → (status code, body bytes).
TokenRequest = Callable[[str, Mapping[str, str], Sequence[tuple[str, str]]], tuple[int, bytes]]


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and a secret for one registry; the secret is never shown by ``repr``."""

    username: str
    password: str = dataclasses.field(repr=False)

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


@dataclasses.dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: ``scheme`` lowercased, parameters as given."""

    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge:
    """Parse ``WWW-Authenticate: <scheme> k="v",k2=v2``; parameter values keep commas and spaces."""
    header = header.strip()
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    for match in _CHALLENGE_PARAM_RE.finditer(rest):
        key, quoted, bare = match.group(1), match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params[key.lower()] = value
    return Challenge(scheme=scheme.lower(), params=params)


# --------------------------------------------------------------------------------------------------
# The Docker config file and its credential helpers


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def load_credentials(registry: str, config_path: Path | None = None) -> Credentials | None:
    """Credentials for ``registry`` from the Docker config: ``credHelpers``, ``credsStore``, ``auths``.

    A credential helper is ``docker-credential-<name> get`` fed the server URL on stdin; its
    failure is an error naming the helper (never its output, which may contain the secret).
    """
    path = config_path or docker_config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise errors.EngineError(f"cannot read Docker config {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        return None
    keys = DOCKER_HUB_AUTH_KEYS if registry in DOCKER_HUB_AUTH_KEYS else (registry,)
    keys = (*keys, *(f"{scheme}://{k}" for k in keys for scheme in ("https", "http")))
    helpers = data.get("credHelpers") or {}
    for key in keys:
        if isinstance(helpers, dict) and isinstance(helpers.get(key), str):
            return _run_credential_helper(helpers[key], keys[0])
    auths = data.get("auths") or {}
    if isinstance(auths, dict):
        for key in keys:
            entry = auths.get(key)
            if isinstance(entry, dict):
                creds = _auth_entry(entry)
                if creds is not None:
                    return creds
    store = data.get("credsStore")
    if isinstance(store, str) and store:
        return _run_credential_helper(store, keys[0])
    return None


def _auth_entry(entry: Mapping[str, typing.Any]) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, _, password = base64.b64decode(auth).decode().partition(":")
        except ValueError:
            raise errors.EngineError("malformed auth entry in the Docker config file") from None
        return Credentials(user, password)
    username, secret = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(secret, str):
        return Credentials(username, secret)
    return None


def _run_credential_helper(name: str, server: str) -> Credentials | None:
    program = f"docker-credential-{name}"
    if shutil.which(program) is None:
        raise errors.EngineError(f"credential helper {program} is configured but not installed")
    try:
        proc = subprocess.run([program, "get"], check=False, input=server.encode(), capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.EngineError(f"credential helper {program} failed: {type(exc).__name__}") from None
    if proc.returncode != 0:
        # "credentials not found in native keychain" is the helpers' way to say: none stored.
        if b"not found" in proc.stdout.lower() or b"not found" in proc.stderr.lower():
            return None
        raise errors.EngineError(f"credential helper {program} exited with status {proc.returncode}")
    try:
        reply = json.loads(proc.stdout)
        return Credentials(str(reply["Username"]), str(reply["Secret"]))
    except (ValueError, KeyError, TypeError):
        raise errors.EngineError(f"credential helper {program} returned malformed output") from None


# --------------------------------------------------------------------------------------------------
# Challenges and tokens


@dataclasses.dataclass(frozen=True, slots=True)
class _Token:
    value: str = dataclasses.field(repr=False)
    expires: float


class Authenticator:
    """The ``Authorization`` header for each request to a registry host (thread-safe).

    It remembers each host's last challenge, the credentials found for each host and the bearer
    tokens per (host, scope); :meth:`header` answers from them, fetching a token when needed.
    """

    def __init__(
        self,
        *,
        credentials: Mapping[str, Credentials],
        docker_config: Path | None,
        insecure: Callable[[str], bool],
        request_token: TokenRequest,
    ) -> None:
        self._configured = credentials
        self._docker_config = docker_config
        self._insecure = insecure
        self._request_token = request_token
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._credentials: dict[str, Credentials | None] = {}

    def __repr__(self) -> str:
        return f"Authenticator(hosts={sorted(self._challenges)!r})"

    def challenged(self, host: str, challenge: Challenge, *, stale_scope: str | None = None) -> None:
        """Remember ``host``'s challenge; the token cached for ``stale_scope`` (refused) is dropped."""
        with self._lock:
            self._challenges[host] = challenge
            if stale_scope is not None:
                self._tokens.pop((host, stale_scope), None)

    def header(self, host: str, scope: str) -> str | None:
        """The ``Authorization`` value for ``host`` and ``scope``; None when none is needed or known."""
        with self._lock:
            challenge = self._challenges.get(host)
            token = self._tokens.get((host, scope))
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self.credentials(host)
            return creds.basic_header() if creds else None
        if challenge.scheme == "bearer":
            if token is None or token.expires <= time.monotonic():
                token = self._fetch_token(host, challenge, scope)
            return f"Bearer {token.value}"
        return None

    def credentials(self, host: str) -> Credentials | None:
        """The credentials for ``host``: configured ones first, then the Docker config file's."""
        with self._lock:
            if host in self._credentials:
                return self._credentials[host]
        registry = "docker.io" if host == DOCKER_HUB_ENDPOINT else host
        creds = self._configured.get(registry) or self._configured.get(host)
        if creds is None:
            creds = load_credentials(registry, self._docker_config)
        with self._lock:
            self._credentials[host] = creds
        return creds

    def _fetch_token(self, host: str, challenge: Challenge, scope: str) -> _Token:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise errors.EngineError(f"registry {host} sent a token realm that is not an http(s) URL")
        if realm.startswith("http://") and not self._insecure(host):
            raise errors.EngineError(f"registry {host} asks for credentials over plain HTTP at its token realm")
        params: list[tuple[str, str]] = []
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        params.append(("scope", scope))
        headers: dict[str, str] = {}
        creds = self.credentials(host)
        if creds is not None:
            headers["Authorization"] = creds.basic_header()
        status, body = self._request_token(realm, headers, params)
        if status in (401, 403):
            raise errors.EngineError(f"unauthorized: the token service of {host} refused the credentials")
        if status != 200:
            raise errors.Unavailable(f"token service of {host} answered {status}")
        try:
            reply = json.loads(body)
            value = reply.get("token") or reply.get("access_token")
            expires_in = int(reply.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            raise errors.EngineError(f"token service of {host} returned malformed JSON") from None
        if not isinstance(value, str) or not value:
            raise errors.EngineError(f"token service of {host} returned no token")
        # Refresh a little early so a token never expires between check and use.
        token = _Token(value=value, expires=time.monotonic() + max(expires_in - 10, 1))
        with self._lock:
            self._tokens[(host, scope)] = token
        return token
