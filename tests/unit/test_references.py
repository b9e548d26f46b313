"""Image references parse with Docker's defaults, and bad ones say which part is wrong."""

from __future__ import annotations

import pytest

from reconciler import references

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("127.0.0.1:5000/shop/web:1.4", "127.0.0.1:5000", "shop/web", "1.4", None),
        ("localhost/app", "localhost", "app", "latest", None),
        (f"registry.example/a/b@{DIGEST}", "registry.example", "a/b", None, DIGEST),
        (f"127.0.0.1:5000/x:1@{DIGEST}", "127.0.0.1:5000", "x", "1", DIGEST),
    ],
)
def test_parse(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = references.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.reference == (digest or tag)
    assert references.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "part"),
    [("", "non-empty"), ("Busybox", "repository"), ("app:-bad", "tag"), ("app@sha256:12", "digest"),
     (" app", "non-empty"), ("a//b", "repository")],
)  # fmt: skip
def test_invalid(text: str, part: str) -> None:
    with pytest.raises(references.InvalidReference, match=part):
        references.parse(text)
