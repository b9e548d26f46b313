"""The native engine (the embedded default): no daemon, the project's own container-creation path.

What this engine does today:

* **images**: pulled, verified and unpacked by :mod:`images` (registry client, content store,
  safe layer applier, overlay snapshots) under ``<root>/``;
* **volumes**: the ``local`` driver, one directory per volume, ``<root>/volumes/<name>/_data``,
  with its labels in ``volume.json`` (files root-only);
* **observe**: reads the state directory, so ``reconcile plan`` works on a fresh host and shows
  exactly what an apply would create.

What it does not do yet: run containers and bridge networks (OCI bundles, runc, the per-container
supervisor, veth/IPAM/port publishing). Those operations raise :class:`errors.RuntimeFailed` with a
message that says so and points at ``--engine docker``; they never pretend to succeed.

Like every backend, this module must not import the planner, the controller or the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from reconciler import engine, errors, manifests, observed, plans
from reconciler.backends.native import images

_NOT_YET = (
    "the native engine cannot {what} yet: its runtime (OCI bundles, runc, supervision) and bridge "
    "networking are not built; use --engine docker on this host for now"
)


def _not_yet(what: str) -> errors.RuntimeFailed:
    return errors.RuntimeFailed(_NOT_YET.format(what=what))


class NativeEngine:
    """The embedded engine over a state directory (``--root``, default ``/var/lib/reconciler``)."""

    name = "native"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._images: images.ImageStore | None = None
        self._lock = threading.Lock()

    @property
    def image_store(self) -> images.ImageStore:
        # Created lazily: `reconcile validate` and `plan` of a stack without containers need no store.
        if self._images is None:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._images = images.ImageStore(self.root)
        return self._images

    # -- observe ----------------------------------------------------------------------------------

    def observe(self, *, images: Sequence[str] = ()) -> observed.Observed:
        local: dict[str, str | None] = {}
        for ref in images:
            image = self.image_store.get(ref)
            local[ref] = image.id if image is not None else None
        return observed.Observed(containers={}, networks={}, volumes=self._volumes(), images=local)

    def _volumes(self) -> dict[str, observed.ObservedVolume]:
        found: dict[str, observed.ObservedVolume] = {}
        base = self.root / "volumes"
        if not base.is_dir():
            return found
        for entry in sorted(base.iterdir()):
            try:
                record = json.loads((entry / "volume.json").read_text())
            except (OSError, ValueError):
                continue
            labels = record.get("labels", {})
            if observed.LABEL_KIND in labels:
                found[entry.name] = observed.ObservedVolume(
                    name=entry.name, labels=labels, mountpoint=str(entry / "_data")
                )
        return found

    # -- images -----------------------------------------------------------------------------------

    def pull_image(self, image: str, *, policy: engine.PullPolicy = "IfNotPresent") -> str:
        return self.image_store.pull(image, policy=policy).id

    # -- volumes ----------------------------------------------------------------------------------

    def create_volume(self, request: plans.VolumeRequest) -> None:
        if request.spec.options:
            raise errors.RuntimeFailed(f"volume {request.name}: the local driver takes no options yet")
        directory = self.root / "volumes" / request.name
        with self._lock:
            record_path = directory / "volume.json"
            if record_path.exists():
                existing = json.loads(record_path.read_text()).get("labels", {})
                if all(existing.get(k) == request.labels.get(k) for k in observed.OWNER_LABELS):
                    return
                raise errors.Conflict(f"volume {request.name} exists and is owned by someone else")
            (directory / "_data").mkdir(mode=0o755, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
            temporary = directory / "volume.json.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"name": request.name, "labels": dict(request.labels)}, handle, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, record_path)

    def remove_volume(self, name: str) -> None:
        with self._lock:
            shutil.rmtree(self.root / "volumes" / name, ignore_errors=True)

    # -- not built yet ----------------------------------------------------------------------------

    def create_network(self, request: plans.NetworkRequest) -> None:
        raise _not_yet(f"create network {request.name}")

    def remove_network(self, name: str) -> None:
        return None  # nothing of ours can exist: removal of an absent object is a no-op

    def create_container(self, request: plans.ContainerRequest) -> str:
        raise _not_yet(f"create container {request.name}")

    def start_container(self, name: str) -> None:
        raise errors.NotFound(f"container {name} not found")

    def stop_container(self, name: str, *, timeout: float | None = None) -> None:
        raise errors.NotFound(f"container {name} not found")

    def remove_container(self, name: str) -> None:
        return None

    def rename_container(self, name: str, new_name: str) -> None:
        raise errors.NotFound(f"container {name} not found")

    def update_container(self, name: str, resources: manifests.Resources) -> None:
        raise errors.NotFound(f"container {name} not found")

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[engine.LogLine]:
        raise errors.NotFound(f"container {name} not found")

    def exec(self, name: str, argv: Sequence[str], *, timeout: float | None = None) -> engine.ExecResult:
        raise errors.NotFound(f"container {name} not found")

    def events(self, *, stop: threading.Event) -> Iterator[engine.Event]:
        while not stop.wait(0.5):
            pass
        return
        yield  # an empty generator: no containers, no events

    def close(self) -> None:
        return None
