"""YAML text to plain values that remember where every value and key was written.

The only module of the package that reads YAML (and writes it: :func:`dump`). The parser's events
are *composed* into nodes here (not constructed, and not by PyYAML's composer: see
:class:`_Composer`), within limits of size, depth and expansion, so that every node keeps its start
mark and no text can exhaust the process (a problem is a positioned diagnostic); the plain values
are built from the nodes here, recording the mark of every path (``("spec", "ports", 0,
"hostPort")``). pydantic reports errors by the same path (by alias), so the loader maps each error
back to the closest recorded mark. Building the values here also lets us reject duplicate keys,
which PyYAML would silently overwrite, and resolve YAML merge keys (``<<: *base``).

This module must not validate: it knows nothing of the models, only of YAML and positions.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeAlias, cast

import yaml

from reconciler import errors

FieldPath: TypeAlias = tuple[str | int, ...]
# libyaml's events and marks are other classes than PyYAML's, with the same attributes; the
# composer reads both alike, so they are typed loosely here.
_Event: TypeAlias = Any
_Mark: TypeAlias = Any


@dataclasses.dataclass(slots=True)
class Positions:
    """The start mark (1-based line, column) of every value and key in one document."""

    values: dict[FieldPath, tuple[int, int]] = dataclasses.field(default_factory=dict)
    keys: dict[FieldPath, tuple[int, int]] = dataclasses.field(default_factory=dict)
    # The file a path was written in, where it is not the document's own (a document translated
    # from several merged compose files); paths absent here are in the document's file.
    files: dict[FieldPath, str] = dataclasses.field(default_factory=dict)
    # How a path is named in the file it was written in, where that differs from the document's
    # path (``services.web.ports[0]`` for a translated ``spec.ports[0]``).
    names: dict[FieldPath, FieldPath] = dataclasses.field(default_factory=dict)

    def written(self, found: FieldPath, path: Sequence[str | int]) -> FieldPath:
        """``path`` as its file names it: the name of its recorded prefix ``found``, then the rest."""
        return (*self.names.get(found, found), *path[len(found) :]) if found in self.names else tuple(path)

    def file_of(self, path: FieldPath, default: str) -> str:
        """The file ``path`` (a path :meth:`nearest` found) was written in."""
        return self.files.get(path, default)

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


# Limits on one text, so that a manifest cannot take the process down (anyone who may write to a
# watched folder may write one): its size; how deep values nest (libyaml's scanner slows down with
# the square of the depth of flow collections, and recursion would overflow); and how many values
# it expands to, each alias counting as every value it repeats (a "billion laughs" text of a few
# hundred bytes otherwise expands to gigabytes). Far above any real stack: a container is ~50
# values, six levels deep.
MAX_TEXT_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 100
MAX_VALUES = 100_000


class _Problem(Exception):
    """A YAML problem at a place of the text: it becomes one diagnostic."""

    def __init__(self, mark: _Mark, message: str, field: str = "") -> None:
        super().__init__(message)
        where: tuple[int, int] = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        self.line, self.column = where
        self.message, self.field = message, field


def _node_value(node: yaml.Node, path: FieldPath, positions: Positions) -> object:
    """Construct a plain value from a composed node, recording each path's mark.

    The recursion is as deep as the node's height, which :class:`_Composer` bounds."""
    positions.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, object] = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in _merged(node):
            key = _scalar(key_node)
            key_text = key if isinstance(key, str) else str(key)
            if key_text in first_seen:
                message = f"duplicate key (first at line {first_seen[key_text]})"
                raise _Problem(key_node.start_mark, message, key_text)
            first_seen[key_text] = key_node.start_mark.line + 1
            child = (*path, key_text)
            positions.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key_text] = _node_value(value_node, child, positions)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_node_value(item, (*path, index), positions) for index, item in enumerate(node.value)]
    return _scalar(node)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _merged(node: yaml.MappingNode, depth: int = 0) -> list[tuple[yaml.Node, yaml.Node]]:
    """The mapping's pairs with YAML merge keys (``<<: *base``, ``<<: [*a, *b]``) resolved: the
    mapping's own keys win over merged ones, and earlier merged mappings over later ones (YAML's
    rule). A merged key keeps the position where the anchored mapping wrote it."""
    if depth > MAX_DEPTH:
        raise _Problem(node.start_mark, f"merge keys nest deeper than {MAX_DEPTH} levels")
    own = [(k, v) for k, v in node.value if k.tag != _MERGE_TAG]
    merges = [v for k, v in node.value if k.tag == _MERGE_TAG]
    if not merges:
        return own
    seen = {k.value for k, _ in own if isinstance(k, yaml.ScalarNode)}
    extra: list[tuple[yaml.Node, yaml.Node]] = []
    for merge in merges:
        sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise _Problem(source.start_mark, "a merge key (<<) takes a mapping or a list of mappings")
            for key, value in _merged(source, depth + 1):
                if isinstance(key, yaml.ScalarNode) and key.value not in seen:
                    seen.add(key.value)
                    extra.append((key, value))
    return own + extra


_RESOLVER_LOADER = yaml.SafeLoader("")
# The safe loader's constructor of each tag (None: the one that refuses an unknown tag). Called
# directly, not through construct_object, which would keep every node it ever saw.
_CONSTRUCTORS: dict[str | None, Callable[[yaml.SafeLoader, yaml.Node], object]] = yaml.SafeLoader.yaml_constructors
# libyaml's parser gives the same events and marks several times faster; PyYAML built without
# libyaml falls back to the pure-Python one. Either way the nodes are composed by _Composer.
_PARSER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(node: yaml.Node) -> object:
    """A scalar's value with YAML 1.1 core types, as the safe loader would construct it.

    A value that does not read as its tag says so without quoting it (it may be a secret)."""
    if not isinstance(node, yaml.ScalarNode):
        raise _Problem(node.start_mark, "a mapping key must be a plain value")
    construct = _CONSTRUCTORS.get(node.tag, _CONSTRUCTORS[None])
    try:
        value = construct(_RESOLVER_LOADER, node)
    except yaml.MarkedYAMLError as exc:
        raise _Problem(node.start_mark, str(exc.problem or exc.context or "unreadable value")) from None
    except (ValueError, TypeError, ArithmeticError):
        raise _Problem(node.start_mark, f"the value does not read as {node.tag}") from None
    if isinstance(value, types.GeneratorType):  # a collection's tag on a scalar (`!!map x`)
        value.close()
        raise _Problem(node.start_mark, f"a plain value cannot be tagged {node.tag}")
    return value


@dataclasses.dataclass(slots=True)
class _Open:
    """A collection being composed: its node, its anchor, and what it expands to so far."""

    node: yaml.SequenceNode | yaml.MappingNode
    anchor: str | None
    values: int = 1
    height: int = 1
    key: yaml.Node | None = None


@dataclasses.dataclass(slots=True)
class _Composer:
    """The parser's events to nodes, as PyYAML's composer builds them, within the limits above.

    Composed here rather than by PyYAML's (or libyaml's) composer, which recurse (libyaml's
    crashes the process on a deep text) and cannot count: each node's expanded size and height
    are known when it closes, so an alias costs what it repeats, and a recursive alias (one to a
    collection still open) is an error at the alias instead of endless recursion later."""

    parser: yaml.SafeLoader | yaml.CSafeLoader
    # Closed anchored nodes: name → (node, values it expands to, height).
    anchors: dict[str, tuple[yaml.Node, int, int]] = dataclasses.field(default_factory=dict)
    open: list[_Open] = dataclasses.field(default_factory=list)
    values: int = 0

    def documents(self) -> list[yaml.Node]:
        """Every document's root node; scalars, by far the most events, are composed inline."""
        roots: list[yaml.Node] = []
        get_event = cast(Callable[[], _Event], self.parser.get_event)
        resolve = cast(Callable[[type[yaml.Node], str | None, Any], str], self.parser.resolve)
        finished: yaml.Node | None
        while not isinstance(event := get_event(), yaml.StreamEndEvent):
            kind = type(event)
            if kind is yaml.ScalarEvent:
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolve(yaml.ScalarNode, event.value, event.implicit)
                node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
                if event.anchor is not None:
                    self._name(event, node, 1, 1)
                finished = self._add(node, 1, 1, event.start_mark)
            elif kind is yaml.SequenceStartEvent or kind is yaml.MappingStartEvent:
                self._start(event)
                continue
            elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
                finished = self._end(event)
            elif kind is yaml.AliasEvent:
                finished = self._alias(event)
            elif kind is yaml.DocumentStartEvent:
                self.anchors.clear()  # anchors are a document's own
                continue
            else:
                continue
            if finished is not None:
                roots.append(finished)
        return roots

    def _name(self, event: _Event, node: yaml.Node, values: int, height: int) -> None:
        self._refuse_duplicate(event)
        self.anchors[str(event.anchor)] = (node, values, height)

    def _refuse_duplicate(self, event: _Event) -> None:
        """PyYAML's rule, kept: an anchor is named once per document."""
        if event.anchor in self.anchors or any(o.anchor == event.anchor for o in self.open):
            raise _Problem(event.start_mark, f"found duplicate anchor &{event.anchor}")

    def _start(self, event: _Event) -> None:
        if len(self.open) >= MAX_DEPTH:
            raise _Problem(event.start_mark, f"values nest deeper than {MAX_DEPTH} levels")
        kind = yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else yaml.MappingNode
        resolve = cast(Callable[[type[yaml.Node], str | None, Any], str], self.parser.resolve)
        tag = event.tag if event.tag not in (None, "!") else resolve(kind, None, event.implicit)
        node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if event.anchor is not None:
            self._refuse_duplicate(event)  # named when it closes: until then, an alias to it is recursive
        self._count(1, event.start_mark)
        self.open.append(_Open(node, event.anchor))

    def _count(self, values: int, mark: _Mark) -> None:
        self.values += values
        if self.values > MAX_VALUES:
            raise _Problem(mark, f"the text expands to more than {MAX_VALUES} values (an alias counts what it repeats)")

    def _end(self, event: _Event) -> yaml.Node | None:
        opened = self.open.pop()
        opened.node.end_mark = event.end_mark
        if opened.anchor is not None:
            self.anchors[opened.anchor] = (opened.node, opened.values, opened.height)
        return self._add(opened.node, opened.values, opened.height, None)

    def _alias(self, event: _Event) -> yaml.Node | None:
        if any(o.anchor == event.anchor for o in self.open):
            raise _Problem(event.start_mark, f"alias *{event.anchor} is recursive: it is inside the value it names")
        if event.anchor not in self.anchors:
            raise _Problem(event.start_mark, f"found undefined alias *{event.anchor}")
        node, values, height = self.anchors[str(event.anchor)]
        if len(self.open) + height > MAX_DEPTH:
            raise _Problem(event.start_mark, f"values nest deeper than {MAX_DEPTH} levels")
        return self._add(node, values, height, event.start_mark)

    def _add(self, node: yaml.Node, values: int, height: int, mark: _Mark) -> yaml.Node | None:
        """Count a node new to the text (``mark`` given: a scalar, or an alias counting all it
        repeats) and put it into the collection open around it; a root is returned instead."""
        if mark is not None:
            self._count(values, mark)
        if not self.open:
            return node
        parent = self.open[-1]
        parent.values += values
        if height >= parent.height:
            parent.height = height + 1
        if isinstance(parent.node, yaml.SequenceNode):
            parent.node.value.append(node)
        elif parent.key is None:
            parent.key = node
        else:
            parent.node.value.append((parent.key, node))
            parent.key = None
        return None


def _compose(text: str) -> list[yaml.Node]:
    """Every document's root node, within the limits (:class:`_Problem` beyond them)."""
    if len(text) > MAX_TEXT_BYTES or (len(text) * 4 > MAX_TEXT_BYTES and len(text.encode()) > MAX_TEXT_BYTES):
        raise _Problem(None, f"the text is larger than {MAX_TEXT_BYTES >> 20} MiB, the most a manifest may be")
    parser = _PARSER(text)
    try:
        return _Composer(parser).documents()
    finally:
        parser.dispose()


def dump(documents: Sequence[object]) -> str:
    """Plain values as a YAML stream, one document each, keys in their order (``reconcile convert``)."""
    return str(yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, allow_unicode=True))


def documents(text: str, file: str, diagnostics: list[errors.Diagnostic]) -> Iterator[tuple[object, Positions]]:
    """Each non-empty document of ``text`` as a plain value and its positions, in order.

    A YAML problem becomes a diagnostic instead: a syntax error or a limit passed anywhere yields
    no document at all (composing stops there); a duplicate key or an unreadable value drops only
    its document. Messages quote no value (it may be a secret), only names and positions.
    """
    try:
        nodes = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        diagnostics.append(errors.Diagnostic(file, line, column, "", f"YAML syntax error: {problem}"))
        return
    except yaml.YAMLError as exc:
        diagnostics.append(errors.Diagnostic(file, 1, 1, "", f"YAML error: {exc}"))
        return
    except _Problem as problem:
        message = f"YAML error: {problem.message}"
        diagnostics.append(errors.Diagnostic(file, problem.line, problem.column, problem.field, message))
        return
    for node in nodes:
        positions = Positions()
        try:
            value = _node_value(node, (), positions)
        except _Problem as problem:
            message = problem.message if problem.field else f"YAML error: {problem.message}"
            diagnostics.append(errors.Diagnostic(file, problem.line, problem.column, problem.field, message))
            continue
        if value is not None:
            yield value, positions
