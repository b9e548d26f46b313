"""Loading images from a tarball: an OCI image layout (``skopeo copy oci-archive:``) or a
docker-archive (``docker save``).

Every blob is verified against its digest on the way into the content store (a docker-archive's
layers are uncompressed, so each layer's digest is its diff_id); the images are then installed
like pulled ones. Names come from the archive: ``RepoTags``, or the OCI
``io.containerd.image.name`` / ``org.opencontainers.image.ref.name`` annotations when they hold a
full reference. A failed load is undone like a failed pull.

This module sits under ``images`` and above ``installing``. What it must not do: extract anything
from the archive to the filesystem except through the content store, trust a size or digest the
archive states without checking it, or reach a registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tarfile
import typing
from collections.abc import Mapping
from pathlib import Path

from reconciler import errors, references
from reconciler.backends.native import content, image_index, installing, layer_pipeline, layers, registry

DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
Members = Mapping[str, tarfile.TarInfo]


def load(
    installation: installing.Installation,
    path: Path,
    *,
    platform: registry.Platform,
    progress: layer_pipeline.ProgressCallback,
    hold: contextlib.AbstractContextManager[None],
) -> list[image_index.Recorded]:
    """Install every image of the archive at ``path``; ``hold`` is held while the archive is read."""
    try:
        with hold, tarfile.open(path, "r:*") as archive:
            members = {layers.normalise(m.name): m for m in archive.getmembers() if m.isfile()}
            reader = _Archive(installation, archive, members)
            if "index.json" in members and "oci-layout" in members:
                return reader.load_oci(platform, progress)
            if "manifest.json" in members:
                return reader.load_docker(progress)
            raise errors.EngineError(f"{path} is neither an OCI layout nor a docker-archive tarball")
    except tarfile.TarError as exc:
        installation.rollback()
        raise errors.EngineError(f"{path} is not a readable tar archive: {exc}") from None
    except errors.ReconcilerError:
        installation.rollback()
        raise
    except OSError as exc:
        installation.rollback()
        raise errors.EngineError(f"cannot read {path}: {exc.strerror or exc}") from None


class _Archive:
    """One open archive being installed."""

    def __init__(self, installation: installing.Installation, archive: tarfile.TarFile, members: Members) -> None:
        self._installation = installation
        self._archive = archive
        self._members = members

    def member_bytes(self, name: str) -> bytes:
        """A small member's bytes (a manifest, an index, a config), capped like a registry's manifests."""
        member = self._members.get(name)
        if member is None:
            raise errors.NotFound(f"the archive has no {name}")
        if member.size > registry.MAX_MANIFEST_SIZE:
            raise errors.EngineError(f"{name} in the archive is too large ({member.size} bytes)")
        reader = self._archive.extractfile(member)
        if reader is None:
            raise errors.EngineError(f"cannot read {name} from the archive")
        with reader:
            return reader.read()

    def blob(self, name: str, *, digest: str, size: int | None) -> None:
        """Copy the member ``name`` into the content store, verified against ``digest`` (and ``size``)."""
        member = self._members.get(name)
        if member is None:
            raise errors.NotFound(f"the archive has no {name} for blob {digest}")
        if size is not None and member.size != size:
            raise errors.DigestMismatch(f"{name} has {member.size} bytes, its descriptor says {size}")
        reader = self._archive.extractfile(member)
        if reader is None:
            raise errors.EngineError(f"cannot read {name} from the archive")
        with reader:
            store = self._installation.content
            if content.copy_verified(store, digest, member.size, typing.cast(typing.BinaryIO, reader)):
                self._installation.created_blob(digest)

    def oci_blob(self, descriptor: registry.Descriptor) -> bytes:
        """A small blob of an OCI layout, stored and returned."""
        name = f"blobs/sha256/{content.hex_of(descriptor.digest)}"
        self.blob(name, digest=descriptor.digest, size=descriptor.size)
        return self._installation.content.read(descriptor.digest)

    def load_oci(
        self, platform: registry.Platform, progress: layer_pipeline.ProgressCallback
    ) -> list[image_index.Recorded]:
        index = json.loads(self.member_bytes("index.json"))
        loaded: list[image_index.Recorded] = []
        for entry in index.get("manifests") or []:
            descriptor = registry.Descriptor.from_json(entry)
            names = _names_from_annotations(entry.get("annotations") or {})
            raw = self.oci_blob(descriptor)
            top = registry.Manifest(
                descriptor.digest, registry.check_manifest_media_type(descriptor.media_type, json.loads(raw)), raw
            )
            manifest = self._oci_platform_manifest(top, platform)
            body = manifest.json()
            config_raw = self.oci_blob(registry.config_descriptor(body))
            for layer in registry.iter_layers(body):
                self.blob(f"blobs/sha256/{content.hex_of(layer.digest)}", digest=layer.digest, size=layer.size)
            keys = [image_index.ref_key(n) for n in names] + [image_index.digest_key(n, top.digest) for n in names]
            loaded.append(
                self._installation.install(
                    names=keys, top=top, manifest=manifest, config_raw=config_raw, fetch=None, progress=progress
                )
            )
        if not loaded:
            raise errors.EngineError("the OCI layout's index.json lists no images")
        return loaded

    def _oci_platform_manifest(self, top: registry.Manifest, platform: registry.Platform) -> registry.Manifest:
        """``top`` itself, or the manifest an index lists for ``platform``."""
        if not top.is_index:
            return top
        chosen = registry.select_platform(top.json(), platform)
        manifest = registry.Manifest(chosen.digest, registry.MEDIA_OCI_MANIFEST, self.oci_blob(chosen))
        media_type = registry.check_manifest_media_type(chosen.media_type, manifest.json())
        return registry.Manifest(chosen.digest, media_type, manifest.raw)

    def load_docker(self, progress: layer_pipeline.ProgressCallback) -> list[image_index.Recorded]:
        entries = json.loads(self.member_bytes("manifest.json"))
        if not isinstance(entries, list) or not entries:
            raise errors.EngineError("docker-archive manifest.json lists no images")
        loaded: list[image_index.Recorded] = []
        for entry in entries:
            config_name = layers.normalise(str(entry["Config"]))
            config_raw = self.member_bytes(config_name)
            config_digest = "sha256:" + hashlib.sha256(config_raw).hexdigest()
            self._installation.write_blob(config_digest, config_raw)
            manifest = self._docker_manifest(entry, config_name, config_raw, config_digest)
            names = [image_index.ref_key(image_index.parse(str(tag))) for tag in entry.get("RepoTags") or []]
            loaded.append(
                self._installation.install(
                    names=names, top=manifest, manifest=manifest, config_raw=config_raw, fetch=None, progress=progress
                )
            )
        return loaded

    def _docker_manifest(
        self, entry: Mapping[str, typing.Any], config_name: str, config_raw: bytes, config_digest: str
    ) -> registry.Manifest:
        """Store the entry's layers and the schema2 manifest a registry would have served for them."""
        diff_ids = (json.loads(config_raw).get("rootfs") or {}).get("diff_ids") or []
        layer_names = [layers.normalise(str(n)) for n in entry.get("Layers") or []]
        if len(layer_names) != len(diff_ids):
            raise errors.EngineError(f"{config_name} lists {len(diff_ids)} diff_ids for {len(layer_names)} layers")
        descriptors = []
        for name, diff_id in zip(layer_names, diff_ids, strict=True):
            # docker save writes layers uncompressed, so each blob's digest is its diff_id.
            member = self._members.get(name)
            if member is None:
                raise errors.NotFound(f"the archive has no layer {name}")
            self.blob(name, digest=str(diff_id), size=None)
            descriptors.append({"mediaType": DOCKER_LAYER_TAR, "digest": str(diff_id), "size": member.size})
        body = {
            "schemaVersion": 2,
            "mediaType": registry.MEDIA_DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": len(config_raw)},
            "layers": descriptors,
        }
        raw = json.dumps(body, separators=(",", ":")).encode()
        manifest = registry.Manifest("sha256:" + hashlib.sha256(raw).hexdigest(), registry.MEDIA_DOCKER_MANIFEST, raw)
        self._installation.write_blob(manifest.digest, raw)
        return manifest


def _names_from_annotations(annotations: Mapping[str, typing.Any]) -> list[str]:
    for key in NAME_ANNOTATIONS:
        value = annotations.get(key)
        if isinstance(value, str) and ("/" in value or ":" in value or "@" in value):
            try:
                references.parse(value)
            except references.InvalidReference:
                continue
            return [value]
    return []
