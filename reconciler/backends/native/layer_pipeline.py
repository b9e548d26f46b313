"""The pull pipeline: download an image's missing layers and unpack each one while it downloads.

Up to 3 layers download at a time (Docker's default). Each layer unpacks into its own temporary
snapshot directory *while* it downloads (the unpacker reads the growing ingest file through a
``tailing.Tail``), so layers unpack in parallel too; a layer waits for the layers below it only
when one of its entries needs them (``layers.Lowers``: a new parent directory's metadata, a
hardlink's copy-up). An unpacked layer counts only once its download verified the blob's digest
and the unpack verified the diff_id; the snapshots are then committed bottom up, in order, and
only when every layer succeeded. One failure cancels the other downloads; their partial files
stay, so pulling again resumes them.

This module sits under ``installing`` (which decides what is missing and records the image) and
above ``tailing``, ``content``, ``snapshots`` and ``layers``. What it must not do: talk to a
registry itself (downloads go through the :data:`Fetch` it is given), write image metadata, or
commit a snapshot whose bytes were not verified.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.backends.native import content, layers, pull_progress, registry, snapshots, tailing

MAX_CONCURRENT_DOWNLOADS = 3
# Layers unpacking at the same time (each into its own snapshot directory).
MAX_CONCURRENT_UNPACKS = 3


# Defined in a module of its own, so that the image store's callers can name them without
# importing the pull machinery; they keep their names here.
PullProgress = pull_progress.PullProgress
ProgressCallback = pull_progress.ProgressCallback
# Download one layer blob into the store: (descriptor, on_bytes(n), resumed(offset), tail).
Fetch = Callable[[registry.Descriptor, Callable[[int], None], Callable[[int], None], tailing.Tail], None]


@dataclasses.dataclass(frozen=True, slots=True)
class Stack:
    """An image's layers, bottom first: blob descriptors, diff_ids and the chain id of each."""

    descriptors: Sequence[registry.Descriptor]
    diff_ids: Sequence[str]
    chains: Sequence[str]

    def report(self, progress: ProgressCallback, i: int, status: str, current: int = 0, resumed: int = 0) -> None:
        """Report layer ``i``'s ``status`` (``total`` is always the blob's size)."""
        descriptor = self.descriptors[i]
        count = len(self.descriptors)
        progress(PullProgress(descriptor.digest, i, count, status, current, descriptor.size, resumed))


class LayerPipeline:
    """One run of the pipeline over the ``missing`` layers of ``stack`` (see the module docstring).

    ``to_fetch`` are the missing layers whose blobs are not in the content store yet (they need
    ``fetch``); the others unpack from the stored blob. ``committed`` is told of every snapshot
    this run creates, as it is created, so that a failed pull can remove it again.
    """

    def __init__(
        self,
        store: content.Store,
        snapshotter: snapshots.Snapshotter,
        stack: Stack,
        *,
        missing: Sequence[int],
        to_fetch: set[int],
        fetch: Fetch | None,
        progress: ProgressCallback,
        committed: Callable[[str], None],
    ) -> None:
        self._content, self._snapshots, self._stack = store, snapshotter, stack
        self._missing, self._fetch, self._progress, self._committed = list(missing), fetch, progress, committed
        self._work: dict[int, Path] = {}
        self._done = {i: threading.Event() for i in self._missing}
        self._failed = threading.Event()
        self._tails = {
            i: tailing.Tail(store.partial_path(stack.descriptors[i].digest), store.path(stack.descriptors[i].digest))
            for i in to_fetch
        }
        self._downloads: dict[int, concurrent.futures.Future[None]] = {}
        self._base: list[Path] = []

    def run(self) -> None:
        """Download, unpack and commit; raises the first real failure (not a cancellation)."""
        if not self._missing:
            return
        first = self._missing[0]
        self._base = self._snapshots.lowers(self._stack.chains[first - 1]) if first > 0 else []
        download_pool = concurrent.futures.ThreadPoolExecutor(MAX_CONCURRENT_DOWNLOADS, thread_name_prefix="pull")
        unpack_pool = concurrent.futures.ThreadPoolExecutor(MAX_CONCURRENT_UNPACKS, thread_name_prefix="unpack")
        try:
            for i in self._missing:
                self._work[i] = self._snapshots.prepare()
            for i in sorted(self._tails):
                self._stack.report(self._progress, i, "waiting")
                self._downloads[i] = download_pool.submit(self._download, i)
            unpacks = [unpack_pool.submit(self._unpack, i) for i in self._missing]
            _raise_first_failure([*unpacks, *self._downloads.values()])
            self._commit()
        finally:
            self._failed.set()
            for tail in self._tails.values():
                tail.finish(ok=False)
            download_pool.shutdown(wait=True, cancel_futures=True)
            unpack_pool.shutdown(wait=True, cancel_futures=True)
            for fs in self._work.values():
                self._snapshots.discard(fs)

    def _commit(self) -> None:
        chains, diff_ids = self._stack.chains, self._stack.diff_ids
        for i in self._missing:
            before = self._snapshots.get(chains[i])
            self._snapshots.commit(
                self._work[i], chain_id=chains[i], parent=chains[i - 1] if i else None, diff_id=diff_ids[i]
            )
            if before is None:
                self._committed(chains[i])

    def _download(self, i: int) -> None:
        tail = self._tails[i]
        try:
            if self._failed.is_set():
                raise tailing.Cancelled
            assert self._fetch is not None
            on_bytes, resumed = self._reporters(i)
            self._fetch(self._stack.descriptors[i], on_bytes, resumed, tail)
            size = self._stack.descriptors[i].size
            self._stack.report(self._progress, i, "downloaded", size)
        except BaseException:
            tail.finish(ok=False)
            raise
        tail.finish(ok=True)

    def _reporters(self, i: int) -> tuple[Callable[[int], None], Callable[[int], None]]:
        """``on_bytes(n)`` after every chunk and ``resumed(offset)`` when a download (re)starts."""
        state = {"done": 0, "resumed": 0}

        def on_bytes(n: int) -> None:
            if self._failed.is_set():
                raise tailing.Cancelled  # another layer failed: stop, keep the partial for a resume
            state["done"] += n
            current = state["resumed"] + state["done"]
            self._stack.report(self._progress, i, "downloading", current, state["resumed"])

        def resumed(offset: int) -> None:
            state["resumed"] = offset
            self._stack.report(self._progress, i, "downloading", offset, offset)

        return on_bytes, resumed

    def _unpack(self, i: int) -> None:
        descriptor, diff_id = self._stack.descriptors[i], self._stack.diff_ids[i]
        try:
            if self._failed.is_set():
                raise tailing.Cancelled
            self._stack.report(self._progress, i, "extracting")
            if i in self._tails:
                self._unpack_streaming(i)
            else:
                stored = self._content.path(descriptor.digest)
                layers.apply(stored, self._work[i], parents=self._lowers(i), expected_diff_id=diff_id)
            self._stack.report(self._progress, i, "done", descriptor.size)
        except BaseException:
            self._failed.set()
            raise
        finally:
            self._done[i].set()

    def _lowers(self, i: int) -> layers.Lowers:
        """The directories below layer ``i``, top first; looking inside waits until they are done."""
        below = [j for j in self._missing if j < i]

        def wait_for_lowers() -> None:
            for j in below:
                self._done[j].wait()
            if self._failed.is_set():
                raise tailing.Cancelled

        return layers.Lowers([self._work[j] for j in reversed(below)] + self._base, wait=wait_for_lowers)

    def _unpack_streaming(self, i: int) -> None:
        """Unpack while the blob downloads; fall back to the stored blob if the download restarted."""
        descriptor, diff_id = self._stack.descriptors[i], self._stack.diff_ids[i]
        download = self._downloads[i]
        try:
            with self._tails[i] as tail:
                reader = typing.cast(typing.BinaryIO, tail)
                layers.apply_stream(
                    reader, self._work[i], name=descriptor.digest, parents=self._lowers(i), expected_diff_id=diff_id
                )
        except BaseException as exc:
            # The download's own error (digest, network, cancellation) explains a failed read best.
            concurrent.futures.wait([download])
            download_error = download.exception()
            if download_error is not None:
                raise download_error from None
            if not isinstance(exc, tailing.Restarted):
                raise
            self._snapshots.discard(self._work[i])
            self._work[i] = self._snapshots.prepare()
            stored = self._content.path(descriptor.digest)
            layers.apply(stored, self._work[i], parents=self._lowers(i), expected_diff_id=diff_id)
            return
        download.result()  # the unpacked bytes count only once the blob's digest is verified


def _raise_first_failure(futures: Sequence[concurrent.futures.Future[None]]) -> None:
    """Wait for all; raise the first real failure, or a cancellation when there is nothing else."""
    concurrent.futures.wait(futures)
    problems = [f.exception() for f in futures if f.exception() is not None]
    real = [p for p in problems if not isinstance(p, tailing.Cancelled)]
    if problems:
        raise (real or problems)[0]  # type: ignore[misc]
