"""Finding the path template that governs a path without trying every template in turn.

:class:`~gateway.contracts.paths.PathTemplate` says what one template matches: ``/`` followed by its segments
(each ``{param}`` one non-empty segment, each literal itself), an optional trailing slash. Which template wins
when several match: the most literal segments, then the most segments, then the one added first. A linear scan in
that order was the matcher until thousands of contracts made every unbound request pay for all of them.

:class:`TemplateIndex` groups templates by *shape* — which of their segments are literal — and keys each shape's
templates by their literal segments in a dict. Matching a path of *k* segments looks up each shape of *k*
segments, most literal shapes first, and stops at the first group of equally literal shapes that has a match: a
dict lookup per shape, so a path costs O(segments * shapes), never O(templates). Literal templates are one
shape per length: a literal path is one lookup.

The index is copy-on-write: :meth:`TemplateIndex.changed` copies only the dicts of the shapes a change touches
(a C-level copy), so a table of thousands of contracts is revised in microseconds, and the data plane keeps
reading the previous index until the new one is swapped in.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Generic, TypeVar

from gateway.contracts.paths import PathTemplate

V = TypeVar("V")
Shape = tuple[int, ...]
"""The positions of a template's literal segments, and (as ``-1 - count``) how many segments it has."""
Rank = tuple[int, int, int]
"""``(-literal segments, -segments, order)``: smaller wins, as the linear matcher's sort order had it."""
Entry = tuple[int, V]
"""``(order, value)``: the order templates were added in breaks ties (between templates that bind the same
paths, which registration refuses; kept so the index answers exactly as the linear scan did)."""


def path_segments(path: str) -> list[str] | None:
    """The segments a template would have to match, or ``None`` if no template can match ``path`` (it does not
    start with ``/``, or has an empty segment other than one trailing slash)."""
    if not path:
        return []
    if path[0] != "/":
        return None
    body = path[1:-1] if path.endswith("/") else path[1:]
    if not body:
        return []
    segments = body.split("/")
    return None if "" in segments else segments


def shape_of(template: PathTemplate) -> tuple[Shape, tuple[str, ...]]:
    """A template's shape and its literal segments as spelled (matching is on the spelling, not the decoding)."""
    raw = template.raw_segments
    literal = tuple(i for i, seg in enumerate(template.segments) if seg is not None)
    return (*literal, -1 - len(raw)), tuple(raw[i] for i in literal)


class TemplateIndex(Generic[V]):
    """Immutable: path templates → values, the best match for a path in O(segments * shapes)."""

    __slots__ = ("_plan", "_shapes")

    def __init__(self) -> None:
        self._shapes: dict[Shape, dict[tuple[str, ...], list[Entry[V]]]] = {}
        self._plan: dict[int, tuple[tuple[Shape, ...], ...]] = {}
        """Per segment count: the shapes, grouped by how many literal segments they have, most first."""

    def changed(
        self, added: Iterable[tuple[PathTemplate, int, V]] = (), removed: Iterable[tuple[PathTemplate, int]] = ()
    ) -> TemplateIndex[V]:
        """A new index with ``(template, order, value)`` entries added and ``(template, order)`` ones removed."""
        shapes = dict(self._shapes)
        copied: set[Shape] = set()

        def group(shape: Shape) -> dict[tuple[str, ...], list[Entry[V]]]:
            if shape not in copied:
                copied.add(shape)
                shapes[shape] = dict(shapes.get(shape, {}))
            return shapes[shape]

        for template, order in removed:
            shape, key = shape_of(template)
            entries = group(shape)
            listed = list(entries.get(key, ()))
            at = bisect.bisect_left(listed, order, key=_order)
            if at < len(listed) and listed[at][0] == order:
                del listed[at]
            if listed:
                entries[key] = listed
            else:
                entries.pop(key, None)
        for template, order, value in added:
            shape, key = shape_of(template)
            entries = group(shape)
            listed = list(entries.get(key, ()))  # many tools on one path share a key: bisect, never re-sort
            bisect.insort(listed, (order, value), key=_order)
            entries[key] = listed
        index: TemplateIndex[V] = TemplateIndex()
        index._shapes = {shape: entries for shape, entries in shapes.items() if entries}
        index._plan = self._plan if index._shapes.keys() == self._shapes.keys() else _plan(index._shapes)
        return index

    def best(self, path: str) -> tuple[Rank, V] | None:
        """The winning template's rank and value for ``path``.

        ``PathTemplate`` matched with ``re.match(...$)``, and ``$`` also matches before a final newline: a path
        ending in ``\\n`` is matched as itself and without it, and the better of the two wins, as it did."""
        found = self._best(path_segments(path))
        if path.endswith("\n"):
            trimmed = self._best(path_segments(path[:-1]))
            if trimmed is not None and (found is None or trimmed[0] < found[0]):
                return trimmed
        return found

    def _best(self, segments: list[str] | None) -> tuple[Rank, V] | None:
        if segments is None:
            return None
        for level in self._plan.get(len(segments), ()):
            found: Entry[V] | None = None
            for shape in level:
                hit = self._shapes[shape].get(tuple(segments[i] for i in shape[:-1]))
                if hit is not None and (found is None or hit[0][0] < found[0]):
                    found = hit[0]
            if found is not None:
                return (1 - len(level[0]), -len(segments), found[0]), found[1]
        return None


def _order(entry: Entry[object]) -> int:
    return entry[0]


def _plan(shapes: Iterable[Shape]) -> dict[int, tuple[tuple[Shape, ...], ...]]:
    levels: dict[int, dict[int, list[Shape]]] = {}
    for shape in shapes:
        levels.setdefault(-1 - shape[-1], {}).setdefault(len(shape) - 1, []).append(shape)
    return {
        count: tuple(tuple(by_literal[n]) for n in sorted(by_literal, reverse=True))
        for count, by_literal in levels.items()
    }
