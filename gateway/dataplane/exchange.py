"""The state one proxied request accumulates as it travels down the chain of stages (``gateway/dataplane``).

Each stage fills in what it decides (the route, the contract, the policy, the body, the verdict) and later stages
read it; nothing on the exchange is shared between requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.trace import INVALID_SPAN, Span

from gateway.config import RouteSpec
from gateway.contracts.validation import CompiledContract
from gateway.errors import Direction, Violation
from gateway.headers import STEP
from gateway.outcomes import Verdict
from gateway.policies.document import DEFAULT_POLICY, PolicySpec
from gateway.protocols.jsonrpc import Dialect, Envelope, Message


@dataclass(frozen=True, slots=True)
class RpcCall:
    """One JSON-RPC call of a request body (its position in a batch) and its contract, if one governs it."""

    index: int | None
    message: Message
    contract: CompiledContract | None


@dataclass(frozen=True, slots=True)
class AttemptSummary:
    """A failed attempt that was retried, kept for the audit trail."""

    number: int
    condition: Verdict
    """Why it was retried (also its verdict): ``response_invalid``, ``upstream_timeout`` or ``upstream_error``."""
    status: int
    violations: tuple[dict[str, str], ...]
    violation_count: int
    upstream_seconds: float | None
    response_body: bytes | None


@dataclass(slots=True)
class Exchange:
    request: web.Request
    span: Span = INVALID_SPAN
    trace_id: str = ""
    run_id: str = ""
    source: str = "unknown"
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)
    route: RouteSpec | None = None
    path: str = "/"
    """Canonical, percent-encoded, the route prefix stripped: what the agent receives (see ``target.py``)."""
    query: str = ""
    """Percent-encoded as received: the gateway never re-quotes what it forwards."""
    contract: CompiledContract | None = None
    policy: PolicySpec = DEFAULT_POLICY
    checkpoint_key: str | None = None
    verdict: Verdict | None = None
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
    attempt_budget: float | None = None
    """Seconds this attempt may take (the attempt timeout, or what is left of the deadline)."""
    act_on_failed_status: bool = False
    """Whether a listed 5xx on this attempt is a failure the policy acts on (retry, escalate, fall back) rather
    than an answer to relay as it is; decided by the attempts stage, which alone knows if attempts are left."""
    failed_attempts: list[AttemptSummary] = field(default_factory=list)
    request_verdict: Verdict | None = None
    request_notes: int = 0
    """How many ``notes`` the request check left (kept across retries; later ones belong to one attempt)."""
    breaker_state: str | None = None
    checkpoint: str | None = None
    """``hit`` (answered from a checkpoint), ``stored`` (this answer was kept), ``bypass`` (the store failed)."""
    fallback: str | None = None
    """``static`` or ``route:<name>`` when the answer is a policy's fallback."""
    rpc_bound: bool = False
    """JSON-RPC contracts bind this endpoint: the body is read and its method matched (``rpc.py``)."""
    rpc: Envelope | None = None
    """The JSON-RPC message(s) of the request body, when it is JSON-RPC."""
    rpc_calls: tuple[RpcCall, ...] = ()
    """Each request or notification of the body with the contract that governs its method (or ``None``)."""
    rpc_dialect: Dialect = Dialect.JSONRPC

    @property
    def attempt_seconds(self) -> float:
        return time.perf_counter() - self.upstream_started if self.upstream_started else 0.0

    def retry(self, status: int, condition: Verdict) -> None:
        """Close the current attempt as failed and reset what the next attempt will fill in again."""
        response = tuple(v for v in self.violations if v["direction"] == "response")
        self.failed_attempts.append(
            AttemptSummary(
                self.attempt, condition, status, response, len(response), self.upstream_seconds, self.response_body
            )
        )
        self.violations = [v for v in self.violations if v["direction"] == "request"]
        self.violation_count = len(self.violations)
        self.verdict = self.request_verdict
        del self.notes[self.request_notes :]
        self.response_body = self.response_document = self.upstream_seconds = None
        self.upstream_started = 0.0
        self.attempt += 1

    @property
    def step(self) -> str:
        """``X-Step`` when the caller names it, else the operation (method and path template)."""
        named = self.request.headers.get(STEP)
        if named:
            return named
        if self.contract is not None and self.contract.spec.rpc is not None:
            return self.contract.spec.rpc.name
        template = self.contract.spec.operation.path if self.contract else self.path
        return f"{self.request.method} {template}"

    def add_violations(self, direction: Direction, violations: tuple[Violation, ...], total: int) -> None:
        self.violations += [{**v.as_dict(), "direction": direction} for v in violations]
        self.violation_count += total
