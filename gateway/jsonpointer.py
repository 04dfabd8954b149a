"""RFC 6901 JSON pointers: resolving them in documents and redacting what they point at.

Redaction patterns extend RFC 6901 with one token: ``*`` matches every member of an object and every item of
an array (``/users/*/password``). A literal ``*`` member name therefore cannot be addressed by a pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MISSING = object()
REDACTED = "[redacted]"
WILDCARD = "*"

Tokens = tuple[str, ...]


def tokens(pointer: str) -> Tokens:
    """The unescaped reference tokens of ``pointer`` (``""`` is the whole document: no tokens)."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ValueError(f"a JSON pointer starts with '/': {pointer!r}")
    return tuple(token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/"))


def join(parts: Sequence[str | int]) -> str:
    """The pointer made of ``parts`` (member names escaped, array indices as decimal)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _index(token: str, size: int) -> int | None:
    """The array index ``token`` names (RFC 6901: ``0`` or digits without a leading zero), if within ``size``."""
    if not token.isascii() or not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        return None
    index = int(token)
    return index if index < size else None


def resolve(document: Any, pointer: str) -> Any:
    """The value at ``pointer``, or :data:`MISSING`."""
    node = document
    for token in tokens(pointer):
        if isinstance(node, dict):
            if token not in node:
                return MISSING
            node = node[token]
        elif isinstance(node, list) and (index := _index(token, len(node))) is not None:
            node = node[index]
        else:
            return MISSING
    return node


def redact(document: Any, pointers: Sequence[str]) -> Any:
    """``document`` with the value at each pointer (or pattern) replaced by ``"[redacted]"``; the original is
    never modified."""
    return redact_patterns(document, [tokens(p) for p in pointers], [])


def redact_patterns(document: Any, patterns: Sequence[Tokens], found: list[str]) -> Any:
    """Redact every location matching one of ``patterns``, appending each location's pointer to ``found``.

    Only the containers on the path to a redacted value are copied (shallowly); every other subtree is shared
    with the original. A 10 MB document with one secret near the root costs a few small copies, not a deep
    copy of the whole document; only a wildcard walks all the items it matches.
    """
    for pattern in patterns:
        document = _redact(document, pattern, 0, [], found)
    return document


def _redact(node: Any, pattern: Tokens, depth: int, path: list[str | int], found: list[str]) -> Any:
    if depth == len(pattern):
        found.append(join(path))
        return REDACTED
    token = pattern[depth]
    if isinstance(node, dict):
        keys: Sequence[Any] = list(node) if token == WILDCARD else ([token] if token in node else [])
    elif isinstance(node, list):
        index = _index(token, len(node))
        keys = range(len(node)) if token == WILDCARD else ([] if index is None else [index])
    else:
        return node
    changed: dict[Any, Any] = {}
    for key in keys:
        path.append(key)
        value = _redact(node[key], pattern, depth + 1, path, found)
        path.pop()
        if value is not node[key]:
            changed[key] = value
    if not changed:
        return node
    copy = node.copy()
    for key, value in changed.items():
        copy[key] = value
    return copy


def markers(document: Any) -> list[str]:
    """Pointers to every ``"[redacted]"`` string in ``document``, in document order (iterative: no depth limit)."""
    found: list[str] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        node, path = stack.pop()
        if node == REDACTED:
            found.append(join(path))
        elif isinstance(node, dict):
            stack.extend((value, (*path, key)) for key, value in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((node[i], (*path, i)) for i in range(len(node) - 1, -1, -1))
    return found


def overlaps(pointer: Tokens, pattern: Tokens) -> bool:
    """Whether ``pointer`` is at, inside, or an ancestor of a location ``pattern`` matches: the value there
    contains, or is part of, a redacted value."""
    return all(p in (WILDCARD, t) for t, p in zip(pointer, pattern, strict=False))
