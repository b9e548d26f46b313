"""Installing one image into the store: check its manifest and config, bring in the missing layers,
record it in the image index, and take everything back when that fails.

A pull (``pulling``) and a load (``archives``) both end here once they have the manifest and the
config: an :class:`Installation` works out which layers have no snapshot yet, runs the
``layer_pipeline`` over them, and records the image (its layers, the blobs it holds, the names
that point at it) in one atomic write of the index, so a reader sees the image completely or not
at all. It remembers every blob, partial download and snapshot it created; :meth:`rollback`
removes those that no recorded image holds, which is how a refused pull leaves nothing behind.

It sits under ``pulling`` and ``archives`` and above ``layer_pipeline`` and ``image_index``.
What it must not do: talk to a registry or read an archive (blobs arrive through the ``Fetch``
the caller gives, or are already stored), or roll back content that another image holds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path

from reconciler import errors, files
from reconciler.backends.native import content, image_index, layer_pipeline, layers, registry, snapshots

# Docker refuses images deeper than this; overlayfs itself stops at 500 lowers.
MAX_LAYERS = 128
CONFIG_TYPES = frozenset({"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"})


class Installation:
    """One pull or load into the store (content, snapshots, index), and what it created there."""

    def __init__(
        self,
        store: content.Store,
        snapshotter: snapshots.Snapshotter,
        index: image_index.ImageIndex,
        *,
        gc_lock: Path,
    ) -> None:
        """``gc_lock``: the store's lock, held shared by every pull and load while it works."""
        self.content, self.snapshots, self.index = store, snapshotter, index
        self._gc_lock = gc_lock
        self._lock = threading.Lock()
        self._created_blobs: list[str] = []
        self._created_snapshots: list[str] = []
        self._started_downloads: list[str] = []

    def created_blob(self, digest: str) -> None:
        with self._lock:
            self._created_blobs.append(digest)

    def downloading(self, digest: str) -> None:
        """A download of ``digest`` started: a failed pull discards its partial file."""
        with self._lock:
            self._started_downloads.append(digest)

    def created_snapshot(self, chain_id: str) -> None:
        with self._lock:
            self._created_snapshots.append(chain_id)

    def write_blob(self, digest: str, data: bytes) -> None:
        """Store verified bytes (a manifest, a config) unless they are there already."""
        if self.content.write(digest, data):
            self.created_blob(digest)

    def rollback(self) -> None:
        """Remove what this installation created and no recorded image holds.

        A concurrent pull may have found a blob or snapshot of ours present and be about to use
        it without having recorded its image yet. So this waits for the store's lock exclusively
        (the caller has released its shared hold): then no pull or load is in flight, every
        image that reused our content is recorded, and the check below is final.
        """
        with files.file_lock(self._gc_lock):
            records = self.index.records()
            kept = {blob for record in records.values() for blob in image_index.record_blobs(record)}
            for digest in self._created_blobs:
                if digest not in kept:
                    self.content.delete(digest)
            for digest in self._started_downloads:
                self.content.discard_partial(digest)
            kept_chains = {c for record in records.values() for c in image_index.record_chains(record)}
            self.snapshots.remove(c for c in self._created_snapshots if c not in kept_chains)

    def install(
        self,
        *,
        names: Iterable[str],
        top: registry.Manifest,
        manifest: registry.Manifest,
        config_raw: bytes,
        fetch: layer_pipeline.Fetch | None,
        progress: layer_pipeline.ProgressCallback,
    ) -> image_index.Recorded:
        """Download what is missing (in parallel), unpack it, then record the image under ``names``.

        ``top`` is what the names point at (an index, or ``manifest`` itself); ``fetch`` is None
        when every blob must already be in the content store (a load).
        """
        image_id, stack = _stack(manifest, config_raw)
        count = len(stack.descriptors)
        # A present snapshot implies its parents are present (commit refuses orphans), so the
        # missing ones are a suffix of the stack.
        missing = [i for i in range(count) if self.snapshots.get(stack.chains[i]) is None]
        for i in range(count):
            if i not in missing:
                stack.report(progress, i, "exists", stack.descriptors[i].size)
        to_fetch = [i for i in missing if not self.content.has(stack.descriptors[i].digest)]
        if to_fetch and fetch is None:
            raise errors.NotFound(f"layer {stack.descriptors[to_fetch[0]].digest} is missing from the archive")
        layer_pipeline.LayerPipeline(
            self.content,
            self.snapshots,
            stack,
            missing=missing,
            to_fetch=set(to_fetch),
            fetch=fetch,
            progress=progress,
            committed=self.created_snapshot,
        ).run()
        record_layers = [
            {"digest": d.digest, "size": d.size, "media_type": d.media_type, "diff_id": diff_id, "chain_id": chain}
            for d, diff_id, chain in zip(stack.descriptors, stack.diff_ids, stack.chains, strict=True)
        ]
        return self.index.record(
            image_id,
            manifest=manifest.digest,
            index=top.digest if top.is_index else None,
            layers=record_layers,
            blobs={top.digest, manifest.digest, image_id, *(d.digest for d in stack.descriptors)},
            digests={top.digest, manifest.digest},
            names=names,
        )


def _stack(manifest: registry.Manifest, config_raw: bytes) -> tuple[str, layer_pipeline.Stack]:
    """The image id (config digest) and the layer stack, after checking that they agree."""
    body = manifest.json()
    config_descriptor = registry.config_descriptor(body)
    if config_descriptor.media_type and config_descriptor.media_type not in CONFIG_TYPES:
        raise errors.EngineError(f"{manifest.digest} is not a container image (config {config_descriptor.media_type})")
    config = json.loads(config_raw)
    descriptors = list(registry.iter_layers(body))
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(descriptors):
        raise errors.EngineError(f"image config {config_descriptor.digest} does not list one diff_id per layer")
    if len(descriptors) > MAX_LAYERS:
        raise errors.EngineError(f"image has {len(descriptors)} layers, more than the limit of {MAX_LAYERS}")
    for diff_id in diff_ids:
        content.hex_of(str(diff_id))
    texts = [str(d) for d in diff_ids]
    stack = layer_pipeline.Stack(descriptors=descriptors, diff_ids=texts, chains=layers.chain_ids(texts))
    return config_descriptor.digest, stack
