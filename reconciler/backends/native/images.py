"""The image store: pull, load, look up, list, remove and garbage-collect images; build rootfs mounts.

This is the facade the native engine and ``reconcile image`` use. It ties the other modules of
the filesystem side together:

    registry  ──manifests, blobs──►  content  ──layer blobs──►  layers  ──applied into──►  snapshots
                                                                                 │
                                        images.json (refs → image, image → blobs/chains) ──► mounts

On disk, under ``root``::

    content/      blobs by digest (manifests, configs, compressed layers) + resumable ingests
    snapshots/    one directory per layer, keyed by chain id, shared by all images
    images.json   {"images": {image_id: record}, "refs": {reference: image_id}}

An image's id is its config digest (as in Docker). A record lists the manifest, the layers with
their diff and chain ids, and every blob the image holds; the references map names
(``registry/repo:tag`` and ``registry/repo@sha256:…``) to ids. ``images.json`` is committed
atomically after all of an image's content is verified and unpacked, so a reader sees an image
completely or not at all.

Failure semantics of a pull:

- a digest mismatch, a malformed or malicious layer, or a refusal by the registry undoes the pull:
  every blob, partial download and snapshot it created is removed, and no reference is written;
- an interruption (network trouble after the retries, a killed process, an exception from the
  progress callback) keeps verified blobs and partial downloads, so running the pull again resumes
  (the registry client asks for the rest with ``Range``); ``prune`` cleans up abandoned leftovers.

The pull pipeline: up to 3 layers download at a time (Docker's default); each layer is unpacked
into its own temporary snapshot directory *while* it downloads (the unpacker tails the ingest
file), and the unpacked result counts only after the download verified the blob's digest and the
unpack verified the diff_id. Because every layer has its own directory, layers unpack in parallel;
a layer waits for the layers below it only when an entry needs them (``layers.Lowers``).
Snapshots are then committed bottom up, in order.

Concurrency: pulls hold a shared lock on ``.gc.lock`` and ``prune`` an exclusive one, so garbage
collection never removes a blob a running pull has just written; ``images.json`` is edited under
its own lock.

What it must not do: run containers, print (progress goes to a callback), or reach a registry for
an ``IfNotPresent`` pull of a reference that is present, and never for a digest reference.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import os
import tarfile
import threading
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from reconciler import errors, files, references
from reconciler.backends.native import content, layers, mounts, registry, snapshots

PullPolicy = typing.Literal["Always", "IfNotPresent", "Never"]
POLICIES: tuple[PullPolicy, ...] = ("Always", "IfNotPresent", "Never")
MAX_CONCURRENT_DOWNLOADS = 3
# Layers unpacking at the same time (each into its own snapshot directory).
MAX_CONCURRENT_UNPACKS = 3
# Docker refuses images deeper than this; overlayfs itself stops at 500 lowers.
MAX_LAYERS = 128
CONFIG_TYPES = frozenset({"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"})
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


@dataclasses.dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image config the container step needs (Docker's names in the JSON)."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    stop_signal: str = ""
    os: str = ""
    architecture: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, typing.Any]) -> ImageConfig:
        cfg = data.get("config") or {}
        if not isinstance(cfg, dict):
            cfg = {}

        def strings(value: object) -> tuple[str, ...] | None:
            return tuple(str(v) for v in value) if isinstance(value, list) else None

        def keys(value: object) -> tuple[str, ...]:
            return tuple(sorted(str(k) for k in value)) if isinstance(value, dict) else ()

        labels = cfg.get("Labels")
        return cls(
            env=strings(cfg.get("Env")) or (),
            entrypoint=strings(cfg.get("Entrypoint")),
            cmd=strings(cfg.get("Cmd")),
            working_dir=str(cfg.get("WorkingDir") or ""),
            user=str(cfg.get("User") or ""),
            exposed_ports=keys(cfg.get("ExposedPorts")),
            volumes=keys(cfg.get("Volumes")),
            labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            stop_signal=str(cfg.get("StopSignal") or ""),
            os=str(data.get("os") or ""),
            architecture=str(data.get("architecture") or ""),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Layer:
    """One layer of an image: the blob (compressed), its diff_id and the chain id it completes."""

    digest: str
    size: int
    media_type: str
    diff_id: str
    chain_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Image:
    """An image in the store. ``id`` is the config digest; ``digest`` the manifest's."""

    id: str
    digest: str
    references: tuple[str, ...]
    config: ImageConfig
    layers: tuple[Layer, ...]
    size: int

    @property
    def chain_ids(self) -> tuple[str, ...]:
        return tuple(layer.chain_id for layer in self.layers)

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


@dataclasses.dataclass(frozen=True, slots=True)
class PullProgress:
    """One progress report: ``status`` is waiting|exists|downloading|downloaded|extracting|done."""

    layer: str
    index: int
    count: int
    status: str
    current: int = 0
    total: int = 0
    resumed_from: int = 0


ProgressCallback = Callable[[PullProgress], None]


def _nothing(_: PullProgress) -> None:
    return None


class _Restart(Exception):
    """The server ignored a resume request and the download started over from byte 0."""


class _Tail:
    """The growing ingest file of a download, read while it is written (unpack overlaps download).

    The download side calls :meth:`opened`, :meth:`wrote` (via :class:`_TeeSink`), and
    :meth:`finish`; the unpack side reads it like a file: ``read`` blocks until more bytes are
    there, returns ``b""`` only at the end of a finished download, and raises ``_Cancelled``
    when the download failed (its own error is reported by the download's future).
    """

    def __init__(self, partial: Path, final: Path) -> None:
        self._partial, self._final = partial, final
        self._cond = threading.Condition()
        self._opened = self._finished = self._failed = self._restarted = False
        self._fd = -1

    def opened(self) -> None:
        with self._cond:
            self._opened = True
            self._cond.notify_all()

    def wrote(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def restarted(self) -> None:
        with self._cond:
            self._restarted = True
            self._cond.notify_all()

    def finish(self, *, ok: bool) -> None:
        with self._cond:
            if not self._finished:
                self._finished, self._failed = True, not ok
            self._cond.notify_all()

    def __enter__(self) -> _Tail:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._opened or self._finished)
            if self._failed:
                raise _Cancelled
            use_partial = not self._finished
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
        if use_partial:
            try:
                self._fd = os.open(self._partial, flags)
                return
            except FileNotFoundError:
                pass  # committed (renamed into blobs/) in the meantime
        self._fd = os.open(self._final, flags)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 20
        if self._fd < 0:
            self._open()
        while True:
            if self._restarted:
                raise _Restart
            data = os.read(self._fd, size)
            if data:
                return data
            with self._cond:
                if self._failed:
                    raise _Cancelled
                if self._finished:
                    return os.read(self._fd, size)
                self._cond.wait(0.05)


class _TeeSink:
    """The registry client's sink: the ingest, plus a nudge to the unpacker for every chunk."""

    def __init__(self, ingest: content.Ingest, tail: _Tail) -> None:
        self._ingest = ingest
        self._tail = tail

    @property
    def offset(self) -> int:
        return self._ingest.offset

    def write(self, data: bytes) -> None:
        self._ingest.write(data)
        self._tail.wrote()

    def restart(self) -> None:
        self._tail.restarted()  # before truncating, so the reader never reads the new bytes as old
        self._ingest.restart()


_Fetch = Callable[[registry.Descriptor, Callable[[int], None], Callable[[int], None], _Tail], None]


class _Cancelled(Exception):
    """A worker stopped because another layer of the same pull failed."""


class _Undo:
    """What one pull created, so that a failed pull can take it all back."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self.blobs: builtins.list[str] = []
        self.snapshots: builtins.list[str] = []
        self.partials: builtins.list[str] = []
        self.lock = threading.Lock()

    def blob(self, digest: str) -> None:
        with self.lock:
            self.blobs.append(digest)

    def rollback(self) -> None:
        kept = self.store._referenced_blobs()
        for digest in self.blobs:
            if digest not in kept:
                self.store.content.delete(digest)
        for digest in self.partials:
            self.store.content.discard_partial(digest)
        kept_chains = {c for record in self.store._records().values() for c in _record_chains(record)}
        self.store.snapshots.remove(c for c in self.snapshots if c not in kept_chains)


def _record_chains(record: Mapping[str, typing.Any]) -> builtins.list[str]:
    return [str(layer["chain_id"]) for layer in record.get("layers", [])]


class ImageStore:
    """The native engine's images under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: Path, *, registry_config: registry.RegistryConfig | None = None) -> None:
        self.root = root
        self.content = content.Store(root / "content")
        self.snapshots = snapshots.Snapshotter(root / "snapshots")
        self.registry_config = registry_config or registry.RegistryConfig()
        self._metadata = root / "images.json"
        self._platform = registry.host_platform()

    def __repr__(self) -> str:
        return f"ImageStore({str(self.root)!r})"

    # -- metadata --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with files.file_lock(self.root / ".images.lock"):
            yield

    def _load(self) -> dict[str, typing.Any]:
        try:
            data = json.loads(self._metadata.read_bytes())
        except FileNotFoundError:
            return {"images": {}, "refs": {}}
        except ValueError:
            raise errors.EngineError(f"image metadata {self._metadata} is corrupt") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
            raise errors.EngineError(f"image metadata {self._metadata} is corrupt")
        return data

    def _save(self, data: Mapping[str, typing.Any]) -> None:
        files.write_json(self._metadata, data, indent=1)

    def _records(self) -> dict[str, dict[str, typing.Any]]:
        return typing.cast(dict[str, dict[str, typing.Any]], self._load()["images"])

    def _referenced_blobs(self) -> set[str]:
        return {str(b) for record in self._records().values() for b in record.get("blobs", [])}

    def _image(self, image_id: str, data: Mapping[str, typing.Any]) -> Image:
        record = data["images"][image_id]
        config_raw = self.content.read(image_id)
        refs = tuple(sorted(name for name, target in data["refs"].items() if target == image_id))
        image_layers = tuple(
            Layer(
                digest=str(entry["digest"]),
                size=int(entry["size"]),
                media_type=str(entry["media_type"]),
                diff_id=str(entry["diff_id"]),
                chain_id=str(entry["chain_id"]),
            )
            for entry in record["layers"]
        )
        return Image(
            id=image_id,
            digest=str(record["manifest"]),
            references=refs,
            config=ImageConfig.from_json(json.loads(config_raw)),
            layers=image_layers,
            size=sum(layer.size for layer in image_layers),
        )

    def _key(self, text: str | references.ImageReference, data: Mapping[str, typing.Any]) -> str | None:
        """The image id ``text`` names: a reference, a full image id or a unique id prefix."""
        if isinstance(text, str):
            bare = text.removeprefix("sha256:")
            if len(bare) >= 4 and all(c in "0123456789abcdef" for c in bare):
                matches = [i for i in data["images"] if i.removeprefix("sha256:").startswith(bare)]
                if len(matches) == 1:
                    return str(matches[0])
                if len(matches) > 1:
                    raise errors.Conflict(f"image id prefix {bare} is ambiguous")
            try:
                text = references.parse(text)
            except references.InvalidReference as exc:
                raise errors.NotFound(f"no such image: {text} ({exc})") from None
        key = _ref_key(text)
        target = data["refs"].get(key)
        return str(target) if target is not None else None

    # -- queries ---------------------------------------------------------------------------------

    def get(self, ref: str | references.ImageReference) -> Image | None:
        """The image ``ref`` names (reference, image id or id prefix), or None."""
        data = self._load()
        image_id = self._key(ref, data)
        if image_id is None or image_id not in data["images"]:
            return None
        return self._image(image_id, data)

    def list(self) -> builtins.list[Image]:
        """Every image, sorted by first reference (dangling images, named ``<none>``, last)."""
        data = self._load()
        found = [self._image(image_id, data) for image_id in data["images"]]
        return sorted(found, key=lambda i: (not i.references, i.references[:1], i.id))

    def _complete(self, image: Image) -> bool:
        return not image.layers or self.snapshots.get(image.layers[-1].chain_id) is not None

    # -- pull ------------------------------------------------------------------------------------

    def pull(
        self,
        ref: str | references.ImageReference,
        *,
        policy: PullPolicy = "IfNotPresent",
        progress: ProgressCallback | None = None,
    ) -> Image:
        """Make ``ref`` present according to ``policy`` and return it.

        ``IfNotPresent`` returns a present image without any network access (for digest
        references that is true under every policy: the content cannot have changed).
        ``Always`` asks the registry with a HEAD whether the tag still points at what we have.
        ``Never`` raises ``errors.NotFound`` for an absent image.
        """
        if policy not in POLICIES:
            raise errors.EngineError(f"unknown pull policy {policy!r} (use one of {', '.join(POLICIES)})")
        reference = ref if isinstance(ref, references.ImageReference) else _parse(ref)
        progress = progress or _nothing
        existing = self.get(reference)
        if existing is not None and self._complete(existing) and (policy != "Always" or reference.digest):
            return existing
        if policy == "Never":
            raise errors.NotFound(f"image {reference} is not present and the pull policy is Never")
        with (
            files.file_lock(self.root / ".gc.lock", shared=True),
            registry.Client(self.registry_config) as client,
        ):
            if existing is not None and self._complete(existing):
                remote = client.head_manifest(reference)
                record = self._records().get(existing.id, {})
                if remote is not None and remote in record.get("digests", []):
                    return existing
            return self._pull(client, reference, progress)

    def _pull(self, client: registry.Client, ref: references.ImageReference, progress: ProgressCallback) -> Image:
        undo = _Undo(self)
        try:
            top = client.get_manifest(ref)
            self._write_blob(undo, top.digest, top.raw)
            manifest = top
            if top.is_index:
                chosen = registry.select_platform(top.json(), self._platform)
                manifest = client.get_manifest(ref, chosen.digest)
                if manifest.is_index:
                    raise errors.EngineError(f"{ref}: a nested index is not a platform image")
                self._write_blob(undo, manifest.digest, manifest.raw)
            body = manifest.json()
            config_descriptor = registry.config_descriptor(body)
            if self.content.has(config_descriptor.digest):
                config_raw = self.content.read(config_descriptor.digest)
            else:
                config_raw = client.get_blob_bytes(ref, config_descriptor)
                self._write_blob(undo, config_descriptor.digest, config_raw)

            def fetch(
                descriptor: registry.Descriptor,
                on_bytes: Callable[[int], None],
                report: Callable[[int], None],
                tail: _Tail,
            ) -> None:
                self._download(
                    client=client,
                    ref=ref,
                    descriptor=descriptor,
                    undo=undo,
                    on_bytes=on_bytes,
                    report=report,
                    tail=tail,
                )

            image = self._install(
                undo,
                names=[_ref_key(ref), _digest_key(ref, top.digest)],
                top=top,
                manifest=manifest,
                config_raw=config_raw,
                fetch=fetch,
                progress=progress,
            )
        except (errors.Unavailable, KeyboardInterrupt):
            # Interrupted, not wrong: keep what was verified and the partial downloads.
            raise
        except errors.ReconcilerError:
            undo.rollback()
            raise
        return image

    def _write_blob(self, undo: _Undo, digest: str, data: bytes) -> None:
        if self.content.write(digest, data):
            undo.blob(digest)

    def _download(
        self,
        *,
        client: registry.Client,
        ref: references.ImageReference,
        descriptor: registry.Descriptor,
        undo: _Undo,
        on_bytes: Callable[[int], None],
        report: Callable[[int], None],
        tail: _Tail,
    ) -> None:
        with undo.lock:
            undo.partials.append(descriptor.digest)
        for attempt in (1, 2):
            with self.content.ingest(descriptor.digest, descriptor.size) as ingest:
                if ingest.complete:
                    return  # a concurrent pull stored it while we waited for the ingest lock
                report(ingest.resumed_from)
                tail.opened()
                try:
                    client.fetch_blob(ref, descriptor, _TeeSink(ingest, tail), progress=on_bytes)
                    ingest.commit()
                except errors.DigestMismatch:
                    if attempt == 2 or not ingest.resumed_from:
                        raise
                    # The bytes kept from an earlier attempt were bad (the mismatch discarded
                    # them): download once more from byte 0; the unpacker starts over too.
                    tail.restarted()
                    continue
            break
        undo.blob(descriptor.digest)

    def _install(
        self,
        undo: _Undo,
        *,
        names: Iterable[str],
        top: registry.Manifest,
        manifest: registry.Manifest,
        config_raw: bytes,
        fetch: _Fetch | None,
        progress: ProgressCallback,
    ) -> Image:
        """Download what is missing (in parallel), unpack in order, then record the image."""
        body = manifest.json()
        config_descriptor = registry.config_descriptor(body)
        if config_descriptor.media_type and config_descriptor.media_type not in CONFIG_TYPES:
            raise errors.EngineError(
                f"{manifest.digest} is not a container image (config {config_descriptor.media_type})"
            )
        config = json.loads(config_raw)
        descriptors = list(registry.iter_layers(body))
        diff_ids = (config.get("rootfs") or {}).get("diff_ids")
        if not isinstance(diff_ids, list) or len(diff_ids) != len(descriptors):
            raise errors.EngineError(f"image config {config_descriptor.digest} does not list one diff_id per layer")
        if len(descriptors) > MAX_LAYERS:
            raise errors.EngineError(f"image has {len(descriptors)} layers, more than the limit of {MAX_LAYERS}")
        for diff_id in diff_ids:
            content.hex_of(str(diff_id))
        chains = layers.chain_ids([str(d) for d in diff_ids])
        count = len(descriptors)
        # A present snapshot implies its parents are present (commit refuses orphans), so the
        # missing ones are a suffix of the stack.
        missing = [i for i in range(count) if self.snapshots.get(chains[i]) is None]
        for i in range(count):
            if i not in missing:
                progress(
                    PullProgress(descriptors[i].digest, i, count, "exists", descriptors[i].size, descriptors[i].size)
                )
        to_fetch = [i for i in missing if not self.content.has(descriptors[i].digest)]
        if to_fetch and fetch is None:
            raise errors.NotFound(f"layer {descriptors[to_fetch[0]].digest} is missing from the archive")
        self._fetch_and_unpack(
            undo,
            descriptors=descriptors,
            diff_ids=[str(d) for d in diff_ids],
            chains=chains,
            missing=missing,
            to_fetch=set(to_fetch),
            fetch=fetch,
            progress=progress,
        )
        image_id = config_descriptor.digest
        record_layers = [
            {
                "digest": d.digest,
                "size": d.size,
                "media_type": d.media_type,
                "diff_id": str(diff_ids[i]),
                "chain_id": chains[i],
            }
            for i, d in enumerate(descriptors)
        ]
        blobs = {top.digest, manifest.digest, image_id, *(d.digest for d in descriptors)}
        with self._locked():
            data = self._load()
            record = data["images"].get(image_id) or {}
            data["images"][image_id] = {
                "manifest": manifest.digest,
                "index": top.digest if top.is_index else None,
                "layers": record_layers,
                "blobs": sorted(blobs | set(record.get("blobs", []))),
                "digests": sorted({top.digest, manifest.digest} | set(record.get("digests", []))),
            }
            previous = {data["refs"].get(name) for name in names} - {None, image_id}
            for name in names:
                data["refs"][name] = image_id
            for old_id in previous:
                _drop_digest_only_refs(data["refs"], str(old_id))
            self._save(data)
            return self._image(image_id, data)

    def _reporters(
        self,
        descriptor: registry.Descriptor,
        index: int,
        count: int,
        progress: ProgressCallback,
        failed: threading.Event,
    ) -> tuple[Callable[[int], None], Callable[[int], None]]:
        state = {"done": 0, "resumed": 0}

        def on_bytes(n: int) -> None:
            if failed.is_set():
                raise _Cancelled  # another layer failed: stop, keep the partial for a resume
            state["done"] += n
            progress(
                PullProgress(
                    descriptor.digest,
                    index,
                    count,
                    "downloading",
                    state["resumed"] + state["done"],
                    descriptor.size,
                    state["resumed"],
                )
            )

        def report(resumed_from: int) -> None:
            state["resumed"] = resumed_from
            progress(
                PullProgress(
                    descriptor.digest,
                    index,
                    count,
                    "downloading",
                    resumed_from,
                    descriptor.size,
                    resumed_from,
                )
            )

        return on_bytes, report

    def _fetch_and_unpack(
        self,
        undo: _Undo,
        *,
        descriptors: builtins.list[registry.Descriptor],
        diff_ids: builtins.list[str],
        chains: builtins.list[str],
        missing: builtins.list[int],
        to_fetch: set[int],
        fetch: _Fetch | None,
        progress: ProgressCallback,
    ) -> None:
        """Download the missing layers (3 at a time) and unpack each while it downloads.

        Every layer unpacks into its own directory, so layers are independent except when an
        entry needs a lower layer (a new parent directory's metadata, a hardlink's copy-up):
        then the worker waits until the layers below it are complete. Unpacking reads the
        growing ingest file (:class:`_Tail`); its result counts only once the download has
        verified the blob's digest, and snapshots are committed bottom up only when every layer
        succeeded. One failure cancels the other downloads (their partial files stay for a
        resume).
        """
        if not missing:
            return
        count = len(descriptors)
        base = self.snapshots.lowers(chains[missing[0] - 1]) if missing[0] > 0 else []
        work: dict[int, Path] = {}
        done = {i: threading.Event() for i in missing}
        failed = threading.Event()
        tails = {
            i: _Tail(self.content.partial_path(descriptors[i].digest), self.content.path(descriptors[i].digest))
            for i in to_fetch
        }
        downloads: dict[int, concurrent.futures.Future[None]] = {}

        def download(i: int) -> None:
            descriptor = descriptors[i]
            try:
                if failed.is_set():
                    raise _Cancelled
                assert fetch is not None
                on_bytes, report = self._reporters(descriptor, i, count, progress, failed)
                fetch(descriptor, on_bytes, report, tails[i])
                progress(PullProgress(descriptor.digest, i, count, "downloaded", descriptor.size, descriptor.size))
            except BaseException:
                tails[i].finish(ok=False)
                raise
            tails[i].finish(ok=True)

        def unpack(i: int) -> None:
            descriptor = descriptors[i]
            try:
                if failed.is_set():
                    raise _Cancelled
                progress(PullProgress(descriptor.digest, i, count, "extracting", 0, descriptor.size))
                below = [j for j in missing if j < i]

                def wait_for_lowers() -> None:
                    for j in below:
                        done[j].wait()
                    if failed.is_set():
                        raise _Cancelled

                def lowers() -> layers.Lowers:
                    return layers.Lowers([work[j] for j in reversed(below)] + base, wait=wait_for_lowers)

                if i in tails:
                    self._unpack_streaming(
                        i,
                        descriptor=descriptor,
                        work=work,
                        tail=tails[i],
                        download=downloads[i],
                        diff_id=diff_ids[i],
                        lowers=lowers,
                    )
                else:
                    layers.apply(
                        self.content.path(descriptor.digest),
                        work[i],
                        parents=lowers(),
                        expected_diff_id=diff_ids[i],
                    )
                progress(PullProgress(descriptor.digest, i, count, "done", descriptor.size, descriptor.size))
            except BaseException:
                failed.set()
                raise
            finally:
                done[i].set()

        download_pool = concurrent.futures.ThreadPoolExecutor(MAX_CONCURRENT_DOWNLOADS, thread_name_prefix="pull")
        unpack_pool = concurrent.futures.ThreadPoolExecutor(MAX_CONCURRENT_UNPACKS, thread_name_prefix="unpack")
        try:
            for i in missing:
                work[i] = self.snapshots.prepare()
            for i in sorted(to_fetch):
                progress(PullProgress(descriptors[i].digest, i, count, "waiting", 0, descriptors[i].size))
                downloads[i] = download_pool.submit(download, i)
            unpacks = [unpack_pool.submit(unpack, i) for i in missing]
            concurrent.futures.wait([*unpacks, *downloads.values()])
            problems = [f.exception() for f in [*unpacks, *downloads.values()] if f.exception() is not None]
            real = [p for p in problems if not isinstance(p, _Cancelled)]
            if problems:
                raise (real or problems)[0]  # type: ignore[misc]
            for i in missing:
                before = self.snapshots.get(chains[i])
                self.snapshots.commit(
                    work[i], chain_id=chains[i], parent=chains[i - 1] if i else None, diff_id=diff_ids[i]
                )
                if before is None:
                    undo.snapshots.append(chains[i])
        finally:
            failed.set()
            for tail in tails.values():
                tail.finish(ok=False)
            download_pool.shutdown(wait=True, cancel_futures=True)
            unpack_pool.shutdown(wait=True, cancel_futures=True)
            for fs in work.values():
                self.snapshots.discard(fs)

    def _unpack_streaming(
        self,
        i: int,
        *,
        descriptor: registry.Descriptor,
        work: dict[int, Path],
        tail: _Tail,
        download: concurrent.futures.Future[None],
        diff_id: str,
        lowers: Callable[[], layers.Lowers],
    ) -> None:
        """Unpack while the blob downloads; fall back to the stored blob if the download restarted."""
        try:
            with tail:
                layers.apply_stream(
                    typing.cast(typing.BinaryIO, tail),
                    work[i],
                    name=descriptor.digest,
                    parents=lowers(),
                    expected_diff_id=diff_id,
                )
        except BaseException as exc:
            # The download's own error (digest, network, cancellation) explains a failed read best.
            concurrent.futures.wait([download])
            download_error = download.exception()
            if download_error is not None:
                raise download_error from None
            if not isinstance(exc, _Restart):
                raise
            self.snapshots.discard(work[i])
            work[i] = self.snapshots.prepare()
            layers.apply(self.content.path(descriptor.digest), work[i], parents=lowers(), expected_diff_id=diff_id)
            return
        download.result()  # the unpacked bytes count only once the blob's digest is verified

    # -- load ------------------------------------------------------------------------------------

    def load(self, path: Path, *, progress: ProgressCallback | None = None) -> builtins.list[Image]:
        """Import an OCI-layout or docker-archive tarball (``docker save``, ``skopeo copy``).

        Every blob is verified against its digest on the way in; names come from the archive
        (``RepoTags``, or the OCI ``io.containerd.image.name`` / ``org.opencontainers.image.ref.name``
        annotations when they hold a full reference).
        """
        progress = progress or _nothing
        undo = _Undo(self)
        try:
            with files.file_lock(self.root / ".gc.lock", shared=True), tarfile.open(path, "r:*") as archive:
                members = {layers.normalise(m.name): m for m in archive.getmembers() if m.isfile()}
                if "index.json" in members and "oci-layout" in members:
                    return self._load_oci(archive, members, undo, progress)
                if "manifest.json" in members:
                    return self._load_docker(archive, members, undo, progress)
                raise errors.EngineError(f"{path} is neither an OCI layout nor a docker-archive tarball")
        except tarfile.TarError as exc:
            undo.rollback()
            raise errors.EngineError(f"{path} is not a readable tar archive: {exc}") from None
        except errors.ReconcilerError:
            undo.rollback()
            raise
        except OSError as exc:
            undo.rollback()
            raise errors.EngineError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _archive_blob(
        self,
        archive: tarfile.TarFile,
        members: Mapping[str, tarfile.TarInfo],
        name: str,
        *,
        digest: str,
        size: int | None,
        undo: _Undo,
    ) -> None:
        member = members.get(name)
        if member is None:
            raise errors.NotFound(f"the archive has no {name} for blob {digest}")
        if size is not None and member.size != size:
            raise errors.DigestMismatch(f"{name} has {member.size} bytes, its descriptor says {size}")
        reader = archive.extractfile(member)
        if reader is None:
            raise errors.EngineError(f"cannot read {name} from the archive")
        with reader:
            if content.copy_verified(self.content, digest, member.size, typing.cast(typing.BinaryIO, reader)):
                undo.blob(digest)

    def _load_oci(
        self,
        archive: tarfile.TarFile,
        members: Mapping[str, tarfile.TarInfo],
        undo: _Undo,
        progress: ProgressCallback,
    ) -> builtins.list[Image]:
        def blob(descriptor: registry.Descriptor) -> bytes:
            hexdigest = content.hex_of(descriptor.digest)
            self._archive_blob(
                archive,
                members,
                f"blobs/sha256/{hexdigest}",
                digest=descriptor.digest,
                size=descriptor.size,
                undo=undo,
            )
            return self.content.read(descriptor.digest)

        index_raw = _member_bytes(archive, members, "index.json")
        index = json.loads(index_raw)
        loaded: builtins.list[Image] = []
        for entry in index.get("manifests") or []:
            descriptor = registry.Descriptor.from_json(entry)
            annotations = entry.get("annotations") or {}
            names = _names_from_annotations(annotations)
            raw = blob(descriptor)
            top = registry.Manifest(
                descriptor.digest,
                registry.check_manifest_media_type(descriptor.media_type, json.loads(raw)),
                raw,
            )
            manifest = top
            if top.is_index:
                chosen = registry.select_platform(top.json(), self._platform)
                manifest = registry.Manifest(chosen.digest, registry.MEDIA_OCI_MANIFEST, blob(chosen))
                manifest = registry.Manifest(
                    chosen.digest,
                    registry.check_manifest_media_type(chosen.media_type, manifest.json()),
                    manifest.raw,
                )
            body = manifest.json()
            config_raw = blob(registry.config_descriptor(body))
            for layer in registry.iter_layers(body):
                blob_name = f"blobs/sha256/{content.hex_of(layer.digest)}"
                self._archive_blob(archive, members, blob_name, digest=layer.digest, size=layer.size, undo=undo)
            keys = [_ref_key(n) for n in names] + [_digest_key(n, top.digest) for n in names]
            loaded.append(
                self._install(
                    undo,
                    names=keys,
                    top=top,
                    manifest=manifest,
                    config_raw=config_raw,
                    fetch=None,
                    progress=progress,
                )
            )
        if not loaded:
            raise errors.EngineError("the OCI layout's index.json lists no images")
        return loaded

    def _load_docker(
        self,
        archive: tarfile.TarFile,
        members: Mapping[str, tarfile.TarInfo],
        undo: _Undo,
        progress: ProgressCallback,
    ) -> builtins.list[Image]:
        entries = json.loads(_member_bytes(archive, members, "manifest.json"))
        if not isinstance(entries, list) or not entries:
            raise errors.EngineError("docker-archive manifest.json lists no images")
        loaded: builtins.list[Image] = []
        for entry in entries:
            config_name = layers.normalise(str(entry["Config"]))
            config_raw = _member_bytes(archive, members, config_name)
            config_digest = "sha256:" + hashlib.sha256(config_raw).hexdigest()
            self._write_blob(undo, config_digest, config_raw)
            diff_ids = (json.loads(config_raw).get("rootfs") or {}).get("diff_ids") or []
            layer_names = [layers.normalise(str(n)) for n in entry.get("Layers") or []]
            if len(layer_names) != len(diff_ids):
                raise errors.EngineError(f"{config_name} lists {len(diff_ids)} diff_ids for {len(layer_names)} layers")
            descriptors = []
            for name, diff_id in zip(layer_names, diff_ids, strict=True):
                # docker save writes layers uncompressed, so each blob's digest is its diff_id.
                member = members.get(name)
                if member is None:
                    raise errors.NotFound(f"the archive has no layer {name}")
                self._archive_blob(archive, members, name, digest=str(diff_id), size=None, undo=undo)
                descriptors.append({"mediaType": DOCKER_LAYER_TAR, "digest": str(diff_id), "size": member.size})
            body = {
                "schemaVersion": 2,
                "mediaType": registry.MEDIA_DOCKER_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "digest": config_digest,
                    "size": len(config_raw),
                },
                "layers": descriptors,
            }
            raw = json.dumps(body, separators=(",", ":")).encode()
            manifest = registry.Manifest(
                "sha256:" + hashlib.sha256(raw).hexdigest(), registry.MEDIA_DOCKER_MANIFEST, raw
            )
            self._write_blob(undo, manifest.digest, raw)
            names = [_ref_key(_parse(str(tag))) for tag in entry.get("RepoTags") or []]
            loaded.append(
                self._install(
                    undo,
                    names=names,
                    top=manifest,
                    manifest=manifest,
                    config_raw=config_raw,
                    fetch=None,
                    progress=progress,
                )
            )
        return loaded

    # -- removal and garbage collection ---------------------------------------------------------

    def remove(self, ref: str | references.ImageReference) -> builtins.list[str]:
        """Remove a reference (or, given an image id, all of that image's references).

        Removing the last tag of an image also removes its digest references (as ``docker rmi``
        does); the image becomes dangling and ``prune`` frees its content unless a container
        still uses it. Returns the references removed.
        """
        with self._locked():
            data = self._load()
            image_id = self._key(ref, data)
            if image_id is None:
                raise errors.NotFound(f"no such image: {ref}")
            refs: dict[str, str] = data["refs"]
            is_id = (
                isinstance(ref, str)
                and ref.removeprefix("sha256:")
                and image_id.removeprefix("sha256:").startswith(ref.removeprefix("sha256:"))
            )
            if is_id:
                removed = [name for name, target in refs.items() if target == image_id]
            else:
                removed = [_ref_key(ref if isinstance(ref, references.ImageReference) else _parse(ref))]
            for name in removed:
                refs.pop(name, None)
            removed += _drop_digest_only_refs(refs, image_id)
            self._save(data)
            return sorted(removed)

    def prune(self, in_use: Iterable[str] = ()) -> int:
        """Free what no image references: dangling images not ``in_use`` (ids of images containers
        still use), then every blob, partial download and snapshot no remaining image holds.
        Returns the bytes freed."""
        keep_ids = set(in_use)
        freed = 0
        with files.file_lock(self.root / ".gc.lock"), self._locked():
            data = self._load()
            referenced = set(data["refs"].values())
            for image_id in list(data["images"]):
                if image_id not in referenced and image_id not in keep_ids:
                    del data["images"][image_id]
            self._save(data)
            kept_blobs = {str(b) for record in data["images"].values() for b in record.get("blobs", [])}
            for digest in self.content.digests():
                if digest not in kept_blobs:
                    freed += self.content.delete(digest)
            for partial in self.content.partials():
                freed += partial.stat().st_size
                partial.unlink()
            counts = self.snapshots.refcounts(_record_chains(r) for r in data["images"].values())
            freed += self.snapshots.remove_unreferenced(counts)
        return freed

    # -- containers ------------------------------------------------------------------------------

    def rootfs_mount(self, image: Image, container_dir: Path) -> mounts.Mount:
        """The overlay mount for a container of ``image``: its layers read-only, ``<dir>/fs`` on top.

        Creates ``<dir>/fs`` (upper), ``<dir>/work`` and ``<dir>/rootfs`` (the mount point);
        mounting is the caller's step (``mounts.mount``).
        """
        if not image.layers:
            raise errors.EngineError(f"image {image.short_id} has no layers to mount")
        lowers = self.snapshots.lowers(image.layers[-1].chain_id)
        files.make_private_dir(container_dir)
        upper, work, target = container_dir / "fs", container_dir / "work", container_dir / "rootfs"
        for directory, mode in ((upper, 0o755), (work, 0o700), (target, 0o755)):
            directory.mkdir(mode=mode, exist_ok=True)
            os.chmod(directory, mode)
        return mounts.overlay(lowers, upper=upper, work=work, target=target)


def _drop_digest_only_refs(refs: dict[str, str], image_id: str) -> builtins.list[str]:
    """An image whose last tag went away loses its digest references too (it is dangling now)."""
    remaining = [name for name, target in refs.items() if target == image_id]
    if remaining and all("@" in name for name in remaining):
        for name in remaining:
            del refs[name]
        return remaining
    return []


def _parse(text: str) -> references.ImageReference:
    try:
        return references.parse(text)
    except references.InvalidReference as exc:
        raise errors.EngineError(f"invalid image reference {text!r}: {exc}") from None


def _ref_key(ref: references.ImageReference | str) -> str:
    """The name an image is recorded under: ``registry/repo@digest`` when pinned, else ``:tag``."""
    if isinstance(ref, str):
        ref = _parse(ref)
    if ref.digest:
        return f"{ref.name}@{ref.digest}"
    return f"{ref.name}:{ref.tag or references.DEFAULT_TAG}"


def _digest_key(ref: references.ImageReference | str, digest: str) -> str:
    if isinstance(ref, str):
        ref = _parse(ref)
    return f"{ref.name}@{digest}"


def _names_from_annotations(annotations: Mapping[str, typing.Any]) -> builtins.list[str]:
    for key in NAME_ANNOTATIONS:
        value = annotations.get(key)
        if isinstance(value, str) and ("/" in value or ":" in value or "@" in value):
            try:
                references.parse(value)
            except references.InvalidReference:
                continue
            return [value]
    return []


def _member_bytes(archive: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo], name: str) -> bytes:
    member = members.get(name)
    if member is None:
        raise errors.NotFound(f"the archive has no {name}")
    if member.size > registry.MAX_MANIFEST_SIZE:
        raise errors.EngineError(f"{name} in the archive is too large ({member.size} bytes)")
    reader = archive.extractfile(member)
    if reader is None:
        raise errors.EngineError(f"cannot read {name} from the archive")
    with reader:
        return reader.read()
