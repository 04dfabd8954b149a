"""One redaction policy for everything the gateway keeps or shows: audit records, DLQ items, webhooks, logs.

Built once per gateway from ``audit.redact`` (JSON pointers, ``*`` matching any member or item) and
``audit.redact_headers`` (header names, case-insensitive). Values are replaced by ``"[redacted]"``.

Violation messages quote the instance they are about (``{"secret":"sk-1"} has less than 3 properties``), so
the rule for them is positional and cannot leak: a violation whose pointer is at, inside, or an *ancestor* of a
redacted location keeps its pointer and keyword, but its message is replaced by :data:`HIDDEN_MESSAGE`. A
message about any other location is built from a value that does not contain a redacted one, and is kept. For
request violations the same holds for ``/headers`` and ``/headers/<redacted header name>``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.config import AuditSettings
from gateway.jsonpointer import REDACTED, Tokens, overlaps, redact_patterns, tokens

HIDDEN_MESSAGE = "[redacted]: the value here is or contains redacted data; failed keyword {keyword!r}"
_HEADERS = "headers"


@dataclass(frozen=True, slots=True)
class RedactedBody:
    """A body as it may be kept: ``body`` has ``"[redacted]"`` at each of ``pointers`` (and is the original
    bytes, unchanged, when nothing matched or the body is not JSON)."""

    body: bytes | None
    pointers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Redactor:
    patterns: tuple[Tokens, ...]
    headers: frozenset[str]
    """Lower-cased header names."""

    def document(self, document: Any) -> Any:
        """A parsed payload with every redacted location replaced (only the paths to them are copied)."""
        if not self.patterns or document is None:
            return document
        return redact_patterns(document, self.patterns, [])

    def body(self, raw: bytes | None) -> RedactedBody:
        """Raw bytes as they may be kept. A JSON body is parsed, redacted and re-serialised when a pointer
        matched; a body that is not JSON cannot be addressed by pointers and is kept as it is. Parsing costs
        what the contract check did: call it off the event loop for large bodies."""
        if raw is None or not self.patterns:
            return RedactedBody(raw, ())
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return RedactedBody(raw, ())
        found: list[str] = []
        redacted = redact_patterns(parsed, self.patterns, found)
        return RedactedBody(orjson.dumps(redacted) if found else raw, tuple(found))

    def header_values(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Headers as they may be kept or shown: credentials (by name) replaced by ``"[redacted]"``."""
        return {str(k): REDACTED if k.lower() in self.headers else v for k, v in headers.items()}

    def hides(self, pointer: str, direction: str | None = None) -> bool:
        """Whether a violation at ``pointer`` may quote a redacted value (see the module docstring)."""
        try:
            parts = tokens(pointer)
        except ValueError:
            return bool(self.patterns or self.headers)  # not a pointer: nothing proves it is safe
        if any(overlaps(parts, pattern) for pattern in self.patterns):
            return True
        if direction == "response" or not parts or parts[0] != _HEADERS:
            return False
        return len(parts) == 1 or parts[1].lower() in self.headers

    def violations(self, violations: Iterable[Mapping[str, str]]) -> tuple[dict[str, str], ...]:
        """Violations as they may be kept or shown: messages that could quote a redacted value replaced."""
        kept = []
        for violation in violations:
            entry = dict(violation)
            if self.hides(entry.get("pointer", ""), entry.get("direction")):
                entry["message"] = HIDDEN_MESSAGE.format(keyword=entry.get("keyword", ""))
            kept.append(entry)
        return tuple(kept)


@functools.lru_cache(maxsize=8)
def redactor_for(settings: AuditSettings) -> Redactor:
    """The one redactor for these settings (settings are frozen and hashable, so every part of a gateway that
    asks with the same settings shares one object; the pointers are parsed once)."""
    return Redactor(
        patterns=tuple(tokens(p) for p in settings.redact),
        headers=frozenset(name.lower() for name in settings.redact_headers),
    )
