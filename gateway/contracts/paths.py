"""Operation path templates (``/tasks/{id}``) matched against the path left after the route prefix."""

from __future__ import annotations

import re
from urllib.parse import unquote

_PARAM = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")


class PathTemplate:
    """A template whose ``{name}`` segments each match exactly one non-empty path segment."""

    __slots__ = ("_pattern", "segments", "specificity", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        segments = [seg for seg in template.split("/") if seg]
        # What the template binds, spelling aside: a parameter's name is no part of it (``None``), empty
        # segments and a trailing slash are not (the pattern ignores them), escapes are decoded.
        self.segments = tuple(None if _PARAM.match(seg) else unquote(seg) for seg in segments)
        parts = ["[^/]+" if _PARAM.match(seg) else re.escape(seg) for seg in segments]
        self._pattern = re.compile("^/" + "/".join(parts) + "/?$")
        literal = sum(1 for seg in segments if not _PARAM.match(seg))
        # Sort key: more literal segments first, so ``/tasks/latest`` wins over ``/tasks/{id}``.
        self.specificity = (-literal, -len(segments))

    def matches(self, path: str) -> bool:
        return self._pattern.match(path or "/") is not None

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
