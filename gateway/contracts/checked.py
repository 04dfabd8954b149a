"""Checking a contract document against the meta-schema once per content, not once per registration.

The meta-schema check is pure Python (milliseconds a document) and was paid again for every document of every
registration: pushing the same thousand files again, or rolling an id back to content it had before. A document
whose exact content (a digest of its canonical JSON) passed the check before is only turned into its typed form.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

MAX_REMEMBERED = 1 << 16
"""Digests kept (32 bytes each): the oldest are forgotten first, and then merely checked again."""


def content_digest(document: Mapping[str, Any]) -> bytes | None:
    """SHA-256 of the canonical JSON of ``document`` (keys sorted); ``None`` for what orjson cannot encode
    (keys that are not strings, integers beyond 64 bits): such a document is simply checked every time."""
    try:
        return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).digest()
    except orjson.JSONEncodeError:
        return None


class CheckedDigests:
    """The digests of documents that passed the meta-schema check, oldest first. Used under the registry's lock
    (one worker thread at a time)."""

    def __init__(self) -> None:
        self._seen: dict[bytes, None] = {}

    def __contains__(self, digest: bytes | None) -> bool:
        return digest is not None and digest in self._seen

    def add(self, digest: bytes | None) -> None:
        if digest is not None:
            self._seen[digest] = None
            if len(self._seen) > MAX_REMEMBERED:
                del self._seen[next(iter(self._seen))]
