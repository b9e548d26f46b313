"""The registry client against a scripted fake transport (no sockets): auth dances, retries,
redirects, manifest verification, and blob streaming into the content store with resume."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import requests.adapters

from reconciler import errors, references
from reconciler.backends.native import content, registry

Handler = Callable[[requests.PreparedRequest], tuple[int, dict[str, str], bytes]]


class FakeTransport(requests.adapters.BaseAdapter):
    """Answers every request with ``handler`` and records what was sent."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        status, headers, body = self.handler(request)
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response.headers.setdefault("Content-Length", str(len(body)))
        response.raw = _Raw(body)
        response.url = str(request.url)
        response.request = request
        response.reason = "fake"
        return response

    def close(self) -> None:
        return None


class _Raw:
    """Enough of urllib3's response for requests and for ``raw.read(n, decode_content=False)``."""

    def __init__(self, body: bytes) -> None:
        self._stream = io.BytesIO(body)

    def read(self, n: int = -1, decode_content: bool = True) -> bytes:
        return self._stream.read(n)

    def close(self) -> None:
        self._stream.close()


def _client(handler: Handler, **config: object) -> tuple[registry.Client, FakeTransport]:
    transport = FakeTransport(handler)
    session = requests.Session()
    session.mount("https://", transport)
    session.mount("http://", transport)
    settings = registry.RegistryConfig(docker_config=Path("/nonexistent"), backoff=0.0, **config)  # type: ignore[arg-type]
    return registry.Client(settings, session=session), transport


REF = references.parse("reg.example/team/app:1")
MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": registry.MEDIA_OCI_MANIFEST, "config": {}, "layers": []}
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


def test_bearer_token_flow_with_scope_and_cache() -> None:
    tokens: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        url = str(request.url)
        if url.startswith("https://auth.example/token"):
            assert "scope=repository%3Ateam%2Fapp%3Apull" in url and "service=reg" in url
            assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
            tokens.append("t1")
            return 200, {}, json.dumps({"token": "t1", "expires_in": 300}).encode()
        challenge = {"WWW-Authenticate": 'Bearer realm="https://auth.example/token",service="reg"'}
        if url.endswith("/v2/"):
            return 401, challenge, b""
        if request.headers.get("Authorization") != "Bearer t1":
            return 401, {"WWW-Authenticate": challenge["WWW-Authenticate"] + ',scope="repository:team/app:pull"'}, b""
        return 200, {"Content-Type": registry.MEDIA_OCI_MANIFEST, "Docker-Content-Digest": MANIFEST_DIGEST}, MANIFEST

    client, transport = _client(handler, credentials={"reg.example": registry.Credentials("u", "p")})
    with client:
        assert client.get_manifest(REF).digest == MANIFEST_DIGEST
        assert client.get_manifest(REF).digest == MANIFEST_DIGEST
    assert tokens == ["t1"]  # cached for the second request
    assert transport.sent[0].headers.get("Accept") is None or "manifest" not in str(transport.sent[0].url)
    manifest_requests = [r for r in transport.sent if "/manifests/" in str(r.url)]
    assert all(registry.MEDIA_OCI_INDEX in r.headers["Accept"] for r in manifest_requests)


def test_expired_token_is_dropped_and_retried_once() -> None:
    issued: list[int] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        url = str(request.url)
        challenge = {
            "WWW-Authenticate": 'Bearer realm="https://auth.example/token",service="reg",scope="repository:team/app:pull"'
        }
        if url.startswith("https://auth.example/"):
            issued.append(1)
            return 200, {}, json.dumps({"access_token": f"t{len(issued)}"}).encode()
        if url.endswith("/v2/"):
            return 401, challenge, b""
        # The registry rejects the first token (revoked), accepts the second.
        if request.headers.get("Authorization") == "Bearer t2":
            return 200, {"Content-Type": registry.MEDIA_OCI_MANIFEST}, MANIFEST
        return 401, challenge, b""

    client, _ = _client(handler)
    with client:
        assert client.get_manifest(REF).digest == MANIFEST_DIGEST
    assert len(issued) == 2


def test_persistent_401_is_unauthorized_without_secrets() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        return (
            401,
            {"WWW-Authenticate": 'Basic realm="r"'},
            b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
        )

    client, transport = _client(handler, credentials={"reg.example": registry.Credentials("u", "hunter2")})
    with client, pytest.raises(errors.EngineError, match="unauthorized") as caught:
        client.get_manifest(REF)
    assert "hunter2" not in str(caught.value)
    assert len([r for r in transport.sent if "/manifests/" in str(r.url)]) == 2  # one retry, no loop


def test_5xx_is_retried_with_backoff_then_unavailable() -> None:
    calls = {"n": 0}

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        if str(request.url).endswith("/v2/"):
            return 200, {}, b"{}"
        calls["n"] += 1
        if calls["n"] < 3:
            return 503, {"Retry-After": "0"}, b""
        return 200, {"Content-Type": registry.MEDIA_OCI_MANIFEST}, MANIFEST

    client, _ = _client(handler, retries=4)
    with client:
        assert client.get_manifest(REF).digest == MANIFEST_DIGEST
    calls["n"] = -100
    client, _ = _client(handler, retries=2)
    with client, pytest.raises(errors.Unavailable, match="503"):
        client.get_manifest(REF)


def test_manifest_digest_header_and_pinned_digest_are_verified() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        if str(request.url).endswith("/v2/"):
            return 200, {}, b"{}"
        return (
            200,
            {"Content-Type": registry.MEDIA_OCI_MANIFEST, "Docker-Content-Digest": "sha256:" + "f" * 64},
            MANIFEST,
        )

    client, _ = _client(handler)
    with client, pytest.raises(errors.DigestMismatch):
        client.get_manifest(REF)
    pinned = references.parse("reg.example/team/app@sha256:" + "e" * 64)
    client, _ = _client(
        lambda r: (
            (200, {"Content-Type": registry.MEDIA_OCI_MANIFEST}, MANIFEST)
            if "/manifests/" in str(r.url)
            else (200, {}, b"")
        )
    )
    with client, pytest.raises(errors.DigestMismatch):
        client.get_manifest(pinned)


def test_manifest_size_is_capped() -> None:
    huge = b"{" + b" " * (registry.MAX_MANIFEST_SIZE + 10) + b"}"
    client, _ = _client(lambda r: (200, {"Content-Length": "0"} if str(r.url)[-4:] == "/v2/" else {}, huge))
    with client, pytest.raises(errors.EngineError, match="larger than"):
        client.get_manifest(REF)


def test_plain_http_only_for_insecure_or_loopback_hosts() -> None:
    seen: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        seen.append(str(request.url))
        if str(request.url).startswith("https://"):
            raise requests.ConnectionError("refused")
        return 200, {}, b"{}"

    client, _ = _client(handler, retries=0)
    with client, pytest.raises(errors.Unavailable):
        client.head_manifest(REF)
    assert all(u.startswith("https://") for u in seen)
    seen.clear()
    client, _ = _client(handler, retries=0, insecure=frozenset({"reg.example"}))
    with client:
        client.head_manifest(REF)
    assert seen[0].startswith("https://") and seen[-1].startswith("http://reg.example/v2/")


def test_blob_redirect_to_another_host_drops_authorization(tmp_path: Path) -> None:
    blob = b"layer bytes" * 100
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        url = str(request.url)
        if url.endswith("/v2/"):
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
        if url.startswith("https://cdn.example/"):
            return 200, {}, blob
        return 307, {"Location": "https://cdn.example/blob?sig=1"}, b""

    client, transport = _client(handler, credentials={"reg.example": registry.Credentials("u", "p")})
    store = content.Store(tmp_path)
    with client, store.ingest(digest, len(blob)) as ingest:
        client.fetch_blob(REF, registry.Descriptor("application/octet-stream", digest, len(blob)), ingest)
        ingest.commit()
    to_registry = [r for r in transport.sent if "reg.example/v2/team" in str(r.url)]
    to_cdn = [r for r in transport.sent if "cdn.example" in str(r.url)]
    assert to_registry[0].headers["Authorization"].startswith("Basic ")
    assert to_cdn and "Authorization" not in to_cdn[0].headers
    assert store.path(digest).read_bytes() == blob


def test_blob_download_resumes_with_range_after_a_cut(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 4096  # 1 MiB
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    ranges: list[str | None] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        if str(request.url).endswith("/v2/"):
            return 200, {}, b"{}"
        ranges.append(request.headers.get("Range"))
        if request.headers.get("Range"):
            start = int(str(request.headers["Range"]).split("=")[1].rstrip("-"))
            return 206, {}, blob[start:]
        return 200, {"Content-Length": str(len(blob))}, blob[: len(blob) // 3]  # connection cut

    client, _ = _client(handler, retries=3)
    store = content.Store(tmp_path)
    with client, store.ingest(digest, len(blob)) as ingest:
        client.fetch_blob(REF, registry.Descriptor("application/octet-stream", digest, len(blob)), ingest)
        ingest.commit()
    assert ranges == [None, f"bytes={len(blob) // 3}-"]
    assert store.read(digest) == blob


def test_blob_larger_than_descriptor_is_cut_off(tmp_path: Path) -> None:
    blob = b"x" * 5000
    digest = "sha256:" + hashlib.sha256(blob[:100]).hexdigest()
    client, _ = _client(lambda r: (200, {}, b"{}") if str(r.url).endswith("/v2/") else (200, {}, blob))
    store = content.Store(tmp_path)
    with client, store.ingest(digest, 100) as ingest, pytest.raises(errors.DigestMismatch, match="larger"):
        client.fetch_blob(REF, registry.Descriptor("application/octet-stream", digest, 100), ingest)
    assert store.digests() == []


def test_content_ingest_verifies_and_resumes(tmp_path: Path) -> None:
    store = content.Store(tmp_path)
    data = b"hello world" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with store.ingest(digest, len(data)) as ingest:
        ingest.write(data[:500])  # interrupted: no commit
    assert store.partial_path(digest).stat().st_size == 500 and not store.has(digest)
    with store.ingest(digest, len(data)) as ingest:
        assert ingest.offset == 500 and ingest.resumed_from == 500
        ingest.write(data[500:])
        ingest.commit()
    assert store.read(digest) == data and store.partials() == []
    oct_mode = store.path(digest).stat().st_mode & 0o777
    assert oct_mode == 0o600 and (tmp_path / "blobs").stat().st_mode & 0o777 == 0o700

    wrong = "sha256:" + "0" * 64
    with store.ingest(wrong, len(data)) as ingest:
        ingest.write(data)
        with pytest.raises(errors.DigestMismatch):
            ingest.commit()
    assert not store.has(wrong) and store.partials() == []
    with pytest.raises(errors.EngineError):
        store.path("sha256:../../etc/passwd")


def test_small_blob_write_ignores_a_stale_partial(tmp_path: Path) -> None:
    store = content.Store(tmp_path)
    data = b'{"config": true}'
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with store.ingest(digest, len(data)) as ingest:
        ingest.write(b"garbage")  # a killed earlier attempt
    assert store.write(digest, data) is True
    assert store.read(digest) == data


def test_an_unreachable_registry_is_named_with_the_systems_reason() -> None:
    settings = registry.RegistryConfig(docker_config=Path("/nonexistent"), retries=0, backoff=0.0)
    # A loopback port held but not listening: connecting is refused at once, and no one else takes it.
    with socket.socket() as held, registry.Client(settings) as client, pytest.raises(errors.Unavailable) as caught:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        client.head_manifest(references.parse(f"127.0.0.1:{port}/team/app:1"))
    assert str(caught.value) == f"cannot reach registry 127.0.0.1:{port}: connection refused"


def test_a_registry_that_times_out_says_so() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        raise requests.ReadTimeout("HTTPSConnectionPool(host='reg.example'): Read timed out. (read timeout=30)")

    client, _ = _client(handler, retries=0)
    with client, pytest.raises(errors.Unavailable, match=r"^cannot reach registry reg.example: timed out$"):
        client.head_manifest(REF)
