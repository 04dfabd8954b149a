"""One redaction policy for everything the gateway keeps or shows: audit records, DLQ items, webhooks, logs,
spans and problem documents.

Built once per gateway from ``audit.redact`` (JSON pointers, ``*`` matching any member or item) and
``audit.redact_headers`` (header names, case-insensitive). Values are replaced by ``"[redacted]"``. Query
parameters are redacted by name, from the one list :data:`CREDENTIAL_QUERY_KEYS` (not configurable: a request
URL is kept or shown in places that know nothing of a gateway's settings, such as ``url.full`` on a span).

Violation messages quote the instance they are about (``{"secret":"sk-1"} has less than 3 properties``), so
the rule for them is positional and cannot leak: a violation whose pointer is at, inside, or an *ancestor* of a
redacted location keeps its pointer and keyword, but its message is replaced by :data:`HIDDEN_MESSAGE`. A
message about any other location is built from a value that does not contain a redacted one, and is kept. For
request violations the same holds for ``/headers`` and ``/headers/<redacted header name>``, and for ``/query``
and ``/query/<credential parameter name>``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_plus

import orjson
from yarl import URL

from gateway.config import AuditSettings
from gateway.errors import ContractViolation, Direction, GatewayError, Violation
from gateway.jsonpointer import REDACTED, Tokens, overlaps, redact_patterns, tokens

HIDDEN_MESSAGE = "[redacted]: the value here is or contains redacted data; failed keyword {keyword!r}"
URL_REDACTED: Final = "REDACTED"
"""What ``url.full`` shows instead of a credential: the OpenTelemetry semantic conventions spell it so."""
CREDENTIAL_QUERY_KEYS: Final = frozenset(
    ("awsaccesskeyid", "signature", "sig", "x-goog-signature", "x-goog-credential", "x-amz-signature",
     "x-amz-credential", "x-amz-security-token", "access_token", "refresh_token", "id_token", "api_key", "apikey",
     "api-key", "x-api-key", "key", "token", "auth", "authorization", "password", "passwd", "pwd", "secret",
     "client_secret", "client_assertion", "code", "jwt")
)  # fmt: skip
"""Query parameters (compared lower-cased) whose values are credentials: the four the OpenTelemetry conventions
name for ``url.full`` (``AWSAccessKeyId``, ``Signature``, ``sig``, ``X-Goog-Signature``), the other signed-URL
members, and the names APIs use for keys, tokens and OAuth codes. The one list: spans, DLQ items, webhooks."""
_HEADERS = "headers"
_QUERY = "query"


def credential_parameter(name: str) -> bool:
    """Whether a query parameter (its decoded name) carries a credential."""
    return name.lower() in CREDENTIAL_QUERY_KEYS


def redacted_query(query: str, marker: str = REDACTED) -> str:
    """A percent-encoded query string with the value of each credential parameter replaced by ``marker``; every
    other byte is kept as received (the string is returned unchanged when nothing matched), so what is shown is
    what was sent, minus the secrets."""
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, equals, _ = part.partition("=")
        if equals and credential_parameter(unquote_plus(name)):
            parts[i] = f"{name}={marker}"
            changed = True
    return "&".join(parts) if changed else query


def redacted_query_names(query: str) -> list[str]:
    """The (decoded) names of the parameters :func:`redacted_query` redacts, in order: what a stored request no
    longer holds and cannot be resent with."""
    return [
        unquote_plus(name)
        for name, equals, _ in (part.partition("=") for part in query.split("&"))
        if equals and credential_parameter(unquote_plus(name))
    ]


def redacted_url(url: URL, marker: str = URL_REDACTED) -> str:
    """A URL without credentials: userinfo and the values of credential query parameters become ``marker``
    (``REDACTED`` by default, as ``url.full`` must show them), so a secret in a route's upstream URL, a webhook
    URL or a caller's query never reaches a trace backend, a log or an admin view."""
    if url.user is not None or url.password is not None:
        url = url.with_user(marker).with_password(marker if url.password is not None else None)
    query = url.raw_query_string
    shown = redacted_query(query, marker)
    if shown is query:
        return str(url)
    fragment = f"#{url.raw_fragment}" if url.raw_fragment else ""
    return f"{url.with_query(None).with_fragment(None)}?{shown}{fragment}"  # as received: yarl would re-quote


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

    def holds_redacted(self, raw: bytes) -> bool:
        """Whether a JSON body has a value at a redacted location: a body that may be relayed but never kept
        (a checkpoint must replay the exact answer, so it cannot keep a redacted copy instead)."""
        if not self.patterns:
            return False
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
        found: list[str] = []
        redact_patterns(parsed, self.patterns, found)
        return bool(found)

    def header_values(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Headers as they may be kept or shown: credentials (by name) replaced by ``"[redacted]"``."""
        return {str(k): REDACTED if k.lower() in self.headers else v for k, v in headers.items()}

    def hides(self, pointer: str, direction: str | None = None) -> bool:
        """Whether a violation at ``pointer`` may quote a redacted value (see the module docstring)."""
        try:
            parts = tokens(pointer)
        except ValueError:
            return True  # not a pointer: nothing proves it is safe
        if any(overlaps(parts, pattern) for pattern in self.patterns):
            return True
        if direction == "response" or not parts or parts[0] not in (_HEADERS, _QUERY):
            return False
        if len(parts) == 1:
            return True  # the whole header or query object, credentials included
        return parts[1].lower() in self.headers if parts[0] == _HEADERS else credential_parameter(parts[1])

    def violations(self, violations: Iterable[Mapping[str, str]]) -> tuple[dict[str, str], ...]:
        """Violations as they may be kept or shown: messages that could quote a redacted value replaced."""
        kept = []
        for violation in violations:
            entry = dict(violation)
            if self.hides(entry.get("pointer", ""), entry.get("direction")):
                entry["message"] = HIDDEN_MESSAGE.format(keyword=entry.get("keyword", ""))
            kept.append(entry)
        return tuple(kept)

    def shown(self, violations: Sequence[Violation], direction: Direction) -> Sequence[Violation]:
        """:meth:`violations` for the :class:`Violation` objects a refusal carries (the same object back when
        no message needed hiding, so the common case allocates nothing)."""
        if not any(self.hides(v.pointer, direction) for v in violations):
            return violations
        return tuple(
            Violation(v.pointer, v.keyword, HIDDEN_MESSAGE.format(keyword=v.keyword))
            if self.hides(v.pointer, direction)
            else v
            for v in violations
        )

    def refusal(self, error: GatewayError) -> GatewayError:
        """``error`` as its problem document may show it: a contract violation's messages are hidden where they
        could quote a redacted value (a 502 quotes the agent's invalid answer, a 422 the caller's request, and
        both reach logs and error trackers the audit settings were meant to protect). Others are unchanged."""
        if not isinstance(error, ContractViolation):
            return error
        shown = self.shown(error.violations, error.direction)
        return error if shown is error.violations else error.with_violations(shown)


@functools.lru_cache(maxsize=8)
def redactor_for(settings: AuditSettings) -> Redactor:
    """The one redactor for these settings (settings are frozen and hashable, so every part of a gateway that
    asks with the same settings shares one object; the pointers are parsed once)."""
    return Redactor(
        patterns=tuple(tokens(p) for p in settings.redact),
        headers=frozenset(name.lower() for name in settings.redact_headers),
    )
