"""Pulling an image from a registry: manifests and config first, then the layers, resumably.

The manifest (and, for an index, the one chosen for this host's platform) and the config are
fetched whole and verified by the registry client; the layers go through the installation's
pipeline, each downloaded into the content store's ingest file with the :func:`download` below.

Failure semantics:

- a digest mismatch, a malformed or malicious layer, a refusal by the registry, or any other
  error but those below undoes the pull (``Installation.rollback``): every blob, partial download
  and snapshot it created, and that no image recorded meanwhile holds, is removed, and no name is
  written; an error that is not the engine's own is reported as one (``errors.EngineError``);
- an interruption (network trouble after the client's retries, a killed process, an exception
  from the progress callback) keeps verified blobs and partial downloads, so running the pull
  again resumes (the client asks for the rest with ``Range``); ``prune`` cleans up leftovers.

This module sits under ``images`` (which decides, by pull policy, whether to pull at all) and
above ``installing``. What it must not do: decide pull policy, or write image metadata itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from reconciler import errors, references
from reconciler.backends.native import image_index, installing, layer_pipeline, pull_progress, registry, tailing


def pull(
    installation: installing.Installation,
    client: registry.Client,
    ref: references.ImageReference,
    *,
    platform: registry.Platform,
    progress: layer_pipeline.ProgressCallback,
    hold: contextlib.AbstractContextManager[None],
) -> image_index.Recorded:
    """Pull ``ref`` into the store and record it under its name and its manifest digest.

    ``hold`` (the store's shared lock) is held while the pull works and released before a
    rollback, which waits for the store to itself (see ``Installation.rollback``).
    """
    try:
        with hold:
            return _pull(installation, client, ref, platform=platform, progress=_interruptible(progress))
    except (errors.Unavailable, KeyboardInterrupt, tailing.Cancelled):
        # Interrupted, not wrong: keep what was verified and the partial downloads.
        raise
    except _CallerInterrupted as interrupted:
        raise interrupted.original from None
    except errors.ReconcilerError:
        installation.rollback()
        raise
    except Exception as exc:
        # Whatever else went wrong (a malformed answer the checks missed, the disk) is a failed
        # pull too: it is rolled back and reported as the engine's error, never a bare ValueError.
        installation.rollback()
        reason = f"{exc.strerror or exc}" if isinstance(exc, OSError) else type(exc).__name__
        raise errors.EngineError(f"pull of {ref} failed: {reason}") from exc


class _CallerInterrupted(Exception):
    """What the caller's progress callback raised: an interruption (kept for a resume), not a failure."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


def _interruptible(progress: layer_pipeline.ProgressCallback) -> layer_pipeline.ProgressCallback:
    def report(event: pull_progress.PullProgress) -> None:
        try:
            progress(event)
        except Exception as exc:
            raise _CallerInterrupted(exc) from exc

    return report


def _pull(
    installation: installing.Installation,
    client: registry.Client,
    ref: references.ImageReference,
    *,
    platform: registry.Platform,
    progress: layer_pipeline.ProgressCallback,
) -> image_index.Recorded:
    top = client.get_manifest(ref)
    installation.write_blob(top.digest, top.raw)
    manifest = top
    if top.is_index:
        chosen = registry.select_platform(top.json(), platform)
        manifest = client.get_manifest(ref, chosen.digest)
        if manifest.is_index:
            raise errors.EngineError(f"{ref}: a nested index is not a platform image")
        installation.write_blob(manifest.digest, manifest.raw)
    config_raw = _config(installation, client, ref, manifest)

    def fetch(
        descriptor: registry.Descriptor,
        on_bytes: Callable[[int], None],
        resumed: Callable[[int], None],
        tail: tailing.Tail,
    ) -> None:
        download(installation, client, ref, descriptor, on_bytes=on_bytes, resumed=resumed, tail=tail)

    return installation.install(
        names=[image_index.ref_key(ref), image_index.digest_key(ref, top.digest)],
        top=top,
        manifest=manifest,
        config_raw=config_raw,
        fetch=fetch,
        progress=progress,
    )


def _config(
    installation: installing.Installation,
    client: registry.Client,
    ref: references.ImageReference,
    manifest: registry.Manifest,
) -> bytes:
    """The image config's bytes: from the store when present, else from the registry."""
    descriptor = registry.config_descriptor(manifest.json())
    if installation.content.has(descriptor.digest):
        return installation.content.read(descriptor.digest)
    config_raw = client.get_blob_bytes(ref, descriptor)
    installation.write_blob(descriptor.digest, config_raw)
    return config_raw


def download(
    installation: installing.Installation,
    client: registry.Client,
    ref: references.ImageReference,
    descriptor: registry.Descriptor,
    *,
    on_bytes: Callable[[int], None],
    resumed: Callable[[int], None],
    tail: tailing.Tail,
) -> None:
    """Download one layer blob into the content store, resuming a partial file when there is one."""
    installation.downloading(descriptor.digest)
    for attempt in (1, 2):
        with installation.content.ingest(descriptor.digest, descriptor.size) as ingest:
            if ingest.complete:
                return  # a concurrent pull stored it while we waited for the ingest lock
            resumed(ingest.resumed_from)
            tail.opened()
            try:
                client.fetch_blob(ref, descriptor, tailing.TeeSink(ingest, tail), progress=on_bytes)
                ingest.commit()
            except errors.DigestMismatch:
                if attempt == 2 or not ingest.resumed_from:
                    raise
                # The bytes kept from an earlier attempt were bad (the mismatch discarded
                # them): download once more from byte 0; the unpacker starts over too.
                tail.restarted()
                continue
        break
    installation.created_blob(descriptor.digest)
