"""RFC 6901 JSON pointers: resolving them in documents and redacting what they point at."""

from __future__ import annotations

import copy
from typing import Any

MISSING = object()
REDACTED = "[redacted]"


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"a JSON pointer starts with '/': {pointer!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def resolve(document: Any, pointer: str) -> Any:
    """The value at ``pointer``, or :data:`MISSING`."""
    node = document
    for token in _tokens(pointer):
        if isinstance(node, dict):
            if token not in node:
                return MISSING
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return MISSING
    return node


def redact(document: Any, pointers: tuple[str, ...]) -> Any:
    """A copy of ``document`` with the value at each pointer replaced by ``"[redacted]"``."""
    if not pointers:
        return document
    result = copy.deepcopy(document)
    for pointer in pointers:
        tokens = _tokens(pointer)
        if not tokens:
            return REDACTED
        parent = resolve(result, "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens[:-1]))
        last = tokens[-1]
        if isinstance(parent, dict) and last in parent:
            parent[last] = REDACTED
        elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            parent[int(last)] = REDACTED
    return result
