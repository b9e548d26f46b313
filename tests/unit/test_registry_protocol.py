"""Registry protocol helpers without a network: challenges, endpoints, platforms, media types,
credentials from the Docker config file and credential helpers, secret hygiene."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from reconciler import errors, references
from reconciler.backends.native import registry, registry_auth


def test_bearer_challenge_keeps_commas_and_spaces_in_quoted_values() -> None:
    header = 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push repository:c:pull"'
    challenge = registry_auth.parse_challenge(header)
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push repository:c:pull",
    }


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        ('Basic realm="basic-realm"', "basic", {"realm": "basic-realm"}),
        (
            "Bearer realm=http://127.0.0.1:5002/token,service=svc",
            "bearer",
            {"realm": "http://127.0.0.1:5002/token", "service": "svc"},
        ),
        ('Bearer realm="a\\"b"', "bearer", {"realm": 'a"b'}),
        ('BEARER  Realm = "x" , Service="y"', "bearer", {"realm": "x", "service": "y"}),
    ],
)
def test_challenge_variants(header: str, scheme: str, params: dict[str, str]) -> None:
    challenge = registry_auth.parse_challenge(header)
    assert challenge.scheme == scheme
    assert dict(challenge.params) == params


@pytest.mark.parametrize(
    ("text", "endpoint", "repository"),
    [
        ("busybox", "registry-1.docker.io", "library/busybox"),
        ("docker.io/library/alpine:3", "registry-1.docker.io", "library/alpine"),
        ("user/app", "registry-1.docker.io", "user/app"),
        ("127.0.0.1:5000/test/busybox:multi", "127.0.0.1:5000", "test/busybox"),
        ("localhost/x@sha256:" + "a" * 64, "localhost", "x"),
        ("ghcr.io/org/img", "ghcr.io", "org/img"),
    ],
)
def test_reference_to_endpoint(text: str, endpoint: str, repository: str) -> None:
    ref = references.parse(text)
    assert registry.endpoint_host(ref.registry) == endpoint
    assert ref.repository == repository


@pytest.mark.parametrize(
    ("machine", "expected"),
    [("x86_64", "linux/amd64"), ("aarch64", "linux/arm64/v8"), ("armv7l", "linux/arm/v7")],
)
def test_host_platform(machine: str, expected: str) -> None:
    assert str(registry.host_platform(machine)) == expected


def _entry(arch: str, digest_char: str, *, os_name: str = "linux", variant: str | None = None) -> dict[str, object]:
    platform: dict[str, str] = {"os": os_name, "architecture": arch}
    if variant:
        platform["variant"] = variant
    return {
        "mediaType": registry.MEDIA_OCI_MANIFEST,
        "digest": "sha256:" + digest_char * 64,
        "size": 10,
        "platform": platform,
    }


def test_platform_selection_picks_amd64_and_skips_attestations() -> None:
    index = {
        "manifests": [
            _entry("unknown", "0", os_name="unknown"),
            _entry("arm64", "1", variant="v8"),
            _entry("amd64", "2"),
        ]
    }
    chosen = registry.select_platform(index, registry.Platform("linux", "amd64"))
    assert chosen.digest == "sha256:" + "2" * 64


def test_platform_selection_variants() -> None:
    index = {"manifests": [_entry("arm", "6", variant="v6"), _entry("arm", "7", variant="v7"), _entry("arm64", "8")]}
    assert registry.select_platform(index, registry.Platform("linux", "arm", "v7")).digest.endswith("7" * 64)
    # No exact variant: an entry without one is accepted.
    assert registry.select_platform(index, registry.Platform("linux", "arm64", "v8")).digest.endswith("8" * 64)


def test_platform_selection_uses_dockers_wording_when_nothing_matches() -> None:
    index = {"manifests": [_entry("arm64", "1"), _entry("s390x", "2")]}
    with pytest.raises(errors.NotFound, match=r"^no matching manifest for linux/amd64 in the manifest list entries$"):
        registry.select_platform(index, registry.Platform("linux", "amd64"))


@pytest.mark.parametrize("media_type", [registry.MEDIA_DOCKER_SCHEMA1, registry.MEDIA_DOCKER_SCHEMA1_SIGNED])
def test_schema1_is_refused_clearly(media_type: str) -> None:
    with pytest.raises(errors.EngineError, match="schema1 is deprecated and not supported"):
        registry.check_manifest_media_type(media_type, {"schemaVersion": 1, "name": "x"})


def test_media_type_rules() -> None:
    body = {"schemaVersion": 2, "mediaType": registry.MEDIA_OCI_INDEX, "manifests": []}
    assert registry.check_manifest_media_type(registry.MEDIA_OCI_INDEX, body) == registry.MEDIA_OCI_INDEX
    with pytest.raises(errors.EngineError, match="does not match"):
        registry.check_manifest_media_type(registry.MEDIA_OCI_MANIFEST, body)
    # mediaType omitted (allowed by OCI): told apart by shape.
    assert registry.check_manifest_media_type("", {"schemaVersion": 2, "layers": []}) == registry.MEDIA_OCI_MANIFEST
    assert registry.check_manifest_media_type("", {"schemaVersion": 2, "manifests": []}) == registry.MEDIA_OCI_INDEX
    with pytest.raises(errors.EngineError, match="unsupported manifest media type"):
        registry.check_manifest_media_type("application/vnd.cncf.helm.config.v1+json", {"schemaVersion": 2})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5000", True), ("127.1.2.3", True), ("localhost:5000", True), ("[::1]:5000", True),
     ("10.0.0.1:5000", False), ("registry.example", False), ("localhost.example:80", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert registry.is_loopback(host) is loopback


def test_accept_header_lists_all_four_types() -> None:
    for media_type in (
        registry.MEDIA_OCI_INDEX,
        registry.MEDIA_OCI_MANIFEST,
        registry.MEDIA_DOCKER_LIST,
        registry.MEDIA_DOCKER_MANIFEST,
    ):
        assert media_type in registry.ACCEPT
    assert "v1+json" not in registry.ACCEPT.replace("index.v1+json", "").replace("manifest.v1+json", "")


def _write_config(path: Path, data: dict[str, object]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_credentials_from_auths(tmp_path: Path) -> None:
    config = _write_config(
        tmp_path / "config.json",
        {
            "auths": {
                "127.0.0.1:5443": {"auth": base64.b64encode(b"alice:s3cret:with:colons").decode()},
                "https://index.docker.io/v1/": {"username": "bob", "password": "hub-pass"},
            }
        },
    )
    creds = registry_auth.load_credentials("127.0.0.1:5443", config)
    assert creds == registry_auth.Credentials("alice", "s3cret:with:colons")
    assert registry_auth.load_credentials("docker.io", config) == registry_auth.Credentials("bob", "hub-pass")
    assert registry_auth.load_credentials("other.example", config) is None
    assert registry_auth.load_credentials("x", tmp_path / "missing.json") is None


def _helper(tmp_path: Path, name: str, script: str) -> None:
    path = tmp_path / "bin" / f"docker-credential-{name}"
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_credentials_from_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(
        tmp_path,
        "fake",
        'read server; echo "{\\"Username\\":\\"helper-user\\",\\"Secret\\":\\"helper-secret-$server\\"}"\n',
    )
    _helper(tmp_path, "empty", "echo 'credentials not found in native keychain'; exit 1\n")
    _helper(tmp_path, "broken", "echo 'Secret: leaked-value' >&2; exit 3\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    config = _write_config(
        tmp_path / "config.json",
        {
            "credHelpers": {"reg.example": "fake", "none.example": "empty", "bad.example": "broken"},
            "credsStore": "fake",
        },
    )
    assert registry_auth.load_credentials("reg.example", config) == registry_auth.Credentials(
        "helper-user", "helper-secret-reg.example"
    )
    assert registry_auth.load_credentials("none.example", config) is None
    with pytest.raises(errors.EngineError) as caught:
        registry_auth.load_credentials("bad.example", config)
    assert "leaked-value" not in str(caught.value) and "docker-credential-broken" in str(caught.value)
    # credsStore serves every other registry.
    assert registry_auth.load_credentials("any.example", config) == registry_auth.Credentials(
        "helper-user", "helper-secret-any.example"
    )


def test_missing_helper_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    config = _write_config(tmp_path / "config.json", {"credsStore": "nonexistent"})
    with pytest.raises(errors.EngineError, match="docker-credential-nonexistent is configured but not installed"):
        registry_auth.load_credentials("x.example", config)


def test_secrets_never_in_reprs() -> None:
    creds = registry_auth.Credentials("user", "topsecret")
    config = registry.RegistryConfig(credentials={"h": creds})
    assert "topsecret" not in repr(creds)
    assert "topsecret" not in repr(config)
    client = registry.Client(config)
    try:
        assert "topsecret" not in repr(client)
    finally:
        client.close()
    manifest = registry.Manifest("sha256:" + "0" * 64, registry.MEDIA_OCI_MANIFEST, b"x" * 10)
    assert "xxxx" not in repr(manifest)


def test_descriptor_validation() -> None:
    good = registry.Descriptor.from_json({"mediaType": "m", "digest": "sha256:" + "a" * 64, "size": 3})
    assert good.size == 3
    for bad in ({"digest": "sha512:" + "a" * 128, "size": 1}, {"digest": "sha256:../../etc", "size": 1},
                {"digest": "sha256:" + "a" * 64, "size": -1}, {"digest": "sha256:" + "a" * 64, "size": True}, []):  # fmt: skip
        with pytest.raises(errors.EngineError):
            registry.Descriptor.from_json(bad)
