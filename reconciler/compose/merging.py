"""Several compose files as one, with compose's override rules; and ``extends``.

Sits above :mod:`.located` and :mod:`.shorthands` (files are merged in their long forms). A later
file overrides an earlier one: mappings merge key by key, a scalar replaces; ``command``,
``entrypoint`` and ``healthcheck.test`` are replaced whole; ``volumes`` merge by target and
``secrets``/``configs`` by source; other lists are appended, without repeating an item. Every
value keeps the place (file, line, column) it came from. This module must not read files.
"""

from __future__ import annotations

import copy

from reconciler.compose.located import Located, Path, Where

_REPLACED = frozenset({"command", "entrypoint", "test"})
_KEYED = {"volumes": "target", "secrets": "source", "configs": "source"}


def merge(base: Located, over: Located) -> Located:
    """``over`` merged onto ``base`` (neither is changed)."""
    result = Located(copy.deepcopy(base.value), dict(base.places), dict(base.keys))
    if not isinstance(result.value, dict) or not isinstance(over.value, dict):
        return Located(copy.deepcopy(over.value), dict(over.places), dict(over.keys))
    _merge_mapping(result, (), result.value, over, ())
    return result


def _merge_mapping(result: Located, path: Path, target: dict[str, object], over: Located, over_path: Path) -> None:
    source = _value_at(over.value, over_path)
    assert isinstance(source, dict)
    for key, value in source.items():
        here, there = (*path, key), (*over_path, key)
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            _merge_mapping(result, here, current, over, there)
        elif isinstance(current, list) and isinstance(value, list) and key not in _REPLACED:
            _merge_list(result, here, current, value, over.sub(there))
        else:
            target[key] = copy.deepcopy(value)
            result.graft(here, over.sub(there), over.sub_keys(there))
        if there in over.keys:
            result.keys[here] = over.keys[there]


def _merge_list(
    result: Located, path: Path, current: list[object], items: list[object], places: dict[Path, Where]
) -> None:
    field = path[-1] if path else ""
    key = _KEYED.get(str(field)) if len(path) == 3 and path[0] == "services" else None
    for index, item in enumerate(items):
        item_places = {p[1:]: w for p, w in places.items() if p and p[0] == index}
        if key is not None and isinstance(item, dict):
            same = next(
                (i for i, old in enumerate(current) if isinstance(old, dict) and old.get(key) == item.get(key)), None
            )
            if same is not None:
                current[same] = copy.deepcopy(item)
                result.graft((*path, same), item_places)
                continue
        elif item in current:
            continue
        current.append(copy.deepcopy(item))
        result.graft((*path, len(current) - 1), item_places)


def _value_at(value: object, path: Path) -> object:
    for element in path:
        value = value[element]  # type: ignore[index]
    return value


def extend(service: Located, base: Located) -> Located:
    """A service over the one it ``extends`` (compose's merge rules), without its ``extends``."""
    merged = merge(base, service)
    if isinstance(merged.value, dict):
        merged.value.pop("extends", None)
    return merged
