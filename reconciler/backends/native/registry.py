"""Registry client: the OCI distribution / Docker Registry v2 protocol, spoken with ``requests``.

This is the native engine's only network-facing module and the only module of the project that
imports ``requests``. It knows how to find a registry endpoint for an image reference, how to
negotiate manifests (OCI index/manifest and Docker schema2 list/manifest; schema1 is refused), how
to pick the host's platform from an index, and how to stream blobs with retries, redirects and
resumption by ``Range``. Authentication (anonymous, Basic, Bearer tokens from the registry's token
realm, credentials from the Docker config file and its helpers) is ``registry_auth``'s: the client
asks it for every request's ``Authorization`` and performs the token requests it needs.

What it must not do:

- store anything: blobs are handed to a :class:`Sink` (the content store's ingest) and manifests
  are returned as raw bytes with their verified digest; the caller decides what to keep;
- let a registry secret out: passwords and tokens never appear in logs, error messages or reprs,
  and credentials are only ever sent to the registry host itself or to the token realm named by
  the registry's own challenge (a blob redirect to another host is followed without
  ``Authorization``: ``requests`` strips it when the host, port or scheme changes, CVE-2020-15157
  is the lesson; and a 401 from such a host is an error, its challenge is never taken for the
  registry's);
- trust the environment: ``Session.trust_env`` is off, so proxies and ``.netrc`` from the
  environment never change where bytes go or which credentials are sent.

Every ``requests`` error is translated here: transient failures become ``errors.Unavailable``,
refusals become ``errors.EngineError`` / ``errors.NotFound``, digest problems
``errors.DigestMismatch``.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import http.client
import ipaddress
import json
import math
import re
import shutil
import tempfile
import threading
import time
import typing
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import requests
import requests.utils
import urllib3.exceptions

from reconciler import errors, references
from reconciler.backends.native import registry_auth, registry_settings

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
INDEX_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})
MANIFEST_TYPES = frozenset({MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST})
SCHEMA1_TYPES = frozenset({MEDIA_DOCKER_SCHEMA1, MEDIA_DOCKER_SCHEMA1_SIGNED})
# Order matters only for humans: registries pick the first type they can serve from the whole list.
ACCEPT = ", ".join([MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST])

# containerd caps manifests at about 4 MiB; a registry that sends more is broken or hostile.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
USER_AGENT = "reconciler/0.1 (native engine)"
_CHUNK = 1024 * 1024
# The longest wait a registry's ``Retry-After`` can impose before one retry; the waits of a whole
# pull are bounded by ``RegistryConfig.max_wait`` as well.
MAX_RETRY_AFTER = 60.0
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


# --------------------------------------------------------------------------------------------------
# Values

# The type of ``RegistryConfig.credentials``, under the name the config's users know it by.
Credentials = registry_auth.Credentials
# The settings and the platform live in a module without ``requests``, so that an image store that
# only reads (``observe`` on a no-op apply) does not import the HTTP stack; they keep their names here.
Platform = registry_settings.Platform
RegistryConfig = registry_settings.RegistryConfig
host_platform = registry_settings.host_platform


@dataclasses.dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor (what a manifest says about a blob or another manifest)."""

    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    platform: Platform | None = None

    @classmethod
    def from_json(cls, data: object) -> Descriptor:
        """Validate one descriptor object; a malformed one is a refusal, never a crash."""
        if not isinstance(data, dict):
            raise errors.EngineError("manifest descriptor is not an object")
        digest, size = data.get("digest"), data.get("size")
        if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
            raise errors.EngineError(f"unsupported or malformed digest {digest!r} (only sha256 is supported)")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise errors.EngineError(f"descriptor {digest} has an invalid size {size!r}")
        plat = data.get("platform")
        parsed_platform = None
        if isinstance(plat, dict):
            parsed_platform = Platform(
                os=str(plat.get("os", "")),
                architecture=str(plat.get("architecture", "")),
                variant=str(plat.get("variant", "") or ""),
            )
        urls = data.get("urls") or ()
        return cls(
            media_type=str(data.get("mediaType", "")),
            digest=digest,
            size=size,
            urls=tuple(str(u) for u in urls) if isinstance(urls, list) else (),
            platform=parsed_platform,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index as the registry sent it: raw bytes, media type and verified digest."""

    digest: str
    media_type: str
    raw: bytes = dataclasses.field(repr=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def json(self) -> dict[str, typing.Any]:
        data = json.loads(self.raw)
        if not isinstance(data, dict):
            raise errors.EngineError(f"manifest {self.digest} is not a JSON object")
        return data


class Sink(typing.Protocol):
    """Where a blob's bytes go: the content store's ingest implements this."""

    @property
    def offset(self) -> int:
        """How many bytes are already there (a resumed download asks for the rest)."""

    def write(self, data: bytes) -> None:
        """Append bytes; may raise to abort (size or digest exceeded)."""

    def restart(self) -> None:
        """Forget what is there: the server ignored our Range request and sends everything."""


# --------------------------------------------------------------------------------------------------
# Pure helpers (unit-tested without a network)


def endpoint_host(registry: str) -> str:
    """The host[:port] to talk to for a reference's registry (Docker Hub's API lives elsewhere)."""
    return registry_auth.DOCKER_HUB_ENDPOINT if registry in ("docker.io", "index.docker.io") else registry


def select_platform(index: Mapping[str, typing.Any], wanted: Platform) -> Descriptor:
    """Pick the manifest for ``wanted`` from an index; Docker's wording when nothing matches.

    Attestation manifests (platform unknown/unknown) never match. A variant is matched when we
    have one; an entry without a variant is accepted when no entry has the exact variant.
    """
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise errors.EngineError("manifest list has no manifests array")
    exact: Descriptor | None = None
    loose: Descriptor | None = None
    for entry in entries:
        descriptor = Descriptor.from_json(entry)
        plat = descriptor.platform
        if plat is None or plat.os != wanted.os or plat.architecture != wanted.architecture:
            continue
        if descriptor.media_type in INDEX_TYPES:
            continue
        if plat.variant == wanted.variant and exact is None:
            exact = descriptor
        elif loose is None and (not plat.variant or not wanted.variant):
            loose = descriptor
    chosen = exact or loose
    if chosen is None:
        raise errors.NotFound(f"no matching manifest for {wanted} in the manifest list entries")
    return chosen


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 / ::1 (with or without a port)."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_manifest_media_type(media_type: str, body: Mapping[str, typing.Any]) -> str:
    """Decide a manifest's media type from the body and the header; refuse schema1 clearly."""
    declared = body.get("mediaType")
    if body.get("schemaVersion") == 1 or media_type in SCHEMA1_TYPES or declared in SCHEMA1_TYPES:
        raise errors.EngineError(
            "the registry served a Docker schema1 manifest: schema1 is deprecated and not supported; "
            "push the image again with a current client (Docker schema2 or OCI)"
        )
    if isinstance(declared, str) and declared:
        if media_type and media_type != declared and media_type not in ("application/json", "text/plain"):
            raise errors.EngineError(f"manifest mediaType {declared!r} does not match Content-Type {media_type!r}")
        media_type = declared
    if not media_type or media_type == "application/json":
        # OCI allows mediaType to be omitted: tell an index from a manifest by its shape.
        media_type = MEDIA_OCI_INDEX if "manifests" in body else MEDIA_OCI_MANIFEST
    if media_type not in INDEX_TYPES and media_type not in MANIFEST_TYPES:
        raise errors.EngineError(f"unsupported manifest media type {media_type!r}")
    return media_type


def _error_detail(response: requests.Response) -> str:
    """The registry's own error code and message (``{"errors":[{code,message}]}``), if any."""
    try:
        body = response.json()
        first = body["errors"][0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, KeyError, IndexError, TypeError):
        return response.reason or ""


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in the system's words (``connection refused``, ``name or service
    not known``, ``timed out``), from down ``exc``'s chain of causes; its type's name when none says.

    Only the reason is taken: the messages around it name the URL, whose query may carry a token
    realm's parameters.
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    timed_out = False
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        if isinstance(current, http.client.IncompleteRead):
            # urllib3 holds the body to its Content-Length: a body cut short ends up here.
            # (urllib3 keeps the count of bytes read in ``partial``, http.client the bytes).
            read = current.partial if isinstance(current.partial, int) else len(current.partial)
            return f"unexpected EOF: the body ended after {read} bytes"
        # urllib3 files a refused connection under its timeouts too: the system's reason comes first.
        timed_out = timed_out or isinstance(current, requests.Timeout | TimeoutError)
        causes = (getattr(current, "reason", None), current.__cause__, current.__context__, *current.args)
        pending.extend(cause for cause in causes if isinstance(cause, BaseException))
    return "timed out" if timed_out else type(exc).__name__


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _refuse_foreign_challenge(response: requests.Response, url: str, host: str) -> None:
    """Refuse a 401 that came from a host a redirect chose (a blob's storage, say), not the registry.

    Its ``WWW-Authenticate`` is not the registry's challenge: storing it would send the registry's
    credentials to whatever realm that host names. Docker's client likewise authorises only the
    hosts it pinged. The error names the host only: a redirect's query may carry a signature.
    """
    if _origin(response.url) == _origin(url):
        return
    other = urllib.parse.urlsplit(response.url).netloc
    response.close()
    raise errors.EngineError(
        f"registry {host} redirected to {other}, which asked for credentials: the registry's credentials "
        f"are sent only to {host} and the token service it names, so the pull cannot go on"
    )


def retry_delay(value: str | None, default: float, *, now: float | None = None) -> float:
    """How long to wait before a retry, from a ``Retry-After`` header (seconds or an HTTP-date).

    Capped at :data:`MAX_RETRY_AFTER`: a registry may not park a pull for a year. A value that is
    neither form (or not a finite, non-negative number) gives ``default``; a date in the past, 0.
    """
    text = (value or "").strip()
    if not text:
        return default
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return default
        if when.tzinfo is None:
            return default
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _retry_after(response: requests.Response, default: float) -> float:
    return retry_delay(response.headers.get("Retry-After"), default)


# --------------------------------------------------------------------------------------------------
# The client


class Client:
    """A registry client shared by the pulls of one image store (thread-safe for parallel blobs)."""

    def __init__(self, config: RegistryConfig | None = None, *, session: requests.Session | None = None) -> None:
        """``session`` is the HTTP session to use (tests mount a fake transport on one)."""
        self.config = config or RegistryConfig()
        self._session = session or requests.Session()
        # Environment proxies and ~/.netrc must not redirect bytes or inject credentials.
        self._session.trust_env = False
        self._session.headers["User-Agent"] = USER_AGENT
        self._lock = threading.Lock()
        self._schemes: dict[str, str] = {}
        self._auth = registry_auth.Authenticator(
            credentials=self.config.credentials,
            docker_config=self.config.docker_config,
            insecure=self._insecure,
            request_token=self._request_token,
        )
        self._bundles: dict[str, tuple[str | bool, tuple[str, str] | None]] = {}
        self._bundle_dir: str | None = None
        # Seconds slept before retries so far, against ``config.max_wait`` (one client per pull).
        self._waited = 0.0

    def __repr__(self) -> str:
        return f"Client(insecure={sorted(self.config.insecure)!r})"

    def close(self) -> None:
        self._session.close()
        if self._bundle_dir:
            shutil.rmtree(self._bundle_dir, ignore_errors=True)
            self._bundle_dir = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public protocol operations ----------------------------------------------------------------

    def head_manifest(self, ref: references.ImageReference) -> str | None:
        """The digest the registry holds for ``ref`` (a cheap HEAD), or None when it has none."""
        response = self._request("HEAD", ref, f"manifests/{ref.reference}", headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        self._raise_for_status(response, ref, "manifest")
        digest = response.headers.get("Docker-Content-Digest")
        return digest if digest and _DIGEST_RE.match(digest) else None

    def get_manifest(self, ref: references.ImageReference, reference: str | None = None) -> Manifest:
        """GET a manifest or index by tag or digest and verify it (size cap, digest, media type)."""
        reference = reference or ref.reference
        response = self._request(
            "GET",
            ref,
            f"manifests/{reference}",
            headers={"Accept": ACCEPT, "Accept-Encoding": "identity"},
            stream=True,
        )
        try:
            if response.status_code == 404:
                raise errors.NotFound(f"manifest for {ref.name}:{reference} not found: {_error_detail(response)}")
            self._raise_for_status(response, ref, "manifest")
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_MANIFEST_SIZE:
                raise errors.EngineError(f"manifest for {ref} is larger than {MAX_MANIFEST_SIZE} bytes")
            body = bytearray()
            while chunk := response.raw.read(65536, decode_content=False):
                body += chunk
                if len(body) > MAX_MANIFEST_SIZE:
                    raise errors.EngineError(f"manifest for {ref} is larger than {MAX_MANIFEST_SIZE} bytes")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.Unavailable(f"reading manifest of {ref} failed: {type(exc).__name__}") from None
        finally:
            response.close()
        raw = bytes(body)
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if _DIGEST_RE.match(reference) and digest != reference:
            raise errors.DigestMismatch(f"manifest {reference} of {ref.name} hashed to {digest}")
        header_digest = response.headers.get("Docker-Content-Digest")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise errors.DigestMismatch(
                f"manifest of {ref} hashed to {digest} but the registry announced {header_digest}"
            )
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise errors.EngineError(f"manifest of {ref} is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise errors.EngineError(f"manifest of {ref} is not a JSON object")
        content_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
        media_type = check_manifest_media_type(content_type, parsed)
        return Manifest(digest=digest, media_type=media_type, raw=raw)

    def get_blob_bytes(self, ref: references.ImageReference, descriptor: Descriptor) -> bytes:
        """A small blob (an image config) fetched whole and verified; capped like manifests."""
        if descriptor.size > MAX_MANIFEST_SIZE:
            raise errors.EngineError(f"config blob {descriptor.digest} is too large ({descriptor.size} bytes)")
        buffer = _MemorySink()
        self.fetch_blob(ref, descriptor, buffer)
        data = bytes(buffer.data)
        if len(data) != descriptor.size or "sha256:" + hashlib.sha256(data).hexdigest() != descriptor.digest:
            raise errors.DigestMismatch(f"blob {descriptor.digest} of {ref.name} did not match its descriptor")
        return data

    def fetch_blob(
        self,
        ref: references.ImageReference,
        descriptor: Descriptor,
        sink: Sink,
        *,
        progress: typing.Callable[[int], None] | None = None,
    ) -> None:
        """Stream a blob into ``sink``, resuming with ``Range`` from ``sink.offset`` after failures.

        The sink enforces size and digest; this method never writes more than ``descriptor.size``
        bytes, so an endless response cannot fill the disk. Transient failures (connection errors,
        timeouts, 5xx, 429) are retried with exponential backoff, each retry resuming where the
        previous attempt stopped.
        """
        if descriptor.urls and not descriptor.media_type:
            raise errors.EngineError(f"blob {descriptor.digest} is only available from foreign URLs")
        attempt = 0
        while True:
            try:
                self._fetch_blob_once(ref, descriptor, sink, progress)
                return
            except errors.Unavailable as exc:
                attempt += 1
                if attempt > self.config.retries:
                    raise
                self._pause(max(exc.retry_after, self.config.backoff * 2 ** (attempt - 1)), exc)

    # -- internals -------------------------------------------------------------------------------

    def _fetch_blob_once(
        self,
        ref: references.ImageReference,
        descriptor: Descriptor,
        sink: Sink,
        progress: typing.Callable[[int], None] | None,
    ) -> None:
        offset = sink.offset
        if offset >= descriptor.size and descriptor.size > 0:
            return
        # identity: a transparently decoded body would never hash to the digest.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        response = self._request("GET", ref, f"blobs/{descriptor.digest}", headers=headers, stream=True, retry=False)
        try:
            if response.status_code == 404:
                raise errors.NotFound(f"blob {descriptor.digest} of {ref.name} not found")
            if response.status_code == 416 and offset:
                sink.restart()
                raise errors.Unavailable("registry refused the resume range; restarting", retry_after=0)
            self._raise_for_status(response, ref, "blob")
            if offset and response.status_code != 206:
                sink.restart()
            remaining = descriptor.size - sink.offset
            reader = response.raw
            while True:
                chunk = reader.read(_CHUNK, decode_content=False)
                if not chunk:
                    break
                if len(chunk) > remaining:
                    raise errors.DigestMismatch(
                        f"blob {descriptor.digest} of {ref.name} is larger than its descriptor's "
                        f"{descriptor.size} bytes"
                    )
                remaining -= len(chunk)
                sink.write(chunk)
                if progress is not None:
                    progress(len(chunk))
            if remaining:
                raise errors.Unavailable(
                    f"blob {descriptor.digest} of {ref.name} ended {remaining} bytes early", retry_after=0
                )
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # urllib3's ProtocolError/ReadTimeoutError surface here mid-stream: resumable.
            raise errors.Unavailable(
                f"download of {descriptor.digest} from {ref.registry} failed: {_reason(exc)}",
                retry_after=0,
            ) from None
        finally:
            response.close()

    def _pause(self, delay: float, reason: errors.Unavailable) -> None:
        """Sleep ``delay`` seconds before a retry, or raise ``reason`` when that would take the
        pull's waits past ``config.max_wait``: a registry that keeps asking for time gets an error."""
        delay = min(max(delay, 0.0), MAX_RETRY_AFTER)
        with self._lock:
            if self._waited + delay > self.config.max_wait:
                raise errors.Unavailable(
                    f"{reason} (the registry asks to wait {delay:.0f}s more; this pull has already waited "
                    f"{self._waited:.0f}s of its {self.config.max_wait:.0f}s)",
                    retry_after=delay,
                ) from None
            self._waited += delay
        time.sleep(delay)

    def _raise_for_status(self, response: requests.Response, ref: references.ImageReference, what: str) -> None:
        code = response.status_code
        if code < 300:
            return
        detail = _error_detail(response) if response.request.method != "HEAD" else response.reason
        if code == 401:
            raise errors.EngineError(f"unauthorized: authentication required to pull {ref} ({detail})")
        if code == 403:
            raise errors.EngineError(f"denied: access to {ref} is forbidden ({detail})")
        if code == 404:
            raise errors.NotFound(f"{what} for {ref} not found ({detail})")
        if code == 429 or code >= 500:
            raise errors.Unavailable(
                f"registry {ref.registry} answered {code} for {what} of {ref.name} ({detail})",
                retry_after=_retry_after(response, 1.0),
            )
        raise errors.EngineError(f"registry {ref.registry} answered {code} for {what} of {ref.name} ({detail})")

    def _base_url(self, host: str) -> str:
        with self._lock:
            scheme = self._schemes.get(host)
        if scheme is None:
            scheme = self._ping(host)
        return f"{scheme}://{host}/v2/"

    def _insecure(self, host: str) -> bool:
        return host in self.config.insecure or is_loopback(host)

    def _ping(self, host: str) -> str:
        """``GET /v2/``: choose the scheme and remember the auth challenge for this host.

        HTTPS is always tried first; plain HTTP only for hosts listed as insecure (loopback
        included), and only when the TLS attempt failed at the connection level.
        """
        schemes = ["https", "http"] if self._insecure(host) else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            try:
                response = self._send("GET", f"{scheme}://{host}/v2/", host=host, headers={}, stream=False)
            except errors.Unavailable as exc:
                last = exc
                continue
            if response.status_code == 401:
                _refuse_foreign_challenge(response, f"{scheme}://{host}/v2/", host)
                self._auth.challenged(host, registry_auth.parse_challenge(response.headers.get("WWW-Authenticate", "")))
            elif response.status_code >= 500:
                raise errors.Unavailable(f"registry {host} answered {response.status_code} to /v2/")
            elif response.status_code not in (200, 401):
                raise errors.EngineError(f"{host} does not look like a registry: /v2/ answered {response.status_code}")
            with self._lock:
                self._schemes[host] = scheme
            return scheme
        assert last is not None
        raise last

    def _tls(self, host: str) -> tuple[str | bool, tuple[str, str] | None]:
        """``verify`` and ``cert`` for ``host``: system CAs plus ``certs.d/<host>/*.crt``."""
        with self._lock:
            cached = self._bundles.get(host)
            if cached is not None:
                return cached
            host_dir = self.config.certs_dir / host
            verify: str | bool = True
            cert: tuple[str, str] | None = None
            try:
                entries = sorted(host_dir.iterdir())
            except OSError:
                entries = []
            cas = [p for p in entries if p.suffix == ".crt"]
            if cas:
                if self._bundle_dir is None:
                    self._bundle_dir = tempfile.mkdtemp(prefix="reconciler-ca-")
                bundle = Path(self._bundle_dir) / (hashlib.sha256(host.encode()).hexdigest()[:16] + ".pem")
                parts = [Path(requests.utils.DEFAULT_CA_BUNDLE_PATH).read_bytes()]
                parts += [p.read_bytes() for p in cas]
                bundle.write_bytes(b"\n".join(parts))
                verify = str(bundle)
            for cert_file in (p for p in entries if p.suffix == ".cert"):
                key_file = cert_file.with_suffix(".key")
                if key_file.exists():
                    cert = (str(cert_file), str(key_file))
                    break
            self._bundles[host] = (verify, cert)
            return verify, cert

    def _send(
        self,
        method: str,
        url: str,
        *,
        host: str,
        headers: Mapping[str, str],
        stream: bool,
        params: object = None,
    ) -> requests.Response:
        verify, cert = self._tls(host) if url.startswith("https://") else (True, None)
        try:
            return self._session.request(
                method,
                url,
                headers=dict(headers),
                params=typing.cast(typing.Any, params),
                stream=stream,
                timeout=self.config.timeout,
                verify=verify,
                cert=cert,
                allow_redirects=method != "HEAD",
            )
        except requests.exceptions.SSLError as exc:
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                # The server speaks TLS and we don't trust it: terminal, and no plain-HTTP fallback.
                raise errors.EngineError(
                    f"TLS certificate of {host} is not trusted; put its CA in "
                    f"{self.config.certs_dir / host}/ca.crt or fix the certificate"
                ) from None
            raise errors.Unavailable(f"TLS handshake with {host} failed") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise errors.Unavailable(f"cannot reach registry {host}: {_reason(exc)}") from None
        except requests.RequestException as exc:
            raise errors.EngineError(f"request to {host} failed: {type(exc).__name__}") from None

    def _request_token(
        self, realm: str, headers: Mapping[str, str], params: Sequence[tuple[str, str]]
    ) -> tuple[int, bytes]:
        """GET a token realm for the authenticator (the realm may be another host)."""
        realm_host = realm.split("://", 1)[1].split("/", 1)[0]
        response = self._send("GET", realm, host=realm_host, headers=headers, stream=False, params=list(params))
        return response.status_code, response.content

    def _request(
        self,
        method: str,
        ref: references.ImageReference,
        path: str,
        *,
        headers: Mapping[str, str],
        stream: bool = False,
        retry: bool = True,
    ) -> requests.Response:
        """One authenticated request with the token dance and (optionally) retries on 5xx/429."""
        host = endpoint_host(ref.registry)
        scope = f"repository:{ref.repository}:pull"
        attempt = 0
        while True:
            url = self._base_url(host) + f"{ref.repository}/{path}"
            response = self._authenticated(method, url, host=host, scope=scope, headers=headers, stream=stream)
            transient = response.status_code == 429 or response.status_code >= 500
            if not (retry and transient) or attempt >= self.config.retries:
                return response
            attempt += 1
            delay = _retry_after(response, self.config.backoff * 2 ** (attempt - 1))
            response.close()
            self._pause(delay, errors.Unavailable(f"registry {host} answered {response.status_code} for {path}"))

    def _authenticated(
        self, method: str, url: str, *, host: str, scope: str, headers: Mapping[str, str], stream: bool
    ) -> requests.Response:
        attempt = 0
        reauthenticated = False
        while True:
            full = dict(headers)
            auth = self._auth.header(host, scope)
            if auth:
                full["Authorization"] = auth
            try:
                response = self._send(method, url, host=host, headers=full, stream=stream)
            except errors.Unavailable as exc:
                attempt += 1
                if attempt > self.config.retries:
                    raise
                self._pause(self.config.backoff * 2 ** (attempt - 1), exc)
                continue
            if response.status_code == 401:
                _refuse_foreign_challenge(response, url, host)
            if response.status_code != 401 or reauthenticated:
                return response
            # The per-request challenge names the exact scope needed; drop any cached token
            # and retry once with a fresh one.
            header = response.headers.get("WWW-Authenticate", "")
            if not header:
                return response
            challenge = registry_auth.parse_challenge(header)
            if challenge.scheme == "basic" and self._auth.credentials(host) is None:
                return response
            response.close()
            if challenge.params.get("scope"):
                scope = challenge.params["scope"]
            self._auth.challenged(host, challenge, stale_scope=scope)
            reauthenticated = True


class _MemorySink:
    """A Sink for small blobs (configs) kept in memory."""

    def __init__(self) -> None:
        self.data = bytearray()

    @property
    def offset(self) -> int:
        return len(self.data)

    def write(self, data: bytes) -> None:
        self.data += data

    def restart(self) -> None:
        self.data.clear()


def iter_layers(manifest: Mapping[str, typing.Any]) -> Iterator[Descriptor]:
    """The layer descriptors of an image manifest, validated."""
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise errors.EngineError("image manifest has no layers array")
    for layer in layers:
        yield Descriptor.from_json(layer)


def config_descriptor(manifest: Mapping[str, typing.Any]) -> Descriptor:
    return Descriptor.from_json(manifest.get("config"))
