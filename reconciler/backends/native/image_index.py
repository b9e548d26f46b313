"""The image index: ``images.json``, which images the store holds and which names point at them.

The file is ``{"images": {image_id: record}, "refs": {name: image_id}}``. An image's id is its
config digest (as in Docker). A record lists the manifest (and the index it was chosen from),
the layers with their diff and chain ids, every blob the image holds and the manifest digests it
is known by; a name is ``registry/repo:tag`` or ``registry/repo@sha256:…``. The file is
rewritten atomically (``files.write_json``) under its own lock, ``.images.lock``.

This module sits under ``installing`` and ``images``. What it must not do: read or delete blobs
or snapshots (records only name them), or talk to a registry.
"""

from __future__ import annotations

import contextlib
import json
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from reconciler import errors, files, references

# What the index holds after a change: the image id, and the whole index as written.
Recorded: typing.TypeAlias = tuple[str, dict[str, typing.Any]]
# Asked before a removal: (image id, removed by id, no tag would be left); raises to refuse it.
Guard: typing.TypeAlias = Callable[[str, bool, bool], None]


class ImageIndex:
    """``images.json`` under ``root`` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "images.json"
        self._lock_path = root / ".images.lock"

    def __repr__(self) -> str:
        return f"image_index.ImageIndex({str(self.path)!r})"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclude other writers of the index (a process-wide ``flock``; not re-entrant)."""
        with files.file_lock(self._lock_path):
            yield

    def load(self) -> dict[str, typing.Any]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"images": {}, "refs": {}}
        except ValueError:
            raise errors.EngineError(f"image metadata {self.path} is corrupt") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
            raise errors.EngineError(f"image metadata {self.path} is corrupt")
        return data

    def save(self, data: Mapping[str, typing.Any]) -> None:
        files.write_json(self.path, data, indent=1)

    def records(self) -> dict[str, dict[str, typing.Any]]:
        return typing.cast(dict[str, dict[str, typing.Any]], self.load()["images"])

    def resolve(self, text: str | references.ImageReference, data: Mapping[str, typing.Any]) -> str | None:
        """The image id ``text`` names in ``data``: a reference, a full image id or a unique id prefix."""
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
        target = data["refs"].get(ref_key(text))
        return str(target) if target is not None else None

    def record(
        self,
        image_id: str,
        *,
        manifest: str,
        index: str | None,
        layers: list[dict[str, typing.Any]],
        blobs: set[str],
        digests: set[str],
        names: Iterable[str],
    ) -> Recorded:
        """Record an installed image (merged with what an earlier pull recorded) and point ``names`` at it.

        A name that pointed at another image moves; that image loses its digest names when no
        tag is left to it (it is dangling now).
        """
        names = list(names)
        with self.locked():
            data = self.load()
            previous_record = data["images"].get(image_id) or {}
            data["images"][image_id] = {
                "manifest": manifest,
                "index": index,
                "layers": layers,
                "blobs": sorted(blobs | set(previous_record.get("blobs", []))),
                "digests": sorted(digests | set(previous_record.get("digests", []))),
            }
            previous = {data["refs"].get(name) for name in names} - {None, image_id}
            for name in names:
                data["refs"][name] = image_id
            for old_id in previous:
                _drop_digest_only_refs(data["refs"], str(old_id))
            self.save(data)
            return image_id, data

    def remove(self, ref: str | references.ImageReference, *, guard: Guard | None = None) -> list[str]:
        """Remove a name (or, given an image id, all of that image's names); returns those removed.

        Removing the last tag of an image also removes its digest names (as ``docker rmi`` does).
        ``guard`` is called under the lock before anything changes, and may refuse by raising.
        """
        with self.locked():
            data = self.load()
            image_id = self.resolve(ref, data)
            if image_id is None:
                raise errors.NotFound(f"no such image: {ref}")
            refs: dict[str, str] = data["refs"]
            is_id = (
                isinstance(ref, str)
                and ref.removeprefix("sha256:")
                and image_id.removeprefix("sha256:").startswith(ref.removeprefix("sha256:"))
            )
            removed = [name for name, target in refs.items() if target == image_id] if is_id else [ref_key(ref)]
            if guard is not None:
                tags_left = [n for n, t in refs.items() if t == image_id and n not in removed and "@" not in n]
                guard(image_id, bool(is_id), not tags_left)
            for name in removed:
                refs.pop(name, None)
            removed += _drop_digest_only_refs(refs, image_id)
            self.save(data)
            return sorted(removed)


def drop_dangling(data: dict[str, typing.Any], keep: set[str]) -> None:
    """Forget, in ``data``, every image that no name points at, except the ids in ``keep``."""
    referenced = set(data["refs"].values())
    for image_id in list(data["images"]):
        if image_id not in referenced and image_id not in keep:
            del data["images"][image_id]


def record_chains(record: Mapping[str, typing.Any]) -> list[str]:
    """The chain ids (snapshots) a record holds, bottom layer first."""
    return [str(layer["chain_id"]) for layer in record.get("layers", [])]


def record_blobs(record: Mapping[str, typing.Any]) -> list[str]:
    """The blob digests a record holds."""
    return [str(blob) for blob in record.get("blobs", [])]


def parse(text: str) -> references.ImageReference:
    """``references.parse``, with a bad reference reported as the engine's error."""
    try:
        return references.parse(text)
    except references.InvalidReference as exc:
        raise errors.EngineError(f"invalid image reference {text!r}: {exc}") from None


def ref_key(ref: references.ImageReference | str) -> str:
    """The name an image is recorded under: ``registry/repo@digest`` when pinned, else ``:tag``."""
    if isinstance(ref, str):
        ref = parse(ref)
    if ref.digest:
        return f"{ref.name}@{ref.digest}"
    return f"{ref.name}:{ref.tag or references.DEFAULT_TAG}"


def digest_key(ref: references.ImageReference | str, digest: str) -> str:
    """The name of ``ref``'s repository pinned at ``digest``."""
    if isinstance(ref, str):
        ref = parse(ref)
    return f"{ref.name}@{digest}"


def _drop_digest_only_refs(refs: dict[str, str], image_id: str) -> list[str]:
    """An image whose last tag went away loses its digest references too (it is dangling now)."""
    remaining = [name for name, target in refs.items() if target == image_id]
    if remaining and all("@" in name for name in remaining):
        for name in remaining:
            del refs[name]
        return remaining
    return []
