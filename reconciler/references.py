"""Image references: ``[registry[:port]/]repository[:tag][@sha256:<64 hex>]`` with Docker's defaults.

A pure value type shared by the manifest validator (which rejects bad references with a clear
message) and the engines (which need the registry host, repository and tag or digest). It does no
I/O and imports nothing from the project, so every layer may use it.

Docker's normalisation: a name with no registry component lives on ``docker.io``; a single-part
name on ``docker.io`` gets the ``library/`` prefix; no tag and no digest means ``latest``. The first
path component is a registry when it contains ``.`` or ``:`` or is ``localhost``.
"""

from __future__ import annotations

import dataclasses
import re

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)


class InvalidReference(ValueError):
    """The text is not a valid image reference; the message says which part is wrong."""


@dataclasses.dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed, normalised image reference."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> ImageReference:
    """Parse and normalise ``text``; raise :class:`InvalidReference` naming the faulty part."""
    if not text or text != text.strip():
        raise InvalidReference("image reference must be a non-empty string without spaces")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InvalidReference(f"digest {digest!r} must be sha256: followed by 64 lowercase hex digits")
    registry = DEFAULT_REGISTRY
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST_RE.match(first):
            raise InvalidReference(f"registry {first!r} is not a valid host[:port]")
        registry, rest = first, remainder
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidReference(f"tag {tag!r} must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}")
    if not _REPOSITORY_RE.match(rest):
        raise InvalidReference(
            f"repository {rest!r} must be lowercase path components of [a-z0-9] separated by . _ __ or -"
        )
    if registry == DEFAULT_REGISTRY and "/" not in rest:
        rest = f"library/{rest}"
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry=registry, repository=rest, tag=tag, digest=digest)
