"""The image store: pull, load, look up, list, remove and garbage-collect images; build rootfs mounts.

This is the facade the native engine and ``reconcile image`` use; the work is done below it::

    pulling  (from a registry, through registry) ─┐
                                                  ├─► installing ─┬─► layer_pipeline ─► content,
    archives (from an OCI or docker tarball) ─────┘               │    (download +      layers,
                                                                  │     unpack)         snapshots
                                                                  └─► image_index (images.json)

The store itself answers queries from the index, removes names, collects garbage (``prune``)
and turns an image's snapshots into a container's overlay mount (``rootfs_mount``).

On disk, under ``root``::

    content/      blobs by digest (manifests, configs, compressed layers) + resumable ingests
    snapshots/    one directory per layer, keyed by chain id, shared by all images
    images.json   {"images": {image_id: record}, "refs": {reference: image_id}}

An image's id is its config digest (as in Docker). An image is recorded only after all of its
content is verified and unpacked, so a reader sees it completely or not at all; a refused pull
or load takes back everything it created, an interrupted one keeps what it verified so that the
next pull resumes.

Concurrency: pulls and loads hold a shared lock on ``.gc.lock`` and ``prune`` an exclusive one,
so garbage collection never removes a blob a running pull has just written; the rollback of a
failed pull or load takes it exclusively too (after releasing its shared hold), so it never takes
back a blob or snapshot that a concurrent pull reused; ``images.json`` is edited under its own
lock.

What it must not do: run containers, print (progress goes to a callback), or reach a registry for
an ``IfNotPresent`` pull of a reference that is present, and never for a digest reference.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path

from reconciler import errors, files, references, vocabulary
from reconciler.backends.native import (
    content,
    image_index,
    mounts,
    pull_progress,
    records,
    registry_settings,
    snapshots,
)

if typing.TYPE_CHECKING:
    from reconciler.backends.native import installing

# A pull's progress report; the store's callers know it by this name.
PullProgress = pull_progress.PullProgress


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


def _nothing(_: PullProgress) -> None:
    return None


class ImageStore:
    """The native engine's images under ``root`` (see the module docstring for the layout)."""

    def __init__(
        self,
        root: Path,
        *,
        registry_config: registry_settings.RegistryConfig | None = None,
        containers: records.Records | None = None,
    ) -> None:
        """``containers``: whose images are in use; by default the engine's, under the same root."""
        self.root = root
        self.containers = containers or records.Records(root / "containers")
        self.content = content.Store(root / "content")
        self.snapshots = snapshots.of_root(root)
        self.index = image_index.ImageIndex(root)
        self.registry_config = registry_config or registry_settings.RegistryConfig()
        self._gc_lock = root / ".gc.lock"
        self._platform = registry_settings.host_platform()

    def __repr__(self) -> str:
        return f"ImageStore({str(self.root)!r})"

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

    def _installation(self) -> installing.Installation:
        # The pull machinery (and with it ``requests``) is imported when an image is pulled or
        # loaded, not when the store is only read: a no-op apply never needs it.
        from reconciler.backends.native import installing

        return installing.Installation(self.content, self.snapshots, self.index, gc_lock=self._gc_lock)

    # -- queries ---------------------------------------------------------------------------------

    def get(self, ref: str | references.ImageReference) -> Image | None:
        """The image ``ref`` names (reference, image id or id prefix), or None."""
        data = self.index.load()
        image_id = self.index.resolve(ref, data)
        if image_id is None or image_id not in data["images"]:
            return None
        return self._image(image_id, data)

    def list(self) -> builtins.list[Image]:
        """Every image, sorted by first reference (dangling images, named ``<none>``, last)."""
        data = self.index.load()
        found = [self._image(image_id, data) for image_id in data["images"]]
        return sorted(found, key=lambda i: (not i.references, i.references[:1], i.id))

    def _complete(self, image: Image) -> bool:
        return not image.layers or self.snapshots.get(image.layers[-1].chain_id) is not None

    # -- pull and load ---------------------------------------------------------------------------

    def pull(
        self,
        ref: str | references.ImageReference,
        *,
        policy: vocabulary.PullPolicy = "IfNotPresent",
        progress: pull_progress.ProgressCallback | None = None,
    ) -> Image:
        """Make ``ref`` present according to ``policy`` and return it.

        ``IfNotPresent`` returns a present image without any network access (for digest
        references that is true under every policy: the content cannot have changed).
        ``Always`` asks the registry with a HEAD whether the tag still points at what we have.
        ``Never`` raises ``errors.NotFound`` for an absent image.
        """
        if policy not in vocabulary.PULL_POLICIES:
            choices = ", ".join(vocabulary.PULL_POLICIES)
            raise errors.EngineError(f"unknown pull policy {policy!r} (use one of {choices})")
        reference = ref if isinstance(ref, references.ImageReference) else image_index.parse(ref)
        existing = self.get(reference)
        if existing is not None and self._complete(existing) and (policy != "Always" or reference.digest):
            return existing
        if policy == "Never":
            raise errors.NotFound(f"image {reference} is not present and the pull policy is Never")
        from reconciler.backends.native import pulling, registry

        with registry.Client(self.registry_config) as client:
            if existing is not None and self._complete(existing):
                remote = client.head_manifest(reference)
                record = self.index.records().get(existing.id, {})
                if remote is not None and remote in record.get("digests", []):
                    return existing
            recorded = pulling.pull(
                self._installation(),
                client,
                reference,
                platform=self._platform,
                progress=progress or _nothing,
                hold=files.file_lock(self._gc_lock, shared=True),
            )
            return self._image(*recorded)

    def load(self, path: Path, *, progress: pull_progress.ProgressCallback | None = None) -> builtins.list[Image]:
        """Import an OCI-layout or docker-archive tarball (``docker save``, ``skopeo copy``).

        Every blob is verified against its digest on the way in; names come from the archive
        (``RepoTags``, or the OCI ``io.containerd.image.name`` / ``org.opencontainers.image.ref.name``
        annotations when they hold a full reference).
        """
        from reconciler.backends.native import archives

        loaded = archives.load(
            self._installation(),
            path,
            platform=self._platform,
            progress=progress or _nothing,
            hold=files.file_lock(self._gc_lock, shared=True),
        )
        return [self._image(*recorded) for recorded in loaded]

    # -- removal and garbage collection ---------------------------------------------------------

    def users(self) -> dict[str, builtins.list[records.Record]]:
        """The containers (any state) of each image in use, by image id."""
        found: dict[str, builtins.list[records.Record]] = {}
        for record in self.containers.all():
            image_id = record.data.get("image_id")
            if isinstance(image_id, str):
                found.setdefault(image_id, []).append(record)
        return found

    def remove(self, ref: str | references.ImageReference, *, force: bool = False) -> builtins.list[str]:
        """Remove a reference (or, given an image id, all of that image's references).

        Removing the last tag of an image also removes its digest references (as ``docker rmi``
        does); the image becomes dangling and ``prune`` frees its content unless a container
        still uses it. Returns the references removed.

        As Docker, an image a container uses (in any state) keeps its last tag unless ``force``
        (which only untags: the content stays while the container does), and is not removed by
        id while a container of it runs, forced or not (``errors.Conflict``).
        """
        users = self.users()

        def guard(image_id: str, by_id: bool, last_tag: bool) -> None:
            using = sorted(users.get(image_id, ()), key=lambda r: not records.is_running(r))
            if not using or (force and not (by_id and records.is_running(using[0]))):
                return
            short, user = image_id.removeprefix("sha256:")[:12], using[0]
            who = f"{user.container_id[:12]} ({user.name})"
            if by_id:
                state = "running" if records.is_running(user) else "stopped"
                how = "cannot be forced" if state == "running" else "must be forced"
                raise errors.Conflict(
                    f"conflict: unable to delete {short} ({how}) - image is being used by {state} container {who}"
                )
            if last_tag:
                raise errors.Conflict(
                    f'conflict: unable to remove repository reference "{ref}" (must force) - container {who} '
                    f"is using its referenced image {short}"
                )

        return self.index.remove(ref, guard=guard)

    def prune(self, in_use: Iterable[str] = ()) -> int:
        """Free what no image references: dangling images that no container uses (nor are listed in
        ``in_use``), then every blob, partial download and snapshot no remaining image holds.
        Returns the bytes freed."""
        freed = 0
        with files.file_lock(self._gc_lock), self.index.locked():
            data = self.index.load()
            image_index.drop_dangling(data, set(in_use) | set(self.users()))
            self.index.save(data)
            records = data["images"].values()
            kept_blobs = {blob for record in records for blob in image_index.record_blobs(record)}
            for digest in self.content.digests():
                if digest not in kept_blobs:
                    freed += self.content.delete(digest)
            for partial in self.content.partials():
                freed += partial.stat().st_size
                partial.unlink()
            counts = self.snapshots.refcounts(image_index.record_chains(r) for r in records)
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
