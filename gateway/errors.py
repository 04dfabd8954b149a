"""Exceptions raised on the data path and the admin API, and how each becomes an RFC 9457 problem document.

Every rejection the gateway makes leaves through :func:`problem_response`, so callers always get the same
``application/problem+json`` shape with the ``trace_id`` they need to find the request in traces and logs.

Hierarchy::

    GatewayError                      (500, never raised directly)
     ├── ContractViolation            (422 request / 502 response / 409 stale context)
     ├── PayloadTooLarge              (413)
     ├── UpstreamPayloadTooLarge      (502)
     ├── RouteOverloaded              (503 + Retry-After)
     ├── NoRoute                      (404)
     ├── BadRequestTarget             (400: no canonical path, or an escaped slash a route refuses)
     ├── HeadersTooLarge              (431: the header block is over ``limits.max_header_bytes``)
     ├── BadRequest                   (400: the HTTP parser could not read the request)
     ├── RequestTimeout               (408: no byte of the request body for ``timeouts.client_idle``)
     ├── UpstreamError                (502)
     │    ├── UpstreamTimeout         (504)
     │    └── DeadlineExceeded        (504: the request's total budget ran out)
     ├── BreakerOpen                  (503 + Retry-After)
     ├── CheckpointInFlight           (409: same Idempotency-Key still being served)
     ├── IdempotencyKeyReused         (422: same Idempotency-Key, different body)
     ├── StoreUnavailable             (503 + Retry-After: the store failed an operation)
     ├── Escalated                    (503 + escalation id; 202 is a normal answer, not an error)
     ├── FallbackInvalid              (502: the declared fallback breaks the contract)
     └── AdminError                   (400 / 401 / 404 / 409: admin API only)

Refusals that report an outcome (contract violations, upstream failures, an open breaker) carry its
:class:`~gateway.outcomes.Verdict` and are typed ``…/problems/<verdict>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import orjson
from aiohttp import web

from gateway.outcomes import Verdict

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://agent-gateway.dev/problems/"

Direction = Literal["request", "response"]


@dataclass(frozen=True, slots=True)
class Violation:
    """One reason a payload broke its contract; ``pointer`` is an RFC 6901 JSON pointer into the payload."""

    pointer: str
    keyword: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "keyword": self.keyword, "message": self.message}

    def under(self, prefix: str) -> Violation:
        """The same violation, its pointer taken from inside the member at ``prefix`` (``/params``, ``/headers``)."""
        return Violation(prefix + self.pointer, self.keyword, self.message)


class GatewayError(Exception):
    """Base class: a failure the gateway reports to its caller as a problem document."""

    status: ClassVar[int] = 500
    kind: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal gateway error"
    verdict: ClassVar[Verdict | None] = None
    """The outcome this refusal reports, when it is one (:mod:`gateway.outcomes`); its problem type is then
    spelled as the verdict, so a handoff's outcome reads the same in the problem, the headers and the audit."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def extensions(self) -> dict[str, Any]:
        """Members added to the problem document beyond the RFC 9457 core ones."""
        return {}

    def headers(self) -> Mapping[str, str]:
        return {}

    def status_code(self) -> int:
        return self.status

    def problem(self, trace_id: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": PROBLEM_BASE + self.kind,
            "title": self.title,
            "status": self.status_code(),
            "detail": self.detail,
        }
        doc.update(self.extensions())
        doc["trace_id"] = trace_id
        return doc


class ContractViolation(GatewayError):
    """A request or response payload broke the active version of its contract."""

    def __init__(
        self,
        *,
        contract: str,
        version: int,
        direction: Direction,
        violations: Sequence[Violation],
        total: int,
        stale: bool = False,
    ) -> None:
        noun = "request" if direction == "request" else "upstream response"
        what = "builds on stale context under" if stale else "violates"
        count = f"more than {len(violations)}" if total > len(violations) else str(total)
        super().__init__(f"The {noun} {what} contract {contract!r} version {version}: {count} violation(s).")
        self.stale = stale
        self.contract = contract
        self.version = version
        self.direction: Direction = direction
        self.violations = tuple(violations)
        self.total = total

    def with_violations(self, violations: Sequence[Violation]) -> ContractViolation:
        """The same refusal (same class, contract, direction, count) listing ``violations`` instead: how
        :meth:`gateway.redaction.Redactor.refusal` hides messages that quote redacted values."""
        return type(self)(
            contract=self.contract, version=self.version, direction=self.direction, violations=violations,
            total=self.total, stale=self.stale,
        )  # fmt: skip

    @property
    def verdict(self) -> Verdict:  # type: ignore[override]
        if self.stale:
            return Verdict.STALE_CONTEXT
        return Verdict.REQUEST_INVALID if self.direction == "request" else Verdict.RESPONSE_INVALID

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.verdict.value

    @property
    def title(self) -> str:  # type: ignore[override]
        return "Request builds on stale context" if self.stale else f"{self.direction.capitalize()} violates contract"

    def status_code(self) -> int:
        if self.stale:
            return 409  # the payload is well-formed but conflicts with what the run has already produced
        return 422 if self.direction == "request" else 502

    def extensions(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "version": self.version,
            "direction": self.direction,
            "violations": [v.as_dict() for v in self.violations],
            "violation_count": self.total,
            "violations_truncated": self.total > len(self.violations),
        }


class PayloadTooLarge(GatewayError):
    status = 413
    kind = "payload-too-large"
    title = "Request body too large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body exceeds the limit of {limit} bytes.")
        self.limit = limit

    def extensions(self) -> dict[str, Any]:
        return {"limit_bytes": self.limit}


class UpstreamPayloadTooLarge(PayloadTooLarge):
    status = 502
    kind = "upstream-payload-too-large"
    title = "Upstream response body too large"

    def __init__(self, limit: int) -> None:
        GatewayError.__init__(self, f"The upstream response body exceeds the limit of {limit} bytes.")
        self.limit = limit


class RouteOverloaded(GatewayError):
    status = 503
    kind = "route-overloaded"
    title = "Too many concurrent requests"

    def __init__(self, route: str, limit: int, retry_after: int = 1) -> None:
        super().__init__(f"Route {route!r} already has {limit} requests in flight.")
        self.route = route
        self.retry_after = retry_after

    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(self.retry_after)}

    def extensions(self) -> dict[str, Any]:
        return {"route": self.route}


class NoRoute(GatewayError):
    status = 404
    kind = "no-route"
    title = "No route matches"

    def __init__(self, path: str) -> None:
        super().__init__(f"No route is configured for path {path!r}.")


class BadRequestTarget(GatewayError):
    """A request target with no canonical form, or one a route refuses (see ``gateway/target.py``)."""

    status = 400
    kind = "bad-request-target"
    title = "Request target refused"


class RequestTimeout(GatewayError):
    status = 408
    kind = "request-timeout"
    title = "The client stopped sending its request"


class HeadersTooLarge(GatewayError):
    status = 431
    kind = "headers-too-large"
    title = "Request header fields too large"


class BadRequest(GatewayError):
    """A request the HTTP parser could not read (malformed request line, headers or framing)."""

    status = 400
    kind = "bad-request"
    title = "Malformed HTTP request"

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self._status = status  # the parser's own 4xx (e.g. 413 for a body over the limit)

    def status_code(self) -> int:
        return self._status


class UpstreamError(GatewayError):
    status = 502
    kind = Verdict.UPSTREAM_ERROR.value
    title = "Upstream agent failed"
    verdict = Verdict.UPSTREAM_ERROR

    def __init__(self, route: str, detail: str) -> None:
        super().__init__(detail)
        self.route = route

    def extensions(self) -> dict[str, Any]:
        return {"route": self.route}


class UpstreamTimeout(UpstreamError):
    status = 504
    kind = Verdict.UPSTREAM_TIMEOUT.value
    title = "Upstream agent timed out"
    verdict = Verdict.UPSTREAM_TIMEOUT


class DeadlineExceeded(UpstreamTimeout):
    """The request's whole deadline ran out (not one attempt's timeout): same outcome, ``deadline: true``."""

    title = "Request deadline exceeded"

    def extensions(self) -> dict[str, Any]:
        return {**super().extensions(), "deadline": True}


class BreakerOpen(GatewayError):
    status = 503
    kind = Verdict.BREAKER_OPEN.value
    title = "Circuit breaker open"
    verdict = Verdict.BREAKER_OPEN

    def __init__(self, breaker: str, retry_after: float) -> None:
        super().__init__(f"Circuit breaker {breaker!r} is open: failing fast instead of calling the agent.")
        self.breaker = breaker
        self.retry_after = retry_after

    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))}

    def extensions(self) -> dict[str, Any]:
        return {"breaker": self.breaker}


class CheckpointInFlight(GatewayError):
    status = 409
    kind = "request-in-flight"
    title = "The same request is still in flight"

    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is still being processed; retry later.")

    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": "1"}


class IdempotencyKeyReused(GatewayError):
    status = 422
    kind = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was already used for a request with a different body.")


class StoreUnavailable(GatewayError):
    """The state store (SQLite file, Redis) failed an operation: 503 + Retry-After, never a 500.

    The store backends raise it for every driver failure, so anything that does not decide otherwise (a policy's
    ``on_store_error: bypass``) answers "try again shortly" on the data plane and on the admin API alike. The
    driver's message (which may name hosts) goes to the log, not to the caller.
    """

    status = 503
    kind = "store-unavailable"
    title = "State store unavailable"

    def __init__(self, operation: str, retry_after: int = 2) -> None:
        super().__init__(f"The gateway's state store is unavailable ({operation} failed); retry shortly.")
        self.operation = operation
        self.retry_after = retry_after

    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(self.retry_after)}

    def extensions(self) -> dict[str, Any]:
        return {"operation": self.operation}


class Escalated(GatewayError):
    status = 503
    kind = "escalated"
    title = "Handed to a person"

    def __init__(self, escalation_id: str, reason: str, outcome_url: str) -> None:
        super().__init__(f"The handoff failed ({reason}) and was escalated for human review.")
        self.escalation_id = escalation_id
        self.reason = reason
        self.outcome_url = outcome_url

    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": "30", "Location": self.outcome_url}

    def extensions(self) -> dict[str, Any]:
        return {"escalation_id": self.escalation_id, "reason": self.reason, "outcome_url": self.outcome_url}


class FallbackInvalid(ContractViolation):
    """The policy's fallback answer breaks the contract: refused like any invalid response."""

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "fallback-invalid"


class AdminError(GatewayError):
    """An admin API request that cannot be served; ``status`` is chosen per instance."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str = "bad-request",
        title: str = "Bad request",
        errors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(detail)
        self._status = status
        self._kind = kind
        self._title = title
        self.errors = list(errors)

    def status_code(self) -> int:
        return self._status

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self._kind

    @property
    def title(self) -> str:  # type: ignore[override]
        return self._title

    def headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": "Bearer"} if self._status == 401 else {}

    def extensions(self) -> dict[str, Any]:
        return {"errors": self.errors} if self.errors else {}


def problem_response(
    error: GatewayError, trace_id: str | None, extra_headers: Mapping[str, str] | None = None
) -> web.Response:
    """Render ``error`` as an ``application/problem+json`` response."""
    headers = dict(error.headers())
    if extra_headers:
        headers.update(extra_headers)
    return web.Response(
        body=orjson.dumps(error.problem(trace_id)),
        status=error.status_code(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )
