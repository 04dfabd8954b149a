"""The state one proxied request accumulates as it moves through the pipeline's steps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.trace import Span

from gateway.config import RouteSpec
from gateway.contracts.validation import CompiledContract
from gateway.errors import Direction, Violation


@dataclass(frozen=True, slots=True)
class AttemptSummary:
    """A failed attempt that was retried, kept for the audit trail."""

    number: int
    condition: str
    """Why it was retried: ``response_invalid``, ``timeout`` or ``upstream_error``."""
    status: int
    verdict: str
    violations: tuple[dict[str, str], ...]
    violation_count: int
    upstream_seconds: float | None
    response_body: bytes | None


_ATTEMPT_VERDICTS = {"timeout": "upstream_timeout", "upstream_error": "upstream_error"}


@dataclass(slots=True)
class Exchange:
    request: web.Request
    span: Span
    trace_id: str
    run_id: str
    source: str
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)
    route: RouteSpec | None = None
    path: str = "/"
    query: str = ""
    """Percent-encoded as received: the gateway never re-quotes what it forwards."""
    contract: CompiledContract | None = None
    verdict: str | None = None
    """``valid``, ``request_invalid``, ``response_invalid``, ``stale_context``, ``upstream_*`` or None."""
    violations: list[dict[str, str]] = field(default_factory=list)
    violation_count: int = 0
    notes: list[str] = field(default_factory=list)
    status: int = 0
    upstream_started: float = 0.0
    upstream_seconds: float | None = None
    request_body: bytes | None = None
    response_body: bytes | None = None
    request_document: Any = None
    response_document: Any = None
    committed: bool = False
    """True once response headers were sent: a later failure can only abort the connection."""
    attempt: int = 1
    failed_attempts: list[AttemptSummary] = field(default_factory=list)
    request_verdict: str | None = None
    breaker_state: str | None = None
    checkpoint: str | None = None
    """``hit`` when the answer came from a stored checkpoint, ``stored`` when this answer was stored."""

    @property
    def attempt_seconds(self) -> float:
        return time.perf_counter() - self.upstream_started if self.upstream_started else 0.0

    def retry(self, status: int, condition: str) -> None:
        """Close the current attempt as failed and reset what the next attempt will fill in again."""
        response = [v for v in self.violations if v["direction"] == "response"]
        self.failed_attempts.append(
            AttemptSummary(
                self.attempt, condition, status, _ATTEMPT_VERDICTS.get(condition, self.verdict or condition),
                tuple(response),
                len(response), self.upstream_seconds, self.response_body,
            )
        )  # fmt: skip
        self.violations = [v for v in self.violations if v["direction"] == "request"]
        self.violation_count = len(self.violations)
        self.verdict = self.request_verdict
        self.notes.clear()
        self.response_body = self.response_document = self.upstream_seconds = None
        self.upstream_started = 0.0
        self.attempt += 1

    @property
    def step(self) -> str:
        """``X-Step`` when the caller names it, else the operation (method and path template)."""
        named = self.request.headers.get("X-Step")
        if named:
            return named
        template = self.contract.spec.operation.path if self.contract else self.path
        return f"{self.request.method} {template}"

    def add_violations(self, direction: Direction, violations: tuple[Violation, ...], total: int) -> None:
        self.violations += [{**v.as_dict(), "direction": direction} for v in violations]
        self.violation_count += total
