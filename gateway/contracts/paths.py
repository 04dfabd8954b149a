"""Operation path templates (``/tasks/{id}``) matched against the path left after the route prefix."""

from __future__ import annotations

import re

_PARAM = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")


class PathTemplate:
    """A template whose ``{name}`` segments each match exactly one non-empty path segment."""

    __slots__ = ("_pattern", "specificity", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        segments = [seg for seg in template.split("/") if seg]
        parts = ["[^/]+" if _PARAM.match(seg) else re.escape(seg) for seg in segments]
        self._pattern = re.compile("^/" + "/".join(parts) + "/?$")
        literal = sum(1 for seg in segments if not _PARAM.match(seg))
        # Sort key: more literal segments first, so ``/tasks/latest`` wins over ``/tasks/{id}``.
        self.specificity = (-literal, -len(segments))

    def matches(self, path: str) -> bool:
        return self._pattern.match(path or "/") is not None

    def __repr__(self) -> str:
        return f"PathTemplate({self.template!r})"
