"""YAML text to plain values that remember where every value and key was written.

The only module of the package that reads YAML. The text is *composed* (not constructed), so that
every node keeps its start mark; the plain values are built from the nodes here, recording the
mark of every path (``("spec", "ports", 0, "hostPort")``). pydantic reports errors by the same
path (by alias), so the loader maps each error back to the closest recorded mark. Building the
values here also lets us reject duplicate keys, which PyYAML would silently overwrite.

This module must not validate: it knows nothing of the models, only of YAML and positions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TypeAlias

import yaml

from reconciler import errors

FieldPath: TypeAlias = tuple[str | int, ...]


@dataclasses.dataclass(slots=True)
class Positions:
    """The start mark (1-based line, column) of every value and key in one document."""

    values: dict[FieldPath, tuple[int, int]] = dataclasses.field(default_factory=dict)
    keys: dict[FieldPath, tuple[int, int]] = dataclasses.field(default_factory=dict)

    def clean(self, loc: Sequence[str | int]) -> FieldPath:
        """``loc`` without pydantic's union tags (``mounts[1].bind.source`` → ``mounts[1].source``)."""
        result: list[str | int] = []
        for index, element in enumerate(loc):
            here = (*result, element)
            if here not in self.values and index + 1 < len(loc) and (*result, loc[index + 1]) in self.values:
                continue
            result.append(element)
        return tuple(result)

    def nearest(self, path: Sequence[str | int], *, key: bool = False) -> tuple[FieldPath, tuple[int, int]]:
        """The deepest recorded prefix of ``path`` and its mark.

        pydantic inserts union tags (``'bind'``) into error locations; they are skipped because
        they are not in the document. ``key=True`` prefers the key's position (for unknown fields).
        """
        found: FieldPath = ()
        for element in path:
            candidate = (*found, element)
            if candidate in self.values:
                found = candidate
        if key and found in self.keys:
            return found, self.keys[found]
        return found, self.values.get(found, (1, 1))


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, column: int, first_line: int) -> None:
        super().__init__(key)
        self.key, self.line, self.column, self.first_line = key, line, column, first_line


def _node_value(node: yaml.Node, path: FieldPath, positions: Positions) -> object:
    """Construct a plain value from a composed node, recording each path's mark."""
    positions.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, object] = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            key_text = key if isinstance(key, str) else str(key)
            if key_text in first_seen:
                raise _DuplicateKey(
                    key_text,
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                    first_seen[key_text],
                )
            first_seen[key_text] = key_node.start_mark.line + 1
            child = (*path, key_text)
            positions.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key_text] = _node_value(value_node, child, positions)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_node_value(item, (*path, index), positions) for index, item in enumerate(node.value)]
    return _scalar(node)


_RESOLVER_LOADER = yaml.SafeLoader("")
# libyaml's composer gives the same nodes and marks six times faster (7 ms instead of 42 for a
# 50-container stack); PyYAML built without libyaml falls back to the pure-Python one.
_COMPOSER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(node: yaml.Node) -> object:
    """A scalar's value with YAML 1.1 core types, as the safe loader would construct it."""
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value", node.start_mark)
    return _RESOLVER_LOADER.construct_object(node, deep=True)


def documents(text: str, file: str, diagnostics: list[errors.Diagnostic]) -> Iterator[tuple[object, Positions]]:
    """Each non-empty document of ``text`` as a plain value and its positions, in order.

    A YAML problem becomes a diagnostic instead: a syntax error anywhere yields no document at
    all (the composer stops there); a duplicate key or an unreadable value drops only its document.
    """
    try:
        nodes = list(yaml.compose_all(text, Loader=_COMPOSER))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        diagnostics.append(errors.Diagnostic(file, line, column, "", f"YAML syntax error: {problem}"))
        return
    except yaml.YAMLError as exc:
        diagnostics.append(errors.Diagnostic(file, 1, 1, "", f"YAML error: {exc}"))
        return
    for node in nodes:
        if node is None:
            continue
        positions = Positions()
        try:
            value = _node_value(node, (), positions)
        except _DuplicateKey as dup:
            diagnostics.append(
                errors.Diagnostic(
                    file, dup.line, dup.column, dup.key, f"duplicate key (first at line {dup.first_line})"
                )
            )
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            diagnostics.append(errors.Diagnostic(file, line, column, "", f"YAML error: {exc}"))
            continue
        if value is not None:
            yield value, positions
