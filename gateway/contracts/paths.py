"""Operation path templates (``/tasks/{id}``) matched against the path left after the route prefix.

A template matches ``/`` followed by its segments, each ``{param}`` standing for exactly one non-empty segment
and each literal for itself as spelled, then an optional trailing slash. Matching a path against many templates
is :mod:`gateway.contracts.matcher`'s job; this module says what one template is.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote

_PARAM = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def unmatchable(template: str) -> str | None:
    """Why no request could ever be governed by ``template``, or ``None``.

    Templates are compared with the path as the agent reads it (:func:`gateway.dataplane.target.contract_path`):
    decoded, without ``;parameters``, dot-segments resolved. A literal segment spelled any other way matches
    nothing, and a contract nothing matches is a contract never enforced: registration refuses it instead."""
    for segment in template.split("/"):
        if segment in (".", ".."):
            return f"the dot-segment {segment!r} is resolved away before matching; write the path without it"
        if ";" in segment:
            return f"segment {segment!r}: ';parameters' are removed before matching; leave them out"
        escape = _ESCAPE.search(segment)
        if escape is not None:
            return f"segment {segment!r}: paths are matched decoded; write {escape.group()!r} as the character"
    return None


class PathTemplate:
    """A template whose ``{name}`` segments each match exactly one non-empty path segment. Immutable: build them
    with :func:`path_template`, which makes each spelling once however many tables and checks use it."""

    __slots__ = ("raw_segments", "segments", "specificity", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        self.raw_segments = tuple(seg for seg in template.split("/") if seg)
        """The segments as spelled: what a path's segments are compared with."""
        # What the template binds, spelling aside: a parameter's name is no part of it (``None``), empty
        # segments and a trailing slash are not (matching ignores them), escapes are decoded.
        self.segments = tuple(None if _PARAM.match(seg) else unquote(seg) for seg in self.raw_segments)
        literal = sum(1 for seg in self.segments if seg is not None)
        # Precedence: more literal segments first, so ``/tasks/latest`` wins over ``/tasks/{id}``.
        self.specificity = (-literal, -len(self.segments))

    def matches(self, path: str) -> bool:
        """Whether this one template matches ``path``: the reference definition, a regular expression made on
        demand. Tables never call it per request; :class:`gateway.contracts.matcher.TemplateIndex` answers for
        all templates at once and is property-tested against it."""
        parts = [
            "[^/]+" if seg is None else re.escape(raw)
            for seg, raw in zip(self.segments, self.raw_segments, strict=True)
        ]
        return re.match("^/" + "/".join(parts) + "/?$", path or "/") is not None

    def overlaps(self, other: PathTemplate) -> bool:
        """Whether some path matches both templates and neither is more specific, so the matcher could only pick
        one by the order contracts were registered in: ``/tasks/{id}`` and ``/tasks/{task_id}/`` (the same
        binding), or ``/{a}/x`` and ``/x/{b}`` (both match ``/x/x``). ``/tasks/latest`` and ``/tasks/{id}`` do
        not overlap in this sense: the literal one wins for ``/tasks/latest``."""
        return self.specificity == other.specificity and all(
            mine is None or theirs is None or mine == theirs
            for mine, theirs in zip(self.segments, other.segments, strict=True)
        )

    def __repr__(self) -> str:
        return f"PathTemplate({self.template!r})"


@lru_cache(maxsize=1 << 16)
def path_template(template: str) -> PathTemplate:
    """The template for a spelling, made once: a table of thousands of contracts is rebuilt on every change, and
    re-parsing each unchanged template made every registration pay for all of them."""
    return PathTemplate(template)
