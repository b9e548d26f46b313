"""The versioned spec hash that decides whether an object must be recreated.

``v1:sha256:<hex>`` over canonical JSON (sorted keys, no whitespace) of the object's spec with
**defaults excluded**, so that adding a new optional field to the models recreates nothing (a
hash over every field, defaults included, would change for every container on such an upgrade
and recreate them all), and with ordering-only fields (``dependsOn``), fields applied in
place (``resources``) and the rollout's fields (``strategy``, ``minReadySeconds``,
``progressDeadline``) excluded. Contents of referenced files (env files; secrets and configs,
under ``contents``) enter as digests, so an edit inside a file is noticed. Env values enter
as they are (hashes of containers created before the spec label held digests stay valid); the
label itself gets :func:`label_document`, where each env value is a digest. The scheme version
lives in the hash string itself: a later scheme can recognise ``v1`` hashes and migrate instead
of recreating every container.

Pure functions; no I/O (the loader already read and digested the files).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from reconciler import manifests, observed

SCHEME = "v1"

# Fields that never force a recreation: ordering only, updated in place by the engine, or how a
# replacement is rolled out (as a Deployment's minReadySeconds and strategy roll no pod).
_CONTAINER_EXCLUDED = {"depends_on", "resources", "strategy", "min_ready_seconds", "progress_deadline"}


def canonical_json(value: object) -> str:
    """The one serialisation that is hashed: sorted keys, compact separators, UTF-8 text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(value: object) -> str:
    return f"{SCHEME}:sha256:" + hashlib.sha256(canonical_json(value).encode()).hexdigest()


def container_document(container: manifests.DesiredContainer) -> dict[str, Any]:
    """What a container's hash covers; also stored on the container to diff against later."""
    spec = manifests.to_document(container.spec, exclude_defaults=True, exclude=_CONTAINER_EXCLUDED)
    document: dict[str, Any] = {"spec": spec}
    if container.labels:
        document["labels"] = dict(container.labels)
    if container.file_digests:
        document["files"] = dict(container.file_digests)
    if container.contents:
        # Secrets and configs by their path in the container: the digest, never the content.
        document["contents"] = {path: content_digest(data) for path, data in container.contents.items()}
    return document


def content_digest(data: bytes) -> str:
    """``sha256:<hex>`` of a secret's or config's content, as env files' digests are written."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def container_hash(container: manifests.DesiredContainer) -> str:
    return _digest(container_document(container))


def label_document(container: manifests.DesiredContainer) -> dict[str, Any]:
    """What the container's spec label records: :func:`container_document`, env values as digests."""
    return observed.spec_label_document(container_document(container))


def _spec_document(spec: manifests.Model, labels: Mapping[str, str]) -> dict[str, Any]:
    document: dict[str, Any] = {"spec": manifests.to_document(spec, exclude_defaults=True)}
    if labels:
        document["labels"] = dict(labels)
    return document


def network_document(network: manifests.DesiredNetwork) -> dict[str, Any]:
    return _spec_document(network.spec, network.labels)


def network_hash(network: manifests.DesiredNetwork) -> str:
    return _digest(network_document(network))


def volume_document(volume: manifests.DesiredVolume) -> dict[str, Any]:
    return _spec_document(volume.spec, volume.labels)


def volume_hash(volume: manifests.DesiredVolume) -> str:
    return _digest(volume_document(volume))
